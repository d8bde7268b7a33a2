//! Times the convolution of every distinct ResNet-50 (or, with `resnext`, ResNeXt-50
//! 32×4d) layer shape at one input size, so the per-layer milliseconds can be read
//! beside `bench/torch_conv_layers.py`'s (run the two alternately, same arguments):
//! `cargo run --release -p vct-kernels --example conv_layers -- N PX REPS [train] [resnext]`.
//! Forward only by default; with `train`, forward plus both gradients (input and
//! weight) of `sum(y · r)`, as a training step needs them.
use candle_core::{Device, Tensor, Var};
use std::time::Instant;

/// One layer shape: c_in, c_out, kernel, stride, padding, input side, groups, and how
/// many layers of the net have it.
type Layer = (usize, usize, usize, usize, usize, usize, usize, usize);

/// ResNet-50's layer shapes at `px`, or ResNeXt-50 32×4d's with `resnext` (bottleneck
/// width doubled, its 3×3 convolutions in 32 groups).
fn layers(px: usize, resnext: bool) -> Vec<Layer> {
    let mut v = vec![(3, 64, 7, 2, 3, px, 1, 1)];
    let mut side = px / 4;
    let mut cin = 64;
    let (mult, groups) = if resnext { (2, 32) } else { (1, 1) };
    for (stage, (&planes, &blocks)) in [64usize, 128, 256, 512]
        .iter()
        .zip(&[3usize, 4, 6, 3])
        .enumerate()
    {
        let (width, out) = (planes * mult, planes * 4);
        let s = if stage == 0 { 1 } else { 2 };
        // First block: 1×1 reduce at the input side, 3×3 with the stride, 1×1 expand,
        // strided 1×1 shortcut.
        v.push((cin, width, 1, 1, 0, side, 1, 1));
        v.push((width, width, 3, s, 1, side, groups, 1));
        let side2 = side / s;
        v.push((width, out, 1, 1, 0, side2, 1, blocks));
        v.push((cin, out, 1, s, 0, side, 1, 1));
        // Other blocks.
        v.push((out, width, 1, 1, 0, side2, 1, blocks - 1));
        v.push((width, width, 3, 1, 1, side2, groups, blocks - 1));
        cin = out;
        side = side2;
    }
    v
}

fn main() -> anyhow::Result<()> {
    let train = std::env::args().any(|a| a == "train");
    let resnext = std::env::args().any(|a| a == "resnext");
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| a != "train" && a != "resnext")
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let (n, px) = (
        args.first().copied().unwrap_or(16),
        args.get(1).copied().unwrap_or(64),
    );
    let reps = args.get(2).copied().unwrap_or(5);
    let dev = Device::Cpu;
    let mut total = 0.0;
    // CONV_LAYERS_ONLY=64x64k3 (C_in x C_out k kernel) keeps the matching shapes only.
    let only = std::env::var("CONV_LAYERS_ONLY").ok();
    for (cin, cout, k, s, p, side, groups, count) in layers(px, resnext) {
        if only
            .as_ref()
            .is_some_and(|o| *o != format!("{cin}x{cout}k{k}"))
        {
            continue;
        }
        let x = Var::randn(0f32, 1., (n, cin, side, side), &dev)?;
        let w = Var::randn(0f32, 0.05, (cout, cin / groups, k, k), &dev)?;
        let o = (side + 2 * p - k) / s + 1;
        let r = Tensor::randn(0f32, 1., (n, cout, o, o), &dev)?;
        let step = || -> anyhow::Result<()> {
            if train {
                let y = vct_kernels::conv::conv2d(
                    x.as_tensor(),
                    w.as_tensor(),
                    None,
                    (s, s),
                    (p, p),
                    groups,
                )?;
                drop((y * &r)?.sum_all()?.backward()?);
            } else {
                let y = vct_kernels::conv::conv2d(
                    &x.as_tensor().detach(),
                    &w.as_tensor().detach(),
                    None,
                    (s, s),
                    (p, p),
                    groups,
                )?;
                drop(y);
            }
            Ok(())
        };
        step()?;
        let mut best = f64::MAX;
        let verbose = std::env::var_os("CONV_LAYERS_PROFILE").is_some();
        vct_kernels::profile::enable(verbose);
        for _ in 0..reps {
            vct_kernels::profile::reset();
            let t = Instant::now();
            step()?;
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
            if verbose {
                let parts: Vec<String> = vct_kernels::profile::totals()
                    .iter()
                    .filter(|(_, s, _)| *s > 0.0)
                    .map(|(k, s, _)| format!("{} {:.2}", k.name(), s * 1e3))
                    .collect();
                eprintln!(
                    "  {:.2} ms: {}",
                    t.elapsed().as_secs_f64() * 1e3,
                    parts.join(", ")
                );
            }
        }
        let passes = if train { 3.0 } else { 1.0 };
        let gflop = passes * 2.0 * (n * cout * o * o * (cin / groups) * k * k) as f64 / 1e9;
        total += best * count as f64;
        println!(
            "{cin:4}->{cout:4} k{k} s{s} g{groups:<2} {side:3}px x{count}: {best:7.3} ms  {:6.1} GFLOP/s",
            gflop / best * 1e3
        );
    }
    println!("total {total:.1} ms");
    Ok(())
}
