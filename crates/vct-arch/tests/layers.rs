//! Primitive layers: the two pooling backends agree; batch norm train/eval semantics.

use candle_core::{DType, Device, Tensor, Var};
use vct_arch::layers::{self, BatchNorm2d, TORCH_BN};
use vct_arch::params::{Group, ParamStore};
use vct_kernels::{with_backend, KernelBackend};

fn input(shape: &[usize], seed: u64) -> Tensor {
    let store = ParamStore::new(seed, &Device::Cpu);
    let n: usize = shape.iter().product();
    Tensor::from_vec(
        store.sample(vct_arch::params::Init::Normal(1.0), n),
        shape,
        &Device::Cpu,
    )
    .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

type PoolFn = Box<dyn Fn(&Tensor) -> Tensor>;

/// Runs `f` with each backend, returning (candle-op fallback, vct-kernels).
fn both(f: impl Fn() -> Tensor) -> (Tensor, Tensor) {
    (
        with_backend(KernelBackend::Candle, &f),
        with_backend(KernelBackend::Rust, &f),
    )
}

#[test]
fn pooling_backends_agree_forward_and_backward() {
    for &(h, w) in &[(7usize, 7usize), (8, 11), (13, 6)] {
        let x = Var::from_tensor(&input(&[2, 3, h, w], h as u64 * 31 + w as u64)).unwrap();
        let cases: Vec<PoolFn> = vec![
            Box::new(|x| layers::max_pool2d(x, (3, 3), (2, 2), (1, 1), false).unwrap()),
            Box::new(|x| layers::max_pool2d(x, (3, 3), (2, 2), (0, 0), true).unwrap()),
            Box::new(|x| layers::max_pool2d(x, (3, 3), (1, 1), (1, 1), true).unwrap()),
            Box::new(|x| layers::avg_pool2d(x, (3, 3), (1, 1), (1, 1), true, true).unwrap()),
            Box::new(|x| layers::avg_pool2d(x, (3, 3), (2, 2), (1, 1), true, false).unwrap()),
            Box::new(|x| layers::max_pool2d_same(x, 3, 2).unwrap()),
            Box::new(|x| layers::avg_pool2d_same(x, 3, 1).unwrap()),
            Box::new(|x| layers::avg_pool2d_same(x, 3, 2).unwrap()),
        ];
        for (ci, case) in cases.iter().enumerate() {
            let (a, b) = both(|| case(x.as_tensor()));
            assert!(
                max_diff(&a, &b) < 1e-6,
                "case {ci} at {h}x{w}: forward differs"
            );
            // Weighted sum so every output position gets a distinct gradient.
            let wt = input(a.dims(), 7);
            let (ga, gb) = both(|| {
                let y = case(x.as_tensor());
                let g = (y * &wt).unwrap().sum_all().unwrap().backward().unwrap();
                g.get(x.as_tensor()).unwrap().clone()
            });
            assert!(
                max_diff(&ga, &gb) < 1e-5,
                "case {ci} at {h}x{w}: backward differs"
            );
        }
    }
}

#[test]
fn avg_pool_counts_padding_like_pytorch() {
    // All-ones input: with count_include_pad the corner of a 3x3/1 pad-1 pool is 4/9.
    let x = Tensor::ones((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
    for backend in [KernelBackend::Candle, KernelBackend::Rust] {
        let y = with_backend(backend, || {
            layers::avg_pool2d(&x, (3, 3), (1, 1), (1, 1), true, true).unwrap()
        });
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            (v[0] - 4.0 / 9.0).abs() < 1e-6 && (v[5] - 1.0).abs() < 1e-6,
            "{backend:?}: {v:?}"
        );
        let y = with_backend(backend, || layers::avg_pool2d_same(&x, 3, 1).unwrap());
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            v.iter().all(|&a| (a - 1.0).abs() < 1e-6),
            "{backend:?} SAME excludes padding: {v:?}"
        );
    }
}

#[test]
fn ceil_mode_output_sizes_match_bninception_notes() {
    let x = Tensor::zeros((1, 1, 112, 112), DType::F32, &Device::Cpu).unwrap();
    for backend in [KernelBackend::Candle, KernelBackend::Rust] {
        let y = with_backend(backend, || {
            layers::max_pool2d(&x, (3, 3), (2, 2), (0, 0), true).unwrap()
        });
        assert_eq!(y.dims(), &[1, 1, 56, 56]);
        let y = with_backend(backend, || {
            layers::max_pool2d(&x, (3, 3), (2, 2), (0, 0), false).unwrap()
        });
        assert_eq!(y.dims(), &[1, 1, 55, 55]);
    }
}

#[test]
fn batch_norm_train_uses_batch_stats_and_updates_running_stats() {
    let store = ParamStore::new(0, &Device::Cpu);
    let bn = BatchNorm2d::new(
        &store.scope(Group::Backbone).pp("bn"),
        3,
        TORCH_BN,
        1e-5,
        1.0,
    )
    .unwrap();
    let x = input(&[4, 3, 5, 5], 3).affine(2.0, 1.0).unwrap();
    let y = bn.forward(&x, true).unwrap();
    // Normalised per channel: mean 0, biased variance 1.
    let m: Vec<f32> = y
        .mean_keepdim((0, 2, 3))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let v: Vec<f32> = y
        .sqr()
        .unwrap()
        .mean_keepdim((0, 2, 3))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(m.iter().all(|a| a.abs() < 1e-5), "{m:?}");
    assert!(v.iter().all(|a| (a - 1.0).abs() < 1e-3), "{v:?}");
    // Running stats moved 10% of the way: mean = 0.1 * batch mean, var = 0.9 + 0.1 * unbiased var.
    let entries = store.entries();
    let get = |n: &str| -> Vec<f32> {
        entries
            .iter()
            .find(|e| e.name == n)
            .unwrap()
            .var
            .as_tensor()
            .to_vec1()
            .unwrap()
    };
    let bm: Vec<f32> = x
        .mean_keepdim((0, 2, 3))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let xc = x
        .broadcast_sub(&x.mean_keepdim((0, 2, 3)).unwrap())
        .unwrap();
    let bv: Vec<f32> = (xc.sqr().unwrap().sum_keepdim((0, 2, 3)).unwrap() / 99.0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for c in 0..3 {
        assert!((get("bn.running_mean")[c] - 0.1 * bm[c]).abs() < 1e-5);
        assert!((get("bn.running_var")[c] - (0.9 + 0.1 * bv[c])).abs() < 1e-4);
    }
    // Eval uses the running stats: (x - rm) / sqrt(rv + eps).
    let ye = bn.forward(&x, false).unwrap();
    let rm = Tensor::new(get("bn.running_mean"), &Device::Cpu)
        .unwrap()
        .reshape((1, 3, 1, 1))
        .unwrap();
    let rv = Tensor::new(get("bn.running_var"), &Device::Cpu)
        .unwrap()
        .reshape((1, 3, 1, 1))
        .unwrap();
    let want = x
        .broadcast_sub(&rm)
        .unwrap()
        .broadcast_div(&(rv + 1e-5).unwrap().sqrt().unwrap())
        .unwrap();
    assert!(max_diff(&ye, &want) < 1e-5);
}

#[test]
fn conv_bias_folded_into_batch_norm_equals_adding_it() {
    for backend in [KernelBackend::Candle, KernelBackend::Rust] {
        with_backend(backend, || {
            let mk = || {
                let store = ParamStore::new(4, &Device::Cpu);
                let s = store.scope(Group::Backbone);
                let bn = BatchNorm2d::new(&s.pp("bn"), 3, TORCH_BN, 1e-5, 1.0).unwrap();
                let b = s
                    .param("conv_bias", &[3], vct_arch::params::Init::Normal(1.0))
                    .unwrap();
                (store, bn, b)
            };
            let (sa, a, ba) = mk();
            let (sb, b, bb) = mk();
            let x = input(&[2, 3, 4, 5], 9);
            for train in [true, true, false] {
                let plain = a
                    .forward_relu(
                        &x.broadcast_add(&ba.as_tensor().reshape((1, 3, 1, 1)).unwrap())
                            .unwrap(),
                        train,
                    )
                    .unwrap();
                let folded = b.forward_after_biased_conv(&x, &bb, train, true).unwrap();
                assert!(
                    max_diff(&plain, &folded) < 1e-5,
                    "{backend:?} train={train}"
                );
            }
            for (ea, eb) in sa.entries().iter().zip(sb.entries()) {
                let d = max_diff(ea.var.as_tensor(), eb.var.as_tensor());
                assert!(d < 1e-6, "{backend:?}: {} differs by {d}", ea.name);
            }
        });
    }
}

#[test]
fn bias_act_backends_agree_forward_and_backward() {
    let x = Var::from_tensor(&input(&[2, 4, 3, 5], 1)).unwrap();
    let store = ParamStore::new(2, &Device::Cpu);
    let b = store
        .scope(Group::Backbone)
        .param("b", &[4], vct_arch::params::Init::Normal(1.0))
        .unwrap();
    let wt = input(&[2, 4, 3, 5], 3);
    for relu in [false, true] {
        let run = || {
            let y = layers::bias_act(x.as_tensor(), &b, true, relu).unwrap();
            let g = (&y * &wt).unwrap().sum_all().unwrap().backward().unwrap();
            (
                y,
                g.get(x.as_tensor()).unwrap().clone(),
                g.get(b.as_tensor()).unwrap().clone(),
            )
        };
        let (ya, gxa, gba) = with_backend(KernelBackend::Candle, run);
        let (yb, gxb, gbb) = with_backend(KernelBackend::Rust, run);
        assert!(
            max_diff(&ya, &yb) < 1e-6 && max_diff(&gxa, &gxb) < 1e-6 && max_diff(&gba, &gbb) < 1e-4,
            "relu={relu}"
        );
    }
}

#[test]
fn degenerate_pooling_windows_are_errors_not_panics() {
    let x = Tensor::zeros((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
    for backend in [KernelBackend::Candle, KernelBackend::Rust] {
        with_backend(backend, || {
            assert!(layers::max_pool2d(&x, (0, 0), (1, 1), (0, 0), false).is_err());
            assert!(layers::avg_pool2d(&x, (3, 3), (0, 0), (1, 1), true, true).is_err());
            assert!(layers::max_pool2d_same(&x, 3, 0).is_err());
            assert!(layers::avg_pool2d_same(&x, 0, 1).is_err());
            assert!(layers::max_pool2d(&x, (9, 9), (1, 1), (0, 0), false).is_err());
        });
    }
}
