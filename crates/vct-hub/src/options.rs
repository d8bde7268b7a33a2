//! Where the cache is, which server to ask, whether to ask at all: the
//! Hugging Face environment variables, as `huggingface_hub` and timm read them.

use std::path::PathBuf;

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How [`crate::fetch`] and friends reach the cache and the network.
#[derive(Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// Hub server (`HF_ENDPOINT`, default `https://huggingface.co`); a mirror works.
    pub endpoint: String,
    /// Hub cache root: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub cache_dir: PathBuf,
    /// Never open a socket: only the cache is used (`HF_HUB_OFFLINE=1` or `--offline`).
    pub offline: bool,
    /// Draw a progress bar on stderr while downloading (hidden when stderr is not a terminal).
    pub progress: bool,
    /// Hub token for private or gated repositories (`HF_TOKEN`, else the token file).
    pub token: Option<String>,
}

impl std::fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never print it.
        f.debug_struct("HubOptions")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("progress", &self.progress)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// `huggingface_hub`'s truth test for environment flags (`1`, `ON`, `YES`, `TRUE`).
pub fn env_flag(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_uppercase().as_str(),
            "1" | "ON" | "YES" | "TRUE"
        )
    })
}

impl HubOptions {
    /// Options from the process environment (`HF_ENDPOINT`, `HF_HUB_CACHE`,
    /// `HF_HOME`, `HF_HUB_OFFLINE`, `HF_HUB_DISABLE_PROGRESS_BARS`, `HF_TOKEN`,
    /// `HF_TOKEN_PATH`, `HOME`).
    pub fn from_env() -> HubOptions {
        HubOptions::from_vars(|k| std::env::var(k).ok())
    }

    /// Options from any variable lookup (what [`HubOptions::from_env`] does, testable).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> HubOptions {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let home = var("HOME")
            .or_else(|| var("USERPROFILE"))
            .map(PathBuf::from);
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            home.clone()
                .unwrap_or_default()
                .join(".cache")
                .join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let endpoint = var("HF_ENDPOINT")
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token_path = var("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("token"));
        let token = var("HF_TOKEN").map(|t| t.trim().to_string()).or_else(|| {
            std::fs::read_to_string(&token_path)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        HubOptions {
            endpoint,
            cache_dir,
            offline: env_flag(var("HF_HUB_OFFLINE").as_deref()),
            progress: !env_flag(var("HF_HUB_DISABLE_PROGRESS_BARS").as_deref()),
            token,
        }
    }

    /// These options with downloads turned off when `offline` is true (an
    /// `--offline` flag adds to `HF_HUB_OFFLINE`, it never turns it off).
    pub fn offline(mut self, offline: bool) -> HubOptions {
        self.offline |= offline;
        self
    }

    /// These options with another Hub server (an `--endpoint URL` flag).
    pub fn endpoint(mut self, endpoint: &str) -> HubOptions {
        self.endpoint = endpoint.trim().trim_end_matches('/').to_string();
        self
    }

    /// Why downloads are off, for error messages.
    pub(crate) fn offline_reason(&self) -> String {
        if env_flag(std::env::var("HF_HUB_OFFLINE").ok().as_deref()) {
            "HF_HUB_OFFLINE is set".to_string()
        } else {
            "offline mode".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn opts(vars: &[(&str, &str)]) -> HubOptions {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubOptions::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn cache_dir_precedence() {
        assert_eq!(
            opts(&[("HOME", "/h")]).cache_dir,
            PathBuf::from("/h/.cache/huggingface/hub")
        );
        assert_eq!(
            opts(&[("HOME", "/h"), ("HF_HOME", "/hf")]).cache_dir,
            PathBuf::from("/hf/hub")
        );
        assert_eq!(
            opts(&[("HOME", "/h"), ("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c")]).cache_dir,
            PathBuf::from("/c")
        );
    }

    #[test]
    fn endpoint_offline_progress_token() {
        let o = opts(&[("HOME", "/nonexistent-home")]);
        assert_eq!(o.endpoint, DEFAULT_ENDPOINT);
        assert!(!o.offline && o.progress && o.token.is_none());
        let o = opts(&[
            ("HF_ENDPOINT", "http://127.0.0.1:8080/"),
            ("HF_HUB_OFFLINE", "yes"),
            ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
            ("HF_TOKEN", "hf_x"),
        ]);
        assert_eq!(o.endpoint, "http://127.0.0.1:8080");
        assert!(o.offline && !o.progress);
        assert_eq!(o.token.as_deref(), Some("hf_x"));
        assert!(!format!("{o:?}").contains("hf_x"));
        assert!(!opts(&[("HF_HUB_OFFLINE", "0")]).offline);
        assert!(opts(&[]).offline(true).offline);
        assert!(opts(&[("HF_HUB_OFFLINE", "1")]).offline(false).offline);
    }

    #[test]
    fn token_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_file\n").unwrap();
        let o = opts(&[("HF_HOME", dir.path().to_str().unwrap())]);
        assert_eq!(o.token.as_deref(), Some("hf_file"));
    }
}
