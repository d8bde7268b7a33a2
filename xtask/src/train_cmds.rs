//! `cargo xtask train | eval | predict`: the main job and its companions.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context};
use candle_core::Device;
use clap::Args;
use vct_hparams::{HyperParams, Template};
use vct_train::data::ValSource;
use vct_train::outputs::ExistingRun;
use vct_train::progress::ProgressMode;
use vct_train::run::{summary_text, RunOptions};
use vct_train::session::TrainedModel;

use crate::hparams_cmds::repo_root;

/// The template of the built-in demo: Inception-v2 trains from random weights,
/// so the demo needs no downloads.
pub const DEMO_TEMPLATE: Template = Template::InceptionV2;

/// Hyperparameters of the demo run, chosen to finish in a few minutes on 2 cores.
pub const DEMO_SETTINGS: &[&str] = &[
    "image_size=48",
    "batch_size=32",
    "num_epochs=8",
    "init_epochs=6",
    "step_epochs=2",
    "per_item_lrate=0.001",
    "logreg=0",
];

/// Arguments of `cargo xtask train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Template name (any case). Default: the demo's, Clarifai_InceptionV2.
    #[arg(long)]
    template: Option<String>,
    /// Training images: a folder `root/<concept>/<image>` (or with `train/` and
    /// `val/` inside), or a CSV / JSONL manifest. Default: the built-in demo data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Validation images (folder or manifest).
    #[arg(long, conflicts_with = "val_split")]
    val: Option<PathBuf>,
    /// Hold out this fraction of the training images for validation (stratified).
    #[arg(long)]
    val_split: Option<f64>,
    /// Train without validation.
    #[arg(long, conflicts_with_all = ["val", "val_split"])]
    no_val: bool,
    /// Hyperparameter file (.json/.yaml/.toml), full or partial.
    #[arg(long)]
    params: Option<PathBuf>,
    /// Override one hyperparameter, e.g. `--set batch_size=32` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Pretrained weights file (.safetensors or .pth) for templates that start pretrained.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Start from random weights even if the template expects pretrained ones.
    #[arg(long)]
    random_init: bool,
    /// Output folder (default: a new folder under `runs/`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of everything random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// `cpu`, `cuda:N` (build with --features cuda) or `metal` (--features metal).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Continue the run in this folder from its last checkpoint.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Replace a run already in --out.
    #[arg(long)]
    overwrite: bool,
    /// Stop after this many epochs without a better validation score.
    #[arg(long)]
    early_stopping: Option<usize>,
    /// Log lines instead of progress bars.
    #[arg(long)]
    plain: bool,
    /// Mixup on training batches with this Beta(α, α) (RSB-A1: 0.2).
    #[arg(long, value_name = "ALPHA")]
    mixup: Option<f64>,
    /// CutMix on training batches with this Beta(α, α) (RSB-A1: 1.0).
    #[arg(long, value_name = "ALPHA")]
    cutmix: Option<f64>,
    /// RandAugment after crop and flip: `N,M` or `N,M,STD` (RSB-A1: 2,7,0.5).
    #[arg(long, value_name = "N,M[,STD]")]
    randaugment: Option<String>,
    /// All of the RSB-A1 paper's extras: Mixup 0.2, CutMix 1.0, RandAugment 2,7,0.5.
    #[arg(long, conflicts_with_all = ["mixup", "cutmix", "randaugment"])]
    rsb_extras: bool,
}

/// Parses `--mixup`, `--cutmix`, `--randaugment` and `--rsb-extras`.
fn extras(args: &TrainArgs) -> anyhow::Result<vct_train::run::Extras> {
    if args.rsb_extras {
        return Ok(vct_train::run::Extras::rsb_a1());
    }
    for (flag, v) in [("--mixup", args.mixup), ("--cutmix", args.cutmix)] {
        if let Some(a) = v {
            if !(a.is_finite() && a > 0.0) {
                bail!("{flag} {a}: expected a positive alpha");
            }
        }
    }
    let mixup = (args.mixup.is_some() || args.cutmix.is_some()).then(|| vct_augment::Mixup {
        mixup_alpha: args.mixup.unwrap_or(0.0),
        cutmix_alpha: args.cutmix.unwrap_or(0.0),
        prob: 1.0,
        switch_prob: 0.5,
    });
    let randaugment = match &args.randaugment {
        None => None,
        Some(spec) => {
            let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
            let bad =
                || anyhow::anyhow!("--randaugment {spec}: expected N,M or N,M,STD (e.g. 2,7,0.5)");
            if !(2..=3).contains(&parts.len()) {
                return Err(bad());
            }
            let n: usize = parts[0].parse().map_err(|_| bad())?;
            let m: f64 = parts[1].parse().map_err(|_| bad())?;
            let std: f64 = parts
                .get(2)
                .map(|s| s.parse())
                .transpose()
                .map_err(|_| bad())?
                .unwrap_or(0.0);
            if !(0.0..=30.0).contains(&m) || !(0.0..).contains(&std) {
                return Err(bad());
            }
            Some((n, m, std))
        }
    };
    Ok(vct_train::run::Extras { mixup, randaugment })
}

/// Parses `--device`.
pub fn parse_device(spec: &str) -> anyhow::Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    if let Some(n) = spec.strip_prefix("cuda") {
        let index: usize = n.trim_start_matches(':').parse().unwrap_or(0);
        if !candle_core::utils::cuda_is_available() {
            bail!(
                "--device {spec}: this build has no CUDA support; rebuild with `--features cuda`"
            );
        }
        return Device::new_cuda(index).with_context(|| format!("opening CUDA device {index}"));
    }
    if spec == "metal" {
        if !candle_core::utils::metal_is_available() {
            bail!(
                "--device metal: this build has no Metal support; rebuild with `--features metal`"
            );
        }
        return Device::new_metal(0).context("opening the Metal device");
    }
    bail!("--device {spec}: expected cpu, cuda:N or metal")
}

/// A fresh folder under `runs/` named after the template.
fn fresh_out_dir(name: &str) -> PathBuf {
    let runs = repo_root().join("runs");
    (1..)
        .map(|i| {
            if i == 1 {
                runs.join(name)
            } else {
                runs.join(format!("{name}-{i}"))
            }
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| runs.join(name))
}

/// The built-in demo dataset: 4 shapes, 250 training and 50 validation images each.
pub fn demo_config() -> vct_data::demo::DemoConfig {
    vct_data::demo::DemoConfig {
        seed: 0,
        size: 64,
        train_per_class: 250,
        val_per_class: 50,
    }
}

/// Generates the built-in demo dataset (once) and returns its root.
fn demo_data() -> anyhow::Result<PathBuf> {
    let root = repo_root().join("target").join("vct-demo-data-1000");
    if !root.join("train").is_dir() || !root.join("val").is_dir() {
        let summary = vct_data::demo::generate(&root, &demo_config())
            .with_context(|| format!("generating the demo data in {}", root.display()))?;
        eprintln!(
            "generated the demo dataset in {}: {summary:?}",
            root.display()
        );
    }
    Ok(root)
}

/// Runs `cargo xtask train`.
pub fn train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    // Resuming without --data reads the images the run was trained on.
    let resumed_data = match (&args.resume, &args.data) {
        (Some(dir), None) => {
            let path = dir.join("run.json");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading {} (pass --data to name the images)",
                    path.display()
                )
            })?;
            let record: vct_train::run::RunRecord = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a vct run record", path.display()))?;
            Some(PathBuf::from(record.data.train))
        }
        _ => None,
    };
    let demo = args.data.is_none() && resumed_data.is_none();
    let data = match (&args.data, resumed_data) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => d,
        (None, None) => demo_data()?,
    };
    let requested = args
        .template
        .as_deref()
        .map(str::parse::<Template>)
        .transpose()?;

    // Hyperparameters: checkpoint's (resume) or defaults, then the file, then --set.
    let mut hp = match &args.resume {
        Some(dir) => {
            let state = vct_train::checkpoint::load_state(&vct_train::checkpoint::checkpoint_dir(
                dir, "last",
            ))?;
            if let Some(t) = requested {
                if t != state.hparams.template() {
                    bail!(
                        "--template {t} does not match the run in {} ({})",
                        dir.display(),
                        state.hparams.template()
                    );
                }
            }
            state.hparams
        }
        None => {
            let template = requested.unwrap_or(DEMO_TEMPLATE);
            let mut hp = HyperParams::defaults(template);
            if demo && args.params.is_none() {
                for s in DEMO_SETTINGS {
                    hp = hp.with_override(s)?;
                }
            }
            hp
        }
    };
    if let Some(file) = &args.params {
        hp = HyperParams::load(file, Some(hp.template()))?;
    }
    for s in &args.sets {
        hp = hp.with_override(s)?;
    }

    let (out, existing) = match (&args.resume, &args.out) {
        (Some(dir), _) => (dir.clone(), ExistingRun::Resume),
        (None, Some(out)) => (
            out.clone(),
            if args.overwrite {
                ExistingRun::Overwrite
            } else {
                ExistingRun::Refuse
            },
        ),
        (None, None) => (
            fresh_out_dir(if demo { "demo" } else { hp.template().name() }),
            ExistingRun::Refuse,
        ),
    };
    let val = if args.no_val {
        ValSource::None
    } else if let Some(v) = &args.val {
        ValSource::Path(v.clone())
    } else if let Some(f) = args.val_split {
        if !(0.0..1.0).contains(&f) || f == 0.0 {
            bail!("--val-split {f}: expected a fraction between 0 and 1");
        }
        ValSource::Split(f)
    } else {
        ValSource::Auto
    };
    let mut opts = RunOptions::new(&out);
    opts.seed = args.seed;
    opts.existing = existing;
    opts.weights = args.weights.clone();
    opts.random_init = args.random_init;
    opts.early_stopping = args.early_stopping;
    opts.progress = if args.plain {
        ProgressMode::Lines
    } else {
        ProgressMode::Auto
    };
    opts.device = parse_device(&args.device)?;
    opts.extras = extras(&args)?;
    let stop = opts.stop.clone();
    // First Ctrl-C: finish the current step and stop (the last checkpoint stays);
    // a second one exits at once.
    let _ = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: stopping after this step (Ctrl-C again to quit at once)");
    });

    eprintln!(
        "training {} on {} -> {}",
        hp.template(),
        data.display(),
        out.display()
    );
    let summary = vct_train::session::train(&hp, &data, &val, &opts)?;
    print!("{}", summary_text(&summary));
    if summary.record.stop_reason == Some(vct_train::trainer::StopReason::Interrupted) {
        eprintln!(
            "stopped early; continue with: cargo xtask train --resume {}",
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `cargo xtask eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run folder (holds run.json and model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Images to evaluate on (folder or manifest with the model's concepts).
    #[arg(long)]
    data: PathBuf,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Where to write metrics.json and confusion.csv (default: `<model>/eval`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// `cpu`, `cuda:N` or `metal`.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs `cargo xtask eval`.
pub fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let device = parse_device(&args.device)?;
    let model = TrainedModel::load(&args.model, &device)?;
    let metrics = model.evaluate(&args.data, args.batch_size)?;
    let out = args.out.unwrap_or_else(|| args.model.join("eval"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    vct_train::run::write_metrics(&out, &metrics)?;
    print!("{}", vct_train::run::metrics_table(&metrics));
    println!("wrote {}/metrics.json and confusion.csv", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `cargo xtask predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A run folder (holds run.json and model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many concepts to show per image.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// One JSON object per image instead of text.
    #[arg(long)]
    json: bool,
    /// Include the embedding (flip-averaged when the model was trained so).
    #[arg(long)]
    embeddings: bool,
    /// `cpu`, `cuda:N` or `metal`.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs `cargo xtask predict`.
pub fn predict(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let device = parse_device(&args.device)?;
    let model = TrainedModel::load(&args.model, &device)?;
    let predictions = model.predict(&args.images, args.top_k, args.embeddings)?;
    for p in &predictions {
        if args.json {
            println!("{}", serde_json::to_string(p)?);
        } else {
            println!("{}", p.image.display());
            for (concept, prob) in &p.concepts {
                println!("  {prob:.4}  {concept}");
            }
            if let Some(e) = &p.embedding {
                println!("  embedding: {} values", e.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
