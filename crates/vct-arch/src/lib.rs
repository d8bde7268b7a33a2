//! Image classification architectures on candle: ResNet/ResNeXt, BN-Inception,
//! Inception-v2, heads, weight loading.
//!
//! Build a [`Classifier`] from a [`ModelConfig`], run `forward(x, train)` on an
//! NCHW f32 batch, hand `backbone_params()` / `head_params()` to an optimizer,
//! load checkpoints with [`Classifier::load_weights`] and save with
//! [`Classifier::save`].

#![warn(missing_docs)]

pub mod error;
pub mod heads;
pub mod inception;
pub mod layers;
pub mod model;
pub mod params;
pub mod resnet;
pub mod weights;

use candle_core::Tensor;

pub use error::{ArchError, Result};
pub use heads::{LinearHead, NormEmbedHead};
pub use inception::{Inception, InceptionConfig};
pub use model::{Arch, Classifier, Family, HeadKind, InputNorm, LayerRow, ModelConfig};
pub use resnet::{ResNet, ResNetConfig};
pub use weights::{LoadMode, LoadOptions, LoadReport, WeightsLookup};

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

/// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
