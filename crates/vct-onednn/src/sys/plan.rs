//! A cached primitive with its arguments, and the reorders between the callers' NCHW
//! buffers and the layouts the primitive computes in.

use super::handles::Mem;
use super::*;
/// Whether an argument is read (reordered in before) or written (reordered out after).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    In,
    Out,
}

/// One argument of a cached primitive: the caller's layout, the primitive's, and the
/// reorder between them when they differ.
pub(super) struct Arg {
    pub(super) id: c_int,
    pub(super) dir: Dir,
    pub(super) user: Md,
    pub(super) prim: Md,
    /// The reorder primitive and its scratchpad layout (if it needs one).
    pub(super) reorder: Option<(Prim, Option<Md>)>,
}

/// How to bind one argument: its id, direction, the caller's layout, and the query
/// (`what`, `index`) that asks the primitive descriptor for its own layout.
#[derive(Clone, Copy)]
pub(super) struct Spec {
    pub(super) id: c_int,
    pub(super) dir: Dir,
    pub(super) user: Md,
    pub(super) query: dnnl_query_t,
    pub(super) index: c_int,
}

pub(super) fn spec(id: c_int, dir: Dir, user: Md, query: dnnl_query_t) -> Spec {
    Spec {
        id,
        dir,
        user,
        query,
        index: 0,
    }
}

/// A cached primitive with its arguments.
pub(super) struct Plan {
    pub(super) op: &'static str,
    // Backward primitives were created against this forward descriptor; kept alive with them.
    pub(super) _hint: Option<Pd>,
    // The descriptor the primitive was made from, owned for the plan's lifetime.
    pub(super) _pd: Pd,
    pub(super) prim: Prim,
    pub(super) args: Vec<Arg>,
    /// The workspace layout, for primitives that keep one (max pooling).
    pub(super) workspace: Option<Md>,
    /// The scratchpad layout, if the primitive needs temporary memory.
    pub(super) scratchpad: Option<Md>,
}

impl Plan {
    pub(super) fn new(
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
    pub(super) fn run(
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
