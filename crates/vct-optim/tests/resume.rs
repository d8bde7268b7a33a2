//! Save state → restore into a fresh optimizer → continue equals an
//! uninterrupted run, bit for bit, for every optimizer.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{case, fixture, grads, params, values};
use vct_optim::{OptimError, Optimizer, OptimizerConfig, ParamGroup, SgdConfig};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn save_restore_continue_equals_uninterrupted() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "sgd_momentum",
        "sgd_nesterov",
        "adamw",
        "lamb",
        "lamb_no_decay_on_bias",
    ] {
        // Uninterrupted: 5 steps.
        let (p, b) = params(&f);
        let (config, lr, groups) = case(name, &p, &b);
        let mut opt = Optimizer::new(config, groups).unwrap();
        for t in 0..5 {
            opt.step_with_lr(&grads(&f, t, &p, &b), lr * (1.0 + t as f64))
                .unwrap();
        }

        // Interrupted after 2 steps: save weights and state, rebuild from scratch.
        let (p1, b1) = params(&f);
        let (config, _, groups) = case(name, &p1, &b1);
        let mut first = Optimizer::new(config, groups).unwrap();
        for t in 0..2 {
            first
                .step_with_lr(&grads(&f, t, &p1, &b1), lr * (1.0 + t as f64))
                .unwrap();
        }
        let path = dir.path().join(format!("{name}.safetensors"));
        first.save(&path).unwrap();
        let weights = [values(&p1), values(&b1)];
        drop(first);

        let (p2, b2) = params(&f);
        p2.set(&Tensor::from_vec(weights[0].clone(), (4, 5), &Device::Cpu).unwrap())
            .unwrap();
        b2.set(&Tensor::from_vec(weights[1].clone(), 5, &Device::Cpu).unwrap())
            .unwrap();
        let (config, _, groups) = case(name, &p2, &b2);
        let mut resumed = Optimizer::new(config, groups).unwrap();
        resumed.load(&path).unwrap();
        assert_eq!(resumed.steps_taken(), 2);
        for t in 2..5 {
            resumed
                .step_with_lr(&grads(&f, t, &p2, &b2), lr * (1.0 + t as f64))
                .unwrap();
        }
        assert_eq!(bits(&values(&p2)), bits(&values(&p)), "{name}: p");
        assert_eq!(bits(&values(&b2)), bits(&values(&b)), "{name}: b");

        // Without the restored state the continuation differs (the test can fail).
        let (p3, b3) = params(&f);
        p3.set(&Tensor::from_vec(weights[0].clone(), (4, 5), &Device::Cpu).unwrap())
            .unwrap();
        b3.set(&Tensor::from_vec(weights[1].clone(), 5, &Device::Cpu).unwrap())
            .unwrap();
        let (config, _, groups) = case(name, &p3, &b3);
        let mut cold = Optimizer::new(config, groups).unwrap();
        for t in 2..5 {
            cold.step_with_lr(&grads(&f, t, &p3, &b3), lr * (1.0 + t as f64))
                .unwrap();
        }
        assert_ne!(
            bits(&values(&p3)),
            bits(&values(&p)),
            "{name}: cold restart"
        );
    }
}

#[test]
fn mismatched_state_is_rejected_and_named() {
    let f = fixture();
    let (p, b) = params(&f);
    let (config, lr, groups) = case("adamw", &p, &b);
    let mut adamw = Optimizer::new(config, groups).unwrap();
    adamw.step_with_lr(&grads(&f, 0, &p, &b), lr).unwrap();
    let state = adamw.state_dict().unwrap();
    assert!(state.contains_key("param.p.exp_avg_sq"));

    // Another optimizer kind: AdamW moments belong to no SGD state.
    let (config, _, groups) = case("sgd_momentum", &p, &b);
    let mut sgd = Optimizer::new(config, groups).unwrap();
    let err = sgd.load_state_dict(&state, "ckpt").unwrap_err();
    assert!(err.to_string().contains("param.b.exp_avg"), "{err}");
    assert_eq!(sgd.steps_taken(), 0, "nothing changed on error");

    // A parameter missing from the file.
    let extra = candle_core::Var::zeros(3, DType::F32, &Device::Cpu).unwrap();
    let groups = vec![ParamGroup::new(
        "all",
        vec![
            ("p".into(), p.clone()),
            ("b".into(), b.clone()),
            ("new".into(), extra),
        ],
    )];
    let mut bigger = Optimizer::new(*adamw.config(), groups).unwrap();
    let err = bigger.load_state_dict(&state, "ckpt").unwrap_err();
    assert!(matches!(err, OptimError::State { .. }));
    assert!(err.to_string().contains("`new`"), "{err}");

    // A shape that does not fit.
    let mut bad: HashMap<String, Tensor> = state.clone();
    bad.insert(
        "param.b.exp_avg".into(),
        Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = adamw.load_state_dict(&bad, "ckpt").unwrap_err();
    assert!(err.to_string().contains("param.b.exp_avg"), "{err}");

    // Plain SGD keeps no per-parameter tensors but still restores its counters.
    let (_, _, groups) = case("sgd_momentum", &p, &b);
    let plain = OptimizerConfig::Sgd(SgdConfig {
        momentum: 0.0,
        ..SgdConfig::default()
    });
    let mut sgd = Optimizer::new(plain, groups).unwrap();
    sgd.step_with_lr(&grads(&f, 0, &p, &b), 0.1).unwrap();
    let state = sgd.state_dict().unwrap();
    assert_eq!(state.len(), 3);
    sgd.load_state_dict(&state, "ckpt").unwrap();
}
