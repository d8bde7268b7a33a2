//! The GEMM behind every convolution (the `gemm` crate, AVX-512 where the CPU has it)
//! and the per-thread scratch buffers the lowering uses.

use crate::error::KernelError;
use gemm::Parallelism;
use std::cell::RefCell;

thread_local! {
    /// Per-thread column buffer (im2col), reused across calls.
    pub(super) static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread column-gradient buffer (before col2im), reused across calls.
    pub(super) static DCOL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread buffer for a block's output or output gradient as one matrix.
    pub(super) static TMP: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's buffer from `key`, grown to at least `len` elements.
pub(super) fn with_buffer<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    // Taken out rather than borrowed so nested rayon work on this thread cannot clash.
    let mut buf = key.with(|b| std::mem::take(&mut *b.borrow_mut()));
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    key.with(|b| *b.borrow_mut() = buf);
    r
}

/// A row-major or strided matrix operand: data and (row stride, column stride).
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    pub(super) data: &'a [f32],
    pub(super) rs: usize,
    pub(super) cs: usize,
}

/// `c (m×n, row-major) = a (m×k) · b (k×n)`, or `c += a · b` with `accumulate`.
#[allow(clippy::too_many_arguments)]
pub(super) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    c: &mut [f32],
    accumulate: bool,
    par: Parallelism,
) -> Result<(), KernelError> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let last = |rows: usize, cols: usize, mat: &Mat<'_>| (rows - 1) * mat.rs + (cols - 1) * mat.cs;
    let fits = k == 0 || (last(m, k, &a) < a.data.len() && last(k, n, &b) < b.data.len());
    if !fits || m * n > c.len() {
        return Err(KernelError::Param {
            op: "conv2d",
            what: "internal GEMM operand",
            got: format!("{m}×{k}·{k}×{n}"),
            expected: "operands inside their buffers".into(),
        });
    }
    // SAFETY: the checks above keep every index the GEMM reads or writes inside the
    // three slices; `c` is exclusively borrowed and does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}
