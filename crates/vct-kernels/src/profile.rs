//! Where a step's time goes, per op: an opt-in accumulator of wall time and calls for
//! each kernel (`cargo xtask bench train --profile` prints it), so what holds a step back
//! is measured, not guessed. Off by default; when off, an op pays one relaxed load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The kernels that are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Convolution forward.
    ConvForward,
    /// Convolution input and weight gradients.
    ConvBackward,
    /// Batch norm forward (with its fused ReLU).
    BatchNormForward,
    /// Batch norm backward.
    BatchNormBackward,
    /// Pooling forward.
    PoolForward,
    /// Pooling backward.
    PoolBackward,
    /// ReLU, add-ReLU and bias forward and backward.
    Elementwise,
}

const KERNELS: [Kernel; 7] = [
    Kernel::ConvForward,
    Kernel::ConvBackward,
    Kernel::BatchNormForward,
    Kernel::BatchNormBackward,
    Kernel::PoolForward,
    Kernel::PoolBackward,
    Kernel::Elementwise,
];

impl Kernel {
    fn index(self) -> usize {
        self as usize
    }

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::ConvForward => "conv fwd",
            Kernel::ConvBackward => "conv bwd",
            Kernel::BatchNormForward => "bn fwd",
            Kernel::BatchNormBackward => "bn bwd",
            Kernel::PoolForward => "pool fwd",
            Kernel::PoolBackward => "pool bwd",
            Kernel::Elementwise => "relu/add/bias",
        }
    }
}

static ON: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];
static CALLS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

/// Turns timing on or off (process-wide).
pub fn enable(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Sets every total back to zero.
pub fn reset() {
    for i in 0..KERNELS.len() {
        NANOS[i].store(0, Ordering::Relaxed);
        CALLS[i].store(0, Ordering::Relaxed);
    }
}

/// `(kernel, seconds, calls)` for every kernel, since the last [`reset`].
pub fn totals() -> Vec<(Kernel, f64, u64)> {
    KERNELS
        .iter()
        .map(|&k| {
            (
                k,
                NANOS[k.index()].load(Ordering::Relaxed) as f64 * 1e-9,
                CALLS[k.index()].load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// Times its own lifetime into `kernel` when timing is on.
#[derive(Debug)]
pub(crate) struct Span {
    kernel: Kernel,
    started: Option<Instant>,
}

impl Span {
    pub(crate) fn new(kernel: Kernel) -> Span {
        Span {
            kernel,
            started: ON.load(Ordering::Relaxed).then(Instant::now),
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(t) = self.started {
            let i = self.kernel.index();
            NANOS[i].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            CALLS[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_count_only_when_enabled() {
        let before = totals()[Kernel::Elementwise.index()].2;
        drop(Span::new(Kernel::Elementwise));
        enable(true);
        drop(Span::new(Kernel::Elementwise));
        enable(false);
        let after = totals()[Kernel::Elementwise.index()].2;
        assert!(after > before);
    }
}
