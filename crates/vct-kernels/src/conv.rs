//! 2-D convolution (grouped, strided, padded) with input and weight gradients via GEMM.
//!
//! Forward: per image, im2col (skipped for 1×1 stride-1 unpadded convolutions, which are
//! a plain GEMM on the input) then one GEMM per group over a single column buffer, so a
//! grouped convolution (ResNeXt's 32 groups, depthwise) is one pass of small GEMMs rather
//! than split convolutions and a concatenation. Backward: per image, the weight gradient
//! accumulates `dY · colᵀ` into a per-thread buffer, the input gradient is `Wᵀ · dY`
//! scattered back by col2im. The input gradient is skipped when the input does not track
//! gradients (the network's input image). Images are spread over rayon threads; with
//! fewer images than threads the GEMMs themselves run in parallel. Column buffers are
//! per-thread and reused from call to call.

use crate::error::KernelError;
use crate::storage::{f32_slice, prepare};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;

/// Geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geom {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    groups: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    fn cin_g(&self) -> usize {
        self.cin / self.groups
    }
    fn cout_g(&self) -> usize {
        self.cout / self.groups
    }
    /// Rows of the column matrix of one group: input channels × kernel positions.
    fn k_g(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }
    fn in_image(&self) -> usize {
        self.cin * self.h * self.w
    }
    fn out_plane(&self) -> usize {
        self.oh * self.ow
    }
    fn out_image(&self) -> usize {
        self.cout * self.out_plane()
    }
    /// 1×1, stride 1, no padding: the input image already is the column matrix.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
    fn weight_len(&self) -> usize {
        self.cout * self.k_g()
    }
}

/// 2-D convolution of an NCHW `f32` CPU tensor, PyTorch's `conv2d` without dilation.
///
/// `w` has shape `(C_out, C_in / groups, kh, kw)`, `bias` (optional) `(C_out,)`.
/// Differentiable w.r.t. `x`, `w` and `bias`; the input gradient is computed only if
/// `x` tracks gradients (a `Var` or the result of tracked ops).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: (usize, usize),
    groups: usize,
) -> candle_core::Result<Tensor> {
    const OP: &str = "conv2d";
    let x = prepare(x, 4, OP, "input")?;
    let w = prepare(w, 4, OP, "weight")?;
    let g = geometry(x.dims(), w.dims(), stride, padding, groups)?;
    if crate::backend::dispatch_onednn(&x)? {
        // The arguments were validated above (this crate's contract, stricter than
        // oneDNN's in places), so an error here is a shape oneDNN cannot do: the Rust
        // kernel below computes it (or reports what is wrong with the bias).
        if let Ok(y) = vct_onednn::ops::conv2d(&x, &w, bias, stride, padding, groups) {
            return Ok(y);
        }
    }
    let y = x.apply_op2(&w, Conv { g })?;
    match bias {
        None => Ok(y),
        Some(b) => {
            let b = prepare(b, 1, OP, "bias")?;
            if b.dims() != [g.cout] {
                return Err(KernelError::Shape {
                    op: OP,
                    what: "bias",
                    got: b.dims().to_vec(),
                    expected: format!("({},), one value per output channel", g.cout),
                }
                .into());
            }
            y.broadcast_add(&b.reshape((1, g.cout, 1, 1))?)
        }
    }
}

fn geometry(
    xd: &[usize],
    wd: &[usize],
    stride: (usize, usize),
    padding: (usize, usize),
    groups: usize,
) -> Result<Geom, KernelError> {
    const OP: &str = "conv2d";
    let param = |what, got: usize, expected: &str| KernelError::Param {
        op: OP,
        what,
        got: got.to_string(),
        expected: expected.to_string(),
    };
    if groups == 0 {
        return Err(param("groups", 0, "at least 1"));
    }
    if stride.0 == 0 || stride.1 == 0 {
        return Err(param("stride", 0, "at least 1 in both dimensions"));
    }
    let (n, cin, h, w) = (xd[0], xd[1], xd[2], xd[3]);
    let (cout, cin_g, kh, kw) = (wd[0], wd[1], wd[2], wd[3]);
    if cin % groups != 0 || cout % groups != 0 || cin_g * groups != cin || cin_g == 0 {
        return Err(KernelError::Shape {
            op: OP,
            what: "weight",
            got: wd.to_vec(),
            expected: format!(
                "(C_out, C_in / groups, kh, kw) with C_in = {cin}, groups = {groups} dividing C_in and C_out"
            ),
        });
    }
    if kh == 0 || kw == 0 || h + 2 * padding.0 < kh || w + 2 * padding.1 < kw {
        return Err(KernelError::Shape {
            op: OP,
            what: "weight",
            got: wd.to_vec(),
            expected: format!(
                "a kernel no larger than the padded input {}×{}",
                h + 2 * padding.0,
                w + 2 * padding.1
            ),
        });
    }
    Ok(Geom {
        n,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        sh: stride.0,
        sw: stride.1,
        ph: padding.0,
        pw: padding.1,
        groups,
        oh: (h + 2 * padding.0 - kh) / stride.0 + 1,
        ow: (w + 2 * padding.1 - kw) / stride.1 + 1,
    })
}

thread_local! {
    /// Per-thread column buffer (im2col), reused across calls.
    static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread column-gradient buffer (before col2im), reused across calls.
    static DCOL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread buffer for a block's output or output gradient as one matrix.
    static TMP: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's buffer from `key`, grown to at least `len` elements.
fn with_buffer<R>(
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
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// `c (m×n, row-major) = a (m×k) · b (k×n)`, or `c += a · b` with `accumulate`.
#[allow(clippy::too_many_arguments)]
fn sgemm(
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

/// Output indices `[lo, hi)` whose input index `o·s + k − p` lies in `[0, n)`.
#[inline]
fn valid_range(out: usize, s: usize, k: usize, p: usize, n: usize) -> (usize, usize) {
    let lo = if p > k { (p - k).div_ceil(s) } else { 0 };
    // Largest o with o·s + k − p ≤ n − 1.
    let hi = if n + p > k {
        ((n - 1 + p - k) / s + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Writes the columns of one image into `col` (row stride `ld`, starting at column
/// `off`): row `(c, ki, kj)`, column `off + oy·Wo + ox`.
fn im2col(g: &Geom, x: &[f32], col: &mut [f32], ld: usize, off: usize) {
    let op = g.out_plane();
    let mut row = 0;
    for c in 0..g.cin {
        let xc = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            let (ylo, yhi) = valid_range(g.oh, g.sh, ki, g.ph, g.h);
            for kj in 0..g.kw {
                let (xlo, xhi) = valid_range(g.ow, g.sw, kj, g.pw, g.w);
                let dst = &mut col[row * ld + off..row * ld + off + op];
                for oy in 0..g.oh {
                    let d = &mut dst[oy * g.ow..(oy + 1) * g.ow];
                    if oy < ylo || oy >= yhi || xlo >= xhi {
                        d.fill(0.0);
                        continue;
                    }
                    let iy = oy * g.sh + ki - g.ph;
                    let src = &xc[iy * g.w..(iy + 1) * g.w];
                    d[..xlo].fill(0.0);
                    d[xhi..].fill(0.0);
                    let ix0 = xlo * g.sw + kj - g.pw;
                    if g.sw == 1 {
                        d[xlo..xhi].copy_from_slice(&src[ix0..ix0 + (xhi - xlo)]);
                    } else {
                        for (o, v) in d[xlo..xhi].iter_mut().zip(src[ix0..].iter().step_by(g.sw)) {
                            *o = *v;
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// Adds one image's column gradient (row stride `ld`, from column `off`) onto its input
/// gradient `dx`.
fn col2im(g: &Geom, dcol: &[f32], ld: usize, off: usize, dx: &mut [f32]) {
    let mut row = 0;
    for c in 0..g.cin {
        let dc = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            let (ylo, yhi) = valid_range(g.oh, g.sh, ki, g.ph, g.h);
            for kj in 0..g.kw {
                let (xlo, xhi) = valid_range(g.ow, g.sw, kj, g.pw, g.w);
                let src = &dcol[row * ld + off..row * ld + off + g.out_plane()];
                row += 1;
                if xlo >= xhi {
                    continue;
                }
                for oy in ylo..yhi {
                    let iy = oy * g.sh + ki - g.ph;
                    let d = &mut dc[iy * g.w..(iy + 1) * g.w];
                    let s = &src[oy * g.ow + xlo..oy * g.ow + xhi];
                    let ix0 = xlo * g.sw + kj - g.pw;
                    if g.sw == 1 {
                        for (o, v) in d[ix0..ix0 + s.len()].iter_mut().zip(s) {
                            *o += *v;
                        }
                    } else {
                        for (o, v) in d[ix0..].iter_mut().step_by(g.sw).zip(s) {
                            *o += *v;
                        }
                    }
                }
            }
        }
    }
}

/// Copies `nb` images of `rows × plane` (NCHW-like) into one `rows × (nb·plane)` matrix.
fn pack(src: &[f32], nb: usize, rows: usize, plane: usize, dst: &mut [f32]) {
    let ld = nb * plane;
    for i in 0..nb {
        for r in 0..rows {
            let s = &src[(i * rows + r) * plane..(i * rows + r + 1) * plane];
            dst[r * ld + i * plane..r * ld + (i + 1) * plane].copy_from_slice(s);
        }
    }
}

/// The inverse of [`pack`]: scatters (or, with `add`, accumulates) the matrix back.
fn unpack(src: &[f32], nb: usize, rows: usize, plane: usize, dst: &mut [f32], add: bool) {
    let ld = nb * plane;
    for i in 0..nb {
        for r in 0..rows {
            let s = &src[r * ld + i * plane..r * ld + (i + 1) * plane];
            let d = &mut dst[(i * rows + r) * plane..(i * rows + r + 1) * plane];
            if add {
                for (o, v) in d.iter_mut().zip(s) {
                    *o += *v;
                }
            } else {
                d.copy_from_slice(s);
            }
        }
    }
}

/// Columns a GEMM should have at least to run near full speed; small late-stage
/// feature maps (2×2 at 64×64 input) are batched over images up to this width.
const TARGET_COLS: usize = 256;

/// How to split the batch: images per GEMM block, blocks per thread task, and the
/// GEMM's own parallelism (used when there are fewer blocks than threads).
fn schedule(g: &Geom) -> (usize, usize, Parallelism) {
    let threads = rayon::current_num_threads().max(1);
    let nb = TARGET_COLS
        .div_ceil(g.out_plane().max(1))
        .clamp(1, g.n.max(1));
    let blocks = g.n.div_ceil(nb);
    if blocks >= threads {
        (nb, blocks.div_ceil(threads), Parallelism::None)
    } else {
        (nb, 1, Parallelism::Rayon(threads))
    }
}

/// Forward convolution op: inputs `x`, `w`.
struct Conv {
    g: Geom,
}

impl Conv {
    /// Forward of a block of `nb` consecutive images: `y` from `x`.
    fn block(
        &self,
        x: &[f32],
        w: &[f32],
        y: &mut [f32],
        nb: usize,
        par: Parallelism,
    ) -> Result<(), KernelError> {
        let g = &self.g;
        let (kg, cog, op) = (g.k_g(), g.cout_g(), g.out_plane());
        let ld = nb * op;
        let run = |col: &[f32], out: &mut [f32]| -> Result<(), KernelError> {
            for grp in 0..g.groups {
                sgemm(
                    cog,
                    ld,
                    kg,
                    Mat {
                        data: &w[grp * cog * kg..],
                        rs: kg,
                        cs: 1,
                    },
                    Mat {
                        data: &col[grp * kg * ld..],
                        rs: ld,
                        cs: 1,
                    },
                    &mut out[grp * cog * ld..(grp + 1) * cog * ld],
                    false,
                    par,
                )?;
            }
            Ok(())
        };
        if nb == 1 && g.is_pointwise() {
            return run(x, y);
        }
        with_buffer(&COL, g.groups * kg * ld, |col| {
            if g.is_pointwise() {
                pack(x, nb, g.cin, op, col);
            } else {
                for i in 0..nb {
                    im2col(
                        g,
                        &x[i * g.in_image()..(i + 1) * g.in_image()],
                        col,
                        ld,
                        i * op,
                    );
                }
            }
            if nb == 1 {
                run(col, y)
            } else {
                with_buffer(&TMP, g.cout * ld, |out| {
                    run(col, out)?;
                    unpack(out, nb, g.cout, op, y, false);
                    Ok(())
                })
            }
        })
    }
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "vct-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "conv2d", "input")?;
        let w = f32_slice(s2, l2, "conv2d", "weight")?;
        let g = self.g;
        let mut y = vec![0f32; g.n * g.out_image()];
        let (nb, per_task, par) = schedule(&g);
        let (xi, yi) = (g.in_image(), g.out_image());
        if yi > 0 && xi > 0 {
            y.par_chunks_mut(nb * per_task * yi)
                .zip(x.par_chunks(nb * per_task * xi))
                .try_for_each(|(yc, xc)| {
                    for (yb, xb) in yc.chunks_mut(nb * yi).zip(xc.chunks(nb * xi)) {
                        self.block(xb, w, yb, yb.len() / yi, par)?;
                    }
                    Ok::<(), KernelError>(())
                })?;
        }
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.cout, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let want_dx = x.track_op();
        let want_dw = w.track_op();
        if !want_dx && !want_dw {
            return Ok((None, None));
        }
        let g = self.g;
        let dy = grad_res.contiguous()?;
        let packed = x.apply_op3_no_bwd(
            w,
            &dy,
            &ConvBackward {
                g,
                want_dx,
                want_dw,
            },
        )?;
        let dx_len = if want_dx { g.n * g.in_image() } else { 0 };
        let dx = if want_dx {
            Some(packed.narrow(0, 0, dx_len)?.reshape(x.shape())?)
        } else {
            None
        };
        let dw = if want_dw {
            Some(
                packed
                    .narrow(0, dx_len, g.weight_len())?
                    .reshape(w.shape())?,
            )
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// Backward op: inputs `x`, `w`, `dy`; output `[dx (flat, if wanted), dw (if wanted)]`.
struct ConvBackward {
    g: Geom,
    want_dx: bool,
    want_dw: bool,
}

impl ConvBackward {
    /// Gradients of a block of `nb` images: adds to `dw`, writes `dx` (zeroed on entry).
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        dw: Option<&mut [f32]>,
        nb: usize,
        par: Parallelism,
    ) -> Result<(), KernelError> {
        let g = &self.g;
        let (kg, cog, op) = (g.k_g(), g.cout_g(), g.out_plane());
        let ld = nb * op;
        // dY of the block as one C_out × (nb·HoWo) matrix.
        with_buffer(&TMP, if nb == 1 { 0 } else { g.cout * ld }, |dyt| {
            let dyt: &[f32] = if nb == 1 {
                dy
            } else {
                pack(dy, nb, g.cout, op, dyt);
                dyt
            };
            if let Some(dw) = dw {
                let acc = |col: &[f32], dw: &mut [f32]| -> Result<(), KernelError> {
                    for grp in 0..g.groups {
                        // dW_g (C_out/g × K_g) += dY_g (C_out/g × L) · col_gᵀ (L × K_g)
                        sgemm(
                            cog,
                            kg,
                            ld,
                            Mat {
                                data: &dyt[grp * cog * ld..],
                                rs: ld,
                                cs: 1,
                            },
                            Mat {
                                data: &col[grp * kg * ld..],
                                rs: 1,
                                cs: ld,
                            },
                            &mut dw[grp * cog * kg..(grp + 1) * cog * kg],
                            true,
                            par,
                        )?;
                    }
                    Ok(())
                };
                if nb == 1 && g.is_pointwise() {
                    acc(x, dw)?;
                } else {
                    with_buffer(&COL, g.groups * kg * ld, |col| {
                        if g.is_pointwise() {
                            pack(x, nb, g.cin, op, col);
                        } else {
                            for i in 0..nb {
                                im2col(
                                    g,
                                    &x[i * g.in_image()..(i + 1) * g.in_image()],
                                    col,
                                    ld,
                                    i * op,
                                );
                            }
                        }
                        acc(col, dw)
                    })?;
                }
            }
            if let Some(dx) = dx {
                // dcol_g (K_g × L) = W_gᵀ (K_g × C_out/g) · dY_g (C_out/g × L)
                let run = |dcol: &mut [f32]| -> Result<(), KernelError> {
                    for grp in 0..g.groups {
                        sgemm(
                            kg,
                            ld,
                            cog,
                            Mat {
                                data: &w[grp * cog * kg..],
                                rs: 1,
                                cs: kg,
                            },
                            Mat {
                                data: &dyt[grp * cog * ld..],
                                rs: ld,
                                cs: 1,
                            },
                            &mut dcol[grp * kg * ld..(grp + 1) * kg * ld],
                            false,
                            par,
                        )?;
                    }
                    Ok(())
                };
                if nb == 1 && g.is_pointwise() {
                    run(dx)?;
                } else {
                    with_buffer(&DCOL, g.groups * kg * ld, |dcol| {
                        run(dcol)?;
                        if g.is_pointwise() {
                            unpack(dcol, nb, g.cin, op, dx, false);
                        } else {
                            for i in 0..nb {
                                col2im(
                                    g,
                                    dcol,
                                    ld,
                                    i * op,
                                    &mut dx[i * g.in_image()..(i + 1) * g.in_image()],
                                );
                            }
                        }
                        Ok::<(), KernelError>(())
                    })?;
                }
            }
            Ok(())
        })
    }
}

impl CustomOp3 for ConvBackward {
    fn name(&self) -> &'static str {
        "vct-conv2d-backward"
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
        const OP: &str = "conv2d backward";
        let x = f32_slice(s1, l1, OP, "input")?;
        let w = f32_slice(s2, l2, OP, "weight")?;
        let dy = f32_slice(s3, l3, OP, "output gradient")?;
        let g = self.g;
        if dy.len() != g.n * g.out_image() {
            return Err(KernelError::Shape {
                op: OP,
                what: "output gradient",
                got: l3.dims().to_vec(),
                expected: format!("({}, {}, {}, {})", g.n, g.cout, g.oh, g.ow),
            }
            .into());
        }
        let dx_len = if self.want_dx { g.n * g.in_image() } else { 0 };
        let wl = g.weight_len();
        let total = dx_len + if self.want_dw { wl } else { 0 };
        let mut out = vec![0f32; total];
        if g.out_image() == 0 || g.in_image() == 0 {
            return Ok((CpuStorage::F32(out), Shape::from(total)));
        }
        let (dx_all, dw_total) = out.split_at_mut(dx_len);
        let (nb, per_task, par) = schedule(&g);
        let task_images = nb * per_task;
        let n_tasks = g.n.div_ceil(task_images);
        // One weight-gradient accumulator per task (about one per thread).
        let mut partial: Vec<Vec<f32>> = (0..n_tasks)
            .map(|_| {
                if self.want_dw {
                    vec![0f32; wl]
                } else {
                    Vec::new()
                }
            })
            .collect();
        let mut dx_tasks: Vec<&mut [f32]> = if self.want_dx {
            dx_all.chunks_mut(task_images * g.in_image()).collect()
        } else {
            (0..n_tasks).map(|_| &mut [][..]).collect()
        };
        partial
            .par_iter_mut()
            .zip(dx_tasks.par_iter_mut())
            .enumerate()
            .try_for_each(|(t, (dw, dxt))| {
                let first = t * task_images;
                let last = (first + task_images).min(g.n);
                let mut i = first;
                while i < last {
                    let nbi = nb.min(last - i);
                    let xb = &x[i * g.in_image()..(i + nbi) * g.in_image()];
                    let dyb = &dy[i * g.out_image()..(i + nbi) * g.out_image()];
                    let dxb = if self.want_dx {
                        let off = (i - first) * g.in_image();
                        Some(&mut dxt[off..off + nbi * g.in_image()])
                    } else {
                        None
                    };
                    let dwb = if self.want_dw {
                        Some(&mut dw[..])
                    } else {
                        None
                    };
                    self.block(xb, w, dyb, dxb, dwb, nbi, par)?;
                    i += nbi;
                }
                Ok::<(), KernelError>(())
            })?;
        if self.want_dw {
            for p in &partial {
                for (t, v) in dw_total.iter_mut().zip(p) {
                    *t += *v;
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(total)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{finite_diff_check, max_rel_diff, Rng};
    use candle_core::Var;

    /// Direct-loop f64 convolution and its gradients for `loss = Σ y·r`.
    struct Reference {
        y: Vec<f64>,
        dx: Vec<f64>,
        dw: Vec<f64>,
    }

    fn reference(x: &[f32], w: &[f32], r: &[f32], g: &Geom) -> Reference {
        let (cig, cog) = (g.cin / g.groups, g.cout / g.groups);
        let mut y = vec![0f64; g.n * g.cout * g.oh * g.ow];
        let mut dx = vec![0f64; x.len()];
        let mut dw = vec![0f64; w.len()];
        for n in 0..g.n {
            for o in 0..g.cout {
                let grp = o / cog;
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let yi = ((n * g.cout + o) * g.oh + oy) * g.ow + ox;
                        for ci in 0..cig {
                            let c = grp * cig + ci;
                            for ki in 0..g.kh {
                                for kj in 0..g.kw {
                                    let iy = (oy * g.sh + ki) as i64 - g.ph as i64;
                                    let ix = (ox * g.sw + kj) as i64 - g.pw as i64;
                                    if iy < 0 || ix < 0 || iy >= g.h as i64 || ix >= g.w as i64 {
                                        continue;
                                    }
                                    let xi =
                                        ((n * g.cin + c) * g.h + iy as usize) * g.w + ix as usize;
                                    let wi = ((o * cig + ci) * g.kh + ki) * g.kw + kj;
                                    y[yi] += x[xi] as f64 * w[wi] as f64;
                                    dx[xi] += r[yi] as f64 * w[wi] as f64;
                                    dw[wi] += r[yi] as f64 * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        Reference { y, dx, dw }
    }

    fn rel(a: &[f32], b: &[f64]) -> f64 {
        let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        max_rel_diff(a, &b32)
    }

    /// (x dims, C_out, kernel, stride, padding, groups)
    type Case = (
        [usize; 4],
        usize,
        (usize, usize),
        (usize, usize),
        (usize, usize),
        usize,
    );

    fn cases() -> Vec<Case> {
        vec![
            ([2, 3, 7, 9], 4, (3, 3), (1, 1), (1, 1), 1),
            ([1, 3, 11, 10], 5, (7, 7), (2, 2), (3, 3), 1),
            ([3, 6, 8, 8], 4, (1, 1), (1, 1), (0, 0), 1),
            ([2, 6, 9, 7], 8, (1, 1), (2, 2), (0, 0), 2),
            ([3, 8, 9, 9], 8, (3, 3), (2, 2), (1, 1), 4),
            ([2, 4, 7, 6], 4, (3, 3), (1, 1), (1, 1), 4),
            ([1, 3, 10, 9], 6, (3, 3), (2, 2), (1, 1), 3),
            ([2, 4, 9, 8], 6, (5, 5), (1, 1), (2, 2), 2),
            ([5, 2, 5, 5], 3, (3, 2), (2, 1), (0, 1), 1),
            ([1, 32, 5, 5], 64, (3, 3), (1, 1), (1, 1), 32),
            ([1, 1, 3, 3], 1, (3, 3), (1, 1), (0, 0), 1),
            // A large plane (one image per GEMM, pointwise directly on the input) and a
            // batch that does not divide into blocks of images (144 px: 2 per block).
            ([2, 4, 17, 16], 3, (1, 1), (1, 1), (0, 0), 1),
            ([3, 2, 12, 12], 3, (3, 3), (1, 1), (1, 1), 1),
        ]
    }

    #[test]
    fn forward_and_gradients_match_reference() -> candle_core::Result<()> {
        let mut rng = Rng::new(21);
        for (xd, cout, k, s, p, groups) in cases() {
            let x = rng.tensor(&xd);
            let w = rng.tensor(&[cout, xd[1] / groups, k.0, k.1]);
            let g = geometry(&xd, w.dims(), s, p, groups)?;
            let r = rng.tensor(&[xd[0], cout, g.oh, g.ow]);
            let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
            let y = conv2d(xv.as_tensor(), wv.as_tensor(), None, s, p, groups)?;
            let grads = (&y * &r)?.sum_all()?.backward()?;
            let want = reference(
                &x.flatten_all()?.to_vec1()?,
                &w.flatten_all()?.to_vec1()?,
                &r.flatten_all()?.to_vec1()?,
                &g,
            );
            let flat = |t: Option<&Tensor>| -> candle_core::Result<Vec<f32>> {
                t.ok_or_else(|| candle_core::Error::Msg("missing gradient".into()))?
                    .flatten_all()?
                    .to_vec1()
            };
            let case = format!("{xd:?} cout {cout} k {k:?} s {s:?} p {p:?} g {groups}");
            assert_eq!(y.dims(), &[xd[0], cout, g.oh, g.ow], "{case}");
            let dy = rel(&y.flatten_all()?.to_vec1()?, &want.y);
            let dx = rel(&flat(grads.get(xv.as_tensor()))?, &want.dx);
            let dw = rel(&flat(grads.get(wv.as_tensor()))?, &want.dw);
            assert!(
                dy < 1e-5 && dx < 1e-5 && dw < 1e-5,
                "{case}: y {dy} dx {dx} dw {dw}"
            );
        }
        Ok(())
    }

    /// Output and both gradients against candle's own `conv2d` and its backward.
    fn compare_with_candle(
        rng: &mut Rng,
        xd: [usize; 4],
        cout: usize,
        k: usize,
        s: usize,
        p: usize,
        groups: usize,
    ) -> candle_core::Result<()> {
        let x = Var::from_tensor(&rng.tensor(&xd))?;
        let w = Var::from_tensor(&(rng.tensor(&[cout, xd[1] / groups, k, k]) * 0.2)?)?;
        let ours = conv2d(x.as_tensor(), w.as_tensor(), None, (s, s), (p, p), groups)?;
        let stock = x.as_tensor().conv2d(w.as_tensor(), p, s, 1, groups)?;
        let r = rng.tensor(stock.dims());
        let go = (&ours * &r)?.sum_all()?.backward()?;
        let gs = (&stock * &r)?.sum_all()?.backward()?;
        let flat = |t: Option<&Tensor>| -> candle_core::Result<Vec<f32>> {
            t.ok_or_else(|| candle_core::Error::Msg("missing gradient".into()))?
                .flatten_all()?
                .to_vec1()
        };
        let case = format!("{xd:?} -> {cout} k{k} s{s} p{p} g{groups}");
        let dy = max_rel_diff(
            &ours.flatten_all()?.to_vec1()?,
            &stock.flatten_all()?.to_vec1()?,
        );
        let dx = max_rel_diff(&flat(go.get(x.as_tensor()))?, &flat(gs.get(x.as_tensor()))?);
        let dw = max_rel_diff(&flat(go.get(w.as_tensor()))?, &flat(gs.get(w.as_tensor()))?);
        assert!(
            dy < 1e-4 && dx < 1e-4 && dw < 1e-4,
            "{case}: y {dy:.1e} dx {dx:.1e} dw {dw:.1e}"
        );
        Ok(())
    }

    #[test]
    fn agrees_with_candle_conv2d() -> candle_core::Result<()> {
        let mut rng = Rng::new(22);
        for (xd, cout, k, s, p, groups) in cases() {
            if s.0 != s.1 || p.0 != p.1 || k.0 != k.1 {
                continue; // candle's conv2d takes one stride and one padding
            }
            if s.0 > 1 && xd[2] != xd[3] {
                // candle 0.11's conv2d backward sizes the input gradient from the height
                // alone (output padding of dim 2 used for both), so it fails here; the
                // f64 reference test covers these shapes.
                continue;
            }
            compare_with_candle(&mut rng, xd, cout, k.0, s.0, p.0, groups)?;
        }
        Ok(())
    }

    /// Every convolution shape of ResNet-50 and ResNeXt-50 32x4d (torchvision layout,
    /// stride on the 3×3), at a 32×32 input so the test stays fast.
    #[test]
    fn every_resnet50_and_resnext50_layer_shape_agrees_with_candle() -> candle_core::Result<()> {
        let mut rng = Rng::new(26);
        let n = 2;
        compare_with_candle(&mut rng, [n, 3, 32, 32], 64, 7, 2, 3, 1)?;
        for (groups, base_width) in [(1usize, 64usize), (32, 4)] {
            let (mut cin, mut hw) = (64usize, 8usize);
            for (stage, blocks) in [3usize, 4, 6, 3].into_iter().enumerate() {
                let planes = 64 << stage;
                let width = planes * base_width / 64 * groups;
                let cout = planes * 4;
                // Two blocks cover every shape: the first (stride, downsample), the rest.
                for b in 0..blocks.min(2) {
                    let s = if stage > 0 && b == 0 { 2 } else { 1 };
                    compare_with_candle(&mut rng, [n, cin, hw, hw], width, 1, 1, 0, 1)?;
                    compare_with_candle(&mut rng, [n, width, hw, hw], width, 3, s, 1, groups)?;
                    let out_hw = (hw - 1) / s + 1;
                    compare_with_candle(&mut rng, [n, width, out_hw, out_hw], cout, 1, 1, 0, 1)?;
                    if b == 0 {
                        compare_with_candle(&mut rng, [n, cin, hw, hw], cout, 1, s, 0, 1)?;
                    }
                    cin = cout;
                    hw = out_hw;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn bias_and_gradients_match_finite_differences() -> candle_core::Result<()> {
        let mut rng = Rng::new(23);
        let x = rng.tensor(&[2, 4, 5, 4]);
        let w = rng.tensor(&[4, 2, 3, 3]);
        let b = rng.tensor(&[4]);
        finite_diff_check(&x, |t| conv2d(t, &w, Some(&b), (2, 1), (1, 1), 2), 1)?;
        finite_diff_check(&w, |t| conv2d(&x, t, Some(&b), (2, 1), (1, 1), 2), 2)?;
        finite_diff_check(&b, |t| conv2d(&x, &w, Some(t), (2, 1), (1, 1), 2), 3)?;
        Ok(())
    }

    #[test]
    fn input_gradient_skipped_for_plain_input() -> candle_core::Result<()> {
        let mut rng = Rng::new(24);
        let x = rng.tensor(&[2, 3, 6, 6]);
        let w = Var::from_tensor(&rng.tensor(&[4, 3, 3, 3]))?;
        let y = conv2d(&x, w.as_tensor(), None, (1, 1), (1, 1), 1)?;
        let grads = y.sum_all()?.backward()?;
        assert!(
            grads.get(&x).is_none(),
            "the plain input must not get a gradient"
        );
        let dw = grads
            .get(w.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg("missing weight gradient".into()))?;
        // With loss = Σ y, dW[o, c, ki, kj] is the sum of the inputs the tap sees.
        let g = geometry(x.dims(), w.dims(), (1, 1), (1, 1), 1)?;
        let ones = vec![1f32; 2 * 4 * 36];
        let want = reference(
            &x.flatten_all()?.to_vec1()?,
            &w.flatten_all()?.to_vec1()?,
            &ones,
            &g,
        );
        assert!(rel(&dw.flatten_all()?.to_vec1()?, &want.dw) < 1e-5);
        Ok(())
    }

    #[test]
    fn invalid_shapes_are_errors() {
        let mut rng = Rng::new(25);
        let x = rng.tensor(&[1, 4, 5, 5]);
        assert!(conv2d(&x, &rng.tensor(&[4, 3, 3, 3]), None, (1, 1), (0, 0), 1).is_err());
        assert!(conv2d(&x, &rng.tensor(&[3, 2, 3, 3]), None, (1, 1), (0, 0), 2).is_err());
        assert!(conv2d(&x, &rng.tensor(&[4, 4, 7, 7]), None, (1, 1), (0, 0), 1).is_err());
        assert!(conv2d(&x, &rng.tensor(&[4, 4, 3, 3]), None, (0, 1), (0, 0), 1).is_err());
        assert!(conv2d(
            &x,
            &rng.tensor(&[4, 4, 3, 3]),
            Some(&rng.tensor(&[3])),
            (1, 1),
            (0, 0),
            1
        )
        .is_err());
    }
}
