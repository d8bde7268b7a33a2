//! Decoding any supported file into 8-bit RGB, with EXIF orientation applied and
//! a decompression-bomb guard.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use crate::AugmentError;

/// File extensions (lower case) recognised as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];

/// How to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Largest accepted `width * height`; bigger images are refused before their
    /// pixels are decoded. Default 89,478,485 (Pillow's `MAX_IMAGE_PIXELS`).
    pub max_pixels: u64,
    /// Rotate/flip by the EXIF orientation tag (default true, like `ImageOps.exif_transpose`).
    pub apply_orientation: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_pixels: 89_478_485,
            apply_orientation: true,
        }
    }
}

/// Reads and decodes an image file.
pub fn decode_file(path: &Path, opts: &DecodeOptions) -> Result<RgbImage, AugmentError> {
    let bytes = std::fs::read(path).map_err(|source| AugmentError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_bytes(&bytes, path, opts)
}

/// Decodes an encoded image; `path` only names it in errors.
///
/// Grayscale, palette, CMYK, 16-bit and alpha images all come out as 8-bit RGB
/// (alpha is dropped, like Pillow's `convert("RGB")`); GIFs give their first frame.
pub fn decode_bytes(
    bytes: &[u8],
    path: &Path,
    opts: &DecodeOptions,
) -> Result<RgbImage, AugmentError> {
    if bytes.is_empty() {
        return Err(AugmentError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let decode_err = |e: &dyn std::fmt::Display| AugmentError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(&e))?;
    if reader.format().is_none() {
        return Err(AugmentError::Decode {
            path: path.to_path_buf(),
            reason: "unrecognised file format (expected JPEG, PNG, WebP, BMP, GIF or TIFF)".into(),
        });
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_has_end(bytes) {
        // The JPEG decoder fills a cut-off scan with grey; Pillow calls it truncated.
        return Err(AugmentError::Decode {
            path: path.to_path_buf(),
            reason: "truncated JPEG (no end-of-image marker after the last scan)".into(),
        });
    }
    // The pixel limit is ours; the allocation limit only has to stay out of its way
    // (8 bytes per pixel covers 16-bit RGBA).
    let mut limits = Limits::default();
    limits.max_alloc = Some(opts.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| decode_err(&e))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > opts.max_pixels {
        return Err(AugmentError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            pixels,
            limit: opts.max_pixels,
        });
    }
    if pixels == 0 {
        return Err(AugmentError::Decode {
            path: path.to_path_buf(),
            reason: format!("image has no pixels ({width}x{height})"),
        });
    }
    // A broken EXIF block should not cost the image: orientation falls back to none.
    let orientation = if opts.apply_orientation {
        decoder.orientation().ok()
    } else {
        None
    };
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_err(&e))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
}

/// True when an end-of-image marker (FF D9) follows the last start-of-scan (FF DA).
/// Inside entropy-coded data every FF byte is stuffed (FF 00), so neither marker
/// can appear there by accident.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(i) => bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}
