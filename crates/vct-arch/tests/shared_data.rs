//! The copied fixtures are byte-identical to ../shared/parity (run by .ci/run).

#[test]
#[ignore = "reads ../shared; run by .ci/run"]
fn shared_data_parity_fixtures_are_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in [
        "resnet50",
        "resnet50_nonsquare",
        "resnext50_32x4d",
        "bninception",
    ] {
        let ours = std::fs::read(root.join(format!("tests/fixtures/parity/{name}.json"))).unwrap();
        let shared =
            std::fs::read(root.join(format!("../../../shared/parity/{name}.json"))).unwrap();
        assert!(ours == shared, "{name}.json differs from ../shared/parity");
    }
}
