//! oneDNN convolution, batch norm and pooling as candle custom ops with their own backward.
//!
//! The functions mirror `vct-kernels`' (same arguments, PyTorch semantics) so a backend
//! switch can call either. Inputs must be `f32` CPU tensors; non-contiguous ones are
//! made contiguous first. Gradients are computed only for inputs that track them (the
//! network's input image gets no input gradient). Without the `link` feature every op
//! returns an error wrapping [`Error::NotBuilt`].

use crate::{BatchNormShape, Conv2dShape, Error, Pool2dShape, PoolKind, PoolWorkspace};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use std::sync::{Arc, Mutex};

type CResult<T> = candle_core::Result<T>;

/// Checks an argument is an f32 CPU tensor of `rank` dimensions; returns it contiguous.
fn prepare(t: &Tensor, rank: usize, op: &'static str, what: &'static str) -> CResult<Tensor> {
    if !t.device().is_cpu() {
        return Err(Error::Shape {
            op,
            what,
            got: format!("a tensor on {:?}", t.device().location()),
            expected: "a CPU tensor".into(),
        }
        .into());
    }
    if t.dtype() != DType::F32 {
        return Err(Error::Shape {
            op,
            what,
            got: format!("dtype {:?}", t.dtype()),
            expected: "f32".into(),
        }
        .into());
    }
    if t.rank() != rank {
        return Err(Error::Shape {
            op,
            what,
            got: format!("shape {:?}", t.dims()),
            expected: format!("{rank} dimensions"),
        }
        .into());
    }
    // Free for contiguous tensors; differentiable otherwise.
    t.contiguous()
}

/// The contiguous f32 data a layout designates in a CPU storage.
fn slice<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &'static str,
    what: &'static str,
) -> CResult<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        return Err(Error::Shape {
            op,
            what,
            got: "a non-f32 storage".into(),
            expected: "f32".into(),
        }
        .into());
    };
    let (a, b) = l.contiguous_offsets().ok_or(Error::Shape {
        op,
        what,
        got: format!("strides {:?}", l.stride()),
        expected: "a contiguous layout".into(),
    })?;
    v.get(a..b).ok_or_else(|| {
        Error::Shape {
            op,
            what,
            got: format!("offsets {a}..{b} in {} values", v.len()),
            expected: "offsets inside the storage".into(),
        }
        .into()
    })
}

fn out(v: Vec<f32>, shape: impl Into<Shape>) -> (CpuStorage, Shape) {
    (CpuStorage::F32(v), shape.into())
}

// ------------------------------------------------------------------ convolution

/// 2-D convolution (PyTorch's `conv2d` without dilation) through oneDNN, differentiable.
///
/// `x` is `(N, C_in, H, W)`, `w` `(C_out, C_in / groups, kh, kw)`, `bias` `(C_out,)`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: (usize, usize),
    groups: usize,
) -> CResult<Tensor> {
    const OP: &str = "onednn conv2d";
    let x = prepare(x, 4, OP, "input")?;
    let w = prepare(w, 4, OP, "weight")?;
    let (xd, wd) = (x.dims(), w.dims());
    let s = Conv2dShape {
        n: xd[0],
        c_in: xd[1],
        h: xd[2],
        w: xd[3],
        c_out: wd[0],
        kh: wd[2],
        kw: wd[3],
        stride,
        pad: padding,
        groups,
    };
    s.validate(OP)?;
    if wd[1] * groups != xd[1] {
        return Err(Error::Shape {
            op: OP,
            what: "weight dim 1",
            got: wd[1].to_string(),
            expected: format!("C_in / groups = {} / {groups}", xd[1]),
        }
        .into());
    }
    match bias {
        None => x.apply_op2(&w, ConvFwd { s }),
        Some(b) => {
            let b = prepare(b, 1, OP, "bias")?;
            if b.dims() != [s.c_out] {
                return Err(Error::Shape {
                    op: OP,
                    what: "bias",
                    got: format!("shape {:?}", b.dims()),
                    expected: format!("({},)", s.c_out),
                }
                .into());
            }
            x.apply_op3(&w, &b, ConvFwd { s })
        }
    }
}

struct ConvFwd {
    s: Conv2dShape,
}

impl ConvFwd {
    fn run(&self, x: &[f32], w: &[f32], b: Option<&[f32]>) -> CResult<(CpuStorage, Shape)> {
        let s = &self.s;
        let mut y = vec![0f32; s.dst_len()];
        crate::conv2d_forward(s, x, w, b, &mut y)?;
        Ok(out(y, (s.n, s.c_out, s.out_h(), s.out_w())))
    }

    /// Input, weight and (with `want_db`) bias gradients, each only if wanted.
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        want_db: bool,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let want_dx = x.track_op();
        let want_dw = w.track_op();
        if !want_dx && !want_dw && !want_db {
            return Ok((None, None, None));
        }
        let s = self.s;
        let dy = dy.contiguous()?;
        let bwd = ConvBwd {
            s,
            want_dx,
            want_dw,
            want_db,
        };
        let packed = x.apply_op3_no_bwd(w, &dy, &bwd)?;
        let (lx, lw) = (bwd.dx_len(), bwd.dw_len());
        let dx = want_dx
            .then(|| packed.narrow(0, 0, lx)?.reshape(x.shape()))
            .transpose()?;
        let dw = want_dw
            .then(|| packed.narrow(0, lx, lw)?.reshape(w.shape()))
            .transpose()?;
        let db = want_db
            .then(|| packed.narrow(0, lx + lw, s.c_out))
            .transpose()?;
        Ok((dx, dw, db))
    }
}

impl CustomOp2 for ConvFwd {
    fn name(&self) -> &'static str {
        "onednn-conv2d"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "onednn conv2d", "input")?;
        let w = slice(s2, l2, "onednn conv2d", "weight")?;
        self.run(x, w, None)
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.grads(x, w, dy, false)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for ConvFwd {
    fn name(&self) -> &'static str {
        "onednn-conv2d-bias"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "onednn conv2d", "input")?;
        let w = slice(s2, l2, "onednn conv2d", "weight")?;
        let b = slice(s3, l3, "onednn conv2d", "bias")?;
        self.run(x, w, Some(b))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.grads(x, w, dy, b.track_op())
    }
}

/// Convolution gradients packed in one 1-D tensor `[dx | dw | db]` (absent parts empty).
struct ConvBwd {
    s: Conv2dShape,
    want_dx: bool,
    want_dw: bool,
    want_db: bool,
}

impl ConvBwd {
    fn dx_len(&self) -> usize {
        if self.want_dx {
            self.s.src_len()
        } else {
            0
        }
    }
    fn dw_len(&self) -> usize {
        if self.want_dw || self.want_db {
            self.s.weights_len()
        } else {
            0
        }
    }
}

impl CustomOp3 for ConvBwd {
    fn name(&self) -> &'static str {
        "onednn-conv2d-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        const OP: &str = "onednn conv2d backward";
        let x = slice(s1, l1, OP, "input")?;
        let w = slice(s2, l2, OP, "weight")?;
        let dy = slice(s3, l3, OP, "output gradient")?;
        let (lx, lw) = (self.dx_len(), self.dw_len());
        let lb = if self.want_db { self.s.c_out } else { 0 };
        let mut g = vec![0f32; lx + lw + lb];
        let (dx, rest) = g.split_at_mut(lx);
        let (dw, db) = rest.split_at_mut(lw);
        if self.want_dx {
            crate::conv2d_backward_data(&self.s, w, dy, dx)?;
        }
        // oneDNN computes the bias gradient together with the weights'.
        if lw > 0 {
            let db = if self.want_db { Some(db) } else { None };
            crate::conv2d_backward_weights(&self.s, x, dy, dw, db)?;
        }
        let len = g.len();
        Ok(out(g, len))
    }
}

// ------------------------------------------------------------------ batch norm

/// Per-channel statistics a training-mode batch norm normalised the batch with.
#[derive(Debug, Clone)]
pub struct BatchStats {
    /// Batch mean per channel, shape `(C,)`.
    pub mean: Tensor,
    /// Biased batch variance per channel, shape `(C,)`.
    pub var: Tensor,
    /// Values per channel (N·H·W), for the unbiased running variance.
    pub count: usize,
}

fn bn_prepare(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> CResult<(Tensor, Tensor, Tensor, BatchNormShape, f32)> {
    const OP: &str = "onednn batch_norm";
    let x = prepare(x, 4, OP, "input")?;
    let d = x.dims();
    let s = BatchNormShape {
        n: d[0],
        c: d[1],
        h: d[2],
        w: d[3],
    };
    s.validate(OP)?;
    let gamma = prepare(gamma, 1, OP, "gamma")?;
    let beta = prepare(beta, 1, OP, "beta")?;
    for (what, t) in [("gamma", &gamma), ("beta", &beta)] {
        if t.dims() != [s.c] {
            return Err(Error::Shape {
                op: OP,
                what,
                got: format!("shape {:?}", t.dims()),
                expected: format!("({},), one value per channel", s.c),
            }
            .into());
        }
    }
    let eps32 = eps as f32;
    if !(eps32.is_finite() && eps32 >= 0.0) {
        return Err(Error::Shape {
            op: OP,
            what: "eps",
            got: eps.to_string(),
            expected: "a finite value >= 0 that fits in f32".into(),
        }
        .into());
    }
    Ok((x, gamma, beta, s, eps32))
}

/// Training-mode batch norm (batch statistics) through oneDNN, optionally followed by ReLU.
///
/// Returns `max(bn(x), 0)` with `relu`, else `bn(x)`, and the batch statistics.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> CResult<(Tensor, BatchStats)> {
    let (x, gamma, beta, s, eps) = bn_prepare(x, gamma, beta, eps)?;
    let saved = Arc::new(Mutex::new(None));
    let y = x.apply_op3(
        &gamma,
        &beta,
        BnFwd {
            s,
            eps,
            relu,
            running: None,
            saved: saved.clone(),
        },
    )?;
    let (mean, var) =
        saved
            .lock()
            .map_err(|_| Error::Poisoned)?
            .clone()
            .ok_or(Error::Workspace {
                op: "onednn batch_norm",
                what: "the forward pass kept no statistics".into(),
            })?;
    let stats = BatchStats {
        mean: Tensor::from_vec(mean.to_vec(), s.c, x.device())?,
        var: Tensor::from_vec(var.to_vec(), s.c, x.device())?,
        count: s.n * s.h * s.w,
    };
    Ok((y, stats))
}

/// Evaluation-mode batch norm with running statistics through oneDNN, optionally with ReLU.
///
/// Differentiable w.r.t. `x`, `gamma` and `beta`; the statistics are constants.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    relu: bool,
) -> CResult<Tensor> {
    const OP: &str = "onednn batch_norm";
    let (x, gamma, beta, s, eps) = bn_prepare(x, gamma, beta, eps)?;
    let mut stats = Vec::with_capacity(2);
    for (what, t) in [("running mean", running_mean), ("running var", running_var)] {
        let t = prepare(t, 1, OP, what)?;
        if t.dims() != [s.c] {
            return Err(Error::Shape {
                op: OP,
                what,
                got: format!("shape {:?}", t.dims()),
                expected: format!("({},), one value per channel", s.c),
            }
            .into());
        }
        stats.push(t.to_vec1::<f32>()?);
    }
    let var = stats.pop().unwrap_or_default();
    let mean = stats.pop().unwrap_or_default();
    x.apply_op3(
        &gamma,
        &beta,
        BnFwd {
            s,
            eps,
            relu,
            running: Some((Arc::new(mean), Arc::new(var))),
            saved: Arc::new(Mutex::new(None)),
        },
    )
}

type Stats = (Arc<Vec<f32>>, Arc<Vec<f32>>);

struct BnFwd {
    s: BatchNormShape,
    eps: f32,
    relu: bool,
    /// Running `(mean, var)` in evaluation mode; `None` in training mode.
    running: Option<Stats>,
    /// The batch `(mean, var)` the training-mode forward pass computed.
    saved: Arc<Mutex<Option<Stats>>>,
}

impl CustomOp3 for BnFwd {
    fn name(&self) -> &'static str {
        "onednn-batch-norm"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        const OP: &str = "onednn batch_norm";
        let s = &self.s;
        let x = slice(s1, l1, OP, "input")?;
        let g = slice(s2, l2, OP, "gamma")?;
        let b = slice(s3, l3, OP, "beta")?;
        let mut y = vec![0f32; s.len()];
        match &self.running {
            Some((m, v)) => {
                crate::batch_norm_forward_inference(s, self.eps, x, g, b, m, v, &mut y)?
            }
            None => {
                let mut m = vec![0f32; s.c];
                let mut v = vec![0f32; s.c];
                crate::batch_norm_forward_training(s, self.eps, x, g, b, &mut y, &mut m, &mut v)?;
                *self.saved.lock().map_err(|_| Error::Poisoned)? = Some((Arc::new(m), Arc::new(v)));
            }
        }
        if self.relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        Ok(out(y, (s.n, s.c, s.h, s.w)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (want_dx, want_dg, want_db) = (x.track_op(), gamma.track_op(), beta.track_op());
        if !want_dx && !want_dg && !want_db {
            return Ok((None, None, None));
        }
        let (mean, var) = match &self.running {
            Some(st) => st.clone(),
            None => self
                .saved
                .lock()
                .map_err(|_| Error::Poisoned)?
                .clone()
                .ok_or(Error::Workspace {
                    op: "onednn batch_norm backward",
                    what: "the forward pass kept no statistics".into(),
                })?,
        };
        let s = self.s;
        let bwd = BnBwd {
            s,
            eps: self.eps,
            relu: self.relu,
            global_stats: self.running.is_some(),
            gamma: gamma.to_vec1::<f32>()?,
            mean,
            var,
        };
        let packed = x.apply_op3_no_bwd(&dy.contiguous()?, res, &bwd)?;
        let n = s.len();
        let dx = want_dx
            .then(|| packed.narrow(0, 0, n)?.reshape(x.shape()))
            .transpose()?;
        let dg = want_dg.then(|| packed.narrow(0, n, s.c)).transpose()?;
        let db = want_db
            .then(|| packed.narrow(0, n + s.c, s.c))
            .transpose()?;
        Ok((dx, dg, db))
    }
}

/// Batch-norm gradients packed as `[dx | dgamma | dbeta]`, from `(x, dy, y)`.
struct BnBwd {
    s: BatchNormShape,
    eps: f32,
    relu: bool,
    global_stats: bool,
    gamma: Vec<f32>,
    mean: Arc<Vec<f32>>,
    var: Arc<Vec<f32>>,
}

impl CustomOp3 for BnBwd {
    fn name(&self) -> &'static str {
        "onednn-batch-norm-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        const OP: &str = "onednn batch_norm backward";
        let s = &self.s;
        let x = slice(s1, l1, OP, "input")?;
        let dy = slice(s2, l2, OP, "output gradient")?;
        let masked;
        let dy = if self.relu {
            // ReLU's gradient: zero where the output was clamped (y == 0).
            let y = slice(s3, l3, OP, "output")?;
            masked = dy
                .iter()
                .zip(y)
                .map(|(&g, &v)| if v > 0.0 { g } else { 0.0 })
                .collect::<Vec<f32>>();
            &masked[..]
        } else {
            dy
        };
        let mut g = vec![0f32; s.len() + 2 * s.c];
        let (dx, rest) = g.split_at_mut(s.len());
        let (dgamma, dbeta) = rest.split_at_mut(s.c);
        crate::batch_norm_backward(
            s,
            self.eps,
            self.global_stats,
            x,
            dy,
            &self.gamma,
            &self.mean,
            &self.var,
            dx,
            dgamma,
            dbeta,
        )?;
        let len = g.len();
        Ok(out(g, len))
    }
}

// ------------------------------------------------------------------ pooling

/// Max pooling with PyTorch semantics (padding never wins, optional ceil mode), differentiable.
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    ceil_mode: bool,
) -> CResult<Tensor> {
    pool(x, PoolKind::Max, |n, c, h, w| {
        Pool2dShape::torch(n, c, h, w, kernel, stride, padding, ceil_mode)
    })
}

/// Average pooling with PyTorch semantics, differentiable.
///
/// With `count_include_pad` the divisor is the whole window; a window that overhangs
/// the padding in `ceil_mode` (where PyTorch clips the divisor) is refused with an error.
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    ceil_mode: bool,
    count_include_pad: bool,
) -> CResult<Tensor> {
    let kind = if count_include_pad {
        PoolKind::AvgIncludePad
    } else {
        PoolKind::AvgExcludePad
    };
    pool(x, kind, |n, c, h, w| {
        let s = Pool2dShape::torch(n, c, h, w, kernel, stride, padding, ceil_mode)?;
        if count_include_pad && (s.pad_end.0 > s.pad_begin.0 || s.pad_end.1 > s.pad_begin.1) {
            return Err(Error::Shape {
                op: "onednn avg_pool2d",
                what: "ceil_mode with count_include_pad",
                got: format!("a last window overhanging the padding by {:?}", s.pad_end),
                expected: format!("no overhang beyond padding {padding:?} (PyTorch clips that divisor, oneDNN does not)"),
            });
        }
        Ok(s)
    })
}

/// Max pooling with TensorFlow's "SAME" padding (output `ceil(in / stride)`).
pub fn max_pool2d_same(x: &Tensor, kernel: usize, stride: usize) -> CResult<Tensor> {
    pool(x, PoolKind::Max, |n, c, h, w| {
        Ok(Pool2dShape::same(n, c, h, w, kernel, stride))
    })
}

/// Average pooling with TensorFlow's "SAME" padding (the divisor counts real elements only).
pub fn avg_pool2d_same(x: &Tensor, kernel: usize, stride: usize) -> CResult<Tensor> {
    pool(x, PoolKind::AvgExcludePad, |n, c, h, w| {
        Ok(Pool2dShape::same(n, c, h, w, kernel, stride))
    })
}

fn pool(
    x: &Tensor,
    kind: PoolKind,
    shape: impl FnOnce(usize, usize, usize, usize) -> crate::Result<Pool2dShape>,
) -> CResult<Tensor> {
    const OP: &str = "onednn pool2d";
    let x = prepare(x, 4, OP, "input")?;
    let d = x.dims();
    let s = shape(d[0], d[1], d[2], d[3])?;
    s.validate(OP)?;
    x.apply_op1(PoolFwd {
        s,
        kind,
        training: x.track_op(),
        workspace: Arc::new(Mutex::new(None)),
    })
}

struct PoolFwd {
    s: Pool2dShape,
    kind: PoolKind,
    /// Whether to keep the workspace for a backward pass.
    training: bool,
    workspace: Arc<Mutex<Option<Arc<PoolWorkspace>>>>,
}

impl CustomOp1 for PoolFwd {
    fn name(&self) -> &'static str {
        "onednn-pool2d"
    }
    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let s = &self.s;
        let x = slice(st, l, "onednn pool2d", "input")?;
        let mut y = vec![0f32; s.dst_len()];
        if self.training {
            let ws = crate::pool2d_forward_training(s, self.kind, x, &mut y)?;
            *self.workspace.lock().map_err(|_| Error::Poisoned)? = Some(Arc::new(ws));
        } else {
            crate::pool2d_forward(s, self.kind, x, &mut y)?;
        }
        Ok(out(y, (s.n, s.c, s.out_h(), s.out_w())))
    }
    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> CResult<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let ws = self
            .workspace
            .lock()
            .map_err(|_| Error::Poisoned)?
            .clone()
            .ok_or(Error::Workspace {
                op: "onednn pool2d backward",
                what: "the forward pass ran without gradient tracking and kept no workspace".into(),
            })?;
        let dx = dy.contiguous()?.apply_op1_no_bwd(&PoolBwd {
            s: self.s,
            kind: self.kind,
            ws,
        })?;
        Ok(Some(dx))
    }
}

/// The input gradient of a pooling, from the output gradient and the forward's workspace.
struct PoolBwd {
    s: Pool2dShape,
    kind: PoolKind,
    ws: Arc<PoolWorkspace>,
}

impl CustomOp1 for PoolBwd {
    fn name(&self) -> &'static str {
        "onednn-pool2d-backward"
    }
    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let s = &self.s;
        let dy = slice(st, l, "onednn pool2d backward", "output gradient")?;
        let mut dx = vec![0f32; s.src_len()];
        crate::pool2d_backward(s, self.kind, dy, &mut dx, &self.ws)?;
        Ok(out(dx, (s.n, s.c, s.h, s.w)))
    }
}
