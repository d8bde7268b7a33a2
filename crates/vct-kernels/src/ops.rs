//! Small fused elementwise ops that save autograd nodes: `relu(a + b)` for residual joins,
//! ReLU, and a per-channel bias with optional ReLU.
//!
//! Built from stock ops, a residual join is an add and a ReLU, and the ReLU's backward
//! alone is five full-size passes in candle (compare, cast, multiply, zero-fill, add).
//! Here the forward is one pass and the backward one masking pass shared by both inputs.
//! Tensors that are not `f32` on the CPU, and the `Candle` backend, use stock ops.

use crate::backend::use_kernels;
use crate::error::KernelError;
use crate::storage::{f32_slice, f32_slice_mut, prepare};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, InplaceOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Elements per rayon task in the elementwise loops.
const CHUNK: usize = 1 << 15;

/// `relu(a + b)` for two tensors of the same shape, differentiable in both.
pub fn add_relu(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    const OP: &str = "add_relu";
    if a.dims() != b.dims() {
        return Err(KernelError::Shape {
            op: OP,
            what: "rhs",
            got: b.dims().to_vec(),
            expected: format!("{:?}, the shape of lhs", a.dims()),
        }
        .into());
    }
    if !(use_kernels(a) && use_kernels(b)) {
        return (a + b)?.relu();
    }
    let a = prepare(a, a.rank(), OP, "lhs")?;
    let b = prepare(b, b.rank(), OP, "rhs")?;
    a.apply_op2(&b, AddRelu)
}

/// [`add_relu`] for inference, written over `a`: no output to allocate (on a
/// ResNet-50 16×224 step the joins' outputs are 350 MB of fresh pages) and one write
/// stream fewer. `a` must be a tensor nothing else reads afterwards, such as a layer's
/// own new output. Where either input tracks gradients, or is not an `f32`,
/// contiguous CPU tensor under the kernels, this is [`add_relu`] (a new tensor).
pub fn add_relu_in_place(a: Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let in_place = a.dims() == b.dims()
        && !(a.track_op() || b.track_op())
        && use_kernels(&a)
        && use_kernels(b)
        && a.is_contiguous();
    if !in_place {
        return add_relu(&a, b);
    }
    let b = prepare(b, b.rank(), "add_relu_in_place", "rhs")?;
    a.inplace_op2(&b, &AddReluInPlace)?;
    Ok(a)
}

/// `a ← relu(a + b)`.
struct AddReluInPlace;

impl InplaceOp2 for AddReluInPlace {
    fn name(&self) -> &'static str {
        "vct-add-relu-in-place"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let _span = crate::profile::Span::new(crate::profile::Kernel::Elementwise);
        let a = f32_slice_mut(s1, l1, "add_relu_in_place", "lhs")?;
        let b = f32_slice(s2, l2, "add_relu_in_place", "rhs")?;
        a.par_chunks_mut(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .for_each(|(a, b)| {
                for (u, &v) in a.iter_mut().zip(b) {
                    *u = (*u + v).max(0.0);
                }
            });
        Ok(())
    }
}

struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "vct-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _span = crate::profile::Span::new(crate::profile::Kernel::Elementwise);
        let a = f32_slice(s1, l1, "add_relu", "lhs")?;
        let b = f32_slice(s2, l2, "add_relu", "rhs")?;
        let mut y = vec![0f32; a.len()];
        y.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(y, (a, b))| {
                for ((o, &u), &v) in y.iter_mut().zip(a).zip(b) {
                    *o = (u + v).max(0.0);
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad_res
            .contiguous()?
            .apply_op2_no_bwd(&res.contiguous()?, &ReluMask)?;
        let ga = a.track_op().then(|| g.clone());
        let gb = b.track_op().then_some(g);
        Ok((ga, gb))
    }
}

/// `grad · (y > 0)`: inputs the output gradient and the ReLU's output.
struct ReluMask;

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "vct-relu-mask"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _span = crate::profile::Span::new(crate::profile::Kernel::Elementwise);
        let g = f32_slice(s1, l1, "relu backward", "output gradient")?;
        let y = f32_slice(s2, l2, "relu backward", "output")?;
        let mut out = vec![0f32; g.len()];
        out.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
            .for_each(|(o, (g, y))| {
                for ((o, &gv), &yv) in o.iter_mut().zip(g).zip(y) {
                    *o = if yv > 0.0 { gv } else { 0.0 };
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `relu(x)`, with a one-pass backward.
pub fn relu(x: &Tensor) -> candle_core::Result<Tensor> {
    if !use_kernels(x) {
        return x.relu();
    }
    let x = prepare(x, x.rank(), "relu", "input")?;
    x.apply_op1(Relu)
}

/// `x + b` per channel of an NCHW tensor (`b` of shape `(C,)`), then ReLU if `relu`:
/// one pass forward, one masking pass and one reduction backward (candle's broadcast add
/// costs about five convolutions' worth of passes in its backward).
pub fn bias_act(x: &Tensor, b: &Tensor, relu: bool) -> candle_core::Result<Tensor> {
    const OP: &str = "bias_act";
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
    if b.dims() != [c] {
        return Err(KernelError::Shape {
            op: OP,
            what: "bias",
            got: b.dims().to_vec(),
            expected: format!("({c},), one value per channel"),
        }
        .into());
    }
    if !use_kernels(x) {
        return crate::stock::bias_act(x, b, relu);
    }
    let x = prepare(x, 4, OP, "input")?;
    let b = prepare(b, 1, OP, "bias")?;
    x.apply_op2(&b, BiasAct { relu })
}

struct BiasAct {
    relu: bool,
}

impl CustomOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "vct-bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _span = crate::profile::Span::new(crate::profile::Kernel::Elementwise);
        let x = f32_slice(s1, l1, "bias_act", "input")?;
        let b = f32_slice(s2, l2, "bias_act", "bias")?;
        let dims = l1.dims();
        let c = dims[1];
        let hw: usize = dims[2..].iter().product();
        let mut y = vec![0f32; x.len()];
        if hw > 0 {
            y.par_chunks_mut(hw)
                .zip(x.par_chunks(hw))
                .enumerate()
                .for_each(|(p, (yp, xp))| {
                    let bias = b[p % c];
                    if self.relu {
                        for (o, &v) in yp.iter_mut().zip(xp) {
                            *o = (v + bias).max(0.0);
                        }
                    } else {
                        for (o, &v) in yp.iter_mut().zip(xp) {
                            *o = v + bias;
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad_res.contiguous()?;
        let g = if self.relu {
            g.apply_op2_no_bwd(&res.contiguous()?, &ReluMask)?
        } else {
            g
        };
        let db = if b.track_op() {
            Some(g.apply_op1_no_bwd(&ChannelSum)?)
        } else {
            None
        };
        Ok((x.track_op().then_some(g), db))
    }
}

/// Σ over N, H and W of an NCHW tensor: `(C,)`.
struct ChannelSum;

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "vct-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _span = crate::profile::Span::new(crate::profile::Kernel::Elementwise);
        let g = f32_slice(s, l, "bias_act backward", "output gradient")?;
        let dims = l.dims();
        let (n, c) = (dims[0], dims[1]);
        let hw: usize = dims[2..].iter().product();
        let sums: Vec<f32> = (0..c)
            .into_par_iter()
            .map(|ch| {
                (0..n)
                    .map(|i| {
                        let p = (i * c + ch) * hw;
                        g[p..p + hw].iter().map(|&v| v as f64).sum::<f64>()
                    })
                    .sum::<f64>() as f32
            })
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "vct-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _span = crate::profile::Span::new(crate::profile::Kernel::Elementwise);
        let x = f32_slice(s, l, "relu", "input")?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| {
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = v.max(0.0);
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = grad_res
            .contiguous()?
            .apply_op2_no_bwd(&res.contiguous()?, &ReluMask)?;
        Ok(Some(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{finite_diff_check, max_rel_diff, Rng};
    use candle_core::Var;

    #[test]
    fn add_relu_matches_stock_ops_with_gradients() -> candle_core::Result<()> {
        let mut rng = Rng::new(31);
        let (a, b) = (
            Var::from_tensor(&rng.tensor(&[2, 3, 5, 4]))?,
            Var::from_tensor(&rng.tensor(&[2, 3, 5, 4]))?,
        );
        let r = rng.tensor(&[2, 3, 5, 4]);
        let ours = add_relu(a.as_tensor(), b.as_tensor())?;
        let stock = (a.as_tensor() + b.as_tensor())?.relu()?;
        let go = (&ours * &r)?.sum_all()?.backward()?;
        let gs = (&stock * &r)?.sum_all()?.backward()?;
        let v = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        assert_eq!(max_rel_diff(&v(&ours)?, &v(&stock)?), 0.0);
        for x in [&a, &b] {
            let (o, s) = (go.get(x.as_tensor()), gs.get(x.as_tensor()));
            let (o, s) = (
                o.ok_or_else(|| candle_core::Error::Msg("no grad".into()))?,
                s.ok_or_else(|| candle_core::Error::Msg("no grad".into()))?,
            );
            assert_eq!(max_rel_diff(&v(o)?, &v(s)?), 0.0);
        }
        let bt = rng.tensor(&[2, 3, 5, 4]);
        finite_diff_check(&rng.distinct_tensor(&[2, 3, 5, 4]), |t| add_relu(t, &bt), 1)?;
        finite_diff_check(&rng.distinct_tensor(&[3, 7]), relu, 2)?;
        assert!(add_relu(&bt, &rng.tensor(&[2, 3, 5])).is_err());
        Ok(())
    }

    #[test]
    fn add_relu_in_place_overwrites_only_untracked_inputs() -> candle_core::Result<()> {
        let mut rng = Rng::new(33);
        let (a, b) = (rng.tensor(&[2, 3, 5, 4]), rng.tensor(&[2, 3, 5, 4]));
        let v = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let want = v(&(&a + &b)?.relu()?)?;
        // Untracked: the result is `a`'s storage, overwritten.
        let a_copy = a.copy()?;
        let out = add_relu_in_place(a.clone(), &b)?;
        assert_eq!(v(&out)?, want);
        assert_eq!(v(&a)?, want, "a itself holds the result");
        // Tracked: a new tensor, `a` untouched, gradients flow.
        let tracked = Var::from_tensor(&a_copy)?;
        let out = add_relu_in_place(tracked.as_tensor().clone(), &b)?;
        assert_eq!(v(&out)?, want);
        assert_eq!(v(tracked.as_tensor())?, v(&a_copy)?);
        assert!(out
            .sum_all()?
            .backward()?
            .get(tracked.as_tensor())
            .is_some());
        assert!(add_relu_in_place(b.clone(), &rng.tensor(&[2, 3, 5])).is_err());
        Ok(())
    }

    #[test]
    fn bias_act_matches_stock_ops_with_gradients() -> candle_core::Result<()> {
        let mut rng = crate::testutil::Rng::new(41);
        for relu in [false, true] {
            let x = rng.tensor(&[2, 3, 4, 5]);
            let b = rng.tensor(&[3]);
            let run = || -> candle_core::Result<Vec<Vec<f32>>> {
                let (xv, bv) = (Var::from_tensor(&x)?, Var::from_tensor(&b)?);
                let y = bias_act(xv.as_tensor(), bv.as_tensor(), relu)?;
                let r = crate::testutil::Rng::new(42).tensor(y.dims());
                let g = (&y * &r)?.sum_all()?.backward()?;
                let mut out = vec![y.flatten_all()?.to_vec1()?];
                for v in [&xv, &bv] {
                    out.push(g.get(v).expect("a gradient").flatten_all()?.to_vec1()?);
                }
                Ok(out)
            };
            let ours = run()?;
            let stock = crate::with_backend(crate::KernelBackend::Candle, run)?;
            for (a, s) in ours.iter().zip(&stock) {
                let d = crate::testutil::max_rel_diff(a, s);
                assert!(d < 1e-5, "relu {relu}: differs by {d}");
            }
        }
        let x = Tensor::zeros(
            (1, 3, 2, 2),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )?;
        let b = Tensor::zeros(2, candle_core::DType::F32, &candle_core::Device::Cpu)?;
        assert!(bias_act(&x, &b, false).is_err());
        Ok(())
    }
}
