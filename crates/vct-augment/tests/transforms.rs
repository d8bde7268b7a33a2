//! Resize, crops, flips, normalisation and tensors against hand-computed pixels.

use candle_core::Device;
use image::{Rgb, RgbImage};
use vct_augment::{
    eval_resize_size, item_rng, to_tensor, write_chw, CenterCrop, Filter, FlipDirection, Normalize,
    Pipeline, RandomCrop, RandomFlip, RandomResizedCrop, Resize, Transform,
};

/// Pixel (x, y) = [x, y, 10x + y] (unique per pixel on small images).
fn coords(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, (10 * x + y) as u8]))
}

fn rng() -> vct_augment::ItemRng {
    item_rng(1, 2, 3)
}

#[test]
fn flips_mirror_exactly_with_probability_one_and_never_with_zero() {
    let img = coords(3, 2);
    let h = RandomFlip::new(1.0, false)
        .apply(img.clone(), &mut rng())
        .unwrap();
    for (x, y, p) in h.enumerate_pixels() {
        assert_eq!(p.0, [2 - x as u8, y as u8, (10 * (2 - x) + y) as u8]);
    }
    let v = RandomFlip::with_direction(1.0, FlipDirection::Vertical)
        .apply(img.clone(), &mut rng())
        .unwrap();
    for (x, y, p) in v.enumerate_pixels() {
        assert_eq!(p.0, [x as u8, 1 - y as u8, (10 * x + 1 - y) as u8]);
    }
    for seed in 0..50 {
        let mut r = item_rng(seed, 0, 0);
        assert_eq!(
            RandomFlip::new(0.0, false)
                .apply(img.clone(), &mut r)
                .unwrap(),
            img
        );
        assert_eq!(
            RandomFlip::new(1.0, false)
                .apply(img.clone(), &mut r)
                .unwrap(),
            h
        );
    }
    // Probability ½: both outcomes occur, roughly half each.
    let flipped = (0..400)
        .filter(|&i| {
            RandomFlip::new(0.5, false)
                .apply(img.clone(), &mut item_rng(7, 0, i))
                .unwrap()
                == h
        })
        .count();
    assert!((150..250).contains(&flipped), "{flipped}");
    assert!(RandomFlip::new(1.5, false).apply(img, &mut rng()).is_err());
}

#[test]
fn center_crop_matches_torchvision_offsets() {
    let img = coords(5, 5);
    let c = CenterCrop::new(3).apply(img.clone(), &mut rng()).unwrap();
    assert_eq!(c.get_pixel(0, 0).0, [1, 1, 11]);
    assert_eq!(c.get_pixel(2, 2).0, [3, 3, 33]);
    // (4 - 1) / 2 = 1.5 rounds half to even: column 2, as torchvision's round().
    let c = CenterCrop {
        width: 1,
        height: 1,
    }
    .apply(coords(4, 6), &mut rng())
    .unwrap();
    assert_eq!(c.get_pixel(0, 0).0, [2, 2, 22]);
    // (6 - 1) / 2 = 2.5 rounds to 2 as well.
    let c = CenterCrop {
        width: 1,
        height: 1,
    }
    .apply(coords(6, 4), &mut rng())
    .unwrap();
    assert_eq!(c.get_pixel(0, 0).0, [2, 2, 22]);
    // Smaller than the crop: zero padding around, image centred.
    let c = CenterCrop::new(3)
        .apply(RgbImage::from_pixel(1, 1, Rgb([9, 9, 9])), &mut rng())
        .unwrap();
    assert_eq!(c.get_pixel(1, 1).0, [9, 9, 9]);
    assert_eq!(c.get_pixel(0, 0).0, [0, 0, 0]);
    assert_eq!(c.get_pixel(2, 2).0, [0, 0, 0]);
}

#[test]
fn random_crop_is_a_window_of_the_image_and_reproducible() {
    let img = coords(9, 7);
    let mut seen = std::collections::HashSet::new();
    for i in 0..60 {
        let c = RandomCrop::new(4)
            .apply(img.clone(), &mut item_rng(5, 0, i))
            .unwrap();
        let [x0, y0, _] = c.get_pixel(0, 0).0;
        for (x, y, p) in c.enumerate_pixels() {
            assert_eq!(p.0, img.get_pixel(u32::from(x0) + x, u32::from(y0) + y).0);
        }
        assert_eq!(
            c,
            RandomCrop::new(4)
                .apply(img.clone(), &mut item_rng(5, 0, i))
                .unwrap()
        );
        seen.insert((x0, y0));
    }
    // 6 × 4 possible offsets; 60 draws reach most of them, including the far corner.
    assert!(seen.len() >= 15, "{}", seen.len());
    assert!(seen.iter().all(|&(x, y)| x <= 5 && y <= 3));
}

/// Pillow's two-pass antialiased resample with the triangle (bilinear) or
/// Catmull-Rom (bicubic) filter, intermediate rounded to u8, computed in f64.
fn reference_resize(img: &RgbImage, ow: u32, oh: u32, bicubic: bool) -> RgbImage {
    fn filt(x: f64, bicubic: bool) -> f64 {
        let x = x.abs();
        if bicubic {
            let a = -0.5;
            if x < 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * a
            } else {
                0.0
            }
        } else if x < 1.0 {
            1.0 - x
        } else {
            0.0
        }
    }
    fn weights(insize: u32, outsize: u32, bicubic: bool) -> Vec<(usize, Vec<f64>)> {
        let scale = f64::from(insize) / f64::from(outsize);
        let fs = scale.max(1.0);
        let support = if bicubic { 2.0 } else { 1.0 } * fs;
        (0..outsize)
            .map(|o| {
                let center = (f64::from(o) + 0.5) * scale;
                let xmin = ((center - support + 0.5).floor().max(0.0)) as usize;
                let xmax = ((center + support + 0.5).floor().min(f64::from(insize))) as usize;
                let mut w: Vec<f64> = (xmin..xmax)
                    .map(|x| filt((x as f64 - center + 0.5) / fs, bicubic))
                    .collect();
                let s: f64 = w.iter().sum();
                w.iter_mut().for_each(|v| *v /= s);
                (xmin, w)
            })
            .collect()
    }
    let (iw, ih) = img.dimensions();
    let wx = weights(iw, ow, bicubic);
    let mut tmp = RgbImage::new(ow, ih);
    for y in 0..ih {
        for (x, (x0, w)) in wx.iter().enumerate() {
            let v: [u8; 3] = std::array::from_fn(|c| {
                let s: f64 = w
                    .iter()
                    .enumerate()
                    .map(|(k, wk)| wk * f64::from(img.get_pixel((x0 + k) as u32, y).0[c]))
                    .sum();
                s.round().clamp(0.0, 255.0) as u8
            });
            tmp.put_pixel(x as u32, y, Rgb(v));
        }
    }
    let wy = weights(ih, oh, bicubic);
    let mut out = RgbImage::new(ow, oh);
    for (y, (y0, w)) in wy.iter().enumerate() {
        for x in 0..ow {
            let v: [u8; 3] = std::array::from_fn(|c| {
                let s: f64 = w
                    .iter()
                    .enumerate()
                    .map(|(k, wk)| wk * f64::from(tmp.get_pixel(x, (y0 + k) as u32).0[c]))
                    .sum();
                s.round().clamp(0.0, 255.0) as u8
            });
            out.put_pixel(x, y as u32, Rgb(v));
        }
    }
    out
}

/// A test card: gradients, a checkerboard and a sharp edge.
fn test_card(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let checker = if (x / 3 + y / 3) % 2 == 0 { 230 } else { 25 };
        Rgb([
            (x * 255 / w) as u8,
            checker,
            if x > w / 2 { 200 } else { (y * 255 / h) as u8 },
        ])
    })
}

#[test]
fn resize_matches_the_reference_filter() {
    let img = test_card(97, 61);
    for (ow, oh) in [(40, 25), (13, 30), (150, 90)] {
        for bicubic in [false, true] {
            let filter = if bicubic {
                Filter::Bicubic
            } else {
                Filter::Bilinear
            };
            let got = Resize {
                target: vct_augment::ResizeTarget::Exact(ow, oh),
                filter,
            }
            .apply(img.clone(), &mut rng())
            .unwrap();
            let want = reference_resize(&img, ow, oh, bicubic);
            let worst = got
                .as_raw()
                .iter()
                .zip(want.as_raw())
                .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
                .max()
                .unwrap();
            // The reference rounds exactly once per pass; the 8-bit fixed point
            // of fast_image_resize can land a level off in each of the two
            // passes, so rarely 2 (one value in 40,500 at 150x90 bicubic).
            let off = got
                .as_raw()
                .iter()
                .zip(want.as_raw())
                .filter(|(a, b)| a != b)
                .count();
            assert!(
                worst <= 2 && off * 50 < got.as_raw().len(),
                "{ow}x{oh} bicubic={bicubic}: max difference {worst}, {off} values differ"
            );
        }
    }
}

#[test]
fn resize_sizes_follow_torchvision() {
    let r = Resize::shorter_side(256);
    assert_eq!(r.output_size(500, 375), (341, 256));
    assert_eq!(r.output_size(375, 500), (256, 341));
    assert_eq!(r.output_size(300, 300), (256, 256));
    assert_eq!(Resize::square(224).output_size(500, 375), (224, 224));
    let exact = Resize::exact(30, 7)
        .apply(test_card(50, 40), &mut rng())
        .unwrap();
    assert_eq!(exact.dimensions(), (30, 7));
    let out = r.apply(test_card(50, 40), &mut rng()).unwrap();
    assert_eq!(out.dimensions(), (320, 256));
    // A flat image stays flat whatever the filter.
    let flat = RgbImage::from_pixel(37, 23, Rgb([17, 130, 250]));
    let out = Resize::square(11)
        .with_filter(Filter::Bicubic)
        .apply(flat, &mut rng())
        .unwrap();
    assert!(out.pixels().all(|p| p.0 == [17, 130, 250]));
}

#[test]
fn eval_crop_ratio_resizes_then_centre_crops() {
    // mmpretrain's RSB-A1 test pipeline: ResizeEdge(236) then CenterCrop(224).
    assert_eq!(eval_resize_size(224, 0.95).unwrap(), 236);
    assert_eq!(eval_resize_size(160, 0.95).unwrap(), 168);
    assert_eq!(eval_resize_size(256, 1.0).unwrap(), 256);
    assert_eq!(eval_resize_size(224, 0.875).unwrap(), 256);
    assert!(eval_resize_size(224, 0.0).is_err());
    assert!(eval_resize_size(224, 1.5).is_err());
    let p = Pipeline::eval(224, 0.95, Filter::Bilinear).unwrap();
    let out = p.apply(test_card(500, 375), &mut rng()).unwrap();
    assert_eq!(out.dimensions(), (224, 224));
    // Same as doing the two steps by hand.
    let by_hand = CenterCrop::new(224)
        .apply(
            Resize::shorter_side(236)
                .apply(test_card(500, 375), &mut rng())
                .unwrap(),
            &mut rng(),
        )
        .unwrap();
    assert_eq!(out, by_hand);
}

#[test]
fn random_resized_crop_windows_respect_scale_and_ratio() {
    let t = RandomResizedCrop::new(32, (0.25, 0.5), (0.75, 4.0 / 3.0));
    for i in 0..200 {
        let (l, top, w, h) = t.window(400, 300, &mut item_rng(0, 0, i));
        assert!(l + w <= 400 && top + h <= 300);
        let area = f64::from(w * h) / 120_000.0;
        let ratio = f64::from(w) / f64::from(h);
        assert!((0.24..=0.51).contains(&area), "area {area}");
        assert!((0.74..=1.35).contains(&ratio), "ratio {ratio}");
    }
    // The whole image when the ranges allow only that.
    let all = RandomResizedCrop::new(8, (1.0, 1.0), (1.0, 1.0));
    assert_eq!(all.window(50, 50, &mut rng()), (0, 0, 50, 50));
    // Impossible ranges fall back to a centred crop clamped to the ratio.
    let wide = RandomResizedCrop::new(8, (1.0, 1.0), (1.0, 1.0));
    assert_eq!(wide.window(100, 50, &mut rng()), (25, 0, 50, 50));
    let out = t.apply(test_card(400, 300), &mut rng()).unwrap();
    assert_eq!(out.dimensions(), (32, 32));
    assert!(RandomResizedCrop::new(8, (0.5, 0.1), (1.0, 1.0))
        .apply(test_card(20, 20), &mut rng())
        .is_err());
}

#[test]
fn normalisations_match_hand_computed_values() {
    let img = RgbImage::from_pixel(1, 1, Rgb([255, 0, 128]));
    let mut out = [0f32; 3];
    write_chw(&img, Normalize::ImageNet, &mut out).unwrap();
    let want = [
        (1.0 - 0.485) / 0.229,
        (0.0 - 0.456) / 0.224,
        (128.0 / 255.0 - 0.406) / 0.225,
    ];
    for (a, b) in out.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{out:?} vs {want:?}");
    }
    // BN-Inception (pretrainedmodels): B, G, R order, 0..255, mean [104, 117, 128] in BGR.
    write_chw(
        &img,
        Normalize::Bgr255 {
            mean: vct_augment::BGR_MEAN,
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [128.0 - 104.0, 0.0 - 117.0, 255.0 - 128.0]);
    write_chw(&img, Normalize::Symmetric, &mut out).unwrap();
    assert_eq!(out[0], 1.0);
    assert_eq!(out[1], -1.0);
    write_chw(&img, Normalize::Unit, &mut out).unwrap();
    assert_eq!(out, [1.0, 0.0, 128.0 / 255.0]);
    assert!(write_chw(&img, Normalize::Unit, &mut [0f32; 4]).is_err());
}

#[test]
fn to_tensor_stacks_nchw() {
    let a = coords(3, 2);
    let b = RgbImage::from_pixel(3, 2, Rgb([255, 255, 255]));
    let t = to_tensor(&[a, b.clone()], Normalize::Unit, &Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[2, 3, 2, 3]);
    let v = t.to_vec3::<f32>().err(); // rank 4: to_vec3 refuses
    assert!(v.is_some());
    let flat: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    // Image 0, channel 2 (10x + y), pixel (x=2, y=1): 21 / 255.
    assert_eq!(flat[2 * 6 + 3 + 2], 21.0 / 255.0);
    // Image 0, channel 0 at (x=1, y=0): 1 / 255.
    assert_eq!(flat[1], 1.0 / 255.0);
    assert!(flat[18..].iter().all(|&v| v == 1.0));
    let err = to_tensor(&[coords(3, 2), coords(2, 3)], Normalize::Unit, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("batch image 1"), "{err}");
}

#[test]
fn same_key_same_augmentation_different_key_different() {
    let p = Pipeline::default()
        .push(RandomResizedCrop::new(24, (0.08, 1.0), (0.75, 4.0 / 3.0)))
        .push(RandomFlip::new(0.5, false));
    let img = test_card(80, 60);
    let a = p.apply(img.clone(), &mut item_rng(3, 1, 10)).unwrap();
    assert_eq!(a, p.apply(img.clone(), &mut item_rng(3, 1, 10)).unwrap());
    let differ = [(4, 1, 10), (3, 2, 10), (3, 1, 11)]
        .iter()
        .filter(|&&(s, e, i)| p.apply(img.clone(), &mut item_rng(s, e, i)).unwrap() != a)
        .count();
    assert_eq!(differ, 3);
}

#[test]
fn extreme_aspect_ratio_resize_is_refused_not_allocated() {
    let strip = RgbImage::new(1, 40_000);
    let mut rng = item_rng(0, 0, 0);
    let resize = Resize::shorter_side(224);
    assert_eq!(resize.output_size(1, 40_000), (224, 8_960_000));
    let err = resize.apply(strip, &mut rng).unwrap_err().to_string();
    assert!(err.contains("89,478,485"), "{err}");
    // A size that overflows u32 saturates instead of wrapping.
    assert_eq!(resize.output_size(1, u32::MAX).1, u32::MAX);
}

/// The cases of `fixtures/pillow_resize/make.py`: filter, crop window, output size.
#[allow(clippy::type_complexity)]
const PILLOW_CASES: [(&str, Option<(u32, u32, u32, u32)>, (u32, u32)); 8] = [
    ("bicubic", None, (17, 12)),
    ("bicubic", None, (83, 61)),
    ("bicubic", None, (29, 41)),
    ("bicubic", Some((5, 3, 23, 19)), (16, 16)),
    ("bicubic", Some((0, 0, 41, 29)), (32, 32)),
    ("bilinear", None, (17, 12)),
    ("bilinear", None, (83, 61)),
    ("bilinear", Some((5, 3, 23, 19)), (16, 16)),
];

fn fixture(name: &str) -> RgbImage {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pillow_resize")
        .join(name);
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

#[test]
fn resize_and_resized_crop_equal_pillow() {
    // Pillow's BICUBIC is the a = -0.5 cubic (fast_image_resize's CatmullRom)
    // and its BILINEAR the triangle filter; both widen the kernel when shrinking.
    let input = fixture("input.png");
    assert_eq!(input.dimensions(), (41, 29));
    for (filter_name, window, (w, h)) in PILLOW_CASES {
        let filter = match filter_name {
            "bicubic" => Filter::Bicubic,
            _ => Filter::Bilinear,
        };
        let (name, got) = match window {
            None => (
                format!("{filter_name}_{w}x{h}.png"),
                Resize::exact(w, h)
                    .with_filter(filter)
                    .apply(input.clone(), &mut rng())
                    .unwrap(),
            ),
            Some((l, t, cw, ch)) => (
                format!("{filter_name}_box{l},{t},{cw},{ch}_{w}x{h}.png"),
                vct_augment::resized_crop(&input, (l, t, cw, ch), w, h, filter).unwrap(),
            ),
        };
        let want = fixture(&name);
        assert_eq!(got.dimensions(), want.dimensions(), "{name}");
        let diffs: Vec<i32> = got
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .collect();
        let worst = diffs.iter().copied().max().unwrap();
        let off = diffs.iter().filter(|&&d| d > 0).count();
        eprintln!(
            "{name}: max difference {worst}, {off} of {} values differ",
            diffs.len()
        );
        // Pillow and fast_image_resize round their fixed-point sums differently:
        // a level now and then, never more.
        assert!(worst <= 1, "{name}: max difference {worst} from Pillow");
        assert!(off * 100 < diffs.len(), "{name}: {off} values differ");
    }
    // The two filters give different pictures, so the test tells them apart.
    let cubic = Resize::exact(17, 12)
        .with_filter(Filter::Bicubic)
        .apply(input.clone(), &mut rng())
        .unwrap();
    let linear = Resize::exact(17, 12).apply(input, &mut rng()).unwrap();
    assert_ne!(cubic, linear);
}
