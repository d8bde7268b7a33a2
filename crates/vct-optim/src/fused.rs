//! The update rules as in-place, one-pass-per-tensor loops for `f32` CPU tensors.
//!
//! Built from candle ops, an SGD step is seven full-size allocations and eight passes
//! over every parameter (LAMB about fifteen); on ResNet-50 that was a tenth of a
//! training step. Here each state tensor and each parameter is rewritten in place
//! (candle's `InplaceOp3`), with the reference implementations' f32 operations in the
//! same order, so the trajectories equal the candle-op path's. Other devices and dtypes
//! keep the candle-op path in `optimizer.rs`.

use candle_core::{CpuStorage, InplaceOp3, Layout, Tensor};
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

/// One SGD step of one parameter: momentum buffer, then the parameter.
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
    let buf = if momentum != 0.0 {
        Some(match buf {
            // First step: buf = d (no dampening), as PyTorch.
            None => {
                let b = fresh(g)?;
                apply("sgd-buf-init", &b, p, p, |g, p, _| {
                    decayed(g, p, wd32, decay)
                })?;
                b
            }
            Some(b) => {
                apply("sgd-buf", &b, g, p, |b, g, p| {
                    (b * m32 + 0.0) + (decayed(g, p, wd32, decay) * damp32 + 0.0)
                })?;
                b
            }
        })
    } else {
        None
    };
    match &buf {
        Some(b) => apply("sgd-param", p, g, b, |p, g, b| {
            let step = if nesterov {
                decayed(g, p, wd32, decay) + (b * m32 + 0.0)
            } else {
                b
            };
            p - (step * lr32 + 0.0)
        })?,
        None => apply("sgd-param", p, g, g, |p, g, _| {
            p - (decayed(g, p, wd32, decay) * lr32 + 0.0)
        })?,
    }
    Ok(buf)
}

/// Adam's moments in place (zeros before the first update): `m = β1·m + s·g`,
/// `v = β2·v + (1 − β2)·g²`, with `g` divided by `clip` when given.
fn moments(
    g: &Tensor,
    m: Option<Tensor>,
    v: Option<Tensor>,
    beta1: f64,
    scale: f64,
    beta2: f64,
    clip: Option<f32>,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (b1, s, b2, one_b2) = (
        beta1 as f32,
        scale as f32,
        beta2 as f32,
        (1.0 - beta2) as f32,
    );
    let grad = |g: f32| match clip {
        Some(c) => g / c,
        None => g,
    };
    let m = match m {
        Some(m) => {
            apply("adam-m", &m, g, g, |m, g, _| {
                (m * b1 + 0.0) + (grad(g) * s + 0.0)
            })?;
            m
        }
        None => {
            let m = fresh(g)?;
            apply("adam-m-init", &m, g, g, |_, g, _| grad(g) * s + 0.0)?;
            m
        }
    };
    let v = match v {
        Some(v) => {
            apply("adam-v", &v, g, g, |v, g, _| {
                let g = grad(g);
                (v * b2 + 0.0) + (g * g * one_b2 + 0.0)
            })?;
            v
        }
        None => {
            let v = fresh(g)?;
            apply("adam-v-init", &v, g, g, |_, g, _| {
                let g = grad(g);
                g * g * one_b2 + 0.0
            })?;
            v
        }
    };
    Ok((m, v))
}

/// One AdamW step of one parameter (PyTorch's `_single_tensor_adamw`).
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
    let (m, v) = moments(g, m, v, beta1, 1.0 - beta1, beta2, None)?;
    let decay = (1.0 - lr * wd) as f32;
    let bc2 = (1.0 / (1.0 - beta2.powi(step)).sqrt()) as f32;
    let step_size = (lr / (1.0 - beta1.powi(step))) as f32;
    let eps = eps as f32;
    apply("adamw-param", p, &m, &v, |p, m, v| {
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
    Ok(x.par_chunks(CHUNK)
        .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
        .sum())
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

/// One LAMB step of one parameter (timm's `Lamb.step`): moments, the update's and the
/// weight's norms in one read pass, then the parameter.
pub(crate) fn lamb(
    p: &Tensor,
    g: &Tensor,
    m: Option<Tensor>,
    v: Option<Tensor>,
    c: LambStep,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (m, v) = moments(g, m, v, c.beta1, c.beta3, c.beta2, c.clip)?;
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
    let trust = if decay || c.adapt {
        let (w2, u2) = {
            let (ps, pl) = p.storage_and_layout();
            let (ms, ml) = m.storage_and_layout();
            let (vs, vl) = v.storage_and_layout();
            let (
                candle_core::Storage::Cpu(ps),
                candle_core::Storage::Cpu(ms),
                candle_core::Storage::Cpu(vs),
            ) = (&*ps, &*ms, &*vs)
            else {
                candle_core::bail!("lamb: expected CPU tensors");
            };
            let (pv, mv, vv) = (slice(ps, pl)?, slice(ms, ml)?, slice(vs, vl)?);
            pv.par_chunks(CHUNK)
                .zip(mv.par_chunks(CHUNK).zip(vv.par_chunks(CHUNK)))
                .map(|(pc, (mc, vc))| {
                    let mut w2 = 0f64;
                    let mut u2 = 0f64;
                    for ((&p, &m), &v) in pc.iter().zip(mc).zip(vc) {
                        let u = update(p, m, v) as f64;
                        w2 += (p as f64) * (p as f64);
                        u2 += u * u;
                    }
                    (w2, u2)
                })
                .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
        };
        let (w, u) = (w2.sqrt() as f32, u2.sqrt() as f32);
        // 1 where either norm is 0 (timm's nested torch.where).
        let mut t = if w > 0.0 && u > 0.0 { w / u } else { 1.0 };
        if c.trust_clip {
            t = t.min(1.0);
        }
        t
    } else {
        1.0
    };
    let lr = c.lr as f32;
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
    fn trajectory(config: OptimizerConfig, candle_ops: bool) -> Vec<Vec<f32>> {
        FORCE_CANDLE_OPS.with(|f| f.set(candle_ops));
        let dev = Device::Cpu;
        let w = Var::from_vec(values(600, 1), (20, 30), &dev).unwrap();
        let b = Var::from_vec(values(20, 2), 20, &dev).unwrap();
        let target = Tensor::from_vec(values(600, 3), (20, 30), &dev).unwrap();
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
        let fused = trajectory(config, false);
        let ops = trajectory(config, true);
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
