//! Learning-rate schedules as pure functions of the step: linear warmup + cosine
//! (mmengine and mmcv 1.x conventions), step decay, constant, and per-group
//! multipliers on top. No state and no tensors: `lr(step)` can be called in any
//! order, so a resumed run needs nothing but its step counter.
//!
//! ```
//! use vct_sched::{LrSchedule, WarmupCosine, WarmupStyle};
//!
//! // 10 warmup steps from 0.25 × lr, then cosine to 0.001 over the other 90.
//! let s = WarmupCosine::new(0.1, 0.001, 10, 0.25, 100, WarmupStyle::Mmengine).unwrap();
//! assert!((s.lr(0) - 0.025).abs() < 1e-15);
//! assert!((s.lr(9) - 0.1).abs() < 1e-15);
//! assert!((s.lr(10) - 0.1).abs() < 1e-15);
//! assert!(s.lr(99) < 0.00104);
//! ```

mod curves;
mod error;
mod schedule;

pub use curves::{Constant, Curve, StepDecay, WarmupCosine, WarmupStyle};
pub use error::SchedError;
pub use schedule::{GroupMultiplier, KeyPoint, Schedule};

/// A learning rate as a function of the optimisation step (0-based): the value
/// the optimizer uses for its `step`-th update.
pub trait LrSchedule {
    /// The learning rate in force during `step`.
    fn lr(&self, step: usize) -> f64;
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
