//! GEMMs for grouped convolutions with few channels per group (ResNeXt's 32 groups of
//! 4–32 channels, depthwise). Each group's product is tiny — 16 × 144 times 144 × 256,
//! say — and a general GEMM spends most of such a call packing and dispatching: 32 of
//! them ran ResNeXt's 3×3 layers at a tenth of the dense rate. These register-blocked
//! loops skip the packing (the operands are already in cache) and keep their
//! accumulators in vector registers; they are compiled for AVX-512 and for AVX2 + FMA
//! and pick one at run time. Sums run in a fixed order, so results are deterministic.

use super::geom::Geom;

/// Whether a convolution's per-group GEMMs should run here rather than in the `gemm`
/// crate: grouped, with at most 32 input and 64 output channels per group.
pub(super) fn wanted(g: &Geom) -> bool {
    g.groups > 1 && g.cin_g() <= 32 && g.cout_g() <= 64
}

/// A matrix operand: element `(i, j)` at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(super) struct Strided<'a> {
    pub(super) data: &'a [f32],
    pub(super) rs: usize,
    pub(super) cs: usize,
}

impl Strided<'_> {
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// Multiply-add, fused where the instruction set has it.
trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// `a·b + c` in one rounding (FMA targets only: elsewhere it is a library call).
struct Fused;
impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// `a·b + c` as two operations (the portable fallback).
struct Separate;
impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// `c (m×n, row-major) = a (m×k) · b (k×n, row-major)`, or `c +=` with `accumulate`.
/// Vectorised along `n`: blocks of `MR` rows × `NR` columns stay in registers while `k`
/// runs, each row of `b` loaded once per block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn nn_body<F: MulAdd, const MR: usize, const NR: usize>(
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    let mut i0 = 0;
    while i0 < m {
        let mr = MR.min(m - i0);
        let mut j0 = 0;
        while j0 < n {
            let nr = NR.min(n - j0);
            let mut acc = [[0f32; NR]; MR];
            if mr == MR && nr == NR {
                for p in 0..k {
                    let bp: &[f32; NR] = b[p * n + j0..][..NR].try_into().expect("NR values");
                    for (r, row) in acc.iter_mut().enumerate() {
                        let av = a.at(i0 + r, p);
                        for (o, &bv) in row.iter_mut().zip(bp) {
                            *o = F::mul_add(av, bv, *o);
                        }
                    }
                }
            } else {
                for p in 0..k {
                    let bp = &b[p * n + j0..][..nr];
                    for (r, row) in acc.iter_mut().enumerate().take(mr) {
                        let av = a.at(i0 + r, p);
                        for (o, &bv) in row.iter_mut().zip(bp) {
                            *o = F::mul_add(av, bv, *o);
                        }
                    }
                }
            }
            for (r, row) in acc.iter().enumerate().take(mr) {
                let dst = &mut c[(i0 + r) * n + j0..][..nr];
                if accumulate {
                    dst.iter_mut().zip(row).for_each(|(d, v)| *d += v);
                } else {
                    dst.copy_from_slice(&row[..nr]);
                }
            }
            j0 += nr;
        }
        i0 += mr;
    }
}

/// `c (m×n, row-major) = a (m×l) · bᵀ` where `b` is `n×l` (row stride `b_rs`), or `c +=`
/// with `accumulate`: dot products along `l`, `MR × NR` of them at once, each with `L`
/// lanes of partial sums.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn nt_body<F: MulAdd, const MR: usize, const NR: usize, const L: usize>(
    m: usize,
    n: usize,
    l: usize,
    a: &[f32],
    a_rs: usize,
    b: &[f32],
    b_rs: usize,
    c: &mut [f32],
    accumulate: bool,
) {
    let full = l - l % L;
    let mut i0 = 0;
    while i0 < m {
        let mr = MR.min(m - i0);
        let mut j0 = 0;
        while j0 < n {
            let nr = NR.min(n - j0);
            let mut acc = [[[0f32; L]; NR]; MR];
            let mut p = 0;
            while p < full {
                let mut bv = [[0f32; L]; NR];
                for (jj, v) in bv.iter_mut().enumerate().take(nr) {
                    *v = b[(j0 + jj) * b_rs + p..][..L].try_into().expect("L values");
                }
                for (r, acc_r) in acc.iter_mut().enumerate().take(mr) {
                    let av: &[f32; L] = a[(i0 + r) * a_rs + p..][..L].try_into().expect("L");
                    for (acc_rj, bj) in acc_r.iter_mut().zip(&bv) {
                        for q in 0..L {
                            acc_rj[q] = F::mul_add(av[q], bj[q], acc_rj[q]);
                        }
                    }
                }
                p += L;
            }
            for (r, acc_r) in acc.iter().enumerate().take(mr) {
                let ar = &a[(i0 + r) * a_rs..][..l];
                for (jj, lanes) in acc_r.iter().enumerate().take(nr) {
                    let br = &b[(j0 + jj) * b_rs..][..l];
                    let mut s: f32 = lanes.iter().sum();
                    for q in full..l {
                        s = F::mul_add(ar[q], br[q], s);
                    }
                    let d = &mut c[(i0 + r) * n + j0 + jj];
                    *d = if accumulate { *d + s } else { s };
                }
            }
            j0 += nr;
        }
        i0 += mr;
    }
}

/// Checks that every index `nn`/`nt` touches lies inside its slice (so a bug is a clean
/// panic at the call, not an out-of-bounds read deep in a loop).
fn assert_fits(what: &str, rows: usize, cols: usize, rs: usize, cs: usize, len: usize) {
    let ok = rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len;
    assert!(
        ok,
        "small GEMM operand {what} ({rows}×{cols}) outside its buffer"
    );
}

/// `c = a · b` (or `c += a · b`): `a` any strides, `b` and `c` row-major.
pub(super) fn nn(
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    assert_fits("a", m, k, a.rs, a.cs, a.data.len());
    assert_fits("b", k, n, n, 1, b.len());
    assert_fits("c", m, n, n, 1, c.len());
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512(
            m: usize,
            n: usize,
            k: usize,
            a: Strided<'_>,
            b: &[f32],
            c: &mut [f32],
            acc: bool,
        ) {
            nn_body::<Fused, 4, 32>(m, n, k, a, b, c, acc)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(
            m: usize,
            n: usize,
            k: usize,
            a: Strided<'_>,
            b: &[f32],
            c: &mut [f32],
            acc: bool,
        ) {
            nn_body::<Fused, 4, 16>(m, n, k, a, b, c, acc)
        }
        if has!("avx512f") {
            // SAFETY: compiled for features this CPU has.
            return unsafe { avx512(m, n, k, a, b, c, accumulate) };
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(m, n, k, a, b, c, accumulate) };
        }
    }
    nn_body::<Separate, 4, 8>(m, n, k, a, b, c, accumulate)
}

/// `c = a · bᵀ` (or `c += a · bᵀ`): `a` is `m×l`, `b` is `n×l`, both with unit column
/// stride; `c` row-major `m×n`.
#[allow(clippy::too_many_arguments)]
pub(super) fn nt(
    m: usize,
    n: usize,
    l: usize,
    a: &[f32],
    a_rs: usize,
    b: &[f32],
    b_rs: usize,
    c: &mut [f32],
    accumulate: bool,
) {
    assert_fits("a", m, l, a_rs, 1, a.len());
    assert_fits("b", n, l, b_rs, 1, b.len());
    assert_fits("c", m, n, n, 1, c.len());
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        #[target_feature(enable = "avx512f,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx512(
            m: usize,
            n: usize,
            l: usize,
            a: &[f32],
            ars: usize,
            b: &[f32],
            brs: usize,
            c: &mut [f32],
            acc: bool,
        ) {
            nt_body::<Fused, 4, 4, 16>(m, n, l, a, ars, b, brs, c, acc)
        }
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx2(
            m: usize,
            n: usize,
            l: usize,
            a: &[f32],
            ars: usize,
            b: &[f32],
            brs: usize,
            c: &mut [f32],
            acc: bool,
        ) {
            nt_body::<Fused, 2, 4, 8>(m, n, l, a, ars, b, brs, c, acc)
        }
        if has!("avx512f") {
            // SAFETY: compiled for features this CPU has.
            return unsafe { avx512(m, n, l, a, a_rs, b, b_rs, c, accumulate) };
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(m, n, l, a, a_rs, b, b_rs, c, accumulate) };
        }
    }
    nt_body::<Separate, 2, 2, 8>(m, n, l, a, a_rs, b, b_rs, c, accumulate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    fn reference(
        m: usize,
        n: usize,
        k: usize,
        a: impl Fn(usize, usize) -> f32,
        b: impl Fn(usize, usize) -> f32,
    ) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a(i, p) as f64 * b(p, j) as f64).sum();
            }
        }
        c
    }

    fn close(got: &[f32], want: &[f64], what: &str) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (*g as f64 - w).abs() < 1e-4 * (1.0 + w.abs()),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    /// Full blocks and every kind of remainder, plain and accumulating, against f64 sums.
    #[test]
    fn both_products_match_f64_references() {
        let mut rng = Rng::new(5);
        for (m, n, k) in [
            (4, 32, 9),
            (8, 64, 36),
            (7, 45, 13),
            (1, 1, 1),
            (16, 256, 144),
            (36, 50, 3),
            (3, 17, 40),
        ] {
            let (a, b) = (rng.vec(m * k), rng.vec(k * n));
            let init = rng.vec(m * n);
            // a transposed in memory (k×m): exercises the strided operand.
            let at: Vec<f32> = (0..k * m).map(|q| a[(q % m) * k + q / m]).collect();
            for accumulate in [false, true] {
                let base = |i: usize, j: usize| {
                    if accumulate {
                        init[i * n + j] as f64
                    } else {
                        0.0
                    }
                };
                let mut want = reference(m, n, k, |i, p| a[i * k + p], |p, j| b[p * n + j]);
                want.iter_mut()
                    .enumerate()
                    .for_each(|(q, w)| *w += base(q / n, q % n));
                let mut c = init.clone();
                nn(
                    m,
                    n,
                    k,
                    Strided {
                        data: &at,
                        rs: 1,
                        cs: m,
                    },
                    &b,
                    &mut c,
                    accumulate,
                );
                close(&c, &want, &format!("nn {m}×{n}×{k} acc {accumulate}"));
                // The same product as a · (bᵀ)ᵀ, with bᵀ stored n×k.
                let bt: Vec<f32> = (0..n * k).map(|q| b[(q % k) * n + q / k]).collect();
                let mut c = init.clone();
                nt(m, n, k, &a, k, &bt, k, &mut c, accumulate);
                close(&c, &want, &format!("nt {m}×{n}×{k} acc {accumulate}"));
            }
        }
    }
}
