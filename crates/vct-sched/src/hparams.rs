//! The schedule of each template, built from its hyperparameters: the one place
//! that maps template keys to a curve, so the trainer and `cargo xtask schedule`
//! agree.

use vct_hparams::HyperParams;

use crate::curves::{Constant, Curve, StepDecay, WarmupCosine, WarmupStyle};
use crate::error::SchedError;
use crate::schedule::Schedule;

/// Factor of each decrease of the Clarifai step schedule. Clarifai documents
/// `init_epochs` and `step_epochs` but not the factor; 0.1 is the conventional
/// choice (Caffe `lr_policy: "step"`, torchvision and mmengine recipes) and the
/// one `parity/sched.json` uses.
pub const CLARIFAI_STEP_GAMMA: f64 = 0.1;

/// Name of the pretrained feature extractor's parameter group.
pub const BACKBONE_GROUP: &str = "backbone";

/// Name of the classifier head's parameter group.
pub const HEAD_GROUP: &str = "head";

/// The schedule a template trains with, in the default (mmengine) warmup style.
///
/// - RSB-A1: linear warmup over `warmup_iters` steps from `warmup_ratio`, then
///   cosine from `batch_size × per_item_lrate` to `batch_size × per_item_min_lrate`
///   over the rest of `num_epochs × steps_per_epoch` steps.
/// - InceptionBatchNorm, InceptionV2, ResNext: `batch_size × per_item_lrate` for
///   `init_epochs`, then × [`CLARIFAI_STEP_GAMMA`] every `step_epochs`.
/// - InceptionTransferEmbedNorm: constant `lrate`; group `backbone` ×
///   `base_gradient_multiplier`, group `head` × 1.
///
/// Errors name the hyperparameter key.
pub fn for_hparams(hp: &HyperParams, steps_per_epoch: usize) -> Result<Schedule, SchedError> {
    for_hparams_with(hp, steps_per_epoch, WarmupStyle::Mmengine)
}

/// [`for_hparams`] with a chosen warmup convention (only RSB-A1 has a warmup).
pub fn for_hparams_with(
    hp: &HyperParams,
    steps_per_epoch: usize,
    style: WarmupStyle,
) -> Result<Schedule, SchedError> {
    if steps_per_epoch == 0 {
        return Err(SchedError::invalid("steps_per_epoch", 0, "at least 1 step"));
    }
    let total_steps = hp
        .num_epochs()
        .checked_mul(steps_per_epoch)
        .ok_or_else(|| {
            SchedError::invalid(
                "num_epochs × steps_per_epoch",
                format!("{} × {steps_per_epoch}", hp.num_epochs()),
                "a step count that fits in usize",
            )
        })?;
    let total_key = |key: &str| match key {
        "total_steps" => "num_epochs × steps_per_epoch".to_string(),
        other => other.to_string(),
    };
    match hp {
        HyperParams::RsbA1(p) => {
            let warmup_iters = usize::try_from(p.warmup_iters).unwrap_or(usize::MAX);
            let curve = WarmupCosine::new(
                p.lrate(),
                p.min_lrate(),
                warmup_iters,
                p.warmup_ratio,
                total_steps,
                style,
            )
            .map_err(|e| {
                e.renamed(|key| match key {
                    "lr" => "per_item_lrate".into(),
                    "min_lr" => "per_item_min_lrate".into(),
                    other => total_key(other),
                })
            })?;
            Schedule::new(Curve::WarmupCosine(curve), total_steps, steps_per_epoch)
        }
        HyperParams::InceptionBatchNorm(p)
        | HyperParams::InceptionV2(p)
        | HyperParams::ResNext(p) => {
            let epochs = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
            let curve = StepDecay::new(
                p.lrate(),
                CLARIFAI_STEP_GAMMA,
                epochs(p.init_epochs),
                epochs(p.step_epochs),
                steps_per_epoch,
            )
            .map_err(|e| {
                e.renamed(|key| match key {
                    "lr" => "per_item_lrate".into(),
                    other => other.to_string(),
                })
            })?;
            Schedule::new(Curve::Step(curve), total_steps, steps_per_epoch)
        }
        HyperParams::TransferEmbedNorm(p) => {
            let curve = Constant::new(p.lrate).map_err(|e| {
                e.renamed(|key| match key {
                    "lr" => "lrate".into(),
                    other => other.to_string(),
                })
            })?;
            Schedule::new(Curve::Constant(curve), total_steps, steps_per_epoch)?
                .with_group(BACKBONE_GROUP, p.base_gradient_multiplier)
                .map_err(|e| e.renamed(|_| "base_gradient_multiplier".into()))?
                .with_group(HEAD_GROUP, 1.0)
        }
    }
}
