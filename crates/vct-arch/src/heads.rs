//! Classifier heads: embeddings `[N, D]` → logits `[N, classes]`.

use candle_core::{Tensor, Var};

use crate::error::{ArchError, Result};
use crate::layers::{Dropout, Linear};
use crate::params::{Init, Scope};
use crate::Head;

/// Plain linear classifier (`fc` / `last_linear`), with optional dropout on
/// its input in training (TF-slim Inception-v2's `Dropout_1b`).
#[derive(Debug)]
pub struct LinearHead {
    fc: Linear,
    dropout: Option<Dropout>,
    classes: usize,
}

impl LinearHead {
    /// `dim → classes` with weight / bias named `{s}.{wname}` / `{s}.{bname}`.
    pub fn new(
        s: &Scope,
        wname: &str,
        bname: &str,
        dim: usize,
        classes: usize,
    ) -> Result<LinearHead> {
        Ok(LinearHead {
            fc: Linear::named(s, wname, bname, dim, classes, true)?,
            dropout: None,
            classes,
        })
    }

    /// The same head with dropout of `rate` on its input in training (masks
    /// drawn from the store's seed).
    pub fn with_dropout(mut self, s: &Scope, rate: f64) -> Result<LinearHead> {
        if !(0.0..1.0).contains(&rate) {
            return Err(ArchError::InvalidConfig {
                key: "head_dropout".into(),
                value: rate.to_string(),
                expected: "a rate in [0, 1)".into(),
            });
        }
        self.dropout = (rate > 0.0).then(|| Dropout::new(rate, s.store().mask_rng()));
        Ok(self)
    }
}

impl Head for LinearHead {
    fn forward(&self, emb: &Tensor, train: bool) -> Result<Tensor> {
        match &self.dropout {
            Some(d) => self.fc.forward(&d.forward(emb, train)?, train),
            None => self.fc.forward(emb, train),
        }
    }

    fn num_classes(&self) -> usize {
        self.classes
    }
}

/// Initial value of [`NormEmbedHead`]'s scale.
pub const NORM_EMBED_SCALE: f64 = 16.0;

/// Normalised-embedding transfer head (`Clarifai_InceptionTransferEmbedNorm`):
/// `logits = s · ⟨e/‖e‖, w_c/‖w_c‖⟩ + b_c`.
///
/// Choice: a cosine classifier (NormFace / CosFace-style) with a learnable
/// scalar scale initialised to 16 and a per-class bias. Normalising both the
/// embedding and the class weights makes the logits depend on direction only,
/// which suits a pretrained embedding whose norm varies with image content;
/// the cosine lies in [-1, 1], so a scale is needed for softmax / sigmoid to
/// become confident — learnable (NormFace showed a fixed one must be tuned per
/// dataset), starting at 16, which already allows probabilities near 1 for a
/// few to a few hundred concepts. The bias lets sigmoid (multi-label) outputs
/// learn each concept's base rate, which a pure cosine cannot express.
#[derive(Debug)]
pub struct NormEmbedHead {
    weight: Var,
    bias: Var,
    scale: Var,
    classes: usize,
}

impl NormEmbedHead {
    /// Creates `weight [classes, dim]`, `bias [classes]`, `scale [1]` under `s`.
    pub fn new(s: &Scope, dim: usize, classes: usize, scale: f64) -> Result<NormEmbedHead> {
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(ArchError::InvalidConfig {
                key: "norm_embed_scale".into(),
                value: scale.to_string(),
                expected: "a finite number > 0".into(),
            });
        }
        let b = 1.0 / (dim.max(1) as f64).sqrt();
        Ok(NormEmbedHead {
            weight: s.param("weight", &[classes, dim], Init::Uniform(b))?,
            bias: s.param("bias", &[classes], Init::Const(0.0))?,
            scale: s.param("scale", &[1], Init::Const(scale))?,
            classes,
        })
    }
}

/// Rows of `x` divided by their L2 norm (with a floor against division by zero).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}

impl Head for NormEmbedHead {
    fn forward(&self, emb: &Tensor, train: bool) -> Result<Tensor> {
        let get = |v: &Var| {
            if train {
                v.as_tensor().clone()
            } else {
                v.as_detached_tensor()
            }
        };
        let e = l2_normalize(emb)?;
        let w = l2_normalize(&get(&self.weight))?;
        let cos = e.matmul(&w.t()?)?;
        Ok(cos
            .broadcast_mul(&get(&self.scale))?
            .broadcast_add(&get(&self.bias))?)
    }

    fn num_classes(&self) -> usize {
        self.classes
    }
}

impl candle_nn::ModuleT for LinearHead {
    /// Logits, as [`Head::forward`] (dropout only when `train`).
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(Head::forward(self, xs, train)?)
    }
}

impl candle_nn::ModuleT for NormEmbedHead {
    /// Logits, as [`Head::forward`].
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(Head::forward(self, xs, train)?)
    }
}
