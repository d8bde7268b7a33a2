//! The checkpoint contract: numbered folders behind atomic LATEST / BEST pointers,
//! verified on load, matched to the run, and never a moment without one loadable.

use std::collections::BTreeMap;

use vct_hparams::{HyperParams, Template};
use vct_train::checkpoint::{self, Best, CheckpointState, Checkpoints, CHECKPOINT_FORMAT};
use vct_train::config::{DataConfig, RunConfig, ValSource};
use vct_train::TrainError;

fn config() -> RunConfig {
    RunConfig {
        hparams: HyperParams::defaults(Template::InceptionV2),
        seed: 7,
        data: DataConfig {
            train: "/data".into(),
            val: ValSource::Auto,
        },
        extras: Default::default(),
        init: Default::default(),
        device: "cpu".into(),
        early_stopping: None,
        vct_version: "test".into(),
    }
}

fn state(epoch: usize) -> CheckpointState {
    CheckpointState {
        format: CHECKPOINT_FORMAT,
        vct_version: "test".into(),
        config: config(),
        concepts: vec!["a".into(), "b".into()],
        epoch,
        global_step: epoch * 10,
        best: Some(Best {
            epoch: 1,
            score: 0.5,
            metrics: None,
        }),
        epochs_since_best: epoch.saturating_sub(1),
        history: Vec::new(),
        files: BTreeMap::new(),
    }
}

fn model(content: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![("model.safetensors", content.as_bytes().to_vec())]
}

#[test]
fn pointers_name_complete_folders_and_old_ones_are_pruned() {
    let out = tempfile::tempdir().unwrap();
    let c = Checkpoints::new(out.path());
    assert!(c.latest_dir().unwrap().is_none());
    c.save(state(1), &model("model-1"), true).unwrap();
    c.save(state(2), &model("model-2"), false).unwrap();
    c.save(state(3), &model("model-3"), false).unwrap();
    assert_eq!(
        c.pointer(checkpoint::LATEST).unwrap().as_deref(),
        Some("epoch-0003")
    );
    assert_eq!(
        c.pointer(checkpoint::BEST).unwrap().as_deref(),
        Some("epoch-0001")
    );
    // Epoch 2 is named by neither pointer: removed.
    let root = out.path().join("checkpoints");
    assert!(root.join("epoch-0001").is_dir() && root.join("epoch-0003").is_dir());
    assert!(!root.join("epoch-0002").exists());
    let s = checkpoint::load_state(&c.latest_dir().unwrap().unwrap()).unwrap();
    assert_eq!((s.epoch, s.global_step), (3, 30));
    assert_eq!(s.best.unwrap().epoch, 1, "the best epoch's record is kept");
    assert_eq!(s.files["model.safetensors"].bytes, 7);
}

#[test]
fn corruption_is_caught_by_name() {
    let out = tempfile::tempdir().unwrap();
    let c = Checkpoints::new(out.path());
    let dir = c.save(state(1), &model("model-1"), true).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"model").unwrap();
    let err = checkpoint::load_state(&dir).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors is corrupt or truncated"),
        "{err}"
    );
    // Garbage state is refused with the reason, not a panic.
    std::fs::write(dir.join("state.json"), b"{\"format\": 2").unwrap();
    let err = checkpoint::load_state(&dir).unwrap_err().to_string();
    assert!(err.contains("not a valid checkpoint state"), "{err}");
    // A layout this version does not read says so.
    std::fs::write(
        dir.join("state.json"),
        b"{\"format\": 1, \"vct_version\": \"0.0.9\"}",
    )
    .unwrap();
    let err = checkpoint::load_state(&dir).unwrap_err().to_string();
    assert!(
        err.contains("layout version 1") && err.contains("0.0.9"),
        "{err}"
    );
    // So does a pointer that names no epoch folder.
    std::fs::write(out.path().join("checkpoints/LATEST"), b"../../etc\n").unwrap();
    assert!(c.latest_dir().is_err());
}

#[test]
fn a_failed_write_keeps_the_previous_checkpoint_and_stale_temporaries_go() {
    let out = tempfile::tempdir().unwrap();
    let c = Checkpoints::new(out.path());
    c.save(state(1), &model("model-1"), true).unwrap();
    // A file that cannot be created (its name is a folder in the temporary checkpoint).
    let bad = vec![("sub/model.safetensors", b"x".to_vec())];
    let err = c.save(state(2), &bad, false).unwrap_err();
    assert!(matches!(err, TrainError::Io { .. }), "{err}");
    assert_eq!(
        c.pointer(checkpoint::LATEST).unwrap().as_deref(),
        Some("epoch-0001")
    );
    let s = checkpoint::load_state(&c.latest_dir().unwrap().unwrap()).unwrap();
    assert_eq!(s.epoch, 1);
    // What a crashed writer leaves behind is removed when a run opens the folder.
    let root = out.path().join("checkpoints");
    std::fs::create_dir_all(root.join(".tmp-epoch-0002-99999")).unwrap();
    std::fs::write(root.join(".LATEST.tmp-99999"), b"epoch-0002").unwrap();
    std::fs::create_dir_all(root.join(".last.old-4242")).unwrap();
    let removed = c.remove_stale().unwrap();
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert!(root.join("epoch-0001").is_dir());
}

#[test]
fn a_folder_left_by_a_crash_between_the_renames_is_replaced() {
    let out = tempfile::tempdir().unwrap();
    let c = Checkpoints::new(out.path());
    c.save(state(1), &model("model-1"), true).unwrap();
    // Epoch 2 renamed into place, LATEST not yet moved: a crash here leaves it unnamed.
    let root = out.path().join("checkpoints");
    std::fs::create_dir_all(root.join("epoch-0002")).unwrap();
    std::fs::write(root.join("epoch-0002/model.safetensors"), b"stale").unwrap();
    assert_eq!(
        c.pointer(checkpoint::LATEST).unwrap().as_deref(),
        Some("epoch-0001")
    );
    // The resumed run writes epoch 2 again.
    c.save(state(2), &model("model-2"), false).unwrap();
    let s = checkpoint::load_state(&root.join("epoch-0002")).unwrap();
    assert_eq!(s.epoch, 2);
}

#[test]
fn layout_one_runs_are_found_and_mismatched_runs_are_refused() {
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(out.path().join("checkpoints/last")).unwrap();
    let c = Checkpoints::new(out.path());
    assert_eq!(
        c.latest_dir().unwrap().unwrap(),
        out.path().join("checkpoints/last")
    );
    let dir = Checkpoints::new(out.path()).root().join("epoch-0001");
    let s = state(1);
    let mut other = config();
    other.hparams = HyperParams::defaults(Template::ResNext);
    let err = checkpoint::check_compatible(&dir, &s, &other, &["a".into(), "b".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Clarifai_InceptionV2"), "{err}");
    let err = checkpoint::check_compatible(&dir, &s, &config(), &["a".into(), "c".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("concepts"), "{err}");
}
