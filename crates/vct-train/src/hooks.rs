//! The parts a run plugs into the [`Trainer`](crate::trainer::Trainer): each is a small
//! [`Hook`] with one job — checkpoints, the events log, early stopping, progress lines.

use std::time::{Duration, Instant};

use serde::Serialize;
use vct_arch::Classifier;
use vct_optim::Optimizer;

use crate::checkpoint::{CheckpointState, Checkpoints, CHECKPOINT_FORMAT};
use crate::config::RunConfig;
use crate::outputs::EventLog;
use crate::trainer::{
    Control, EpochContext, EpochPoint, EpochReport, FitOutcome, Hook, StepReport, StopReason,
    TrainState,
};
use crate::TrainError;

/// The tensors of a model as safetensors bytes (every parameter and running statistic
/// under its state-dict name).
pub fn model_bytes(model: &Classifier) -> Result<Vec<u8>, TrainError> {
    let tensors = model.state_dict();
    safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), None)
        .map_err(|e| TrainError::Component(format!("serialising the model: {e}")))
}

/// The optimizer state as safetensors bytes.
pub fn optimizer_bytes(optimizer: &Optimizer) -> Result<Vec<u8>, TrainError> {
    let state = optimizer
        .state_dict()
        .map_err(|e| TrainError::Component(format!("optimizer state: {e}")))?;
    let mut named: Vec<(&String, &candle_core::Tensor)> = state.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    safetensors::serialize(named.into_iter().map(|(k, t)| (k.as_str(), t)), None)
        .map_err(|e| TrainError::Component(format!("serialising the optimizer state: {e}")))
}

/// The checkpoint state of a run at `state`.
pub fn checkpoint_state(
    config: &RunConfig,
    concepts: &[String],
    state: &TrainState,
) -> CheckpointState {
    CheckpointState {
        format: CHECKPOINT_FORMAT,
        vct_version: crate::run::VERSION.into(),
        config: config.clone(),
        concepts: concepts.to_vec(),
        epoch: state.epoch,
        global_step: state.global_step,
        best: state.best.clone(),
        epochs_since_best: state.epochs_since_best,
        history: state.history.clone(),
        files: Default::default(),
    }
}

/// Writes a checkpoint of model, optimizer and state.
pub fn save_checkpoint(
    checkpoints: &Checkpoints,
    config: &RunConfig,
    concepts: &[String],
    model: &Classifier,
    optimizer: &Optimizer,
    state: &TrainState,
    improved: bool,
) -> Result<std::path::PathBuf, TrainError> {
    let files = [
        ("model.safetensors", model_bytes(model)?),
        ("optimizer.safetensors", optimizer_bytes(optimizer)?),
    ];
    checkpoints.save(checkpoint_state(config, concepts, state), &files, improved)
}

/// Saves a checkpoint after every epoch (see [`crate::checkpoint`]).
#[derive(Debug)]
pub struct Checkpointer {
    checkpoints: Checkpoints,
    config: RunConfig,
    concepts: Vec<String>,
}

impl Checkpointer {
    /// Checkpoints of the run configured by `config` into `checkpoints`.
    pub fn new(checkpoints: Checkpoints, config: RunConfig, concepts: Vec<String>) -> Self {
        Checkpointer {
            checkpoints,
            config,
            concepts,
        }
    }
}

impl Hook for Checkpointer {
    fn on_epoch_end(
        &mut self,
        epoch: &EpochReport<'_>,
        ctx: EpochContext<'_>,
    ) -> Result<Control, TrainError> {
        save_checkpoint(
            &self.checkpoints,
            &self.config,
            &self.concepts,
            ctx.model,
            ctx.optimizer,
            ctx.state,
            epoch.improved,
        )?;
        Ok(Control::Continue)
    }
}

#[derive(Serialize)]
struct StepEvent {
    event: &'static str,
    epoch: usize,
    step: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    loss: Option<f64>,
    lr: f64,
    images_per_second: f64,
}

#[derive(Serialize)]
struct EpochEvent<'a> {
    event: &'static str,
    #[serde(flatten)]
    point: &'a EpochPoint,
    seconds: f64,
    images_per_second: f64,
    best_epoch: Option<usize>,
}

#[derive(Serialize)]
struct EndEvent {
    event: &'static str,
    epoch: usize,
    step: usize,
    reason: StopReason,
}

/// Writes `events.jsonl`: one object per step, per epoch and at the end.
#[derive(Debug)]
pub struct EventLogHook {
    log: EventLog,
}

impl EventLogHook {
    /// Logs into `log`.
    pub fn new(log: EventLog) -> Self {
        EventLogHook { log }
    }
}

impl Hook for EventLogHook {
    fn on_step(&mut self, s: &StepReport) -> Result<(), TrainError> {
        self.log.write(&StepEvent {
            event: "step",
            epoch: s.epoch,
            step: s.global_step,
            loss: s.loss,
            lr: s.lr,
            images_per_second: s.images_per_second,
        })
    }

    fn on_epoch_end(
        &mut self,
        e: &EpochReport<'_>,
        ctx: EpochContext<'_>,
    ) -> Result<Control, TrainError> {
        self.log.write(&EpochEvent {
            event: "epoch",
            point: e.point,
            seconds: e.seconds,
            images_per_second: e.images_per_second,
            best_epoch: ctx.state.best.as_ref().map(|b| b.epoch),
        })?;
        self.log.flush()?;
        Ok(Control::Continue)
    }

    fn on_fit_end(&mut self, outcome: &FitOutcome) -> Result<(), TrainError> {
        self.log.write(&EndEvent {
            event: "end",
            epoch: outcome.state.epoch,
            step: outcome.state.global_step,
            reason: outcome.reason,
        })?;
        self.log.flush()
    }
}

/// Stops the run after `patience` epochs without a better validation score.
#[derive(Debug, Clone, Copy)]
pub struct EarlyStopping {
    patience: usize,
}

impl EarlyStopping {
    /// Stops after `patience` epochs without improvement.
    pub fn new(patience: usize) -> Self {
        EarlyStopping { patience }
    }
}

impl Hook for EarlyStopping {
    fn on_epoch_end(
        &mut self,
        _epoch: &EpochReport<'_>,
        ctx: EpochContext<'_>,
    ) -> Result<Control, TrainError> {
        if ctx.state.epochs_since_best >= self.patience {
            Ok(Control::Stop(StopReason::EarlyStopped))
        } else {
            Ok(Control::Continue)
        }
    }
}

/// The epoch summary line a person reads: train loss, validation metrics, lr, speed.
pub fn epoch_line(e: &EpochReport<'_>) -> String {
    let val = match e.metrics {
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
    format!(
        "epoch {}/{}: train loss {:.4}{val} lr {:.3e} ({:.1}s, {:.1} img/s){}",
        e.point.epoch,
        e.epochs,
        e.point.train_loss,
        e.point.lr,
        e.seconds,
        e.images_per_second,
        if e.improved { " *best*" } else { "" }
    )
}

/// Progress as log lines on stderr: one per epoch, and one every `every` during an
/// epoch (what logs and CI want; terminals get a progress bar from the CLI).
#[derive(Debug)]
pub struct LineProgress {
    every: Duration,
    last: Instant,
}

impl LineProgress {
    /// A line every `every` within an epoch, and one at its end.
    pub fn new(every: Duration) -> Self {
        LineProgress {
            every,
            last: Instant::now(),
        }
    }
}

impl Hook for LineProgress {
    fn on_step(&mut self, s: &StepReport) -> Result<(), TrainError> {
        if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            let loss = s.loss.map(|l| format!("loss {l:.4} ")).unwrap_or_default();
            eprintln!(
                "epoch {}/{} step {}/{} {loss}lr {:.3e} {:.1} img/s",
                s.epoch, s.epochs, s.step_in_epoch, s.steps, s.lr, s.images_per_second
            );
        }
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        e: &EpochReport<'_>,
        _ctx: EpochContext<'_>,
    ) -> Result<Control, TrainError> {
        eprintln!("{}", epoch_line(e));
        Ok(Control::Continue)
    }
}
