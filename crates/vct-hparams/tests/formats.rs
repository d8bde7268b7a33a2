//! Files written by earlier versions still read the same, and a build without the
//! `yaml` / `toml` features says which feature a file needs.

use std::path::{Path, PathBuf};

use vct_hparams::{Format, HyperParams, Template};

/// YAML written by `to_string_format(Format::Yaml)` when vct-hparams used serde_yaml
/// 0.9.34, beside the same params as JSON.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/serde_yaml_0.9")
}

#[cfg(feature = "yaml")]
#[test]
fn yaml_written_by_serde_yaml_reads_the_same_and_is_written_the_same() {
    for template in Template::ALL {
        let yaml = fixtures().join(format!("{}.yaml", template.name()));
        let json = fixtures().join(format!("{}.json", template.name()));
        let from_yaml = HyperParams::load(&yaml, None).unwrap_or_else(|e| panic!("{e}"));
        let from_json = HyperParams::load(&json, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_yaml, from_json, "{}", yaml.display());
        // The writer is unchanged too, so params files do not churn in diffs.
        let old = std::fs::read_to_string(&yaml).unwrap();
        assert_eq!(
            from_yaml.to_string_format(Format::Yaml),
            old,
            "{}",
            yaml.display()
        );
    }
}

#[test]
fn json_fixtures_read_in_every_build() {
    for template in Template::ALL {
        let json = fixtures().join(format!("{}.json", template.name()));
        let hp = HyperParams::load(&json, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hp.template(), template);
    }
}

#[cfg(not(feature = "yaml"))]
#[test]
fn without_the_yaml_feature_a_yaml_file_names_the_feature() {
    let yaml = fixtures().join("Clarifai_ResNext.yaml");
    let err = HyperParams::load(&yaml, None).unwrap_err();
    assert!(
        matches!(
            err,
            vct_hparams::HparamsError::FormatNotBuilt {
                feature: "yaml",
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("Clarifai_ResNext.yaml") && text.contains("`yaml`"),
        "{text}"
    );
    assert_eq!(Format::from_name("yaml"), None);
}

#[cfg(not(feature = "toml"))]
#[test]
fn without_the_toml_feature_a_toml_file_names_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, "batch_size = 8\n").unwrap();
    let err = HyperParams::load(&path, Some(Template::ResNext)).unwrap_err();
    assert!(
        matches!(
            err,
            vct_hparams::HparamsError::FormatNotBuilt {
                feature: "toml",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("p.toml"), "{err}");
}

#[cfg(not(feature = "yaml"))]
#[test]
fn without_the_yaml_feature_overrides_read_json_values_and_plain_strings() {
    let hp = HyperParams::defaults(Template::RsbA1)
        .with_override("image_size=160")
        .and_then(|hp| hp.with_override("per_item_lrate=3.5e-05"))
        .and_then(|hp| hp.with_override("flip_direction=vertical"))
        .and_then(|hp| hp.with_override("concepts_mutually_exclusive=true"))
        .unwrap_or_else(|e| panic!("{e}"));
    let expected = HyperParams::load(
        &fixtures().join("MMClassification_ResNet_50_RSB_A1.json"),
        None,
    )
    .unwrap();
    assert_eq!(hp.image_size(), expected.image_size());
    assert_eq!(hp.to_value()["params"]["flip_direction"], "vertical");
    assert_eq!(hp.to_value()["params"]["concepts_mutually_exclusive"], true);
    // A string where a number belongs is still a violation naming the key.
    let err = hp.with_override("batch_size=lots").unwrap_err().to_string();
    assert!(err.contains("batch_size"), "{err}");
}
