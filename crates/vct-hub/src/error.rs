//! Errors of finding and downloading weight files. Each names what it tried
//! (the source, the URL, the file) and how to get past it.

use std::path::PathBuf;

/// How to go on without a network, appended to errors of reaching a server.
pub const OFFLINE_HINT: &str =
    "to work without a network: pass --offline and give the file with --weights FILE \
(or put it in $VCT_WEIGHTS_DIR), or run `cargo xtask weights fetch` on a connected machine \
and copy its Hugging Face cache folder (HF_HUB_CACHE) here";

/// Anything that can go wrong finding, downloading or checking a weights file.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A source string (`--weights-source`, a URL, a repo name) that cannot be used.
    #[error("invalid weights source {input:?}: {reason}")]
    InvalidSource {
        /// The string as given.
        input: String,
        /// What is wrong and what was expected.
        reason: String,
    },

    /// Offline (`--offline` or `HF_HUB_OFFLINE`) and the file is not in the cache.
    #[error(
        "{what} is not in the cache (looked for {looked}) and downloads are off \
         ({why}); run `cargo xtask weights fetch` on a connected machine and copy the cache, \
         or give the file with --weights FILE"
    )]
    Offline {
        /// The source that was asked for.
        what: String,
        /// The cache path it would have been at.
        looked: PathBuf,
        /// Which setting turned downloads off.
        why: String,
    },

    /// The server could not be reached (no network, DNS failure, refused connection, TLS).
    #[error("could not reach {url}{}: {reason}; {hint}", for_what(what, url), hint = OFFLINE_HINT)]
    Unreachable {
        /// The source that was asked for.
        what: String,
        /// The URL tried.
        url: String,
        /// The client's reason.
        reason: String,
    },

    /// The server answered that the file (or the repository) does not exist.
    #[error("{what} was not found{} (HTTP {status}{detail}); check the repository and file name{hint}",
        if what == url { String::new() } else { format!(" at {url}") },
        detail = if detail.is_empty() { String::new() } else { format!(", {detail}") },
        hint = if *status == 401 || *status == 403 {
            "; private or gated repositories also need a token (HF_TOKEN or `huggingface-cli login`)"
        } else { "" })]
    NotFound {
        /// The source that was asked for (repo and file, or the URL).
        what: String,
        /// The URL tried.
        url: String,
        /// The HTTP status (404, or 401/403 as the Hub answers for unknown repositories).
        status: u16,
        /// The Hub's `X-Error-Code` / message, when it sent one.
        detail: String,
    },

    /// Any other unexpected HTTP status.
    #[error("{url} answered HTTP {status}{}", for_what(what, url))]
    Http {
        /// The source that was asked for.
        what: String,
        /// The URL tried.
        url: String,
        /// The HTTP status.
        status: u16,
    },

    /// The server's answer lacks what a Hugging Face Hub (or mirror) sends.
    #[error(
        "unexpected answer from {url}{}: {reason} (is HF_ENDPOINT a Hugging Face Hub or mirror?)",
        for_what(what, url)
    )]
    Protocol {
        /// The source that was asked for.
        what: String,
        /// The URL tried.
        url: String,
        /// What was missing or malformed.
        reason: String,
    },

    /// The connection broke before the whole file arrived. The partial file is
    /// never used; it is kept apart (`*.part`) for the next fetch to resume.
    #[error(
        "download of {what}{} stopped after {received} of {total} bytes ({reason}); \
         nothing was put in the cache: the partial file {} is resumed by the next fetch \
         (delete it to start over)",
        if what == url { String::new() } else { format!(" from {url}") },
        part.display(),
        total = total.map_or_else(|| "?".to_string(), |t| t.to_string())
    )]
    Interrupted {
        /// The source that was asked for.
        what: String,
        /// The URL tried.
        url: String,
        /// Bytes on disk in the partial file.
        received: u64,
        /// The file's full size, when the server said.
        total: Option<u64>,
        /// The partial file kept for resuming.
        part: PathBuf,
        /// The client's reason.
        reason: String,
    },

    /// The file's hash is not what the source promises; the file was deleted.
    #[error(
        "checksum mismatch for {what}: expected {kind} {expected}, got {actual}; \
         the file {} was deleted (fetch again to re-download)",
        path.display()
    )]
    ChecksumMismatch {
        /// The source that was asked for.
        what: String,
        /// The file that was checked (now deleted).
        path: PathBuf,
        /// `sha256`, `sha256 prefix` or `git blob sha1`.
        kind: &'static str,
        /// The expected hash (or prefix), lowercase hex.
        expected: String,
        /// The hash computed from the file's bytes (same kind, full length).
        actual: String,
    },

    /// `verify` was asked about a source that is not in the cache.
    #[error("{what} is not in the cache (looked for {})", looked.display())]
    NotCached {
        /// The source that was asked for.
        what: String,
        /// The cache path it would have been at.
        looked: PathBuf,
    },

    /// Another process holds the download lock of this file.
    #[error("another process is downloading {what} (lock {}); wait for it or remove the lock if it is stale", path.display())]
    Locked {
        /// The source that was asked for.
        what: String,
        /// The lock file.
        path: PathBuf,
    },

    /// Reading or writing a file of the cache failed.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
}

/// ` (for SOURCE)` when the source is not the URL itself.
fn for_what(what: &str, url: &str) -> String {
    if what == url {
        String::new()
    } else {
        format!(" (for {what})")
    }
}

impl HubError {
    /// An [`HubError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> HubError {
        HubError::Io {
            path: path.into(),
            reason: err.to_string(),
        }
    }

    /// True for errors that a connected machine would not have (offline, unreachable).
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            HubError::Offline { .. } | HubError::Unreachable { .. } | HubError::Interrupted { .. }
        )
    }
}
