//! The one CPU engine and stream, and the cache of plans keyed by shape.

use super::*;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Key {
    ConvFwd(Conv2dShape, bool, bool),
    ConvBwdData(Conv2dShape, bool),
    ConvBwdWeights(Conv2dShape, bool, bool),
    BnFwd(BatchNormShape, u32, bool),
    BnBwd(BatchNormShape, u32, bool),
    PoolFwd(Pool2dShape, PoolKind, bool),
    PoolBwd(Pool2dShape, PoolKind),
}

pub(super) struct Ctx {
    pub(super) engine: dnnl_engine_t,
    pub(super) stream: dnnl_stream_t,
    pub(super) cache: HashMap<Key, Plan>,
    pub(super) scratch: Vec<Vec<u64>>,
}

// SAFETY: oneDNN engines, streams, primitives and descriptors may be used from any
// thread; this crate only touches them while holding the `CTX` mutex.
unsafe impl Send for Ctx {}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.cache.clear();
        // SAFETY: created in `Ctx::new`, destroyed only here, after every primitive.
        unsafe {
            dnnl_stream_destroy(self.stream);
            dnnl_engine_destroy(self.engine);
        }
    }
}

impl Ctx {
    pub(super) fn new() -> Result<Self> {
        const OP: &str = "engine";
        crate::loader::load()?;
        let mut engine = ptr::null_mut();
        // SAFETY: plain out-parameter call.
        check(OP, "dnnl_engine_create", unsafe {
            dnnl_engine_create(&mut engine, dnnl_cpu, 0)
        })?;
        let mut stream = ptr::null_mut();
        // SAFETY: `engine` was just created.
        let s = unsafe { dnnl_stream_create(&mut stream, engine, dnnl_stream_default_flags) };
        if let Err(e) = check(OP, "dnnl_stream_create", s) {
            // SAFETY: destroy the engine we own, nothing else uses it.
            unsafe {
                dnnl_engine_destroy(engine);
            }
            return Err(e);
        }
        Ok(Ctx {
            engine,
            stream,
            cache: HashMap::new(),
            scratch: Vec::new(),
        })
    }

    /// The cached plan for `key`, built by `make` on first use.
    pub(super) fn plan(
        &mut self,
        key: Key,
        make: impl FnOnce(dnnl_engine_t) -> Result<Plan>,
    ) -> Result<(&Plan, dnnl_engine_t, dnnl_stream_t, &mut Vec<Vec<u64>>)> {
        let engine = self.engine;
        let plan = match self.cache.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(make(engine)?),
        };
        Ok((plan, engine, self.stream, &mut self.scratch))
    }
}

pub(super) static CTX: Mutex<Option<Ctx>> = Mutex::new(None);

pub(super) fn with_ctx<R>(f: impl FnOnce(&mut Ctx) -> Result<R>) -> Result<R> {
    let mut g: MutexGuard<'_, Option<Ctx>> = CTX.lock().map_err(|_| Error::Poisoned)?;
    if g.is_none() {
        *g = Some(Ctx::new()?);
    }
    match g.as_mut() {
        Some(ctx) => f(ctx),
        None => Err(Error::Poisoned),
    }
}

pub(crate) fn available() -> bool {
    with_ctx(|_| Ok(())).is_ok()
}

pub(crate) fn clear_cache() -> Result<()> {
    with_ctx(|ctx| {
        ctx.cache.clear();
        ctx.scratch.clear();
        Ok(())
    })
}
