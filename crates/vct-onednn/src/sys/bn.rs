//! Batch-norm forward (training, inference) and backward primitives.

use super::*;

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
