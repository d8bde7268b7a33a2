//! Pooling forward (with a workspace in training) and backward primitives.

use super::*;

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
