//! The CIFAR-10 binary format: records of 1 label byte + 3072 pixel bytes
//! (1024 R, 1024 G, 1024 B, row-major 32×32).
//!
//! `candle_datasets::vision::cifar::load_dir` reads the same files but only as
//! a whole (all five training batches and the test batch, 10,000 records each)
//! into one tensor, and the crate pulls in parquet, tokenizers and hf-hub; this
//! small reader takes any subset of batch files and keeps images addressable
//! per item.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vct_augment::RgbImage;

use crate::dataset::{Item, Source};
use crate::error::io;
use crate::{Concepts, DataError, Dataset};

/// The CIFAR-10 class names in label order (already sorted, so label = index).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

const RECORD: usize = 1 + 3 * 32 * 32;

/// Reads one CIFAR-10 binary file into (label, image) pairs.
pub fn read_cifar10_bin(path: &Path) -> Result<Vec<(u8, RgbImage)>, DataError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(DataError::Manifest {
            path: path.to_path_buf(),
            line: 0,
            reason: format!(
                "{} bytes, expected a non-zero multiple of {RECORD} (CIFAR-10 records)",
                bytes.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(bytes.len() / RECORD);
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        let label = rec[0];
        if usize::from(label) >= CIFAR10_CLASSES.len() {
            return Err(DataError::Manifest {
                path: path.to_path_buf(),
                line: i + 1,
                reason: format!("record {i} has label {label}, expected 0..=9"),
            });
        }
        let px = &rec[1..];
        let mut rgb = Vec::with_capacity(3072);
        for p in 0..1024 {
            rgb.extend_from_slice(&[px[p], px[1024 + p], px[2048 + p]]);
        }
        let img = RgbImage::from_raw(32, 32, rgb)
            .ok_or_else(|| DataError::Worker("CIFAR record size".into()))?;
        out.push((label, img));
    }
    Ok(out)
}

fn batch_files(dir: &Path) -> Result<(Vec<PathBuf>, Option<PathBuf>), DataError> {
    let mut train: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("data_batch_") && n.ends_with(".bin"))
        })
        .collect();
    train.sort();
    let test = dir.join("test_batch.bin");
    Ok((train, test.is_file().then_some(test)))
}

pub(crate) fn is_cifar_dir(dir: &Path) -> bool {
    batch_files(dir).is_ok_and(|(t, v)| !t.is_empty() || v.is_some())
}

/// Reads the records of `files` as one dataset.
pub(crate) fn open_files(
    root: &Path,
    files: &[PathBuf],
    concepts: Option<&Concepts>,
) -> Result<Dataset, DataError> {
    let index = match concepts {
        Some(c) => c.clone(),
        None => Concepts::new(CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect())?,
    };
    let map: Vec<usize> = CIFAR10_CLASSES
        .iter()
        .map(|n| {
            index.index(n).ok_or_else(|| DataError::UnknownConcept {
                path: root.to_path_buf(),
                concept: n.to_string(),
                known: index.len(),
            })
        })
        .collect::<Result<_, _>>()?;
    let mut items = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (i, (label, img)) in read_cifar10_bin(f)?.into_iter().enumerate() {
            items.push(Item {
                source: Source::Pixels {
                    name: f.with_file_name(format!("{name}#{i}")),
                    image: Arc::new(img),
                },
                labels: vec![map[usize::from(label)]],
                line: None,
            });
        }
    }
    Dataset::from_items(root.to_path_buf(), index, items, false)
}

/// The training part of a CIFAR-10 folder (`data_batch_*.bin`; the test batch when
/// there are none).
pub(crate) fn open_dir(dir: &Path, concepts: Option<&Concepts>) -> Result<Dataset, DataError> {
    let (train, test) = batch_files(dir)?;
    let files: Vec<PathBuf> = if train.is_empty() {
        test.into_iter().collect()
    } else {
        train
    };
    open_files(dir, &files, concepts)
}

/// A CIFAR-10 binary folder as (training set from `data_batch_*.bin`, test set
/// from `test_batch.bin` if present).
pub fn cifar10_from_dir(dir: &Path) -> Result<(Dataset, Option<Dataset>), DataError> {
    let (train, test) = batch_files(dir)?;
    if train.is_empty() {
        return Err(DataError::Empty {
            path: dir.to_path_buf(),
            skipped: 0,
        });
    }
    let t = open_files(dir, &train, None)?;
    let v = match test {
        Some(p) => Some(open_files(dir, &[p], Some(&t.concepts))?),
        None => None,
    };
    Ok((t, v))
}
