//! Hand-written declarations of the part of oneDNN 2.x's C API (`dnnl.h`) this crate uses,
//! resolved at run time from the system library (see [`crate::loader`]), so that the crate
//! builds, and every program using it runs, on machines without oneDNN.
//!
//! Values and sizes were read from Debian's
//! `libdnnl-dev` 2.6.3 headers with a C probe (`sizeof`, enum values); the descriptor
//! structs are only ever filled and read by the library itself, so they are declared
//! here as opaque, suitably aligned byte blocks of the C size.

#![allow(non_camel_case_types, non_upper_case_globals, dead_code)]

use std::os::raw::{c_char, c_float, c_int, c_uint, c_void};

/// `dnnl_status_t`.
pub type dnnl_status_t = c_int;
/// `dnnl_data_type_t`.
pub type dnnl_data_type_t = c_int;
/// `dnnl_format_tag_t`.
pub type dnnl_format_tag_t = c_int;
/// `dnnl_prop_kind_t`.
pub type dnnl_prop_kind_t = c_int;
/// `dnnl_alg_kind_t`.
pub type dnnl_alg_kind_t = c_int;
/// `dnnl_engine_kind_t`.
pub type dnnl_engine_kind_t = c_int;
/// `dnnl_query_t`.
pub type dnnl_query_t = c_int;
/// `dnnl_dim_t`.
pub type dnnl_dim_t = i64;
/// `DNNL_MAX_NDIMS`.
pub const DNNL_MAX_NDIMS: usize = 12;
/// `dnnl_dims_t` (a C array, passed as a pointer to its first element).
pub type dnnl_dims_t = [dnnl_dim_t; DNNL_MAX_NDIMS];

pub const dnnl_success: dnnl_status_t = 0;
pub const dnnl_out_of_memory: dnnl_status_t = 1;
pub const dnnl_invalid_arguments: dnnl_status_t = 2;
pub const dnnl_unimplemented: dnnl_status_t = 3;
pub const dnnl_iterator_ends: dnnl_status_t = 4;
pub const dnnl_runtime_error: dnnl_status_t = 5;
pub const dnnl_not_required: dnnl_status_t = 6;

pub const dnnl_f32: dnnl_data_type_t = 3;

pub const dnnl_format_tag_any: dnnl_format_tag_t = 1;
pub const dnnl_a: dnnl_format_tag_t = 2;
pub const dnnl_abcd: dnnl_format_tag_t = 5;
pub const dnnl_abcde: dnnl_format_tag_t = 7;

pub const dnnl_forward_training: dnnl_prop_kind_t = 64;
pub const dnnl_forward_inference: dnnl_prop_kind_t = 96;
pub const dnnl_backward: dnnl_prop_kind_t = 128;
pub const dnnl_backward_data: dnnl_prop_kind_t = 160;
pub const dnnl_backward_weights: dnnl_prop_kind_t = 192;

pub const dnnl_convolution_direct: dnnl_alg_kind_t = 1;
pub const dnnl_convolution_auto: dnnl_alg_kind_t = 3;
pub const dnnl_pooling_max: dnnl_alg_kind_t = 511;
pub const dnnl_pooling_avg_include_padding: dnnl_alg_kind_t = 767;
pub const dnnl_pooling_avg_exclude_padding: dnnl_alg_kind_t = 1023;

pub const dnnl_use_global_stats: c_uint = 1;
pub const dnnl_fuse_norm_relu: c_uint = 4;
pub const dnnl_use_scale: c_uint = 8;
pub const dnnl_use_shift: c_uint = 16;

pub const dnnl_cpu: dnnl_engine_kind_t = 1;
pub const dnnl_stream_default_flags: c_uint = 1;

pub const dnnl_query_src_md: dnnl_query_t = 129;
pub const dnnl_query_diff_src_md: dnnl_query_t = 130;
pub const dnnl_query_weights_md: dnnl_query_t = 131;
pub const dnnl_query_diff_weights_md: dnnl_query_t = 132;
pub const dnnl_query_dst_md: dnnl_query_t = 133;
pub const dnnl_query_diff_dst_md: dnnl_query_t = 134;
pub const dnnl_query_workspace_md: dnnl_query_t = 135;

pub const dnnl_query_scratchpad_md: dnnl_query_t = 136;

/// `dnnl_scratchpad_mode_t`.
pub type dnnl_scratchpad_mode_t = c_int;
pub const dnnl_scratchpad_mode_user: dnnl_scratchpad_mode_t = 1;

pub const DNNL_ARG_SCRATCHPAD: c_int = 80;
pub const DNNL_ARG_SRC: c_int = 1;
pub const DNNL_ARG_DST: c_int = 17;
pub const DNNL_ARG_FROM: c_int = 1;
pub const DNNL_ARG_TO: c_int = 17;
pub const DNNL_ARG_WEIGHTS: c_int = 33;
pub const DNNL_ARG_BIAS: c_int = 41;
pub const DNNL_ARG_MEAN: c_int = 49;
pub const DNNL_ARG_VARIANCE: c_int = 50;
pub const DNNL_ARG_SCALE: c_int = 51;
pub const DNNL_ARG_SHIFT: c_int = 52;
pub const DNNL_ARG_WORKSPACE: c_int = 64;
pub const DNNL_ARG_DIFF_SRC: c_int = 129;
pub const DNNL_ARG_DIFF_DST: c_int = 145;
pub const DNNL_ARG_DIFF_WEIGHTS: c_int = 161;
pub const DNNL_ARG_DIFF_BIAS: c_int = 169;
pub const DNNL_ARG_DIFF_SCALE: c_int = 255;
pub const DNNL_ARG_DIFF_SHIFT: c_int = 256;

/// `dnnl_memory_desc_t`: 696 bytes, 8-byte aligned in oneDNN 2.6.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct dnnl_memory_desc_t {
    bytes: [u8; 696],
}

impl dnnl_memory_desc_t {
    /// An all-zero descriptor (what `dnnl_memory_desc_t md = {}` gives in C), to be filled by an init call.
    pub fn zeroed() -> Self {
        Self { bytes: [0; 696] }
    }
}

/// Storage for any operation descriptor (`dnnl_convolution_desc_t` is 5976 bytes,
/// `dnnl_pooling_desc_t` 3192, `dnnl_batch_normalization_desc_t` 3496), with headroom.
#[repr(C, align(8))]
pub struct op_desc_storage {
    bytes: [u8; 8192],
}

impl op_desc_storage {
    /// An all-zero block to be filled by one of the `*_desc_init` calls.
    pub fn zeroed() -> Box<Self> {
        Box::new(Self { bytes: [0; 8192] })
    }
}

/// `dnnl_exec_arg_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dnnl_exec_arg_t {
    pub arg: c_int,
    pub memory: dnnl_memory_t,
}

/// Opaque C handle types.
#[repr(C)]
pub struct dnnl_engine {
    _p: [u8; 0],
}
#[repr(C)]
pub struct dnnl_stream {
    _p: [u8; 0],
}
#[repr(C)]
pub struct dnnl_memory {
    _p: [u8; 0],
}
#[repr(C)]
pub struct dnnl_primitive_desc {
    _p: [u8; 0],
}
#[repr(C)]
pub struct dnnl_primitive {
    _p: [u8; 0],
}
#[repr(C)]
pub struct dnnl_primitive_attr {
    _p: [u8; 0],
}

pub type dnnl_engine_t = *mut dnnl_engine;
pub type dnnl_stream_t = *mut dnnl_stream;
pub type dnnl_memory_t = *mut dnnl_memory;
pub type dnnl_primitive_desc_t = *mut dnnl_primitive_desc;
pub type dnnl_primitive_t = *mut dnnl_primitive;
pub type dnnl_primitive_attr_t = *mut dnnl_primitive_attr;
pub type const_dnnl_primitive_attr_t = *const dnnl_primitive_attr;

/// `dnnl_version_t`, what `dnnl_version()` points to.
#[repr(C)]
pub struct dnnl_version_t {
    pub major: c_int,
    pub minor: c_int,
    pub patch: c_int,
    pub hash: *const c_char,
    pub cpu_runtime: c_uint,
    pub gpu_runtime: c_uint,
}

/// Declares the C functions as fields of [`Api`] (pointers resolved from the loaded
/// library) and, for each, a same-name `unsafe fn` that calls through the loaded [`Api`],
/// so call sites read as they would against a linked library.
macro_rules! dnnl_api {
    ($( fn $name:ident( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty; )*) => {
        /// The oneDNN C functions this crate calls, resolved from one loaded library.
        pub(crate) struct Api {
            $( $name: unsafe extern "C" fn($($ty),*) -> $ret, )*
            /// Keeps the library mapped while the pointers above are in use (for the
            /// life of the process: the loaded `Api` is a static).
            _lib: libloading::Library,
        }

        impl Api {
            /// Resolves every function from `lib` (opened from `path`), naming the first
            /// one it lacks.
            ///
            /// # Safety
            /// `lib` must be oneDNN 2.x, whose functions have the signatures declared here.
            pub(crate) unsafe fn resolve(lib: libloading::Library, path: &str) -> Result<Self, String> {
                $(
                    // SAFETY: the caller vouches for the signature (see above).
                    let $name = *unsafe {
                        lib.get::<unsafe extern "C" fn($($ty),*) -> $ret>(
                            concat!(stringify!($name), "\0").as_bytes(),
                        )
                    }
                    .map_err(|e| {
                        format!("{path} has no function {}: {e}", stringify!($name))
                    })?;
                )*
                Ok(Api { $($name,)* _lib: lib })
            }
        }

        $(
            /// The loaded oneDNN's function of this name (`dnnl.h`).
            ///
            /// # Safety
            /// As the C function's. oneDNN must have been loaded: every call comes from
            /// inside the context `sys` creates only after a successful load.
            #[allow(clippy::too_many_arguments)] // the C signature's
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                // SAFETY: forwarded to the caller.
                unsafe { (crate::loader::loaded().$name)($($arg),*) }
            }
        )*
    };
}

dnnl_api! {
    fn dnnl_engine_create(
        engine: *mut dnnl_engine_t,
        kind: dnnl_engine_kind_t,
        index: usize,
    ) -> dnnl_status_t;
    fn dnnl_engine_destroy(engine: dnnl_engine_t) -> dnnl_status_t;
    fn dnnl_stream_create(
        stream: *mut dnnl_stream_t,
        engine: dnnl_engine_t,
        flags: c_uint,
    ) -> dnnl_status_t;
    fn dnnl_stream_wait(stream: dnnl_stream_t) -> dnnl_status_t;
    fn dnnl_stream_destroy(stream: dnnl_stream_t) -> dnnl_status_t;

    fn dnnl_primitive_attr_create(attr: *mut dnnl_primitive_attr_t) -> dnnl_status_t;
    fn dnnl_primitive_attr_destroy(attr: dnnl_primitive_attr_t) -> dnnl_status_t;
    fn dnnl_primitive_attr_set_scratchpad_mode(
        attr: dnnl_primitive_attr_t,
        mode: dnnl_scratchpad_mode_t,
    ) -> dnnl_status_t;

    fn dnnl_memory_desc_init_by_tag(
        memory_desc: *mut dnnl_memory_desc_t,
        ndims: c_int,
        dims: *const dnnl_dim_t,
        data_type: dnnl_data_type_t,
        tag: dnnl_format_tag_t,
    ) -> dnnl_status_t;
    fn dnnl_memory_desc_equal(
        lhs: *const dnnl_memory_desc_t,
        rhs: *const dnnl_memory_desc_t,
    ) -> c_int;
    fn dnnl_memory_desc_get_size(memory_desc: *const dnnl_memory_desc_t) -> usize;
    fn dnnl_memory_create(
        memory: *mut dnnl_memory_t,
        memory_desc: *const dnnl_memory_desc_t,
        engine: dnnl_engine_t,
        handle: *mut c_void,
    ) -> dnnl_status_t;
    fn dnnl_memory_destroy(memory: dnnl_memory_t) -> dnnl_status_t;

    fn dnnl_primitive_desc_create(
        primitive_desc: *mut dnnl_primitive_desc_t,
        op_desc: *const c_void,
        attr: const_dnnl_primitive_attr_t,
        engine: dnnl_engine_t,
        hint_forward_primitive_desc: dnnl_primitive_desc_t,
    ) -> dnnl_status_t;
    fn dnnl_primitive_desc_destroy(primitive_desc: dnnl_primitive_desc_t) -> dnnl_status_t;
    fn dnnl_primitive_desc_query_md(
        primitive_desc: dnnl_primitive_desc_t,
        what: dnnl_query_t,
        index: c_int,
    ) -> *const dnnl_memory_desc_t;
    fn dnnl_reorder_primitive_desc_create(
        reorder_primitive_desc: *mut dnnl_primitive_desc_t,
        src_desc: *const dnnl_memory_desc_t,
        src_engine: dnnl_engine_t,
        dst_desc: *const dnnl_memory_desc_t,
        dst_engine: dnnl_engine_t,
        attr: const_dnnl_primitive_attr_t,
    ) -> dnnl_status_t;

    fn dnnl_primitive_create(
        primitive: *mut dnnl_primitive_t,
        primitive_desc: dnnl_primitive_desc_t,
    ) -> dnnl_status_t;
    fn dnnl_primitive_execute(
        primitive: dnnl_primitive_t,
        stream: dnnl_stream_t,
        nargs: c_int,
        args: *const dnnl_exec_arg_t,
    ) -> dnnl_status_t;
    fn dnnl_primitive_destroy(primitive: dnnl_primitive_t) -> dnnl_status_t;

    fn dnnl_convolution_forward_desc_init(
        conv_desc: *mut op_desc_storage,
        prop_kind: dnnl_prop_kind_t,
        alg_kind: dnnl_alg_kind_t,
        src_desc: *const dnnl_memory_desc_t,
        weights_desc: *const dnnl_memory_desc_t,
        bias_desc: *const dnnl_memory_desc_t,
        dst_desc: *const dnnl_memory_desc_t,
        strides: *const dnnl_dim_t,
        padding_l: *const dnnl_dim_t,
        padding_r: *const dnnl_dim_t,
    ) -> dnnl_status_t;
    fn dnnl_convolution_backward_data_desc_init(
        conv_desc: *mut op_desc_storage,
        alg_kind: dnnl_alg_kind_t,
        diff_src_desc: *const dnnl_memory_desc_t,
        weights_desc: *const dnnl_memory_desc_t,
        diff_dst_desc: *const dnnl_memory_desc_t,
        strides: *const dnnl_dim_t,
        padding_l: *const dnnl_dim_t,
        padding_r: *const dnnl_dim_t,
    ) -> dnnl_status_t;
    fn dnnl_convolution_backward_weights_desc_init(
        conv_desc: *mut op_desc_storage,
        alg_kind: dnnl_alg_kind_t,
        src_desc: *const dnnl_memory_desc_t,
        diff_weights_desc: *const dnnl_memory_desc_t,
        diff_bias_desc: *const dnnl_memory_desc_t,
        diff_dst_desc: *const dnnl_memory_desc_t,
        strides: *const dnnl_dim_t,
        padding_l: *const dnnl_dim_t,
        padding_r: *const dnnl_dim_t,
    ) -> dnnl_status_t;
    fn dnnl_pooling_forward_desc_init(
        pool_desc: *mut op_desc_storage,
        prop_kind: dnnl_prop_kind_t,
        alg_kind: dnnl_alg_kind_t,
        src_desc: *const dnnl_memory_desc_t,
        dst_desc: *const dnnl_memory_desc_t,
        strides: *const dnnl_dim_t,
        kernel: *const dnnl_dim_t,
        padding_l: *const dnnl_dim_t,
        padding_r: *const dnnl_dim_t,
    ) -> dnnl_status_t;
    fn dnnl_pooling_backward_desc_init(
        pool_desc: *mut op_desc_storage,
        alg_kind: dnnl_alg_kind_t,
        diff_src_desc: *const dnnl_memory_desc_t,
        diff_dst_desc: *const dnnl_memory_desc_t,
        strides: *const dnnl_dim_t,
        kernel: *const dnnl_dim_t,
        padding_l: *const dnnl_dim_t,
        padding_r: *const dnnl_dim_t,
    ) -> dnnl_status_t;
    fn dnnl_batch_normalization_forward_desc_init(
        bnrm_desc: *mut op_desc_storage,
        prop_kind: dnnl_prop_kind_t,
        data_desc: *const dnnl_memory_desc_t,
        epsilon: c_float,
        flags: c_uint,
    ) -> dnnl_status_t;
    fn dnnl_batch_normalization_backward_desc_init(
        bnrm_desc: *mut op_desc_storage,
        prop_kind: dnnl_prop_kind_t,
        diff_data_desc: *const dnnl_memory_desc_t,
        data_desc: *const dnnl_memory_desc_t,
        epsilon: c_float,
        flags: c_uint,
    ) -> dnnl_status_t;
}

/// The C name of a `dnnl_status_t`, for error messages.
pub fn status_name(s: dnnl_status_t) -> &'static str {
    match s {
        dnnl_success => "dnnl_success",
        dnnl_out_of_memory => "dnnl_out_of_memory",
        dnnl_invalid_arguments => "dnnl_invalid_arguments",
        dnnl_unimplemented => "dnnl_unimplemented",
        dnnl_iterator_ends => "dnnl_iterator_ends",
        dnnl_runtime_error => "dnnl_runtime_error",
        dnnl_not_required => "dnnl_not_required",
        _ => "unknown dnnl status",
    }
}
