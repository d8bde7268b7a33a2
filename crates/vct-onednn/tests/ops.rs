//! The candle custom ops against stock candle ops: forward values and autograd gradients.

#![cfg(feature = "link")]

use candle_core::{DType, Device, Result, Tensor, Var, D};
use vct_onednn::ops;

/// Asserts `max |a − b| ≤ 1e-4 · max |b|` for tensors of the same shape.
fn close(what: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    assert!(scale > 0.0, "{what}: reference is all zeros");
    assert!(
        diff <= 1e-4 * scale,
        "{what}: max diff {diff}, max |ref| {scale}"
    );
    Ok(())
}

fn randn(shape: &[usize], seed: u64) -> Result<Tensor> {
    // A deterministic pseudo-random tensor (sine of a scrambled index).
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i as u64 * 2_654_435_761 + seed * 97) % 10_007) as f32)
        .map(|t| (t * 0.731).sin())
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

#[test]
fn conv2d_matches_candle_forward_and_gradients() -> Result<()> {
    // (n, c_in, h, w, c_out, k, stride, pad, groups)
    let cases = [
        (2, 4, 9, 7, 6, 3, 1, 1, 1),
        (1, 6, 8, 8, 4, 3, 2, 1, 2),
        (2, 8, 6, 5, 8, 3, 1, 1, 8),
        (2, 5, 7, 7, 3, 1, 2, 0, 1),
        (1, 3, 11, 11, 4, 7, 2, 3, 1),
    ];
    for (i, &(n, ci, h, w, co, k, s, p, g)) in cases.iter().enumerate() {
        let x = Var::from_tensor(&randn(&[n, ci, h, w], i as u64)?)?;
        let wt = Var::from_tensor(&(randn(&[co, ci / g, k, k], 10 + i as u64)? * 0.3)?)?;
        let b = Var::from_tensor(&randn(&[co], 20 + i as u64)?)?;
        let ours = ops::conv2d(
            x.as_tensor(),
            wt.as_tensor(),
            Some(b.as_tensor()),
            (s, s),
            (p, p),
            g,
        )?;
        let theirs = x
            .as_tensor()
            .conv2d(wt.as_tensor(), p, s, 1, g)?
            .broadcast_add(&b.as_tensor().reshape((1, co, 1, 1))?)?;
        close(&format!("conv fwd {i}"), &ours, &theirs)?;
        // A loss that weighs outputs differently, so every gradient entry is exercised.
        let weights = randn(ours.dims(), 30 + i as u64)?;
        let go = (&ours * &weights)?.sum_all()?.backward()?;
        let gt = (&theirs * &weights)?.sum_all()?.backward()?;
        for (what, v) in [("dx", &x), ("dw", &wt), ("db", &b)] {
            let a = go.get(v.as_tensor()).expect("gradient from oneDNN");
            let r = gt.get(v.as_tensor()).expect("gradient from candle");
            close(&format!("conv {what} {i}"), a, r)?;
        }
    }
    Ok(())
}

#[test]
fn conv2d_skips_the_gradient_of_an_untracked_input() -> Result<()> {
    let x = randn(&[1, 3, 6, 6], 1)?;
    let w = Var::from_tensor(&randn(&[4, 3, 3, 3], 2)?)?;
    let y = ops::conv2d(&x, w.as_tensor(), None, (1, 1), (1, 1), 1)?;
    let grads = y.sum_all()?.backward()?;
    assert!(grads.get(&x).is_none());
    let reference = x.conv2d(w.as_tensor(), 1, 1, 1, 1)?.sum_all()?.backward()?;
    close(
        "dw",
        grads.get(w.as_tensor()).expect("weight gradient"),
        reference.get(w.as_tensor()).expect("weight gradient"),
    )
}

/// Batch norm from candle ops (batch statistics, biased variance).
fn candle_bn(x: &Tensor, g: &Tensor, b: &Tensor, eps: f64, relu: bool) -> Result<Tensor> {
    let c = x.dim(1)?;
    let xt = x.transpose(0, 1)?.flatten_from(1)?; // (C, N·H·W)
    let mean = xt.mean_keepdim(D::Minus1)?;
    let var = xt.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?;
    let shape = (1, c, 1, 1);
    let y = x
        .broadcast_sub(&mean.reshape(shape)?)?
        .broadcast_div(&(var.reshape(shape)? + eps)?.sqrt()?)?
        .broadcast_mul(&g.reshape(shape)?)?
        .broadcast_add(&b.reshape(shape)?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

#[test]
fn batch_norm_matches_candle_forward_and_gradients() -> Result<()> {
    for (i, &(n, c, h, w, relu)) in [(2, 3, 5, 4, false), (3, 16, 4, 4, true), (1, 5, 3, 7, true)]
        .iter()
        .enumerate()
    {
        let x = Var::from_tensor(&((randn(&[n, c, h, w], i as u64)? * 2.0)? + 0.5)?)?;
        let g = Var::from_tensor(&randn(&[c], 10 + i as u64)?)?;
        let b = Var::from_tensor(&randn(&[c], 20 + i as u64)?)?;
        let eps = 1e-5;
        let (ours, stats) =
            ops::batch_norm_train(x.as_tensor(), g.as_tensor(), b.as_tensor(), eps, relu)?;
        let theirs = candle_bn(x.as_tensor(), g.as_tensor(), b.as_tensor(), eps, relu)?;
        close(&format!("bn fwd {i}"), &ours, &theirs)?;
        let xt = x.as_tensor().transpose(0, 1)?.flatten_from(1)?;
        close(&format!("bn mean {i}"), &stats.mean, &xt.mean(1)?)?;
        assert_eq!(stats.count, n * h * w);
        let weights = randn(ours.dims(), 30 + i as u64)?;
        let go = (&ours * &weights)?.sum_all()?.backward()?;
        let gt = (&theirs * &weights)?.sum_all()?.backward()?;
        for (what, v) in [("dx", &x), ("dgamma", &g), ("dbeta", &b)] {
            let a = go.get(v.as_tensor()).expect("gradient from oneDNN");
            let r = gt.get(v.as_tensor()).expect("gradient from candle");
            close(&format!("bn {what} {i}"), a, r)?;
        }

        // Evaluation mode with the batch statistics as running statistics equals training mode
        // in value; its gradient treats the statistics as constants.
        let ev = ops::batch_norm_eval(
            x.as_tensor(),
            g.as_tensor(),
            b.as_tensor(),
            &stats.mean,
            &stats.var,
            eps,
            relu,
        )?;
        close(&format!("bn eval fwd {i}"), &ev, &theirs)?;
        let ge = (&ev * &weights)?.sum_all()?.backward()?;
        let shape = (1, c, 1, 1);
        let inv = (stats.var.reshape(shape)? + eps)?.sqrt()?.recip()?;
        let mut dy = weights.clone();
        if relu {
            dy = (dy * theirs.gt(0.0)?.to_dtype(DType::F32)?)?;
        }
        let dx_ref = dy.broadcast_mul(&g.as_tensor().reshape(shape)?.broadcast_mul(&inv)?)?;
        close(
            &format!("bn eval dx {i}"),
            ge.get(x.as_tensor()).expect("dx"),
            &dx_ref,
        )?;
    }
    Ok(())
}

#[test]
fn pooling_matches_candle_on_non_overlapping_windows() -> Result<()> {
    let x = Var::from_tensor(&randn(&[2, 3, 8, 6], 4)?)?;
    let xt = x.as_tensor();
    let dy = randn(&[2, 3, 4, 3], 5)?;

    let ours = ops::avg_pool2d(xt, (2, 2), (2, 2), (0, 0), false, true)?;
    let theirs = xt.avg_pool2d(2)?;
    close("avg pool fwd", &ours, &theirs)?;
    let go = (&ours * &dy)?.sum_all()?.backward()?;
    let gt = (&theirs * &dy)?.sum_all()?.backward()?;
    close(
        "avg pool dx",
        go.get(xt).expect("dx"),
        gt.get(xt).expect("dx"),
    )?;

    let ours = ops::max_pool2d(xt, (2, 2), (2, 2), (0, 0), false)?;
    let theirs = xt.max_pool2d(2)?;
    close("max pool fwd", &ours, &theirs)?;
    // candle 0.11's own max-pool backward scales the gradient by the mask's window mean
    // (1/4 here), so the reference is built directly: the output gradient, upsampled,
    // on the (unique) maximum of each window.
    let mask = xt
        .eq(&theirs.upsample_nearest2d(8, 6)?)?
        .to_dtype(DType::F32)?;
    let want = (dy.upsample_nearest2d(8, 6)? * mask)?;
    let go = (&ours * &dy)?.sum_all()?.backward()?;
    close("max pool dx", go.get(xt).expect("dx"), &want)
}

#[test]
fn overlapping_max_pool_routes_gradient_to_the_window_maximum() -> Result<()> {
    // 3x3/2 with padding 1 (ResNet's stem): every output's gradient lands on its window's
    // maximum, so the input gradient sums to the output gradient's sum and is zero
    // wherever an input is no window's maximum.
    let x = Var::from_tensor(&randn(&[1, 2, 7, 7], 9)?)?;
    let y = ops::max_pool2d(x.as_tensor(), (3, 3), (2, 2), (1, 1), false)?;
    assert_eq!(y.dims(), [1, 2, 4, 4]);
    let dy = randn(y.dims(), 3)?;
    let g = (&y * &dy)?.sum_all()?.backward()?;
    let dx = g.get(x.as_tensor()).expect("dx");
    let total = dx.sum_all()?.to_scalar::<f32>()?;
    let want = dy.sum_all()?.to_scalar::<f32>()?;
    assert!((total - want).abs() < 1e-4, "{total} vs {want}");
    // Every nonzero gradient sits on an input value that is some output.
    let (xv, dxv, yv) = (
        x.as_tensor().flatten_all()?.to_vec1::<f32>()?,
        dx.flatten_all()?.to_vec1::<f32>()?,
        y.flatten_all()?.to_vec1::<f32>()?,
    );
    for (v, d) in xv.iter().zip(&dxv) {
        if *d != 0.0 {
            assert!(
                yv.contains(v),
                "gradient on {v}, which is no window maximum"
            );
        }
    }
    Ok(())
}

#[test]
fn avg_pool_refuses_pytorch_clipped_divisor_case() {
    // ceil_mode + count_include_pad with an overhanging last window.
    let x = Tensor::zeros((1, 1, 8, 8), DType::F32, &Device::Cpu).expect("zeros");
    let e = ops::avg_pool2d(&x, (3, 3), (2, 2), (0, 0), true, true).unwrap_err();
    assert!(e.to_string().contains("count_include_pad"), "{e}");
}
