//! The record format against known values, round trips through the writer and the
//! reader, a file written by TensorBoard's own Python writer, corruption caught by
//! offset, and what a logged scalar costs.

use std::path::Path;
use std::time::Instant;

use vct_tensorboard::{
    decode_records, encode_record, event, event_files, masked_crc32c, read_events, EventWriter,
    SessionStatus, TensorBoardError, FILE_VERSION,
};

#[test]
fn crc32c_and_record_layout() {
    // The CRC-32C check value (RFC 3720, B.4): crc32c("123456789") = 0xE3069283.
    // Masked: rotated right by 15 bits, plus 0xa282ead8 (computed by hand).
    assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);

    let mut out = Vec::new();
    encode_record(b"abc", &mut out);
    assert_eq!(out.len(), 8 + 4 + 3 + 4);
    assert_eq!(&out[..8], &3u64.to_le_bytes());
    assert_eq!(
        &out[8..12],
        &masked_crc32c(&3u64.to_le_bytes()).to_le_bytes()
    );
    assert_eq!(&out[12..15], b"abc");
    assert_eq!(&out[15..], &masked_crc32c(b"abc").to_le_bytes());
    encode_record(b"", &mut out);
    let records = decode_records(&out, Path::new("mem")).unwrap();
    assert_eq!(records, vec![b"abc".to_vec(), Vec::new()]);
}

#[test]
fn written_events_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tb");
    let mut w = EventWriter::create(&dir).unwrap();
    w.add_scalar("train/loss", 0.75, 1).unwrap();
    w.add_scalars(&[("val/top1", 0.5), ("val/loss", 1.25)], 2)
        .unwrap();
    w.session_start(3).unwrap();
    w.flush().unwrap();
    let name = w.path().file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    assert!(
        name.ends_with(&format!(".{}.0", std::process::id())),
        "{name}"
    );

    let events = read_events(w.path()).unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(
        events[0].what,
        Some(event::What::FileVersion(FILE_VERSION.into()))
    );
    assert_eq!(
        (events[1].step, events[1].scalars()),
        (1, vec![("train/loss", 0.75)])
    );
    assert_eq!(
        (events[2].step, events[2].scalars()),
        (2, vec![("val/top1", 0.5), ("val/loss", 1.25)])
    );
    match &events[3].what {
        Some(event::What::SessionLog(s)) => {
            assert_eq!(s.status, SessionStatus::Start as i32);
            assert_eq!(events[3].step, 3);
        }
        other => panic!("expected a session log, got {other:?}"),
    }
    assert!(events.iter().all(|e| e.wall_time > 1.6e9));
    // The file is exactly its records: per event, 16 bytes of framing.
    let bytes = std::fs::read(w.path()).unwrap();
    let records = decode_records(&bytes, w.path()).unwrap();
    let framed: usize = records.iter().map(|r| r.len() + 16).sum();
    assert_eq!(framed, bytes.len());

    // A second writer in the same folder (a resumed run) gets its own file, listed after.
    let w2 = EventWriter::create(&dir).unwrap();
    assert_ne!(w2.path(), w.path());
    drop(w2);
    let files = event_files(&dir).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0], w.path());
}

#[test]
fn tensorboards_own_writer_is_read() {
    // tests/fixtures/make_python_fixture.py: tensorboard 2.21's EventFileWriter.
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events.out.tfevents.python");
    let events = read_events(&path).unwrap();
    assert_eq!(
        events[0].what,
        Some(event::What::FileVersion(FILE_VERSION.into()))
    );
    let scalars: Vec<(i64, Vec<(&str, f32)>)> = events
        .iter()
        .filter(|e| !e.scalars().is_empty())
        .map(|e| (e.step, e.scalars()))
        .collect();
    assert_eq!(
        scalars,
        vec![
            (1, vec![("train/loss", 0.5)]),
            (2, vec![("train/loss", 0.25), ("train/lr", 0.125)]),
            (3, vec![("val/top1", 0.75)]),
        ]
    );
    assert_eq!(events[1].wall_time, 1_700_000_001.0);
    assert!(events
        .iter()
        .any(|e| matches!(&e.what, Some(event::What::SessionLog(s)) if s.status == 1)));
}

#[test]
fn corruption_and_truncation_are_named_with_their_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(tmp.path()).unwrap();
    w.add_scalar("a", 1.0, 1).unwrap();
    w.flush().unwrap();
    let good = std::fs::read(w.path()).unwrap();
    let first = decode_records(&good, w.path()).unwrap()[0].len() as u64 + 16;

    let mut flipped = good.clone();
    let last = flipped.len() - 6;
    flipped[last] ^= 0x40;
    let bad = tmp.path().join("flipped");
    std::fs::write(&bad, &flipped).unwrap();
    match read_events(&bad).unwrap_err() {
        TensorBoardError::Corrupt { offset, what, path } => {
            assert_eq!(offset, first);
            assert!(what.contains("data CRC"), "{what}");
            assert_eq!(path, bad);
        }
        e => panic!("{e}"),
    }

    let cut = tmp.path().join("cut");
    std::fs::write(&cut, &good[..good.len() - 3]).unwrap();
    let msg = read_events(&cut).unwrap_err().to_string();
    assert!(
        msg.contains("truncated") && msg.contains(&format!("byte {first}")),
        "{msg}"
    );
    let missing = read_events(&tmp.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope"), "{missing}");
}

#[test]
fn a_logged_scalar_costs_microseconds() {
    // A training step takes milliseconds at least; the per-step log must not show.
    let tmp = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(tmp.path()).unwrap();
    let n = 100_000;
    let t = Instant::now();
    for step in 0..n {
        w.add_scalars(
            &[("train/loss", step as f32 * 1e-5), ("train/lr", 0.1)],
            step,
        )
        .unwrap();
    }
    w.flush().unwrap();
    let per_step = t.elapsed().as_secs_f64() / n as f64;
    println!("{:.2} µs per step (two scalars)", per_step * 1e6);
    assert!(per_step < 100e-6, "{per_step} s per step");
    assert_eq!(read_events(w.path()).unwrap().len(), n as usize + 1);
}

/// Reads every scalar of the event files in `dir` with TensorBoard's own
/// `EventAccumulator`, as `{tag: [[step, value], ...]}`.
const PYTHON_READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0})
acc.Reload()
print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
"#;

/// `$VCT_TEST_PYTHON` (default `python3`), which must have the `tensorboard` package.
fn python_scalars(dir: &Path) -> serde_json::Value {
    let python = std::env::var("VCT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-c", PYTHON_READER])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(
        out.status.success(),
        "{python}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs Python with the tensorboard package ($VCT_TEST_PYTHON); .ci/run sets it up"]
fn python_tensorboard_reads_the_files_and_honours_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    // A run logs steps 1-5, is interrupted, and resumes from its checkpoint at step 3:
    // the restart marks step 4, so TensorBoard drops the first run's steps 4 and 5.
    let mut first = EventWriter::create(tmp.path()).unwrap();
    for step in 1..=5 {
        first
            .add_scalars(&[("train/loss", step as f32), ("train/lr", 0.5)], step)
            .unwrap();
    }
    first.flush().unwrap();
    // A later file name, as a later process would have.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut second = EventWriter::create(tmp.path()).unwrap();
    second.session_start(4).unwrap();
    for step in 4..=6 {
        second
            .add_scalar("train/loss", 10.0 * step as f32, step)
            .unwrap();
    }
    second.add_scalar("val/top1", 0.875, 6).unwrap();
    second.flush().unwrap();
    let got = python_scalars(tmp.path());
    assert_eq!(
        got["train/loss"],
        serde_json::json!([
            [1, 1.0],
            [2, 2.0],
            [3, 3.0],
            [4, 40.0],
            [5, 50.0],
            [6, 60.0]
        ])
    );
    assert_eq!(
        got["train/lr"],
        serde_json::json!([[1, 0.5], [2, 0.5], [3, 0.5]])
    );
    assert_eq!(got["val/top1"], serde_json::json!([[6, 0.875]]));
}
