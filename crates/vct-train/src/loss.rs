//! The two losses of the templates, on logits, with soft targets so Mixup and
//! CutMix work unchanged.

use candle_core::{DType, Result, Tensor, D};

/// How logits become probabilities, and which loss trains them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Output {
    /// A sigmoid per concept and binary cross-entropy (multi-label; positive when P > 0.5).
    Sigmoid,
    /// Softmax over concepts and cross-entropy (exactly one concept per image).
    Softmax,
}

impl Output {
    /// Probabilities from logits `[batch, concepts]`.
    pub fn probabilities(self, logits: &Tensor) -> Result<Tensor> {
        match self {
            Output::Sigmoid => candle_nn::ops::sigmoid(logits),
            Output::Softmax => candle_nn::ops::softmax_last_dim(logits),
        }
    }

    /// Mean loss over the batch; `targets` are `[batch, concepts]` in 0..=1
    /// (one-hot, multi-hot or mixed).
    pub fn loss(self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let targets = targets.to_dtype(DType::F32)?;
        match self {
            Output::Sigmoid => bce_with_logits(logits, &targets),
            Output::Softmax => {
                let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
                (targets * log_p)?.sum(D::Minus1)?.neg()?.mean_all()
            }
        }
    }
}

/// Binary cross-entropy on logits, in the stable form
/// `max(x, 0) − x·y + log(1 + exp(−|x|))`, averaged over every element (as
/// PyTorch's `BCEWithLogitsLoss` and the RSB recipe).
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let relu = logits.relu()?;
    let xy = (logits * targets)?;
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((relu - xy)? + softplus)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn losses_match_hand_computed_values() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[2.0f32, -1.0, 0.0]], &dev).unwrap();
        let targets = Tensor::new(&[[1.0f32, 0.0, 0.0]], &dev).unwrap();
        // softmax CE = -log(e^2 / (e^2 + e^-1 + 1))
        let e = std::f64::consts::E;
        let ce = -(e.powi(2) / (e.powi(2) + 1.0 / e + 1.0)).ln();
        let got = Output::Softmax
            .loss(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((got as f64 - ce).abs() < 1e-6, "{got} vs {ce}");
        // BCE = mean(log(1+e^-2), log(1+e^-1), log 2)
        let bce = ((1.0 + (-2.0f64).exp()).ln() + (1.0 + (-1.0f64).exp()).ln() + 2f64.ln()) / 3.0;
        let got = Output::Sigmoid
            .loss(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((got as f64 - bce).abs() < 1e-6, "{got} vs {bce}");
        // Large logits stay finite.
        let big = Tensor::new(&[[200.0f32, -200.0]], &dev).unwrap();
        let t = Tensor::new(&[[0.0f32, 1.0]], &dev).unwrap();
        let got = bce_with_logits(&big, &t)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((got - 200.0).abs() < 1e-3, "{got}");
        let p = Output::Softmax
            .probabilities(&logits)
            .unwrap()
            .sum_all()
            .unwrap();
        assert!((p.to_scalar::<f32>().unwrap() - 1.0).abs() < 1e-6);
    }
}
