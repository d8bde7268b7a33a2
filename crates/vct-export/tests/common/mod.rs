//! Shared by the tract tests and the onnxruntime fixture example: seeded models
//! whose batch norms do something, inputs, metadata, and a tract runner.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vct_arch::{Arch, Classifier, ModelConfig};
use vct_export::{ChannelOrder, ExportMetadata, Preprocessing, Probabilities};

/// Outputs of every exported test model.
pub const CLASSES: usize = 5;

/// `Classifier::new`'s seeded weights, with every 1-d tensor (batch-norm scale,
/// shift and running statistics, conv and head biases, the norm-embed scale)
/// moved off its initial constant: `v * U(0.5, 1.5) + U(-0.2, 0.2)`. A fresh
/// batch norm (mean 0, variance 1, scale 1, shift 0) is nearly the identity,
/// under which a wrong fold would go unnoticed.
pub fn seeded_model(config: &ModelConfig) -> Classifier {
    let model = Classifier::new(config, &Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed);
    for e in model.entries() {
        if e.var.rank() != 1 {
            continue;
        }
        let v: Vec<f32> = e.var.as_detached_tensor().to_vec1().unwrap();
        let v: Vec<f32> = v
            .iter()
            .map(|x| x * rng.random_range(0.5..1.5f32) + rng.random_range(-0.2..0.2f32))
            .collect();
        let n = v.len();
        e.var
            .set(&Tensor::from_vec(v, n, &Device::Cpu).unwrap())
            .unwrap();
    }
    model
}

/// `n` images `[n, 3, h, w]` of values in [-2, 2].
pub fn images(n: usize, h: usize, w: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * 3 * h * w)
        .map(|_| rng.random_range(-2.0..2.0f32))
        .collect();
    Tensor::from_vec(v, (n, 3, h, w), &Device::Cpu).unwrap()
}

/// Metadata for `model` at `size`.
pub fn metadata(
    model: &Classifier,
    probabilities: Probabilities,
    flip_average: bool,
    size: [usize; 2],
) -> ExportMetadata {
    let norm = model.arch().input_norm();
    ExportMetadata {
        template: "test".into(),
        vct_version: "0.1.0".into(),
        concepts: (0..model.num_classes())
            .map(|i| format!("concept {i}"))
            .collect(),
        probabilities,
        flip_average,
        preprocess: Preprocessing {
            input_size: size,
            resize_shorter_side: size[0].min(size[1]),
            resize_filter: "bilinear".into(),
            channel_order: if norm.bgr {
                ChannelOrder::Bgr
            } else {
                ChannelOrder::Rgb
            },
            scale: norm.scale,
            mean: norm.mean,
            std: norm.std,
        },
    }
}

/// The config of `arch` with `classes` outputs and seed 7.
pub fn config(arch: Arch, classes: usize) -> ModelConfig {
    ModelConfig {
        seed: 7,
        ..ModelConfig::new(arch, classes)
    }
}

/// Scales a linear head's weight so that the logits of `x` stay within ±3: the
/// embeddings of a random deep net are large, and saturated probabilities
/// (all 0 or 1) would make a weak comparison.
pub fn tame_head(model: &Classifier, x: &Tensor) {
    if model.config().head != vct_arch::HeadKind::Linear {
        return;
    }
    let logits: Vec<f32> = model
        .forward(x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let largest = logits.iter().fold(0f32, |m, v| m.max(v.abs()));
    if largest <= 3.0 {
        return;
    }
    let (weight, _) = model.arch().family().linear_head_names();
    let entry = model
        .entries()
        .into_iter()
        .find(|e| e.name == weight)
        .unwrap();
    let scaled = (entry.var.as_detached_tensor() * f64::from(3.0 / largest)).unwrap();
    entry.var.set(&scaled).unwrap();
}

/// One export configuration of the runtime checks.
#[derive(Debug, Clone)]
pub struct Case {
    /// Architecture.
    pub arch: Arch,
    /// NormEmbedHead instead of the linear head.
    pub norm_embed: bool,
    /// Sigmoid or softmax.
    pub probabilities: Probabilities,
    /// Flip-averaged embeddings.
    pub flip_average: bool,
    /// Input `[h, w]`.
    pub size: [usize; 2],
}

impl Case {
    /// A file-name-friendly description.
    pub fn name(&self) -> String {
        format!(
            "{}_{}{}{}_{}x{}",
            self.arch,
            self.probabilities.name(),
            if self.norm_embed { "_norm_embed" } else { "" },
            if self.flip_average { "_flip" } else { "" },
            self.size[0],
            self.size[1]
        )
    }

    /// The seeded model, its metadata and a batch of 2 images, the head tamed on them.
    pub fn prepare(&self) -> (Classifier, ExportMetadata, Tensor) {
        let mut config = config(self.arch, CLASSES);
        if self.norm_embed {
            config = config.with_norm_embed_head();
        }
        let model = seeded_model(&config);
        let meta = metadata(&model, self.probabilities, self.flip_average, self.size);
        let x = images(2, self.size[0], self.size[1], 11);
        tame_head(&model, &x);
        (model, meta, x)
    }
}

/// The case of `arch` with a linear head at its test size.
pub fn case(arch: Arch, probabilities: Probabilities, flip_average: bool) -> Case {
    let size = match arch {
        // Odd sides inside the network: ceil-mode and replicated-row pools
        // (BN-Inception), asymmetric SAME padding (Inception-v2).
        Arch::BnInception | Arch::InceptionV2 => [72, 72],
        _ => [64, 64],
    };
    Case {
        arch,
        norm_embed: false,
        probabilities,
        flip_average,
        size,
    }
}

/// Every case the tract tests run (one per test function there).
pub fn all_cases() -> Vec<Case> {
    use Probabilities::{Sigmoid, Softmax};
    vec![
        case(Arch::ResNet18, Softmax, false),
        Case {
            norm_embed: true,
            ..case(Arch::ResNet18, Sigmoid, true)
        },
        case(Arch::ResNet34, Sigmoid, true),
        case(Arch::ResNet50, Softmax, false),
        case(Arch::ResNet101, Sigmoid, false),
        case(Arch::ResNet152, Softmax, true),
        case(Arch::ResNeXt50_32x4d, Sigmoid, true),
        case(Arch::ResNeXt101_32x8d, Softmax, false),
        case(Arch::BnInception, Sigmoid, false),
        // Clarifai_InceptionTransferEmbedNorm's model.
        Case {
            norm_embed: true,
            ..case(Arch::BnInception, Softmax, true)
        },
        Case {
            size: [72, 56],
            ..case(Arch::InceptionV2, Softmax, false)
        },
    ]
}
