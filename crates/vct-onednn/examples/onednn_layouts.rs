//! Minimum-of-N timings of conv forward + backward (data and weights) on ResNet-50's and
//! ResNeXt-50's layer shapes at 64×64, batch 16, in oneDNN's blocked and plain layouts.
//! The minimum is robust to other load on the machine; run with `OMP_WAIT_POLICY=PASSIVE`
//! (see the README). A second table times training-mode batch norm forward + backward.
//! The comparison with the Rust kernels and stock candle is vct-kernels' `layer_speed`.
//!
//! `cargo run --release -p vct-onednn --example onednn_layouts [reps]` (needs oneDNN 2.x installed)

use std::time::Instant;
use vct_onednn::{Conv2dShape, ConvLayout};

/// (name, c_in, hw, c_out, k, stride, groups): ResNet-50's conv shapes, then ResNeXt-50
/// 32x4d's grouped 3×3 ones, then a depthwise 3×3.
const LAYERS: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("stem 7x7/2 3-64 @64", 3, 64, 64, 7, 2, 1),
    ("1x1 64-64 @16", 64, 16, 64, 1, 1, 1),
    ("3x3 64-64 @16", 64, 16, 64, 3, 1, 1),
    ("1x1 64-256 @16", 64, 16, 256, 1, 1, 1),
    ("1x1 256-128 @16", 256, 16, 128, 1, 1, 1),
    ("3x3/2 128-128 @16", 128, 16, 128, 3, 2, 1),
    ("3x3 128-128 @8", 128, 8, 128, 3, 1, 1),
    ("1x1 128-512 @8", 128, 8, 512, 1, 1, 1),
    ("down 1x1/2 256-512 @16", 256, 16, 512, 1, 2, 1),
    ("3x3 256-256 @4", 256, 4, 256, 3, 1, 1),
    ("3x3 512-512 @2", 512, 2, 512, 3, 1, 1),
    ("rx g32 3x3 128 @16", 128, 16, 128, 3, 1, 32),
    ("rx g32 3x3/2 256 @16", 256, 16, 256, 3, 2, 32),
    ("rx g32 3x3 512 @4", 512, 4, 512, 3, 1, 32),
    ("rx g32 3x3 1024 @2", 1024, 2, 1024, 3, 1, 32),
    ("dw 3x3 256 @8", 256, 8, 256, 3, 1, 256),
];

fn min_ms(reps: usize, mut f: impl FnMut() -> anyhow_free::R) -> anyhow_free::R<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

mod anyhow_free {
    /// Any error, boxed.
    pub type R<T = ()> = Result<T, Box<dyn std::error::Error>>;
}

fn main() -> anyhow_free::R {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    vct_onednn::load().map_err(|e| format!("{e}: nothing to measure"))?;
    if !vct_onednn::available() {
        return Err("oneDNN's CPU engine could not be created: nothing to measure".into());
    }
    println!(
        "{:<24} {:>7} {:>10} {:>10} {:>9}",
        "layer (b16)", "GFLOP", "blocked ms", "plain ms", "GFLOP/s"
    );
    let (mut tb, mut tp) = (0.0, 0.0);
    for &(name, c_in, hw, c_out, k, stride, groups) in LAYERS {
        let s = Conv2dShape {
            n: 16,
            c_in,
            h: hw,
            w: hw,
            c_out,
            kh: k,
            kw: k,
            stride: (stride, stride),
            pad: (k / 2, k / 2),
            groups,
        };
        let x: Vec<f32> = (0..s.src_len())
            .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
            .collect();
        let w: Vec<f32> = (0..s.weights_len())
            .map(|i| ((i % 89) as f32 - 44.0) / 900.0)
            .collect();
        let dy: Vec<f32> = (0..s.dst_len())
            .map(|i| ((i % 83) as f32 - 41.0) / 40.0)
            .collect();
        // Forward, input gradient and weight gradient: 3 × 2·MACs.
        let gflop = 3.0 * 2.0 * (s.dst_len() * (s.c_in / groups) * s.kh * s.kw) as f64 / 1e9;

        let mut y = vec![0f32; s.dst_len()];
        let mut dx = vec![0f32; s.src_len()];
        let mut dw = vec![0f32; s.weights_len()];
        let mut run = |blocked: bool| {
            vct_onednn::set_conv_layout(if blocked {
                ConvLayout::Blocked
            } else {
                ConvLayout::Plain
            });
            min_ms(reps, || {
                vct_onednn::conv2d_forward(&s, &x, &w, None, &mut y)?;
                vct_onednn::conv2d_backward_data(&s, &w, &dy, &mut dx)?;
                vct_onednn::conv2d_backward_weights(&s, &x, &dy, &mut dw, None)?;
                Ok(())
            })
        };
        let blocked = run(true)?;
        let plain = run(false)?;
        tb += blocked;
        tp += plain;
        println!(
            "{name:<24} {gflop:>7.3} {blocked:>10.2} {plain:>10.2} {:>9.1}",
            gflop / (blocked.min(plain) / 1e3)
        );
    }
    println!("{:<24} {:>7} {tb:>10.2} {tp:>10.2}", "sum", "");
    vct_onednn::set_conv_layout(ConvLayout::Auto);
    batch_norm_table(reps)
}

/// Batch norm (training) forward and backward.
fn batch_norm_table(reps: usize) -> anyhow_free::R {
    println!("\n{:<24} {:>10}", "batch norm (b16)", "fwd+bwd ms");
    for (c, hw) in [(64usize, 32usize), (256, 16), (512, 8), (2048, 2)] {
        let s = vct_onednn::BatchNormShape {
            n: 16,
            c,
            h: hw,
            w: hw,
        };
        let x: Vec<f32> = (0..s.len())
            .map(|i| ((i % 101) as f32 - 50.0) / 25.0)
            .collect();
        let (gs, bs) = (vec![1f32; c], vec![0f32; c]);
        let (mut y, mut dx) = (vec![0f32; s.len()], vec![0f32; s.len()]);
        let (mut m, mut v, mut dg, mut db) =
            (vec![0f32; c], vec![0f32; c], vec![0f32; c], vec![0f32; c]);
        let dy: Vec<f32> = x.iter().rev().copied().collect();
        let raw = min_ms(reps, || {
            vct_onednn::batch_norm_forward_training(
                &s, 1e-5, &x, &gs, &bs, &mut y, &mut m, &mut v,
            )?;
            vct_onednn::batch_norm_backward(
                &s, 1e-5, false, &x, &dy, &gs, &m, &v, &mut dx, &mut dg, &mut db,
            )?;
            Ok(())
        })?;
        println!("{:<24} {raw:>10.2}", format!("{c}x{hw}x{hw}"));
    }
    Ok(())
}
