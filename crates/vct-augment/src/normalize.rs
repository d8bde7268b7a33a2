//! Pixel normalisation and the NCHW `f32` batch tensor.

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::AugmentError;

/// ImageNet channel means of 0..1 RGB (torchvision / timm).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations of 0..1 RGB.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// pretrainedmodels' BN-Inception mean, in B, G, R order, on 0..255 values.
pub const BGR_MEAN: [f32; 3] = [104.0, 117.0, 128.0];

/// How pixels become network input.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// RGB in 0..1, minus [`IMAGENET_MEAN`], divided by [`IMAGENET_STD`].
    #[default]
    ImageNet,
    /// RGB in 0..1, minus `mean`, divided by `std`.
    MeanStd {
        /// Per-channel mean (R, G, B).
        mean: [f32; 3],
        /// Per-channel standard deviation (R, G, B).
        std: [f32; 3],
    },
    /// Channels reordered to B, G, R, values 0..255 minus `mean` (given in B, G, R
    /// order), std 1: pretrainedmodels' BN-Inception input.
    Bgr255 {
        /// Per-channel mean in B, G, R order.
        mean: [f32; 3],
    },
    /// RGB in 0..1 mapped to -1..1 (`(x - 0.5) / 0.5`, Inception-style).
    Symmetric,
    /// RGB in 0..1, nothing else.
    Unit,
}

impl Normalize {
    /// For output channel c: (source RGB channel, scale, offset) with
    /// `value = pixel * scale + offset`.
    fn channels(&self) -> [(usize, f32, f32); 3] {
        let ms = |mean: [f32; 3], std: [f32; 3]| {
            std::array::from_fn(|c| (c, 1.0 / (255.0 * std[c]), -mean[c] / std[c]))
        };
        match *self {
            Normalize::ImageNet => ms(IMAGENET_MEAN, IMAGENET_STD),
            Normalize::MeanStd { mean, std } => ms(mean, std),
            Normalize::Symmetric => ms([0.5; 3], [0.5; 3]),
            Normalize::Unit => ms([0.0; 3], [1.0; 3]),
            Normalize::Bgr255 { mean } => std::array::from_fn(|c| (2 - c, 1.0, -mean[c])),
        }
    }
}

/// Writes one image as normalised CHW `f32` into `out` (length `3 * w * h`).
pub fn write_chw(image: &RgbImage, norm: Normalize, out: &mut [f32]) -> Result<(), AugmentError> {
    let plane = image.width() as usize * image.height() as usize;
    if out.len() != 3 * plane {
        return Err(crate::error::param(
            "CHW buffer length",
            out.len(),
            "3 * width * height",
        ));
    }
    let raw = image.as_raw();
    for (c, (src, scale, offset)) in norm.channels().into_iter().enumerate() {
        let dst = &mut out[c * plane..(c + 1) * plane];
        for (d, px) in dst.iter_mut().zip(raw.chunks_exact(3)) {
            *d = f32::from(px[src]) * scale + offset;
        }
    }
    Ok(())
}

/// Writes packed RGB8 `raw` (`width`×`height`) as normalised CHW `f32` into
/// `out`, mirrored left-right when `flip_h` and top-bottom when `flip_v`: the
/// crop's flip folded into the one pass that normalises it.
pub(crate) fn write_chw_flipped(
    raw: &[u8],
    (width, height): (u32, u32),
    norm: Normalize,
    (flip_h, flip_v): (bool, bool),
    out: &mut [f32],
) -> Result<(), AugmentError> {
    let (w, h) = (width as usize, height as usize);
    let plane = w * h;
    if out.len() != 3 * plane || raw.len() != 3 * plane {
        return Err(crate::error::param(
            "CHW buffer length",
            (out.len(), raw.len()),
            "3 * width * height",
        ));
    }
    for (c, (src, scale, offset)) in norm.channels().into_iter().enumerate() {
        let dst = &mut out[c * plane..(c + 1) * plane];
        for (y, dst_row) in dst.chunks_exact_mut(w).enumerate() {
            let sy = if flip_v { h - 1 - y } else { y };
            let row = &raw[sy * w * 3..(sy + 1) * w * 3];
            if flip_h {
                for (d, px) in dst_row.iter_mut().zip(row.chunks_exact(3).rev()) {
                    *d = f32::from(px[src]) * scale + offset;
                }
            } else {
                for (d, px) in dst_row.iter_mut().zip(row.chunks_exact(3)) {
                    *d = f32::from(px[src]) * scale + offset;
                }
            }
        }
    }
    Ok(())
}

/// Stacks same-sized images into a normalised `[N, 3, H, W]` `f32` tensor.
pub fn to_tensor(
    images: &[RgbImage],
    norm: Normalize,
    device: &Device,
) -> Result<Tensor, AugmentError> {
    let Some(first) = images.first() else {
        return Err(crate::error::param("batch size", 0, "at least one image"));
    };
    let (w, h) = first.dimensions();
    let per = 3 * w as usize * h as usize;
    let mut data = vec![0f32; per * images.len()];
    for (i, (img, out)) in images.iter().zip(data.chunks_exact_mut(per)).enumerate() {
        if img.dimensions() != (w, h) {
            return Err(AugmentError::SizeMismatch {
                index: i,
                got: img.dimensions(),
                expected: (w, h),
            });
        }
        write_chw(img, norm, out)?;
    }
    Ok(Tensor::from_vec(
        data,
        (images.len(), 3, h as usize, w as usize),
        device,
    )?)
}
