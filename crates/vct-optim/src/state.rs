//! Saving and restoring optimizer state as named tensors (safetensors), so a
//! resumed run continues exactly where it stopped.
//!
//! Layout: `optimizer.steps` (i64 scalar: calls to `step`), and per parameter
//! `param.<name>.step` (i64 scalar) plus its state tensors
//! (`param.<name>.momentum_buffer` for SGD, `param.<name>.exp_avg` and
//! `param.<name>.exp_avg_sq` for AdamW / LAMB) once the parameter has been
//! updated. Tensors keep the parameters' dtype, so a round trip is bit-exact.
//! The configuration and the learning rate are not stored: the recipe rebuilds
//! the first and the schedule gives the second.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::OptimError;
use crate::optimizer::Optimizer;

const STEPS_KEY: &str = "optimizer.steps";

fn state_err(origin: &str, message: String) -> OptimError {
    OptimError::State {
        origin: origin.to_string(),
        message,
    }
}

fn read_count(tensor: &Tensor, key: &str, origin: &str) -> Result<u64, OptimError> {
    if tensor.dtype() != DType::I64 || tensor.rank() != 0 {
        return Err(state_err(
            origin,
            format!(
                "`{key}` is a {:?} tensor of shape {:?}: expected an i64 scalar",
                tensor.dtype(),
                tensor.dims()
            ),
        ));
    }
    let value = tensor.to_scalar::<i64>()?;
    u64::try_from(value)
        .map_err(|_| state_err(origin, format!("`{key}` = {value}: expected a count >= 0")))
}

impl Optimizer {
    /// The state as named tensors (see the module docs for the names), e.g. to
    /// store beside the model weights in one checkpoint.
    pub fn state_dict(&self) -> Result<HashMap<String, Tensor>, OptimError> {
        let cpu = Device::Cpu;
        let count = |n: u64| Tensor::new(i64::try_from(n).unwrap_or(i64::MAX), &cpu);
        let mut out = HashMap::new();
        out.insert(STEPS_KEY.to_string(), count(self.steps)?);
        let keys = self.config.state_keys();
        for slot in &self.slots {
            out.insert(format!("param.{}.step", slot.name), count(slot.step)?);
            for (key, tensor) in keys.iter().zip([&slot.first, &slot.second]) {
                if let Some(tensor) = tensor {
                    out.insert(format!("param.{}.{key}", slot.name), tensor.clone());
                }
            }
        }
        Ok(out)
    }

    /// Restores a [`Optimizer::state_dict`]. Every tensor must belong to one of
    /// this optimizer's parameters with the right shape and dtype; on any mismatch
    /// nothing is changed and the error names the tensor. `origin` names the
    /// source in errors (a file path).
    pub fn load_state_dict(
        &mut self,
        state: &HashMap<String, Tensor>,
        origin: &str,
    ) -> Result<(), OptimError> {
        let steps_tensor = state
            .get(STEPS_KEY)
            .ok_or_else(|| state_err(origin, format!("no `{STEPS_KEY}` tensor")))?;
        let steps = read_count(steps_tensor, STEPS_KEY, origin)?;
        let keys = self.config.state_keys();
        let mut known: HashSet<String> = HashSet::from([STEPS_KEY.to_string()]);
        for slot in &self.slots {
            known.insert(format!("param.{}.step", slot.name));
            known.extend(keys.iter().map(|key| format!("param.{}.{key}", slot.name)));
        }
        let mut extra: Vec<&str> = state
            .keys()
            .map(String::as_str)
            .filter(|k| !known.contains(*k))
            .collect();
        if !extra.is_empty() {
            extra.sort_unstable();
            return Err(state_err(
                origin,
                format!(
                    "tensors {} belong to no parameter of this {} optimizer (another model or optimizer?)",
                    extra.join(", "),
                    self.config.kind()
                ),
            ));
        }
        let mut restored = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let step_key = format!("param.{}.step", slot.name);
            let step_tensor = state.get(&step_key).ok_or_else(|| {
                state_err(
                    origin,
                    format!("no state for parameter `{}` (`{step_key}`)", slot.name),
                )
            })?;
            let step = read_count(step_tensor, &step_key, origin)?;
            let mut tensors: [Option<Tensor>; 2] = [None, None];
            for (k, key) in keys.iter().enumerate() {
                let name = format!("param.{}.{key}", slot.name);
                let Some(tensor) = state.get(&name) else {
                    continue;
                };
                if tensor.dims() != slot.var.dims() || tensor.dtype() != slot.var.dtype() {
                    return Err(state_err(
                        origin,
                        format!(
                            "`{name}` is {:?} {:?}: expected {:?} {:?} like the parameter",
                            tensor.dtype(),
                            tensor.dims(),
                            slot.var.dtype(),
                            slot.var.dims()
                        ),
                    ));
                }
                tensors[k] = Some(tensor.to_device(slot.var.device())?);
            }
            let has_any = tensors.iter().any(Option::is_some);
            let has_all = tensors.iter().take(keys.len()).all(Option::is_some);
            if (step > 0 || has_any) && !has_all {
                return Err(state_err(
                    origin,
                    format!(
                        "parameter `{}` has taken {step} steps but lacks part of its state \
                         (expected {})",
                        slot.name,
                        keys.join(", ")
                    ),
                ));
            }
            let [first, second] = tensors;
            restored.push((step, first, second));
        }
        self.steps = steps;
        for (slot, (step, first, second)) in self.slots.iter_mut().zip(restored) {
            slot.step = step;
            slot.first = first;
            slot.second = second;
        }
        Ok(())
    }

    /// Writes the state to a safetensors file, atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<(), OptimError> {
        let state = self.state_dict()?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        candle_core::safetensors::save(&state, &tmp)?;
        std::fs::rename(&tmp, path).map_err(|source| OptimError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Restores the state from a file written by [`Optimizer::save`].
    pub fn load(&mut self, path: &Path) -> Result<(), OptimError> {
        let state = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| state_err(&path.display().to_string(), format!("cannot read: {e}")))?;
        self.load_state_dict(&state, &path.display().to_string())
    }
}
