//! The pretrained-weights lookup order against vct-hub's 127.0.0.1 test server:
//! `--weights FILE`, `$VCT_WEIGHTS_DIR`, the cache, the download; offline mode;
//! `--weights-source`; errors that list every place looked.

use std::path::Path;

use vct_arch::Arch;
use vct_hparams::{HyperParams, Template};
use vct_hub::test_server::TestServer;
use vct_hub::{HubOptions, WeightsSource};
use vct_train::recipe::{Init, Recipe};
use vct_train::weights::{
    default_source, WeightsError, WeightsOrigin, WeightsResolver, DEFAULT_WEIGHTS,
};

fn resolver(server: &TestServer, cache: &Path) -> WeightsResolver {
    WeightsResolver {
        explicit: None,
        weights_dir: None,
        source_override: None,
        hub: HubOptions {
            endpoint: server.endpoint(),
            cache_dir: cache.to_path_buf(),
            offline: false,
            progress: false,
            token: None,
        },
    }
}

#[test]
fn the_table_matches_what_the_recipe_initialises_from() {
    for row in DEFAULT_WEIGHTS {
        let recipe = Recipe::new(
            &HyperParams::defaults(row.template),
            2,
            0,
            &Default::default(),
        )
        .unwrap();
        let pretrained = matches!(recipe.init, Init::Pretrained(_));
        assert_eq!(
            pretrained,
            row.source.is_some(),
            "{}: recipe init {:?}, table source {:?}",
            row.template,
            recipe.init,
            row.source
        );
    }
}

#[test]
fn cache_then_download_and_the_second_time_from_the_cache() {
    let server = TestServer::start().unwrap();
    let bytes = vec![3u8; 20_000];
    server.hub_file("timm/resnet50.a1_in1k", "model.safetensors", bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    let r = resolver(&server, cache.path());

    let first = r.resolve(Template::RsbA1, Arch::ResNet50).unwrap();
    assert_eq!(first.origin, WeightsOrigin::Downloaded);
    assert_eq!(first.source, default_source(Template::RsbA1));
    assert_eq!(std::fs::read(&first.path).unwrap(), bytes);
    assert!(first.path.starts_with(cache.path()));

    let conns = server.connections();
    let second = r.resolve(Template::RsbA1, Arch::ResNet50).unwrap();
    assert_eq!(second.origin, WeightsOrigin::Cache);
    assert_eq!(second.path, first.path);
    assert_eq!(server.connections(), conns);
}

#[test]
fn explicit_file_then_weights_dir_come_before_the_cache() {
    let server = TestServer::start().unwrap();
    server.hub_file("timm/resnet50.a1_in1k", "model.safetensors", vec![1u8; 100]);
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut r = resolver(&server, cache.path());
    r.resolve(Template::RsbA1, Arch::ResNet50).unwrap();

    std::fs::write(dir.path().join("resnet50.safetensors"), b"local").unwrap();
    r.weights_dir = Some(dir.path().to_path_buf());
    let found = r.resolve(Template::RsbA1, Arch::ResNet50).unwrap();
    assert_eq!(found.origin, WeightsOrigin::WeightsDir);
    assert_eq!(found.path, dir.path().join("resnet50.safetensors"));

    let own = dir.path().join("mine.pth");
    std::fs::write(&own, b"mine").unwrap();
    r.explicit = Some(own.clone());
    let found = r.resolve(Template::RsbA1, Arch::ResNet50).unwrap();
    assert_eq!((found.origin, found.path), (WeightsOrigin::Explicit, own));

    r.explicit = Some(dir.path().join("typo.pth"));
    let e = r.resolve(Template::RsbA1, Arch::ResNet50).unwrap_err();
    assert!(matches!(e, WeightsError::ExplicitMissing { .. }), "{e}");
    assert!(e.to_string().contains("typo.pth"), "{e}");
}

#[test]
fn the_bn_inception_file_name_is_found_in_the_weights_dir() {
    let server = TestServer::start().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bn_inception-52deb4733.pth"), b"x").unwrap();
    let mut r = resolver(&server, cache.path());
    r.weights_dir = Some(dir.path().to_path_buf());
    for t in [Template::InceptionBatchNorm, Template::TransferEmbedNorm] {
        let found = r.resolve(t, Arch::BnInception).unwrap();
        assert_eq!(found.origin, WeightsOrigin::WeightsDir);
    }
    assert_eq!(server.connections(), 0);
}

#[test]
fn offline_lists_every_place_looked_and_opens_no_socket() {
    let server = TestServer::start().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut r = resolver(&server, cache.path()).offline(true);
    r.weights_dir = Some(dir.path().to_path_buf());
    let e = r
        .resolve(Template::ResNext, Arch::ResNeXt50_32x4d)
        .unwrap_err();
    assert!(matches!(e, WeightsError::NotFound { .. }), "{e}");
    let msg = e.to_string();
    for part in [
        "resnext50_32x4d.safetensors ($VCT_WEIGHTS_DIR)",
        "resnext50_32x4d.pth ($VCT_WEIGHTS_DIR)",
        "models--timm--resnext50_32x4d.fb_swsl_ig1b_ft_in1k",
        "skipped, offline",
        "--weights FILE",
        "cargo xtask weights fetch Clarifai_ResNext",
        "--random-init",
    ] {
        assert!(msg.contains(part), "missing {part:?} in:\n{msg}");
    }
    assert_eq!(server.connections(), 0);
}

#[test]
fn a_failed_download_says_what_was_tried() {
    let server = TestServer::start().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let r = resolver(&server, cache.path());
    let e = r
        .resolve(Template::ResNext, Arch::ResNeXt50_32x4d)
        .unwrap_err();
    assert!(matches!(e, WeightsError::Download { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("timm/resnext50_32x4d.fb_swsl_ig1b_ft_in1k:model.safetensors was not found"),
        "{msg}"
    );
    assert!(msg.contains("$VCT_WEIGHTS_DIR: not set"), "{msg}");
}

#[test]
fn a_weights_source_override_replaces_the_default_and_skips_arch_files() {
    let server = TestServer::start().unwrap();
    let bytes = b"tv2 weights".to_vec();
    server.hub_file(
        "timm/resnext50_32x4d.tv2_in1k",
        "model.safetensors",
        bytes.clone(),
    );
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("resnext50_32x4d.safetensors"), b"default").unwrap();
    let mut r = resolver(&server, cache.path()).with_source(Some(
        WeightsSource::parse_override("timm/resnext50_32x4d.tv2_in1k").unwrap(),
    ));
    r.weights_dir = Some(dir.path().to_path_buf());
    let found = r.resolve(Template::ResNext, Arch::ResNeXt50_32x4d).unwrap();
    assert_eq!(found.origin, WeightsOrigin::Downloaded);
    assert_eq!(std::fs::read(&found.path).unwrap(), bytes);
}

#[test]
fn a_template_without_a_source_says_so() {
    let server = TestServer::start().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let r = resolver(&server, cache.path());
    let e = r
        .resolve(Template::InceptionV2, Arch::InceptionV2)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("starts from random weights by default"),
        "{msg}"
    );
    assert!(!msg.contains("cargo xtask weights fetch"), "{msg}");
    assert_eq!(server.connections(), 0);
}
