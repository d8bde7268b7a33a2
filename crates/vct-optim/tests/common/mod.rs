//! Shared helpers of the optimizer tests: the `optim.json` fixture and the
//! parity value formula that defines its tensors.

#![allow(dead_code)]

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use serde_json::Value;
use vct_optim::{AdamWConfig, LambConfig, OptimizerConfig, ParamGroup, SgdConfig};

pub fn fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/optim.json")).unwrap()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn splitmix64(z: u64) -> u64 {
    let z = z.wrapping_add(0x9E3779B97F4A7C15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

/// `s(name, i)` of `parity/README.md`: a value in [-1, 1).
pub fn s(name: &str, i: u64) -> f64 {
    let u = (splitmix64(fnv1a64(name.as_bytes()) ^ i) >> 40) as f64 / (1u64 << 24) as f64;
    2.0 * u - 1.0
}

/// The parameters `p` [4, 5] and `b` [5] at their initial values.
pub fn params(f: &Value) -> (Var, Var) {
    let p = Tensor::from_vec(floats(&f["p_init"]), (4, 5), &Device::Cpu).unwrap();
    let b = Tensor::from_vec(floats(&f["b_init"]), 5, &Device::Cpu).unwrap();
    (Var::from_tensor(&p).unwrap(), Var::from_tensor(&b).unwrap())
}

/// The gradients of step `t` for `p` and `b`.
pub fn grads(f: &Value, t: usize, p: &Var, b: &Var) -> GradStore {
    let g = &f["grads"][t];
    assert_eq!(g["step"].as_u64(), Some(t as u64));
    let mut store = GradStore::default();
    let gp = Tensor::from_vec(floats(&g["p"]), (4, 5), &Device::Cpu).unwrap();
    let gb = Tensor::from_vec(floats(&g["b"]), 5, &Device::Cpu).unwrap();
    store.insert(p.as_tensor(), gp);
    store.insert(b.as_tensor(), gb);
    store
}

/// The optimizer, base lr and groups of each case, from its `constructor` line.
pub fn case(name: &str, p: &Var, b: &Var) -> (OptimizerConfig, f64, Vec<ParamGroup>) {
    let both = || {
        vec![ParamGroup::new(
            "all",
            vec![("p".into(), p.clone()), ("b".into(), b.clone())],
        )]
    };
    match name {
        "sgd_momentum" | "sgd_nesterov" => (
            OptimizerConfig::Sgd(SgdConfig {
                momentum: 0.9,
                dampening: 0.0,
                nesterov: name == "sgd_nesterov",
                weight_decay: 1e-4,
            }),
            0.1,
            both(),
        ),
        "adamw" => (
            OptimizerConfig::AdamW(AdamWConfig {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.05,
            }),
            0.01,
            both(),
        ),
        "lamb" => (
            OptimizerConfig::Lamb(LambConfig {
                weight_decay: 0.02,
                ..LambConfig::default()
            }),
            0.005,
            both(),
        ),
        "lamb_no_decay_on_bias" => (
            OptimizerConfig::Lamb(LambConfig {
                weight_decay: 0.02,
                ..LambConfig::default()
            }),
            0.005,
            vec![
                ParamGroup::new("decay", vec![("p".into(), p.clone())]),
                ParamGroup::new("no_decay", vec![("b".into(), b.clone())]).with_weight_decay(false),
            ],
        ),
        other => panic!("case {other} of optim.json has no test"),
    }
}

pub fn values(v: &Var) -> Vec<f32> {
    v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
}
