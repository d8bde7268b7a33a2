//! Convolution against an f64 reference, candle's conv2d and finite differences.

use super::geom::{geometry, Geom};
use super::*;
use crate::testutil::{assert_owns_storage, finite_diff_check, max_rel_diff, Rng};
use candle_core::Var;

/// Direct-loop f64 convolution and its gradients for `loss = Σ y·r`.
pub(super) struct Reference {
    pub(super) y: Vec<f64>,
    pub(super) dx: Vec<f64>,
    pub(super) dw: Vec<f64>,
}

pub(super) fn reference(x: &[f32], w: &[f32], r: &[f32], g: &Geom) -> Reference {
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
                                let xi = ((n * g.cin + c) * g.h + iy as usize) * g.w + ix as usize;
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

pub(super) fn rel(a: &[f32], b: &[f64]) -> f64 {
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
        // Groups too wide for the direct grouped kernels: per-group GEMMs.
        ([2, 80, 5, 4], 80, (3, 3), (1, 1), (1, 1), 2),
        ([1, 1, 3, 3], 1, (3, 3), (1, 1), (0, 0), 1),
        // A large plane (one image per GEMM, pointwise directly on the input) and a
        // batch that does not divide into blocks of images (144 px: 2 per block).
        ([2, 4, 17, 16], 3, (1, 1), (1, 1), (0, 0), 1),
        ([3, 2, 12, 12], 3, (3, 3), (1, 1), (1, 1), 1),
        // 3×3 stride 1 with enough channels and tiles for Winograd, odd sizes (cropped
        // tiles).
        ([4, 16, 7, 9], 16, (3, 3), (1, 1), (1, 1), 1),
        // The same, grouped: 8 groups of 4 channels.
        ([4, 32, 8, 7], 32, (3, 3), (1, 1), (1, 1), 8),
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
        if let Some(gw) = grads.get(wv.as_tensor()) {
            assert_owns_storage(gw, &format!("{case}: weight gradient"));
        }
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

#[test]
fn bias_act_epilogue_equals_conv_then_bias_and_relu() -> candle_core::Result<()> {
    let mut rng = Rng::new(27);
    for (xd, cout, k, s, p, groups) in cases() {
        if s.0 != s.1 || p.0 != p.1 {
            continue;
        }
        let x = rng.tensor(&xd);
        let w = rng.tensor(&[cout, xd[1] / groups, k.0, k.1]);
        let b = rng.tensor(&[cout]);
        for relu in [false, true] {
            let fused = conv2d_bias_act(&x, &w, &b, s, p, groups, relu)?;
            let plain = conv2d(&x, &w, Some(&b), s, p, groups)?;
            let plain = if relu { plain.relu()? } else { plain };
            let d = max_rel_diff(
                &fused.flatten_all()?.to_vec1()?,
                &plain.flatten_all()?.to_vec1()?,
            );
            assert!(d < 1e-6, "{xd:?} k{k:?} relu {relu}: {d}");
        }
        // Tracked inputs take the differentiable path and get gradients.
        let xv = Var::from_tensor(&x)?;
        let y = conv2d_bias_act(xv.as_tensor(), &w, &b, s, p, groups, true)?;
        assert!(y.sum_all()?.backward()?.get(xv.as_tensor()).is_some());
    }
    Ok(())
}
