//! `train | eval | predict`: the main job and its companions.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context as _};
use candle_core::Device;
use clap::Args;
use vct_hparams::{HyperParams, Template};
use vct_train::config::{DataConfig, Extras, InitConfig, RunConfig, ValSource};
use vct_train::outputs::ExistingRun;
use vct_train::run::{summary_text, Progress, RunOptions, VERSION};
use vct_train::session::TrainedModel;

use vct_data::check::SplitPath;

use crate::plot::CurvesHook;
use crate::progress::ProgressBarHook;
use crate::report;
use crate::tensorboard::TensorBoardHook;
use crate::Context;

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

/// Arguments of `train`.
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
    /// Another pretrained source than the template's: `ORG/REPO[:FILE]` on the Hugging
    /// Face Hub, or a URL.
    #[arg(long, value_name = "SOURCE")]
    weights_source: Option<String>,
    /// Never open a network connection (weights must be local or already cached).
    #[arg(long)]
    offline: bool,
    /// Start from random weights even if the template expects pretrained ones.
    #[arg(long)]
    random_init: bool,
    /// Train only the head on a frozen backbone (linear probing), with each image's
    /// embedding computed once.
    #[arg(long)]
    freeze_backbone: bool,
    /// Output folder (default: a new folder under `runs/`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of everything random (default 0).
    #[arg(long)]
    seed: Option<u64>,
    /// `cpu` (default), `cuda:N` (build with --features cuda) or `metal` (--features metal).
    #[arg(long)]
    device: Option<String>,
    /// Continue the run in this folder from its last checkpoint, with its own settings.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Replace a run already in --out (the old run is moved aside, never deleted).
    #[arg(long)]
    overwrite: bool,
    /// Stop after this many epochs without a better validation score.
    #[arg(long)]
    early_stopping: Option<usize>,
    /// Log lines instead of progress bars.
    #[arg(long)]
    plain: bool,
    /// Print more: where the weights came from, oneDNN fallbacks.
    #[arg(long, short)]
    verbose: bool,
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
    /// Skip the quick data check (empty and non-image files, duplicates, counts)
    /// that runs before training.
    #[arg(long)]
    no_data_check: bool,
    /// Write TensorBoard event files (loss and lr per step, validation metrics per
    /// epoch) into DIR. Default: the run folder's `tensorboard/`.
    #[arg(long, value_name = "DIR")]
    tensorboard: Option<PathBuf>,
    /// Write no TensorBoard event files.
    #[arg(long, conflicts_with = "tensorboard")]
    no_tensorboard: bool,
    /// Skip `report.html` (the evaluation report written at the end).
    #[arg(long)]
    no_report: bool,
}

impl TrainArgs {
    fn extras_given(&self) -> bool {
        self.rsb_extras
            || self.mixup.is_some()
            || self.cutmix.is_some()
            || self.randaugment.is_some()
    }
}

/// Parses `--mixup`, `--cutmix`, `--randaugment` and `--rsb-extras`.
fn extras(args: &TrainArgs) -> anyhow::Result<Extras> {
    if args.rsb_extras {
        return Ok(vct_train::recipe::rsb_a1_extras());
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
    Ok(Extras { mixup, randaugment })
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
fn fresh_out_dir(runs: &Path, name: &str) -> PathBuf {
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
fn demo_data(ctx: &Context) -> anyhow::Result<PathBuf> {
    let root = ctx.demo_data.clone();
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

/// The validation setting the flags ask for (`None`: not given).
fn val_source(args: &TrainArgs) -> anyhow::Result<Option<ValSource>> {
    Ok(if args.no_val {
        Some(ValSource::None)
    } else if let Some(v) = &args.val {
        Some(ValSource::Path(v.clone()))
    } else if let Some(f) = args.val_split {
        if !(0.0..1.0).contains(&f) || f == 0.0 {
            bail!("--val-split {f}: expected a fraction between 0 and 1");
        }
        Some(ValSource::Split(f))
    } else {
        None
    })
}

/// The configuration a resume asks for: the run's own, with only what the flags give
/// changed (the library refuses every change a resume cannot take, naming each).
fn resume_request(dir: &Path, args: &TrainArgs) -> anyhow::Result<RunConfig> {
    let stored = vct_train::session::resume_config(dir)?;
    let mut c = stored.clone();
    if let Some(t) = args.template.as_deref() {
        let t: Template = t.parse()?;
        if t != stored.hparams.template() {
            bail!(
                "--template {t} does not match the run in {} ({})",
                dir.display(),
                stored.hparams.template()
            );
        }
    }
    c.hparams = stored.hparams.layered(args.params.as_deref(), &args.sets)?;
    if let Some(s) = args.seed {
        c.seed = s;
    }
    if let Some(d) = &args.data {
        c.data.train = d.canonicalize().unwrap_or_else(|_| d.clone());
    }
    if let Some(v) = val_source(args)? {
        c.data.val = match v {
            ValSource::Path(p) => ValSource::Path(p.canonicalize().unwrap_or(p)),
            other => other,
        };
    }
    if args.extras_given() {
        c.extras = extras(args)?;
    }
    if args.random_init {
        c.init.random_init = true;
    }
    if args.freeze_backbone {
        c.init.freeze_backbone = true;
    }
    if let Some(w) = &args.weights {
        c.init.weights = Some(w.clone());
    }
    if let Some(w) = &args.weights_source {
        c.init.weights_source = Some(w.clone());
    }
    if let Some(d) = &args.device {
        c.device = d.clone();
    }
    if args.early_stopping.is_some() {
        c.early_stopping = args.early_stopping;
    }
    Ok(c)
}

/// Runs `train`.
pub fn train(args: TrainArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let (config, out, existing) = match &args.resume {
        Some(dir) => (
            resume_request(dir, &args)?,
            dir.clone(),
            ExistingRun::Resume,
        ),
        None => {
            let demo = args.data.is_none();
            let data = match &args.data {
                Some(d) => d.clone(),
                None => demo_data(ctx)?,
            };
            let template = args
                .template
                .as_deref()
                .map(str::parse::<Template>)
                .transpose()?
                .unwrap_or(DEMO_TEMPLATE);
            let mut base = HyperParams::defaults(template);
            if demo && args.params.is_none() && template == DEMO_TEMPLATE {
                let demo_sets: Vec<String> = DEMO_SETTINGS.iter().map(|s| s.to_string()).collect();
                base = base.layered(None, &demo_sets)?;
            }
            // Every mistake of the file and of every --set at once.
            let hparams = base.layered(args.params.as_deref(), &args.sets)?;
            let config = RunConfig {
                hparams,
                seed: args.seed.unwrap_or(0),
                data: DataConfig {
                    train: data,
                    val: val_source(&args)?.unwrap_or(ValSource::Auto),
                },
                extras: extras(&args)?,
                init: InitConfig {
                    random_init: args.random_init,
                    weights: args.weights.clone(),
                    weights_source: args.weights_source.clone(),
                    freeze_backbone: args.freeze_backbone,
                },
                device: args.device.clone().unwrap_or_else(|| "cpu".into()),
                early_stopping: args.early_stopping,
                vct_version: VERSION.into(),
            };
            let (out, existing) = match &args.out {
                Some(out) => (
                    out.clone(),
                    if args.overwrite {
                        ExistingRun::Overwrite
                    } else {
                        ExistingRun::Refuse
                    },
                ),
                None => (
                    fresh_out_dir(
                        &ctx.runs,
                        if demo {
                            "demo"
                        } else {
                            config.hparams.template().name()
                        },
                    ),
                    ExistingRun::Refuse,
                ),
            };
            (config, out, existing)
        }
    };
    if let Some(w) = &config.init.weights_source {
        vct_hub::WeightsSource::parse_override(w)
            .with_context(|| format!("--weights-source {w}"))?;
    }
    let mut opts = RunOptions::new(&out);
    opts.existing = existing;
    opts.device = parse_device(&config.device)?;
    opts.verbose = args.verbose;
    opts.offline = args.offline;
    let bars = !args.plain && std::io::stderr().is_terminal();
    opts.progress = if bars {
        Progress::Quiet
    } else {
        Progress::Lines
    };
    if bars {
        opts.hooks.push(Box::new(ProgressBarHook::new()));
        // The data summary and other messages still print.
    }
    opts.hooks.push(Box::new(CurvesHook::new(
        out.join("curves.svg"),
        format!("{} — {}", config.hparams.template(), out.display()),
    )));
    let tensorboard = (!args.no_tensorboard).then(|| {
        args.tensorboard
            .clone()
            .unwrap_or_else(|| out.join("tensorboard"))
    });
    if let Some(dir) = &tensorboard {
        opts.hooks.push(Box::new(TensorBoardHook::new(dir.clone())));
    }
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
        config.hparams.template(),
        config.data.train.display(),
        out.display()
    );
    if !args.no_data_check {
        let (layout_train, found_val) = match vct_data::find_splits(&config.data.train) {
            Some((t, v)) => (t, v),
            None => (config.data.train.clone(), None),
        };
        let mut splits = vec![SplitPath::new("train", layout_train)];
        match &config.data.val {
            ValSource::Path(p) => splits.push(SplitPath::new("val", p)),
            ValSource::Auto => splits.extend(found_val.map(|v| SplitPath::new("val", v))),
            ValSource::Split(_) | ValSource::None => {}
        }
        let image_size = u32::try_from(config.hparams.image_size()).unwrap_or(u32::MAX);
        crate::data::precheck(&splits, &config.data.train, image_size, &ctx.prog, 5);
    }
    let device = opts.device.clone();
    let summary = vct_train::session::train(&config, opts)?;
    print!("{}", summary_text(&summary));
    if let Some(dir) = &tensorboard {
        println!("TensorBoard: tensorboard --logdir {}", dir.display());
    }
    let interrupted =
        summary.record.stop_reason == Some(vct_train::trainer::StopReason::Interrupted);
    if interrupted {
        eprintln!(
            "stopped early; continue with: {} train --resume {}",
            ctx.prog,
            summary.out.display()
        );
    } else if !args.no_report {
        // The run's outputs stand already: a report that fails is a warning.
        let path = summary.out.join("report.html");
        let started = std::time::Instant::now();
        match report::run_report(&summary.out, &device)
            .and_then(|input| report::write_report(&path, &input))
        {
            Ok(()) => println!(
                "report: {} ({:.1}s)",
                path.display(),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("warning: no report.html: {e:#}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run folder (holds run.json and model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Images to evaluate on (folder or manifest with the model's concepts). Default:
    /// the run's own validation set (its folder, or the same seeded split).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Where to write metrics.json and confusion.csv (default: `<model>/eval`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// `cpu`, `cuda:N` or `metal`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also write the HTML evaluation report (curves, per-concept metrics, confusion
    /// heat map, PR/ROC, calibration, the most confidently wrong images) to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

/// Runs `eval`.
pub fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let device = parse_device(&args.device)?;
    let model = TrainedModel::load(&args.model, &device)?;
    let (set, name) = match &args.data {
        Some(d) => (model.open_data(d)?, d.display().to_string()),
        None => match model.validation_set()? {
            Some(set) => (
                set,
                format!("the validation set of {}", args.model.display()),
            ),
            None => bail!(
                "{} was trained without a validation set; pass --data DIR",
                args.model.display()
            ),
        },
    };
    let images = set.items.len();
    let evaluation = model.evaluate_images(set, args.batch_size)?;
    let metrics = evaluation.metrics.clone();
    let out = args.out.unwrap_or_else(|| args.model.join("eval"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    vct_train::run::write_metrics(&out, &metrics)?;
    print!("{}", vct_train::run::metrics_table(&metrics));
    println!("wrote {}/metrics.json and confusion.csv", out.display());
    if let Some(path) = &args.report {
        let name = format!("{name} ({images} images)");
        let input = report::report_input(&model, Some((name, evaluation)));
        report::write_report(path, &input)?;
        println!("report: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `predict`.
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
    /// One JSON object per image instead of text (`error` set for an image that failed).
    #[arg(long)]
    json: bool,
    /// Include the embedding (flip-averaged when the model was trained so).
    #[arg(long)]
    embeddings: bool,
    /// `cpu`, `cuda:N` or `metal`.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs `predict`: every readable image is scored; each failure is reported by path,
/// and the exit code is 1 if any image failed.
pub fn predict(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let device = parse_device(&args.device)?;
    let model = TrainedModel::load(&args.model, &device)?;
    let mut failed = 0usize;
    for (path, result) in
        args.images
            .iter()
            .zip(model.predict(&args.images, args.top_k, args.embeddings))
    {
        match result {
            Ok(p) if args.json => println!("{}", serde_json::to_string(&p)?),
            Ok(p) => {
                println!("{}", p.image.display());
                for (concept, prob) in &p.concepts {
                    println!("  {prob:.4}  {concept}");
                }
                if let Some(e) = &p.embedding {
                    println!("  embedding: {} values", e.len());
                }
            }
            Err(e) => {
                failed += 1;
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"image": path, "error": e.to_string()})
                    );
                } else {
                    eprintln!("{}: {e}", path.display());
                }
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "{failed} of {} images could not be scored",
            args.images.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
