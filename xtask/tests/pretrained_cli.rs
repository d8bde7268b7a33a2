//! `cargo xtask train` on every pretrained template as a new user runs it: the weights
//! download on first use (from vct-hub's 127.0.0.1 test server standing in for the Hub
//! and for a plain URL), the second run reuses the cache, and offline mode never opens
//! a socket.

use std::path::Path;
use std::process::{Command, Output};

use candle_core::Device;
use vct_arch::{Arch, Classifier, ModelConfig};
use vct_hub::hash::sha256_bytes;
use vct_hub::test_server::TestServer;

fn xtask(server: &TestServer, home: &Path, args: &[&str], offline: bool) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(args)
        .env("HF_ENDPOINT", server.endpoint())
        .env("HF_HUB_CACHE", home.join("hub"))
        .env("HF_HOME", home)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("HF_TOKEN")
        .env_remove("VCT_WEIGHTS_DIR");
    if offline {
        c.env("HF_HUB_OFFLINE", "1");
    } else {
        c.env_remove("HF_HUB_OFFLINE");
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

/// Weights of `arch` with ImageNet's 1000 classes, as safetensors bytes.
fn weights(arch: Arch) -> Vec<u8> {
    let model = Classifier::new(&ModelConfig::new(arch, 1000), &Device::Cpu).unwrap();
    let sd = model.state_dict();
    safetensors::serialize(sd.iter().map(|(k, t)| (k.as_str(), t)), None).unwrap()
}

fn data(dir: &Path) -> String {
    let root = dir.join("data");
    let cfg = vct_data::demo::DemoConfig {
        seed: 4,
        size: 40,
        train_per_class: 2,
        val_per_class: 1,
    };
    vct_data::demo::generate(&root, &cfg).unwrap();
    root.to_str().unwrap().to_string()
}

fn train_args<'a>(template: &'a str, data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--template",
        template,
        "--data",
        data,
        "--out",
        out,
        "--set",
        "image_size=32",
        "--set",
        "batch_size=4",
        "--set",
        "num_epochs=1",
        "--plain",
        "--verbose",
    ]
}

#[test]
fn pretrained_templates_download_on_first_use_then_reuse_the_cache() {
    let server = TestServer::start().unwrap();
    server.hub_file(
        "timm/resnet50.a1_in1k",
        "model.safetensors",
        weights(Arch::ResNet50),
    );
    server.hub_file(
        "timm/resnext50_32x4d.fb_swsl_ig1b_ft_in1k",
        "model.safetensors",
        weights(Arch::ResNeXt50_32x4d),
    );
    // BN-Inception is published as a plain URL whose name carries a sha256 prefix.
    let bn = weights(Arch::BnInception);
    let name = format!("bninception-{}.safetensors", &sha256_bytes(&bn)[..10]);
    let url = server.url_file(&format!("/weights/{name}"), bn);
    let home = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());

    let cases: [(&str, Option<&str>); 4] = [
        ("MMClassification_ResNet_50_RSB_A1", None),
        ("Clarifai_ResNext", None),
        ("Clarifai_InceptionBatchNorm", Some(url.as_str())),
        ("Clarifai_InceptionTransferEmbedNorm", Some(url.as_str())),
    ];
    for (i, (template, source)) in cases.iter().enumerate() {
        let out = tmp.path().join(format!("run-{i}"));
        let mut args = train_args(template, &d, out.to_str().unwrap());
        if let Some(s) = source {
            args.extend(["--weights-source", s]);
        }
        // Offline with an empty cache: refused with what to do, and not one connection.
        server.clear_log();
        let connections = server.connections();
        let o = xtask(&server, home.path(), &args, true);
        if i == 3 {
            // The transfer template shares BN-Inception's file, cached by case 2.
            assert!(o.status.success(), "{template}: {}", text(&o));
            assert_eq!(
                server.connections(),
                connections,
                "{template}: offline connected"
            );
            std::fs::remove_dir_all(&out).unwrap();
            continue;
        }
        assert!(
            !o.status.success(),
            "{template}: trained offline without weights"
        );
        let t = text(&o);
        assert!(
            t.contains("offline") || t.contains("HF_HUB_OFFLINE"),
            "{template}: {t}"
        );
        assert_eq!(
            server.connections(),
            connections,
            "{template}: offline connected"
        );
        assert!(!out.exists(), "{template}: refused before the run folder");

        // Online: the first run downloads, trains and says where the weights came from.
        let o = xtask(&server, home.path(), &args, false);
        assert!(o.status.success(), "{template}: {}", text(&o));
        assert_eq!(server.body_gets(), 1, "{template}: one download");
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
        let init = run["init"].as_str().unwrap();
        assert!(
            init.starts_with("pretrained") && init.contains("downloaded"),
            "{init}"
        );
        // Each run holds three copies of a ResNet-50-sized model (~100 MB each): remove
        // it once checked, so the test needs one run's disk space, not eight.
        std::fs::remove_dir_all(&out).unwrap();

        // The second run reuses the cache: no new download.
        let again = tmp.path().join(format!("again-{i}"));
        let mut args2 = train_args(template, &d, again.to_str().unwrap());
        if let Some(s) = source {
            args2.extend(["--weights-source", s]);
        }
        let o = xtask(&server, home.path(), &args2, false);
        assert!(o.status.success(), "{template}: {}", text(&o));
        assert_eq!(server.body_gets(), 1, "{template}: downloaded again");
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(again.join("run.json")).unwrap())
                .unwrap();
        assert!(
            run["init"].as_str().unwrap().contains("cache"),
            "{}",
            run["init"]
        );
        std::fs::remove_dir_all(&again).unwrap();
    }
}
