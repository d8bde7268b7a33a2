//! The run folder: atomic file writes, the events log, the lock that keeps two runs out
//! of one folder, and how an existing run is refused, resumed or overwritten.
//!
//! `--overwrite` never destroys the old run before the new one can stand: the new run is
//! prepared in a sibling staging folder (every check passed, `run.json` and its epoch-0
//! checkpoint written), and only then is the old run moved aside to `DIR.old-<time>` and
//! the new one moved into `DIR`. A failure before that leaves the old run untouched and
//! removes the staging folder; the old run is never deleted by vct.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
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
    /// Replace it, keeping the old run aside once the new one stands.
    Overwrite,
}

/// Whether `out` holds a run (a record or checkpoints).
pub fn holds_run(out: &Path) -> bool {
    out.join("run.json").exists() || out.join("checkpoints").exists()
}

/// An exclusive lock on a run folder (`.lock` inside it), held while a process writes
/// there; a second process is refused instead of interleaving checkpoints.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock of `dir` (creating the folder), or says who holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock, TrainError> {
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| TrainError::Io {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(TrainError::RunLocked {
                path: dir.to_path_buf(),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(TrainError::Io { path, source }),
        }
    }
}

/// Where a new or overwriting run writes until it stands on its own.
#[derive(Debug)]
pub struct Staging {
    /// The folder the run is prepared in (the final folder itself, unless an old run is
    /// to be replaced).
    pub dir: PathBuf,
    /// The final folder, when `dir` is a staging folder beside it.
    replaces: Option<PathBuf>,
    lock: RunLock,
}

impl Staging {
    /// Prepares a folder for a new run in `out`: `out` itself if it holds no run; with
    /// `Overwrite` and a run there, a staging folder beside it. `Refuse` with a run
    /// there is an error, and so is a run there that another process holds.
    pub fn new(out: &Path, existing: ExistingRun) -> Result<Staging, TrainError> {
        match (holds_run(out), existing) {
            (true, ExistingRun::Refuse) => Err(TrainError::OutDirInUse {
                path: out.to_path_buf(),
            }),
            (true, ExistingRun::Overwrite) => {
                // The old run must not be in use by a live process.
                drop(RunLock::acquire(out)?);
                let name = out
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "run".into());
                let dir = out.with_file_name(format!(".{name}.new-{}", std::process::id()));
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(|source| TrainError::Io {
                        path: dir.clone(),
                        source,
                    })?;
                }
                let lock = RunLock::acquire(&dir)?;
                Ok(Staging {
                    dir,
                    replaces: Some(out.to_path_buf()),
                    lock,
                })
            }
            _ => {
                let lock = RunLock::acquire(out)?;
                Ok(Staging {
                    dir: out.to_path_buf(),
                    replaces: None,
                    lock,
                })
            }
        }
    }

    /// Moves the prepared run into place: the old run (if any) aside to
    /// `DIR.old-<seconds since 1970>`, the staging folder to `DIR`. Returns the final
    /// folder, the run's lock (now on the final folder) and where the old run went.
    pub fn commit(self) -> Result<(PathBuf, RunLock, Option<PathBuf>), TrainError> {
        let Some(out) = self.replaces else {
            return Ok((self.dir, self.lock, None));
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        let mut aside = out.with_file_name(format!("{name}.old-{stamp}"));
        let mut k = 1;
        while aside.exists() {
            aside = out.with_file_name(format!("{name}.old-{stamp}-{k}"));
            k += 1;
        }
        std::fs::rename(&out, &aside).map_err(|source| TrainError::Io {
            path: out.clone(),
            source,
        })?;
        if let Err(source) = std::fs::rename(&self.dir, &out) {
            // Put the old run back: it must never be lost.
            let _ = std::fs::rename(&aside, &out);
            return Err(TrainError::Io {
                path: self.dir.clone(),
                source,
            });
        }
        if let Some(parent) = out.parent() {
            crate::checkpoint::sync_dir(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            })?;
        }
        Ok((out, self.lock, Some(aside)))
    }

    /// Gives up: removes a staging folder (never the final folder or an old run).
    pub fn abandon(self) {
        if self.replaces.is_some() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `events.jsonl`: one JSON object per line for external tools. Step events are
/// buffered and flushed with each epoch's event (an `fsync` per step would cost more
/// than small steps).
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventLog {
    /// Opens the log for appending, first dropping events after `(epoch, step)` — those of
    /// an epoch a crash interrupted, which the resumed run writes again.
    pub fn open(path: &Path, keep_through: Option<(usize, usize)>) -> Result<EventLog, TrainError> {
        let io = |source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some((epoch, step)) = keep_through {
            if path.exists() {
                let text = std::fs::read_to_string(path).map_err(io)?;
                let kept: String = text
                    .lines()
                    .filter(|l| {
                        let v: serde_json::Value = match serde_json::from_str(l) {
                            Ok(v) => v,
                            Err(_) => return false,
                        };
                        let e = v["epoch"].as_u64().unwrap_or(0) as usize;
                        match v["event"].as_str() {
                            Some("step") => v["step"].as_u64().unwrap_or(0) as usize <= step,
                            _ => e <= epoch,
                        }
                    })
                    .flat_map(|l| [l, "\n"])
                    .collect();
                write_atomic(path, kept.as_bytes())?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(EventLog {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
        })
    }

    /// Appends one event (buffered).
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

    /// Writes the buffered events out.
    pub fn flush(&mut self) -> Result<(), TrainError> {
        self.file.flush().map_err(|source| TrainError::Io {
            path: self.path.clone(),
            source,
        })
    }
}
