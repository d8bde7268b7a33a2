//! Small image files written on the fly.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

/// An encoded `w`×`h` image with a pattern depending on `tag`.
pub fn encoded(w: u32, h: u32, tag: u8, fmt: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 7) as u8 ^ tag, (y * 5) as u8, tag.wrapping_mul(31)])
    });
    let mut buf = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut buf, fmt)
        .expect("encode");
    buf.into_inner()
}

/// Writes a small image to `path` (format from the extension, default JPEG).
pub fn write_image(path: &Path, tag: u8) {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("jpg")
        .to_ascii_lowercase();
    let fmt = if ext == "png" {
        ImageFormat::Png
    } else {
        ImageFormat::Jpeg
    };
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, encoded(40, 30, tag, fmt)).expect("write");
}

/// A JPEG cut to a third: its header reads, its pixels do not.
pub fn write_truncated_jpeg(path: &Path) {
    let full = encoded(256, 256, 3, ImageFormat::Jpeg);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, &full[..full.len() / 2]).expect("write");
}

/// `<repo>/../shared/data`, if present.
pub fn shared_data() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: {} is absent", p.display());
        None
    }
}
