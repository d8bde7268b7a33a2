//! Checkpoints are swapped in atomically, verified on load and matched to the run.

use std::collections::BTreeMap;

use vct_hparams::{HyperParams, Template};
use vct_train::checkpoint::{self, CheckpointState, FileWriter, CHECKPOINT_FORMAT};
use vct_train::TrainError;

fn state(epoch: usize) -> CheckpointState {
    CheckpointState {
        format: CHECKPOINT_FORMAT,
        vct_version: "test".into(),
        hparams: HyperParams::defaults(Template::InceptionV2),
        concepts: vec!["a".into(), "b".into()],
        epoch,
        global_step: epoch * 10,
        seed: 7,
        best: None,
        epochs_since_best: 0,
        history: Vec::new(),
        files: BTreeMap::new(),
    }
}

fn writer(content: &'static [u8]) -> FileWriter<'static> {
    Box::new(move |p: &std::path::Path| std::fs::write(p, content).map_err(|e| e.to_string()))
}

#[test]
fn save_load_and_detect_corruption() {
    let out = tempfile::tempdir().unwrap();
    let dir = checkpoint::checkpoint_dir(out.path(), "last");
    checkpoint::save(
        &dir,
        state(1),
        vec![("model.safetensors", writer(b"model-1"))],
    )
    .unwrap();
    let loaded = checkpoint::load_state(&dir).unwrap();
    assert_eq!(loaded.epoch, 1);
    assert_eq!(loaded.files["model.safetensors"].bytes, 7);

    // Truncation is caught by name.
    std::fs::write(dir.join("model.safetensors"), b"model").unwrap();
    let err = checkpoint::load_state(&dir).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors is corrupt or truncated"),
        "{err}"
    );

    // Garbage state is refused with the reason, not a panic.
    std::fs::write(dir.join("state.json"), b"{\"format\": 1").unwrap();
    let err = checkpoint::load_state(&dir).unwrap_err().to_string();
    assert!(err.contains("not a valid checkpoint state"), "{err}");
}

#[test]
fn a_failed_write_keeps_the_previous_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    let dir = checkpoint::checkpoint_dir(out.path(), "last");
    checkpoint::save(&dir, state(1), vec![("model.safetensors", writer(b"good"))]).unwrap();
    let failing: FileWriter<'static> =
        Box::new(|_p: &std::path::Path| Err("disk full".to_string()));
    let err = checkpoint::save(&dir, state(2), vec![("model.safetensors", failing)]).unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    let kept = checkpoint::load_state(&dir).unwrap();
    assert_eq!(kept.epoch, 1);
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        b"good"
    );
    // No temporary folders are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(out.path().join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn mismatched_runs_are_refused() {
    let out = tempfile::tempdir().unwrap();
    let dir = checkpoint::checkpoint_dir(out.path(), "last");
    checkpoint::save(&dir, state(3), vec![]).unwrap();
    let s = checkpoint::load_state(&dir).unwrap();
    let other = HyperParams::defaults(Template::ResNext);
    let err = checkpoint::check_compatible(&dir, &s, &other, &s.concepts.clone()).unwrap_err();
    assert!(matches!(err, TrainError::BadCheckpoint { .. }));
    assert!(
        err.to_string().contains("template Clarifai_InceptionV2"),
        "{err}"
    );
    let same = HyperParams::defaults(Template::InceptionV2);
    let err = checkpoint::check_compatible(&dir, &s, &same, &["a".into(), "c".into()]).unwrap_err();
    assert!(err.to_string().contains("concepts"), "{err}");
    checkpoint::check_compatible(&dir, &s, &same, &s.concepts.clone()).unwrap();
}
