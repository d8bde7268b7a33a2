//! The update rules as in-place loops for `f32` CPU tensors, one pass per step.
//!
//! Built from candle ops, an SGD step is seven full-size allocations and eight passes
//! over every parameter (LAMB about fifteen); on ResNet-50 that was a tenth of a
//! training step. Here the parameter and its state are rewritten in place (candle's
//! in-place ops, nested so that one pass updates all of them: the step is memory-bound,
//! and SGD with momentum in one pass instead of one per tensor took ResNet-50's step
//! from 35 to 24 ms), with the reference implementations' f32 operations in the same
//! order, so the trajectories equal the candle-op path's. LAMB needs its norms before
//! the update, so it makes two passes. Other devices and dtypes keep the candle-op path
//! in `optimizer.rs`.

use std::cell::RefCell;

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, InplaceOp3, Layout, Tensor};
use rayon::prelude::*;

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

#[cfg(test)]
thread_local! {
    /// Tests set this to run the candle-op path on tensors the kernels would take.
    pub(crate) static FORCE_CANDLE_OPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether every tensor is an `f32`, contiguous CPU tensor of the first one's shape.
pub(crate) fn usable(tensors: &[&Tensor]) -> bool {
    #[cfg(test)]
    if FORCE_CANDLE_OPS.with(|f| f.get()) {
        return false;
    }
    let Some(first) = tensors.first() else {
        return false;
    };
    tensors.iter().all(|t| {
        t.device().is_cpu()
            && t.dtype() == candle_core::DType::F32
            && t.is_contiguous()
            && t.shape() == first.shape()
    })
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("fused optimizer step: expected f32 storage");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("fused optimizer step: expected a contiguous tensor");
    };
    v.get(a..b)
        .ok_or_else(|| candle_core::Error::Msg("fused optimizer step: bad offsets".into()))
}

fn slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("fused optimizer step: expected f32 storage");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("fused optimizer step: expected a contiguous tensor");
    };
    v.get_mut(a..b)
        .ok_or_else(|| candle_core::Error::Msg("fused optimizer step: bad offsets".into()))
}

/// `dst[i] = f(dst[i], a[i], b[i])` over equal-length slices, in parallel.
fn zip3(dst: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32, f32) -> f32 + Sync) {
    dst.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(d, (a, b))| {
            for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
                *d = f(*d, a, b);
            }
        });
}

/// An in-place op from a closure over `(dst, src1, src2)` elements.
struct Zip3<F>(&'static str, F);

impl<F: Fn(f32, f32, f32) -> f32 + Sync> InplaceOp3 for Zip3<F> {
    fn name(&self) -> &'static str {
        self.0
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (a, b) = (slice(s1, l1)?, slice(s2, l2)?);
        let d = slice_mut(dst, dst_l)?;
        if a.len() != d.len() || b.len() != d.len() {
            candle_core::bail!("{}: operand lengths differ", self.0);
        }
        zip3(d, a, b, &self.1);
        Ok(())
    }
}

/// `dst ← f(dst, a, b)` elementwise, in place.
fn apply(
    name: &'static str,
    dst: &Tensor,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f32, f32, f32) -> f32 + Sync,
) -> candle_core::Result<()> {
    dst.inplace_op3(a, b, &Zip3(name, f))
}

/// Runs `f` on `t`'s elements, writable. An in-place op is candle's only way to write a
/// tensor's storage, so `f` runs inside one; nesting these calls is how one pass updates
/// a parameter and its state together (the update is memory-bound: each pass over
/// ResNet-50's 25 M parameters streams 100 MB per tensor it touches).
fn with_mut(
    name: &'static str,
    t: &Tensor,
    f: impl FnOnce(&mut [f32]) -> candle_core::Result<()>,
) -> candle_core::Result<()> {
    struct Op<F>(&'static str, RefCell<Option<F>>);
    impl<F: FnOnce(&mut [f32]) -> candle_core::Result<()>> InplaceOp1 for Op<F> {
        fn name(&self) -> &'static str {
            self.0
        }
        fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
            let f = self.1.borrow_mut().take();
            let f = f.ok_or_else(|| candle_core::Error::Msg(format!("{}: ran twice", self.0)))?;
            f(slice_mut(s, l)?)
        }
    }
    t.inplace_op1(&Op(name, RefCell::new(Some(f))))
}

/// [`with_mut`] on `dst` with `src`'s elements to read (candle refuses a `src` that
/// shares `dst`'s storage).
fn with_mut_reading(
    name: &'static str,
    dst: &Tensor,
    src: &Tensor,
    f: impl FnOnce(&mut [f32], &[f32]) -> candle_core::Result<()>,
) -> candle_core::Result<()> {
    struct Op<F>(&'static str, RefCell<Option<F>>);
    impl<F: FnOnce(&mut [f32], &[f32]) -> candle_core::Result<()>> InplaceOp2 for Op<F> {
        fn name(&self) -> &'static str {
            self.0
        }
        fn cpu_fwd(
            &self,
            d: &mut CpuStorage,
            dl: &Layout,
            s: &CpuStorage,
            sl: &Layout,
        ) -> candle_core::Result<()> {
            let f = self.1.borrow_mut().take();
            let f = f.ok_or_else(|| candle_core::Error::Msg(format!("{}: ran twice", self.0)))?;
            f(slice_mut(d, dl)?, slice(s, sl)?)
        }
    }
    dst.inplace_op2(src, &Op(name, RefCell::new(Some(f))))
}

/// [`with_mut_reading`] with two sources.
fn with_mut_reading2(
    name: &'static str,
    dst: &Tensor,
    src1: &Tensor,
    src2: &Tensor,
    f: impl FnOnce(&mut [f32], &[f32], &[f32]) -> candle_core::Result<()>,
) -> candle_core::Result<()> {
    struct Op<F>(&'static str, RefCell<Option<F>>);
    impl<F: FnOnce(&mut [f32], &[f32], &[f32]) -> candle_core::Result<()>> InplaceOp3 for Op<F> {
        fn name(&self) -> &'static str {
            self.0
        }
        fn cpu_fwd(
            &self,
            d: &mut CpuStorage,
            dl: &Layout,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> candle_core::Result<()> {
            let f = self.1.borrow_mut().take();
            let f = f.ok_or_else(|| candle_core::Error::Msg(format!("{}: ran twice", self.0)))?;
            f(slice_mut(d, dl)?, slice(s1, l1)?, slice(s2, l2)?)
        }
    }
    dst.inplace_op3(src1, src2, &Op(name, RefCell::new(Some(f))))
}

/// Fails unless every slice has `n` elements.
fn same_len(name: &str, n: usize, lens: &[usize]) -> candle_core::Result<()> {
    if lens.iter().any(|&l| l != n) {
        candle_core::bail!("{name}: operand lengths differ ({n} vs {lens:?})");
    }
    Ok(())
}

/// A fresh, contiguous copy (state must never share storage with a gradient).
fn fresh(t: &Tensor) -> candle_core::Result<Tensor> {
    t.copy()
}

/// `d = g + wd·p` as the reference computes it (`grad.add(p, alpha=wd)`, f32).
#[inline]
fn decayed(g: f32, p: f32, wd: f32, decay: bool) -> f32 {
    if decay {
        g + (p * wd + 0.0)
    } else {
        g
    }
}

/// One SGD step of one parameter: the momentum buffer and the parameter, in one pass.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgd(
    p: &Tensor,
    g: &Tensor,
    buf: Option<Tensor>,
    lr: f64,
    wd: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
) -> candle_core::Result<Option<Tensor>> {
    let decay = wd != 0.0;
    let (wd32, m32, lr32) = (wd as f32, momentum as f32, lr as f32);
    let damp32 = (1.0 - dampening) as f32;
    if momentum == 0.0 {
        with_mut_reading("sgd", p, g, |pv, gv| {
            same_len("sgd", pv.len(), &[gv.len()])?;
            zip3(pv, gv, gv, |p, g, _| {
                p - (decayed(g, p, wd32, decay) * lr32 + 0.0)
            });
            Ok(())
        })?;
        return Ok(None);
    }
    // First step: buf = d (no dampening), as PyTorch; `b` starts as a copy of g.
    let first = buf.is_none();
    let b = match buf {
        Some(b) => b,
        None => fresh(g)?,
    };
    // The branches on `first`, `decay` and `nesterov` are taken out of the loop (one
    // monomorphized loop per case), so each case is a straight vectorized pass.
    fn pass<const FIRST: bool, const DECAY: bool, const NESTEROV: bool>(
        pc: &mut [f32],
        bc: &mut [f32],
        gc: &[f32],
        (wd32, m32, damp32, lr32): (f32, f32, f32, f32),
    ) {
        for ((p, b), &g) in pc.iter_mut().zip(bc.iter_mut()).zip(gc) {
            let d = decayed(g, *p, wd32, DECAY);
            *b = if FIRST {
                d
            } else {
                (*b * m32 + 0.0) + (d * damp32 + 0.0)
            };
            let step = if NESTEROV { d + (*b * m32 + 0.0) } else { *b };
            *p -= step * lr32 + 0.0;
        }
    }
    let k = (wd32, m32, damp32, lr32);
    let update = |pc: &mut [f32], bc: &mut [f32], gc: &[f32]| match (first, decay, nesterov) {
        (true, true, true) => pass::<true, true, true>(pc, bc, gc, k),
        (true, true, false) => pass::<true, true, false>(pc, bc, gc, k),
        (true, false, true) => pass::<true, false, true>(pc, bc, gc, k),
        (true, false, false) => pass::<true, false, false>(pc, bc, gc, k),
        (false, true, true) => pass::<false, true, true>(pc, bc, gc, k),
        (false, true, false) => pass::<false, true, false>(pc, bc, gc, k),
        (false, false, true) => pass::<false, false, true>(pc, bc, gc, k),
        (false, false, false) => pass::<false, false, false>(pc, bc, gc, k),
    };
    with_mut("sgd-buf", &b, |bv| {
        with_mut_reading("sgd", p, g, |pv, gv| {
            same_len("sgd", pv.len(), &[bv.len(), gv.len()])?;
            pv.par_chunks_mut(CHUNK)
                .zip(bv.par_chunks_mut(CHUNK).zip(gv.par_chunks(CHUNK)))
                .for_each(|(pc, (bc, gc))| update(pc, bc, gc));
            Ok(())
        })
    })?;
    Ok(Some(b))
}

/// Adam's moments (`m = β1·m + s·g`, `v = β2·v + (1 − β2)·g²`, from zeros, with `g`
/// divided by `clip` when given) as one element's update.
#[derive(Clone, Copy)]
struct Moments {
    b1: f32,
    s: f32,
    b2: f32,
    one_b2: f32,
    clip: Option<f32>,
    first: bool,
}

impl Moments {
    fn new(beta1: f64, scale: f64, beta2: f64, clip: Option<f32>, first: bool) -> Self {
        Moments {
            b1: beta1 as f32,
            s: scale as f32,
            b2: beta2 as f32,
            one_b2: (1.0 - beta2) as f32,
            clip,
            first,
        }
    }

    /// One element's moments; `FIRST` and `CLIP` are `self.first` and
    /// `self.clip.is_some()`, as constants so the loop calling this has no branches.
    #[inline(always)]
    fn update<const FIRST: bool, const CLIP: bool>(&self, m: &mut f32, v: &mut f32, g: f32) {
        let g = if CLIP {
            g / self.clip.unwrap_or(1.0)
        } else {
            g
        };
        if FIRST {
            *m = g * self.s + 0.0;
            *v = g * g * self.one_b2 + 0.0;
        } else {
            *m = (*m * self.b1 + 0.0) + (g * self.s + 0.0);
            *v = (*v * self.b2 + 0.0) + (g * g * self.one_b2 + 0.0);
        }
    }
}

/// The moment tensors to update: the stored ones, or (first update) new ones.
fn moment_state(
    g: &Tensor,
    m: Option<Tensor>,
    v: Option<Tensor>,
) -> candle_core::Result<(Tensor, Tensor, bool)> {
    Ok(match (m, v) {
        (Some(m), Some(v)) => (m, v, false),
        _ => (g.zeros_like()?, g.zeros_like()?, true),
    })
}

/// One pass: each element's moments, then the parameter from `param(p, m, v)` with the
/// new moments.
fn moments_then_param(
    name: &'static str,
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    mo: Moments,
    param: impl Fn(f32, f32, f32) -> f32 + Sync,
) -> candle_core::Result<()> {
    with_mut(name, m, |mv| {
        with_mut(name, v, |vv| {
            with_mut_reading(name, p, g, |pv, gv| {
                same_len(name, pv.len(), &[mv.len(), vv.len(), gv.len()])?;
                // One monomorphized loop per (first update, clipped) case.
                fn pass<const FIRST: bool, const CLIP: bool>(
                    mo: &Moments,
                    (pc, mc, vc, gc): (&mut [f32], &mut [f32], &mut [f32], &[f32]),
                    param: &impl Fn(f32, f32, f32) -> f32,
                ) {
                    for (((p, m), v), &g) in
                        pc.iter_mut().zip(mc.iter_mut()).zip(vc.iter_mut()).zip(gc)
                    {
                        mo.update::<FIRST, CLIP>(m, v, g);
                        *p = param(*p, *m, *v);
                    }
                }
                pv.par_chunks_mut(CHUNK)
                    .zip(mv.par_chunks_mut(CHUNK))
                    .zip(vv.par_chunks_mut(CHUNK).zip(gv.par_chunks(CHUNK)))
                    .for_each(|((pc, mc), (vc, gc))| {
                        let chunk = (pc, mc, vc, gc);
                        match (mo.first, mo.clip.is_some()) {
                            (true, true) => pass::<true, true>(&mo, chunk, &param),
                            (true, false) => pass::<true, false>(&mo, chunk, &param),
                            (false, true) => pass::<false, true>(&mo, chunk, &param),
                            (false, false) => pass::<false, false>(&mo, chunk, &param),
                        }
                    });
                Ok(())
            })
        })
    })
}

/// One AdamW step of one parameter (PyTorch's `_single_tensor_adamw`): both moments and
/// the parameter in one pass.
#[allow(clippy::too_many_arguments)]
pub(crate) fn adamw(
    p: &Tensor,
    g: &Tensor,
    m: Option<Tensor>,
    v: Option<Tensor>,
    step: i32,
    lr: f64,
    wd: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (m, v, first) = moment_state(g, m, v)?;
    let mo = Moments::new(beta1, 1.0 - beta1, beta2, None, first);
    let decay = (1.0 - lr * wd) as f32;
    let bc2 = (1.0 / (1.0 - beta2.powi(step)).sqrt()) as f32;
    let step_size = (lr / (1.0 - beta1.powi(step))) as f32;
    let eps = eps as f32;
    moments_then_param("adamw", p, g, &m, &v, mo, |p, m, v| {
        let denom = (v.sqrt() * bc2 + 0.0) * 1.0 + eps;
        (p * decay + 0.0) - ((m / denom) * step_size + 0.0)
    })?;
    Ok((m, v))
}

/// Σ x², in f64, in parallel.
pub(crate) fn sum_squares(t: &Tensor) -> candle_core::Result<f64> {
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(s) = &*s else {
        candle_core::bail!("sum_squares: expected a CPU tensor");
    };
    let x = slice(s, l)?;
    // Partial sums in chunk order, then summed in that order: the same result whatever
    // rayon's work stealing did (a resumed run must repeat the same steps bit for bit).
    let partial: Vec<f64> = x.par_chunks(CHUNK).map(|c| lanes_sum(c, |v| v)).collect();
    Ok(partial.iter().sum())
}

/// Independent f64 sums a chunk's squares are spread over: one running sum waits on each
/// add's latency, eight vectorize; the order stays fixed (element `i` to lane `i mod 8`,
/// lanes summed in order), so the result is the same on every run.
const LANES: usize = 8;

/// `Σ f(x)²` over `x` in f64, in [`LANES`] lanes.
#[inline]
fn lanes_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f64; LANES];
    let blocks = x.chunks_exact(LANES);
    let rest = blocks.remainder();
    for b in blocks {
        for (a, &v) in acc.iter_mut().zip(b) {
            let v = f(v) as f64;
            *a += v * v;
        }
    }
    let tail: f64 = rest.iter().map(|&v| (f(v) as f64) * (f(v) as f64)).sum();
    acc.iter().sum::<f64>() + tail
}

/// Settings of one LAMB update.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LambStep {
    pub(crate) lr: f64,
    pub(crate) wd: f64,
    pub(crate) beta1: f64,
    pub(crate) beta3: f64,
    pub(crate) beta2: f64,
    pub(crate) eps: f64,
    pub(crate) bias_correction1: f64,
    pub(crate) bias_correction2: f64,
    pub(crate) clip: Option<f32>,
    pub(crate) adapt: bool,
    pub(crate) trust_clip: bool,
}

/// One LAMB step of one parameter (timm's `Lamb.step`): the moments together with the
/// update's and the weight's norms in one pass, then the parameter (one pass when no
/// trust ratio is needed).
pub(crate) fn lamb(
    p: &Tensor,
    g: &Tensor,
    m: Option<Tensor>,
    v: Option<Tensor>,
    c: LambStep,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (m, v, first) = moment_state(g, m, v)?;
    let mo = Moments::new(c.beta1, c.beta3, c.beta2, c.clip, first);
    let inv_bc1 = (1.0 / c.bias_correction1) as f32;
    let inv_bc2 = (1.0 / c.bias_correction2.sqrt()) as f32;
    let (eps, wd) = (c.eps as f32, c.wd as f32);
    let decay = c.wd != 0.0;
    let update = move |p: f32, m: f32, v: f32| {
        let denom = (v.sqrt() * inv_bc2 + 0.0) * 1.0 + eps;
        let u = (m * inv_bc1 + 0.0) / denom;
        if decay {
            u + (p * wd + 0.0)
        } else {
            u
        }
    };
    let lr = c.lr as f32;
    if !(decay || c.adapt) {
        // Trust ratio 1: moments and parameter in one pass.
        moments_then_param("lamb", p, g, &m, &v, mo, |p, m, v| {
            p - ((update(p, m, v) * 1.0) * lr + 0.0)
        })?;
        return Ok((m, v));
    }
    // Pass 1: moments, Σ p² and Σ u² (chunk partial sums in chunk order, see
    // `sum_squares`). The parameter is only read, so it is `g`'s companion source.
    let mut norms = (0f64, 0f64);
    with_mut("lamb-m", &m, |mv| {
        with_mut_reading2("lamb-moments", &v, g, p, |vv, gv, pv| {
            same_len("lamb", pv.len(), &[mv.len(), vv.len(), gv.len()])?;
            // A chunk's moments (one monomorphized loop per case), then Σ p² and Σ u²
            // over it in lanes; the chunk is still in cache for the second loop.
            fn chunk<const FIRST: bool, const CLIP: bool>(
                mo: &Moments,
                (pc, mc, vc, gc): (&[f32], &mut [f32], &mut [f32], &[f32]),
                update: &impl Fn(f32, f32, f32) -> f32,
                u: &mut Vec<f32>,
            ) -> (f64, f64) {
                for ((m, v), &g) in mc.iter_mut().zip(vc.iter_mut()).zip(gc) {
                    mo.update::<FIRST, CLIP>(m, v, g);
                }
                u.clear();
                u.extend(
                    pc.iter()
                        .zip(&*mc)
                        .zip(&*vc)
                        .map(|((&p, &m), &v)| update(p, m, v)),
                );
                (lanes_sum(pc, |p| p), lanes_sum(u, |u| u))
            }
            let partial: Vec<(f64, f64)> = pv
                .par_chunks(CHUNK)
                .zip(mv.par_chunks_mut(CHUNK))
                .zip(vv.par_chunks_mut(CHUNK).zip(gv.par_chunks(CHUNK)))
                .map_init(Vec::new, |u, ((pc, mc), (vc, gc))| {
                    let c = (pc, mc, vc, gc);
                    match (mo.first, mo.clip.is_some()) {
                        (true, true) => chunk::<true, true>(&mo, c, &update, u),
                        (true, false) => chunk::<true, false>(&mo, c, &update, u),
                        (false, true) => chunk::<false, true>(&mo, c, &update, u),
                        (false, false) => chunk::<false, false>(&mo, c, &update, u),
                    }
                })
                .collect();
            norms = partial
                .iter()
                .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            Ok(())
        })
    })?;
    let (w, u) = (norms.0.sqrt() as f32, norms.1.sqrt() as f32);
    // 1 where either norm is 0 (timm's nested torch.where).
    let mut trust = if w > 0.0 && u > 0.0 { w / u } else { 1.0 };
    if c.trust_clip {
        trust = trust.min(1.0);
    }
    apply("lamb-param", p, &m, &v, |p, m, v| {
        p - ((update(p, m, v) * trust) * lr + 0.0)
    })?;
    Ok((m, v))
}

#[cfg(test)]
mod tests {
    use super::FORCE_CANDLE_OPS;
    use crate::{split_decay, AdamWConfig, LambConfig, Optimizer, OptimizerConfig, SgdConfig};
    use candle_core::{Device, Tensor, Var};

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| {
                let mut z = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
                z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Five steps of `config` on a weight and a bias (decay and no-decay groups), with
    /// gradients of a fixed quadratic loss; the parameters after each step.
    fn trajectory(config: OptimizerConfig, candle_ops: bool, rows: usize) -> Vec<Vec<f32>> {
        FORCE_CANDLE_OPS.with(|f| f.set(candle_ops));
        let dev = Device::Cpu;
        let w = Var::from_vec(values(rows * 30, 1), (rows, 30), &dev).unwrap();
        let b = Var::from_vec(values(rows, 2), rows, &dev).unwrap();
        let target = Tensor::from_vec(values(rows * 30, 3), (rows, 30), &dev).unwrap();
        let groups = split_decay(
            "all",
            vec![
                ("fc.weight".into(), w.clone()),
                ("fc.bias".into(), b.clone()),
            ],
            1.0,
        );
        let mut opt = Optimizer::new(config, groups).unwrap();
        let mut out = Vec::new();
        for step in 0..5 {
            let y = w
                .as_tensor()
                .broadcast_add(&b.as_tensor().unsqueeze(1).unwrap())
                .unwrap();
            let loss = (y - &target).unwrap().sqr().unwrap().sum_all().unwrap();
            opt.step_with_lr(&loss.backward().unwrap(), 0.01 * (step + 1) as f64)
                .unwrap();
            let mut v: Vec<f32> = w.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            v.extend(b.as_tensor().to_vec1::<f32>().unwrap());
            out.push(v);
        }
        FORCE_CANDLE_OPS.with(|f| f.set(false));
        out
    }

    fn assert_same(config: OptimizerConfig, tol: f32) {
        // 20 rows: one rayon chunk; 2000 rows: 60,000 weights, several chunks.
        for rows in [20, 2000] {
            assert_same_rows(config, tol, rows);
        }
    }

    fn assert_same_rows(config: OptimizerConfig, tol: f32, rows: usize) {
        let fused = trajectory(config, false, rows);
        let ops = trajectory(config, true, rows);
        for (step, (a, b)) in fused.iter().zip(&ops).enumerate() {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= tol * y.abs().max(1.0),
                    "{config:?} step {step} element {i}: fused {x} vs candle ops {y}"
                );
            }
        }
    }

    #[test]
    fn in_place_kernels_follow_the_candle_op_path() {
        for sgd in [
            SgdConfig::default(),
            SgdConfig {
                nesterov: true,
                ..SgdConfig::default()
            },
            SgdConfig {
                dampening: 0.3,
                weight_decay: 0.0,
                ..SgdConfig::default()
            },
            SgdConfig {
                momentum: 0.0,
                ..SgdConfig::default()
            },
        ] {
            // Same f32 operations in the same order: bit for bit.
            assert_same(OptimizerConfig::Sgd(sgd), 0.0);
        }
        assert_same(OptimizerConfig::AdamW(AdamWConfig::default()), 1e-6);
        // LAMB's norms are summed in f64 by the kernels, in f32 by candle.
        assert_same(OptimizerConfig::Lamb(LambConfig::default()), 1e-5);
        assert_same(
            OptimizerConfig::Lamb(LambConfig {
                weight_decay: 0.0,
                max_grad_norm: None,
                ..LambConfig::default()
            }),
            1e-5,
        );
    }
}
