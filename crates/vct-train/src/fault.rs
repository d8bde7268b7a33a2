//! Crash points for the tests of the checkpoint contract.
//!
//! With the `fault-injection` feature, the environment variable `VCT_FAULT` makes a run
//! die (as `kill -9` would: no cleanup, no destructors) or fail at a named point of the
//! checkpoint of epoch `E` (`@E`; without it, of any epoch):
//!
//! - `between-renames@E`: after the checkpoint folder is renamed into place, before
//!   `LATEST` moves to it;
//! - `partial-write:FILE@E`: half-way through writing the checkpoint file `FILE`;
//! - `enospc:FILE@E`: half-way through writing `FILE`, the write fails with "No space
//!   left on device" (the run goes on to report it as a full disk would).
//!
//! Without the feature (every normal build) these are plain writes and no-ops.

use std::io::Write;

/// `VCT_FAULT` without its `@E` when it applies to epoch `epoch`.
#[cfg(feature = "fault-injection")]
fn fault(epoch: usize) -> Option<&'static str> {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let spec = FAULT
        .get_or_init(|| std::env::var("VCT_FAULT").ok())
        .as_deref()?;
    match spec.rsplit_once('@') {
        Some((what, e)) => (e.parse() == Ok(epoch)).then_some(what),
        None => Some(spec),
    }
}

/// Dies here if `VCT_FAULT` names this point (for the checkpoint of `epoch`).
pub(crate) fn point(name: &str, epoch: usize) {
    #[cfg(feature = "fault-injection")]
    if fault(epoch) == Some(name) {
        eprintln!("VCT_FAULT={name}@{epoch}: aborting");
        std::process::abort();
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = (name, epoch);
}

/// Writes `bytes` to `w`, which is the file `file` of the checkpoint of `epoch`; with
/// `VCT_FAULT` naming it, writes half and dies or fails.
pub(crate) fn write(
    file: &str,
    epoch: usize,
    w: &mut impl Write,
    bytes: &[u8],
) -> std::io::Result<()> {
    #[cfg(feature = "fault-injection")]
    if let Some(spec) = fault(epoch) {
        let half = &bytes[..bytes.len() / 2];
        if spec.strip_prefix("partial-write:") == Some(file) {
            w.write_all(half)?;
            w.flush()?;
            eprintln!(
                "VCT_FAULT={spec}: aborting after {} of {} bytes",
                half.len(),
                bytes.len()
            );
            std::process::abort();
        }
        if spec.strip_prefix("enospc:") == Some(file) {
            w.write_all(half)?;
            // ENOSPC, as the kernel reports a full disk.
            return Err(std::io::Error::from_raw_os_error(28));
        }
    }
    let _ = (file, epoch);
    w.write_all(bytes)
}
