//! The same ops from stock candle ops, for the `Candle` backend and for tensors the
//! custom ops do not take (GPU devices, other dtypes). Differentiable through candle's
//! own autograd; pooling is built from strided views because candle 0.11 has no padding
//! or ceil mode and no backward for overlapping max-pool windows.

use crate::bn::BatchStats;
use crate::error::KernelError;
use crate::pool::{Geometry, PoolKind};
use candle_core::Tensor;

/// `x.conv2d` with one stride and one padding, as candle takes them.
pub(crate) fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: (usize, usize),
    padding: (usize, usize),
    groups: usize,
) -> candle_core::Result<Tensor> {
    if stride.0 != stride.1 || padding.0 != padding.1 {
        return Err(KernelError::Param {
            op: "conv2d",
            what: "stride/padding",
            got: format!("{stride:?}/{padding:?}"),
            expected: "equal in both dimensions with stock candle ops (the Candle backend or a \
                       non-CPU device)"
                .into(),
        }
        .into());
    }
    x.conv2d(w, padding.0, stride.0, 1, groups)
}

/// `(1, C, 1, 1)` view of a per-channel vector.
fn per_channel(t: &Tensor) -> candle_core::Result<Tensor> {
    t.reshape((1, (), 1, 1))
}

/// Training-mode batch norm from candle ops; the statistics come back detached.
pub(crate) fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> candle_core::Result<(Tensor, BatchStats)> {
    let (n, _, h, w) = x.dims4()?;
    let mean = x.mean_keepdim((0, 2, 3))?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim((0, 2, 3))?;
    let inv = (var.clone() + eps)?.sqrt()?.recip()?;
    let y = xc
        .broadcast_mul(&inv)?
        .broadcast_mul(&per_channel(gamma)?)?
        .broadcast_add(&per_channel(beta)?)?;
    let y = if relu { y.relu()? } else { y };
    let stats = BatchStats {
        mean: mean.detach().flatten_all()?,
        var: var.detach().flatten_all()?,
        count: n * h * w,
    };
    Ok((y, stats))
}

/// Evaluation-mode batch norm from candle ops: one scale and one shift per channel.
pub(crate) fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    relu: bool,
) -> candle_core::Result<Tensor> {
    let scale = (running_var + eps)?.sqrt()?.recip()?.mul(gamma)?;
    let shift = (beta - (running_mean * &scale)?)?;
    let y = x
        .broadcast_mul(&per_channel(&scale)?)?
        .broadcast_add(&per_channel(&shift)?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// `x + b` per channel, then ReLU if asked.
pub(crate) fn bias_act(x: &Tensor, b: &Tensor, relu: bool) -> candle_core::Result<Tensor> {
    let y = x.broadcast_add(&per_channel(b)?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// Pads (with `fill`) or trims dimension `dim` to `need` elements after `before` leading
/// fill elements.
fn fit(
    x: &Tensor,
    dim: usize,
    before: usize,
    need: usize,
    fill: f32,
) -> candle_core::Result<Tensor> {
    let size = x.dim(dim)?;
    let mut shape = x.dims().to_vec();
    let mut parts = Vec::new();
    if before > 0 {
        shape[dim] = before;
        parts.push(Tensor::full(fill, shape.as_slice(), x.device())?.to_dtype(x.dtype())?);
    }
    if before + size >= need {
        parts.push(x.narrow(dim, 0, need - before)?);
    } else {
        parts.push(x.clone());
        shape[dim] = need - before - size;
        parts.push(Tensor::full(fill, shape.as_slice(), x.device())?.to_dtype(x.dtype())?);
    }
    Tensor::cat(&parts, dim)
}

/// Pooling from strided views of the padded input: the maximum or sum over the window's
/// offsets, then (average) the per-window divisor of the same [`Geometry`] the custom
/// ops use.
pub(crate) fn pool(x: &Tensor, g: &Geometry, kind: PoolKind) -> candle_core::Result<Tensor> {
    let (n, c, _, _) = x.dims4()?;
    let fill = match kind {
        PoolKind::Max => f32::NEG_INFINITY,
        PoolKind::Avg { .. } => 0.0,
    };
    let need_h = g.kh - 1 + g.oh * g.sh;
    let need_w = g.kw - 1 + g.ow * g.sw;
    let xp = fit(&fit(x, 2, g.ph.0, need_h, fill)?, 3, g.pw.0, need_w, fill)?;
    let mut acc: Option<Tensor> = None;
    for i in 0..g.kh {
        let rows = xp.narrow(2, i, g.oh * g.sh)?;
        for j in 0..g.kw {
            let v = rows
                .narrow(3, j, g.ow * g.sw)?
                .reshape((n, c, g.oh, g.sh, g.ow, g.sw))?
                .narrow(3, 0, 1)?
                .narrow(5, 0, 1)?
                .reshape((n, c, g.oh, g.ow))?;
            acc = Some(match (acc, kind) {
                (None, _) => v,
                (Some(a), PoolKind::Max) => a.maximum(&v)?,
                (Some(a), PoolKind::Avg { .. }) => (a + v)?,
            });
        }
    }
    let acc = acc.ok_or_else(|| KernelError::Param {
        op: "pool2d",
        what: "kernel",
        got: "0".into(),
        expected: "at least 1".into(),
    })?;
    match kind {
        PoolKind::Max => Ok(acc),
        PoolKind::Avg { include_pad } => {
            let mut div = Vec::with_capacity(g.oh * g.ow);
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    div.push(g.divisor(g.rows(oy), g.cols(ox), include_pad));
                }
            }
            let div = Tensor::from_vec(div, (1, 1, g.oh, g.ow), x.device())?.to_dtype(x.dtype())?;
            acc.broadcast_div(&div)
        }
    }
}
