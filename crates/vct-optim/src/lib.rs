//! Optimizers over parameter groups for candle: SGD with momentum (and
//! Nesterov) and AdamW as PyTorch defines them, LAMB as timm implements it (the
//! RSB-A1 optimizer). Each group has its own lr multiplier and weight-decay
//! switch; [`split_decay`] keeps norm and bias parameters out of weight decay.
//! The learning rate is set per step (from a schedule), and the state saves to
//! and restores from safetensors so a resumed run continues bit for bit.
//!
//! candle-nn's `SGD` has no momentum, and its `AdamW` (same arithmetic) has one
//! learning rate for all parameters and private state, so neither can serve
//! groups or checkpoints; these are written here.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use vct_optim::{split_decay, LambConfig, Optimizer, OptimizerConfig};
//!
//! let w = Var::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu)?;
//! let b = Var::new(&[0.5f32, -0.5], &Device::Cpu)?;
//! let groups = split_decay("head", vec![("fc.weight".into(), w.clone()), ("fc.bias".into(), b)], 1.0);
//! assert_eq!(groups[1].name, "head.no_decay"); // the bias: no weight decay
//! let mut opt = Optimizer::new(OptimizerConfig::Lamb(LambConfig::default()), groups)?;
//!
//! let loss = w.as_tensor().sqr()?.sum_all()?;
//! opt.step_with_lr(&loss.backward()?, 0.005)?;
//! assert!(w.as_tensor().to_vec2::<f32>()?[1][1] < 4.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod fused;
mod groups;
mod optimizer;
mod state;

pub use config::{AdamWConfig, LambConfig, OptimizerConfig, SgdConfig};
pub use error::OptimError;
pub use groups::{is_no_decay, split_decay, split_decay_by, ParamGroup};
pub use optimizer::{GroupInfo, Optimizer};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
