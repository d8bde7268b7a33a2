//! Building a `Classifier` from a `candle_nn::VarBuilder`, and the models as
//! `candle_nn::ModuleT`s.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, ModuleT, VarBuilder};
use vct_arch::params::{Group, ParamStore};
use vct_arch::{
    Arch, ArchError, Classifier, Eval, KeyDialect, LoadMode, LoadOptions, ModelConfig, ResNet,
    ResNetConfig,
};

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// A deterministic input batch (not a constant, so every weight matters).
fn input(n: usize, side: usize) -> Tensor {
    let len = n * 3 * side * side;
    let v: Vec<f32> = (0..len)
        .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
        .collect();
    Tensor::from_vec(v, (n, 3, side, side), &Device::Cpu).unwrap()
}

fn state(model: &Classifier) -> HashMap<String, Tensor> {
    model.state_dict().into_iter().collect()
}

fn mmaped(path: &std::path::Path) -> VarBuilder<'static> {
    // SAFETY: the test's own temporary file, not modified while mapped.
    unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, &Device::Cpu).unwrap() }
}

fn from_map(map: HashMap<String, Tensor>) -> VarBuilder<'static> {
    VarBuilder::from_tensors(map, DType::F32, &Device::Cpu)
}

#[test]
fn varbuilder_load_gives_the_saved_model_for_every_family() {
    let dir = tempfile::tempdir().unwrap();
    let configs = [
        ModelConfig {
            drop_path_rate: 0.2,
            ..ModelConfig::new(Arch::ResNet18, 7)
        },
        ModelConfig::new(Arch::BnInception, 4).with_norm_embed_head(),
        ModelConfig {
            depth_multiplier: 0.5,
            head_dropout: 0.2,
            ..ModelConfig::new(Arch::InceptionV2, 3)
        },
    ];
    for cfg in configs {
        let saved = Classifier::new(
            &ModelConfig {
                seed: 11,
                ..cfg.clone()
            },
            &Device::Cpu,
        )
        .unwrap();
        let path = dir.path().join(format!("{}.safetensors", cfg.arch));
        saved.save(&path).unwrap();

        // Another seed: every value must come from the file.
        let loaded = Classifier::load(
            mmaped(&path),
            &ModelConfig {
                seed: 3,
                ..cfg.clone()
            },
        )
        .unwrap();
        let (a, b) = (state(&saved), state(&loaded));
        assert_eq!(a.len(), b.len());
        for (k, t) in &a {
            assert_eq!(values(t), values(&b[k]), "{}: {k}", cfg.arch);
        }
        // Same names, order, groups and trainability as the random-init model.
        let meta = |m: &Classifier| -> Vec<(String, bool, Group)> {
            m.entries()
                .into_iter()
                .map(|e| (e.name, e.trainable, e.group))
                .collect()
        };
        assert_eq!(meta(&saved), meta(&loaded), "{}", cfg.arch);
        let x = input(2, 64);
        assert_eq!(
            values(&saved.forward(&x, false).unwrap()),
            values(&loaded.forward(&x, false).unwrap()),
            "{}",
            cfg.arch
        );
    }
}

#[test]
fn varbuilder_model_trains_like_new_plus_load_weights() {
    // Drop path and head dropout draw their masks from a stream of their own,
    // so the random masks do not depend on how the weights were obtained.
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModelConfig {
        drop_path_rate: 0.3,
        head_dropout: 0.5,
        seed: 5,
        ..ModelConfig::new(Arch::ResNet18, 6)
    };
    let path = dir.path().join("r18.safetensors");
    Classifier::new(
        &ModelConfig {
            seed: 99,
            ..cfg.clone()
        },
        &Device::Cpu,
    )
    .unwrap()
    .save(&path)
    .unwrap();
    let a = Classifier::new(&cfg, &Device::Cpu).unwrap();
    a.load_weights(&path, LoadOptions::exact()).unwrap();
    let b = Classifier::load(mmaped(&path), &cfg).unwrap();
    let x = input(4, 32);
    for salt in [0, 1] {
        a.set_mask_salt(salt);
        b.set_mask_salt(salt);
        let (ya, yb) = (a.forward(&x, true).unwrap(), b.forward(&x, true).unwrap());
        assert_eq!(values(&ya), values(&yb), "salt {salt}");
        // The Vars are trainable: gradients reach the loaded weights.
        let grads = yb.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let (name, w) = &b.backbone_params()[0];
        assert!(grads.get(w.as_tensor()).is_some(), "no gradient for {name}");
    }
    // Training updated the running statistics of both alike.
    let (sa, sb) = (state(&a), state(&b));
    assert_eq!(
        values(&sa["bn1.running_mean"]),
        values(&sb["bn1.running_mean"])
    );
}

#[test]
fn key_dialects_are_detected_and_invert_map_key() {
    for arch in [Arch::ResNet50, Arch::BnInception, Arch::InceptionV2] {
        let model = Classifier::new(&ModelConfig::new(arch, 5), &Device::Cpu).unwrap();
        let family = arch.family();
        for &d in KeyDialect::for_family(family) {
            for e in model.entries() {
                let file = d.file_key(&e.name);
                assert_eq!(
                    family.map_key(&file).as_deref(),
                    Some(e.name.as_str()),
                    "{d:?}"
                );
            }
        }
    }
    assert_eq!(
        KeyDialect::MmPretrain.file_key("fc.weight"),
        "head.fc.weight"
    );
    assert_eq!(
        KeyDialect::MmPretrain.file_key("layer1.0.bn1.bias"),
        "backbone.layer1.0.bn1.bias"
    );

    let cfg = ModelConfig::new(Arch::ResNet18, 3);
    let saved = Classifier::new(
        &ModelConfig {
            seed: 1,
            ..cfg.clone()
        },
        &Device::Cpu,
    )
    .unwrap();
    let x = input(1, 48);
    let want = values(&saved.forward(&x, false).unwrap());
    for d in KeyDialect::ALL {
        let map: HashMap<String, Tensor> = saved
            .state_dict()
            .into_iter()
            .map(|(k, t)| (d.file_key(&k), t))
            .collect();
        let vb = from_map(map);
        assert_eq!(KeyDialect::detect(&vb, Arch::ResNet18).unwrap(), d);
        let m = Classifier::load(vb, &cfg).unwrap();
        assert_eq!(values(&m.forward(&x, false).unwrap()), want, "{d:?}");
    }
    // A prefix of the caller's own is `vb.pp(prefix)`.
    let map: HashMap<String, Tensor> = saved
        .state_dict()
        .into_iter()
        .map(|(k, t)| (format!("model.{k}"), t))
        .collect();
    let err = Classifier::load(from_map(map.clone()), &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`conv1.weight`, `module.conv1.weight`, `backbone.conv1.weight`")
            && err.contains("vb.pp(prefix)"),
        "{err}"
    );
    let m = Classifier::load(from_map(map).pp("model"), &cfg).unwrap();
    assert_eq!(values(&m.forward(&x, false).unwrap()), want);
}

#[test]
fn varbuilder_errors_name_the_key_and_the_shapes() {
    let cfg = ModelConfig::new(Arch::ResNet18, 3);
    let sd: HashMap<String, Tensor> = state(&Classifier::new(&cfg, &Device::Cpu).unwrap());

    let mut missing = sd.clone();
    missing.remove("layer2.1.bn2.running_var");
    let err = Classifier::load(from_map(missing.clone()), &cfg).unwrap_err();
    assert!(matches!(err, ArchError::VarBuilderTensor { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("resnet18") && msg.contains("`layer2.1.bn2.running_var` is missing"),
        "{msg}"
    );
    // In another dialect the name looked up is given too.
    let mm: HashMap<String, Tensor> = missing
        .into_iter()
        .map(|(k, t)| (KeyDialect::MmPretrain.file_key(&k), t))
        .collect();
    let msg = Classifier::load(from_map(mm), &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("looked up as `backbone.layer2.1.bn2.running_var`"),
        "{msg}"
    );

    let mut bad = sd.clone();
    bad.insert(
        "layer1.0.conv1.weight".into(),
        Tensor::zeros((64, 64, 1, 1), DType::F32, &Device::Cpu).unwrap(),
    );
    let msg = Classifier::load(from_map(bad), &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(
            "`layer1.0.conv1.weight` has shape [64, 64, 1, 1], the model needs [64, 64, 3, 3]"
        ),
        "{msg}"
    );

    // Weights of another family: the stem is not found.
    let bn =
        state(&Classifier::new(&ModelConfig::new(Arch::BnInception, 3), &Device::Cpu).unwrap());
    let msg = Classifier::load(from_map(bn), &cfg)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not resnet18 weights"), "{msg}");
}

#[test]
fn fine_tune_keeps_a_seeded_head_and_exact_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imagenet.safetensors");
    let pretrained = Classifier::new(
        &ModelConfig {
            seed: 8,
            ..ModelConfig::new(Arch::ResNet18, 1000)
        },
        &Device::Cpu,
    )
    .unwrap();
    pretrained.save(&path).unwrap();
    let cfg = ModelConfig {
        seed: 2,
        ..ModelConfig::new(Arch::ResNet18, 10)
    };

    let msg = Classifier::load(mmaped(&path), &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`fc.weight` has shape [1000, 512], the model needs [10, 512]"),
        "{msg}"
    );

    let tuned = Classifier::load_with(mmaped(&path), &cfg, LoadMode::FineTune).unwrap();
    let (p, t) = (state(&pretrained), state(&tuned));
    assert_eq!(
        values(&p["layer4.1.conv2.weight"]),
        values(&t["layer4.1.conv2.weight"])
    );
    assert_eq!(t["fc.weight"].dims(), [10, 512]);
    // The fresh head is seeded: the same seed gives the same head.
    let again = Classifier::load_with(mmaped(&path), &cfg, LoadMode::FineTune).unwrap();
    assert_eq!(values(&t["fc.weight"]), values(&state(&again)["fc.weight"]));
    let other = Classifier::load_with(
        mmaped(&path),
        &ModelConfig {
            seed: 3,
            ..cfg.clone()
        },
        LoadMode::FineTune,
    )
    .unwrap();
    assert_ne!(values(&t["fc.weight"]), values(&state(&other)["fc.weight"]));
    // A head of the right shape is taken from the file.
    let same = Classifier::load_with(
        mmaped(&path),
        &ModelConfig::new(Arch::ResNet18, 1000),
        LoadMode::FineTune,
    )
    .unwrap();
    assert_eq!(values(&p["fc.bias"]), values(&state(&same)["fc.bias"]));
}

#[test]
fn bn_inception_unit_dim_norms_load_through_a_varbuilder() {
    // TSN's BN-Inception stores norm tensors as [1, C].
    let cfg = ModelConfig::new(Arch::BnInception, 2);
    let saved = Classifier::new(
        &ModelConfig {
            seed: 4,
            ..cfg.clone()
        },
        &Device::Cpu,
    )
    .unwrap();
    let map: HashMap<String, Tensor> = saved
        .state_dict()
        .into_iter()
        .map(|(k, t)| {
            let t = if t.rank() == 1 && k.contains("_bn.") {
                t.unsqueeze(0).unwrap()
            } else {
                t
            };
            (k, t)
        })
        .collect();
    assert_eq!(map["conv1_7x7_s2_bn.weight"].dims(), [1, 64]);
    let loaded = Classifier::load(from_map(map), &cfg).unwrap();
    assert_eq!(state(&loaded)["conv1_7x7_s2_bn.weight"].dims(), [64]);
    let x = input(1, 64);
    assert_eq!(
        values(&saved.forward(&x, false).unwrap()),
        values(&loaded.forward(&x, false).unwrap())
    );
}

#[test]
fn models_are_candle_modules() {
    let model = Classifier::new(&ModelConfig::new(Arch::ResNet18, 5), &Device::Cpu).unwrap();
    let x = input(2, 40);
    let want = values(&model.forward(&x, false).unwrap());
    assert_eq!(values(&x.apply_t(&model, false).unwrap()), want);
    assert_eq!(values(&x.apply(&Eval(&model)).unwrap()), want);
    assert_eq!(values(&Eval(&model).forward(&x).unwrap()), want);
    // Between candle ops.
    let p = x
        .affine(1.0, 0.0)
        .unwrap()
        .apply(&Eval(&model))
        .unwrap()
        .apply(&candle_nn::ops::softmax_last_dim)
        .unwrap();
    let p = values(&p);
    assert!((p[..5].iter().sum::<f32>() - 1.0).abs() < 1e-5);
    // Train mode goes through batch statistics.
    assert_ne!(values(&model.forward_t(&x, true).unwrap()), want);
    // vct-arch's errors arrive as candle errors, message kept.
    let bad = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let err = bad.apply(&Eval(&model)).unwrap_err().to_string();
    assert!(err.contains("H, W >= 32"), "{err}");

    // A backbone and a head alone.
    let store = ParamStore::new(0, &Device::Cpu);
    let backbone = ResNet::new(&store.scope(Group::Backbone), &ResNetConfig::resnet18()).unwrap();
    let emb = x.apply(&Eval(&backbone)).unwrap();
    assert_eq!(emb.dims(), [2, 512]);
    let head =
        vct_arch::LinearHead::new(&store.scope(Group::Head).pp("fc"), "weight", "bias", 512, 3)
            .unwrap();
    assert_eq!(emb.apply_t(&head, false).unwrap().dims(), [2, 3]);
}
