//! Optimizer settings, serialisable so a run records them. Defaults follow the
//! references: PyTorch for SGD and AdamW, timm `Lamb` for LAMB.

use serde::{Deserialize, Serialize};

use crate::error::OptimError;

/// SGD with momentum as `torch.optim.SGD` defines it (coupled weight decay:
/// `g + wd·p`; the first momentum buffer is the gradient itself).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Momentum factor (0 = plain SGD). Default 0.9.
    pub momentum: f64,
    /// Dampening of the gradient added to the momentum buffer. Default 0.
    pub dampening: f64,
    /// Nesterov momentum: step along `g + momentum·buf`. Default false.
    pub nesterov: bool,
    /// L2 penalty added to the gradient. Default 1e-4.
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 1e-4,
        }
    }
}

/// AdamW as `torch.optim.AdamW` defines it (decoupled decay `p ·= 1 - lr·wd`,
/// bias-corrected moments, `eps` added after the square root).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// First-moment decay. Default 0.9.
    pub beta1: f64,
    /// Second-moment decay. Default 0.999.
    pub beta2: f64,
    /// Added to the denominator. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay. Default 0.01.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// LAMB as timm 1.0 `timm.optim.Lamb` implements it: global gradient-norm
/// clipping over all parameters, Adam moments, L2 decay added to the update, and
/// a layer-wise trust ratio `‖p‖ / ‖update‖` on groups with weight decay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LambConfig {
    /// First-moment decay. Default 0.9.
    pub beta1: f64,
    /// Second-moment decay. Default 0.999.
    pub beta2: f64,
    /// Added to the denominator. Default 1e-6.
    pub eps: f64,
    /// Weight decay added to the update (not decoupled). Default 0.01.
    pub weight_decay: f64,
    /// Gradients are divided by `max(‖all grads‖ / max_grad_norm, 1)`; `None`
    /// turns clipping off. Default `Some(1.0)`.
    pub max_grad_norm: Option<f64>,
    /// Clamp the trust ratio at 1 (LAMBC). Default false.
    pub trust_clip: bool,
    /// Apply the trust ratio to groups without weight decay too. Default false.
    pub always_adapt: bool,
    /// Bias-correct the moments. Default true.
    pub bias_correction: bool,
    /// Scale the gradient by `1 - beta1` in the first moment. Default true.
    pub grad_averaging: bool,
}

impl Default for LambConfig {
    fn default() -> Self {
        LambConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay: 0.01,
            max_grad_norm: Some(1.0),
            trust_clip: false,
            always_adapt: false,
            bias_correction: true,
            grad_averaging: true,
        }
    }
}

/// Which optimizer, with its settings; tagged by `kind` when serialised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// See [`SgdConfig`].
    Sgd(SgdConfig),
    /// See [`AdamWConfig`].
    #[serde(rename = "adamw")]
    AdamW(AdamWConfig),
    /// See [`LambConfig`].
    Lamb(LambConfig),
}

fn check(key: &str, value: f64, ok: bool, expected: &str) -> Result<(), OptimError> {
    if value.is_finite() && ok {
        Ok(())
    } else {
        Err(OptimError::invalid(key, value, expected))
    }
}

fn check_betas(beta1: f64, beta2: f64, eps: f64, wd: f64) -> Result<(), OptimError> {
    check(
        "beta1",
        beta1,
        (0.0..1.0).contains(&beta1),
        "a number in [0, 1)",
    )?;
    check(
        "beta2",
        beta2,
        (0.0..1.0).contains(&beta2),
        "a number in [0, 1)",
    )?;
    check("eps", eps, eps > 0.0, "a number > 0")?;
    check("weight_decay", wd, wd >= 0.0, "a number >= 0")
}

impl OptimizerConfig {
    /// Checks every setting; errors name the key.
    pub fn validate(&self) -> Result<(), OptimError> {
        match *self {
            OptimizerConfig::Sgd(c) => {
                check("momentum", c.momentum, c.momentum >= 0.0, "a number >= 0")?;
                check(
                    "dampening",
                    c.dampening,
                    (0.0..=1.0).contains(&c.dampening),
                    "a number in [0, 1]",
                )?;
                check(
                    "weight_decay",
                    c.weight_decay,
                    c.weight_decay >= 0.0,
                    "a number >= 0",
                )?;
                if c.nesterov && (c.momentum <= 0.0 || c.dampening != 0.0) {
                    return Err(OptimError::invalid(
                        "nesterov",
                        true,
                        "momentum > 0 and dampening = 0 (as PyTorch requires)",
                    ));
                }
                Ok(())
            }
            OptimizerConfig::AdamW(c) => check_betas(c.beta1, c.beta2, c.eps, c.weight_decay),
            OptimizerConfig::Lamb(c) => {
                check_betas(c.beta1, c.beta2, c.eps, c.weight_decay)?;
                if let Some(m) = c.max_grad_norm {
                    check(
                        "max_grad_norm",
                        m,
                        m > 0.0,
                        "a number > 0, or null for no clipping",
                    )?;
                }
                Ok(())
            }
        }
    }

    /// Short name: `sgd`, `adamw` or `lamb`.
    pub fn kind(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd(_) => "sgd",
            OptimizerConfig::AdamW(_) => "adamw",
            OptimizerConfig::Lamb(_) => "lamb",
        }
    }

    /// Names of the per-parameter state tensors this optimizer keeps.
    pub(crate) fn state_keys(&self) -> &'static [&'static str] {
        match self {
            OptimizerConfig::Sgd(c) if c.momentum == 0.0 => &[],
            OptimizerConfig::Sgd(_) => &["momentum_buffer"],
            OptimizerConfig::AdamW(_) | OptimizerConfig::Lamb(_) => &["exp_avg", "exp_avg_sq"],
        }
    }
}
