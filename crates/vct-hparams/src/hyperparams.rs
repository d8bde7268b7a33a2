//! `HyperParams`: a template together with its parameters, loaded from JSON, YAML
//! or TOML, validated (all violations at once) and merged over the defaults.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::params::{ClarifaiParams, RsbA1Params, TransferEmbedNormParams};
use crate::rules::{check_object, closest, type_name, CrossRule, ParamSpec, Violation};
use crate::{HparamsError, Template};

/// A template and its full, validated hyperparameters.
///
/// Serialises as `{"template": "<name>", "params": {...}}`. Deserialising goes
/// through [`HyperParams::from_value`], so it validates and fills in defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "template", content = "params", try_from = "Value")]
pub enum HyperParams {
    /// `MMClassification_ResNet_50_RSB_A1`.
    #[serde(rename = "MMClassification_ResNet_50_RSB_A1")]
    RsbA1(RsbA1Params),
    /// `Clarifai_InceptionBatchNorm`.
    #[serde(rename = "Clarifai_InceptionBatchNorm")]
    InceptionBatchNorm(ClarifaiParams),
    /// `Clarifai_InceptionV2`.
    #[serde(rename = "Clarifai_InceptionV2")]
    InceptionV2(ClarifaiParams),
    /// `Clarifai_ResNext`.
    #[serde(rename = "Clarifai_ResNext")]
    ResNext(ClarifaiParams),
    /// `Clarifai_InceptionTransferEmbedNorm`.
    #[serde(rename = "Clarifai_InceptionTransferEmbedNorm")]
    TransferEmbedNorm(TransferEmbedNormParams),
}

impl TryFrom<Value> for HyperParams {
    type Error = HparamsError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        HyperParams::from_value(value, None, "<input>")
    }
}

/// The rule table of a template's keys.
pub fn specs(template: Template) -> &'static [ParamSpec] {
    match template {
        Template::RsbA1 => RsbA1Params::SPECS,
        Template::InceptionBatchNorm | Template::InceptionV2 | Template::ResNext => {
            ClarifaiParams::SPECS
        }
        Template::TransferEmbedNorm => TransferEmbedNormParams::SPECS,
    }
}

/// The rules between keys of a template, checked after defaults are filled in.
pub fn cross_rules(template: Template) -> &'static [CrossRule] {
    match template {
        Template::RsbA1 => RsbA1Params::CROSS_RULES,
        Template::InceptionBatchNorm
        | Template::InceptionV2
        | Template::ResNext
        | Template::TransferEmbedNorm => &[],
    }
}

impl HyperParams {
    /// The template's documented defaults.
    pub fn defaults(template: Template) -> HyperParams {
        match template {
            Template::RsbA1 => HyperParams::RsbA1(RsbA1Params::default()),
            Template::InceptionBatchNorm => {
                HyperParams::InceptionBatchNorm(ClarifaiParams::default())
            }
            Template::InceptionV2 => HyperParams::InceptionV2(ClarifaiParams::default()),
            Template::ResNext => HyperParams::ResNext(ClarifaiParams::default()),
            Template::TransferEmbedNorm => {
                HyperParams::TransferEmbedNorm(TransferEmbedNormParams::default())
            }
        }
    }

    /// Which template these are.
    pub fn template(&self) -> Template {
        match self {
            HyperParams::RsbA1(_) => Template::RsbA1,
            HyperParams::InceptionBatchNorm(_) => Template::InceptionBatchNorm,
            HyperParams::InceptionV2(_) => Template::InceptionV2,
            HyperParams::ResNext(_) => Template::ResNext,
            HyperParams::TransferEmbedNorm(_) => Template::TransferEmbedNorm,
        }
    }

    /// Checks a bare params object (no `template` key) and merges it over the
    /// template's defaults. Every violation is reported at once.
    pub fn from_params(
        template: Template,
        params: Value,
        origin: &str,
    ) -> Result<HyperParams, HparamsError> {
        let invalid = |violations| HparamsError::Invalid {
            origin: origin.to_string(),
            template: template.name().to_string(),
            violations,
        };
        let object = match params {
            Value::Object(object) => object,
            Value::Null => Map::new(),
            other => {
                return Err(invalid(vec![Violation {
                    key: "params".into(),
                    message: format!(
                        "expected an object of hyperparameters, got {}",
                        type_name(&other)
                    ),
                }]))
            }
        };
        let mut violations = check_object(specs(template), &object);
        let mut merged = match HyperParams::defaults(template).params_value() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        for (key, value) in &object {
            merged.insert(key.clone(), normalise(value.clone()));
        }
        // Rules between keys, over values that passed their own rules (a bad value
        // is reported once, by its own rule), so every violation comes at once.
        for rule in cross_rules(template) {
            if rule
                .keys()
                .iter()
                .any(|k| violations.iter().any(|v| v.key == *k))
            {
                continue;
            }
            if let Err(v) = rule.check(&merged, &object) {
                violations.push(v);
            }
        }
        if !violations.is_empty() {
            return Err(invalid(violations));
        }
        let merged = Value::Object(merged);
        // The rules above accept exactly what the structs hold, so this only fails
        // if the two disagree: report it as a violation rather than panic.
        let from = |e: serde_json::Error| {
            invalid(vec![Violation {
                key: "<root>".into(),
                message: format!("internal: validated params did not deserialize: {e}"),
            }])
        };
        Ok(match template {
            Template::RsbA1 => HyperParams::RsbA1(serde_json::from_value(merged).map_err(from)?),
            Template::InceptionBatchNorm => {
                HyperParams::InceptionBatchNorm(serde_json::from_value(merged).map_err(from)?)
            }
            Template::InceptionV2 => {
                HyperParams::InceptionV2(serde_json::from_value(merged).map_err(from)?)
            }
            Template::ResNext => {
                HyperParams::ResNext(serde_json::from_value(merged).map_err(from)?)
            }
            Template::TransferEmbedNorm => {
                HyperParams::TransferEmbedNorm(serde_json::from_value(merged).map_err(from)?)
            }
        })
    }

    /// Reads either `{"template": ..., "params": {...}}` or a bare params object.
    ///
    /// `template` is the template the caller wants (e.g. from `--template`); a file
    /// that names a different one is an error. In files the template name must be
    /// spelled exactly (as the JSON Schema requires); close misses get a hint.
    pub fn from_value(
        value: Value,
        template: Option<Template>,
        origin: &str,
    ) -> Result<HyperParams, HparamsError> {
        let value = match (value, template) {
            // An empty file with a template given means "all defaults".
            (Value::Null, Some(_)) => Value::Object(Map::new()),
            (value, _) => value,
        };
        let Value::Object(mut object) = value else {
            return Err(HparamsError::Invalid {
                origin: origin.to_string(),
                template: template.map(|t| t.name()).unwrap_or("?").to_string(),
                violations: vec![Violation {
                    key: "<root>".into(),
                    message: format!("expected an object, got {}", type_name(&value)),
                }],
            });
        };
        if !object.contains_key("template") {
            let template = template.ok_or_else(|| HparamsError::MissingTemplate {
                origin: origin.to_string(),
            })?;
            return HyperParams::from_params(template, Value::Object(object), origin);
        }
        let named = object.remove("template").unwrap_or(Value::Null);
        let params = object.remove("params").unwrap_or(Value::Null);
        let mut violations: Vec<Violation> = object
            .keys()
            .map(|k| Violation {
                key: k.clone(),
                message: "unknown top-level key (expected only \"template\" and \"params\")".into(),
            })
            .collect();
        let in_file = match named.as_str() {
            Some(name) => Template::ALL.into_iter().find(|t| t.name() == name),
            None => None,
        };
        let Some(in_file) = in_file else {
            let hint = named
                .as_str()
                .and_then(|n| closest(n, Template::ALL.iter().map(|t| t.name())))
                .map(|c| format!("; did you mean \"{c}\"? (names are case-sensitive in files)"))
                .unwrap_or_default();
            violations.push(Violation {
                key: "template".into(),
                message: format!("{named} is not a template name{hint}"),
            });
            return Err(HparamsError::Invalid {
                origin: origin.to_string(),
                template: "?".into(),
                violations,
            });
        };
        if let Some(requested) = template {
            if requested != in_file {
                return Err(HparamsError::TemplateMismatch {
                    origin: origin.to_string(),
                    in_file,
                    requested,
                });
            }
        }
        match HyperParams::from_params(in_file, params, origin) {
            Ok(hp) if violations.is_empty() => Ok(hp),
            Ok(_) => Err(HparamsError::Invalid {
                origin: origin.to_string(),
                template: in_file.name().into(),
                violations,
            }),
            Err(HparamsError::Invalid {
                violations: more, ..
            }) => {
                violations.extend(more);
                Err(HparamsError::Invalid {
                    origin: origin.to_string(),
                    template: in_file.name().into(),
                    violations,
                })
            }
            Err(other) => Err(other),
        }
    }

    /// Parses text in `format` (`json`, `yaml` or `toml`).
    pub fn from_str_format(
        text: &str,
        format: Format,
        template: Option<Template>,
        origin: &str,
    ) -> Result<HyperParams, HparamsError> {
        let value = format.parse(text, origin)?;
        HyperParams::from_value(value, template, origin)
    }

    /// Loads a `.json`, `.yaml`/`.yml` or `.toml` file.
    pub fn load(path: &Path, template: Option<Template>) -> Result<HyperParams, HparamsError> {
        let format = Format::from_path(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| HparamsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        HyperParams::from_str_format(&text, format, template, &path.display().to_string())
    }

    /// Sets one key from a `key=value` string as typed on a command line (the value
    /// is read as a YAML scalar, so `64`, `0.5`, `true` and `horizontal` all work;
    /// without the `yaml` feature as a JSON value, else as a string).
    pub fn with_override(&self, assignment: &str) -> Result<HyperParams, HparamsError> {
        let origin = format!("--set {assignment}");
        let Some((key, raw)) = assignment.split_once('=') else {
            return Err(HparamsError::Invalid {
                origin,
                template: self.template().name().into(),
                violations: vec![Violation {
                    key: assignment.into(),
                    message: "expected key=value".into(),
                }],
            });
        };
        let value = override_value(raw, &origin)?;
        let mut params = match self.params_value() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        params.insert(key.trim().to_string(), value);
        HyperParams::from_params(self.template(), Value::Object(params), &origin)
    }

    /// `self` with a params file and then each `key=value` (as [`Self::with_override`]
    /// reads them) on top, checked once: every mistake in the file and in every
    /// assignment is reported together. The file may be partial, bare or tagged with
    /// `self`'s template; unreadable or unparsable files are an error on their own.
    pub fn layered(
        &self,
        file: Option<&Path>,
        sets: &[String],
    ) -> Result<HyperParams, HparamsError> {
        let template = self.template();
        let mut params = match self.params_value() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let mut violations = Vec::new();
        let mut origin = Vec::new();
        if let Some(path) = file {
            let format = Format::from_path(path)?;
            let text = std::fs::read_to_string(path).map_err(|source| HparamsError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let name = path.display().to_string();
            let value = format.parse(&text, &name)?;
            let (object, mut top) = file_params(value, template, &name)?;
            violations.append(&mut top);
            for (k, v) in object {
                params.insert(k, v);
            }
            origin.push(name);
        }
        for assignment in sets {
            let Some((key, raw)) = assignment.split_once('=') else {
                violations.push(Violation {
                    key: assignment.clone(),
                    message: "--set expects key=value".into(),
                });
                continue;
            };
            match override_value(raw, &format!("--set {assignment}")) {
                Ok(value) => {
                    params.insert(key.trim().to_string(), value);
                }
                Err(e) => violations.push(Violation {
                    key: key.trim().to_string(),
                    message: format!("--set {assignment}: {e}"),
                }),
            }
        }
        if !sets.is_empty() {
            origin.push("--set".into());
        }
        let origin = if origin.is_empty() {
            "defaults".to_string()
        } else {
            origin.join(" and ")
        };
        match HyperParams::from_params(template, Value::Object(params), &origin) {
            Ok(hp) if violations.is_empty() => Ok(hp),
            Ok(_) => Err(HparamsError::Invalid {
                origin,
                template: template.name().into(),
                violations,
            }),
            Err(HparamsError::Invalid {
                violations: mut more,
                ..
            }) => {
                // Keys whose value did not even parse are not reported twice.
                more.retain(|m| !violations.iter().any(|v| v.key == m.key));
                violations.append(&mut more);
                Err(HparamsError::Invalid {
                    origin,
                    template: template.name().into(),
                    violations,
                })
            }
            Err(other) => Err(other),
        }
    }

    /// The params object alone, every key present.
    pub fn params_value(&self) -> Value {
        let value = match self {
            HyperParams::RsbA1(p) => serde_json::to_value(p),
            HyperParams::InceptionBatchNorm(p)
            | HyperParams::InceptionV2(p)
            | HyperParams::ResNext(p) => serde_json::to_value(p),
            HyperParams::TransferEmbedNorm(p) => serde_json::to_value(p),
        };
        // Serialising plain structs of numbers, strings and bools cannot fail.
        value.unwrap_or(Value::Null)
    }

    /// `{"template": ..., "params": {...}}`.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert(
            "template".into(),
            Value::String(self.template().name().into()),
        );
        map.insert("params".into(), self.params_value());
        Value::Object(map)
    }

    /// Writes the tagged form as `format` text.
    pub fn to_string_format(&self, format: Format) -> String {
        let value = self.to_value();
        match format {
            Format::Json => serde_json::to_string_pretty(&value).unwrap_or_default() + "\n",
            #[cfg(feature = "yaml")]
            Format::Yaml => yaml_serde::to_string(&value).unwrap_or_default(),
            #[cfg(feature = "toml")]
            Format::Toml => toml::to_string_pretty(&value).unwrap_or_default(),
        }
    }

    /// Images per optimisation step.
    pub fn batch_size(&self) -> usize {
        (match self {
            HyperParams::RsbA1(p) => p.batch_size,
            HyperParams::InceptionBatchNorm(p)
            | HyperParams::InceptionV2(p)
            | HyperParams::ResNext(p) => p.batch_size,
            HyperParams::TransferEmbedNorm(p) => p.batch_size,
        }) as usize
    }

    /// Number of epochs.
    pub fn num_epochs(&self) -> usize {
        (match self {
            HyperParams::RsbA1(p) => p.num_epochs,
            HyperParams::InceptionBatchNorm(p)
            | HyperParams::InceptionV2(p)
            | HyperParams::ResNext(p) => p.num_epochs,
            HyperParams::TransferEmbedNorm(p) => p.num_epochs,
        }) as usize
    }

    /// `image_size`: the square side (RSB-A1) or the shorter side (the others).
    pub fn image_size(&self) -> usize {
        (match self {
            HyperParams::RsbA1(p) => p.image_size,
            HyperParams::InceptionBatchNorm(p)
            | HyperParams::InceptionV2(p)
            | HyperParams::ResNext(p) => p.image_size,
            HyperParams::TransferEmbedNorm(p) => p.image_size,
        }) as usize
    }

    /// The learning rate of a step: batch_size × per_item_lrate, or `lrate` for
    /// the transfer template (which is per minibatch already).
    pub fn lrate(&self) -> f64 {
        match self {
            HyperParams::RsbA1(p) => p.lrate(),
            HyperParams::InceptionBatchNorm(p)
            | HyperParams::InceptionV2(p)
            | HyperParams::ResNext(p) => p.lrate(),
            HyperParams::TransferEmbedNorm(p) => p.lrate,
        }
    }

    /// True when every image may carry several concepts (sigmoid per concept);
    /// false for exactly one concept per image (softmax).
    pub fn multi_label(&self) -> bool {
        match self {
            HyperParams::RsbA1(p) => !p.concepts_mutually_exclusive,
            HyperParams::InceptionBatchNorm(p)
            | HyperParams::InceptionV2(p)
            | HyperParams::ResNext(p) => p.logreg == 1,
            HyperParams::TransferEmbedNorm(p) => p.logreg == 1,
        }
    }

    /// Images drawn per epoch for a dataset of `dataset_len` images:
    /// `num_items_per_epoch`, where 0 or null means the whole dataset.
    pub fn items_per_epoch(&self, dataset_len: usize) -> usize {
        let requested = match self {
            HyperParams::RsbA1(_) => None,
            HyperParams::InceptionBatchNorm(p)
            | HyperParams::InceptionV2(p)
            | HyperParams::ResNext(p) => p.num_items_per_epoch,
            HyperParams::TransferEmbedNorm(p) => p.num_items_per_epoch,
        };
        match requested {
            Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
            _ => dataset_len,
        }
    }

    /// Optimisation steps per epoch (the last partial batch counts as a step).
    pub fn steps_per_epoch(&self, dataset_len: usize) -> usize {
        self.items_per_epoch(dataset_len)
            .div_ceil(self.batch_size().max(1))
    }
}

/// The params object of a file's content (bare, or tagged with `template`), and the
/// violations of its top level (unknown keys).
fn file_params(
    value: Value,
    template: Template,
    origin: &str,
) -> Result<(Map<String, Value>, Vec<Violation>), HparamsError> {
    let mut object = match value {
        Value::Object(o) => o,
        Value::Null => return Ok((Map::new(), Vec::new())),
        other => {
            return Err(HparamsError::Invalid {
                origin: origin.to_string(),
                template: template.name().into(),
                violations: vec![Violation {
                    key: "<root>".into(),
                    message: format!("expected an object, got {}", type_name(&other)),
                }],
            })
        }
    };
    if !object.contains_key("template") {
        return Ok((object, Vec::new()));
    }
    let named = object.remove("template").unwrap_or(Value::Null);
    let params = object.remove("params").unwrap_or(Value::Null);
    let violations = object
        .keys()
        .map(|k| Violation {
            key: k.clone(),
            message: "unknown top-level key (expected only \"template\" and \"params\")".into(),
        })
        .collect();
    match named
        .as_str()
        .and_then(|n| Template::ALL.into_iter().find(|t| t.name() == n))
    {
        Some(t) if t == template => {}
        Some(in_file) => {
            return Err(HparamsError::TemplateMismatch {
                origin: origin.to_string(),
                in_file,
                requested: template,
            })
        }
        None => {
            return Err(HparamsError::Invalid {
                origin: origin.to_string(),
                template: template.name().into(),
                violations: vec![Violation {
                    key: "template".into(),
                    message: format!("{named} is not a template name"),
                }],
            })
        }
    }
    match params {
        Value::Object(p) => Ok((p, violations)),
        Value::Null => Ok((Map::new(), violations)),
        other => Err(HparamsError::Invalid {
            origin: origin.to_string(),
            template: template.name().into(),
            violations: vec![Violation {
                key: "params".into(),
                message: format!(
                    "expected an object of hyperparameters, got {}",
                    type_name(&other)
                ),
            }],
        }),
    }
}

/// Integers written as `64.0` become `64`, so they deserialize into integer fields.
fn normalise(value: Value) -> Value {
    match &value {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && (0.0..9.007_199_254_740_992e15).contains(&f) => {
                // Only reached for keys whose rule already accepted the value; float
                // keys deserialize from integers just as well.
                Value::from(f as u64)
            }
            _ => value,
        },
        _ => value,
    }
}

/// A text format for hyperparameter files.
///
/// YAML and TOML exist with the cargo features of the same names (both default);
/// `non_exhaustive` so that a dependent crate's `match` still compiles when another
/// crate in the build turns one on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// JSON.
    Json,
    /// YAML (`.yaml`, `.yml`).
    #[cfg(feature = "yaml")]
    Yaml,
    /// TOML.
    #[cfg(feature = "toml")]
    Toml,
}

/// The value of a `key=value` override: a YAML scalar with the `yaml` feature (what
/// the command line has always accepted); without it a JSON value (`64`, `0.5`,
/// `true`, `[1, 2]`), and any other text as a string (`horizontal`).
#[cfg(feature = "yaml")]
fn override_value(raw: &str, origin: &str) -> Result<Value, HparamsError> {
    Format::Yaml.parse(raw, origin)
}

/// See the `yaml` version; never an error.
#[cfg(not(feature = "yaml"))]
fn override_value(raw: &str, _origin: &str) -> Result<Value, HparamsError> {
    Ok(serde_json::from_str(raw.trim()).unwrap_or_else(|_| Value::String(raw.to_string())))
}

/// The cargo feature a format needs, for the error of a build without it.
fn missing_feature(path: &Path, ext: &str) -> Option<HparamsError> {
    let (format, feature) = match ext {
        "yaml" | "yml" if cfg!(not(feature = "yaml")) => ("YAML", "yaml"),
        "toml" if cfg!(not(feature = "toml")) => ("TOML", "toml"),
        _ => return None,
    };
    Some(HparamsError::FormatNotBuilt {
        path: path.to_path_buf(),
        format,
        feature,
    })
}

impl Format {
    /// Picks the format from a file extension.
    pub fn from_path(path: &Path) -> Result<Format, HparamsError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("json") => Ok(Format::Json),
            #[cfg(feature = "yaml")]
            Some("yaml") | Some("yml") => Ok(Format::Yaml),
            #[cfg(feature = "toml")]
            Some("toml") => Ok(Format::Toml),
            other => Err(other
                .and_then(|ext| missing_feature(path, ext))
                .unwrap_or_else(|| HparamsError::UnknownFormat {
                    path: path.to_path_buf(),
                })),
        }
    }

    /// Parses a name: `json`, `yaml` or `toml` (`None` also for a format this build
    /// leaves out).
    pub fn from_name(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            #[cfg(feature = "yaml")]
            "yaml" | "yml" => Some(Format::Yaml),
            #[cfg(feature = "toml")]
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            #[cfg(feature = "yaml")]
            Format::Yaml => "YAML",
            #[cfg(feature = "toml")]
            Format::Toml => "TOML",
        }
    }

    /// Parses text of this format into a JSON value.
    pub fn parse(self, text: &str, origin: &str) -> Result<Value, HparamsError> {
        let syntax = |message: String| HparamsError::Syntax {
            path: origin.into(),
            format: self.name(),
            message,
        };
        match self {
            Format::Json => serde_json::from_str(text).map_err(|e| syntax(e.to_string())),
            #[cfg(feature = "yaml")]
            Format::Yaml => yaml_serde::from_str(text).map_err(|e| syntax(e.to_string())),
            #[cfg(feature = "toml")]
            Format::Toml => toml::from_str(text).map_err(|e| syntax(e.to_string())),
        }
    }
}
