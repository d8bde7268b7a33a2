//! The template schedules the recipe builds from hyperparameters.

use vct_hparams::{ClarifaiParams, HyperParams, RsbA1Params, Template, TransferEmbedNormParams};
use vct_sched::{Curve, LrSchedule, Schedule, WarmupStyle};
use vct_train::recipe::{schedule_for, BACKBONE_GROUP, CLARIFAI_STEP_GAMMA, HEAD_GROUP};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

fn for_hparams(hp: &HyperParams, spe: usize) -> Result<Schedule, vct_sched::SchedError> {
    schedule_for(hp, spe, WarmupStyle::Mmengine)
}

#[test]
fn rsb_min_lr_above_lr_names_the_template_keys() {
    let hp = HyperParams::RsbA1(RsbA1Params {
        per_item_min_lrate: 1e-3,
        per_item_lrate: 1e-5,
        batch_size: 10,
        ..RsbA1Params::default()
    });
    let msg = for_hparams(&hp, 10).unwrap_err().to_string();
    assert!(
        msg.contains("per_item_min_lrate") && msg.contains("per_item_lrate"),
        "{msg}"
    );
    assert!(msg.contains("0.01") && msg.contains("0.0001"), "{msg}");
}

#[test]
fn template_schedule_errors_name_their_key() {
    let hp = HyperParams::defaults(Template::ResNext);
    let msg = for_hparams(&hp, 0).unwrap_err().to_string();
    assert!(msg.contains("steps_per_epoch"), "{msg}");
    let hp = HyperParams::TransferEmbedNorm(TransferEmbedNormParams {
        base_gradient_multiplier: f64::INFINITY,
        ..TransferEmbedNormParams::default()
    });
    let msg = for_hparams(&hp, 3).unwrap_err().to_string();
    assert!(msg.contains("base_gradient_multiplier"), "{msg}");
}

#[test]
fn rsb_a1_defaults_build_the_warmup_cosine() {
    let hp = HyperParams::defaults(Template::RsbA1);
    let s = for_hparams(&hp, 10).unwrap();
    assert_eq!(s.total_steps, 600);
    let Curve::WarmupCosine(c) = s.curve else {
        panic!("expected warmup + cosine, got {:?}", s.curve)
    };
    assert!(close(c.lr, 64.0 * 1.953125e-05));
    assert!(close(c.min_lr, 64.0 * 1.5625e-08));
    assert_eq!((c.warmup_iters, c.style), (100, WarmupStyle::Mmengine));
    assert!(close(s.lr(0), 0.00125 * 0.0001));
    assert!(close(s.lr(99), 0.00125));
    assert!(s.lr(599) < 0.00125 * 0.001);
    let mmcv = schedule_for(&hp, 10, WarmupStyle::Mmcv1).unwrap();
    assert!(mmcv.lr(50) < s.lr(50));
}

#[test]
fn one_epoch_runs() {
    // RSB-A1 with one epoch of 10 steps: all warmup (100 steps).
    let hp = HyperParams::defaults(Template::RsbA1)
        .with_override("num_epochs=1")
        .unwrap();
    let s = for_hparams(&hp, 10).unwrap();
    assert_eq!(s.total_steps, 10);
    let curve = s.curve_points();
    assert!(curve.windows(2).all(|w| w[1] > w[0]));
    assert!(s
        .key_points()
        .iter()
        .any(|p| p.label.contains("longer than the run")));
    // The step schedule with one epoch never decays.
    let hp = HyperParams::defaults(Template::InceptionV2)
        .with_override("num_epochs=1")
        .unwrap();
    let s = for_hparams(&hp, 7).unwrap();
    assert!(s.curve_points().iter().all(|&lr| close(lr, 0.005)));
    assert_eq!(s.key_points().len(), 2);
}

#[test]
fn clarifai_step_schedule_decays_on_epoch_boundaries() {
    let p = ClarifaiParams::default();
    let hp = HyperParams::ResNext(p.clone());
    let spe = 3;
    let s = for_hparams(&hp, spe).unwrap();
    assert_eq!(s.total_steps, 65 * spe);
    for step in 0..s.total_steps {
        let epoch = step / spe;
        let decays = if epoch < 25 { 0 } else { (epoch - 25) / 7 + 1 };
        let expected = p.lrate() * CLARIFAI_STEP_GAMMA.powi(decays as i32);
        assert!(close(s.lr(step), expected), "step {step}");
    }
    // start, 6 decays (epochs 25, 32, 39, 46, 53, 60), last step.
    let points = s.key_points();
    assert_eq!(points.len(), 8, "{points:?}");
    assert_eq!(points[1].step, 25 * spe);
    assert_eq!(points[6].step, 60 * spe);
}

#[test]
fn transfer_template_multiplies_the_backbone_rate() {
    let hp = HyperParams::defaults(Template::TransferEmbedNorm);
    let s = for_hparams(&hp, 4).unwrap();
    for step in [0, 7, 79] {
        assert!(close(s.lr(step), 0.1));
        assert!(close(s.group_lr(HEAD_GROUP, step), 0.1));
        assert!(close(s.group_lr(BACKBONE_GROUP, step), 0.1 * 0.001));
    }
    assert_eq!(s.multiplier("unknown"), 1.0);
    let frozen = Schedule::new(s.curve, 10, 1)
        .unwrap()
        .with_group(BACKBONE_GROUP, 0.0)
        .unwrap();
    assert_eq!(frozen.group_lr(BACKBONE_GROUP, 3), 0.0);
}

#[test]
fn schedules_round_trip_through_json() {
    for template in Template::ALL {
        let s = for_hparams(&HyperParams::defaults(template), 5).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: Schedule = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s, "{json}");
        assert_eq!(back.curve_points(), s.curve_points());
    }
    let json =
        serde_json::to_value(for_hparams(&HyperParams::defaults(Template::RsbA1), 5).unwrap())
            .unwrap();
    assert_eq!(json["curve"]["kind"], "warmup_cosine");
    assert_eq!(json["curve"]["style"], "mmengine");
}
