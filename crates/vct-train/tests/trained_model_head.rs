//! A trained model is restored whole: `TrainedModel::load` on a run folder
//! whose `model.safetensors` lacks the head, or holds a head of another shape,
//! is an error naming the key, never a silently random head.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use vct_hparams::{HyperParams, Template};
use vct_train::config::{DataConfig, InitConfig, RunConfig, ValSource};
use vct_train::run::{Progress, RunOptions};
use vct_train::session::{self, TrainedModel};
use vct_train::TrainError;

/// Trains a tiny RSB-A1 run (one epoch on generated images) into `out`.
fn trained_run(tmp: &Path, out: &Path) {
    let data = tmp.join("data");
    vct_data::demo::generate(
        &data,
        &vct_data::demo::DemoConfig {
            seed: 1,
            size: 32,
            train_per_class: 2,
            val_per_class: 1,
        },
    )
    .unwrap();
    let mut hp = HyperParams::defaults(Template::RsbA1);
    for s in [
        "image_size=32",
        "batch_size=8",
        "num_epochs=1",
        "warmup_iters=0",
        "pretrained_weights=None",
    ] {
        hp = hp.with_override(s).unwrap();
    }
    let mut opts = RunOptions::new(out);
    opts.progress = Progress::Quiet;
    let config = RunConfig {
        hparams: hp,
        seed: 0,
        data: DataConfig {
            train: data,
            val: ValSource::Auto,
        },
        extras: Default::default(),
        init: InitConfig {
            random_init: true,
            ..InitConfig::default()
        },
        device: "cpu".into(),
        early_stopping: None,
        vct_version: "test".into(),
    };
    session::train(&config, opts).unwrap();
}

fn rewrite(path: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let mut sd: HashMap<String, Tensor> = candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect();
    edit(&mut sd);
    candle_core::safetensors::save(&sd, path).unwrap();
}

fn load_error(dir: &Path) -> String {
    match TrainedModel::load(dir, &Device::Cpu) {
        Err(e @ TrainError::BadCheckpoint { .. }) => e.to_string(),
        Err(e) => panic!("expected BadCheckpoint, got {e}"),
        Ok(_) => panic!("a run folder with a broken head loaded"),
    }
}

#[test]
fn missing_or_reshaped_head_is_an_error_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    trained_run(tmp.path(), &out);
    let weights = out.join("model.safetensors");
    let original = std::fs::read(&weights).unwrap();
    // The run as written loads, head included.
    let m = TrainedModel::load(&out, &Device::Cpu).unwrap();
    let sd: HashMap<String, Tensor> = m.model.state_dict().into_iter().collect();
    let (classes, dim) = sd["fc.weight"].dims2().unwrap();
    assert_eq!(classes, m.record.concepts.len());

    // No head in the file.
    rewrite(&weights, |sd| {
        sd.remove("fc.weight");
        sd.remove("fc.bias");
    });
    let msg = load_error(&out);
    assert!(
        msg.contains("model.safetensors")
            && msg.contains("missing in file (2)")
            && msg.contains("fc.weight")
            && msg.contains("fc.bias"),
        "{msg}"
    );

    // A head for another number of concepts.
    std::fs::write(&weights, &original).unwrap();
    rewrite(&weights, |sd| {
        sd.insert(
            "fc.weight".into(),
            Tensor::zeros((classes + 1, dim), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let msg = load_error(&out);
    assert!(
        msg.contains(&format!(
            "fc.weight: file shape [{}, {dim}], model shape [{classes}, {dim}]",
            classes + 1
        )),
        "{msg}"
    );

    // Restored: loads again.
    std::fs::write(&weights, &original).unwrap();
    TrainedModel::load(&out, &Device::Cpu).unwrap();
}
