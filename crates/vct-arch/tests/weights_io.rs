//! Weights I/O: save/load round trip, named-keys errors on wrong files, head
//! re-initialisation, checkpoint key dialects, pretrained-file resolution.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use vct_arch::weights::{hub_cached_file, read_checkpoint};
use vct_arch::{Arch, ArchError, Classifier, LoadOptions, ModelConfig, WeightsLookup};

fn model(arch: Arch, classes: usize, seed: u64) -> Classifier {
    Classifier::new(
        &ModelConfig {
            seed,
            ..ModelConfig::new(arch, classes)
        },
        &Device::Cpu,
    )
    .unwrap()
}

fn x() -> Tensor {
    common::seeded(&[2, 3, 32, 40], 7)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn state(m: &Classifier) -> HashMap<String, Tensor> {
    m.state_dict().into_iter().collect()
}

#[test]
fn save_then_load_gives_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let a = model(Arch::ResNet18, 3, 1);
    // Move the running statistics away from their initial values first.
    a.forward(&x(), true).unwrap();
    a.save(&path).unwrap();
    let b = model(Arch::ResNet18, 3, 2);
    let input = x();
    assert!(
        max_abs_diff(
            &a.forward(&input, false).unwrap(),
            &b.forward(&input, false).unwrap()
        ) > 0.0
    );
    let report = b.load_weights(&path, LoadOptions::default()).unwrap();
    assert!(
        report.is_clean() && report.head_reinitialised.is_empty(),
        "{report}"
    );
    assert_eq!(report.loaded, a.entries().len());
    assert_eq!(
        max_abs_diff(
            &a.forward(&input, false).unwrap(),
            &b.forward(&input, false).unwrap()
        ),
        0.0
    );
    // Saved names are the state-dict names.
    let saved = read_checkpoint(&path).unwrap();
    let mut names: Vec<String> = saved.into_iter().map(|(k, _)| k).collect();
    names.sort();
    let mut want: Vec<String> = a.entries().into_iter().map(|e| e.name).collect();
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn other_architecture_is_a_named_keys_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r18.safetensors");
    model(Arch::ResNet18, 3, 0).save(&path).unwrap();
    let target = model(Arch::ResNet34, 3, 0);
    let before = state(&target);
    let err = target
        .load_weights(&path, LoadOptions::default())
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ArchError::WeightsMismatch { .. }), "{msg}");
    assert!(
        msg.contains("r18.safetensors") && msg.contains("resnet34"),
        "{msg}"
    );
    assert!(
        msg.contains("missing in file") && msg.contains("layer1.2.conv1.weight"),
        "{msg}"
    );
    // Strict failure leaves the model untouched.
    for (k, v) in state(&target) {
        assert_eq!(max_abs_diff(&v, &before[&k]), 0.0, "{k} changed");
    }
    // ResNet-50 into BN-Inception: every key unexpected / missing by name.
    let p50 = dir.path().join("bn.safetensors");
    model(Arch::BnInception, 3, 0).save(&p50).unwrap();
    let msg = target
        .load_weights(&p50, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("unexpected in file") && msg.contains("inception_3a_1x1.weight"),
        "{msg}"
    );
    // Non-strict loads what fits and reports the rest.
    let report = target
        .load_weights(&path, LoadOptions::non_strict())
        .unwrap();
    assert!(report.loaded > 0 && !report.missing.is_empty());
}

#[test]
fn shape_mismatch_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    let m = model(Arch::ResNet18, 3, 0);
    let mut sd = state(&m);
    sd.insert(
        "layer2.0.conv1.weight".into(),
        Tensor::zeros((128, 64, 1, 1), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&sd, &path).unwrap();
    let msg = m
        .load_weights(&path, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(
            "layer2.0.conv1.weight: file shape [128, 64, 1, 1], model shape [128, 64, 3, 3]"
        ),
        "{msg}"
    );
}

#[test]
fn wrong_dtype_is_named_and_half_precision_is_converted() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(Arch::ResNet18, 3, 0);
    let mut sd = state(&m);
    sd.insert(
        "bn1.running_mean".into(),
        Tensor::zeros(64, DType::U8, &Device::Cpu).unwrap(),
    );
    let path = dir.path().join("u8.safetensors");
    candle_core::safetensors::save(&sd, &path).unwrap();
    let msg = m
        .load_weights(&path, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bn1.running_mean: dtype U8"), "{msg}");
    // An f16 checkpoint loads (as f32).
    let half: HashMap<String, Tensor> = state(&m)
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::F16).unwrap()))
        .collect();
    let path = dir.path().join("f16.safetensors");
    candle_core::safetensors::save(&half, &path).unwrap();
    let r = model(Arch::ResNet18, 3, 5)
        .load_weights(&path, LoadOptions::default())
        .unwrap();
    assert!(r.is_clean());
}

#[test]
fn truncated_or_garbage_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.safetensors");
    let m = model(Arch::ResNet18, 3, 0);
    m.save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = m.load_weights(&cut, LoadOptions::default()).unwrap_err();
    assert!(
        matches!(err, ArchError::WeightsFile { .. }) && err.to_string().contains("cut.safetensors"),
        "{err}"
    );
    for name in ["junk.pth", "junk.bin", "junk.weights"] {
        let p = dir.path().join(name);
        std::fs::write(&p, b"definitely not a checkpoint").unwrap();
        let err = m.load_weights(&p, LoadOptions::default()).unwrap_err();
        assert!(
            matches!(err, ArchError::WeightsFile { .. }) && err.to_string().contains(name),
            "{err}"
        );
    }
    let err = m
        .load_weights(
            &dir.path().join("absent.safetensors"),
            LoadOptions::default(),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("absent.safetensors") && err.to_string().contains("no such file"),
        "{err}"
    );
}

#[test]
fn different_class_count_reinitialises_the_head_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ten.safetensors");
    let src = model(Arch::ResNet18, 10, 0);
    src.save(&path).unwrap();
    let dst = model(Arch::ResNet18, 4, 9);
    let head_before = state(&dst)["fc.weight"].clone();
    let report = dst.load_weights(&path, LoadOptions::default()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.head_reinitialised.len(), 2, "{report}");
    assert!(
        report.head_reinitialised[0].starts_with("fc.weight: file [10, 512], model [4, 512]"),
        "{report}"
    );
    assert_eq!(max_abs_diff(&state(&dst)["fc.weight"], &head_before), 0.0);
    // Backbone equal: same embeddings.
    let input = x();
    assert_eq!(
        max_abs_diff(
            &src.embed(&input, false).unwrap(),
            &dst.embed(&input, false).unwrap()
        ),
        0.0
    );
}

#[test]
fn exact_mode_refuses_a_missing_or_reshaped_head() {
    let dir = tempfile::tempdir().unwrap();
    let src = model(Arch::ResNet18, 3, 0);
    let full = dir.path().join("full.safetensors");
    src.save(&full).unwrap();
    // The same model: exact loads it completely.
    let dst = model(Arch::ResNet18, 3, 1);
    let r = dst.load_weights(&full, LoadOptions::exact()).unwrap();
    assert!(r.is_clean() && r.head_reinitialised.is_empty(), "{r}");
    assert_eq!(r.loaded, src.entries().len());
    let input = x();
    assert_eq!(
        max_abs_diff(
            &src.forward(&input, false).unwrap(),
            &dst.forward(&input, false).unwrap()
        ),
        0.0
    );

    // Another class count: fine-tuning re-initialises the head, exact refuses
    // and leaves the model untouched.
    let four = model(Arch::ResNet18, 4, 2);
    let before = state(&four);
    let err = four.load_weights(&full, LoadOptions::exact()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ArchError::WeightsMismatch { .. }), "{msg}");
    assert!(
        msg.contains("full.safetensors")
            && msg.contains("fc.weight: file shape [3, 512], model shape [4, 512]")
            && msg.contains("fc.bias: file shape [3], model shape [4]"),
        "{msg}"
    );
    for (k, v) in state(&four) {
        assert_eq!(max_abs_diff(&v, &before[&k]), 0.0, "{k} changed");
    }
    assert_eq!(
        four.load_weights(&full, LoadOptions::fine_tune())
            .unwrap()
            .head_reinitialised
            .len(),
        2
    );

    // No head in the file: exact names the missing keys, even when not strict.
    let mut sd = state(&src);
    sd.remove("fc.weight");
    sd.remove("fc.bias");
    let headless = dir.path().join("headless.safetensors");
    candle_core::safetensors::save(&sd, &headless).unwrap();
    let msg = model(Arch::ResNet18, 3, 3)
        .load_weights(
            &headless,
            LoadOptions {
                strict: false,
                ..LoadOptions::exact()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("missing in file (2)") && msg.contains("fc.weight") && msg.contains("fc.bias"),
        "{msg}"
    );

    // A file with another head type: its classifier is unexpected, the model's head missing.
    let bn = dir.path().join("bn.safetensors");
    model(Arch::BnInception, 5, 0).save(&bn).unwrap();
    let embed = Classifier::new(
        &ModelConfig::new(Arch::BnInception, 5).with_norm_embed_head(),
        &Device::Cpu,
    )
    .unwrap();
    let msg = embed
        .load_weights(&bn, LoadOptions::exact())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("unexpected in file (2): last_linear.bias, last_linear.weight")
            && msg.contains("embed_head.scale"),
        "{msg}"
    );
}

#[test]
fn norm_embed_model_takes_a_linear_checkpoint_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bninception.safetensors");
    let src = model(Arch::BnInception, 1000, 0);
    src.save(&path).unwrap();
    let dst = Classifier::new(
        &ModelConfig::new(Arch::BnInception, 5).with_norm_embed_head(),
        &Device::Cpu,
    )
    .unwrap();
    let report = dst.load_weights(&path, LoadOptions::default()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        report.head_ignored,
        ["last_linear.bias", "last_linear.weight"]
    );
    assert_eq!(report.head_reinitialised.len(), 3);
    let names: Vec<String> = dst.head_params().into_iter().map(|p| p.0).collect();
    assert_eq!(
        names,
        ["embed_head.weight", "embed_head.bias", "embed_head.scale"]
    );
}

#[test]
fn dataparallel_and_mmpretrain_prefixes_are_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let src = model(Arch::ResNet18, 3, 0);
    for (tag, f) in [
        (
            "module",
            (|k: &str| format!("module.{k}")) as fn(&str) -> String,
        ),
        ("mmpretrain", |k: &str| match k.strip_prefix("fc.") {
            Some(r) => format!("head.fc.{r}"),
            None => format!("backbone.{k}"),
        }),
    ] {
        let mut sd: HashMap<String, Tensor> =
            state(&src).into_iter().map(|(k, v)| (f(&k), v)).collect();
        sd.insert(
            f("bn1.num_batches_tracked"),
            Tensor::zeros((), DType::I64, &Device::Cpu).unwrap(),
        );
        let path = dir.path().join(format!("{tag}.safetensors"));
        candle_core::safetensors::save(&sd, &path).unwrap();
        let dst = model(Arch::ResNet18, 3, 7);
        let r = dst.load_weights(&path, LoadOptions::default()).unwrap();
        assert!(
            r.is_clean() && r.head_reinitialised.is_empty(),
            "{tag}: {r}"
        );
        let input = x();
        assert_eq!(
            max_abs_diff(
                &src.forward(&input, false).unwrap(),
                &dst.forward(&input, false).unwrap()
            ),
            0.0
        );
    }
}

fn touch(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b"x").unwrap();
}

#[test]
fn pretrained_lookup_order_and_not_found_message() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = dir.path().join("weights");
    let cache = dir.path().join("hub");
    // A fake Hub cache in huggingface_hub's layout.
    let repo = cache.join("models--timm--resnet50.a1_in1k");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
    let cached = repo.join("snapshots/abc123/model.safetensors");
    touch(&cached);
    let lookup = WeightsLookup {
        explicit: None,
        weights_dir: Some(wdir.clone()),
        hf_cache: Some(cache.clone()),
    };
    assert_eq!(lookup.resolve(Arch::ResNet50).unwrap(), cached);
    assert_eq!(
        hub_cached_file(&cache, "timm/resnet50.a1_in1k", "model.safetensors").unwrap(),
        cached
    );
    // The weights directory wins over the cache.
    touch(&wdir.join("resnet50.pth"));
    assert_eq!(
        lookup.resolve(Arch::ResNet50).unwrap(),
        wdir.join("resnet50.pth")
    );
    // An explicit path wins over both, and a wrong one is an error naming it.
    let explicit = dir.path().join("mine.safetensors");
    touch(&explicit);
    let l2 = WeightsLookup {
        explicit: Some(explicit.clone()),
        ..lookup.clone()
    };
    assert_eq!(l2.resolve(Arch::ResNet50).unwrap(), explicit);
    let l3 = WeightsLookup {
        explicit: Some(dir.path().join("nope.pth")),
        ..lookup.clone()
    };
    assert!(l3
        .resolve(Arch::ResNet50)
        .unwrap_err()
        .to_string()
        .contains("nope.pth"));
    // BN-Inception: not on the Hub; the error lists the directory files and how to provide one.
    let err = lookup.resolve(Arch::BnInception).unwrap_err().to_string();
    assert!(
        err.contains(&wdir.join("bninception.safetensors").display().to_string()),
        "{err}"
    );
    assert!(
        err.contains("bn_inception-52deb4733.pth") && err.contains("VCT_WEIGHTS_DIR"),
        "{err}"
    );
    // ResNeXt with an empty cache: names the repository, file and cache.
    let err = lookup
        .resolve(Arch::ResNeXt50_32x4d)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("timm/resnext50_32x4d.tv_in1k") && err.contains(&cache.display().to_string()),
        "{err}"
    );
    assert!(err.contains("huggingface-cli download"), "{err}");
}

#[test]
fn load_pretrained_goes_through_the_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let src = model(Arch::ResNet18, 1000, 3);
    src.save(&dir.path().join("resnet18.safetensors")).unwrap();
    let dst = model(Arch::ResNet18, 2, 4);
    let lookup = WeightsLookup {
        explicit: None,
        weights_dir: Some(dir.path().to_path_buf()),
        hf_cache: None,
    };
    let r = dst
        .load_pretrained(&lookup, LoadOptions::default())
        .unwrap();
    assert!(r.is_clean() && r.head_reinitialised.len() == 2, "{r}");
    let input = x();
    assert_eq!(
        max_abs_diff(
            &src.embed(&input, false).unwrap(),
            &dst.embed(&input, false).unwrap()
        ),
        0.0
    );
}

#[test]
fn pytorch_pth_checkpoints_load_flat_and_nested() {
    let dir = tempfile::tempdir().unwrap();
    let src = model(Arch::ResNet18, 3, 11);
    src.forward(&x(), true).unwrap();
    let mut sd = src.state_dict();
    sd.push((
        "bn1.num_batches_tracked".into(),
        Tensor::new(&[7i64], &Device::Cpu)
            .unwrap()
            .reshape(())
            .unwrap(),
    ));
    let input = x();
    let want = src.forward(&input, false).unwrap();
    // torchvision / timm: a flat state dict.
    let flat = dir.path().join("resnet18.pth");
    common::pth::save_pth(&flat, &sd, None);
    let dst = model(Arch::ResNet18, 3, 12);
    let r = dst.load_weights(&flat, LoadOptions::default()).unwrap();
    assert!(r.is_clean() && r.head_reinitialised.is_empty(), "{r}");
    assert_eq!(
        max_abs_diff(&dst.forward(&input, false).unwrap(), &want),
        0.0
    );
    // mmpretrain: {"meta": ..., "state_dict": {"backbone.conv1.weight", ..., "head.fc.weight"}}.
    let mm: Vec<(String, Tensor)> = sd
        .iter()
        .map(|(k, v)| match k.strip_prefix("fc.") {
            Some(r) => (format!("head.fc.{r}"), v.clone()),
            None => (format!("backbone.{k}"), v.clone()),
        })
        .collect();
    let nested = dir.path().join("mmpretrain.pth");
    common::pth::save_pth(&nested, &mm, Some("state_dict"));
    let dst = model(Arch::ResNet18, 3, 13);
    let r = dst.load_weights(&nested, LoadOptions::default()).unwrap();
    assert!(r.is_clean() && r.head_reinitialised.is_empty(), "{r}");
    assert_eq!(
        max_abs_diff(&dst.forward(&input, false).unwrap(), &want),
        0.0
    );
}

#[test]
fn bn_tensors_stored_as_1xc_load() {
    // The TSN / early pretrainedmodels BN-Inception files store BN tensors as [1, C].
    let dir = tempfile::tempdir().unwrap();
    let src = model(Arch::BnInception, 4, 1);
    let sd: HashMap<String, Tensor> = src
        .state_dict()
        .into_iter()
        .map(|(k, v)| {
            if k.contains("_bn.") {
                let c = v.dim(0).unwrap();
                (k, v.reshape((1, c)).unwrap())
            } else {
                (k, v)
            }
        })
        .collect();
    let path = dir.path().join("bn_inception.safetensors");
    candle_core::safetensors::save(&sd, &path).unwrap();
    let dst = model(Arch::BnInception, 4, 2);
    let r = dst.load_weights(&path, LoadOptions::default()).unwrap();
    assert!(r.is_clean() && r.head_reinitialised.is_empty(), "{r}");
    let input = x();
    assert_eq!(
        max_abs_diff(
            &dst.forward(&input, false).unwrap(),
            &src.forward(&input, false).unwrap()
        ),
        0.0
    );
}

#[test]
fn legacy_pytorch_format_bninception_loads() {
    // pretrainedmodels' bn_inception-52deb4733.pth predates the zip format;
    // TSN's older bn_inception-9f5701afb96c8044.pth also stores BN tensors as
    // [1, C]. Ours writes both traits (real torch files: tests/torch_files.rs).
    let dir = tempfile::tempdir().unwrap();
    let src = model(Arch::BnInception, 6, 21);
    src.forward(&x(), true).unwrap();
    let sd: Vec<(String, Tensor)> = src
        .state_dict()
        .into_iter()
        .map(|(k, v)| {
            if k.contains("_bn.") {
                let c = v.dim(0).unwrap();
                (k, v.reshape((1, c)).unwrap())
            } else {
                (k, v)
            }
        })
        .collect();
    let path = dir.path().join("bn_inception-legacy.pth");
    common::pth::save_legacy_pth(&path, &sd, &["last_linear.weight"]);
    let dst = model(Arch::BnInception, 6, 22);
    let r = dst.load_weights(&path, LoadOptions::default()).unwrap();
    assert!(r.is_clean() && r.head_reinitialised.is_empty(), "{r}");
    assert_eq!(r.loaded, sd.len());
    let input = x();
    assert_eq!(
        max_abs_diff(
            &dst.forward(&input, false).unwrap(),
            &src.forward(&input, false).unwrap()
        ),
        0.0
    );
    // Truncated: a named error, no panic.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let err = dst
        .load_weights(&cut, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cut.pth") && err.contains("truncated"),
        "{err}"
    );
    // The legacy magic number followed by garbage: an error naming the file.
    let junk = dir.path().join("junk.pth");
    let mut b = bytes[..15].to_vec();
    b.extend(b"\x80\x02garbage that is not a pickle".iter());
    std::fs::write(&junk, b).unwrap();
    let err = dst.load_weights(&junk, LoadOptions::default()).unwrap_err();
    assert!(
        matches!(err, ArchError::WeightsFile { .. }) && err.to_string().contains("junk.pth"),
        "{err}"
    );
}
