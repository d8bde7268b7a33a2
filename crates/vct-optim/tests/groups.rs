//! Parameter groups: the no-decay rule, lr multipliers, missing gradients and
//! configuration errors.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{case, fixture, grads, params, values};
use vct_optim::{
    is_no_decay, split_decay, LambConfig, OptimError, Optimizer, OptimizerConfig, ParamGroup,
    SgdConfig,
};

fn var(shape: &[usize]) -> Var {
    Var::ones(shape, DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn norm_and_bias_parameters_get_no_decay() {
    let named = vec![
        ("conv1.weight".to_string(), var(&[8, 3, 3, 3])),
        ("bn1.weight".to_string(), var(&[8])),
        ("bn1.bias".to_string(), var(&[8])),
        ("fc.weight".to_string(), var(&[10, 8])),
        ("fc.bias".to_string(), var(&[10])),
    ];
    assert!(!is_no_decay("conv1.weight", &named[0].1));
    assert!(is_no_decay("bn1.weight", &named[1].1));
    let groups = split_decay("backbone", named, 0.5);
    assert_eq!(groups.len(), 2);
    assert_eq!(
        (groups[0].name.as_str(), groups[0].weight_decay),
        ("backbone", true)
    );
    assert_eq!(
        (groups[1].name.as_str(), groups[1].weight_decay),
        ("backbone.no_decay", false)
    );
    let names = |g: &ParamGroup| g.params.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&groups[0]), ["conv1.weight", "fc.weight"]);
    assert_eq!(names(&groups[1]), ["bn1.weight", "bn1.bias", "fc.bias"]);
    assert!(groups.iter().all(|g| g.lr_mult == 0.5));
    // Nothing to put in a group: it is left out.
    assert_eq!(
        split_decay("head", vec![("w".into(), var(&[2, 2]))], 1.0).len(),
        1
    );
}

#[test]
fn lr_multiplier_scales_the_step_and_zero_freezes() {
    let f = fixture();
    let (p, b) = params(&f);
    let (p0, b0) = (values(&p), values(&b));
    let config = OptimizerConfig::Sgd(SgdConfig {
        weight_decay: 0.0,
        ..SgdConfig::default()
    });
    let groups = vec![
        ParamGroup::new("backbone", vec![("p".into(), p.clone())]).with_lr_mult(0.0),
        ParamGroup::new("head", vec![("b".into(), b.clone())]).with_lr_mult(0.5),
    ];
    let mut opt = Optimizer::new(config, groups).unwrap();
    let g = grads(&f, 0, &p, &b);
    opt.step_with_lr(&g, 0.2).unwrap();
    assert_eq!(values(&p), p0, "lr_mult 0 leaves the group unchanged");
    let gb: Vec<f32> = g.get(b.as_tensor()).unwrap().to_vec1().unwrap();
    for ((after, before), grad) in values(&b).iter().zip(&b0).zip(&gb) {
        assert!((after - (before - 0.1 * grad)).abs() < 1e-7);
    }
}

#[test]
fn parameters_without_gradients_are_untouched() {
    let f = fixture();
    let (p, b) = params(&f);
    let b0 = values(&b);
    let (config, lr, groups) = case("adamw", &p, &b);
    let mut opt = Optimizer::new(config, groups).unwrap();
    let mut g = grads(&f, 0, &p, &b);
    g.remove(b.as_tensor());
    opt.step_with_lr(&g, lr).unwrap();
    assert_eq!(values(&b), b0);
    assert_ne!(values(&p), common::floats(&f["p_init"]));
}

#[test]
fn lamb_no_decay_group_skips_the_trust_ratio_but_shares_the_clip() {
    // With one decayed group both tensors differ from the split-group run only
    // where the bias is concerned.
    let f = fixture();
    let (p1, b1) = params(&f);
    let (p2, b2) = params(&f);
    let (c1, lr, g1) = case("lamb", &p1, &b1);
    let (c2, _, g2) = case("lamb_no_decay_on_bias", &p2, &b2);
    let mut one = Optimizer::new(c1, g1).unwrap();
    let mut split = Optimizer::new(c2, g2).unwrap();
    one.step_with_lr(&grads(&f, 0, &p1, &b1), lr).unwrap();
    split.step_with_lr(&grads(&f, 0, &p2, &b2), lr).unwrap();
    assert_eq!(values(&p1), values(&p2));
    assert_ne!(values(&b1), values(&b2));
}

#[test]
fn bad_settings_are_named() {
    let err = Optimizer::new(
        OptimizerConfig::Lamb(LambConfig {
            beta2: 1.0,
            ..LambConfig::default()
        }),
        vec![],
    )
    .unwrap_err();
    assert!(err.to_string().contains("beta2"), "{err}");
    let err = Optimizer::new(
        OptimizerConfig::Sgd(SgdConfig {
            momentum: 0.0,
            nesterov: true,
            ..SgdConfig::default()
        }),
        vec![],
    )
    .unwrap_err();
    assert!(err.to_string().contains("nesterov"), "{err}");
    let w = var(&[2]);
    let err = Optimizer::new(
        OptimizerConfig::Sgd(SgdConfig::default()),
        vec![
            ParamGroup::new("a", vec![("w".into(), w.clone())]),
            ParamGroup::new("b", vec![("w".into(), w)]),
        ],
    )
    .unwrap_err();
    assert!(matches!(err, OptimError::DuplicateParam { .. }), "{err}");
    let ints = Var::from_tensor(&Tensor::new(&[1u32, 2], &Device::Cpu).unwrap()).unwrap();
    let err = Optimizer::new(
        OptimizerConfig::Sgd(SgdConfig::default()),
        vec![ParamGroup::new("a", vec![("idx".into(), ints)])],
    )
    .unwrap_err();
    assert!(err.to_string().contains("idx"), "{err}");
    let err = Optimizer::new(
        OptimizerConfig::Sgd(SgdConfig::default()),
        vec![ParamGroup::new("head", vec![]).with_lr_mult(f64::NAN)],
    )
    .unwrap_err();
    assert!(err.to_string().contains("head"), "{err}");
}

#[test]
fn configs_round_trip_through_json() {
    for name in ["sgd_nesterov", "adamw", "lamb"] {
        let f = fixture();
        let (p, b) = params(&f);
        let (config, _, _) = case(name, &p, &b);
        let json = serde_json::to_string(&config).unwrap();
        let back: OptimizerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config, "{json}");
    }
    let json = serde_json::to_value(OptimizerConfig::AdamW(Default::default())).unwrap();
    assert_eq!(json["kind"], "adamw");
}

#[test]
fn usable_through_candle_nn_optimizer_trait() {
    use candle_nn::Optimizer as _;
    let f = fixture();
    let (p, b) = params(&f);
    let (p2, b2) = params(&f);
    let (config, lr, groups) = case("sgd_nesterov", &p, &b);
    let mut ours = Optimizer::new(config, groups).unwrap();
    let mut via_trait =
        <Optimizer as candle_nn::Optimizer>::new(vec![p2.clone(), b2.clone()], config).unwrap();
    via_trait.set_learning_rate(lr);
    assert_eq!(via_trait.learning_rate(), lr);
    for t in 0..3 {
        ours.step_with_lr(&grads(&f, t, &p, &b), lr).unwrap();
        candle_nn::Optimizer::step(&mut via_trait, &grads(&f, t, &p2, &b2)).unwrap();
    }
    assert_eq!(values(&p), values(&p2));
    assert_eq!(values(&b), values(&b2));
}
