//! The Rust convolution kernels: per block of images, im2col (or the input itself for
//! pointwise convolutions) and one GEMM per group; the backward pass accumulates the
//! weight gradient per thread and scatters the input gradient back with col2im.
//! Grouped layers with few channels per group lower and multiply each group in one
//! task (see [`grouped_forward`]), so the lowering runs in parallel and its columns
//! are still in cache for the product.

use super::gemm::{sgemm, with_buffer, Mat, COL, DCOL, TMP};
use super::geom::Geom;
use super::lower::{col2im, im2col, pack, unpack};
use super::small_gemm::{self, Strided};
use super::winograd;
use crate::error::KernelError;
use gemm::Parallelism;
use rayon::prelude::*;

/// Columns a GEMM should have at least to run near full speed; small late-stage
/// feature maps (2×2 at 64×64 input) are batched over images up to this width.
const TARGET_COLS: usize = 256;

/// How to split the batch: images per GEMM block, blocks per thread task, and the
/// GEMM's own parallelism (used when there are fewer blocks than threads).
pub(super) fn schedule(g: &Geom) -> (usize, usize, Parallelism) {
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

/// What to apply to each output plane right after its GEMM, while it is in cache: a
/// per-channel bias, then ReLU.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Epilogue {
    /// One value per output channel.
    pub(super) bias: Vec<f32>,
    /// Clamp at zero afterwards.
    pub(super) relu: bool,
}

impl Epilogue {
    /// Applies to `y`, `cout` planes of `plane` values each (channel order).
    pub(super) fn apply(&self, y: &mut [f32], plane: usize) {
        if plane == 0 {
            return;
        }
        for (c, p) in y.chunks_mut(plane).enumerate() {
            let b = self.bias[c % self.bias.len()];
            if self.relu {
                p.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
            } else {
                p.iter_mut().for_each(|v| *v += b);
            }
        }
    }
}

/// Forward of a block of `nb` consecutive images: `y` from `x`, then `epilogue`.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_block(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    nb: usize,
    par: Parallelism,
    epilogue: Option<&Epilogue>,
) -> Result<(), KernelError> {
    let done = |y: &mut [f32]| {
        if let Some(e) = epilogue {
            e.apply(y, g.out_plane());
        }
    };
    let (kg, cog, op) = (g.k_g(), g.cout_g(), g.out_plane());
    let ld = nb * op;
    if small_gemm::wanted(g) && !g.is_pointwise() {
        if nb == 1 {
            grouped_forward(g, x, w, y, nb);
        } else {
            with_buffer(&TMP, g.cout * ld, |out| {
                grouped_forward(g, x, w, out, nb);
                unpack(out, nb, g.cout, op, y, false);
            });
        }
        done(y);
        return Ok(());
    }
    let run = |col: &[f32], out: &mut [f32]| -> Result<(), KernelError> {
        if small_gemm::wanted(g) {
            // Y_g (C_out/g × L) = W_g (C_out/g × K_g) · col_g (K_g × L), groups in parallel.
            out[..g.cout * ld]
                .par_chunks_mut(cog * ld)
                .enumerate()
                .for_each(|(grp, o)| {
                    let a = Strided {
                        data: &w[grp * cog * kg..][..cog * kg],
                        rs: kg,
                        cs: 1,
                    };
                    let b = &col[grp * kg * ld..][..kg * ld];
                    small_gemm::nn(cog, ld, kg, a, b, o, false);
                });
            return Ok(());
        }
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
        run(x, y)?;
        done(y);
        return Ok(());
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
            run(col, y)?;
        } else {
            with_buffer(&TMP, g.cout * ld, |out| {
                run(col, out)?;
                unpack(out, nb, g.cout, op, y, false);
                Ok::<(), KernelError>(())
            })?;
        }
        done(y);
        Ok(())
    })
}

/// The forward GEMMs of a grouped block of `nb` images, `out` = C_out × (nb·HoWo): each
/// group in its own task lowers its channels of every image into this thread's column
/// buffer, then multiplies.
fn grouped_forward(g: &Geom, x: &[f32], w: &[f32], out: &mut [f32], nb: usize) {
    let (kg, cog, ld) = (g.k_g(), g.cout_g(), nb * g.out_plane());
    out[..g.cout * ld]
        .par_chunks_mut(cog * ld)
        .enumerate()
        .for_each(|(grp, o)| {
            with_buffer(&COL, kg * ld, |col| {
                lower_group(g, x, grp, nb, col);
                small_gemm::nn(cog, ld, kg, group_weight(g, w, grp, false), col, o, false);
            })
        });
}

/// im2col of group `grp`'s input channels of the `nb` images of `x` into `col`
/// (K_g × nb·HoWo).
fn lower_group(g: &Geom, x: &[f32], grp: usize, nb: usize, col: &mut [f32]) {
    let (group_in, op) = (g.cin_g() * g.h * g.w, g.out_plane());
    for i in 0..nb {
        let xg = &x[i * g.in_image() + grp * group_in..][..group_in];
        im2col(g, xg, col, nb * op, i * op);
    }
}

/// Group `grp`'s weights as a C_out/g × K_g operand, or transposed (K_g × C_out/g).
fn group_weight<'a>(g: &Geom, w: &'a [f32], grp: usize, transposed: bool) -> Strided<'a> {
    let (kg, cog) = (g.k_g(), g.cout_g());
    let data = &w[grp * cog * kg..][..cog * kg];
    let (rs, cs) = if transposed { (1, kg) } else { (kg, 1) };
    Strided { data, rs, cs }
}

/// The gradients of a grouped block as [`grouped_forward`] computes its output, from
/// `dyt` (C_out × (nb·HoWo)): per group in one task, its columns and `dw_g += dY_g ·
/// colᵀ`, and `dcol_g = W_gᵀ dY_g` scattered onto the group's planes of `dx`.
fn grouped_backward(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    dyt: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
    nb: usize,
) {
    let (kg, cog, op) = (g.k_g(), g.cout_g(), g.out_plane());
    let (ld, group_in) = (nb * op, g.cin_g() * g.h * g.w);
    if let Some(dw) = dw {
        dw[..g.weight_len()]
            .par_chunks_mut(cog * kg)
            .enumerate()
            .for_each(|(grp, dwg)| {
                with_buffer(&COL, kg * ld, |col| {
                    lower_group(g, x, grp, nb, col);
                    let dyg = &dyt[grp * cog * ld..][..cog * ld];
                    small_gemm::nt(cog, kg, ld, dyg, ld, col, ld, dwg, true);
                })
            });
    }
    if let Some(dx) = dx {
        // Each group's planes of each image: disjoint, so the groups run in parallel.
        let mut per_group: Vec<Vec<&mut [f32]>> = (0..g.groups).map(|_| Vec::new()).collect();
        for image in dx.chunks_mut(g.in_image()).take(nb) {
            for (list, planes) in per_group.iter_mut().zip(image.chunks_mut(group_in)) {
                list.push(planes);
            }
        }
        per_group
            .par_iter_mut()
            .enumerate()
            .for_each(|(grp, images)| {
                with_buffer(&DCOL, kg * ld, |dcol| {
                    let a = group_weight(g, w, grp, true);
                    let dyg = &dyt[grp * cog * ld..][..cog * ld];
                    small_gemm::nn(kg, ld, cog, a, dyg, dcol, false);
                    for (i, dxg) in images.iter_mut().enumerate() {
                        col2im(g, dcol, ld, i * op, dxg);
                    }
                })
            });
    }
}

/// Gradients of a block of `nb` images: adds to `dw`, writes `dx` (zeroed on entry).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_block(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
    nb: usize,
    par: Parallelism,
) -> Result<(), KernelError> {
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
        if small_gemm::wanted(g) && !g.is_pointwise() {
            grouped_backward(g, x, w, dyt, dx, dw, nb);
            return Ok(());
        }
        if let Some(dw) = dw {
            let acc = |col: &[f32], dw: &mut [f32]| -> Result<(), KernelError> {
                if small_gemm::wanted(g) {
                    dw[..g.weight_len()]
                        .par_chunks_mut(cog * kg)
                        .enumerate()
                        .for_each(|(grp, dwg)| {
                            let dyg = &dyt[grp * cog * ld..][..cog * ld];
                            let colg = &col[grp * kg * ld..][..kg * ld];
                            small_gemm::nt(cog, kg, ld, dyg, ld, colg, ld, dwg, true);
                        });
                    return Ok(());
                }
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
                if small_gemm::wanted(g) {
                    dcol[..g.groups * kg * ld]
                        .par_chunks_mut(kg * ld)
                        .enumerate()
                        .for_each(|(grp, dcolg)| {
                            let a = Strided {
                                data: &w[grp * cog * kg..][..cog * kg],
                                rs: 1,
                                cs: kg,
                            };
                            let dyg = &dyt[grp * cog * ld..][..cog * ld];
                            small_gemm::nn(kg, ld, cog, a, dyg, dcolg, false);
                        });
                    return Ok(());
                }
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

/// The whole forward pass: `y` (`n · out_image` values) from `x` and `w`, then the
/// epilogue on each image. 3×3 stride-1 convolutions go to [`winograd`].
pub(super) fn forward(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    epilogue: Option<&Epilogue>,
) -> Result<(), KernelError> {
    let (xi, yi) = (g.in_image(), g.out_image());
    if yi == 0 || xi == 0 {
        return Ok(());
    }
    if winograd::wanted(g) {
        winograd::forward(g, x, w, y)?;
        if let Some(e) = epilogue {
            y.par_chunks_mut(yi)
                .for_each(|image| e.apply(image, g.out_plane()));
        }
        return Ok(());
    }
    let (nb, per_task, par) = schedule(g);
    y.par_chunks_mut(nb * per_task * yi)
        .zip(x.par_chunks(nb * per_task * xi))
        .try_for_each(|(yc, xc)| {
            for (yb, xb) in yc.chunks_mut(nb * yi).zip(xc.chunks(nb * xi)) {
                forward_block(g, xb, w, yb, yb.len() / yi, par, epilogue)?;
            }
            Ok(())
        })
}

/// The whole backward pass: writes `dx` (zeroed on entry) and `dw` (overwritten), each
/// only if asked for; both for a 3×3 stride-1 convolution by [`winograd`].
pub(super) fn backward(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
) -> Result<(), KernelError> {
    if g.out_image() == 0 || g.in_image() == 0 {
        return Ok(());
    }
    if winograd::wanted(g) {
        if let Some(dx) = dx {
            winograd::input_grad(g, dy, w, dx)?;
        }
        if let Some(dw) = dw {
            winograd::weight_grad(g, x, dy, dw)?;
        }
        return Ok(());
    }
    let wl = g.weight_len();
    let (nb, per_task, par) = schedule(g);
    let task_images = nb * per_task;
    let n_tasks = g.n.div_ceil(task_images);
    let want_dw = dw.is_some();
    // One weight-gradient accumulator per task (about one per thread).
    let mut partial: Vec<Vec<f32>> = (0..n_tasks)
        .map(|_| if want_dw { vec![0f32; wl] } else { Vec::new() })
        .collect();
    let want_dx = dx.is_some();
    let mut dx_tasks: Vec<&mut [f32]> = match dx {
        Some(dx) => dx.chunks_mut(task_images * g.in_image()).collect(),
        None => (0..n_tasks).map(|_| &mut [][..]).collect(),
    };
    partial
        .par_iter_mut()
        .zip(dx_tasks.par_iter_mut())
        .enumerate()
        .try_for_each(|(t, (dwp, dxt))| {
            let first = t * task_images;
            let last = (first + task_images).min(g.n);
            let mut i = first;
            while i < last {
                let nbi = nb.min(last - i);
                let xb = &x[i * g.in_image()..(i + nbi) * g.in_image()];
                let dyb = &dy[i * g.out_image()..(i + nbi) * g.out_image()];
                let dxb = if want_dx {
                    let off = (i - first) * g.in_image();
                    Some(&mut dxt[off..off + nbi * g.in_image()])
                } else {
                    None
                };
                let dwb = if want_dw { Some(&mut dwp[..]) } else { None };
                backward_block(g, xb, w, dyb, dxb, dwb, nbi, par)?;
                i += nbi;
            }
            Ok::<(), KernelError>(())
        })?;
    if let Some(dw) = dw {
        dw.fill(0.0);
        for p in &partial {
            for (t, v) in dw.iter_mut().zip(p) {
                *t += *v;
            }
        }
    }
    Ok(())
}
