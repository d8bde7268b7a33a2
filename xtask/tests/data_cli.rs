//! `cargo xtask data check` as a user runs it: the table, `--json`, the exit code,
//! and the quick check `train` prints before it starts.

use std::path::{Path, PathBuf};
use std::process::Command;

fn xtask(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The demo shapes: 12 training and 3 validation 48-pixel images per concept.
fn shapes(dir: &Path) -> PathBuf {
    let root = dir.join("shapes");
    let cfg = vct_data::demo::DemoConfig {
        seed: 5,
        size: 48,
        train_per_class: 12,
        val_per_class: 3,
    };
    vct_data::demo::generate(&root, &cfg).unwrap();
    root
}

/// `shapes` with a zero-byte file, a training image copied into val, and an
/// empty concept folder.
fn broken(dir: &Path) -> PathBuf {
    let root = shapes(dir);
    std::fs::write(root.join("train/circle/empty.png"), b"").unwrap();
    std::fs::copy(
        root.join("train/square/0003.png"),
        root.join("val/square/copied.png"),
    )
    .unwrap();
    std::fs::create_dir(root.join("train/hexagon")).unwrap();
    root
}

#[test]
fn clean_data_passes_and_the_table_shows_splits_and_concepts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = shapes(tmp.path());
    let (code, out, err) = xtask(&["data", "check", root.to_str().unwrap(), "--min-size", "48"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("(split folders): every image decoded; input size 48 (--min-size)"),
        "{out}"
    );
    let row = out.lines().find(|l| l.starts_with("train")).unwrap();
    assert_eq!(
        row.split_whitespace().take(4).collect::<Vec<_>>(),
        ["train", "48", "48", "4"],
        "{out}"
    );
    let circle = out.lines().find(|l| l.starts_with("circle")).unwrap();
    assert_eq!(
        circle.split_whitespace().collect::<Vec<_>>(),
        ["circle", "12", "3"]
    );
    assert!(out.contains("0 errors"), "{out}");
    assert!(!out.contains("errors ("), "{out}");
}

#[test]
fn errors_are_listed_and_exit_with_1() {
    let tmp = tempfile::tempdir().unwrap();
    let root = broken(tmp.path());
    let root_s = root.to_str().unwrap();
    let (code, out, err) = xtask(&["data", "check", root_s, "--min-size", "48"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("errors (3):"), "{out}");
    assert!(
        out.contains("zero_byte        train/circle/empty.png: empty file (0 bytes)"),
        "{out}"
    );
    assert!(
        out.contains("train/square/0003.png [square] = val/square/copied.png [square], in train and val (leakage)"),
        "{out}"
    );
    assert!(
        out.contains("concept folder \"hexagon\" has no image files"),
        "{out}"
    );
    assert!(out.contains("3 errors, 0 warnings (exit code 1)"), "{out}");

    // The same as JSON.
    let (code, out, err) = xtask(&["data", "check", root_s, "--min-size", "48", "--json"]);
    assert_eq!(code, Some(1), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["format"].as_u64(), v["errors"].as_u64()),
        (Some(1), Some(3))
    );
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["zero_byte", "exact_duplicate", "empty_concept"]);
    let dup = &v["findings"][1];
    assert_eq!(dup["severity"], "error");
    assert_eq!(dup["cross_split"], true);
    assert_eq!(dup["files"][1]["split"], "val");
    assert_eq!(v["splits"][0]["usable"], 48);

    // A validation set given by path, as `train --val`.
    let train = root.join("train");
    let val = root.join("val");
    let (code, out, _) = xtask(&[
        "data",
        "check",
        train.to_str().unwrap(),
        "--val",
        val.to_str().unwrap(),
        "--min-size",
        "48",
        "--json",
    ]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["layout"], "splits");
    assert_eq!(v["splits"][1]["name"], "val");
    assert_eq!(v["errors"], 3);
}

#[test]
fn a_template_sets_the_input_size() {
    let tmp = tempfile::tempdir().unwrap();
    let root = shapes(tmp.path());
    let (code, out, err) = xtask(&[
        "data",
        "check",
        root.to_str().unwrap(),
        "--template",
        "clarifai_inceptionv2",
        "--quick",
    ]);
    // Small images are warnings: the exit code stays 0.
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("input size 256 (Clarifai_InceptionV2 image_size)"),
        "{out}"
    );
    assert!(out.contains("headers only (--quick)"), "{out}");
    assert!(out.contains("warnings (60):"), "{out}");
    assert!(
        out.contains("small_image      ... and 50 more (--all or --json)"),
        "{out}"
    );
    let (_, out, _) = xtask(&[
        "data",
        "check",
        root.to_str().unwrap(),
        "--template",
        "clarifai_inceptionv2",
        "--set",
        "image_size=48",
    ]);
    assert!(
        out.contains("input size 48 (Clarifai_InceptionV2 image_size)"),
        "{out}"
    );
    assert!(out.contains("0 errors, 0 warnings"), "{out}");
}

#[test]
fn train_prints_the_quick_check_first() {
    let tmp = tempfile::tempdir().unwrap();
    let root = broken(tmp.path());
    let root_s = root.to_str().unwrap();
    let out = tmp.path().join("run");
    let args = [
        "train",
        "--data",
        root_s,
        "--out",
        out.to_str().unwrap(),
        "--set",
        "num_epochs=1",
        "--plain",
    ];
    // Training refuses the empty concept folder, after the check named it.
    let (code, _, err) = xtask(&args);
    assert_ne!(code, Some(0));
    assert!(err.contains("data check: 3 errors, 61 warnings"), "{err}");
    assert!(
        err.contains("error: train/circle/empty.png: empty file (0 bytes)"),
        "{err}"
    );
    assert!(err.contains("(leakage)"), "{err}");
    assert!(err.contains("... 56 more small_image"), "{err}");
    assert!(err.contains("hexagon"), "{err}");
    let (code, _, err) = xtask(&[&args[..], &["--no-data-check"]].concat());
    assert_ne!(code, Some(0));
    assert!(!err.contains("data check"), "{err}");
    assert!(err.contains("hexagon"), "{err}");
}
