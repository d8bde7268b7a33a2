//! The training loop, template-agnostic: steps with the schedule's learning
//! rate, evaluation each epoch, best and last checkpoints, early stopping,
//! a stop on NaN/inf loss and on Ctrl-C, events and progress.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::Tensor;
use serde::Serialize;
use vct_arch::Classifier;
use vct_metrics::{EvalMetrics, Labels, MetricsAccumulator};
use vct_optim::Optimizer;
use vct_sched::{LrSchedule, Schedule};

use crate::checkpoint::{self, CheckpointState, FileWriter, CHECKPOINT_FORMAT};
use crate::loss::{Loss, Output};
use crate::outputs::EventLog;
use crate::plot::EpochPoint;
use crate::progress::{EpochProgress, ProgressMode};
use crate::recipe::Recipe;
use crate::TrainError;

/// One batch: images `[N, 3, H, W]`, targets `[N, C]` in 0..=1, and the labels
/// for metrics.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Network input.
    pub images: Tensor,
    /// Loss targets (one-hot, multi-hot or mixed), f32.
    pub targets: Tensor,
    /// True labels for the metrics.
    pub labels: BatchLabels,
}

/// True labels of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchLabels {
    /// One concept index per image.
    Single(Vec<usize>),
    /// Multi-hot rows, `[N × C]` flattened.
    MultiHot(Vec<f32>),
}

/// A stream of batches (errors end the run with their message).
pub type Batches<'a> = Box<dyn Iterator<Item = Result<Batch, TrainError>> + 'a>;

/// Supplies the batches of each epoch; the run implements it over vct-data.
pub trait BatchSource {
    /// The training batches of `epoch` (1-based); the same epoch gives the same
    /// batches, so a resumed run sees what an uninterrupted one would.
    fn train_epoch(&self, epoch: usize) -> Result<Batches<'_>, TrainError>;
    /// Steps in each training epoch.
    fn train_steps(&self) -> usize;
    /// The validation batches, if there is a validation set.
    fn validation(&self) -> Option<Result<Batches<'_>, TrainError>>;
    /// Images skipped so far as unreadable (path, reason).
    fn skipped(&self) -> Vec<(std::path::PathBuf, String)> {
        Vec::new()
    }
}

/// How the loop runs, besides what the recipe says.
#[derive(Debug, Clone)]
pub struct TrainerOptions {
    /// The run's output folder (checkpoints go to `checkpoints/` inside).
    pub out: PathBuf,
    /// The run seed, recorded in checkpoints.
    pub seed: u64,
    /// Progress display.
    pub progress: ProgressMode,
    /// Stop after this many epochs without a better validation score.
    pub early_stopping: Option<usize>,
    /// Set (e.g. by Ctrl-C) to stop at the next step boundary.
    pub stop: Arc<AtomicBool>,
    /// vct version recorded in checkpoints.
    pub version: String,
}

/// Where a run stands: what a checkpoint restores.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Steps taken.
    pub global_step: usize,
    /// Best validation score and its epoch.
    pub best: Option<(f64, usize)>,
    /// Epochs since the best.
    pub epochs_since_best: usize,
    /// Per-epoch summaries.
    pub history: Vec<EpochPoint>,
}

impl From<&CheckpointState> for TrainState {
    fn from(s: &CheckpointState) -> Self {
        TrainState {
            epoch: s.epoch,
            global_step: s.global_step,
            best: s.best,
            epochs_since_best: s.epochs_since_best,
            history: s.history.clone(),
        }
    }
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum StopReason {
    /// All epochs ran.
    Completed,
    /// No improvement for the early-stopping patience.
    EarlyStopped,
    /// Stopped by the user (Ctrl-C); the last checkpoint is from the last full epoch.
    Interrupted,
}

/// The outcome of [`fit`].
#[derive(Debug, Clone)]
pub struct FitOutcome {
    /// Final state.
    pub state: TrainState,
    /// Why it stopped.
    pub reason: StopReason,
    /// Validation metrics of the last evaluated epoch.
    pub last_metrics: Option<EvalMetrics>,
    /// Validation metrics of the best epoch.
    pub best_metrics: Option<EvalMetrics>,
    /// Mean training images per second.
    pub images_per_second: f64,
}

#[derive(Serialize)]
struct StepEvent<'a> {
    event: &'a str,
    epoch: usize,
    step: usize,
    loss: f64,
    lr: f64,
    images_per_second: f64,
}

#[derive(Serialize)]
struct EpochEvent<'a> {
    event: &'a str,
    #[serde(flatten)]
    point: &'a EpochPoint,
    seconds: f64,
    images_per_second: f64,
    best_epoch: Option<usize>,
}

/// The logits of a training step. With a frozen backbone the embeddings are
/// computed in inference mode and detached, so no gradient flows (or is computed)
/// through the backbone and its batch-norm statistics stay as loaded.
fn train_logits(
    model: &Classifier,
    recipe: &Recipe,
    images: &Tensor,
) -> Result<Tensor, TrainError> {
    let arch = |e: vct_arch::ArchError| TrainError::Component(e.to_string());
    if recipe.backbone_frozen() {
        let emb = model.embed(images, false).map_err(arch)?.detach();
        model.head_forward(&emb, true).map_err(arch)
    } else {
        model.forward(images, true).map_err(arch)
    }
}

/// Class probabilities in inference mode, flip-averaged when the recipe says so.
pub fn predict_probabilities(
    model: &Classifier,
    output: Output,
    flip_average: bool,
    images: &Tensor,
) -> Result<Tensor, TrainError> {
    let emb = eval_embeddings(model, flip_average, images)?;
    Ok(output.probabilities(&eval_head(model, &emb)?)?)
}

/// Embeddings in inference mode, averaged with the mirror image's when asked
/// (`average_horizontal_flips`).
pub fn eval_embeddings(
    model: &Classifier,
    flip_average: bool,
    images: &Tensor,
) -> Result<Tensor, TrainError> {
    let emb = if flip_average {
        model.embed_flip_avg(images, false)
    } else {
        model.embed(images, false)
    };
    emb.map_err(|e| TrainError::Component(e.to_string()))
}

/// Logits of the head in inference mode.
pub fn eval_head(model: &Classifier, emb: &Tensor) -> Result<Tensor, TrainError> {
    model
        .head_forward(emb, false)
        .map_err(|e| TrainError::Component(e.to_string()))
}

/// Evaluates `model` on `batches`: `loss` (as given: the run's loss without
/// label smoothing) and every metric.
pub fn evaluate(
    model: &Classifier,
    loss: Loss,
    flip_average: bool,
    concepts: &[String],
    batches: Batches<'_>,
) -> Result<EvalMetrics, TrainError> {
    let mut acc: Option<MetricsAccumulator> = None;
    for batch in batches {
        let batch = batch?;
        let emb = eval_embeddings(model, flip_average, &batch.images)?;
        let logits = eval_head(model, &emb)?;
        let n = batch.images.dim(0)?;
        let value = loss.loss(&logits, &batch.targets)?.to_scalar::<f32>()? as f64;
        let probs: Vec<f32> = loss
            .output
            .probabilities(&logits)?
            .flatten_all()?
            .to_vec1()?;
        let acc = acc.get_or_insert_with(|| {
            MetricsAccumulator::new(
                concepts.to_vec(),
                matches!(batch.labels, BatchLabels::MultiHot(_)),
            )
        });
        let labels = match &batch.labels {
            BatchLabels::Single(v) => Labels::Single(v),
            BatchLabels::MultiHot(v) => Labels::MultiHot(v),
        };
        acc.add(&probs, labels)
            .map_err(|e| TrainError::Component(format!("metrics: {e}")))?;
        acc.add_loss(value * n as f64, n as u64);
    }
    match acc {
        Some(acc) => Ok(acc.finish()),
        None => Err(TrainError::Component(
            "the evaluation set yielded no batches".into(),
        )),
    }
}

/// The score that decides the best epoch: mAP for multi-label data, top-1 otherwise.
pub fn score(m: &EvalMetrics) -> f64 {
    if m.multi_label {
        m.mean_average_precision.unwrap_or(0.0)
    } else {
        m.top1
    }
}

/// Saves the "last" checkpoint (model, optimizer, state).
fn save_last(
    out: &Path,
    model: &Classifier,
    optimizer: &Optimizer,
    recipe: &Recipe,
    concepts: &[String],
    opts: &TrainerOptions,
    state: &TrainState,
) -> Result<(), TrainError> {
    let files: Vec<(&str, FileWriter<'_>)> = vec![
        (
            "model.safetensors",
            Box::new(|p: &Path| model.save(p).map_err(|e| e.to_string())),
        ),
        (
            "optimizer.safetensors",
            Box::new(|p: &Path| optimizer.save(p).map_err(|e| e.to_string())),
        ),
    ];
    checkpoint::save(
        &checkpoint::checkpoint_dir(out, "last"),
        checkpoint_state(recipe, concepts, opts, state),
        files,
    )
}

fn checkpoint_state(
    recipe: &Recipe,
    concepts: &[String],
    opts: &TrainerOptions,
    state: &TrainState,
) -> CheckpointState {
    CheckpointState {
        format: CHECKPOINT_FORMAT,
        vct_version: opts.version.clone(),
        hparams: recipe.hparams.clone(),
        concepts: concepts.to_vec(),
        epoch: state.epoch,
        global_step: state.global_step,
        seed: opts.seed,
        best: state.best,
        epochs_since_best: state.epochs_since_best,
        history: state.history.clone(),
        files: Default::default(),
    }
}

/// Runs the epochs after `state.epoch` up to the template's `num_epochs`.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    recipe: &Recipe,
    model: &Classifier,
    optimizer: &mut Optimizer,
    schedule: &Schedule,
    data: &dyn BatchSource,
    concepts: &[String],
    opts: &TrainerOptions,
    mut state: TrainState,
    events: &mut EventLog,
) -> Result<FitOutcome, TrainError> {
    let epochs = recipe.hparams.num_epochs();
    let steps = data.train_steps();
    let mut last_metrics = None;
    let mut best_metrics = None;
    let mut reason = StopReason::Completed;
    let mut images_total = 0usize;
    let mut train_seconds = 0.0;

    while state.epoch < epochs {
        let epoch = state.epoch + 1;
        // Dropout / drop-path masks restart from the epoch, like the data order,
        // so resuming at an epoch boundary reproduces the uninterrupted run.
        model.set_mask_salt(epoch as u64);
        let mut progress = EpochProgress::start(opts.progress, epoch, epochs, steps);
        let (mut loss_sum, mut loss_n) = (0.0f64, 0usize);
        let mut lr = schedule.lr(state.global_step);
        let mut interrupted = false;
        for (i, batch) in data.train_epoch(epoch)?.enumerate() {
            if opts.stop.load(Ordering::SeqCst) {
                interrupted = true;
                break;
            }
            let batch = batch?;
            let n = batch.images.dim(0)?;
            lr = schedule.lr(state.global_step);
            let logits = train_logits(model, recipe, &batch.images)?;
            let loss = recipe.loss.loss(&logits, &batch.targets)?;
            let loss_value = loss.to_scalar::<f32>()? as f64;
            if !loss_value.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    value: loss_value,
                    epoch,
                    step: state.global_step,
                    checkpoint: checkpoint::checkpoint_dir(&opts.out, "last"),
                });
            }
            let grads = loss.backward()?;
            optimizer
                .step_with_lr(&grads, lr)
                .map_err(|e| TrainError::Component(format!("optimizer: {e}")))?;
            state.global_step += 1;
            loss_sum += loss_value * n as f64;
            loss_n += n;
            images_total += n;
            progress.step(i + 1, n, loss_value, lr);
            events.write(&StepEvent {
                event: "step",
                epoch,
                step: state.global_step,
                loss: loss_value,
                lr,
                images_per_second: progress.images_per_second(),
            })?;
        }
        let ips = progress.images_per_second();
        let seconds = progress.finish();
        train_seconds += seconds;
        if interrupted || opts.stop.load(Ordering::SeqCst) {
            reason = StopReason::Interrupted;
            break;
        }
        let metrics = match data.validation() {
            Some(batches) => Some(evaluate(
                model,
                recipe.loss.without_smoothing(),
                recipe.flip_average_eval,
                concepts,
                batches?,
            )?),
            None => None,
        };
        let train_loss = if loss_n > 0 {
            loss_sum / loss_n as f64
        } else {
            f64::NAN
        };
        let point = EpochPoint {
            epoch,
            train_loss,
            val_loss: metrics.as_ref().and_then(|m| m.loss),
            val_top1: metrics.as_ref().map(|m| m.top1),
            val_map: metrics.as_ref().and_then(|m| m.mean_average_precision),
            lr,
        };
        state.epoch = epoch;
        state.history.push(point.clone());
        // Without a validation set the lowest training loss marks the best epoch.
        let current = metrics.as_ref().map(score).unwrap_or(-train_loss);
        let improved = state.best.is_none_or(|(b, _)| current > b);
        if improved {
            state.best = Some((current, epoch));
            state.epochs_since_best = 0;
            best_metrics = metrics.clone();
            let files: Vec<(&str, FileWriter<'_>)> = vec![(
                "model.safetensors",
                Box::new(|p: &Path| model.save(p).map_err(|e| e.to_string())),
            )];
            checkpoint::save(
                &checkpoint::checkpoint_dir(&opts.out, "best"),
                checkpoint_state(recipe, concepts, opts, &state),
                files,
            )?;
        } else {
            state.epochs_since_best += 1;
        }
        save_last(&opts.out, model, optimizer, recipe, concepts, opts, &state)?;
        events.write(&EpochEvent {
            event: "epoch",
            point: &point,
            seconds,
            images_per_second: ips,
            best_epoch: state.best.map(|b| b.1),
        })?;
        if opts.progress != ProgressMode::Quiet {
            let val = match &metrics {
                Some(m) if m.multi_label => format!(
                    " val loss {:.4} mAP {:.3}",
                    m.loss.unwrap_or(f64::NAN),
                    m.mean_average_precision.unwrap_or(0.0)
                ),
                Some(m) => format!(
                    " val loss {:.4} top-1 {:.3}",
                    m.loss.unwrap_or(f64::NAN),
                    m.top1
                ),
                None => String::new(),
            };
            eprintln!(
                "epoch {epoch}/{epochs}: train loss {train_loss:.4}{val} lr {lr:.3e} ({seconds:.1}s, {ips:.1} img/s){}",
                if improved { " *best*" } else { "" }
            );
        }
        last_metrics = metrics;
        if let Some(patience) = opts.early_stopping {
            if state.epochs_since_best >= patience {
                reason = StopReason::EarlyStopped;
                break;
            }
        }
    }
    Ok(FitOutcome {
        state,
        reason,
        last_metrics,
        best_metrics,
        images_per_second: images_total as f64 / train_seconds.max(1e-9),
    })
}
