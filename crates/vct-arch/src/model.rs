//! Architectures by name, and the [`Classifier`] (backbone + head) built from them.

use std::fmt;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use crate::error::{ArchError, Result};
use crate::heads::{LinearHead, NormEmbedHead, NORM_EMBED_SCALE};
use crate::inception::{Inception, InceptionConfig};
use crate::params::{Entry, Group, ParamStore, Scope, TensorSource};
use crate::resnet::{ResNet, ResNetConfig};
use crate::{Backbone, Head};

/// Every architecture this crate builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// ResNet-18.
    ResNet18,
    /// ResNet-34.
    ResNet34,
    /// ResNet-50 (v1.5).
    ResNet50,
    /// ResNet-101.
    ResNet101,
    /// ResNet-152.
    ResNet152,
    /// ResNeXt-50 32x4d.
    ResNeXt50_32x4d,
    /// ResNeXt-101 32x8d.
    ResNeXt101_32x8d,
    /// BN-Inception, `pretrainedmodels` layout.
    BnInception,
    /// Inception-v2, TF-slim layout.
    InceptionV2,
}

/// Weight-naming family: decides checkpoint key mapping and head names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// torchvision / timm / mmpretrain ResNet names.
    ResNet,
    /// `pretrainedmodels` BN-Inception names.
    BnInception,
    /// TF-slim Inception-v2 names.
    InceptionV2,
}

impl Arch {
    /// All architectures.
    pub const ALL: [Arch; 9] = [
        Arch::ResNet18,
        Arch::ResNet34,
        Arch::ResNet50,
        Arch::ResNet101,
        Arch::ResNet152,
        Arch::ResNeXt50_32x4d,
        Arch::ResNeXt101_32x8d,
        Arch::BnInception,
        Arch::InceptionV2,
    ];

    /// Canonical name (timm / torchvision spelling).
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet34 => "resnet34",
            Arch::ResNet50 => "resnet50",
            Arch::ResNet101 => "resnet101",
            Arch::ResNet152 => "resnet152",
            Arch::ResNeXt50_32x4d => "resnext50_32x4d",
            Arch::ResNeXt101_32x8d => "resnext101_32x8d",
            Arch::BnInception => "bninception",
            Arch::InceptionV2 => "inception_v2",
        }
    }

    /// Parses a canonical name.
    pub fn from_name(name: &str) -> Result<Arch> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| ArchError::UnknownArch {
                name: name.to_string(),
                expected: Arch::ALL.map(Arch::name).join(", "),
            })
    }

    /// Naming family.
    pub fn family(self) -> Family {
        match self {
            Arch::BnInception => Family::BnInception,
            Arch::InceptionV2 => Family::InceptionV2,
            _ => Family::ResNet,
        }
    }

    /// ResNet configuration, for the ResNet family.
    pub fn resnet_config(self) -> Option<ResNetConfig> {
        Some(match self {
            Arch::ResNet18 => ResNetConfig::resnet18(),
            Arch::ResNet34 => ResNetConfig::resnet34(),
            Arch::ResNet50 => ResNetConfig::resnet50(),
            Arch::ResNet101 => ResNetConfig::resnet101(),
            Arch::ResNet152 => ResNetConfig::resnet152(),
            Arch::ResNeXt50_32x4d => ResNetConfig::resnext50_32x4d(),
            Arch::ResNeXt101_32x8d => ResNetConfig::resnext101_32x8d(),
            Arch::BnInception | Arch::InceptionV2 => return None,
        })
    }
}

/// How input images must be prepared for an architecture's pretrained weights:
/// `x = (pixel * scale - mean) / std` per channel, channels in `bgr` order if set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputNorm {
    /// Channel order BGR (Caffe-converted weights) instead of RGB.
    pub bgr: bool,
    /// Multiplier taking pixels in [0, 1] to the weights' range (1 or 255).
    pub scale: f32,
    /// Per-channel mean, in the channel order above, after scaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, after scaling.
    pub std: [f32; 3],
}

impl Arch {
    /// Input normalisation the pretrained weights expect: torchvision/timm
    /// ImageNet statistics for ResNets; BGR 0..255 minus [104, 117, 128] for
    /// `pretrainedmodels` BN-Inception; TF-slim's [-1, 1] scaling for Inception-v2.
    pub fn input_norm(self) -> InputNorm {
        match self.family() {
            Family::ResNet => InputNorm {
                bgr: false,
                scale: 1.0,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
            },
            Family::BnInception => InputNorm {
                bgr: true,
                scale: 255.0,
                mean: [104.0, 117.0, 128.0],
                std: [1.0, 1.0, 1.0],
            },
            Family::InceptionV2 => InputNorm {
                bgr: false,
                scale: 1.0,
                mean: [0.5, 0.5, 0.5],
                std: [0.5, 0.5, 0.5],
            },
        }
    }
}

#[cfg(feature = "preprocess")]
impl Arch {
    /// The evaluation preprocessing this architecture's pretrained weights
    /// expect, for `vct_augment` to apply: `preprocess().load(path, &device)` is
    /// the `[1, 3, 224, 224]` input of a photo.
    ///
    /// - ResNets / ResNeXts (torchvision's ImageNet weights): `Resize(256)`
    ///   bilinear, `CenterCrop(224)`, RGB 0..1, ImageNet mean / std. timm's
    ///   `resnet50.a1_in1k` was evaluated at `crop_pct` 0.95 bicubic: use
    ///   `EvalPreprocess { resize: 235, filter: Filter::Bicubic, ..Arch::ResNet50.preprocess() }`.
    /// - BN-Inception (`pretrainedmodels`' `TransformImage`, scale 0.875):
    ///   `Resize(256)`, `CenterCrop(224)`, BGR, 0..255 minus `[104, 117, 128]`.
    /// - Inception-v2 (no published weights vct loads; TF-slim's -1..1 scale at
    ///   TF-slim's 0.875 central crop, applied as a 256 resize and 224 crop).
    pub fn preprocess(self) -> vct_augment::EvalPreprocess {
        vct_augment::EvalPreprocess {
            normalize: augment_normalize(self.input_norm()),
            ..vct_augment::EvalPreprocess::IMAGENET
        }
    }
}

/// [`InputNorm`] as vct-augment's [`vct_augment::Normalize`]. BGR is only
/// `pretrainedmodels`' convention here (0..255, std 1), which `Bgr255` is.
#[cfg(feature = "preprocess")]
fn augment_normalize(n: InputNorm) -> vct_augment::Normalize {
    use vct_augment::Normalize;
    if n.bgr {
        Normalize::Bgr255 { mean: n.mean }
    } else {
        // (p * scale - mean) / std == (p - mean / scale) / (std / scale).
        Normalize::MeanStd {
            mean: n.mean.map(|m| m / n.scale),
            std: n.std.map(|d| d / n.scale),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Family {
    /// Names of the linear classifier's weight and bias in this family's checkpoints.
    pub fn linear_head_names(self) -> (&'static str, &'static str) {
        match self {
            Family::ResNet => ("fc.weight", "fc.bias"),
            Family::BnInception => ("last_linear.weight", "last_linear.bias"),
            Family::InceptionV2 => (
                "Logits.Conv2d_1c_1x1.weights",
                "Logits.Conv2d_1c_1x1.biases",
            ),
        }
    }

    /// Maps a checkpoint key to this crate's name; `None` = not a tensor of the
    /// model (`num_batches_tracked`). The one place that knows the key dialects:
    /// DataParallel `module.`, mmpretrain `backbone.` / `head.fc.`.
    pub fn map_key(self, key: &str) -> Option<String> {
        if key.ends_with("num_batches_tracked") {
            return None;
        }
        let mut k = key.strip_prefix("module.").unwrap_or(key);
        if self == Family::ResNet {
            if let Some(rest) = k.strip_prefix("head.fc.") {
                return Some(format!("fc.{rest}"));
            }
            k = k.strip_prefix("backbone.").unwrap_or(k);
        }
        Some(k.to_string())
    }
}

/// Which head to put on the backbone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeadKind {
    /// Linear classifier with the family's names (`fc`, `last_linear`, `Logits.Conv2d_1c_1x1`).
    Linear,
    /// [`NormEmbedHead`] under `embed_head.*` with this initial scale.
    NormEmbed {
        /// Initial scale (learnable).
        scale: f64,
    },
}

/// Everything needed to build a [`Classifier`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture.
    pub arch: Arch,
    /// Number of output classes (concepts).
    pub num_classes: usize,
    /// Head type.
    pub head: HeadKind,
    /// ResNet stochastic depth rate (0.05 in RSB-A1); ignored by Inception.
    pub drop_path_rate: f64,
    /// Dropout before the linear head in training (0 by default; vct-train's recipe
    /// sets TF-slim's 0.2 for its Inception-v2 template).
    pub head_dropout: f64,
    /// ResNet: start each residual branch's last BN scale at 0.
    pub zero_init_last_bn: bool,
    /// Inception-v2 depth multiplier (1.0 = the standard network).
    pub depth_multiplier: f64,
    /// Seed of the initial weights and drop-path masks.
    pub seed: u64,
}

impl ModelConfig {
    /// `arch` with `num_classes` outputs, linear head, no drop path, seed 0.
    pub fn new(arch: Arch, num_classes: usize) -> ModelConfig {
        ModelConfig {
            arch,
            num_classes,
            head: HeadKind::Linear,
            drop_path_rate: 0.0,
            head_dropout: 0.0,
            zero_init_last_bn: false,
            depth_multiplier: 1.0,
            seed: 0,
        }
    }

    /// The same with the normalised-embedding head at its default scale.
    pub fn with_norm_embed_head(mut self) -> ModelConfig {
        self.head = HeadKind::NormEmbed {
            scale: NORM_EMBED_SCALE,
        };
        self
    }
}

/// One row of [`Classifier::layer_table`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    /// Layer (or block) name.
    pub name: String,
    /// Output shape for a batch of one.
    pub shape: Vec<usize>,
    /// Trainable parameters of the layer.
    pub params: usize,
}

/// Backbone + head over one named, seeded parameter store.
pub struct Classifier {
    config: ModelConfig,
    backbone: Box<dyn Backbone>,
    head: Box<dyn Head>,
    store: ParamStore,
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("arch", &self.config.arch)
            .field("num_classes", &self.config.num_classes)
            .field("out_dim", &self.backbone.out_dim())
            .finish()
    }
}

impl Classifier {
    /// Builds a randomly initialised model (seeded by `config.seed`) on `device`.
    pub fn new(config: &ModelConfig, device: &Device) -> Result<Classifier> {
        let store = ParamStore::new(config.seed, device);
        let (bs, hs) = (store.scope(Group::Backbone), store.scope(Group::Head));
        Self::build(config, store.clone(), &bs, &hs)
    }

    /// Builds the model with each tensor's value from `source` where it has one
    /// (the seeded init elsewhere), on `device`: nothing is drawn at random for
    /// a tensor the source provides. [`Classifier::load`] is this over a
    /// `candle_nn::VarBuilder`.
    pub fn from_source(
        config: &ModelConfig,
        device: &Device,
        source: &dyn TensorSource,
    ) -> Result<Classifier> {
        let store = ParamStore::new(config.seed, device);
        let bs = store.scope_from(Group::Backbone, source);
        let hs = store.scope_from(Group::Head, source);
        Self::build(config, store.clone(), &bs, &hs)
    }

    fn build(
        config: &ModelConfig,
        store: ParamStore,
        bs: &Scope<'_>,
        hs: &Scope<'_>,
    ) -> Result<Classifier> {
        if config.num_classes == 0 {
            return Err(ArchError::InvalidConfig {
                key: "num_classes".into(),
                value: "0".into(),
                expected: "at least 1".into(),
            });
        }
        let backbone: Box<dyn Backbone> = match config.arch.resnet_config() {
            Some(mut rc) => {
                rc.drop_path_rate = config.drop_path_rate;
                rc.zero_init_last_bn = config.zero_init_last_bn;
                Box::new(ResNet::new(bs, &rc)?)
            }
            None => {
                let ic = match config.arch {
                    Arch::BnInception => InceptionConfig::bn_inception(),
                    _ => InceptionConfig::inception_v2(config.depth_multiplier),
                };
                Box::new(Inception::new(bs, &ic)?)
            }
        };
        let dim = backbone.out_dim();
        let head: Box<dyn Head> = match config.head {
            HeadKind::Linear => {
                let (w, b) = config.arch.family().linear_head_names();
                let (ws, wn) = w.rsplit_once('.').unwrap_or(("", w));
                let (_, bn) = b.rsplit_once('.').unwrap_or(("", b));
                let hs = hs.pp(ws);
                let head = LinearHead::new(&hs, wn, bn, dim, config.num_classes)?;
                Box::new(head.with_dropout(&hs, config.head_dropout)?)
            }
            HeadKind::NormEmbed { scale } => Box::new(NormEmbedHead::new(
                &hs.pp("embed_head"),
                dim,
                config.num_classes,
                scale,
            )?),
        };
        Ok(Classifier {
            config: config.clone(),
            backbone,
            head,
            store,
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Architecture.
    pub fn arch(&self) -> Arch {
        self.config.arch
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.head.num_classes()
    }

    /// Embedding width.
    pub fn out_dim(&self) -> usize {
        self.backbone.out_dim()
    }

    fn check_input(x: &Tensor) -> Result<()> {
        let dims = x.dims();
        if dims.len() != 4
            || dims[1] != 3
            || x.dtype() != DType::F32
            || dims[2] < 32
            || dims[3] < 32
        {
            return Err(ArchError::InvalidInput {
                got: format!("{:?} tensor of shape {:?}", x.dtype(), dims),
                expected: "an F32 batch [N, 3, H, W] with H, W >= 32".into(),
            });
        }
        Ok(())
    }

    /// Embeddings `[N, out_dim]` (the classifier's input). `train`: batch-norm
    /// batch statistics + running-stat updates, drop path, autograd graph.
    pub fn embed(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Self::check_input(x)?;
        self.backbone.forward(x, train)
    }

    /// Mean of the embeddings of `x` and of its horizontal mirror
    /// (`average_horizontal_flips` of the transfer template).
    pub fn embed_flip_avg(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let w = x.dim(3)?;
        let idx: Vec<u32> = (0..w as u32).rev().collect();
        let idx = Tensor::from_vec(idx, w, x.device())?;
        let flipped = x.index_select(&idx, 3)?;
        Ok(((self.embed(x, train)? + self.embed(&flipped, train)?)? * 0.5)?)
    }

    /// Logits `[N, num_classes]` from embeddings.
    pub fn head_forward(&self, emb: &Tensor, train: bool) -> Result<Tensor> {
        self.head.forward(emb, train)
    }

    /// Logits `[N, num_classes]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.head.forward(&self.embed(x, train)?, train)
    }

    /// Restarts the random masks of dropout and drop path from (their seed,
    /// `salt`). The trainer sets the salt to the epoch, so a run resumed at an
    /// epoch boundary draws the same masks as an uninterrupted one.
    pub fn set_mask_salt(&self, salt: u64) {
        self.store.set_mask_salt(salt);
    }

    /// Every tensor (parameters and running statistics) in state-dict order.
    pub fn entries(&self) -> Vec<Entry> {
        self.store.entries()
    }

    fn params_of(&self, group: Group) -> Vec<(String, Var)> {
        self.store
            .entries()
            .into_iter()
            .filter(|e| e.trainable && e.group == group)
            .map(|e| (e.name, e.var))
            .collect()
    }

    /// Trainable backbone tensors with their state-dict names (no running statistics).
    pub fn backbone_params(&self) -> Vec<(String, Var)> {
        self.params_of(Group::Backbone)
    }

    /// Trainable head tensors with their state-dict names.
    pub fn head_params(&self) -> Vec<(String, Var)> {
        self.params_of(Group::Head)
    }

    /// Running statistics (not trainable; updated by `forward(x, true)`).
    pub fn buffers(&self) -> Vec<(String, Var)> {
        self.store
            .entries()
            .into_iter()
            .filter(|e| !e.trainable)
            .map(|e| (e.name, e.var))
            .collect()
    }

    /// Number of trainable scalars (as PyTorch's `sum(p.numel() for p in parameters())`).
    pub fn num_params(&self) -> usize {
        self.store
            .entries()
            .iter()
            .filter(|e| e.trainable)
            .map(|e| e.var.elem_count())
            .sum()
    }

    /// The `VarMap` holding every tensor (parameters and running statistics).
    pub fn varmap(&self) -> &VarMap {
        self.store.varmap()
    }

    /// The device of the model's tensors.
    pub fn device(&self) -> &Device {
        self.store.device()
    }

    /// One row per layer for an input of `h`×`w`: name, output shape (batch 1,
    /// eval mode) and number of trainable parameters; the last row is the head.
    pub fn layer_table(&self, h: usize, w: usize) -> Result<Vec<LayerRow>> {
        let x = Tensor::zeros((1, 3, h, w), DType::F32, self.device())?;
        Self::check_input(&x)?;
        let entries: Vec<Entry> = self
            .store
            .entries()
            .into_iter()
            .filter(|e| e.trainable)
            .collect();
        let count = |prefixes: &[&str]| -> usize {
            entries
                .iter()
                .filter(|e| prefixes.iter().any(|p| e.name.starts_with(p)))
                .map(|e| e.var.elem_count())
                .sum()
        };
        let mut rows = Vec::new();
        let emb = self
            .backbone
            .forward_traced(&x, false, &mut |name, prefixes, t| {
                rows.push(LayerRow {
                    name: name.to_string(),
                    shape: t.dims().to_vec(),
                    params: count(prefixes),
                });
            })?;
        rows.push(LayerRow {
            name: "global_avg_pool".into(),
            shape: emb.dims().to_vec(),
            params: 0,
        });
        let logits = self.head.forward(&emb, false)?;
        rows.push(LayerRow {
            name: "head".into(),
            shape: logits.dims().to_vec(),
            params: self.head_params().iter().map(|(_, v)| v.elem_count()).sum(),
        });
        Ok(rows)
    }

    /// Every tensor by name, detached (for saving).
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.store
            .entries()
            .into_iter()
            .map(|e| (e.name, e.var.as_detached_tensor()))
            .collect()
    }
}

impl candle_nn::ModuleT for Classifier {
    /// Logits `[N, num_classes]`, as [`Classifier::forward`].
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(Classifier::forward(self, xs, train)?)
    }
}
