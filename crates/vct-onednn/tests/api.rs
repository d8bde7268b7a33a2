//! Checks of the safe API that hold whether or not this machine has oneDNN.

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
fn pool_shape_sizes_and_validation() {
    // ResNet stem 112 -> 56 with 3x3/2, padding 1 on both sides (the last window ends
    // inside the padding, so the explicit end padding is the same 1).
    let s = Pool2dShape {
        n: 1,
        c: 1,
        h: 112,
        w: 112,
        kernel: (3, 3),
        stride: (2, 2),
        pad_begin: (1, 1),
        pad_end: (0, 0),
    };
    assert_eq!((s.out_h(), s.out_w()), (56, 56));
    assert!(s.validate("t").is_ok());
    // TF SAME 8x7 with 3x3/2: padding (0, 1) before and (1, 1) after gives 4x4.
    let t = Pool2dShape {
        h: 8,
        w: 7,
        pad_begin: (0, 1),
        pad_end: (1, 1),
        ..s
    };
    assert_eq!((t.out_h(), t.out_w()), (4, 4));
    assert_eq!(t.dst_len(), 16);
    // A padding as large as the window would make windows of padding only.
    let bad = Pool2dShape {
        pad_begin: (3, 0),
        ..s
    };
    assert!(bad.validate("t").is_err());
}

#[test]
fn only_unimplemented_counts_as_unsupported() {
    let refused = Error::Dnnl {
        op: "conv2d_forward",
        call: "dnnl_primitive_desc_create",
        status: "dnnl_unimplemented",
    };
    assert!(refused.is_unsupported());
    let failed = Error::Dnnl {
        op: "conv2d_forward",
        call: "dnnl_primitive_execute",
        status: "dnnl_out_of_memory",
    };
    assert!(!failed.is_unsupported());
    assert!(!Error::Poisoned.is_unsupported());
    let bad_len = conv2d_forward(&shape(), &[0.0; 3], &[0.0; 3], None, &mut [0.0; 3]).unwrap_err();
    assert!(!bad_len.is_unsupported(), "{bad_len}");
}

/// Runs `check` in a child process of this test binary with [`LIBRARY_ENV`] pointing at a
/// file that does not exist, so the "not loaded" path is exercised whether or not this
/// machine has oneDNN (the load outcome is fixed per process).
fn in_a_process_without_onednn(test: &str, check: impl FnOnce()) {
    const MISSING: &str = "/nonexistent/libdnnl.so.2";
    if std::env::var(LIBRARY_ENV).as_deref() == Ok(MISSING) {
        check();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(LIBRARY_ENV, MISSING)
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("1 passed"), "the child ran no test: {log}");
}

#[test]
fn without_the_library_every_operation_says_not_loaded() {
    in_a_process_without_onednn(
        "without_the_library_every_operation_says_not_loaded",
        || {
            assert!(!available());
            let s = shape();
            let x = vec![0.0; s.src_len()];
            let w = vec![0.0; s.weights_len()];
            let mut y = vec![0.0; s.dst_len()];
            let e = conv2d_forward(&s, &x, &w, None, &mut y).unwrap_err();
            assert!(matches!(e, Error::NotLoaded { .. }), "{e:?}");
            let msg = e.to_string();
            // Names the file it tried, what to install, and how to point at another file.
            for want in ["/nonexistent/libdnnl.so.2", "libdnnl2", LIBRARY_ENV] {
                assert!(msg.contains(want), "{want} not in: {msg}");
            }
            assert!(!e.is_unsupported());
            let p = Pool2dShape {
                n: 1,
                c: 1,
                h: 4,
                w: 4,
                kernel: (2, 2),
                stride: (2, 2),
                pad_begin: (0, 0),
                pad_end: (0, 0),
            };
            let mut py = vec![0.0; p.dst_len()];
            let e = pool2d_forward(&p, PoolKind::Max, &[0.0; 16], &mut py).unwrap_err();
            assert!(matches!(e, Error::NotLoaded { .. }), "{e:?}");
            assert!(library().is_err());
        },
    );
}

#[test]
#[ignore = "needs oneDNN 2.x (Debian's libdnnl2); .ci/run runs it"]
fn onednn_engine_is_available() {
    assert!(available());
    let lib = library().unwrap();
    assert!(lib.starts_with("oneDNN 2."), "{lib}");
}
