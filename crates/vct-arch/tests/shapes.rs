//! Every architecture: logits shape at 32, 48, non-square, in train and eval
//! mode; 224 for the cheap ones. Parameter counts of the Inception family.

mod common;

use candle_core::{Device, Tensor};
use vct_arch::{Arch, Classifier, ModelConfig};

fn check(arch: Arch, sizes: &[(usize, usize)], classes: usize) {
    let mut cfg = ModelConfig::new(arch, classes);
    cfg.drop_path_rate = 0.1; // exercise drop path in train mode where it exists
    let model = Classifier::new(&cfg, &Device::Cpu).unwrap();
    for &(h, w) in sizes {
        let x = common::seeded(&[2, 3, h, w], (h * 1000 + w) as u64);
        for train in [false, true] {
            let y = model.forward(&x, train).unwrap();
            assert_eq!(y.dims(), &[2, classes], "{arch} {h}x{w} train={train}");
            let e = model.embed(&x, train).unwrap();
            assert_eq!(
                e.dims(),
                &[2, model.out_dim()],
                "{arch} {h}x{w} train={train}"
            );
            let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            assert!(
                v.iter().all(|a| a.is_finite()),
                "{arch} {h}x{w} train={train}: non-finite logits"
            );
        }
    }
}

const SMALL: [(usize, usize); 3] = [(32, 32), (48, 48), (40, 72)];

#[test]
fn resnet18_all_sizes_and_224() {
    check(
        Arch::ResNet18,
        &[(32, 32), (48, 48), (40, 72), (224, 224)],
        5,
    );
}

#[test]
fn resnet34_and_50() {
    check(Arch::ResNet34, &SMALL, 3);
    check(Arch::ResNet50, &SMALL, 3);
}

#[test]
fn resnet101_and_152() {
    check(Arch::ResNet101, &[(32, 32), (48, 40)], 2);
    check(Arch::ResNet152, &[(32, 32), (40, 48)], 2);
}

#[test]
fn resnext_family() {
    check(Arch::ResNeXt50_32x4d, &SMALL, 4);
    check(Arch::ResNeXt101_32x8d, &[(32, 32), (48, 40)], 4);
}

#[test]
fn bninception_all_sizes_and_224() {
    check(
        Arch::BnInception,
        &[(32, 32), (48, 48), (40, 72), (224, 224)],
        7,
    );
}

#[test]
fn bninception_every_side_from_32_to_97() {
    // Odd intermediate sizes at the reduction blocks (e.g. 48 → 3×3 at 3c) make
    // pretrainedmodels' concat fail; ours pads the pool branch (see reduce_pool).
    let model = Classifier::new(&ModelConfig::new(Arch::BnInception, 2), &Device::Cpu).unwrap();
    for side in (32..98).step_by(3) {
        let x = Tensor::zeros(
            (1, 3, side, 130 - side),
            candle_core::DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(
            model.forward(&x, false).unwrap().dims(),
            &[1, 2],
            "{side}x{}",
            130 - side
        );
    }
}

#[test]
fn inception_v2_all_sizes_and_224() {
    check(
        Arch::InceptionV2,
        &[(32, 32), (48, 48), (40, 72), (224, 160)],
        7,
    );
}

#[test]
fn too_small_or_wrong_input_is_an_error_not_a_panic() {
    let model = Classifier::new(&ModelConfig::new(Arch::ResNet18, 2), &Device::Cpu).unwrap();
    for shape in [vec![1usize, 3, 16, 16], vec![1, 1, 32, 32], vec![3, 32, 32]] {
        let x = Tensor::zeros(shape.as_slice(), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = model.forward(&x, false).unwrap_err().to_string();
        assert!(err.contains(&format!("{shape:?}")), "{err}");
    }
}

#[test]
fn inception_v2_parameter_count_matches_tf_slim() {
    // Trainable variables of TF-slim `inception_v2` (tensorflow/models
    // research/slim/nets/inception_v2.py with inception_utils.inception_arg_scope):
    // every slim.conv2d has `weights` (k*k*cin*cout) and a BatchNorm `beta`
    // (scale=False, no conv bias); the separable 7x7 stem (outside the conv2d
    // arg scope) has depthwise 7*7*3*8 + pointwise 24*64 weights + 64 biases and
    // no BN; the logits 1x1 conv has 1024*N weights + N biases. Summed by hand
    // over the source's layer list (Python, not this crate): 10,153,336 before
    // the logits, i.e. 11,179,361 for TF-slim's 1001 classes.
    let m = Classifier::new(&ModelConfig::new(Arch::InceptionV2, 1001), &Device::Cpu).unwrap();
    assert_eq!(m.out_dim(), 1024);
    assert_eq!(m.num_params(), 11_179_361);
    let names: Vec<String> = m.entries().into_iter().map(|e| e.name).collect();
    for n in [
        "Conv2d_1a_7x7.depthwise_weights",
        "Conv2d_1a_7x7.pointwise_weights",
        "Conv2d_1a_7x7.biases",
        "Conv2d_2b_1x1.BatchNorm.beta",
        "Mixed_3b.Branch_3.Conv2d_0b_1x1.weights",
        "Mixed_4a.Branch_0.Conv2d_1a_3x3.weights",
        "Mixed_4a.Branch_1.Conv2d_1a_3x3.weights",
        "Mixed_5c.Branch_2.Conv2d_0c_3x3.BatchNorm.moving_variance",
        "Logits.Conv2d_1c_1x1.weights",
    ] {
        assert!(names.iter().any(|x| x == n), "missing {n}");
    }
    // Depth multiplier 0.5 halves every conv (TF-slim depth(): max(int(d*0.5), 16)).
    let mut cfg = ModelConfig::new(Arch::InceptionV2, 10);
    cfg.depth_multiplier = 0.5;
    let half = Classifier::new(&cfg, &Device::Cpu).unwrap();
    assert_eq!(half.out_dim(), 512);
    let y = half
        .forward(
            &Tensor::zeros((1, 3, 64, 64), candle_core::DType::F32, &Device::Cpu).unwrap(),
            false,
        )
        .unwrap();
    assert_eq!(y.dims(), &[1, 10]);
}

#[test]
fn bninception_parameter_count_matches_pretrainedmodels_state_dict() {
    // Sum of the trainable tensors of pretrainedmodels' bninception state dict
    // (the fixture's key list, running statistics excluded).
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity/bninception.json");
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let want: usize = fx["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| !k["key"].as_str().unwrap().contains("running_"))
        .map(|k| {
            k["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .product::<usize>()
        })
        .sum();
    let m = Classifier::new(&ModelConfig::new(Arch::BnInception, 1000), &Device::Cpu).unwrap();
    assert_eq!(m.num_params(), want);
    eprintln!("BN-Inception parameters: {want}");
}

#[test]
fn layer_tables_cover_every_parameter() {
    for (arch, side, last_block, last_shape) in [
        (Arch::ResNet50, 224, "layer4.2", vec![1, 2048, 7, 7]),
        (Arch::BnInception, 224, "inception_5b", vec![1, 1024, 7, 7]),
        (Arch::InceptionV2, 224, "Mixed_5c", vec![1, 1024, 7, 7]),
    ] {
        let m = Classifier::new(&ModelConfig::new(arch, 10), &Device::Cpu).unwrap();
        let rows = m.layer_table(side, side).unwrap();
        let total: usize = rows.iter().map(|r| r.params).sum();
        assert_eq!(total, m.num_params(), "{arch}");
        let last = rows
            .iter()
            .find(|r| r.name == last_block)
            .unwrap_or_else(|| panic!("{arch}: no {last_block}"));
        assert_eq!(last.shape, last_shape, "{arch}");
        assert_eq!(rows.last().unwrap().shape, vec![1, 10]);
    }
}

#[test]
fn inception_v2_differs_from_bn_inception_only_in_the_4d_and_4e_pool_projections() {
    use vct_arch::inception::{BlockSpec, BN_INCEPTION_BLOCKS, INCEPTION_V2_BLOCKS};
    // The tables without their names: what differs, block by block.
    fn unnamed(b: BlockSpec) -> BlockSpec {
        match b {
            BlockSpec::Mixed {
                b1,
                b3,
                d3,
                pool,
                proj,
                ..
            } => BlockSpec::Mixed {
                name: "",
                b1,
                b3,
                d3,
                pool,
                proj,
            },
            BlockSpec::Reduce { b3, d3, .. } => BlockSpec::Reduce { name: "", b3, d3 },
        }
    }
    let proj = |b: BlockSpec| match b {
        BlockSpec::Mixed { proj, .. } => Some(proj),
        BlockSpec::Reduce { .. } => None,
    };
    let name = |b: BlockSpec| match b {
        BlockSpec::Mixed { name, .. } | BlockSpec::Reduce { name, .. } => name,
    };
    let differ: Vec<(&str, &str, Option<usize>, Option<usize>)> = BN_INCEPTION_BLOCKS
        .iter()
        .zip(INCEPTION_V2_BLOCKS.iter())
        .filter(|(a, b)| unnamed(**a) != unnamed(**b))
        .map(|(a, b)| (name(*a), name(*b), proj(*a), proj(*b)))
        .collect();
    assert_eq!(
        differ,
        [
            ("4c", "Mixed_4d", Some(128), Some(96)),
            ("4d", "Mixed_4e", Some(128), Some(96)),
        ]
    );
    // The built networks: TF-slim's `Branch_3/Conv2d_0b_1x1` of Mixed_4d and
    // Mixed_4e maps 576 channels to depth(96) (inception_v2.py); BN-Inception's
    // 4c and 4d pool projections have 128 outputs.
    let out_channels = |arch: Arch, key: &str| {
        let m = Classifier::new(&ModelConfig::new(arch, 10), &Device::Cpu).unwrap();
        let e = m.entries().into_iter().find(|e| e.name == key);
        e.unwrap_or_else(|| panic!("{arch}: no {key}"))
            .var
            .dims()
            .to_vec()
    };
    for block in ["Mixed_4d", "Mixed_4e"] {
        let shape = out_channels(
            Arch::InceptionV2,
            &format!("{block}.Branch_3.Conv2d_0b_1x1.weights"),
        );
        assert!(
            shape.contains(&96) && shape.contains(&576),
            "{block}: {shape:?}"
        );
    }
    for block in ["4c", "4d"] {
        let shape = out_channels(
            Arch::BnInception,
            &format!("inception_{block}_pool_proj.weight"),
        );
        // PyTorch layout (out, in, kh, kw).
        assert_eq!(shape[0], 128, "{block}: {shape:?}");
    }
}
