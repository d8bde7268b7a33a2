//! Image classification datasets and a prefetching batch loader for vct.
//!
//! - [`Dataset`]: the items (image + concept indices) of a folder tree
//!   (`root/<concept>/<image>`), a CSV / JSONL manifest or CIFAR-10 binary files,
//!   with its [`Concepts`] and the files it skipped.
//! - [`find_splits`] / [`split`]: `train/` + `val/` folders, or a stratified split by seed.
//! - [`epoch_order`]: which items an epoch visits (shuffled, cycled, optionally class-balanced).
//! - [`Loader`]: decodes and augments on a rayon pool into a bounded queue of
//!   [`LoadedBatch`]es.
//! - [`check`]: a dataset check before training (unreadable and non-image files,
//!   small and EXIF-rotated images, exact and near duplicates, leakage, counts).
//! - [`demo`]: a procedurally drawn dataset for the demo run and tests.

pub mod check;
mod cifar;
mod concepts;
mod dataset;
pub mod demo;
mod error;
mod loader;
mod manifest;
mod sampler;

pub use cifar::{cifar10_from_dir, read_cifar10_bin, CIFAR10_CLASSES};
pub use concepts::Concepts;
pub use dataset::{
    find_splits, split, CorruptPolicy, Dataset, Item, OnError, OpenOptions, SkipKind, Skipped,
    Source,
};
pub use error::DataError;
pub use loader::{LoadedBatch, Loader, LoaderConfig, Progress};
pub use sampler::epoch_order;

/// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
