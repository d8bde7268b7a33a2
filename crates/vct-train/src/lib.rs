//! Training for vct templates: the [`Recipe`] that turns a template's
//! hyperparameters into a model, optimizer, schedule, loss and pipelines, the
//! template-agnostic [`Trainer`] loop, checkpoints, and the run's outputs.

pub mod checkpoint;
pub mod data;
mod error;
pub mod loss;
pub mod outputs;
pub mod plot;
pub mod progress;
pub mod recipe;
pub mod run;
pub mod session;
pub mod trainer;
pub mod weights;

pub use error::TrainError;
