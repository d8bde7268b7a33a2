//! What a person watches during a run: a progress bar per epoch on a terminal
//! (epoch, step, loss, lr, images/s, ETA), plain log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars on a terminal, log lines otherwise.
    Auto,
    /// Log lines only (one per epoch and every few seconds).
    Lines,
    /// Nothing (library use, tests).
    Quiet,
}

/// Reports the steps of one epoch.
#[derive(Debug)]
pub struct EpochProgress {
    bar: Option<ProgressBar>,
    lines: bool,
    epoch: usize,
    epochs: usize,
    steps: usize,
    started: Instant,
    last_line: Instant,
    images: usize,
}

impl EpochProgress {
    /// Starts reporting epoch `epoch` (1-based) of `epochs`, with `steps` steps.
    pub fn start(mode: ProgressMode, epoch: usize, epochs: usize, steps: usize) -> EpochProgress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (mode == ProgressMode::Auto && terminal).then(|| {
            let bar = ProgressBar::new(steps as u64);
            let style = ProgressStyle::with_template(
                "epoch {prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg} ({eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(format!("{epoch}/{epochs}"));
            bar
        });
        let now = Instant::now();
        EpochProgress {
            bar,
            lines: mode == ProgressMode::Lines || (mode == ProgressMode::Auto && !terminal),
            epoch,
            epochs,
            steps,
            started: now,
            last_line: now,
            images: 0,
        }
    }

    /// Images per second so far in this epoch.
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    /// Records a finished step.
    pub fn step(&mut self, step_in_epoch: usize, images: usize, loss: f64, lr: f64) {
        self.images += images;
        let msg = format!(
            "loss {loss:.4} lr {lr:.3e} {:.1} img/s",
            self.images_per_second()
        );
        if let Some(bar) = &self.bar {
            bar.set_position(step_in_epoch as u64);
            bar.set_message(msg);
        } else if self.lines && self.last_line.elapsed() >= Duration::from_secs(10) {
            self.last_line = Instant::now();
            eprintln!(
                "epoch {}/{} step {step_in_epoch}/{} {msg}",
                self.epoch, self.epochs, self.steps
            );
        }
    }

    /// Ends the epoch's bar; returns the seconds it took.
    pub fn finish(self) -> f64 {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.started.elapsed().as_secs_f64()
    }
}
