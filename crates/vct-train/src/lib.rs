//! Training for vct templates: the [`recipe::Recipe`] that turns a template's
//! hyperparameters into a model, optimizer, schedule, loss and pipelines; the
//! template-agnostic [`trainer::Trainer`], built from parts with pluggable
//! [`hooks`]; checkpoints as a contract ([`checkpoint`]); the one persisted run
//! configuration ([`config::RunConfig`]); and the run's outputs.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod embed_cache;
mod error;
mod fault;
pub mod hooks;
pub mod loss;
pub mod outputs;
pub mod recipe;
pub mod run;
pub mod session;
pub mod trainer;
pub mod weights;

pub use error::TrainError;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
