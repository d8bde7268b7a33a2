//! `Optimizer`: one optimizer over parameter groups, stepping candle `Var`s from a
//! `GradStore`. The arithmetic follows the reference implementations operation by
//! operation (PyTorch `_single_tensor_*`, timm `Lamb.step`), in the parameters'
//! dtype, so trajectories match to float32 rounding.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::config::{AdamWConfig, LambConfig, OptimizerConfig, SgdConfig};
use crate::error::OptimError;
use crate::fused;
use crate::groups::ParamGroup;

/// A group's settings, without its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    /// Group name.
    pub name: String,
    /// Factor on the optimizer's learning rate.
    pub lr_mult: f64,
    /// Whether weight decay applies.
    pub weight_decay: bool,
}

/// One parameter and its optimizer state.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) name: String,
    pub(crate) var: Var,
    pub(crate) group: usize,
    /// Updates applied to this parameter (PyTorch's per-parameter `step`).
    pub(crate) step: u64,
    /// Momentum buffer (SGD) or first moment (AdamW, LAMB); `None` before the
    /// first update.
    pub(crate) first: Option<Tensor>,
    /// Second moment (AdamW, LAMB).
    pub(crate) second: Option<Tensor>,
}

/// An optimizer (SGD with momentum, AdamW or LAMB) over parameter groups.
#[derive(Debug)]
pub struct Optimizer {
    pub(crate) config: OptimizerConfig,
    pub(crate) groups: Vec<GroupInfo>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) lr: f64,
    /// Calls to `step` (timm's per-group `step`, which LAMB's bias correction uses).
    pub(crate) steps: u64,
}

impl Optimizer {
    /// Builds the optimizer; parameter names must be unique across groups, every
    /// parameter a float tensor, and every lr multiplier finite and >= 0.
    pub fn new(config: OptimizerConfig, groups: Vec<ParamGroup>) -> Result<Optimizer, OptimError> {
        config.validate()?;
        let mut infos = Vec::with_capacity(groups.len());
        let mut slots: Vec<Slot> = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for (index, group) in groups.into_iter().enumerate() {
            if !(group.lr_mult.is_finite() && group.lr_mult >= 0.0) {
                return Err(OptimError::invalid(
                    &format!("lr_mult of group `{}`", group.name),
                    group.lr_mult,
                    "a finite number >= 0",
                ));
            }
            for (name, var) in group.params {
                if !var.dtype().is_float() {
                    return Err(OptimError::NotFloat {
                        name,
                        dtype: var.dtype(),
                    });
                }
                if let Some(first) = seen.insert(name.clone(), group.name.clone()) {
                    return Err(OptimError::DuplicateParam {
                        name,
                        first,
                        second: group.name,
                    });
                }
                slots.push(Slot {
                    name,
                    var,
                    group: index,
                    step: 0,
                    first: None,
                    second: None,
                });
            }
            infos.push(GroupInfo {
                name: group.name,
                lr_mult: group.lr_mult,
                weight_decay: group.weight_decay,
            });
        }
        Ok(Optimizer {
            config,
            groups: infos,
            slots,
            lr: 0.0,
            steps: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// The groups' settings, in order.
    pub fn groups(&self) -> &[GroupInfo] {
        &self.groups
    }

    /// The base learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets the base learning rate (each group uses it × its `lr_mult`).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Number of `step` calls so far.
    pub fn steps_taken(&self) -> u64 {
        self.steps
    }

    /// Names of the parameters, in group order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }

    /// Sets the learning rate, then steps: the form a schedule drives,
    /// `opt.step_with_lr(&grads, schedule.lr(step))`.
    pub fn step_with_lr(&mut self, grads: &GradStore, lr: f64) -> Result<(), OptimError> {
        self.set_lr(lr);
        self.step(grads)
    }

    /// Updates every parameter that has a gradient in `grads`; parameters without
    /// one are left alone (their state does not advance), as in PyTorch.
    pub fn step(&mut self, grads: &GradStore) -> Result<(), OptimError> {
        if !self.lr.is_finite() || self.lr < 0.0 {
            return Err(OptimError::invalid("lr", self.lr, "a finite number >= 0"));
        }
        self.steps += 1;
        match self.config {
            OptimizerConfig::Sgd(c) => self.step_sgd(c, grads),
            OptimizerConfig::AdamW(c) => self.step_adamw(c, grads),
            OptimizerConfig::Lamb(c) => self.step_lamb(c, grads),
        }
    }

    /// The gradient of a slot, detached so no graph outlives the step.
    fn grad(grads: &GradStore, slot: &Slot) -> Option<Tensor> {
        grads.get(slot.var.as_tensor()).map(Tensor::detach)
    }

    /// (learning rate, weight decay) of a slot's group.
    fn group_lr_wd(&self, slot: &Slot, weight_decay: f64) -> (f64, f64) {
        let group = &self.groups[slot.group];
        let wd = if group.weight_decay {
            weight_decay
        } else {
            0.0
        };
        (self.lr * group.lr_mult, wd)
    }

    fn step_sgd(&mut self, c: SgdConfig, grads: &GradStore) -> Result<(), OptimError> {
        for i in 0..self.slots.len() {
            let Some(grad) = Self::grad(grads, &self.slots[i]) else {
                continue;
            };
            let (lr, wd) = self.group_lr_wd(&self.slots[i], c.weight_decay);
            let slot = &mut self.slots[i];
            let fusable = {
                let mut t = vec![slot.var.as_tensor(), &grad];
                t.extend(slot.first.as_ref());
                fused::usable(&t)
            };
            if fusable {
                let buf = slot.first.take();
                slot.first = fused::sgd(
                    slot.var.as_tensor(),
                    &grad,
                    buf,
                    lr,
                    wd,
                    c.momentum,
                    c.dampening,
                    c.nesterov,
                )?;
                slot.step += 1;
                continue;
            }
            let p = slot.var.as_tensor().detach();
            let mut d = if wd != 0.0 {
                (grad + p.affine(wd, 0.0)?)?
            } else {
                grad
            };
            if c.momentum != 0.0 {
                let buf = match slot.first.take() {
                    None => d.clone(),
                    Some(buf) => {
                        (buf.affine(c.momentum, 0.0)? + d.affine(1.0 - c.dampening, 0.0)?)?
                    }
                };
                d = if c.nesterov {
                    (d + buf.affine(c.momentum, 0.0)?)?
                } else {
                    buf.clone()
                };
                slot.first = Some(buf);
            }
            slot.var.set(&(p - d.affine(lr, 0.0)?)?)?;
            slot.step += 1;
        }
        Ok(())
    }

    fn step_adamw(&mut self, c: AdamWConfig, grads: &GradStore) -> Result<(), OptimError> {
        for i in 0..self.slots.len() {
            let Some(grad) = Self::grad(grads, &self.slots[i]) else {
                continue;
            };
            let (lr, wd) = self.group_lr_wd(&self.slots[i], c.weight_decay);
            let slot = &mut self.slots[i];
            slot.step += 1;
            let t = slot.step.min(i32::MAX as u64) as i32;
            if fused_state(slot, &grad) {
                let (m, v) = fused::adamw(
                    slot.var.as_tensor(),
                    &grad,
                    slot.first.take(),
                    slot.second.take(),
                    t,
                    lr,
                    wd,
                    c.beta1,
                    c.beta2,
                    c.eps,
                )?;
                slot.first = Some(m);
                slot.second = Some(v);
                continue;
            }
            let p = slot.var.as_tensor().detach().affine(1.0 - lr * wd, 0.0)?;
            let (m, v) = moments(slot, &grad, c.beta1, 1.0 - c.beta1, c.beta2)?;
            let bias_correction1 = 1.0 - c.beta1.powi(t);
            let bias_correction2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
            let step_size = lr / bias_correction1;
            let denom = ((v.sqrt()? / bias_correction2_sqrt)? + c.eps)?;
            let next = (p - (m.div(&denom)? * step_size)?)?;
            slot.var.set(&next)?;
            slot.first = Some(m);
            slot.second = Some(v);
        }
        Ok(())
    }

    fn step_lamb(&mut self, c: LambConfig, grads: &GradStore) -> Result<(), OptimError> {
        let present: Vec<(usize, Tensor)> = (0..self.slots.len())
            .filter_map(|i| Self::grad(grads, &self.slots[i]).map(|g| (i, g)))
            .collect();
        let fusable = present.iter().all(|(i, g)| fused_state(&self.slots[*i], g));
        if fusable {
            return self.step_lamb_fused(c, present);
        }
        // Global clip over every gradient of every group, as a device scalar so
        // nothing waits on the device: grads / max(‖g‖ / max_grad_norm, 1).
        let clip = match (c.max_grad_norm, present.first()) {
            (Some(max_norm), Some((_, first))) => {
                let mut total = first.sqr()?.sum_all()?;
                for (_, g) in &present[1..] {
                    total = (total + g.sqr()?.sum_all()?)?;
                }
                Some((total.sqrt()? / max_norm)?.maximum(1.0)?)
            }
            _ => None,
        };
        let t = self.steps.min(i32::MAX as u64) as i32;
        let (bias_correction1, bias_correction2) = if c.bias_correction {
            (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t))
        } else {
            (1.0, 1.0)
        };
        let beta3 = if c.grad_averaging { 1.0 - c.beta1 } else { 1.0 };
        for (i, grad) in present {
            let (lr, wd) = self.group_lr_wd(&self.slots[i], c.weight_decay);
            let slot = &mut self.slots[i];
            slot.step += 1;
            let grad = match &clip {
                Some(clip) => grad.broadcast_div(clip)?,
                None => grad,
            };
            let p = slot.var.as_tensor().detach();
            let (m, v) = moments(slot, &grad, c.beta1, beta3, c.beta2)?;
            let denom = ((v.sqrt()? / bias_correction2.sqrt())? + c.eps)?;
            let mut update = (m.affine(1.0 / bias_correction1, 0.0)?).div(&denom)?;
            if wd != 0.0 {
                update = (update + p.affine(wd, 0.0)?)?;
            }
            if wd != 0.0 || c.always_adapt {
                let w_norm = p.sqr()?.sum_all()?.sqrt()?;
                let u_norm = update.sqr()?.sum_all()?.sqrt()?;
                let one = w_norm.ones_like()?;
                let ratio = w_norm.div(&u_norm)?;
                // 1 where either norm is 0 (timm's nested torch.where).
                let ratio = u_norm.gt(0.0)?.where_cond(&ratio, &one)?;
                let mut trust = w_norm.gt(0.0)?.where_cond(&ratio, &one)?;
                if c.trust_clip {
                    trust = trust.minimum(1.0)?;
                }
                update = update.broadcast_mul(&trust)?;
            }
            slot.var.set(&(p - update.affine(lr, 0.0)?)?)?;
            slot.first = Some(m);
            slot.second = Some(v);
        }
        Ok(())
    }
}

impl Optimizer {
    /// LAMB with the in-place kernels: the global gradient norm in f64 over every
    /// gradient, then per parameter the moments, the norms and the update.
    fn step_lamb_fused(
        &mut self,
        c: LambConfig,
        present: Vec<(usize, Tensor)>,
    ) -> Result<(), OptimError> {
        let clip = match c.max_grad_norm {
            Some(max_norm) if !present.is_empty() => {
                let mut total = 0f64;
                for (_, g) in &present {
                    total += fused::sum_squares(g)?;
                }
                Some(((total.sqrt() as f32) / max_norm as f32).max(1.0))
            }
            _ => None,
        };
        let t = self.steps.min(i32::MAX as u64) as i32;
        let (bias_correction1, bias_correction2) = if c.bias_correction {
            (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t))
        } else {
            (1.0, 1.0)
        };
        let beta3 = if c.grad_averaging { 1.0 - c.beta1 } else { 1.0 };
        for (i, grad) in present {
            let (lr, wd) = self.group_lr_wd(&self.slots[i], c.weight_decay);
            let slot = &mut self.slots[i];
            slot.step += 1;
            let (m, v) = fused::lamb(
                slot.var.as_tensor(),
                &grad,
                slot.first.take(),
                slot.second.take(),
                fused::LambStep {
                    lr,
                    wd,
                    beta1: c.beta1,
                    beta3,
                    beta2: c.beta2,
                    eps: c.eps,
                    bias_correction1,
                    bias_correction2,
                    clip,
                    adapt: c.always_adapt,
                    trust_clip: c.trust_clip,
                },
            )?;
            slot.first = Some(m);
            slot.second = Some(v);
        }
        Ok(())
    }
}

/// Whether a slot's parameter, gradient and state can take the in-place kernels.
fn fused_state(slot: &Slot, grad: &Tensor) -> bool {
    let mut t = vec![slot.var.as_tensor(), grad];
    t.extend(slot.first.as_ref());
    t.extend(slot.second.as_ref());
    fused::usable(&t)
}

/// Adam moments: `m = beta1·m + scale·g`, `v = beta2·v + (1 - beta2)·g²`, from
/// zeros on the first update.
fn moments(
    slot: &mut Slot,
    grad: &Tensor,
    beta1: f64,
    scale: f64,
    beta2: f64,
) -> Result<(Tensor, Tensor), OptimError> {
    let g_scaled = grad.affine(scale, 0.0)?;
    let g2 = grad.sqr()?.affine(1.0 - beta2, 0.0)?;
    let m = match slot.first.take() {
        Some(m) => (m.affine(beta1, 0.0)? + g_scaled)?,
        None => g_scaled,
    };
    let v = match slot.second.take() {
        Some(v) => (v.affine(beta2, 0.0)? + g2)?,
        None => g2,
    };
    Ok((m, v))
}

/// candle-nn's optimizer interface, for code written against it: one group
/// (`all`, weight decay on) over the float `vars`, named `var.<index>`.
impl candle_nn::Optimizer for Optimizer {
    type Config = OptimizerConfig;

    fn new(vars: Vec<Var>, config: OptimizerConfig) -> candle_core::Result<Self> {
        let params = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .enumerate()
            .map(|(i, v)| (format!("var.{i}"), v))
            .collect();
        Optimizer::new(config, vec![ParamGroup::new("all", params)])
            .map_err(candle_core::Error::wrap)
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        Optimizer::step(self, grads).map_err(candle_core::Error::wrap)
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
}
