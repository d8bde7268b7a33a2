//! The training loop as a builder of parts, the way burn-train's `Learner` is: a
//! [`Trainer`] is built from a model, an optimizer, a schedule, a loss and a data source,
//! plus [`Hook`]s (checkpointer, event log, progress, early stopping, … — see
//! [`crate::hooks`]), each its own small type. The loop itself knows no template and
//! writes no file: [`train_one_epoch`] steps with the schedule's learning rate and stops
//! on a non-finite loss or a stop request, [`validate`] computes every metric, and the
//! trainer keeps the state a checkpoint restores ([`TrainState`]: epoch, step, best
//! epoch and its metrics, history).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use vct_arch::Classifier;
use vct_metrics::{EvalMetrics, Labels, MetricsAccumulator};
use vct_optim::Optimizer;
use vct_sched::{LrSchedule, Schedule};

use crate::checkpoint::Best;
use crate::loss::Loss;
use crate::TrainError;

/// What a batch feeds the network: images, or embeddings computed before (a frozen
/// backbone's cache), which skip the backbone.
#[derive(Debug, Clone)]
pub enum Input {
    /// Images `[N, 3, H, W]`.
    Images(Tensor),
    /// Embeddings `[N, D]` of the backbone in inference mode.
    Embeddings(Tensor),
}

impl Input {
    /// The tensor.
    pub fn tensor(&self) -> &Tensor {
        match self {
            Input::Images(t) | Input::Embeddings(t) => t,
        }
    }

    /// Batch size.
    pub fn len(&self) -> Result<usize, TrainError> {
        Ok(self.tensor().dim(0)?)
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> Result<bool, TrainError> {
        Ok(self.len()? == 0)
    }
}

/// One batch: the input, targets `[N, C]` in 0..=1, and the labels for metrics.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Network input.
    pub input: Input,
    /// Loss targets (one-hot, multi-hot or mixed), f32.
    pub targets: Tensor,
    /// True labels for the metrics.
    pub labels: BatchLabels,
    /// Each image's file (or in-memory name), in batch order, for per-image results;
    /// empty when the source has no names for its images.
    pub paths: Vec<std::path::PathBuf>,
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

/// One epoch's summary numbers, as plotted and logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochPoint {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Validation loss, when a validation set exists.
    pub val_loss: Option<f64>,
    /// Validation top-1 accuracy, when a validation set exists.
    pub val_top1: Option<f64>,
    /// Validation mean average precision (multi-label runs).
    pub val_map: Option<f64>,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
}

/// Where a run stands: what a checkpoint restores.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Steps taken.
    pub global_step: usize,
    /// The best epoch so far, with its metrics.
    pub best: Option<Best>,
    /// Epochs since the best.
    pub epochs_since_best: usize,
    /// Per-epoch summaries.
    pub history: Vec<EpochPoint>,
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// All epochs ran.
    Completed,
    /// No improvement for the early-stopping patience.
    EarlyStopped,
    /// Stopped by the user (Ctrl-C); the last checkpoint is from the last full epoch.
    Interrupted,
}

/// The outcome of [`Trainer::fit`].
#[derive(Debug, Clone)]
pub struct FitOutcome {
    /// Final state.
    pub state: TrainState,
    /// Why it stopped.
    pub reason: StopReason,
    /// Validation metrics of the last evaluated epoch.
    pub last_metrics: Option<EvalMetrics>,
    /// Mean training images per second.
    pub images_per_second: f64,
}

/// A finished step, as hooks see it.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Epochs of the run.
    pub epochs: usize,
    /// 1-based step within the epoch.
    pub step_in_epoch: usize,
    /// Steps per epoch.
    pub steps: usize,
    /// Steps taken in the run, this one included.
    pub global_step: usize,
    /// Images in the step.
    pub images: usize,
    /// The step's loss, when it was read back (every step on the CPU; on a GPU every
    /// few steps, to keep the device busy).
    pub loss: Option<f64>,
    /// The learning rate of the step.
    pub lr: f64,
    /// Training images per second so far in the epoch.
    pub images_per_second: f64,
}

/// A finished epoch, as hooks see it.
#[derive(Debug, Clone)]
pub struct EpochReport<'a> {
    /// Epochs of the run.
    pub epochs: usize,
    /// The epoch's numbers.
    pub point: &'a EpochPoint,
    /// Its validation metrics.
    pub metrics: Option<&'a EvalMetrics>,
    /// Whether it is the best epoch so far.
    pub improved: bool,
    /// Seconds of training (without validation).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

/// What a hook may look at when an epoch ends (a checkpointer serialises from here).
#[derive(Debug, Clone, Copy)]
pub struct EpochContext<'a> {
    /// The model after the epoch.
    pub model: &'a Classifier,
    /// The optimizer after the epoch.
    pub optimizer: &'a Optimizer,
    /// The state after the epoch.
    pub state: &'a TrainState,
}

/// A hook's verdict after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop the run now, for this reason.
    Stop(StopReason),
}

/// A pluggable part of a run: called at the start, after every step, after every epoch
/// and at the end. Hooks run in the order they were added; an error ends the run.
pub trait Hook {
    /// Before the first epoch of this call to `fit` (after a resume, `state` is the
    /// checkpoint's).
    fn on_fit_start(
        &mut self,
        state: &TrainState,
        epochs: usize,
        steps: usize,
    ) -> Result<(), TrainError> {
        let _ = (state, epochs, steps);
        Ok(())
    }

    /// Before the steps of `epoch` (1-based).
    fn on_epoch_start(&mut self, epoch: usize, epochs: usize) -> Result<(), TrainError> {
        let _ = (epoch, epochs);
        Ok(())
    }

    /// After each step.
    fn on_step(&mut self, step: &StepReport) -> Result<(), TrainError> {
        let _ = step;
        Ok(())
    }

    /// After each epoch's validation.
    fn on_epoch_end(
        &mut self,
        epoch: &EpochReport<'_>,
        ctx: EpochContext<'_>,
    ) -> Result<Control, TrainError> {
        let _ = (epoch, ctx);
        Ok(Control::Continue)
    }

    /// After the last epoch (or the stop).
    fn on_fit_end(&mut self, outcome: &FitOutcome) -> Result<(), TrainError> {
        let _ = outcome;
        Ok(())
    }
}

/// The parts one optimisation step needs.
#[derive(Debug)]
pub struct Stepper<'a> {
    /// The network.
    pub model: &'a Classifier,
    /// Its optimizer.
    pub optimizer: &'a mut Optimizer,
    /// The learning rate of each step.
    pub schedule: &'a Schedule,
    /// The training loss.
    pub loss: Loss,
    /// Train the head alone on embeddings of the backbone in inference mode.
    pub frozen_backbone: bool,
    /// Embeddings are the mean of the image's and its mirror's (when the backbone is
    /// frozen, in training as in evaluation).
    pub flip_average: bool,
}

fn arch_err(e: vct_arch::ArchError) -> TrainError {
    TrainError::Component(e.to_string())
}

impl Stepper<'_> {
    /// Logits of a training step. A frozen backbone runs in inference mode (running
    /// batch-norm statistics, no dropout or drop path) and its output is detached, so no
    /// gradient flows through it, as in linear probing.
    fn logits(&self, input: &Input) -> Result<Tensor, TrainError> {
        match input {
            Input::Embeddings(e) => self.model.head_forward(e, true).map_err(arch_err),
            Input::Images(x) if self.frozen_backbone => {
                let emb = eval_embeddings(self.model, self.flip_average, x)?.detach();
                self.model.head_forward(&emb, true).map_err(arch_err)
            }
            Input::Images(x) => self.model.forward(x, true).map_err(arch_err),
        }
    }

    /// One step on `batch` at `global_step`: the loss (a scalar on the model's device)
    /// and the learning rate used.
    pub fn step(&mut self, batch: &Batch, global_step: usize) -> Result<(Tensor, f64), TrainError> {
        let lr = self.schedule.lr(global_step);
        let logits = self.logits(&batch.input)?;
        let loss = self.loss.loss(&logits, &batch.targets)?;
        let grads = loss.backward()?;
        self.optimizer
            .step_with_lr(&grads, lr)
            .map_err(|e| TrainError::Component(format!("optimizer: {e}")))?;
        Ok((loss, lr))
    }
}

/// What [`train_one_epoch`] did.
#[derive(Debug, Clone)]
pub struct EpochTrain {
    /// Mean training loss (NaN if no step ran).
    pub loss: f64,
    /// Images trained on.
    pub images: usize,
    /// Seconds it took.
    pub seconds: f64,
    /// The learning rate of the last step.
    pub lr: f64,
    /// A stop request ended it early.
    pub interrupted: bool,
}

/// Reads back the losses of the steps since the last read (weighted by images) and
/// refuses a non-finite one.
fn read_losses(
    pending: &mut Vec<(Tensor, usize)>,
    epoch: usize,
    step: usize,
    sum: &mut f64,
    count: &mut usize,
) -> Result<Option<f64>, TrainError> {
    let mut last = None;
    for (t, n) in pending.drain(..) {
        let v = t.to_scalar::<f32>()? as f64;
        if !v.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                value: v,
                epoch,
                step,
                checkpoint: std::path::PathBuf::from("checkpoints/LATEST"),
            });
        }
        *sum += v * n as f64;
        *count += n;
        last = Some(v);
    }
    Ok(last)
}

/// Which epoch [`train_one_epoch`] trains, of how many, with how many steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochAt {
    /// 1-based epoch.
    pub epoch: usize,
    /// Epochs of the run.
    pub epochs: usize,
    /// Steps per epoch.
    pub steps: usize,
}

/// Trains one epoch: a step per batch at the schedule's learning rate; stops early (and
/// says so) when `stop` is set. `on_step` sees every step. A non-finite loss is an error
/// (the last checkpoint stays the last good state).
pub fn train_one_epoch(
    stepper: &mut Stepper<'_>,
    batches: Batches<'_>,
    at: EpochAt,
    state: &mut TrainState,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(&StepReport) -> Result<(), TrainError>,
) -> Result<EpochTrain, TrainError> {
    let EpochAt {
        epoch,
        epochs,
        steps,
    } = at;
    // On a GPU, reading the loss waits for the device: read every few steps instead.
    let read_every = if stepper.model.device().is_cpu() {
        1
    } else {
        16
    };
    let started = Instant::now();
    let (mut sum, mut count, mut images) = (0f64, 0usize, 0usize);
    let mut pending: Vec<(Tensor, usize)> = Vec::new();
    let mut lr = stepper.schedule.lr(state.global_step);
    let mut interrupted = false;
    for (i, batch) in batches.enumerate() {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let batch = batch?;
        let n = batch.input.len()?;
        let (loss, step_lr) = stepper.step(&batch, state.global_step)?;
        lr = step_lr;
        state.global_step += 1;
        images += n;
        pending.push((loss.detach(), n));
        let loss = if pending.len() >= read_every || i + 1 == steps {
            read_losses(&mut pending, epoch, state.global_step, &mut sum, &mut count)?
        } else {
            None
        };
        on_step(&StepReport {
            epoch,
            epochs,
            step_in_epoch: i + 1,
            steps,
            global_step: state.global_step,
            images: n,
            loss,
            lr,
            images_per_second: images as f64 / started.elapsed().as_secs_f64().max(1e-9),
        })?;
    }
    read_losses(&mut pending, epoch, state.global_step, &mut sum, &mut count)?;
    if count == 0 && !interrupted {
        return Err(TrainError::Component(format!(
            "epoch {epoch} had no training batches (every image of the epoch was skipped?)"
        )));
    }
    Ok(EpochTrain {
        loss: if count > 0 {
            sum / count as f64
        } else {
            f64::NAN
        },
        images,
        seconds: started.elapsed().as_secs_f64(),
        lr,
        interrupted: interrupted || stop.load(Ordering::SeqCst),
    })
}

/// Class probabilities in inference mode, flip-averaged when the recipe says so.
pub fn predict_probabilities(
    model: &Classifier,
    loss: Loss,
    flip_average: bool,
    images: &Tensor,
) -> Result<Tensor, TrainError> {
    let emb = eval_embeddings(model, flip_average, images)?;
    Ok(loss.output.probabilities(&eval_head(model, &emb)?)?)
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
    emb.map_err(arch_err)
}

/// Logits of the head in inference mode.
pub fn eval_head(model: &Classifier, emb: &Tensor) -> Result<Tensor, TrainError> {
    model.head_forward(emb, false).map_err(arch_err)
}

/// Evaluates `model` on `batches`: `loss` (as given: the run's loss without label
/// smoothing) and every metric.
pub fn validate(
    model: &Classifier,
    loss: Loss,
    flip_average: bool,
    concepts: &[String],
    batches: Batches<'_>,
) -> Result<EvalMetrics, TrainError> {
    evaluate_batches(model, loss, flip_average, concepts, batches, None)
}

/// One evaluated image: its file, its true concepts and every concept's probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageResult {
    /// The image file (or in-memory name; `#N` when the source names none).
    pub path: PathBuf,
    /// Its true concept indices.
    pub labels: Vec<usize>,
    /// The probability of each concept, in concept order.
    pub probabilities: Vec<f32>,
}

/// The metrics of an evaluation with every image's result, in evaluation order.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// What [`validate`] returns.
    pub metrics: EvalMetrics,
    /// One result per image.
    pub images: Vec<ImageResult>,
}

/// [`validate`], keeping each image's path and probabilities (for reports).
pub fn validate_images(
    model: &Classifier,
    loss: Loss,
    flip_average: bool,
    concepts: &[String],
    batches: Batches<'_>,
) -> Result<Evaluation, TrainError> {
    let mut images = Vec::new();
    let metrics = evaluate_batches(
        model,
        loss,
        flip_average,
        concepts,
        batches,
        Some(&mut images),
    )?;
    Ok(Evaluation { metrics, images })
}

fn evaluate_batches(
    model: &Classifier,
    loss: Loss,
    flip_average: bool,
    concepts: &[String],
    batches: Batches<'_>,
    mut images: Option<&mut Vec<ImageResult>>,
) -> Result<EvalMetrics, TrainError> {
    let mut acc: Option<MetricsAccumulator> = None;
    for batch in batches {
        let batch = batch?;
        let emb = match &batch.input {
            Input::Images(x) => eval_embeddings(model, flip_average, x)?,
            Input::Embeddings(e) => e.clone(),
        };
        let logits = eval_head(model, &emb)?;
        let n = batch.input.len()?;
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
        if let Some(images) = images.as_deref_mut() {
            let c = concepts.len().max(1);
            for (i, row) in probs.chunks(c).enumerate() {
                let labels = match &batch.labels {
                    BatchLabels::Single(v) => v.get(i).copied().into_iter().collect(),
                    BatchLabels::MultiHot(v) => v
                        .get(i * c..(i + 1) * c)
                        .unwrap_or_default()
                        .iter()
                        .enumerate()
                        .filter(|(_, &h)| h > 0.5)
                        .map(|(j, _)| j)
                        .collect(),
                };
                let path = batch
                    .paths
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| PathBuf::from(format!("#{}", images.len())));
                images.push(ImageResult {
                    path,
                    labels,
                    probabilities: row.to_vec(),
                });
            }
        }
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

/// The training loop over its parts; see the module docs.
pub struct Trainer<'a> {
    stepper: Stepper<'a>,
    data: &'a dyn BatchSource,
    concepts: Vec<String>,
    epochs: usize,
    hooks: Vec<Box<dyn Hook + 'a>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Trainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("epochs", &self.epochs)
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

/// Builds a [`Trainer`].
pub struct TrainerBuilder<'a> {
    trainer: Trainer<'a>,
}

impl std::fmt::Debug for TrainerBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.trainer.fmt(f)
    }
}

impl<'a> Trainer<'a> {
    /// A trainer over these parts for `epochs` epochs, with no hooks.
    pub fn builder(
        model: &'a Classifier,
        optimizer: &'a mut Optimizer,
        schedule: &'a Schedule,
        loss: Loss,
        data: &'a dyn BatchSource,
        concepts: &[String],
        epochs: usize,
    ) -> TrainerBuilder<'a> {
        TrainerBuilder {
            trainer: Trainer {
                stepper: Stepper {
                    model,
                    optimizer,
                    schedule,
                    loss,
                    frozen_backbone: false,
                    flip_average: false,
                },
                data,
                concepts: concepts.to_vec(),
                epochs,
                hooks: Vec::new(),
                stop: Arc::new(AtomicBool::new(false)),
            },
        }
    }

    /// Runs the epochs after `state.epoch` up to the configured number.
    pub fn fit(&mut self, mut state: TrainState) -> Result<FitOutcome, TrainError> {
        let steps = self.data.train_steps();
        let epochs = self.epochs;
        for h in &mut self.hooks {
            h.on_fit_start(&state, epochs, steps)?;
        }
        let mut last_metrics = None;
        let mut reason = StopReason::Completed;
        let (mut images_total, mut train_seconds) = (0usize, 0f64);
        while state.epoch < epochs {
            let epoch = state.epoch + 1;
            // Dropout / drop-path masks restart from the epoch, like the data order,
            // so resuming at an epoch boundary reproduces the uninterrupted run.
            self.stepper.model.set_mask_salt(epoch as u64);
            for h in &mut self.hooks {
                h.on_epoch_start(epoch, epochs)?;
            }
            let hooks = &mut self.hooks;
            let mut on_step = |s: &StepReport| -> Result<(), TrainError> {
                for h in hooks.iter_mut() {
                    h.on_step(s)?;
                }
                Ok(())
            };
            let batches = self.data.train_epoch(epoch)?;
            let at = EpochAt {
                epoch,
                epochs,
                steps,
            };
            let trained = train_one_epoch(
                &mut self.stepper,
                batches,
                at,
                &mut state,
                &self.stop,
                &mut on_step,
            )?;
            images_total += trained.images;
            train_seconds += trained.seconds;
            if trained.interrupted {
                reason = StopReason::Interrupted;
                break;
            }
            let metrics = match self.data.validation() {
                Some(batches) => Some(validate(
                    self.stepper.model,
                    self.stepper.loss.without_smoothing(),
                    self.stepper.flip_average,
                    &self.concepts,
                    batches?,
                )?),
                None => None,
            };
            let point = EpochPoint {
                epoch,
                train_loss: trained.loss,
                val_loss: metrics.as_ref().and_then(|m| m.loss),
                val_top1: metrics.as_ref().map(|m| m.top1),
                val_map: metrics.as_ref().and_then(|m| m.mean_average_precision),
                lr: trained.lr,
            };
            state.epoch = epoch;
            state.history.push(point.clone());
            // Without a validation set the lowest training loss marks the best epoch.
            let current = metrics.as_ref().map(score).unwrap_or(-trained.loss);
            let improved = state.best.as_ref().is_none_or(|b| current > b.score);
            if improved {
                state.best = Some(Best {
                    epoch,
                    score: current,
                    metrics: metrics.clone(),
                });
                state.epochs_since_best = 0;
            } else {
                state.epochs_since_best += 1;
            }
            let report = EpochReport {
                epochs,
                point: &point,
                metrics: metrics.as_ref(),
                improved,
                seconds: trained.seconds,
                images_per_second: trained.images as f64 / trained.seconds.max(1e-9),
            };
            let ctx = EpochContext {
                model: self.stepper.model,
                optimizer: self.stepper.optimizer,
                state: &state,
            };
            let mut control = Control::Continue;
            for h in &mut self.hooks {
                if let Control::Stop(r) = h.on_epoch_end(&report, ctx)? {
                    control = Control::Stop(r);
                }
            }
            last_metrics = metrics;
            if let Control::Stop(r) = control {
                reason = r;
                break;
            }
        }
        let outcome = FitOutcome {
            state,
            reason,
            last_metrics,
            images_per_second: images_total as f64 / train_seconds.max(1e-9),
        };
        for h in &mut self.hooks {
            h.on_fit_end(&outcome)?;
        }
        Ok(outcome)
    }

    /// The flag that stops the run at the next step (e.g. set by Ctrl-C).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }
}

impl<'a> TrainerBuilder<'a> {
    /// Adds a hook (run after the hooks added before it).
    pub fn hook(mut self, hook: impl Hook + 'a) -> Self {
        self.trainer.hooks.push(Box::new(hook));
        self
    }

    /// Adds a boxed hook.
    pub fn boxed_hook(mut self, hook: Box<dyn Hook + 'a>) -> Self {
        self.trainer.hooks.push(hook);
        self
    }

    /// Trains the head alone on the backbone's embeddings in inference mode.
    pub fn frozen_backbone(mut self, frozen: bool) -> Self {
        self.trainer.stepper.frozen_backbone = frozen;
        self
    }

    /// Averages each embedding with its mirror image's (`average_horizontal_flips`).
    pub fn flip_average(mut self, on: bool) -> Self {
        self.trainer.stepper.flip_average = on;
        self
    }

    /// Stops at the next step once `flag` is set.
    pub fn stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.trainer.stop = flag;
        self
    }

    /// The trainer.
    pub fn build(self) -> Trainer<'a> {
        self.trainer
    }
}
