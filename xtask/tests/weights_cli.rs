//! `cargo xtask weights` as a user runs it, against vct-hub's 127.0.0.1 test
//! server (HF_ENDPOINT) and a temporary cache (HF_HUB_CACHE). Only Hub
//! templates and local URLs are fetched online: nothing leaves the machine.

use std::path::Path;
use std::process::Command;

use vct_hub::hash::sha256_bytes;
use vct_hub::test_server::TestServer;

const RSB: &str = "MMClassification_ResNet_50_RSB_A1";
const RESNEXT: &str = "Clarifai_ResNext";

fn xtask(server: &TestServer, home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("HF_ENDPOINT", server.endpoint())
        .env("HF_HUB_CACHE", home.join("hub"))
        .env("HF_HOME", home)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN")
        .env_remove("VCT_WEIGHTS_DIR")
        .output()
        .expect("xtask runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(seed) ^ seed)
        .collect()
}

#[test]
fn list_fetch_reuse_offline_and_verify() {
    let server = TestServer::start().unwrap();
    let rsb = fixture(7, 30_000);
    let rsb_sha = server.hub_file("timm/resnet50.a1_in1k", "model.safetensors", rsb.clone());
    let rx = fixture(11, 20_000);
    let rx_sha = server.hub_file(
        "timm/resnext50_32x4d.fb_swsl_ig1b_ft_in1k",
        "model.safetensors",
        rx.clone(),
    );
    let home = tempfile::tempdir().unwrap();

    // list: every template, nothing cached, no network.
    let (ok, out, err) = xtask(&server, home.path(), &["weights", "list"]);
    assert!(ok, "{err}");
    for t in [
        RSB,
        RESNEXT,
        "Clarifai_InceptionBatchNorm",
        "Clarifai_InceptionV2",
    ] {
        assert!(out.contains(t), "{out}");
    }
    assert!(
        out.contains("timm/resnet50.a1_in1k:model.safetensors"),
        "{out}"
    );
    assert!(out.contains("bn_inception-52deb4733.pth"), "{out}");
    assert!(out.contains("none (random weights)"), "{out}");
    assert!(!out.contains("cached  yes"), "{out}");
    assert_eq!(server.connections(), 0);

    // fetch two Hub templates.
    let (ok, out, err) = xtask(&server, home.path(), &["weights", "fetch", RSB, RESNEXT]);
    assert!(ok, "{err}");
    assert_eq!(out.matches("downloaded").count(), 2, "{out}");
    assert_eq!(server.body_gets(), 2);

    // list now shows both with size and sha256.
    let (ok, out, _) = xtask(&server, home.path(), &["weights", "list"]);
    assert!(ok);
    assert!(out.contains(&format!("sha256  {rsb_sha}")), "{out}");
    assert!(out.contains(&format!("sha256  {rx_sha}")), "{out}");
    assert!(out.contains("30000 bytes"), "{out}");

    // fetch again: from the cache, no socket.
    server.clear_log();
    let (ok, out, _) = xtask(&server, home.path(), &["weights", "fetch", RESNEXT]);
    assert!(ok);
    assert!(out.contains("cached"), "{out}");
    assert_eq!(server.connections(), 0);

    // offline fetch of everything: the two cached ones succeed, BN-Inception
    // (a plain URL outside this machine) is refused without a socket.
    let (ok, out, err) = xtask(&server, home.path(), &["weights", "--offline", "fetch"]);
    assert!(!ok);
    assert_eq!(out.matches("cached").count(), 2, "{out}");
    assert!(
        err.contains("Clarifai_InceptionBatchNorm, Clarifai_InceptionTransferEmbedNorm")
            && err.contains("downloads are off"),
        "{err}"
    );
    assert!(err.contains("1 of 3 fetches failed"), "{err}");
    assert_eq!(server.connections(), 0);

    // verify: both fine, BN-Inception not cached.
    let (ok, out, err) = xtask(&server, home.path(), &["weights", "verify"]);
    assert!(ok, "{err}");
    assert_eq!(out.matches("  ok  sha256").count(), 2, "{out}");
    assert!(out.contains("not cached"), "{out}");

    // A damaged BN-Inception file in the cache: verify says so and deletes it.
    let bn = home.path().join("hub/vct-urls/bn_inception-52deb4733.pth");
    std::fs::create_dir_all(bn.parent().unwrap()).unwrap();
    std::fs::write(&bn, b"not the real file").unwrap();
    let (ok, _, err) = xtask(
        &server,
        home.path(),
        &["weights", "verify", "Clarifai_InceptionBatchNorm"],
    );
    assert!(!ok);
    assert!(
        err.contains("checksum mismatch") && err.contains("52deb4733") && err.contains("deleted"),
        "{err}"
    );
    assert!(!bn.exists());
    assert_eq!(server.connections(), 0);
}

#[test]
fn fetch_a_source_by_url_or_endpoint_flag_and_refuse_bad_names() {
    let server = TestServer::start().unwrap();
    let bytes = fixture(3, 5_000);
    let sha = sha256_bytes(&bytes);
    let url = server.url_file(&format!("/m/net-{}.pth", &sha[..10]), bytes.clone());
    let home = tempfile::tempdir().unwrap();

    let (ok, out, err) = xtask(
        &server,
        home.path(),
        &["weights", "fetch", "--source", &url],
    );
    assert!(ok, "{err}");
    assert!(out.contains("downloaded"), "{out}");
    let file = home
        .path()
        .join(format!("hub/vct-urls/net-{}.pth", &sha[..10]));
    assert_eq!(std::fs::read(file).unwrap(), bytes);

    // --endpoint overrides HF_ENDPOINT.
    let other = TestServer::start().unwrap();
    other.hub_file("me/net", "w.safetensors", fixture(5, 100));
    let (ok, out, err) = xtask(
        &server,
        home.path(),
        &[
            "weights",
            "fetch",
            "--source",
            "me/net:w.safetensors",
            "--endpoint",
            &other.endpoint(),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("downloaded"), "{out}");
    assert_eq!(other.body_gets(), 1);

    let (ok, _, err) = xtask(
        &server,
        home.path(),
        &["weights", "fetch", "Clarifai_InceptionV2"],
    );
    assert!(!ok);
    assert!(err.contains("no pretrained weights to fetch"), "{err}");
    let (ok, _, err) = xtask(
        &server,
        home.path(),
        &["weights", "fetch", "Clarifai_ResNxt"],
    );
    assert!(!ok);
    assert!(err.contains("did you mean Clarifai_ResNext"), "{err}");
    let (ok, _, err) = xtask(
        &server,
        home.path(),
        &["weights", "fetch", "--source", "https://h/w.bin"],
    );
    assert!(!ok);
    assert!(err.contains("no sha256 prefix"), "{err}");
}
