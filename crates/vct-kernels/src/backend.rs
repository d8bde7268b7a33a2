//! The one switch between stock candle ops and these kernels.
//!
//! Layers ask [`use_kernels`] whether to route a tensor through the kernels: only for
//! `f32` CPU tensors, and only while the backend is [`KernelBackend::Rust`]. The
//! process-wide default comes from `VCT_KERNEL_BACKEND` (`rust` or `candle`, default
//! `rust`) and [`set_backend`]; [`with_backend`] overrides it on the current thread
//! (candle runs forward and backward on the calling thread), e.g. to compare both
//! backends in one test.

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
}

const UNSET: u8 = 0;
const CANDLE: u8 = 1;
const RUST: u8 = 2;

static GLOBAL: AtomicU8 = AtomicU8::new(UNSET);

thread_local! {
    static LOCAL: Cell<Option<KernelBackend>> = const { Cell::new(None) };
}

fn encode(b: KernelBackend) -> u8 {
    match b {
        KernelBackend::Candle => CANDLE,
        KernelBackend::Rust => RUST,
    }
}

impl KernelBackend {
    /// Parses `rust` or `candle` (case-insensitive).
    pub fn parse(s: &str) -> Option<KernelBackend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rust" => Some(KernelBackend::Rust),
            "candle" => Some(KernelBackend::Candle),
            _ => None,
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
        _ => {
            // An unknown value keeps the default rather than failing a training run.
            let b = std::env::var("VCT_KERNEL_BACKEND")
                .ok()
                .and_then(|v| KernelBackend::parse(&v))
                .unwrap_or(KernelBackend::Rust);
            GLOBAL.store(encode(b), Ordering::Relaxed);
            b
        }
    }
}

/// Sets the process-wide default backend.
pub fn set_backend(b: KernelBackend) {
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

/// Whether `x` should go through these kernels: Rust backend, CPU, f32.
pub fn use_kernels(x: &Tensor) -> bool {
    backend() == KernelBackend::Rust && x.device().is_cpu() && x.dtype() == DType::F32
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
        assert_eq!(KernelBackend::parse("onednn"), None);
    }
}
