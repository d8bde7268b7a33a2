//! Inference and one training step (forward + cross-entropy + backward + SGD
//! update) per architecture, at batch 16 / 64×64 and batch 8 / 224×224, CPU.
//!
//! Heavy: a 224×224 training step takes seconds. Filter, e.g.
//! `cargo bench -p vct-arch --bench arch -- 'resnet50/infer/b16x64'`.
//! Throughput is reported in images per second, comparable with
//! ../shared/perf/ANCHORS.md (PyTorch on the same shapes).

use std::time::Duration;

use candle_core::{Device, Tensor};
use candle_nn::loss::cross_entropy;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use vct_arch::{Arch, Classifier, ModelConfig};

const SHAPES: [(usize, usize); 2] = [(16, 64), (8, 224)];

fn step(model: &Classifier, x: &Tensor, y: &Tensor, params: &[(String, candle_core::Var)]) {
    let loss = cross_entropy(&model.forward(x, true).unwrap(), y).unwrap();
    let grads = loss.backward().unwrap();
    for (_, v) in params {
        if let Some(g) = grads.get(v.as_tensor()) {
            v.set(&(v.as_tensor() - (g * 1e-3).unwrap()).unwrap())
                .unwrap();
        }
    }
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    for arch in Arch::ALL {
        let model = Classifier::new(&ModelConfig::new(arch, 10), &dev).unwrap();
        let params: Vec<_> = model
            .backbone_params()
            .into_iter()
            .chain(model.head_params())
            .collect();
        let mut g = c.benchmark_group(arch.name());
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(100));
        g.measurement_time(Duration::from_secs(5));
        for (b, s) in SHAPES {
            let x = Tensor::randn(0f32, 1.0, (b, 3, s, s), &dev).unwrap();
            let y = Tensor::new((0..b as u32).map(|i| i % 10).collect::<Vec<_>>(), &dev).unwrap();
            g.throughput(Throughput::Elements(b as u64));
            let id = format!("b{b}x{s}");
            g.bench_function(BenchmarkId::new("infer", &id), |bn| {
                bn.iter(|| model.forward(&x, false).unwrap())
            });
            g.bench_function(BenchmarkId::new("train_step", &id), |bn| {
                bn.iter(|| step(&model, &x, &y, &params))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
