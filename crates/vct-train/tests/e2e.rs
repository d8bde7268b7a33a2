//! End to end on generated images, for every template: train (loss falls),
//! outputs written, then evaluate and predict from the saved model. Plus
//! multi-label data, frozen backbones, pretrained files and bad input.

use std::path::{Path, PathBuf};

use candle_core::Device;
use vct_arch::{Arch, Classifier, ModelConfig};
use vct_hparams::{HyperParams, Template};
use vct_train::config::{DataConfig, InitConfig, RunConfig, ValSource};
use vct_train::run::{Progress, RunOptions, RunSummary};
use vct_train::session::{self, TrainedModel};

fn demo(dir: &Path, multi: bool) -> PathBuf {
    let cfg = vct_data::demo::DemoConfig {
        seed: 1,
        size: 40,
        train_per_class: 4,
        val_per_class: 2,
    };
    let root = dir.join(if multi { "multi" } else { "single" });
    if multi {
        vct_data::demo::generate_multilabel(&root, &cfg).unwrap();
    } else {
        vct_data::demo::generate(&root, &cfg).unwrap();
    }
    root
}

fn hparams(template: Template, extra: &[&str]) -> HyperParams {
    let mut hp = HyperParams::defaults(template);
    let common: &[&str] = match template {
        Template::RsbA1 => &[
            "image_size=32",
            "batch_size=8",
            "num_epochs=3",
            "per_item_lrate=2e-4",
            "warmup_iters=0",
            "pretrained_weights=None",
        ],
        Template::TransferEmbedNorm => &[
            "image_size=32",
            "batch_size=8",
            "num_epochs=3",
            "lrate=0.05",
        ],
        _ => &[
            "image_size=32",
            "batch_size=8",
            "num_epochs=3",
            "per_item_lrate=0.002",
        ],
    };
    for s in common.iter().chain(extra) {
        hp = hp.with_override(s).unwrap();
    }
    hp
}

fn config(hparams: HyperParams, data: &Path) -> RunConfig {
    RunConfig {
        hparams,
        seed: 5,
        data: DataConfig {
            train: data.to_path_buf(),
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
    }
}

fn options(out: &Path) -> RunOptions {
    let mut o = RunOptions::new(out);
    o.progress = Progress::Quiet;
    o
}

fn epoch_losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "epoch")
        .map(|v| v["train_loss"].as_f64().unwrap())
        .collect()
}

fn check_run(template: Template, extra: &[&str]) -> (tempfile::TempDir, RunSummary) {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo(tmp.path(), false);
    let out = tmp.path().join("run");
    let summary = session::train(&config(hparams(template, extra), &data), options(&out))
        .unwrap_or_else(|e| panic!("{template}: {e}"));
    assert_eq!(summary.epochs, 3);
    for f in [
        "model.safetensors",
        "run.json",
        "metrics.json",
        "confusion.csv",
        "events.jsonl",
        "checkpoints/LATEST",
    ] {
        assert!(out.join(f).is_file(), "{template}: {f} missing");
    }
    let losses = epoch_losses(&out);
    assert!(
        losses[2] < losses[0],
        "{template}: training loss did not fall: {losses:?}"
    );

    let model = TrainedModel::load(&out, &Device::Cpu).unwrap();
    let m = model.evaluate(&data.join("val"), 4).unwrap();
    assert_eq!(m.count, 8);
    assert_eq!(m.per_concept.len(), 4);
    let image = data.join("val/circle/0000.png");
    let p = model.predict_one(&image, 4, true).unwrap();
    assert_eq!(p.concepts.len(), 4);
    assert!(p
        .embedding
        .as_ref()
        .is_some_and(|e| e.len() == model.model.out_dim()));
    (tmp, summary)
}

#[test]
fn rsb_a1_end_to_end() {
    let (_t, s) = check_run(Template::RsbA1, &[]);
    assert_eq!(s.record.arch, "resnet50");
}

#[test]
fn inception_batchnorm_end_to_end() {
    let (_t, s) = check_run(Template::InceptionBatchNorm, &["logreg=0"]);
    assert_eq!(s.record.arch, "bninception");
}

#[test]
fn inception_v2_end_to_end_and_softmax_sums_to_one() {
    let (t, s) = check_run(Template::InceptionV2, &["logreg=0"]);
    assert_eq!(s.record.arch, "inception_v2");
    let model = TrainedModel::load(&t.path().join("run"), &Device::Cpu).unwrap();
    let p = model
        .predict_one(&t.path().join("single/val/square/0001.png"), 10, false)
        .unwrap();
    let total: f32 = p.concepts.iter().map(|c| c.1).sum();
    assert!(
        (total - 1.0).abs() < 1e-4,
        "softmax probabilities sum to {total}"
    );

    // Per-image results: every validation file once, with its folder's concept and
    // the probabilities predict_one computes; the metrics are evaluate's.
    let val = model
        .validation_set()
        .unwrap()
        .expect("the run's val/ folder");
    let e = model.evaluate_images(val, 3).unwrap();
    assert_eq!(
        e.metrics,
        model.evaluate(&t.path().join("single/val"), 3).unwrap()
    );
    let mut paths: Vec<PathBuf> = e.images.iter().map(|i| i.path.clone()).collect();
    paths.sort();
    let mut files: Vec<PathBuf> = ["circle", "square", "stripes", "triangle"]
        .iter()
        .flat_map(|c| std::fs::read_dir(t.path().join("single/val").join(c)).unwrap())
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(paths, files);
    for img in &e.images {
        let folder = img.path.parent().unwrap().file_name().unwrap();
        assert_eq!(
            model.record.concepts[img.labels[0]],
            folder.to_str().unwrap()
        );
        let one = model.predict_one(&img.path, 4, false).unwrap();
        for (concept, prob) in one.concepts {
            let j = model
                .record
                .concepts
                .iter()
                .position(|c| *c == concept)
                .unwrap();
            assert!((img.probabilities[j] - prob).abs() < 1e-5, "{img:?}");
        }
    }
}

#[test]
fn resnext_end_to_end() {
    let (_t, s) = check_run(Template::ResNext, &["batch_size=4", "per_item_lrate=5e-4"]);
    assert_eq!(s.record.arch, "resnext50_32x4d");
}

#[test]
fn transfer_embed_norm_end_to_end_with_flip_average() {
    let (_t, s) = check_run(
        Template::TransferEmbedNorm,
        &["base_gradient_multiplier=0.01"],
    );
    assert!(s.record.flip_average_eval);
}

#[test]
fn frozen_backbone_keeps_its_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo(tmp.path(), false);
    let out = tmp.path().join("run");
    let hp = hparams(
        Template::TransferEmbedNorm,
        &["base_gradient_multiplier=0", "num_epochs=1"],
    );
    session::train(&config(hp, &data), options(&out)).unwrap();
    // Trained on the backbone's embeddings, computed once into the run folder.
    let cached: Vec<String> = std::fs::read_dir(out.join("embeddings"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(cached.iter().any(|f| f.starts_with("train-")), "{cached:?}");
    assert!(cached.iter().any(|f| f.starts_with("val-")), "{cached:?}");
    // The same seed builds the same initial model: compare every backbone tensor.
    let initial = Classifier::new(
        &ModelConfig {
            seed: 5,
            ..ModelConfig::new(Arch::BnInception, 4).with_norm_embed_head()
        },
        &Device::Cpu,
    )
    .unwrap();
    let trained = TrainedModel::load(&out, &Device::Cpu).unwrap();
    let before: std::collections::HashMap<_, _> = initial.state_dict().into_iter().collect();
    let mut head_changed = false;
    for (name, t) in trained.model.state_dict() {
        let same = (t.clone() - &before[&name])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            == 0.0;
        if name.starts_with("embed_head") {
            head_changed |= !same;
        } else {
            assert!(same, "frozen backbone tensor {name} changed");
        }
    }
    assert!(head_changed, "the head did not train");
}

#[test]
fn multi_label_reports_map() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo(tmp.path(), true);
    let out = tmp.path().join("run");
    let hp = hparams(Template::InceptionV2, &["logreg=1", "num_epochs=2"]);
    let s = session::train(&config(hp, &data), options(&out)).unwrap();
    let m = s.best_metrics.clone().expect("validation metrics");
    assert!(m.multi_label);
    assert!(m.mean_average_precision.is_some());
    let text = vct_train::run::summary_text(&s);
    assert!(text.contains("mAP"), "{text}");
    let csv = std::fs::read_to_string(out.join("confusion.csv")).unwrap();
    assert!(csv.starts_with("concept,tn,fp,fn,tp"), "{csv}");
    // Per-image results keep every true concept of a row.
    let model = TrainedModel::load(&out, &Device::Cpu).unwrap();
    let val = model.validation_set().unwrap().unwrap();
    let truth: Vec<Vec<usize>> = val.items.iter().map(|i| i.labels.clone()).collect();
    let e = model.evaluate_images(val, 8).unwrap();
    assert!(truth.iter().any(|t| t.len() > 1));
    assert_eq!(
        e.images
            .iter()
            .map(|i| i.labels.clone())
            .collect::<Vec<_>>(),
        truth
    );
    assert_eq!(e.metrics.mean_average_precision, m.mean_average_precision);
}

#[test]
fn pretrained_files_load_and_wrong_architectures_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo(tmp.path(), false);
    // A "pretrained" BN-Inception file (1000 classes, as distributed).
    let donor = Classifier::new(&ModelConfig::new(Arch::BnInception, 1000), &Device::Cpu).unwrap();
    let good = tmp.path().join("bninception.safetensors");
    donor.save(&good).unwrap();
    let mut c = config(
        hparams(Template::InceptionBatchNorm, &["num_epochs=1"]),
        &data,
    );
    c.init = InitConfig {
        weights: Some(good),
        ..InitConfig::default()
    };
    let s = session::train(&c, options(&tmp.path().join("ok"))).unwrap();
    assert!(s.record.init.starts_with("pretrained"), "{}", s.record.init);

    let other = Classifier::new(&ModelConfig::new(Arch::ResNet18, 10), &Device::Cpu).unwrap();
    let wrong = tmp.path().join("resnet18.safetensors");
    other.save(&wrong).unwrap();
    c.init.weights = Some(wrong);
    let err = session::train(&c, options(&tmp.path().join("bad")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("conv1"), "the error should name keys: {err}");

    // No file anywhere: the error says where it looked and how to provide one.
    std::env::set_var("VCT_WEIGHTS_DIR", tmp.path().join("empty"));
    let mut c = config(hparams(Template::ResNext, &["num_epochs=1"]), &data);
    c.init = InitConfig::default();
    let mut o = options(&tmp.path().join("none"));
    o.offline = true;
    let err = session::train(&c, o).unwrap_err().to_string();
    assert!(err.contains("--random-init"), "{err}");
}

#[test]
fn corrupt_images_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo(tmp.path(), false);
    std::fs::write(data.join("train/circle/broken.png"), b"").unwrap();
    let png = std::fs::read(data.join("train/square/0000.png")).unwrap();
    std::fs::write(
        data.join("train/square/truncated.png"),
        &png[..png.len() / 2],
    )
    .unwrap();
    let out = tmp.path().join("run");
    let s = session::train(
        &config(hparams(Template::InceptionV2, &["num_epochs=1"]), &data),
        options(&out),
    )
    .unwrap();
    assert!(s.record.data.skipped >= 2, "{:?}", s.record.data);
    let run = std::fs::read_to_string(out.join("run.json")).unwrap();
    assert!(
        run.contains("broken.png") && run.contains("truncated.png"),
        "{run}"
    );
}

#[test]
fn missing_data_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-folder");
    let err = session::train(
        &config(hparams(Template::InceptionV2, &[]), &missing),
        options(&tmp.path().join("o")),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no-such-folder"), "{err}");
}

#[test]
fn rsb_extras_mix_batches_and_train() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo(tmp.path(), false);
    let out = tmp.path().join("run");
    let mut c = config(hparams(Template::RsbA1, &["num_epochs=1"]), &data);
    c.extras = vct_train::recipe::rsb_a1_extras();
    let s = session::train(&c, options(&out)).unwrap();
    assert_eq!(s.record.config.extras, vct_train::recipe::rsb_a1_extras());
    let run = std::fs::read_to_string(out.join("run.json")).unwrap();
    assert!(
        run.contains("\"cutmix_alpha\": 1.0") && run.contains("\"mixup_alpha\": 0.2"),
        "{run}"
    );
    assert!(epoch_losses(&out)[0].is_finite());
}

#[test]
fn softmax_on_a_multi_label_manifest_is_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo(tmp.path(), true);
    let out = tmp.path().join("run");
    let hp = hparams(Template::InceptionV2, &["logreg=0"]);
    let err = session::train(&config(hp, &data), options(&out))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.csv:") && err.contains("concepts (") && err.contains("logreg = 0"),
        "{err}"
    );
    assert!(
        !out.join("run.json").exists(),
        "refused before the run started"
    );
}
