//! The one switch between stock candle ops, the Rust kernels and oneDNN.
//!
//! Every public op of this crate routes its input itself: `f32` CPU tensors go through
//! this crate's custom ops while the backend is [`KernelBackend::Rust`] or
//! [`KernelBackend::OneDnn`], everything else (the `Candle` backend, GPU tensors, other
//! dtypes) through stock candle ops. Under `OneDnn` the custom ops call `vct_onednn`'s
//! slice functions from inside their forward and backward passes; a shape oneDNN has no
//! implementation for runs on the Rust kernel instead and is counted
//! ([`fallback_counts`]), any other oneDNN error is returned. ReLU and the residual
//! add-ReLU are Rust kernels under both.
//!
//! The process-wide default comes from `VCT_KERNEL_BACKEND` (`rust`, `candle` or
//! `onednn`) and [`set_backend`]; without either it is `rust`, on every machine, so a
//! run does not change with what is installed. [`with_backend`] overrides it on the
//! current thread (candle runs forward and backward on the calling thread), e.g. to
//! compare backends in one test. oneDNN is loaded at run time (`vct_onednn::load`);
//! selecting `onednn` where it cannot be loaded is reported (a warning for the
//! environment variable and [`set_backend`], an error from every op that would have
//! called oneDNN), never silently ignored.

use crate::error::KernelError;
use candle_core::{DType, Tensor};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

/// Which implementation the layers use for convolution, batch norm and pooling on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelBackend {
    /// Stock candle ops (any device).
    Candle,
    /// The pure-Rust kernels of this crate (f32 CPU tensors; others use candle).
    Rust,
    /// oneDNN's convolution, batch norm and pooling (f32 CPU tensors), the Rust kernels
    /// for the rest; needs oneDNN 2.x installed (loaded at run time).
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

    /// Whether this backend can run here: always for `Candle` and `Rust`; for `OneDnn`
    /// only where oneDNN 2.x can be loaded and its CPU engine created.
    pub fn check(self) -> Result<(), KernelError> {
        match self {
            KernelBackend::Candle | KernelBackend::Rust => Ok(()),
            KernelBackend::OneDnn => onednn_status(),
        }
    }
}

/// Why oneDNN cannot run, if it cannot.
fn onednn_status() -> Result<(), KernelError> {
    if let Err(e) = vct_onednn::load() {
        return Err(KernelError::BackendUnavailable {
            backend: "onednn",
            reason: e.to_string(),
        });
    }
    if !vct_onednn::available() {
        return Err(KernelError::BackendUnavailable {
            backend: "onednn",
            reason: "oneDNN is loaded but its CPU engine could not be created".into(),
        });
    }
    Ok(())
}

/// The default when neither `VCT_KERNEL_BACKEND` nor [`set_backend`] chose one.
fn default_backend() -> KernelBackend {
    // The Rust kernels are what every machine has and what the tests pin down; oneDNN
    // is opt-in (`VCT_KERNEL_BACKEND=onednn`) until it measures faster on every shape.
    KernelBackend::Rust
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
/// A backend that cannot run here (`OneDnn` where oneDNN cannot be loaded) is still set,
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
    let _guard = b.enter();
    f()
}

/// A guard that makes `b` this thread's backend until it is dropped (then the previous
/// one is back): the scoped form of [`with_backend`], for code that cannot be a closure.
#[derive(Debug)]
#[must_use = "the backend is restored when the guard is dropped"]
pub struct BackendGuard {
    previous: Option<KernelBackend>,
}

impl KernelBackend {
    /// Makes this the current thread's backend until the returned guard is dropped.
    pub fn enter(self) -> BackendGuard {
        BackendGuard {
            previous: LOCAL.with(|l| l.replace(Some(self))),
        }
    }
}

impl Drop for BackendGuard {
    fn drop(&mut self) {
        LOCAL.with(|l| l.set(self.previous));
    }
}

/// Whether `x` goes through this crate's custom ops: Rust or oneDNN backend, CPU, f32.
/// (Every public op checks this itself; layers need not.)
pub fn use_kernels(x: &Tensor) -> bool {
    matches!(backend(), KernelBackend::Rust | KernelBackend::OneDnn)
        && x.device().is_cpu()
        && x.dtype() == DType::F32
}

/// Where an op's input goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Stock candle ops (the `Candle` backend, another device or dtype).
    Stock,
    /// This crate's custom ops, computing with this backend (`Rust` or `OneDnn`).
    Kernels(KernelBackend),
}

/// Where `x` goes under the backend in force. An error if oneDNN was chosen but cannot
/// run, so a build without it never passes Rust results off as oneDNN's.
pub(crate) fn route(x: &Tensor) -> Result<Route, KernelError> {
    if !use_kernels(x) {
        return Ok(Route::Stock);
    }
    let b = backend();
    if b == KernelBackend::OneDnn {
        onednn_status()?;
    }
    Ok(Route::Kernels(b))
}

/// The ops that can fall back from oneDNN to the Rust kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Conv,
    BatchNorm,
    Pool,
}

static FALLBACK_CONV: AtomicU64 = AtomicU64::new(0);
static FALLBACK_BN: AtomicU64 = AtomicU64::new(0);
static FALLBACK_POOL: AtomicU64 = AtomicU64::new(0);
/// The first few distinct reasons, for the report.
static FALLBACK_REASONS: Mutex<Vec<String>> = Mutex::new(Vec::new());
const MAX_REASONS: usize = 8;

/// How many op calls the oneDNN backend handed to the Rust kernels because oneDNN has no
/// implementation for their shape, since the start (or [`reset_fallback_counts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FallbackCounts {
    /// Convolution forward or backward passes.
    pub conv: u64,
    /// Batch-norm forward or backward passes.
    pub batch_norm: u64,
    /// Pooling forward or backward passes.
    pub pool: u64,
    /// The first distinct reasons (op and shape), at most eight.
    pub reasons: Vec<String>,
}

impl FallbackCounts {
    /// Total fallbacks over all ops.
    pub fn total(&self) -> u64 {
        self.conv + self.batch_norm + self.pool
    }
}

impl std::fmt::Display for FallbackCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "oneDNN fallbacks to the Rust kernels: conv {}, batch norm {}, pool {}",
            self.conv, self.batch_norm, self.pool
        )?;
        for r in &self.reasons {
            write!(f, "\n  {r}")?;
        }
        Ok(())
    }
}

/// The fallback counts so far.
pub fn fallback_counts() -> FallbackCounts {
    FallbackCounts {
        conv: FALLBACK_CONV.load(Ordering::Relaxed),
        batch_norm: FALLBACK_BN.load(Ordering::Relaxed),
        pool: FALLBACK_POOL.load(Ordering::Relaxed),
        reasons: FALLBACK_REASONS
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default(),
    }
}

/// Sets the fallback counts back to zero (e.g. between benchmark configurations).
pub fn reset_fallback_counts() {
    for c in [&FALLBACK_CONV, &FALLBACK_BN, &FALLBACK_POOL] {
        c.store(0, Ordering::Relaxed);
    }
    if let Ok(mut r) = FALLBACK_REASONS.lock() {
        r.clear();
    }
}

/// Records one fallback of `kind`, and its reason if it is a new one.
pub(crate) fn count_fallback(kind: OpKind, reason: impl FnOnce() -> String) {
    let counter = match kind {
        OpKind::Conv => &FALLBACK_CONV,
        OpKind::BatchNorm => &FALLBACK_BN,
        OpKind::Pool => &FALLBACK_POOL,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    // A poisoned list only loses the reason text; the count above is what matters.
    if let Ok(mut reasons) = FALLBACK_REASONS.lock() {
        if reasons.len() < MAX_REASONS {
            let r = reason();
            if !reasons.contains(&r) {
                reasons.push(r);
            }
        }
    }
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
    fn guard_restores_the_previous_backend() {
        let outer = backend();
        {
            let _g = KernelBackend::Candle.enter();
            assert_eq!(backend(), KernelBackend::Candle);
            {
                let _h = KernelBackend::Rust.enter();
                assert_eq!(backend(), KernelBackend::Rust);
            }
            assert_eq!(backend(), KernelBackend::Candle);
        }
        assert_eq!(backend(), outer);
    }

    #[test]
    fn fallbacks_are_counted_with_their_reason() {
        let before = fallback_counts();
        count_fallback(OpKind::Conv, || "conv2d: test reason".into());
        let after = fallback_counts();
        assert!(after.conv > before.conv);
        assert!(after.total() > before.total());
        assert!(after.to_string().contains("conv"), "{after}");
        assert!(
            after.reasons.iter().any(|r| r == "conv2d: test reason") || after.reasons.len() == 8
        );
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

    #[test]
    fn the_default_is_rust_whatever_is_installed() {
        assert_eq!(default_backend(), KernelBackend::Rust);
    }

    #[test]
    fn onednn_that_cannot_load_is_an_error_naming_why() {
        // Where oneDNN loads, the backend checks out; where it does not, the check and
        // every op that would call it fail with the loader's reason, never silently.
        match vct_onednn::load() {
            Ok(()) => assert!(KernelBackend::OneDnn.check().is_ok()),
            Err(load_err) => {
                let err = KernelBackend::OneDnn.check().unwrap_err().to_string();
                assert!(err.contains(&load_err.to_string()), "{err}");
                assert!(err.contains(vct_onednn::LIBRARY_ENV), "{err}");
                let x = Tensor::zeros((1, 1, 3, 3), DType::F32, &Device::Cpu).unwrap();
                let w = Tensor::zeros((1, 1, 1, 1), DType::F32, &Device::Cpu).unwrap();
                let r = with_backend(KernelBackend::OneDnn, || {
                    crate::conv::conv2d(&x, &w, None, (1, 1), (0, 0), 1)
                });
                let err = r.unwrap_err().to_string();
                assert!(err.contains("oneDNN could not be loaded"), "{err}");
            }
        }
    }
}
