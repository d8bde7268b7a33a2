//! A whole run: out-folder checks, model and weights, resume, the loop, and the
//! outputs (`model.safetensors`, `run.json`, `metrics.json`, `confusion.csv`,
//! `curves.svg`, `events.jsonl`, `checkpoints/`) and a one-screen summary.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use vct_arch::{Classifier, LoadOptions, WeightsLookup};
use vct_hparams::HyperParams;
use vct_metrics::EvalMetrics;

use crate::checkpoint;
use crate::loss::{Loss, Output, Reduction};
use crate::outputs::{prepare_out_dir, write_atomic, write_json, EventLog, ExistingRun};
use crate::plot::curves_svg;
use crate::progress::ProgressMode;
use crate::recipe::{Init, Preprocess, Recipe};
use crate::trainer::{fit, BatchSource, StopReason, TrainState, TrainerOptions};
use crate::TrainError;

/// The vct version written into run records.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Settings of a run that are not hyperparameters.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output folder.
    pub out: PathBuf,
    /// Run seed (weights, data order, augmentation).
    pub seed: u64,
    /// Refuse, resume or overwrite an existing run in `out`.
    pub existing: ExistingRun,
    /// Pretrained weights file (overrides the lookup).
    pub weights: Option<PathBuf>,
    /// Start from random weights even where the template expects pretrained ones.
    pub random_init: bool,
    /// Early-stopping patience in epochs.
    pub early_stopping: Option<usize>,
    /// Progress display.
    pub progress: ProgressMode,
    /// Compute device.
    pub device: Device,
    /// Set to stop at the next step (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// Recipe extras: Mixup / CutMix and RandAugment.
    pub extras: Extras,
}

/// Optional augmentations of the full RSB-A1 recipe, usable with any template.
/// Off by default: on small fine-tuning sets and short schedules they slow
/// convergence more than they regularise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Extras {
    /// Mixup / CutMix on training batches (targets mixed accordingly).
    pub mixup: Option<vct_augment::Mixup>,
    /// RandAugment `(n, m, std)` after the crop and flip.
    pub randaugment: Option<(usize, f64, f64)>,
}

impl Extras {
    /// The RSB-A1 paper's setting: Mixup 0.2, CutMix 1.0, RandAugment n 2, m 7, std 0.5.
    pub fn rsb_a1() -> Extras {
        Extras {
            mixup: Some(vct_augment::Mixup::rsb_a1()),
            randaugment: Some((2, 7.0, 0.5)),
        }
    }
}

impl RunOptions {
    /// Defaults: seed 0, refuse existing runs, CPU, progress on.
    pub fn new(out: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            out: out.into(),
            seed: 0,
            existing: ExistingRun::Refuse,
            weights: None,
            random_init: false,
            early_stopping: None,
            progress: ProgressMode::Auto,
            device: Device::Cpu,
            stop: Arc::new(AtomicBool::new(false)),
            extras: Extras::default(),
        }
    }
}

/// `run.json`: what was trained, with what, on what.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// vct version.
    pub vct_version: String,
    /// Template and hyperparameters.
    pub hparams: HyperParams,
    /// Concept names in output order.
    pub concepts: Vec<String>,
    /// Run seed.
    pub seed: u64,
    /// Architecture name.
    pub arch: String,
    /// Output layer.
    pub output: Output,
    /// Label smoothing of the training loss (absent, i.e. 0, in older runs).
    #[serde(default)]
    pub label_smoothing: f64,
    /// Reduction of the sigmoid loss (absent in older runs: the mean over elements).
    #[serde(default)]
    pub reduction: Reduction,
    /// Preprocessing, needed again by eval and predict.
    pub preprocess: Preprocess,
    /// Whether evaluation averages flipped embeddings.
    pub flip_average_eval: bool,
    /// Mixup / CutMix / RandAugment used in training.
    #[serde(default)]
    pub extras: Extras,
    /// Where the initial weights came from.
    pub init: String,
    /// Training images and validation images.
    pub data: DataSummary,
    /// How the run ended (absent while it runs).
    pub stop_reason: Option<StopReason>,
    /// Best epoch and its score (top-1, or mAP for multi-label data).
    pub best: Option<(f64, usize)>,
}

impl RunRecord {
    /// The run's training loss.
    pub fn loss(&self) -> Loss {
        Loss {
            output: self.output,
            label_smoothing: self.label_smoothing,
            reduction: self.reduction,
        }
    }
}

/// Sizes of the data a run saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DataSummary {
    /// Training set description (path).
    pub train: String,
    /// Training images.
    pub train_images: usize,
    /// Validation set description.
    pub val: Option<String>,
    /// Validation images.
    pub val_images: usize,
    /// Files skipped (hidden, not images, unreadable).
    pub skipped: usize,
    /// Files left out (while scanning, or unreadable during training), with the reason.
    #[serde(default)]
    pub skipped_files: Vec<String>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Output folder.
    pub out: PathBuf,
    /// Record written to `run.json`.
    pub record: RunRecord,
    /// Validation metrics of the best epoch.
    pub best_metrics: Option<EvalMetrics>,
    /// Epochs completed.
    pub epochs: usize,
    /// Mean training throughput.
    pub images_per_second: f64,
    /// Seconds of the whole run.
    pub seconds: f64,
}

/// Loads the pretrained weights the recipe asks for; returns a description.
fn initialise(
    model: &Classifier,
    recipe: &Recipe,
    opts: &RunOptions,
) -> Result<String, TrainError> {
    match recipe.init {
        Init::Random => Ok(format!("random (seed {})", opts.seed)),
        Init::Pretrained(arch) => {
            let lookup = WeightsLookup::from_env(opts.weights.clone());
            let path = lookup.resolve(arch.0).map_err(|e| {
                TrainError::Component(format!(
                    "{e}\n(or pass --random-init to train {} from random weights)",
                    recipe.hparams.template()
                ))
            })?;
            let report = model
                .load_weights(&path, LoadOptions::default())
                .map_err(|e| TrainError::Component(e.to_string()))?;
            if opts.progress != ProgressMode::Quiet {
                eprint!("{report}");
            }
            Ok(format!("pretrained {}", path.display()))
        }
    }
}

/// Trains `hparams` on `data` (whose concepts are `concepts`) into `opts.out`.
pub fn train_on(
    hparams: &HyperParams,
    data: &dyn BatchSource,
    concepts: &[String],
    data_summary: DataSummary,
    opts: &RunOptions,
) -> Result<RunSummary, TrainError> {
    let started = std::time::Instant::now();
    prepare_out_dir(&opts.out, opts.existing)?;
    let recipe = Recipe::new(hparams, concepts.len(), opts.seed, opts.random_init)?;
    let model = recipe.build_model(&opts.device)?;
    let mut optimizer = recipe.build_optimizer(&model)?;
    let schedule = recipe.schedule(data.train_steps().max(1))?;

    let (state, init) = if opts.existing == ExistingRun::Resume {
        let dir = checkpoint::checkpoint_dir(&opts.out, "last");
        let saved = checkpoint::load_state(&dir)?;
        checkpoint::check_compatible(&dir, &saved, hparams, concepts)?;
        model
            .load_weights(&dir.join("model.safetensors"), LoadOptions::default())
            .map_err(|e| TrainError::BadCheckpoint {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
        optimizer
            .load(&dir.join("optimizer.safetensors"))
            .map_err(|e| TrainError::BadCheckpoint {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
        if opts.progress != ProgressMode::Quiet {
            eprintln!(
                "resuming {} after epoch {}",
                opts.out.display(),
                saved.epoch
            );
        }
        let previous: Option<RunRecord> = std::fs::read_to_string(opts.out.join("run.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let init = previous.map(|r| r.init).unwrap_or_else(|| "resumed".into());
        (TrainState::from(&saved), init)
    } else {
        (TrainState::default(), initialise(&model, &recipe, opts)?)
    };

    let mut record = RunRecord {
        vct_version: VERSION.into(),
        hparams: hparams.clone(),
        concepts: concepts.to_vec(),
        seed: opts.seed,
        arch: model.arch().name().into(),
        output: recipe.loss.output,
        label_smoothing: recipe.loss.label_smoothing,
        reduction: recipe.loss.reduction,
        preprocess: recipe.preprocess.clone(),
        flip_average_eval: recipe.flip_average_eval,
        extras: opts.extras,
        init,
        data: data_summary,
        stop_reason: None,
        best: None,
    };
    write_json(&opts.out.join("run.json"), &record)?;
    let mut events = EventLog::open(&opts.out.join("events.jsonl"))?;
    let trainer_opts = TrainerOptions {
        out: opts.out.clone(),
        seed: opts.seed,
        progress: opts.progress,
        early_stopping: opts.early_stopping,
        stop: opts.stop.clone(),
        version: VERSION.into(),
    };
    let outcome = fit(
        &recipe,
        &model,
        &mut optimizer,
        &schedule,
        data,
        concepts,
        &trainer_opts,
        state,
        &mut events,
    )?;

    let skipped = data.skipped();
    record.data.skipped += skipped.len();
    record.data.skipped_files.extend(
        skipped
            .iter()
            .map(|(p, why)| format!("{}: {why}", p.display())),
    );
    record.stop_reason = Some(outcome.reason);
    record.best = outcome.state.best;
    write_json(&opts.out.join("run.json"), &record)?;
    // The delivered model is the best epoch's (the last one's without a better).
    let best_dir = checkpoint::checkpoint_dir(&opts.out, "best");
    let last_dir = checkpoint::checkpoint_dir(&opts.out, "last");
    let source = if best_dir.join("model.safetensors").exists() {
        best_dir
    } else {
        last_dir
    };
    let model_file = source.join("model.safetensors");
    if model_file.exists() {
        let bytes = std::fs::read(&model_file).map_err(|e| TrainError::Io {
            path: model_file.clone(),
            source: e,
        })?;
        write_atomic(&opts.out.join("model.safetensors"), &bytes)?;
    }
    let best_metrics = outcome
        .best_metrics
        .clone()
        .or(outcome.last_metrics.clone());
    if let Some(m) = &best_metrics {
        write_metrics(&opts.out, m)?;
    }
    let svg = curves_svg(
        &format!("{} — {}", hparams.template(), opts.out.display()),
        &outcome.state.history,
    )
    .map_err(|e| TrainError::Component(format!("plot: {e}")))?;
    write_atomic(&opts.out.join("curves.svg"), svg.as_bytes())?;
    Ok(RunSummary {
        out: opts.out.clone(),
        record,
        best_metrics,
        epochs: outcome.state.epoch,
        images_per_second: outcome.images_per_second,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Writes `metrics.json` and `confusion.csv` into `dir`.
pub fn write_metrics(dir: &Path, m: &EvalMetrics) -> Result<(), TrainError> {
    write_json(&dir.join("metrics.json"), m)?;
    write_atomic(&dir.join("confusion.csv"), confusion_csv(m).as_bytes())
}

/// The confusion matrix as CSV: `true\predicted` rows for single-label data,
/// `concept,tn,fp,fn,tp` rows for multi-label data.
pub fn confusion_csv(m: &EvalMetrics) -> String {
    let names: Vec<String> = m
        .per_concept
        .iter()
        .map(|c| csv_field(&c.concept))
        .collect();
    let mut s = String::new();
    if m.multi_label {
        s.push_str("concept,tn,fp,fn,tp\n");
        for (name, row) in names.iter().zip(&m.confusion) {
            let cells: Vec<String> = row.iter().map(u64::to_string).collect();
            s.push_str(&format!("{name},{}\n", cells.join(",")));
        }
    } else {
        s.push_str(&format!("true\\predicted,{}\n", names.join(",")));
        for (name, row) in names.iter().zip(&m.confusion) {
            let cells: Vec<String> = row.iter().map(u64::to_string).collect();
            s.push_str(&format!("{name},{}\n", cells.join(",")));
        }
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The end-of-run screen: metrics table, best epoch, where the outputs are.
pub fn summary_text(s: &RunSummary) -> String {
    let mut t = String::new();
    let r = &s.record;
    t.push_str(&format!(
        "\n{} ({}) — {} epochs in {:.0}s, {:.1} img/s, stopped: {:?}\n",
        r.hparams.template(),
        r.arch,
        s.epochs,
        s.seconds,
        s.images_per_second,
        r.stop_reason.unwrap_or(StopReason::Completed)
    ));
    if let Some((score, epoch)) = r.best {
        t.push_str(&format!("best epoch: {epoch} (score {score:.4})\n"));
    }
    if let Some(m) = &s.best_metrics {
        t.push_str(&metrics_table(m));
    }
    if r.data.skipped > 0 {
        t.push_str(&format!(
            "skipped files: {} (see run.json)\n",
            r.data.skipped
        ));
    }
    t.push_str(&format!(
        "outputs: {0}/model.safetensors, run.json, metrics.json, confusion.csv, curves.svg, events.jsonl, checkpoints/\n",
        s.out.display()
    ));
    t
}

/// Metrics as a small text table.
pub fn metrics_table(m: &EvalMetrics) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "validation: {} images, loss {:.4}, top-1 {:.2}%{}{}\n",
        m.count,
        m.loss.unwrap_or(f64::NAN),
        100.0 * m.top1,
        m.top5
            .map(|v| format!(", top-5 {:.2}%", 100.0 * v))
            .unwrap_or_default(),
        m.mean_average_precision
            .map(|v| format!(", mAP {v:.4}"))
            .unwrap_or_default()
    ));
    let width = m
        .per_concept
        .iter()
        .map(|c| c.concept.len())
        .max()
        .unwrap_or(7)
        .max(7);
    t.push_str(&format!(
        "  {:<width$}  {:>9} {:>7} {:>7} {:>7} {:>7}\n",
        "concept", "precision", "recall", "f1", "auc", "support"
    ));
    let shown = 20;
    for c in m.per_concept.iter().take(shown) {
        t.push_str(&format!(
            "  {:<width$}  {:>9.3} {:>7.3} {:>7.3} {:>7} {:>7}\n",
            c.concept,
            c.precision,
            c.recall,
            c.f1,
            c.roc_auc
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "-".into()),
            c.support
        ));
    }
    if m.per_concept.len() > shown {
        t.push_str(&format!(
            "  ... {} more in metrics.json\n",
            m.per_concept.len() - shown
        ));
    }
    t.push_str(&format!(
        "  {:<width$}  {:>9.3} {:>7.3} {:>7.3} {:>7}\n",
        "macro",
        m.macro_precision,
        m.macro_recall,
        m.macro_f1,
        m.macro_roc_auc
            .map(|v| format!("{v:.3}"))
            .unwrap_or_else(|| "-".into())
    ));
    t
}
