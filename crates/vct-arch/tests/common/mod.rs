//! Shared test helpers: the parity value formula (../shared/parity/README.md),
//! fixture reading, and comparison.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::Value;

pub mod pth;

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

pub fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

/// `u(name, i)` for a precomputed `h = fnv1a64(name)`.
pub fn u_h(h: u64, i: u64) -> f64 {
    (splitmix64(h ^ i) >> 40) as f64 / (1u64 << 24) as f64
}

pub fn u(name: &str, i: u64) -> f64 {
    u_h(fnv1a64(name.as_bytes()), i)
}

pub fn s(name: &str, i: u64) -> f64 {
    2.0 * u(name, i) - 1.0
}

/// The formula value of a state-dict tensor `name` of `shape`.
pub fn formula_tensor(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let h = fnv1a64(name.as_bytes());
    let sv = |i: usize| 2.0 * u_h(h, i as u64) - 1.0;
    if shape.len() >= 2 {
        let fan_in: usize = shape[1..].iter().product();
        let k = (6.0 / fan_in as f64).sqrt();
        (0..n).map(|i| (sv(i) * k) as f32).collect()
    } else if name.ends_with("running_mean") {
        (0..n).map(|i| (0.1 * sv(i)) as f32).collect()
    } else if name.ends_with("running_var") {
        (0..n).map(|i| (0.5 + u_h(h, i as u64)) as f32).collect()
    } else if name.ends_with(".weight") {
        (0..n).map(|i| (1.0 + 0.1 * sv(i)) as f32).collect()
    } else if name.ends_with(".bias") {
        (0..n).map(|i| (0.1 * sv(i)) as f32).collect()
    } else {
        panic!("no formula rule for {name}")
    }
}

/// The formula input tensor of `shape`.
pub fn formula_input(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| s("input", i as u64) as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn load_fixture(name: &str) -> Value {
    let p = fixture_dir().join("parity").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

pub fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Every tensor listed in the fixture's `keys`, set by the formula, under
/// `rename(key)`. Also checks each tensor's `sum` and `first` against the fixture.
pub fn formula_state_dict(fx: &Value, rename: impl Fn(&str) -> String) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for k in fx["keys"].as_array().unwrap() {
        let key = k["key"].as_str().unwrap();
        let shape = usizes(&k["shape"]);
        let v = formula_tensor(key, &shape);
        let sum: f64 = v.iter().map(|&x| x as f64).sum();
        let want_sum = k["sum"].as_f64().unwrap();
        assert!(
            (sum - want_sum).abs() <= 1e-4 * want_sum.abs().max(1.0),
            "{key}: sum {sum} vs {want_sum}"
        );
        let want_first = k["first"].as_f64().unwrap() as f32;
        assert!(
            (v[0] - want_first).abs() <= 1e-6 * want_first.abs().max(1e-3),
            "{key}: first {} vs {want_first}",
            v[0]
        );
        out.insert(
            rename(key),
            Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap(),
        );
    }
    out
}

/// `max|ours − ref| / max|ref|`.
pub fn rel_err(ours: &Tensor, reference: &[f32]) -> f64 {
    let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(ours.len(), reference.len(), "length");
    let max_ref = reference.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
    let max_diff = ours
        .iter()
        .zip(reference)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    max_diff / max_ref
}

/// A standard-normal tensor from a seed (candle's `randn` is not seeded).
pub fn seeded(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v = vct_arch::params::Rng::new(seed).sample(vct_arch::params::Init::Normal(1.0), n);
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}
