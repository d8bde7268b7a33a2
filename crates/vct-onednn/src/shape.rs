//! Shapes of the operations (NCHW `f32`), their output sizes, buffer lengths and checks.

use crate::error::{Error, Result};

/// Geometry of a 2-D convolution: NCHW input, OIHW weights (`(C_out, C_in / groups, kh, kw)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride `(vertical, horizontal)`.
    pub stride: (usize, usize),
    /// Zero padding `(vertical, horizontal)`, applied on both sides.
    pub pad: (usize, usize),
    /// Number of groups; `c_in` and `c_out` must be multiples of it.
    pub groups: usize,
}

/// One output dimension of a sliding window, or `None` if the window does not fit.
fn out_dim(len: usize, pad_total: usize, k: usize, s: usize) -> Option<usize> {
    let padded = len + pad_total;
    if k == 0 || s == 0 || padded < k {
        return None;
    }
    Some((padded - k) / s + 1)
}

fn nonzero(op: &'static str, what: &'static str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::Shape {
            op,
            what,
            got: "0".into(),
            expected: "at least 1".into(),
        });
    }
    Ok(())
}

impl Conv2dShape {
    /// Output height.
    pub fn out_h(&self) -> usize {
        out_dim(self.h, 2 * self.pad.0, self.kh, self.stride.0).unwrap_or(0)
    }
    /// Output width.
    pub fn out_w(&self) -> usize {
        out_dim(self.w, 2 * self.pad.1, self.kw, self.stride.1).unwrap_or(0)
    }
    /// Elements of the input (and of its gradient).
    pub fn src_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    /// Elements of the weights (and of their gradient).
    pub fn weights_len(&self) -> usize {
        self.c_out * (self.c_in / self.groups.max(1)) * self.kh * self.kw
    }
    /// Elements of the output (and of its gradient).
    pub fn dst_len(&self) -> usize {
        self.n * self.c_out * self.out_h() * self.out_w()
    }
    /// Checks that every size is positive, groups divide the channels and the kernel fits.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        for (what, v) in [
            ("batch size n", self.n),
            ("input channels c_in", self.c_in),
            ("input height h", self.h),
            ("input width w", self.w),
            ("output channels c_out", self.c_out),
            ("kernel height kh", self.kh),
            ("kernel width kw", self.kw),
            ("vertical stride", self.stride.0),
            ("horizontal stride", self.stride.1),
            ("groups", self.groups),
        ] {
            nonzero(op, what, v)?;
        }
        for (what, c) in [("c_in", self.c_in), ("c_out", self.c_out)] {
            if c % self.groups != 0 {
                return Err(Error::Shape {
                    op,
                    what,
                    got: c.to_string(),
                    expected: format!("a multiple of groups = {}", self.groups),
                });
            }
        }
        if self.h + 2 * self.pad.0 < self.kh || self.w + 2 * self.pad.1 < self.kw {
            return Err(Error::Shape {
                op,
                what: "padded input (h, w)",
                got: format!("({}, {})", self.h + 2 * self.pad.0, self.w + 2 * self.pad.1),
                expected: format!("at least the kernel ({}, {})", self.kh, self.kw),
            });
        }
        Ok(())
    }
}

/// Geometry of a batch norm over an NCHW tensor: statistics are per channel `c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchNormShape {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl BatchNormShape {
    /// Elements of the data tensor.
    pub fn len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    /// Whether the data tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Checks that every size is positive.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        for (what, v) in [
            ("batch size n", self.n),
            ("channels c", self.c),
            ("height h", self.h),
            ("width w", self.w),
        ] {
            nonzero(op, what, v)?;
        }
        Ok(())
    }
}

/// Which pooling: max, or average with or without the padding in the divisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Maximum over the window; padding never wins.
    Max,
    /// Average whose divisor is the whole kernel area, padding included.
    AvgIncludePad,
    /// Average whose divisor counts only the input elements in the window.
    AvgExcludePad,
}

/// Geometry of a 2-D pooling over NCHW data, with possibly asymmetric padding.
///
/// The padding is explicit: callers work out PyTorch's (ceil mode) or TensorFlow's
/// ("SAME") layouts themselves — `vct-kernels` does, once, for every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pool2dShape {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window `(height, width)`.
    pub kernel: (usize, usize),
    /// Stride `(vertical, horizontal)`.
    pub stride: (usize, usize),
    /// Padding before the data `(top, left)`.
    pub pad_begin: (usize, usize),
    /// Padding after the data `(bottom, right)`; larger than `pad_begin` for ceil mode or TF SAME.
    pub pad_end: (usize, usize),
}

impl Pool2dShape {
    /// Output height.
    pub fn out_h(&self) -> usize {
        out_dim(
            self.h,
            self.pad_begin.0 + self.pad_end.0,
            self.kernel.0,
            self.stride.0,
        )
        .unwrap_or(0)
    }
    /// Output width.
    pub fn out_w(&self) -> usize {
        out_dim(
            self.w,
            self.pad_begin.1 + self.pad_end.1,
            self.kernel.1,
            self.stride.1,
        )
        .unwrap_or(0)
    }
    /// Elements of the input (and of its gradient).
    pub fn src_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    /// Elements of the output (and of its gradient).
    pub fn dst_len(&self) -> usize {
        self.n * self.c * self.out_h() * self.out_w()
    }
    /// Checks positive sizes, a fitting window and padding smaller than the window
    /// (a window entirely in padding has no maximum and no average).
    pub fn validate(&self, op: &'static str) -> Result<()> {
        for (what, v) in [
            ("batch size n", self.n),
            ("channels c", self.c),
            ("input height h", self.h),
            ("input width w", self.w),
            ("kernel height", self.kernel.0),
            ("kernel width", self.kernel.1),
            ("vertical stride", self.stride.0),
            ("horizontal stride", self.stride.1),
        ] {
            nonzero(op, what, v)?;
        }
        let pads = [
            ("top padding", self.pad_begin.0, self.kernel.0),
            ("bottom padding", self.pad_end.0, self.kernel.0),
            ("left padding", self.pad_begin.1, self.kernel.1),
            ("right padding", self.pad_end.1, self.kernel.1),
        ];
        for (what, p, k) in pads {
            if p >= k {
                return Err(Error::Shape {
                    op,
                    what,
                    got: p.to_string(),
                    expected: format!("less than the window size {k}"),
                });
            }
        }
        if self.h + self.pad_begin.0 + self.pad_end.0 < self.kernel.0
            || self.w + self.pad_begin.1 + self.pad_end.1 < self.kernel.1
        {
            return Err(Error::Shape {
                op,
                what: "padded input",
                got: format!("{}x{}", self.h, self.w),
                expected: format!("at least the window {:?}", self.kernel),
            });
        }
        Ok(())
    }
}
