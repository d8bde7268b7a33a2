//! RandAugment as timm's `rand-m{m}-mstd{std}-inc1`: `n` operations drawn
//! uniformly from the "increasing" set, each applied with probability 0.5, at a
//! magnitude drawn from N(m, std) clipped to [0, 10].

use image::RgbImage;
use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::error::param;
use crate::{AugmentError, ItemRng, StepKind, Transform};

/// timm's fill colour for pixels uncovered by geometric ops (ImageNet mean).
const FILL: [u8; 3] = [124, 116, 104];

/// RandAugment with `n` ops at magnitude `m` (0..10) and magnitude noise `std`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandAugment {
    /// Operations per image.
    pub n: usize,
    /// Magnitude, 0..10.
    pub m: f64,
    /// Standard deviation of the per-op magnitude (0 = fixed).
    pub std: f64,
    /// Probability that each drawn op is applied (timm: 0.5).
    pub prob: f64,
}

impl RandAugment {
    /// timm's `rand-m{m}-mstd{std}` with `n` ops (RSB-A1 uses n 2, m 7, std 0.5).
    pub fn new(n: usize, m: f64, std: f64) -> RandAugment {
        RandAugment {
            n,
            m,
            std,
            prob: 0.5,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    AutoContrast,
    Equalize,
    Invert,
    Rotate,
    Posterize,
    Solarize,
    SolarizeAdd,
    Color,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
}

const OPS: [Op; 15] = [
    Op::AutoContrast,
    Op::Equalize,
    Op::Invert,
    Op::Rotate,
    Op::Posterize,
    Op::Solarize,
    Op::SolarizeAdd,
    Op::Color,
    Op::Contrast,
    Op::Brightness,
    Op::Sharpness,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateX,
    Op::TranslateY,
];

fn signed(rng: &mut ItemRng, v: f64) -> f64 {
    if rng.random::<bool>() {
        -v
    } else {
        v
    }
}

fn map_pixels(img: &mut RgbImage, f: impl Fn(usize, u8) -> u8) {
    for px in img.pixels_mut() {
        for c in 0..3 {
            px.0[c] = f(c, px.0[c]);
        }
    }
}

fn gray(p: &[u8; 3]) -> f32 {
    // ITU-R 601-2 luma, as Pillow's convert("L").
    (f32::from(p[0]) * 299.0 + f32::from(p[1]) * 587.0 + f32::from(p[2]) * 114.0) / 1000.0
}

fn blend(img: &mut RgbImage, degenerate: &RgbImage, factor: f32) {
    for (p, d) in img.pixels_mut().zip(degenerate.pixels()) {
        for c in 0..3 {
            let v = f32::from(d.0[c]) + factor * (f32::from(p.0[c]) - f32::from(d.0[c]));
            p.0[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Inverse-maps every output pixel through `f` (output x, y → source x, y),
/// bilinear, uncovered pixels filled.
fn affine(img: &RgbImage, f: impl Fn(f64, f64) -> (f64, f64)) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = RgbImage::new(w, h);
    for (x, y, p) in out.enumerate_pixels_mut() {
        let (sx, sy) = f(f64::from(x) + 0.5, f64::from(y) + 0.5);
        let (fx, fy) = (sx - 0.5, sy - 0.5);
        if fx < -0.5 || fy < -0.5 || fx > f64::from(w) - 0.5 || fy > f64::from(h) - 0.5 {
            p.0 = FILL;
            continue;
        }
        let (x0, y0) = (fx.floor(), fy.floor());
        let (ax, ay) = (fx - x0, fy - y0);
        let at = |xx: f64, yy: f64| {
            let xi = xx.clamp(0.0, f64::from(w - 1)) as u32;
            let yi = yy.clamp(0.0, f64::from(h - 1)) as u32;
            img.get_pixel(xi, yi).0
        };
        let (p00, p10, p01, p11) = (
            at(x0, y0),
            at(x0 + 1.0, y0),
            at(x0, y0 + 1.0),
            at(x0 + 1.0, y0 + 1.0),
        );
        for c in 0..3 {
            let top = f64::from(p00[c]) * (1.0 - ax) + f64::from(p10[c]) * ax;
            let bot = f64::from(p01[c]) * (1.0 - ax) + f64::from(p11[c]) * ax;
            p.0[c] = (top * (1.0 - ay) + bot * ay).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

fn apply_op(op: Op, mut img: RgbImage, mag: f64, rng: &mut ItemRng) -> RgbImage {
    let level = mag / 10.0;
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    match op {
        Op::AutoContrast => {
            let mut lo = [255u8; 3];
            let mut hi = [0u8; 3];
            for p in img.pixels() {
                for c in 0..3 {
                    lo[c] = lo[c].min(p.0[c]);
                    hi[c] = hi[c].max(p.0[c]);
                }
            }
            map_pixels(&mut img, |c, v| {
                if hi[c] <= lo[c] {
                    v
                } else {
                    // Truncated, as Pillow's autocontrast LUT (`int(ix * scale + offset)`).
                    (f32::from(v - lo[c]) * 255.0 / f32::from(hi[c] - lo[c])) as u8
                }
            });
            img
        }
        Op::Equalize => {
            // Pillow's ImageOps.equalize, per channel.
            let mut luts = [[0u8; 256]; 3];
            for (c, lut) in luts.iter_mut().enumerate() {
                let mut hist = [0usize; 256];
                for p in img.pixels() {
                    hist[p.0[c] as usize] += 1;
                }
                let last = hist
                    .iter()
                    .rposition(|&v| v > 0)
                    .map(|i| hist[i])
                    .unwrap_or(0);
                let step = (hist.iter().sum::<usize>() - last) / 255;
                for (i, l) in lut.iter_mut().enumerate() {
                    *l = i as u8;
                }
                if step > 0 {
                    let mut n = step / 2;
                    for (i, l) in lut.iter_mut().enumerate() {
                        *l = (n / step).min(255) as u8;
                        n += hist[i];
                    }
                }
            }
            map_pixels(&mut img, |c, v| luts[c][v as usize]);
            img
        }
        Op::Invert => {
            map_pixels(&mut img, |_, v| 255 - v);
            img
        }
        Op::Posterize => {
            let bits = 4 - (level * 4.0) as u32;
            let mask = !((1u16 << (8 - bits.min(8))) - 1) as u8;
            map_pixels(&mut img, |_, v| v & mask);
            img
        }
        Op::Solarize => {
            let thresh = 256 - (level * 256.0) as i32;
            map_pixels(
                &mut img,
                |_, v| if i32::from(v) >= thresh { 255 - v } else { v },
            );
            img
        }
        Op::SolarizeAdd => {
            let add = (level * 110.0) as u16;
            map_pixels(&mut img, |_, v| {
                if v < 128 {
                    (u16::from(v) + add).min(255) as u8
                } else {
                    v
                }
            });
            img
        }
        Op::Color | Op::Contrast | Op::Brightness | Op::Sharpness => {
            let factor = (1.0 + signed(rng, level * 0.9)) as f32;
            let degenerate = match op {
                Op::Color => {
                    let mut d = img.clone();
                    for p in d.pixels_mut() {
                        let g = gray(&p.0).round() as u8;
                        p.0 = [g; 3];
                    }
                    d
                }
                Op::Contrast => {
                    let n = (img.width() * img.height()).max(1) as f32;
                    let mean = (img.pixels().map(|p| gray(&p.0).round()).sum::<f32>() / n + 0.5)
                        .floor() as u8;
                    RgbImage::from_pixel(img.width(), img.height(), image::Rgb([mean; 3]))
                }
                Op::Brightness => RgbImage::new(img.width(), img.height()),
                _ => {
                    // Pillow's SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]]/13, borders kept.
                    let mut d = img.clone();
                    let (iw, ih) = img.dimensions();
                    for y in 1..ih.saturating_sub(1) {
                        for x in 1..iw.saturating_sub(1) {
                            let mut acc = [0u32; 3];
                            for dy in 0..3 {
                                for dx in 0..3 {
                                    let k = if dx == 1 && dy == 1 { 5 } else { 1 };
                                    let p = img.get_pixel(x + dx - 1, y + dy - 1).0;
                                    for c in 0..3 {
                                        acc[c] += k * u32::from(p[c]);
                                    }
                                }
                            }
                            d.put_pixel(x, y, image::Rgb(acc.map(|a| ((a + 6) / 13) as u8)));
                        }
                    }
                    d
                }
            };
            blend(&mut img, &degenerate, factor);
            img
        }
        Op::Rotate => {
            let a = signed(rng, level * 30.0).to_radians();
            let (cx, cy) = (w / 2.0, h / 2.0);
            let (s, c) = a.sin_cos();
            affine(&img, |x, y| {
                let (dx, dy) = (x - cx, y - cy);
                (c * dx + s * dy + cx, -s * dx + c * dy + cy)
            })
        }
        Op::ShearX => {
            let k = signed(rng, level * 0.3);
            affine(&img, |x, y| (x + k * y, y))
        }
        Op::ShearY => {
            let k = signed(rng, level * 0.3);
            affine(&img, |x, y| (x, y + k * x))
        }
        Op::TranslateX => {
            let t = signed(rng, level * 0.45) * w;
            affine(&img, |x, y| (x + t, y))
        }
        Op::TranslateY => {
            let t = signed(rng, level * 0.45) * h;
            affine(&img, |x, y| (x, y + t))
        }
    }
}

impl Transform for RandAugment {
    fn apply(&self, mut image: RgbImage, rng: &mut ItemRng) -> Result<RgbImage, AugmentError> {
        if !(0.0..=10.0).contains(&self.m)
            || self.std.is_nan()
            || self.std < 0.0
            || !(0.0..=1.0).contains(&self.prob)
        {
            return Err(param(
                "RandAugment (m, std, prob)",
                (self.m, self.std, self.prob),
                "m in [0, 10], std >= 0, prob in [0, 1]",
            ));
        }
        for _ in 0..self.n {
            let op = OPS[rng.random_range(0..OPS.len())];
            if rng.random::<f64>() >= self.prob {
                continue;
            }
            let mag = if self.std > 0.0 {
                let d = Normal::new(self.m, self.std)
                    .map_err(|_| param("RandAugment std", self.std, "a finite number >= 0"))?;
                d.sample(rng).clamp(0.0, 10.0)
            } else {
                self.m
            };
            image = apply_op(op, image, mag, rng);
        }
        Ok(image)
    }

    fn kind(&self) -> StepKind {
        StepKind::SizePreserving
    }
}
