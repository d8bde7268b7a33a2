//! The parity value formula against the check values of ../shared/parity/VALUES.md.
#![allow(clippy::excessive_precision)] // the exact decimals of VALUES.md, kept verbatim

mod common;
use common::*;

#[test]
fn primitives_match_values_md() {
    assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
    assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    assert_eq!(splitmix64(0), 0xe220a8397b1dcdaf);
    assert_eq!(fnv1a64(b"conv1.weight"), 0x69a29a2cee47d254);
    assert_eq!(fnv1a64(b"input"), 0x1ebbae8f5810b65b);
}

#[test]
fn u_and_s_match_values_md() {
    let h = fnv1a64(b"conv1.weight");
    assert_eq!(splitmix64(h ^ 1), 0x13270f9292cbed3b);
    assert_eq!(u("conv1.weight", 0), 0.545074939727783203125);
    assert_eq!(s("conv1.weight", 1), -0.85037052631378173828125);
    assert_eq!(s("conv1.weight", 7), 0.53126490116119384765625);
    assert_eq!(u("input", 4), 0.969725191593170166015625);
    assert_eq!(s("input", 0), -0.80436336994171142578125);
}

#[test]
fn weights_match_values_md() {
    let w = formula_tensor("conv1.weight", &[64, 3, 7, 7]);
    let want = [
        0.0182130262f32,
        -0.171800792,
        0.185875699,
        0.138869911,
        0.0695352703,
        -0.00773801701,
        0.164590627,
        0.107331716,
    ];
    for (i, &x) in want.iter().enumerate() {
        assert!((w[i] - x).abs() <= 1e-9, "{i}: {} vs {x}", w[i]);
    }
    assert!((formula_tensor("bn1.weight", &[64])[0] - 0.972040772).abs() < 1e-8);
    assert!((formula_tensor("bn1.bias", &[64])[0] - -0.0655607581).abs() < 1e-9);
    assert!((formula_tensor("bn1.running_mean", &[64])[0] - 0.0468899831).abs() < 1e-9);
    assert!((formula_tensor("bn1.running_var", &[64])[0] - 1.14230752).abs() < 1e-7);
}

#[test]
fn input_matches_fixture_first8() {
    let fx = load_fixture("resnet50");
    let x = formula_input(&usizes(&fx["input_shape"]));
    let got: Vec<f32> = x
        .flatten_all()
        .unwrap()
        .narrow(0, 0, 8)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(got, floats(&fx["input_first8"]));
}
