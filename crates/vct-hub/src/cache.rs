//! The cache on disk: the Hugging Face layout for Hub files (shared with timm
//! and `huggingface_hub`), and one folder beside the repositories for files
//! from plain URLs.
//!
//! ```text
//! $HF_HUB_CACHE/
//!   models--timm--resnet50.a1_in1k/
//!     blobs/<sha256>                       the bytes (LFS files are named by their sha256)
//!     refs/main                            the commit `main` pointed at
//!     snapshots/<commit>/model.safetensors symlink to ../../blobs/<sha256>
//!   vct-urls/
//!     bn_inception-52deb4733.pth           plain-URL files, by file name (sha256 checked)
//!     bn_inception-52deb4733.pth.part      a download in progress or interrupted
//! ```
//!
//! `hf cache scan` lists `vct-urls` among its warnings ("not a valid
//! HuggingFace cache directory"): it holds no repository, and that is harmless.

use std::path::{Path, PathBuf};

use crate::error::HubError;
use crate::hash::{git_blob_sha1_file, sha256_file};
use crate::options::HubOptions;
use crate::source::WeightsSource;

/// The folder of the Hub cache root that holds plain-URL downloads.
pub const URL_CACHE_DIR: &str = "vct-urls";

/// What a cached file's bytes should hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The full sha256 (an LFS blob's name, or a URL source's full hash).
    Sha256(String),
    /// A sha256 prefix (torchvision-hub style file names).
    Sha256Prefix(String),
    /// Git's blob sha1 (the blob name of a Hub file not stored with LFS).
    GitBlobSha1(String),
}

impl Expected {
    /// The expected value's kind, as error messages spell it.
    pub fn kind(&self) -> &'static str {
        match self {
            Expected::Sha256(_) => "sha256",
            Expected::Sha256Prefix(_) => "sha256 prefix",
            Expected::GitBlobSha1(_) => "git blob sha1",
        }
    }

    /// The expected hex value.
    pub fn value(&self) -> &str {
        match self {
            Expected::Sha256(s) | Expected::Sha256Prefix(s) | Expected::GitBlobSha1(s) => s,
        }
    }

    /// What a Hub blob's name promises: 64 hex digits are a sha256 (LFS), 40 a git sha1.
    pub fn from_blob_name(name: &str) -> Option<Expected> {
        let hex = name.bytes().all(|b| b.is_ascii_hexdigit());
        match name.len() {
            64 if hex => Some(Expected::Sha256(name.to_ascii_lowercase())),
            40 if hex => Some(Expected::GitBlobSha1(name.to_ascii_lowercase())),
            _ => None,
        }
    }
}

/// A file found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    /// The path to load (for Hub files the snapshot path, a symlink to the blob).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// What its bytes should hash to, when the cache or the source says.
    pub expected: Option<Expected>,
}

/// A cached file whose bytes were hashed and matched [`Verified::expected`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The file.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// The sha256 of its bytes, lowercase hex.
    pub sha256: String,
    /// What it was checked against (`None`: the cache keeps no hash for it,
    /// e.g. a Hub snapshot copied instead of linked on Windows).
    pub expected: Option<Expected>,
}

/// `models--org--name` inside the cache root.
pub fn hub_repo_dir(cache_dir: &Path, repo: &str) -> PathBuf {
    cache_dir.join(format!("models--{}", repo.replace('/', "--")))
}

/// The commit a revision resolves to in the cache: `refs/<revision>`, or the
/// revision itself when it is a commit hash with a snapshot.
fn cached_commit(repo_dir: &Path, revision: &str) -> Option<String> {
    if let Ok(c) = std::fs::read_to_string(repo_dir.join("refs").join(revision)) {
        let c = c.trim().to_string();
        if !c.is_empty() {
            return Some(c);
        }
    }
    let is_commit = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
    (is_commit && repo_dir.join("snapshots").join(revision).is_dir()).then(|| revision.to_string())
}

/// Where the source's file is (or would be) in the cache: the snapshot path of
/// a Hub file when its revision is known, else the repository folder; the file
/// in [`URL_CACHE_DIR`] for a URL.
pub fn cache_location(src: &WeightsSource, opts: &HubOptions) -> PathBuf {
    match src {
        WeightsSource::Hub {
            repo,
            revision,
            file,
        } => {
            let dir = hub_repo_dir(&opts.cache_dir, repo);
            match cached_commit(&dir, revision) {
                Some(c) => dir.join("snapshots").join(c).join(file),
                None => dir,
            }
        }
        WeightsSource::Url { file_name, .. } => url_cache_path(&opts.cache_dir, file_name),
    }
}

/// The cache path of a plain-URL file.
pub fn url_cache_path(cache_dir: &Path, file_name: &str) -> PathBuf {
    cache_dir.join(URL_CACHE_DIR).join(file_name)
}

/// The cached file of `src`, if complete in the cache. Never opens a socket
/// and does not re-hash (see [`verify`]); partial downloads are never returned.
pub fn cached(src: &WeightsSource, opts: &HubOptions) -> Option<PathBuf> {
    src.validate().ok()?;
    let p = cache_location(src, opts);
    // `is_file` follows the snapshot symlink: a link whose blob is gone is not
    // cached; an unresolved Hub revision gives the repository folder, not a file.
    p.is_file().then_some(p)
}

/// [`cached`] with the size and the hash the cache promises, without hashing.
pub fn cached_file(src: &WeightsSource, opts: &HubOptions) -> Option<CachedFile> {
    let path = cached(src, opts)?;
    let size = std::fs::metadata(&path).ok()?.len();
    Some(CachedFile {
        expected: expected_for(src, &path),
        path,
        size,
    })
}

/// What the bytes at `path` (the source's cached file) should hash to.
pub(crate) fn expected_for(src: &WeightsSource, path: &Path) -> Option<Expected> {
    match src {
        WeightsSource::Hub { .. } => std::fs::read_link(path)
            .ok()
            .and_then(|t| t.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .and_then(|n| Expected::from_blob_name(&n)),
        WeightsSource::Url { sha256, .. } => Some(if sha256.len() == 64 {
            Expected::Sha256(sha256.clone())
        } else {
            Expected::Sha256Prefix(sha256.clone())
        }),
    }
}

/// Deletes a cached file: for a snapshot symlink, its blob too.
pub(crate) fn remove_cached(path: &Path) {
    if let Ok(target) = std::fs::read_link(path) {
        let blob = path.parent().map_or(target.clone(), |d| d.join(&target));
        let _ = std::fs::remove_file(blob);
    }
    let _ = std::fs::remove_file(path);
}

/// Hashes `path` and compares with `expected`; on a mismatch deletes the file
/// (and its blob) and says so.
pub(crate) fn check_file(
    label: &str,
    path: &Path,
    expected: Option<&Expected>,
) -> Result<(String, u64), HubError> {
    let (sha256, size) = sha256_file(path).map_err(|e| HubError::io(path, e))?;
    let actual = match expected {
        None => return Ok((sha256, size)),
        Some(Expected::Sha256(e)) => (sha256 != *e).then(|| sha256.clone()),
        Some(Expected::Sha256Prefix(e)) => {
            (!sha256.starts_with(e.as_str())).then(|| sha256.clone())
        }
        Some(Expected::GitBlobSha1(e)) => {
            let g = git_blob_sha1_file(path).map_err(|err| HubError::io(path, err))?;
            (g != *e).then_some(g)
        }
    };
    match (actual, expected) {
        (Some(actual), Some(exp)) => {
            remove_cached(path);
            Err(HubError::ChecksumMismatch {
                what: label.to_string(),
                path: path.to_path_buf(),
                kind: exp.kind(),
                expected: exp.value().to_string(),
                actual,
            })
        }
        _ => Ok((sha256, size)),
    }
}

/// Re-hashes the cached file of `src` against the hash its source or blob
/// name promises; a mismatching file is deleted (the error says so).
pub fn verify(src: &WeightsSource, opts: &HubOptions) -> Result<Verified, HubError> {
    src.validate()?;
    let path = cached(src, opts).ok_or_else(|| HubError::NotCached {
        what: src.to_string(),
        looked: cache_location(src, opts),
    })?;
    let expected = expected_for(src, &path);
    let (sha256, size) = check_file(&src.to_string(), &path, expected.as_ref())?;
    Ok(Verified {
        path,
        size,
        sha256,
        expected,
    })
}
