//! `cargo xtask bench train --torch PY`: the PyTorch side alternates with vct round by
//! round and the ratio table divides neighbouring runs. A shell script stands in for
//! `bench/torch_train_step.py` (torch is never installed for the tests): it prints the
//! JSON line the real script prints, with the arguments it was given.

use std::path::Path;
use std::process::Command;

/// Writes the stand-in: one JSON line, `images_per_s` and `peak_rss_mib` from the
/// environment, the arguments echoed back; exits 3 when `FAKE_TORCH_FAIL` is set.
fn fake_torch(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("fake_torch.sh");
    std::fs::write(
        &script,
        r#"if [ -n "$FAKE_TORCH_FAIL" ]; then echo "No module named 'torch'" >&2; exit 3; fi
echo "a line before the result"
echo "{\"backend\": \"pytorch\", \"images_per_s\": $FAKE_IPS, \"median_step_ms\": 1.0, \"peak_rss_mib\": $FAKE_MIB, \"phases_ms\": null, \"args\": \"$*\"}"
"#,
    )
    .unwrap();
    script
}

fn bench(dir: &Path, extra_env: &[(&str, &str)]) -> (bool, String, String, Vec<serde_json::Value>) {
    let json = dir.join("rows.jsonl");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["bench", "train", "--arch", "resnet50", "--shape", "1x32"])
        .args(["--mode", "infer", "--backend", "rust", "--steps", "1"])
        .args(["--rounds", "2", "--python", "sh", "--torch"])
        .arg(fake_torch(dir))
        .arg("--json")
        .arg(&json)
        .env("FAKE_IPS", "0.5")
        .env("FAKE_MIB", "2000");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("xtask runs");
    let rows = std::fs::read_to_string(&json)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        rows,
    )
}

#[test]
fn bench_train_torch_alternates_and_divides_neighbouring_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr, rows) = bench(tmp.path(), &[]);
    assert!(ok, "{stdout}\n{stderr}");
    // Round by round: PyTorch, then vct.
    let backends: Vec<&str> = rows
        .iter()
        .map(|r| r["backend"].as_str().unwrap())
        .collect();
    assert_eq!(backends, ["pytorch", "rust", "pytorch", "rust"], "{rows:?}");
    // The script got the same configuration and the thread count vct runs with.
    let args = rows[0]["args"].as_str().unwrap();
    for want in [
        "--arch resnet50",
        "--shape 1x32",
        "--mode infer",
        "--steps 1",
        "--threads ",
    ] {
        assert!(args.contains(want), "{args}");
    }
    // The table's range is over the per-round ratios vct ÷ PyTorch.
    let ratio = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap();
    let per_round: Vec<(f64, f64)> = rows
        .chunks(2)
        .map(|p| {
            (
                ratio(&p[1], "images_per_s") / ratio(&p[0], "images_per_s"),
                ratio(&p[1], "peak_rss_mib") / ratio(&p[0], "peak_rss_mib"),
            )
        })
        .collect();
    let range = |f: fn(&(f64, f64)) -> f64| {
        let lo = per_round.iter().map(f).fold(f64::INFINITY, f64::min);
        let hi = per_round.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.2}–{hi:.2}×")
    };
    let table = stdout
        .split("vct ÷ PyTorch")
        .nth(1)
        .unwrap_or_else(|| panic!("no ratio table:\n{stdout}"));
    let line = table
        .lines()
        .find(|l| l.starts_with("resnet50"))
        .unwrap_or_else(|| panic!("no resnet50 row:\n{table}"));
    assert!(line.contains(&range(|r| r.0)), "{line}\n{per_round:?}");
    assert!(line.contains(&range(|r| r.1)), "{line}\n{per_round:?}");
}

#[test]
fn bench_train_torch_failure_is_named_and_fails_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr, rows) = bench(tmp.path(), &[("FAKE_TORCH_FAIL", "1")]);
    assert!(!ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("resnet50 1x32 pytorch infer: failed") && stderr.contains("torch"),
        "{stderr}"
    );
    // vct's own rows still ran; the table says which ratio failed.
    assert!(
        rows.iter().all(|r| r["backend"] == "rust") && rows.len() == 2,
        "{rows:?}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("resnet50") && l.contains("failed")),
        "{stdout}"
    );
}
