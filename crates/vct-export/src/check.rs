//! What an exported model must compute: vct's own eval-mode outputs for an input,
//! and the comparison the tests and `bench/onnxruntime_check.py` apply to a
//! runtime's outputs.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use vct_arch::Classifier;

use crate::error::Result;
use crate::metadata::{ExportMetadata, Probabilities};

/// vct's outputs for one batch, flattened row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Input shape `[batch, 3, height, width]`.
    pub input_shape: Vec<usize>,
    /// `[batch, concepts]`.
    pub probabilities: Vec<f32>,
    /// `[batch, embedding_dim]` (flip-averaged when the metadata says so).
    pub embeddings: Vec<f32>,
}

/// vct's eval-mode probabilities and embeddings of `images` `[N, 3, H, W]`, as
/// `vct-train`'s evaluate and predict compute them: embeddings (flip-averaged if
/// `metadata.flip_average`), the head on them, then sigmoid or softmax.
pub fn reference_outputs(
    model: &Classifier,
    metadata: &ExportMetadata,
    images: &Tensor,
) -> Result<Reference> {
    let emb = if metadata.flip_average {
        model.embed_flip_avg(images, false)?
    } else {
        model.embed(images, false)?
    };
    let logits = model.head_forward(&emb, false)?;
    let probs = match metadata.probabilities {
        Probabilities::Sigmoid => candle_nn::ops::sigmoid(&logits)?,
        Probabilities::Softmax => candle_nn::ops::softmax_last_dim(&logits)?,
    };
    Ok(Reference {
        input_shape: images.dims().to_vec(),
        probabilities: probs.flatten_all()?.to_vec1()?,
        embeddings: emb.flatten_all()?.to_vec1()?,
    })
}

/// The largest `|got - want|` over the largest `|want|` (1 when `want` is all
/// zeros); `f32::INFINITY` when the lengths differ or a value is not finite.
pub fn max_relative_error(got: &[f32], want: &[f32]) -> f32 {
    if got.len() != want.len() {
        return f32::INFINITY;
    }
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if scale > 0.0 { scale } else { 1.0 };
    got.iter()
        .zip(want)
        .map(|(g, w)| {
            let d = (g - w).abs();
            if d.is_finite() {
                d / scale
            } else {
                f32::INFINITY
            }
        })
        .fold(0f32, f32::max)
}
