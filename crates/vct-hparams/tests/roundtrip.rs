//! JSON / YAML / TOML → struct → JSON is lossless, through real files.

use vct_hparams::{Format, HyperParams, Template};

fn customised(template: Template) -> HyperParams {
    let hp = HyperParams::defaults(template);
    let sets: &[&str] = match template {
        Template::RsbA1 => &[
            "image_size=160",
            "per_item_lrate=3.5e-05",
            "pretrained_weights=None",
            "flip_direction=vertical",
            "concepts_mutually_exclusive=true",
            "warmup_ratio=0.25",
        ],
        Template::TransferEmbedNorm => {
            &["lrate=0.0123", "average_horizontal_flips=false", "logreg=0"]
        }
        _ => &[
            "image_size=512",
            "num_items_per_epoch=1000",
            "per_item_lrate=1e-3",
        ],
    };
    sets.iter().fold(hp, |hp, set| {
        hp.with_override(set)
            .unwrap_or_else(|e| panic!("{set}: {e}"))
    })
}

#[test]
fn every_format_round_trips_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    for template in Template::ALL {
        let original = customised(template);
        let json = original.to_value();
        #[allow(unused_mut)] // only JSON without the `yaml` and `toml` features
        let mut formats = vec![(Format::Json, "json")];
        #[cfg(feature = "yaml")]
        formats.push((Format::Yaml, "yaml"));
        #[cfg(feature = "toml")]
        formats.push((Format::Toml, "toml"));
        for (format, ext) in formats {
            let path = dir.path().join(format!("{}.{ext}", template.name()));
            std::fs::write(&path, original.to_string_format(format)).unwrap();
            let loaded = HyperParams::load(&path, None).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(loaded, original, "{template} via {ext}");
            assert_eq!(loaded.to_value(), json, "{template} via {ext}");
        }
        // serde's own path (e.g. inside a larger config) validates too.
        let via_serde: HyperParams = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(via_serde, original);
    }
}

#[cfg(feature = "toml")]
#[test]
fn bare_params_files_need_a_template() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, "batch_size = 8\nlogreg = 0\n").unwrap();
    let hp = HyperParams::load(&path, Some(Template::InceptionV2)).unwrap();
    assert_eq!(hp.batch_size(), 8);
    assert!(!hp.multi_label());
    assert!(HyperParams::load(&path, None).is_err());
    let bad = dir.path().join("p.ini");
    std::fs::write(&bad, "").unwrap();
    assert!(HyperParams::load(&bad, None)
        .unwrap_err()
        .to_string()
        .contains("unsupported extension"));
    let broken = dir.path().join("b.json");
    std::fs::write(&broken, "{\"template\": ").unwrap();
    let err = HyperParams::load(&broken, None).unwrap_err().to_string();
    assert!(err.contains("b.json is not valid JSON"), "{err}");
}
