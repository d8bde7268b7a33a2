//! `vct_data::check` on small data sets written here with every problem it looks
//! for injected on purpose, each finding asserted.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use vct_data::check::{check, CheckOptions, CheckReport, Finding, Problem, Severity};

/// A picture of its own for every `seed`: a colour gradient under a dozen
/// random rectangles, whose edges spread energy over all frequencies as a
/// photograph's do (smooth waves alone leave a perceptual hash's bits unstable).
fn picture(w: u32, h: u32, seed: u64) -> RgbImage {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let base: [f32; 3] = [rng.random(), rng.random(), rng.random()];
    let mut img = RgbImage::from_fn(w, h, |x, y| {
        let t = (x + y) as f32 / (w + h) as f32;
        Rgb(base.map(|b| (255.0 * (b * (1.0 - t) + (1.0 - b) * t)) as u8))
    });
    for _ in 0..12 {
        let (x0, y0) = (rng.random_range(0..w), rng.random_range(0..h));
        let (rw, rh) = (
            rng.random_range(w / 8..w / 2),
            rng.random_range(h / 8..h / 2),
        );
        let c = Rgb([rng.random(), rng.random(), rng.random()]);
        for y in y0..(y0 + rh).min(h) {
            for x in x0..(x0 + rw).min(w) {
                img.put_pixel(x, y, c);
            }
        }
    }
    img
}

fn encode(img: &RgbImage, fmt: ImageFormat) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut buf, fmt)
        .expect("encode");
    buf.into_inner()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// A JPEG with an EXIF APP1 segment whose orientation tag (0x0112) is `orientation`,
/// written by hand: `Exif\0\0`, a little-endian TIFF header, one IFD entry.
fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode(img, ImageFormat::Jpeg);
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes()); // IFD0 offset
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&(app1.len() as u16 + 2).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A resized, re-encoded copy: a near duplicate with other bytes.
fn near_copy(img: &RgbImage) -> Vec<u8> {
    let small = image::imageops::resize(img, 48, 48, image::imageops::FilterType::Triangle);
    let mut buf = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 80)
        .encode_image(&small)
        .expect("jpeg");
    buf.into_inner()
}

/// `root/{train,val}/<concept>/...` with one of each problem.
struct Problems {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn problems() -> Problems {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("set");
    let t = root.join("train");
    let v = root.join("val");
    // cat: 101 distinct images, bird 12, dog 1: over 100x imbalance.
    for i in 0..101 {
        write(
            &t.join(format!("cat/{i:03}.png")),
            &encode(&picture(64, 64, i), ImageFormat::Png),
        );
    }
    for i in 0..12 {
        write(
            &t.join(format!("bird/{i:02}.png")),
            &encode(&picture(64, 64, 1000 + i), ImageFormat::Png),
        );
    }
    write(
        &t.join("dog/only.png"),
        &encode(&picture(64, 64, 2000), ImageFormat::Png),
    );
    // The problems, all in bird (so counts stay as above).
    common::write_truncated_jpeg(&t.join("bird/truncated.jpg"));
    write(&t.join("bird/zero.jpg"), b"");
    write(
        &t.join("bird/text.jpg"),
        b"<html>this is not a picture</html>\n",
    );
    write(
        &t.join("bird/tiny.png"),
        &encode(&picture(16, 20, 3000), ImageFormat::Png),
    );
    write(
        &t.join("bird/rotated.jpg"),
        &jpeg_with_orientation(&picture(64, 48, 4000), 6),
    );
    write(&t.join("bird/notes.txt"), b"collected in May");
    write(&t.join("bird/.DS_Store"), b"hidden");
    std::fs::create_dir_all(t.join("fish")).expect("mkdir");
    // The same bytes in train and val (leakage), in two concepts, twice in one.
    let bird0 = std::fs::read(t.join("bird/00.png")).expect("read");
    write(&v.join("bird/leaked.png"), &bird0);
    let cat5 = std::fs::read(t.join("cat/005.png")).expect("read");
    write(&t.join("bird/also_a_cat.png"), &cat5);
    let cat7 = std::fs::read(t.join("cat/007.png")).expect("read");
    write(&t.join("cat/007 copy.png"), &cat7);
    // A resized, re-encoded copy of a training image in val.
    write(&v.join("cat/resized.jpg"), &near_copy(&picture(64, 64, 9)));
    for i in 0..3 {
        write(
            &v.join(format!("cat/v{i}.png")),
            &encode(&picture(64, 64, 5000 + i), ImageFormat::Png),
        );
    }
    // A validation concept training does not have.
    write(
        &v.join("horse/h.png"),
        &encode(&picture(64, 64, 6000), ImageFormat::Png),
    );
    Problems { _dir: dir, root }
}

fn opts() -> CheckOptions {
    CheckOptions {
        min_size: 32,
        min_size_from: "test".into(),
        ..CheckOptions::full()
    }
}

fn kinds(r: &CheckReport, kind: &str) -> Vec<Finding> {
    r.of_kind(kind).cloned().collect()
}

fn name(p: &Path) -> String {
    p.strip_prefix(p.ancestors().nth(3).expect("depth"))
        .expect("prefix")
        .display()
        .to_string()
}

/// The one finding of `kind` about a single file, and its file (`split/concept/name`).
fn single(r: &CheckReport, kind: &str) -> (Finding, String) {
    let f = kinds(r, kind);
    assert_eq!(f.len(), 1, "{kind}: {f:#?}");
    let path = name(f[0].problem.path().expect("path"));
    (f[0].clone(), path)
}

#[test]
fn every_injected_problem_is_found() {
    let p = problems();
    let r = check(&p.root, &opts()).unwrap();
    assert_eq!(r.layout, "split_folders");
    assert_eq!(
        r.splits.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["train", "val"]
    );

    let (f, path) = single(&r, "decode_failed");
    assert_eq!(path, "train/bird/truncated.jpg");
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("truncated JPEG"), "{}", f.message);

    let (f, path) = single(&r, "zero_byte");
    assert_eq!(
        (f.severity, path.as_str()),
        (Severity::Error, "train/bird/zero.jpg")
    );

    let (f, path) = single(&r, "not_image");
    assert_eq!(
        (f.severity, path.as_str()),
        (Severity::Error, "train/bird/text.jpg")
    );
    assert!(f.message.contains("text"), "{}", f.message);

    let (f, path) = single(&r, "ignored_file");
    assert_eq!(
        (f.severity, path.as_str()),
        (Severity::Warning, "train/bird/notes.txt")
    );

    let (f, path) = single(&r, "small_image");
    assert_eq!(path, "train/bird/tiny.png");
    assert!(matches!(
        f.problem,
        Problem::SmallImage {
            width: 16,
            height: 20,
            min_size: 32,
            ..
        }
    ));

    let (f, path) = single(&r, "exif_rotated");
    assert_eq!(path, "train/bird/rotated.jpg");
    assert!(matches!(
        f.problem,
        Problem::ExifRotated { orientation: 6, .. }
    ));
    assert!(f.message.contains("sideways"), "{}", f.message);

    // Exact duplicates: leakage and two concepts are errors, a copy within one
    // concept is a warning.
    let exact = kinds(&r, "exact_duplicate");
    assert_eq!(exact.len(), 3, "{exact:#?}");
    let group = |f: &Finding| match &f.problem {
        Problem::ExactDuplicate {
            files,
            cross_split,
            conflicting_concepts,
        } => (
            files.iter().map(|x| name(&x.path)).collect::<Vec<_>>(),
            *cross_split,
            *conflicting_concepts,
            f.severity,
        ),
        other => panic!("{other:?}"),
    };
    let mut groups: Vec<_> = exact.iter().map(group).collect();
    groups.sort();
    assert_eq!(
        groups,
        vec![
            (
                vec!["train/bird/00.png".into(), "val/bird/leaked.png".into()],
                true,
                false,
                Severity::Error
            ),
            (
                vec![
                    "train/bird/also_a_cat.png".into(),
                    "train/cat/005.png".into()
                ],
                false,
                true,
                Severity::Error
            ),
            (
                vec!["train/cat/007 copy.png".into(), "train/cat/007.png".into()],
                false,
                false,
                Severity::Warning
            ),
        ]
    );
    assert!(exact.iter().any(|f| f.message.contains("(leakage)")));

    // The resized copy in val, and nothing else.
    let near = kinds(&r, "near_duplicate");
    assert_eq!(near.len(), 1, "{near:#?}");
    let Problem::NearDuplicate {
        files,
        distance,
        cross_split,
        conflicting_concepts,
    } = &near[0].problem
    else {
        panic!()
    };
    let names: Vec<String> = files.iter().map(|x| name(&x.path)).collect();
    assert_eq!(names, ["train/cat/009.png", "val/cat/resized.jpg"]);
    assert!(*cross_split && !conflicting_concepts);
    assert!(*distance <= vct_data::check::DEFAULT_NEAR_DISTANCE);
    assert_eq!(near[0].severity, Severity::Warning);

    // Concepts: the empty folder, the validation-only concept, the small one,
    // the imbalance (cat 101 + the copy of 007 = 102 vs dog 1).
    let (f, _) = single(&r, "empty_concept");
    assert!(matches!(
        &f.problem,
        Problem::EmptyConcept { concept, unusable_files: 0, .. } if concept == "fish"
    ));
    let unknown = kinds(&r, "unknown_concept");
    assert_eq!(unknown.len(), 1);
    assert!(matches!(
        &unknown[0].problem,
        Problem::UnknownConcept { split, concept } if split == "val" && concept == "horse"
    ));
    let few = kinds(&r, "few_images");
    assert_eq!(few.len(), 1, "{few:#?}");
    assert!(matches!(
        &few[0].problem,
        Problem::FewImages { concept, count: 1, minimum: 10, .. } if concept == "dog"
    ));
    let imbalance = kinds(&r, "imbalance");
    assert_eq!(imbalance.len(), 1);
    match &imbalance[0].problem {
        Problem::Imbalance {
            largest,
            largest_count,
            smallest,
            smallest_count,
            ..
        } => assert_eq!(
            (
                largest.as_str(),
                *largest_count,
                smallest.as_str(),
                *smallest_count
            ),
            ("cat", 102, "dog", 1)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(imbalance[0].severity, Severity::Warning);

    // Counts: usable images per concept, the unusable ones left out.
    let train = r.split("train").unwrap();
    let count = |c: &str| {
        train
            .concepts
            .iter()
            .find(|x| x.concept == c)
            .map(|x| x.count)
    };
    // bird: 12 pictures + tiny + rotated + the cat (truncated, zero, text unusable).
    assert_eq!(
        (count("bird"), count("cat"), count("dog"), count("fish")),
        (Some(15), Some(102), Some(1), Some(0))
    );
    assert_eq!((train.files, train.usable, train.hidden), (121, 118, 1));
    assert_eq!((train.small, train.exif_rotated), (1, 1));
    assert_eq!(train.color_modes.get("RGB"), Some(&118));
    let labels = train.labels.as_ref().unwrap();
    assert!(!labels.multi_label);
    assert_eq!(labels.never_seen, ["fish", "horse"]);

    // Errors: truncated, zero, text, 2 exact duplicates, empty fish, unknown horse.
    assert_eq!(r.errors, 7, "{:#?}", r.findings);
    assert!(r.has_errors());
    assert!(r.findings[..r.errors]
        .iter()
        .all(|f| f.severity == Severity::Error));
}

#[test]
fn the_imbalance_limit_is_a_ratio_of_the_training_split() {
    let p = problems();
    let mut o = CheckOptions::quick();
    o.max_imbalance = 102.0;
    let r = check(&p.root, &o).unwrap();
    assert!(kinds(&r, "imbalance").is_empty());
    o.max_imbalance = 101.9;
    let r = check(&p.root, &o).unwrap();
    let f = kinds(&r, "imbalance");
    assert_eq!(f.len(), 1);
    assert!(matches!(f[0].problem, Problem::Imbalance { ratio, .. } if ratio == 102.0));
    assert!(f[0].message.contains("102×"), "{}", f[0].message);
}

#[test]
fn quick_mode_reads_headers_and_hashes_without_decoding() {
    let p = problems();
    let quick = CheckOptions {
        min_size: 32,
        ..CheckOptions::quick()
    };
    let r = check(&p.root, &quick).unwrap();
    assert!(!r.options.decode);
    // A truncated JPEG's header reads: only the full decode finds it.
    assert!(kinds(&r, "decode_failed").is_empty());
    assert!(kinds(&r, "near_duplicate").is_empty());
    for kind in [
        "zero_byte",
        "not_image",
        "small_image",
        "exif_rotated",
        "empty_concept",
    ] {
        assert_eq!(kinds(&r, kind).len(), 1, "{kind}");
    }
    assert_eq!(kinds(&r, "exact_duplicate").len(), 3);
}

#[test]
fn the_report_round_trips_through_its_json_shape() {
    let p = problems();
    let r = check(&p.root, &opts()).unwrap();
    let text = serde_json::to_string(&r).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["format"], 1);
    assert_eq!(v["layout"], "split_folders");
    assert_eq!(v["options"]["min_size"], 32);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "zero_byte")
        .unwrap();
    assert_eq!(f["severity"], "error");
    assert_eq!(f["split"], "train");
    assert!(f["path"].as_str().unwrap().ends_with("zero.jpg"));
    assert!(f["message"].as_str().unwrap().contains("0 bytes"));
    let back: CheckReport = serde_json::from_str(&text).unwrap();
    assert_eq!(back.findings, r.findings);
    assert_eq!(back.splits, r.splits);
}

/// `root/{train,val}.csv` + `classes.txt`, rows of 0–3 concepts.
#[test]
fn manifest_statistics_missing_rows_and_leakage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("classes.txt"), "cat\ndog\nbird\nfish\n").unwrap();
    for i in 0..6 {
        write(
            &root.join(format!("images/{i}.png")),
            &encode(&picture(64, 64, 7000 + i), ImageFormat::Png),
        );
    }
    std::fs::write(
        root.join("train.csv"),
        "image,labels\nimages/0.png,cat\nimages/1.png,cat dog\nimages/2.png,cat dog bird\nimages/3.png,\nimages/gone.png,dog\n",
    )
    .unwrap();
    std::fs::write(
        root.join("val.csv"),
        "image,labels\nimages/4.png,dog\nimages/1.png,cat dog\nimages/5.png,fish cat\n",
    )
    .unwrap();
    let r = check(root, &opts()).unwrap();
    assert_eq!(r.layout, "split_manifests");
    assert_eq!(r.concepts, ["bird", "cat", "dog", "fish"]);
    let train = r.split("train").unwrap();
    assert_eq!(train.source, "manifest");
    let l = train.labels.as_ref().unwrap();
    assert!(l.multi_label);
    assert_eq!((l.min_per_image, l.max_per_image), (0, 3));
    assert_eq!(l.histogram, [1, 1, 1, 1]);
    assert!((l.mean_per_image - 1.5).abs() < 1e-9);
    assert_eq!(
        (l.concepts_seen, l.never_seen.clone()),
        (3, vec!["fish".to_string()])
    );
    let val = r.split("val").unwrap();
    let vl = val.labels.as_ref().unwrap();
    assert_eq!(vl.never_seen, ["bird"]);
    assert!((vl.mean_per_image - 5.0 / 3.0).abs() < 1e-9);

    let (f, path) = single(&r, "missing_file");
    assert_eq!(f.severity, Severity::Error);
    assert!(path.ends_with("gone.png"), "{path}");
    assert!(f.message.contains("line 6"), "{}", f.message);
    // images/1.png is listed by both manifests.
    let exact = kinds(&r, "exact_duplicate");
    assert_eq!(exact.len(), 1);
    match &exact[0].problem {
        Problem::ExactDuplicate {
            files, cross_split, ..
        } => {
            assert!(cross_split);
            let lines: Vec<(&str, Option<usize>)> =
                files.iter().map(|x| (x.split.as_str(), x.line)).collect();
            assert_eq!(lines, [("train", Some(3)), ("val", Some(3))]);
        }
        other => panic!("{other:?}"),
    }
    let unseen = kinds(&r, "unseen_concept");
    assert_eq!(unseen.len(), 1);
    assert!(
        matches!(&unseen[0].problem, Problem::UnseenConcept { concept, .. } if concept == "fish")
    );
    // cat 3, dog 2, bird 1 training images: all under 10.
    assert_eq!(kinds(&r, "few_images").len(), 3);
    assert!(kinds(&r, "unknown_concept").is_empty());
    assert_eq!(r.errors, 2);
}

#[test]
fn a_single_folder_or_manifest_is_the_split_data() {
    let dir = tempfile::tempdir().unwrap();
    for (c, n) in [("a", 12), ("b", 12)] {
        for i in 0..n {
            write(
                &dir.path().join(format!("{c}/{i}.png")),
                &encode(
                    &picture(40, 40, 8000 + i + if c == "a" { 0 } else { 100 }),
                    ImageFormat::Png,
                ),
            );
        }
    }
    let r = check(dir.path(), &CheckOptions::full()).unwrap();
    assert_eq!(r.layout, "folders");
    assert_eq!(r.splits.len(), 1);
    assert_eq!(r.splits[0].name, "data");
    // Every image is below the default 224; nothing else is wrong.
    assert_eq!(kinds(&r, "small_image").len(), 24);
    assert_eq!(r.findings.len(), 24, "{:#?}", r.findings);
    assert_eq!(r.errors, 0);
    assert_eq!(r.options.min_size, 224);
    assert_eq!(r.sizes.unwrap().width.max, 40);

    std::fs::write(
        dir.path().join("m.jsonl"),
        "{\"image\": \"a/0.png\", \"concepts\": [\"a\"]}\n",
    )
    .unwrap();
    let r = check(&dir.path().join("m.jsonl"), &opts()).unwrap();
    assert_eq!((r.layout.as_str(), r.splits[0].usable), ("manifest", 1));
}

#[test]
fn a_path_that_is_no_dataset_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.txt");
    std::fs::write(&f, "x").unwrap();
    let e = check(&f, &opts()).unwrap_err().to_string();
    assert!(e.contains("x.txt") && e.contains("not a dataset"), "{e}");
    let e = check(&dir.path().join("absent"), &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent"), "{e}");
}

/// CIFAR-10 records (label byte, then the R, G and B planes) of `pictures`.
fn cifar_records(pictures: &[(u8, RgbImage)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (label, img) in pictures {
        out.push(*label);
        for c in 0..3 {
            out.extend(img.pixels().map(|p| p.0[c]));
        }
    }
    out
}

#[test]
fn cifar10_training_and_test_batches_are_two_splits() {
    let dir = tempfile::tempdir().unwrap();
    let train: Vec<(u8, RgbImage)> = (0..12u8)
        .map(|i| (i % 10, picture(32, 32, 9000 + u64::from(i))))
        .collect();
    std::fs::write(dir.path().join("data_batch_1.bin"), cifar_records(&train)).unwrap();
    let test = [train[3].clone(), (1, picture(32, 32, 9100))];
    std::fs::write(dir.path().join("test_batch.bin"), cifar_records(&test)).unwrap();
    let r = check(dir.path(), &opts()).unwrap();
    assert_eq!(r.layout, "cifar10");
    let splits: Vec<(&str, &str, usize)> = r
        .splits
        .iter()
        .map(|s| (s.name.as_str(), s.source.as_str(), s.usable))
        .collect();
    assert_eq!(splits, [("train", "cifar10", 12), ("test", "cifar10", 2)]);
    assert_eq!(r.concepts.len(), 10);
    let exact = kinds(&r, "exact_duplicate");
    assert_eq!(exact.len(), 1, "{:#?}", r.findings);
    assert_eq!(exact[0].severity, Severity::Error);
    let Problem::ExactDuplicate {
        files, cross_split, ..
    } = &exact[0].problem
    else {
        panic!()
    };
    assert!(cross_split);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["data_batch_1.bin#3", "test_batch.bin#0"]);
    // 8 of the 10 concepts have 1 training image, 2 have 2: all are few.
    assert_eq!(kinds(&r, "few_images").len(), 10);
    assert_eq!(r.errors, 1);
}
