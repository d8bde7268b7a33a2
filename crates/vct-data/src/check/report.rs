//! What a data check found: the report, its findings and per-split statistics.
//! Serialised as the `--json` output of `data check`; the shape is versioned by
//! [`REPORT_FORMAT`] (fields are only ever added within one format number).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::CheckOptions;

/// The version of the report's JSON shape (`"format"`).
pub const REPORT_FORMAT: u32 = 1;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The data is wrong as it stands: training would lose or refuse images, or
    /// validation would be measured on training images. `data check` exits with 1.
    Error,
    /// Worth a look before training; training works.
    Warning,
}

/// One image of a duplicate group, with where it sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The split (`train`, `val`, `test`, or `data` for a dataset without splits).
    pub split: String,
    /// The file (or `batch.bin#index` for CIFAR-10 records).
    pub path: PathBuf,
    /// Its concepts.
    pub concepts: Vec<String>,
    /// The manifest line it was listed on (`null` for folders).
    pub line: Option<usize>,
}

/// What a finding is about; serialised flat into the finding, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A file of 0 bytes (error).
    ZeroByte {
        /// The split.
        split: String,
        /// The file.
        path: PathBuf,
    },
    /// A file with an image extension whose bytes are not an image format (error).
    NotImage {
        /// The split.
        split: String,
        /// The file.
        path: PathBuf,
        /// What the bytes look like.
        reason: String,
    },
    /// An image whose header or pixels do not decode, or that is over the pixel limit (error).
    DecodeFailed {
        /// The split.
        split: String,
        /// The file.
        path: PathBuf,
        /// The decoder's reason.
        reason: String,
    },
    /// A file that cannot be read at all (error).
    Unreadable {
        /// The split.
        split: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// A manifest row whose image does not exist (error).
    MissingFile {
        /// The split.
        split: String,
        /// Where the image was looked for.
        path: PathBuf,
        /// The manifest and line.
        reason: String,
    },
    /// A file training ignores: not an image by its extension, or outside a concept folder (warning).
    IgnoredFile {
        /// The split.
        split: String,
        /// The file.
        path: PathBuf,
        /// Why it is ignored.
        reason: String,
    },
    /// An image whose shorter side is below the input size: training upsamples it (warning).
    SmallImage {
        /// The split.
        split: String,
        /// The file.
        path: PathBuf,
        /// Width in pixels (as stored, before EXIF rotation).
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The input size it was compared with.
        min_size: u32,
    },
    /// A JPEG/PNG/TIFF/WebP with an EXIF orientation other than 1 (warning): vct
    /// rotates it when decoding, tools that ignore EXIF see it sideways.
    ExifRotated {
        /// The split.
        split: String,
        /// The file.
        path: PathBuf,
        /// The EXIF orientation value (2–8).
        orientation: u8,
    },
    /// Files with identical bytes (CIFAR-10: identical pixels). An error when they
    /// are in different splits (leakage) or carry different concepts; else a warning.
    ExactDuplicate {
        /// The copies, in dataset order.
        files: Vec<FileRef>,
        /// Copies in more than one split.
        cross_split: bool,
        /// Copies with different concepts.
        conflicting_concepts: bool,
    },
    /// Images whose perceptual hashes are within the distance (resized, re-encoded
    /// or slightly edited copies); a warning, as different images can hash alike.
    NearDuplicate {
        /// The images of the group, in dataset order.
        files: Vec<FileRef>,
        /// The largest perceptual-hash distance (of 256 bits) that joined the group.
        distance: u32,
        /// Members in more than one split.
        cross_split: bool,
        /// Members with different concepts.
        conflicting_concepts: bool,
    },
    /// A concept folder with no usable image: training refuses it (error).
    EmptyConcept {
        /// The split.
        split: String,
        /// The concept.
        concept: String,
        /// The folder.
        path: PathBuf,
        /// Image files in it that cannot be used.
        unusable_files: usize,
    },
    /// A concept of a validation/test split that the training split lacks: training refuses it (error).
    UnknownConcept {
        /// The split.
        split: String,
        /// The concept.
        concept: String,
    },
    /// A concept of the concept list with no training image (warning): the model cannot learn it.
    UnseenConcept {
        /// The split.
        split: String,
        /// The concept.
        concept: String,
    },
    /// A training concept with fewer images than the minimum (warning).
    FewImages {
        /// The split.
        split: String,
        /// The concept.
        concept: String,
        /// Its images.
        count: usize,
        /// The minimum ([`CheckOptions::min_images`]).
        minimum: usize,
    },
    /// The largest training concept has more than `limit` times the images of the smallest (warning).
    Imbalance {
        /// The split.
        split: String,
        /// The concept with the most images.
        largest: String,
        /// Its images.
        largest_count: usize,
        /// The concept with the fewest (at least one) images.
        smallest: String,
        /// Its images.
        smallest_count: usize,
        /// `largest_count / smallest_count`.
        ratio: f64,
        /// The limit ([`CheckOptions::max_imbalance`]).
        limit: f64,
    },
}

impl Problem {
    /// The `kind` tag as serialised (`decode_failed`, `exact_duplicate`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::ZeroByte { .. } => "zero_byte",
            Problem::NotImage { .. } => "not_image",
            Problem::DecodeFailed { .. } => "decode_failed",
            Problem::Unreadable { .. } => "unreadable",
            Problem::MissingFile { .. } => "missing_file",
            Problem::IgnoredFile { .. } => "ignored_file",
            Problem::SmallImage { .. } => "small_image",
            Problem::ExifRotated { .. } => "exif_rotated",
            Problem::ExactDuplicate { .. } => "exact_duplicate",
            Problem::NearDuplicate { .. } => "near_duplicate",
            Problem::EmptyConcept { .. } => "empty_concept",
            Problem::UnknownConcept { .. } => "unknown_concept",
            Problem::UnseenConcept { .. } => "unseen_concept",
            Problem::FewImages { .. } => "few_images",
            Problem::Imbalance { .. } => "imbalance",
        }
    }

    /// The file a single-file finding is about.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Problem::ZeroByte { path, .. }
            | Problem::NotImage { path, .. }
            | Problem::DecodeFailed { path, .. }
            | Problem::Unreadable { path, .. }
            | Problem::MissingFile { path, .. }
            | Problem::IgnoredFile { path, .. }
            | Problem::SmallImage { path, .. }
            | Problem::ExifRotated { path, .. }
            | Problem::EmptyConcept { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// One thing the check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// One line for people, paths relative to the checked root.
    pub message: String,
    /// The details, flattened into the finding's JSON object with its `kind`.
    #[serde(flatten)]
    pub problem: Problem,
}

/// Smallest, median and largest of a set of numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// Smallest.
    pub min: u32,
    /// Median (the lower middle value for an even count).
    pub median: u32,
    /// Largest.
    pub max: u32,
}

impl Range {
    /// The range of `values` (`None` when empty).
    pub fn of(mut values: Vec<u32>) -> Option<Range> {
        values.sort_unstable();
        Some(Range {
            min: *values.first()?,
            median: values[(values.len() - 1) / 2],
            max: *values.last()?,
        })
    }
}

/// Image dimensions of the usable images (as stored, before EXIF rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeStats {
    /// Widths.
    pub width: Range,
    /// Heights.
    pub height: Range,
}

/// How many concepts the images carry: the multi-label statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelStats {
    /// Some image has other than exactly one concept.
    pub multi_label: bool,
    /// Fewest concepts on one image.
    pub min_per_image: usize,
    /// Most concepts on one image.
    pub max_per_image: usize,
    /// Mean concepts per image.
    pub mean_per_image: f64,
    /// `histogram[k]`: images with exactly `k` concepts.
    pub histogram: Vec<usize>,
    /// Concepts with at least one image here.
    pub concepts_seen: usize,
    /// Concepts of the report's list without an image here.
    pub never_seen: Vec<String>,
}

/// Images of one concept in one split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConceptCount {
    /// The concept.
    pub concept: String,
    /// Usable images carrying it.
    pub count: usize,
}

/// One split (train, val, test, or the whole dataset) and its statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitReport {
    /// `train`, `val`, `test`, or `data`.
    pub name: String,
    /// The folder, manifest or CIFAR-10 file(s) it was read from.
    pub path: PathBuf,
    /// `folder`, `manifest` or `cifar10`.
    pub source: String,
    /// Image files (or manifest rows / records) inspected.
    pub files: usize,
    /// Of these, the ones training can use.
    pub usable: usize,
    /// Hidden files and folders (ignored by training, not reported as findings).
    pub hidden: usize,
    /// Usable images per concept of the report's list, zeros included.
    pub concepts: Vec<ConceptCount>,
    /// Concepts per image.
    pub labels: Option<LabelStats>,
    /// Image sizes.
    pub sizes: Option<SizeStats>,
    /// Usable images by colour mode as stored (`RGB`, `L`, `RGBA`, `LA`, `RGB16`, ...).
    pub color_modes: BTreeMap<String, usize>,
    /// Usable images with a shorter side below the input size.
    pub small: usize,
    /// Usable images with an EXIF orientation other than 1.
    pub exif_rotated: usize,
}

/// Everything a data check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// [`REPORT_FORMAT`].
    pub format: u32,
    /// The path that was checked.
    pub root: PathBuf,
    /// `folders`, `split_folders`, `manifest`, `split_manifests`, `cifar10` or `splits`
    /// (splits given one by one).
    pub layout: String,
    /// The settings.
    pub options: CheckOptions,
    /// The concept list: every split's concepts, sorted.
    pub concepts: Vec<String>,
    /// The splits, training first.
    pub splits: Vec<SplitReport>,
    /// Sizes over all splits.
    pub sizes: Option<SizeStats>,
    /// Errors first, then warnings; within each, in the order the checks ran.
    pub findings: Vec<Finding>,
    /// Findings of severity error.
    pub errors: usize,
    /// Findings of severity warning.
    pub warnings: usize,
    /// Wall time of the check.
    pub seconds: f64,
}

impl CheckReport {
    /// True when some finding is an error (`data check` exits with 1).
    pub fn has_errors(&self) -> bool {
        self.errors > 0
    }

    /// The findings of one kind (`"decode_failed"`, ...).
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings
            .iter()
            .filter(move |f| f.problem.kind() == kind)
    }

    /// The split named `name`.
    pub fn split(&self, name: &str) -> Option<&SplitReport> {
        self.splits.iter().find(|s| s.name == name)
    }
}
