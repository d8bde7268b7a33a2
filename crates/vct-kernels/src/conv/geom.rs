//! The geometry of a convolution and the checks that make it valid.

use crate::error::KernelError;

/// Geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geom {
    pub(super) n: usize,
    pub(super) cin: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) cout: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) sh: usize,
    pub(super) sw: usize,
    pub(super) ph: usize,
    pub(super) pw: usize,
    pub(super) groups: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
}

impl Geom {
    pub(super) fn cin_g(&self) -> usize {
        self.cin / self.groups
    }
    pub(super) fn cout_g(&self) -> usize {
        self.cout / self.groups
    }
    /// Rows of the column matrix of one group: input channels × kernel positions.
    pub(super) fn k_g(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }
    pub(super) fn in_image(&self) -> usize {
        self.cin * self.h * self.w
    }
    pub(super) fn out_plane(&self) -> usize {
        self.oh * self.ow
    }
    pub(super) fn out_image(&self) -> usize {
        self.cout * self.out_plane()
    }
    /// 1×1, stride 1, no padding: the input image already is the column matrix.
    pub(super) fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
    pub(super) fn weight_len(&self) -> usize {
        self.cout * self.k_g()
    }
}

/// Validates a convolution's arguments (this crate's contract: PyTorch's `conv2d`
/// without dilation) and works out its output size.
pub(super) fn geometry(
    xd: &[usize],
    wd: &[usize],
    stride: (usize, usize),
    padding: (usize, usize),
    groups: usize,
) -> Result<Geom, KernelError> {
    const OP: &str = "conv2d";
    let param = |what, got: usize, expected: &str| KernelError::Param {
        op: OP,
        what,
        got: got.to_string(),
        expected: expected.to_string(),
    };
    if groups == 0 {
        return Err(param("groups", 0, "at least 1"));
    }
    if stride.0 == 0 || stride.1 == 0 {
        return Err(param("stride", 0, "at least 1 in both dimensions"));
    }
    let (n, cin, h, w) = (xd[0], xd[1], xd[2], xd[3]);
    let (cout, cin_g, kh, kw) = (wd[0], wd[1], wd[2], wd[3]);
    if cin % groups != 0 || cout % groups != 0 || cin_g * groups != cin || cin_g == 0 {
        return Err(KernelError::Shape {
            op: OP,
            what: "weight",
            got: wd.to_vec(),
            expected: format!(
                "(C_out, C_in / groups, kh, kw) with C_in = {cin}, groups = {groups} dividing C_in and C_out"
            ),
        });
    }
    if kh == 0 || kw == 0 || h + 2 * padding.0 < kh || w + 2 * padding.1 < kw {
        return Err(KernelError::Shape {
            op: OP,
            what: "weight",
            got: wd.to_vec(),
            expected: format!(
                "a kernel no larger than the padded input {}×{}",
                h + 2 * padding.0,
                w + 2 * padding.1
            ),
        });
    }
    Ok(Geom {
        n,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        sh: stride.0,
        sw: stride.1,
        ph: padding.0,
        pw: padding.1,
        groups,
        oh: (h + 2 * padding.0 - kh) / stride.0 + 1,
        ow: (w + 2 * padding.1 - kw) / stride.1 + 1,
    })
}
