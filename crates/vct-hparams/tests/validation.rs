//! Verdicts on defaults and on every key's boundary values, checked against an
//! independent copy of REFERENCE.md §1 (not the crate's own rule table).

use serde_json::{json, Value};
use vct_hparams::{HparamsError, HyperParams, Template};

#[derive(Clone, Copy)]
enum Kind {
    /// min, max (None = unbounded), step
    Int(i64, Option<i64>, i64),
    Float(f64, Option<f64>),
    Choice(&'static [&'static str]),
    Bool,
    NullableInt(i64),
}

fn reference(template: Template) -> Vec<(&'static str, Kind)> {
    use Kind::*;
    let clarifai = vec![
        ("logreg", Int(0, Some(1), 1)),
        ("image_size", Int(32, Some(1024), 16)),
        ("batch_size", Int(1, Some(128), 1)),
        ("init_epochs", Int(1, Some(200), 1)),
        ("step_epochs", Int(1, Some(200), 1)),
        ("num_epochs", Int(1, Some(200), 1)),
        ("per_item_lrate", Float(0.0, None)),
        ("num_items_per_epoch", NullableInt(0)),
    ];
    match template {
        Template::RsbA1 => vec![
            ("image_size", Int(32, Some(1024), 1)),
            ("batch_size", Int(1, Some(256), 1)),
            ("num_epochs", Int(1, Some(600), 1)),
            ("per_item_lrate", Float(0.0, None)),
            ("weight_decay", Float(0.0, Some(1.0))),
            ("per_item_min_lrate", Float(0.0, None)),
            ("warmup_iters", Int(0, None, 1)),
            ("warmup_ratio", Float(0.0, Some(1.0))),
            ("pretrained_weights", Choice(&["None", "ImageNet-1k"])),
            ("flip_probability", Float(0.0, Some(1.0))),
            ("flip_direction", Choice(&["horizontal", "vertical"])),
            ("concepts_mutually_exclusive", Bool),
        ],
        Template::InceptionBatchNorm | Template::InceptionV2 | Template::ResNext => clarifai,
        Template::TransferEmbedNorm => vec![
            ("logreg", Int(0, Some(1), 1)),
            ("image_size", Int(32, Some(1024), 16)),
            ("batch_size", Int(1, Some(128), 1)),
            ("lrate", Float(0.0, None)),
            ("base_gradient_multiplier", Float(0.0, None)),
            ("num_epochs", Int(1, Some(200), 1)),
            ("num_items_per_epoch", NullableInt(0)),
            ("average_horizontal_flips", Bool),
        ],
    }
}

fn verdict(template: Template, key: &str, value: Value) -> Result<HyperParams, HparamsError> {
    let mut obj = serde_json::Map::new();
    obj.insert(key.to_string(), value);
    // One key's own bounds, with the other key of the RSB-A1 learning-rate pair
    // set so that the rule between them (min <= peak) holds for every tested value.
    if template == Template::RsbA1 {
        match key {
            "per_item_lrate" => obj.insert("per_item_min_lrate".into(), json!(0.0)),
            "per_item_min_lrate" => obj.insert("per_item_lrate".into(), json!(1e300)),
            _ => None,
        };
    }
    HyperParams::from_params(template, Value::Object(obj), "test")
}

fn cases(kind: Kind) -> Vec<(Value, bool)> {
    match kind {
        Kind::Int(min, max, step) => {
            let mut v = vec![
                (json!(min), true),
                (json!(min - step), false),
                (json!("12"), false),
                (json!(true), false),
                (json!(min as f64 + 0.5), false),
            ];
            if let Some(max) = max {
                v.push((json!(max), true));
                v.push((json!(max + step), false));
            } else {
                v.push((json!(min + 1_000_000 * step), true));
            }
            if step > 1 {
                v.push((json!(min + step / 2), false));
                v.push((json!(min + step), true));
            }
            v
        }
        Kind::NullableInt(min) => vec![
            (json!(min), true),
            (json!(min - 1), false),
            (Value::Null, true),
            (json!(5000), true),
            (json!("all"), false),
            (json!(2.5), false),
        ],
        Kind::Float(min, max) => {
            let mut v = vec![
                (json!(min), true),
                (json!(min - 1e-9), false),
                (json!("0.1"), false),
                (Value::Null, false),
            ];
            if let Some(max) = max {
                v.push((json!(max), true));
                v.push((json!(max + 1e-9), false));
                v.push((json!((min + max) / 2.0), true));
            } else {
                v.push((json!(1e6), true));
            }
            v
        }
        Kind::Choice(options) => {
            let mut v: Vec<(Value, bool)> = options.iter().map(|o| (json!(o), true)).collect();
            v.push((json!(options[0].to_uppercase() + "x"), false));
            v.push((json!(options[0].to_lowercase() + "_"), false));
            v.push((json!(1), false));
            v
        }
        Kind::Bool => vec![
            (json!(true), true),
            (json!(false), true),
            (json!(1), false),
            (json!("true"), false),
        ],
    }
}

#[test]
fn defaults_validate_and_round_trip_through_the_validator() {
    for template in Template::ALL {
        let defaults = HyperParams::defaults(template);
        let again = HyperParams::from_params(template, defaults.params_value(), "test")
            .unwrap_or_else(|e| panic!("{template} defaults rejected: {e}"));
        assert_eq!(again, defaults);
        let keys: Vec<String> = defaults
            .params_value()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let expected: Vec<String> = reference(template)
            .iter()
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(keys, expected, "{template}: keys differ from REFERENCE.md");
    }
}

#[test]
fn documented_defaults() {
    let rsb = HyperParams::defaults(Template::RsbA1);
    assert_eq!(rsb.batch_size(), 64);
    assert!((rsb.lrate() - 0.00125).abs() < 1e-15);
    let HyperParams::RsbA1(p) = &rsb else {
        unreachable!()
    };
    assert!((p.min_lrate() - 1.0e-6).abs() < 1e-18);
    assert_eq!(p.warmup_iters, 100);
    let resnext = HyperParams::defaults(Template::ResNext);
    assert!((resnext.lrate() - 0.005).abs() < 1e-15);
    assert_eq!(resnext.items_per_epoch(1234), 1234);
    assert_eq!(resnext.steps_per_epoch(130), 3);
    assert!(resnext.multi_label());
    let transfer = HyperParams::defaults(Template::TransferEmbedNorm);
    assert_eq!(transfer.batch_size(), 128);
    assert!((transfer.lrate() - 0.1).abs() < 1e-15);
    let custom = resnext.with_override("num_items_per_epoch=500").unwrap();
    assert_eq!(custom.items_per_epoch(10), 500);
    assert!(!resnext.with_override("logreg=0").unwrap().multi_label());
}

#[test]
fn every_boundary_gets_the_right_verdict() {
    for template in Template::ALL {
        for (key, kind) in reference(template) {
            for (value, ok) in cases(kind) {
                let result = verdict(template, key, value.clone());
                assert_eq!(
                    result.is_ok(),
                    ok,
                    "{template}.{key} = {value}: expected {}, got {:?}",
                    if ok { "accept" } else { "reject" },
                    result.err().map(|e| e.to_string())
                );
                if let Err(e) = result {
                    let text = e.to_string();
                    assert!(text.contains(key), "error does not name the key: {text}");
                }
            }
        }
        let err = verdict(template, "not_a_key", json!(1)).unwrap_err();
        assert!(err.to_string().contains("unknown key"), "{err}");
    }
}

#[test]
fn messages_name_key_value_and_rule() {
    let err = verdict(Template::ResNext, "image_size", json!(40))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("image_size: 40 is not a multiple of 16 (allowed 32..=1024 in steps of 16)"),
        "{err}"
    );
    let err = verdict(Template::ResNext, "batch_sise", json!(40))
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `batch_size`?"), "{err}");
    let err = verdict(Template::RsbA1, "flip_direction", json!("Horizontal"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean \"horizontal\"?"), "{err}");
    let err = verdict(Template::RsbA1, "batch_size", json!("64"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("batch_size: expected integer 1..=256, got string \"64\""),
        "{err}"
    );
}

#[cfg(feature = "yaml")]
#[test]
fn all_violations_are_reported_at_once() {
    let text = r#"
template: Clarifai_ResNext
params:
  image_size: 40
  batch_size: 0
  lerning_rate: 0.1
"#;
    let err = HyperParams::from_str_format(text, vct_hparams::Format::Yaml, None, "three.yaml")
        .unwrap_err();
    let HparamsError::Invalid { violations, .. } = &err else {
        panic!("expected Invalid, got {err}")
    };
    assert_eq!(violations.len(), 3, "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("three.yaml: 3 invalid hyperparameters for Clarifai_ResNext"),
        "{text}"
    );
}

#[test]
fn template_names() {
    assert_eq!(
        "clarifai_resnext".parse::<Template>().unwrap(),
        Template::ResNext
    );
    assert_eq!(Template::InceptionV2.to_string(), "Clarifai_InceptionV2");
    let err = "Clarifai_ResNxt"
        .parse::<Template>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean Clarifai_ResNext?"), "{err}");
    // In files the name must be exact, as the JSON Schema requires.
    let err = HyperParams::from_value(json!({"template": "clarifai_resnext"}), None, "f.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean \"Clarifai_ResNext\""), "{err}");
    let err = HyperParams::from_value(
        json!({"template": "Clarifai_ResNext"}),
        Some(Template::RsbA1),
        "f.json",
    )
    .unwrap_err();
    assert!(matches!(err, HparamsError::TemplateMismatch { .. }));
    let err = HyperParams::from_value(json!({"batch_size": 8}), None, "f.json").unwrap_err();
    assert!(matches!(err, HparamsError::MissingTemplate { .. }));
}

#[test]
fn partial_files_merge_over_defaults() {
    let hp = HyperParams::from_value(
        json!({"template": "Clarifai_InceptionTransferEmbedNorm", "params": {"lrate": 0.5}}),
        None,
        "p.json",
    )
    .unwrap();
    let HyperParams::TransferEmbedNorm(p) = &hp else {
        panic!()
    };
    assert_eq!(p.lrate, 0.5);
    assert_eq!(p.batch_size, 128);
    assert!(p.average_horizontal_flips);
    // An integer written as 64.0 is accepted, as JSON Schema does.
    let hp = HyperParams::from_params(Template::RsbA1, json!({"batch_size": 32.0}), "p").unwrap();
    assert_eq!(hp.batch_size(), 32);
}

#[test]
fn min_lrate_above_lrate_is_refused_naming_both_keys_and_values() {
    // Both given.
    let err = HyperParams::from_params(
        Template::RsbA1,
        json!({"per_item_lrate": 1e-5, "per_item_min_lrate": 2e-5}),
        "rsb.json",
    )
    .unwrap_err();
    let HparamsError::Invalid { violations, .. } = &err else {
        panic!("expected Invalid, got {err}")
    };
    assert_eq!(violations.len(), 1, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("per_item_min_lrate: 0.00002 is above per_item_lrate = 0.00001;"),
        "{text}"
    );
    // Only the peak given: the floor is the default, and the message says so.
    let err = HyperParams::from_params(Template::RsbA1, json!({"per_item_lrate": 1e-9}), "t")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("per_item_min_lrate: 1.5625e-8 (the default) is above per_item_lrate = 1e-9;"),
        "{err}"
    );
    // A command-line override is checked against the current values too.
    let err = HyperParams::defaults(Template::RsbA1)
        .with_override("per_item_lrate=1e-9")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("per_item_min_lrate: 1.5625e-8 is above per_item_lrate = 1e-9; per_item_min_lrate must be at most per_item_lrate"),
        "{err}"
    );
    // Equal is allowed (a constant cosine phase), and so is the default pair.
    HyperParams::from_params(
        Template::RsbA1,
        json!({"per_item_lrate": 3e-5, "per_item_min_lrate": 3e-5}),
        "t",
    )
    .unwrap();
    // Reported together with the other violations, not instead of them.
    let err = HyperParams::from_params(
        Template::RsbA1,
        json!({"per_item_min_lrate": 1.0, "batch_size": 0}),
        "t",
    )
    .unwrap_err();
    let HparamsError::Invalid { violations, .. } = &err else {
        panic!("expected Invalid, got {err}")
    };
    assert_eq!(violations.len(), 2, "{err}");
    // A value broken on its own is reported once, by its own rule.
    let err = HyperParams::from_params(Template::RsbA1, json!({"per_item_min_lrate": "high"}), "t")
        .unwrap_err();
    let HparamsError::Invalid { violations, .. } = &err else {
        panic!("expected Invalid, got {err}")
    };
    assert_eq!(violations.len(), 1, "{err}");
}

#[cfg(feature = "yaml")]
#[test]
fn layered_reports_every_mistake_of_the_file_and_every_set() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, "batch_size: 0\nimag_size: 64\n").unwrap();
    let sets: Vec<String> = [
        "image_size=100",
        "num_epochs=0",
        "per_item_lrate=-1",
        "bogus",
        "logreg=[",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let base = HyperParams::defaults(Template::ResNext);
    let err = base.layered(Some(&file), &sets).unwrap_err();
    let HparamsError::Invalid {
        violations, origin, ..
    } = &err
    else {
        panic!("{err}")
    };
    let keys: Vec<&str> = violations.iter().map(|v| v.key.as_str()).collect();
    for k in [
        "batch_size",
        "imag_size",
        "image_size",
        "num_epochs",
        "per_item_lrate",
        "bogus",
        "logreg",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert!(
        origin.contains("p.yaml") && origin.contains("--set"),
        "{origin}"
    );
    // A file changes only its keys; the sets come last.
    std::fs::write(&file, "batch_size: 16\n").unwrap();
    let hp = base
        .with_override("num_epochs=3")
        .unwrap()
        .layered(Some(&file), &["image_size=64".to_string()])
        .unwrap();
    assert_eq!(
        (hp.batch_size(), hp.image_size(), hp.num_epochs()),
        (16, 64, 3)
    );
}
