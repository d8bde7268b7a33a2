//! A built-in demo dataset: procedurally drawn shapes, deterministic by seed.
//!
//! [`generate`] writes `root/{train,val}/{circle,square,stripes,triangle}/NNNN.png`
//! (single label); [`generate_multilabel`] writes `root/{train,val}/NNNN.png` with
//! `root/train.csv` and `root/val.csv` (`image,labels`, several shapes per image).
//! Each image has a noisy random background and shapes in a contrasting random
//! colour at random positions and sizes; the classes are easy enough for a small
//! CNN to separate within a few epochs.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use rand::Rng;
use rayon::prelude::*;
use vct_augment::{item_rng, ItemRng};

use crate::error::{config, io};
use crate::DataError;

/// The demo concepts, sorted.
pub const DEMO_CONCEPTS: [&str; 4] = ["circle", "square", "stripes", "triangle"];

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Image side in pixels (at least 16).
    pub size: u32,
    /// Training images per concept (single-label) or in total (multi-label: ×4).
    pub train_per_class: usize,
    /// Validation images per concept (multi-label: ×4 in total).
    pub val_per_class: usize,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            seed: 0,
            size: 64,
            train_per_class: 150,
            val_per_class: 50,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    /// The dataset root.
    pub root: PathBuf,
    /// Training images written.
    pub train: usize,
    /// Validation images written.
    pub val: usize,
    /// The concept names.
    pub concepts: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Circle,
    Square,
    Stripes,
    Triangle,
}

const SHAPES: [Shape; 4] = [
    Shape::Circle,
    Shape::Square,
    Shape::Stripes,
    Shape::Triangle,
];

/// A background and a foreground colour far apart in brightness.
fn colours(rng: &mut ItemRng) -> ([f32; 3], [u8; 3]) {
    let dark_bg = rng.random::<bool>();
    let pick = |rng: &mut ItemRng, lo: u8, hi: u8| -> [u8; 3] {
        std::array::from_fn(|_| rng.random_range(lo..=hi))
    };
    let (bg, fg) = if dark_bg {
        (pick(rng, 0, 90), pick(rng, 150, 255))
    } else {
        (pick(rng, 150, 255), pick(rng, 0, 90))
    };
    (bg.map(f32::from), fg)
}

fn background(size: u32, bg: [f32; 3], rng: &mut ItemRng) -> RgbImage {
    // A gentle gradient plus per-pixel noise, so colour alone never decides.
    let g: [f32; 3] = std::array::from_fn(|_| rng.random_range(-20.0..20.0));
    let s = size as f32;
    RgbImage::from_fn(size, size, |x, y| {
        let t = (x as f32 + y as f32) / (2.0 * s) - 0.5;
        Rgb(std::array::from_fn(|c| {
            (bg[c] + g[c] * t + rng.random_range(-12.0..12.0)).clamp(0.0, 255.0) as u8
        }))
    })
}

/// Draws `shape` into the box `(x0, y0, side)`; stripes cover the whole image.
fn draw(img: &mut RgbImage, shape: Shape, fg: [u8; 3], bx: (f32, f32, f32), rng: &mut ItemRng) {
    let (x0, y0, side) = bx;
    let (w, h) = img.dimensions();
    match shape {
        Shape::Stripes => {
            let period = rng.random_range(6.0..12.0f32);
            let dir = rng.random_range(0..3);
            let phase = rng.random_range(0.0..period);
            for (x, y, p) in img.enumerate_pixels_mut() {
                let t = match dir {
                    0 => x as f32,
                    1 => y as f32,
                    _ => (x as f32 + y as f32) * std::f32::consts::FRAC_1_SQRT_2,
                };
                if (t + phase).rem_euclid(period) < period / 2.0 {
                    p.0 = fg;
                }
            }
        }
        _ => {
            let (cx, cy, r) = (x0 + side / 2.0, y0 + side / 2.0, side / 2.0);
            for y in (y0.max(0.0) as u32)..((y0 + side).ceil() as u32).min(h) {
                for x in (x0.max(0.0) as u32)..((x0 + side).ceil() as u32).min(w) {
                    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                    let inside = match shape {
                        Shape::Circle => (px - cx).powi(2) + (py - cy).powi(2) <= r * r,
                        Shape::Square => (px - cx).abs() <= r * 0.85 && (py - cy).abs() <= r * 0.85,
                        // Apex at the top centre, base along the bottom.
                        _ => {
                            let v = (py - y0) / side;
                            v <= 1.0 && (px - cx).abs() <= r * v
                        }
                    };
                    if inside {
                        img.put_pixel(x, y, Rgb(fg));
                    }
                }
            }
        }
    }
}

fn single_image(size: u32, shape: Shape, rng: &mut ItemRng) -> RgbImage {
    let (bg, fg) = colours(rng);
    let mut img = background(size, bg, rng);
    let s = size as f32;
    let side = rng.random_range(0.45 * s..0.75 * s);
    let x0 = rng.random_range(0.0..(s - side).max(1.0));
    let y0 = rng.random_range(0.0..(s - side).max(1.0));
    draw(&mut img, shape, fg, (x0, y0, side), rng);
    img
}

fn check(cfg: &DemoConfig) -> Result<(), DataError> {
    if cfg.size < 16 {
        return Err(config("demo image size", cfg.size, "at least 16"));
    }
    if cfg.train_per_class == 0 || cfg.val_per_class == 0 {
        return Err(config(
            "demo images per class",
            (cfg.train_per_class, cfg.val_per_class),
            "at least 1 each",
        ));
    }
    Ok(())
}

fn save(img: &RgbImage, path: &Path) -> Result<(), DataError> {
    img.save(path).map_err(|e| DataError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Writes the single-label demo dataset under `root` (`train/` and `val/`, one
/// folder per concept, PNG images).
pub fn generate(root: &Path, cfg: &DemoConfig) -> Result<DemoSummary, DataError> {
    check(cfg)?;
    let mut jobs = Vec::new();
    for (split, per, tag) in [
        ("train", cfg.train_per_class, 0u64),
        ("val", cfg.val_per_class, 1),
    ] {
        for (c, &shape) in SHAPES.iter().enumerate() {
            let dir = root.join(split).join(DEMO_CONCEPTS[c]);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            for i in 0..per {
                let key = (tag << 40) | ((c as u64) << 32) | i as u64;
                jobs.push((dir.join(format!("{i:04}.png")), shape, key));
            }
        }
    }
    jobs.par_iter().try_for_each(|(path, shape, key)| {
        let mut rng = item_rng(cfg.seed, u64::MAX - 1, *key);
        save(&single_image(cfg.size, *shape, &mut rng), path)
    })?;
    Ok(DemoSummary {
        root: root.to_path_buf(),
        train: cfg.train_per_class * SHAPES.len(),
        val: cfg.val_per_class * SHAPES.len(),
        concepts: DEMO_CONCEPTS.iter().map(|s| s.to_string()).collect(),
    })
}

/// Writes the multi-label demo dataset: `root/{train,val}/NNNN.png` and
/// `root/{train,val}.csv` (`image,labels`). Each image has stripes with
/// probability ½ and one to three of circle / square / triangle in separate
/// quadrants (at least one concept per image).
pub fn generate_multilabel(root: &Path, cfg: &DemoConfig) -> Result<DemoSummary, DataError> {
    check(cfg)?;
    let mut counts = [0usize; 2];
    for (t, (split, per)) in [("train", cfg.train_per_class), ("val", cfg.val_per_class)]
        .into_iter()
        .enumerate()
    {
        let dir = root.join(split);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let n = per * SHAPES.len();
        let rows: Vec<String> = (0..n)
            .into_par_iter()
            .map(|i| {
                let mut rng = item_rng(cfg.seed, u64::MAX - 2, ((t as u64) << 40) | i as u64);
                let (bg, fg) = colours(&mut rng);
                let mut img = background(cfg.size, bg, &mut rng);
                let mut labels = Vec::new();
                let stripes = rng.random::<bool>();
                if stripes {
                    // Faint stripes: mixed towards the background so shapes stay visible.
                    let faint: [u8; 3] =
                        std::array::from_fn(|c| ((bg[c] + f32::from(fg[c])) / 2.0) as u8);
                    draw(&mut img, Shape::Stripes, faint, (0.0, 0.0, 0.0), &mut rng);
                    labels.push("stripes");
                }
                let s = cfg.size as f32 / 2.0;
                let mut quads = [0usize, 1, 2, 3];
                rand::seq::SliceRandom::shuffle(&mut quads[..], &mut rng);
                let k = rng.random_range(if stripes { 0..=3 } else { 1..=3 });
                let mut shapes: Vec<Shape> = Vec::new();
                for &q in quads.iter().take(k) {
                    let shape =
                        [Shape::Circle, Shape::Square, Shape::Triangle][rng.random_range(0..3)];
                    let side = rng.random_range(0.6 * s..0.9 * s);
                    let x0 = (q % 2) as f32 * s + rng.random_range(0.0..(s - side).max(1.0));
                    let y0 = (q / 2) as f32 * s + rng.random_range(0.0..(s - side).max(1.0));
                    draw(&mut img, shape, fg, (x0, y0, side), &mut rng);
                    shapes.push(shape);
                }
                for (shape, name) in [
                    (Shape::Circle, "circle"),
                    (Shape::Square, "square"),
                    (Shape::Triangle, "triangle"),
                ] {
                    if shapes.contains(&shape) {
                        labels.push(name);
                    }
                }
                labels.sort_unstable();
                let file = format!("{i:04}.png");
                save(&img, &dir.join(&file))?;
                Ok(format!("{split}/{file},{}", labels.join(" ")))
            })
            .collect::<Result<_, DataError>>()?;
        let csv = root.join(format!("{split}.csv"));
        std::fs::write(&csv, format!("image,labels\n{}\n", rows.join("\n"))).map_err(io(&csv))?;
        counts[t] = n;
    }
    Ok(DemoSummary {
        root: root.to_path_buf(),
        train: counts[0],
        val: counts[1],
        concepts: DEMO_CONCEPTS.iter().map(|s| s.to_string()).collect(),
    })
}
