//! Checking a dataset before training: unreadable, empty and non-image files,
//! images below the input size, EXIF-rotated images, exact and near duplicates
//! (within a split, across splits: leakage, across concepts), per-concept counts,
//! empty concept folders, and the multi-label statistics of manifests.
//!
//! [`check`] reads every layout [`Dataset::open`] reads (concept folders, `train/`
//! and `val/` folders, CSV / JSONL manifests, CIFAR-10 binaries) and returns a
//! [`CheckReport`]; files are inspected in parallel with rayon. Nothing is
//! refused: problems that would stop `Dataset::open` (an empty concept folder)
//! are findings. What is an error and what a warning is documented on each
//! [`Problem`] variant.
//!
//! [`CheckOptions::quick`] skips the pixel decode (and with it the perceptual
//! hashes): it reads each file once for its header and content hash, as cheap
//! as opening the dataset, and is what `train` runs first.

mod inspect;
mod report;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use vct_augment::DecodeOptions;

pub use report::{
    CheckReport, ConceptCount, FileRef, Finding, LabelStats, Problem, Range, Severity, SizeStats,
    SplitReport, REPORT_FORMAT,
};

use crate::dataset::{ext_is, find_splits, list_folder, OpenOptions, SkipKind, Skipped};
use crate::{DataError, Dataset, Source};
use inspect::{FileProblem, Inspection};

/// The input size an image is compared with when no template is given.
pub const DEFAULT_MIN_SIZE: u32 = 224;

/// Perceptual-hash distance (of 256 bits) at or below which two images are near
/// duplicates. Halved, re-encoded copies of photographs land at ≤ 16; different
/// photographs of the shared data sets no closer than 54 (see `inspect.rs`).
pub const DEFAULT_NEAR_DISTANCE: u32 = 24;

/// What to check and the thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOptions {
    /// Decode every image's pixels with the training decoder (finds truncated
    /// files; needed for near duplicates). `false`: headers only.
    pub decode: bool,
    /// Hash every file's bytes to find exact duplicates.
    pub exact_duplicates: bool,
    /// Near duplicates at or below this perceptual-hash distance (`None`: not
    /// searched; needs `decode`).
    pub near_duplicate_distance: Option<u32>,
    /// Images whose shorter side is below this are reported small (the input size).
    pub min_size: u32,
    /// Where `min_size` came from, for the report (`default`, a template name, ...).
    pub min_size_from: String,
    /// Training concepts with fewer images are reported.
    pub min_images: usize,
    /// A training set whose largest concept has more than this many times the
    /// images of its smallest is reported imbalanced.
    pub max_imbalance: f64,
    /// Pixel limit and EXIF handling, as training decodes.
    #[serde(skip)]
    pub decode_options: DecodeOptions,
    /// Worker threads (`None`: rayon's global pool).
    #[serde(skip)]
    pub threads: Option<usize>,
}

impl CheckOptions {
    /// Everything: full decode, exact and near duplicates.
    pub fn full() -> CheckOptions {
        CheckOptions {
            decode: true,
            exact_duplicates: true,
            near_duplicate_distance: Some(DEFAULT_NEAR_DISTANCE),
            min_size: DEFAULT_MIN_SIZE,
            min_size_from: "default".into(),
            min_images: 10,
            max_imbalance: 100.0,
            decode_options: DecodeOptions::default(),
            threads: None,
        }
    }

    /// The cheap part: headers and content hashes, no pixel decode, no near duplicates.
    pub fn quick() -> CheckOptions {
        CheckOptions {
            decode: false,
            near_duplicate_distance: None,
            ..CheckOptions::full()
        }
    }
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions::full()
    }
}

/// One split to check: a name (`train` is the one counts and balance are judged
/// on) and a folder, manifest or CIFAR-10 path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPath {
    /// `train`, `val`, `test` or `data`.
    pub name: String,
    /// The folder, manifest or CIFAR-10 `.bin` file.
    pub path: PathBuf,
}

impl SplitPath {
    /// A split named `name` at `path`.
    pub fn new(name: &str, path: impl Into<PathBuf>) -> SplitPath {
        SplitPath {
            name: name.into(),
            path: path.into(),
        }
    }
}

/// The layout of `path` and its splits, as training finds them: `train` and
/// `val` (plus a `test` part beside them), CIFAR-10 training and test batches,
/// or the whole dataset as the split `data`.
pub fn find_check_splits(path: &Path) -> Result<(String, Vec<SplitPath>), DataError> {
    if path.is_dir() {
        if let Some((train, val)) = find_splits(path) {
            let manifests = train.is_file();
            let mut splits = vec![SplitPath::new("train", train)];
            splits.extend(val.map(|v| SplitPath::new("val", v)));
            let test = if manifests {
                ["test.csv", "test.jsonl"]
                    .iter()
                    .map(|n| path.join(n))
                    .find(|p| p.is_file())
            } else {
                Some(path.join("test")).filter(|p| p.is_dir())
            };
            splits.extend(test.map(|t| SplitPath::new("test", t)));
            let layout = if manifests {
                "split_manifests"
            } else {
                "split_folders"
            };
            return Ok((layout.into(), splits));
        }
        if crate::cifar::is_cifar_dir(path) {
            return Ok(("cifar10".into(), vec![SplitPath::new("train", path)]));
        }
        return Ok(("folders".into(), vec![SplitPath::new("data", path)]));
    }
    if !path.exists() {
        return Err(DataError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        });
    }
    if ext_is(path, "csv") || ext_is(path, "jsonl") {
        Ok(("manifest".into(), vec![SplitPath::new("data", path)]))
    } else if ext_is(path, "bin") {
        Ok(("cifar10".into(), vec![SplitPath::new("data", path)]))
    } else {
        Err(DataError::NotADataset {
            path: path.to_path_buf(),
        })
    }
}

/// Checks the dataset at `path` (any layout [`Dataset::open`] reads, with its
/// `val/` and `test/` parts).
pub fn check(path: &Path, opts: &CheckOptions) -> Result<CheckReport, DataError> {
    let (layout, splits) = find_check_splits(path)?;
    check_splits(path, &layout, &splits, opts)
}

/// Checks the given splits; `root` and `layout` only label the report (paths in
/// messages are relative to `root`).
pub fn check_splits(
    root: &Path,
    layout: &str,
    splits: &[SplitPath],
    opts: &CheckOptions,
) -> Result<CheckReport, DataError> {
    match opts.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| DataError::Worker(e.to_string()))?
            .install(|| run(root, layout, splits, opts)),
        None => run(root, layout, splits, opts),
    }
}

/// An image to inspect, with its labels.
struct Entry {
    split: usize,
    source: Source,
    concepts: Vec<String>,
    line: Option<usize>,
    /// The concept folder it is in (folder splits).
    folder: Option<usize>,
}

/// A split as read, before its images are inspected.
struct SplitData {
    name: String,
    path: PathBuf,
    source: &'static str,
    /// The split's own concept list (folder names, manifest / classes.txt concepts).
    concepts: Vec<String>,
    /// Concept folders: (concept, folder).
    folders: Vec<(String, PathBuf)>,
    skipped: Vec<Skipped>,
}

/// Reads a split's listing: folder names and image paths, manifest rows, or
/// CIFAR-10 records; no image is opened. A CIFAR-10 folder with a test batch
/// gives two splits, `index` and `index + 1`.
fn read_split(
    index: usize,
    split: &SplitPath,
    entries: &mut Vec<Entry>,
) -> Result<Vec<SplitData>, DataError> {
    let path = &split.path;
    let cifar = path.is_dir() && crate::cifar::is_cifar_dir(path) || ext_is(path, "bin");
    if cifar {
        let mut data = SplitData {
            name: split.name.clone(),
            path: path.clone(),
            source: "cifar10",
            concepts: Vec::new(),
            folders: Vec::new(),
            skipped: Vec::new(),
        };
        let (train, test) = if path.is_dir() {
            crate::cifar::cifar10_from_dir(path)?
        } else {
            (Dataset::open(path)?, None)
        };
        data.concepts = train.concepts.names().to_vec();
        let mut push = |ds: &Dataset, split: usize| {
            for it in &ds.items {
                entries.push(Entry {
                    split,
                    source: it.source.clone(),
                    concepts: names(ds, &it.labels),
                    line: None,
                    folder: None,
                });
            }
        };
        push(&train, index);
        let mut out = Vec::new();
        // A CIFAR-10 folder's test batch is checked as the next split.
        if let Some(t) = test {
            push(&t, index + 1);
            out.push(SplitData {
                name: "test".into(),
                path: path.join("test_batch.bin"),
                concepts: data.concepts.clone(),
                ..data.clone_empty()
            });
        }
        out.insert(0, data);
        return Ok(out);
    }
    if path.is_dir() {
        let listing = list_folder(path)?;
        let mut data = SplitData {
            name: split.name.clone(),
            path: path.clone(),
            source: "folder",
            concepts: Vec::new(),
            folders: Vec::new(),
            skipped: listing.skipped,
        };
        for f in listing.folders {
            let folder = data.folders.len();
            for p in f.images {
                entries.push(Entry {
                    split: index,
                    source: Source::File(p),
                    concepts: vec![f.name.clone()],
                    line: None,
                    folder: Some(folder),
                });
            }
            data.concepts.push(f.name.clone());
            data.folders.push((f.name, f.path));
        }
        return Ok(vec![data]);
    }
    if !(ext_is(path, "csv") || ext_is(path, "jsonl")) {
        return Err(DataError::NotADataset { path: path.clone() });
    }
    // The manifest reader without its header check: the files are inspected here.
    let open = OpenOptions {
        check_headers: false,
        ..OpenOptions::default()
    };
    let ds = Dataset::open_with(path, &open, None)?;
    for it in &ds.items {
        entries.push(Entry {
            split: index,
            source: it.source.clone(),
            concepts: names(&ds, &it.labels),
            line: it.line,
            folder: None,
        });
    }
    Ok(vec![SplitData {
        name: split.name.clone(),
        path: path.clone(),
        source: "manifest",
        concepts: ds.concepts.names().to_vec(),
        folders: Vec::new(),
        skipped: ds.skipped,
    }])
}

impl SplitData {
    /// A split of the same source with nothing in it yet.
    fn clone_empty(&self) -> SplitData {
        SplitData {
            name: self.name.clone(),
            path: self.path.clone(),
            source: self.source,
            concepts: Vec::new(),
            folders: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

fn names(ds: &Dataset, labels: &[usize]) -> Vec<String> {
    labels
        .iter()
        .filter_map(|&l| ds.concepts.name(l).map(String::from))
        .collect()
}

/// `path` relative to `root` for messages.
fn rel(root: &Path, path: &Path) -> String {
    let base = if root.is_file() {
        root.parent().unwrap_or(root)
    } else {
        root
    };
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The training split: `train`, else the only one.
fn training_split(splits: &[SplitData]) -> Option<usize> {
    splits
        .iter()
        .position(|s| s.name == "train")
        .or((splits.len() == 1).then_some(0))
}

fn run(
    root: &Path,
    layout: &str,
    wanted: &[SplitPath],
    opts: &CheckOptions,
) -> Result<CheckReport, DataError> {
    let start = Instant::now();
    let mut entries = Vec::new();
    let mut splits = Vec::new();
    for s in wanted {
        let read = read_split(splits.len(), s, &mut entries)?;
        splits.extend(read);
    }

    let hasher = (opts.decode && opts.near_duplicate_distance.is_some()).then(inspect::hasher);
    let looks: Vec<Inspection> = entries
        .par_iter()
        .map(|e| inspect::inspect(&e.source, opts, hasher.as_ref()))
        .collect();

    let mut findings = Vec::new();
    let r = |p: &Path| rel(root, p);

    // Files the listing left out.
    for s in &splits {
        for sk in &s.skipped {
            let (severity, problem, message) = match sk.kind {
                SkipKind::Hidden => continue,
                SkipKind::NotImage => (
                    Severity::Warning,
                    Problem::IgnoredFile {
                        split: s.name.clone(),
                        path: sk.path.clone(),
                        reason: sk.reason.clone(),
                    },
                    format!("{}: ignored by training: {}", r(&sk.path), sk.reason),
                ),
                SkipKind::Unreadable => (
                    Severity::Error,
                    Problem::MissingFile {
                        split: s.name.clone(),
                        path: sk.path.clone(),
                        reason: sk.reason.clone(),
                    },
                    format!("{}: {}", r(&sk.path), sk.reason),
                ),
            };
            findings.push(Finding {
                severity,
                message,
                problem,
            });
        }
    }

    // Each file.
    for (e, look) in entries.iter().zip(&looks) {
        let split = splits[e.split].name.clone();
        let path = e.source_path().to_path_buf();
        let shown = r(&path);
        if let Some(p) = &look.problem {
            let (problem, message) = match p {
                FileProblem::ZeroByte => (
                    Problem::ZeroByte {
                        split,
                        path: path.clone(),
                    },
                    format!("{shown}: empty file (0 bytes)"),
                ),
                FileProblem::NotImage(reason) => (
                    Problem::NotImage {
                        split,
                        path: path.clone(),
                        reason: reason.clone(),
                    },
                    format!("{shown}: {reason}"),
                ),
                FileProblem::DecodeFailed(reason) => (
                    Problem::DecodeFailed {
                        split,
                        path: path.clone(),
                        reason: reason.clone(),
                    },
                    format!("{shown}: cannot decode: {reason}"),
                ),
                FileProblem::Unreadable(reason) => (
                    Problem::Unreadable {
                        split,
                        path: path.clone(),
                        reason: reason.clone(),
                    },
                    format!("{shown}: cannot read: {reason}"),
                ),
            };
            findings.push(Finding {
                severity: Severity::Error,
                message,
                problem,
            });
            continue;
        }
        if let Some((w, h)) = look.size {
            if w.min(h) < opts.min_size {
                findings.push(Finding {
                    severity: Severity::Warning,
                    message: format!(
                        "{shown}: {w}x{h}, shorter side below the input size {} ({}); training upsamples it",
                        opts.min_size, opts.min_size_from
                    ),
                    problem: Problem::SmallImage {
                        split: split.clone(),
                        path: path.clone(),
                        width: w,
                        height: h,
                        min_size: opts.min_size,
                    },
                });
            }
        }
        if let Some(o) = look.orientation {
            findings.push(Finding {
                severity: Severity::Warning,
                message: format!(
                    "{shown}: EXIF orientation {o}: vct rotates it when decoding; tools that ignore EXIF see it {}",
                    if (5..=8).contains(&o) { "sideways" } else { "flipped or upside down" }
                ),
                problem: Problem::ExifRotated {
                    split,
                    path,
                    orientation: o,
                },
            });
        }
    }

    let file_ref = |i: usize| {
        let e = &entries[i];
        FileRef {
            split: splits[e.split].name.clone(),
            path: e.source_path().to_path_buf(),
            concepts: e.concepts.clone(),
            line: e.line,
        }
    };
    let describe = |members: &[usize]| -> (String, bool, bool) {
        let split_names: BTreeSet<&str> = members
            .iter()
            .map(|&i| splits[entries[i].split].name.as_str())
            .collect();
        let label_sets: BTreeSet<&Vec<String>> =
            members.iter().map(|&i| &entries[i].concepts).collect();
        let list: Vec<String> = members
            .iter()
            .take(4)
            .map(|&i| {
                let e = &entries[i];
                format!("{} [{}]", r(e.source_path()), e.concepts.join(" "))
            })
            .collect();
        let more = if members.len() > 4 {
            format!(" and {} more", members.len() - 4)
        } else {
            String::new()
        };
        let cross = split_names.len() > 1;
        let conflict = label_sets.len() > 1;
        let mut notes = Vec::new();
        if cross {
            let names: Vec<&str> = split_names.into_iter().collect();
            notes.push(format!("in {} (leakage)", names.join(" and ")));
        }
        if conflict {
            notes.push("with different concepts".to_string());
        }
        let note = if notes.is_empty() {
            String::new()
        } else {
            format!(", {}", notes.join(", "))
        };
        (format!("{}{more}{note}", list.join(" = ")), cross, conflict)
    };

    // Exact duplicates: identical bytes.
    let mut groups: HashMap<[u8; 32], Vec<usize>> = HashMap::new();
    for (i, look) in looks.iter().enumerate() {
        if let Some(h) = look.content {
            // Files that cannot be used are reported on their own.
            if look.problem.is_none() {
                groups.entry(h).or_default().push(i);
            }
        }
    }
    let mut exact: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() > 1).collect();
    exact.sort();
    for g in &exact {
        let (text, cross, conflict) = describe(g);
        findings.push(Finding {
            severity: if cross || conflict {
                Severity::Error
            } else {
                Severity::Warning
            },
            message: format!("{} identical files: {text}", g.len()),
            problem: Problem::ExactDuplicate {
                files: g.iter().map(|&i| file_ref(i)).collect(),
                cross_split: cross,
                conflicting_concepts: conflict,
            },
        });
    }

    // Near duplicates: perceptual hashes within the distance.
    if let Some(limit) = opts.near_duplicate_distance {
        let hashed: Vec<(usize, inspect::PHash)> = looks
            .iter()
            .enumerate()
            .filter(|(_, l)| l.problem.is_none())
            .filter_map(|(i, l)| l.phash.map(|h| (i, h)))
            .collect();
        for (members, distance) in near_groups(&hashed, limit) {
            // A group that is one set of identical files is reported above.
            let contents: BTreeSet<Option<[u8; 32]>> =
                members.iter().map(|&i| looks[i].content).collect();
            if contents.len() < 2 {
                continue;
            }
            let (text, cross, conflict) = describe(&members);
            findings.push(Finding {
                severity: Severity::Warning,
                message: format!(
                    "{} near-identical images (perceptual hashes {distance} of 256 bits apart): {text}",
                    members.len()
                ),
                problem: Problem::NearDuplicate {
                    files: members.iter().map(|&i| file_ref(i)).collect(),
                    distance,
                    cross_split: cross,
                    conflicting_concepts: conflict,
                },
            });
        }
    }

    // The concept list: every split's concepts.
    let vocabulary: Vec<String> = splits
        .iter()
        .flat_map(|s| s.concepts.iter().cloned())
        .chain(entries.iter().flat_map(|e| e.concepts.iter().cloned()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let train = training_split(&splits);

    // Concepts outside the training split's list.
    if let Some(t) = train {
        let known: BTreeSet<&String> = splits[t].concepts.iter().collect();
        for (si, s) in splits.iter().enumerate() {
            if si == t {
                continue;
            }
            let used: BTreeSet<&String> = s
                .concepts
                .iter()
                .chain(
                    entries
                        .iter()
                        .filter(|e| e.split == si)
                        .flat_map(|e| e.concepts.iter()),
                )
                .collect();
            for c in used.into_iter().filter(|c| !known.contains(c)) {
                findings.push(Finding {
                    severity: Severity::Error,
                    message: format!(
                        "{}: concept {c:?} is not a concept of {} ({}); training refuses it",
                        s.name,
                        splits[t].name,
                        r(&splits[t].path)
                    ),
                    problem: Problem::UnknownConcept {
                        split: s.name.clone(),
                        concept: c.clone(),
                    },
                });
            }
        }
    }

    // Per split: counts and statistics of the usable images.
    let mut reports = Vec::new();
    let mut all_sizes = Vec::new();
    for (si, s) in splits.iter().enumerate() {
        let members: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].split == si)
            .collect();
        let usable: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| looks[i].problem.is_none())
            .collect();
        let mut counts: BTreeMap<&str, usize> =
            vocabulary.iter().map(|c| (c.as_str(), 0)).collect();
        for &i in &usable {
            for c in &entries[i].concepts {
                *counts.entry(c.as_str()).or_default() += 1;
            }
        }
        // Empty concept folders: none of their image files can be used.
        for (fi, (concept, folder)) in s.folders.iter().enumerate() {
            let files = members
                .iter()
                .filter(|&&i| entries[i].folder == Some(fi))
                .count();
            let ok = usable
                .iter()
                .filter(|&&i| entries[i].folder == Some(fi))
                .count();
            if ok == 0 {
                let why = if files == 0 {
                    "no image files".to_string()
                } else {
                    format!("none of its {files} image files can be used")
                };
                findings.push(Finding {
                    severity: Severity::Error,
                    message: format!(
                        "{}: concept folder {concept:?} has {why}; training refuses it",
                        r(folder)
                    ),
                    problem: Problem::EmptyConcept {
                        split: s.name.clone(),
                        concept: concept.clone(),
                        path: folder.clone(),
                        unusable_files: files,
                    },
                });
            }
        }
        if Some(si) == train {
            balance_findings(s, &counts, opts, &mut findings);
        }
        let per_image: Vec<usize> = usable.iter().map(|&i| entries[i].concepts.len()).collect();
        let labels = (!per_image.is_empty()).then(|| {
            let max = per_image.iter().copied().max().unwrap_or(0);
            let mut histogram = vec![0; max + 1];
            for &k in &per_image {
                histogram[k] += 1;
            }
            LabelStats {
                multi_label: per_image.iter().any(|&k| k != 1),
                min_per_image: per_image.iter().copied().min().unwrap_or(0),
                max_per_image: max,
                mean_per_image: per_image.iter().sum::<usize>() as f64 / per_image.len() as f64,
                histogram,
                concepts_seen: counts.values().filter(|&&n| n > 0).count(),
                never_seen: counts
                    .iter()
                    .filter(|(_, &n)| n == 0)
                    .map(|(c, _)| c.to_string())
                    .collect(),
            }
        });
        let sizes: Vec<(u32, u32)> = usable.iter().filter_map(|&i| looks[i].size).collect();
        all_sizes.extend(&sizes);
        let mut color_modes = BTreeMap::new();
        for &i in &usable {
            if let Some(c) = looks[i].color {
                *color_modes.entry(c.to_string()).or_default() += 1;
            }
        }
        reports.push(SplitReport {
            name: s.name.clone(),
            path: s.path.clone(),
            source: s.source.into(),
            files: members.len(),
            usable: usable.len(),
            hidden: s
                .skipped
                .iter()
                .filter(|k| k.kind == SkipKind::Hidden)
                .count(),
            concepts: counts
                .iter()
                .map(|(c, &n)| ConceptCount {
                    concept: c.to_string(),
                    count: n,
                })
                .collect(),
            labels,
            sizes: size_stats(&sizes),
            color_modes,
            small: sizes
                .iter()
                .filter(|(w, h)| (*w).min(*h) < opts.min_size)
                .count(),
            exif_rotated: usable
                .iter()
                .filter(|&&i| looks[i].orientation.is_some())
                .count(),
        });
    }

    // Errors first, in check order within each severity.
    findings.sort_by_key(|f| f.severity);
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    Ok(CheckReport {
        format: REPORT_FORMAT,
        root: root.to_path_buf(),
        layout: layout.into(),
        options: opts.clone(),
        concepts: vocabulary,
        splits: reports,
        sizes: size_stats(&all_sizes),
        warnings: findings.len() - errors,
        errors,
        findings,
        seconds: start.elapsed().as_secs_f64(),
    })
}

impl Entry {
    fn source_path(&self) -> &Path {
        match &self.source {
            Source::File(p) => p,
            Source::Pixels { name, .. } => name,
        }
    }
}

fn size_stats(sizes: &[(u32, u32)]) -> Option<SizeStats> {
    Some(SizeStats {
        width: Range::of(sizes.iter().map(|s| s.0).collect())?,
        height: Range::of(sizes.iter().map(|s| s.1).collect())?,
    })
}

/// Few images, unseen concepts and imbalance of the training split.
fn balance_findings(
    s: &SplitData,
    counts: &BTreeMap<&str, usize>,
    opts: &CheckOptions,
    findings: &mut Vec<Finding>,
) {
    let folders: BTreeSet<&str> = s.folders.iter().map(|(c, _)| c.as_str()).collect();
    for (&c, &n) in counts {
        if n == 0 {
            // An empty concept folder is an error of its own.
            if !folders.contains(c) {
                findings.push(Finding {
                    severity: Severity::Warning,
                    message: format!(
                        "{}: concept {c:?} has no image; the model cannot learn it",
                        s.name
                    ),
                    problem: Problem::UnseenConcept {
                        split: s.name.clone(),
                        concept: c.to_string(),
                    },
                });
            }
        } else if n < opts.min_images {
            findings.push(Finding {
                severity: Severity::Warning,
                message: format!(
                    "{}: concept {c:?} has {n} image{}, fewer than {}",
                    s.name,
                    if n == 1 { "" } else { "s" },
                    opts.min_images
                ),
                problem: Problem::FewImages {
                    split: s.name.clone(),
                    concept: c.to_string(),
                    count: n,
                    minimum: opts.min_images,
                },
            });
        }
    }
    let present = counts.iter().filter(|(_, &n)| n > 0);
    let largest = present
        .clone()
        .max_by_key(|(c, &n)| (n, std::cmp::Reverse(*c)));
    let smallest = present.min_by_key(|(c, &n)| (n, *c));
    if let (Some((&big, &nb)), Some((&small, &ns))) = (largest, smallest) {
        let ratio = nb as f64 / ns as f64;
        if ratio > opts.max_imbalance {
            findings.push(Finding {
                severity: Severity::Warning,
                message: format!(
                    "{}: imbalanced: {big:?} has {nb} images, {small:?} {ns} ({ratio:.0}×, over {}×)",
                    s.name, opts.max_imbalance
                ),
                problem: Problem::Imbalance {
                    split: s.name.clone(),
                    largest: big.to_string(),
                    largest_count: nb,
                    smallest: small.to_string(),
                    smallest_count: ns,
                    ratio,
                    limit: opts.max_imbalance,
                },
            });
        }
    }
}

/// Groups of images whose hashes are within `limit` of another member (single
/// linkage), each with the largest distance that joined it. All pairs are
/// compared (in parallel): 20,000 images are 2·10⁸ pairs of four XOR-popcounts,
/// about a second per core.
fn near_groups(hashed: &[(usize, inspect::PHash)], limit: u32) -> Vec<(Vec<usize>, u32)> {
    let pairs: Vec<(usize, usize, u32)> = (0..hashed.len())
        .into_par_iter()
        .flat_map_iter(|a| {
            let ha = hashed[a].1;
            hashed[a + 1..]
                .iter()
                .enumerate()
                .filter_map(move |(k, (_, hb))| {
                    let d = inspect::distance(&ha, hb);
                    (d <= limit).then_some((a, a + 1 + k, d))
                })
        })
        .collect();
    let mut parent: Vec<usize> = (0..hashed.len()).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for &(a, b, _) in &pairs {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let mut groups: BTreeMap<usize, (Vec<usize>, u32)> = BTreeMap::new();
    for &(a, _, d) in &pairs {
        let root = find(&mut parent, a);
        let g = groups.entry(root).or_default();
        g.1 = g.1.max(d);
    }
    for (i, (item, _)) in hashed.iter().enumerate() {
        let root = find(&mut parent, i);
        if let Some(g) = groups.get_mut(&root) {
            g.0.push(*item);
        }
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_groups_link_within_the_limit_only() {
        // 0 and 1 differ by 2 bits, 1 and 2 by 3 (so 0-2 joins through 1), 3 is far.
        let h = |w: u64| [w, 0, 0, 0];
        let hashed = [
            (10, h(0)),
            (11, h(0b11)),
            (12, h(0b11111)),
            (13, [u64::MAX; 4]),
        ];
        assert_eq!(near_groups(&hashed, 3), vec![(vec![10, 11, 12], 3)]);
        assert_eq!(near_groups(&hashed, 2), vec![(vec![10, 11], 2)]);
        assert!(near_groups(&hashed, 1).is_empty());
    }

    #[test]
    fn range_takes_the_lower_median() {
        let r = Range::of(vec![5, 1, 3, 9]).unwrap();
        assert_eq!((r.min, r.median, r.max), (1, 3, 9));
        assert!(Range::of(Vec::new()).is_none());
    }
}
