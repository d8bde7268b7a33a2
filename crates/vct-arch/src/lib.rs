//! Image classification architectures on candle: ResNet/ResNeXt, BN-Inception,
//! Inception-v2, heads, weight loading.
//!
//! Build a [`Classifier`] from a [`ModelConfig`] — at random with
//! [`Classifier::new`], or from a `candle_nn::VarBuilder` with
//! [`Classifier::load`] (pretrained weights read by name as the layers are
//! created) — run `forward(x, train)` on an NCHW f32 batch (or use it as a
//! `candle_nn::ModuleT`; [`Eval`] makes any `ModuleT` a `Module` in eval mode),
//! hand `backbone_params()` / `head_params()` to an optimizer, load `.pth` /
//! `.safetensors` checkpoints with a key-by-key report with
//! [`Classifier::load_weights`] and save with [`Classifier::save`].
//! [`Arch::preprocess`] turns an image file into the tensor an architecture's
//! pretrained weights expect; [`KernelBackend::enter`] picks the compute
//! backend for a scope.

#![warn(missing_docs)]

pub mod error;
pub mod heads;
pub mod inception;
pub mod layers;
pub mod model;
pub mod params;
pub mod resnet;
pub mod varbuilder;
pub mod weights;

use candle_core::Tensor;

/// candle's tensors and devices, re-exported so a user of this crate alone has them.
pub use candle_core;
/// candle's `VarBuilder`, `Module` and `ModuleT`, re-exported likewise.
pub use candle_nn;
/// Image decoding and preprocessing (`EvalPreprocess`, `decode_file`), re-exported.
#[cfg(feature = "preprocess")]
pub use vct_augment as augment;
/// The compute backend of the layers' convolutions, batch norms and pools, and
/// the scoped ways to choose it (`KernelBackend::enter()`, `with_backend`).
pub use vct_kernels::{
    backend as kernel_backend, set_backend, with_backend, BackendGuard, KernelBackend,
};

pub use error::{ArchError, Result};
pub use heads::{LinearHead, NormEmbedHead};
pub use inception::{Inception, InceptionConfig};
pub use model::{Arch, Classifier, Family, HeadKind, InputNorm, LayerRow, ModelConfig};
pub use resnet::{ResNet, ResNetConfig};
pub use varbuilder::KeyDialect;
pub use weights::{LoadMode, LoadOptions, LoadReport, WeightsLookup};

/// A `candle_nn::ModuleT` used as a `candle_nn::Module` in eval mode:
/// `x.apply(&Eval(&model))` is `model.forward_t(&x, false)`.
///
/// candle implements `ModuleT` for every `Module` (ignoring `train`), so one type
/// cannot be both a train-aware `ModuleT` and a `Module`; the models of this
/// crate are `ModuleT`s (batch norm and drop path depend on `train`, as
/// candle's own `BatchNorm`), and this wrapper is their `Module`.
#[derive(Debug, Clone, Copy)]
pub struct Eval<'a, M: ?Sized>(pub &'a M);

impl<M: candle_nn::ModuleT + ?Sized> candle_nn::Module for Eval<'_, M> {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.0.forward_t(xs, false)
    }
}

/// Callback of a traced forward pass: layer name, the name prefixes of its
/// parameters, its output.
pub type Tracer<'a> = dyn FnMut(&str, &[&str], &Tensor) + 'a;

/// A feature extractor: NCHW f32 batch → embeddings `[N, out_dim()]`.
pub trait Backbone: Send + Sync + std::fmt::Debug {
    /// Embeddings; `train` selects batch statistics and drop path.
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor>;
    /// Embedding width.
    fn out_dim(&self) -> usize;
    /// [`Backbone::forward`], reporting each layer's output to `trace`
    /// (for layer tables); the default reports nothing.
    fn forward_traced(&self, x: &Tensor, train: bool, trace: &mut Tracer<'_>) -> Result<Tensor> {
        let _ = trace;
        self.forward(x, train)
    }
}

/// A classifier head: embeddings `[N, D]` → logits `[N, num_classes()]`.
pub trait Head: Send + Sync + std::fmt::Debug {
    /// Logits.
    fn forward(&self, emb: &Tensor, train: bool) -> Result<Tensor>;
    /// Number of classes.
    fn num_classes(&self) -> usize;
}

/// The README's examples run as doctests (they use `Arch::preprocess`).
#[cfg(all(doctest, feature = "preprocess"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
