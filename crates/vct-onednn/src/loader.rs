//! Finds and opens the system oneDNN at run time, once per process.
//!
//! Loading instead of linking keeps oneDNN an optional, install-time choice: the crate
//! (and every program built on it) builds and runs without the library, and a machine
//! that has it gets the backend without a rebuild.

use crate::error::{Error, Result};
use crate::ffi::{dnnl_version_t, Api};
use std::sync::OnceLock;

/// The environment variable naming the oneDNN library file to load, instead of the
/// default names (e.g. a oneDNN built from source, or one outside the loader's path).
pub const LIBRARY_ENV: &str = "VCT_ONEDNN_LIBRARY";

/// The names tried, in order, when [`LIBRARY_ENV`] is not set: the oneDNN 2.x runtime
/// (Debian's `libdnnl2`), then the unversioned development link (`libdnnl-dev`).
#[cfg(target_os = "macos")]
const DEFAULT_NAMES: &[&str] = &["libdnnl.2.dylib", "libdnnl.dylib"];
#[cfg(windows)]
const DEFAULT_NAMES: &[&str] = &["dnnl.dll"];
#[cfg(not(any(target_os = "macos", windows)))]
const DEFAULT_NAMES: &[&str] = &["libdnnl.so.2", "libdnnl.so"];

/// The one major version whose C API `ffi` declares (3.x removed the `*_desc_init` calls).
const MAJOR: i32 = 2;

/// The library, or why none could be loaded; decided on first use.
static API: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

struct Loaded {
    api: Api,
    description: String,
}

/// Loads oneDNN if that has not been tried yet; the error says what was tried and how to
/// install or point at the library. The outcome is kept for the life of the process.
pub fn load() -> Result<()> {
    loaded_or_err().map(|_| ())
}

/// Which library was loaded, e.g. `oneDNN 2.7.3 (libdnnl.so.2)`, or why none was.
pub fn library() -> Result<&'static str> {
    loaded_or_err().map(|l| l.description.as_str())
}

fn loaded_or_err() -> Result<&'static Loaded> {
    API.get_or_init(load_first)
        .as_ref()
        .map_err(|reason| Error::NotLoaded {
            reason: reason.clone(),
        })
}

/// The loaded functions; only called from inside `sys`, whose context exists only after
/// [`load`] succeeded.
pub(crate) fn loaded() -> &'static Api {
    match API.get() {
        Some(Ok(l)) => &l.api,
        _ => panic!("vct-onednn called into oneDNN before loading it succeeded"),
    }
}

fn load_first() -> std::result::Result<Loaded, String> {
    let candidates: Vec<String> = match std::env::var_os(LIBRARY_ENV) {
        // Asked for one file: that one or an error, never a silent other library.
        Some(p) => vec![p.to_string_lossy().into_owned()],
        None => DEFAULT_NAMES.iter().map(|s| s.to_string()).collect(),
    };
    let mut failures = Vec::new();
    for c in &candidates {
        match load_from(c) {
            Ok(l) => return Ok(l),
            Err(e) => failures.push(e),
        }
    }
    Err(format!(
        "{}. Install oneDNN {MAJOR}.x (e.g. Debian's libdnnl2) or set {LIBRARY_ENV} to its \
         library file",
        failures.join("; ")
    ))
}

/// Opens `path`, checks it is oneDNN 2.x and resolves every function this crate calls.
fn load_from(path: &str) -> std::result::Result<Loaded, String> {
    // SAFETY: opening a library runs its initialisers; oneDNN's only set up its own state.
    // A library that is not oneDNN is refused below before anything of it is called
    // except `dnnl_version`, looked up by that exact name.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| format!("cannot load {path}: {e}"))?;
    // SAFETY: `dnnl_version` has this signature in every oneDNN release.
    let version = unsafe {
        let f = lib
            .get::<unsafe extern "C" fn() -> *const dnnl_version_t>(b"dnnl_version\0")
            .map_err(|e| format!("{path} is not oneDNN (no dnnl_version: {e})"))?;
        f().as_ref()
            .map(|v| (v.major, v.minor, v.patch))
            .ok_or_else(|| format!("{path}: dnnl_version() returned null"))?
    };
    let (major, minor, patch) = version;
    if major != MAJOR {
        return Err(format!(
            "{path} is oneDNN {major}.{minor}.{patch}; vct-onednn needs {MAJOR}.x"
        ));
    }
    // SAFETY: it is oneDNN 2.x, whose C API `ffi` declares.
    let api = unsafe { Api::resolve(lib, path) }?;
    Ok(Loaded {
        api,
        description: format!("oneDNN {major}.{minor}.{patch} ({path})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = load_from("/nonexistent/libdnnl.so.2").err().unwrap();
        assert!(
            err.contains("cannot load /nonexistent/libdnnl.so.2"),
            "{err}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_library_that_is_not_onednn_is_refused_by_name() {
        // The C library is on every Linux machine and has no dnnl_version.
        let err = load_from("libc.so.6").err().unwrap();
        assert!(err.contains("libc.so.6 is not oneDNN"), "{err}");
        assert!(err.contains("dnnl_version"), "{err}");
    }

    #[test]
    fn the_error_of_a_failed_load_says_how_to_fix_it() {
        // Whatever this machine has, a load either succeeds and names the library, or
        // fails saying what to install and which variable points at a file.
        match library() {
            Ok(desc) => assert!(desc.starts_with("oneDNN 2."), "{desc}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(LIBRARY_ENV) && msg.contains("libdnnl2"),
                    "{msg}"
                );
            }
        }
    }
}
