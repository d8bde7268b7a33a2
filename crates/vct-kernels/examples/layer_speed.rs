//! Times conv2d and batch norm forward+backward on ResNet-50-like layers: stock candle vs these kernels.
//!
//! `cargo run --profile dev -p vct-kernels --example layer_speed` (noisy on shared machines).

use candle_core::{Device, Tensor, Var};
use std::time::Instant;

fn time(
    label: &str,
    reps: usize,
    mut f: impl FnMut() -> candle_core::Result<()>,
) -> candle_core::Result<f64> {
    f()?;
    let t = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
    println!("{label:<48} {ms:9.2} ms");
    Ok(ms)
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    // (N, Cin, H, Cout, k, stride, pad, groups)
    let layers = [
        (8, 3, 224, 64, 7, 2, 3, 1),
        (8, 64, 56, 64, 1, 1, 0, 1),
        (8, 64, 56, 64, 3, 1, 1, 1),
        (8, 256, 56, 128, 1, 1, 0, 1),
        (8, 128, 56, 128, 3, 2, 1, 1),
        (8, 128, 56, 128, 3, 1, 1, 32),
        (8, 256, 28, 256, 3, 2, 1, 32),
        (8, 1024, 14, 2048, 1, 2, 0, 1),
        (8, 512, 7, 512, 3, 1, 1, 1),
    ];
    for (n, cin, h, cout, k, s, p, g) in layers {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (n, cin, h, h), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (cout, cin / g, k, k), &dev)?)?;
        let name = format!("{n}x{cin}x{h}x{h} -> {cout} k{k} s{s} g{g}");
        let stock = time(&format!("stock  {name}"), 2, || {
            let y = x.as_tensor().conv2d(w.as_tensor(), p, s, 1, g)?;
            y.sum_all()?.backward().map(|_| ())
        })?;
        let ours = time(&format!("kernel {name}"), 2, || {
            let y =
                vct_kernels::conv::conv2d(x.as_tensor(), w.as_tensor(), None, (s, s), (p, p), g)?;
            y.sum_all()?.backward().map(|_| ())
        })?;
        println!("  speed-up {:.2}x", stock / ours);
    }
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (8, 256, 56, 56), &dev)?)?;
    let gm = Var::from_tensor(&Tensor::ones(256, candle_core::DType::F32, &dev)?)?;
    let bt = Var::from_tensor(&Tensor::zeros(256, candle_core::DType::F32, &dev)?)?;
    let bn = candle_nn::BatchNorm::new(
        256,
        Tensor::zeros(256, candle_core::DType::F32, &dev)?,
        Tensor::ones(256, candle_core::DType::F32, &dev)?,
        gm.as_tensor().clone(),
        bt.as_tensor().clone(),
        1e-5,
    )?;
    let stock = time("stock  batch norm 8x256x56x56 + relu", 2, || {
        let y = bn.forward_train(x.as_tensor())?.relu()?;
        y.sum_all()?.backward().map(|_| ())
    })?;
    let ours = time("kernel batch norm 8x256x56x56 + relu", 2, || {
        let (y, _) = vct_kernels::bn::batch_norm_train(
            x.as_tensor(),
            gm.as_tensor(),
            bt.as_tensor(),
            1e-5,
            true,
        )?;
        y.sum_all()?.backward().map(|_| ())
    })?;
    println!("  speed-up {:.2}x", stock / ours);
    Ok(())
}
