//! Building a [`Classifier`] from a `candle_nn::VarBuilder`, the way candle
//! models are built: every tensor is read by name as its layer is created, so
//! `VarBuilder::from_mmaped_safetensors` (or `from_pth`) loads a pretrained
//! net with no random initialisation first and no second in-memory copy of the
//! file.
//!
//! What this path supports, compared with [`Classifier::load_weights`] (the
//! `.pth` path, which reads the whole file and reports key by key):
//!
//! - Names: the model's state-dict names (torchvision / timm for ResNets,
//!   `pretrainedmodels` for BN-Inception, TF-slim for Inception-v2), optionally
//!   under DataParallel's `module.` or, for ResNets, in mmpretrain's layout
//!   (`backbone.*` + `head.fc.*`). The [`KeyDialect`] is detected from the
//!   VarBuilder; any other prefix is the caller's `vb.pp(prefix)`.
//! - Shapes: exactly the model's, or the same up to size-1 dimensions (the
//!   `[1, C]` norm tensors of TSN's BN-Inception); anything else is an error
//!   naming the key and both shapes. Values are converted to `f32` on the
//!   VarBuilder's device.
//! - Keys the model does not use are not noticed: a VarBuilder can be asked for
//!   a name, not listed. Use [`Classifier::load_weights`] when a report of
//!   unexpected keys matters, for legacy (pre-1.6) or Python-2 torch files
//!   (which candle's `from_pth` does not read), and for nested training
//!   checkpoints other than one `state_dict`-like key (`from_pth_with_state`).
//!
//! The model's `Var`s are created from the VarBuilder's tensors, so the loaded
//! model trains like any other; the VarBuilder can be dropped once it is built.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::{ArchError, Result};
use crate::model::{Arch, Classifier, Family, ModelConfig};
use crate::params::{Group, TensorSource};
use crate::weights::{same_but_unit_dims, LoadMode};

/// How a checkpoint's names relate to the model's state-dict names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDialect {
    /// The model's own names (torchvision, timm, pretrainedmodels, TF-slim).
    Plain,
    /// Every name under `module.` (a model saved from `nn.DataParallel`).
    DataParallel,
    /// mmpretrain's classifier: `backbone.<name>` for the backbone and
    /// `head.fc.<weight|bias>` for the linear head (ResNets only).
    MmPretrain,
}

impl KeyDialect {
    /// All dialects, in the order [`KeyDialect::detect`] tries them.
    pub const ALL: [KeyDialect; 3] = [
        KeyDialect::Plain,
        KeyDialect::DataParallel,
        KeyDialect::MmPretrain,
    ];

    /// The checkpoint's name of model tensor `model_key` in this dialect; the
    /// inverse of [`Family::map_key`] for the ResNet family.
    pub fn file_key(self, model_key: &str) -> String {
        match self {
            KeyDialect::Plain => model_key.to_string(),
            KeyDialect::DataParallel => format!("module.{model_key}"),
            KeyDialect::MmPretrain => match model_key.strip_prefix("fc.") {
                Some(rest) => format!("head.fc.{rest}"),
                None => format!("backbone.{model_key}"),
            },
        }
    }

    /// The dialects a checkpoint of `family` may use.
    pub fn for_family(family: Family) -> &'static [KeyDialect] {
        match family {
            Family::ResNet => &KeyDialect::ALL,
            Family::BnInception | Family::InceptionV2 => {
                &[KeyDialect::Plain, KeyDialect::DataParallel]
            }
        }
    }

    /// The dialect in which `vb` holds `family`'s first tensor (its stem
    /// convolution's weight), or an error listing the names tried.
    pub fn detect(vb: &VarBuilder<'_>, arch: Arch) -> Result<KeyDialect> {
        let probe = stem_key(arch.family());
        let dialects = KeyDialect::for_family(arch.family());
        if let Some(d) = dialects
            .iter()
            .find(|d| vb.contains_tensor(&d.file_key(probe)))
        {
            return Ok(*d);
        }
        let tried: Vec<String> = dialects
            .iter()
            .map(|d| format!("`{}`", full_name(vb, &d.file_key(probe))))
            .collect();
        Err(ArchError::VarBuilderTensor {
            arch: arch.to_string(),
            key: probe.to_string(),
            problem: format!(
                "not found as any of {}: not {arch} weights, or under another prefix \
                 (then pass `vb.pp(prefix)`)",
                tried.join(", ")
            ),
        })
    }
}

/// Name of the first tensor every model of `family` has.
fn stem_key(family: Family) -> &'static str {
    match family {
        Family::ResNet => "conv1.weight",
        Family::BnInception => "conv1_7x7_s2.weight",
        Family::InceptionV2 => "Conv2d_1a_7x7.depthwise_weights",
    }
}

/// `name` with the VarBuilder's prefix, as the backend sees it.
fn full_name(vb: &VarBuilder<'_>, name: &str) -> String {
    let p = vb.prefix();
    if p.is_empty() {
        name.to_string()
    } else {
        format!("{p}.{name}")
    }
}

/// A [`TensorSource`] over a VarBuilder: the tensors of a model by name, in a
/// [`KeyDialect`], checked against the model's shapes.
pub struct VarBuilderSource<'a> {
    vb: VarBuilder<'a>,
    dialect: KeyDialect,
    mode: LoadMode,
    arch: Arch,
}

impl std::fmt::Debug for VarBuilderSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VarBuilderSource")
            .field("prefix", &self.vb.prefix())
            .field("dialect", &self.dialect)
            .field("mode", &self.mode)
            .field("arch", &self.arch)
            .finish()
    }
}

impl<'a> VarBuilderSource<'a> {
    /// Tensors of an `arch` model from `vb` in `dialect`. [`LoadMode::Exact`]:
    /// every tensor must be there; [`LoadMode::FineTune`]: a head tensor that is
    /// missing or of another shape keeps its seeded initialisation.
    pub fn new(vb: VarBuilder<'a>, dialect: KeyDialect, mode: LoadMode, arch: Arch) -> Self {
        VarBuilderSource {
            vb,
            dialect,
            mode,
            arch,
        }
    }

    fn err(&self, key: &str, problem: String) -> ArchError {
        ArchError::VarBuilderTensor {
            arch: self.arch.to_string(),
            key: key.to_string(),
            problem,
        }
    }
}

impl TensorSource for VarBuilderSource<'_> {
    fn tensor(&self, name: &str, shape: &[usize], group: Group) -> Result<Option<Tensor>> {
        let key = self.dialect.file_key(name);
        let looked = if key == name && self.vb.prefix().is_empty() {
            String::new()
        } else {
            format!(" (looked up as `{}`)", full_name(&self.vb, &key))
        };
        // Fine-tuning: a head for another class count (or none) starts fresh.
        let fresh_head = group == Group::Head && self.mode == LoadMode::FineTune;
        if !self.vb.contains_tensor(&key) {
            if fresh_head {
                return Ok(None);
            }
            return Err(self.err(name, format!("is missing{looked}")));
        }
        let t = self
            .vb
            .get_unchecked_dtype(&key, DType::F32)
            // A VarMap-backed VarBuilder only answers `get` with a shape.
            .or_else(|first| {
                self.vb
                    .get_with_hints_dtype(shape, &key, Default::default(), DType::F32)
                    .map_err(|_| first)
            })
            .map_err(|e| self.err(name, format!("cannot be read{looked}: {e}")))?;
        if t.dims() == shape {
            return Ok(Some(t));
        }
        if same_but_unit_dims(t.dims(), shape) {
            return Ok(Some(t.reshape(shape)?));
        }
        if fresh_head {
            return Ok(None);
        }
        Err(self.err(
            name,
            format!(
                "has shape {:?}{looked}, the model needs {shape:?}",
                t.dims()
            ),
        ))
    }
}

impl Classifier {
    /// Builds the model described by `config` from `vb`, reading every tensor
    /// (head included) by its state-dict name as its layer is created: no
    /// random initialisation runs, and the VarBuilder's file is not held twice.
    /// The model lives on `vb.device()`; see the [module docs](crate::varbuilder)
    /// for the names and shapes accepted.
    ///
    /// ```no_run
    /// use candle_core::{DType, Device};
    /// use candle_nn::VarBuilder;
    /// use vct_arch::{Arch, Classifier, ModelConfig};
    ///
    /// // SAFETY: the file is not modified while it is mapped.
    /// let vb = unsafe {
    ///     VarBuilder::from_mmaped_safetensors(&["resnet50.safetensors"], DType::F32, &Device::Cpu)?
    /// };
    /// let model = Classifier::load(vb, &ModelConfig::new(Arch::ResNet50, 1000))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(vb: VarBuilder<'_>, config: &ModelConfig) -> Result<Classifier> {
        Self::load_with(vb, config, LoadMode::Exact)
    }

    /// [`Classifier::load`] with a choice of what the head may do:
    /// [`LoadMode::FineTune`] starts a head that is missing from `vb` or of
    /// another shape (another class count) from its seeded initialisation.
    pub fn load_with(
        vb: VarBuilder<'_>,
        config: &ModelConfig,
        mode: LoadMode,
    ) -> Result<Classifier> {
        let dialect = KeyDialect::detect(&vb, config.arch)?;
        let device: Device = vb.device().clone();
        let source = VarBuilderSource::new(vb, dialect, mode, config.arch);
        Classifier::from_source(config, &device, &source)
    }
}
