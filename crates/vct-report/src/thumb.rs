//! Thumbnails as `data:image/jpeg;base64,…` URIs, so the page needs no other file.

use std::io::Cursor;
use std::path::Path;

use base64::Engine as _;
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder, ImageReader};

/// The image at `path`, upright (EXIF orientation applied), scaled down so its longer
/// side is at most `size` pixels, as a JPEG data URI; the error says why it could not be
/// read.
pub fn thumbnail_data_uri(path: &Path, size: u32, quality: u8) -> Result<String, String> {
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| e.to_string())?;
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    // A camera's rotation flag, as training's decoder honours it.
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    let size = size.max(1);
    if img.width() > size || img.height() > size {
        img = img.thumbnail(size, size);
    }
    let rgb = img.to_rgb8();
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut Cursor::new(&mut jpeg), quality.clamp(1, 100))
        .encode_image(&rgb)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&jpeg)
    ))
}
