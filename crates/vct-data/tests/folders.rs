//! Folder datasets: layout, quirks, bad files, empty folders, splits, concepts.

mod common;

use std::path::Path;

use common::{write_image, write_truncated_jpeg};
use vct_data::{
    find_splits, split, Concepts, CorruptPolicy, DataError, Dataset, OpenOptions, SkipKind,
};

#[test]
fn folder_layout_with_quirky_names() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write_image(&r.join("cat/a.png"), 1);
    write_image(&r.join("cat/b c.JPG"), 2); // space, upper-case extension
    write_image(&r.join("cat/.hidden.png"), 3);
    std::fs::write(r.join("cat/notes.txt"), "hello").unwrap();
    write_image(&r.join("dog/x.jpeg"), 4);
    write_image(&r.join("dog/sub/y.PNG"), 5);
    std::fs::write(r.join("README.md"), "about").unwrap();
    std::fs::create_dir_all(r.join(".git")).unwrap();

    let ds = Dataset::open(r).unwrap();
    assert_eq!(ds.concepts.names(), ["cat", "dog"]);
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.class_counts(), vec![2, 2]);
    assert!(!ds.multi_label);
    let names: Vec<String> = ds
        .items
        .iter()
        .map(|i| i.path().file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // Sorted by path: dog/sub/y.PNG comes before dog/x.jpeg.
    assert_eq!(names, ["a.png", "b c.JPG", "y.PNG", "x.jpeg"]);
    assert_eq!(ds.items[1].labels, vec![0]);
    assert_eq!(ds.items[3].labels, vec![1]);
    assert_eq!(ds.skipped_count(SkipKind::Hidden), 2);
    assert_eq!(ds.skipped_count(SkipKind::NotImage), 2);
    assert_eq!(ds.skipped_count(SkipKind::Unreadable), 0);
}

#[test]
fn unreadable_files_are_skipped_and_counted_or_fail_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write_image(&r.join("a/good1.jpg"), 1);
    write_image(&r.join("a/good2.jpg"), 2);
    std::fs::write(r.join("a/zero.jpg"), b"").unwrap();
    std::fs::write(r.join("a/text.jpg"), b"just some text, not a JPEG\n").unwrap();
    write_image(&r.join("b/good3.png"), 3);
    let ds = Dataset::open(r).unwrap();
    assert_eq!(ds.len(), 3);
    let bad: Vec<(&str, &str)> = ds
        .skipped
        .iter()
        .map(|s| {
            (
                s.path.file_name().unwrap().to_str().unwrap(),
                s.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad.iter()
            .any(|(f, why)| *f == "text.jpg" && why.contains("not a recognised image format")),
        "{bad:?}"
    );
    assert!(
        bad.iter()
            .any(|(f, why)| *f == "zero.jpg" && why.contains("empty file")),
        "{bad:?}"
    );
    assert!(ds.skipped.iter().all(|s| s.kind == SkipKind::Unreadable));

    let fail = OpenOptions {
        policy: CorruptPolicy::Fail,
        ..OpenOptions::default()
    };
    let err = Dataset::open_with(r, &fail, None).unwrap_err();
    assert!(
        err.to_string().contains("text.jpg") || err.to_string().contains("zero.jpg"),
        "{err}"
    );
}

#[test]
fn empty_concepts_and_empty_datasets_are_rejected_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write_image(&r.join("a/one.jpg"), 1);
    std::fs::create_dir_all(r.join("empty")).unwrap();
    let err = Dataset::open(r).unwrap_err();
    assert!(matches!(err, DataError::EmptyConcept { .. }), "{err:?}");
    assert!(
        err.to_string().contains("empty") && err.to_string().contains(&r.display().to_string()),
        "{err}"
    );

    // A concept with only non-images is empty too.
    std::fs::write(r.join("empty/list.txt"), "x").unwrap();
    let err = Dataset::open(r).unwrap_err();
    assert!(
        matches!(err, DataError::EmptyConcept { skipped: 1, .. }),
        "{err:?}"
    );

    let none = tempfile::tempdir().unwrap();
    std::fs::write(none.path().join("stray.jpg"), b"").unwrap();
    let err = Dataset::open(none.path()).unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
    assert!(err.to_string().contains(&none.path().display().to_string()));

    let err = Dataset::open(&r.join("nope")).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn train_val_layout_and_fixed_concepts() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for (split, n) in [("train", 3), ("val", 2)] {
        for c in ["ant", "bee"] {
            for i in 0..n {
                write_image(&r.join(format!("{split}/{c}/{i}.jpg")), i as u8);
            }
        }
    }
    write_image(&r.join("test/ant/0.jpg"), 9);
    let (train, val) = find_splits(r).unwrap();
    assert_eq!(train, r.join("train"));
    assert_eq!(val.as_deref(), Some(r.join("val").as_path()));
    // Opening the root opens its training part.
    let t = Dataset::open(r).unwrap();
    assert_eq!(t.len(), 6);
    assert_eq!(t.root, r.join("train"));
    let v = Dataset::open_with_concepts(&r.join("val"), &t.concepts).unwrap();
    assert_eq!(v.len(), 4);
    // The test folder lacks "bee": fine, indices still follow the training concepts.
    let test = Dataset::open_with_concepts(&r.join("test"), &t.concepts).unwrap();
    assert_eq!(test.concepts.len(), 2);
    write_image(&r.join("val/wasp/0.jpg"), 1);
    let err = Dataset::open_with_concepts(&r.join("val"), &t.concepts).unwrap_err();
    assert!(
        matches!(err, DataError::UnknownConcept { ref concept, .. } if concept == "wasp"),
        "{err:?}"
    );
    assert!(find_splits(&r.join("train")).is_none());
}

fn counts(ds: &Dataset) -> Vec<usize> {
    ds.class_counts()
}

#[test]
fn stratified_split_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for i in 0..10 {
        write_image(&r.join(format!("a/{i}.png")), i);
    }
    for i in 0..20 {
        write_image(&r.join(format!("b/{i}.png")), i);
    }
    write_image(&r.join("c/only.png"), 0);
    let ds = Dataset::open(r).unwrap();
    let (t, v) = split(&ds, 0.2, 7).unwrap();
    assert_eq!(counts(&v), vec![2, 4, 0]);
    assert_eq!(counts(&t), vec![8, 16, 1]);
    let paths = |d: &Dataset| {
        d.items
            .iter()
            .map(|i| i.path().to_path_buf())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert!(paths(&t).is_disjoint(&paths(&v)));
    assert_eq!(paths(&t).len() + paths(&v).len(), 31);
    let (_, v2) = split(&ds, 0.2, 7).unwrap();
    assert_eq!(paths(&v), paths(&v2));
    let (_, v3) = split(&ds, 0.2, 8).unwrap();
    assert_ne!(paths(&v), paths(&v3));
    assert!(split(&ds, 1.0, 0).is_err());
    assert!(split(&ds, 0.0, 0).is_err());
}

#[test]
fn concept_index_is_sorted_stable_and_serialisable() {
    let c = Concepts::new(vec![
        "zebra".into(),
        "ant".into(),
        "moth".into(),
        "ant".into(),
    ])
    .unwrap();
    assert_eq!(c.names(), ["ant", "moth", "zebra"]);
    assert_eq!(c.index("moth"), Some(1));
    assert_eq!(c.index("wasp"), None);
    assert_eq!(c.index_of("zebra"), Some(2));
    assert_eq!(c.index_of("Zebra"), None);
    assert_eq!(c.name(2), Some("zebra"));
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(json, r#"["ant","moth","zebra"]"#);
    assert_eq!(serde_json::from_str::<Concepts>(&json).unwrap(), c);
    assert!(serde_json::from_str::<Concepts>(r#"["a", " "]"#).is_err());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("concepts.json");
    c.save(&p).unwrap();
    assert_eq!(Concepts::load(&p).unwrap(), c);
    assert!(Concepts::new(vec!["".into()]).is_err());
    assert!(Concepts::load(Path::new("/definitely/not/here.json")).is_err());
}

#[test]
fn truncated_jpeg_passes_the_scan_and_is_skipped_by_the_loader() {
    use std::sync::Arc;
    use vct_augment::{CenterCrop, Pipeline, Resize};
    use vct_data::{Loader, LoaderConfig};

    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for i in 0..5 {
        write_image(&r.join(format!("a/{i}.jpg")), i);
        write_image(&r.join(format!("b/{i}.jpg")), i + 10);
    }
    write_truncated_jpeg(&r.join("b/cut.jpg"));
    let ds = Arc::new(Dataset::open(r).unwrap());
    assert_eq!(ds.len(), 11);
    let pipeline = Arc::new(
        Pipeline::default()
            .push(Resize::shorter_side(16))
            .push(CenterCrop::new(16)),
    );
    let cfg = LoaderConfig {
        batch_size: 4,
        shuffle: false,
        threads: 2,
        ..LoaderConfig::default()
    };
    let mut loader = Loader::new(ds.clone(), pipeline.clone(), cfg);
    assert_eq!(loader.len(), 3);
    let mut n = 0;
    for b in loader.by_ref() {
        let b = b.unwrap();
        n += b.indices.len();
        assert_eq!(b.images.dims()[0], b.indices.len());
    }
    assert_eq!(n, 10);
    assert_eq!(loader.skipped().len(), 1);
    assert!(loader.skipped()[0].path.ends_with("b/cut.jpg"));
    assert_eq!(loader.progress().skipped, 1);
    assert_eq!(loader.progress().items_done, 10);

    let fail = LoaderConfig {
        policy: CorruptPolicy::Fail,
        ..cfg
    };
    let results: Vec<_> = Loader::new(ds, pipeline, fail).collect();
    let err = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("an error");
    assert!(err.to_string().contains("cut.jpg"), "{err}");
    // The error ends the epoch.
    assert!(results.last().unwrap().is_err());
}
