//! 2-D max and average pooling with PyTorch semantics and their backward passes.
//!
//! Candle 0.11 has no padding or ceil mode and no backward for overlapping max-pool
//! windows (ResNet's 3×3/2 stem pool, BN-Inception's pools); these ops fill that gap.
//! Output sizes, padding (−∞ for max, zeros for average) and average divisors follow
//! `torch.nn.functional.{max,avg}_pool2d` exactly, including ceil-mode windows that
//! overhang the padded input (and inputs smaller than the window, which ceil mode
//! allows), plus TensorFlow's "SAME" layout. The window arithmetic lives here once
//! (`Geometry`) and serves the Rust kernels, oneDNN (explicit padding) and the stock
//! candle path alike.

use crate::backend::{route, KernelBackend, OpKind, Route};
use crate::error::KernelError;
use crate::onednn::{attempt, declined};
use crate::storage::{f32_slice, prepare};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Max, or average with the padding counted in the divisor or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolKind {
    Max,
    Avg { include_pad: bool },
}

/// Window geometry of a 2-D pooling op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) sh: usize,
    pub(crate) sw: usize,
    /// Padding before (top, left) and after (bottom, right): equal in PyTorch's layout,
    /// possibly one more after in TF's "SAME" layout. Ceil-mode windows may reach past
    /// the padding after; they are clipped.
    pub(crate) ph: (usize, usize),
    pub(crate) pw: (usize, usize),
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl Geometry {
    /// The input rows `[start, end)` of output row `o`, clipped to the input, and the
    /// window's length clipped to the padded extent only (for `count_include_pad`).
    #[inline]
    pub(crate) fn rows(&self, o: usize) -> (usize, usize, usize) {
        window(o, self.kh, self.sh, self.ph, self.h)
    }

    /// The same for output column `o`.
    #[inline]
    pub(crate) fn cols(&self, o: usize) -> (usize, usize, usize) {
        window(o, self.kw, self.sw, self.pw, self.w)
    }

    /// The divisor of an average over window `(r, c)` (from [`Geometry::rows`] and
    /// [`Geometry::cols`]).
    #[inline]
    pub(crate) fn divisor(
        &self,
        r: (usize, usize, usize),
        c: (usize, usize, usize),
        include_pad: bool,
    ) -> f32 {
        let n = if include_pad {
            r.2 * c.2
        } else {
            (r.1 - r.0) * (c.1 - c.0)
        };
        // An empty window (impossible with validated geometry) gets divisor 1, output 0.
        n.max(1) as f32
    }

    fn in_plane(&self) -> usize {
        self.h * self.w
    }

    fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// Padding after the input that the last window reaches (explicit end padding for
    /// oneDNN, whose output size follows from it).
    fn end_padding(&self) -> (usize, usize) {
        let end = |o: usize, k: usize, s: usize, before: usize, n: usize| {
            ((o - 1) * s + k).saturating_sub(n + before)
        };
        (
            end(self.oh, self.kh, self.sh, self.ph.0, self.h),
            end(self.ow, self.kw, self.sw, self.pw.0, self.w),
        )
    }
}

/// Clipped window `[start, end)` of output index `o` and its size within the padded input.
#[inline]
fn window(o: usize, k: usize, s: usize, p: (usize, usize), n: usize) -> (usize, usize, usize) {
    // Work in padded coordinates to stay unsigned.
    let start_p = o * s;
    let end_p = (start_p + k).min(n + p.0 + p.1);
    let padded_len = end_p.saturating_sub(start_p);
    let start = start_p.saturating_sub(p.0).min(n);
    let end = end_p.saturating_sub(p.0).min(n);
    (start, end.max(start), padded_len)
}

/// PyTorch's `pooling_output_shape` for one spatial dimension (dilation 1).
fn out_size(
    op: &'static str,
    what: &'static str,
    n: usize,
    k: usize,
    s: usize,
    p: usize,
    ceil: bool,
) -> Result<usize, KernelError> {
    let num = (n + 2 * p) as i64 - k as i64 + if ceil { s as i64 - 1 } else { 0 };
    let mut out = num.div_euclid(s as i64) + 1;
    // The last window must start inside the input or the left padding.
    if ceil && out > 0 && (out - 1) * s as i64 >= (n + p) as i64 {
        out -= 1;
    }
    if out < 1 {
        return Err(KernelError::Param {
            op,
            what,
            got: format!("input {n} + 2×padding {p}"),
            expected: format!("at least the kernel size {k} (or ceil mode)"),
        });
    }
    Ok(out as usize)
}

fn nonzero(op: &'static str, pairs: &[(&'static str, usize)]) -> Result<(), KernelError> {
    for &(what, v) in pairs {
        if v == 0 {
            return Err(KernelError::Param {
                op,
                what,
                got: "0".into(),
                expected: "at least 1".into(),
            });
        }
    }
    Ok(())
}

/// PyTorch's geometry: symmetric padding, optional ceil mode.
fn geometry(
    op: &'static str,
    dims: &[usize],
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    ceil: bool,
) -> Result<Geometry, KernelError> {
    nonzero(
        op,
        &[
            ("kernel height", kernel.0),
            ("kernel width", kernel.1),
            ("stride height", stride.0),
            ("stride width", stride.1),
        ],
    )?;
    for (what, p, k) in [
        ("padding height", padding.0, kernel.0),
        ("padding width", padding.1, kernel.1),
    ] {
        if p > k / 2 {
            return Err(KernelError::Param {
                op,
                what,
                got: p.to_string(),
                expected: format!("at most half the kernel size ({})", k / 2),
            });
        }
    }
    let (h, w) = (dims[2], dims[3]);
    let oh = out_size(op, "height", h, kernel.0, stride.0, padding.0, ceil)?;
    let ow = out_size(op, "width", w, kernel.1, stride.1, padding.1, ceil)?;
    Ok(Geometry {
        n: dims[0],
        c: dims[1],
        kh: kernel.0,
        kw: kernel.1,
        sh: stride.0,
        sw: stride.1,
        ph: (padding.0, padding.0),
        pw: (padding.1, padding.1),
        h,
        w,
        oh,
        ow,
    })
}

/// Output size and padding `(before, after)` of TF's "SAME" layout along one dimension.
pub fn same_padding(n: usize, k: usize, s: usize) -> (usize, (usize, usize)) {
    let out = n.div_ceil(s.max(1));
    let total = ((out.saturating_sub(1)) * s + k).saturating_sub(n);
    (out, (total / 2, total - total / 2))
}

fn same_geometry(
    op: &'static str,
    dims: &[usize],
    kernel: usize,
    stride: usize,
) -> Result<Geometry, KernelError> {
    nonzero(op, &[("kernel", kernel), ("stride", stride)])?;
    let (h, w) = (dims[2], dims[3]);
    let (oh, ph) = same_padding(h, kernel, stride);
    let (ow, pw) = same_padding(w, kernel, stride);
    if ph.0 >= kernel || pw.0 >= kernel || ph.1 >= kernel || pw.1 >= kernel {
        return Err(KernelError::Param {
            op,
            what: "stride",
            got: stride.to_string(),
            expected: format!("at most the kernel size {kernel}, so no window lies in padding"),
        });
    }
    Ok(Geometry {
        n: dims[0],
        c: dims[1],
        kh: kernel,
        kw: kernel,
        sh: stride,
        sw: stride,
        ph,
        pw,
        h,
        w,
        oh,
        ow,
    })
}

/// Routes a validated pooling: stock candle ops, or this crate's op on its backend.
fn pool(
    op: &'static str,
    x: &Tensor,
    kind: PoolKind,
    geometry: impl FnOnce(&[usize]) -> Result<Geometry, KernelError>,
) -> candle_core::Result<Tensor> {
    if x.rank() != 4 {
        return Err(KernelError::Shape {
            op,
            what: "input",
            got: x.dims().to_vec(),
            expected: "4 dimensions (N, C, H, W)".into(),
        }
        .into());
    }
    let g = geometry(x.dims())?;
    match route(x)? {
        Route::Stock => crate::stock::pool(x, &g, kind),
        Route::Kernels(backend) => {
            let x = prepare(x, 4, op, "input")?;
            let training = x.track_op();
            x.apply_op1(Pool {
                g,
                kind,
                backend,
                training,
                saved: Arc::new(Mutex::new(None)),
            })
        }
    }
}

/// Max pooling over NCHW tensors with PyTorch semantics, differentiable.
///
/// Padding counts as −∞; with `ceil_mode` the last window may overhang the input but
/// must start inside the input or the left padding. The backward pass routes each output
/// gradient to the (first) maximum of its window, remembered from the forward pass.
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    ceil_mode: bool,
) -> candle_core::Result<Tensor> {
    const OP: &str = "max_pool2d";
    pool(OP, x, PoolKind::Max, |d| {
        geometry(OP, d, kernel, stride, padding, ceil_mode)
    })
}

/// Average pooling over NCHW tensors with PyTorch semantics, differentiable.
///
/// The divisor is the window size clipped to the padded input (`count_include_pad`) or
/// to the input itself (otherwise), exactly as `torch.nn.functional.avg_pool2d`.
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    ceil_mode: bool,
    count_include_pad: bool,
) -> candle_core::Result<Tensor> {
    const OP: &str = "avg_pool2d";
    let kind = PoolKind::Avg {
        include_pad: count_include_pad,
    };
    pool(OP, x, kind, |d| {
        geometry(OP, d, kernel, stride, padding, ceil_mode)
    })
}

/// Max pooling with TF's "SAME" padding (output `ceil(in / stride)`; padding never wins).
pub fn max_pool2d_same(x: &Tensor, kernel: usize, stride: usize) -> candle_core::Result<Tensor> {
    const OP: &str = "max_pool2d_same";
    pool(OP, x, PoolKind::Max, |d| {
        same_geometry(OP, d, kernel, stride)
    })
}

/// Average pooling with TF's "SAME" padding (the divisor counts real elements only).
pub fn avg_pool2d_same(x: &Tensor, kernel: usize, stride: usize) -> candle_core::Result<Tensor> {
    const OP: &str = "avg_pool2d_same";
    let kind = PoolKind::Avg { include_pad: false };
    pool(OP, x, kind, |d| same_geometry(OP, d, kernel, stride))
}

/// What a forward pass keeps for its backward pass.
enum Saved {
    /// Rust max pooling: the input index of every output's maximum.
    Argmax(Arc<Vec<u32>>),
    /// oneDNN's workspace (max) or nothing (average), for its backward primitive.
    OneDnn(Arc<vct_onednn::PoolWorkspace>),
    /// Rust average pooling: nothing to keep.
    Nothing,
}

/// The forward pooling op.
struct Pool {
    g: Geometry,
    kind: PoolKind,
    backend: KernelBackend,
    /// Whether a backward pass may follow (oneDNN then keeps a workspace).
    training: bool,
    saved: Arc<Mutex<Option<Saved>>>,
}

/// Marks an output whose window held no input element (cannot happen with valid geometry).
const NO_ARGMAX: u32 = u32::MAX;

/// The oneDNN form of a pooling, or why it has none.
fn dnnl_pool(
    g: &Geometry,
    kind: PoolKind,
) -> Result<(vct_onednn::Pool2dShape, vct_onednn::PoolKind), String> {
    let pad_end = g.end_padding();
    let s = vct_onednn::Pool2dShape {
        n: g.n,
        c: g.c,
        h: g.h,
        w: g.w,
        kernel: (g.kh, g.kw),
        stride: (g.sh, g.sw),
        pad_begin: (g.ph.0, g.pw.0),
        pad_end,
    };
    let k = match kind {
        PoolKind::Max => vct_onednn::PoolKind::Max,
        PoolKind::Avg { include_pad: false } => vct_onednn::PoolKind::AvgExcludePad,
        PoolKind::Avg { include_pad: true } => {
            // oneDNN divides by the whole window; PyTorch clips the divisor where a
            // ceil-mode window overhangs the padding.
            if pad_end.0 > g.ph.1 || pad_end.1 > g.pw.1 {
                return Err(format!(
                    "average pooling including padding whose last window overhangs the \
                     padding ({pad_end:?} > {:?})",
                    (g.ph.1, g.pw.1)
                ));
            }
            vct_onednn::PoolKind::AvgIncludePad
        }
    };
    if (s.out_h(), s.out_w()) != (g.oh, g.ow) || s.validate("pool2d").is_err() {
        return Err(format!("no explicit-padding form of {g:?}"));
    }
    Ok((s, k))
}

impl Pool {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Option<Saved>>, KernelError> {
        self.saved
            .lock()
            .map_err(|_| KernelError::MissingForwardState { op: "pool2d" })
    }
}

impl CustomOp1 for Pool {
    fn name(&self) -> &'static str {
        "vct-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        const OP: &str = "pool2d";
        let _span = crate::profile::Span::new(crate::profile::Kernel::PoolForward);
        let x = f32_slice(s, l, OP, "input")?;
        let g = self.g;
        let shape = Shape::from((g.n, g.c, g.oh, g.ow));
        let mut out = vec![0f32; g.n * g.c * g.out_plane()];
        if self.backend == KernelBackend::OneDnn {
            match dnnl_pool(&g, self.kind) {
                Ok((ds, dk)) => {
                    let ran = attempt(OpKind::Pool, OP, || {
                        if self.training {
                            vct_onednn::pool2d_forward_training(&ds, dk, x, &mut out).map(Some)
                        } else {
                            vct_onednn::pool2d_forward(&ds, dk, x, &mut out).map(|()| None)
                        }
                    })?;
                    if let Some(ws) = ran {
                        if let Some(ws) = ws {
                            *self.lock()? = Some(Saved::OneDnn(Arc::new(ws)));
                        }
                        return Ok((CpuStorage::F32(out), shape));
                    }
                }
                Err(why) => declined(OpKind::Pool, OP, || why),
            }
        }
        let (ip, op) = (g.in_plane(), g.out_plane());
        match self.kind {
            PoolKind::Max if !self.training => {
                // Nothing will ask for the gradient: no argmax to keep.
                if op > 0 && ip > 0 {
                    out.par_chunks_mut(op)
                        .zip(x.par_chunks(ip))
                        .for_each_init(Vec::new, |cols, (o, xp)| max_plane_value(&g, xp, o, cols));
                }
                *self.lock()? = Some(Saved::Nothing);
            }
            PoolKind::Max => {
                let mut arg = vec![0u32; out.len()];
                if op > 0 && ip > 0 {
                    out.par_chunks_mut(op)
                        .zip(arg.par_chunks_mut(op))
                        .zip(x.par_chunks(ip))
                        .for_each(|((o, a), xp)| max_plane(&g, xp, o, a));
                }
                *self.lock()? = Some(Saved::Argmax(Arc::new(arg)));
            }
            PoolKind::Avg { include_pad } => {
                if op > 0 && ip > 0 {
                    out.par_chunks_mut(op)
                        .zip(x.par_chunks(ip))
                        .for_each(|(o, xp)| avg_plane(&g, include_pad, xp, o));
                }
                *self.lock()? = Some(Saved::Nothing);
            }
        }
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let saved = match self.lock()?.as_ref() {
            Some(Saved::Argmax(a)) => Saved::Argmax(a.clone()),
            Some(Saved::OneDnn(w)) => Saved::OneDnn(w.clone()),
            Some(Saved::Nothing) => Saved::Nothing,
            None => return Err(KernelError::MissingForwardState { op: "pool2d" }.into()),
        };
        let grad = grad_res.contiguous()?;
        let dx = grad.apply_op1_no_bwd(&PoolBackward {
            g: self.g,
            kind: self.kind,
            saved,
            in_shape: arg.shape().clone(),
        })?;
        Ok(Some(dx))
    }
}

fn max_plane(g: &Geometry, x: &[f32], out: &mut [f32], arg: &mut [u32]) {
    for oy in 0..g.oh {
        let (y0, y1, _) = g.rows(oy);
        for ox in 0..g.ow {
            let (x0, x1, _) = g.cols(ox);
            let mut best = f32::NEG_INFINITY;
            let mut best_i = NO_ARGMAX;
            for iy in y0..y1 {
                let row = &x[iy * g.w..(iy + 1) * g.w];
                for (ix, &v) in row.iter().enumerate().take(x1).skip(x0) {
                    // As PyTorch: strictly greater keeps the first maximum; NaN wins.
                    if v > best || v.is_nan() || best_i == NO_ARGMAX {
                        best = v;
                        best_i = (iy * g.w + ix) as u32;
                        if v.is_nan() {
                            break;
                        }
                    }
                }
            }
            out[oy * g.ow + ox] = best;
            arg[oy * g.ow + ox] = best_i;
        }
    }
}

/// The larger of `a` and `b`, NaN if either is (the first NaN kept), as
/// [`max_plane`] decides.
#[inline(always)]
fn max_nan(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() {
        b
    } else {
        a
    }
}

/// [`max_plane`]'s values without the argmax, for inference: per output row, the
/// maximum down each input column of the window's rows (contiguous, vectorized) into
/// `cols`, then across each window's columns.
fn max_plane_value(g: &Geometry, x: &[f32], out: &mut [f32], cols: &mut Vec<f32>) {
    for (oy, o) in out.chunks_exact_mut(g.ow).enumerate() {
        let (y0, y1, _) = g.rows(oy);
        cols.clear();
        cols.extend_from_slice(&x[y0 * g.w..][..g.w]);
        for iy in y0 + 1..y1 {
            for (c, &v) in cols.iter_mut().zip(&x[iy * g.w..][..g.w]) {
                *c = max_nan(*c, v);
            }
        }
        for (ox, o) in o.iter_mut().enumerate() {
            let (x0, x1, _) = g.cols(ox);
            *o = cols[x0 + 1..x1]
                .iter()
                .fold(cols[x0], |b, &v| max_nan(b, v));
        }
    }
}

fn avg_plane(g: &Geometry, include_pad: bool, xp: &[f32], o: &mut [f32]) {
    for oy in 0..g.oh {
        let r = g.rows(oy);
        for ox in 0..g.ow {
            let cw = g.cols(ox);
            let mut sum = 0f32;
            for iy in r.0..r.1 {
                sum += xp[iy * g.w + cw.0..iy * g.w + cw.1].iter().sum::<f32>();
            }
            o[oy * g.ow + ox] = sum / g.divisor(r, cw, include_pad);
        }
    }
}

/// The input gradient of a pooling, from the output gradient and what the forward kept.
struct PoolBackward {
    g: Geometry,
    kind: PoolKind,
    saved: Saved,
    in_shape: Shape,
}

impl CustomOp1 for PoolBackward {
    fn name(&self) -> &'static str {
        "vct-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        const OP: &str = "pool2d backward";
        let _span = crate::profile::Span::new(crate::profile::Kernel::PoolBackward);
        let gy = f32_slice(s, l, OP, "output gradient")?;
        let g = self.g;
        let (ip, op) = (g.in_plane(), g.out_plane());
        if gy.len() != g.n * g.c * op {
            return Err(KernelError::Shape {
                op: OP,
                what: "output gradient",
                got: l.dims().to_vec(),
                expected: format!(
                    "({}, {}, {}, {}) as the forward output",
                    g.n, g.c, g.oh, g.ow
                ),
            }
            .into());
        }
        let mut dx = vec![0f32; self.in_shape.elem_count()];
        if op == 0 || ip == 0 {
            return Ok((CpuStorage::F32(dx), self.in_shape.clone()));
        }
        match (&self.saved, self.kind) {
            (Saved::OneDnn(ws), _) => {
                let (ds, dk) = dnnl_pool(&g, self.kind).map_err(|what| KernelError::Param {
                    op: OP,
                    what: "geometry",
                    got: what,
                    expected: "the geometry its forward pass ran on oneDNN with".into(),
                })?;
                let ran = attempt(OpKind::Pool, OP, || {
                    vct_onednn::pool2d_backward(&ds, dk, gy, &mut dx, ws)
                })?;
                if ran.is_none() {
                    // Average pooling needs nothing from the forward pass; a max pooling
                    // without its argmax cannot be redone here.
                    match self.kind {
                        PoolKind::Avg { include_pad } => avg_backward(&g, include_pad, gy, &mut dx),
                        PoolKind::Max => {
                            return Err(KernelError::MissingForwardState { op: OP }.into())
                        }
                    }
                }
            }
            (Saved::Argmax(argmax), _) => {
                dx.par_chunks_mut(ip)
                    .zip(gy.par_chunks(op))
                    .zip(argmax.par_chunks(op))
                    .for_each(|((d, gp), ap)| {
                        for (&gv, &a) in gp.iter().zip(ap) {
                            if let Some(slot) = d.get_mut(a as usize) {
                                *slot += gv;
                            }
                        }
                    });
            }
            (Saved::Nothing, PoolKind::Avg { include_pad }) => {
                avg_backward(&g, include_pad, gy, &mut dx)
            }
            (Saved::Nothing, PoolKind::Max) => {
                return Err(KernelError::MissingForwardState { op: OP }.into())
            }
        }
        Ok((CpuStorage::F32(dx), self.in_shape.clone()))
    }
}

/// Spreads each output gradient evenly over its window.
fn avg_backward(g: &Geometry, include_pad: bool, gy: &[f32], dx: &mut [f32]) {
    let (ip, op) = (g.in_plane(), g.out_plane());
    dx.par_chunks_mut(ip)
        .zip(gy.par_chunks(op))
        .for_each(|(d, gp)| {
            for oy in 0..g.oh {
                let r = g.rows(oy);
                for ox in 0..g.ow {
                    let cw = g.cols(ox);
                    let v = gp[oy * g.ow + ox] / g.divisor(r, cw, include_pad);
                    for iy in r.0..r.1 {
                        for slot in &mut d[iy * g.w + cw.0..iy * g.w + cw.1] {
                            *slot += v;
                        }
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, finite_diff_check, Rng};
    use candle_core::{Device, Var};

    /// Output positions by enumerating window starts in padded coordinates (an
    /// independent statement of PyTorch's rule, not the closed formula above).
    fn ref_starts(n: usize, k: usize, s: usize, p: usize, ceil: bool) -> Vec<i64> {
        let span = (n + 2 * p) as i64;
        let mut v = Vec::new();
        let mut t = 0i64;
        loop {
            let start = t * s as i64;
            let full = start + k as i64 <= span;
            // Ceil mode also keeps a partial window if the step before it was not the
            // last full one... i.e. if it covers elements the full windows missed, and
            // it starts inside the input or the left padding.
            let partial_ok = ceil && start < span && start - (p as i64) < n as i64 && {
                let prev_end = if t == 0 {
                    0
                } else {
                    start - s as i64 + k as i64
                };
                prev_end < span
            };
            if full || partial_ok {
                v.push(start - p as i64);
                t += 1;
            } else {
                break;
            }
        }
        v
    }

    #[allow(clippy::too_many_arguments)]
    fn ref_pool(
        x: &[f32],
        dims: (usize, usize, usize, usize),
        k: (usize, usize),
        s: (usize, usize),
        p: (usize, usize),
        ceil: bool,
        avg: Option<bool>,
    ) -> (Vec<f64>, usize, usize) {
        let (n, c, h, w) = dims;
        let rs = ref_starts(h, k.0, s.0, p.0, ceil);
        let cs = ref_starts(w, k.1, s.1, p.1, ceil);
        let mut out = Vec::new();
        for plane in 0..n * c {
            for &r0 in &rs {
                for &c0 in &cs {
                    let mut best = f64::NEG_INFINITY;
                    let mut sum = 0f64;
                    let mut inside = 0usize;
                    let mut in_padded = 0usize;
                    for dy in 0..k.0 as i64 {
                        for dx in 0..k.1 as i64 {
                            let (iy, ix) = (r0 + dy, c0 + dx);
                            let in_pad_y = iy >= -(p.0 as i64) && iy < (h + p.0) as i64;
                            let in_pad_x = ix >= -(p.1 as i64) && ix < (w + p.1) as i64;
                            if in_pad_y && in_pad_x {
                                in_padded += 1;
                            }
                            if iy >= 0 && iy < h as i64 && ix >= 0 && ix < w as i64 {
                                let v = x[plane * h * w + iy as usize * w + ix as usize] as f64;
                                best = best.max(v);
                                sum += v;
                                inside += 1;
                            }
                        }
                    }
                    out.push(match avg {
                        None => best,
                        Some(true) => sum / in_padded as f64,
                        Some(false) => sum / inside as f64,
                    });
                }
            }
        }
        (out, rs.len(), cs.len())
    }

    /// (dims, kernel, stride, padding, ceil mode).
    type Case = ((usize, usize, usize, usize), usize, usize, usize, bool);

    fn cases() -> Vec<Case> {
        // (dims, kernel, stride, padding, ceil)
        vec![
            ((1, 1, 7, 7), 3, 2, 1, false),
            ((2, 3, 8, 9), 3, 2, 1, true),
            ((1, 2, 5, 6), 3, 2, 0, true),
            ((2, 2, 10, 7), 3, 1, 1, false),
            ((1, 3, 9, 11), 2, 2, 0, true),
            ((3, 1, 6, 5), 3, 3, 1, true),
            ((1, 1, 4, 4), 4, 1, 2, true),
            ((2, 2, 13, 12), 5, 2, 2, true),
            ((1, 4, 3, 3), 3, 2, 0, false),
            ((1, 1, 1, 1), 1, 1, 0, false),
            ((1, 2, 2, 2), 3, 2, 0, true),
        ]
    }

    #[test]
    fn max_pool_propagates_nan_as_pytorch() -> candle_core::Result<()> {
        // 1×1×4×4, NaN at (1, 1): 2×2 windows, stride 2 → only the first window is NaN.
        let mut v: Vec<f32> = (0..16).map(|i| i as f32).collect();
        v[5] = f32::NAN;
        let x = Tensor::from_vec(v, (1, 1, 4, 4), &candle_core::Device::Cpu)?;
        let tracked = candle_core::Var::from_tensor(&x)?;
        for x in [&x, tracked.as_tensor()] {
            let y: Vec<f32> = max_pool2d(x, (2, 2), (2, 2), (0, 0), false)?
                .flatten_all()?
                .to_vec1()?;
            assert!(y[0].is_nan(), "{y:?}");
            assert_eq!(&y[1..], &[7.0, 13.0, 15.0], "{y:?}");
        }
        Ok(())
    }

    #[test]
    fn max_pool_matches_reference() -> candle_core::Result<()> {
        let mut rng = Rng::new(1);
        for (dims, k, s, p, ceil) in cases() {
            let x = rng.tensor(&[dims.0, dims.1, dims.2, dims.3]);
            let y = max_pool2d(&x, (k, k), (s, s), (p, p), ceil)?;
            let (r, oh, ow) = ref_pool(
                &x.flatten_all()?.to_vec1()?,
                dims,
                (k, k),
                (s, s),
                (p, p),
                ceil,
                None,
            );
            assert_eq!(
                y.dims(),
                &[dims.0, dims.1, oh, ow],
                "{dims:?} k{k} s{s} p{p}"
            );
            assert_close(&y.flatten_all()?.to_vec1()?, &r, 1e-6);
            // The same values where the input tracks gradients (the argmax kept).
            let tracked = candle_core::Var::from_tensor(&x)?;
            let yt = max_pool2d(tracked.as_tensor(), (k, k), (s, s), (p, p), ceil)?;
            assert_close(&yt.flatten_all()?.to_vec1()?, &r, 1e-6);
        }
        Ok(())
    }

    #[test]
    fn avg_pool_matches_reference() -> candle_core::Result<()> {
        let mut rng = Rng::new(2);
        for include in [true, false] {
            for (dims, k, s, p, ceil) in cases() {
                let x = rng.tensor(&[dims.0, dims.1, dims.2, dims.3]);
                let y = avg_pool2d(&x, (k, k), (s, s), (p, p), ceil, include)?;
                let (r, oh, ow) = ref_pool(
                    &x.flatten_all()?.to_vec1()?,
                    dims,
                    (k, k),
                    (s, s),
                    (p, p),
                    ceil,
                    Some(include),
                );
                assert_eq!(y.dims(), &[dims.0, dims.1, oh, ow]);
                assert_close(&y.flatten_all()?.to_vec1()?, &r, 1e-5);
            }
        }
        Ok(())
    }

    /// TF "SAME" reference: explicit padded input, real elements only.
    fn ref_same(
        x: &[f32],
        dims: (usize, usize, usize, usize),
        k: usize,
        s: usize,
        avg: bool,
    ) -> Vec<f64> {
        let (n, c, h, w) = dims;
        let pad = |len: usize| {
            let out = len.div_ceil(s);
            let total = ((out - 1) * s + k).saturating_sub(len);
            (out, (total / 2) as i64)
        };
        let ((oh, pt), (ow, pl)) = (pad(h), pad(w));
        let mut out = Vec::new();
        for plane in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut best, mut sum, mut cnt) = (f64::NEG_INFINITY, 0f64, 0usize);
                    for dy in 0..k as i64 {
                        for dx in 0..k as i64 {
                            let iy = (oy * s) as i64 + dy - pt;
                            let ix = (ox * s) as i64 + dx - pl;
                            if iy >= 0 && ix >= 0 && iy < h as i64 && ix < w as i64 {
                                let v = x[plane * h * w + iy as usize * w + ix as usize] as f64;
                                best = best.max(v);
                                sum += v;
                                cnt += 1;
                            }
                        }
                    }
                    out.push(if avg { sum / cnt as f64 } else { best });
                }
            }
        }
        out
    }

    #[test]
    fn same_padding_variants_match_reference() -> candle_core::Result<()> {
        let mut rng = Rng::new(7);
        for (dims, k, s) in [
            ((2, 2, 7, 8), 3, 2),
            ((1, 3, 6, 6), 3, 1),
            ((1, 1, 9, 5), 2, 2),
            ((2, 1, 5, 5), 3, 3),
        ] {
            let x = rng.tensor(&[dims.0, dims.1, dims.2, dims.3]);
            let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let (oh, ow) = (dims.2.div_ceil(s), dims.3.div_ceil(s));
            let y = max_pool2d_same(&x, k, s)?;
            assert_eq!(y.dims(), &[dims.0, dims.1, oh, ow]);
            assert_close(
                &y.flatten_all()?.to_vec1()?,
                &ref_same(&xs, dims, k, s, false),
                1e-6,
            );
            let y = avg_pool2d_same(&x, k, s)?;
            assert_close(
                &y.flatten_all()?.to_vec1()?,
                &ref_same(&xs, dims, k, s, true),
                1e-5,
            );
            let shape = [dims.0, dims.1, dims.2, dims.3];
            finite_diff_check(
                &rng.distinct_tensor(&shape),
                |t| max_pool2d_same(t, k, s),
                8,
            )?;
            finite_diff_check(&x, |t| avg_pool2d_same(t, k, s), 9)?;
        }
        Ok(())
    }

    #[test]
    fn known_output_sizes() -> candle_core::Result<()> {
        let x = Tensor::zeros((1, 1, 112, 112), candle_core::DType::F32, &Device::Cpu)?;
        // ResNet stem pool and BN-Inception's ceil-mode pool: both 112 -> 56.
        assert_eq!(
            max_pool2d(&x, (3, 3), (2, 2), (1, 1), false)?.dims(),
            &[1, 1, 56, 56]
        );
        assert_eq!(
            max_pool2d(&x, (3, 3), (2, 2), (0, 0), true)?.dims(),
            &[1, 1, 56, 56]
        );
        assert_eq!(
            max_pool2d(&x, (3, 3), (2, 2), (0, 0), false)?.dims(),
            &[1, 1, 55, 55]
        );
        // span 9, (9 - 2) / 2 rounded up + 1 = 5 windows; the fifth starts at padded 8,
        // inside the right padding (8 >= 7 + 1), so PyTorch drops it: 4.
        let x = Tensor::zeros((1, 1, 7, 7), candle_core::DType::F32, &Device::Cpu)?;
        assert_eq!(
            avg_pool2d(&x, (2, 2), (2, 2), (1, 1), true, true)?.dims(),
            &[1, 1, 4, 4]
        );
        Ok(())
    }

    #[test]
    fn invalid_arguments_are_errors() {
        let x = Tensor::zeros((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool2d(&x, (3, 3), (0, 1), (0, 0), false).is_err());
        assert!(max_pool2d(&x, (3, 3), (1, 1), (2, 2), false).is_err());
        assert!(max_pool2d(&x, (7, 7), (1, 1), (0, 0), false).is_err());
        let x3 = Tensor::zeros((1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(avg_pool2d(&x3, (2, 2), (1, 1), (0, 0), false, true).is_err());
        // Ceil mode accepts an input smaller than the window (PyTorch: 2×2 with 3×3/2
        // gives 1×1, BN-Inception's last pool at a 32×32 input); floor mode does not.
        let small = Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool2d(&small, (3, 3), (2, 2), (0, 0), false).is_err());
        assert_eq!(
            max_pool2d(&small, (3, 3), (2, 2), (0, 0), true)
                .unwrap()
                .dims(),
            &[1, 1, 1, 1]
        );
    }

    #[test]
    fn other_dtypes_and_the_candle_backend_use_stock_ops() -> candle_core::Result<()> {
        let mut rng = Rng::new(31);
        for (dims, k, s, p, ceil) in cases() {
            let x = rng.distinct_tensor(&[dims.0, dims.1, dims.2, dims.3]);
            let xd = x.to_dtype(candle_core::DType::F64)?;
            for include in [None, Some(true), Some(false)] {
                let run = |t: &Tensor| match include {
                    None => max_pool2d(t, (k, k), (s, s), (p, p), ceil),
                    Some(i) => avg_pool2d(t, (k, k), (s, s), (p, p), ceil, i),
                };
                let ours: Vec<f32> = run(&x)?.flatten_all()?.to_vec1()?;
                let f64s: Vec<f64> = run(&xd)?.flatten_all()?.to_vec1()?;
                assert_close(&ours, &f64s, 1e-6);
                // The stock path's gradients too (candle autograd through strided views).
                let stock = crate::with_backend(crate::KernelBackend::Candle, || {
                    let v = Var::from_tensor(&x)?;
                    let y = run(v.as_tensor())?;
                    let g = y.sum_all()?.backward()?;
                    let dx: Vec<f32> = g.get(&v).expect("a gradient").flatten_all()?.to_vec1()?;
                    Ok::<_, candle_core::Error>((y.flatten_all()?.to_vec1::<f32>()?, dx))
                })?;
                let v = Var::from_tensor(&x)?;
                let y = run(v.as_tensor())?;
                let g = y.sum_all()?.backward()?;
                let dx: Vec<f32> = g.get(&v).expect("a gradient").flatten_all()?.to_vec1()?;
                let to64 = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
                assert_close(&stock.0, &to64(&ours), 1e-6);
                assert_close(&stock.1, &to64(&dx), 1e-5);
            }
        }
        Ok(())
    }

    #[test]
    fn non_contiguous_input_is_accepted() -> candle_core::Result<()> {
        let mut rng = Rng::new(3);
        let x = rng.tensor(&[2, 3, 6, 5]);
        let xt = x.transpose(2, 3)?;
        let y = max_pool2d(&xt, (3, 3), (2, 2), (1, 1), false)?;
        let y2 = max_pool2d(&xt.contiguous()?, (3, 3), (2, 2), (1, 1), false)?;
        assert_close(
            &y.flatten_all()?.to_vec1()?,
            &y2.flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .map(|&v| v as f64)
                .collect::<Vec<_>>(),
            0.0,
        );
        Ok(())
    }

    #[test]
    fn max_pool_gradient_matches_finite_differences() -> candle_core::Result<()> {
        for (dims, k, s, p, ceil) in cases().into_iter().take(6) {
            let shape = [dims.0, dims.1, dims.2, dims.3];
            // Distinct values, spaced well above the finite-difference step, so the
            // argmax does not move under the perturbation.
            let mut rng = Rng::new(4);
            let x = rng.distinct_tensor(&shape);
            finite_diff_check(&x, |t| max_pool2d(t, (k, k), (s, s), (p, p), ceil), 5)?;
        }
        Ok(())
    }

    #[test]
    fn avg_pool_gradient_matches_finite_differences() -> candle_core::Result<()> {
        for include in [true, false] {
            for (dims, k, s, p, ceil) in cases() {
                let shape = [dims.0, dims.1, dims.2, dims.3];
                let mut rng = Rng::new(5);
                let x = rng.tensor(&shape);
                finite_diff_check(
                    &x,
                    |t| avg_pool2d(t, (k, k), (s, s), (p, p), ceil, include),
                    6,
                )?;
            }
        }
        Ok(())
    }

    #[test]
    fn max_pool_backward_routes_to_first_maximum() -> candle_core::Result<()> {
        // A constant plane: every window's maximum is tied; PyTorch picks the first.
        let x = Var::from_tensor(&Tensor::ones(
            (1, 1, 3, 3),
            candle_core::DType::F32,
            &Device::Cpu,
        )?)?;
        let y = max_pool2d(&x, (2, 2), (1, 1), (0, 0), false)?;
        let g = y.sum_all()?.backward()?;
        let dx: Vec<f32> = g
            .get(&x)
            .ok_or_else(|| candle_core::Error::Msg("no grad".into()))?
            .flatten_all()?
            .to_vec1()?;
        assert_eq!(dx, vec![1., 1., 0., 1., 1., 0., 0., 0., 0.]);
        Ok(())
    }
}
