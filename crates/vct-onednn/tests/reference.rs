//! Every primitive against a naive f64 reference (direct loops) on random small shapes:
//! odd sizes, groups, depthwise, stride 2, asymmetric kernels and padding, batch 1.
//! The reference backward passes are themselves checked by finite differences.

//!
//! The tests that call oneDNN are ignored by default (they need the system library);
//! `.ci/run` installs it and runs `cargo test --workspace -- --ignored onednn_`.

// The references index several parallel arrays with one loop variable.
#![allow(clippy::needless_range_loop)]

use vct_onednn::*;

/// A small deterministic generator (xorshift64*), uniform in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (v as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next() as f32).collect()
    }
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Asserts `max |ours − ref| ≤ 1e-4 · max |ref|`.
fn assert_close(what: &str, ours: &[f32], reference: &[f64]) {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: reference is all zeros");
    let mut worst = (0.0f64, 0);
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        let d = (a as f64 - b).abs();
        // A NaN (e.g. an output never written) must fail, so it wins and stops the scan.
        if d.is_nan() || d > worst.0 {
            worst = (d, i);
            if d.is_nan() {
                break;
            }
        }
    }
    assert!(
        worst.0 <= 1e-4 * scale,
        "{what}: max |ours - ref| = {} at {} (ours {}, ref {}), max |ref| = {scale}",
        worst.0,
        worst.1,
        ours[worst.1],
        reference[worst.1]
    );
}

// ------------------------------------------------------------------ convolution

fn conv_shapes() -> Vec<Conv2dShape> {
    #[allow(clippy::too_many_arguments)]
    fn s(
        n: usize,
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        k: (usize, usize),
        stride: usize,
        pad: (usize, usize),
        groups: usize,
    ) -> Conv2dShape {
        Conv2dShape {
            n,
            c_in,
            h,
            w,
            c_out,
            kh: k.0,
            kw: k.1,
            stride: (stride, stride),
            pad,
            groups,
        }
    }
    vec![
        s(1, 3, 7, 5, 4, (3, 3), 1, (1, 1), 1),
        s(2, 4, 9, 8, 6, (3, 3), 2, (1, 1), 2),
        s(2, 8, 6, 7, 8, (3, 3), 1, (1, 1), 8),
        s(3, 5, 11, 7, 7, (1, 1), 1, (0, 0), 1),
        s(2, 6, 10, 9, 4, (1, 1), 2, (0, 0), 1),
        s(1, 3, 13, 13, 5, (7, 7), 2, (3, 3), 1),
        s(2, 4, 9, 9, 4, (1, 7), 1, (0, 3), 1),
        s(2, 4, 9, 8, 6, (7, 1), 1, (3, 0), 2),
        s(2, 5, 8, 9, 3, (5, 5), 1, (2, 2), 1),
        s(2, 64, 5, 5, 64, (3, 3), 2, (1, 1), 32),
        s(2, 32, 10, 10, 48, (3, 3), 1, (1, 1), 1),
        s(1, 48, 6, 6, 32, (1, 1), 1, (0, 0), 1),
        s(2, 7, 6, 5, 3, (3, 2), 2, (0, 1), 1),
    ]
}

fn idx4(d: [usize; 4], i: [usize; 4]) -> usize {
    ((i[0] * d[1] + i[1]) * d[2] + i[2]) * d[3] + i[3]
}

/// Visits every (output, weight, input) index triple of a convolution.
fn conv_walk(s: &Conv2dShape, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (cig, cog) = (s.c_in / s.groups, s.c_out / s.groups);
    for n in 0..s.n {
        for o in 0..s.c_out {
            let g = o / cog;
            for y in 0..oh {
                for x in 0..ow {
                    let out = idx4([s.n, s.c_out, oh, ow], [n, o, y, x]);
                    for ci in 0..cig {
                        for ky in 0..s.kh {
                            let iy = (y * s.stride.0 + ky) as isize - s.pad.0 as isize;
                            if iy < 0 || iy >= s.h as isize {
                                continue;
                            }
                            for kx in 0..s.kw {
                                let ix = (x * s.stride.1 + kx) as isize - s.pad.1 as isize;
                                if ix < 0 || ix >= s.w as isize {
                                    continue;
                                }
                                let wi = idx4([s.c_out, cig, s.kh, s.kw], [o, ci, ky, kx]);
                                let xi = idx4(
                                    [s.n, s.c_in, s.h, s.w],
                                    [n, g * cig + ci, iy as usize, ix as usize],
                                );
                                f(out, wi, xi);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn ref_conv_fwd(s: &Conv2dShape, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; s.dst_len()];
    conv_walk(s, |o, wi, xi| y[o] += w[wi] * x[xi]);
    if let Some(b) = b {
        let plane = s.out_h() * s.out_w();
        for (i, v) in y.iter_mut().enumerate() {
            *v += b[(i / plane) % s.c_out];
        }
    }
    y
}

fn ref_conv_bwd(
    s: &Conv2dShape,
    x: &[f64],
    w: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; s.src_len()];
    let mut dw = vec![0.0; s.weights_len()];
    conv_walk(s, |o, wi, xi| {
        dx[xi] += w[wi] * dy[o];
        dw[wi] += x[xi] * dy[o];
    });
    let plane = s.out_h() * s.out_w();
    let mut db = vec![0.0; s.c_out];
    for (i, v) in dy.iter().enumerate() {
        db[(i / plane) % s.c_out] += v;
    }
    (dx, dw, db)
}

fn check_conv(s: &Conv2dShape, rng: &mut Rng) {
    let x = rng.vec(s.src_len());
    let w = rng.vec(s.weights_len());
    let b = rng.vec(s.c_out);
    let dy = rng.vec(s.dst_len());
    let (x64, w64, b64, dy64) = (to64(&x), to64(&w), to64(&b), to64(&dy));
    let tag = format!("{s:?}");

    let mut y = vec![f32::NAN; s.dst_len()];
    conv2d_forward(s, &x, &w, Some(&b), &mut y).unwrap();
    assert_close(
        &format!("conv fwd+bias {tag}"),
        &y,
        &ref_conv_fwd(s, &x64, &w64, Some(&b64)),
    );
    conv2d_forward(s, &x, &w, None, &mut y).unwrap();
    assert_close(
        &format!("conv fwd {tag}"),
        &y,
        &ref_conv_fwd(s, &x64, &w64, None),
    );

    let (rdx, rdw, rdb) = ref_conv_bwd(s, &x64, &w64, &dy64);
    let mut dx = vec![f32::NAN; s.src_len()];
    conv2d_backward_data(s, &w, &dy, &mut dx).unwrap();
    assert_close(&format!("conv bwd data {tag}"), &dx, &rdx);

    let mut dw = vec![f32::NAN; s.weights_len()];
    let mut db = vec![f32::NAN; s.c_out];
    conv2d_backward_weights(s, &x, &dy, &mut dw, Some(&mut db)).unwrap();
    assert_close(&format!("conv bwd weights {tag}"), &dw, &rdw);
    assert_close(&format!("conv bwd bias {tag}"), &db, &rdb);
    let mut dw2 = vec![f32::NAN; s.weights_len()];
    conv2d_backward_weights(s, &x, &dy, &mut dw2, None).unwrap();
    assert_close(&format!("conv bwd weights, no bias {tag}"), &dw2, &rdw);
}

#[test]
#[ignore = "needs oneDNN 2.x (Debian's libdnnl2); .ci/run runs it"]
fn onednn_conv_matches_reference_in_every_layout() {
    assert!(available());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for layout in [ConvLayout::Blocked, ConvLayout::Plain, ConvLayout::Auto] {
        set_conv_layout(layout);
        for s in conv_shapes() {
            check_conv(&s, &mut rng);
        }
    }
    set_conv_layout(ConvLayout::Auto);
}

#[test]
#[ignore = "needs oneDNN 2.x (Debian's libdnnl2); .ci/run runs it"]
fn onednn_conv_cached_primitive_gives_fresh_results() {
    // The second call with the same shape reuses the cached primitive on new data.
    let s = conv_shapes()[1];
    let mut rng = Rng(7);
    for _ in 0..3 {
        check_conv(&s, &mut rng);
    }
}

/// `⟨dy, conv(x, w)⟩` in f64: its derivatives are the input and weight gradients.
fn conv_loss(s: &Conv2dShape, x: &[f64], w: &[f64], b: &[f64], dy: &[f64]) -> f64 {
    ref_conv_fwd(s, x, w, Some(b))
        .iter()
        .zip(dy)
        .map(|(a, b)| a * b)
        .sum()
}

#[test]
fn conv_reference_backward_matches_finite_differences() {
    let mut rng = Rng(11);
    for s in [conv_shapes()[1], conv_shapes()[6], conv_shapes()[12]] {
        let x = to64(&rng.vec(s.src_len()));
        let w = to64(&rng.vec(s.weights_len()));
        let b = to64(&rng.vec(s.c_out));
        let dy = to64(&rng.vec(s.dst_len()));
        let (dx, dw, db) = ref_conv_bwd(&s, &x, &w, &dy);
        let h = 1e-6;
        let fd = |v: &[f64], i: usize, which: usize| {
            let mut p = v.to_vec();
            let mut m = v.to_vec();
            p[i] += h;
            m[i] -= h;
            let l = |t: &[f64]| match which {
                0 => conv_loss(&s, t, &w, &b, &dy),
                1 => conv_loss(&s, &x, t, &b, &dy),
                _ => conv_loss(&s, &x, &w, t, &dy),
            };
            (l(&p) - l(&m)) / (2.0 * h)
        };
        for i in (0..x.len()).step_by(7) {
            assert!((fd(&x, i, 0) - dx[i]).abs() < 1e-6, "{s:?} dx[{i}]");
        }
        for i in (0..w.len()).step_by(5) {
            assert!((fd(&w, i, 1) - dw[i]).abs() < 1e-6, "{s:?} dw[{i}]");
        }
        for i in 0..b.len() {
            assert!((fd(&b, i, 2) - db[i]).abs() < 1e-6, "{s:?} db[{i}]");
        }
    }
}

// ------------------------------------------------------------------ batch norm

fn bn_shapes() -> Vec<BatchNormShape> {
    let s = |n, c, h, w| BatchNormShape { n, c, h, w };
    vec![
        s(1, 3, 5, 7),
        s(2, 4, 3, 3),
        s(3, 17, 4, 5),
        s(2, 32, 6, 6),
        s(4, 5, 1, 1),
    ]
}

/// Per-channel values `x[n, c, h, w]` of channel `c`.
fn channel(s: &BatchNormShape, c: usize) -> impl Iterator<Item = usize> + '_ {
    let plane = s.h * s.w;
    (0..s.n).flat_map(move |n| {
        let base = (n * s.c + c) * plane;
        base..base + plane
    })
}

fn ref_stats(s: &BatchNormShape, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let m = (s.n * s.h * s.w) as f64;
    let mut mean = vec![0.0; s.c];
    let mut var = vec![0.0; s.c];
    for c in 0..s.c {
        mean[c] = channel(s, c).map(|i| x[i]).sum::<f64>() / m;
        var[c] = channel(s, c).map(|i| (x[i] - mean[c]).powi(2)).sum::<f64>() / m;
    }
    (mean, var)
}

#[allow(clippy::too_many_arguments)]
fn ref_bn_fwd(
    s: &BatchNormShape,
    eps: f64,
    x: &[f64],
    g: &[f64],
    b: &[f64],
    mean: &[f64],
    var: &[f64],
) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for c in 0..s.c {
        let inv = 1.0 / (var[c] + eps).sqrt();
        for i in channel(s, c) {
            y[i] = g[c] * (x[i] - mean[c]) * inv + b[c];
        }
    }
    y
}

/// Gradients of batch norm; with `global` the statistics are constants.
#[allow(clippy::too_many_arguments)]
fn ref_bn_bwd(
    s: &BatchNormShape,
    eps: f64,
    global: bool,
    x: &[f64],
    dy: &[f64],
    g: &[f64],
    mean: &[f64],
    var: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = (s.n * s.h * s.w) as f64;
    let mut dx = vec![0.0; x.len()];
    let mut dg = vec![0.0; s.c];
    let mut db = vec![0.0; s.c];
    for c in 0..s.c {
        let inv = 1.0 / (var[c] + eps).sqrt();
        for i in channel(s, c) {
            let xhat = (x[i] - mean[c]) * inv;
            dg[c] += dy[i] * xhat;
            db[c] += dy[i];
        }
        for i in channel(s, c) {
            let xhat = (x[i] - mean[c]) * inv;
            dx[i] = if global {
                g[c] * inv * dy[i]
            } else {
                g[c] * inv * (dy[i] - db[c] / m - xhat * dg[c] / m)
            };
        }
    }
    (dx, dg, db)
}

#[test]
#[ignore = "needs oneDNN 2.x (Debian's libdnnl2); .ci/run runs it"]
fn onednn_batch_norm_matches_reference() {
    let mut rng = Rng(3);
    let eps = 1e-5f32;
    for s in bn_shapes() {
        let tag = format!("{s:?}");
        // An offset and a spread per channel, so statistics are not all near 0 and 1.
        let x: Vec<f32> = rng
            .vec(s.len())
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let c = (i / (s.h * s.w)) % s.c;
                v * (1.0 + c as f32 * 0.5) + c as f32 * 0.3
            })
            .collect();
        let g = rng.vec(s.c);
        let b = rng.vec(s.c);
        let dy = rng.vec(s.len());
        let (x64, g64, b64, dy64) = (to64(&x), to64(&g), to64(&b), to64(&dy));
        let (rmean, rvar) = ref_stats(&s, &x64);

        let mut y = vec![f32::NAN; s.len()];
        let mut mean = vec![f32::NAN; s.c];
        let mut var = vec![f32::NAN; s.c];
        batch_norm_forward_training(&s, eps, &x, &g, &b, &mut y, &mut mean, &mut var).unwrap();
        assert_close(&format!("bn mean {tag}"), &mean, &rmean);
        assert_close(&format!("bn var {tag}"), &var, &rvar);
        let ry = ref_bn_fwd(&s, eps as f64, &x64, &g64, &b64, &rmean, &rvar);
        assert_close(&format!("bn train fwd {tag}"), &y, &ry);

        let (dx_r, dg_r, db_r) =
            ref_bn_bwd(&s, eps as f64, false, &x64, &dy64, &g64, &rmean, &rvar);
        let mut dx = vec![f32::NAN; s.len()];
        let mut dg = vec![f32::NAN; s.c];
        let mut db = vec![f32::NAN; s.c];
        batch_norm_backward(
            &s, eps, false, &x, &dy, &g, &mean, &var, &mut dx, &mut dg, &mut db,
        )
        .unwrap();
        assert_close(&format!("bn bwd dx {tag}"), &dx, &dx_r);
        assert_close(&format!("bn bwd dscale {tag}"), &dg, &dg_r);
        assert_close(&format!("bn bwd dshift {tag}"), &db, &db_r);

        // Inference with arbitrary running statistics.
        let rm: Vec<f32> = rng.vec(s.c);
        let rv: Vec<f32> = rng.vec(s.c).iter().map(|v| v.abs() + 0.5).collect();
        let ry = ref_bn_fwd(&s, eps as f64, &x64, &g64, &b64, &to64(&rm), &to64(&rv));
        batch_norm_forward_inference(&s, eps, &x, &g, &b, &rm, &rv, &mut y).unwrap();
        assert_close(&format!("bn eval fwd {tag}"), &y, &ry);
        let (dx_r, dg_r, db_r) = ref_bn_bwd(
            &s,
            eps as f64,
            true,
            &x64,
            &dy64,
            &g64,
            &to64(&rm),
            &to64(&rv),
        );
        batch_norm_backward(
            &s, eps, true, &x, &dy, &g, &rm, &rv, &mut dx, &mut dg, &mut db,
        )
        .unwrap();
        assert_close(&format!("bn eval bwd dx {tag}"), &dx, &dx_r);
        assert_close(&format!("bn eval bwd dscale {tag}"), &dg, &dg_r);
        assert_close(&format!("bn eval bwd dshift {tag}"), &db, &db_r);
    }
}

#[test]
fn batch_norm_reference_backward_matches_finite_differences() {
    let mut rng = Rng(5);
    let s = BatchNormShape {
        n: 2,
        c: 3,
        h: 2,
        w: 3,
    };
    let eps = 1e-5;
    let x = to64(&rng.vec(s.len()));
    let g = to64(&rng.vec(s.c));
    let b = to64(&rng.vec(s.c));
    let dy = to64(&rng.vec(s.len()));
    let loss = |x: &[f64], g: &[f64], b: &[f64]| {
        let (m, v) = ref_stats(&s, x);
        ref_bn_fwd(&s, eps, x, g, b, &m, &v)
            .iter()
            .zip(&dy)
            .map(|(a, b)| a * b)
            .sum::<f64>()
    };
    let (m, v) = ref_stats(&s, &x);
    let (dx, dg, db) = ref_bn_bwd(&s, eps, false, &x, &dy, &g, &m, &v);
    let h = 1e-6;
    let fd = |which: usize, i: usize| {
        let mut args = [x.clone(), g.clone(), b.clone()];
        args[which][i] += h;
        let p = loss(&args[0], &args[1], &args[2]);
        args[which][i] -= 2.0 * h;
        let q = loss(&args[0], &args[1], &args[2]);
        (p - q) / (2.0 * h)
    };
    for i in 0..x.len() {
        assert!(
            (fd(0, i) - dx[i]).abs() < 1e-5,
            "dx[{i}]: {} vs {}",
            fd(0, i),
            dx[i]
        );
    }
    for i in 0..s.c {
        assert!((fd(1, i) - dg[i]).abs() < 1e-5, "dscale[{i}]");
        assert!((fd(2, i) - db[i]).abs() < 1e-5, "dshift[{i}]");
    }
}

// ------------------------------------------------------------------ pooling

/// Pooling geometry with explicit padding (`pad_end` worked out by hand for PyTorch's
/// rules or TF's "SAME", as vct-kernels computes it).
#[allow(clippy::too_many_arguments)]
fn pool(
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: (usize, usize),
    s: (usize, usize),
    pad_begin: (usize, usize),
    pad_end: (usize, usize),
) -> Pool2dShape {
    Pool2dShape {
        n,
        c,
        h,
        w,
        kernel: k,
        stride: s,
        pad_begin,
        pad_end,
    }
}

fn pool_shapes() -> Vec<Pool2dShape> {
    vec![
        // ResNet stem: 3x3/2 pad 1 (9 rows: the last window reaches one row past the padding).
        pool(2, 3, 9, 8, (3, 3), (2, 2), (1, 1), (1, 0)),
        // BN-Inception: 3x3/2 ceil mode, odd size (7 -> 3: no overhang) and even (10 -> 5).
        pool(1, 4, 7, 7, (3, 3), (2, 2), (0, 0), (0, 0)),
        pool(2, 5, 10, 10, (3, 3), (2, 2), (0, 0), (1, 1)),
        // 3x3/1 pad 1 (Inception branch pool), and 2x2/2.
        pool(2, 3, 5, 6, (3, 3), (1, 1), (1, 1), (1, 1)),
        pool(3, 2, 8, 6, (2, 2), (2, 2), (0, 0), (0, 0)),
        // TF SAME, asymmetric padding: 8x7 -> 4x4.
        pool(2, 3, 8, 7, (3, 3), (2, 2), (0, 1), (1, 1)),
        // Global average pool style window.
        pool(2, 16, 4, 4, (4, 4), (1, 1), (0, 0), (0, 0)),
    ]
}

/// Visits each output index with the input indices of its window (inside the input)
/// and the window's size counting padding.
fn pool_walk(s: &Pool2dShape, mut f: impl FnMut(usize, &[usize], usize)) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut win = Vec::new();
    for nc in 0..s.n * s.c {
        for y in 0..oh {
            for x in 0..ow {
                win.clear();
                let y0 = (y * s.stride.0) as isize - s.pad_begin.0 as isize;
                let x0 = (x * s.stride.1) as isize - s.pad_begin.1 as isize;
                for ky in 0..s.kernel.0 as isize {
                    for kx in 0..s.kernel.1 as isize {
                        let (iy, ix) = (y0 + ky, x0 + kx);
                        if iy >= 0 && iy < s.h as isize && ix >= 0 && ix < s.w as isize {
                            win.push((nc * s.h + iy as usize) * s.w + ix as usize);
                        }
                    }
                }
                // oneDNN's include-padding divisor is the whole kernel, but never counts
                // the part of the window beyond the padding (there is none here).
                let y_end = (y0 + s.kernel.0 as isize).min((s.h + s.pad_end.0) as isize);
                let x_end = (x0 + s.kernel.1 as isize).min((s.w + s.pad_end.1) as isize);
                let padded = ((y_end - y0) * (x_end - x0)) as usize;
                f((nc * oh + y) * ow + x, &win, padded);
            }
        }
    }
}

fn ref_pool(s: &Pool2dShape, kind: PoolKind, x: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; s.dst_len()];
    let mut dx = vec![0.0; s.src_len()];
    pool_walk(s, |o, win, padded| match kind {
        PoolKind::Max => {
            let mut best = win[0];
            for &i in win {
                if x[i] > x[best] {
                    best = i;
                }
            }
            y[o] = x[best];
            dx[best] += dy[o];
        }
        PoolKind::AvgIncludePad | PoolKind::AvgExcludePad => {
            let d = if kind == PoolKind::AvgIncludePad {
                padded
            } else {
                win.len()
            } as f64;
            y[o] = win.iter().map(|&i| x[i]).sum::<f64>() / d;
            for &i in win {
                dx[i] += dy[o] / d;
            }
        }
    });
    (y, dx)
}

#[test]
#[ignore = "needs oneDNN 2.x (Debian's libdnnl2); .ci/run runs it"]
fn onednn_pooling_matches_reference() {
    let mut rng = Rng(17);
    for s in pool_shapes() {
        for kind in [
            PoolKind::Max,
            PoolKind::AvgIncludePad,
            PoolKind::AvgExcludePad,
        ] {
            let tag = format!("{kind:?} {s:?}");
            let x = rng.vec(s.src_len());
            let dy = rng.vec(s.dst_len());
            let (ry, rdx) = ref_pool(&s, kind, &to64(&x), &to64(&dy));
            let mut y = vec![f32::NAN; s.dst_len()];
            pool2d_forward(&s, kind, &x, &mut y).unwrap();
            assert_close(&format!("pool fwd inference {tag}"), &y, &ry);
            let mut y = vec![f32::NAN; s.dst_len()];
            let ws = pool2d_forward_training(&s, kind, &x, &mut y).unwrap();
            assert_close(&format!("pool fwd training {tag}"), &y, &ry);
            let mut dx = vec![f32::NAN; s.src_len()];
            pool2d_backward(&s, kind, &dy, &mut dx, &ws).unwrap();
            assert_close(&format!("pool bwd {tag}"), &dx, &rdx);
        }
    }
}

#[test]
fn pooling_reference_backward_matches_finite_differences() {
    let mut rng = Rng(23);
    // Ceil mode 5 -> 3 with padding 1: the last window ends on the end padding.
    let s = pool(1, 2, 5, 5, (3, 3), (2, 2), (1, 1), (1, 1));
    for kind in [
        PoolKind::Max,
        PoolKind::AvgIncludePad,
        PoolKind::AvgExcludePad,
    ] {
        let x = to64(&rng.vec(s.src_len()));
        let dy = to64(&rng.vec(s.dst_len()));
        let loss = |x: &[f64]| {
            ref_pool(&s, kind, x, &dy)
                .0
                .iter()
                .zip(&dy)
                .map(|(a, b)| a * b)
                .sum::<f64>()
        };
        let dx = ref_pool(&s, kind, &x, &dy).1;
        let h = 1e-7;
        for i in 0..x.len() {
            let mut p = x.clone();
            p[i] += h;
            let mut m = x.clone();
            m[i] -= h;
            let fd = (loss(&p) - loss(&m)) / (2.0 * h);
            assert!(
                (fd - dx[i]).abs() < 1e-6,
                "{kind:?} dx[{i}]: {fd} vs {}",
                dx[i]
            );
        }
    }
}

#[test]
#[ignore = "needs oneDNN 2.x (Debian's libdnnl2); .ci/run runs it"]
fn onednn_pool_backward_rejects_a_workspace_of_another_shape() {
    let a = pool_shapes()[0];
    let b = pool_shapes()[3];
    let x = vec![0.5; a.src_len()];
    let mut y = vec![0.0; a.dst_len()];
    let ws = pool2d_forward_training(&a, PoolKind::Max, &x, &mut y).unwrap();
    let dy = vec![1.0; b.dst_len()];
    let mut dx = vec![0.0; b.src_len()];
    let e = pool2d_backward(&b, PoolKind::Max, &dy, &mut dx, &ws).unwrap_err();
    assert!(matches!(e, Error::Workspace { .. }), "{e}");
}
