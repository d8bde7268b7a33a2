//! Checkpoints: a folder with the model, the optimizer state and `state.json`
//! (epoch, step, seed, concepts, hyperparameters, history, file checksums).
//!
//! A checkpoint is written into a temporary folder and swapped in by renames, so
//! an interrupted write (Ctrl-C, a full disk) leaves the previous checkpoint
//! intact. Loading verifies every file's size and checksum, and refuses a
//! checkpoint that belongs to another template or concept list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vct_hparams::HyperParams;

use crate::plot::EpochPoint;
use crate::TrainError;

/// Version of the checkpoint layout; bumped on incompatible changes.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// Name of the state file inside a checkpoint folder.
pub const STATE_FILE: &str = "state.json";

/// Size and checksum of one file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Length in bytes.
    pub bytes: u64,
    /// FNV-1a 64 of the content, hex.
    pub fnv1a64: String,
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// [`CHECKPOINT_FORMAT`] of the writer.
    pub format: u32,
    /// vct version that wrote it.
    pub vct_version: String,
    /// Template and hyperparameters of the run.
    pub hparams: HyperParams,
    /// Concept names in index order.
    pub concepts: Vec<String>,
    /// Epochs completed (the next epoch to run is `epoch + 1`).
    pub epoch: usize,
    /// Optimisation steps taken.
    pub global_step: usize,
    /// The run seed; every random choice derives from it, the epoch and the item.
    pub seed: u64,
    /// Best validation score so far and its epoch.
    pub best: Option<(f64, usize)>,
    /// Epochs without improvement (early stopping).
    pub epochs_since_best: usize,
    /// Per-epoch summaries so far.
    pub history: Vec<EpochPoint>,
    /// The tensor files of the checkpoint and their digests.
    pub files: BTreeMap<String, FileDigest>,
}

/// FNV-1a, 64 bit: a dependency-free checksum that catches truncation and corruption.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn digest(path: &Path) -> Result<FileDigest, TrainError> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(FileDigest {
        bytes: bytes.len() as u64,
        fnv1a64: format!("{:016x}", fnv1a64(&bytes)),
    })
}

/// A function that writes one checkpoint file to the path it is given.
pub type FileWriter<'a> = Box<dyn FnOnce(&Path) -> Result<(), String> + 'a>;

/// Writes a checkpoint to `dir` (e.g. `out/checkpoints/last`), replacing the
/// previous one only once the new one is complete.
pub fn save(
    dir: &Path,
    mut state: CheckpointState,
    files: Vec<(&str, FileWriter<'_>)>,
) -> Result<(), TrainError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let result = (|| {
        state.files.clear();
        for (file, write) in files {
            let path = tmp.join(file);
            write(&path).map_err(|reason| TrainError::BadCheckpoint {
                path: path.clone(),
                reason: format!("could not be written: {reason}"),
            })?;
            state.files.insert(file.to_string(), digest(&path)?);
        }
        crate::outputs::write_json(&tmp.join(STATE_FILE), &state)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// Reads and verifies a checkpoint's state: format, and every file's size and checksum.
pub fn load_state(dir: &Path) -> Result<CheckpointState, TrainError> {
    let bad = |reason: String| TrainError::BadCheckpoint {
        path: dir.to_path_buf(),
        reason,
    };
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path)
        .map_err(|e| bad(format!("cannot read {STATE_FILE}: {e}")))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .map_err(|e| bad(format!("{STATE_FILE} is not a valid checkpoint state: {e}")))?;
    if state.format != CHECKPOINT_FORMAT {
        return Err(bad(format!(
            "layout version {} (this vct reads version {CHECKPOINT_FORMAT})",
            state.format
        )));
    }
    for (file, expected) in &state.files {
        let path = dir.join(file);
        let actual = digest(&path).map_err(|e| bad(format!("{file}: {e}")))?;
        if actual != *expected {
            return Err(bad(format!(
                "{file} is corrupt or truncated ({} bytes, checksum {}; expected {} bytes, checksum {})",
                actual.bytes, actual.fnv1a64, expected.bytes, expected.fnv1a64
            )));
        }
    }
    Ok(state)
}

/// Checks that a checkpoint belongs to the run about to continue from it.
pub fn check_compatible(
    dir: &Path,
    state: &CheckpointState,
    hparams: &HyperParams,
    concepts: &[String],
) -> Result<(), TrainError> {
    let bad = |reason: String| TrainError::BadCheckpoint {
        path: dir.to_path_buf(),
        reason,
    };
    if state.hparams.template() != hparams.template() {
        return Err(bad(format!(
            "it was trained with template {}, not {}",
            state.hparams.template(),
            hparams.template()
        )));
    }
    if state.concepts != concepts {
        return Err(bad(format!(
            "its concepts ({}) differ from the dataset's ({})",
            state.concepts.join(", "),
            concepts.join(", ")
        )));
    }
    Ok(())
}

/// `out/checkpoints/<name>`.
pub fn checkpoint_dir(out: &Path, name: &str) -> PathBuf {
    out.join("checkpoints").join(name)
}
