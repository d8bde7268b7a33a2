//! `cargo xtask bench frozen`: epoch time of a frozen-backbone template trained on
//! cached embeddings vs on the images, same data, seed and deterministic
//! preprocessing (the path `vct_train::embed_cache` documents). Both runs go through
//! `vct_train::run::train_on`; per-epoch seconds come from each run's `events.jsonl`,
//! and the trained heads are compared, since the cached path must train the same head.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::Device;
use vct_hparams::{HyperParams, Template};
use vct_train::config::{DataConfig, InitConfig, RunConfig, ValSource};
use vct_train::data::{open_datasets, FolderSource};
use vct_train::recipe::Recipe;
use vct_train::run::{train_on, DataSummary, Progress, RunOptions, TrainData};

/// Arguments of `cargo xtask bench frozen`.
#[derive(Debug, clap::Args)]
pub struct FrozenArgs {
    /// Dataset (`train/` + `val/` folders, or concept folders); default:
    /// `../shared/data/hymenoptera_data`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Template; its backbone is frozen (`base_gradient_multiplier=0` for
    /// Clarifai_InceptionTransferEmbedNorm, `--freeze-backbone` for the others).
    #[arg(long, default_value = "Clarifai_InceptionTransferEmbedNorm")]
    pub template: String,
    /// Backbone weights (`.safetensors` / `.pth`); default: random weights, which time
    /// the same as pretrained ones.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Epochs of each run.
    #[arg(long, default_value_t = 3)]
    pub epochs: u32,
    /// Override hyperparameters, e.g. `--set image_size=160` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Keep the two run folders here instead of a temporary folder.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

/// One run's timings.
struct Timing {
    total: f64,
    epochs: Vec<f64>,
}

/// Runs the benchmark.
pub fn run(args: FrozenArgs) -> anyhow::Result<ExitCode> {
    let data = args.data.clone().unwrap_or_else(|| {
        crate::repo_root()
            .join("..")
            .join("shared")
            .join("data")
            .join("hymenoptera_data")
    });
    if !data.is_dir() {
        bail!(
            "{}: no such folder (pass --data with a dataset folder)",
            data.display()
        );
    }
    let template: Template = args.template.parse()?;
    let embed_norm = template == Template::TransferEmbedNorm;
    let mut sets = vec![format!("num_epochs={}", args.epochs)];
    if embed_norm {
        // The template's own way of freezing the backbone.
        sets.push("base_gradient_multiplier=0".into());
    }
    sets.extend(args.sets.iter().cloned());
    let hparams = HyperParams::defaults(template).layered(None, &sets)?;
    let config = RunConfig {
        hparams,
        seed: 0,
        data: DataConfig {
            train: data.clone(),
            val: ValSource::Auto,
        },
        extras: Default::default(),
        init: InitConfig {
            random_init: args.weights.is_none(),
            weights: args.weights.clone(),
            freeze_backbone: !embed_norm,
            ..InitConfig::default()
        },
        device: "cpu".into(),
        early_stopping: None,
        vct_version: vct_train::run::VERSION.into(),
    };
    // Lives until the end of the function; unused with --keep.
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let root = args
        .keep
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    println!(
        "{template} on {}, {} epochs, frozen backbone, {} threads",
        data.display(),
        args.epochs,
        candle_core::utils::get_num_threads()
    );
    let mut timings = Vec::new();
    for cached in [true, false] {
        let out = root.join(if cached { "cached" } else { "images" });
        let t = train_once(&config, &out, cached)?;
        println!(
            "{:<8} total {:>7.1}s  epochs {}",
            if cached { "cached" } else { "images" },
            t.total,
            t.epochs
                .iter()
                .map(|s| format!("{s:.3}s"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        timings.push(t);
    }
    let (c, u) = (&timings[0], &timings[1]);
    // Floored at 1 µs: a cached epoch of a tiny set can round to zero.
    let mean = |v: &[f64]| (v.iter().sum::<f64>() / v.len().max(1) as f64).max(1e-6);
    println!(
        "epoch: {:.3}s cached vs {:.3}s on images ({:.0}x); whole run {:.1}s vs {:.1}s ({:.1}x), \
         the cached run's extra time being the one pass that computes the embeddings",
        mean(&c.epochs),
        mean(&u.epochs),
        mean(&u.epochs) / mean(&c.epochs),
        c.total,
        u.total,
        u.total / c.total
    );
    let diff = head_difference(&root.join("cached"), &root.join("images"))?;
    println!("largest difference between the two trained heads, relative to the largest weight: {diff:.2e}");
    Ok(ExitCode::SUCCESS)
}

fn train_once(config: &RunConfig, out: &Path, cached: bool) -> anyhow::Result<Timing> {
    let started = Instant::now();
    let (train_set, val_set) = open_datasets(&config.data.train, &config.data.val, config.seed)?;
    let concepts = train_set.concepts.names().to_vec();
    let n = train_set.items.len();
    let recipe = Recipe::new(&config.hparams, concepts.len(), config.seed, &config.init)?;
    // The images run gets the deterministic preprocessing the cache computes, so the
    // two train the same head and differ only in where the embeddings come from.
    let source = FolderSource::new(
        train_set,
        val_set,
        &recipe.preprocess,
        config.hparams.batch_size(),
        n,
        config.seed,
        Device::Cpu,
        config.extras,
        true,
    )?;
    let data = match cached {
        true => TrainData::FrozenCache(&source),
        false => TrainData::Batches(&source),
    };
    let mut opts = RunOptions::new(out);
    opts.progress = Progress::Quiet;
    opts.existing = vct_train::outputs::ExistingRun::Overwrite;
    train_on(config, data, &concepts, DataSummary::default(), opts, None)?;
    let total = started.elapsed().as_secs_f64();
    let events = std::fs::read_to_string(out.join("events.jsonl"))
        .with_context(|| format!("{}: reading events.jsonl", out.display()))?;
    let epochs = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "epoch")
        .filter_map(|v| v["seconds"].as_f64())
        .collect();
    Ok(Timing { total, epochs })
}

/// The largest absolute difference between the two runs' head tensors, relative to the
/// largest head weight.
fn head_difference(a: &Path, b: &Path) -> anyhow::Result<f64> {
    let load = |dir: &Path| -> anyhow::Result<Vec<(String, Vec<f32>)>> {
        let file = dir.join("model.safetensors");
        let t = candle_core::safetensors::load(&file, &Device::Cpu)
            .with_context(|| format!("{}", file.display()))?;
        let mut v = Vec::new();
        for (k, t) in t {
            if k.contains("head") || k.starts_with("fc") || k.starts_with("classifier") {
                v.push((k, t.flatten_all()?.to_vec1::<f32>()?));
            }
        }
        v.sort_by(|x, y| x.0.cmp(&y.0));
        Ok(v)
    };
    let (x, y) = (load(a)?, load(b)?);
    if x.is_empty() || x.len() != y.len() {
        bail!("the two runs' heads differ in their tensors");
    }
    let (mut diff, mut scale) = (0f32, 1e-12f32);
    for ((_, p), (_, q)) in x.iter().zip(&y) {
        for (u, v) in p.iter().zip(q) {
            diff = diff.max((u - v).abs());
            scale = scale.max(v.abs());
        }
    }
    Ok(f64::from(diff / scale))
}
