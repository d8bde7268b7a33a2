//! Files written by real PyTorch (torch 2.15): the committed fixtures in
//! `tests/fixtures/torch` (see its README.md; made by `bench/torch_weights.py
//! --fixtures`), and, ignored, full networks written by `bench/torch_weights.py
//! DIR` compared by their logits (`VCT_TORCH_FILES=DIR`).

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use vct_arch::weights::read_checkpoint;
use vct_arch::{Arch, ArchError, Classifier, LoadOptions, ModelConfig};

fn fixture(name: &str) -> PathBuf {
    common::fixture_dir().join("torch").join(name)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Checks each tensor read from `path` against the formula value of the
/// state-dict key `formula_key(name)`, and the names and their order.
fn check_formula(path: &Path, want: &[(&str, &[usize])], formula_key: impl Fn(&str) -> String) {
    let got = read_checkpoint(path).unwrap();
    let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    let want_names: Vec<&str> = want.iter().map(|(k, _)| *k).collect();
    assert_eq!(names, want_names, "{}", path.display());
    for ((name, t), (_, shape)) in got.iter().zip(want) {
        assert_eq!(t.dims(), *shape, "{name}");
        if name.ends_with("num_batches_tracked") {
            assert_eq!(t.dtype(), DType::I64, "{name}");
            assert_eq!(t.to_scalar::<i64>().unwrap(), 0, "{name}");
            continue;
        }
        assert_eq!(t.dtype(), DType::F32, "{name}");
        let f = common::formula_tensor(&formula_key(name), shape);
        assert_eq!(values(t), f, "{name}");
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn zip64_records_as_torch_writes_them_open() {
    let path = fixture("resnext50_32x4d_state.pth");
    let bytes = std::fs::read(&path).unwrap();
    // The layout that broke the zip crate (see weights/pth.rs): torch's zip64
    // end record and locator (76 bytes) sit between the central directory and
    // the classic end record, and a central header starts 76 bytes into the
    // directory, where "end record - directory size" points.
    let eocd = bytes.len() - 22;
    assert_eq!(&bytes[eocd..eocd + 4], b"PK\x05\x06");
    let (cd_size, cd_offset) = (
        u32_at(&bytes, eocd + 12) as usize,
        u32_at(&bytes, eocd + 16) as usize,
    );
    let locator = eocd - 20;
    assert_eq!(&bytes[locator..locator + 4], b"PK\x06\x07");
    let eocd64 = u64_at(&bytes, locator + 8) as usize;
    assert_eq!(&bytes[eocd64..eocd64 + 4], b"PK\x06\x06");
    assert_eq!(cd_offset + cd_size, eocd64);
    assert_eq!(eocd - cd_size, cd_offset + 76);
    assert_eq!(&bytes[cd_offset + 76..cd_offset + 80], b"PK\x01\x02");

    let want: &[(&str, &[usize])] = &[
        ("conv1.weight", &[64, 3, 7, 7]),
        ("bn1.weight", &[64]),
        ("bn1.bias", &[64]),
        ("bn1.running_mean", &[64]),
        ("bn1.running_var", &[64]),
        ("bn1.num_batches_tracked", &[]),
        ("layer1.0.conv2.weight", &[128, 4, 3, 3]),
    ];
    check_formula(&path, want, |k| k.to_string());

    // Archives over 4 GiB or 65535 entries have the classic record's fields
    // saturated; then only the zip64 records tell where the directory is.
    let dir = tempfile::tempdir().unwrap();
    let mut big = bytes.clone();
    big[eocd + 8..eocd + 12].copy_from_slice(&[0xff; 4]);
    big[eocd + 12..eocd + 20].copy_from_slice(&[0xff; 8]);
    let p = dir.path().join("resnext50_32x4d_state.pth");
    std::fs::write(&p, &big).unwrap();
    check_formula(&p, want, |k| k.to_string());

    // Truncated: an error naming the file, no panic.
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
    let err = read_checkpoint(&cut).unwrap_err();
    assert!(
        matches!(err, ArchError::WeightsFile { .. }) && err.to_string().contains("cut.pth"),
        "{err}"
    );
}

#[test]
fn legacy_torch_file_with_views_and_half_storage() {
    let path = fixture("resnet18_legacy_views.pth");
    let got = read_checkpoint(&path).unwrap();
    let get = |k: &str| got.iter().find(|(n, _)| n == k).unwrap().1.clone();
    // bn1.weight and bn1.bias share one storage (the bias at offset 64);
    // fc.weight is a transposed view; bn1.running_var is float16.
    for (k, shape) in [
        ("conv1.weight", &[64usize, 3, 7, 7][..]),
        ("bn1.weight", &[64]),
        ("bn1.bias", &[64]),
        ("bn1.running_mean", &[64]),
        ("fc.weight", &[10, 512]),
        ("fc.bias", &[10]),
    ] {
        assert_eq!(values(&get(k)), common::formula_tensor(k, shape), "{k}");
    }
    let var = get("bn1.running_var");
    assert_eq!(var.dtype(), DType::F16);
    let f = Tensor::new(
        common::formula_tensor("bn1.running_var", &[64]),
        &Device::Cpu,
    )
    .unwrap()
    .to_dtype(DType::F16)
    .unwrap();
    assert_eq!(values(&var), values(&f));

    // Into a ResNet-18 with 10 classes: non-strict loads the subset and names the rest.
    let model = Classifier::new(&ModelConfig::new(Arch::ResNet18, 10), &Device::Cpu).unwrap();
    let report = model
        .load_weights(&path, LoadOptions::non_strict())
        .unwrap();
    assert_eq!(report.loaded, 7, "{report}");
    assert!(report.unexpected.is_empty() && report.mismatched.is_empty());
    assert!(report.head_reinitialised.is_empty(), "{report}");
    assert!(
        report.missing.iter().any(|k| k == "layer1.0.conv1.weight"),
        "{report}"
    );
    let text = report.to_string();
    assert!(
        text.contains("resnet18_legacy_views.pth") && text.contains("missing in file"),
        "{text}"
    );
    let sd: std::collections::HashMap<String, Tensor> = model.state_dict().into_iter().collect();
    assert_eq!(
        values(&sd["fc.weight"]),
        common::formula_tensor("fc.weight", &[10, 512])
    );
    assert_eq!(values(&sd["bn1.running_var"]), values(&f));
    // Strict (the default) refuses the subset, naming what is missing.
    let err = model
        .load_weights(&path, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer4.1.bn2.weight"), "{err}");
}

#[test]
fn python2_pickled_bninception_file_opens() {
    let path = fixture("bn_inception_py2_subset.pth");
    let bytes = std::fs::read(&path).unwrap();
    // Python 2's opcodes: SHORT_BINSTRING keys, OrderedDict([[key, value], ...]).
    assert!(bytes.windows(21).any(|w| w == b"U\x13conv1_7x7_s2.weight"));
    assert!(!bytes.windows(5).any(|w| w == b"X\x13\x00\x00\x00"));
    assert!(bytes
        .windows(28)
        .any(|w| w == b"ccollections\nOrderedDict\nq\x00]"));
    let mut want: Vec<(String, Vec<usize>)> = Vec::new();
    for (layer, w) in [
        ("conv1_7x7_s2", vec![64, 3, 7, 7]),
        ("conv2_3x3_reduce", vec![64, 64, 1, 1]),
        ("conv2_3x3", vec![192, 64, 3, 3]),
    ] {
        let c = w[0];
        want.push((format!("{layer}.weight"), w));
        want.push((format!("{layer}.bias"), vec![c]));
        for p in ["weight", "bias", "running_mean", "running_var"] {
            want.push((format!("{layer}_bn.{p}"), vec![c]));
        }
    }
    let w: Vec<(&str, &[usize])> = want
        .iter()
        .map(|(k, s)| (k.as_str(), s.as_slice()))
        .collect();
    check_formula(&path, &w, |k| k.to_string());

    let model = Classifier::new(&ModelConfig::new(Arch::BnInception, 5), &Device::Cpu).unwrap();
    let report = model
        .load_weights(&path, LoadOptions::non_strict())
        .unwrap();
    assert_eq!(report.loaded, 18, "{report}");
    assert!(report.unexpected.is_empty() && report.mismatched.is_empty());
    assert!(report
        .missing
        .iter()
        .any(|k| k == "inception_3a_1x1.weight"));
}

#[test]
fn mmpretrain_nested_checkpoint_loads_into_a_classifier() {
    let path = fixture("mmpretrain_resnet50_2cls.pth");
    // Only the state dict: not the optimizer's momentum buffers, nor the
    // numpy values in meta / message_hub.
    let want: &[(&str, &[usize])] = &[
        ("backbone.conv1.weight", &[64, 3, 7, 7]),
        ("backbone.bn1.weight", &[64]),
        ("backbone.bn1.bias", &[64]),
        ("backbone.bn1.running_mean", &[64]),
        ("backbone.bn1.running_var", &[64]),
        ("backbone.bn1.num_batches_tracked", &[]),
        ("backbone.layer1.0.conv1.weight", &[64, 64, 1, 1]),
        ("head.fc.weight", &[2, 2048]),
        ("head.fc.bias", &[2]),
    ];
    let torchvision = |k: &str| {
        k.strip_prefix("backbone.")
            .map(str::to_string)
            .unwrap_or_else(|| k.replace("head.fc.", "fc."))
    };
    check_formula(&path, want, torchvision);

    let model = Classifier::new(&ModelConfig::new(Arch::ResNet50, 2), &Device::Cpu).unwrap();
    let report = model
        .load_weights(&path, LoadOptions::non_strict())
        .unwrap();
    assert_eq!(report.loaded, 8, "{report}");
    assert!(
        report.unexpected.is_empty()
            && report.mismatched.is_empty()
            && report.head_reinitialised.is_empty(),
        "{report}"
    );
    let sd: std::collections::HashMap<String, Tensor> = model.state_dict().into_iter().collect();
    assert_eq!(
        values(&sd["fc.weight"]),
        common::formula_tensor("fc.weight", &[2, 2048])
    );
    assert_eq!(
        values(&sd["layer1.0.conv1.weight"]),
        common::formula_tensor("layer1.0.conv1.weight", &[64, 64, 1, 1])
    );

    // Data in front of the archive: the recorded offsets are off by its length,
    // so the archive start is detected (the fallback after offset 0).
    let dir = tempfile::tempdir().unwrap();
    let mut prefixed = b"PK\x03\x04".to_vec();
    prefixed.extend([0u8; 96]);
    prefixed.extend(std::fs::read(&path).unwrap());
    let p = dir.path().join("prefixed.pth");
    std::fs::write(&p, &prefixed).unwrap();
    check_formula(&p, want, torchvision);
    // Without a zip or legacy signature at the start it is not taken for a torch file.
    prefixed[..4].copy_from_slice(&[0; 4]);
    std::fs::write(&p, &prefixed).unwrap();
    let err = read_checkpoint(&p).unwrap_err().to_string();
    assert!(
        err.contains("prefixed.pth") && err.contains("not a PyTorch checkpoint"),
        "{err}"
    );
}

#[test]
fn protocol4_parameters_views_and_dtypes() {
    let got = read_checkpoint(&fixture("dtypes_views_p4.pth")).unwrap();
    let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "param",
            "transposed",
            "offset",
            "bf16",
            "f16",
            "i64",
            "i32",
            "bool"
        ]
    );
    let t = |i: usize| &got[i].1;
    let dt: Vec<DType> = got.iter().map(|(_, t)| t.dtype()).collect();
    assert_eq!(
        dt,
        [
            DType::F32,
            DType::F32,
            DType::F32,
            DType::BF16,
            DType::F16,
            DType::I64,
            DType::I32,
            DType::U8
        ]
    );
    assert_eq!(values(t(0)), [0.5, -1.5]);
    // arange(12).view(3, 4).t()
    assert_eq!(t(1).dims(), [4, 3]);
    assert_eq!(
        values(t(1)),
        [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]
    );
    assert_eq!(values(t(2)), [5., 6., 7.]);
    assert_eq!(values(t(3)), [1.5, -2.0, 3.25]);
    assert_eq!(values(t(4)), [0.25, -0.125]);
    assert_eq!(t(5).dims(), [0usize; 0]);
    assert_eq!(t(5).to_scalar::<i64>().unwrap(), 7);
    assert_eq!(t(6).to_vec1::<i32>().unwrap(), [7, -8]);
    assert_eq!(t(7).to_vec1::<u8>().unwrap(), [1, 0, 1]);
}

/// `max|ours − ref| / max|ref|`.
fn rel(ours: &[f32], reference: &[f32]) -> f64 {
    let m = reference.iter().fold(0f64, |a, &x| a.max((x as f64).abs()));
    let d = ours
        .iter()
        .zip(reference)
        .fold(0f64, |a, (&x, &y)| a.max((x as f64 - y as f64).abs()));
    d / m
}

#[test]
#[ignore = "needs the files of `python bench/torch_weights.py DIR` in VCT_TORCH_FILES=DIR"]
fn torch_files_give_torchs_logits() {
    let Some(dir) = std::env::var_os("VCT_TORCH_FILES").map(PathBuf::from) else {
        eprintln!(
            "VCT_TORCH_FILES is not set: skipping (run `python bench/torch_weights.py DIR` first)"
        );
        return;
    };
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json"),
    )
    .unwrap();
    let x = common::formula_input(&common::usizes(&manifest["input_shape"]));
    let files = manifest["files"].as_array().unwrap();
    assert!(!files.is_empty());
    let mut worst = 0f64;
    for f in files {
        let name = f["file"].as_str().unwrap();
        let arch = Arch::from_name(f["arch"].as_str().unwrap()).unwrap();
        let classes = f["num_classes"].as_u64().unwrap() as usize;
        let model = Classifier::new(&ModelConfig::new(arch, classes), &Device::Cpu).unwrap();
        let t0 = std::time::Instant::now();
        let report = model
            .load_weights(&dir.join(name), LoadOptions::exact())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let load = t0.elapsed();
        assert_eq!(report.loaded, model.entries().len(), "{name}: {report}");
        let logits = values(&model.forward(&x, false).unwrap());
        let e = rel(&logits, &common::floats(&f["logits"]));
        eprintln!(
            "{name:30} {:26} {arch}: {} tensors in {load:.2?}, logits rel err {e:.2e}",
            f["kind"].as_str().unwrap_or(""),
            report.loaded
        );
        assert!(e <= 1e-4, "{name}: logits rel err {e:.3e}");
        worst = worst.max(e);
    }
    eprintln!(
        "worst logits rel err {worst:.2e} over {} files",
        files.len()
    );
}

/// Top-`k` indices, largest first.
#[cfg(feature = "preprocess")]
fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(k);
    idx
}

#[cfg(feature = "preprocess")]
#[test]
#[ignore = "needs the files of `python bench/torch_weights.py DIR` in VCT_TORCH_FILES=DIR"]
fn torch_files_top5_match_pytorch_through_a_varbuilder() {
    // What a user of vct-arch alone does: a VarBuilder over torch-written files
    // (torchvision's .pth through candle's reader, timm's safetensors mapped),
    // Classifier::load, the architecture's preprocessing of a JPEG, top-5.
    use vct_arch::candle_nn::VarBuilder;
    let Some(dir) = std::env::var_os("VCT_TORCH_FILES").map(PathBuf::from) else {
        eprintln!(
            "VCT_TORCH_FILES is not set: skipping (run `python bench/torch_weights.py DIR` first)"
        );
        return;
    };
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json"),
    )
    .unwrap();
    let photo = &manifest["photo"];
    assert!(
        photo.is_object(),
        "manifest.json has no photo: rerun bench/torch_weights.py"
    );
    let arch = Arch::ResNet50;
    let photo_path = dir.join(photo["file"].as_str().unwrap());
    let x = arch.preprocess().load(&photo_path, &Device::Cpu).unwrap();
    assert_eq!(x.dims(), [1, 3, 224, 224]);
    // Preprocessing mistakes, to show the comparison below would catch them:
    // random-weight nets rank classes much alike for any input, so their top-5
    // alone says little; their logits do.
    use vct_arch::augment::{EvalPreprocess, Filter, Normalize};
    let prep = |p: EvalPreprocess| p.load(&photo_path, &Device::Cpu).unwrap();
    let base = arch.preprocess();
    let wrong: Vec<(&str, Tensor)> = vec![
        (
            "resize 224 (no 256)",
            prep(EvalPreprocess {
                resize: 224,
                ..base
            }),
        ),
        ("bicubic resize", prep(base.with_filter(Filter::Bicubic))),
        (
            "BGR channel order",
            x.index_select(&Tensor::new(&[2u32, 1, 0], &Device::Cpu).unwrap(), 1)
                .unwrap(),
        ),
        (
            "crop 1 px off centre",
            prep(EvalPreprocess { crop: 226, ..base })
                .narrow(2, 0, 224)
                .unwrap()
                .narrow(3, 0, 224)
                .unwrap(),
        ),
        (
            "0..1 without mean/std",
            prep(EvalPreprocess {
                normalize: Normalize::Unit,
                ..base
            }),
        ),
    ];
    // Our decode + resize + crop + normalise against PIL + torchvision's.
    let bytes = std::fs::read(dir.join(photo["input"].as_str().unwrap())).unwrap();
    let torch_x: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let ours_x = values(&x);
    let level = 1.0 / (255.0 * 0.224); // one 8-bit step, in the widest channel
    let dx: Vec<f32> = ours_x
        .iter()
        .zip(&torch_x)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let max_dx = dx.iter().fold(0f32, |a, &b| a.max(b));
    let mean_dx = dx.iter().sum::<f32>() / dx.len() as f32;
    eprintln!(
        "input vs torchvision ({}): max {:.2} levels, mean {:.3} levels, {:.1}% of values differ",
        photo["source"].as_str().unwrap_or("?"),
        max_dx / level,
        mean_dx / level,
        100.0 * dx.iter().filter(|&&d| d > 1e-6).count() as f64 / dx.len() as f64
    );
    let models = photo["models"].as_object().unwrap();
    assert_eq!(models.len(), 2);
    for (name, want) in models {
        let path = dir.join(name);
        let vb = if name.ends_with(".safetensors") {
            // SAFETY: the test's input files are not modified while mapped.
            unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu) }
        } else {
            VarBuilder::from_pth(&path, DType::F32, &Device::Cpu)
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let t0 = std::time::Instant::now();
        let model = Classifier::load(vb, &ModelConfig::new(arch, 1000))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let load = t0.elapsed();
        let got = values(&model.forward(&x, false).unwrap());
        let torch = common::floats(&want["logits"]);
        let want_top: Vec<usize> = want["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(want_top, top_k(&torch, 5), "{name}: manifest inconsistent");
        let max_abs = got
            .iter()
            .zip(&torch)
            .fold(0f64, |a, (&p, &q)| a.max((p as f64 - q as f64).abs()));
        let e = rel(&got, &torch);
        let gaps: Vec<f64> = common::floats(&want["gaps"])
            .iter()
            .map(|&g| g as f64)
            .collect();
        eprintln!(
            "{name:28} loaded in {load:.2?}: top-5 ours {:?} torch {want_top:?}; logits max abs diff {max_abs:.4} \
             (rel {e:.2e} of max |logit|), smallest top-6 gap {:.3}",
            top_k(&got, 5),
            gaps.iter().cloned().fold(f64::INFINITY, f64::min)
        );
        // The model alone, on torch's own preprocessed input.
        let tx = Tensor::from_vec(torch_x.clone(), (1, 3, 224, 224), &Device::Cpu).unwrap();
        let e_model = rel(&values(&model.forward(&tx, false).unwrap()), &torch);
        eprintln!("{name:28} on torchvision's input tensor: logits rel {e_model:.2e}");
        assert!(
            e_model <= 1e-5,
            "{name}: logits rel err {e_model:.3e} on torch's input"
        );
        assert_eq!(
            top_k(&got, 5),
            want_top,
            "{name}: top-5 differs from PyTorch's"
        );
        // JPEG decoders and resizers differ by a level here and there (above).
        assert!(e <= 2e-3, "{name}: logits rel err {e:.3e}");
        for (what, wx) in &wrong {
            let w = values(&model.forward(wx, false).unwrap());
            let ew = rel(&w, &torch);
            eprintln!(
                "{name:28}   with {what:22}: logits rel {ew:.2e} ({:.0}x ours), top-5 {}",
                ew / e,
                if top_k(&w, 5) == want_top {
                    "still equal"
                } else {
                    "differs"
                }
            );
            assert!(
                ew >= 5.0 * e,
                "{name}: {what} is not told apart ({ew:.2e} vs {e:.2e})"
            );
        }
    }
}
