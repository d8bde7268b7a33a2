//! Decoding every supported format into 8-bit RGB, EXIF orientation, the pixel limit,
//! and broken inputs.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use vct_augment::{decode_bytes, decode_file, AugmentError, DecodeOptions};

/// A 16×8 image: left half red, right half blue (big flat blocks survive JPEG).
fn halves() -> RgbImage {
    RgbImage::from_fn(16, 8, |x, _| {
        if x < 8 {
            Rgb([220, 20, 20])
        } else {
            Rgb([20, 20, 220])
        }
    })
}

fn encode(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, fmt).expect("encode");
    buf.into_inner()
}

fn near(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
    a.iter()
        .zip(b)
        .all(|(&x, y)| (i32::from(x) - i32::from(y)).abs() <= tol)
}

fn decode(bytes: &[u8]) -> Result<RgbImage, AugmentError> {
    decode_bytes(bytes, Path::new("test-image"), &DecodeOptions::default())
}

#[test]
fn lossless_formats_round_trip_exactly() {
    let img = DynamicImage::ImageRgb8(halves());
    for fmt in [
        ImageFormat::Png,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::WebP,
    ] {
        let out = decode(&encode(&img, fmt)).unwrap_or_else(|e| panic!("{fmt:?}: {e}"));
        assert_eq!(out, halves(), "{fmt:?}");
    }
}

#[test]
fn baseline_jpeg_decodes_close_to_the_source() {
    let out = decode(&encode(
        &DynamicImage::ImageRgb8(halves()),
        ImageFormat::Jpeg,
    ))
    .unwrap();
    assert_eq!(out.dimensions(), (16, 8));
    assert!(
        near(out.get_pixel(2, 4).0, [220, 20, 20], 12),
        "{:?}",
        out.get_pixel(2, 4)
    );
    assert!(
        near(out.get_pixel(13, 4).0, [20, 20, 220], 12),
        "{:?}",
        out.get_pixel(13, 4)
    );
}

#[test]
fn progressive_jpeg_decodes() {
    // A real progressive JPEG (hymenoptera "ant photos.jpg").
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/progressive.jpg");
    let bytes = std::fs::read(&path).unwrap();
    // SOF2 (0xFFC2) marks a progressive frame.
    assert!(
        bytes.windows(2).any(|w| w == [0xFF, 0xC2]),
        "fixture is not progressive"
    );
    let img = decode_file(&path, &DecodeOptions::default()).unwrap();
    assert!(img.width() > 100 && img.height() > 100);
    // A photo, not a flat or black image.
    let (min, max) = img
        .as_raw()
        .iter()
        .fold((255u8, 0u8), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(max - min > 100, "range {min}..{max}");
}

#[test]
fn gif_gives_its_first_frame() {
    use image::codecs::gif::GifEncoder;
    use image::{Delay, Frame, RgbaImage};
    let f1 = RgbaImage::from_pixel(8, 8, image::Rgba([255, 0, 0, 255]));
    let f2 = RgbaImage::from_pixel(8, 8, image::Rgba([0, 0, 255, 255]));
    let mut buf = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut buf);
        enc.encode_frames(
            [f1, f2]
                .into_iter()
                .map(|f| Frame::from_parts(f, 0, 0, Delay::from_numer_denom_ms(100, 1))),
        )
        .unwrap();
    }
    let img = decode(&buf).unwrap();
    assert_eq!(img.dimensions(), (8, 8));
    assert!(
        img.pixels().all(|p| near(p.0, [255, 0, 0], 2)),
        "{:?}",
        img.get_pixel(0, 0)
    );
}

#[test]
fn grayscale_palette_sixteen_bit_and_alpha_become_rgb8() {
    let gray = DynamicImage::ImageLuma8(image::GrayImage::from_fn(4, 4, |x, y| {
        image::Luma([(x * 60 + y) as u8])
    }));
    let out = decode(&encode(&gray, ImageFormat::Png)).unwrap();
    assert_eq!(out.get_pixel(3, 1).0, [181, 181, 181]);

    let gray_jpeg = decode(&encode(
        &DynamicImage::ImageLuma8(image::GrayImage::from_pixel(16, 16, image::Luma([90]))),
        ImageFormat::Jpeg,
    ))
    .unwrap();
    assert!(gray_jpeg.pixels().all(|p| near(p.0, [90, 90, 90], 2)));

    let rgb16 = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
        3,
        3,
        Rgb([65535u16, 0, 32896]),
    ));
    assert_eq!(
        decode(&encode(&rgb16, ImageFormat::Png))
            .unwrap()
            .get_pixel(1, 1)
            .0,
        [255, 0, 128]
    );

    let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
        3,
        3,
        image::Rgba([10, 200, 30, 0]),
    ));
    assert_eq!(
        decode(&encode(&rgba, ImageFormat::Png))
            .unwrap()
            .get_pixel(0, 0)
            .0,
        [10, 200, 30]
    );

    // An indexed (palette) PNG written by hand-picked encoder settings.
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, 2, 1);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![0, 0, 0, 12, 34, 56]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[1, 0]).unwrap();
    }
    let pal = decode(&buf).unwrap();
    assert_eq!(pal.get_pixel(0, 0).0, [12, 34, 56]);
    assert_eq!(pal.get_pixel(1, 0).0, [0, 0, 0]);
}

#[test]
fn cmyk_tiff_becomes_rgb() {
    use tiff::encoder::{colortype, TiffEncoder};
    let mut buf = Cursor::new(Vec::new());
    // Pure cyan ink (C=255) and no ink.
    let data = [255u8, 0, 0, 0, 0, 0, 0, 0];
    TiffEncoder::new(&mut buf)
        .unwrap()
        .write_image::<colortype::CMYK8>(2, 1, &data)
        .unwrap();
    let img = decode(buf.get_ref()).unwrap();
    assert_eq!(img.get_pixel(0, 0).0, [0, 255, 255]);
    assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
}

/// A minimal EXIF APP1 segment holding only an orientation tag.
fn exif_app1(orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    seg.extend_from_slice(&payload);
    seg
}

#[test]
fn exif_orientation_is_applied() {
    let jpeg = encode(&DynamicImage::ImageRgb8(halves()), ImageFormat::Jpeg);
    let mut rotated = jpeg[..2].to_vec(); // SOI
    rotated.extend_from_slice(&exif_app1(6)); // "rotate 90° clockwise to display"
    rotated.extend_from_slice(&jpeg[2..]);
    let img = decode(&rotated).unwrap();
    assert_eq!(img.dimensions(), (8, 16));
    // The left (red) half ends up on top.
    assert!(
        near(img.get_pixel(4, 2).0, [220, 20, 20], 12),
        "{:?}",
        img.get_pixel(4, 2)
    );
    assert!(
        near(img.get_pixel(4, 13).0, [20, 20, 220], 12),
        "{:?}",
        img.get_pixel(4, 13)
    );

    let opts = DecodeOptions {
        apply_orientation: false,
        ..DecodeOptions::default()
    };
    assert_eq!(
        decode_bytes(&rotated, Path::new("x"), &opts)
            .unwrap()
            .dimensions(),
        (16, 8)
    );
}

#[test]
fn pixel_limit_refuses_big_images_before_decoding() {
    let png = encode(
        &DynamicImage::ImageRgb8(RgbImage::new(100, 80)),
        ImageFormat::Png,
    );
    let opts = DecodeOptions {
        max_pixels: 7_999,
        ..DecodeOptions::default()
    };
    let err = decode_bytes(&png, Path::new("big.png"), &opts).unwrap_err();
    assert!(
        matches!(
            err,
            AugmentError::TooLarge {
                width: 100,
                height: 80,
                pixels: 8000,
                limit: 7999,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("big.png") && msg.contains("7999") && msg.contains("decompression bomb"),
        "{msg}"
    );
    let ok = DecodeOptions {
        max_pixels: 8_000,
        ..DecodeOptions::default()
    };
    assert!(decode_bytes(&png, Path::new("big.png"), &ok).is_ok());
}

#[test]
fn broken_inputs_give_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let err = decode_file(&empty, &DecodeOptions::default()).unwrap_err();
    assert!(matches!(err, AugmentError::EmptyFile { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.jpg"));

    let text = dir.path().join("notes.jpg");
    std::fs::write(&text, b"this is not a picture\n").unwrap();
    let err = decode_file(&text, &DecodeOptions::default()).unwrap_err();
    assert!(matches!(err, AugmentError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("notes.jpg"));

    let jpeg = encode(
        &DynamicImage::ImageRgb8(RgbImage::from_fn(64, 64, |x, y| {
            Rgb([x as u8 * 4, y as u8 * 4, 7])
        })),
        ImageFormat::Jpeg,
    );
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &jpeg[..jpeg.len() / 3]).unwrap();
    let err = decode_file(&cut, &DecodeOptions::default()).unwrap_err();
    assert!(matches!(err, AugmentError::Decode { .. }), "{err:?}");

    let missing = dir.path().join("missing.png");
    let err = decode_file(&missing, &DecodeOptions::default()).unwrap_err();
    assert!(
        matches!(err, AugmentError::Io { .. }) && err.to_string().contains("missing.png"),
        "{err:?}"
    );
}
