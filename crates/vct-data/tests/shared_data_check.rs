//! `vct_data::check` on the real data sets in ../shared/data: what it finds must be
//! what shared/data/README.md says of them (no decode failures, grayscale JPEGs
//! fine, no EXIF orientation, the counts and sizes), plus what the check itself
//! found there, written down below. Run by .ci/run; skipped when ../shared is absent.

mod common;

use std::path::Path;

use common::shared_data;
use vct_data::check::{check, CheckOptions, CheckReport, Problem};

fn full(name: &str) -> Option<CheckReport> {
    let root = shared_data()?.join(name);
    Some(check(&root, &CheckOptions::full()).unwrap())
}

fn counts(r: &CheckReport, split: &str) -> Vec<(String, usize)> {
    r.split(split)
        .unwrap()
        .concepts
        .iter()
        .map(|c| (c.concept.clone(), c.count))
        .collect()
}

/// Nothing the README rules out: no unreadable file, no EXIF rotation, no
/// duplicate bytes, nothing ignored, no hidden files.
fn assert_clean(r: &CheckReport) {
    assert_eq!(r.errors, 0, "{:#?}", r.findings);
    for kind in [
        "decode_failed",
        "zero_byte",
        "not_image",
        "unreadable",
        "missing_file",
        "ignored_file",
        "exif_rotated",
        "exact_duplicate",
        "empty_concept",
        "unknown_concept",
    ] {
        assert_eq!(r.of_kind(kind).count(), 0, "{kind}: {:#?}", r.findings);
    }
    for s in &r.splits {
        assert_eq!(s.usable, s.files, "{}", s.name);
        assert_eq!((s.exif_rotated, s.hidden), (0, 0), "{}", s.name);
    }
}

fn rel<'a>(r: &CheckReport, p: &'a Path) -> &'a Path {
    p.strip_prefix(&r.root).unwrap_or(p)
}

#[test]
#[ignore = "reads ../shared/data; run by .ci/run"]
fn shared_data_data_check_hymenoptera() {
    let Some(r) = full("hymenoptera_data") else {
        return;
    };
    assert_clean(&r);
    assert_eq!(r.layout, "split_folders");
    assert_eq!(
        counts(&r, "train"),
        [("ants".to_string(), 123), ("bees".to_string(), 121)]
    );
    assert_eq!(
        counts(&r, "val"),
        [("ants".to_string(), 70), ("bees".to_string(), 83)]
    );
    // "All are RGB, with widths 193–2592 (median 500) and heights 130–1984 (median 375)."
    for s in &r.splits {
        assert_eq!(s.color_modes.keys().collect::<Vec<_>>(), ["RGB"]);
    }
    let sizes = r.sizes.unwrap();
    assert_eq!(
        (sizes.width.min, sizes.width.median, sizes.width.max),
        (193, 500, 2592)
    );
    assert_eq!(
        (sizes.height.min, sizes.height.median, sizes.height.max),
        (130, 375, 1984)
    );
    // Found by the check: 8 photos have a shorter side under 224 (7 train, 1 val),
    // and no two photos are near duplicates; nothing else to warn about.
    let small: Vec<_> = r
        .of_kind("small_image")
        .map(|f| rel(&r, f.problem.path().unwrap()).display().to_string())
        .collect();
    assert_eq!(small.len(), 8, "{small:?}");
    assert!(small.contains(&"train/ants/formica.jpeg".to_string()));
    assert_eq!(r.findings.len(), 8, "{:#?}", r.findings);
}

#[test]
#[ignore = "reads ../shared/data; run by .ci/run"]
fn shared_data_data_check_coco128() {
    let Some(r) = full("coco128_multilabel") else {
        return;
    };
    assert_clean(&r);
    assert_eq!(r.layout, "split_manifests");
    assert_eq!(r.concepts.len(), 80);
    let train = r.split("train").unwrap();
    let val = r.split("val").unwrap();
    assert_eq!((train.usable, val.usable), (96, 30));
    // "train: 2.96 labels per image on average (min 1, max 11), 69 distinct classes."
    let l = train.labels.as_ref().unwrap();
    assert!(l.multi_label);
    assert!(
        (l.mean_per_image - 2.96).abs() < 0.005,
        "{}",
        l.mean_per_image
    );
    assert_eq!(
        (l.min_per_image, l.max_per_image, l.concepts_seen),
        (1, 11, 69)
    );
    // "These 11 classes never occur in train: ..."
    let mut unseen = vec![
        "fire_hydrant",
        "parking_meter",
        "sheep",
        "cow",
        "surfboard",
        "apple",
        "toilet",
        "tv",
        "keyboard",
        "toaster",
        "hair_drier",
    ];
    unseen.sort();
    assert_eq!(l.never_seen, unseen);
    let warned: Vec<&str> = r
        .of_kind("unseen_concept")
        .map(|f| match &f.problem {
            Problem::UnseenConcept { concept, .. } => concept.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(warned, unseen);
    // "val: 2.60 labels per image on average (min 1, max 6), 45 distinct classes."
    let v = val.labels.as_ref().unwrap();
    assert!(
        (v.mean_per_image - 2.60).abs() < 0.005,
        "{}",
        v.mean_per_image
    );
    assert_eq!(
        (v.min_per_image, v.max_per_image, v.concepts_seen),
        (1, 6, 45)
    );
    // "`person` is in 49/96 train and 12/30 val images."
    let person = |s: &str| counts(&r, s).into_iter().find(|(c, _)| c == "person");
    assert_eq!(person("train"), Some(("person".into(), 49)));
    assert_eq!(person("val"), Some(("person".into(), 12)));
    // "125 are RGB and 1 is grayscale (train/000000000086.jpg)"; it decodes.
    assert_eq!(train.color_modes.get("L"), Some(&1));
    assert_eq!(train.color_modes.get("RGB"), Some(&95));
    assert_eq!(val.color_modes.get("RGB"), Some(&30));
    // "widths 333–640 and heights 218–640 (median 640×480)"
    let sizes = r.sizes.unwrap();
    assert_eq!(
        (sizes.width.min, sizes.width.median, sizes.width.max),
        (333, 640, 640)
    );
    assert_eq!(
        (sizes.height.min, sizes.height.median, sizes.height.max),
        (218, 480, 640)
    );
    // Found by the check: "many classes occur only once or twice" — 67 of the 69
    // training classes have fewer than 10 images; 1 image is under 224 pixels.
    assert_eq!(r.of_kind("few_images").count(), 67);
    assert_eq!(r.of_kind("small_image").count(), 1);
    assert_eq!(r.of_kind("near_duplicate").count(), 0);
    assert_eq!(r.of_kind("imbalance").count(), 0);
}

#[test]
#[ignore = "reads ../shared/data; run by .ci/run"]
fn shared_data_data_check_imagenette() {
    let Some(r) = full("imagenette_224_subset") else {
        return;
    };
    assert_clean(&r);
    // "all exactly 224×224 JPEG. 1,963 are RGB and 37 are grayscale."
    let sizes = r.sizes.unwrap();
    assert_eq!((sizes.width.min, sizes.width.max), (224, 224));
    assert_eq!((sizes.height.min, sizes.height.max), (224, 224));
    let mode = |m: &str| -> usize {
        r.splits
            .iter()
            .map(|s| s.color_modes.get(m).copied().unwrap_or(0))
            .sum()
    };
    assert_eq!((mode("RGB"), mode("L")), (1963, 37));
    assert!(counts(&r, "train").iter().all(|(_, n)| *n == 150));
    assert!(counts(&r, "val").iter().all(|(_, n)| *n == 50));
    // Found by the check: nothing at all (224 is not below 224).
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

#[test]
#[ignore = "reads ../shared/data; run by .ci/run"]
fn shared_data_data_check_cifar10_subset() {
    let Some(root) = shared_data() else { return };
    // The input size of a 32-pixel template: no small images then.
    let opts = CheckOptions {
        min_size: 32,
        ..CheckOptions::full()
    };
    let r = check(&root.join("cifar10_subset"), &opts).unwrap();
    assert_clean(&r);
    assert_eq!(r.split("train").unwrap().usable, 3000);
    assert_eq!(r.split("val").unwrap().usable, 1000);
    // "The two splits share no images": no exact and no cross-split near duplicate.
    // Found by the check: one near duplicate inside train, the same deer photo
    // shifted by a few pixels (CIFAR-10 has such pairs).
    let near: Vec<_> = r.of_kind("near_duplicate").collect();
    assert_eq!(near.len(), 1, "{near:#?}");
    match &near[0].problem {
        Problem::NearDuplicate {
            files, cross_split, ..
        } => {
            assert!(!cross_split);
            let names: Vec<String> = files
                .iter()
                .map(|f| rel(&r, &f.path).display().to_string())
                .collect();
            assert_eq!(names, ["train/deer/0066.jpg", "train/deer/0231.jpg"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
}
