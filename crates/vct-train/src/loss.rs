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

    /// The plain loss (no smoothing, BCE averaged over elements); `targets` are
    /// `[batch, concepts]` in 0..=1 (one-hot, multi-hot or mixed). See [`Loss`]
    /// for the recipes' losses.
    pub fn loss(self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let targets = targets.to_dtype(DType::F32)?;
        match self {
            Output::Sigmoid => bce_with_logits(logits, &targets, Reduction::MeanOverElements),
            Output::Softmax => {
                let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
                (targets * log_p)?.sum(D::Minus1)?.neg()?.mean_all()
            }
        }
    }
}

/// How the sigmoid loss of a batch becomes one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Reduction {
    /// The mean over all N·K elements: PyTorch's `BCEWithLogitsLoss` default and
    /// timm's `BinaryCrossEntropy` (what vct used before it recorded this).
    #[default]
    MeanOverElements,
    /// The sum over all elements divided by the batch size N: mmpretrain's
    /// `CrossEntropyLoss(use_sigmoid=True)`, whose classification heads pass
    /// `avg_factor = N`. K times the mean over elements, so gradients are K times
    /// larger before LAMB's global gradient-norm clip.
    SumOverBatch,
}

/// The training loss: the output layer's loss, label smoothing and reduction.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Loss {
    /// Sigmoid + BCE or softmax + cross-entropy.
    pub output: Output,
    /// Label smoothing ε in mmpretrain's mode `original`: targets become
    /// `y·(1 − ε) + ε/K` for K concepts, applied to the targets as they arrive
    /// (after Mixup / CutMix mixed them). 0 = none.
    pub label_smoothing: f64,
    /// Reduction of the sigmoid loss. Softmax cross-entropy sums over concepts
    /// and averages over images either way (mmpretrain and PyTorch agree there).
    pub reduction: Reduction,
}

impl Loss {
    /// The loss of `output` without label smoothing, averaged over elements.
    pub fn plain(output: Output) -> Loss {
        Loss {
            output,
            label_smoothing: 0.0,
            reduction: Reduction::MeanOverElements,
        }
    }

    /// The same loss on the true targets: what validation reports.
    pub fn without_smoothing(self) -> Loss {
        Loss {
            label_smoothing: 0.0,
            ..self
        }
    }

    /// `targets` `[batch, K]` after label smoothing: `y·(1 − ε) + ε/K`.
    pub fn smooth(&self, targets: &Tensor) -> Result<Tensor> {
        let targets = targets.to_dtype(DType::F32)?;
        if self.label_smoothing == 0.0 {
            return Ok(targets);
        }
        let k = targets.dim(D::Minus1)? as f64;
        targets.affine(1.0 - self.label_smoothing, self.label_smoothing / k)
    }

    /// The loss of a batch of logits `[batch, K]` against targets in 0..=1
    /// (one-hot, multi-hot or mixed), smoothed and reduced as configured.
    pub fn loss(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let targets = self.smooth(targets)?;
        match self.output {
            Output::Sigmoid => bce_with_logits(logits, &targets, self.reduction),
            Output::Softmax => self.output.loss(logits, &targets),
        }
    }
}

/// Binary cross-entropy on logits, in the stable form
/// `max(x, 0) − x·y + log(1 + exp(−|x|))`, reduced by `reduction`: the mean over
/// every element (PyTorch's `BCEWithLogitsLoss`, timm's `BinaryCrossEntropy`)
/// or the sum over the batch size (mmpretrain's `avg_factor = N`).
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor, reduction: Reduction) -> Result<Tensor> {
    let relu = logits.relu()?;
    let xy = (logits * targets)?;
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let elements = ((relu - xy)? + softplus)?;
    match reduction {
        Reduction::MeanOverElements => elements.mean_all(),
        Reduction::SumOverBatch => {
            let n = elements.dim(0)?.max(1) as f64;
            elements.sum_all()?.affine(1.0 / n, 0.0)
        }
    }
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
        let got = bce_with_logits(&big, &t, Reduction::MeanOverElements)
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

    /// mmpretrain's `LabelSmoothLoss(label_smooth_val=0.1, mode='original',
    /// use_sigmoid=True)` by hand: `original_smooth_label` gives
    /// `y·(1 − 0.1) + 0.1/K`; `binary_cross_entropy` takes the element-wise
    /// `F.binary_cross_entropy_with_logits(..., reduction='none')` =
    /// `log(1 + e^x) − x·t`, and `weight_reduce_loss` with the head's
    /// `avg_factor = N` returns `sum / N`.
    #[test]
    fn rsb_a1_loss_matches_mmpretrain_formula() {
        let dev = Device::Cpu;
        let x = [[2.0f64, -1.0, 0.0, 0.5], [0.3, 1.5, -2.0, 4.0]];
        // One-hot, and a Mixup of concepts 0 and 3 (λ = 0.7): smoothing comes after.
        let y = [[1.0f64, 0.0, 0.0, 0.0], [0.7, 0.0, 0.0, 0.3]];
        let logits = Tensor::new(&x.map(|r| r.map(|v| v as f32)), &dev).unwrap();
        let targets = Tensor::new(&y.map(|r| r.map(|v| v as f32)), &dev).unwrap();
        let (eps, k, n) = (0.1, 4.0, 2.0);
        let mut sum = 0.0;
        for (xr, yr) in x.iter().zip(&y) {
            for (&xi, &yi) in xr.iter().zip(yr) {
                let t = yi * (1.0 - eps) + eps / k;
                sum += (1.0 + xi.exp()).ln() - xi * t;
            }
        }
        let mmpretrain = sum / n;
        let loss = Loss {
            output: Output::Sigmoid,
            label_smoothing: eps,
            reduction: Reduction::SumOverBatch,
        };
        let got = loss
            .loss(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            (f64::from(got) - mmpretrain).abs() < 1e-5,
            "{got} vs {mmpretrain}"
        );
        // The smoothed targets themselves.
        let smoothed: Vec<Vec<f32>> = loss.smooth(&targets).unwrap().to_vec2().unwrap();
        assert!((smoothed[0][0] - 0.925).abs() < 1e-6 && (smoothed[0][1] - 0.025).abs() < 1e-6);
        assert!((smoothed[1][3] - (0.3 * 0.9 + 0.025)).abs() < 1e-6);
        // timm's reduction (mean over N·K) is K times smaller; without
        // smoothing the targets are the raw ones.
        let mean = Loss {
            reduction: Reduction::MeanOverElements,
            ..loss
        };
        let got_mean = mean
            .loss(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((f64::from(got_mean) - mmpretrain / k).abs() < 1e-5);
        let mut raw = 0.0;
        for (xr, yr) in x.iter().zip(&y) {
            for (&xi, &yi) in xr.iter().zip(yr) {
                raw += (1.0 + xi.exp()).ln() - xi * yi;
            }
        }
        let got_raw = loss
            .without_smoothing()
            .loss(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((f64::from(got_raw) - raw / n).abs() < 1e-5);
        // Softmax: smoothed soft cross-entropy, summed over concepts, mean over images.
        let softmax = Loss {
            output: Output::Softmax,
            ..loss
        };
        let mut ce = 0.0;
        for (xr, yr) in x.iter().zip(&y) {
            let lse = xr.iter().map(|v| v.exp()).sum::<f64>().ln();
            for (&xi, &yi) in xr.iter().zip(yr) {
                ce -= (yi * (1.0 - eps) + eps / k) * (xi - lse);
            }
        }
        let got_ce = softmax
            .loss(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            (f64::from(got_ce) - ce / n).abs() < 1e-5,
            "{got_ce} vs {}",
            ce / n
        );
    }
}
