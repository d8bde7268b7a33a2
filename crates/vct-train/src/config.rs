//! The one persisted run configuration: everything that decides what a run computes,
//! written to `run.json` and into every checkpoint, and restored whole by `--resume`.
//!
//! A resumed run may change only what cannot change its result so far: `num_epochs`
//! (extending, or shortening to no fewer than the epochs done) and the early-stopping
//! patience. Display options (`--plain`, `--verbose`) are not part of the configuration.
//! Any other difference is refused with the key, the old and the new value, so a resumed
//! run is always the run it resumes.
//!
//! Extending `num_epochs` of a template with a cosine schedule (RSB-A1) stretches the
//! cosine over the new length: from the resume point on the learning rate follows the
//! longer curve, which is higher than where the shorter one was heading. The step
//! schedules of the Clarifai templates and the constant one of the transfer template are
//! functions of the epoch alone and do not change.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vct_hparams::HyperParams;

use crate::TrainError;

/// Where the validation images come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ValSource {
    /// `train/` + `val/` folders under the data root if present, else a 10%
    /// stratified split (none for fewer than 20 images).
    Auto,
    /// A folder or manifest.
    Path(PathBuf),
    /// A stratified fraction of the training data.
    Split(f64),
    /// No validation.
    None,
}

/// Optional augmentations of the full RSB-A1 recipe, usable with any template.
/// Off by default: on small fine-tuning sets and short schedules they slow
/// convergence more than they regularise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Extras {
    /// Mixup / CutMix on training batches (targets mixed accordingly).
    pub mixup: Option<vct_augment::Mixup>,
    /// RandAugment `(n, m, std)` after the crop and flip.
    pub randaugment: Option<(usize, f64, f64)>,
}

/// The images a run trains and validates on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// A folder `root/<concept>/<image>` (or with `train/` and `val/` inside), or a CSV /
    /// JSONL manifest; absolute, so a resumed run finds it from any directory.
    pub train: PathBuf,
    /// The validation images.
    pub val: ValSource,
}

/// Where the initial weights come from, beyond what the template says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InitConfig {
    /// Start from random weights even where the template expects pretrained ones.
    pub random_init: bool,
    /// An explicit pretrained weights file.
    pub weights: Option<PathBuf>,
    /// Another pretrained source than the template's (`ORG/REPO[:FILE]` or a URL).
    pub weights_source: Option<String>,
    /// Train the head alone on a frozen backbone (linear probing), whatever the template.
    pub freeze_backbone: bool,
}

/// Everything that decides what a run computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Template and hyperparameters.
    pub hparams: HyperParams,
    /// Seed of every random choice (weights, split, data order, augmentation, masks).
    pub seed: u64,
    /// The images.
    pub data: DataConfig,
    /// Mixup / CutMix / RandAugment.
    pub extras: Extras,
    /// Initial weights.
    pub init: InitConfig,
    /// `cpu`, `cuda:N` or `metal`.
    pub device: String,
    /// Stop after this many epochs without a better validation score.
    pub early_stopping: Option<usize>,
    /// The vct version that started the run.
    pub vct_version: String,
}

/// One refused change on resume: the key, the run's value and the requested one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The setting (a hyperparameter key or a run option).
    pub key: String,
    /// Its value in the run.
    pub old: String,
    /// The value asked for.
    pub new: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the run has {}, asked for {}",
            self.key, self.old, self.new
        )
    }
}

/// The most images one epoch may draw: the epoch's order is held in memory (8 bytes an
/// item), and at a thousand images a second this is already a 28-hour epoch.
pub const MAX_ITEMS_PER_EPOCH: usize = 100_000_000;

fn show<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "?".into())
}

impl RunConfig {
    /// `hparams` on the images at `data` with every other setting at its default: seed
    /// 0, validation found or split automatically, no extras, the template's initial
    /// weights, the CPU, no early stopping.
    pub fn new(hparams: HyperParams, data: impl Into<PathBuf>) -> RunConfig {
        RunConfig {
            hparams,
            seed: 0,
            data: DataConfig {
                train: data.into(),
                val: ValSource::Auto,
            },
            extras: Extras::default(),
            init: InitConfig::default(),
            device: "cpu".into(),
            early_stopping: None,
            vct_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// The same with random initial weights (`--random-init`).
    pub fn random_init(mut self) -> RunConfig {
        self.init.random_init = true;
        self
    }

    /// The configuration a resume with `requested` runs: `requested` with every setting
    /// the caller gave (others copied from this one). Allowed to differ: `num_epochs`
    /// (not below `epochs_done`) and `early_stopping`; anything else is refused, every
    /// difference at once.
    pub fn resume_with(
        &self,
        requested: &RunConfig,
        epochs_done: usize,
    ) -> Result<RunConfig, TrainError> {
        let mut refused = Vec::new();
        let mut push = |key: &str, old: String, new: String| {
            refused.push(Refusal {
                key: key.into(),
                old,
                new,
            })
        };
        if self.hparams.template() != requested.hparams.template() {
            push(
                "template",
                self.hparams.template().to_string(),
                requested.hparams.template().to_string(),
            );
        } else {
            let (old, new) = (
                self.hparams.params_value(),
                requested.hparams.params_value(),
            );
            if let (Some(old), Some(new)) = (old.as_object(), new.as_object()) {
                for (key, value) in new {
                    let before = old.get(key).cloned().unwrap_or(serde_json::Value::Null);
                    if *value != before && key != "num_epochs" {
                        push(key, before.to_string(), value.to_string());
                    }
                }
            }
            let epochs = requested.hparams.num_epochs();
            if epochs < epochs_done {
                push(
                    "num_epochs",
                    format!("{} ({epochs_done} done)", self.hparams.num_epochs()),
                    format!("{epochs} (fewer than the epochs already done)"),
                );
            }
        }
        if self.seed != requested.seed {
            push("seed", self.seed.to_string(), requested.seed.to_string());
        }
        if self.data.train != requested.data.train {
            push(
                "data",
                self.data.train.display().to_string(),
                requested.data.train.display().to_string(),
            );
        }
        if self.data.val != requested.data.val {
            push(
                "validation (--val / --val-split / --no-val)",
                show(&self.data.val),
                show(&requested.data.val),
            );
        }
        if self.extras != requested.extras {
            push(
                "extras (--mixup / --cutmix / --randaugment / --rsb-extras)",
                show(&self.extras),
                show(&requested.extras),
            );
        }
        if self.init != requested.init {
            push(
                "initial weights (--random-init / --weights / --weights-source / --freeze-backbone)",
                show(&self.init),
                show(&requested.init),
            );
        }
        if self.device != requested.device {
            push("device", self.device.clone(), requested.device.clone());
        }
        if refused.is_empty() {
            let mut next = self.clone();
            next.hparams = requested.hparams.clone();
            next.early_stopping = requested.early_stopping;
            Ok(next)
        } else {
            Err(TrainError::ResumeChanges { refused })
        }
    }
}

/// Checks the sizes a run would work with before any work starts: images per epoch
/// and steps.
pub fn check_epoch_size(
    hparams: &HyperParams,
    dataset_len: usize,
) -> Result<(usize, usize), TrainError> {
    let items = hparams.items_per_epoch(dataset_len);
    if items > MAX_ITEMS_PER_EPOCH {
        return Err(TrainError::TooLarge {
            what: "num_items_per_epoch".into(),
            value: items.to_string(),
            limit: format!(
                "at most {MAX_ITEMS_PER_EPOCH} images per epoch (the epoch order is held in \
                 memory, 8 bytes an image)"
            ),
        });
    }
    if items == 0 {
        return Err(TrainError::TooLarge {
            what: "images per epoch".into(),
            value: "0".into(),
            limit: "at least one training image".into(),
        });
    }
    let batch = hparams.batch_size();
    if batch == 0 {
        return Err(TrainError::TooLarge {
            what: "batch_size".into(),
            value: "0".into(),
            limit: "at least 1".into(),
        });
    }
    Ok((items, items.div_ceil(batch)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vct_hparams::Template;

    fn config() -> RunConfig {
        RunConfig {
            hparams: HyperParams::defaults(Template::InceptionV2),
            seed: 7,
            data: DataConfig {
                train: "/data/photos".into(),
                val: ValSource::Split(0.2),
            },
            extras: Extras::default(),
            init: InitConfig::default(),
            device: "cpu".into(),
            early_stopping: None,
            vct_version: "0.1.0".into(),
        }
    }

    #[test]
    fn resume_allows_epochs_and_patience_and_refuses_the_rest_by_name() {
        let c = config();
        let mut more = c.clone();
        more.hparams = c.hparams.with_override("num_epochs=80").unwrap();
        more.early_stopping = Some(3);
        let next = c.resume_with(&more, 10).unwrap();
        assert_eq!(next.hparams.num_epochs(), 80);
        assert_eq!(next.early_stopping, Some(3));

        let mut changed = c.clone();
        changed.seed = 0;
        changed.hparams = c.hparams.with_override("batch_size=16").unwrap();
        changed.data.val = ValSource::Auto;
        let err = c.resume_with(&changed, 1).unwrap_err();
        let TrainError::ResumeChanges { refused } = &err else {
            panic!("{err}")
        };
        let keys: Vec<&str> = refused.iter().map(|r| r.key.as_str()).collect();
        assert!(
            keys.contains(&"seed") && keys.contains(&"batch_size"),
            "{keys:?}"
        );
        assert!(keys.iter().any(|k| k.starts_with("validation")), "{keys:?}");
        let text = err.to_string();
        assert!(text.contains("seed: the run has 7, asked for 0"), "{text}");
        assert!(
            text.contains("batch_size: the run has 64, asked for 16"),
            "{text}"
        );

        let mut fewer = c.clone();
        fewer.hparams = c.hparams.with_override("num_epochs=2").unwrap();
        assert!(c.resume_with(&fewer, 5).is_err());
    }

    #[test]
    fn epoch_sizes_are_bounded_before_work() {
        let hp = HyperParams::defaults(Template::ResNext)
            .with_override("num_items_per_epoch=1000000000000")
            .unwrap();
        let err = check_epoch_size(&hp, 100).unwrap_err().to_string();
        assert!(
            err.contains("num_items_per_epoch") && err.contains("1000000000000"),
            "{err}"
        );
        let hp = HyperParams::defaults(Template::ResNext)
            .with_override(&format!("num_items_per_epoch={}", u64::MAX))
            .unwrap();
        assert!(check_epoch_size(&hp, 100).is_err());
        let hp = HyperParams::defaults(Template::ResNext);
        assert_eq!(check_epoch_size(&hp, 100).unwrap(), (100, 2));
        assert!(check_epoch_size(&hp, 0).is_err());
    }
}
