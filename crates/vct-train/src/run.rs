//! A whole run: the model and its initial weights, the output folder (new, resumed or
//! overwritten, see [`crate::outputs`]), the trainer with its hooks, and the outputs
//! (`model.safetensors`, `run.json`, `metrics.json`, `confusion.csv`, `events.jsonl`,
//! `checkpoints/`) and a one-screen summary.
//!
//! Every check runs before the output folder is touched: hyperparameters, data, epoch
//! size, the memory estimate, the initial weights. A new run then writes `run.json` and
//! an epoch-0 checkpoint (the initial state), so it can be resumed from its first step.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use vct_arch::{Classifier, LoadOptions};
use vct_hparams::HyperParams;
use vct_metrics::EvalMetrics;

use crate::checkpoint::{self, CheckpointState, Checkpoints};
use crate::config::{Extras, RunConfig};
use crate::data::FolderSource;
use crate::embed_cache::EmbeddingCache;
use crate::hooks::{save_checkpoint, Checkpointer, EarlyStopping, EventLogHook, LineProgress};
use crate::loss::{Loss, Output, Reduction};
use crate::outputs::{write_atomic, write_json, EventLog, ExistingRun, RunLock, Staging};
use crate::recipe::{Init, Preprocess, Recipe};
use crate::trainer::{BatchSource, Hook, StopReason, TrainState, Trainer};
use crate::weights::WeightsResolver;
use crate::TrainError;

/// The vct version written into run records.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How much a run prints on its own (the CLI adds a progress bar as a hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Log lines on stderr: one per epoch and one every ten seconds.
    Lines,
    /// Nothing (library use, tests, or when another hook shows progress).
    Quiet,
}

/// Settings of a run that are not part of its configuration (they change nothing it
/// computes): where it writes, how it talks, when it stops.
pub struct RunOptions {
    /// Output folder.
    pub out: PathBuf,
    /// Refuse, resume or overwrite an existing run in `out`.
    pub existing: ExistingRun,
    /// The device `config.device` names, opened by the caller.
    pub device: Device,
    /// What the run prints.
    pub progress: Progress,
    /// Print more: the oneDNN fallback counts, where weights came from.
    pub verbose: bool,
    /// Never open a network connection (weights must be local or cached).
    pub offline: bool,
    /// Set to stop at the next step (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// More hooks (a progress bar, TensorBoard, plots), run after the run's own.
    pub hooks: Vec<Box<dyn Hook>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("out", &self.out)
            .field("existing", &self.existing)
            .field("progress", &self.progress)
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

impl RunOptions {
    /// Defaults: refuse existing runs, CPU, log lines.
    pub fn new(out: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            out: out.into(),
            existing: ExistingRun::Refuse,
            device: Device::Cpu,
            progress: Progress::Lines,
            verbose: false,
            offline: false,
            stop: Arc::new(AtomicBool::new(false)),
            hooks: Vec::new(),
        }
    }

    fn say(&self, text: impl AsRef<str>) {
        if self.progress != Progress::Quiet {
            eprintln!("{}", text.as_ref());
        }
    }
}

/// `run.json`: what was trained, with what, on what.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// vct version.
    pub vct_version: String,
    /// The whole run configuration.
    pub config: RunConfig,
    /// Concept names in output order.
    pub concepts: Vec<String>,
    /// Architecture name.
    pub arch: String,
    /// The training loss (output layer, label smoothing, reduction).
    pub loss: Loss,
    /// Preprocessing, needed again by eval and predict.
    pub preprocess: Preprocess,
    /// Whether evaluation averages flipped embeddings.
    pub flip_average_eval: bool,
    /// Where the initial weights came from.
    pub init: String,
    /// Training images and validation images.
    pub data: DataSummary,
    /// How the run ended (absent while it runs).
    pub stop_reason: Option<StopReason>,
    /// Best epoch and its score (top-1, or mAP for multi-label data).
    pub best: Option<(f64, usize)>,
}

/// The `run.json` of vct 0.1's first layout, read so its models still evaluate.
#[derive(Deserialize)]
struct LegacyRecord {
    vct_version: String,
    hparams: HyperParams,
    concepts: Vec<String>,
    seed: u64,
    arch: String,
    output: Output,
    #[serde(default)]
    label_smoothing: f64,
    #[serde(default)]
    reduction: Reduction,
    preprocess: Preprocess,
    flip_average_eval: bool,
    #[serde(default)]
    extras: Extras,
    init: String,
    data: DataSummary,
    stop_reason: Option<StopReason>,
    best: Option<(f64, usize)>,
}

impl RunRecord {
    /// Reads `run.json` (either layout).
    pub fn read(path: &Path) -> Result<RunRecord, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |e: serde_json::Error| TrainError::BadCheckpoint {
            path: path.to_path_buf(),
            reason: format!("not a vct run record: {e}"),
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
        if value.get("config").is_some() {
            return serde_json::from_value(value).map_err(bad);
        }
        let old: LegacyRecord = serde_json::from_value(value).map_err(bad)?;
        Ok(RunRecord {
            config: RunConfig {
                hparams: old.hparams,
                seed: old.seed,
                data: crate::config::DataConfig {
                    train: old.data.train.clone().into(),
                    val: match &old.data.val {
                        Some(v) => crate::config::ValSource::Path(v.into()),
                        None => crate::config::ValSource::Auto,
                    },
                },
                extras: old.extras,
                init: Default::default(),
                device: "cpu".into(),
                early_stopping: None,
                vct_version: old.vct_version.clone(),
            },
            vct_version: old.vct_version,
            concepts: old.concepts,
            arch: old.arch,
            loss: Loss {
                output: old.output,
                label_smoothing: old.label_smoothing,
                reduction: old.reduction,
            },
            preprocess: old.preprocess,
            flip_average_eval: old.flip_average_eval,
            init: old.init,
            data: old.data,
            stop_reason: old.stop_reason,
            best: old.best,
        })
    }

    /// The run's training loss.
    pub fn loss(&self) -> Loss {
        self.loss
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
    /// Where an overwritten run was moved to.
    pub previous_run: Option<PathBuf>,
}

/// A run to continue: its lock, its newest checkpoint and that checkpoint's state.
#[derive(Debug)]
pub struct Resume {
    /// The lock on the run folder.
    pub lock: RunLock,
    /// The checkpoint folder `LATEST` names.
    pub dir: PathBuf,
    /// Its state.
    pub state: CheckpointState,
}

impl Resume {
    /// Locks the run in `out` and reads its newest checkpoint, after removing what
    /// crashed writers left behind.
    pub fn open(out: &Path) -> Result<Resume, TrainError> {
        let nothing = || TrainError::NothingToResume {
            path: out.to_path_buf(),
            why: if out.join("run.json").exists() {
                "the run stopped before its first checkpoint was complete; start it again \
                 with --overwrite"
                    .into()
            } else {
                "no run.json and no checkpoints/LATEST".into()
            },
        };
        if !out.join("checkpoints").is_dir() {
            return Err(nothing());
        }
        let lock = RunLock::acquire(out)?;
        let checkpoints = Checkpoints::new(out);
        checkpoints.remove_stale()?;
        let dir = checkpoints.latest_dir()?.ok_or_else(nothing)?;
        let state = checkpoint::load_state(&dir)?;
        Ok(Resume { lock, dir, state })
    }
}

/// Loads the pretrained weights the recipe asks for; returns a description.
fn initialise(
    model: &Classifier,
    recipe: &Recipe,
    config: &RunConfig,
    opts: &RunOptions,
) -> Result<String, TrainError> {
    match recipe.init {
        Init::Random => Ok(format!("random (seed {})", config.seed)),
        Init::Pretrained(arch) => {
            let source = config
                .init
                .weights_source
                .as_deref()
                .map(vct_hub::WeightsSource::parse_override)
                .transpose()
                .map_err(|e| TrainError::Component(format!("--weights-source: {e}")))?;
            let resolved = WeightsResolver::from_env(config.init.weights.clone())
                .offline(opts.offline)
                .with_source(source)
                .resolve(config.hparams.template(), arch.0)?;
            let report = model
                .load_weights(&resolved.path, LoadOptions::fine_tune())
                .map_err(|e| TrainError::Component(e.to_string()))?;
            if opts.verbose {
                opts.say(report.to_string());
            }
            Ok(format!(
                "pretrained {} ({})",
                resolved.path.display(),
                resolved.origin
            ))
        }
    }
}

/// What a run trains on.
#[derive(Clone, Copy)]
pub enum TrainData<'a> {
    /// Any source of batches.
    Batches(&'a dyn BatchSource),
    /// Folder data whose embeddings a frozen backbone computes once (cached in the run
    /// folder, see [`crate::embed_cache`]).
    FrozenCache(&'a FolderSource),
}

impl std::fmt::Debug for TrainData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrainData::Batches(_) => "TrainData::Batches",
            TrainData::FrozenCache(_) => "TrainData::FrozenCache",
        })
    }
}

/// Trains `config` on `data` (whose concepts are `concepts`) into `opts.out`; with
/// `resume`, continues that run.
pub fn train_on(
    config: &RunConfig,
    data: TrainData<'_>,
    concepts: &[String],
    data_summary: DataSummary,
    mut opts: RunOptions,
    resume: Option<Resume>,
) -> Result<RunSummary, TrainError> {
    let started = std::time::Instant::now();
    let recipe = Recipe::new(&config.hparams, concepts.len(), config.seed, &config.init)?;
    let steps = match data {
        TrainData::Batches(d) => d.train_steps(),
        TrainData::FrozenCache(f) => f.train_steps(),
    };
    recipe.check_memory()?;
    let model = recipe.build_model(&opts.device)?;
    let mut optimizer = recipe.build_optimizer(&model)?;
    let schedule = recipe.schedule(steps.max(1))?;
    let mut record = RunRecord {
        vct_version: VERSION.into(),
        config: config.clone(),
        concepts: concepts.to_vec(),
        arch: model.arch().name().into(),
        loss: recipe.loss,
        preprocess: recipe.preprocess.clone(),
        flip_average_eval: recipe.flip_average_eval,
        init: String::new(),
        data: data_summary,
        stop_reason: None,
        best: None,
    };

    let (out, _lock, state, previous_run) = match resume {
        Some(r) => {
            checkpoint::check_compatible(&r.dir, &r.state, config, concepts)?;
            let bad = |e: String| TrainError::BadCheckpoint {
                path: r.dir.clone(),
                reason: e,
            };
            // The checkpoint is this very model: every tensor, head included, must fit.
            model
                .load_weights(&r.dir.join("model.safetensors"), LoadOptions::exact())
                .map_err(|e| bad(e.to_string()))?;
            optimizer
                .load(&r.dir.join("optimizer.safetensors"))
                .map_err(|e| bad(e.to_string()))?;
            opts.say(format!(
                "resuming {} after epoch {} (of {})",
                opts.out.display(),
                r.state.epoch,
                config.hparams.num_epochs()
            ));
            let previous = RunRecord::read(&opts.out.join("run.json")).ok();
            record.init = previous.map(|p| p.init).unwrap_or_else(|| "resumed".into());
            let state = TrainState {
                epoch: r.state.epoch,
                global_step: r.state.global_step,
                best: r.state.best.clone(),
                epochs_since_best: r.state.epochs_since_best,
                history: r.state.history.clone(),
            };
            (opts.out.clone(), r.lock, state, None)
        }
        None => {
            record.init = initialise(&model, &recipe, config, &opts)?;
            let staging = Staging::new(&opts.out, opts.existing)?;
            let prepared = (|| {
                write_json(&staging.dir.join("run.json"), &record)?;
                save_checkpoint(
                    &Checkpoints::new(&staging.dir),
                    config,
                    concepts,
                    &model,
                    &optimizer,
                    &TrainState::default(),
                    false,
                )
            })();
            if let Err(e) = prepared {
                staging.abandon();
                return Err(e);
            }
            let (out, lock, previous) = staging.commit()?;
            if let Some(p) = &previous {
                opts.say(format!(
                    "the previous run in {} is now in {}",
                    out.display(),
                    p.display()
                ));
            }
            (out, lock, TrainState::default(), previous)
        }
    };
    write_json(&out.join("run.json"), &record)?;
    let cache;
    let data: &dyn BatchSource = match data {
        TrainData::Batches(d) => d,
        TrainData::FrozenCache(f) => {
            let t = std::time::Instant::now();
            cache = EmbeddingCache::build(&model, recipe.flip_average_eval, f, &out)?;
            opts.say(format!(
                "frozen backbone: embeddings {} ({:.1}s): {}",
                if cache.computed {
                    "computed"
                } else {
                    "read from the cache"
                },
                t.elapsed().as_secs_f64(),
                cache
                    .files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            &cache
        }
    };
    let checkpoints = Checkpoints::new(&out);
    // Events of an epoch a crash interrupted are written again by this run.
    let events = EventLog::open(
        &out.join("events.jsonl"),
        Some((state.epoch, state.global_step)),
    )?;
    let mut builder = Trainer::builder(
        &model,
        &mut optimizer,
        &schedule,
        recipe.loss,
        data,
        concepts,
        config.hparams.num_epochs(),
    )
    .frozen_backbone(recipe.backbone_frozen())
    .flip_average(recipe.flip_average_eval)
    .stop_flag(opts.stop.clone())
    .hook(EventLogHook::new(events))
    .hook(Checkpointer::new(
        checkpoints.clone(),
        config.clone(),
        concepts.to_vec(),
    ));
    if let Some(patience) = config.early_stopping {
        builder = builder.hook(EarlyStopping::new(patience));
    }
    if opts.progress == Progress::Lines {
        builder = builder.hook(LineProgress::new(Duration::from_secs(10)));
    }
    for h in std::mem::take(&mut opts.hooks) {
        builder = builder.boxed_hook(h);
    }
    let mut trainer = builder.build();
    let outcome = trainer.fit(state).map_err(|e| match e {
        TrainError::NonFiniteLoss {
            value, epoch, step, ..
        } => TrainError::NonFiniteLoss {
            value,
            epoch,
            step,
            checkpoint: checkpoints.root().join(checkpoint::LATEST),
        },
        other => other,
    })?;
    drop(trainer);

    let skipped = data.skipped();
    record.data.skipped += skipped.len();
    record.data.skipped_files.extend(
        skipped
            .iter()
            .map(|(p, why)| format!("{}: {why}", p.display())),
    );
    record.stop_reason = Some(outcome.reason);
    record.best = outcome.state.best.as_ref().map(|b| (b.score, b.epoch));
    write_json(&out.join("run.json"), &record)?;
    // The delivered model is the best epoch's (the last one's without a better).
    let source = match checkpoints.best_dir()? {
        Some(d) => Some(d),
        None => checkpoints.latest_dir()?,
    };
    if let Some(dir) = source {
        let file = dir.join("model.safetensors");
        let bytes = std::fs::read(&file).map_err(|e| TrainError::Io {
            path: file.clone(),
            source: e,
        })?;
        write_atomic(&out.join("model.safetensors"), &bytes)?;
    }
    let best_metrics = outcome
        .state
        .best
        .as_ref()
        .and_then(|b| b.metrics.clone())
        .or(outcome.last_metrics.clone());
    if let Some(m) = &best_metrics {
        write_metrics(&out, m)?;
    }
    if opts.verbose {
        let f = vct_kernels::fallback_counts();
        opts.say(f.to_string());
    }
    Ok(RunSummary {
        out,
        record,
        best_metrics,
        epochs: outcome.state.epoch,
        images_per_second: outcome.images_per_second,
        seconds: started.elapsed().as_secs_f64(),
        previous_run,
    })
}

/// Trains (or, with `opts.existing == Resume`, continues) a run on any batch source:
/// [`train_on`] with the resume opened and its configuration merged with `requested`
/// ([`RunConfig::resume_with`]).
pub fn train_batches(
    requested: &RunConfig,
    data: &dyn BatchSource,
    concepts: &[String],
    data_summary: DataSummary,
    opts: RunOptions,
) -> Result<RunSummary, TrainError> {
    if opts.existing == ExistingRun::Resume {
        let r = Resume::open(&opts.out)?;
        let config = r.state.config.resume_with(requested, r.state.epoch)?;
        return train_on(
            &config,
            TrainData::Batches(data),
            concepts,
            data_summary,
            opts,
            Some(r),
        );
    }
    train_on(
        requested,
        TrainData::Batches(data),
        concepts,
        data_summary,
        opts,
        None,
    )
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
    } else {
        s.push_str(&format!("true\\predicted,{}\n", names.join(",")));
    }
    for (name, row) in names.iter().zip(&m.confusion) {
        let cells: Vec<String> = row.iter().map(u64::to_string).collect();
        s.push_str(&format!("{name},{}\n", cells.join(",")));
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
        r.config.hparams.template(),
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
        "outputs: {0}/model.safetensors, run.json, metrics.json, confusion.csv, events.jsonl, checkpoints/\n",
        s.out.display()
    ));
    if let Some(p) = &s.previous_run {
        t.push_str(&format!("the run this one replaced: {}\n", p.display()));
    }
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
