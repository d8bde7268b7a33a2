//! `EvalPreprocess` against torchvision's own evaluation pipelines
//! (`fixtures/torchvision_eval/make.py`): resize rule, crop offsets and
//! padding, channel order and scale.

use std::path::Path;

use candle_core::Device;
use vct_augment::{EvalPreprocess, Filter, Normalize, RgbImage, BGR_MEAN};

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn input() -> RgbImage {
    image::open(fixture_dir().join("pillow_resize/input.png"))
        .unwrap()
        .to_rgb8()
}

#[test]
fn eval_preprocess_equals_torchvision() {
    let text =
        std::fs::read_to_string(fixture_dir().join("torchvision_eval/expected.json")).unwrap();
    let want: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = want["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let (resize, crop) = (
            case["resize"].as_u64().unwrap() as u32,
            case["crop"].as_u64().unwrap() as u32,
        );
        let (normalize, level) = match case["norm"].as_str().unwrap() {
            "imagenet" => (Normalize::ImageNet, 1.0 / (255.0 * 0.224)),
            _ => (Normalize::Bgr255 { mean: BGR_MEAN }, 1.0),
        };
        let prep = EvalPreprocess::new(resize, crop, normalize);
        let x = prep.tensor(input(), &Device::Cpu).unwrap();
        assert_eq!(x.dims(), [1, 3, crop as usize, crop as usize]);
        let got: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let exp: Vec<f32> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got.len(), exp.len());
        // Pillow's resize and ours agree within one 8-bit level (tests/transforms.rs);
        // a wrong crop offset, channel order or scale is off by far more.
        let worst = got
            .iter()
            .zip(&exp)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // `level`: one 8-bit step in the channel with the smallest std.
        assert!(
            worst <= 1.01 * level as f32,
            "{resize}/{crop}: worst {worst}, one level {level}"
        );
        let mean = got
            .iter()
            .zip(&exp)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / got.len() as f32;
        assert!(
            mean < 0.1 * level as f32,
            "{resize}/{crop}: mean diff {mean}"
        );
    }
}

#[test]
fn eval_preprocess_batches_files_and_refuses_zero_sizes() {
    let prep = EvalPreprocess::IMAGENET.with_filter(Filter::Bicubic);
    let a = RgbImage::from_pixel(300, 260, image::Rgb([10, 20, 30]));
    let b = RgbImage::from_pixel(230, 500, image::Rgb([200, 100, 0]));
    let batch = prep.batch([a.clone(), b], &Device::Cpu).unwrap();
    assert_eq!(batch.dims(), [2, 3, 224, 224]);
    let v: Vec<f32> = batch
        .get(0)
        .unwrap()
        .get(2)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let blue = (30.0 / 255.0 - 0.406) / 0.225;
    assert!(v.iter().all(|x| (x - blue).abs() < 1e-5), "{}", v[0]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photo.png");
    a.save(&path).unwrap();
    let x = prep.load(&path, &Device::Cpu).unwrap();
    let first: Vec<f32> = batch
        .get(0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), first);
    let err = prep
        .load(&dir.path().join("missing.jpg"), &Device::Cpu)
        .unwrap_err();
    assert!(err.to_string().contains("missing.jpg"), "{err}");

    let bad = EvalPreprocess::new(256, 0, Normalize::ImageNet);
    let err = bad.tensor(a, &Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("resize, crop") && err.contains("(256, 0)"),
        "{err}"
    );
}
