//! Every curve in `tests/fixtures/sched.json` (mmengine 0.10.7 and mmcv 1.x
//! reference values, written with 9 significant digits) reproduced to 1e-12
//! relative after rounding ours to the same 9 digits.

use serde_json::Value;
use vct_sched::{LrSchedule, StepDecay, WarmupCosine, WarmupStyle};

fn fixture() -> Value {
    let text = include_str!("fixtures/sched.json");
    serde_json::from_str(text).unwrap()
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number"))
}

/// Our value rounded to the fixture's 9 significant digits.
fn round9(x: f64) -> f64 {
    format!("{x:.8e}").parse().unwrap()
}

fn check_curve(name: &str, reference: &[f64], ours: impl Fn(usize) -> f64) {
    assert!(!reference.is_empty(), "{name}: empty reference");
    for (i, &r) in reference.iter().enumerate() {
        let o = ours(i);
        // Ours, unrounded, is within the fixture's own rounding.
        assert!(
            (o - r).abs() <= 5e-9 * r.abs(),
            "{name}[{i}]: ours {o:e}, reference {r:e}"
        );
        let rel = (round9(o) - r).abs() / r.abs();
        assert!(
            rel <= 1e-12,
            "{name}[{i}]: ours {o:e} (rounded {:e}), reference {r:e}, rel {rel:e}",
            round9(o)
        );
    }
}

fn lrs(f: &Value, key: &str) -> Vec<f64> {
    f[key]["lr"]
        .as_array()
        .unwrap_or_else(|| panic!("{key}.lr missing"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn warmup_cosine(f: &Value, style: WarmupStyle) -> WarmupCosine {
    let wc = |k| num(f, &["setup", "warmup_cosine", k]);
    WarmupCosine::new(
        num(f, &["setup", "base_lr"]),
        wc("min_lr"),
        wc("warmup_iters") as usize,
        wc("warmup_ratio"),
        wc("total_iters") as usize,
        style,
    )
    .unwrap()
}

#[test]
fn every_curve_in_the_fixture_is_reproduced() {
    let f = fixture();
    let base_lr = num(&f, &["setup", "base_lr"]);
    let gamma = num(&f, &["setup", "step_decay", "gamma"]);
    let epochs = num(&f, &["setup", "step_decay", "epochs"]) as usize;
    let mut checked = Vec::new();
    for (key, entry) in f.as_object().unwrap() {
        if entry.get("lr").is_none() {
            continue;
        }
        let reference = lrs(&f, key);
        match key.as_str() {
            "warmup_cosine_mmengine_cosine_after_warmup" => {
                let s = warmup_cosine(&f, WarmupStyle::Mmengine);
                assert_eq!(reference.len(), s.total_steps);
                check_curve(key, &reference, |i| s.lr(i));
            }
            "warmup_cosine_mmengine_cosine_from_0" => {
                let s = warmup_cosine(&f, WarmupStyle::MmengineConcurrent);
                check_curve(key, &reference, |i| s.lr(i));
            }
            "warmup_cosine_mmcv1" => {
                let s = warmup_cosine(&f, WarmupStyle::Mmcv1);
                check_curve(key, &reference, |i| s.lr(i));
            }
            "step_mmengine_multistep" | "step_mmcv1" => {
                // Milestones 5, 8, 11: 5 epochs at lr, then × gamma every 3.
                assert_eq!(reference.len(), epochs);
                let s = StepDecay::new(base_lr, gamma, 5, 3, 1).unwrap();
                check_curve(key, &reference, |e| s.lr(e));
                // The same curve driven by steps (4 per epoch) changes on epoch
                // boundaries only.
                let by_step = StepDecay::new(base_lr, gamma, 5, 3, 4).unwrap();
                check_curve(key, &reference, |e| by_step.lr(4 * e));
                check_curve(key, &reference, |e| by_step.lr(4 * e + 3));
            }
            "step_mmengine_steplr_begin5" => {
                // mmengine's StepLR(step_size=3, begin=5) first decays at 5 + 3.
                let s = StepDecay::new(base_lr, gamma, 8, 3, 1).unwrap();
                check_curve(key, &reference, |e| s.lr(e));
            }
            other => panic!("curve {other} in sched.json has no test"),
        }
        checked.push(key.clone());
    }
    assert_eq!(checked.len(), 6, "curves checked: {checked:?}");
}

#[test]
fn closed_form_of_the_primary_curve() {
    // The fixture's `closed_form` text, evaluated in f64 without rounding.
    let f = fixture();
    let s = warmup_cosine(&f, WarmupStyle::Mmengine);
    for i in 0..100 {
        let expected = if i < 10 {
            0.1 * (0.25 + 0.75 * i as f64 / 9.0)
        } else {
            0.001
                + 0.5
                    * (0.1 - 0.001)
                    * (1.0 + (std::f64::consts::PI * (i - 10) as f64 / 90.0).cos())
        };
        let rel = (s.lr(i) - expected).abs() / expected;
        assert!(rel <= 1e-12, "step {i}: {} vs {expected}", s.lr(i));
    }
}
