//! Owned oneDNN handles: memory descriptors, primitive descriptors, attributes,
//! primitives and memory objects, each destroyed on drop.

use super::*;
#[derive(Clone, Copy)]
pub(super) struct Md(pub(super) dnnl_memory_desc_t);

impl Md {
    pub(super) fn new(op: &'static str, shape: &[usize], tag: dnnl_format_tag_t) -> Result<Self> {
        let mut md = dnnl_memory_desc_t::zeroed();
        let d = dims(shape);
        // SAFETY: `md` is a writable descriptor of the C size; `d` holds `shape.len()` (<= 12) dims.
        let s = unsafe {
            dnnl_memory_desc_init_by_tag(&mut md, shape.len() as c_int, d.as_ptr(), dnnl_f32, tag)
        };
        check(op, "dnnl_memory_desc_init_by_tag", s)?;
        Ok(Md(md))
    }
    pub(super) fn size(&self) -> usize {
        // SAFETY: `self.0` is an initialised descriptor.
        unsafe { dnnl_memory_desc_get_size(&self.0) }
    }
    pub(super) fn equal(&self, other: &Md) -> bool {
        // SAFETY: both are initialised descriptors.
        unsafe { dnnl_memory_desc_equal(&self.0, &other.0) != 0 }
    }
}

/// An owned primitive descriptor.
pub(super) struct Pd(pub(super) dnnl_primitive_desc_t);

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: created by a successful `*_primitive_desc_create` and destroyed only here.
        unsafe {
            dnnl_primitive_desc_destroy(self.0);
        }
    }
}

impl Pd {
    pub(super) fn create(
        op: &'static str,
        desc: &op_desc_storage,
        engine: dnnl_engine_t,
        hint: Option<&Pd>,
    ) -> Result<Self> {
        let attr = Attr::user_scratchpad(op)?;
        let mut pd = ptr::null_mut();
        let hint = hint.map_or(ptr::null_mut(), |h| h.0);
        // SAFETY: `desc` was filled by a `*_desc_init` call; engine, attr and hint are live.
        let s = unsafe {
            dnnl_primitive_desc_create(
                &mut pd,
                (desc as *const op_desc_storage).cast::<c_void>(),
                attr.0,
                engine,
                hint,
            )
        };
        check(op, "dnnl_primitive_desc_create", s)?;
        Ok(Pd(pd))
    }
    pub(super) fn query(&self, op: &'static str, what: dnnl_query_t, index: c_int) -> Result<Md> {
        // SAFETY: `self.0` is live; the returned pointer (if any) points into it and is copied at once.
        let p = unsafe { dnnl_primitive_desc_query_md(self.0, what, index) };
        if p.is_null() {
            return Err(Error::Dnnl {
                op,
                call: "dnnl_primitive_desc_query_md",
                status: "null memory descriptor",
            });
        }
        // SAFETY: non-null pointers returned by the query point to a valid descriptor.
        Ok(Md(unsafe { *p }))
    }
}

impl Pd {
    /// A descriptor the primitive may not have (e.g. a workspace): `None` if absent or empty.
    pub(super) fn query_opt(&self, what: dnnl_query_t) -> Option<Md> {
        // SAFETY: as in `query`.
        let p = unsafe { dnnl_primitive_desc_query_md(self.0, what, 0) };
        if p.is_null() {
            return None;
        }
        // SAFETY: non-null pointers returned by the query point to a valid descriptor.
        let md = Md(unsafe { *p });
        (md.size() > 0).then_some(md)
    }
}

/// Primitive attributes asking for a caller-provided scratchpad.
///
/// oneDNN's default "library" scratchpad is thread-local and sized when a primitive
/// is created, so running a cached primitive from another thread (rayon workers, test
/// threads) overruns it. With a user scratchpad, `Plan::run` passes its own buffer.
pub(super) struct Attr(pub(super) dnnl_primitive_attr_t);

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: created by a successful `dnnl_primitive_attr_create`, destroyed only here.
        unsafe {
            dnnl_primitive_attr_destroy(self.0);
        }
    }
}

impl Attr {
    pub(super) fn user_scratchpad(op: &'static str) -> Result<Self> {
        let mut a = ptr::null_mut();
        // SAFETY: plain out-parameter call.
        check(op, "dnnl_primitive_attr_create", unsafe {
            dnnl_primitive_attr_create(&mut a)
        })?;
        let attr = Attr(a);
        // SAFETY: `attr.0` is live.
        check(op, "dnnl_primitive_attr_set_scratchpad_mode", unsafe {
            dnnl_primitive_attr_set_scratchpad_mode(attr.0, dnnl_scratchpad_mode_user)
        })?;
        Ok(attr)
    }
}

/// An owned primitive.
pub(super) struct Prim(pub(super) dnnl_primitive_t);

impl Drop for Prim {
    fn drop(&mut self) {
        // SAFETY: created by a successful `dnnl_primitive_create` and destroyed only here.
        unsafe {
            dnnl_primitive_destroy(self.0);
        }
    }
}

impl Prim {
    pub(super) fn create(op: &'static str, pd: &Pd) -> Result<Self> {
        let mut p = ptr::null_mut();
        // SAFETY: `pd` is a live primitive descriptor.
        let s = unsafe { dnnl_primitive_create(&mut p, pd.0) };
        check(op, "dnnl_primitive_create", s)?;
        Ok(Prim(p))
    }
}

/// A memory object over a buffer it does not own.
pub(super) struct Mem(pub(super) dnnl_memory_t);

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: created by a successful `dnnl_memory_create`; the buffer is not freed by this.
        unsafe {
            dnnl_memory_destroy(self.0);
        }
    }
}

impl Mem {
    /// Wraps `handle`, which must stay valid (and hold `md.size()` bytes) while the memory is used.
    pub(super) fn wrap(
        op: &'static str,
        md: &Md,
        engine: dnnl_engine_t,
        handle: *mut c_void,
    ) -> Result<Self> {
        let mut m = ptr::null_mut();
        // SAFETY: `md` is initialised; callers guarantee `handle` covers `md.size()` bytes.
        let s = unsafe { dnnl_memory_create(&mut m, &md.0, engine, handle) };
        check(op, "dnnl_memory_create", s)?;
        Ok(Mem(m))
    }
}
