//! Checkpoints as a contract: numbered epoch folders, an atomic `LATEST` pointer, and a
//! `BEST` pointer, so there is never a moment without a loadable checkpoint.
//!
//! ```text
//! out/checkpoints/epoch-0003/{model.safetensors, optimizer.safetensors, state.json}
//! out/checkpoints/LATEST   "epoch-0003"
//! out/checkpoints/BEST     "epoch-0002"
//! ```
//!
//! Saving epoch `k`: every file is written into `.tmp-epoch-000k-<pid>/` and fsynced,
//! `state.json` (with every file's size and checksum) last, the folder fsynced and renamed
//! to `epoch-000k`, the parent fsynced; only then does `LATEST` move (a temporary file,
//! fsynced and renamed over it), and `BEST` too when the epoch improved. Epoch folders
//! that neither pointer names are removed afterwards. A crash at any point leaves the
//! previous pointers naming complete folders: the cost is at most the epoch in progress.
//! Temporary folders of earlier crashes are removed when a run opens the folder (the run
//! holds a lock on the output folder, so none of them can belong to a live writer).
//! Loading verifies every file's size and checksum, and refuses a checkpoint of another
//! layout, template or concept list.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vct_metrics::EvalMetrics;

use crate::config::RunConfig;
use crate::fault;
use crate::trainer::EpochPoint;
use crate::TrainError;

/// Version of the checkpoint layout; bumped on incompatible changes.
pub const CHECKPOINT_FORMAT: u32 = 2;

/// Name of the state file inside a checkpoint folder.
pub const STATE_FILE: &str = "state.json";

/// The pointer to the newest complete checkpoint.
pub const LATEST: &str = "LATEST";

/// The pointer to the best epoch's checkpoint.
pub const BEST: &str = "BEST";

/// Size and checksum of one file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Length in bytes.
    pub bytes: u64,
    /// FNV-1a 64 of the content, hex.
    pub fnv1a64: String,
}

/// The best epoch so far: its score (top-1, or mAP for multi-label data, or minus the
/// training loss without validation) and its metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// 1-based epoch.
    pub epoch: usize,
    /// The score that made it the best.
    pub score: f64,
    /// Its validation metrics (none without a validation set).
    pub metrics: Option<EvalMetrics>,
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// [`CHECKPOINT_FORMAT`] of the writer.
    pub format: u32,
    /// vct version that wrote it.
    pub vct_version: String,
    /// The run's whole configuration (what `--resume` restores).
    pub config: RunConfig,
    /// Concept names in index order.
    pub concepts: Vec<String>,
    /// Epochs completed (the next epoch to run is `epoch + 1`).
    pub epoch: usize,
    /// Optimisation steps taken.
    pub global_step: usize,
    /// The best epoch so far.
    pub best: Option<Best>,
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

fn digest_of(bytes: &[u8]) -> FileDigest {
    FileDigest {
        bytes: bytes.len() as u64,
        fnv1a64: format!("{:016x}", fnv1a64(bytes)),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to a new file at `path` and fsyncs it (through the fault-injection
/// points of tests, for the checkpoint of `epoch`).
pub(crate) fn write_synced(path: &Path, bytes: &[u8], epoch: usize) -> Result<(), TrainError> {
    let mut f = File::create(path).map_err(io_err(path))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    fault::write(&name, epoch, &mut f, bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// fsyncs a folder, so the renames and creations inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), TrainError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Replaces the small text file `name` in `dir` atomically and durably.
fn write_pointer(dir: &Path, name: &str, target: &str) -> Result<(), TrainError> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    write_synced(&tmp, format!("{target}\n").as_bytes(), usize::MAX)?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(&path)(e)
    })?;
    sync_dir(dir)
}

/// The folder name of epoch `k`.
pub fn epoch_dir_name(epoch: usize) -> String {
    format!("epoch-{epoch:04}")
}

/// The checkpoints of one run: `out/checkpoints`.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    root: PathBuf,
}

impl Checkpoints {
    /// The checkpoint folder of the run in `out`.
    pub fn new(out: &Path) -> Checkpoints {
        Checkpoints {
            root: out.join("checkpoints"),
        }
    }

    /// `out/checkpoints`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes temporary folders and files that crashed writers left; returns them.
    /// Call only while holding the run's lock (see [`crate::outputs::RunLock`]).
    pub fn remove_stale(&self) -> Result<Vec<PathBuf>, TrainError> {
        let mut removed = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(io_err(&self.root)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Our temporaries (".tmp-epoch-…", ".LATEST.tmp-…") and the layout-1 swap
            // leftovers (".last.tmp-…", ".last.old-…").
            if name.starts_with('.') && (name.contains(".tmp-") || name.contains(".old-")) {
                let p = entry.path();
                let r = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(io_err(&p))?;
                removed.push(p);
            }
        }
        Ok(removed)
    }

    /// Writes the checkpoint of `state.epoch` with `files` (name, content), moves
    /// `LATEST` to it (and `BEST`, when `improved`), then removes epoch folders that no
    /// pointer names. Returns the new folder.
    pub fn save(
        &self,
        mut state: CheckpointState,
        files: &[(&str, Vec<u8>)],
        improved: bool,
    ) -> Result<PathBuf, TrainError> {
        std::fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        let name = epoch_dir_name(state.epoch);
        let tmp = self
            .root
            .join(format!(".tmp-{name}-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let written = (|| {
            state.files.clear();
            for (file, bytes) in files {
                write_synced(&tmp.join(file), bytes, state.epoch)?;
                state.files.insert((*file).to_string(), digest_of(bytes));
            }
            let text = serde_json::to_string_pretty(&state).map_err(|e| TrainError::Io {
                path: tmp.join(STATE_FILE),
                source: std::io::Error::other(e),
            })?;
            write_synced(&tmp.join(STATE_FILE), text.as_bytes(), state.epoch)?;
            sync_dir(&tmp)
        })();
        if let Err(e) = written {
            // A full disk or a failed write: the previous checkpoint stays as it was.
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let dir = self.root.join(&name);
        if dir.exists() {
            // A folder of this epoch that no pointer names (a crash right after its
            // rename last time): this one replaces it.
            if self.pointer(LATEST)?.as_deref() == Some(name.as_str()) {
                return Err(TrainError::BadCheckpoint {
                    path: dir,
                    reason: "LATEST already names this epoch; refusing to overwrite it".into(),
                });
            }
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        std::fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
        sync_dir(&self.root)?;
        fault::point("between-renames", state.epoch);
        write_pointer(&self.root, LATEST, &name)?;
        if improved {
            write_pointer(&self.root, BEST, &name)?;
        }
        self.prune()?;
        Ok(dir)
    }

    /// The folder a pointer file names, if the file exists.
    pub fn pointer(&self, which: &str) -> Result<Option<String>, TrainError> {
        let path = self.root.join(which);
        match std::fs::read_to_string(&path) {
            Ok(t) => {
                let name = t.trim().to_string();
                let valid = name
                    .strip_prefix("epoch-")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                if !valid {
                    return Err(TrainError::BadCheckpoint {
                        path,
                        reason: format!("expected a folder name like epoch-0003, found {name:?}"),
                    });
                }
                Ok(Some(name))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The folder `LATEST` names (or a layout-1 run's `last`), if any.
    pub fn latest_dir(&self) -> Result<Option<PathBuf>, TrainError> {
        if let Some(name) = self.pointer(LATEST)? {
            return Ok(Some(self.root.join(name)));
        }
        let legacy = self.root.join("last");
        Ok(legacy.is_dir().then_some(legacy))
    }

    /// The folder `BEST` names (or a layout-1 run's `best`), if any.
    pub fn best_dir(&self) -> Result<Option<PathBuf>, TrainError> {
        if let Some(name) = self.pointer(BEST)? {
            return Ok(Some(self.root.join(name)));
        }
        let legacy = self.root.join("best");
        Ok(legacy.is_dir().then_some(legacy))
    }

    /// Removes the epoch folders that neither pointer names.
    fn prune(&self) -> Result<(), TrainError> {
        let keep = [self.pointer(LATEST)?, self.pointer(BEST)?];
        for entry in std::fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let entry = entry.map_err(io_err(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("epoch-") && !keep.iter().any(|k| k.as_deref() == Some(&name)) {
                let p = entry.path();
                std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
            }
        }
        Ok(())
    }
}

/// Reads and verifies a checkpoint folder: layout version, and every file's size and
/// checksum.
pub fn load_state(dir: &Path) -> Result<CheckpointState, TrainError> {
    let bad = |reason: String| TrainError::BadCheckpoint {
        path: dir.to_path_buf(),
        reason,
    };
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path)
        .map_err(|e| bad(format!("cannot read {STATE_FILE}: {e}")))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| bad(format!("{STATE_FILE} is not a valid checkpoint state: {e}")))?;
    let format = value.get("format").and_then(|f| f.as_u64()).unwrap_or(0);
    if format != u64::from(CHECKPOINT_FORMAT) {
        return Err(bad(format!(
            "layout version {format} (this vct reads version {CHECKPOINT_FORMAT}; a run \
             written by vct {} cannot be resumed by this version — start it anew, or use \
             its model.safetensors with --weights)",
            value
                .get("vct_version")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
        )));
    }
    let state: CheckpointState = serde_json::from_value(value)
        .map_err(|e| bad(format!("{STATE_FILE} is not a valid checkpoint state: {e}")))?;
    for (file, expected) in &state.files {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|e| bad(format!("{file}: {e}")))?;
        let actual = digest_of(&bytes);
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
    config: &RunConfig,
    concepts: &[String],
) -> Result<(), TrainError> {
    let bad = |reason: String| TrainError::BadCheckpoint {
        path: dir.to_path_buf(),
        reason,
    };
    if state.config.hparams.template() != config.hparams.template() {
        return Err(bad(format!(
            "it was trained with template {}, not {}",
            state.config.hparams.template(),
            config.hparams.template()
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
