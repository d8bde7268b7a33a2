//! Parameter groups: named `Var`s that share an lr multiplier and a weight-decay
//! switch, and the rule that keeps norm and bias parameters out of weight decay.

use candle_core::Var;

/// Parameters that share a learning-rate multiplier and a weight-decay setting.
#[derive(Debug, Clone)]
pub struct ParamGroup {
    /// Group name (e.g. `backbone`, `backbone.no_decay`, `head`).
    pub name: String,
    /// The parameters, each with a name unique across all groups (state is
    /// saved under it).
    pub params: Vec<(String, Var)>,
    /// The group's rate is the optimizer's rate × this (0 freezes the group).
    pub lr_mult: f64,
    /// Whether the optimizer's weight decay applies to this group.
    pub weight_decay: bool,
}

impl ParamGroup {
    /// A group with lr multiplier 1 and weight decay on.
    pub fn new(name: impl Into<String>, params: Vec<(String, Var)>) -> ParamGroup {
        ParamGroup {
            name: name.into(),
            params,
            lr_mult: 1.0,
            weight_decay: true,
        }
    }

    /// Sets the lr multiplier.
    pub fn with_lr_mult(mut self, lr_mult: f64) -> ParamGroup {
        self.lr_mult = lr_mult;
        self
    }

    /// Turns weight decay on or off.
    pub fn with_weight_decay(mut self, on: bool) -> ParamGroup {
        self.weight_decay = on;
        self
    }
}

/// The usual rule (timm `param_groups_weight_decay`, mmpretrain
/// `norm_decay_mult=0, bias_decay_mult=0`): tensors of rank <= 1 — norm scales and
/// shifts, biases — and anything named `*.bias` get no weight decay.
pub fn is_no_decay(name: &str, var: &Var) -> bool {
    var.rank() <= 1 || name.ends_with(".bias")
}

/// Splits named parameters into `<name>` (decayed) and `<name>.no_decay` groups
/// by [`is_no_decay`], both with `lr_mult`; an empty group is left out.
pub fn split_decay(name: &str, params: Vec<(String, Var)>, lr_mult: f64) -> Vec<ParamGroup> {
    split_decay_by(name, params, lr_mult, is_no_decay)
}

/// [`split_decay`] with a custom rule: `no_decay(name, var)` true = no decay.
pub fn split_decay_by(
    name: &str,
    params: Vec<(String, Var)>,
    lr_mult: f64,
    no_decay: impl Fn(&str, &Var) -> bool,
) -> Vec<ParamGroup> {
    let (plain, decay): (Vec<_>, Vec<_>) = params.into_iter().partition(|(n, v)| no_decay(n, v));
    [
        ParamGroup::new(name, decay).with_lr_mult(lr_mult),
        ParamGroup::new(format!("{name}.no_decay"), plain)
            .with_lr_mult(lr_mult)
            .with_weight_decay(false),
    ]
    .into_iter()
    .filter(|g| !g.params.is_empty())
    .collect()
}
