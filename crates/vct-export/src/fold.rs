//! Batch-norm folding: an eval-mode `bn(conv(x) + b)` as one convolution.
//!
//! vct-arch's eval batch norm computes, per output channel,
//! `y = (z + b - mean) · s + beta` with `s = gamma / sqrt(var + eps)` (gamma = 1
//! when the layout has no scale, TF-slim), where `z` is the convolution without
//! its bias and `b` that bias (BN-Inception's convolutions have one, which vct-arch
//! adds into the batch norm's shift, never to the map). So the folded
//! convolution has weight `W · s` and bias `beta + (b - mean) · s`. The
//! arithmetic runs in f64 and rounds once to f32.

/// A batch norm's parameters and running statistics, one value per channel.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Scale (gamma); `None` = 1 (TF-slim `scale=False`).
    pub gamma: Option<Vec<f32>>,
    /// Shift (beta).
    pub beta: Vec<f32>,
    /// Running mean.
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
    /// Epsilon added to the variance.
    pub eps: f64,
}

/// `(weight, bias)` of the convolution `weight`/`bias` (OIHW, `bias` per output
/// channel or `None`) followed by `bn` in eval mode.
pub fn fold_conv_bn(weight: &[f32], bias: Option<&[f32]>, bn: &BatchNorm) -> (Vec<f32>, Vec<f32>) {
    let channels = bn.beta.len();
    let per_channel = weight.len() / channels.max(1);
    let scale: Vec<f64> = (0..channels)
        .map(|c| {
            let g = bn.gamma.as_ref().map_or(1.0, |g| f64::from(g[c]));
            g / (f64::from(bn.var[c]) + bn.eps).sqrt()
        })
        .collect();
    let folded_w = weight
        .iter()
        .enumerate()
        .map(|(i, &w)| (f64::from(w) * scale[i / per_channel]) as f32)
        .collect();
    let folded_b = (0..channels)
        .map(|c| {
            let b = bias.map_or(0.0, |b| f64::from(b[c]));
            (f64::from(bn.beta[c]) + (b - f64::from(bn.mean[c])) * scale[c]) as f32
        })
        .collect();
    (folded_w, folded_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_channel_equals_conv_then_batch_norm() {
        // One 1×1 conv over 2 input channels, 2 outputs, with bias: check the
        // folded map at one pixel against the formula step by step.
        let w = [0.5f32, -1.0, 2.0, 0.25];
        let b = [0.1f32, -0.3];
        let bn = BatchNorm {
            gamma: Some(vec![1.5, 0.5]),
            beta: vec![0.2, -0.1],
            mean: vec![0.4, -0.2],
            var: vec![2.0, 0.5],
            eps: 1e-5,
        };
        let x = [1.25f32, -0.75];
        let (fw, fb) = fold_conv_bn(&w, Some(&b), &bn);
        for o in 0..2 {
            let z: f32 = (0..2).map(|i| w[o * 2 + i] * x[i]).sum::<f32>() + b[o];
            let g = bn.gamma.as_ref().unwrap()[o];
            let want = (z - bn.mean[o]) / (bn.var[o] + 1e-5).sqrt() * g + bn.beta[o];
            let got: f32 = (0..2).map(|i| fw[o * 2 + i] * x[i]).sum::<f32>() + fb[o];
            assert!((got - want).abs() < 1e-6, "channel {o}: {got} vs {want}");
        }
        // No gamma: scale 1; no conv bias: b = 0.
        let (fw, fb) = fold_conv_bn(
            &w,
            None,
            &BatchNorm {
                gamma: None,
                ..bn.clone()
            },
        );
        let s0 = 1.0 / (2.0f32 + 1e-5).sqrt();
        assert!((fw[0] - 0.5 * s0).abs() < 1e-7);
        assert!((fb[0] - (0.2 - 0.4 * s0)).abs() < 1e-7);
    }
}
