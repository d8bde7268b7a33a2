//! The oneDNN side: one CPU engine and stream, a cache of primitives keyed by shape,
//! and the reorders between the callers' NCHW buffers and the layouts oneDNN prefers.
//!
//! Everything runs under one mutex: oneDNN parallelises each primitive itself, so
//! serialising calls costs little and lets the cached primitives and the reorder
//! scratch buffers be reused without further synchronisation.

mod bn;
mod context;
mod conv;
mod handles;
mod plan;
mod pool;

pub(crate) use bn::{bn_backward, bn_forward_inference, bn_forward_training};
pub(crate) use context::{available, clear_cache};
pub(crate) use conv::{conv_backward_data, conv_backward_weights, conv_forward};
pub(crate) use pool::{pool_backward, pool_forward};

use crate::error::{Error, Result};
use crate::ffi::*;
use crate::shape::{BatchNormShape, Conv2dShape, Pool2dShape, PoolKind};
use crate::{ConvLayout, PoolWorkspace};
use context::{with_ctx, Key};
use handles::{Attr, Md, Pd, Prim};
use plan::{spec, Dir, Plan, Spec};
use std::os::raw::{c_int, c_uint, c_void};
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};

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
fn rd(s: &[f32]) -> *mut c_void {
    // oneDNN takes `void *` handles for inputs too; it only reads `Dir::In` arguments.
    s.as_ptr().cast_mut().cast()
}

fn wr(s: &mut [f32]) -> *mut c_void {
    s.as_mut_ptr().cast()
}
