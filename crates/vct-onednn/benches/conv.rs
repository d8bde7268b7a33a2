//! oneDNN convolution forward + backward on the layer shapes of ResNet-50 at 64×64 input,
//! batch 16: the three safe functions (forward, backward-data, backward-weights) on
//! preallocated buffers, in blocked and in plain layouts. The comparison with the Rust
//! kernels and candle through the op layer is in vct-kernels.
//! Needs oneDNN 2.x installed (it is loaded at run time); without it the bench only says so.
//!
//! `cargo bench -p vct-onednn --bench conv`

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;
use vct_onednn::{Conv2dShape, ConvLayout};

/// (name, c_in, hw, c_out, k, stride): ResNet-50's distinct conv shapes at 64×64 input.
const LAYERS: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("stem 7x7/2 3-64 @64", 3, 64, 64, 7, 2),
    ("l1 1x1 64-64 @16", 64, 16, 64, 1, 1),
    ("l1 3x3 64-64 @16", 64, 16, 64, 3, 1),
    ("l1 1x1 64-256 @16", 64, 16, 256, 1, 1),
    ("l2 1x1 256-128 @16", 256, 16, 128, 1, 1),
    ("l2 3x3/2 128-128 @16", 128, 16, 128, 3, 2),
    ("l2 3x3 128-128 @8", 128, 8, 128, 3, 1),
    ("l2 1x1 128-512 @8", 128, 8, 512, 1, 1),
    ("l2 down 1x1/2 256-512 @16", 256, 16, 512, 1, 2),
    ("l3 3x3 256-256 @4", 256, 4, 256, 3, 1),
    ("l4 3x3 512-512 @2", 512, 2, 512, 3, 1),
];

const BATCH: usize = 16;

fn shape(
    &(_, c_in, hw, c_out, k, stride): &(&str, usize, usize, usize, usize, usize),
) -> Conv2dShape {
    Conv2dShape {
        n: BATCH,
        c_in,
        h: hw,
        w: hw,
        c_out,
        kh: k,
        kw: k,
        stride: (stride, stride),
        pad: (k / 2, k / 2),
        groups: 1,
    }
}

fn data(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + seed) % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

fn bench(c: &mut Criterion) {
    if let Err(e) = vct_onednn::load() {
        eprintln!("{e}: nothing to bench");
        return;
    }
    if !vct_onednn::available() {
        eprintln!("oneDNN is loaded but its CPU engine could not be created: nothing to bench");
        return;
    }
    let mut g = c.benchmark_group("conv fwd+bwd, ResNet-50 64x64 b16");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for layer in LAYERS {
        let s = shape(layer);
        let name = layer.0;
        let x = data(s.src_len(), 1);
        let w: Vec<f32> = data(s.weights_len(), 2).iter().map(|v| v * 0.05).collect();
        let dy = data(s.dst_len(), 3);

        for blocked in [true, false] {
            vct_onednn::set_conv_layout(if blocked {
                ConvLayout::Blocked
            } else {
                ConvLayout::Plain
            });
            let mut y = vec![0f32; s.dst_len()];
            let mut dx = vec![0f32; s.src_len()];
            let mut dw = vec![0f32; s.weights_len()];
            let tag = if blocked { "blocked" } else { "plain" };
            g.bench_function(format!("{name} onednn-raw-{tag}"), |b| {
                b.iter(|| {
                    vct_onednn::conv2d_forward(&s, &x, &w, None, &mut y).unwrap();
                    vct_onednn::conv2d_backward_data(&s, &w, &dy, &mut dx).unwrap();
                    vct_onednn::conv2d_backward_weights(&s, &x, &dy, &mut dw, None).unwrap();
                    black_box((&y, &dx, &dw));
                })
            });
        }
        vct_onednn::set_conv_layout(ConvLayout::Auto);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
