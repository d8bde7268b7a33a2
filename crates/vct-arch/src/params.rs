//! Named parameters: a seeded store over a `candle_nn::VarMap`.
//!
//! Every tensor of a model is created here under its state-dict name (the name
//! a PyTorch checkpoint uses), in creation order, marked trainable (weights,
//! biases, norm scales) or not (running statistics), and tagged backbone or
//! head. Initial values come from an explicit seed, never from a global RNG,
//! so the same seed builds the same model — or, while a model is built from a
//! checkpoint, from a [`TensorSource`] (a `candle_nn::VarBuilder`, see
//! [`crate::Classifier::load`]): then a tensor the source provides is never drawn
//! at random first.

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
    /// Seeds of the stochastic layers: a stream of its own, so that they do not
    /// depend on how many initial values were drawn before (none for tensors
    /// read from a [`TensorSource`]).
    mask_seeds: Mutex<Rng>,
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

/// Salt of the store's mask-seed stream (distinct from the initial values' stream).
const MASK_STREAM: u64 = 0x6d61_736b_7365_6564; // "maskseed"

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
                mask_seeds: Mutex::new(Rng::new(mix(seed, MASK_STREAM))),
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

    /// A root scope for `group`; its tensors are drawn from the seeded init.
    pub fn scope(&self, group: Group) -> Scope<'static> {
        Scope {
            store: self.clone(),
            prefix: String::new(),
            group,
            source: None,
        }
    }

    /// A root scope for `group` whose tensors take their values from `source`
    /// where it has them (the seeded init where it returns `None`).
    pub fn scope_from<'a>(&self, group: Group, source: &'a dyn TensorSource) -> Scope<'a> {
        Scope {
            store: self.clone(),
            prefix: String::new(),
            group,
            source: Some(source),
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
    /// Its seed comes from a stream of its own (a function of the store's seed and
    /// the number of stochastic layers before it), so a model built from a
    /// checkpoint draws the same masks as one initialised at random.
    pub fn mask_rng(&self) -> MaskRng {
        // The initial values' stream still advances by one, as when it seeded the
        // masks, so a seed builds the same random weights as before the streams
        // were split (tests pick inputs for those weights).
        let _ = self.next_seed();
        let seed = lock(&self.inner.mask_seeds).next_u64();
        MaskRng::new(seed, self.inner.mask_salt.clone())
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
        source: Option<&dyn TensorSource>,
    ) -> Result<Var> {
        if lock(&self.inner.entries).iter().any(|e| e.name == name) {
            return Err(duplicate(name));
        }
        let given = match source {
            Some(src) => src.tensor(&name, shape, group)?,
            None => None,
        };
        let var = match given {
            Some(t) => {
                if t.dims() != shape {
                    // A source's contract; checked so a faulty one cannot build a broken model.
                    return Err(ArchError::InvalidConfig {
                        key: name,
                        value: format!("a source tensor of shape {:?}", t.dims()),
                        expected: format!("shape {shape:?}"),
                    });
                }
                let t = t.to_dtype(DType::F32)?.to_device(&self.inner.device)?;
                Var::from_tensor(&t)?
            }
            None => {
                let n: usize = shape.iter().product();
                let data = self.sample(init, n);
                Var::from_tensor(&Tensor::from_vec(data, shape, &self.inner.device)?)?
            }
        };
        {
            let mut entries = lock(&self.inner.entries);
            if entries.iter().any(|e| e.name == name) {
                return Err(duplicate(name));
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

fn duplicate(name: String) -> ArchError {
    ArchError::InvalidConfig {
        key: name,
        value: "created twice".into(),
        expected: "unique parameter names".into(),
    }
}

/// Initial values by state-dict name, consulted while a model is built (e.g. a
/// `candle_nn::VarBuilder` over a checkpoint, see [`crate::varbuilder::VarBuilderSource`]).
pub trait TensorSource {
    /// The value of tensor `name` (full state-dict name) of shape `shape` in
    /// `group`: `Some` (exactly that shape), `None` to draw it from the seeded
    /// init, or an error (naming the key) that stops the build.
    fn tensor(&self, name: &str, shape: &[usize], group: Group) -> Result<Option<Tensor>>;
}

/// A name prefix within a store, like `candle_nn::VarBuilder::pp`, with the
/// source (if any) its tensors are read from.
#[derive(Clone)]
pub struct Scope<'a> {
    store: ParamStore,
    prefix: String,
    group: Group,
    source: Option<&'a dyn TensorSource>,
}

impl std::fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("prefix", &self.prefix)
            .field("group", &self.group)
            .field("from_source", &self.source.is_some())
            .finish()
    }
}

impl<'a> Scope<'a> {
    /// A sub-scope: `name` appended to the prefix with a dot.
    pub fn pp(&self, name: impl AsRef<str>) -> Scope<'a> {
        Scope {
            store: self.store.clone(),
            prefix: self.full(name.as_ref()),
            group: self.group,
            source: self.source,
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
            .create(self.full(name), shape, init, true, self.group, self.source)
    }

    /// A non-trainable tensor (running statistics).
    pub fn buffer(&self, name: &str, shape: &[usize], init: Init) -> Result<Var> {
        self.store
            .create(self.full(name), shape, init, false, self.group, self.source)
    }
}
