//! The loader's path from a file to normalised pixels in one pass per image.
//!
//! A pipeline whose head is `Resize` (+ `CenterCrop` / `RandomCrop`) or a
//! `RandomResizedCrop` is run without materialising the resized image: the
//! random draws happen first, on the image's size from its header; then only the
//! source region under the output window is resized (Pillow's pass order, the
//! same coefficients as resizing the whole image and cropping), trailing flips
//! are folded into the normalising write, and every intermediate buffer is a
//! per-thread one reused from image to image. The random stream and, with
//! [`Pipeline::reduced_decode`] off, the pixels are those of
//! `decode` → [`Pipeline::apply`] → [`write_chw`](crate::write_chw) (tests hold
//! the two paths to the same output). Pipelines of another shape, and crops that
//! would need padding, take that plain path.

use std::cell::RefCell;
use std::path::Path;

use fast_image_resize::images::{CroppedImage, Image, ImageRef};
use fast_image_resize::{PixelType, ResizeOptions, Resizer};
use image::RgbImage;

use crate::decode::{read_file, Probe, MIN_DCT_DIVISOR};
use crate::normalize::write_chw_flipped;
use crate::transforms::{center_offset, random_offset, MAX_RESIZE_PIXELS, RESIZER};
use crate::{
    decode_bytes, decode_file, AugmentError, CenterCrop, DecodeOptions, Filter, ItemRng, Normalize,
    Pipeline, RandomCrop, RandomResizedCrop, Resize, StepKind, Transform,
};

/// Where an image comes from.
#[derive(Debug, Clone, Copy)]
pub enum ImageSource<'a> {
    /// A file on disk.
    File(&'a Path),
    /// Encoded bytes; `name` only names them in errors.
    Bytes {
        /// The encoded image.
        bytes: &'a [u8],
        /// What errors call it.
        name: &'a Path,
    },
    /// Pixels already in memory (CIFAR-style datasets).
    Pixels(&'a RgbImage),
}

impl ImageSource<'_> {
    /// Decodes the whole image (the plain path).
    pub fn decode(&self, opts: &DecodeOptions) -> Result<RgbImage, AugmentError> {
        match *self {
            ImageSource::File(p) => decode_file(p, opts),
            ImageSource::Bytes { bytes, name } => decode_bytes(bytes, name, opts),
            ImageSource::Pixels(img) => Ok(img.clone()),
        }
    }
}

/// How much shrinking is left to the antialiased resize after a reduced-scale
/// decode: a 1/d IDCT averages d×d blocks (a box filter), so the triangle or
/// cubic filter after it must still span a couple of decoded pixels to hide
/// that. Pillow's `thumbnail` uses the same gap (`reducing_gap=2.0`) before
/// its `draft` (DCT-scaled) decode.
const REDUCING_GAP: f64 = 2.0;

/// Buffers reused from image to image on one thread.
#[derive(Default)]
struct Scratch {
    file: Vec<u8>,
    decoded: Vec<u8>,
    temp: Vec<u8>,
    resized: Vec<u8>,
    crop: Vec<u8>,
}

/// Capacity kept between images; a rare huge photo should not pin its
/// buffers for the rest of the run.
const KEEP_BYTES: usize = 32 << 20;

impl Scratch {
    fn trim(&mut self) {
        for b in [
            &mut self.file,
            &mut self.decoded,
            &mut self.temp,
            &mut self.resized,
            &mut self.crop,
        ] {
            if b.capacity() > KEEP_BYTES {
                *b = Vec::new();
            }
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The crop after a resize.
#[derive(Debug, Clone, Copy)]
enum Crop {
    Whole,
    Center(CenterCrop),
    Random(RandomCrop),
}

/// The geometric head of a pipeline.
#[derive(Debug, Clone, Copy)]
enum Geometry {
    /// An optional resize, then a crop of its output.
    Resize(Option<Resize>, Crop),
    /// Crop a random window of the image, resize it.
    ResizedCrop(RandomResizedCrop),
}

/// A pipeline split into its geometric head and the steps after it.
struct Plan<'p> {
    geometry: Geometry,
    rest: &'p [Box<dyn Transform>],
}

/// Where one image's output comes from: `region` (x, y, w, h, in source
/// pixels) resized to `out`, the filter kernel clamped to `bounds` (the whole
/// image for resize + crop, the window for a resized crop), then the `keep`
/// rectangle (x, y, w, h) of that kept (all of it, except along an upscaled
/// axis: see [`Plan::window`]).
#[derive(Debug, Clone, Copy)]
struct Window {
    bounds: (u32, u32, u32, u32),
    region: (f64, f64, f64, f64),
    out: (u32, u32),
    keep: (u32, u32, u32, u32),
    filter: Filter,
}

impl Plan<'_> {
    /// The output size, when it does not depend on the input.
    fn output_size(&self) -> Option<(u32, u32)> {
        let head = match self.geometry {
            Geometry::ResizedCrop(r) => Some((r.size, r.size)),
            Geometry::Resize(_, Crop::Center(c)) => Some((c.width, c.height)),
            Geometry::Resize(_, Crop::Random(c)) => Some((c.width, c.height)),
            Geometry::Resize(Some(r), Crop::Whole) => match r.target {
                crate::ResizeTarget::Exact(w, h) => Some((w, h)),
                crate::ResizeTarget::ShorterSide(_) => None,
            },
            Geometry::Resize(None, Crop::Whole) => None,
        }?;
        self.rest
            .iter()
            .all(|s| matches!(s.kind(), StepKind::Flip(_) | StepKind::SizePreserving))
            .then_some(head)
    }

    /// Draws this image's window from `rng` as the plain path would; `None`
    /// when the plain path must run (padding, refused sizes or ranges: it
    /// reports those), in which case `rng` may have been advanced.
    fn window(&self, (w, h): (u32, u32), rng: &mut ItemRng) -> Option<Window> {
        match self.geometry {
            Geometry::Resize(resize, crop) => {
                let (rw, rh) = resize.map_or((w, h), |r| r.output_size(w, h));
                if (rw, rh) != (w, h) && u64::from(rw) * u64::from(rh) > MAX_RESIZE_PIXELS {
                    return None;
                }
                let (left, top, cw, ch) = match crop {
                    Crop::Whole => (0, 0, rw, rh),
                    Crop::Center(c) => (
                        center_offset(rw, c.width),
                        center_offset(rh, c.height),
                        c.width,
                        c.height,
                    ),
                    Crop::Random(c) => {
                        // torchvision draws the top offset first.
                        let top = random_offset(rh, c.height, rng);
                        let left = random_offset(rw, c.width, rng);
                        (left, top, c.width, c.height)
                    }
                };
                if left < 0
                    || top < 0
                    || left + i64::from(cw) > i64::from(rw)
                    || top + i64::from(ch) > i64::from(rh)
                {
                    return None;
                }
                let filter = resize.map_or(Filter::Bilinear, |r| r.filter);
                let (left, top) = (left as u32, top as u32);
                // The resizer's fixed-point precision follows the largest
                // weight of all the outputs it computes. Shrinking, that
                // weight is about the same for any run of outputs; enlarging,
                // it reaches 1 only where an output falls on a source pixel,
                // which a crop may leave out, and one bit less precision moves
                // a few pixels by a level. So an enlarged axis is resized
                // whole and cropped after (the source is small then anyway).
                let (x, ow, kx) = if rw > w { (0, rw, left) } else { (left, cw, 0) };
                let (y, oh, ky) = if rh > h { (0, rh, top) } else { (top, ch, 0) };
                let (sx, sy) = (f64::from(w) / f64::from(rw), f64::from(h) / f64::from(rh));
                Some(Window {
                    bounds: (0, 0, w, h),
                    region: (
                        f64::from(x) * sx,
                        f64::from(y) * sy,
                        f64::from(ow) * sx,
                        f64::from(oh) * sy,
                    ),
                    out: (ow, oh),
                    keep: (kx, ky, cw, ch),
                    filter,
                })
            }
            Geometry::ResizedCrop(r) => {
                r.check().ok()?;
                let (l, t, cw, ch) = r.window(w, h, rng);
                Some(Window {
                    bounds: (l, t, cw, ch),
                    region: (f64::from(l), f64::from(t), f64::from(cw), f64::from(ch)),
                    out: (r.size, r.size),
                    keep: (0, 0, r.size, r.size),
                    filter: r.filter,
                })
            }
        }
    }
}

impl Window {
    /// The largest DCT-scaling divisor (1, 4 or 8) that still leaves the
    /// resize after it a shrink of at least [`REDUCING_GAP`] along both axes.
    fn divisor(&self) -> u32 {
        let per_out =
            (self.region.2 / f64::from(self.out.0)).min(self.region.3 / f64::from(self.out.1));
        let d = [8, 4]
            .into_iter()
            .find(|&d| per_out >= REDUCING_GAP * f64::from(d));
        d.filter(|&d| d >= MIN_DCT_DIVISOR).unwrap_or(1)
    }

    /// The kept rectangle is all of the resized output.
    fn keeps_all(&self) -> bool {
        self.keep == (0, 0, self.out.0, self.out.1)
    }

    /// The same window on an image decoded at 1/`d` scale, `size` its size.
    fn scaled(self, d: u32, size: (u32, u32)) -> Window {
        if d == 1 {
            return self;
        }
        let f = f64::from(d);
        let (bx, by, bw, bh) = self.bounds;
        let x0 = (bx / d).min(size.0 - 1);
        let y0 = (by / d).min(size.1 - 1);
        let x1 = (bx + bw).div_ceil(d).clamp(x0 + 1, size.0);
        let y1 = (by + bh).div_ceil(d).clamp(y0 + 1, size.1);
        let (rx, ry, rw, rh) = self.region;
        Window {
            bounds: (x0, y0, x1 - x0, y1 - y0),
            region: (rx / f, ry / f, rw / f, rh / f),
            ..self
        }
    }
}

impl Pipeline {
    fn plan(&self) -> Option<Plan<'_>> {
        let kind = |i: usize| self.steps.get(i).map(|s| s.kind());
        let (geometry, used) = match kind(0)? {
            StepKind::RandomResizedCrop(r) => (Geometry::ResizedCrop(r), 1),
            StepKind::CenterCrop(c) => (Geometry::Resize(None, Crop::Center(c)), 1),
            StepKind::RandomCrop(c) => (Geometry::Resize(None, Crop::Random(c)), 1),
            StepKind::Resize(r) => match kind(1) {
                Some(StepKind::CenterCrop(c)) => (Geometry::Resize(Some(r), Crop::Center(c)), 2),
                Some(StepKind::RandomCrop(c)) => (Geometry::Resize(Some(r), Crop::Random(c)), 2),
                _ => (Geometry::Resize(Some(r), Crop::Whole), 1),
            },
            _ => return None,
        };
        Some(Plan {
            geometry,
            rest: &self.steps[used..],
        })
    }

    /// The size of every output, when the steps fix it (a crop, an exact
    /// resize or a random-resized crop first, then only flips and
    /// size-preserving steps): the size [`Pipeline::load_into`] writes.
    pub fn output_size(&self) -> Option<(u32, u32)> {
        self.plan()?.output_size()
    }

    /// Decodes `source` and runs the pipeline: the same random draws as
    /// `decode` + [`Pipeline::apply`], through the fused path where the
    /// pipeline's head allows it.
    pub fn load(
        &self,
        source: ImageSource<'_>,
        decode: &DecodeOptions,
        rng: &mut ItemRng,
    ) -> Result<RgbImage, AugmentError> {
        let Some(plan) = self.plan() else {
            return self.apply(source.decode(decode)?, rng);
        };
        let start = rng.clone();
        match with_geometry(
            &plan,
            source,
            decode,
            self.reduced_decode,
            rng,
            |raw, (w, h), _| {
                RgbImage::from_raw(w, h, raw.to_vec())
                    .ok_or_else(|| AugmentError::Resize("window buffer has the wrong size".into()))
            },
        )? {
            Some(img) => plan.rest.iter().try_fold(img, |img, t| t.apply(img, rng)),
            None => {
                *rng = start;
                self.apply(source.decode(decode)?, rng)
            }
        }
    }

    /// Decodes `source`, runs the pipeline and writes the result normalised,
    /// CHW, into `out` (length `3 * w * h` for [`Pipeline::output_size`]'s
    /// `(w, h)`): a batch slot filled without an intermediate image.
    pub fn load_into(
        &self,
        source: ImageSource<'_>,
        decode: &DecodeOptions,
        rng: &mut ItemRng,
        norm: Normalize,
        out: &mut [f32],
    ) -> Result<(), AugmentError> {
        let flips_only =
            |p: &Plan<'_>| p.rest.iter().all(|s| matches!(s.kind(), StepKind::Flip(_)));
        let plan = self.plan().filter(flips_only);
        let Some(plan) = plan else {
            let img = self.load(source, decode, rng)?;
            return crate::write_chw(&img, norm, out);
        };
        let start = rng.clone();
        let written = with_geometry(
            &plan,
            source,
            decode,
            self.reduced_decode,
            rng,
            |raw, size, rng| {
                let (mut h, mut v) = (false, false);
                for step in plan.rest {
                    if let StepKind::Flip(f) = step.kind() {
                        if f.draw(rng)? {
                            match f.direction {
                                crate::FlipDirection::Horizontal => h = !h,
                                crate::FlipDirection::Vertical => v = !v,
                            }
                        }
                    }
                }
                write_chw_flipped(raw, size, norm, (h, v), out)
            },
        )?;
        if written.is_none() {
            *rng = start;
            let img = self.apply(source.decode(decode)?, rng)?;
            crate::write_chw(&img, norm, out)?;
        }
        Ok(())
    }
}

/// Decodes `source` and resizes its window into a per-thread buffer, then
/// hands the packed RGB8 result and its size to `finish`. `Ok(None)` when the
/// plain path must run instead (nothing decoded then, or only a header read).
fn with_geometry<T>(
    plan: &Plan<'_>,
    source: ImageSource<'_>,
    decode: &DecodeOptions,
    reduced: bool,
    rng: &mut ItemRng,
    finish: impl FnOnce(&[u8], (u32, u32), &mut ItemRng) -> Result<T, AugmentError>,
) -> Result<Option<T>, AugmentError> {
    SCRATCH.with(|cell| {
        // A transform that itself loads (a nested pipeline) finds the buffers
        // taken: it gets fresh ones rather than a panic.
        let mut fresh = Scratch::default();
        let mut guard = cell.try_borrow_mut();
        let scratch: &mut Scratch = match guard.as_deref_mut() {
            Ok(s) => s,
            Err(_) => &mut fresh,
        };
        let result =
            geometry_into(plan, source, decode, reduced, rng, scratch).and_then(|window| {
                window
                    .map(|w| {
                        let (_, _, kw, kh) = w.keep;
                        if w.keeps_all() {
                            finish(&scratch.resized, (kw, kh), rng)
                        } else {
                            crop_into(&scratch.resized, w.out, w.keep, &mut scratch.crop);
                            finish(&scratch.crop, (kw, kh), rng)
                        }
                    })
                    .transpose()
            });
        scratch.trim();
        result
    })
}

/// Copies the `keep` rectangle of the packed RGB8 `src` (`size`) into `out`.
fn crop_into(src: &[u8], size: (u32, u32), keep: (u32, u32, u32, u32), out: &mut Vec<u8>) {
    let (x, y, w, h) = keep;
    let stride = 3 * size.0 as usize;
    let row = 3 * w as usize;
    out.clear();
    for r in y as usize..(y + h) as usize {
        let start = r * stride + 3 * x as usize;
        out.extend_from_slice(&src[start..start + row]);
    }
}

/// The fused decode + window resize into `scratch.resized`; the window used
/// (its `out` the size resized, its `keep` what to keep of it), or `None` for
/// the plain path.
fn geometry_into(
    plan: &Plan<'_>,
    source: ImageSource<'_>,
    decode: &DecodeOptions,
    reduced: bool,
    rng: &mut ItemRng,
    scratch: &mut Scratch,
) -> Result<Option<Window>, AugmentError> {
    let Scratch {
        file,
        decoded,
        temp,
        resized,
        ..
    } = scratch;
    if let ImageSource::Pixels(img) = source {
        let Some(window) = plan.window(img.dimensions(), rng) else {
            return Ok(None);
        };
        resize_region(img.as_raw(), img.dimensions(), &window, temp, resized)?;
        return Ok(Some(window));
    }
    let (bytes, name): (&[u8], &Path) = match source {
        ImageSource::File(p) => {
            *file = read_file(p, std::mem::take(file))?;
            (file.as_slice(), p)
        }
        ImageSource::Bytes { bytes, name } => (bytes, name),
        ImageSource::Pixels(_) => return Ok(None),
    };
    let probe = Probe::new(bytes, name, decode)?;
    let full = probe.dimensions();
    let Some(window) = plan.window(full, rng) else {
        return Ok(None);
    };
    let want = if reduced { window.divisor() } else { 1 };
    let used = probe.decode_into(want, decoded)?;
    let size = (full.0.div_ceil(used), full.1.div_ceil(used));
    let window = window.scaled(used, size);
    resize_region(decoded, size, &window, temp, resized)?;
    Ok(Some(window))
}

fn resize_err(e: impl std::fmt::Display) -> AugmentError {
    AugmentError::Resize(e.to_string())
}

/// Resizes `window.region` of the packed RGB8 image `src` (`size`) to
/// `window.out` into `out`, the kernel clamped to `window.bounds`, as two
/// single-direction passes (horizontal first, rounded to 8 bits between, like
/// Pillow and [`crate::transforms`]' `resize_image`). The horizontal pass only
/// covers the rows the vertical pass reads.
fn resize_region(
    src: &[u8],
    size: (u32, u32),
    window: &Window,
    temp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), AugmentError> {
    let (bx, by, bw, bh) = window.bounds;
    let (ow, oh) = window.out;
    // Relative to the bounds, and inside them (float rounding of the scale
    // may overshoot the last pixel by an ulp; fast_image_resize refuses that).
    let x = (window.region.0 - f64::from(bx)).max(0.0);
    let y = (window.region.1 - f64::from(by)).max(0.0);
    let w = window.region.2.min(f64::from(bw) - x);
    let h = window.region.3.min(f64::from(bh) - y);
    let need_h = f64::from(ow) != w || x.fract() != 0.0;
    let need_v = f64::from(oh) != h || y.fract() != 0.0;
    let image = ImageRef::new(size.0, size.1, src, PixelType::U8x3).map_err(resize_err)?;
    out.clear();
    out.resize(3 * ow as usize * oh as usize, 0);
    let opts = |l: f64, t: f64, w: f64, h: f64| {
        ResizeOptions::new()
            .resize_alg(window.filter.alg())
            .crop(l, t, w, h)
    };
    let run = |view: &CroppedImage<'_, ImageRef<'_>>,
               dst: &mut Image<'_>,
               o: &ResizeOptions|
     -> Result<(), AugmentError> {
        RESIZER.with(|r| {
            let mut fresh = Resizer::new();
            let mut guard = r.try_borrow_mut();
            let resizer = match guard.as_deref_mut() {
                Ok(r) => r,
                Err(_) => &mut fresh,
            };
            resizer.resize(view, dst, o).map_err(resize_err)
        })
    };
    let crop = |l: u32, t: u32, w: u32, h: u32| {
        CroppedImage::new(&image, bx + l, by + t, w, h).map_err(resize_err)
    };
    let mut dst = Image::from_slice_u8(ow, oh, out, PixelType::U8x3).map_err(resize_err)?;
    match (need_h, need_v) {
        (false, false) | (true, false) => {
            // y is a whole row here; the horizontal pass (or a copy) on oh rows.
            let view = crop(0, y as u32, bw, oh)?;
            run(&view, &mut dst, &opts(x, 0.0, w, f64::from(oh)))
        }
        (false, true) => {
            let view = crop(x as u32, 0, ow, bh)?;
            run(&view, &mut dst, &opts(0.0, y, f64::from(ow), h))
        }
        (true, true) => {
            // Rows the vertical kernel reaches: support 2 (bicubic; bilinear
            // needs 1) times the downscale, plus a row of margin each side.
            let sy = h / f64::from(oh);
            let radius = 2.0 * sy.max(1.0) + 1.0;
            let r0 = (y + 0.5 * sy - radius).floor().max(0.0) as u32;
            let r1 = ((y + (f64::from(oh) - 0.5) * sy + radius).ceil() as u32).min(bh);
            let rows = r1 - r0;
            temp.clear();
            temp.resize(3 * ow as usize * rows as usize, 0);
            {
                let view = crop(0, r0, bw, rows)?;
                let mut t =
                    Image::from_slice_u8(ow, rows, temp, PixelType::U8x3).map_err(resize_err)?;
                run(&view, &mut t, &opts(x, 0.0, w, f64::from(rows)))?;
            }
            let t = ImageRef::new(ow, rows, temp, PixelType::U8x3).map_err(resize_err)?;
            let view = CroppedImage::new(&t, 0, 0, ow, rows).map_err(resize_err)?;
            run(
                &view,
                &mut dst,
                &opts(0.0, y - f64::from(r0), f64::from(ow), h),
            )
        }
    }
}
