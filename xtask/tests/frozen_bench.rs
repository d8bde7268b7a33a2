//! `cargo xtask bench frozen` on generated images: both runs train, the cached one reads
//! its embeddings from the run folder, and the two trained heads are equal.

use std::process::Command;

#[test]
fn frozen_bench_times_both_paths_and_the_heads_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shapes");
    let cfg = vct_data::demo::DemoConfig {
        seed: 4,
        size: 40,
        train_per_class: 4,
        val_per_class: 2,
    };
    vct_data::demo::generate(&data, &cfg).unwrap();
    let keep = tmp.path().join("runs");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", "frozen", "--epochs", "2"])
        .args(["--set", "image_size=32", "--set", "batch_size=4"])
        .arg("--data")
        .arg(&data)
        .arg("--keep")
        .arg(&keep)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One line per run with both epochs' times, then the comparison.
    for run in ["cached", "images"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(run))
            .unwrap_or_else(|| panic!("no {run} line in {stdout}"));
        let epochs: Vec<f64> = line
            .split("epochs")
            .nth(1)
            .unwrap_or_else(|| panic!("no epoch times: {line}"))
            .split_whitespace()
            .map(|t| t.trim_end_matches('s').parse().unwrap())
            .collect();
        assert_eq!(epochs.len(), 2, "{line}");
    }
    assert!(stdout.contains("epoch: "), "{stdout}");
    let diff: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("largest difference between the two trained heads, relative to the largest weight: "))
        .unwrap_or_else(|| panic!("no head comparison in {stdout}"))
        .trim()
        .parse()
        .unwrap();
    assert!(diff <= 1e-4, "heads differ by {diff}");
    // The cached run built its embedding cache; the other read the images.
    assert!(keep.join("cached").join("embeddings").is_dir());
    assert!(!keep.join("images").join("embeddings").exists());
}
