//! Errors of a training run; each names the file, folder or value concerned.

use std::path::PathBuf;

/// Anything that stops a run, an evaluation or a prediction.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Hyperparameters are invalid.
    #[error(transparent)]
    Hparams(#[from] vct_hparams::HparamsError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The output folder holds another run.
    #[error("{path} already holds a run (run.json or checkpoints/); pass --resume to continue it or --overwrite to replace it")]
    OutDirInUse {
        /// The folder.
        path: PathBuf,
    },
    /// `--resume` on a folder without a run.
    #[error("{path} holds no run to resume: {why}")]
    NothingToResume {
        /// The folder.
        path: PathBuf,
        /// What is missing, and what to do instead.
        why: String,
    },
    /// A checkpoint is unreadable, corrupt or from a different run.
    #[error("checkpoint {path} refused: {reason}")]
    BadCheckpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The loss became NaN or infinite.
    #[error("the loss became {value} at epoch {epoch}, step {step}; training stopped. The last good checkpoint is kept in {checkpoint}. Try a lower learning rate")]
    NonFiniteLoss {
        /// The loss value.
        value: f64,
        /// 1-based epoch.
        epoch: usize,
        /// Global step.
        step: usize,
        /// Where the last good checkpoint is.
        checkpoint: PathBuf,
    },
    /// A softmax template was given data with images of several concepts or none.
    #[error("{source}: {template} with {setting} trains a softmax over the concepts, one per image; {hint}")]
    NotSingleLabel {
        /// The template.
        template: String,
        /// The hyperparameter that asks for a softmax (`logreg = 0`).
        setting: &'static str,
        /// What to change for multi-label data.
        hint: &'static str,
        /// The first offending row.
        source: Box<vct_data::DataError>,
    },
    /// `--resume` asked for changes a resumed run cannot take.
    #[error("cannot resume with these changes (a resumed run keeps its configuration; only num_epochs and --early-stopping may change):\n{}", refused.iter().map(|r| format!("  {r}")).collect::<Vec<_>>().join("\n"))]
    ResumeChanges {
        /// Each refused change.
        refused: Vec<crate::config::Refusal>,
    },
    /// A size that would exhaust the machine or cannot work, refused before any work.
    #[error("{what} = {value}: {limit}")]
    TooLarge {
        /// The setting.
        what: String,
        /// Its value.
        value: String,
        /// The limit, and why.
        limit: String,
    },
    /// Another process is writing into the run folder.
    #[error("{path} is in use by another vct process (its .lock is held); wait for it or choose another --out")]
    RunLocked {
        /// The folder.
        path: PathBuf,
    },
    /// Pretrained weights could not be found or fetched.
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightsError),
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// Something in the data, model, optimizer or schedule crates failed.
    #[error("{0}")]
    Component(String),
}
