//! Properties every warmup + cosine and step curve has, for any valid settings.

use proptest::prelude::*;
use vct_sched::{LrSchedule, StepDecay, WarmupCosine, WarmupStyle};

/// The concurrent mmengine style is left out: its recursive composition can
/// overshoot `lr` when `min_lr` is close to it (as mmengine itself does).
fn style() -> impl Strategy<Value = WarmupStyle> {
    prop_oneof![Just(WarmupStyle::Mmengine), Just(WarmupStyle::Mmcv1)]
}

proptest! {
    #[test]
    fn warmup_cosine_rises_then_falls_within_bounds(
        lr in 1e-6f64..1.0,
        min_frac in 0.0f64..1.0,
        warmup in 0usize..200,
        ratio in 1e-4f64..1.0,
        total in 1usize..400,
        style in style(),
    ) {
        let min_lr = lr * min_frac;
        let s = WarmupCosine::new(lr, min_lr, warmup, ratio, total, style).unwrap();
        let curve: Vec<f64> = (0..total).map(|i| s.lr(i)).collect();
        let tol = 1e-12 * lr;
        for (i, &v) in curve.iter().enumerate() {
            prop_assert!(v.is_finite() && v >= -tol && v <= lr + tol, "step {i}: {v}");
        }
        // Past the warmup the cosine only falls.
        let after = warmup.min(total - 1);
        prop_assert!(curve[after..].windows(2).all(|w| w[1] <= w[0] + tol));
        if style == WarmupStyle::Mmengine {
            // The warmup only rises (mmcv's warmup factor multiplies a falling
            // cosine, so its product need not).
            let end = warmup.min(total);
            prop_assert!(curve[..end].windows(2).all(|w| w[1] >= w[0] - tol));
        }
        if warmup < total && style == WarmupStyle::Mmengine {
            prop_assert!((curve[warmup] - lr).abs() <= tol);
            prop_assert!(curve[total - 1] >= min_lr - tol);
        }
        prop_assert_eq!(s.lr(total + 5), curve[total - 1]);
    }

    #[test]
    fn step_decay_is_piecewise_constant_per_epoch(
        lr in 1e-6f64..1.0,
        gamma in 0.01f64..1.0,
        init in 0usize..20,
        every in 1usize..10,
        spe in 1usize..20,
    ) {
        let s = StepDecay::new(lr, gamma, init, every, spe).unwrap();
        for epoch in 0..40 {
            let v = s.lr(epoch * spe);
            prop_assert_eq!(s.lr(epoch * spe + spe - 1), v);
            let n = if epoch < init { 0 } else { (epoch - init) / every + 1 };
            prop_assert!((v - lr * gamma.powi(n as i32)).abs() <= 1e-12 * lr);
        }
    }
}
