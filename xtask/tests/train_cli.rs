//! `cargo xtask train | eval | predict` as a user runs them, on generated images.

use std::path::Path;
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

fn tiny_data(dir: &Path) -> String {
    let root = dir.join("data");
    let cfg = vct_data::demo::DemoConfig {
        seed: 2,
        size: 40,
        train_per_class: 4,
        val_per_class: 2,
    };
    vct_data::demo::generate(&root, &cfg).unwrap();
    root.to_str().unwrap().to_string()
}

#[test]
fn train_then_eval_then_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path());
    let out = tmp.path().join("run");
    let out_s = out.to_str().unwrap();
    let (ok, stdout, err) = xtask(&[
        "train",
        "--template",
        "clarifai_inceptionv2",
        "--data",
        &data,
        "--out",
        out_s,
        "--set",
        "image_size=32",
        "--set",
        "batch_size=8",
        "--set",
        "num_epochs=1",
        "--set",
        "logreg=0",
        "--plain",
    ]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("best epoch: 1") && stdout.contains("model.safetensors"),
        "{stdout}"
    );
    assert!(out.join("model.safetensors").is_file());

    // The same folder again is refused; --overwrite replaces it.
    let (ok, _, err) = xtask(&[
        "train",
        "--data",
        &data,
        "--out",
        out_s,
        "--set",
        "num_epochs=1",
    ]);
    assert!(!ok);
    assert!(err.contains("already holds a run"), "{err}");

    let (ok, stdout, err) = xtask(&["eval", "--model", out_s, "--data", &format!("{data}/val")]);
    assert!(ok, "{err}");
    assert!(stdout.contains("validation: 8 images"), "{stdout}");
    assert!(out.join("eval/metrics.json").is_file() && out.join("eval/confusion.csv").is_file());

    let image = format!("{data}/val/stripes/0000.png");
    let (ok, stdout, err) = xtask(&[
        "predict", "--model", out_s, "--json", "--top-k", "2", &image,
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["concepts"].as_array().unwrap().len(), 2);

    // Resume extends the run to a second epoch.
    let (ok, _, err) = xtask(&[
        "train",
        "--resume",
        out_s,
        "--data",
        &data,
        "--set",
        "num_epochs=2",
        "--plain",
    ]);
    assert!(ok, "{err}");
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    assert_eq!(events.matches("\"event\":\"epoch\"").count(), 2, "{events}");
}

#[test]
fn invalid_params_are_all_reported_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("never");
    let (ok, _, err) = xtask(&[
        "train",
        "--template",
        "Clarifai_ResNext",
        "--data",
        "/does/not/matter",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "image_size=40",
    ]);
    assert!(!ok);
    assert!(
        err.contains("image_size: 40 is not a multiple of 16"),
        "{err}"
    );
    assert!(
        !out.exists(),
        "nothing may be written before the parameters are valid"
    );

    let (ok, _, err) = xtask(&[
        "train",
        "--data",
        tmp.path().join("missing").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("missing"), "{err}");
}
