//! A frozen backbone's head trained on cached embeddings equals the same training on
//! images with the same deterministic preprocessing; the cache is reused on resume and
//! rebuilt when an image changes.

use std::path::{Path, PathBuf};

use candle_core::Device;
use vct_hparams::{HyperParams, Template};
use vct_train::config::{DataConfig, InitConfig, RunConfig, ValSource};
use vct_train::data::{open_datasets, FolderSource};
use vct_train::outputs::ExistingRun;
use vct_train::recipe::Recipe;
use vct_train::run::{train_on, DataSummary, Progress, RunOptions, TrainData};

fn demo(dir: &Path) -> PathBuf {
    let cfg = vct_data::demo::DemoConfig {
        seed: 2,
        size: 40,
        train_per_class: 4,
        val_per_class: 2,
    };
    let root = dir.join("data");
    vct_data::demo::generate(&root, &cfg).unwrap();
    root
}

fn config(data: &Path, epochs: u32) -> RunConfig {
    let hp = HyperParams::defaults(Template::TransferEmbedNorm)
        .layered(
            None,
            &[
                "image_size=32".into(),
                "batch_size=4".into(),
                format!("num_epochs={epochs}"),
                "lrate=0.05".into(),
                "base_gradient_multiplier=0".into(),
                "logreg=0".into(),
            ],
        )
        .unwrap();
    RunConfig {
        hparams: hp,
        seed: 9,
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

fn head(out: &Path) -> Vec<(String, Vec<f32>)> {
    let t = candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .filter(|(k, _)| k.starts_with("embed_head"))
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn train(c: &RunConfig, out: &Path, cached: bool, existing: ExistingRun) {
    let (train_set, val_set) = open_datasets(&c.data.train, &c.data.val, c.seed).unwrap();
    let concepts = train_set.concepts.names().to_vec();
    let n = train_set.items.len();
    let recipe = Recipe::new(&c.hparams, concepts.len(), c.seed, &c.init).unwrap();
    assert!(recipe.backbone_frozen() && recipe.flip_average_eval);
    // Deterministic preprocessing (evaluation's) for training images, as the cache uses.
    let source = FolderSource::new(
        train_set,
        val_set,
        &recipe.preprocess,
        c.hparams.batch_size(),
        n,
        c.seed,
        Device::Cpu,
        c.extras,
        true,
    )
    .unwrap();
    let data = if cached {
        TrainData::FrozenCache(&source)
    } else {
        TrainData::Batches(&source)
    };
    let mut o = RunOptions::new(out);
    o.progress = Progress::Quiet;
    o.existing = existing;
    let resume =
        (existing == ExistingRun::Resume).then(|| vct_train::run::Resume::open(out).unwrap());
    train_on(c, data, &concepts, DataSummary::default(), o, resume).unwrap();
}

fn cache_files(out: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(out.join("embeddings"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn cached_embeddings_train_the_head_as_the_images_do() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo(tmp.path());
    let c = config(&data, 2);
    let (with, without) = (tmp.path().join("cached"), tmp.path().join("images"));
    train(&c, &with, true, ExistingRun::Refuse);
    train(&c, &without, false, ExistingRun::Refuse);
    assert!(!without.join("embeddings").exists());
    let (a, b) = (head(&with), head(&without));
    assert!(!a.is_empty(), "the normalised-embedding head has tensors");
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let scale = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            diff <= 1e-4 * scale,
            "{name}: cached and uncached differ by {diff}"
        );
    }
}

#[test]
fn the_cache_is_reused_on_resume_and_rebuilt_when_an_image_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo(tmp.path());
    let out = tmp.path().join("run");
    train(&config(&data, 1), &out, true, ExistingRun::Refuse);
    let first = cache_files(&out);
    assert_eq!(first.len(), 2, "{first:?}");
    // Resume for a second epoch: the same files, untouched.
    train(&config(&data, 2), &out, true, ExistingRun::Resume);
    assert_eq!(cache_files(&out), first);
    // Another image under the same name: the training set's key changes.
    let img = std::fs::read_dir(data.join("train/circle"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let other = std::fs::read_dir(data.join("train/square"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::copy(&other, &img).unwrap();
    train(&config(&data, 3), &out, true, ExistingRun::Resume);
    let after = cache_files(&out);
    assert_eq!(
        after.len(),
        2,
        "the old training cache is removed: {after:?}"
    );
    let train_name = |v: &[(String, std::time::SystemTime)]| {
        v.iter()
            .find(|(n, _)| n.starts_with("train-"))
            .unwrap()
            .0
            .clone()
    };
    assert_ne!(train_name(&after), train_name(&first));
    let val = |v: &[(String, std::time::SystemTime)]| {
        v.iter()
            .find(|(n, _)| n.starts_with("val-"))
            .cloned()
            .unwrap()
    };
    assert_eq!(
        val(&after),
        val(&first),
        "the validation images did not change"
    );
}
