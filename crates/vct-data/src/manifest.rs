//! CSV (`image,labels`, labels separated by spaces) and JSONL
//! (`{"image": ..., "concepts": [...]}`) manifests; image paths are relative to
//! the manifest's folder, or else to the folder named like the manifest
//! (`train.csv` → `train/`). A `classes.txt` beside the manifest (one name per line)
//! fixes the concept list, so train and val manifests share it. A manifest is
//! single-label when every row names exactly one concept, multi-label otherwise.

use std::path::{Path, PathBuf};

use crate::dataset::{CorruptPolicy, OpenOptions, SkipKind, Skipped};
use crate::error::io;
use crate::{Concepts, DataError, Dataset};

fn row_err(path: &Path, line: usize, reason: impl Into<String>) -> DataError {
    DataError::Manifest {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// Splits one CSV line into fields (double quotes, `""` escapes).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("stray double quote inside an unquoted field".into()),
            (false, ',') => {
                fields.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated double quote".into());
    }
    fields.push(cur);
    Ok(fields)
}

fn read_classes(manifest: &Path) -> Result<Option<Vec<String>>, DataError> {
    let p = manifest
        .parent()
        .unwrap_or(Path::new("."))
        .join("classes.txt");
    if !p.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(io(&p))?;
    Ok(Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    ))
}

/// Turns `(line, image, label names)` rows into a dataset.
fn build(
    manifest: &Path,
    rows: Vec<(usize, String, Vec<String>)>,
    opts: &OpenOptions,
    concepts: Option<&Concepts>,
) -> Result<Dataset, DataError> {
    let base = manifest.parent().unwrap_or(Path::new("."));
    let index = match concepts {
        Some(c) => c.clone(),
        None => match read_classes(manifest)? {
            Some(names) => Concepts::new(names)?,
            None => Concepts::new(rows.iter().flat_map(|r| r.2.iter().cloned()).collect())?,
        },
    };
    let mut skipped = Vec::new();
    let mut files = Vec::new();
    for (line, image, names) in rows {
        // Relative to the manifest's folder; failing that, to the folder named
        // after the manifest (`train.csv` → `train/`), as COCO-style sets store them.
        let mut path: PathBuf = base.join(&image);
        if !path.is_file() {
            if let Some(stem) = manifest.file_stem() {
                let alt = base.join(stem).join(&image);
                if alt.is_file() {
                    path = alt;
                }
            }
        }
        let mut labels = Vec::with_capacity(names.len());
        for n in &names {
            let Some(i) = index.index(n) else {
                return Err(DataError::UnknownConcept {
                    path: PathBuf::from(format!("{}:{line}", manifest.display())),
                    concept: n.clone(),
                    known: index.len(),
                });
            };
            labels.push(i);
        }
        labels.sort_unstable();
        labels.dedup();
        if !path.is_file() {
            let reason = format!(
                "missing file (listed on line {line} of {})",
                manifest.display()
            );
            if opts.policy == CorruptPolicy::Fail {
                return Err(row_err(
                    manifest,
                    line,
                    format!("image {image:?} not found at {}", path.display()),
                ));
            }
            skipped.push(Skipped {
                path,
                reason,
                kind: SkipKind::Unreadable,
            });
            continue;
        }
        files.push((path, labels, Some(line)));
    }
    let items = crate::dataset::check_files(files, opts, &mut skipped)?;
    if items.is_empty() {
        return Err(DataError::Empty {
            path: manifest.to_path_buf(),
            skipped: skipped.len(),
        });
    }
    // A manifest whose every (usable) row names one concept is single-label
    // data, like a folder tree; one row of several concepts or none makes it
    // multi-label.
    let multi_label = items.iter().any(|it| it.labels.len() != 1);
    let mut ds = Dataset::from_items(manifest.to_path_buf(), index, items, multi_label)?;
    ds.skipped = skipped;
    Ok(ds)
}

/// Reads a CSV manifest with header `image,labels`.
pub(crate) fn open_csv(
    path: &Path,
    opts: &OpenOptions,
    concepts: Option<&Concepts>,
) -> Result<Dataset, DataError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            skipped: 0,
        });
    };
    let header =
        csv_fields(header.trim_start_matches('\u{feff}')).map_err(|r| row_err(path, 1, r))?;
    let cols: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let find = |names: &[&str]| cols.iter().position(|c| names.contains(&c.as_str()));
    let (Some(ci), Some(cl)) = (
        find(&["image", "path", "file"]),
        find(&["labels", "label", "concepts"]),
    ) else {
        return Err(row_err(
            path,
            1,
            format!("header {header:?}: expected columns `image,labels`"),
        ));
    };
    let mut rows = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let f = csv_fields(line).map_err(|r| row_err(path, n, r))?;
        if f.len() != cols.len() {
            return Err(row_err(
                path,
                n,
                format!(
                    "{} fields, expected {} like the header ({})",
                    f.len(),
                    cols.len(),
                    cols.join(",")
                ),
            ));
        }
        let image = f[ci].trim().to_string();
        if image.is_empty() {
            return Err(row_err(path, n, "empty image path"));
        }
        rows.push((
            n,
            image,
            f[cl].split_whitespace().map(String::from).collect(),
        ));
    }
    build(path, rows, opts, concepts)
}

/// Reads a JSONL manifest: one `{"image": "...", "concepts": [...]}` per line.
pub(crate) fn open_jsonl(
    path: &Path,
    opts: &OpenOptions,
    concepts: Option<&Concepts>,
) -> Result<Dataset, DataError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Row {
        image: String,
        #[serde(alias = "labels")]
        concepts: Vec<String>,
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: Row = serde_json::from_str(line).map_err(|e| {
            row_err(
                path,
                i + 1,
                format!("{e}; expected {{\"image\": \"path\", \"concepts\": [\"name\", ...]}}"),
            )
        })?;
        if r.image.trim().is_empty() {
            return Err(row_err(path, i + 1, "empty image path"));
        }
        rows.push((i + 1, r.image, r.concepts));
    }
    build(path, rows, opts, concepts)
}
