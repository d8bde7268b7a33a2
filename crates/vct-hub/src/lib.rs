//! Finding and downloading pretrained weight files.
//!
//! A [`WeightsSource`] names a file of a Hugging Face Hub repository or a plain
//! URL whose file name carries a sha256 prefix (torchvision-hub style).
//! [`fetch`] returns the file from the cache, downloading it first unless
//! offline; [`cached`] only looks; [`verify`] re-hashes what is cached.
//!
//! Hub files land in the standard Hugging Face cache (`HF_HUB_CACHE`, else
//! `$HF_HOME/hub`, else `~/.cache/huggingface/hub`), in the layout timm and
//! `huggingface_hub` read, through the `hf-hub` crate's sync API. Plain-URL
//! files land in [`URL_CACHE_DIR`] inside the same root. See [`cache`] for the
//! layout and [`download`](mod@download) for what this crate adds to hf-hub
//! (checks of size and hash, discarding partial files that cannot be resumed).
//!
//! [`HubOptions::from_env`] reads `HF_ENDPOINT` (a mirror), `HF_HUB_OFFLINE`
//! (never open a socket), `HF_HUB_CACHE` / `HF_HOME` and `HF_TOKEN`.

#![warn(missing_docs)]

pub mod cache;
pub mod download;
mod error;
pub mod hash;
mod options;
mod source;
#[cfg(feature = "test-server")]
pub mod test_server;

pub use cache::{
    cache_location, cached, cached_file, verify, CachedFile, Expected, Verified, URL_CACHE_DIR,
};
pub use download::{download, fetch};
pub use error::{HubError, OFFLINE_HINT};
pub use options::{env_flag, HubOptions, DEFAULT_ENDPOINT};
pub use source::{
    sha256_prefix_in_name, WeightsSource, DEFAULT_HUB_FILE, DEFAULT_REVISION, MIN_SHA256_PREFIX,
};

/// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
