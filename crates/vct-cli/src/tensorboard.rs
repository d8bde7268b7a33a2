//! TensorBoard logs of a run (`train --tensorboard DIR`, on by default into the run
//! folder's `tensorboard/`): the training loss and learning rate of every step, and the
//! epoch's validation metrics, as scalars of vct-tensorboard's event files.
//!
//! The hook lives here, beside the other hooks the command line adds (progress bar,
//! curves), so vct-train needs no TensorBoard dependency and the CLI decides the
//! default. Every scalar is logged at the global step, so per-step and per-epoch
//! series share TensorBoard's step axis. Logging costs about half a microsecond per
//! step (buffered; flushed at each epoch's end).

use std::path::{Path, PathBuf};

use vct_tensorboard::{EventWriter, TensorBoardError};
use vct_train::trainer::{
    Control, EpochContext, EpochReport, FitOutcome, Hook, StepReport, TrainState,
};
use vct_train::TrainError;

fn tb_err(e: TensorBoardError) -> TrainError {
    TrainError::Component(format!("TensorBoard log: {e}"))
}

/// Writes a run's scalars as TensorBoard event files, as a trainer hook.
#[derive(Debug)]
pub struct TensorBoardHook {
    dir: PathBuf,
    writer: Option<EventWriter>,
}

impl TensorBoardHook {
    /// Logs into a new event file in `dir` (created when training starts, so an
    /// overwritten run's folder is already in place).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TensorBoardHook {
            dir: dir.into(),
            writer: None,
        }
    }

    /// The folder the event files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write(&mut self, values: &[(&str, f32)], step: usize) -> Result<(), TrainError> {
        match &mut self.writer {
            Some(w) => w.add_scalars(values, step as i64).map_err(tb_err),
            None => Ok(()),
        }
    }
}

impl Hook for TensorBoardHook {
    fn on_fit_start(
        &mut self,
        state: &TrainState,
        _epochs: usize,
        _steps: usize,
    ) -> Result<(), TrainError> {
        let mut w = EventWriter::create(&self.dir).map_err(tb_err)?;
        if state.global_step > 0 {
            // Resumed: what an interrupted process logged after the checkpoint is
            // logged again; the restart tells TensorBoard to drop the old copies.
            w.session_start(state.global_step as i64 + 1)
                .map_err(tb_err)?;
        }
        self.writer = Some(w);
        Ok(())
    }

    fn on_step(&mut self, s: &StepReport) -> Result<(), TrainError> {
        match s.loss {
            Some(loss) => self.write(
                &[("train/loss", loss as f32), ("train/lr", s.lr as f32)],
                s.global_step,
            ),
            None => self.write(&[("train/lr", s.lr as f32)], s.global_step),
        }
    }

    fn on_epoch_end(
        &mut self,
        e: &EpochReport<'_>,
        ctx: EpochContext<'_>,
    ) -> Result<Control, TrainError> {
        let mut values: Vec<(&str, f32)> = vec![
            ("train/epoch_loss", e.point.train_loss as f32),
            ("train/epoch", e.point.epoch as f32),
            ("train/images_per_second", e.images_per_second as f32),
        ];
        if let Some(m) = e.metrics {
            let opt = |name, v: Option<f64>| v.map(|v| (name, v as f32));
            values.extend(
                [
                    opt("val/loss", m.loss),
                    (!m.multi_label).then_some(("val/top1", m.top1 as f32)),
                    opt("val/top5", m.top5),
                    Some(("val/macro_precision", m.macro_precision as f32)),
                    Some(("val/macro_recall", m.macro_recall as f32)),
                    Some(("val/macro_f1", m.macro_f1 as f32)),
                    opt("val/macro_roc_auc", m.macro_roc_auc),
                    opt("val/map", m.mean_average_precision),
                    opt(
                        "val/expected_calibration_error",
                        m.calibration.as_ref().map(|c| c.expected_calibration_error),
                    ),
                ]
                .into_iter()
                .flatten(),
            );
        }
        self.write(&values, ctx.state.global_step)?;
        if let Some(w) = &mut self.writer {
            w.flush().map_err(tb_err)?;
        }
        Ok(Control::Continue)
    }

    fn on_fit_end(&mut self, _outcome: &FitOutcome) -> Result<(), TrainError> {
        match &mut self.writer {
            Some(w) => w.flush().map_err(tb_err),
            None => Ok(()),
        }
    }
}
