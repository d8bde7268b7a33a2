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
/// `off`): row `(c, ki, kj)`, column `off + oy·Wo + ox`.
pub(super) fn im2col(g: &Geom, x: &[f32], col: &mut [f32], ld: usize, off: usize) {
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
pub(super) fn col2im(g: &Geom, dcol: &[f32], ld: usize, off: usize, dx: &mut [f32]) {
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
