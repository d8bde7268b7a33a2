//! The run contract on the CLI, as a user meets it: a run killed mid-epoch or during a
//! checkpoint write (`kill -9` and the fault-injection points of vct-train's
//! `fault-injection` feature, on for these tests) and resumed with `--resume DIR` alone
//! ends with the same weights, bit for bit, as an uninterrupted run; a full disk leaves
//! the previous checkpoint; `--overwrite` never loses the old run; every bound and every
//! mistake is reported before work; `predict` scores what it can.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn xtask(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("xtask runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn data(dir: &Path) -> String {
    let root = dir.join("data");
    let cfg = vct_data::demo::DemoConfig {
        seed: 3,
        size: 40,
        train_per_class: 8,
        val_per_class: 1,
    };
    vct_data::demo::generate(&root, &cfg).unwrap();
    // Flat: one folder per concept, so --val-split decides the split.
    let flat = dir.join("flat");
    for split in ["train", "val"] {
        for entry in std::fs::read_dir(root.join(split)).unwrap().flatten() {
            let concept = flat.join(entry.file_name());
            std::fs::create_dir_all(&concept).unwrap();
            for img in std::fs::read_dir(entry.path()).unwrap().flatten() {
                let name = format!("{split}-{}", img.file_name().to_string_lossy());
                std::fs::copy(img.path(), concept.join(name)).unwrap();
            }
        }
    }
    flat.to_str().unwrap().to_string()
}

/// Clarifai_InceptionV2 with a step schedule, seed 7, a validation split and
/// RandAugment: 36 images, batch 4, so 8 steps an epoch.
fn inception_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--template",
        "Clarifai_InceptionV2",
        "--data",
        data,
        "--out",
        out,
        "--seed",
        "7",
        "--val-split",
        "0.25",
        "--randaugment",
        "2,5",
        "--set",
        "image_size=32",
        "--set",
        "batch_size=4",
        "--set",
        "num_epochs=3",
        "--set",
        "init_epochs=1",
        "--set",
        "step_epochs=1",
        "--set",
        "logreg=0",
        "--plain",
    ]
}

/// RSB-A1 from random weights: LAMB, warmup and a cosine over the run.
fn rsb_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--template",
        "MMClassification_ResNet_50_RSB_A1",
        "--data",
        data,
        "--out",
        out,
        "--seed",
        "11",
        "--val-split",
        "0.25",
        "--set",
        "image_size=32",
        "--set",
        "batch_size=6",
        "--set",
        "num_epochs=3",
        "--set",
        "warmup_iters=3",
        "--set",
        "pretrained_weights=None",
        "--plain",
    ]
}

/// Every tensor of the newest checkpoint's model, by name.
fn latest_weights(out: &Path) -> Vec<(String, Vec<u8>)> {
    let name = std::fs::read_to_string(out.join("checkpoints/LATEST")).unwrap();
    let file = out
        .join("checkpoints")
        .join(name.trim())
        .join("model.safetensors");
    let t = candle_core::safetensors::load(file, &candle_core::Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<u8>)> = t
        .into_iter()
        .map(|(k, t)| {
            let f: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            (k, f.iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect();
    v.sort();
    v
}

fn latest(out: &Path) -> String {
    std::fs::read_to_string(out.join("checkpoints/LATEST"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn assert_same_weights(a: &Path, b: &Path) {
    let (x, y) = (latest_weights(a), latest_weights(b));
    assert_eq!(x.len(), y.len());
    for ((n, p), (_, q)) in x.iter().zip(&y) {
        assert!(
            p == q,
            "{n} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
    assert_eq!(latest(a), latest(b));
}

/// Starts a run and kills it with SIGKILL once a step of `epoch` has been logged.
fn kill_during_epoch(args: &[&str], out: &Path, epoch: u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap_or_default();
        let in_epoch = events.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["event"] == "step" && v["epoch"] == epoch)
        });
        if in_epoch {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before epoch {epoch} started");
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no step of epoch {epoch} after 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn resume(out: &Path, env: &[(&str, &str)]) -> Output {
    xtask(
        &["train", "--resume", out.to_str().unwrap(), "--plain"],
        env,
    )
}

fn killed_and_resumed_equals_uninterrupted(args: for<'a> fn(&'a str, &'a str) -> Vec<&'a str>) {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let full: PathBuf = tmp.path().join("full");
    let o = xtask(&args(&d, full.to_str().unwrap()), &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(latest(&full), "epoch-0003");

    // kill -9 in the middle of epoch 2, then `--resume DIR` with no other flag.
    let killed = tmp.path().join("killed");
    kill_during_epoch(&args(&d, killed.to_str().unwrap()), &killed, 2);
    assert_eq!(latest(&killed), "epoch-0001", "killed mid-epoch 2");
    let o = resume(&killed, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("resuming"), "{}", text(&o));
    assert_same_weights(&full, &killed);
    // run.json states the run's own settings, not the CLI's defaults.
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(killed.join("run.json")).unwrap()).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["config"]["seed"], want["config"]["seed"]);
    assert_eq!(run["config"]["data"], want["config"]["data"]);
    assert_eq!(run["data"]["val_images"], want["data"]["val_images"]);
    // The events of the lost half epoch are not doubled.
    let steps = |p: &Path| {
        std::fs::read_to_string(p.join("events.jsonl"))
            .unwrap()
            .matches("\"event\":\"step\"")
            .count()
    };
    assert_eq!(steps(&killed), steps(&full));
}

#[test]
fn killed_mid_epoch_and_resumed_equals_uninterrupted() {
    killed_and_resumed_equals_uninterrupted(inception_args);
}

#[test]
fn killed_rsb_a1_run_with_a_cosine_schedule_resumes_exactly() {
    killed_and_resumed_equals_uninterrupted(rsb_args);
}

#[test]
fn crashes_during_a_checkpoint_write_cost_at_most_the_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let full = tmp.path().join("full");
    let o = xtask(&inception_args(&d, full.to_str().unwrap()), &[]);
    assert!(o.status.success(), "{}", text(&o));
    for fault in [
        "between-renames@2",
        "partial-write:optimizer.safetensors@2",
        "partial-write:model.safetensors@2",
    ] {
        let out = tmp.path().join(fault.replace([':', '@', '.'], "-"));
        let o = xtask(
            &inception_args(&d, out.to_str().unwrap()),
            &[("VCT_FAULT", fault)],
        );
        assert!(!o.status.success(), "{fault}: the process should have died");
        assert!(text(&o).contains("aborting"), "{fault}: {}", text(&o));
        // LATEST still names epoch 1's complete checkpoint.
        assert_eq!(latest(&out), "epoch-0001", "{fault}");
        let o = resume(&out, &[]);
        assert!(o.status.success(), "{fault}: {}", text(&o));
        assert_same_weights(&full, &out);
        let leftovers: Vec<_> = std::fs::read_dir(out.join("checkpoints"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{fault}: {leftovers:?}");
    }
}

#[test]
fn a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_the_run_resumable() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let full = tmp.path().join("full");
    let o = xtask(&inception_args(&d, full.to_str().unwrap()), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = tmp.path().join("enospc");
    let o = xtask(
        &inception_args(&d, out.to_str().unwrap()),
        &[("VCT_FAULT", "enospc:model.safetensors@2")],
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("No space left on device") && t.contains("model.safetensors"),
        "{t}"
    );
    assert_eq!(latest(&out), "epoch-0001");
    // What the previous checkpoint holds loads and verifies.
    vct_train::checkpoint::load_state(&out.join("checkpoints/epoch-0001")).unwrap();
    let o = resume(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_same_weights(&full, &out);
}

fn file_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for f in [
        "run.json",
        "model.safetensors",
        "metrics.json",
        "checkpoints/LATEST",
    ] {
        v.push((f.to_string(), std::fs::read(dir.join(f)).unwrap()));
    }
    v
}

#[test]
fn overwrite_keeps_the_old_run_until_the_new_one_stands() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let out = tmp.path().join("run");
    let out_s = out.to_str().unwrap();
    let mut args = inception_args(&d, out_s);
    args.extend(["--set", "num_epochs=1"]);
    let o = xtask(&args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let before = file_bytes(&out);

    // A run that fails its checks, and one that fails writing its first checkpoint:
    // the old run stays exactly as it was and no staging folder is left.
    let mut invalid = args.clone();
    invalid.extend(["--overwrite", "--set", "num_epochs=0"]);
    let o = xtask(&invalid, &[]);
    assert!(!o.status.success());
    let mut overwrite = args.clone();
    overwrite.push("--overwrite");
    let o = xtask(&overwrite, &[("VCT_FAULT", "enospc:model.safetensors@0")]);
    assert!(!o.status.success());
    assert!(text(&o).contains("No space left on device"), "{}", text(&o));
    assert_eq!(file_bytes(&out), before, "the old run changed");
    let siblings: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !siblings.iter().any(|s| s.contains(".new-")),
        "{siblings:?}"
    );

    // A run that stands moves the old one aside, never deletes it.
    let o = xtask(&overwrite, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("run.old-"), "{}", text(&o));
    let aside = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("run.old-"))
        .expect("the old run, moved aside")
        .path();
    assert_eq!(file_bytes(&aside), before);
    assert!(out.join("checkpoints/LATEST").is_file());
}

#[test]
fn a_resume_restores_the_run_and_refuses_changes_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let out = tmp.path().join("run");
    let out_s = out.to_str().unwrap();
    let mut args = inception_args(&d, out_s);
    args.extend(["--set", "num_epochs=1"]);
    let o = xtask(&args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = xtask(
        &[
            "train",
            "--resume",
            out_s,
            "--seed",
            "0",
            "--set",
            "batch_size=8",
            "--val-split",
            "0.5",
            "--set",
            "num_epochs=2",
        ],
        &[],
    );
    assert!(!o.status.success());
    let t = text(&o);
    for want in [
        "seed: the run has 7, asked for 0",
        "batch_size: the run has 4, asked for 8",
        "validation",
    ] {
        assert!(t.contains(want), "{want:?} missing from {t}");
    }
    assert_eq!(
        latest(&out),
        "epoch-0001",
        "a refused resume changes nothing"
    );
    // Extending num_epochs (and patience) is allowed.
    let o = xtask(
        &[
            "train",
            "--resume",
            out_s,
            "--set",
            "num_epochs=2",
            "--early-stopping",
            "5",
            "--plain",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(latest(&out), "epoch-0002");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["config"]["seed"], 7);
    assert_eq!(run["config"]["early_stopping"], 5);
    assert_eq!(run["config"]["hparams"]["params"]["num_epochs"], 2);
}

#[test]
fn bounds_and_every_mistake_are_reported_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let out = tmp.path().join("never");
    let out_s = out.to_str().unwrap();
    for n in ["1000000000000", &u64::MAX.to_string()] {
        let o = xtask(
            &[
                "train",
                "--template",
                "Clarifai_ResNext",
                "--data",
                &d,
                "--out",
                out_s,
                "--random-init",
                "--set",
                &format!("num_items_per_epoch={n}"),
            ],
            &[],
        );
        assert!(!o.status.success());
        let t = text(&o);
        assert!(
            t.contains("num_items_per_epoch") && t.contains("at most 100000000"),
            "{t}"
        );
        assert!(
            !out.join("run.json").exists(),
            "refused before the run started"
        );
    }
    let o = xtask(
        &[
            "train",
            "--template",
            "Clarifai_ResNext",
            "--data",
            &d,
            "--out",
            out_s,
            "--set",
            "image_size=100",
            "--set",
            "imag_size=64",
            "--set",
            "num_epochs=0",
            "--set",
            "per_item_lrate=-1",
        ],
        &[],
    );
    assert!(!o.status.success());
    let t = text(&o);
    for key in ["image_size", "imag_size", "num_epochs", "per_item_lrate"] {
        assert!(t.contains(&format!("{key}:")), "{key} missing from {t}");
    }
    assert!(t.contains("4 invalid hyperparameters"), "{t}");
    // A batch and image size that cannot fit in memory are refused with the estimate.
    let o = xtask(
        &[
            "train",
            "--template",
            "MMClassification_ResNet_50_RSB_A1",
            "--data",
            &d,
            "--out",
            out_s,
            "--random-init",
            "--set",
            "image_size=1024",
            "--set",
            "batch_size=256",
        ],
        &[],
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("GiB") && t.contains("batch_size 256"), "{t}");
    assert!(!out.exists());
}

#[test]
fn predict_scores_what_it_can_and_names_each_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let out = tmp.path().join("run");
    let out_s = out.to_str().unwrap();
    let mut args = inception_args(&d, out_s);
    args.extend(["--set", "num_epochs=1"]);
    let o = xtask(&args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let concept = std::fs::read_dir(&d)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let images: Vec<String> = std::fs::read_dir(&concept)
        .unwrap()
        .flatten()
        .take(2)
        .map(|e| e.path().to_str().unwrap().to_string())
        .collect();
    let empty = tmp.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let empty_s = empty.to_str().unwrap();
    let o = xtask(
        &["predict", "--model", out_s, &images[0], empty_s, &images[1]],
        &[],
    );
    assert!(
        !o.status.success(),
        "a failed image makes the exit code non-zero"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&images[0]) && stdout.contains(&images[1]),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains(empty_s));
    let o = xtask(
        &[
            "predict", "--model", out_s, "--json", &images[0], empty_s, &images[1],
        ],
        &[],
    );
    assert!(!o.status.success());
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(rows[0]["concepts"].is_array() && rows[2]["concepts"].is_array());
    assert_eq!(rows[1]["image"], empty_s);
    assert!(rows[1]["error"].as_str().is_some_and(|e| !e.is_empty()));
}
