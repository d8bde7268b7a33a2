//! What a person watches during a run on a terminal: a progress bar per epoch (epoch,
//! step, loss, lr, images/s, ETA) and the epoch's summary line above it.

use indicatif::{ProgressBar, ProgressStyle};
use vct_train::hooks::epoch_line;
use vct_train::trainer::{Control, EpochContext, EpochReport, Hook, StepReport};
use vct_train::TrainError;

/// A progress bar per epoch, as a trainer hook.
#[derive(Debug, Default)]
pub struct ProgressBarHook {
    bar: Option<ProgressBar>,
    loss: Option<f64>,
}

impl ProgressBarHook {
    /// A hook that draws on stderr.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Hook for ProgressBarHook {
    fn on_fit_start(
        &mut self,
        _state: &vct_train::trainer::TrainState,
        _epochs: usize,
        steps: usize,
    ) -> Result<(), TrainError> {
        let bar = ProgressBar::new(steps as u64);
        let style = ProgressStyle::with_template(
            "epoch {prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg} ({eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        self.bar = Some(bar);
        Ok(())
    }

    fn on_epoch_start(&mut self, epoch: usize, epochs: usize) -> Result<(), TrainError> {
        if let Some(bar) = &self.bar {
            bar.reset();
            bar.set_prefix(format!("{epoch}/{epochs}"));
        }
        Ok(())
    }

    fn on_step(&mut self, s: &StepReport) -> Result<(), TrainError> {
        if s.loss.is_some() {
            self.loss = s.loss;
        }
        if let Some(bar) = &self.bar {
            bar.set_position(s.step_in_epoch as u64);
            bar.set_message(format!(
                "loss {:.4} lr {:.3e} {:.1} img/s",
                self.loss.unwrap_or(f64::NAN),
                s.lr,
                s.images_per_second
            ));
        }
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        e: &EpochReport<'_>,
        _ctx: EpochContext<'_>,
    ) -> Result<Control, TrainError> {
        match &self.bar {
            Some(bar) => bar.println(epoch_line(e)),
            None => eprintln!("{}", epoch_line(e)),
        }
        Ok(Control::Continue)
    }

    fn on_fit_end(&mut self, _outcome: &vct_train::trainer::FitOutcome) -> Result<(), TrainError> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        Ok(())
    }
}
