//! `Schedule`: a curve over a run of known length, with per-group multipliers
//! (e.g. a backbone trained at a fraction of the head's rate) and the curve's
//! key points for reports and plots.

use serde::{Deserialize, Serialize};

use crate::curves::{Curve, WarmupStyle};
use crate::error::SchedError;
use crate::LrSchedule;

/// A named parameter group whose rate is the schedule's rate × `multiplier`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMultiplier {
    /// Group name, as the model names its parameter groups (`backbone`, `head`).
    pub name: String,
    /// Factor on the schedule's rate; 0 freezes the group.
    pub multiplier: f64,
}

/// A point of the curve worth showing: start, end of warmup, a decay, the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyPoint {
    /// Optimisation step (0-based).
    pub step: usize,
    /// Base learning rate in force during that step.
    pub lr: f64,
    /// What happens there.
    pub label: String,
}

/// The learning-rate schedule of one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The base curve.
    pub curve: Curve,
    /// Steps in the run.
    pub total_steps: usize,
    /// Steps per epoch (used to label key points by epoch).
    pub steps_per_epoch: usize,
    /// Multipliers of named groups; a group not listed gets 1.
    pub groups: Vec<GroupMultiplier>,
}

impl Schedule {
    /// A schedule of `total_steps` steps with no group multipliers.
    pub fn new(
        curve: Curve,
        total_steps: usize,
        steps_per_epoch: usize,
    ) -> Result<Schedule, SchedError> {
        if total_steps == 0 {
            return Err(SchedError::invalid("total_steps", 0, "at least 1 step"));
        }
        if steps_per_epoch == 0 {
            return Err(SchedError::invalid("steps_per_epoch", 0, "at least 1 step"));
        }
        Ok(Schedule {
            curve,
            total_steps,
            steps_per_epoch,
            groups: Vec::new(),
        })
    }

    /// Adds (or replaces) a group multiplier; it must be finite and >= 0.
    pub fn with_group(mut self, name: &str, multiplier: f64) -> Result<Schedule, SchedError> {
        if !(multiplier.is_finite() && multiplier >= 0.0) {
            return Err(SchedError::invalid(
                &format!("multiplier of group `{name}`"),
                multiplier,
                "a finite number >= 0",
            ));
        }
        self.groups.retain(|g| g.name != name);
        self.groups.push(GroupMultiplier {
            name: name.to_string(),
            multiplier,
        });
        Ok(self)
    }

    /// The multiplier of a group (1 when the group is not listed).
    pub fn multiplier(&self, group: &str) -> f64 {
        self.groups
            .iter()
            .find(|g| g.name == group)
            .map_or(1.0, |g| g.multiplier)
    }

    /// The rate of `group` at `step`: the base rate × the group's multiplier.
    pub fn group_lr(&self, group: &str, step: usize) -> f64 {
        self.lr(step) * self.multiplier(group)
    }

    /// The base rate at every step of the run.
    pub fn curve_points(&self) -> Vec<f64> {
        (0..self.total_steps).map(|s| self.lr(s)).collect()
    }

    /// Start, end of warmup, each decay and the last step, in step order; points
    /// that fall on the same step are merged.
    pub fn key_points(&self) -> Vec<KeyPoint> {
        // Fields are public (and deserialised unchecked): never divide by 0.
        let last = self.total_steps.saturating_sub(1);
        let epoch = |s: usize| s / self.steps_per_epoch.max(1) + 1;
        let mut points: Vec<(usize, String)> = vec![(0, "start".into())];
        match &self.curve {
            Curve::Constant(_) => {}
            Curve::WarmupCosine(c) => {
                let w = c.warmup_iters;
                match c.style {
                    WarmupStyle::Mmengine | WarmupStyle::MmengineConcurrent => {
                        if w > 1 && w - 1 <= last {
                            points.push((w - 1, "last warmup step (warmup factor 1)".into()));
                        }
                        if w > 0 && w <= last {
                            points.push((w, "cosine begins".into()));
                        }
                    }
                    WarmupStyle::Mmcv1 => {
                        if w > 0 && w <= last {
                            points.push((w, "warmup ends".into()));
                        }
                    }
                }
                if w > last {
                    points.push((
                        last,
                        format!("warmup ({w} steps) is longer than the run: it never ends"),
                    ));
                }
            }
            Curve::Step(c) => {
                let epochs = self.total_steps.div_ceil(c.steps_per_epoch.max(1));
                for m in c.milestones(epochs) {
                    let s = m * c.steps_per_epoch.max(1);
                    if s <= last {
                        points.push((s, format!("× {} (epoch {})", c.gamma, epoch(s))));
                    }
                }
            }
        }
        points.push((last, format!("last step (epoch {})", epoch(last))));
        points.sort_by_key(|(step, _)| *step);
        let mut merged: Vec<KeyPoint> = Vec::new();
        for (step, label) in points {
            match merged.last_mut() {
                Some(prev) if prev.step == step => {
                    prev.label = format!("{}; {label}", prev.label);
                }
                _ => merged.push(KeyPoint {
                    step,
                    lr: self.lr(step),
                    label,
                }),
            }
        }
        merged
    }
}

impl LrSchedule for Schedule {
    fn lr(&self, step: usize) -> f64 {
        self.curve.lr(step)
    }
}
