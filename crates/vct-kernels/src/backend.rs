//! The one switch between stock candle ops and these kernels.
//!
//! Layers ask [`use_kernels`] whether to route a tensor through this crate's ops: only
//! for `f32` CPU tensors, and only while the backend is [`KernelBackend::Rust`] or
//! [`KernelBackend::OneDnn`]. Under `OneDnn`, convolution, batch norm and pooling call
//! `vct_onednn::ops` (shapes oneDNN refuses fall back to the Rust kernels); ReLU and the
//! residual add-ReLU stay Rust kernels.
//!
//! The process-wide default comes from `VCT_KERNEL_BACKEND` (`rust`, `candle` or
//! `onednn`) and [`set_backend`]; without either it is `onednn` when the crate is built
//! with the `onednn` feature and oneDNN works, else `rust`. [`with_backend`] overrides
//! it on the current thread (candle runs forward and backward on the calling thread),
//! e.g. to compare backends in one test. Selecting `onednn` in a build without the
//! feature is reported (a warning for the environment variable and [`set_backend`],
//! an error from every op that would have called oneDNN), never silently ignored.

use crate::error::KernelError;
use candle_core::{DType, Tensor};
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

/// Which implementation the layers use for convolution, batch norm and pooling on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelBackend {
    /// Stock candle ops (any device).
    Candle,
    /// The pure-Rust kernels of this crate (f32 CPU tensors; others use candle).
    Rust,
    /// oneDNN's convolution, batch norm and pooling (f32 CPU tensors), the Rust kernels
    /// for the rest; needs the `onednn` feature.
    OneDnn,
}

const UNSET: u8 = 0;
const CANDLE: u8 = 1;
const RUST: u8 = 2;
const ONEDNN: u8 = 3;

static GLOBAL: AtomicU8 = AtomicU8::new(UNSET);

thread_local! {
    static LOCAL: Cell<Option<KernelBackend>> = const { Cell::new(None) };
}

fn encode(b: KernelBackend) -> u8 {
    match b {
        KernelBackend::Candle => CANDLE,
        KernelBackend::Rust => RUST,
        KernelBackend::OneDnn => ONEDNN,
    }
}

impl KernelBackend {
    /// Parses `rust`, `candle` or `onednn` (case-insensitive).
    ///
    /// `onednn` parses in every build; whether it can run is [`KernelBackend::check`].
    pub fn parse(s: &str) -> Option<KernelBackend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rust" => Some(KernelBackend::Rust),
            "candle" => Some(KernelBackend::Candle),
            "onednn" => Some(KernelBackend::OneDnn),
            _ => None,
        }
    }

    /// The name [`KernelBackend::parse`] accepts for this backend.
    pub fn name(self) -> &'static str {
        match self {
            KernelBackend::Candle => "candle",
            KernelBackend::Rust => "rust",
            KernelBackend::OneDnn => "onednn",
        }
    }

    /// Whether this backend can run in this build: always for `Candle` and `Rust`; for
    /// `OneDnn` only with the `onednn` feature and a working oneDNN CPU engine.
    pub fn check(self) -> Result<(), KernelError> {
        match self {
            KernelBackend::Candle | KernelBackend::Rust => Ok(()),
            KernelBackend::OneDnn => onednn_status(),
        }
    }
}

/// Why oneDNN cannot run, if it cannot.
fn onednn_status() -> Result<(), KernelError> {
    if !cfg!(feature = "onednn") {
        return Err(KernelError::BackendUnavailable {
            backend: "onednn",
            reason: "vct-kernels was built without the onednn feature (rebuild with \
                     `--features onednn`, which links the system libdnnl, e.g. libdnnl-dev)"
                .into(),
        });
    }
    if !vct_onednn::available() {
        return Err(KernelError::BackendUnavailable {
            backend: "onednn",
            reason: "oneDNN is linked but its CPU engine could not be created".into(),
        });
    }
    Ok(())
}

/// The default when neither `VCT_KERNEL_BACKEND` nor [`set_backend`] chose one.
fn default_backend() -> KernelBackend {
    // oneDNN is PyTorch's CPU path and the fastest measured here; a build with the
    // feature prefers it, but only if it actually works on this machine.
    if KernelBackend::OneDnn.check().is_ok() {
        KernelBackend::OneDnn
    } else {
        KernelBackend::Rust
    }
}

/// The backend `VCT_KERNEL_BACKEND` asks for, falling back (with a warning) where it
/// names one that cannot run.
fn from_env() -> KernelBackend {
    let Ok(v) = std::env::var("VCT_KERNEL_BACKEND") else {
        return default_backend();
    };
    match KernelBackend::parse(&v) {
        // An unusable or unknown value keeps a working default rather than failing a
        // training run, but says so: a silently different backend would mislead benchmarks.
        Some(b) => match b.check() {
            Ok(()) => b,
            Err(e) => {
                let d = default_backend();
                eprintln!("warning: VCT_KERNEL_BACKEND={v}: {e}; using `{}`", d.name());
                d
            }
        },
        None => {
            let d = default_backend();
            eprintln!(
                "warning: VCT_KERNEL_BACKEND={v:?} is not `rust`, `candle` or `onednn`; using `{}`",
                d.name()
            );
            d
        }
    }
}

/// The backend in force on this thread: its override, else the process default.
pub fn backend() -> KernelBackend {
    if let Some(b) = LOCAL.with(Cell::get) {
        return b;
    }
    match GLOBAL.load(Ordering::Relaxed) {
        CANDLE => KernelBackend::Candle,
        RUST => KernelBackend::Rust,
        ONEDNN => KernelBackend::OneDnn,
        _ => {
            let b = from_env();
            GLOBAL.store(encode(b), Ordering::Relaxed);
            b
        }
    }
}

/// Sets the process-wide default backend.
///
/// A backend that cannot run here (`OneDnn` without the `onednn` feature) is still set,
/// so the ops report it as an error instead of quietly using another backend; a warning
/// is printed now as well. Check first with [`KernelBackend::check`] to avoid that.
pub fn set_backend(b: KernelBackend) {
    if let Err(e) = b.check() {
        eprintln!("warning: set_backend({}): {e}", b.name());
    }
    GLOBAL.store(encode(b), Ordering::Relaxed);
}

/// Runs `f` with `b` as this thread's backend, restoring the previous one afterwards.
pub fn with_backend<R>(b: KernelBackend, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<KernelBackend>);
    impl Drop for Restore {
        fn drop(&mut self) {
            LOCAL.with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(LOCAL.with(|l| l.replace(Some(b))));
    f()
}

/// Whether `x` should go through this crate's ops: Rust or oneDNN backend, CPU, f32.
pub fn use_kernels(x: &Tensor) -> bool {
    matches!(backend(), KernelBackend::Rust | KernelBackend::OneDnn)
        && x.device().is_cpu()
        && x.dtype() == DType::F32
}

/// Whether an op of this crate should call oneDNN for `x`: the backend in force is
/// `OneDnn` and `x` is an f32 CPU tensor. An error if oneDNN was chosen but cannot run,
/// so a missing feature never passes for oneDNN results.
pub(crate) fn dispatch_onednn(x: &Tensor) -> Result<bool, KernelError> {
    if backend() != KernelBackend::OneDnn || !x.device().is_cpu() || x.dtype() != DType::F32 {
        return Ok(false);
    }
    onednn_status()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn thread_override_is_scoped() {
        let x = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let xd = Tensor::zeros(2, DType::F64, &Device::Cpu).unwrap();
        let inside = with_backend(KernelBackend::Candle, || {
            let nested = with_backend(KernelBackend::Rust, || {
                (backend(), use_kernels(&x), use_kernels(&xd))
            });
            (backend(), nested)
        });
        assert_eq!(
            inside,
            (KernelBackend::Candle, (KernelBackend::Rust, true, false))
        );
        with_backend(KernelBackend::Candle, || assert!(!use_kernels(&x)));
    }

    #[test]
    fn parse_names() {
        assert_eq!(KernelBackend::parse(" Rust"), Some(KernelBackend::Rust));
        assert_eq!(KernelBackend::parse("candle"), Some(KernelBackend::Candle));
        assert_eq!(KernelBackend::parse("OneDNN"), Some(KernelBackend::OneDnn));
        assert_eq!(KernelBackend::parse("mkl"), None);
        for b in [
            KernelBackend::Candle,
            KernelBackend::Rust,
            KernelBackend::OneDnn,
        ] {
            assert_eq!(KernelBackend::parse(b.name()), Some(b));
        }
    }

    #[test]
    fn onednn_uses_this_crates_ops() {
        let x = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
        assert!(with_backend(KernelBackend::OneDnn, || use_kernels(&x)));
    }

    #[cfg(not(feature = "onednn"))]
    #[test]
    fn onednn_without_the_feature_is_an_error() {
        let err = KernelBackend::OneDnn.check().unwrap_err().to_string();
        assert!(err.contains("built without the onednn feature"), "{err}");
        assert_eq!(default_backend(), KernelBackend::Rust);
        let x = Tensor::zeros((1, 1, 3, 3), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((1, 1, 1, 1), DType::F32, &Device::Cpu).unwrap();
        let r = with_backend(KernelBackend::OneDnn, || {
            crate::conv::conv2d(&x, &w, None, (1, 1), (0, 0), 1)
        });
        let err = r.unwrap_err().to_string();
        assert!(err.contains("built without the onednn feature"), "{err}");
    }

    #[cfg(feature = "onednn")]
    #[test]
    fn onednn_is_the_default_with_the_feature() {
        assert!(KernelBackend::OneDnn.check().is_ok());
        assert_eq!(default_backend(), KernelBackend::OneDnn);
    }
}
