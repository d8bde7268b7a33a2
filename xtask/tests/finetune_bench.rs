//! `cargo xtask bench finetune`: the pretraining, the exported backbone file and the two
//! fine-tuning runs, on generated images (CI) and on the real sets in ../shared/data.

use std::path::Path;
use std::process::Command;

use candle_core::Device;
use vct_arch::{Arch, Classifier, LoadOptions, ModelConfig};

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

fn shapes(dir: &Path, name: &str, seed: u64) -> String {
    let root = dir.join(name);
    let cfg = vct_data::demo::DemoConfig {
        seed,
        size: 40,
        train_per_class: 4,
        val_per_class: 2,
    };
    vct_data::demo::generate(&root, &cfg).unwrap();
    root.to_str().unwrap().to_string()
}

/// `bench finetune` on tiny runs (32 px, one epoch each, batch 8), plus `extra`.
fn tiny_finetune(
    pre: &str,
    data: &str,
    templates: &str,
    work: &Path,
    json: &Path,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec![
        "bench",
        "finetune",
        "--pretrain-data",
        pre,
        "--data",
        data,
        "--templates",
        templates,
        "--pretrain-size",
        "32",
        "--pretrain-epochs",
        "1",
        "--size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--work",
        work.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    xtask(&args)
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn finetune_bench_pretrains_once_per_arch_and_runs_both_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let pre = shapes(tmp.path(), "pre", 1);
    let data = shapes(tmp.path(), "ft", 2);
    let work = tmp.path().join("work");
    let json = tmp.path().join("result.json");
    let (ok, stdout, err) = tiny_finetune(
        &pre,
        &data,
        "Clarifai_InceptionBatchNorm,clarifai_inceptiontransferembednorm",
        &work,
        &json,
        &["--seeds", "0,1"],
    );
    assert!(ok, "{stdout}\n{err}");
    let v = read_json(&json);
    // The two BN-Inception templates share one pretraining.
    let pre = v["pretrain"].as_array().unwrap();
    assert_eq!(pre.len(), 1, "{v}");
    assert_eq!(pre[0]["arch"], "bninception");
    assert_eq!(pre[0]["template"], "Clarifai_InceptionBatchNorm");
    let rows = v["finetune"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["template"].as_str().unwrap())
        .collect();
    // One pair per template and seed.
    assert_eq!(
        names,
        [
            "Clarifai_InceptionBatchNorm",
            "Clarifai_InceptionBatchNorm",
            "Clarifai_InceptionTransferEmbedNorm",
            "Clarifai_InceptionTransferEmbedNorm"
        ]
    );
    let seeds: Vec<u64> = rows.iter().map(|r| r["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, [0, 1, 0, 1]);
    // The summary's mean margin is the mean of the pairs' margins.
    let summary = v["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 2, "{v}");
    for (sum, pair) in summary.iter().zip(rows.chunks(2)) {
        assert_eq!(sum["template"], pair[0]["template"]);
        assert_eq!(sum["seeds"], 2);
        let mean =
            (pair[0]["margin"].as_f64().unwrap() + pair[1]["margin"].as_f64().unwrap()) / 2.0;
        assert!(
            (sum["margin_mean"].as_f64().unwrap() - mean).abs() < 1e-9,
            "{sum}"
        );
    }
    assert!(stdout.contains("over 2 seeds"), "{stdout}");
    for r in rows {
        for k in ["pretrained_top1", "random_top1"] {
            let t = r[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&t), "{r}");
        }
        let margin = r["pretrained_top1"].as_f64().unwrap() - r["random_top1"].as_f64().unwrap();
        assert!(
            (r["margin"].as_f64().unwrap() - margin).abs() < 1e-12,
            "{r}"
        );
    }
    assert!(stdout.contains("Clarifai_InceptionTransferEmbedNorm") && stdout.contains("margin"));

    // The file holds the backbone alone, under the names the strict loader wants.
    let file = work.join("bninception-pretrained.safetensors");
    let tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    assert_eq!(
        tensors.len() as u64,
        pre[0]["tensors"].as_u64().unwrap(),
        "{v}"
    );
    assert!(!tensors.keys().any(|k| k.starts_with("last_linear")));
    let model = Classifier::new(&ModelConfig::new(Arch::BnInception, 5), &Device::Cpu).unwrap();
    let report = model.load_weights(&file, LoadOptions::fine_tune()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(!report.head_reinitialised.is_empty(), "{report}");
    // The pretrained run really started from the file, the other from random weights.
    let run = |name: &str| read_json(&work.join(name).join("run.json"));
    let from_file = run("finetune-Clarifai_InceptionBatchNorm-pretrained-seed1");
    let init = from_file["init"].as_str().unwrap();
    assert!(
        init.starts_with("pretrained") && init.contains("bninception-pretrained.safetensors"),
        "{init}"
    );
    let random = run("finetune-Clarifai_InceptionBatchNorm-random-seed1");
    assert!(random["init"].as_str().unwrap().starts_with("random"));
    assert_eq!(from_file["config"]["hparams"], random["config"]["hparams"]);
    assert_eq!(from_file["config"]["seed"], 1);
    assert_eq!(random["config"]["seed"], 1);
    assert_eq!(from_file["config"]["init"]["freeze_backbone"], false);
}

#[test]
fn finetune_bench_probes_a_frozen_backbone() {
    let tmp = tempfile::tempdir().unwrap();
    let pre = shapes(tmp.path(), "pre", 4);
    let data = shapes(tmp.path(), "ft", 5);
    let work = tmp.path().join("work");
    let json = tmp.path().join("result.json");
    let (ok, stdout, err) = tiny_finetune(
        &pre,
        &data,
        "Clarifai_InceptionBatchNorm",
        &work,
        &json,
        &["--freeze-backbone"],
    );
    assert!(ok, "{stdout}\n{err}");
    assert!(stdout.contains("with the backbone frozen"), "{stdout}");
    let v = read_json(&json);
    assert_eq!(v["freeze_backbone"], true);
    for tag in ["pretrained", "random"] {
        let run = read_json(
            &work
                .join(format!("finetune-Clarifai_InceptionBatchNorm-{tag}-seed0"))
                .join("run.json"),
        );
        assert_eq!(
            run["config"]["init"]["freeze_backbone"], true,
            "{tag}: {run}"
        );
    }
}

#[test]
fn finetune_bench_refuses_a_template_without_a_pretrained_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shapes(tmp.path(), "d", 3);
    let (ok, _, err) = xtask(&[
        "bench",
        "finetune",
        "--pretrain-data",
        &data,
        "--data",
        &data,
        "--templates",
        "Clarifai_InceptionV2",
        "--work",
        tmp.path().join("w").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("Clarifai_InceptionV2") && err.contains("starts from random weights"),
        "{err}"
    );
    let (ok, _, err) = xtask(&[
        "bench",
        "finetune",
        "--pretrain-data",
        tmp.path().join("nowhere").to_str().unwrap(),
        "--data",
        &data,
    ]);
    assert!(!ok);
    assert!(
        err.contains("--pretrain-data") && err.contains("nowhere"),
        "{err}"
    );
}
