//! Crash points for the tests of the checkpoint contract.
//!
//! With the `fault-injection` feature, the environment variable `VCT_FAULT` makes a run
//! die (as `kill -9` would: no cleanup, no destructors) or fail at a named point:
//!
//! - `between-renames`: after a checkpoint folder is renamed into place, before `LATEST`
//!   moves to it;
//! - `partial-write:FILE`: half-way through writing a checkpoint file named `FILE`;
//! - `enospc:FILE`: half-way through writing `FILE`, the write fails with "No space left
//!   on device" (the run goes on to report it as a full disk would).
//!
//! Without the feature (every normal build) these are plain writes and no-ops.

use std::io::Write;

#[cfg(feature = "fault-injection")]
fn fault() -> Option<&'static str> {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FAULT
        .get_or_init(|| std::env::var("VCT_FAULT").ok())
        .as_deref()
}

/// Dies here if `VCT_FAULT` names this point.
pub(crate) fn point(name: &str) {
    #[cfg(feature = "fault-injection")]
    if fault() == Some(name) {
        eprintln!("VCT_FAULT={name}: aborting");
        std::process::abort();
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = name;
}

/// Writes `bytes` to `w`, which is the file `file`; with `VCT_FAULT` naming it, writes
/// half and dies or fails.
pub(crate) fn write(file: &str, w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    #[cfg(feature = "fault-injection")]
    if let Some(spec) = fault() {
        let half = &bytes[..bytes.len() / 2];
        if spec.strip_prefix("partial-write:") == Some(file) {
            w.write_all(half)?;
            w.flush()?;
            eprintln!("VCT_FAULT={spec}: aborting after {} of {} bytes", half.len(), bytes.len());
            std::process::abort();
        }
        if spec.strip_prefix("enospc:") == Some(file) {
            w.write_all(half)?;
            // ENOSPC, as the kernel reports a full disk.
            return Err(std::io::Error::from_raw_os_error(28));
        }
    }
    let _ = file;
    w.write_all(bytes)
}
