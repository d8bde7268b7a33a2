//! Batch normalisation (training and evaluation), optionally fused with ReLU, as one op.
//!
//! Built from candle-nn ops, batch norm is about a dozen ops that each keep a full-size
//! copy of the activation. Here the forward pass is one reduction and one normalising
//! pass that keep only the per-channel mean and inverse standard deviation; the backward
//! pass is one reduction and one pass producing the input, scale and shift gradients.
//! With `relu`, the ReLU is applied in the same pass and its mask is read back from the
//! output in the backward pass, so no pre-activation copy is kept. Under the oneDNN
//! backend, oneDNN's batch-norm primitives compute both passes instead.

use crate::backend::{route, KernelBackend, OpKind, Route};
use crate::error::KernelError;
use crate::onednn::attempt;
use crate::storage::{f32_slice, prepare};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Per-channel statistics of the batch that a training-mode batch norm normalised with.
#[derive(Debug, Clone)]
pub struct BatchStats {
    /// Batch mean per channel, shape `(C,)`.
    pub mean: Tensor,
    /// Biased batch variance per channel (what normalised the batch), shape `(C,)`.
    pub var: Tensor,
    /// Number of values per channel (N·H·W), for the unbiased running variance.
    pub count: usize,
}

/// Training-mode batch norm of an NCHW tensor with batch statistics.
///
/// `gamma` and `beta` have shape `(C,)`. With `relu`, returns `max(bn(x), 0)`. Also
/// returns the batch statistics for [`update_running_stats`].
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> candle_core::Result<(Tensor, BatchStats)> {
    check_args(x, gamma, beta, eps)?;
    let backend = match route(x)? {
        Route::Stock => return crate::stock::batch_norm_train(x, gamma, beta, eps, relu),
        Route::Kernels(b) => b,
    };
    let (x, gamma, beta) = prepare_all(x, gamma, beta)?;
    let saved = Arc::new(Mutex::new(None));
    let y = x.apply_op3(
        &gamma,
        &beta,
        BatchNorm {
            eps,
            relu,
            running: None,
            saved: saved.clone(),
            backend,
        },
    )?;
    let state = saved
        .lock()
        .map_err(|_| KernelError::MissingForwardState { op: "batch_norm" })?
        .clone()
        .ok_or(KernelError::MissingForwardState { op: "batch_norm" })?;
    let c = state.mean.len();
    let stats = BatchStats {
        mean: Tensor::from_vec(state.mean.to_vec(), c, x.device())?,
        var: Tensor::from_vec(state.var.to_vec(), c, x.device())?,
        count: x.elem_count() / c.max(1),
    };
    Ok((y, stats))
}

/// Evaluation-mode batch norm of an NCHW tensor with the running statistics.
///
/// Differentiable w.r.t. `x`, `gamma` and `beta` (the running statistics are constants).
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    relu: bool,
) -> candle_core::Result<Tensor> {
    check_args(x, gamma, beta, eps)?;
    let c = x.dims()[1];
    for (what, t) in [("running mean", running_mean), ("running var", running_var)] {
        if t.dims() != [c] {
            return Err(KernelError::Shape {
                op: "batch_norm",
                what,
                got: t.dims().to_vec(),
                expected: format!("({c},), one value per channel"),
            }
            .into());
        }
    }
    let backend = match route(x)? {
        Route::Stock => {
            return crate::stock::batch_norm_eval(
                x,
                gamma,
                beta,
                running_mean,
                running_var,
                eps,
                relu,
            )
        }
        Route::Kernels(b) => b,
    };
    let (x, gamma, beta) = prepare_all(x, gamma, beta)?;
    let mean = prepare(running_mean, 1, "batch_norm", "running mean")?.to_vec1::<f32>()?;
    let var = prepare(running_var, 1, "batch_norm", "running var")?.to_vec1::<f32>()?;
    x.apply_op3(
        &gamma,
        &beta,
        BatchNorm {
            eps,
            relu,
            running: Some((mean, var)),
            saved: Arc::new(Mutex::new(None)),
            backend,
        },
    )
}

/// PyTorch's running-statistics update: `r ← (1 − m)·r + m·batch`, unbiased batch variance.
///
/// Returns the new `(running_mean, running_var)`; callers store them (e.g. `Var::set`).
pub fn update_running_stats(
    running_mean: &Tensor,
    running_var: &Tensor,
    stats: &BatchStats,
    momentum: f64,
) -> candle_core::Result<(Tensor, Tensor)> {
    if !(0.0..=1.0).contains(&momentum) {
        return Err(KernelError::Param {
            op: "update_running_stats",
            what: "momentum",
            got: momentum.to_string(),
            expected: "a value in [0, 1]".into(),
        }
        .into());
    }
    let n = stats.count as f64;
    let unbias = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
    let mean = ((running_mean * (1.0 - momentum))? + (&stats.mean * momentum)?)?;
    let var = ((running_var * (1.0 - momentum))? + (&stats.var * (momentum * unbias))?)?;
    Ok((mean, var))
}

/// Shape and range checks shared by every route.
fn check_args(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> candle_core::Result<()> {
    const OP: &str = "batch_norm";
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(KernelError::Param {
            op: OP,
            what: "eps",
            got: eps.to_string(),
            expected: "a positive finite number".into(),
        }
        .into());
    }
    if x.rank() != 4 {
        return Err(KernelError::Shape {
            op: OP,
            what: "input",
            got: x.dims().to_vec(),
            expected: "4 dimensions (N, C, H, W)".into(),
        }
        .into());
    }
    let c = x.dims()[1];
    for (what, t) in [("gamma", gamma), ("beta", beta)] {
        if t.dims() != [c] {
            return Err(KernelError::Shape {
                op: OP,
                what,
                got: t.dims().to_vec(),
                expected: format!("({c},), one value per channel of the input"),
            }
            .into());
        }
    }
    Ok(())
}

fn prepare_all(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "batch_norm";
    Ok((
        prepare(x, 4, OP, "input")?,
        prepare(gamma, 1, OP, "gamma")?,
        prepare(beta, 1, OP, "beta")?,
    ))
}

/// Per-channel statistics a forward pass used, kept for the backward pass.
#[derive(Debug, Clone)]
struct Saved {
    mean: Arc<Vec<f32>>,
    var: Arc<Vec<f32>>,
    invstd: Arc<Vec<f32>>,
    /// The forward pass ran on oneDNN (its backward primitive then runs too).
    onednn: bool,
}

/// Per-channel mean and (biased) variance.
type MeanVar = (Vec<f32>, Vec<f32>);

/// The forward op: inputs `x`, `gamma`, `beta`.
struct BatchNorm {
    eps: f64,
    relu: bool,
    /// `Some((mean, var))` in evaluation mode.
    running: Option<MeanVar>,
    saved: Arc<Mutex<Option<Saved>>>,
    backend: KernelBackend,
}

/// Independent f64 sums a plane's forward statistics are spread over: one running sum
/// waits on each add's latency, eight vectorize. Element `i` goes to lane `i mod 8` and the lanes
/// are summed in order, so results do not depend on the run.
const LANES: usize = 8;

/// `(Σ x, Σ x²)` of one plane, in f64.
fn sum_and_squares(x: &[f32]) -> (f64, f64) {
    let (mut s, mut q) = ([0f64; LANES], [0f64; LANES]);
    let blocks = x.chunks_exact(LANES);
    let rest = blocks.remainder();
    for b in blocks {
        for k in 0..LANES {
            let v = b[k] as f64;
            s[k] += v;
            q[k] += v * v;
        }
    }
    let (mut s1, mut q1) = (s.iter().sum::<f64>(), q.iter().sum::<f64>());
    for &v in rest {
        let v = v as f64;
        s1 += v;
        q1 += v * v;
    }
    (s1, q1)
}

/// Sums of `f(plane, channel)` over all planes of each channel, in f64, parallel over channels.
fn per_channel<F>(n: usize, c: usize, f: F) -> Vec<(f64, f64)>
where
    F: Fn(usize, usize) -> (f64, f64) + Sync,
{
    (0..c)
        .into_par_iter()
        .map(|ch| {
            (0..n).fold((0.0, 0.0), |acc, b| {
                let v = f(b * c + ch, ch);
                (acc.0 + v.0, acc.1 + v.1)
            })
        })
        .collect()
}

fn dnnl_shape(dims: &[usize]) -> vct_onednn::BatchNormShape {
    vct_onednn::BatchNormShape {
        n: dims[0],
        c: dims[1],
        h: dims[2],
        w: dims[3],
    }
}

fn relu_in_place(y: &mut [f32]) {
    y.par_chunks_mut(1 << 15)
        .for_each(|c| c.iter_mut().for_each(|v| *v = v.max(0.0)));
}

impl BatchNorm {
    /// The oneDNN forward pass; `None` if oneDNN declined the shape.
    fn onednn_forward(
        &self,
        dims: &[usize],
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        y: &mut [f32],
    ) -> Result<Option<MeanVar>, KernelError> {
        const OP: &str = "batch_norm";
        let s = dnnl_shape(dims);
        let eps = self.eps as f32;
        match &self.running {
            Some((m, v)) => Ok(attempt(OpKind::BatchNorm, OP, || {
                vct_onednn::batch_norm_forward_inference(&s, eps, x, gamma, beta, m, v, y)
            })?
            .map(|()| (m.clone(), v.clone()))),
            None => {
                let (mut m, mut v) = (vec![0f32; s.c], vec![0f32; s.c]);
                let ran = attempt(OpKind::BatchNorm, OP, || {
                    vct_onednn::batch_norm_forward_training(
                        &s, eps, x, gamma, beta, y, &mut m, &mut v,
                    )
                })?;
                Ok(ran.map(|()| (m, v)))
            }
        }
    }
}

impl CustomOp3 for BatchNorm {
    fn name(&self) -> &'static str {
        "vct-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        const OP: &str = "batch_norm";
        let _span = crate::profile::Span::new(crate::profile::Kernel::BatchNormForward);
        let x = f32_slice(s1, l1, OP, "input")?;
        let gamma = f32_slice(s2, l2, OP, "gamma")?;
        let beta = f32_slice(s3, l3, OP, "beta")?;
        let dims = l1.dims();
        let (n, c) = (dims[0], dims[1]);
        let hw: usize = dims[2..].iter().product();
        let mut y = vec![0f32; x.len()];
        let from_onednn = if self.backend == KernelBackend::OneDnn && !x.is_empty() {
            self.onednn_forward(dims, x, gamma, beta, &mut y)?
        } else {
            None
        };
        let onednn = from_onednn.is_some();
        let (mean, var, invstd) = if let Some((mean, var)) = from_onednn {
            if self.relu {
                relu_in_place(&mut y);
            }
            let invstd = var
                .iter()
                .map(|&v| (1.0 / (v as f64 + self.eps).sqrt()) as f32)
                .collect();
            (mean, var, invstd)
        } else {
            let (mean, var): (Vec<f32>, Vec<f32>) = match &self.running {
                Some((m, v)) => (m.clone(), v.clone()),
                None => {
                    let count = (n * hw).max(1) as f64;
                    per_channel(n, c, |p, _| sum_and_squares(&x[p * hw..(p + 1) * hw]))
                        .into_iter()
                        .map(|(s, q)| {
                            let m = s / count;
                            (m as f32, (q / count - m * m).max(0.0) as f32)
                        })
                        .unzip()
                }
            };
            let invstd: Vec<f32> = var
                .iter()
                .map(|&v| (1.0 / (v as f64 + self.eps).sqrt()) as f32)
                .collect();
            if hw > 0 {
                y.par_chunks_mut(hw)
                    .zip(x.par_chunks(hw))
                    .enumerate()
                    .for_each(|(p, (yp, xp))| {
                        let ch = p % c;
                        let scale = gamma[ch] * invstd[ch];
                        let shift = beta[ch] - mean[ch] * scale;
                        if self.relu {
                            for (o, &v) in yp.iter_mut().zip(xp) {
                                *o = (v * scale + shift).max(0.0);
                            }
                        } else {
                            for (o, &v) in yp.iter_mut().zip(xp) {
                                *o = v * scale + shift;
                            }
                        }
                    });
            }
            (mean, var, invstd)
        };
        *self
            .saved
            .lock()
            .map_err(|_| KernelError::MissingForwardState { op: OP })? = Some(Saved {
            mean: Arc::new(mean),
            var: Arc::new(var),
            invstd: Arc::new(invstd),
            onednn,
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = self
            .saved
            .lock()
            .map_err(|_| KernelError::MissingForwardState { op: "batch_norm" })?
            .clone()
            .ok_or(KernelError::MissingForwardState { op: "batch_norm" })?;
        let c = saved.mean.len();
        let numel = x.elem_count();
        let grad = grad_res.contiguous()?;
        let packed = x.apply_op3_no_bwd(
            &grad,
            &res.contiguous()?,
            &BatchNormBackward {
                relu: self.relu,
                train: self.running.is_none(),
                eps: self.eps,
                gamma: gamma.to_vec1()?,
                saved,
            },
        )?;
        // Gradients only for arguments that track them (a constant scale of ones, say).
        let dx = match x.track_op() {
            true => Some(packed.narrow(0, 0, numel)?.reshape(x.shape())?),
            false => None,
        };
        // dgamma and dbeta live until the optimizer step: copies of their own, so they do
        // not keep the activation-sized packed buffer alive until then.
        let dgamma = match gamma.track_op() {
            true => Some(packed.narrow(0, numel, c)?.force_contiguous()?),
            false => None,
        };
        let dbeta = match beta.track_op() {
            true => Some(packed.narrow(0, numel + c, c)?.force_contiguous()?),
            false => None,
        };
        Ok((dx, dgamma, dbeta))
    }
}

/// The backward op: inputs `x`, `dy`, `y`; output `[dx (flat), dgamma, dbeta]` packed.
struct BatchNormBackward {
    relu: bool,
    train: bool,
    eps: f64,
    gamma: Vec<f32>,
    saved: Saved,
}

impl BatchNormBackward {
    /// oneDNN's backward pass into `out`; `false` if oneDNN declined the shape.
    fn onednn(
        &self,
        dims: &[usize],
        x: &[f32],
        dy: &[f32],
        y: &[f32],
        out: &mut [f32],
    ) -> Result<bool, KernelError> {
        let s = dnnl_shape(dims);
        let masked: Vec<f32>;
        let dy = if self.relu {
            // ReLU's gradient: zero where the output was clamped.
            masked = dy
                .iter()
                .zip(y)
                .map(|(&g, &v)| if v > 0.0 { g } else { 0.0 })
                .collect();
            &masked[..]
        } else {
            dy
        };
        let (dx, rest) = out.split_at_mut(s.len());
        let (dgamma, dbeta) = rest.split_at_mut(s.c);
        let ran = attempt(OpKind::BatchNorm, "batch_norm backward", || {
            vct_onednn::batch_norm_backward(
                &s,
                self.eps as f32,
                !self.train,
                x,
                dy,
                &self.gamma,
                &self.saved.mean,
                &self.saved.var,
                dx,
                dgamma,
                dbeta,
            )
        })?;
        Ok(ran.is_some())
    }
}

impl CustomOp3 for BatchNormBackward {
    fn name(&self) -> &'static str {
        "vct-batch-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        const OP: &str = "batch_norm backward";
        let _span = crate::profile::Span::new(crate::profile::Kernel::BatchNormBackward);
        let x = f32_slice(s1, l1, OP, "input")?;
        let dy = f32_slice(s2, l2, OP, "output gradient")?;
        let y = f32_slice(s3, l3, OP, "output")?;
        if dy.len() != x.len() || y.len() != x.len() {
            return Err(KernelError::Shape {
                op: OP,
                what: "output gradient",
                got: l2.dims().to_vec(),
                expected: format!("{:?} as the input", l1.dims()),
            }
            .into());
        }
        let dims = l1.dims();
        let (n, c) = (dims[0], dims[1]);
        let hw: usize = dims[2..].iter().product();
        if self.saved.onednn && !x.is_empty() {
            let mut out = vec![0f32; x.len() + 2 * c];
            if self.onednn(dims, x, dy, y, &mut out)? {
                return Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * c)));
            }
        }
        let (mean, invstd) = (&self.saved.mean, &self.saved.invstd);
        let relu = self.relu;
        // Σ dy' and Σ dy'·(x − mean) per channel, dy' being dy masked by the ReLU.
        // One running sum each: spread over lanes as the forward's statistics are, this
        // loop measured 1.5x slower (12-04), so it stays as it is.
        let sums = per_channel(n, c, |p, ch| {
            let r = p * hw..(p + 1) * hw;
            let m = mean[ch];
            let mut s = 0f64;
            let mut sx = 0f64;
            for ((&g, &xv), &yv) in dy[r.clone()].iter().zip(&x[r.clone()]).zip(&y[r]) {
                let g = if relu && yv <= 0.0 { 0.0 } else { g };
                s += g as f64;
                sx += (g * (xv - m)) as f64;
            }
            (s, sx)
        });
        let count = (n * hw).max(1) as f32;
        let mut out = vec![0f32; x.len() + 2 * c];
        let (dx, rest) = out.split_at_mut(x.len());
        for (ch, &(s, sx)) in sums.iter().enumerate() {
            rest[ch] = (sx * invstd[ch] as f64) as f32;
            rest[c + ch] = s as f32;
        }
        let dgamma = &rest[..c];
        let dbeta = &rest[c..];
        if hw > 0 {
            dx.par_chunks_mut(hw).enumerate().for_each(|(p, dxp)| {
                let ch = p % c;
                let r = p * hw..(p + 1) * hw;
                let k = self.gamma[ch] * invstd[ch];
                let (m, is) = (mean[ch], invstd[ch]);
                // dx = γ·σ⁻¹·(dy' − Σdy'/M − x̂·Σ(dy'·x̂)/M) in training, γ·σ⁻¹·dy' in eval.
                let (a, b) = if self.train {
                    (dbeta[ch] / count, dgamma[ch] / count)
                } else {
                    (0.0, 0.0)
                };
                for (((o, &g), &xv), &yv) in dxp
                    .iter_mut()
                    .zip(&dy[r.clone()])
                    .zip(&x[r.clone()])
                    .zip(&y[r])
                {
                    let g = if relu && yv <= 0.0 { 0.0 } else { g };
                    let xhat = (xv - m) * is;
                    *o = k * (g - a - xhat * b);
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{finite_diff_check, max_rel_diff, Rng};
    use candle_core::{Device, Var, D};

    /// Batch norm from stock candle ops, as vct-arch's stock path computes it.
    fn stock_bn(
        x: &Tensor,
        g: &Tensor,
        b: &Tensor,
        eps: f64,
        relu: bool,
    ) -> candle_core::Result<Tensor> {
        let c = x.dim(1)?;
        let xt = x.transpose(0, 1)?.flatten_from(1)?; // (C, M)
        let mean = xt.mean_keepdim(D::Minus1)?;
        let xc = xt.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xhat = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
        let y = xhat
            .broadcast_mul(&g.reshape((c, 1))?)?
            .broadcast_add(&b.reshape((c, 1))?)?;
        let (n, _, h, w) = x.dims4()?;
        let y = y.reshape((c, n, h, w))?.transpose(0, 1)?;
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    fn grads_of(
        f: impl Fn(&Tensor, &Tensor, &Tensor) -> candle_core::Result<Tensor>,
        x: &Tensor,
        g: &Tensor,
        b: &Tensor,
        r: &Tensor,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let (xv, gv, bv) = (
            Var::from_tensor(x)?,
            Var::from_tensor(g)?,
            Var::from_tensor(b)?,
        );
        let y = f(xv.as_tensor(), gv.as_tensor(), bv.as_tensor())?;
        let grads = (&y * r)?.sum_all()?.backward()?;
        let mut out = vec![y.flatten_all()?.to_vec1()?];
        for (i, v) in [&xv, &gv, &bv].into_iter().enumerate() {
            let gr = grads
                .get(v.as_tensor())
                .ok_or_else(|| candle_core::Error::Msg("missing grad".into()))?;
            if i > 0 {
                crate::testutil::assert_owns_storage(gr, "scale/shift gradient");
            }
            out.push(gr.flatten_all()?.to_vec1()?);
        }
        Ok(out)
    }

    #[test]
    fn training_mode_agrees_with_stock_candle_ops() -> candle_core::Result<()> {
        let mut rng = Rng::new(11);
        for (shape, relu) in [
            ([2, 3, 5, 7], false),
            ([1, 4, 3, 3], true),
            ([3, 2, 1, 1], false),
            ([2, 5, 6, 4], true),
        ] {
            let x = (rng.tensor(&shape) * 3.0)?.affine(1.0, 0.5)?;
            let g = rng.tensor(&[shape[1]]);
            let b = rng.tensor(&[shape[1]]);
            let r = rng.tensor(&shape);
            let ours = grads_of(
                |x, g, b| Ok(batch_norm_train(x, g, b, 1e-5, relu)?.0),
                &x,
                &g,
                &b,
                &r,
            )?;
            let stock = grads_of(|x, g, b| stock_bn(x, g, b, 1e-5, relu), &x, &g, &b, &r)?;
            for (i, (a, s)) in ours.iter().zip(&stock).enumerate() {
                let d = max_rel_diff(a, s);
                assert!(
                    d < 1e-4,
                    "{shape:?} relu={relu}: output/grad {i} differs by {d}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn eval_mode_uses_running_statistics() -> candle_core::Result<()> {
        let mut rng = Rng::new(12);
        let x = rng.tensor(&[2, 3, 4, 5]);
        let (g, b) = (rng.tensor(&[3]), rng.tensor(&[3]));
        let rm = rng.tensor(&[3]);
        let rv = (rng.tensor(&[3]).abs()? + 0.5)?;
        let y = batch_norm_eval(&x, &g, &b, &rm, &rv, 1e-3, true)?;
        let bc = |t: &Tensor| t.reshape((1, 3, 1, 1));
        let want = x
            .broadcast_sub(&bc(&rm)?)?
            .broadcast_div(&bc(&(&rv + 1e-3)?.sqrt()?)?)?
            .broadcast_mul(&bc(&g)?)?
            .broadcast_add(&bc(&b)?)?
            .relu()?;
        let d = max_rel_diff(
            &y.flatten_all()?.to_vec1()?,
            &want.flatten_all()?.to_vec1()?,
        );
        assert!(d < 1e-6, "eval output differs by {d}");
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> candle_core::Result<()> {
        let mut rng = Rng::new(13);
        let shape = [2, 3, 3, 2];
        let x = rng.tensor(&shape);
        let g = rng.tensor(&[3]);
        let b = rng.tensor(&[3]);
        let (rm, rv) = (rng.tensor(&[3]), (rng.tensor(&[3]).abs()? + 0.5)?);
        finite_diff_check(&x, |t| Ok(batch_norm_train(t, &g, &b, 1e-5, false)?.0), 1)?;
        finite_diff_check(&g, |t| Ok(batch_norm_train(&x, t, &b, 1e-5, false)?.0), 2)?;
        finite_diff_check(&b, |t| Ok(batch_norm_train(&x, &g, t, 1e-5, false)?.0), 3)?;
        finite_diff_check(&x, |t| batch_norm_eval(t, &g, &b, &rm, &rv, 1e-5, false), 4)?;
        finite_diff_check(&g, |t| batch_norm_eval(&x, t, &b, &rm, &rv, 1e-5, false), 5)?;
        Ok(())
    }

    #[test]
    fn running_stats_follow_pytorch() -> candle_core::Result<()> {
        let mut rng = Rng::new(14);
        let x = rng.tensor(&[2, 2, 3, 1]);
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let (g, b) = (
            Tensor::ones(2, candle_core::DType::F32, &Device::Cpu)?,
            Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu)?,
        );
        let (_, stats) = batch_norm_train(&x, &g, &b, 1e-5, false)?;
        let rm = Tensor::new(&[0.5f32, -1.0], &Device::Cpu)?;
        let rv = Tensor::new(&[2.0f32, 1.0], &Device::Cpu)?;
        let (nm, nv) = update_running_stats(&rm, &rv, &stats, 0.1)?;
        let (nm, nv): (Vec<f32>, Vec<f32>) = (nm.to_vec1()?, nv.to_vec1()?);
        for ch in 0..2 {
            let vals: Vec<f64> = (0..2)
                .flat_map(|n| (0..3).map(move |i| (n, i)))
                .map(|(n, i)| xs[n * 6 + ch * 3 + i] as f64)
                .collect();
            let m = vals.iter().sum::<f64>() / 6.0;
            let unbiased = vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / 5.0;
            let (rm0, rv0) = ([0.5, -1.0][ch], [2.0, 1.0][ch]);
            assert!((nm[ch] as f64 - (0.9 * rm0 + 0.1 * m)).abs() < 1e-6);
            assert!((nv[ch] as f64 - (0.9 * rv0 + 0.1 * unbiased)).abs() < 1e-6);
        }
        assert!(update_running_stats(&rm, &rv, &stats, 1.5).is_err());
        Ok(())
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let x = Tensor::zeros((1, 3, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let g = Tensor::ones(2, candle_core::DType::F32, &Device::Cpu).unwrap();
        let b3 = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(batch_norm_train(&x, &g, &b3, 1e-5, false).is_err());
        assert!(batch_norm_train(&x, &b3, &b3, 0.0, false).is_err());
    }
}
