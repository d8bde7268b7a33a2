//! The recipe: the only place that knows what each template means. It turns
//! hyperparameters and a concept count into the model, its initial weights,
//! the optimizer and its parameter groups, the schedule, the loss and the
//! image preprocessing. The trainer loop knows none of this.

use candle_core::Device;
use serde::{Deserialize, Serialize};
use vct_arch::{Arch, Classifier, ModelConfig};
use vct_hparams::{FlipDirection, HyperParams, PretrainedWeights};
use vct_optim::{split_decay, LambConfig, Optimizer, OptimizerConfig, SgdConfig};
use vct_sched::{Schedule, BACKBONE_GROUP, HEAD_GROUP};

use crate::loss::Output;
use crate::TrainError;

/// Stochastic depth of the RSB-A1 recipe.
pub const RSB_DROP_PATH: f64 = 0.05;
/// Momentum of the SGD templates (Clarifai does not state it; 0.9 is the standard).
pub const SGD_MOMENTUM: f64 = 0.9;
/// Weight decay of the SGD templates (not a Clarifai key; the usual ImageNet
/// fine-tuning value), never applied to norm and bias parameters.
pub const SGD_WEIGHT_DECAY: f64 = 1e-4;
/// Evaluation crop ratio of RSB-A1: resize to size / 0.95, centre-crop size.
pub const RSB_EVAL_CROP_RATIO: f64 = 0.95;

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
    /// Sigmoid + BCE or softmax + cross-entropy.
    pub output: Output,
    /// Image preprocessing.
    pub preprocess: Preprocess,
    /// Evaluate and predict on the mean embedding of the image and its mirror.
    pub flip_average_eval: bool,
}

impl Recipe {
    /// The recipe of `hparams` for `num_concepts` concepts; `seed` seeds the
    /// initial weights. `random_init` overrides a template's pretrained start
    /// (for data where no pretrained weights are available).
    pub fn new(
        hparams: &HyperParams,
        num_concepts: usize,
        seed: u64,
        random_init: bool,
    ) -> Result<Recipe, TrainError> {
        let size = hparams.image_size();
        let output = if hparams.multi_label() {
            Output::Sigmoid
        } else {
            Output::Softmax
        };
        let sgd = OptimizerConfig::Sgd(SgdConfig {
            momentum: SGD_MOMENTUM,
            weight_decay: SGD_WEIGHT_DECAY,
            ..SgdConfig::default()
        });
        let mut model;
        let (init, optimizer, backbone_lr_mult, preprocess, flip_avg);
        match hparams {
            HyperParams::RsbA1(p) => {
                model = ModelConfig::new(Arch::ResNet50, num_concepts);
                model.drop_path_rate = RSB_DROP_PATH;
                init = match p.pretrained_weights {
                    PretrainedWeights::ImageNet1k => Init::Pretrained(ArchName(Arch::ResNet50)),
                    PretrainedWeights::None => Init::Random,
                };
                // Random init follows timm's RSB setting: last BN of each block at 0.
                model.zero_init_last_bn = init == Init::Random;
                optimizer = OptimizerConfig::Lamb(LambConfig {
                    weight_decay: p.weight_decay,
                    ..LambConfig::default()
                });
                backbone_lr_mult = 1.0;
                preprocess = Preprocess {
                    size,
                    train_crop: TrainCrop::RandomResized { min_scale: 0.08 },
                    eval_resize: (size as f64 / RSB_EVAL_CROP_RATIO).round() as usize,
                    flip_probability: p.flip_probability,
                    flip_vertical: p.flip_direction == FlipDirection::Vertical,
                    norm: InputNorm::ImageNet,
                };
                flip_avg = false;
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
                init = if pretrained {
                    Init::Pretrained(ArchName(arch))
                } else {
                    Init::Random
                };
                optimizer = sgd;
                backbone_lr_mult = 1.0;
                preprocess = clarifai_preprocess(size, norm);
                flip_avg = false;
            }
            HyperParams::TransferEmbedNorm(p) => {
                model = ModelConfig::new(Arch::BnInception, num_concepts).with_norm_embed_head();
                init = Init::Pretrained(ArchName(Arch::BnInception));
                optimizer = sgd;
                backbone_lr_mult = p.base_gradient_multiplier;
                preprocess = clarifai_preprocess(size, InputNorm::Bgr255);
                flip_avg = p.average_horizontal_flips;
            }
        }
        model.seed = seed;
        let init = if random_init { Init::Random } else { init };
        Ok(Recipe {
            hparams: hparams.clone(),
            model,
            init,
            optimizer,
            backbone_lr_mult,
            output,
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
        vct_sched::for_hparams(&self.hparams, steps_per_epoch)
            .map_err(|e| TrainError::Component(format!("schedule: {e}")))
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

fn clarifai_preprocess(size: usize, norm: InputNorm) -> Preprocess {
    Preprocess {
        size,
        train_crop: TrainCrop::ShorterSideRandom,
        eval_resize: size,
        flip_probability: 0.5,
        flip_vertical: false,
        norm,
    }
}
