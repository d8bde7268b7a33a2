//! Small fused elementwise ops that save autograd nodes: `relu(a + b)` for residual joins.
//!
//! Built from stock ops, a residual join is an add and a ReLU, and the ReLU's backward
//! alone is five full-size passes in candle (compare, cast, multiply, zero-fill, add).
//! Here the forward is one pass and the backward one masking pass shared by both inputs.

use crate::error::KernelError;
use crate::storage::{f32_slice, prepare};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Elements per rayon task in the elementwise loops.
const CHUNK: usize = 1 << 15;

/// `relu(a + b)` for two `f32` CPU tensors of the same shape, differentiable in both.
pub fn add_relu(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    const OP: &str = "add_relu";
    let a = prepare(a, a.rank(), OP, "lhs")?;
    let b = prepare(b, b.rank(), OP, "rhs")?;
    if a.dims() != b.dims() {
        return Err(KernelError::Shape {
            op: OP,
            what: "rhs",
            got: b.dims().to_vec(),
            expected: format!("{:?}, the shape of lhs", a.dims()),
        }
        .into());
    }
    a.apply_op2(&b, AddRelu)
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

/// `relu(x)` for an `f32` CPU tensor, with a one-pass backward.
pub fn relu(x: &Tensor) -> candle_core::Result<Tensor> {
    let x = prepare(x, x.rank(), "relu", "input")?;
    x.apply_op1(Relu)
}

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "vct-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
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
}
