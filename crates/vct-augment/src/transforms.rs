//! Geometric transforms: resize, crops, flips.
//!
//! Resizing goes through `fast_image_resize` (SIMD, antialiased convolution like
//! Pillow); crops and flips are plain copies. Sizes follow torchvision's rules.

use std::cell::RefCell;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::param;
use crate::{AugmentError, ItemRng, StepKind, Transform};

/// Resampling filter; both are antialiased when shrinking and run horizontal
/// pass first, as Pillow does (tests compare with Pillow's output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// Triangle filter (Pillow `BILINEAR`).
    #[default]
    Bilinear,
    /// Catmull-Rom cubic, a = -0.5 (Pillow `BICUBIC`; mmpretrain's and timm's
    /// RSB-A1 resizes).
    Bicubic,
}

impl Filter {
    pub(crate) fn alg(self) -> ResizeAlg {
        match self {
            Filter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            Filter::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
        }
    }
}

thread_local! {
    // The resizer keeps scratch buffers; one per thread avoids reallocating them.
    pub(crate) static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// One convolution pass of fast_image_resize: `img` to `out_w`×`out_h` where
/// only one side changes, so the resizer runs one pass.
fn resize_pass(
    img: &RgbImage,
    out_w: u32,
    out_h: u32,
    filter: Filter,
) -> Result<RgbImage, AugmentError> {
    let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
        .map_err(|e| AugmentError::Resize(e.to_string()))?;
    let mut dst = Image::new(out_w, out_h, PixelType::U8x3);
    let opts = ResizeOptions::new().resize_alg(filter.alg());
    RESIZER
        .with(|r| r.borrow_mut().resize(&src, &mut dst, &opts))
        .map_err(|e| AugmentError::Resize(e.to_string()))?;
    RgbImage::from_raw(out_w, out_h, dst.into_vec())
        .ok_or_else(|| AugmentError::Resize("output buffer has the wrong size".into()))
}

/// Resizes the whole of `img` to `out_w`×`out_h` as Pillow does: the horizontal
/// pass first, its result rounded and clamped to 8 bits, then the vertical pass.
///
/// fast_image_resize alone runs the vertical pass first on 8-bit images; with
/// the bicubic kernel's negative lobes the clamped intermediate then differs
/// from Pillow's by up to 16 levels at hard edges (measured on
/// `tests/fixtures/pillow_resize`). Two single-pass calls keep Pillow's order.
pub(crate) fn resize_image(
    img: &RgbImage,
    out_w: u32,
    out_h: u32,
    filter: Filter,
) -> Result<RgbImage, AugmentError> {
    if out_w == 0 || out_h == 0 {
        return Err(param(
            "resize output size",
            (out_w, out_h),
            "both sides >= 1",
        ));
    }
    let (w, h) = img.dimensions();
    let wide = if out_w != w {
        Some(resize_pass(img, out_w, h, filter)?)
    } else {
        None
    };
    let wide = wide.as_ref().unwrap_or(img);
    if out_h != h {
        resize_pass(wide, out_w, out_h, filter)
    } else {
        Ok(wide.clone())
    }
}

/// Crops the window `(left, top, width, height)` of `img` and resizes it to
/// `out_w`×`out_h` (torchvision's `resized_crop`; [`RandomResizedCrop`]'s last step).
pub fn resized_crop(
    img: &RgbImage,
    window: (u32, u32, u32, u32),
    out_w: u32,
    out_h: u32,
    filter: Filter,
) -> Result<RgbImage, AugmentError> {
    let (l, t, w, h) = window;
    if w == 0 || h == 0 || l.saturating_add(w) > img.width() || t.saturating_add(h) > img.height() {
        return Err(param(
            "crop window (left, top, width, height) and image size",
            (window, img.dimensions()),
            "a non-empty window inside the image",
        ));
    }
    // Crop, then resize the crop: pixels outside the window take no part, as in
    // torchvision's `resized_crop` and mmcv's crop + resize (fast_image_resize's
    // own crop option lets the kernel reach outside the window).
    if (l, t, w, h) == (0, 0, img.width(), img.height()) {
        return resize_image(img, out_w, out_h, filter);
    }
    let crop = image::imageops::crop_imm(img, l, t, w, h).to_image();
    resize_image(&crop, out_w, out_h, filter)
}

/// What a [`Resize`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeTarget {
    /// Shorter side to N, aspect kept (torchvision `Resize(N)`; the longer side is truncated).
    ShorterSide(u32),
    /// Exactly width × height, aspect not kept.
    Exact(u32, u32),
}

/// Resizes the whole image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resize {
    /// Output size rule.
    pub target: ResizeTarget,
    /// Filter.
    pub filter: Filter,
}

impl Resize {
    /// Shorter side to `n`, bilinear.
    pub fn shorter_side(n: u32) -> Resize {
        Resize {
            target: ResizeTarget::ShorterSide(n),
            filter: Filter::Bilinear,
        }
    }

    /// Exactly `n`×`n`, bilinear.
    pub fn square(n: u32) -> Resize {
        Resize {
            target: ResizeTarget::Exact(n, n),
            filter: Filter::Bilinear,
        }
    }

    /// Exactly `width`×`height` (aspect not kept), bilinear.
    pub fn exact(width: u32, height: u32) -> Resize {
        Resize {
            target: ResizeTarget::Exact(width, height),
            filter: Filter::Bilinear,
        }
    }

    /// The same resize with another filter.
    pub fn with_filter(mut self, filter: Filter) -> Resize {
        self.filter = filter;
        self
    }

    /// Output size for an input of `w`×`h`.
    pub fn output_size(&self, w: u32, h: u32) -> (u32, u32) {
        match self.target {
            ResizeTarget::Exact(ow, oh) => (ow, oh),
            ResizeTarget::ShorterSide(n) => {
                // torchvision: int(n * long / short), i.e. truncated.
                // Saturates rather than wraps for absurd aspect ratios; `apply`
                // then refuses the size.
                let long = |l: u32, s: u32| {
                    u32::try_from(u64::from(n) * u64::from(l) / u64::from(s.max(1)))
                        .unwrap_or(u32::MAX)
                };
                if w <= h {
                    (n, long(h, w))
                } else {
                    (long(w, h), n)
                }
            }
        }
    }
}

/// Largest resize output, in pixels (the decoder's default limit, Pillow's).
pub const MAX_RESIZE_PIXELS: u64 = 89_478_485;

impl Transform for Resize {
    fn apply(&self, image: RgbImage, _rng: &mut ItemRng) -> Result<RgbImage, AugmentError> {
        let (w, h) = image.dimensions();
        let (ow, oh) = self.output_size(w, h);
        if (ow, oh) == (w, h) {
            return Ok(image);
        }
        // A 1×40000 strip resized to a shorter side of 224 would need gigabytes:
        // bound the output as decoding bounds the input.
        if u64::from(ow) * u64::from(oh) > MAX_RESIZE_PIXELS {
            return Err(crate::error::param(
                "resize output size (width, height)",
                (ow, oh),
                "at most 89,478,485 pixels (the image's aspect ratio is too extreme)",
            ));
        }
        resize_image(&image, ow, oh, self.filter)
    }

    fn kind(&self) -> StepKind {
        StepKind::Resize(*self)
    }
}

/// The shorter-side size of an evaluation resize for crop ratio `crop_ratio`:
/// `size / crop_ratio` rounded to the nearest integer, the value mmpretrain's
/// configs write (`ResizeEdge(scale=236)` before `CenterCrop(224)` at 0.95; 256
/// for 224 at 0.875). timm floors instead (`crop_pct`: 235 at 0.95); vct keeps
/// one rule, this one, for every template.
pub fn eval_resize_size(size: u32, crop_ratio: f64) -> Result<u32, AugmentError> {
    if !(crop_ratio > 0.0 && crop_ratio <= 1.0) {
        return Err(param("eval crop ratio", crop_ratio, "a number in (0, 1]"));
    }
    Ok((f64::from(size) / crop_ratio).round() as u32)
}

/// Copies the `w`×`h` window at (`left`, `top`), which may reach outside the
/// image; outside pixels are black (torchvision pads with 0).
pub(crate) fn crop_padded(img: &RgbImage, left: i64, top: i64, w: u32, h: u32) -> RgbImage {
    let (iw, ih) = (i64::from(img.width()), i64::from(img.height()));
    if left >= 0
        && top >= 0
        && left + i64::from(w) <= iw
        && top + i64::from(h) <= ih
        && (w, h) == img.dimensions()
    {
        return img.clone();
    }
    let mut out = RgbImage::new(w, h);
    let src = img.as_raw();
    let dst: &mut [u8] = &mut out;
    let x0 = left.max(0);
    let x1 = (left + i64::from(w)).min(iw);
    if x1 <= x0 {
        return out;
    }
    let row_bytes = ((x1 - x0) * 3) as usize;
    for y in 0..i64::from(h) {
        let sy = top + y;
        if sy < 0 || sy >= ih {
            continue;
        }
        let s = ((sy * iw + x0) * 3) as usize;
        let d = ((y * i64::from(w) + (x0 - left)) * 3) as usize;
        dst[d..d + row_bytes].copy_from_slice(&src[s..s + row_bytes]);
    }
    out
}

/// Centre offset of a crop of `c` from `i` pixels, as torchvision (round half to
/// even; symmetric zero padding when the image is smaller).
pub(crate) fn center_offset(i: u32, c: u32) -> i64 {
    if i >= c {
        (f64::from(i - c) / 2.0).round_ties_even() as i64
    } else {
        -i64::from((c - i) / 2)
    }
}

/// Crops the centre `width`×`height` (zero-padded when the image is smaller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CenterCrop {
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
}

impl CenterCrop {
    /// A square centre crop.
    pub fn new(size: u32) -> CenterCrop {
        CenterCrop {
            width: size,
            height: size,
        }
    }
}

impl Transform for CenterCrop {
    fn apply(&self, image: RgbImage, _rng: &mut ItemRng) -> Result<RgbImage, AugmentError> {
        let (w, h) = image.dimensions();
        let left = center_offset(w, self.width);
        let top = center_offset(h, self.height);
        Ok(crop_padded(&image, left, top, self.width, self.height))
    }

    fn kind(&self) -> StepKind {
        StepKind::CenterCrop(*self)
    }
}

/// Crops a uniformly placed `width`×`height` window (zero-padded, centred, along
/// a side where the image is smaller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomCrop {
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
}

impl RandomCrop {
    /// A square random crop.
    pub fn new(size: u32) -> RandomCrop {
        RandomCrop {
            width: size,
            height: size,
        }
    }
}

pub(crate) fn random_offset(i: u32, c: u32, rng: &mut ItemRng) -> i64 {
    if i >= c {
        i64::from(rng.random_range(0..=i - c))
    } else {
        -i64::from((c - i) / 2)
    }
}

impl Transform for RandomCrop {
    fn apply(&self, image: RgbImage, rng: &mut ItemRng) -> Result<RgbImage, AugmentError> {
        let (w, h) = image.dimensions();
        // torchvision draws the top offset first.
        let top = random_offset(h, self.height, rng);
        let left = random_offset(w, self.width, rng);
        Ok(crop_padded(&image, left, top, self.width, self.height))
    }

    fn kind(&self) -> StepKind {
        StepKind::RandomCrop(*self)
    }
}

/// torchvision's `RandomResizedCrop`: a random area fraction in `scale` and
/// aspect ratio (log-uniform) in `ratio`, resized to `size`×`size`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomResizedCrop {
    /// Output side.
    pub size: u32,
    /// Range of the crop's area as a fraction of the image's.
    pub scale: (f64, f64),
    /// Range of the crop's width / height.
    pub ratio: (f64, f64),
    /// Filter.
    pub filter: Filter,
}

impl RandomResizedCrop {
    /// A crop with the given ranges, bilinear (torchvision's defaults are
    /// `scale = (0.08, 1)`, `ratio = (3/4, 4/3)`).
    pub fn new(size: u32, scale: (f64, f64), ratio: (f64, f64)) -> RandomResizedCrop {
        RandomResizedCrop {
            size,
            scale,
            ratio,
            filter: Filter::Bilinear,
        }
    }

    /// The same crop with another filter.
    pub fn with_filter(mut self, filter: Filter) -> RandomResizedCrop {
        self.filter = filter;
        self
    }

    /// The crop window `(left, top, width, height)` for an image of `w`×`h`
    /// (torchvision's `get_params`: ten tries, then a centre crop clamped to `ratio`).
    pub fn window(&self, w: u32, h: u32, rng: &mut ItemRng) -> (u32, u32, u32, u32) {
        let area = f64::from(w) * f64::from(h);
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * uniform(rng, self.scale.0, self.scale.1);
            let aspect = uniform(rng, lr0, lr1).exp();
            let cw = (target * aspect).sqrt().round_ties_even();
            let ch = (target / aspect).sqrt().round_ties_even();
            if cw > 0.0 && ch > 0.0 && cw <= f64::from(w) && ch <= f64::from(h) {
                let (cw, ch) = (cw as u32, ch as u32);
                let top = rng.random_range(0..=h - ch);
                let left = rng.random_range(0..=w - cw);
                return (left, top, cw, ch);
            }
        }
        let in_ratio = f64::from(w) / f64::from(h);
        let (cw, ch) = if in_ratio < self.ratio.0.min(self.ratio.1) {
            (
                w,
                ((f64::from(w) / self.ratio.0.min(self.ratio.1)).round_ties_even() as u32)
                    .clamp(1, h),
            )
        } else if in_ratio > self.ratio.0.max(self.ratio.1) {
            (
                ((f64::from(h) * self.ratio.0.max(self.ratio.1)).round_ties_even() as u32)
                    .clamp(1, w),
                h,
            )
        } else {
            (w, h)
        };
        ((w - cw) / 2, (h - ch) / 2, cw, ch)
    }
}

fn uniform(rng: &mut ItemRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

impl RandomResizedCrop {
    /// Refuses empty or inverted ranges.
    pub(crate) fn check(&self) -> Result<(), AugmentError> {
        if !(self.scale.0 > 0.0
            && self.scale.0 <= self.scale.1
            && self.ratio.0 > 0.0
            && self.ratio.0 <= self.ratio.1)
        {
            return Err(param(
                "random-resized-crop ranges (scale, ratio)",
                (self.scale, self.ratio),
                "0 < min <= max for both",
            ));
        }
        Ok(())
    }
}

impl Transform for RandomResizedCrop {
    fn apply(&self, image: RgbImage, rng: &mut ItemRng) -> Result<RgbImage, AugmentError> {
        self.check()?;
        let (w, h) = image.dimensions();
        let window = self.window(w, h, rng);
        resized_crop(&image, window, self.size, self.size, self.filter)
    }

    fn kind(&self) -> StepKind {
        StepKind::RandomResizedCrop(*self)
    }
}

/// Flip axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlipDirection {
    /// Mirror left-right.
    #[default]
    Horizontal,
    /// Mirror top-bottom.
    Vertical,
}

/// Flips with a probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomFlip {
    /// Probability of flipping, in [0, 1].
    pub probability: f64,
    /// Axis.
    pub direction: FlipDirection,
}

impl RandomFlip {
    /// A flip with probability `p`; vertical when `vertical`, else horizontal.
    pub fn new(p: f64, vertical: bool) -> RandomFlip {
        RandomFlip {
            probability: p,
            direction: if vertical {
                FlipDirection::Vertical
            } else {
                FlipDirection::Horizontal
            },
        }
    }

    /// A flip with probability `p` along `direction`.
    pub fn with_direction(p: f64, direction: FlipDirection) -> RandomFlip {
        RandomFlip {
            probability: p,
            direction,
        }
    }
}

impl RandomFlip {
    /// Draws whether this flip happens (always one draw, so later transforms
    /// see the same stream either way).
    pub(crate) fn draw(&self, rng: &mut ItemRng) -> Result<bool, AugmentError> {
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(param(
                "flip probability",
                self.probability,
                "a number in [0, 1]",
            ));
        }
        Ok(rng.random::<f64>() < self.probability)
    }
}

impl Transform for RandomFlip {
    fn apply(&self, mut image: RgbImage, rng: &mut ItemRng) -> Result<RgbImage, AugmentError> {
        if self.draw(rng)? {
            match self.direction {
                FlipDirection::Horizontal => image::imageops::flip_horizontal_in_place(&mut image),
                FlipDirection::Vertical => image::imageops::flip_vertical_in_place(&mut image),
            }
        }
        Ok(image)
    }

    fn kind(&self) -> StepKind {
        StepKind::Flip(*self)
    }
}
