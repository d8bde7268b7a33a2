//! ResNet-50 / ResNeXt-50 parity with torchvision (tests/fixtures/parity).

mod common;
use common::*;

use candle_core::{Device, Tensor};
use vct_arch::{Arch, Classifier, LoadOptions, ModelConfig};

/// Builds `arch`, writes the fixture's formula weights to a safetensors file
/// under `rename`d keys, loads it through `load_weights`, runs eval, compares.
fn parity(arch: Arch, fixture: &str, rename: impl Fn(&str) -> String) {
    let fx = load_fixture(fixture);
    let model = Classifier::new(&ModelConfig::new(arch, 1000), &Device::Cpu).unwrap();
    let sd = formula_state_dict(&fx, rename);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    candle_core::safetensors::save(&sd, &path).unwrap();
    let report = model.load_weights(&path, LoadOptions::default()).unwrap();
    assert!(
        report.is_clean() && report.head_reinitialised.is_empty(),
        "{report}"
    );
    assert_eq!(report.loaded, fx["keys"].as_array().unwrap().len());
    let x = formula_input(&usizes(&fx["input_shape"]));
    let emb = model.embed(&x, false).unwrap();
    assert_eq!(emb.dims(), usizes(&fx["embedding_shape"]).as_slice());
    let logits = model.head_forward(&emb, false).unwrap();
    assert_eq!(logits.dims(), usizes(&fx["logits_shape"]).as_slice());
    let e = rel_err(&emb, &floats(&fx["embedding"]));
    let l = rel_err(&logits, &floats(&fx["logits"]));
    eprintln!("{fixture}: embedding rel err {e:.3e}, logits rel err {l:.3e}");
    assert!(e <= 1e-4, "embedding rel err {e}");
    assert!(l <= 1e-4, "logits rel err {l}");
    // Eval mode is a pure function: a second pass gives the same logits.
    let again = model.forward(&x, false).unwrap();
    assert_eq!(
        (again - logits)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
}

#[test]
fn resnet50_matches_torchvision() {
    parity(Arch::ResNet50, "resnet50", |k| k.to_string());
}

#[test]
fn resnet50_nonsquare_matches_torchvision_via_mmpretrain_names() {
    // Same weights under mmpretrain's names: exercises the key mapping too.
    parity(Arch::ResNet50, "resnet50_nonsquare", |k| {
        match k.strip_prefix("fc.") {
            Some(rest) => format!("head.fc.{rest}"),
            None => format!("backbone.{k}"),
        }
    });
}

#[test]
fn resnet50_nonsquare_matches_torchvision_on_the_candle_backend() {
    // The stock-candle path of layers.rs (the fallback off f32 CPU) must agree too.
    vct_kernels::with_backend(vct_kernels::KernelBackend::Candle, || {
        parity(Arch::ResNet50, "resnet50_nonsquare", |k| k.to_string())
    });
}

#[test]
fn resnext50_32x4d_matches_torchvision() {
    parity(Arch::ResNeXt50_32x4d, "resnext50_32x4d", |k| k.to_string());
}

#[test]
fn parameter_counts_match_torchvision() {
    let count = |a| {
        Classifier::new(&ModelConfig::new(a, 1000), &Device::Cpu)
            .unwrap()
            .num_params()
    };
    assert_eq!(count(Arch::ResNet50), 25_557_032);
    assert_eq!(count(Arch::ResNeXt50_32x4d), 25_028_904);
    // Fixture key lists name the same tensors as ours, in the same order.
    let fx = load_fixture("resnet50");
    let model = Classifier::new(&ModelConfig::new(Arch::ResNet50, 1000), &Device::Cpu).unwrap();
    let ours: Vec<String> = model.entries().into_iter().map(|e| e.name).collect();
    let theirs: Vec<String> = fx["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ours, theirs);
    let _ = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu);
}
