//! Where a weights file is published: a file of a Hugging Face Hub repository,
//! or a plain URL whose file name (or an explicit value) carries its sha256.

use std::fmt;
use std::str::FromStr;

use crate::error::HubError;

/// The file taken from a Hub repository when `--weights-source REPO` names none
/// (timm publishes every checkpoint as `model.safetensors`).
pub const DEFAULT_HUB_FILE: &str = "model.safetensors";

/// The Hub branch used when no revision is given.
pub const DEFAULT_REVISION: &str = "main";

/// Shortest sha256 prefix accepted (torchvision's file names carry 8 hex digits).
pub const MIN_SHA256_PREFIX: usize = 8;

/// Where a weights file comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WeightsSource {
    /// A file of a Hugging Face Hub model repository.
    Hub {
        /// `org/name` (or `name`).
        repo: String,
        /// Branch, tag or commit (default `main`).
        revision: String,
        /// Path of the file inside the repository.
        file: String,
    },
    /// A file at a plain `http(s)` URL, checked against a sha256 (prefix).
    Url {
        /// The URL downloaded.
        url: String,
        /// The file's name in the cache (the URL's last path segment).
        file_name: String,
        /// Lowercase hex: a prefix of at least [`MIN_SHA256_PREFIX`] digits
        /// (torchvision hub style, from the file name) or the full 64.
        sha256: String,
    },
}

fn invalid(input: &str, reason: impl Into<String>) -> HubError {
    HubError::InvalidSource {
        input: input.to_string(),
        reason: reason.into(),
    }
}

fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The sha256 prefix a torchvision-hub style file name carries
/// (`bn_inception-52deb4733.pth` → `52deb4733`): the hex digits between the
/// first `-` that is followed by hex digits and a `.`, as torchvision's
/// `HASH_REGEX = r"-([a-f0-9]*)\."` finds them.
pub fn sha256_prefix_in_name(file_name: &str) -> Option<&str> {
    let bytes = file_name.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'-' {
            continue;
        }
        let rest = &file_name[i + 1..];
        let hex_len = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            .count();
        if rest.as_bytes().get(hex_len) == Some(&b'.') {
            return Some(&rest[..hex_len]);
        }
    }
    None
}

/// A repository id as the Hub allows it: `name` or `org/name`, each part of
/// letters, digits, `-`, `_`, `.`, not starting or ending with `-`/`.`, no `--` or `..`.
fn check_repo(input: &str, repo: &str) -> Result<(), HubError> {
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.is_empty() || parts.len() > 2 {
        return Err(invalid(
            input,
            format!("repository {repo:?} must be `name` or `org/name`"),
        ));
    }
    for p in &parts {
        let ok_chars = !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let ok_ends = !p.starts_with(['-', '.']) && !p.ends_with(['-', '.']);
        if !ok_chars || !ok_ends || p.contains("--") || p.contains("..") {
            return Err(invalid(
                input,
                format!(
                    "repository {repo:?}: {p:?} is not a valid name (letters, digits, '-', '_', '.'); \
                     for a file on disk use --weights FILE"
                ),
            ));
        }
    }
    Ok(())
}

/// A relative path without empty, `.` or `..` components (it is joined to cache folders).
fn check_relative(input: &str, what: &str, path: &str) -> Result<(), HubError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(invalid(
            input,
            format!("{what} {path:?} must be a relative path without empty, '.' or '..' parts"),
        ));
    }
    Ok(())
}

impl WeightsSource {
    /// A file of a Hub repository on its `main` branch (trusted input: use
    /// [`WeightsSource::parse_override`] for what a user typed).
    pub fn hub(repo: &str, file: &str) -> WeightsSource {
        WeightsSource::Hub {
            repo: repo.to_string(),
            revision: DEFAULT_REVISION.to_string(),
            file: file.to_string(),
        }
    }

    /// A plain URL whose file name carries a sha256 prefix, torchvision-hub style.
    pub fn url(url: &str) -> Result<WeightsSource, HubError> {
        let file_name = url_file_name(url)?;
        let prefix = sha256_prefix_in_name(&file_name)
            .filter(|p| p.len() >= MIN_SHA256_PREFIX)
            .ok_or_else(|| {
                invalid(
                    url,
                    format!(
                        "the file name {file_name:?} carries no sha256 prefix \
                         (expected NAME-<at least {MIN_SHA256_PREFIX} hex digits>.EXT, as torchvision's hub names files); \
                         append #sha256=<hex> to the URL to give the checksum"
                    ),
                )
            })?
            .to_string();
        Ok(WeightsSource::Url {
            url: url.to_string(),
            file_name,
            sha256: prefix,
        })
    }

    /// A plain URL with an explicit sha256 (full, or a prefix of at least 8 hex digits).
    pub fn url_with_sha256(url: &str, sha256: &str) -> Result<WeightsSource, HubError> {
        let file_name = url_file_name(url)?;
        let sha = sha256.trim().to_ascii_lowercase();
        if !is_lower_hex(&sha) || sha.len() < MIN_SHA256_PREFIX || sha.len() > 64 {
            return Err(invalid(
                url,
                format!("sha256 {sha256:?} must be {MIN_SHA256_PREFIX} to 64 hex digits"),
            ));
        }
        Ok(WeightsSource::Url {
            url: url.to_string(),
            file_name,
            sha256: sha,
        })
    }

    /// Parses a `--weights-source` value: `ORG/REPO[@REVISION][:FILE]` (file
    /// default `model.safetensors`), or an `http(s)://` URL whose file name
    /// carries a sha256 prefix, optionally followed by `#sha256=HEX`.
    pub fn parse_override(input: &str) -> Result<WeightsSource, HubError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid(input, "empty; expected ORG/REPO[:FILE] or a URL"));
        }
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return match s.split_once('#') {
                Some((url, frag)) => match frag.strip_prefix("sha256=") {
                    Some(hex) => WeightsSource::url_with_sha256(url, hex),
                    None => Err(invalid(
                        input,
                        format!("unknown URL fragment #{frag}; expected #sha256=HEX"),
                    )),
                },
                None => WeightsSource::url(s),
            };
        }
        if s.contains("://") {
            return Err(invalid(
                input,
                "only http:// and https:// URLs can be downloaded",
            ));
        }
        let (repo_rev, file) = match s.split_once(':') {
            Some((r, f)) => (r, f),
            None => (s, DEFAULT_HUB_FILE),
        };
        let (repo, revision) = match repo_rev.split_once('@') {
            Some((r, rev)) => (r, rev),
            None => (repo_rev, DEFAULT_REVISION),
        };
        check_repo(input, repo)?;
        check_relative(input, "revision", revision)?;
        check_relative(input, "file", file)?;
        Ok(WeightsSource::Hub {
            repo: repo.to_string(),
            revision: revision.to_string(),
            file: file.to_string(),
        })
    }

    /// Checks that the fields are safe to join to cache paths (sources built by
    /// hand skip [`WeightsSource::parse_override`]'s checks).
    pub fn validate(&self) -> Result<(), HubError> {
        match self {
            WeightsSource::Hub {
                repo,
                revision,
                file,
            } => {
                let input = self.to_string();
                check_repo(&input, repo)?;
                check_relative(&input, "revision", revision)?;
                check_relative(&input, "file", file)
            }
            WeightsSource::Url {
                url,
                file_name,
                sha256,
            } => {
                check_relative(url, "file name", file_name)?;
                if file_name.contains('/') {
                    return Err(invalid(url, "the cache file name must not contain '/'"));
                }
                if !is_lower_hex(sha256) || sha256.len() < MIN_SHA256_PREFIX || sha256.len() > 64 {
                    return Err(invalid(
                        url,
                        format!("sha256 {sha256:?} must be {MIN_SHA256_PREFIX} to 64 lowercase hex digits"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// The file's name (last path component).
    pub fn file_name(&self) -> &str {
        match self {
            WeightsSource::Hub { file, .. } => file.rsplit('/').next().unwrap_or(file),
            WeightsSource::Url { file_name, .. } => file_name,
        }
    }

    /// The URL this source downloads from, given the Hub `endpoint`.
    pub fn remote_url(&self, endpoint: &str) -> String {
        match self {
            WeightsSource::Hub {
                repo,
                revision,
                file,
            } => format!(
                "{}/{repo}/resolve/{}/{file}",
                endpoint.trim_end_matches('/'),
                revision.replace('/', "%2F")
            ),
            WeightsSource::Url { url, .. } => url.clone(),
        }
    }
}

/// The last path segment of an `http(s)` URL (query and fragment removed).
fn url_file_name(url: &str) -> Result<String, HubError> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| invalid(url, "expected an http:// or https:// URL"))?;
    let start = url.len() - rest.len();
    let rest = &url[start..];
    let path_part = rest.split(['?', '#']).next().unwrap_or("");
    let Some((host, path)) = path_part.split_once('/') else {
        return Err(invalid(url, "the URL has no file path"));
    };
    if host.is_empty() {
        return Err(invalid(url, "the URL has no host"));
    }
    let name = path.rsplit('/').next().unwrap_or("");
    if name.is_empty() || name == "." || name == ".." || name.contains('\\') || name.contains('%') {
        return Err(invalid(
            url,
            format!("the URL's last path segment {name:?} is not a usable file name"),
        ));
    }
    Ok(name.to_string())
}

impl fmt::Display for WeightsSource {
    /// The `--weights-source` spelling: `org/repo[@rev]:file`, or the URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightsSource::Hub {
                repo,
                revision,
                file,
            } => {
                f.write_str(repo)?;
                if revision != DEFAULT_REVISION {
                    write!(f, "@{revision}")?;
                }
                write!(f, ":{file}")
            }
            WeightsSource::Url {
                url,
                file_name,
                sha256,
            } => {
                f.write_str(url)?;
                if sha256_prefix_in_name(file_name) != Some(sha256.as_str()) {
                    write!(f, "#sha256={sha256}")?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for WeightsSource {
    type Err = HubError;

    /// Same as [`WeightsSource::parse_override`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WeightsSource::parse_override(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_style_prefix() {
        assert_eq!(
            sha256_prefix_in_name("bn_inception-52deb4733.pth"),
            Some("52deb4733")
        );
        assert_eq!(
            sha256_prefix_in_name("resnext50_32x4d_a1_0-b5a91a1d.pth"),
            Some("b5a91a1d")
        );
        assert_eq!(sha256_prefix_in_name("model.safetensors"), None);
        assert_eq!(sha256_prefix_in_name("a-XYZ.pth"), None);
    }

    #[test]
    fn parses_hub_overrides() {
        let s = WeightsSource::parse_override("timm/resnet50.a1_in1k").unwrap();
        assert_eq!(
            s,
            WeightsSource::hub("timm/resnet50.a1_in1k", "model.safetensors")
        );
        assert_eq!(s.to_string(), "timm/resnet50.a1_in1k:model.safetensors");
        let s = WeightsSource::parse_override("me/net@v2:sub/w.pth").unwrap();
        assert_eq!(
            s,
            WeightsSource::Hub {
                repo: "me/net".into(),
                revision: "v2".into(),
                file: "sub/w.pth".into()
            }
        );
        assert_eq!(WeightsSource::parse_override(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn refuses_bad_hub_overrides() {
        for bad in [
            "",
            "a/b/c",
            "./weights.pth",
            "org/../x",
            "org/name:../../etc/passwd",
            "org/name:",
            "org/name@..:f",
            "org/-x",
            "ftp://host/f-12345678.pth",
        ] {
            let e = WeightsSource::parse_override(bad).unwrap_err();
            assert!(matches!(e, HubError::InvalidSource { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_urls() {
        let s = WeightsSource::parse_override(
            "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth",
        )
        .unwrap();
        assert_eq!(s.file_name(), "bn_inception-52deb4733.pth");
        assert!(matches!(&s, WeightsSource::Url { sha256, .. } if sha256 == "52deb4733"));
        let full = "ab".repeat(32);
        let s =
            WeightsSource::parse_override(&format!("https://h/x/w.bin?a=1#sha256={full}")).unwrap();
        assert!(
            matches!(&s, WeightsSource::Url { sha256, file_name, .. } if *sha256 == full && file_name == "w.bin")
        );
        assert_eq!(WeightsSource::parse_override(&s.to_string()).unwrap(), s);
        let e = WeightsSource::parse_override("https://h/x/w.bin").unwrap_err();
        assert!(e.to_string().contains("no sha256 prefix"), "{e}");
        let e = WeightsSource::parse_override("https://h/x/w-1234.bin").unwrap_err();
        assert!(e.to_string().contains("no sha256 prefix"), "{e}");
        let e = WeightsSource::parse_override("https://h/x/w.bin#sha256=xyz").unwrap_err();
        assert!(e.to_string().contains("hex digits"), "{e}");
        assert!(WeightsSource::parse_override("https://h/").is_err());
    }

    #[test]
    fn remote_urls() {
        let s = WeightsSource::parse_override("a/b@refs/pr/1:m.safetensors").unwrap();
        assert_eq!(
            s.remote_url("http://127.0.0.1:9/"),
            "http://127.0.0.1:9/a/b/resolve/refs%2Fpr%2F1/m.safetensors"
        );
    }
}
