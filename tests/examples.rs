//! The workspace's examples (`examples/`), built and run as a user runs them
//! (`cargo run --example NAME -- ARGS`), on inputs the tests write: nothing is
//! downloaded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, D};
use vct::arch::{Arch, Classifier, ModelConfig};

/// Builds example `name` with the cargo running the tests, in the same target
/// folder and profile, and returns its path. `--workspace` resolves features as
/// `cargo test --workspace` did, so the examples and libraries it built are reused;
/// a build of the root package alone would compile the dependencies again with its
/// own feature set (minutes on a fresh clone).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile dir>/deps/<this test>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let target = profile_dir.parent().unwrap();
    let mut cmd = Command::new(env!("CARGO"));
    // Without what cargo sets for a test process (package name, manifest dir, ...):
    // build scripts that watch such variables would otherwise rerun, and the outer
    // `cargo test` would then rebuild their crates again.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&k.as_ref())
        {
            cmd.env_remove(&key);
        }
    }
    cmd.args([
        "build",
        "--quiet",
        "--workspace",
        "--example",
        name,
        "--manifest-path",
    ])
    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
    .arg("--target-dir")
    .arg(target);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => panic!("unexpected test binary path {}", exe.display()),
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "cargo build --example {name} failed");
    profile_dir.join("examples").join(name)
}

fn run(name: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(example(name));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn params_example_validates_a_file_with_vct_hparams_alone() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "template: Clarifai_ResNext\nparams:\n  batch_size: 32\n  num_epochs: 3\n",
    )
    .unwrap();
    let out = run("params", &[&good]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("valid Clarifai_ResNext hyperparameters"),
        "{stdout}"
    );
    assert!(stdout.contains("batch size 32, 3 epochs"), "{stdout}");
    // Defaults filled in: the full tagged JSON, readable again.
    let json = &stdout[stdout.find('{').unwrap()..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["params"]["batch_size"], 32);
    assert!(v["params"]["image_size"].is_u64(), "{json}");

    // A bare params object with the template on the command line, two mistakes.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"image_size": 40, "batch_sise": 8}"#).unwrap();
    let out = run("params", &[&bad, &"clarifai_resnext"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad.json")
            && stderr.contains("image_size: 40 is not a multiple of 16")
            && stderr.contains("did you mean `batch_size`"),
        "{stderr}"
    );
    let out = run("params", &[&bad, &"resnxt"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("resnxt"),
        "{}",
        text(&out.stderr)
    );
}

/// Top-5 class indices of `probs` `[1, C]`, most probable first.
fn top5(logits: &candle_core::Tensor) -> Vec<usize> {
    let p: Vec<f32> = candle_nn::ops::softmax(logits, D::Minus1)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    idx.truncate(5);
    idx
}

#[test]
fn classify_example_prints_the_top5_of_a_photo() {
    let dir = tempfile::tempdir().unwrap();
    // ImageNet-shaped (1000 classes) weights with torchvision's names, seeded.
    let model = Classifier::new(
        &ModelConfig {
            seed: 3,
            ..ModelConfig::new(Arch::ResNet18, 1000)
        },
        &Device::Cpu,
    )
    .unwrap();
    let weights = dir.path().join("resnet18.safetensors");
    model.save(&weights).unwrap();
    let photo = dir.path().join("photo.jpg");
    vct::augment::RgbImage::from_fn(333, 250, |x, y| {
        [
            (x * 7 % 256) as u8,
            (y * 3 % 256) as u8,
            ((x ^ y) % 256) as u8,
        ]
        .into()
    })
    .save(&photo)
    .unwrap();

    let out = run("classify", &[&weights, &photo, &"resnet18"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("top-5 of") && lines[0].contains("resnet18"),
        "{stdout}"
    );
    let rows: Vec<(usize, f32)> = lines[1..]
        .iter()
        .map(|l| {
            let mut f = l.split_whitespace();
            (
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 5, "{stdout}");
    assert!(rows.windows(2).all(|w| w[0].1 >= w[1].1), "{stdout}");

    // The same photo through the in-memory model (built at random, not from
    // the file) and the architecture's preprocessing gives the same top-5.
    let x = Arch::ResNet18
        .preprocess()
        .load(&photo, &Device::Cpu)
        .unwrap();
    let want = top5(&model.forward(&x, false).unwrap());
    let got: Vec<usize> = rows.iter().map(|r| r.0).collect();
    assert_eq!(got, want, "{stdout}");

    let out = run("classify", &[&dir.path().join("missing.pth"), &photo]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("missing.pth"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn finetune_example_trains_a_template_on_generated_images() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let cfg = vct::data::demo::DemoConfig {
        seed: 0,
        size: 40,
        train_per_class: 4,
        val_per_class: 2,
    };
    vct::data::demo::generate(&images, &cfg).unwrap();
    let out_dir = dir.path().join("run");
    let out = run(
        "finetune",
        &[
            &"Clarifai_InceptionV2",
            &images,
            &out_dir,
            &"--random-init",
            &"image_size=32",
            &"num_epochs=1",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{}", stdout, text(&out.stderr));
    assert!(stdout.contains("Clarifai_InceptionV2"), "{stdout}");
    assert!(out_dir.join("model.safetensors").is_file());
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["config"]["init"]["random_init"], true, "{record}");

    // A mistake in an override is reported by key.
    let out = run(
        "finetune",
        &[
            &"Clarifai_InceptionV2",
            &images,
            &dir.path().join("run2"),
            &"image_size=33",
        ],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("image_size"), "{stderr}");
}
