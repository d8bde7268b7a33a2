//! Lowering a convolution to GEMMs: im2col / col2im, and packing a block of images
//! into one matrix (and back).

use super::geom::Geom;

/// Output indices `[lo, hi)` whose input index `o·s + k − p` lies in `[0, n)`.
#[inline]
pub(super) fn valid_range(out: usize, s: usize, k: usize, p: usize, n: usize) -> (usize, usize) {
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
/// `off`): row `(c, ki, kj)`, column `off + oy·Wo + ox`. `x` holds the image's planes,
/// all of them or one group's (`x.len() / (H·W)` channels, rows from the first).
pub(super) fn im2col(g: &Geom, x: &[f32], col: &mut [f32], ld: usize, off: usize) {
    let op = g.out_plane();
    if small_planes(g) {
        return im2col_small(g, x, col, ld, off);
    }
    let mut row = 0;
    for c in 0..x.len() / (g.h * g.w).max(1) {
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
/// gradient `dx`: all its planes, or one group's (`dx.len() / (H·W)` channels).
pub(super) fn col2im(g: &Geom, dcol: &[f32], ld: usize, off: usize, dx: &mut [f32]) {
    if small_planes(g) {
        return col2im_small(g, dcol, ld, off, dx);
    }
    let mut row = 0;
    for c in 0..dx.len() / (g.h * g.w).max(1) {
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

/// Output rows shorter than this are lowered through a zero-padded copy of each plane:
/// with 2–7 values per row, the row-by-row copies and fills cost more in calls and
/// bounds than they move (60% of ResNeXt's 2×2 and 4×4 grouped layers).
const SHORT_ROW: usize = 8;
/// Largest padded plane the small-plane path keeps on the stack.
const SMALL_PLANE: usize = 1024;

/// Whether `g`'s planes go through [`im2col_small`] / [`col2im_small`].
fn small_planes(g: &Geom) -> bool {
    g.ow < SHORT_ROW && (g.h + 2 * g.ph) * (g.w + 2 * g.pw) <= SMALL_PLANE
}

/// [`im2col`] for small planes: each plane copied once into a zero-bordered buffer,
/// then every kernel position's columns read from it without bounds arithmetic.
fn im2col_small(g: &Geom, x: &[f32], col: &mut [f32], ld: usize, off: usize) {
    let (plane, op, wp) = (g.h * g.w, g.out_plane(), g.w + 2 * g.pw);
    let mut pad = [0f32; SMALL_PLANE];
    let mut row = 0;
    for xc in x.chunks_exact(plane.max(1)) {
        for (y, src) in xc.chunks_exact(g.w).enumerate() {
            let dst = &mut pad[(y + g.ph) * wp + g.pw..][..g.w];
            dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
        }
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let dst = &mut col[row * ld + off..][..op];
                for oy in 0..g.oh {
                    let src = &pad[(oy * g.sh + ki) * wp + kj..];
                    for ox in 0..g.ow {
                        dst[oy * g.ow + ox] = src[ox * g.sw];
                    }
                }
                row += 1;
            }
        }
    }
}

/// [`col2im`] for small planes: each plane's gradient gathered in a zero-bordered
/// buffer, then its inside added onto `dx`.
fn col2im_small(g: &Geom, dcol: &[f32], ld: usize, off: usize, dx: &mut [f32]) {
    let (plane, op, wp) = (g.h * g.w, g.out_plane(), g.w + 2 * g.pw);
    let padded = (g.h + 2 * g.ph) * wp;
    let mut pad = [0f32; SMALL_PLANE];
    let mut row = 0;
    for dc in dx.chunks_exact_mut(plane.max(1)) {
        pad[..padded].fill(0.0);
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let src = &dcol[row * ld + off..][..op];
                for oy in 0..g.oh {
                    let dst = &mut pad[(oy * g.sh + ki) * wp + kj..];
                    for ox in 0..g.ow {
                        dst[ox * g.sw] += src[oy * g.ow + ox];
                    }
                }
                row += 1;
            }
        }
        for (y, d) in dc.chunks_exact_mut(g.w).enumerate() {
            let src = &pad[(y + g.ph) * wp + g.pw..][..g.w];
            d.iter_mut().zip(src).for_each(|(d, s)| *d += *s);
        }
    }
}

/// Copies `nb` images of `rows × plane` (NCHW-like) into one `rows × (nb·plane)` matrix.
pub(super) fn pack(src: &[f32], nb: usize, rows: usize, plane: usize, dst: &mut [f32]) {
    let ld = nb * plane;
    for i in 0..nb {
        for r in 0..rows {
            let s = &src[(i * rows + r) * plane..(i * rows + r + 1) * plane];
            dst[r * ld + i * plane..r * ld + (i + 1) * plane].copy_from_slice(s);
        }
    }
}

/// The inverse of [`pack`]: scatters (or, with `add`, accumulates) the matrix back.
pub(super) fn unpack(
    src: &[f32],
    nb: usize,
    rows: usize,
    plane: usize,
    dst: &mut [f32],
    add: bool,
) {
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
