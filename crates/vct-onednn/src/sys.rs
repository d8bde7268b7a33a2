//! The oneDNN side: one CPU engine and stream, a cache of primitives keyed by shape,
//! and the reorders between the callers' NCHW buffers and the layouts oneDNN prefers.
//!
//! Everything runs under one mutex: oneDNN parallelises each primitive itself, so
//! serialising calls costs little and lets the cached primitives and the reorder
//! scratch buffers be reused without further synchronisation.

use crate::error::{Error, Result};
use crate::ffi::*;
use crate::shape::{BatchNormShape, Conv2dShape, Pool2dShape, PoolKind};
use crate::{ConvLayout, PoolWorkspace};
use std::collections::HashMap;
use std::os::raw::{c_int, c_uint, c_void};
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The convolution layout policy (a `ConvLayout` as u8); see `set_conv_layout`.
static LAYOUT: AtomicU8 = AtomicU8::new(ConvLayout::Auto as u8);

pub(crate) fn set_layout(l: ConvLayout) {
    LAYOUT.store(l as u8, Ordering::Relaxed);
}

/// Whether a convolution of shape `s` runs in oneDNN's preferred (blocked) layouts.
fn blocked(s: &Conv2dShape) -> bool {
    match LAYOUT.load(Ordering::Relaxed) {
        x if x == ConvLayout::Blocked as u8 => true,
        x if x == ConvLayout::Plain as u8 => false,
        // Measured on ResNet-50 shapes: 1×1 convolutions are GEMMs that run as fast on
        // NCHW without the reorders; larger kernels gain from the direct blocked kernels.
        _ => s.kh * s.kw > 1,
    }
}

fn check(op: &'static str, call: &'static str, s: dnnl_status_t) -> Result<()> {
    if s == dnnl_success {
        Ok(())
    } else {
        Err(Error::Dnnl {
            op,
            call,
            status: status_name(s),
        })
    }
}

fn dims(v: &[usize]) -> dnnl_dims_t {
    let mut d = [0; DNNL_MAX_NDIMS];
    for (o, &x) in d.iter_mut().zip(v) {
        // Shapes come from slices that exist in memory, so they fit in i64.
        *o = x as dnnl_dim_t;
    }
    d
}

/// A memory descriptor, always initialised by `dnnl_memory_desc_init_by_tag` or copied
/// from one a primitive descriptor reported.
#[derive(Clone, Copy)]
struct Md(dnnl_memory_desc_t);

impl Md {
    fn new(op: &'static str, shape: &[usize], tag: dnnl_format_tag_t) -> Result<Self> {
        let mut md = dnnl_memory_desc_t::zeroed();
        let d = dims(shape);
        // SAFETY: `md` is a writable descriptor of the C size; `d` holds `shape.len()` (<= 12) dims.
        let s = unsafe {
            dnnl_memory_desc_init_by_tag(&mut md, shape.len() as c_int, d.as_ptr(), dnnl_f32, tag)
        };
        check(op, "dnnl_memory_desc_init_by_tag", s)?;
        Ok(Md(md))
    }
    fn size(&self) -> usize {
        // SAFETY: `self.0` is an initialised descriptor.
        unsafe { dnnl_memory_desc_get_size(&self.0) }
    }
    fn equal(&self, other: &Md) -> bool {
        // SAFETY: both are initialised descriptors.
        unsafe { dnnl_memory_desc_equal(&self.0, &other.0) != 0 }
    }
}

/// An owned primitive descriptor.
struct Pd(dnnl_primitive_desc_t);

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: created by a successful `*_primitive_desc_create` and destroyed only here.
        unsafe {
            dnnl_primitive_desc_destroy(self.0);
        }
    }
}

impl Pd {
    fn create(
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
    fn query(&self, op: &'static str, what: dnnl_query_t, index: c_int) -> Result<Md> {
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
    fn query_opt(&self, what: dnnl_query_t) -> Option<Md> {
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
struct Attr(dnnl_primitive_attr_t);

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: created by a successful `dnnl_primitive_attr_create`, destroyed only here.
        unsafe {
            dnnl_primitive_attr_destroy(self.0);
        }
    }
}

impl Attr {
    fn user_scratchpad(op: &'static str) -> Result<Self> {
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
struct Prim(dnnl_primitive_t);

impl Drop for Prim {
    fn drop(&mut self) {
        // SAFETY: created by a successful `dnnl_primitive_create` and destroyed only here.
        unsafe {
            dnnl_primitive_destroy(self.0);
        }
    }
}

impl Prim {
    fn create(op: &'static str, pd: &Pd) -> Result<Self> {
        let mut p = ptr::null_mut();
        // SAFETY: `pd` is a live primitive descriptor.
        let s = unsafe { dnnl_primitive_create(&mut p, pd.0) };
        check(op, "dnnl_primitive_create", s)?;
        Ok(Prim(p))
    }
}

/// A memory object over a buffer it does not own.
struct Mem(dnnl_memory_t);

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
    fn wrap(op: &'static str, md: &Md, engine: dnnl_engine_t, handle: *mut c_void) -> Result<Self> {
        let mut m = ptr::null_mut();
        // SAFETY: `md` is initialised; callers guarantee `handle` covers `md.size()` bytes.
        let s = unsafe { dnnl_memory_create(&mut m, &md.0, engine, handle) };
        check(op, "dnnl_memory_create", s)?;
        Ok(Mem(m))
    }
}

/// Whether an argument is read (reordered in before) or written (reordered out after).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    In,
    Out,
}

/// One argument of a cached primitive: the caller's layout, the primitive's, and the
/// reorder between them when they differ.
struct Arg {
    id: c_int,
    dir: Dir,
    user: Md,
    prim: Md,
    /// The reorder primitive and its scratchpad layout (if it needs one).
    reorder: Option<(Prim, Option<Md>)>,
}

/// How to bind one argument: its id, direction, the caller's layout, and the query
/// (`what`, `index`) that asks the primitive descriptor for its own layout.
#[derive(Clone, Copy)]
struct Spec {
    id: c_int,
    dir: Dir,
    user: Md,
    query: dnnl_query_t,
    index: c_int,
}

fn spec(id: c_int, dir: Dir, user: Md, query: dnnl_query_t) -> Spec {
    Spec {
        id,
        dir,
        user,
        query,
        index: 0,
    }
}

/// A cached primitive with its arguments.
struct Plan {
    op: &'static str,
    // Backward primitives were created against this forward descriptor; kept alive with them.
    _hint: Option<Pd>,
    // The descriptor the primitive was made from, owned for the plan's lifetime.
    _pd: Pd,
    prim: Prim,
    args: Vec<Arg>,
    /// The workspace layout, for primitives that keep one (max pooling).
    workspace: Option<Md>,
    /// The scratchpad layout, if the primitive needs temporary memory.
    scratchpad: Option<Md>,
}

impl Plan {
    fn new(
        op: &'static str,
        engine: dnnl_engine_t,
        hint: Option<Pd>,
        pd: Pd,
        specs: &[Spec],
    ) -> Result<Self> {
        let prim = Prim::create(op, &pd)?;
        let mut args = Vec::with_capacity(specs.len());
        for &Spec {
            id,
            dir,
            user,
            query,
            index,
        } in specs
        {
            // Per-channel vectors (query 0) have one layout only: use the caller's.
            let pmd = if query == 0 {
                user
            } else {
                pd.query(op, query, index)?
            };
            let reorder = if pmd.equal(&user) {
                None
            } else {
                let (from, to) = match dir {
                    Dir::In => (&user, &pmd),
                    Dir::Out => (&pmd, &user),
                };
                let attr = Attr::user_scratchpad(op)?;
                let mut rpd = ptr::null_mut();
                // SAFETY: both descriptors are initialised; engine and attr are live.
                let s = unsafe {
                    dnnl_reorder_primitive_desc_create(
                        &mut rpd, &from.0, engine, &to.0, engine, attr.0,
                    )
                };
                check(op, "dnnl_reorder_primitive_desc_create", s)?;
                let rpd = Pd(rpd);
                let r = Prim::create(op, &rpd)?;
                let pad = rpd.query_opt(dnnl_query_scratchpad_md);
                Some((r, pad))
            };
            args.push(Arg {
                id,
                dir,
                user,
                prim: pmd,
                reorder,
            });
        }
        let workspace = pd.query_opt(dnnl_query_workspace_md);
        let scratchpad = pd.query_opt(dnnl_query_scratchpad_md);
        Ok(Plan {
            op,
            _hint: hint,
            _pd: pd,
            prim,
            args,
            workspace,
            scratchpad,
        })
    }

    /// Runs the primitive on caller buffers given by argument id, plus extra arguments
    /// (workspace) already in the primitive's layout.
    ///
    /// Every pointer must cover the size of its argument's user descriptor and stay valid
    /// for the call; `Dir::In` buffers are only read. `scratch[0]` is the scratchpad
    /// shared by the primitive and its reorders (they run one after another);
    /// `scratch[1..]` hold the arguments reordered to the primitive's layout.
    fn run(
        &self,
        engine: dnnl_engine_t,
        stream: dnnl_stream_t,
        scratch: &mut Vec<Vec<u64>>,
        bufs: &[(c_int, *mut c_void)],
        extra: &[(c_int, Md, *mut c_void)],
    ) -> Result<()> {
        let op = self.op;
        // Size every scratch buffer before taking any pointer into them.
        let reordered: Vec<&Arg> = self.args.iter().filter(|a| a.reorder.is_some()).collect();
        if scratch.len() < 1 + reordered.len() {
            scratch.resize_with(1 + reordered.len(), Vec::new);
        }
        let pad_bytes = self
            .args
            .iter()
            .filter_map(|a| a.reorder.as_ref().and_then(|(_, p)| *p))
            .chain(self.scratchpad)
            .map(|md| md.size())
            .max()
            .unwrap_or(0);
        for (i, bytes) in std::iter::once(pad_bytes)
            .chain(reordered.iter().map(|a| a.prim.size()))
            .enumerate()
        {
            let words = bytes.div_ceil(8);
            if scratch[i].len() < words {
                scratch[i].resize(words, 0);
            }
        }
        let pad_ptr: *mut c_void = scratch[0].as_mut_ptr().cast();

        let mut mems: Vec<Mem> = Vec::with_capacity(3 * self.args.len() + extra.len() + 1);
        let mut exec: Vec<dnnl_exec_arg_t> = Vec::with_capacity(self.args.len() + extra.len() + 1);
        // Reorders to run after the main primitive: (primitive, args).
        let mut after: Vec<(dnnl_primitive_t, Vec<dnnl_exec_arg_t>)> = Vec::new();
        let mut slot = 1;
        for a in &self.args {
            let Some(&(_, p)) = bufs.iter().find(|(id, _)| *id == a.id) else {
                return Err(Error::Dnnl {
                    op,
                    call: "dnnl_primitive_execute",
                    status: "missing argument buffer",
                });
            };
            let user = Mem::wrap(op, &a.user, engine, p)?;
            let Some((r, r_pad)) = &a.reorder else {
                exec.push(dnnl_exec_arg_t {
                    arg: a.id,
                    memory: user.0,
                });
                mems.push(user);
                continue;
            };
            let tmp = Mem::wrap(op, &a.prim, engine, scratch[slot].as_mut_ptr().cast())?;
            slot += 1;
            let (from, to) = match a.dir {
                Dir::In => (user.0, tmp.0),
                Dir::Out => (tmp.0, user.0),
            };
            let mut ra = vec![
                dnnl_exec_arg_t {
                    arg: DNNL_ARG_FROM,
                    memory: from,
                },
                dnnl_exec_arg_t {
                    arg: DNNL_ARG_TO,
                    memory: to,
                },
            ];
            if let Some(md) = r_pad {
                let m = Mem::wrap(op, md, engine, pad_ptr)?;
                ra.push(dnnl_exec_arg_t {
                    arg: DNNL_ARG_SCRATCHPAD,
                    memory: m.0,
                });
                mems.push(m);
            }
            exec.push(dnnl_exec_arg_t {
                arg: a.id,
                memory: tmp.0,
            });
            mems.push(user);
            mems.push(tmp);
            if a.dir == Dir::In {
                // SAFETY: the reorder and its memories are live; buffers cover their descriptors.
                let s =
                    unsafe { dnnl_primitive_execute(r.0, stream, ra.len() as c_int, ra.as_ptr()) };
                check(op, "dnnl_primitive_execute (reorder in)", s)?;
            } else {
                after.push((r.0, ra));
            }
        }
        for (id, md, p) in extra {
            let m = Mem::wrap(op, md, engine, *p)?;
            exec.push(dnnl_exec_arg_t {
                arg: *id,
                memory: m.0,
            });
            mems.push(m);
        }
        if let Some(md) = &self.scratchpad {
            let m = Mem::wrap(op, md, engine, pad_ptr)?;
            exec.push(dnnl_exec_arg_t {
                arg: DNNL_ARG_SCRATCHPAD,
                memory: m.0,
            });
            mems.push(m);
        }
        // SAFETY: every memory in `exec` is live (owned by `mems`) and covers its descriptor.
        let s = unsafe {
            dnnl_primitive_execute(self.prim.0, stream, exec.len() as c_int, exec.as_ptr())
        };
        check(op, "dnnl_primitive_execute", s)?;
        for (r, ra) in after {
            // SAFETY: as above; the memories in `ra` are still owned by `mems`.
            let s = unsafe { dnnl_primitive_execute(r, stream, ra.len() as c_int, ra.as_ptr()) };
            check(op, "dnnl_primitive_execute (reorder out)", s)?;
        }
        // SAFETY: the stream is live. CPU streams run synchronously; waiting is cheap insurance.
        let s = unsafe { dnnl_stream_wait(stream) };
        check(op, "dnnl_stream_wait", s)?;
        drop(mems);
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    ConvFwd(Conv2dShape, bool, bool),
    ConvBwdData(Conv2dShape, bool),
    ConvBwdWeights(Conv2dShape, bool, bool),
    BnFwd(BatchNormShape, u32, bool),
    BnBwd(BatchNormShape, u32, bool),
    PoolFwd(Pool2dShape, PoolKind, bool),
    PoolBwd(Pool2dShape, PoolKind),
}

struct Ctx {
    engine: dnnl_engine_t,
    stream: dnnl_stream_t,
    cache: HashMap<Key, Plan>,
    scratch: Vec<Vec<u64>>,
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
    fn new() -> Result<Self> {
        const OP: &str = "engine";
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
    fn plan(
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

static CTX: Mutex<Option<Ctx>> = Mutex::new(None);

fn with_ctx<R>(f: impl FnOnce(&mut Ctx) -> Result<R>) -> Result<R> {
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

fn rd(s: &[f32]) -> *mut c_void {
    // oneDNN takes `void *` handles for inputs too; it only reads `Dir::In` arguments.
    s.as_ptr().cast_mut().cast()
}

fn wr(s: &mut [f32]) -> *mut c_void {
    s.as_mut_ptr().cast()
}

// ---------------------------------------------------------------- convolution

/// The descriptors of a convolution: src, weights, bias, dst (user layout), and the
/// layout requested from oneDNN (`any` when blocked layouts are allowed).
struct ConvMds {
    src: Md,
    wei: Md,
    bias: Md,
    dst: Md,
    src_any: Md,
    wei_any: Md,
    dst_any: Md,
    strides: dnnl_dims_t,
    pad: dnnl_dims_t,
}

fn conv_mds(op: &'static str, s: &Conv2dShape, blocked: bool) -> Result<ConvMds> {
    let src_dims = [s.n, s.c_in, s.h, s.w];
    let dst_dims = [s.n, s.c_out, s.out_h(), s.out_w()];
    let (wei_dims, wei_tag): (Vec<usize>, _) = if s.groups == 1 {
        (vec![s.c_out, s.c_in, s.kh, s.kw], dnnl_abcd)
    } else {
        // goihw: (g, oc/g, ic/g, kh, kw) is the same memory as OIHW with O = g·(oc/g).
        let g = s.groups;
        (vec![g, s.c_out / g, s.c_in / g, s.kh, s.kw], dnnl_abcde)
    };
    let src = Md::new(op, &src_dims, dnnl_abcd)?;
    let wei = Md::new(op, &wei_dims, wei_tag)?;
    let dst = Md::new(op, &dst_dims, dnnl_abcd)?;
    let bias = Md::new(op, &[s.c_out], dnnl_a)?;
    let (src_any, wei_any, dst_any) = if blocked {
        (
            Md::new(op, &src_dims, dnnl_format_tag_any)?,
            Md::new(op, &wei_dims, dnnl_format_tag_any)?,
            Md::new(op, &dst_dims, dnnl_format_tag_any)?,
        )
    } else {
        (src, wei, dst)
    };
    Ok(ConvMds {
        src,
        wei,
        bias,
        dst,
        src_any,
        wei_any,
        dst_any,
        strides: dims(&[s.stride.0, s.stride.1]),
        pad: dims(&[s.pad.0, s.pad.1]),
    })
}

fn conv_fwd_pd(
    op: &'static str,
    m: &ConvMds,
    with_bias: bool,
    prop: dnnl_prop_kind_t,
    engine: dnnl_engine_t,
) -> Result<Pd> {
    let mut d = op_desc_storage::zeroed();
    let bias: *const dnnl_memory_desc_t = if with_bias { &m.bias.0 } else { ptr::null() };
    // SAFETY: all descriptors are initialised; dims arrays hold 12 entries.
    let s = unsafe {
        dnnl_convolution_forward_desc_init(
            &mut *d,
            prop,
            dnnl_convolution_direct,
            &m.src_any.0,
            &m.wei_any.0,
            bias,
            &m.dst_any.0,
            m.strides.as_ptr(),
            m.pad.as_ptr(),
            m.pad.as_ptr(),
        )
    };
    check(op, "dnnl_convolution_forward_desc_init", s)?;
    Pd::create(op, &d, engine, None)
}

pub(crate) fn conv_forward(
    s: &Conv2dShape,
    src: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    dst: &mut [f32],
) -> Result<()> {
    const OP: &str = "conv2d_forward";
    let blocked = blocked(s);
    let with_bias = bias.is_some();
    with_ctx(|ctx| {
        let (plan, engine, stream, scratch) =
            ctx.plan(Key::ConvFwd(*s, with_bias, blocked), |engine| {
                let m = conv_mds(OP, s, blocked)?;
                let pd = conv_fwd_pd(OP, &m, with_bias, dnnl_forward_training, engine)?;
                let mut specs = vec![
                    spec(DNNL_ARG_SRC, Dir::In, m.src, dnnl_query_src_md),
                    spec(DNNL_ARG_WEIGHTS, Dir::In, m.wei, dnnl_query_weights_md),
                    spec(DNNL_ARG_DST, Dir::Out, m.dst, dnnl_query_dst_md),
                ];
                if with_bias {
                    // The bias is the second "weights" of a convolution.
                    specs.push(Spec {
                        index: 1,
                        ..spec(DNNL_ARG_BIAS, Dir::In, m.bias, dnnl_query_weights_md)
                    });
                }
                Plan::new(OP, engine, None, pd, &specs)
            })?;
        let mut bufs = vec![
            (DNNL_ARG_SRC, rd(src)),
            (DNNL_ARG_WEIGHTS, rd(weights)),
            (DNNL_ARG_DST, wr(dst)),
        ];
        if let Some(b) = bias {
            bufs.push((DNNL_ARG_BIAS, rd(b)));
        }
        plan.run(engine, stream, scratch, &bufs, &[])
    })
}

pub(crate) fn conv_backward_data(
    s: &Conv2dShape,
    weights: &[f32],
    diff_dst: &[f32],
    diff_src: &mut [f32],
) -> Result<()> {
    const OP: &str = "conv2d_backward_data";
    let blocked = blocked(s);
    with_ctx(|ctx| {
        let (plan, engine, stream, scratch) =
            ctx.plan(Key::ConvBwdData(*s, blocked), |engine| {
                let m = conv_mds(OP, s, blocked)?;
                let hint = conv_fwd_pd(OP, &m, false, dnnl_forward_training, engine)?;
                let mut d = op_desc_storage::zeroed();
                // SAFETY: all descriptors are initialised; dims arrays hold 12 entries.
                let st = unsafe {
                    dnnl_convolution_backward_data_desc_init(
                        &mut *d,
                        dnnl_convolution_direct,
                        &m.src_any.0,
                        &m.wei_any.0,
                        &m.dst_any.0,
                        m.strides.as_ptr(),
                        m.pad.as_ptr(),
                        m.pad.as_ptr(),
                    )
                };
                check(OP, "dnnl_convolution_backward_data_desc_init", st)?;
                let pd = Pd::create(OP, &d, engine, Some(&hint))?;
                let specs = [
                    spec(DNNL_ARG_DIFF_DST, Dir::In, m.dst, dnnl_query_diff_dst_md),
                    spec(DNNL_ARG_WEIGHTS, Dir::In, m.wei, dnnl_query_weights_md),
                    spec(DNNL_ARG_DIFF_SRC, Dir::Out, m.src, dnnl_query_diff_src_md),
                ];
                Plan::new(OP, engine, Some(hint), pd, &specs)
            })?;
        let bufs = [
            (DNNL_ARG_DIFF_DST, rd(diff_dst)),
            (DNNL_ARG_WEIGHTS, rd(weights)),
            (DNNL_ARG_DIFF_SRC, wr(diff_src)),
        ];
        plan.run(engine, stream, scratch, &bufs, &[])
    })
}

pub(crate) fn conv_backward_weights(
    s: &Conv2dShape,
    src: &[f32],
    diff_dst: &[f32],
    diff_weights: &mut [f32],
    diff_bias: Option<&mut [f32]>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_weights";
    let blocked = blocked(s);
    let with_bias = diff_bias.is_some();
    with_ctx(|ctx| {
        let (plan, engine, stream, scratch) =
            ctx.plan(Key::ConvBwdWeights(*s, with_bias, blocked), |engine| {
                let m = conv_mds(OP, s, blocked)?;
                let hint = conv_fwd_pd(OP, &m, with_bias, dnnl_forward_training, engine)?;
                let mut d = op_desc_storage::zeroed();
                let bias: *const dnnl_memory_desc_t =
                    if with_bias { &m.bias.0 } else { ptr::null() };
                // SAFETY: all descriptors are initialised; dims arrays hold 12 entries.
                let st = unsafe {
                    dnnl_convolution_backward_weights_desc_init(
                        &mut *d,
                        dnnl_convolution_direct,
                        &m.src_any.0,
                        &m.wei_any.0,
                        bias,
                        &m.dst_any.0,
                        m.strides.as_ptr(),
                        m.pad.as_ptr(),
                        m.pad.as_ptr(),
                    )
                };
                check(OP, "dnnl_convolution_backward_weights_desc_init", st)?;
                let pd = Pd::create(OP, &d, engine, Some(&hint))?;
                let mut specs = vec![
                    spec(DNNL_ARG_SRC, Dir::In, m.src, dnnl_query_src_md),
                    spec(DNNL_ARG_DIFF_DST, Dir::In, m.dst, dnnl_query_diff_dst_md),
                    spec(
                        DNNL_ARG_DIFF_WEIGHTS,
                        Dir::Out,
                        m.wei,
                        dnnl_query_diff_weights_md,
                    ),
                ];
                if with_bias {
                    // The bias gradient is the second "diff weights".
                    specs.push(Spec {
                        index: 1,
                        ..spec(
                            DNNL_ARG_DIFF_BIAS,
                            Dir::Out,
                            m.bias,
                            dnnl_query_diff_weights_md,
                        )
                    });
                }
                Plan::new(OP, engine, Some(hint), pd, &specs)
            })?;
        let mut bufs = vec![
            (DNNL_ARG_SRC, rd(src)),
            (DNNL_ARG_DIFF_DST, rd(diff_dst)),
            (DNNL_ARG_DIFF_WEIGHTS, wr(diff_weights)),
        ];
        if let Some(b) = diff_bias {
            bufs.push((DNNL_ARG_DIFF_BIAS, wr(b)));
        }
        plan.run(engine, stream, scratch, &bufs, &[])
    })
}

// ---------------------------------------------------------------- batch norm

fn bn_flags(global_stats: bool) -> c_uint {
    let f = dnnl_use_scale | dnnl_use_shift;
    if global_stats {
        f | dnnl_use_global_stats
    } else {
        f
    }
}

/// The forward descriptor of a batch norm (also the hint of its backward).
fn bn_fwd_pd(
    op: &'static str,
    data: &Md,
    eps: f32,
    prop: dnnl_prop_kind_t,
    global_stats: bool,
    engine: dnnl_engine_t,
) -> Result<Pd> {
    let mut d = op_desc_storage::zeroed();
    // SAFETY: `data` is initialised; `d` is large enough for a batch-norm descriptor.
    let st = unsafe {
        dnnl_batch_normalization_forward_desc_init(
            &mut *d,
            prop,
            &data.0,
            eps,
            bn_flags(global_stats),
        )
    };
    check(op, "dnnl_batch_normalization_forward_desc_init", st)?;
    Pd::create(op, &d, engine, None)
}

fn bn_mds(op: &'static str, s: &BatchNormShape) -> Result<(Md, Md)> {
    Ok((
        Md::new(op, &[s.n, s.c, s.h, s.w], dnnl_abcd)?,
        Md::new(op, &[s.c], dnnl_a)?,
    ))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_forward_training(
    s: &BatchNormShape,
    eps: f32,
    src: &[f32],
    scale: &[f32],
    shift: &[f32],
    dst: &mut [f32],
    mean: &mut [f32],
    var: &mut [f32],
) -> Result<()> {
    const OP: &str = "batch_norm_forward_training";
    with_ctx(|ctx| {
        let (plan, engine, stream, scratch) =
            ctx.plan(Key::BnFwd(*s, eps.to_bits(), true), |engine| {
                let (data, vec) = bn_mds(OP, s)?;
                let pd = bn_fwd_pd(OP, &data, eps, dnnl_forward_training, false, engine)?;
                let specs = [
                    spec(DNNL_ARG_SRC, Dir::In, data, dnnl_query_src_md),
                    spec(DNNL_ARG_SCALE, Dir::In, vec, 0),
                    spec(DNNL_ARG_SHIFT, Dir::In, vec, 0),
                    spec(DNNL_ARG_DST, Dir::Out, data, dnnl_query_dst_md),
                    spec(DNNL_ARG_MEAN, Dir::Out, vec, 0),
                    spec(DNNL_ARG_VARIANCE, Dir::Out, vec, 0),
                ];
                Plan::new(OP, engine, None, pd, &specs)
            })?;
        let bufs = [
            (DNNL_ARG_SRC, rd(src)),
            (DNNL_ARG_SCALE, rd(scale)),
            (DNNL_ARG_SHIFT, rd(shift)),
            (DNNL_ARG_DST, wr(dst)),
            (DNNL_ARG_MEAN, wr(mean)),
            (DNNL_ARG_VARIANCE, wr(var)),
        ];
        plan.run(engine, stream, scratch, &bufs, &[])
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_forward_inference(
    s: &BatchNormShape,
    eps: f32,
    src: &[f32],
    scale: &[f32],
    shift: &[f32],
    mean: &[f32],
    var: &[f32],
    dst: &mut [f32],
) -> Result<()> {
    const OP: &str = "batch_norm_forward_inference";
    with_ctx(|ctx| {
        let (plan, engine, stream, scratch) =
            ctx.plan(Key::BnFwd(*s, eps.to_bits(), false), |engine| {
                let (data, vec) = bn_mds(OP, s)?;
                let pd = bn_fwd_pd(OP, &data, eps, dnnl_forward_inference, true, engine)?;
                let specs = [
                    spec(DNNL_ARG_SRC, Dir::In, data, dnnl_query_src_md),
                    spec(DNNL_ARG_SCALE, Dir::In, vec, 0),
                    spec(DNNL_ARG_SHIFT, Dir::In, vec, 0),
                    spec(DNNL_ARG_MEAN, Dir::In, vec, 0),
                    spec(DNNL_ARG_VARIANCE, Dir::In, vec, 0),
                    spec(DNNL_ARG_DST, Dir::Out, data, dnnl_query_dst_md),
                ];
                Plan::new(OP, engine, None, pd, &specs)
            })?;
        let bufs = [
            (DNNL_ARG_SRC, rd(src)),
            (DNNL_ARG_SCALE, rd(scale)),
            (DNNL_ARG_SHIFT, rd(shift)),
            (DNNL_ARG_MEAN, rd(mean)),
            (DNNL_ARG_VARIANCE, rd(var)),
            (DNNL_ARG_DST, wr(dst)),
        ];
        plan.run(engine, stream, scratch, &bufs, &[])
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_backward(
    s: &BatchNormShape,
    eps: f32,
    global_stats: bool,
    src: &[f32],
    diff_dst: &[f32],
    scale: &[f32],
    mean: &[f32],
    var: &[f32],
    diff_src: &mut [f32],
    diff_scale: &mut [f32],
    diff_shift: &mut [f32],
) -> Result<()> {
    const OP: &str = "batch_norm_backward";
    with_ctx(|ctx| {
        let (plan, engine, stream, scratch) =
            ctx.plan(Key::BnBwd(*s, eps.to_bits(), global_stats), |engine| {
                let (data, vec) = bn_mds(OP, s)?;
                let hint = bn_fwd_pd(OP, &data, eps, dnnl_forward_training, global_stats, engine)?;
                let mut d = op_desc_storage::zeroed();
                // SAFETY: descriptors are initialised; `d` is large enough.
                let st = unsafe {
                    dnnl_batch_normalization_backward_desc_init(
                        &mut *d,
                        dnnl_backward,
                        &data.0,
                        &data.0,
                        eps,
                        bn_flags(global_stats),
                    )
                };
                check(OP, "dnnl_batch_normalization_backward_desc_init", st)?;
                let pd = Pd::create(OP, &d, engine, Some(&hint))?;
                let specs = [
                    spec(DNNL_ARG_SRC, Dir::In, data, dnnl_query_src_md),
                    spec(DNNL_ARG_DIFF_DST, Dir::In, data, dnnl_query_diff_dst_md),
                    spec(DNNL_ARG_SCALE, Dir::In, vec, 0),
                    // oneDNN 2.6 checks the shift is bound when `use_shift` is set,
                    // though the gradients do not depend on it.
                    spec(DNNL_ARG_SHIFT, Dir::In, vec, 0),
                    spec(DNNL_ARG_MEAN, Dir::In, vec, 0),
                    spec(DNNL_ARG_VARIANCE, Dir::In, vec, 0),
                    spec(DNNL_ARG_DIFF_SRC, Dir::Out, data, dnnl_query_diff_src_md),
                    spec(DNNL_ARG_DIFF_SCALE, Dir::Out, vec, 0),
                    spec(DNNL_ARG_DIFF_SHIFT, Dir::Out, vec, 0),
                ];
                Plan::new(OP, engine, Some(hint), pd, &specs)
            })?;
        let bufs = [
            (DNNL_ARG_SRC, rd(src)),
            (DNNL_ARG_DIFF_DST, rd(diff_dst)),
            (DNNL_ARG_SCALE, rd(scale)),
            // Bound but never read (see the plan); the scale is a valid buffer of the size.
            (DNNL_ARG_SHIFT, rd(scale)),
            (DNNL_ARG_MEAN, rd(mean)),
            (DNNL_ARG_VARIANCE, rd(var)),
            (DNNL_ARG_DIFF_SRC, wr(diff_src)),
            (DNNL_ARG_DIFF_SCALE, wr(diff_scale)),
            (DNNL_ARG_DIFF_SHIFT, wr(diff_shift)),
        ];
        plan.run(engine, stream, scratch, &bufs, &[])
    })
}

// ---------------------------------------------------------------- pooling

fn pool_alg(k: PoolKind) -> dnnl_alg_kind_t {
    match k {
        PoolKind::Max => dnnl_pooling_max,
        PoolKind::AvgIncludePad => dnnl_pooling_avg_include_padding,
        PoolKind::AvgExcludePad => dnnl_pooling_avg_exclude_padding,
    }
}

struct PoolMds {
    src: Md,
    dst: Md,
    strides: dnnl_dims_t,
    kernel: dnnl_dims_t,
    pad_l: dnnl_dims_t,
    pad_r: dnnl_dims_t,
}

fn pool_mds(op: &'static str, s: &Pool2dShape) -> Result<PoolMds> {
    Ok(PoolMds {
        src: Md::new(op, &[s.n, s.c, s.h, s.w], dnnl_abcd)?,
        dst: Md::new(op, &[s.n, s.c, s.out_h(), s.out_w()], dnnl_abcd)?,
        strides: dims(&[s.stride.0, s.stride.1]),
        kernel: dims(&[s.kernel.0, s.kernel.1]),
        pad_l: dims(&[s.pad_begin.0, s.pad_begin.1]),
        pad_r: dims(&[s.pad_end.0, s.pad_end.1]),
    })
}

fn pool_fwd_pd(
    op: &'static str,
    m: &PoolMds,
    kind: PoolKind,
    prop: dnnl_prop_kind_t,
    engine: dnnl_engine_t,
) -> Result<Pd> {
    let mut d = op_desc_storage::zeroed();
    // SAFETY: descriptors are initialised; dims arrays hold 12 entries.
    let st = unsafe {
        dnnl_pooling_forward_desc_init(
            &mut *d,
            prop,
            pool_alg(kind),
            &m.src.0,
            &m.dst.0,
            m.strides.as_ptr(),
            m.kernel.as_ptr(),
            m.pad_l.as_ptr(),
            m.pad_r.as_ptr(),
        )
    };
    check(op, "dnnl_pooling_forward_desc_init", st)?;
    Pd::create(op, &d, engine, None)
}

pub(crate) fn pool_forward(
    s: &Pool2dShape,
    kind: PoolKind,
    src: &[f32],
    dst: &mut [f32],
    training: bool,
) -> Result<PoolWorkspace> {
    const OP: &str = "pool2d_forward";
    with_ctx(|ctx| {
        let (plan, engine, stream, scratch) =
            ctx.plan(Key::PoolFwd(*s, kind, training), |engine| {
                let m = pool_mds(OP, s)?;
                let prop = if training {
                    dnnl_forward_training
                } else {
                    dnnl_forward_inference
                };
                let pd = pool_fwd_pd(OP, &m, kind, prop, engine)?;
                let specs = [
                    spec(DNNL_ARG_SRC, Dir::In, m.src, dnnl_query_src_md),
                    spec(DNNL_ARG_DST, Dir::Out, m.dst, dnnl_query_dst_md),
                ];
                Plan::new(OP, engine, None, pd, &specs)
            })?;
        let mut ws = PoolWorkspace {
            buf: Vec::new(),
            shape: *s,
            kind,
        };
        let mut extra = Vec::new();
        if let Some(md) = plan.workspace {
            ws.buf = vec![0u64; md.size().div_ceil(8)];
            extra.push((DNNL_ARG_WORKSPACE, md, ws.buf.as_mut_ptr().cast()));
        }
        let bufs = [(DNNL_ARG_SRC, rd(src)), (DNNL_ARG_DST, wr(dst))];
        plan.run(engine, stream, scratch, &bufs, &extra)?;
        Ok(ws)
    })
}

pub(crate) fn pool_backward(
    s: &Pool2dShape,
    kind: PoolKind,
    diff_dst: &[f32],
    diff_src: &mut [f32],
    workspace: &PoolWorkspace,
) -> Result<()> {
    const OP: &str = "pool2d_backward";
    with_ctx(|ctx| {
        let (plan, engine, stream, scratch) = ctx.plan(Key::PoolBwd(*s, kind), |engine| {
            let m = pool_mds(OP, s)?;
            let hint = pool_fwd_pd(OP, &m, kind, dnnl_forward_training, engine)?;
            let mut d = op_desc_storage::zeroed();
            // SAFETY: descriptors are initialised; dims arrays hold 12 entries.
            let st = unsafe {
                dnnl_pooling_backward_desc_init(
                    &mut *d,
                    pool_alg(kind),
                    &m.src.0,
                    &m.dst.0,
                    m.strides.as_ptr(),
                    m.kernel.as_ptr(),
                    m.pad_l.as_ptr(),
                    m.pad_r.as_ptr(),
                )
            };
            check(OP, "dnnl_pooling_backward_desc_init", st)?;
            let pd = Pd::create(OP, &d, engine, Some(&hint))?;
            let specs = [
                spec(DNNL_ARG_DIFF_DST, Dir::In, m.dst, dnnl_query_diff_dst_md),
                spec(DNNL_ARG_DIFF_SRC, Dir::Out, m.src, dnnl_query_diff_src_md),
            ];
            Plan::new(OP, engine, Some(hint), pd, &specs)
        })?;
        let mut extra = Vec::new();
        if let Some(md) = plan.workspace {
            if workspace.buf.len() * 8 < md.size() {
                return Err(Error::Workspace {
                    op: OP,
                    what: format!(
                        "workspace holds {} bytes, the primitive needs {}",
                        workspace.buf.len() * 8,
                        md.size()
                    ),
                });
            }
            // oneDNN only reads the workspace in the backward pass.
            extra.push((
                DNNL_ARG_WORKSPACE,
                md,
                workspace.buf.as_ptr().cast_mut().cast(),
            ));
        }
        let bufs = [
            (DNNL_ARG_DIFF_DST, rd(diff_dst)),
            (DNNL_ARG_DIFF_SRC, wr(diff_src)),
        ];
        plan.run(engine, stream, scratch, &bufs, &extra)
    })
}
