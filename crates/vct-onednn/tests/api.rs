//! Checks of the safe API that hold with or without the `link` feature.

use vct_onednn::*;

fn shape() -> Conv2dShape {
    Conv2dShape {
        n: 2,
        c_in: 4,
        h: 5,
        w: 6,
        c_out: 6,
        kh: 3,
        kw: 3,
        stride: (2, 1),
        pad: (1, 0),
        groups: 2,
    }
}

#[test]
fn conv_shape_sizes() {
    let s = shape();
    assert_eq!((s.out_h(), s.out_w()), (3, 4));
    assert_eq!(s.src_len(), 2 * 4 * 5 * 6);
    assert_eq!(s.weights_len(), 6 * 2 * 3 * 3);
    assert_eq!(s.dst_len(), 2 * 6 * 3 * 4);
}

#[test]
fn wrong_buffer_length_is_an_error_naming_the_buffer() {
    let s = shape();
    let x = vec![0.0; s.src_len() - 1];
    let w = vec![0.0; s.weights_len()];
    let mut y = vec![0.0; s.dst_len()];
    let e = conv2d_forward(&s, &x, &w, None, &mut y).unwrap_err();
    assert_eq!(
        e,
        Error::BufferLen {
            op: "conv2d_forward",
            what: "src",
            got: s.src_len() - 1,
            expected: s.src_len()
        }
    );
}

#[test]
fn groups_must_divide_channels() {
    let s = Conv2dShape {
        groups: 3,
        ..shape()
    };
    let e = s.validate("t").unwrap_err();
    assert!(e.to_string().contains("multiple of groups = 3"), "{e}");
    let z = Conv2dShape {
        stride: (0, 1),
        ..shape()
    };
    assert!(z.validate("t").is_err());
}

#[test]
fn pool_shape_geometry_follows_torch_and_tf() {
    // 112 → 56 with 3x3/2 pad 1 (ResNet stem).
    let s = Pool2dShape::torch(1, 1, 112, 112, (3, 3), (2, 2), (1, 1), false).unwrap();
    // The last window ends on the last row, so no padding is needed after it.
    assert_eq!((s.out_h(), s.pad_end), (56, (0, 0)));
    // Ceil mode: 7 → 3 with 3x3/2 (floor also 3), 8 → 4 (floor 3).
    let c = Pool2dShape::torch(1, 1, 8, 8, (3, 3), (2, 2), (0, 0), true).unwrap();
    assert_eq!((c.out_h(), c.pad_end), (4, (1, 1)));
    let f = Pool2dShape::torch(1, 1, 8, 8, (3, 3), (2, 2), (0, 0), false).unwrap();
    assert_eq!(f.out_h(), 3);
    // TF SAME: out = ceil(in / stride), extra padding at the end.
    let t = Pool2dShape::same(1, 1, 8, 7, 3, 2);
    assert_eq!((t.out_h(), t.out_w()), (4, 4));
    assert_eq!((t.pad_begin, t.pad_end), ((0, 1), (1, 1)));
    assert!(t.validate("t").is_ok());
    let bad = Pool2dShape {
        pad_begin: (3, 0),
        ..f
    };
    assert!(bad.validate("t").is_err());
}

#[cfg(not(feature = "link"))]
#[test]
fn without_link_every_operation_says_not_built() {
    assert!(!available());
    let s = shape();
    let x = vec![0.0; s.src_len()];
    let w = vec![0.0; s.weights_len()];
    let mut y = vec![0.0; s.dst_len()];
    let e = conv2d_forward(&s, &x, &w, None, &mut y).unwrap_err();
    assert_eq!(e, Error::NotBuilt);
    assert!(e.to_string().contains("libdnnl-dev"), "{e}");
    let p = Pool2dShape::torch(1, 1, 4, 4, (2, 2), (2, 2), (0, 0), false).unwrap();
    let mut py = vec![0.0; p.dst_len()];
    assert_eq!(
        pool2d_forward(&p, PoolKind::Max, &[0.0; 16], &mut py).unwrap_err(),
        Error::NotBuilt
    );
}

#[cfg(feature = "link")]
#[test]
fn with_link_the_engine_is_available() {
    assert!(available());
}
