//! Winograd F(2×2, 3×3) for the 3×3, stride-1, padding-1, ungrouped convolutions that
//! carry most of ResNet's and Inception's work. Each 4×4 input tile and each 3×3
//! filter are taken to a 4×4 transformed domain where the convolution is an
//! elementwise product, so a block of images becomes 16 GEMMs of
//! C_out × C_in × tiles: 16 multiplications per 2×2 outputs instead of 36, and no
//! im2col buffer nine times the input. The input gradient of such a layer is the same
//! kind of convolution (the output gradient with the filters flipped and their
//! channels swapped), and the weight gradient is the transformed input tiles times the
//! transformed output-gradient tiles, so all three passes run here.
//!
//! Measured (`examples/conv_layers.rs`, ResNet-50 at 16×64, forward and both
//! gradients): 1.4–2.1× faster than im2col on the 8×8 and 4×4 maps; level on the
//! 16×16 maps with 64 channels, where the 16 GEMMs are too small (K = 64) to gain.
//!
//! Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016.

use super::gemm::{sgemm, with_buffer, Mat, COL, DCOL, TMP};
use super::geom::Geom;
use crate::error::KernelError;
use gemm::Parallelism;
use rayon::prelude::*;

/// Positions of a transformed tile.
const XI: usize = 16;
/// Tiles per block at least, so the 16 GEMMs are wide enough to run near full speed.
const TARGET_TILES: usize = 256;
/// Tiles a whole batch needs for the transforms to pay for themselves: below it (a 2×2
/// map, one tile per image) the filter transforms outweigh the saving; 16 measured no
/// faster than im2col on ResNet-50's 2×2 layers.
const MIN_TILES: usize = 64;
/// Tiles per tile row from which the transforms run a row at a time (vectorized over
/// the row's tiles); shorter rows go tile by tile. Measured: 1.5× faster transforms
/// on 56×56 maps by rows, 1.4× slower on 8×8 and 4×4 maps.
const ROW_TILES: usize = 8;
/// Channels below which im2col keeps the layer: with so few, the transforms (linear
/// in channels) weigh about as much as the products (quadratic). Not tuned.
const MIN_CHANNELS: usize = 16;

/// Whether `g` runs here: 3×3, stride 1, padding 1, one group, enough channels and tiles.
pub(super) fn wanted(g: &Geom) -> bool {
    (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.groups) == (3, 3, 1, 1, 1, 1, 1)
        && g.cin >= MIN_CHANNELS
        && g.cout >= MIN_CHANNELS
        && g.n * Plan::of(g).tiles() >= MIN_TILES
}

/// A 3×3, stride-1, padding-1 convolution: `n` images of `cin` planes of `h × w` in,
/// `cout` planes of the same size out.
#[derive(Debug, Clone, Copy)]
struct Plan {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
}

impl Plan {
    fn of(g: &Geom) -> Self {
        Plan {
            n: g.n,
            cin: g.cin,
            cout: g.cout,
            h: g.h,
            w: g.w,
        }
    }
    /// Tile rows and columns of one plane (2×2 outputs each, the last cropped).
    fn grid(&self) -> (usize, usize) {
        (self.h.div_ceil(2), self.w.div_ceil(2))
    }
    fn tiles(&self) -> usize {
        let (th, tw) = self.grid();
        th * tw
    }
}

/// `y = conv3x3(x, w)` for `g` (see [`wanted`]); `y` is overwritten.
pub(super) fn forward(g: &Geom, x: &[f32], w: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    let cin = g.cin;
    with_buffer(&DCOL, XI * g.cout * g.cin, |u| {
        transform_filters(g.cout, g.cin, u, |o, i| {
            std::array::from_fn(|k| w[(o * cin + i) * 9 + k])
        });
        run(Plan::of(g), x, u, y)
    })
}

/// `dx` of `g` (see [`wanted`]) from `dy`: the convolution of `dy` with each filter
/// rotated by 180° and its input and output channels swapped; `dx` is overwritten.
pub(super) fn input_grad(
    g: &Geom,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
) -> Result<(), KernelError> {
    let cin = g.cin;
    with_buffer(&DCOL, XI * g.cout * g.cin, |u| {
        transform_filters(g.cin, g.cout, u, |o, i| {
            std::array::from_fn(|k| w[(i * cin + o) * 9 + 8 - k])
        });
        let plan = Plan {
            cin: g.cout,
            cout: g.cin,
            ..Plan::of(g)
        };
        run(plan, dy, u, dx)
    })
}

/// `dw` of `g` (see [`wanted`]), overwritten: with `V` the transformed input tiles and
/// `Z = A dY Aᵀ` the transformed output-gradient tiles, `∂L/∂U = Σ_t Z_t ⊙ V_t` — 16
/// GEMMs of C_out × tiles × C_in summed over the blocks — and `dw = Gᵀ (∂L/∂U) G`.
pub(super) fn weight_grad(
    g: &Geom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) -> Result<(), KernelError> {
    let plan = Plan::of(g);
    let per_image = plan.tiles();
    let plane = plan.h * plan.w;
    let (in_image, out_image) = (plan.cin * plane, plan.cout * plane);
    let (cin, cout) = (plan.cin, plan.cout);
    if per_image == 0 || plan.n == 0 {
        dw.fill(0.0);
        return Ok(());
    }
    let nb = TARGET_TILES.div_ceil(per_image).clamp(1, plan.n);
    with_buffer(&DCOL, XI * cout * cin, |du| {
        // du[ξ] (cout × cin) = Σ_blocks z[·][ξ][·] (cout × tiles) · v[·][ξ][·]ᵀ (tiles × cin)
        for (b, (xb, dyb)) in x
            .chunks(nb * in_image)
            .zip(dy.chunks(nb * out_image))
            .enumerate()
        {
            let images = xb.len() / in_image;
            let tiles = images * per_image;
            with_buffer(&COL, cin * XI * tiles, |v| {
                transform_inputs(&plan, xb, v);
                with_buffer(&TMP, cout * XI * tiles, |z| {
                    z.par_chunks_mut(XI * tiles).enumerate().for_each_init(
                        Vec::new,
                        |scratch, (co, zc)| {
                            for img in 0..images {
                                let src = &dyb[img * out_image + co * plane..][..plane];
                                let (size, t0) = ((plan.h, plan.w), img * per_image);
                                transform_output_grad(src, size, zc, tiles, t0, scratch);
                            }
                        },
                    );
                    let (v, z): (&[f32], &[f32]) = (v, z);
                    du.par_chunks_mut(cout * cin)
                        .enumerate()
                        .try_for_each(|(xi, dux)| {
                            sgemm(
                                cout,
                                cin,
                                tiles,
                                Mat {
                                    data: &z[xi * tiles..],
                                    rs: XI * tiles,
                                    cs: 1,
                                },
                                Mat {
                                    data: &v[xi * tiles..],
                                    rs: 1,
                                    cs: XI * tiles,
                                },
                                dux,
                                b > 0,
                                Parallelism::None,
                            )
                        })
                })
            })?;
        }
        // dw[co][ci] = Gᵀ du[·][co][ci] G, Gᵀ = [1 ½ ½ 0; 0 ½ -½ 0; 0 ½ ½ 1].
        let du: &[f32] = du;
        dw[..cout * cin * 9]
            .par_chunks_mut(cin * 9)
            .enumerate()
            .for_each(|(co, dwc)| {
                for (ci, f) in dwc.chunks_exact_mut(9).enumerate() {
                    let m: [f32; XI] = std::array::from_fn(|xi| du[(xi * cout + co) * cin + ci]);
                    let t: [[f32; 3]; 4] = std::array::from_fn(|r| {
                        let q = &m[r * 4..r * 4 + 4];
                        [
                            q[0] + 0.5 * (q[1] + q[2]),
                            0.5 * (q[1] - q[2]),
                            0.5 * (q[1] + q[2]) + q[3],
                        ]
                    });
                    for c in 0..3 {
                        f[c] = t[0][c] + 0.5 * (t[1][c] + t[2][c]);
                        f[3 + c] = 0.5 * (t[1][c] - t[2][c]);
                        f[6 + c] = 0.5 * (t[1][c] + t[2][c]) + t[3][c];
                    }
                }
            });
        Ok(())
    })
}

/// `u[o][ξ][i] = (G f Gᵀ)[ξ]` for the filter `f(o, i)` (row-major 3×3), `o < outs`,
/// `i < ins`: each output channel's 16 transformed rows, one GEMM operand per ξ.
fn transform_filters(
    outs: usize,
    ins: usize,
    u: &mut [f32],
    f: impl Fn(usize, usize) -> [f32; 9] + Sync,
) {
    u[..XI * outs * ins]
        .par_chunks_mut(XI * ins)
        .enumerate()
        .for_each(|(o, uo)| {
            for i in 0..ins {
                let g = f(o, i);
                // col[c] = column c of G g (4×3), then each row of (G g) Gᵀ (4×4);
                // G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1].
                let col: [[f32; 4]; 3] = std::array::from_fn(|c| {
                    let (a, b, d) = (g[c], g[3 + c], g[6 + c]);
                    [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d]
                });
                for r in 0..4 {
                    let (a, b, d) = (col[0][r], col[1][r], col[2][r]);
                    let row = [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
                    for (c, v) in row.into_iter().enumerate() {
                        uo[(r * 4 + c) * ins + i] = v;
                    }
                }
            }
        });
}

/// The convolution of `plan` with transformed filters `u`, a block of images at a time:
/// input transform, 16 GEMMs, output transform, each parallel over channels or ξ.
fn run(plan: Plan, x: &[f32], u: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    let (th, tw) = plan.grid();
    let per_image = th * tw;
    let (plane, in_image, out_image) = (
        plan.h * plan.w,
        plan.cin * plan.h * plan.w,
        plan.cout * plan.h * plan.w,
    );
    if per_image == 0 || plan.n == 0 {
        return Ok(());
    }
    let nb = TARGET_TILES.div_ceil(per_image).clamp(1, plan.n);
    for (xb, yb) in x.chunks(nb * in_image).zip(y.chunks_mut(nb * out_image)) {
        let images = xb.len() / in_image;
        let tiles = images * per_image;
        with_buffer(&COL, plan.cin * XI * tiles, |v| {
            transform_inputs(&plan, xb, v);
            with_buffer(&TMP, XI * plan.cout * tiles, |m| {
                // m[ξ] (cout × tiles) = u[·][ξ][·] (cout × cin) · v[·][ξ][·] (cin × tiles)
                m.par_chunks_mut(plan.cout * tiles)
                    .enumerate()
                    .try_for_each(|(xi, mx)| {
                        sgemm(
                            plan.cout,
                            tiles,
                            plan.cin,
                            Mat {
                                data: &u[xi * plan.cin..],
                                rs: XI * plan.cin,
                                cs: 1,
                            },
                            Mat {
                                data: &v[xi * tiles..],
                                rs: XI * tiles,
                                cs: 1,
                            },
                            mx,
                            false,
                            Parallelism::None,
                        )
                    })?;
                let m: &[f32] = m;
                yb.par_chunks_mut(plane).enumerate().for_each_init(
                    Vec::new,
                    |scratch, (q, out)| {
                        let (img, co) = (q / plan.cout, q % plan.cout);
                        let first = co * tiles + img * per_image;
                        let size = (plan.h, plan.w);
                        transform_output(m, plan.cout * tiles, first, size, out, scratch);
                    },
                );
                Ok(())
            })
        })?;
    }
    Ok(())
}

/// `v[ci][ξ][t]`: the transformed 4×4 tiles of each input channel of a block of images
/// `xb` (tile `t` = image · tiles per image + tile row · tile columns + tile column).
fn transform_inputs(plan: &Plan, xb: &[f32], v: &mut [f32]) {
    let (plane, per_image) = (plan.h * plan.w, plan.tiles());
    let in_image = plan.cin * plane;
    let images = xb.len() / in_image;
    let tiles = images * per_image;
    v[..plan.cin * XI * tiles]
        .par_chunks_mut(XI * tiles)
        .enumerate()
        .for_each_init(Vec::new, |pad, (ci, vc)| {
            for img in 0..images {
                let src = &xb[img * in_image + ci * plane..][..plane];
                transform_input(src, plan.h, plan.w, pad, vc, tiles, img * per_image);
            }
        });
}

/// Writes the transformed tiles of one `h × w` plane to `v[ξ·tiles + t0 + t]`
/// (`t` = tile row · tile columns + tile column); `scratch` holds the plane with its
/// one-pixel zero border and one tile row's intermediate values.
///
/// A tile row at a time, so each step is a loop over the row's tiles that the
/// compiler vectorizes: the even and odd columns of the four input rows, then
/// `· B` along the columns, then `Bᵀ ·` along the rows, with
/// Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
fn transform_input(
    src: &[f32],
    h: usize,
    w: usize,
    scratch: &mut Vec<f32>,
    v: &mut [f32],
    tiles: usize,
    t0: usize,
) {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    if tw < ROW_TILES {
        return transform_input_by_tile(src, h, w, scratch, v, tiles, t0);
    }
    // Rows and columns 2·t + 2 wide so every tile reads inside, the rest zero.
    let (ph, pw) = (2 * th + 2, 2 * tw + 2);
    scratch.clear();
    scratch.resize(ph * pw + 2 * (tw + 1) + XI * tw, 0.0);
    let (pad, rest) = scratch.split_at_mut(ph * pw);
    let (eo, cols) = rest.split_at_mut(2 * (tw + 1));
    for (r, row) in src.chunks_exact(w).enumerate() {
        pad[(r + 1) * pw + 1..][..w].copy_from_slice(row);
    }
    for ty in 0..th {
        // cols[a·4 + b][tx] = (d B)[a][b] for tile tx.
        for a in 0..4 {
            let row = &pad[(2 * ty + a) * pw..][..pw];
            let (e, o) = eo.split_at_mut(tw + 1);
            for (j, pair) in row.chunks_exact(2).enumerate() {
                e[j] = pair[0];
                o[j] = pair[1];
            }
            let (c01, c23) = cols[a * 4 * tw..][..4 * tw].split_at_mut(2 * tw);
            let (c0, c1) = c01.split_at_mut(tw);
            let (c2, c3) = c23.split_at_mut(tw);
            let (e0, e1, o0, o1) = (&e[..tw], &e[1..], &o[..tw], &o[1..]);
            for tx in 0..tw {
                c0[tx] = e0[tx] - e1[tx];
                c1[tx] = o0[tx] + e1[tx];
                c2[tx] = e1[tx] - o0[tx];
                c3[tx] = o0[tx] - o1[tx];
            }
        }
        let base = t0 + ty * tw;
        for b in 0..4 {
            let r = |a: usize| &cols[(a * 4 + b) * tw..][..tw];
            let mut put = |xi: usize, x: &[f32], y: &[f32], f: fn(f32, f32) -> f32| {
                let dst = &mut v[xi * tiles + base..][..tw];
                for ((d, &x), &y) in dst.iter_mut().zip(x).zip(y) {
                    *d = f(x, y);
                }
            };
            put(b, r(0), r(2), |x, y| x - y);
            put(4 + b, r(1), r(2), |x, y| x + y);
            put(8 + b, r(2), r(1), |x, y| x - y);
            put(12 + b, r(1), r(3), |x, y| x - y);
        }
    }
}

/// Writes `A e Aᵀ` (A = [1 0; 1 1; 1 -1; 0 -1]) of each 2×2 tile `e` of one `h × w`
/// output-gradient plane to `z[ξ·tiles + t0 + t]`, positions past the plane as zero.
/// A tile row at a time over even and odd columns, as [`transform_input`].
fn transform_output_grad(
    src: &[f32],
    (h, w): (usize, usize),
    z: &mut [f32],
    tiles: usize,
    t0: usize,
    scratch: &mut Vec<f32>,
) {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    if tw < ROW_TILES {
        return transform_output_grad_by_tile(src, (h, w), z, tiles, t0);
    }
    scratch.clear();
    scratch.resize(6 * tw, 0.0);
    for ty in 0..th {
        // eo[2a] / eo[2a + 1]: the even / odd columns of tile row ty's row a.
        for a in 0..2 {
            let (e, o) = scratch[2 * a * tw..][..2 * tw].split_at_mut(tw);
            let y = 2 * ty + a;
            if y >= h {
                e.fill(0.0);
                o.fill(0.0);
                continue;
            }
            let row = &src[y * w..][..w];
            for (t, pair) in row.chunks(2).enumerate() {
                e[t] = pair[0];
                o[t] = pair.get(1).copied().unwrap_or(0.0);
            }
        }
        let (rows, q) = scratch.split_at_mut(4 * tw);
        let (r0, r1) = rows.split_at(2 * tw);
        let ((e0, o0), (e1, o1)) = (r0.split_at(tw), r1.split_at(tw));
        let (qe, qo) = q.split_at_mut(tw);
        let base = t0 + ty * tw;
        // q = A e: rows e0, e0 + e1, e0 - e1, -e1 (even and odd columns each); then
        // each row q times Aᵀ: q_e, q_e + q_o, q_e - q_o, -q_o.
        for r in 0..4 {
            for t in 0..tw {
                (qe[t], qo[t]) = match r {
                    0 => (e0[t], o0[t]),
                    1 => (e0[t] + e1[t], o0[t] + o1[t]),
                    2 => (e0[t] - e1[t], o0[t] - o1[t]),
                    _ => (-e1[t], -o1[t]),
                };
            }
            let mut put = |c: usize, f: fn(f32, f32) -> f32| {
                let dst = &mut z[(r * 4 + c) * tiles + base..][..tw];
                for ((d, &e), &o) in dst.iter_mut().zip(&*qe).zip(&*qo) {
                    *d = f(e, o);
                }
            };
            put(0, |e, _| e);
            put(1, |e, o| e + o);
            put(2, |e, o| e - o);
            put(3, |_, o| -o);
        }
    }
}

/// One output plane from the GEMM results: tile `t` of this plane at
/// `m[ξ·stride + first + t]`, taken back by Aᵀ m A (Aᵀ = [1 1 1 0; 0 1 -1 -1]) and
/// cropped to `h × w`. A tile row at a time, each step a loop over the row's tiles;
/// `scratch` holds the intermediate rows.
fn transform_output(
    m: &[f32],
    stride: usize,
    first: usize,
    (h, w): (usize, usize),
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    if tw < ROW_TILES {
        return transform_output_by_tile(m, stride, first, (h, w), out);
    }
    scratch.clear();
    scratch.resize(10 * tw, 0.0);
    let (s, row) = scratch.split_at_mut(8 * tw);
    for ty in 0..th {
        let base = first + ty * tw;
        let mr = |xi: usize| &m[xi * stride + base..][..tw];
        // s[c][a] = (Aᵀ m)[a][c] over the row's tiles.
        for c in 0..4 {
            let (m0, m1, m2, m3) = (mr(c), mr(4 + c), mr(8 + c), mr(12 + c));
            let (s0, s1) = s[c * 2 * tw..][..2 * tw].split_at_mut(tw);
            for t in 0..tw {
                s0[t] = m0[t] + m1[t] + m2[t];
                s1[t] = m1[t] - m2[t] - m3[t];
            }
        }
        for a in 0..2 {
            let oy = 2 * ty + a;
            if oy >= h {
                break;
            }
            let sa = |c: usize| &s[(c * 2 + a) * tw..][..tw];
            let (q0, q1, q2, q3) = (sa(0), sa(1), sa(2), sa(3));
            for (t, pair) in row.chunks_exact_mut(2).enumerate() {
                pair[0] = q0[t] + q1[t] + q2[t];
                pair[1] = q1[t] - q2[t] - q3[t];
            }
            out[oy * w..][..w].copy_from_slice(&row[..w]);
        }
    }
}

/// [`transform_input`] one tile at a time: faster where tile rows are short.
fn transform_input_by_tile(
    src: &[f32],
    h: usize,
    w: usize,
    pad: &mut Vec<f32>,
    v: &mut [f32],
    tiles: usize,
    t0: usize,
) {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    // Rows and columns 2·t + 2 wide so every tile reads inside, the rest zero.
    let (ph, pw) = (2 * th + 2, 2 * tw + 2);
    pad.clear();
    pad.resize(ph * pw, 0.0);
    for (r, row) in src.chunks_exact(w).enumerate() {
        pad[(r + 1) * pw + 1..][..w].copy_from_slice(row);
    }
    for ty in 0..th {
        for tx in 0..tw {
            let t = t0 + ty * tw + tx;
            let d: [[f32; 4]; 4] = std::array::from_fn(|a| {
                std::array::from_fn(|b| pad[(2 * ty + a) * pw + 2 * tx + b])
            });
            // Bᵀ d B, Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
            let r: [[f32; 4]; 4] = std::array::from_fn(|b| {
                let c = [d[0][b], d[1][b], d[2][b], d[3][b]];
                [c[0] - c[2], c[1] + c[2], c[2] - c[1], c[1] - c[3]]
            });
            for a in 0..4 {
                let c = [r[0][a], r[1][a], r[2][a], r[3][a]];
                let out = [c[0] - c[2], c[1] + c[2], c[2] - c[1], c[1] - c[3]];
                for (b, val) in out.into_iter().enumerate() {
                    v[(a * 4 + b) * tiles + t] = val;
                }
            }
        }
    }
}

/// [`transform_output_grad`] one tile at a time: faster where tile rows are short.
fn transform_output_grad_by_tile(
    src: &[f32],
    (h, w): (usize, usize),
    z: &mut [f32],
    tiles: usize,
    t0: usize,
) {
    let tw = w.div_ceil(2);
    let at = |y: usize, x: usize| if y < h && x < w { src[y * w + x] } else { 0.0 };
    for ty in 0..h.div_ceil(2) {
        for tx in 0..tw {
            let t = t0 + ty * tw + tx;
            let (y, x) = (2 * ty, 2 * tx);
            let e = [[at(y, x), at(y, x + 1)], [at(y + 1, x), at(y + 1, x + 1)]];
            // Rows: q = A e (4×2); then each row times Aᵀ.
            let q = [
                e[0],
                [e[0][0] + e[1][0], e[0][1] + e[1][1]],
                [e[0][0] - e[1][0], e[0][1] - e[1][1]],
                [-e[1][0], -e[1][1]],
            ];
            for (r, qr) in q.iter().enumerate() {
                let row = [qr[0], qr[0] + qr[1], qr[0] - qr[1], -qr[1]];
                for (c, val) in row.into_iter().enumerate() {
                    z[(r * 4 + c) * tiles + t] = val;
                }
            }
        }
    }
}

/// [`transform_output`] one tile at a time: faster where tile rows are short.
fn transform_output_by_tile(
    m: &[f32],
    stride: usize,
    first: usize,
    (h, w): (usize, usize),
    out: &mut [f32],
) {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    for ty in 0..th {
        for tx in 0..tw {
            let t = first + ty * tw + tx;
            let e: [f32; XI] = std::array::from_fn(|xi| m[xi * stride + t]);
            // Rows: s[a][c] = (Aᵀ e)[a][c].
            let s: [[f32; 4]; 2] = [
                std::array::from_fn(|c| e[c] + e[4 + c] + e[8 + c]),
                std::array::from_fn(|c| e[4 + c] - e[8 + c] - e[12 + c]),
            ];
            for (a, sa) in s.iter().enumerate() {
                let oy = 2 * ty + a;
                if oy >= h {
                    break;
                }
                let pair = [sa[0] + sa[1] + sa[2], sa[1] - sa[2] - sa[3]];
                for (b, val) in pair.into_iter().enumerate() {
                    let ox = 2 * tx + b;
                    if ox < w {
                        out[oy * w + ox] = val;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::geom::geometry;
    use crate::conv::tests::{reference, rel};
    use crate::testutil::Rng;

    /// Forward and both gradients against the f64 direct convolution, called directly
    /// (below [`wanted`]'s thresholds too): odd sizes that crop the last tiles, 1×1 and
    /// 2×5 planes, more images than one block (the weight gradient summed over
    /// blocks), tile rows short (tile by tile) and long (a row at a time).
    #[test]
    fn forward_and_gradients_match_reference() -> candle_core::Result<()> {
        let mut rng = Rng::new(3);
        for (n, cin, cout, h, w) in [
            (2, 3, 4, 7, 9),
            (1, 5, 2, 1, 1),
            (3, 2, 3, 2, 5),
            (2, 17, 16, 6, 6),
            (20, 2, 3, 8, 8),
            // Tile rows long enough to be transformed a row at a time.
            (2, 3, 4, 17, 19),
            (1, 2, 2, 16, 16),
        ] {
            let (xd, wd) = ([n, cin, h, w], [cout, cin, 3, 3]);
            let g = geometry(&xd, &wd, (1, 1), (1, 1), 1)?;
            let x = rng.vec(xd.iter().product());
            let wt = rng.vec(wd.iter().product());
            let dy = rng.vec(n * g.out_image());
            let want = reference(&x, &wt, &dy, &g);
            let (mut y, mut dx) = (vec![f32::NAN; dy.len()], vec![f32::NAN; x.len()]);
            let mut dw = vec![f32::NAN; wt.len()];
            forward(&g, &x, &wt, &mut y)?;
            input_grad(&g, &dy, &wt, &mut dx)?;
            weight_grad(&g, &x, &dy, &mut dw)?;
            let case = format!("{xd:?} -> {cout}");
            assert!(
                y.iter().chain(&dx).chain(&dw).all(|v| v.is_finite()),
                "{case}: not all written"
            );
            let (ey, edx, edw) = (rel(&y, &want.y), rel(&dx, &want.dx), rel(&dw, &want.dw));
            assert!(
                ey < 1e-5 && edx < 1e-5 && edw < 1e-5,
                "{case}: y {ey} dx {edx} dw {edw}"
            );
        }
        Ok(())
    }

    #[test]
    fn wanted_only_for_3x3_stride_1_padding_1_ungrouped_with_enough_work() -> candle_core::Result<()>
    {
        // (x dims, C_out, C_in per group, stride, padding, groups, wanted)
        let cases = [
            ([4, 16, 8, 8], 16, 16, 1, 1, 1, true),
            ([4, 16, 8, 8], 16, 16, 2, 1, 1, false),
            ([4, 16, 8, 8], 16, 16, 1, 0, 1, false),
            ([4, 16, 8, 8], 16, 8, 1, 1, 2, false),
            ([4, 8, 8, 8], 16, 8, 1, 1, 1, false),
            // One tile per image (2×2 maps) for 16 images: im2col.
            ([16, 64, 2, 2], 64, 64, 1, 1, 1, false),
        ];
        for (xd, cout, cig, s, p, groups, want) in cases {
            let g = geometry(&xd, &[cout, cig, 3, 3], (s, s), (p, p), groups)?;
            assert_eq!(
                wanted(&g),
                want,
                "{xd:?} cout {cout} s {s} p {p} groups {groups}"
            );
        }
        Ok(())
    }
}
