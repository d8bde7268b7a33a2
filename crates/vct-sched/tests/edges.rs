//! Edge cases of the curves.

use vct_sched::{LrSchedule, SchedError, StepDecay, WarmupCosine, WarmupStyle};

const STYLES: [WarmupStyle; 3] = [
    WarmupStyle::Mmengine,
    WarmupStyle::Mmcv1,
    WarmupStyle::MmengineConcurrent,
];

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

#[test]
fn no_warmup_is_a_plain_cosine() {
    for style in STYLES {
        let s = WarmupCosine::new(0.1, 0.001, 0, 0.25, 50, style).unwrap();
        assert!(close(s.lr(0), 0.1), "{style:?}");
        for i in 0..50 {
            let cosine =
                0.001 + 0.5 * 0.099 * (1.0 + (std::f64::consts::PI * i as f64 / 50.0).cos());
            assert!(close(s.lr(i), cosine), "{style:?} step {i}");
        }
    }
}

#[test]
fn warmup_longer_than_the_run_rises_and_never_peaks() {
    let s = WarmupCosine::new(0.1, 0.001, 50, 0.1, 20, WarmupStyle::Mmengine).unwrap();
    let curve: Vec<f64> = (0..20).map(|i| s.lr(i)).collect();
    assert!(curve.windows(2).all(|w| w[1] > w[0]));
    assert!(close(curve[19], 0.1 * (0.1 + 0.9 * 19.0 / 49.0)));
    // Past the end the rate holds its last value.
    assert_eq!(s.lr(20), curve[19]);
    assert_eq!(s.lr(1000), curve[19]);
    let mmcv = WarmupCosine::new(0.1, 0.001, 50, 0.1, 20, WarmupStyle::Mmcv1).unwrap();
    assert!((0..20).all(|i| mmcv.lr(i) < 0.1 && mmcv.lr(i) > 0.0));
}

#[test]
fn one_step_warmup_starts_low_then_cosine() {
    let s = WarmupCosine::new(0.1, 0.0, 1, 0.5, 10, WarmupStyle::Mmengine).unwrap();
    assert!(close(s.lr(0), 0.05));
    assert!(close(s.lr(1), 0.1));
}

#[test]
fn warmup_ends_where_each_convention_says() {
    let engine = WarmupCosine::new(0.2, 0.0, 8, 0.0, 100, WarmupStyle::Mmengine).unwrap();
    assert!(close(engine.lr(7), 0.2), "mmengine reaches lr at W-1");
    assert!(close(engine.lr(8), 0.2), "cosine starts at lr on W");
    assert_eq!(engine.lr(0), 0.0);
    let mmcv = WarmupCosine::new(0.2, 0.0, 8, 0.0, 100, WarmupStyle::Mmcv1).unwrap();
    assert!(mmcv.lr(7) < mmcv.lr(8));
    let cosine_8 = 0.1 * (1.0 + (std::f64::consts::PI * 8.0 / 100.0).cos());
    assert!(close(mmcv.lr(8), cosine_8), "mmcv: factor 1 at W");
}

#[test]
fn min_lr_above_lr_is_rejected_with_the_keys() {
    let err = WarmupCosine::new(0.01, 0.1, 5, 0.1, 10, WarmupStyle::Mmengine).unwrap_err();
    assert!(matches!(err, SchedError::MinAboveMax { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("min_lr") && msg.contains("0.1") && msg.contains("0.01"),
        "{msg}"
    );
}

#[test]
fn invalid_numbers_name_their_key() {
    let cases: Vec<(Result<WarmupCosine, SchedError>, &str)> = vec![
        (
            WarmupCosine::new(f64::NAN, 0.0, 1, 0.1, 10, WarmupStyle::Mmengine),
            "lr",
        ),
        (
            WarmupCosine::new(0.1, -1.0, 1, 0.1, 10, WarmupStyle::Mmengine),
            "min_lr",
        ),
        (
            WarmupCosine::new(0.1, 0.0, 1, 1.5, 10, WarmupStyle::Mmengine),
            "warmup_ratio",
        ),
        (
            WarmupCosine::new(0.1, 0.0, 1, 0.1, 0, WarmupStyle::Mmengine),
            "total_steps",
        ),
        (
            WarmupCosine::new(0.1, 0.0, 5, 0.0, 10, WarmupStyle::MmengineConcurrent),
            "warmup_ratio",
        ),
    ];
    for (result, key) in cases {
        match result.unwrap_err() {
            SchedError::Invalid { key: k, .. } => assert_eq!(k, key),
            other => panic!("expected Invalid for {key}, got {other}"),
        }
    }
    assert!(StepDecay::new(0.1, 0.1, 5, 0, 1)
        .unwrap_err()
        .to_string()
        .contains("step_epochs"));
    assert!(StepDecay::new(0.1, 2.0, 5, 1, 1)
        .unwrap_err()
        .to_string()
        .contains("gamma"));
}
