//! CSV / JSONL manifests and CIFAR-10 binaries.

mod common;

use common::write_image;
use vct_data::{
    cifar10_from_dir, read_cifar10_bin, Concepts, CorruptPolicy, DataError, Dataset, OpenOptions,
    SkipKind, Source,
};

#[test]
fn csv_manifest_multi_label_with_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write_image(&r.join("img/a.jpg"), 1);
    write_image(&r.join("img/b, c.jpg"), 2);
    write_image(&r.join("img/d.png"), 3);
    let csv = r.join("train.csv");
    std::fs::write(
        &csv,
        "image,labels\nimg/a.jpg,person dog\n\"img/b, c.jpg\",dog\nimg/gone.jpg,cat\nimg/d.png,\n",
    )
    .unwrap();
    let ds = Dataset::open(&csv).unwrap();
    assert!(ds.multi_label);
    assert_eq!(ds.concepts.names(), ["cat", "dog", "person"]);
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.items[0].labels, vec![1, 2]);
    assert_eq!(ds.items[1].labels, vec![1]);
    assert!(ds.items[2].labels.is_empty());
    assert_eq!(ds.class_counts(), vec![0, 2, 1]);
    assert_eq!(ds.skipped.len(), 1);
    assert_eq!(ds.skipped[0].kind, SkipKind::Unreadable);
    assert!(
        ds.skipped[0].path.ends_with("img/gone.jpg") && ds.skipped[0].reason.contains("line 4"),
        "{:?}",
        ds.skipped
    );

    let fail = OpenOptions {
        policy: CorruptPolicy::Fail,
        ..OpenOptions::default()
    };
    let err = Dataset::open_with(&csv, &fail, None).unwrap_err();
    assert!(
        matches!(err, DataError::Manifest { line: 4, .. }) && err.to_string().contains("gone.jpg"),
        "{err}"
    );

    // classes.txt beside the manifest fixes the concept list.
    std::fs::write(r.join("classes.txt"), "person\nbicycle\ncat\ndog\n").unwrap();
    let ds = Dataset::open(&csv).unwrap();
    assert_eq!(ds.concepts.names(), ["bicycle", "cat", "dog", "person"]);
    assert_eq!(ds.items[0].labels, vec![2, 3]);
}

#[test]
fn malformed_rows_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write_image(&r.join("a.jpg"), 1);
    let cases = [
        ("image,labels\na.jpg,x\na.jpg,x,extra\n", 3, "3 fields"),
        ("image,labels\n\"a.jpg,x\n", 2, "unterminated"),
        ("image,labels\n,x\n", 2, "empty image"),
        ("file_name;tags\na.jpg;x\n", 1, "expected columns"),
    ];
    for (text, line, what) in cases {
        let csv = r.join("m.csv");
        std::fs::write(&csv, text).unwrap();
        let err = Dataset::open(&csv).unwrap_err();
        match &err {
            DataError::Manifest {
                line: l, reason, ..
            } => {
                assert_eq!(*l, line, "{err}");
                assert!(reason.contains(what), "{err}");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("m.csv"));
    }
    // Known concepts only, when given.
    let csv = r.join("m.csv");
    std::fs::write(&csv, "image,labels\na.jpg,zebra\n").unwrap();
    let known = Concepts::new(vec!["horse".into()]).unwrap();
    let err = Dataset::open_with_concepts(&csv, &known).unwrap_err();
    assert!(
        matches!(err, DataError::UnknownConcept { .. }) && err.to_string().contains("zebra"),
        "{err}"
    );
}

#[test]
fn jsonl_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write_image(&r.join("x/one.jpg"), 1);
    write_image(&r.join("x/two.jpg"), 2);
    let p = r.join("data.jsonl");
    std::fs::write(
        &p,
        "{\"image\": \"x/one.jpg\", \"concepts\": [\"sky\", \"tree\"]}\n\n{\"image\": \"x/two.jpg\", \"concepts\": [\"tree\"]}\n{\"image\": \"x/three.jpg\", \"concepts\": []}\n",
    )
    .unwrap();
    let ds = Dataset::open(&p).unwrap();
    assert_eq!(ds.concepts.names(), ["sky", "tree"]);
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.items[0].labels, vec![0, 1]);
    assert_eq!(ds.skipped.len(), 1);
    std::fs::write(
        &p,
        "{\"image\": \"x/one.jpg\", \"concepts\": [\"sky\"]}\n{\"img\": 3}\n",
    )
    .unwrap();
    let err = Dataset::open(&p).unwrap_err();
    assert!(
        matches!(err, DataError::Manifest { line: 2, .. }),
        "{err:?}"
    );
}

fn cifar_records(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        out.push(l);
        // Planes: R = i, G = 100 + pixel % 32, B = 200.
        out.extend(std::iter::repeat_n(i as u8, 1024));
        out.extend((0..1024).map(|p| 100 + (p % 32) as u8));
        out.extend(std::iter::repeat_n(200u8, 1024));
    }
    out
}

#[test]
fn cifar10_binary_files() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    std::fs::write(r.join("data_batch_1.bin"), cifar_records(&[3, 9, 0])).unwrap();
    std::fs::write(r.join("data_batch_2.bin"), cifar_records(&[5])).unwrap();
    std::fs::write(r.join("test_batch.bin"), cifar_records(&[1, 1])).unwrap();
    let (train, test) = cifar10_from_dir(r).unwrap();
    assert_eq!(train.len(), 4);
    assert_eq!(train.concepts.names()[3], "cat");
    let labels: Vec<usize> = train.items.iter().map(|i| i.labels[0]).collect();
    assert_eq!(labels, vec![3, 9, 0, 5]);
    let Source::Pixels { image, name } = &train.items[1].source else {
        panic!()
    };
    assert_eq!(image.dimensions(), (32, 32));
    assert_eq!(image.get_pixel(5, 0).0, [1, 105, 200]);
    assert!(name.to_string_lossy().ends_with("data_batch_1.bin#1"));
    assert_eq!(test.unwrap().len(), 2);
    // Dataset::open recognises the folder (training batches).
    assert_eq!(Dataset::open(r).unwrap().len(), 4);

    std::fs::write(r.join("bad.bin"), vec![0u8; 3000]).unwrap();
    let err = read_cifar10_bin(&r.join("bad.bin")).unwrap_err();
    assert!(
        err.to_string().contains("bad.bin") && err.to_string().contains("3073"),
        "{err}"
    );
    let mut wrong = cifar_records(&[1]);
    wrong[0] = 12;
    std::fs::write(r.join("wrong.bin"), wrong).unwrap();
    assert!(read_cifar10_bin(&r.join("wrong.bin"))
        .unwrap_err()
        .to_string()
        .contains("label 12"));
}

#[test]
fn manifest_paths_fall_back_to_the_folder_named_like_the_manifest() {
    // COCO-style: val.csv lists bare names that live in val/.
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write_image(&r.join("val/0001.jpg"), 1);
    write_image(&r.join("0002.jpg"), 2);
    std::fs::write(
        r.join("val.csv"),
        "image,labels\n0001.jpg,kite\n0002.jpg,bird kite\n",
    )
    .unwrap();
    let ds = Dataset::open(&r.join("val.csv")).unwrap();
    assert_eq!(ds.len(), 2);
    assert!(ds.items[0].path().ends_with("val/0001.jpg"));
    assert_eq!(ds.items[0].path().parent(), Some(r.join("val").as_path()));
    assert_eq!(ds.items[1].path(), r.join("0002.jpg"));
}

#[test]
fn single_label_manifests_are_detected_and_several_labels_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for (i, name) in ["a.jpg", "b.jpg", "c.jpg", "d.jpg"].iter().enumerate() {
        write_image(&r.join("img").join(name), i as u8);
    }
    // One concept per row: single-label, as a folder tree would be.
    let csv = r.join("single.csv");
    std::fs::write(
        &csv,
        "image,labels\nimg/a.jpg,cat\nimg/b.jpg,dog\nimg/c.jpg, dog \n",
    )
    .unwrap();
    let ds = Dataset::open(&csv).unwrap();
    assert!(!ds.multi_label);
    ds.require_single_label().unwrap();
    assert_eq!(ds.items[2].line, Some(4));
    let jsonl = r.join("single.jsonl");
    std::fs::write(
        &jsonl,
        "{\"image\": \"img/a.jpg\", \"concepts\": [\"cat\"]}\n{\"image\": \"img/b.jpg\", \"concepts\": [\"dog\", \"dog\"]}\n",
    )
    .unwrap();
    let ds = Dataset::open(&jsonl).unwrap();
    assert!(!ds.multi_label, "a repeated concept is one concept");

    // One row of two concepts makes it multi-label; the refusal names that row.
    let csv = r.join("mixed.csv");
    std::fs::write(
        &csv,
        "image,labels\nimg/a.jpg,cat\n\nimg/b.jpg,dog\nimg/c.jpg,dog cat\nimg/d.jpg,\n",
    )
    .unwrap();
    let ds = Dataset::open(&csv).unwrap();
    assert!(ds.multi_label);
    let err = ds.require_single_label().unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}:5: image ", csv.display()))
            && text.contains(
                "c.jpg has 2 concepts (cat, dog) where exactly one per image is expected"
            ),
        "{text}"
    );
    // A row without a concept is refused too (softmax has nothing to train on).
    let csv = r.join("empty_row.jsonl");
    std::fs::write(
        &csv,
        "{\"image\": \"img/a.jpg\", \"concepts\": [\"cat\"]}\n{\"image\": \"img/d.jpg\", \"concepts\": []}\n",
    )
    .unwrap();
    let ds = Dataset::open(&csv).unwrap();
    assert!(ds.multi_label);
    let text = ds.require_single_label().unwrap_err().to_string();
    assert!(
        text.starts_with(&format!("{}:2: image ", csv.display()))
            && text.contains("has no concept"),
        "{text}"
    );
    // A missing file's row does not count.
    let csv = r.join("gone.csv");
    std::fs::write(&csv, "image,labels\nimg/a.jpg,cat\nimg/gone.jpg,cat dog\n").unwrap();
    let ds = Dataset::open(&csv).unwrap();
    assert!(!ds.multi_label);
    // Folders are single-label and pass.
    let f = tempfile::tempdir().unwrap();
    write_image(&f.path().join("cat/x.jpg"), 9);
    let ds = Dataset::open(f.path()).unwrap();
    assert!(!ds.multi_label && ds.items[0].line.is_none());
    ds.require_single_label().unwrap();
}
