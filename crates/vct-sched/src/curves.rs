//! The curves: constant, linear warmup + cosine (three conventions), step decay.
//! Each is a closed form of the step, so `lr(step)` is pure and O(1) (O(warmup)
//! for the concurrent mmengine convention, which is recursive by definition).

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::error::{check_rate, SchedError};
use crate::LrSchedule;

/// The same rate at every step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Constant {
    /// The learning rate.
    pub lr: f64,
}

impl Constant {
    /// A constant schedule; `lr` must be finite and >= 0.
    pub fn new(lr: f64) -> Result<Constant, SchedError> {
        check_rate("lr", lr)?;
        Ok(Constant { lr })
    }
}

impl LrSchedule for Constant {
    fn lr(&self, _step: usize) -> f64 {
        self.lr
    }
}

/// How the linear warmup and the cosine are combined. Both conventions exist in
/// released configs, and they differ by up to 7% of the lr around the warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmupStyle {
    /// mmengine / mmpretrain 1.x: `LinearLR(begin=0, end=W)` then
    /// `CosineAnnealingLR(begin=W, T_max=total-W)`. The warmup factor rises
    /// linearly from `warmup_ratio` at step 0 to 1 at step `W-1`; the cosine starts
    /// at `lr` on step `W` and ends near `min_lr` on the last step.
    #[default]
    Mmengine,
    /// mmcv 1.x `lr_config=dict(policy='CosineAnnealing', warmup='linear')`: a
    /// cosine over the whole run from step 0, multiplied during the warmup by a
    /// factor that rises from `warmup_ratio` to 1 at step `W`.
    Mmcv1,
    /// mmengine with both schedulers starting at step 0 (`CosineAnnealingLR(begin=0,
    /// T_max=total)`): their recursive forms compose on the current lr. Provided to
    /// reproduce such configs; needs `warmup_ratio > 0` (mmengine divides by it).
    /// Like mmengine, it can overshoot `lr` during the warmup when `min_lr` is
    /// close to `lr`.
    MmengineConcurrent,
}

/// Linear warmup then cosine annealing to `min_lr` over `total_steps` steps.
///
/// Past the last step the rate holds its last value, as an mmengine scheduler
/// that has reached its `end` does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmupCosine {
    /// Peak learning rate (the cosine's start).
    pub lr: f64,
    /// Floor of the cosine (`eta_min`).
    pub min_lr: f64,
    /// Number of warmup steps (0 = no warmup).
    pub warmup_iters: usize,
    /// The warmup starts at `lr × warmup_ratio`.
    pub warmup_ratio: f64,
    /// Steps in the whole run, warmup included.
    pub total_steps: usize,
    /// How warmup and cosine combine.
    pub style: WarmupStyle,
}

impl WarmupCosine {
    /// Builds and validates the schedule. A warmup longer than the run is allowed:
    /// the run then ends during the warmup (the rate never reaches `lr`), exactly
    /// as mmengine would behave.
    pub fn new(
        lr: f64,
        min_lr: f64,
        warmup_iters: usize,
        warmup_ratio: f64,
        total_steps: usize,
        style: WarmupStyle,
    ) -> Result<WarmupCosine, SchedError> {
        let schedule = WarmupCosine {
            lr,
            min_lr,
            warmup_iters,
            warmup_ratio,
            total_steps,
            style,
        };
        schedule.validate()?;
        Ok(schedule)
    }

    /// Checks every field; errors name the field (`lr`, `min_lr`, `warmup_ratio`,
    /// `total_steps`).
    pub fn validate(&self) -> Result<(), SchedError> {
        check_rate("lr", self.lr)?;
        check_rate("min_lr", self.min_lr)?;
        if self.min_lr > self.lr {
            return Err(SchedError::MinAboveMax {
                min_key: "min_lr".into(),
                lr_key: "lr".into(),
                min_lr: self.min_lr,
                lr: self.lr,
            });
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err(SchedError::invalid(
                "warmup_ratio",
                self.warmup_ratio,
                "a number in [0, 1]",
            ));
        }
        if self.style == WarmupStyle::MmengineConcurrent
            && self.warmup_iters > 1
            && self.warmup_ratio == 0.0
        {
            return Err(SchedError::invalid(
                "warmup_ratio",
                self.warmup_ratio,
                "a number in (0, 1] for the concurrent mmengine style",
            ));
        }
        if self.total_steps == 0 {
            return Err(SchedError::invalid("total_steps", 0, "at least 1 step"));
        }
        Ok(())
    }

    /// The first step of the cosine proper (mmengine style), or the first step
    /// with the full warmup factor (mmcv style).
    pub fn warmup_end(&self) -> usize {
        self.warmup_iters
    }

    /// Linear warmup factor of mmengine's `LinearLR(start_factor=ratio, end=W)`,
    /// which reaches 1 at step `W-1` (its `total_iters` is `end - begin - 1`).
    fn mmengine_warmup_factor(&self, i: usize) -> f64 {
        let w = self.warmup_iters;
        if w <= 1 {
            self.warmup_ratio
        } else {
            self.warmup_ratio + (1.0 - self.warmup_ratio) * i as f64 / (w - 1) as f64
        }
    }

    /// `eta_min + (lr - eta_min) (1 + cos(pi t / t_max)) / 2`.
    fn cosine(&self, t: usize, t_max: usize) -> f64 {
        self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + (PI * t as f64 / t_max as f64).cos())
    }

    /// mmengine's chained `LinearLR` + `CosineAnnealingLR`, both from step 0: the
    /// recursion through the warmup, then the cosine's ratio form in closed form.
    fn concurrent(&self, i: usize) -> f64 {
        let w = self.warmup_iters;
        let t_max = self.total_steps;
        let eta = self.min_lr;
        if w == 0 {
            return self.cosine(i, t_max);
        }
        let ratio = |k: usize| {
            (1.0 + (PI * k as f64 / t_max as f64).cos())
                / (1.0 + (PI * (k - 1) as f64 / t_max as f64).cos())
        };
        let start = self.warmup_ratio;
        let slope = 1.0 - start;
        // Step 0: LinearLR sets lr × start_factor, the cosine leaves it.
        let mut v = self.lr * start;
        for k in 1..=i.min(w - 1) {
            v *= 1.0 + slope / ((w - 1) as f64 * start + (k - 1) as f64 * slope);
            v = ratio(k) * (v - eta) + eta;
        }
        if i >= w {
            // Only the cosine acts from step W on: its ratios telescope.
            let last = (w - 1) as f64;
            v = eta
                + (v - eta) * (1.0 + (PI * i as f64 / t_max as f64).cos())
                    / (1.0 + (PI * last / t_max as f64).cos());
        }
        v
    }
}

impl LrSchedule for WarmupCosine {
    fn lr(&self, step: usize) -> f64 {
        let i = step.min(self.total_steps.saturating_sub(1));
        let w = self.warmup_iters;
        match self.style {
            WarmupStyle::Mmengine => {
                if i < w {
                    self.lr * self.mmengine_warmup_factor(i)
                } else {
                    self.cosine(i - w, self.total_steps - w)
                }
            }
            WarmupStyle::Mmcv1 => {
                let regular = self.cosine(i, self.total_steps);
                if i < w {
                    let k = (1.0 - i as f64 / w as f64) * (1.0 - self.warmup_ratio);
                    regular * (1.0 - k)
                } else {
                    regular
                }
            }
            WarmupStyle::MmengineConcurrent => self.concurrent(i),
        }
    }
}

/// Step decay: `lr` for the first `init_epochs` epochs, then × `gamma` every
/// `step_epochs` epochs (mmengine `MultiStepLR` with milestones `init_epochs +
/// k·step_epochs`; equal to mmcv 1.x `policy='step'`).
///
/// `lr(step)` takes an optimisation step and decays on epoch boundaries; with
/// `steps_per_epoch = 1` the argument is the epoch index (a by-epoch schedule).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepDecay {
    /// The initial learning rate.
    pub lr: f64,
    /// Factor applied at each decrease.
    pub gamma: f64,
    /// Epochs at the initial rate before the first decrease.
    pub init_epochs: usize,
    /// Epochs between decreases.
    pub step_epochs: usize,
    /// Steps per epoch (1 = the step argument counts epochs).
    pub steps_per_epoch: usize,
}

impl StepDecay {
    /// Builds and validates a step schedule; errors name the argument.
    pub fn new(
        lr: f64,
        gamma: f64,
        init_epochs: usize,
        step_epochs: usize,
        steps_per_epoch: usize,
    ) -> Result<StepDecay, SchedError> {
        check_rate("lr", lr)?;
        if !(gamma.is_finite() && gamma > 0.0 && gamma <= 1.0) {
            return Err(SchedError::invalid("gamma", gamma, "a number in (0, 1]"));
        }
        if step_epochs == 0 {
            return Err(SchedError::invalid("step_epochs", 0, "at least 1 epoch"));
        }
        if steps_per_epoch == 0 {
            return Err(SchedError::invalid("steps_per_epoch", 0, "at least 1 step"));
        }
        Ok(StepDecay {
            lr,
            gamma,
            init_epochs,
            step_epochs,
            steps_per_epoch,
        })
    }

    /// Number of decreases that have happened by `epoch`.
    pub fn decays_by_epoch(&self, epoch: usize) -> usize {
        if epoch < self.init_epochs {
            0
        } else {
            (epoch - self.init_epochs) / self.step_epochs.max(1) + 1
        }
    }

    /// The epochs at which the rate decreases, below `num_epochs`.
    pub fn milestones(&self, num_epochs: usize) -> Vec<usize> {
        (self.init_epochs..num_epochs)
            .step_by(self.step_epochs.max(1))
            .collect()
    }
}

impl LrSchedule for StepDecay {
    fn lr(&self, step: usize) -> f64 {
        let epoch = step / self.steps_per_epoch.max(1);
        let n = self.decays_by_epoch(epoch).min(i32::MAX as usize) as i32;
        self.lr * self.gamma.powi(n)
    }
}

/// Any of the curves, tagged by `kind` when serialised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Curve {
    /// See [`Constant`].
    Constant(Constant),
    /// See [`WarmupCosine`].
    WarmupCosine(WarmupCosine),
    /// See [`StepDecay`].
    Step(StepDecay),
}

impl LrSchedule for Curve {
    fn lr(&self, step: usize) -> f64 {
        match self {
            Curve::Constant(c) => c.lr(step),
            Curve::WarmupCosine(c) => c.lr(step),
            Curve::Step(c) => c.lr(step),
        }
    }
}
