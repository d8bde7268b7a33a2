//! Mixup and CutMix on whole batches (timm's `Mixup`, batch mode): each image is
//! mixed with the batch reversed, and the targets likewise.

use candle_core::Tensor;
use rand::Rng;
use rand_distr::{Beta, Distribution};

use crate::error::param;
use crate::{AugmentError, ItemRng};

/// Mixup / CutMix settings (timm names).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mixup {
    /// Beta(α, α) of Mixup's λ; 0 turns Mixup off.
    pub mixup_alpha: f64,
    /// Beta(α, α) of CutMix's λ; 0 turns CutMix off.
    pub cutmix_alpha: f64,
    /// Probability that a batch is mixed at all.
    pub prob: f64,
    /// With both on, probability of CutMix rather than Mixup.
    pub switch_prob: f64,
}

impl Mixup {
    /// The RSB-A1 setting (Wightman et al. 2021, table 1): Mixup 0.2, CutMix 1.0,
    /// always, switching half the time.
    pub fn rsb_a1() -> Mixup {
        Mixup {
            mixup_alpha: 0.2,
            cutmix_alpha: 1.0,
            prob: 1.0,
            switch_prob: 0.5,
        }
    }
}

/// What [`Mixup`] did to a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MixupMode {
    /// Left unchanged (λ = 1).
    None,
    /// Blended: `λ·x + (1-λ)·x_reversed`.
    Mixup {
        /// Weight of the original image.
        lambda: f64,
    },
    /// The box `[top, top+height) × [left, left+width)` pasted from the reversed batch.
    CutMix {
        /// Weight of the original image (1 − box area / image area).
        lambda: f64,
        /// Box top row.
        top: usize,
        /// Box left column.
        left: usize,
        /// Box height.
        height: usize,
        /// Box width.
        width: usize,
    },
}

fn beta(alpha: f64, rng: &mut ItemRng) -> Result<f64, AugmentError> {
    let d = Beta::new(alpha, alpha)
        .map_err(|_| param("mixup/cutmix alpha", alpha, "a positive number"))?;
    Ok(d.sample(rng))
}

impl Mixup {
    /// Mixes `images` (`[N, C, H, W]` flattened, `shape` given) and `targets`
    /// (`[N, K]` flattened) in place.
    pub fn apply_slices(
        &self,
        images: &mut [f32],
        shape: [usize; 4],
        targets: &mut [f32],
        rng: &mut ItemRng,
    ) -> Result<MixupMode, AugmentError> {
        let [n, c, h, w] = shape;
        if images.len() != n * c * h * w || n == 0 || !targets.len().is_multiple_of(n) {
            return Err(param(
                "mixup batch shape",
                (images.len(), shape, targets.len()),
                "images N*C*H*W and targets N*K",
            ));
        }
        if !(0.0..=1.0).contains(&self.prob) || !(0.0..=1.0).contains(&self.switch_prob) {
            return Err(param(
                "mixup probabilities",
                (self.prob, self.switch_prob),
                "numbers in [0, 1]",
            ));
        }
        let (mix, cut) = (self.mixup_alpha > 0.0, self.cutmix_alpha > 0.0);
        if !(mix || cut) || rng.random::<f64>() >= self.prob {
            return Ok(MixupMode::None);
        }
        let use_cutmix = if mix && cut {
            rng.random::<f64>() < self.switch_prob
        } else {
            cut
        };
        let lam = beta(
            if use_cutmix {
                self.cutmix_alpha
            } else {
                self.mixup_alpha
            },
            rng,
        )?;
        let per = c * h * w;
        let orig = images.to_vec();
        let mode = if use_cutmix {
            // timm's rand_bbox: a box of side sqrt(1-λ) centred uniformly, clipped,
            // then λ corrected to the clipped area.
            let r = (1.0 - lam).sqrt();
            let (ch, cw) = ((h as f64 * r) as i64, (w as f64 * r) as i64);
            let cy = rng.random_range(0..h as i64);
            let cx = rng.random_range(0..w as i64);
            let y0 = (cy - ch / 2).clamp(0, h as i64) as usize;
            let y1 = (cy + ch / 2).clamp(0, h as i64) as usize;
            let x0 = (cx - cw / 2).clamp(0, w as i64) as usize;
            let x1 = (cx + cw / 2).clamp(0, w as i64) as usize;
            for i in 0..n {
                let j = n - 1 - i;
                for ci in 0..c {
                    for y in y0..y1 {
                        let row = ci * h * w + y * w;
                        images[i * per + row + x0..i * per + row + x1]
                            .copy_from_slice(&orig[j * per + row + x0..j * per + row + x1]);
                    }
                }
            }
            let lambda = 1.0 - ((y1 - y0) * (x1 - x0)) as f64 / (h * w) as f64;
            MixupMode::CutMix {
                lambda,
                top: y0,
                left: x0,
                height: y1 - y0,
                width: x1 - x0,
            }
        } else {
            let (a, b) = (lam as f32, (1.0 - lam) as f32);
            for i in 0..n {
                let j = n - 1 - i;
                for (d, s) in images[i * per..(i + 1) * per]
                    .iter_mut()
                    .zip(&orig[j * per..(j + 1) * per])
                {
                    *d = *d * a + *s * b;
                }
            }
            MixupMode::Mixup { lambda: lam }
        };
        let lambda = match mode {
            MixupMode::Mixup { lambda } | MixupMode::CutMix { lambda, .. } => lambda,
            MixupMode::None => 1.0,
        };
        let k = targets.len() / n;
        let t0 = targets.to_vec();
        for i in 0..n {
            let j = n - 1 - i;
            for q in 0..k {
                targets[i * k + q] = (f64::from(t0[i * k + q]) * lambda
                    + f64::from(t0[j * k + q]) * (1.0 - lambda))
                    as f32;
            }
        }
        Ok(mode)
    }

    /// Mixes a `[N, C, H, W]` image tensor and its `[N, K]` targets.
    pub fn apply(
        &self,
        images: &Tensor,
        targets: &Tensor,
        rng: &mut ItemRng,
    ) -> Result<(Tensor, Tensor, MixupMode), AugmentError> {
        let (n, c, h, w) = images.dims4()?;
        let mut x = images.flatten_all()?.to_vec1::<f32>()?;
        let mut t = targets.flatten_all()?.to_vec1::<f32>()?;
        let mode = self.apply_slices(&mut x, [n, c, h, w], &mut t, rng)?;
        let x = Tensor::from_vec(x, (n, c, h, w), images.device())?;
        let t = Tensor::from_vec(t, targets.shape(), targets.device())?;
        Ok((x, t, mode))
    }
}
