//! `validate()` and an independent JSON Schema validator (the `jsonschema` crate)
//! agree on generated parameter objects, boundary cases included.
//!
//! JSON Schema cannot compare two values, so rules between keys are an
//! annotation of the schema (`x-vct-cross-field-rules`) that the validator
//! ignores. The agreement checked is: ours accepts ⇔ the schema accepts AND the
//! annotated rules hold, read here from the schema itself (not from the crate's
//! code), with the schema's defaults for missing keys.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use vct_hparams::{schema, specs, HyperParams, Rule, Template};

/// A value for a key: valid, at or just past a boundary, off-step, or the wrong type.
fn value_for(rule: Rule) -> BoxedStrategy<Value> {
    let wrong = prop_oneof![
        Just(Value::Null),
        Just(json!("text")),
        Just(json!(true)),
        Just(json!([1])),
        Just(json!({"a": 1})),
        Just(json!(0.5)),
        Just(json!(-1)),
    ];
    match rule {
        Rule::Int { min, max, step, .. } => {
            let hi = max.unwrap_or(min + 10_000);
            let mut edges = vec![
                min as i64,
                min as i64 - step as i64,
                hi as i64,
                hi as i64 + step as i64,
            ];
            if step > 1 {
                edges.push(min as i64 + step as i64 / 2);
            }
            prop_oneof![
                3 => (min..=hi).prop_map(|v| json!(v)),
                2 => proptest::sample::select(edges).prop_map(|v| json!(v)),
                1 => (min..=hi).prop_map(|v| json!(v as f64)),
                1 => (-5.0f64..(hi as f64 + 5.0)).prop_map(|v| json!(v)),
                1 => wrong,
            ]
            .boxed()
        }
        Rule::Float { min, max } => {
            let hi = max.unwrap_or(10.0);
            prop_oneof![
                3 => (min..=hi).prop_map(|v| json!(v)),
                2 => proptest::sample::select(vec![min, hi, min - 1e-9, hi + 1e-9, -0.0, 1e30]).prop_map(|v| json!(v)),
                1 => (-3i64..20).prop_map(|v| json!(v)),
                1 => wrong,
            ]
            .boxed()
        }
        Rule::Choice(options) => {
            let mut near: Vec<Value> = options.iter().map(|o| json!(o)).collect();
            near.push(json!(options[0].to_uppercase()));
            near.push(json!(""));
            prop_oneof![3 => proptest::sample::select(near), 1 => wrong].boxed()
        }
        Rule::Bool => prop_oneof![3 => any::<bool>().prop_map(Value::Bool), 1 => wrong].boxed(),
    }
}

/// A value inside the key's rule, including its bounds.
fn valid_value(rule: Rule) -> BoxedStrategy<Value> {
    match rule {
        Rule::Int {
            min,
            max,
            step,
            nullable,
        } => {
            let hi = max.unwrap_or(min + 100_000);
            let n = (hi - min) / step;
            let numbers = prop_oneof![
                8 => (0..=n).prop_map(move |k| json!(min + k * step)),
                1 => proptest::sample::select(vec![min, min + n * step]).prop_map(|v| json!(v)),
            ];
            if nullable {
                prop_oneof![8 => numbers, 1 => Just(Value::Null)].boxed()
            } else {
                numbers.boxed()
            }
        }
        Rule::Float { min, max } => (min..=max.unwrap_or(1.0)).prop_map(|v| json!(v)).boxed(),
        Rule::Choice(options) => proptest::sample::select(options.to_vec())
            .prop_map(|o| json!(o))
            .boxed(),
        Rule::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
    }
}

/// The rules between keys that the schema annotates, as (key, at-most key).
fn annotated_rules(schema: &Value) -> Vec<(String, String)> {
    let Some(rules) = schema.get(schema::CROSS_FIELD_RULES_KEYWORD) else {
        return Vec::new();
    };
    rules
        .as_array()
        .expect("the annotation is an array")
        .iter()
        .map(|r| {
            let key = r["key"].as_str().expect("a rule names its key");
            let limit = r["atMost"]
                .as_str()
                .expect("an at-most rule names its bound");
            (key.to_string(), limit.to_string())
        })
        .collect()
}

/// Whether every annotated rule holds on `object`, missing keys taking the
/// schema's defaults. Only meaningful for schema-valid objects (numbers there).
fn annotated_rules_hold(schema: &Value, object: &Value) -> bool {
    let value = |k: &str| {
        object
            .get(k)
            .or_else(|| schema["properties"][k].get("default"))
            .and_then(Value::as_f64)
    };
    annotated_rules(schema)
        .iter()
        .all(|(key, limit)| match (value(key), value(limit)) {
            (Some(v), Some(l)) => v <= l,
            _ => true,
        })
}

/// A params object: a random subset of the keys, sometimes with an unknown key,
/// and often at or just past the boundary of a rule between keys.
fn object_for(template: Template) -> BoxedStrategy<Value> {
    let rules = annotated_rules(&schema::template_schema(template));
    let boundary = proptest::option::weighted(0.3, (0..rules.len().max(1), any::<bool>()));
    (object_without_rules(template), boundary)
        .prop_map(move |(mut object, boundary)| {
            // Put the smaller key exactly on its bound, or one part in 1e9 above it.
            if let (Some((i, above)), Some(map)) = (boundary, object.as_object_mut()) {
                if let Some((key, limit)) = rules.get(i) {
                    if let Some(l) = map.get(limit).and_then(Value::as_f64) {
                        let v = if above { l * (1.0 + 1e-9) + 1e-12 } else { l };
                        map.insert(key.clone(), json!(v));
                    }
                }
            }
            object
        })
        .boxed()
}

fn object_without_rules(template: Template) -> BoxedStrategy<Value> {
    let entries: Vec<BoxedStrategy<Option<(String, Value)>>> = specs(template)
        .iter()
        .map(|spec| {
            let key = spec.key.to_string();
            // Mostly well-formed values, so that whole objects are often valid too.
            let value = prop_oneof![12 => valid_value(spec.rule), 1 => value_for(spec.rule)];
            proptest::option::weighted(0.6, value)
                .prop_map(move |v| v.map(|v| (key.clone(), v)))
                .boxed()
        })
        .collect();
    let extra = proptest::option::weighted(
        0.05,
        proptest::sample::select(vec!["imagesize", "lr", "Batch_Size", "seed"]),
    );
    (entries, extra)
        .prop_map(|(entries, extra)| {
            let mut map: Map<String, Value> = entries.into_iter().flatten().collect();
            if let Some(k) = extra {
                map.insert(k.to_string(), json!(1));
            }
            Value::Object(map)
        })
        .boxed()
}

fn check_agreement(template: Template, cases: u32) {
    let schema = schema::template_schema(template);
    let validator = jsonschema::draft202012::new(&schema).expect("the generated schema compiles");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let has_rules = !annotated_rules(&schema).is_empty();
    let (accepted, rejected) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let by_rule = std::cell::Cell::new(0u32);
    runner
        .run(&object_for(template), |object| {
            let ours = HyperParams::from_params(template, object.clone(), "proptest");
            let schema_ok = validator.is_valid(&object);
            let theirs = schema_ok && annotated_rules_hold(&schema, &object);
            let counter = if theirs { &accepted } else { &rejected };
            counter.set(counter.get() + 1);
            if schema_ok && !theirs {
                by_rule.set(by_rule.get() + 1);
            }
            prop_assert_eq!(
                ours.is_ok(),
                theirs,
                "{} disagrees on {} (schema {}, rules between keys {}): ours {:?}",
                template,
                object,
                schema_ok,
                annotated_rules_hold(&schema, &object),
                ours.err().map(|e| e.to_string())
            );
            Ok(())
        })
        .unwrap();
    let (accepted, rejected, by_rule) = (accepted.get(), rejected.get(), by_rule.get());
    eprintln!(
        "{template}: {accepted} accepted, {rejected} rejected ({by_rule} by a rule between keys alone), all agreed"
    );
    // Both verdicts must be well represented, or the test proves little.
    assert!(
        accepted > cases / 20 && rejected > cases / 20,
        "{template}: {accepted} accepted, {rejected} rejected"
    );
    if has_rules {
        assert!(
            by_rule > cases / 20,
            "{template}: only {by_rule} objects refused by a rule between keys alone"
        );
    }
}

#[test]
fn rsb_a1_schema_annotates_the_min_lrate_rule() {
    let schema = schema::template_schema(Template::RsbA1);
    assert_eq!(
        annotated_rules(&schema),
        [(
            "per_item_min_lrate".to_string(),
            "per_item_lrate".to_string()
        )]
    );
    let description = schema["description"].as_str().unwrap();
    assert!(
        description.contains("per_item_min_lrate <= per_item_lrate"),
        "{description}"
    );
    // Schema-valid, refused by the rule: the two parts of the verdict differ here.
    let object = json!({"per_item_lrate": 1e-5, "per_item_min_lrate": 2e-5});
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    assert!(validator.is_valid(&object));
    assert!(!annotated_rules_hold(&schema, &object));
    assert!(HyperParams::from_params(Template::RsbA1, object, "t").is_err());
    for template in Template::ALL {
        if template != Template::RsbA1 {
            assert!(annotated_rules(&schema::template_schema(template)).is_empty());
        }
    }
}

#[test]
fn rsb_a1_agrees_with_jsonschema() {
    check_agreement(Template::RsbA1, 10_000);
}

#[test]
fn inception_batchnorm_agrees_with_jsonschema() {
    check_agreement(Template::InceptionBatchNorm, 10_000);
}

#[test]
fn inception_v2_agrees_with_jsonschema() {
    check_agreement(Template::InceptionV2, 10_000);
}

#[test]
fn resnext_agrees_with_jsonschema() {
    check_agreement(Template::ResNext, 10_000);
}

#[test]
fn transfer_embed_norm_agrees_with_jsonschema() {
    check_agreement(Template::TransferEmbedNorm, 10_000);
}

#[test]
fn union_schema_agrees_on_whole_files() {
    let schema = schema::hyperparams_schema();
    let validator = jsonschema::draft202012::new(&schema).expect("compiles");
    let cases = [
        json!({"template": "Clarifai_ResNext"}),
        json!({"template": "Clarifai_ResNext", "params": {"image_size": 48}}),
        json!({"template": "Clarifai_ResNext", "params": {"image_size": 40}}),
        json!({"template": "MMClassification_ResNet_50_RSB_A1", "params": {"image_size": 40}}),
        json!({"template": "MMClassification_ResNet_50_RSB_A1", "params": {"logreg": 1}}),
        json!({"template": "clarifai_resnext"}),
        json!({"params": {}}),
        json!({"template": "Clarifai_InceptionV2", "params": {}, "extra": 1}),
        json!({"template": "MMClassification_ResNet_50_RSB_A1", "params": {"per_item_min_lrate": 1.0}}),
        json!({"template": "MMClassification_ResNet_50_RSB_A1", "params": {"per_item_min_lrate": 1.0, "per_item_lrate": 1.0}}),
    ];
    for case in cases {
        let ours = HyperParams::from_value(case.clone(), None, "case").is_ok();
        // The rules between keys come from the template's schema in `$defs`.
        let rules_hold = match case["template"].as_str() {
            Some(name) if schema["$defs"].get(name).is_some() => {
                annotated_rules_hold(&schema["$defs"][name], &case["params"])
            }
            _ => true,
        };
        assert_eq!(ours, validator.is_valid(&case) && rules_hold, "{case}");
    }
}

#[test]
fn committed_schemas_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    for (name, content) in schema::all_schema_files() {
        let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            on_disk == content,
            "schemas/{name} is stale: run `cargo xtask schemas`"
        );
    }
}
