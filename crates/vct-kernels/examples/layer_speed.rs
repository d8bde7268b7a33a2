//! Minimum-of-N times of convolution forward and forward + backward on every distinct
//! conv shape of ResNet-50 and ResNeXt-50 at 64×64, batch 16, for each backend this
//! build has (stock candle, the Rust kernels, oneDNN where it is installed), with the
//! achieved GFLOP/s: where the convolutions lose time, layer by layer.
//!
//! `cargo run --release -p vct-kernels --example layer_speed [reps]
//! [filter]` (only the layers whose name contains `filter`)

use candle_core::{Device, Tensor, Var};
use std::time::Instant;
use vct_kernels::{with_backend, KernelBackend};

fn min_ms(reps: usize, mut f: impl FnMut() -> candle_core::Result<()>) -> candle_core::Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

fn main() -> candle_core::Result<()> {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let filter = std::env::args().nth(2).unwrap_or_default();
    vct_kernels::alloc::keep_freed_memory();
    let dev = Device::Cpu;
    // (name, cin, hw, cout, k, stride, groups), batch 16.
    let layers: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
        ("stem 7x7/2", 3, 64, 64, 7, 2, 1),
        ("1x1 64-64 @16", 64, 16, 64, 1, 1, 1),
        ("3x3 64-64 @16", 64, 16, 64, 3, 1, 1),
        ("1x1 64-256 @16", 64, 16, 256, 1, 1, 1),
        ("1x1 256-64 @16", 256, 16, 64, 1, 1, 1),
        ("1x1 256-128 @16", 256, 16, 128, 1, 1, 1),
        ("3x3/2 128 @16", 128, 16, 128, 3, 2, 1),
        ("1x1 128-512 @8", 128, 8, 512, 1, 1, 1),
        ("1x1/2 256-512 @16", 256, 16, 512, 1, 2, 1),
        ("1x1 512-128 @8", 512, 8, 128, 1, 1, 1),
        ("3x3 128 @8", 128, 8, 128, 3, 1, 1),
        ("3x3 256 @4", 256, 4, 256, 3, 1, 1),
        ("1x1 1024-256 @4", 1024, 4, 256, 1, 1, 1),
        ("3x3 512 @2", 512, 2, 512, 3, 1, 1),
        ("1x1 2048-512 @2", 2048, 2, 512, 1, 1, 1),
        ("rx g32 3x3 128 @16", 128, 16, 128, 3, 1, 32),
        ("rx g32 3x3 512 @4", 512, 4, 512, 3, 1, 32),
    ];
    let mut backends = vec![KernelBackend::Candle, KernelBackend::Rust];
    if KernelBackend::OneDnn.check().is_ok() {
        backends.push(KernelBackend::OneDnn);
    }
    print!("{:<20} {:>7}", "layer (b16)", "GFLOP");
    for b in &backends {
        print!(
            " {:>9} {:>9} {:>6}",
            format!("{} fwd", b.name()),
            "fwd+bwd",
            "GF/s"
        );
    }
    println!();
    let mut totals = vec![(0.0, 0.0); backends.len()];
    for &(name, cin, hw, cout, k, s, g) in layers.iter().filter(|l| l.0.contains(&filter)) {
        let p = k / 2;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (16, cin, hw, hw), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (cout, cin / g, k, k), &dev)?)?;
        let oh = (hw + 2 * p - k) / s + 1;
        let gflop = 2.0 * (16 * cout * oh * oh * (cin / g) * k * k) as f64 / 1e9;
        print!("{name:<20} {gflop:>7.3}");
        for (i, &b) in backends.iter().enumerate() {
            let conv =
                || vct_kernels::conv::conv2d(x.as_tensor(), w.as_tensor(), None, (s, s), (p, p), g);
            let fwd = with_backend(b, || min_ms(reps, || conv().map(|_| ())))?;
            let both = with_backend(b, || {
                min_ms(reps, || conv()?.sum_all()?.backward().map(|_| ()))
            })?;
            totals[i].0 += fwd;
            totals[i].1 += both;
            print!(
                " {fwd:>9.2} {both:>9.2} {:>6.0}",
                3.0 * gflop / (both / 1e3)
            );
        }
        println!();
    }
    print!("{:<20} {:>7}", "sum", "");
    for (f, b) in &totals {
        print!(" {f:>9.2} {b:>9.2} {:>6}", "");
    }
    println!();
    Ok(())
}
