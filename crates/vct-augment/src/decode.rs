//! Decoding any supported file into 8-bit RGB, with EXIF orientation applied and
//! a decompression-bomb guard.
//!
//! JPEGs go straight to `zune-jpeg` (the decoder the `image` crate wraps), so the
//! loader can decode into a reused buffer and read the header once. Where a
//! caller needs at most a quarter of the resolution, [`Probe::decode_into`]
//! decodes at 1/4 or 1/8 scale through `jpeg-decoder`'s reduced-size IDCT.

use std::io::Cursor;
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions as ZuneOptions;
use zune_jpeg::JpegDecoder;

use crate::AugmentError;

/// File extensions (lower case) recognised as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];

/// The smallest DCT-domain downscale worth taking: measured on this project's
/// photos, `jpeg-decoder` at 1/2 scale is slower than `zune-jpeg` at full
/// scale (entropy decoding dominates and zune's is faster); at 1/4 and 1/8 it
/// wins, and the resize after it reads 16-64x fewer pixels.
pub(crate) const MIN_DCT_DIVISOR: u32 = 4;

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
    let bytes = read_file(path, Vec::new())?;
    decode_bytes(&bytes, path, opts)
}

/// Reads `path` into `buf` (cleared first, its capacity reused).
pub(crate) fn read_file(path: &Path, mut buf: Vec<u8>) -> Result<Vec<u8>, AugmentError> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .map_err(|source| AugmentError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(buf)
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
    let probe = Probe::new(bytes, path, opts)?;
    let (w, h) = probe.dimensions();
    let mut buf = Vec::new();
    probe.decode_into(1, &mut buf)?;
    RgbImage::from_raw(w, h, buf).ok_or_else(|| AugmentError::Decode {
        path: path.to_path_buf(),
        reason: "decoder returned a buffer of the wrong size".into(),
    })
}

/// An image whose header has been read and checked (format, truncation, pixel
/// limit, orientation), ready to decode.
pub(crate) struct Probe<'a> {
    bytes: &'a [u8],
    path: &'a Path,
    kind: ProbeKind<'a>,
    /// Stored width and height (before orientation).
    stored: (u32, u32),
    orientation: Orientation,
}

enum ProbeKind<'a> {
    /// A JPEG with its headers decoded.
    Jpeg {
        decoder: Box<JpegDecoder<ZCursor<&'a [u8]>>>,
        colorspace: ColorSpace,
    },
    /// Any other format, already decoded (orientation not yet applied).
    Other(RgbImage),
}

impl std::fmt::Debug for Probe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("path", &self.path)
            .field("stored", &self.stored)
            .field("orientation", &self.orientation)
            .finish_non_exhaustive()
    }
}

fn decode_err(path: &Path, e: &dyn std::fmt::Display) -> AugmentError {
    AugmentError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl<'a> Probe<'a> {
    /// Reads the header of `bytes` (named `path` in errors).
    pub(crate) fn new(
        bytes: &'a [u8],
        path: &'a Path,
        opts: &DecodeOptions,
    ) -> Result<Probe<'a>, AugmentError> {
        if bytes.is_empty() {
            return Err(AugmentError::EmptyFile {
                path: path.to_path_buf(),
            });
        }
        let format = image::guess_format(bytes).ok();
        let Some(format) = format else {
            return Err(AugmentError::Decode {
                path: path.to_path_buf(),
                reason: "unrecognised file format (expected JPEG, PNG, WebP, BMP, GIF or TIFF)"
                    .into(),
            });
        };
        if format == image::ImageFormat::Jpeg {
            Self::jpeg(bytes, path, opts)
        } else {
            Self::other(bytes, path, opts)
        }
    }

    fn jpeg(
        bytes: &'a [u8],
        path: &'a Path,
        opts: &DecodeOptions,
    ) -> Result<Probe<'a>, AugmentError> {
        if !jpeg_has_end(bytes) {
            // The JPEG decoder fills a cut-off scan with grey; Pillow calls it truncated.
            return Err(AugmentError::Decode {
                path: path.to_path_buf(),
                reason: "truncated JPEG (no end-of-image marker after the last scan)".into(),
            });
        }
        // Lenient like Pillow (and like the `image` crate's settings); the pixel
        // limit below is ours, so the decoder's own size limits are off.
        let zopts = ZuneOptions::default()
            .set_strict_mode(false)
            .set_max_width(usize::MAX)
            .set_max_height(usize::MAX)
            .jpeg_set_out_colorspace(ColorSpace::RGB);
        let mut decoder = Box::new(JpegDecoder::new_with_options(ZCursor::new(bytes), zopts));
        decoder.decode_headers().map_err(|e| decode_err(path, &e))?;
        let (w, h) = decoder
            .dimensions()
            .ok_or_else(|| decode_err(path, &"JPEG header has no frame"))?;
        let (width, height) = (w as u32, h as u32);
        check_size(path, width, height, opts)?;
        let colorspace = decoder
            .input_colorspace()
            .ok_or_else(|| decode_err(path, &"JPEG header has no frame"))?;
        // A broken EXIF block should not cost the image: orientation falls back to none.
        let orientation = if opts.apply_orientation {
            decoder
                .exif()
                .and_then(|e| Orientation::from_exif_chunk(e))
                .unwrap_or(Orientation::NoTransforms)
        } else {
            Orientation::NoTransforms
        };
        Ok(Probe {
            bytes,
            path,
            kind: ProbeKind::Jpeg {
                decoder,
                colorspace,
            },
            stored: (width, height),
            orientation,
        })
    }

    fn other(
        bytes: &'a [u8],
        path: &'a Path,
        opts: &DecodeOptions,
    ) -> Result<Probe<'a>, AugmentError> {
        let reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| decode_err(path, &e))?;
        let mut reader = reader;
        // The pixel limit is ours; the allocation limit only has to stay out of its way
        // (8 bytes per pixel covers 16-bit RGBA).
        let mut limits = Limits::default();
        limits.max_alloc = Some(opts.max_pixels.saturating_mul(8).saturating_add(64 << 20));
        reader.limits(limits);
        let mut decoder = reader.into_decoder().map_err(|e| decode_err(path, &e))?;
        let (width, height) = decoder.dimensions();
        check_size(path, width, height, opts)?;
        let orientation = if opts.apply_orientation {
            decoder.orientation().unwrap_or(Orientation::NoTransforms)
        } else {
            Orientation::NoTransforms
        };
        let img = DynamicImage::from_decoder(decoder).map_err(|e| decode_err(path, &e))?;
        let rgb = match img {
            DynamicImage::ImageRgb8(rgb) => rgb,
            other => other.to_rgb8(),
        };
        Ok(Probe {
            bytes,
            path,
            kind: ProbeKind::Other(rgb),
            stored: (width, height),
            orientation,
        })
    }

    /// Width and height of the decoded image, orientation applied.
    pub(crate) fn dimensions(&self) -> (u32, u32) {
        let (w, h) = self.stored;
        if swaps_sides(self.orientation) {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// Whether [`Probe::decode_into`] can honour a divisor above 1: a
    /// baseline or progressive JPEG in YCbCr, RGB or grayscale.
    pub(crate) fn can_downscale(&self) -> bool {
        matches!(
            self.kind,
            ProbeKind::Jpeg {
                colorspace: ColorSpace::YCbCr | ColorSpace::RGB | ColorSpace::Luma,
                ..
            }
        )
    }

    /// Decodes into `buf` (resized to fit) as packed RGB8 with the orientation
    /// applied; returns the divisor used. A divisor of [`MIN_DCT_DIVISOR`] or
    /// more (a power of two, at most 8) asks for a DCT-domain downscale: the
    /// result is then `ceil(w / d)`×`ceil(h / d)`, each pixel standing for a
    /// d×d block of the full image. Images that cannot be downscaled, and any
    /// failure of the reduced decoder, give the full image (divisor 1).
    pub(crate) fn decode_into(self, divisor: u32, buf: &mut Vec<u8>) -> Result<u32, AugmentError> {
        let can_downscale = self.can_downscale();
        let Probe {
            bytes,
            path,
            kind,
            stored,
            orientation,
        } = self;
        let mut used = 1;
        let (mut w, mut h) = stored;
        match kind {
            ProbeKind::Other(img) => *buf = img.into_raw(),
            ProbeKind::Jpeg { mut decoder, .. } => {
                let scaled = (divisor >= MIN_DCT_DIVISOR && can_downscale)
                    .then(|| decode_scaled(bytes, stored, divisor.min(8), buf))
                    .flatten();
                if let Some((sw, sh)) = scaled {
                    (w, h, used) = (sw, sh, divisor.min(8));
                } else {
                    let n = decoder
                        .output_buffer_size()
                        .ok_or_else(|| decode_err(path, &"JPEG dimensions overflow"))?;
                    buf.clear();
                    buf.resize(n, 0);
                    decoder.decode_into(buf).map_err(|e| decode_err(path, &e))?;
                }
            }
        }
        if orientation != Orientation::NoTransforms {
            let img = RgbImage::from_raw(w, h, std::mem::take(buf))
                .ok_or_else(|| decode_err(path, &"decoder returned a buffer of the wrong size"))?;
            let mut dynamic = DynamicImage::ImageRgb8(img);
            dynamic.apply_orientation(orientation);
            *buf = dynamic.into_rgb8().into_raw();
        }
        Ok(used)
    }
}

fn check_size(
    path: &Path,
    width: u32,
    height: u32,
    opts: &DecodeOptions,
) -> Result<(), AugmentError> {
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
    Ok(())
}

/// Orientations that exchange width and height.
fn swaps_sides(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// `jpeg-decoder` at 1/`divisor` scale (4 or 8) into `buf` as RGB8; `None`
/// when it fails or returns another size (the caller then decodes in full).
fn decode_scaled(
    bytes: &[u8],
    (w, h): (u32, u32),
    divisor: u32,
    buf: &mut Vec<u8>,
) -> Option<(u32, u32)> {
    let want = (w.div_ceil(divisor), h.div_ceil(divisor));
    let mut d = jpeg_decoder::Decoder::new(bytes);
    let got = d
        .scale(u16::try_from(want.0).ok()?, u16::try_from(want.1).ok()?)
        .ok()?;
    if (u32::from(got.0), u32::from(got.1)) != want {
        return None;
    }
    let pixels = d.decode().ok()?;
    let n = want.0 as usize * want.1 as usize;
    if pixels.len() == 3 * n {
        *buf = pixels;
    } else if pixels.len() == n {
        buf.clear();
        buf.extend(pixels.iter().flat_map(|&v| [v, v, v]));
    } else {
        return None;
    }
    Some(want)
}

/// True when an end-of-image marker (FF D9) follows the last start-of-scan (FF DA).
/// Inside entropy-coded data every FF byte is stuffed (FF 00), so neither marker
/// can appear there by accident. Searched from the end for the last EOI (found
/// at once in a whole file) and from the start for a first SOS (in the header),
/// so a 5 MB photo is not scanned twice.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    const SOS: [u8; 2] = [0xFF, 0xDA];
    let Some(eoi) = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]) else {
        return false;
    };
    !bytes[eoi..].windows(2).any(|w| w == SOS) && bytes[..eoi].windows(2).any(|w| w == SOS)
}
