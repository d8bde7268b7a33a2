//! One optimizer step over 8 M parameters (eight tensors of 1 M, ResNet-50 has 25 M),
//! per optimizer: the update is memory-bound, so elements per second read against the
//! machine's bandwidth say how close to it a step runs.
//! `cargo bench -p vct-optim --bench step`.

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vct_optim::{AdamWConfig, LambConfig, Optimizer, OptimizerConfig, ParamGroup, SgdConfig};

const TENSORS: usize = 8;
const LEN: usize = 1 << 20;

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let params: Vec<(String, Var)> = (0..TENSORS)
        .map(|i| {
            let v = Var::randn(0f32, 1.0, LEN, &dev).expect("parameter");
            (format!("p{i}"), v)
        })
        .collect();
    // Gradients of Σ p·r: r itself, the same every step.
    let mut loss = Tensor::zeros((), DType::F32, &dev).expect("zero");
    for (_, p) in &params {
        let r = Tensor::randn(0f32, 1e-2, LEN, &dev).expect("r");
        loss = (loss + (p.as_tensor() * r).expect("p·r").sum_all().expect("sum")).expect("loss");
    }
    let grads = loss.backward().expect("gradients");
    let configs = [
        (
            "sgd_momentum",
            OptimizerConfig::Sgd(SgdConfig {
                momentum: 0.9,
                weight_decay: 1e-4,
                ..SgdConfig::default()
            }),
        ),
        ("adamw", OptimizerConfig::AdamW(AdamWConfig::default())),
        ("lamb", OptimizerConfig::Lamb(LambConfig::default())),
    ];
    let mut g = c.benchmark_group("optimizer_step");
    g.throughput(Throughput::Elements((TENSORS * LEN) as u64));
    g.sample_size(20);
    for (name, config) in configs {
        let mut opt = Optimizer::new(
            config,
            vec![ParamGroup {
                name: "all".into(),
                params: params.clone(),
                lr_mult: 1.0,
                weight_decay: true,
            }],
        )
        .expect("optimizer");
        // The first step allocates the state; time the steady ones.
        opt.step_with_lr(&grads, 1e-3).expect("step");
        g.bench_function(name, |b| {
            b.iter(|| opt.step_with_lr(&grads, 1e-3).expect("step"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
