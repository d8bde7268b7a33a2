//! Every trajectory in `tests/fixtures/optim.json` (PyTorch SGD / AdamW, timm
//! LAMB; 5 steps on a [4, 5] weight and a [5] bias) reproduced to 1e-5 relative
//! after each step.

mod common;

use common::{case, fixture, floats, grads, params, s, values};
use vct_optim::Optimizer;

const CASES: [&str; 5] = [
    "sgd_momentum",
    "sgd_nesterov",
    "adamw",
    "lamb",
    "lamb_no_decay_on_bias",
];

/// Relative difference (the fixture has 9 significant digits; no value in it is 0).
fn rel(ours: f32, reference: f32) -> f64 {
    let (o, r) = (ours as f64, reference as f64);
    (o - r).abs() / r.abs().max(1e-12)
}

#[test]
fn fixture_inputs_follow_the_value_formula() {
    let f = fixture();
    let p: Vec<f64> = (0..20).map(|i| s("p", i) * (6.0f64 / 5.0).sqrt()).collect();
    let b: Vec<f64> = (0..5).map(|i| 0.1 * s("b", i)).collect();
    for (ours, r) in p.iter().zip(floats(&f["p_init"])) {
        assert!((*ours as f32 - r).abs() <= 1e-7, "{ours} vs {r}");
    }
    for (ours, r) in b.iter().zip(floats(&f["b_init"])) {
        assert!((*ours as f32 - r).abs() <= 1e-7, "{ours} vs {r}");
    }
    for t in 0..5 {
        let g = floats(&f["grads"][t]["p"]);
        for (i, r) in g.iter().enumerate() {
            assert!((s(&format!("grad_p_{t}"), i as u64) as f32 - r).abs() <= 1e-7);
        }
    }
}

#[test]
fn every_trajectory_is_reproduced() {
    let f = fixture();
    let listed: Vec<&String> = f
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.get("steps").is_some())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        listed.len(),
        CASES.len(),
        "cases in the fixture: {listed:?}"
    );
    let mut worst = Vec::new();
    for name in listed {
        let (p, b) = params(&f);
        let (config, lr, groups) = case(name, &p, &b);
        let mut opt = Optimizer::new(config, groups).unwrap();
        let steps = f[name.as_str()]["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 5);
        let mut max_rel = 0f64;
        for (t, expected) in steps.iter().enumerate() {
            opt.step_with_lr(&grads(&f, t, &p, &b), lr).unwrap();
            for (var, key) in [(&p, "p"), (&b, "b")] {
                let ours = values(var);
                let reference = floats(&expected[key]);
                assert_eq!(ours.len(), reference.len());
                for (i, (&o, &r)) in ours.iter().zip(&reference).enumerate() {
                    let d = rel(o, r);
                    max_rel = max_rel.max(d);
                    assert!(
                        d <= 1e-5,
                        "{name} step {t} {key}[{i}]: ours {o}, reference {r}, rel {d:e}"
                    );
                }
            }
        }
        worst.push(format!("{name} {max_rel:.1e}"));
    }
    println!("max relative difference per case: {}", worst.join(", "));
}

#[test]
fn candle_nn_adamw_is_equal_to_ours() {
    // The reason to write our own is groups and state access, not arithmetic:
    // candle-nn's AdamW follows the same trajectory.
    use candle_nn::optim::{AdamW, Optimizer as _, ParamsAdamW};
    let f = fixture();
    let (p, b) = params(&f);
    let (p2, b2) = params(&f);
    let (config, lr, groups) = case("adamw", &p, &b);
    let mut ours = Optimizer::new(config, groups).unwrap();
    let params = ParamsAdamW {
        lr,
        weight_decay: 0.05,
        ..ParamsAdamW::default()
    };
    let mut theirs = AdamW::new(vec![p2.clone(), b2.clone()], params).unwrap();
    for t in 0..5 {
        ours.step_with_lr(&grads(&f, t, &p, &b), lr).unwrap();
        theirs.step(&grads(&f, t, &p2, &b2)).unwrap();
        for (a, c) in [(&p, &p2), (&b, &b2)] {
            for (x, y) in values(a).iter().zip(values(c)) {
                assert!(rel(*x, y) <= 1e-6, "step {t}: {x} vs {y}");
            }
        }
    }
}
