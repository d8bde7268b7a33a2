//! TensorBoard event files (`events.out.tfevents.*`) without TensorFlow: an
//! [`EventWriter`] that logs scalars, and [`read_events`], which reads any such file
//! back with every length and checksum verified.
//!
//! The format is TensorFlow's record file: per record, the data length as a
//! little-endian `u64`, the masked CRC32C of those 8 bytes, the data, and the masked
//! CRC32C of the data. Each record's data is an [`Event`] protobuf; the first one
//! carries the file version `brain.Event:2`. The few messages needed are derived here
//! with prost (field numbers from TensorFlow's `event.proto` and `summary.proto`;
//! unknown fields, such as newer writers' tensors and metadata, are skipped).
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let mut w = vct_tensorboard::EventWriter::create(dir.path()).unwrap();
//! w.add_scalar("train/loss", 0.25, 1).unwrap();
//! w.flush().unwrap();
//! let events = vct_tensorboard::read_events(w.path()).unwrap();
//! assert_eq!(events[1].scalars(), vec![("train/loss", 0.25)]);
//! ```

#![warn(missing_docs)]

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message as _;

/// The `file_version` of the first event, as TensorFlow writes it.
pub const FILE_VERSION: &str = "brain.Event:2";

/// `tensorflow.Event`: one record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since 1970.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step the event belongs to.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event holds.
    #[prost(oneof = "event::What", tags = "3, 5, 7")]
    pub what: Option<event::What>,
}

/// The payloads of an [`Event`].
pub mod event {
    /// `Event.what`: the variants vct writes (others are skipped when reading).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        /// The file format version (the first event of a file).
        #[prost(string, tag = "3")]
        FileVersion(String),
        /// Summary values, such as scalars.
        #[prost(message, tag = "5")]
        Summary(super::Summary),
        /// A session status, e.g. the start of a resumed run.
        #[prost(message, tag = "7")]
        SessionLog(super::SessionLog),
    }
}

/// `tensorflow.Summary`: values logged at one step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with its scalar field (`simple_value`, in the `value`
/// oneof of the proto: a oneof member is an optional field on the wire).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The series name, e.g. `train/loss`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// The scalar.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// `tensorflow.SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// A [`SessionStatus`].
    #[prost(enumeration = "SessionStatus", tag = "1")]
    pub status: i32,
    /// The checkpoint written (status `Checkpoint`).
    #[prost(string, tag = "2")]
    pub checkpoint_path: String,
    /// A message.
    #[prost(string, tag = "3")]
    pub msg: String,
}

/// `tensorflow.SessionLog.SessionStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SessionStatus {
    /// Unset.
    StatusUnspecified = 0,
    /// A (re)start: readers drop the events of earlier files at or after its step.
    Start = 1,
    /// A stop.
    Stop = 2,
    /// A checkpoint.
    Checkpoint = 3,
}

impl Event {
    /// The scalars of a summary event as `(tag, value)`; empty for other events.
    pub fn scalars(&self) -> Vec<(&str, f32)> {
        match &self.what {
            Some(event::What::Summary(s)) => s
                .value
                .iter()
                .filter_map(|v| v.simple_value.map(|x| (v.tag.as_str(), x)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Why an event file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TensorBoardError {
    /// A file system error, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A record that is not what the format requires.
    #[error("{path}: record at byte {offset}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
        /// What is wrong, with the expected value.
        what: String,
    },
}

/// TensorFlow's masked CRC32C: rotated right by 15 bits plus a constant, so a CRC
/// stored inside checksummed data does not checksum to a fixed value.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// Appends `data` as one record (length, its CRC, data, its CRC) to `out`.
pub fn encode_record(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// Splits a record file into its records' data, checking every length and CRC.
pub fn decode_records(bytes: &[u8], path: &Path) -> Result<Vec<Vec<u8>>, TensorBoardError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let corrupt = |what: String| TensorBoardError::Corrupt {
            path: path.to_path_buf(),
            offset: at as u64,
            what,
        };
        let rest = &bytes[at..];
        if rest.len() < 12 {
            return Err(corrupt(format!(
                "{} bytes left, expected a 12-byte header (truncated file?)",
                rest.len()
            )));
        }
        let len_bytes = &rest[..8];
        let stored = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if masked_crc32c(len_bytes) != stored {
            return Err(corrupt(format!(
                "length CRC {stored:#010x}, expected {:#010x}",
                masked_crc32c(len_bytes)
            )));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or([0; 8]));
        let need = 12u64.saturating_add(len).saturating_add(4);
        if (rest.len() as u64) < need {
            return Err(corrupt(format!(
                "{} bytes left, expected {need} for a {len}-byte record (truncated file?)",
                rest.len()
            )));
        }
        let data = &rest[12..12 + len as usize];
        let tail = &rest[12 + len as usize..16 + len as usize];
        let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        if masked_crc32c(data) != stored {
            return Err(corrupt(format!(
                "data CRC {stored:#010x}, expected {:#010x}",
                masked_crc32c(data)
            )));
        }
        out.push(data.to_vec());
        at += need as usize;
    }
    Ok(out)
}

/// Reads an event file: every record checked, every event decoded.
pub fn read_events(path: &Path) -> Result<Vec<Event>, TensorBoardError> {
    let bytes = std::fs::read(path).map_err(|source| TensorBoardError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut offset = 0u64;
    decode_records(&bytes, path)?
        .into_iter()
        .map(|data| {
            let at = offset;
            offset += data.len() as u64 + 16;
            Event::decode(data.as_slice()).map_err(|e| TensorBoardError::Corrupt {
                path: path.to_path_buf(),
                offset: at,
                what: format!("not an Event protobuf: {e}"),
            })
        })
        .collect()
}

/// The event files in `dir`, oldest name first (as TensorBoard reads them).
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>, TensorBoardError> {
    let entries = std::fs::read_dir(dir).map_err(|source| TensorBoardError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("tfevents"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The machine's name for file names (letters, digits, `.`, `-`, `_`).
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

/// Writes one event file. Records are buffered: [`EventWriter::flush`] (or drop)
/// writes them out.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
    record: Vec<u8>,
    data: Vec<u8>,
}

impl EventWriter {
    /// Creates `dir` if needed and a new file in it,
    /// `events.out.tfevents.<seconds>.<host>.<pid>.<n>` (never an existing one), and
    /// writes the file-version event.
    pub fn create(dir: &Path) -> Result<EventWriter, TensorBoardError> {
        std::fs::create_dir_all(dir).map_err(|source| TensorBoardError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let stem = format!(
            "events.out.tfevents.{}.{}.{}",
            now() as u64,
            hostname(),
            std::process::id()
        );
        let mut n = 0;
        let (path, file) = loop {
            let path = dir.join(format!("{stem}.{n}"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(source) => return Err(TensorBoardError::Io { path, source }),
            }
        };
        let mut w = EventWriter {
            path,
            file: BufWriter::new(file),
            record: Vec::new(),
            data: Vec::new(),
        };
        w.write_event(&Event {
            wall_time: now(),
            step: 0,
            what: Some(event::What::FileVersion(FILE_VERSION.into())),
        })?;
        Ok(w)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event.
    pub fn write_event(&mut self, event: &Event) -> Result<(), TensorBoardError> {
        self.data.clear();
        event
            .encode(&mut self.data)
            .map_err(|e| TensorBoardError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?;
        self.record.clear();
        encode_record(&self.data, &mut self.record);
        self.file
            .write_all(&self.record)
            .map_err(|source| TensorBoardError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Logs `value` under `tag` at `step`.
    pub fn add_scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<(), TensorBoardError> {
        self.add_scalars(&[(tag, value)], step)
    }

    /// Logs several scalars at `step`, in one event.
    pub fn add_scalars(
        &mut self,
        values: &[(&str, f32)],
        step: i64,
    ) -> Result<(), TensorBoardError> {
        let summary = Summary {
            value: values
                .iter()
                .map(|&(tag, v)| SummaryValue {
                    tag: tag.to_string(),
                    simple_value: Some(v),
                })
                .collect(),
        };
        self.write_event(&Event {
            wall_time: now(),
            step,
            what: Some(event::What::Summary(summary)),
        })
    }

    /// Marks a (re)start at `step`: TensorBoard then drops what earlier files logged at
    /// or after `step` (the steps a resumed run repeats after an interruption).
    pub fn session_start(&mut self, step: i64) -> Result<(), TensorBoardError> {
        self.write_event(&Event {
            wall_time: now(),
            step,
            what: Some(event::What::SessionLog(SessionLog {
                status: SessionStatus::Start as i32,
                checkpoint_path: String::new(),
                msg: String::new(),
            })),
        })
    }

    /// Writes the buffered records to the file.
    pub fn flush(&mut self) -> Result<(), TensorBoardError> {
        self.file.flush().map_err(|source| TensorBoardError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
