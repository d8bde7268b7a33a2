//! JSON Schemas (2020-12) generated from the Rust types with schemars, then
//! completed from the rule tables: bounds, steps, defaults and a title.
//!
//! Rules between two keys ([`crate::CrossRule`]) have no JSON Schema keyword:
//! they are stated in the schema's `description` and listed, machine-readable,
//! under the annotation keyword [`CROSS_FIELD_RULES_KEYWORD`], which validators
//! ignore. A schema-valid object can therefore still be refused by vct; the
//! agreement test checks both parts.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::hyperparams::{cross_rules, specs};
use crate::params::{ClarifaiParams, RsbA1Params, TransferEmbedNormParams};
use crate::rules::Rule;
use crate::{HyperParams, Template};

/// The `$schema` URI of the dialect the schemas use.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The file name under `schemas/` of a template's schema.
pub fn schema_file_name(template: Template) -> String {
    format!("{}.schema.json", template.name())
}

/// The annotation keyword listing a template's rules between keys.
pub const CROSS_FIELD_RULES_KEYWORD: &str = "x-vct-cross-field-rules";

/// The file name of the tagged-union schema.
pub const HYPERPARAMS_SCHEMA_FILE: &str = "hyperparams.schema.json";

fn generated<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// The schema of one template's params object.
pub fn template_schema(template: Template) -> Value {
    let schema = match template {
        Template::RsbA1 => generated::<RsbA1Params>(),
        Template::InceptionBatchNorm | Template::InceptionV2 | Template::ResNext => {
            generated::<ClarifaiParams>()
        }
        Template::TransferEmbedNorm => generated::<TransferEmbedNormParams>(),
    };
    let defaults = HyperParams::defaults(template).params_value();
    let info = template.info();
    let generated_props = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut props = Map::new();
    for spec in specs(template) {
        let described = generated_props.get(spec.key);
        let mut prop = Map::new();
        apply_rule(&mut prop, &spec.rule);
        if let Some(description) = described.and_then(|p| p.get("description")) {
            prop.insert("description".into(), description.clone());
        }
        if let Some(default) = defaults.get(spec.key) {
            prop.insert("default".into(), default.clone());
        }
        props.insert(spec.key.into(), Value::Object(prop));
    }
    let mut description = format!(
        "Hyperparameters of the vct template {}: {} ({}; {}). Every key is optional; missing keys take their default.",
        template.name(),
        info.architecture,
        info.init,
        info.schedule
    );
    let rules = cross_rules(template);
    if !rules.is_empty() {
        description.push_str(&format!(
            " Rules between keys, which JSON Schema cannot express and vct checks on the values after defaults are filled in (listed in `{CROSS_FIELD_RULES_KEYWORD}`): {}.",
            rules
                .iter()
                .map(|r| r.describe())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let mut schema = json!({
        "$schema": DIALECT,
        "title": template.name(),
        "description": description,
        "type": "object",
        "properties": props,
        "additionalProperties": false,
    });
    if !rules.is_empty() {
        if let Some(obj) = schema.as_object_mut() {
            obj.insert(
                CROSS_FIELD_RULES_KEYWORD.into(),
                Value::Array(rules.iter().map(|r| r.annotation()).collect()),
            );
        }
    }
    schema
}

/// Makes a property state exactly what `rule` accepts, and nothing else.
fn apply_rule(prop: &mut Map<String, Value>, rule: &Rule) {
    // Types, bounds and choices come from the rule table, not from schemars'
    // reading of the Rust types (which adds `format` and u64's own minimum).
    match *rule {
        Rule::Int {
            min,
            max,
            step,
            nullable,
        } => {
            prop.insert(
                "type".into(),
                if nullable {
                    json!(["integer", "null"])
                } else {
                    json!("integer")
                },
            );
            prop.insert("minimum".into(), json!(min));
            if let Some(max) = max {
                prop.insert("maximum".into(), json!(max));
            }
            if step != 1 {
                prop.insert("multipleOf".into(), json!(step));
            }
        }
        Rule::Float { min, max } => {
            prop.insert("type".into(), json!("number"));
            prop.insert("minimum".into(), json!(min));
            if let Some(max) = max {
                prop.insert("maximum".into(), json!(max));
            }
        }
        Rule::Choice(options) => {
            prop.insert("type".into(), json!("string"));
            prop.insert("enum".into(), json!(options));
        }
        Rule::Bool => {
            prop.insert("type".into(), json!("boolean"));
        }
    }
}

/// The schema of `{"template": ..., "params": {...}}` over all templates.
pub fn hyperparams_schema() -> Value {
    let mut defs = Map::new();
    let mut branches = Vec::new();
    for template in Template::ALL {
        let mut schema = template_schema(template);
        if let Some(obj) = schema.as_object_mut() {
            obj.remove("$schema");
        }
        defs.insert(template.name().into(), schema);
        branches.push(json!({
            "if": { "properties": { "template": { "const": template.name() } } },
            "then": { "properties": { "params": { "$ref": format!("#/$defs/{}", template.name()) } } }
        }));
    }
    json!({
        "$schema": DIALECT,
        "title": "vct hyperparameters",
        "description": "A vct template and its hyperparameters. `params` may be partial or absent: missing keys take the template's defaults.",
        "type": "object",
        "properties": {
            "template": {
                "type": "string",
                "description": "The template's exact name.",
                "enum": Template::ALL.map(|t| t.name()),
            },
            "params": {
                "type": "object",
                "description": "The template's hyperparameters; see the template's own schema."
            }
        },
        "required": ["template"],
        "additionalProperties": false,
        "allOf": branches,
        "$defs": defs,
    })
}

/// Every schema file and its content, as `cargo xtask schemas` writes them.
pub fn all_schema_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Template::ALL
        .into_iter()
        .map(|t| (schema_file_name(t), pretty(&template_schema(t))))
        .collect();
    files.push((
        HYPERPARAMS_SCHEMA_FILE.to_string(),
        pretty(&hyperparams_schema()),
    ));
    files
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}
