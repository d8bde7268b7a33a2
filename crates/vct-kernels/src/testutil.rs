//! Shared test helpers: a seeded generator, tolerant comparison and finite differences.

use candle_core::{Device, Tensor, Var};

/// A small xorshift generator so tests are reproducible without extra dependencies.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [-1, 1).
    pub(crate) fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub(crate) fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }

    pub(crate) fn tensor(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(self.vec(n), shape, &Device::Cpu).expect("tensor of matching size")
    }

    /// A tensor whose values are a shuffled ramp with spacing 0.1 (no ties).
    pub(crate) fn distinct_tensor(&mut self, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - n as f32 * 0.05).collect();
        for i in (1..n).rev() {
            let j = ((self.uniform() + 1.0) * 0.5 * (i + 1) as f32) as usize % (i + 1);
            v.swap(i, j);
        }
        Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor of matching size")
    }
}

/// Asserts `t` owns its storage (is not a view into a larger buffer): parameter
/// gradients live until the optimizer step, and a view would keep the whole buffer
/// it came from alive until then.
pub(crate) fn assert_owns_storage(t: &Tensor, what: &str) {
    let (storage, _) = t.storage_and_layout();
    let len = match &*storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => v.len(),
        other => panic!("{what}: expected f32 CPU storage, got {:?}", other.dtype()),
    };
    assert_eq!(len, t.elem_count(), "{what} is a view into a larger buffer");
}

/// Asserts `got` agrees with the f64 reference within `rel` relative (to max(1, |ref|)).
pub(crate) fn assert_close(got: &[f32], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = rel * w.abs().max(1.0);
        assert!(
            (g as f64 - w).abs() <= tol,
            "element {i}: got {g}, want {w} (tolerance {tol})"
        );
    }
}

/// Checks the autograd gradient of `sum(f(x) * r)` against central differences.
pub(crate) fn finite_diff_check(
    x: &Tensor,
    f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    seed: u64,
) -> candle_core::Result<()> {
    let var = Var::from_tensor(x)?;
    let y = f(var.as_tensor())?;
    let mut rng = Rng::new(seed);
    let r = rng.tensor(y.dims());
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let g: Vec<f32> = grads
        .get(var.as_tensor())
        .ok_or_else(|| candle_core::Error::Msg("no gradient for the input".into()))?
        .flatten_all()?
        .to_vec1()?;
    let r64: Vec<f64> = r
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .map(|&v| v as f64)
        .collect();
    let loss = |t: &Tensor| -> candle_core::Result<f64> {
        let y: Vec<f32> = f(t)?.flatten_all()?.to_vec1()?;
        Ok(y.iter().zip(&r64).map(|(&a, &b)| a as f64 * b).sum())
    };
    let base: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let eps = 1e-2f32;
    for i in 0..base.len() {
        let mut p = base.clone();
        p[i] += eps;
        let lp = loss(&Tensor::from_vec(p.clone(), x.dims(), &Device::Cpu)?)?;
        p[i] -= 2.0 * eps;
        let lm = loss(&Tensor::from_vec(p, x.dims(), &Device::Cpu)?)?;
        let fd = (lp - lm) / (2.0 * eps as f64);
        let tol = 2e-3 * fd.abs().max(1.0);
        assert!(
            (fd - g[i] as f64).abs() <= tol,
            "element {i}: autograd {} vs finite difference {fd}",
            g[i]
        );
    }
    Ok(())
}

/// Max-norm difference of two slices relative to the larger max norm of the two.
pub(crate) fn max_rel_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let scale = a
        .iter()
        .chain(b)
        .fold(0f64, |m, &v| m.max((v as f64).abs()))
        .max(1e-12);
    a.iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()))
        / scale
}
