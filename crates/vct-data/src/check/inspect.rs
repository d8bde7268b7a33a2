//! Looking at one image: its bytes, header, orientation, content hash and, when
//! asked, its pixels (through vct-augment's decoder, as training decodes them) and
//! their perceptual hash.

use std::io::Cursor;
use std::path::Path;

use image::{ColorType, ImageDecoder, ImageReader, RgbImage};
use sha2::{Digest, Sha256};

use super::CheckOptions;
use crate::Source;

/// What is wrong with a file, before its findings are worded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileProblem {
    ZeroByte,
    NotImage(String),
    DecodeFailed(String),
    Unreadable(String),
}

/// What one look at an image found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inspection {
    /// Why it cannot be used (`None`: usable).
    pub problem: Option<FileProblem>,
    /// Width and height as stored.
    pub size: Option<(u32, u32)>,
    /// Colour mode as stored.
    pub color: Option<&'static str>,
    /// EXIF orientation when not 1.
    pub orientation: Option<u8>,
    /// SHA-256 of the file's bytes (CIFAR-10: of the pixels).
    pub content: Option<[u8; 32]>,
    /// 256-bit perceptual hash of the decoded pixels.
    pub phash: Option<PHash>,
}

/// Pillow-style names of the colour modes.
fn color_name(c: ColorType) -> &'static str {
    match c {
        ColorType::L8 => "L",
        ColorType::La8 => "LA",
        ColorType::Rgb8 => "RGB",
        ColorType::Rgba8 => "RGBA",
        ColorType::L16 => "L16",
        ColorType::La16 => "LA16",
        ColorType::Rgb16 => "RGB16",
        ColorType::Rgba16 => "RGBA16",
        ColorType::Rgb32F => "RGB32F",
        ColorType::Rgba32F => "RGBA32F",
        _ => "other",
    }
}

/// A hint at what non-image bytes are, for the message.
fn describe_bytes(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(64)];
    let text = head
        .iter()
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if text {
        let start: String = String::from_utf8_lossy(head)
            .chars()
            .take(24)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        format!("not an image: the file is text ({:?}...)", start.trim())
    } else {
        let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(
            "not an image: no JPEG, PNG, WebP, BMP, GIF or TIFF signature (starts with {})",
            hex.join(" ")
        )
    }
}

/// A 256-bit perceptual hash.
pub(crate) type PHash = [u64; 4];

/// Bits in which two hashes differ.
pub(crate) fn distance(a: &PHash, b: &PHash) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// The perceptual hash of near duplicates: pHash (grayscale, shrunk to 32×32,
/// 2-D DCT, the 16×16 lowest frequencies compared with their median).
///
/// Chosen on the shared data sets against 8×8 gradient (dHash), mean-DCT and
/// block hashes: halved and re-encoded (JPEG q70) copies of photographs land at
/// ≤ 16 of 256 bits (99 % at ≤ 8), while no two different photographs of
/// hymenoptera, Imagenette or COCO128 come closer than 54; dHash's 64 bits put
/// different Imagenette photos at 2–4 bits apart.
pub(crate) fn perceptual_hash(hasher: &image_hasher::Hasher, image: &RgbImage) -> PHash {
    let h = hasher.hash_image(image);
    let mut out = [0u64; 4];
    for (word, chunk) in out.iter_mut().zip(h.as_bytes().chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *word = u64::from_le_bytes(b);
    }
    out
}

/// The hasher [`perceptual_hash`] expects.
pub(crate) fn hasher() -> image_hasher::Hasher {
    image_hasher::HasherConfig::new()
        .hash_alg(image_hasher::HashAlg::Median)
        .preproc_dct()
        .hash_size(16, 16)
        .resize_filter(image_hasher::FilterType::Triangle)
        .to_hasher()
}

/// Inspects one item.
pub(crate) fn inspect(
    source: &Source,
    opts: &CheckOptions,
    hasher: Option<&image_hasher::Hasher>,
) -> Inspection {
    match source {
        Source::File(path) => inspect_file(path, opts, hasher),
        Source::Pixels { image, .. } => Inspection {
            problem: None,
            size: Some(image.dimensions()),
            color: Some("RGB"),
            orientation: None,
            content: opts
                .exact_duplicates
                .then(|| Sha256::digest(image.as_raw()).into()),
            phash: hasher.map(|h| perceptual_hash(h, image)),
        },
    }
}

fn inspect_file(
    path: &Path,
    opts: &CheckOptions,
    hasher: Option<&image_hasher::Hasher>,
) -> Inspection {
    let mut out = Inspection::default();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            out.problem = Some(FileProblem::Unreadable(e.to_string()));
            return out;
        }
    };
    if bytes.is_empty() {
        out.problem = Some(FileProblem::ZeroByte);
        return out;
    }
    if opts.exact_duplicates {
        out.content = Some(Sha256::digest(&bytes).into());
    }
    if image::guess_format(&bytes).is_err() {
        out.problem = Some(FileProblem::NotImage(describe_bytes(&bytes)));
        return out;
    }
    // The header alone: size, colour mode and orientation, no pixels.
    let header = ImageReader::new(Cursor::new(bytes.as_slice()))
        .with_guessed_format()
        .map_err(|e| e.to_string())
        .and_then(|r| r.into_decoder().map_err(|e| e.to_string()));
    let mut decoder = match header {
        Ok(d) => d,
        Err(e) => {
            out.problem = Some(FileProblem::DecodeFailed(format!(
                "cannot read the image header: {e}"
            )));
            return out;
        }
    };
    let (w, h) = decoder.dimensions();
    out.size = Some((w, h));
    out.color = Some(color_name(decoder.color_type()));
    out.orientation = decoder
        .orientation()
        .ok()
        .map(|o| o.to_exif())
        .filter(|&o| o != 1);
    let pixels = u64::from(w) * u64::from(h);
    if pixels > opts.decode_options.max_pixels {
        out.problem = Some(FileProblem::DecodeFailed(format!(
            "{w}x{h} = {pixels} pixels, over the limit of {}",
            opts.decode_options.max_pixels
        )));
        return out;
    }
    if pixels == 0 {
        out.problem = Some(FileProblem::DecodeFailed(format!(
            "image has no pixels ({w}x{h})"
        )));
        return out;
    }
    drop(decoder);
    if opts.decode {
        match vct_augment::decode_bytes(&bytes, path, &opts.decode_options) {
            Ok(img) => out.phash = hasher.map(|h| perceptual_hash(h, &img)),
            Err(e) => {
                let reason = match e {
                    vct_augment::AugmentError::Decode { reason, .. } => reason,
                    other => other.to_string(),
                };
                out.problem = Some(FileProblem::DecodeFailed(reason));
            }
        }
    }
    out
}
