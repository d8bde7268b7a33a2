//! The recipe: the only place that knows what each template means. It turns
//! hyperparameters and a concept count into the model, its initial weights,
//! the optimizer and its parameter groups, the schedule, the loss and the
//! image preprocessing. The trainer loop knows none of this.
//!
//! # `MMClassification_ResNet_50_RSB_A1` and its sources
//!
//! The references are mmpretrain's `resnet50_8xb256-rsb-a1-600e_in1k` (the
//! template's name is MMClassification's) and timm's `resnet50.a1_in1k`. Where
//! vct differed from them (issue 13), what it does now:
//!
//! 1. **Label smoothing** — fixed: ε = [`RSB_LABEL_SMOOTHING`] (0.1), mmpretrain's
//!    `LabelSmoothLoss(mode='original', use_sigmoid=True)`: targets
//!    `y·(1 − ε) + ε/K`, after Mixup / CutMix ([`Loss::label_smoothing`], a
//!    recipe field, 0 for the Clarifai templates).
//! 2. **BCE reduction** — option, mmpretrain's value by default: the sum over
//!    the batch size N ([`Reduction::SumOverBatch`], `avg_factor = N`); timm's
//!    mean over N·K ([`Reduction::MeanOverElements`]) stays available in
//!    [`Loss::reduction`] and is what the Clarifai templates use.
//! 3. **Zero-init of each block's last BN after `--random-init`** — fixed: the
//!    final init (template, then the `random_init` override) is decided before
//!    the model, so a random start always zero-inits it, as mmpretrain's
//!    `ResNet(zero_init_residual=True)` and timm do.
//! 4. **Interpolation** — fixed, recorded in [`Preprocess::filter`]: bicubic
//!    (Pillow's `BICUBIC`) for the training RandomResizedCrop and the evaluation
//!    resize, as mmpretrain (`interpolation='bicubic'`, pillow backend) and timm;
//!    the Clarifai templates keep bilinear. Runs recorded before read as bilinear,
//!    which is what they used. (RandAugment's rotate / shear / translate still
//!    sample bilinearly; mmpretrain sets bicubic there too.)
//! 5. **Evaluation resize** — fixed: one rule, [`vct_augment::eval_resize_size`]
//!    (size / crop ratio, rounded), for every template: 236 for 224 at
//!    [`RSB_EVAL_CROP_RATIO`] 0.95 as mmpretrain's `ResizeEdge(scale=236)`
//!    (timm floors to 235); the Clarifai templates use ratio 1.
//! 6. **`per_item_min_lrate > per_item_lrate`** — fixed: refused by vct-hparams'
//!    validation, naming both keys and values.
//! 7. **Label semantics of manifests** — fixed: a manifest with one concept per
//!    row is single-label; softmax (`logreg = 0`, `concepts_mutually_exclusive =
//!    true`) on rows of several concepts is refused, naming the row
//!    ([`crate::data::check_labels`]).

use candle_core::Device;
use serde::{Deserialize, Serialize};
use vct_arch::{Arch, Classifier, ModelConfig};
use vct_hparams::{FlipDirection, HyperParams, PretrainedWeights};
use vct_optim::{split_decay, LambConfig, Optimizer, OptimizerConfig, SgdConfig};
use vct_sched::{Constant, Curve, Schedule, StepDecay, WarmupCosine, WarmupStyle};

use vct_augment::{eval_resize_size, Filter};

use crate::config::{Extras, InitConfig};
use crate::loss::{Loss, Output, Reduction};
use crate::TrainError;

/// Name of the pretrained feature extractor's parameter group.
pub const BACKBONE_GROUP: &str = "backbone";

/// Name of the classifier head's parameter group.
pub const HEAD_GROUP: &str = "head";

/// Factor of each decrease of the Clarifai step schedule. Clarifai documents
/// `init_epochs` and `step_epochs` but not the factor; 0.1 is the conventional
/// choice (Caffe `lr_policy: "step"`, torchvision and mmengine recipes) and the
/// one `parity/sched.json` uses.
pub const CLARIFAI_STEP_GAMMA: f64 = 0.1;

/// Dropout before the linear head of `Clarifai_InceptionV2` in training: TF-slim's
/// `inception_v2(dropout_keep_prob=0.8)`.
pub const INCEPTION_V2_HEAD_DROPOUT: f64 = 0.2;

/// The extras of the full RSB-A1 recipe (the paper's table 1): Mixup 0.2, CutMix 1.0,
/// RandAugment n 2, m 7, std 0.5 — what `--rsb-extras` turns on, for any template.
pub fn rsb_a1_extras() -> Extras {
    Extras {
        mixup: Some(vct_augment::Mixup::rsb_a1()),
        randaugment: Some((2, 7.0, 0.5)),
    }
}

/// Stochastic depth of the RSB-A1 recipe.
pub const RSB_DROP_PATH: f64 = 0.05;
/// Momentum of the SGD templates (Clarifai does not state it; 0.9 is the standard).
pub const SGD_MOMENTUM: f64 = 0.9;
/// Weight decay of the SGD templates (not a Clarifai key; the usual ImageNet
/// fine-tuning value), never applied to norm and bias parameters.
pub const SGD_WEIGHT_DECAY: f64 = 1e-4;
/// Evaluation crop ratio of RSB-A1: resize to size / 0.95, centre-crop size.
pub const RSB_EVAL_CROP_RATIO: f64 = 0.95;
/// Evaluation crop ratio of the Clarifai templates: resize the shorter side to
/// `image_size`, centre-crop `image_size`.
pub const CLARIFAI_EVAL_CROP_RATIO: f64 = 1.0;
/// Label smoothing of RSB-A1 (mmpretrain's `label_smooth_val`, timm's `smoothing`).
pub const RSB_LABEL_SMOOTHING: f64 = 0.1;

/// How pixels become network input, per the weights' convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputNorm {
    /// RGB in 0..1, minus ImageNet mean, over ImageNet std (torchvision / timm).
    ImageNet,
    /// BGR in 0..255 minus the mean (104, 117, 128) (`pretrainedmodels` BN-Inception).
    Bgr255,
    /// RGB scaled to -1..1 (TF-slim Inception).
    Symmetric,
}

/// How images are resized and cropped for training and for evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Side of the square network input.
    pub size: usize,
    /// Training: random-resized crop (scale range) or shorter-side resize + random crop.
    pub train_crop: TrainCrop,
    /// Evaluation: resize the shorter side to this, then centre-crop `size`.
    pub eval_resize: usize,
    /// Probability of the random flip.
    pub flip_probability: f64,
    /// Axis of the random flip.
    pub flip_vertical: bool,
    /// Pixel normalisation.
    pub norm: InputNorm,
    /// Resampling filter of every resize (training crop and evaluation).
    /// Absent from runs recorded before it existed, which resized bilinearly.
    #[serde(default)]
    pub filter: Filter,
}

/// The training crop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum TrainCrop {
    /// torchvision's RandomResizedCrop with this area-scale range and ratio 3/4..4/3.
    RandomResized {
        /// Smallest fraction of the image area.
        min_scale: f64,
    },
    /// Resize the shorter side to `size`, then a random `size`×`size` crop.
    ShorterSideRandom,
}

/// Where the initial weights come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Init {
    /// Random, seeded.
    Random,
    /// A pretrained file for this architecture (found through `WeightsLookup`).
    Pretrained(ArchName),
}

/// An architecture name, serialisable for `run.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchName(#[serde(with = "arch_serde")] pub Arch);

mod arch_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use vct_arch::Arch;

    pub fn serialize<S: Serializer>(arch: &Arch, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(arch.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arch, D::Error> {
        let name = String::deserialize(d)?;
        Arch::from_name(&name).map_err(serde::de::Error::custom)
    }
}

/// Everything a template means for one dataset.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The validated hyperparameters.
    pub hparams: HyperParams,
    /// The network to build.
    pub model: ModelConfig,
    /// Its initial weights.
    pub init: Init,
    /// Optimizer and its settings.
    pub optimizer: OptimizerConfig,
    /// Backbone learning rate relative to the head's (0 freezes the backbone).
    pub backbone_lr_mult: f64,
    /// The training loss: sigmoid + BCE or softmax + cross-entropy, label
    /// smoothing and reduction.
    pub loss: Loss,
    /// Image preprocessing.
    pub preprocess: Preprocess,
    /// Evaluate and predict on the mean embedding of the image and its mirror.
    pub flip_average_eval: bool,
}

impl Recipe {
    /// The recipe of `hparams` for `num_concepts` concepts; `seed` seeds the
    /// initial weights. `init.random_init` overrides a template's pretrained start
    /// (for data where no pretrained weights are available); `init.freeze_backbone`
    /// trains the head alone (linear probing) whatever the template.
    pub fn new(
        hparams: &HyperParams,
        num_concepts: usize,
        seed: u64,
        init: &InitConfig,
    ) -> Result<Recipe, TrainError> {
        let random_init = init.random_init;
        let size = hparams.image_size();
        let output = if hparams.multi_label() {
            Output::Sigmoid
        } else {
            Output::Softmax
        };
        let eval_resize = |ratio: f64| -> Result<usize, TrainError> {
            let side = u32::try_from(size)
                .map_err(|_| TrainError::Component(format!("image_size {size} is too large")))?;
            eval_resize_size(side, ratio)
                .map(|v| v as usize)
                .map_err(|e| TrainError::Component(e.to_string()))
        };
        let sgd = OptimizerConfig::Sgd(SgdConfig {
            momentum: SGD_MOMENTUM,
            weight_decay: SGD_WEIGHT_DECAY,
            ..SgdConfig::default()
        });
        // The start the run will really have: the template's, unless overridden.
        let final_init = |template_init: Init| {
            if random_init {
                Init::Random
            } else {
                template_init
            }
        };
        let freeze = init.freeze_backbone;
        let mut model;
        let (template_init, optimizer, backbone_lr_mult, preprocess, flip_avg, loss);
        match hparams {
            HyperParams::RsbA1(p) => {
                model = ModelConfig::new(Arch::ResNet50, num_concepts);
                model.drop_path_rate = RSB_DROP_PATH;
                template_init = final_init(match p.pretrained_weights {
                    PretrainedWeights::ImageNet1k => Init::Pretrained(ArchName(Arch::ResNet50)),
                    PretrainedWeights::None => Init::Random,
                });
                // A random start zero-inits each block's last BN, as mmpretrain's
                // ResNet (zero_init_residual=True) and timm's RSB runs do.
                model.zero_init_last_bn = template_init == Init::Random;
                optimizer = OptimizerConfig::Lamb(LambConfig {
                    weight_decay: p.weight_decay,
                    ..LambConfig::default()
                });
                backbone_lr_mult = 1.0;
                preprocess = Preprocess {
                    size,
                    train_crop: TrainCrop::RandomResized { min_scale: 0.08 },
                    eval_resize: eval_resize(RSB_EVAL_CROP_RATIO)?,
                    flip_probability: p.flip_probability,
                    flip_vertical: p.flip_direction == FlipDirection::Vertical,
                    norm: InputNorm::ImageNet,
                    filter: Filter::Bicubic,
                };
                flip_avg = false;
                loss = Loss {
                    output,
                    label_smoothing: RSB_LABEL_SMOOTHING,
                    reduction: Reduction::SumOverBatch,
                };
            }
            HyperParams::InceptionBatchNorm(_)
            | HyperParams::InceptionV2(_)
            | HyperParams::ResNext(_) => {
                let (arch, norm, pretrained) = match hparams {
                    HyperParams::InceptionBatchNorm(_) => {
                        (Arch::BnInception, InputNorm::Bgr255, true)
                    }
                    HyperParams::InceptionV2(_) => (Arch::InceptionV2, InputNorm::Symmetric, false),
                    _ => (Arch::ResNeXt50_32x4d, InputNorm::ImageNet, true),
                };
                model = ModelConfig::new(arch, num_concepts);
                if arch == Arch::InceptionV2 {
                    model.head_dropout = INCEPTION_V2_HEAD_DROPOUT;
                }
                template_init = final_init(if pretrained {
                    Init::Pretrained(ArchName(arch))
                } else {
                    Init::Random
                });
                optimizer = sgd;
                backbone_lr_mult = 1.0;
                preprocess =
                    clarifai_preprocess(size, eval_resize(CLARIFAI_EVAL_CROP_RATIO)?, norm);
                flip_avg = false;
                loss = Loss::plain(output);
            }
            HyperParams::TransferEmbedNorm(p) => {
                model = ModelConfig::new(Arch::BnInception, num_concepts).with_norm_embed_head();
                template_init = final_init(Init::Pretrained(ArchName(Arch::BnInception)));
                optimizer = sgd;
                backbone_lr_mult = p.base_gradient_multiplier;
                preprocess = clarifai_preprocess(
                    size,
                    eval_resize(CLARIFAI_EVAL_CROP_RATIO)?,
                    InputNorm::Bgr255,
                );
                flip_avg = p.average_horizontal_flips;
                loss = Loss::plain(output);
            }
        }
        model.seed = seed;
        Ok(Recipe {
            hparams: hparams.clone(),
            model,
            init: template_init,
            optimizer,
            backbone_lr_mult: if freeze { 0.0 } else { backbone_lr_mult },
            loss,
            preprocess,
            flip_average_eval: flip_avg,
        })
    }

    /// True when the backbone takes no updates (base_gradient_multiplier 0).
    pub fn backbone_frozen(&self) -> bool {
        self.backbone_lr_mult == 0.0
    }

    /// The learning-rate schedule for `steps_per_epoch` steps per epoch.
    pub fn schedule(&self, steps_per_epoch: usize) -> Result<Schedule, TrainError> {
        schedule_for(&self.hparams, steps_per_epoch, WarmupStyle::Mmengine)
            .map_err(|e| TrainError::Component(format!("schedule: {e}")))
    }

    /// Refuses a batch size and image size whose training would exhaust this machine's
    /// memory, with the estimate and what is available (before any work starts).
    pub fn check_memory(&self) -> Result<(), TrainError> {
        let Some(available) = available_memory() else {
            return Ok(());
        };
        let need = self.training_memory_estimate();
        if need > available {
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            return Err(TrainError::TooLarge {
                what: format!(
                    "batch_size {} at image_size {}",
                    self.hparams.batch_size(),
                    self.hparams.image_size()
                ),
                value: format!("about {:.1} GiB of memory to train", gib(need)),
                limit: format!(
                    "this machine has {:.1} GiB available; lower batch_size or image_size",
                    gib(available)
                ),
            });
        }
        Ok(())
    }

    /// Peak memory of training, estimated from measured peaks of this implementation
    /// (`cargo xtask bench train`): weights, gradients and optimizer state, plus the
    /// activations of one batch, which grow with the image area.
    pub fn training_memory_estimate(&self) -> u64 {
        // Activation bytes per image at 224×224 in training, measured (with margin).
        let per_image_224: f64 = match self.model.arch {
            Arch::ResNeXt50_32x4d | Arch::ResNeXt101_32x8d => 220e6,
            Arch::ResNet101 | Arch::ResNet152 => 300e6,
            Arch::BnInception | Arch::InceptionV2 => 90e6,
            _ => 180e6,
        };
        let params: f64 = match self.model.arch {
            Arch::ResNet50 => 25.6e6,
            Arch::ResNeXt50_32x4d => 25.0e6,
            Arch::BnInception => 11.3e6,
            Arch::InceptionV2 => 11.2e6,
            Arch::ResNet101 | Arch::ResNeXt101_32x8d => 88.8e6,
            Arch::ResNet152 => 60.2e6,
            _ => 22e6,
        };
        let side = self.preprocess.size as f64 / 224.0;
        let activations = self.hparams.batch_size() as f64 * side * side * per_image_224;
        // f32 weights, gradients and up to two optimizer slots.
        (params * 4.0 * 4.0 + activations) as u64
    }

    /// Builds the (randomly initialised, seeded) model on `device`.
    pub fn build_model(&self, device: &Device) -> Result<Classifier, TrainError> {
        Classifier::new(&self.model, device).map_err(|e| TrainError::Component(e.to_string()))
    }

    /// The optimizer over the model's parameter groups: backbone (× the backbone
    /// multiplier; left out entirely when frozen) and head, each split into a
    /// decayed group and a no-decay group for norm and bias parameters.
    pub fn build_optimizer(&self, model: &Classifier) -> Result<Optimizer, TrainError> {
        let mut groups = Vec::new();
        if !self.backbone_frozen() {
            groups.extend(split_decay(
                BACKBONE_GROUP,
                model.backbone_params(),
                self.backbone_lr_mult,
            ));
        }
        groups.extend(split_decay(HEAD_GROUP, model.head_params(), 1.0));
        Optimizer::new(self.optimizer, groups)
            .map_err(|e| TrainError::Component(format!("optimizer: {e}")))
    }
}

/// Memory the system can give a new allocation (`MemAvailable` on Linux).
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The schedule a template trains with.
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
pub fn schedule_for(
    hp: &HyperParams,
    steps_per_epoch: usize,
    style: WarmupStyle,
) -> Result<Schedule, vct_sched::SchedError> {
    use vct_sched::SchedError;
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

fn clarifai_preprocess(size: usize, eval_resize: usize, norm: InputNorm) -> Preprocess {
    Preprocess {
        size,
        train_crop: TrainCrop::ShorterSideRandom,
        eval_resize,
        flip_probability: 0.5,
        flip_vertical: false,
        norm,
        filter: Filter::Bilinear,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vct_hparams::Template;

    fn init(random_init: bool) -> InitConfig {
        InitConfig {
            random_init,
            ..InitConfig::default()
        }
    }

    #[test]
    fn random_init_zero_inits_the_rsb_blocks_last_bn() {
        // The template's default start is ImageNet-1k; --random-init overrides it.
        let hp = HyperParams::defaults(Template::RsbA1);
        let pretrained = Recipe::new(&hp, 3, 0, &init(false)).unwrap();
        assert_eq!(pretrained.init, Init::Pretrained(ArchName(Arch::ResNet50)));
        assert!(!pretrained.model.zero_init_last_bn);
        let random = Recipe::new(&hp, 3, 0, &init(true)).unwrap();
        assert_eq!(random.init, Init::Random);
        assert!(random.model.zero_init_last_bn);
        // In the built network: every bottleneck's bn3 scale is 0, bn1's is not.
        let model = random.build_model(&Device::Cpu).unwrap();
        let mut bn3 = 0;
        for e in model.entries() {
            let values: Vec<f32> = e.var.flatten_all().unwrap().to_vec1().unwrap();
            if e.name.ends_with(".bn3.weight") {
                bn3 += 1;
                assert!(values.iter().all(|&v| v == 0.0), "{} not zero", e.name);
            } else if e.name.ends_with(".bn1.weight") {
                assert!(values.iter().all(|&v| v == 1.0), "{}", e.name);
            }
        }
        assert_eq!(bn3, 16, "ResNet-50 has 3 + 4 + 6 + 3 bottlenecks");
        // Set by the template too (pretrained_weights = None), not only by the flag.
        let none = hp.with_override("pretrained_weights=None").unwrap();
        assert!(
            Recipe::new(&none, 3, 0, &init(false))
                .unwrap()
                .model
                .zero_init_last_bn
        );
    }

    #[test]
    fn rsb_a1_loss_and_preprocessing_follow_mmpretrain() {
        let rsb = Recipe::new(&HyperParams::defaults(Template::RsbA1), 5, 0, &init(false)).unwrap();
        assert_eq!(
            rsb.loss,
            Loss {
                output: Output::Sigmoid,
                label_smoothing: 0.1,
                reduction: Reduction::SumOverBatch,
            }
        );
        assert_eq!(rsb.preprocess.filter, Filter::Bicubic);
        // One evaluation-resize rule: vct_augment's, mmpretrain's ResizeEdge(236).
        assert_eq!(rsb.preprocess.eval_resize, 236);
        assert_eq!(
            rsb.preprocess.eval_resize,
            eval_resize_size(224, RSB_EVAL_CROP_RATIO).unwrap() as usize
        );
        let exclusive = HyperParams::defaults(Template::RsbA1)
            .with_override("concepts_mutually_exclusive=true")
            .unwrap();
        let rsb_softmax = Recipe::new(&exclusive, 5, 0, &init(false)).unwrap();
        assert_eq!(rsb_softmax.loss.output, Output::Softmax);
        assert_eq!(rsb_softmax.loss.label_smoothing, 0.1);
        for template in [
            Template::InceptionBatchNorm,
            Template::InceptionV2,
            Template::ResNext,
            Template::TransferEmbedNorm,
        ] {
            let r = Recipe::new(&HyperParams::defaults(template), 5, 0, &init(false)).unwrap();
            assert_eq!(r.loss, Loss::plain(Output::Sigmoid), "{template}");
            assert_eq!(r.preprocess.filter, Filter::Bilinear, "{template}");
            assert_eq!(r.preprocess.eval_resize, 256, "{template}");
        }
    }

    #[test]
    fn preprocessing_recorded_before_the_filter_reads_as_bilinear() {
        let old = r#"{"size": 224, "train_crop": {"RandomResized": {"min_scale": 0.08}},
            "eval_resize": 236, "flip_probability": 0.5, "flip_vertical": false,
            "norm": "ImageNet"}"#;
        let p: Preprocess = serde_json::from_str(old).unwrap();
        assert_eq!(p.filter, Filter::Bilinear);
        let now = serde_json::to_value(Preprocess {
            filter: Filter::Bicubic,
            ..p
        })
        .unwrap();
        assert_eq!(now["filter"], "bicubic");
    }
}
