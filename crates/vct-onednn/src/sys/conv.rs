//! Convolution forward, backward-data and backward-weights primitives.

use super::*;

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
