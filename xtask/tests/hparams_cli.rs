//! The hyperparameter commands as a user runs them.

use std::process::Command;

fn xtask(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_reports_all_three_mistakes_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("three.json");
    std::fs::write(
        &file,
        r#"{"template": "Clarifai_ResNext", "params": {"image_size": 40, "batch_size": 500, "lrate": 0.1}}"#,
    )
    .unwrap();
    let (ok, _, err) = xtask(&["validate", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("3 invalid hyperparameters"), "{err}");
    assert!(
        err.contains("image_size: 40 is not a multiple of 16"),
        "{err}"
    );
    assert!(
        err.contains("batch_size: 500 is above the maximum 128"),
        "{err}"
    );
    assert!(err.contains("lrate: unknown key"), "{err}");
}

#[test]
fn params_output_validates() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["json", "yaml", "toml"] {
        let (ok, text, _) = xtask(&["params", "clarifai_resnext", "--format", format]);
        assert!(ok);
        let file = dir.path().join(format!("p.{format}"));
        std::fs::write(&file, text).unwrap();
        let (ok, out, err) = xtask(&["validate", file.to_str().unwrap()]);
        assert!(ok, "{err}");
        assert!(out.contains("valid Clarifai_ResNext"), "{out}");
    }
}

#[test]
fn templates_lists_and_describes() {
    let (ok, out, _) = xtask(&["templates"]);
    assert!(ok);
    for name in [
        "MMClassification_ResNet_50_RSB_A1",
        "Clarifai_InceptionBatchNorm",
        "Clarifai_InceptionV2",
        "Clarifai_ResNext",
        "Clarifai_InceptionTransferEmbedNorm",
    ] {
        assert!(out.contains(name), "{out}");
    }
    let (ok, out, _) = xtask(&["templates", "Clarifai_InceptionTransferEmbedNorm"]);
    assert!(ok);
    assert!(
        out.contains("base_gradient_multiplier") && out.contains("0.001"),
        "{out}"
    );
    let (ok, _, err) = xtask(&["templates", "Clarifai_ResNxt"]);
    assert!(!ok);
    assert!(err.contains("did you mean Clarifai_ResNext"), "{err}");
}

#[test]
fn schemas_check_names_the_stale_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, _, _) = xtask(&["schemas", "--dir", d]);
    assert!(ok);
    let (ok, _, _) = xtask(&["schemas", "--check", "--dir", d]);
    assert!(ok);
    std::fs::write(dir.path().join("Clarifai_InceptionV2.schema.json"), "{}").unwrap();
    let (ok, _, err) = xtask(&["schemas", "--check", "--dir", d]);
    assert!(!ok);
    assert!(
        err.contains("Clarifai_InceptionV2.schema.json differs"),
        "{err}"
    );
}
