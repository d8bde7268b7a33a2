//! The allowed values of every key, defined once. Validation reads these rules and
//! the JSON Schema is generated from them, so the two cannot disagree.
//!
//! A [`CrossRule`] relates two keys (JSON Schema cannot compare two values): the
//! validator checks it on the merged values and the schema carries it as an
//! `x-vct-cross-field-rules` annotation and in its description.

use std::fmt;

use serde_json::{Map, Value};

/// What values one hyperparameter key accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// An integer in `min..=max` (no upper bound when `max` is `None`) on multiples of `step`.
    Int {
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value, if any.
        max: Option<u64>,
        /// Values must be multiples of this (1 = any integer).
        step: u64,
        /// Whether `null` is accepted (meaning the same as the default).
        nullable: bool,
    },
    /// A finite number in `min..=max` (no upper bound when `max` is `None`).
    Float {
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value, if any.
        max: Option<f64>,
    },
    /// One of a fixed list of strings (exact spelling).
    Choice(&'static [&'static str]),
    /// `true` or `false`.
    Bool,
}

/// One key of a template's hyperparameters and its rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    /// The key, snake_case as Clarifai spells it.
    pub key: &'static str,
    /// What the key accepts.
    pub rule: Rule,
}

/// One broken rule: the key, the offending value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key (or `template`, or `<root>` for the whole object).
    pub key: String,
    /// What is wrong, naming the value and the rule.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Rule {
    /// The range as people read it, e.g. `32..=1024 in steps of 16`.
    pub fn describe(&self) -> String {
        match *self {
            Rule::Int {
                min,
                max,
                step,
                nullable,
            } => {
                let mut s = match max {
                    Some(max) => format!("integer {min}..={max}"),
                    None => format!("integer >= {min}"),
                };
                if step != 1 {
                    s.push_str(&format!(" in steps of {step}"));
                }
                if nullable {
                    s.push_str(", or null");
                }
                s
            }
            Rule::Float { min, max } => match max {
                Some(max) => format!("number {min}..={max}"),
                None => format!("number >= {min}"),
            },
            Rule::Choice(options) => format!("one of {}", quoted_list(options)),
            Rule::Bool => "true or false".to_string(),
        }
    }

    /// The step as shown in tables (`—` where there is none).
    pub fn step_text(&self) -> String {
        match *self {
            Rule::Int { step, .. } => step.to_string(),
            _ => "—".to_string(),
        }
    }

    fn allowed(&self) -> String {
        match *self {
            Rule::Int { min, max, step, .. } => {
                let range = match max {
                    Some(max) => format!("{min}..={max}"),
                    None => format!(">= {min}"),
                };
                if step == 1 {
                    format!("allowed {range}")
                } else {
                    format!("allowed {range} in steps of {step}")
                }
            }
            Rule::Float { min, max } => match max {
                Some(max) => format!("allowed {min}..={max}"),
                None => format!("allowed >= {min}"),
            },
            _ => self.describe(),
        }
    }

    /// Checks one value; `Err` carries the message (without the key).
    pub fn check(&self, value: &Value) -> Result<(), String> {
        match *self {
            Rule::Int {
                min,
                max,
                step,
                nullable,
            } => {
                if value.is_null() && nullable {
                    return Ok(());
                }
                let Some(n) = value.as_f64() else {
                    return Err(format!(
                        "expected {}, got {} {}",
                        self.describe(),
                        type_name(value),
                        value
                    ));
                };
                if n.fract() != 0.0 {
                    return Err(format!("{value} is not an integer ({})", self.allowed()));
                }
                if n < min as f64 {
                    return Err(format!(
                        "{value} is below the minimum {min} ({})",
                        self.allowed()
                    ));
                }
                if let Some(max) = max {
                    if n > max as f64 {
                        return Err(format!(
                            "{value} is above the maximum {max} ({})",
                            self.allowed()
                        ));
                    }
                }
                let Some(int) = value.as_u64().or_else(|| exact_u64(n)) else {
                    return Err(format!(
                        "{value} is too large for this key ({})",
                        self.allowed()
                    ));
                };
                if step > 1 && int % step != 0 {
                    return Err(format!(
                        "{value} is not a multiple of {step} ({})",
                        self.allowed()
                    ));
                }
                Ok(())
            }
            Rule::Float { min, max } => {
                let Some(n) = value.as_f64() else {
                    return Err(format!(
                        "expected {}, got {} {}",
                        self.describe(),
                        type_name(value),
                        value
                    ));
                };
                if n < min {
                    return Err(format!(
                        "{value} is below the minimum {min} ({})",
                        self.allowed()
                    ));
                }
                if let Some(max) = max {
                    if n > max {
                        return Err(format!(
                            "{value} is above the maximum {max} ({})",
                            self.allowed()
                        ));
                    }
                }
                Ok(())
            }
            Rule::Choice(options) => match value.as_str() {
                Some(s) if options.contains(&s) => Ok(()),
                Some(s) => {
                    let hint = closest(s, options.iter().copied())
                        .map(|c| format!("; did you mean \"{c}\"?"))
                        .unwrap_or_default();
                    Err(format!(
                        "\"{s}\" is not allowed (expected {}){hint}",
                        self.describe()
                    ))
                }
                None => Err(format!(
                    "expected {}, got {} {}",
                    self.describe(),
                    type_name(value),
                    value
                )),
            },
            Rule::Bool => match value {
                Value::Bool(_) => Ok(()),
                other => Err(format!(
                    "expected true or false, got {} {}",
                    type_name(other),
                    other
                )),
            },
        }
    }
}

/// `n` as u64 when it is a whole number that u64 holds exactly.
fn exact_u64(n: f64) -> Option<u64> {
    ((0.0..18_446_744_073_709_551_616.0).contains(&n) && n.fract() == 0.0).then_some(n as u64)
}

/// A rule between two keys, checked on the values after defaults are filled in.
///
/// JSON Schema (2020-12) has no keyword that compares two instance values, so
/// these are written into the schema as an annotation (`x-vct-cross-field-rules`)
/// that validators ignore and tools can read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CrossRule {
    /// The number at `key` must not exceed the number at `limit`.
    AtMost {
        /// The key that must be the smaller.
        key: &'static str,
        /// The key it is bounded by.
        limit: &'static str,
        /// Why, in a few words.
        why: &'static str,
    },
}

impl CrossRule {
    /// The rule as a formula, e.g. `per_item_min_lrate <= per_item_lrate`.
    pub fn describe(&self) -> String {
        match *self {
            CrossRule::AtMost { key, limit, .. } => format!("{key} <= {limit}"),
        }
    }

    /// The keys the rule reads.
    pub fn keys(&self) -> [&'static str; 2] {
        match *self {
            CrossRule::AtMost { key, limit, .. } => [key, limit],
        }
    }

    /// The rule as the schema annotation states it.
    pub fn annotation(&self) -> Value {
        match *self {
            CrossRule::AtMost { key, limit, why } => serde_json::json!({
                "rule": self.describe(),
                "key": key,
                "atMost": limit,
                "description": why,
            }),
        }
    }

    /// Checks the rule on `merged` (every key present); `given` holds the keys the
    /// user set, so the message can say which value is a default. A rule over a
    /// value that is not a number is not checked (its own rule reports it).
    pub fn check(
        &self,
        merged: &Map<String, Value>,
        given: &Map<String, Value>,
    ) -> Result<(), Violation> {
        match *self {
            CrossRule::AtMost { key, limit, why } => {
                let (Some(value), Some(bound)) = (merged.get(key), merged.get(limit)) else {
                    return Ok(());
                };
                let (Some(v), Some(l)) = (value.as_f64(), bound.as_f64()) else {
                    return Ok(());
                };
                if v <= l {
                    return Ok(());
                }
                let origin = |k: &str| {
                    if given.contains_key(k) {
                        ""
                    } else {
                        " (the default)"
                    }
                };
                Err(Violation {
                    key: key.to_string(),
                    message: format!(
                        "{value}{} is above {limit} = {bound}{}; {key} must be at most {limit} ({why})",
                        origin(key),
                        origin(limit)
                    ),
                })
            }
        }
    }
}

/// Checks a params object against `specs`, collecting every violation.
pub fn check_object(specs: &[ParamSpec], object: &Map<String, Value>) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (key, value) in object {
        match specs.iter().find(|s| s.key == key) {
            Some(spec) => {
                if let Err(message) = spec.rule.check(value) {
                    violations.push(Violation {
                        key: key.clone(),
                        message,
                    });
                }
            }
            None => {
                let hint = closest(key, specs.iter().map(|s| s.key))
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                violations.push(Violation {
                    key: key.clone(),
                    message: format!(
                        "unknown key{hint} (known keys: {})",
                        specs.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
    }
    violations
}

/// The JSON type name of a value, for messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The candidate most similar to `word`, if it is similar enough to suggest.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn quoted_list(options: &[&str]) -> String {
    options
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
