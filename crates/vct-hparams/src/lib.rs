//! Templates and their typed hyperparameters: defaults, ranges and steps defined
//! once, validation that reports every violation, loading from JSON / YAML / TOML
//! (YAML and TOML behind the default-on cargo features `yaml` and `toml`), and JSON
//! Schemas generated from the same definitions.
//!
//! No candle, no image code: external tools can depend on this crate cheaply.
//!
//! ```
//! use vct_hparams::{HyperParams, Template};
//!
//! let hp = HyperParams::defaults(Template::ResNext).with_override("batch_size=32").unwrap();
//! assert_eq!(hp.batch_size(), 32);
//! assert!((hp.lrate() - 32.0 * 7.8125e-05).abs() < 1e-12);
//!
//! let err = HyperParams::from_str_format(
//!     r#"{"template": "Clarifai_ResNext", "params": {"image_size": 40, "batch_sise": 8}}"#,
//!     vct_hparams::Format::Json, None, "example.json").unwrap_err();
//! assert!(err.to_string().contains("image_size: 40 is not a multiple of 16"));
//! assert!(err.to_string().contains("did you mean `batch_size`"));
//! ```

mod error;
mod hyperparams;
mod params;
pub mod rules;
pub mod schema;
mod template;

pub use error::HparamsError;
pub use hyperparams::{cross_rules, specs, Format, HyperParams};
pub use params::{
    ClarifaiParams, FlipDirection, PretrainedWeights, RsbA1Params, TransferEmbedNormParams,
};
pub use rules::{CrossRule, ParamSpec, Rule, Violation};
pub use template::{Template, TemplateInfo};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
