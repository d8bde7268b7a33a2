//! The run directory: atomic file writes, the events log and the refusal to
//! overwrite another run's outputs by accident.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::TrainError;

/// Writes `bytes` to `path` through a temporary file in the same folder, synced
/// and renamed, so a crash or a full disk never leaves a half-written file and
/// never destroys the previous version.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    write_atomic_with(path, |tmp| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })
}

/// Like [`write_atomic`], with the content written by `write` to the temporary path.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), TrainError> {
    let io = |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    write_atomic(path, format!("{text}\n").as_bytes())
}

/// How to treat an output folder that already holds a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingRun {
    /// Refuse (the default: never clobber earlier results).
    Refuse,
    /// Continue that run from its last checkpoint.
    Resume,
    /// Replace it.
    Overwrite,
}

/// Prepares `out` for a run: creates it, or checks that an existing run there may
/// be resumed or overwritten.
pub fn prepare_out_dir(out: &Path, existing: ExistingRun) -> Result<(), TrainError> {
    let has_run = out.join("run.json").exists() || out.join("checkpoints").exists();
    match (has_run, existing) {
        (true, ExistingRun::Refuse) => Err(TrainError::OutDirInUse {
            path: out.to_path_buf(),
        }),
        (false, ExistingRun::Resume) => Err(TrainError::NothingToResume {
            path: out.to_path_buf(),
        }),
        (true, ExistingRun::Overwrite) => {
            for name in [
                "checkpoints",
                "events.jsonl",
                "metrics.json",
                "model.safetensors",
                "run.json",
                "confusion.csv",
                "curves.svg",
            ] {
                let p = out.join(name);
                let result = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else if p.exists() {
                    std::fs::remove_file(&p)
                } else {
                    Ok(())
                };
                result.map_err(|source| TrainError::Io { path: p, source })?;
            }
            Ok(())
        }
        _ => std::fs::create_dir_all(out).map_err(|source| TrainError::Io {
            path: out.to_path_buf(),
            source,
        }),
    }
}

/// `events.jsonl`: one JSON object per line, flushed as written, for external tools.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    file: File,
}

impl EventLog {
    /// Opens (appending, so a resumed run continues the same log).
    pub fn open(path: &Path) -> Result<EventLog, TrainError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| TrainError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(EventLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one event.
    pub fn write<T: Serialize>(&mut self, event: &T) -> Result<(), TrainError> {
        let mut line = serde_json::to_string(event).map_err(|e| TrainError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|source| TrainError::Io {
                path: self.path.clone(),
                source,
            })
    }
}
