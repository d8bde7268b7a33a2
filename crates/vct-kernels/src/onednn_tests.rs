//! Under `KernelBackend::OneDnn` every dispatched op equals the Rust kernel within 1e-4
//! relative, forward and gradients, and really runs oneDNN (its output is bit-identical
//! to `vct_onednn`'s slice functions called directly); a shape oneDNN cannot do runs on
//! the Rust kernel and is counted.

use crate::testutil::Rng;
use crate::{bn, conv, pool, with_backend, KernelBackend};
use candle_core::{Tensor, Var};

/// Max-norm of the difference over the max-norm of `want`.
fn rel_diff(got: &Tensor, want: &Tensor) -> f64 {
    let g: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    let w: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(g.len(), w.len(), "sizes differ");
    let scale = w
        .iter()
        .fold(0f64, |m, &v| m.max(v.abs() as f64))
        .max(1e-12);
    let diff = g
        .iter()
        .zip(&w)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    diff / scale
}

/// Runs `f` under the Rust and the oneDNN backend and compares every returned tensor.
fn same_under_both(what: &str, f: impl Fn() -> Vec<Tensor>) {
    let rust = with_backend(KernelBackend::Rust, &f);
    let dnnl = with_backend(KernelBackend::OneDnn, &f);
    assert_eq!(rust.len(), dnnl.len());
    for (i, (r, d)) in rust.iter().zip(&dnnl).enumerate() {
        assert_eq!(r.dims(), d.dims(), "{what}: output {i} shape");
        let e = rel_diff(d, r);
        assert!(e < 1e-4, "{what}: output {i} differs by {e:.2e}");
    }
}

/// `y` and the gradients of `sum(y · r)` w.r.t. `vars`, `r` a fixed random tensor.
fn with_grads(y: &Tensor, vars: &[&Var], seed: u64) -> Vec<Tensor> {
    let r = Rng::new(seed).tensor(y.dims());
    let grads = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![y.clone()];
    for v in vars {
        out.push(grads.get(v.as_tensor()).expect("a gradient").clone());
    }
    out
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
#[ignore = "needs oneDNN 2.x (Debian's libdnnl2); .ci/run runs it"]
fn conv2d_matches_rust() {
    // (x shape, c_out, kernel, stride, padding, groups): 3×3, strided grouped, 1×1, 7×7/2 stem.
    let cases = [
        ([2, 3, 9, 9], 8, 3, 1, 1, 1),
        ([2, 8, 8, 8], 16, 3, 2, 1, 4),
        ([2, 16, 7, 7], 8, 1, 1, 0, 1),
        ([1, 3, 20, 20], 4, 7, 2, 3, 1),
    ];
    for (i, (xs, cout, k, s, p, g)) in cases.into_iter().enumerate() {
        let mut rng = Rng::new(10 + i as u64);
        let x = rng.tensor(&xs);
        let w = (rng.tensor(&[cout, xs[1] / g, k, k]) * 0.3).unwrap();
        let b = rng.tensor(&[cout]);
        let what = format!("conv2d {xs:?} → {cout}, {k}×{k}/{s} pad {p} groups {g}");
        same_under_both(&what, || {
            let (xv, wv, bv) = (
                Var::from_tensor(&x).unwrap(),
                Var::from_tensor(&w).unwrap(),
                Var::from_tensor(&b).unwrap(),
            );
            let y = conv::conv2d(&xv, &wv, Some(&bv), (s, s), (p, p), g).unwrap();
            with_grads(&y, &[&xv, &wv, &bv], 99)
        });
        let ours = with_backend(KernelBackend::OneDnn, || {
            conv::conv2d(&x, &w, None, (s, s), (p, p), g).unwrap()
        });
        let shape = vct_onednn::Conv2dShape {
            n: xs[0],
            c_in: xs[1],
            h: xs[2],
            w: xs[3],
            c_out: cout,
            kh: k,
            kw: k,
            stride: (s, s),
            pad: (p, p),
            groups: g,
        };
        let mut direct = vec![0f32; shape.dst_len()];
        vct_onednn::conv2d_forward(&shape, &flat(&x), &flat(&w), None, &mut direct).unwrap();
        assert_eq!(flat(&ours), direct, "{what}: not dispatched to oneDNN");
    }
}

#[test]
#[ignore = "needs oneDNN 2.x (Debian's libdnnl2); .ci/run runs it"]
fn batch_norm_matches_rust() {
    for (i, (shape, relu)) in [([2, 5, 6, 7], false), ([3, 16, 4, 4], true)]
        .into_iter()
        .enumerate()
    {
        let mut rng = Rng::new(20 + i as u64);
        let x = (rng.tensor(&shape) * 2.0)
            .unwrap()
            .affine(1.0, 0.5)
            .unwrap();
        let gamma = rng.tensor(&[shape[1]]).affine(0.5, 1.0).unwrap();
        let beta = rng.tensor(&[shape[1]]);
        let rm = rng.tensor(&[shape[1]]);
        let rv = rng.tensor(&[shape[1]]).affine(0.4, 1.0).unwrap();
        same_under_both(&format!("batch_norm_train {shape:?} relu {relu}"), || {
            let (xv, gv, bv) = (
                Var::from_tensor(&x).unwrap(),
                Var::from_tensor(&gamma).unwrap(),
                Var::from_tensor(&beta).unwrap(),
            );
            let (y, stats) = bn::batch_norm_train(&xv, &gv, &bv, 1e-5, relu).unwrap();
            assert_eq!(stats.count, shape[0] * shape[2] * shape[3]);
            let mut out = with_grads(&y, &[&xv, &gv, &bv], 7);
            out.extend([stats.mean, stats.var]);
            out
        });
        same_under_both(&format!("batch_norm_eval {shape:?} relu {relu}"), || {
            let (xv, gv, bv) = (
                Var::from_tensor(&x).unwrap(),
                Var::from_tensor(&gamma).unwrap(),
                Var::from_tensor(&beta).unwrap(),
            );
            let y = bn::batch_norm_eval(&xv, &gv, &bv, &rm, &rv, 1e-5, relu).unwrap();
            with_grads(&y, &[&xv, &gv, &bv], 8)
        });
        let ours = with_backend(KernelBackend::OneDnn, || {
            bn::batch_norm_train(&x, &gamma, &beta, 1e-5, relu)
                .unwrap()
                .0
        });
        let s = vct_onednn::BatchNormShape {
            n: shape[0],
            c: shape[1],
            h: shape[2],
            w: shape[3],
        };
        let (mut direct, mut m, mut v) = (vec![0f32; s.len()], vec![0f32; s.c], vec![0f32; s.c]);
        vct_onednn::batch_norm_forward_training(
            &s,
            1e-5,
            &flat(&x),
            &flat(&gamma),
            &flat(&beta),
            &mut direct,
            &mut m,
            &mut v,
        )
        .unwrap();
        if relu {
            direct.iter_mut().for_each(|y| *y = y.max(0.0));
        }
        assert_eq!(flat(&ours), direct, "batch norm not dispatched to oneDNN");
    }
}

#[test]
#[ignore = "needs oneDNN 2.x (Debian's libdnnl2); .ci/run runs it"]
fn pools_match_rust() {
    let x = Rng::new(30).distinct_tensor(&[2, 3, 9, 11]);
    type Pool = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor>>;
    let pools: Vec<(&str, Pool)> = vec![
        (
            "max 3/2 pad 1",
            Box::new(|x| pool::max_pool2d(x, (3, 3), (2, 2), (1, 1), false)),
        ),
        (
            "max 3/2 ceil",
            Box::new(|x| pool::max_pool2d(x, (3, 3), (2, 2), (0, 0), true)),
        ),
        (
            "avg 3/2 pad 1 incl",
            Box::new(|x| pool::avg_pool2d(x, (3, 3), (2, 2), (1, 1), false, true)),
        ),
        (
            "avg 2/2 ceil excl",
            Box::new(|x| pool::avg_pool2d(x, (2, 2), (2, 2), (0, 0), true, false)),
        ),
        (
            "avg 2/2 ceil incl (falls back)",
            Box::new(|x| pool::avg_pool2d(x, (2, 2), (2, 2), (0, 0), true, true)),
        ),
        ("max same 3/2", Box::new(|x| pool::max_pool2d_same(x, 3, 2))),
        ("avg same 3/2", Box::new(|x| pool::avg_pool2d_same(x, 3, 2))),
    ];
    for (what, f) in &pools {
        same_under_both(what, || {
            let xv = Var::from_tensor(&x).unwrap();
            let y = f(&xv).unwrap();
            with_grads(&y, &[&xv], 5)
        });
    }
    // The fallback case is counted (other tests may count too, so only "at least one more").
    let before = crate::fallback_counts().pool;
    with_backend(KernelBackend::OneDnn, || {
        pool::avg_pool2d(&x, (2, 2), (2, 2), (0, 0), true, true).unwrap()
    });
    let after = crate::fallback_counts();
    assert!(after.pool > before, "the fallback was not counted: {after}");
    assert!(
        after.reasons.iter().any(|r| r.contains("overhangs")),
        "{after}"
    );
    let ours = with_backend(KernelBackend::OneDnn, || pool::avg_pool2d_same(&x, 3, 2)).unwrap();
    // 9×11 with 3×3/2 SAME: 5×6 out, padding (1, 1) rows and (1, 1) columns.
    let s = vct_onednn::Pool2dShape {
        n: 2,
        c: 3,
        h: 9,
        w: 11,
        kernel: (3, 3),
        stride: (2, 2),
        pad_begin: (1, 1),
        pad_end: (1, 1),
    };
    let mut direct = vec![0f32; s.dst_len()];
    vct_onednn::pool2d_forward(
        &s,
        vct_onednn::PoolKind::AvgExcludePad,
        &flat(&x),
        &mut direct,
    )
    .unwrap();
    assert_eq!(flat(&ours), direct, "pooling not dispatched to oneDNN");
}
