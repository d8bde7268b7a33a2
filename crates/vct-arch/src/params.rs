//! Named parameters: a seeded store over a `candle_nn::VarMap`.
//!
//! Every tensor of a model is created here under its state-dict name (the name
//! a PyTorch checkpoint uses), in creation order, marked trainable (weights,
//! biases, norm scales) or not (running statistics), and tagged backbone or
//! head. Initial values come from an explicit seed, never from a global RNG,
//! so the same seed builds the same model.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use crate::error::{ArchError, Result};

/// Which part of a classifier a parameter belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Feature extractor.
    Backbone,
    /// Classifier head.
    Head,
}

/// How a tensor's initial values are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Every element the same value.
    Const(f64),
    /// Normal with mean 0 and the given standard deviation.
    Normal(f64),
    /// Normal truncated to two standard deviations (TF-slim `trunc_normal`).
    TruncNormal(f64),
    /// Uniform on `[-bound, bound)`.
    Uniform(f64),
}

/// SplitMix64: small, fast, good enough for initial weights and drop-path masks.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on `[0, 1)` with 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `n` values drawn by `init`.
    pub fn sample(&mut self, init: Init, n: usize) -> Vec<f32> {
        match init {
            Init::Const(v) => vec![v as f32; n],
            Init::Normal(std) => (0..n).map(|_| (self.normal() * std) as f32).collect(),
            Init::TruncNormal(std) => (0..n)
                .map(|_| loop {
                    let z = self.normal();
                    if z.abs() <= 2.0 {
                        break (z * std) as f32;
                    }
                })
                .collect(),
            Init::Uniform(b) => (0..n)
                .map(|_| ((2.0 * self.uniform() - 1.0) * b) as f32)
                .collect(),
        }
    }
}

/// One named tensor of a model.
#[derive(Debug, Clone)]
pub struct Entry {
    /// State-dict name.
    pub name: String,
    /// The tensor (a `Var` so that it can be trained or overwritten in place).
    pub var: Var,
    /// False for running statistics: updated by the forward pass, not the optimizer.
    pub trainable: bool,
    /// Backbone or head.
    pub group: Group,
}

struct Inner {
    varmap: VarMap,
    entries: Mutex<Vec<Entry>>,
    rng: Mutex<Rng>,
    device: Device,
    mask_salt: Arc<AtomicU64>,
}

/// The random stream of one stochastic layer (dropout, drop path): a function of
/// the layer's seed and the store's mask salt only, so setting the salt (e.g. to
/// the epoch) makes the masks of a resumed run equal an uninterrupted run's.
#[derive(Debug)]
pub struct MaskRng {
    seed: u64,
    salt: Arc<AtomicU64>,
    state: Mutex<(u64, Rng)>,
}

impl MaskRng {
    /// A stream from `seed`, restarted whenever `salt` changes.
    pub fn new(seed: u64, salt: Arc<AtomicU64>) -> MaskRng {
        let s = salt.load(Ordering::SeqCst);
        MaskRng {
            seed,
            salt,
            state: Mutex::new((s, Rng::new(mix(seed, s)))),
        }
    }

    /// Runs `f` with the stream's generator.
    pub fn with<R>(&self, f: impl FnOnce(&mut Rng) -> R) -> R {
        let salt = self.salt.load(Ordering::SeqCst);
        let mut state = lock(&self.state);
        if state.0 != salt {
            *state = (salt, Rng::new(mix(self.seed, salt)));
        }
        f(&mut state.1)
    }
}

/// Combines a seed and a salt into a new seed (one SplitMix64 round of each).
fn mix(seed: u64, salt: u64) -> u64 {
    let mut r = Rng::new(seed ^ Rng::new(salt).next_u64());
    r.next_u64()
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamStore")
            .field("tensors", &lock(&self.entries).len())
            .field("device", &self.device)
            .finish()
    }
}

/// Shared, seeded parameter store; `Scope`s create tensors in it.
#[derive(Debug, Clone)]
pub struct ParamStore {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update; the data
    // (a list of Arc'd tensors) stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ParamStore {
    /// An empty store whose random initial values derive from `seed`.
    pub fn new(seed: u64, device: &Device) -> ParamStore {
        ParamStore {
            inner: Arc::new(Inner {
                varmap: VarMap::new(),
                entries: Mutex::new(Vec::new()),
                rng: Mutex::new(Rng::new(seed)),
                device: device.clone(),
                mask_salt: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    /// The device tensors live on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The underlying `VarMap` (every tensor, running statistics included).
    pub fn varmap(&self) -> &VarMap {
        &self.inner.varmap
    }

    /// All entries in creation (state-dict) order.
    pub fn entries(&self) -> Vec<Entry> {
        lock(&self.inner.entries).clone()
    }

    /// A root scope for `group`.
    pub fn scope(&self, group: Group) -> Scope {
        Scope {
            store: self.clone(),
            prefix: String::new(),
            group,
        }
    }

    /// Draws `n` values from the store's RNG.
    pub fn sample(&self, init: Init, n: usize) -> Vec<f32> {
        lock(&self.inner.rng).sample(init, n)
    }

    /// A fresh `u64` from the store's RNG (seeds per-call randomness like drop path).
    pub fn next_seed(&self) -> u64 {
        lock(&self.inner.rng).next_u64()
    }

    /// The random stream of a new stochastic layer, tied to the store's mask salt.
    pub fn mask_rng(&self) -> MaskRng {
        MaskRng::new(self.next_seed(), self.inner.mask_salt.clone())
    }

    /// Restarts every stochastic layer's stream from (its seed, `salt`).
    pub fn set_mask_salt(&self, salt: u64) {
        self.inner.mask_salt.store(salt, Ordering::SeqCst);
    }

    fn create(
        &self,
        name: String,
        shape: &[usize],
        init: Init,
        trainable: bool,
        group: Group,
    ) -> Result<Var> {
        let n: usize = shape.iter().product();
        let data = self.sample(init, n);
        let t = Tensor::from_vec(data, shape, &self.inner.device)?.to_dtype(DType::F32)?;
        let var = Var::from_tensor(&t)?;
        {
            let mut entries = lock(&self.inner.entries);
            if entries.iter().any(|e| e.name == name) {
                return Err(ArchError::InvalidConfig {
                    key: name,
                    value: "created twice".into(),
                    expected: "unique parameter names".into(),
                });
            }
            entries.push(Entry {
                name: name.clone(),
                var: var.clone(),
                trainable,
                group,
            });
        }
        lock(self.inner.varmap.data()).insert(name, var.clone());
        Ok(var)
    }
}

/// A name prefix within a store, like `candle_nn::VarBuilder::pp`.
#[derive(Debug, Clone)]
pub struct Scope {
    store: ParamStore,
    prefix: String,
    group: Group,
}

impl Scope {
    /// A sub-scope: `name` appended to the prefix with a dot.
    pub fn pp(&self, name: impl AsRef<str>) -> Scope {
        Scope {
            store: self.store.clone(),
            prefix: self.full(name.as_ref()),
            group: self.group,
        }
    }

    /// The store behind this scope.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The full dotted name of `name` in this scope.
    pub fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    /// A trainable tensor.
    pub fn param(&self, name: &str, shape: &[usize], init: Init) -> Result<Var> {
        self.store
            .create(self.full(name), shape, init, true, self.group)
    }

    /// A non-trainable tensor (running statistics).
    pub fn buffer(&self, name: &str, shape: &[usize], init: Init) -> Result<Var> {
        self.store
            .create(self.full(name), shape, init, false, self.group)
    }
}
