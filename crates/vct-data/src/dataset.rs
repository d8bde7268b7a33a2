//! Datasets: items with concept indices, read from folders, manifests or CIFAR-10
//! binaries, plus the splits.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::seq::SliceRandom;
use rayon::prelude::*;
use vct_augment::{
    decode_file, AugmentError, DecodeOptions, ImageSource, RgbImage, IMAGE_EXTENSIONS,
};

use crate::error::{config, io};
use crate::{Concepts, DataError};

/// Where an item's pixels come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// An image file, decoded when loaded.
    File(PathBuf),
    /// Pixels already in memory (CIFAR-10 binaries); `name` identifies them in messages.
    Pixels {
        /// A name such as `data_batch_1.bin#17`.
        name: PathBuf,
        /// The image.
        image: Arc<RgbImage>,
    },
}

/// One image and its concept indices (one for single-label data).
#[derive(Debug, Clone)]
pub struct Item {
    /// The image.
    pub source: Source,
    /// Indices into the dataset's [`Concepts`], sorted.
    pub labels: Vec<usize>,
    /// The manifest line the item was read from (`None` for folders and CIFAR-10).
    pub line: Option<usize>,
}

impl Item {
    /// The file (or in-memory name) of the image.
    pub fn path(&self) -> &Path {
        match &self.source {
            Source::File(p) => p,
            Source::Pixels { name, .. } => name,
        }
    }

    /// Where [`vct_augment::Pipeline::load_into`] reads the image from.
    pub fn image_source(&self) -> ImageSource<'_> {
        match &self.source {
            Source::File(p) => ImageSource::File(p),
            Source::Pixels { image, .. } => ImageSource::Pixels(image),
        }
    }

    /// Decodes the image.
    pub fn load(&self, opts: &DecodeOptions) -> Result<RgbImage, AugmentError> {
        match &self.source {
            Source::File(p) => decode_file(p, opts),
            Source::Pixels { image, .. } => Ok(RgbImage::clone(image)),
        }
    }
}

/// Why a file was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    /// A hidden file or folder (name starting with `.`).
    Hidden,
    /// Not an image by its extension, or not inside a concept folder.
    NotImage,
    /// An image that cannot be read or decoded, or is over the pixel limit.
    Unreadable,
}

/// A file left out, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// What was wrong.
    pub reason: String,
    /// The category.
    pub kind: SkipKind,
}

/// What to do with an image that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorruptPolicy {
    /// Leave it out, record it in `skipped` (and log it in the loader).
    #[default]
    Skip,
    /// Stop with an error naming the file.
    Fail,
}

/// The loader's error policy under the name the trainer's API uses.
pub type OnError = CorruptPolicy;

/// How to open a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Unreadable images: skip or fail.
    pub policy: CorruptPolicy,
    /// Decoding settings (the pixel limit is checked while scanning).
    pub decode: DecodeOptions,
    /// Read each file's header while scanning (catches empty, truncated-header,
    /// non-image and oversized files before training; default true).
    pub check_headers: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            policy: CorruptPolicy::Skip,
            decode: DecodeOptions::default(),
            check_headers: true,
        }
    }
}

/// A set of labelled images.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder, manifest or CIFAR-10 path it was read from.
    pub root: PathBuf,
    /// The concept index.
    pub concepts: Concepts,
    /// The images, in a stable order (sorted paths / manifest order).
    pub items: Vec<Item>,
    /// Files left out while scanning.
    pub skipped: Vec<Skipped>,
    /// True when some image has other than exactly one concept (manifest rows
    /// with several concepts or none); false for folders, CIFAR-10 and
    /// manifests whose every row names one concept.
    pub multi_label: bool,
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn has_image_ext(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

pub(crate) fn ext_is(p: &Path, ext: &str) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Reads the header of an image file: format, dimensions, pixel limit.
fn check_header(path: &Path, opts: &DecodeOptions) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut head = Vec::with_capacity(64);
    file.take(64)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot read: {e}"))?;
    if head.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
    image::guess_format(&head).map_err(|_| {
        "not a recognised image format (JPEG, PNG, WebP, BMP, GIF, TIFF)".to_string()
    })?;
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("cannot open: {e}"))?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| format!("cannot read the image header: {e}"))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > opts.max_pixels {
        return Err(format!(
            "{w}x{h} = {pixels} pixels, over the limit of {}",
            opts.max_pixels
        ));
    }
    if pixels == 0 {
        return Err(format!("image has no pixels ({w}x{h})"));
    }
    Ok(())
}

/// Keeps the files whose header reads (in parallel), recording the others.
/// A file to check, its concept indices and its manifest line.
pub(crate) type FileRow = (PathBuf, Vec<usize>, Option<usize>);

pub(crate) fn check_files(
    files: Vec<FileRow>,
    opts: &OpenOptions,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<Item>, DataError> {
    let results: Vec<(FileRow, Result<(), String>)> = if opts.check_headers {
        files
            .into_par_iter()
            .map(|row| {
                let r = check_header(&row.0, &opts.decode);
                (row, r)
            })
            .collect()
    } else {
        files.into_iter().map(|row| (row, Ok(()))).collect()
    };
    let mut items = Vec::with_capacity(results.len());
    for ((path, labels, line), r) in results {
        match r {
            Ok(()) => items.push(Item {
                source: Source::File(path),
                labels,
                line,
            }),
            Err(reason) => {
                if opts.policy == CorruptPolicy::Fail {
                    return Err(DataError::Image(AugmentError::Decode { path, reason }));
                }
                skipped.push(Skipped {
                    path,
                    reason,
                    kind: SkipKind::Unreadable,
                });
            }
        }
    }
    Ok(items)
}

/// Image files under `dir` (recursively, sorted), non-images and hidden entries recorded.
fn scan_images(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), DataError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort();
    for p in entries {
        if is_hidden(&p) {
            skipped.push(Skipped {
                reason: "hidden".into(),
                path: p,
                kind: SkipKind::Hidden,
            });
        } else if p.is_dir() {
            scan_images(&p, out, skipped)?;
        } else if has_image_ext(&p) {
            out.push(p);
        } else {
            skipped.push(Skipped {
                reason: format!(
                    "not an image (extension not one of {})",
                    IMAGE_EXTENSIONS.join(", ")
                ),
                path: p,
                kind: SkipKind::NotImage,
            });
        }
    }
    Ok(())
}

/// One concept folder of a folder dataset and the image files under it.
pub(crate) struct ConceptFolder {
    /// The folder's name: the concept.
    pub name: String,
    /// The folder.
    pub path: PathBuf,
    /// Files with an image extension under it (recursively, sorted), headers unread.
    pub images: Vec<PathBuf>,
}

/// What `root/<concept>/<image>` holds before any file is opened.
pub(crate) struct FolderListing {
    /// The concept folders, sorted by path.
    pub folders: Vec<ConceptFolder>,
    /// Hidden entries, non-images and files outside a concept folder.
    pub skipped: Vec<Skipped>,
}

/// Lists a folder dataset: every non-hidden subfolder of `root` is a concept
/// (empty ones included: the caller decides what an empty concept means).
pub(crate) fn list_folder(root: &Path) -> Result<FolderListing, DataError> {
    let mut skipped = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(io(root))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(root))?;
    entries.sort();
    let mut folders = Vec::new();
    for p in entries {
        if is_hidden(&p) {
            skipped.push(Skipped {
                reason: "hidden".into(),
                path: p,
                kind: SkipKind::Hidden,
            });
        } else if p.is_dir() {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut images = Vec::new();
            scan_images(&p, &mut images, &mut skipped)?;
            folders.push(ConceptFolder {
                name,
                path: p,
                images,
            });
        } else {
            skipped.push(Skipped {
                reason: "file outside a concept folder".into(),
                path: p,
                kind: SkipKind::NotImage,
            });
        }
    }
    Ok(FolderListing { folders, skipped })
}

impl Dataset {
    /// Opens a folder (`root/<concept>/<image>`; with `train/`, its training part),
    /// a `.csv` / `.jsonl` manifest, or CIFAR-10 binaries (a folder of
    /// `data_batch_*.bin` or one `.bin` file), with default options.
    pub fn open(path: &Path) -> Result<Dataset, DataError> {
        Dataset::open_with(path, &OpenOptions::default(), None)
    }

    /// Opens a dataset whose concepts must be among `concepts` (a validation set,
    /// or new data for a trained model); the index is `concepts`.
    pub fn open_with_concepts(path: &Path, concepts: &Concepts) -> Result<Dataset, DataError> {
        Dataset::open_with(path, &OpenOptions::default(), Some(concepts))
    }

    /// Opens with explicit options and optionally a fixed concept index.
    pub fn open_with(
        path: &Path,
        opts: &OpenOptions,
        concepts: Option<&Concepts>,
    ) -> Result<Dataset, DataError> {
        if path.is_dir() {
            if let Some((train, _)) = find_splits(path) {
                if train != path {
                    return Dataset::open_with(&train, opts, concepts);
                }
            }
            if crate::cifar::is_cifar_dir(path) {
                return crate::cifar::open_dir(path, concepts);
            }
            return Dataset::from_folder(path, opts, concepts);
        }
        if !path.exists() {
            return Err(DataError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            });
        }
        if ext_is(path, "csv") {
            crate::manifest::open_csv(path, opts, concepts)
        } else if ext_is(path, "jsonl") {
            crate::manifest::open_jsonl(path, opts, concepts)
        } else if ext_is(path, "bin") {
            crate::cifar::open_files(path, &[path.to_path_buf()], concepts)
        } else {
            Err(DataError::NotADataset {
                path: path.to_path_buf(),
            })
        }
    }

    /// Reads `root/<concept>/<image>`: every non-hidden subfolder is a concept.
    pub fn from_folder(
        root: &Path,
        opts: &OpenOptions,
        concepts: Option<&Concepts>,
    ) -> Result<Dataset, DataError> {
        let FolderListing {
            folders,
            mut skipped,
        } = list_folder(root)?;
        let index = match concepts {
            Some(c) => c.clone(),
            None => Concepts::new(folders.iter().map(|f| f.name.clone()).collect())?,
        };
        let mut files = Vec::new();
        for f in &folders {
            let Some(label) = index.index(&f.name) else {
                return Err(DataError::UnknownConcept {
                    path: f.path.clone(),
                    concept: f.name.clone(),
                    known: index.len(),
                });
            };
            files.extend(f.images.iter().map(|p| (p.clone(), vec![label], None)));
        }
        let total_files = files.len();
        let items = check_files(files, opts, &mut skipped)?;
        // A concept folder whose files were all skipped is as empty as an empty one.
        for f in &folders {
            let usable = items
                .iter()
                .filter(|it| it.path().starts_with(&f.path))
                .count();
            if usable == 0 {
                let skipped_here = skipped
                    .iter()
                    .filter(|s| s.path.starts_with(&f.path))
                    .count();
                return Err(DataError::EmptyConcept {
                    path: f.path.clone(),
                    skipped: skipped_here.max(f.images.len() - usable),
                });
            }
        }
        if items.is_empty() || total_files == 0 {
            return Err(DataError::Empty {
                path: root.to_path_buf(),
                skipped: skipped.len(),
            });
        }
        Ok(Dataset {
            root: root.to_path_buf(),
            concepts: index,
            items,
            skipped,
            multi_label: false,
        })
    }

    /// A dataset from items already built (labels must index `concepts`).
    pub fn from_items(
        root: PathBuf,
        concepts: Concepts,
        items: Vec<Item>,
        multi_label: bool,
    ) -> Result<Dataset, DataError> {
        if items.is_empty() {
            return Err(DataError::Empty {
                path: root,
                skipped: 0,
            });
        }
        if let Some(bad) = items
            .iter()
            .find(|it| it.labels.iter().any(|&l| l >= concepts.len()))
        {
            return Err(DataError::UnknownConcept {
                path: bad.path().to_path_buf(),
                concept: format!("#{:?}", bad.labels),
                known: concepts.len(),
            });
        }
        Ok(Dataset {
            root,
            concepts,
            items,
            skipped: Vec::new(),
            multi_label,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Images per concept (an image counts once for each of its concepts).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.concepts.len()];
        for it in &self.items {
            for &l in &it.labels {
                counts[l] += 1;
            }
        }
        counts
    }

    /// The first image that does not carry exactly one concept, if any.
    pub fn first_not_single_label(&self) -> Option<&Item> {
        self.items.iter().find(|it| it.labels.len() != 1)
    }

    /// Refuses data with an image of several concepts or none, naming the first
    /// such row (manifest and line, or the image) and its concepts.
    pub fn require_single_label(&self) -> Result<(), DataError> {
        let Some(item) = self.first_not_single_label() else {
            return Ok(());
        };
        Err(DataError::NotSingleLabel {
            location: match item.line {
                Some(line) => format!("{}:{line}", self.root.display()),
                None => item.path().display().to_string(),
            },
            image: item.path().to_path_buf(),
            concepts: item
                .labels
                .iter()
                .map(|&l| self.concepts.names().get(l).cloned().unwrap_or_default())
                .collect(),
        })
    }

    /// Skipped files of one kind.
    pub fn skipped_count(&self, kind: SkipKind) -> usize {
        self.skipped.iter().filter(|s| s.kind == kind).count()
    }
}

/// The training and validation parts of a dataset root: `root/train.csv|jsonl`
/// with `root/val.csv|jsonl`, else `root/train` (folder) with `root/val` (or
/// `valid`, `validation`).
/// `None` when `root` has no training part.
pub fn find_splits(root: &Path) -> Option<(PathBuf, Option<PathBuf>)> {
    let first = |names: &[&str], dir: bool| {
        names
            .iter()
            .map(|n| root.join(n))
            .find(|p| if dir { p.is_dir() } else { p.is_file() })
    };
    // Manifests first: their images often live in a `train/` folder without
    // concept folders (COCO-style).
    if let Some(train) = first(&["train.csv", "train.jsonl"], false) {
        return Some((
            train,
            first(&["val.csv", "val.jsonl", "valid.csv", "valid.jsonl"], false),
        ));
    }
    if let Some(train) = first(&["train"], true) {
        return Some((train, first(&["val", "valid", "validation"], true)));
    }
    None
}

/// A stratified split by seed: `val_fraction` of each concept's images (by an
/// image's first concept) go to validation, the rest to training.
pub fn split(
    data: &Dataset,
    val_fraction: f64,
    seed: u64,
) -> Result<(Dataset, Dataset), DataError> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(config(
            "validation fraction",
            val_fraction,
            "a number in (0, 1)",
        ));
    }
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); data.concepts.len() + 1];
    for (i, it) in data.items.iter().enumerate() {
        groups[it.labels.first().copied().unwrap_or(data.concepts.len())].push(i);
    }
    let mut val_idx = BTreeSet::new();
    for (g, members) in groups.iter_mut().enumerate() {
        let mut rng = vct_augment::item_rng(seed, u64::MAX, g as u64);
        members.shuffle(&mut rng);
        let mut n_val = (members.len() as f64 * val_fraction).round() as usize;
        if members.len() >= 2 {
            n_val = n_val.clamp(1, members.len() - 1);
        }
        val_idx.extend(members.iter().take(n_val).copied());
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, it) in data.items.iter().enumerate() {
        if val_idx.contains(&i) {
            val.push(it.clone());
        } else {
            train.push(it.clone());
        }
    }
    if train.is_empty() || val.is_empty() {
        return Err(config(
            "validation fraction",
            (val_fraction, data.items.len()),
            "a split leaving images on both sides",
        ));
    }
    let mk = |items| Dataset {
        root: data.root.clone(),
        concepts: data.concepts.clone(),
        items,
        skipped: Vec::new(),
        multi_label: data.multi_label,
    };
    let mut t = mk(train);
    t.skipped = data.skipped.clone();
    Ok((t, mk(val)))
}
