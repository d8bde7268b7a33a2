//! Fast CPU convolution, batch-norm and pooling kernels exposed to candle as custom ops.
//!
//! Every op here is a candle [`candle_core::CustomOp1`]/`2`/`3` with its own backward, so
//! it composes with candle's autograd (`Tensor::backward`). The kernels work on `f32`
//! NCHW tensors on the CPU and use rayon over planes or images. Each public function
//! routes its input itself ([`backend`](mod@backend)): other devices and dtypes, and the `Candle`
//! backend, get the same op built from stock candle ops, so callers never branch.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! let x = Var::from_tensor(&Tensor::randn(0f32, 1., (1, 2, 7, 7), &Device::Cpu)?)?;
//! let y = vct_kernels::pool::max_pool2d(&x, (3, 3), (2, 2), (1, 1), false)?;
//! assert_eq!(y.dims(), &[1, 2, 4, 4]);
//! let grads = y.sum_all()?.backward()?;
//! assert!(grads.get(&x).is_some());
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod alloc;
pub mod backend;
pub mod bn;
pub mod conv;
pub mod error;
mod onednn;
#[cfg(test)]
mod onednn_tests;
pub mod ops;
pub mod pool;
pub mod profile;
mod stock;
mod storage;
#[cfg(test)]
mod testutil;

pub use backend::{
    backend, fallback_counts, reset_fallback_counts, set_backend, use_kernels, with_backend,
    BackendGuard, FallbackCounts, KernelBackend,
};
pub use error::KernelError;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
