//! Downloads: Hub files through `hf-hub`'s sync API, plain URLs with `ureq`.
//!
//! Hub files go through [`hf_hub::api::sync`], which writes the standard cache
//! layout and resumes a `blobs/<etag>.part` left by an interrupted download
//! with an HTTP range request. Its sync API does not check what it wrote, so
//! this module wraps it:
//! - it asks for the file's metadata first (etag, size, commit) to turn a
//!   refused connection, a 404 or a server that is not a Hub into a named error
//!   before anything is written, and to discard a `.part` that cannot be resumed
//!   (larger than the file: hf-hub would refuse it forever);
//! - after the download it checks the size and the hash the blob name promises
//!   (the sha256 for LFS files, git's blob sha1 otherwise) and deletes a file
//!   that does not match, so a resume that went wrong (a server that ignores
//!   `Range` appends the whole file to the partial one) is never used.
//!
//! hf-hub has no API for files outside a repository, so plain URLs are fetched
//! with `ureq` (the client hf-hub links): `<name>.part` next to the final file,
//! resumed with `Range` when the server answers 206 (restarted on 200),
//! sha256-checked while streaming, renamed into place only when complete and
//! matching.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use sha2::Digest as _;

use crate::cache::{check_file, hub_repo_dir, url_cache_path, Expected};
use crate::error::HubError;
use crate::options::HubOptions;
use crate::source::WeightsSource;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Resumed attempts after a connection breaks mid-file, before giving up
/// (the partial file stays for the next fetch).
pub const RETRIES: usize = 2;

/// Downloads `src` into the cache (even when it is already there) and returns
/// the file's path; refused when `opts.offline`.
pub fn download(src: &WeightsSource, opts: &HubOptions) -> Result<PathBuf, HubError> {
    src.validate()?;
    let label = src.to_string();
    if opts.offline {
        return Err(HubError::Offline {
            what: label,
            looked: crate::cache::cache_location(src, opts),
            why: opts.offline_reason(),
        });
    }
    match src {
        WeightsSource::Hub {
            repo,
            revision,
            file,
        } => download_hub(src, repo, revision, file, opts),
        WeightsSource::Url {
            url,
            file_name,
            sha256,
        } => download_url(&label, url, file_name, sha256, opts),
    }
}

/// The cached file of `src`, downloading it first unless offline.
pub fn fetch(src: &WeightsSource, opts: &HubOptions) -> Result<PathBuf, HubError> {
    src.validate()?;
    match crate::cache::cached(src, opts) {
        Some(p) => Ok(p),
        None => download(src, opts),
    }
}

fn map_status(label: &str, url: &str, status: u16) -> HubError {
    match status {
        401 | 403 | 404 | 410 => HubError::NotFound {
            what: label.to_string(),
            url: url.to_string(),
            status,
            detail: String::new(),
        },
        _ => HubError::Http {
            what: label.to_string(),
            url: url.to_string(),
            status,
        },
    }
}

fn map_ureq(label: &str, url: &str, e: ureq::Error) -> HubError {
    match e {
        ureq::Error::StatusCode(s) => map_status(label, url, s),
        other => HubError::Unreachable {
            what: label.to_string(),
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}

fn map_api(label: &str, url: &str, cache: &Path, e: ApiError) -> HubError {
    let protocol = |reason: String| HubError::Protocol {
        what: label.to_string(),
        url: url.to_string(),
        reason,
    };
    match e {
        ApiError::RequestError(e) => map_ureq(label, url, *e),
        ApiError::MissingHeader(h) => protocol(format!("no {h} header")),
        ApiError::InvalidHeader(h) => protocol(format!("malformed {h} header")),
        ApiError::ParseIntError(e) => protocol(format!("malformed Content-Range size: {e}")),
        ApiError::TooManyRetries(inner) => map_api(label, url, cache, *inner),
        ApiError::LockAcquisition(path) => HubError::Locked {
            what: label.to_string(),
            path,
        },
        ApiError::InvalidResume => protocol("partial file larger than the file".into()),
        ApiError::IoError(e) => HubError::io(cache, e),
    }
}

fn download_hub(
    src: &WeightsSource,
    repo: &str,
    revision: &str,
    file: &str,
    opts: &HubOptions,
) -> Result<PathBuf, HubError> {
    let label = src.to_string();
    let url = src.remote_url(&opts.endpoint);
    let api = ApiBuilder::from_cache(Cache::new(opts.cache_dir.clone()))
        .with_endpoint(opts.endpoint.trim_end_matches('/').to_string())
        .with_token(opts.token.clone())
        .with_progress(opts.progress)
        .with_retries(RETRIES)
        .with_user_agent("vct-hub", VERSION)
        .build()
        .map_err(|e| map_api(&label, &url, &opts.cache_dir, e))?;
    let meta = api
        .metadata(&url)
        .map_err(|e| map_api(&label, &url, &opts.cache_dir, e))?;
    let etag = meta.etag().to_string();
    // The etag names the blob file: it must not walk out of the blobs folder.
    if etag.is_empty() || !etag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(HubError::Protocol {
            what: label,
            url,
            reason: format!("etag {etag:?} is not a hash"),
        });
    }
    let size = meta.size() as u64;
    let blobs = hub_repo_dir(&opts.cache_dir, repo).join("blobs");
    let part = blobs.join(format!("{etag}.part"));
    if std::fs::metadata(&part).is_ok_and(|m| m.len() > size) {
        std::fs::remove_file(&part).map_err(|e| HubError::io(&part, e))?;
    }
    let repo_api = api.repo(Repo::with_revision(
        repo.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    let result = match repo_api.download(file) {
        Err(ApiError::TooManyRetries(last)) => Err(*last),
        r => r,
    };
    let path = match result {
        Ok(p) => p,
        Err(ApiError::IoError(e)) if part.is_file() => {
            return Err(HubError::Interrupted {
                what: label,
                url,
                received: std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0),
                total: Some(size),
                part,
                reason: e.to_string(),
            })
        }
        Err(e) => return Err(map_api(&label, &url, &opts.cache_dir, e)),
    };
    let got = std::fs::metadata(&path)
        .map_err(|e| HubError::io(&path, e))?
        .len();
    if got != size {
        crate::cache::remove_cached(&path);
        return Err(HubError::ChecksumMismatch {
            what: label,
            path,
            kind: "size",
            expected: format!("{size} bytes"),
            actual: format!("{got} bytes"),
        });
    }
    check_file(&label, &path, Expected::from_blob_name(&etag).as_ref())?;
    Ok(path)
}

/// Why a plain-URL attempt must start over from byte 0.
enum Attempt {
    Done(PathBuf),
    Restart,
}

fn download_url(
    label: &str,
    url: &str,
    file_name: &str,
    sha256: &str,
    opts: &HubOptions,
) -> Result<PathBuf, HubError> {
    let dest = url_cache_path(&opts.cache_dir, file_name);
    let dir = dest.parent().unwrap_or(&opts.cache_dir).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|e| HubError::io(&dir, e))?;
    let part = dir.join(format!("{file_name}.part"));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(format!("vct-hub/{VERSION}"))
        .build()
        .into();
    let (mut restarts, mut resumes) = (0, 0);
    loop {
        match url_attempt(&agent, label, url, sha256, &part, &dest, opts) {
            Ok(Attempt::Done(p)) => return Ok(p),
            Ok(Attempt::Restart) if restarts == 0 => {
                restarts += 1;
                std::fs::remove_file(&part).map_err(|e| HubError::io(&part, e))?;
            }
            Ok(Attempt::Restart) => break,
            Err(HubError::Interrupted { .. }) if resumes < RETRIES => {
                resumes += 1;
                std::thread::sleep(Duration::from_millis(300 * resumes as u64));
            }
            Err(e) => return Err(e),
        }
    }
    Err(HubError::Protocol {
        what: label.to_string(),
        url: url.to_string(),
        reason: "the server refused to resume and to restart the download".into(),
    })
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

fn progress_bar(total: Option<u64>, name: &str, start: u64) -> indicatif::ProgressBar {
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(name.to_string());
    bar.set_position(start);
    bar
}

fn url_attempt(
    agent: &ureq::Agent,
    label: &str,
    url: &str,
    sha256: &str,
    part: &Path,
    dest: &Path,
    opts: &HubOptions,
) -> Result<Attempt, HubError> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    // No gzip: the bytes on disk must be the file's, and ranges must count them.
    let mut req = agent.get(url).header("Accept-Encoding", "identity");
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| map_ureq(label, url, e))?;
    let status = resp.status().as_u16();
    let length = resp.body().content_length();
    let (start, total) = match status {
        200 => (0, length),
        206 => {
            let cr = resp
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(content_range);
            match cr {
                Some((s, t)) if s == have => (s, t.or(length.map(|l| l + s))),
                _ => return Ok(Attempt::Restart),
            }
        }
        // The partial file cannot be resumed (e.g. it already has every byte).
        416 if have > 0 => return Ok(Attempt::Restart),
        s => return Err(map_status(label, url, s)),
    };
    let mut hasher = sha2::Sha256::new();
    let mut file = if start == 0 {
        std::fs::File::create(part).map_err(|e| HubError::io(part, e))?
    } else {
        let mut f = std::fs::File::open(part).map_err(|e| HubError::io(part, e))?;
        std::io::copy(&mut f, &mut HashWriter(&mut hasher)).map_err(|e| HubError::io(part, e))?;
        std::fs::OpenOptions::new()
            .append(true)
            .open(part)
            .map_err(|e| HubError::io(part, e))?
    };
    let bar = opts.progress.then(|| {
        progress_bar(
            total,
            dest.file_name().and_then(|n| n.to_str()).unwrap_or(""),
            start,
        )
    });
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = start;
    let interrupted = |received: u64, reason: String| HubError::Interrupted {
        what: label.to_string(),
        url: url.to_string(),
        received,
        total,
        part: part.to_path_buf(),
        reason,
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.flush();
                if let Some(b) = &bar {
                    b.abandon();
                }
                return Err(interrupted(received, e.to_string()));
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| HubError::io(part, e))?;
        hasher.update(&buf[..n]);
        received += n as u64;
        if let Some(b) = &bar {
            b.set_position(received);
        }
    }
    file.sync_all().map_err(|e| HubError::io(part, e))?;
    drop(file);
    if let Some(b) = &bar {
        b.finish();
    }
    if let Some(t) = total {
        if received != t {
            return Err(interrupted(
                received,
                "the server closed the connection early".into(),
            ));
        }
    }
    let actual: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !actual.starts_with(sha256) {
        let _ = std::fs::remove_file(part);
        return Err(HubError::ChecksumMismatch {
            what: label.to_string(),
            path: part.to_path_buf(),
            kind: if sha256.len() == 64 {
                "sha256"
            } else {
                "sha256 prefix"
            },
            expected: sha256.to_string(),
            actual,
        });
    }
    std::fs::rename(part, dest).map_err(|e| HubError::io(dest, e))?;
    Ok(Attempt::Done(dest.to_path_buf()))
}

/// Feeds the bytes of a resumed partial file to the hasher.
struct HashWriter<'a>(&'a mut sha2::Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        assert_eq!(content_range("bytes 10-99/100"), Some((10, Some(100))));
        assert_eq!(content_range("bytes 0-0/*"), Some((0, None)));
        assert_eq!(content_range("items 0-1/2"), None);
    }
}
