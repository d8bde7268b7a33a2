//! BN-Inception parity with `pretrainedmodels.bninception` (tests/fixtures/parity).

mod common;
use common::*;

use candle_core::Device;
use vct_arch::{Arch, Classifier, LoadOptions, ModelConfig};

#[test]
fn bninception_matches_pretrainedmodels() {
    parity();
}

#[test]
fn bninception_matches_pretrainedmodels_on_the_candle_backend() {
    vct_kernels::with_backend(vct_kernels::KernelBackend::Candle, parity);
}

fn parity() {
    let fx = load_fixture("bninception");
    let model = Classifier::new(&ModelConfig::new(Arch::BnInception, 1000), &Device::Cpu).unwrap();
    let ours: Vec<String> = model.entries().into_iter().map(|e| e.name).collect();
    let theirs: Vec<String> = fx["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ours, theirs, "state-dict names and order");
    let sd = formula_state_dict(&fx, |k| k.to_string());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bninception.safetensors");
    candle_core::safetensors::save(&sd, &path).unwrap();
    let report = model.load_weights(&path, LoadOptions::default()).unwrap();
    assert!(
        report.is_clean() && report.head_reinitialised.is_empty(),
        "{report}"
    );
    let x = formula_input(&usizes(&fx["input_shape"]));
    let emb = model.embed(&x, false).unwrap();
    let logits = model.head_forward(&emb, false).unwrap();
    assert_eq!(logits.dims(), usizes(&fx["logits_shape"]).as_slice());
    let e = rel_err(&emb, &floats(&fx["embedding"]));
    let l = rel_err(&logits, &floats(&fx["logits"]));
    eprintln!("bninception: embedding rel err {e:.3e}, logits rel err {l:.3e}");
    assert!(e <= 1e-4, "embedding rel err {e}");
    assert!(l <= 1e-4, "logits rel err {l}");
}
