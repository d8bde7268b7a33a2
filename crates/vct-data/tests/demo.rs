//! The built-in demo datasets.

use vct_data::demo::{generate, generate_multilabel, DemoConfig, DEMO_CONCEPTS};
use vct_data::Dataset;

#[test]
fn demo_dataset_has_the_folder_layout_and_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let cfg = DemoConfig {
        train_per_class: 6,
        val_per_class: 2,
        ..DemoConfig::default()
    };
    let s = generate(a.path(), &cfg).unwrap();
    assert_eq!((s.train, s.val), (24, 8));
    let train = Dataset::open(a.path()).unwrap();
    assert_eq!(train.concepts.names(), DEMO_CONCEPTS);
    assert_eq!(train.class_counts(), vec![6; 4]);
    let val = Dataset::open_with_concepts(&a.path().join("val"), &train.concepts).unwrap();
    assert_eq!(val.len(), 8);
    let img = image::open(a.path().join("train/circle/0000.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(img.dimensions(), (64, 64));

    let b = tempfile::tempdir().unwrap();
    generate(b.path(), &cfg).unwrap();
    for rel in [
        "train/square/0003.png",
        "val/stripes/0001.png",
        "train/triangle/0005.png",
    ] {
        assert_eq!(
            std::fs::read(a.path().join(rel)).unwrap(),
            std::fs::read(b.path().join(rel)).unwrap()
        );
    }
    let c = tempfile::tempdir().unwrap();
    generate(c.path(), &DemoConfig { seed: 1, ..cfg }).unwrap();
    assert_ne!(
        std::fs::read(a.path().join("train/square/0003.png")).unwrap(),
        std::fs::read(c.path().join("train/square/0003.png")).unwrap()
    );
    assert!(generate(c.path(), &DemoConfig { size: 8, ..cfg }).is_err());
}

#[test]
fn demo_images_of_a_class_differ_and_classes_look_different() {
    let d = tempfile::tempdir().unwrap();
    generate(
        d.path(),
        &DemoConfig {
            train_per_class: 3,
            val_per_class: 1,
            ..DemoConfig::default()
        },
    )
    .unwrap();
    let load = |rel: &str| image::open(d.path().join(rel)).unwrap().to_rgb8();
    assert_ne!(load("train/circle/0000.png"), load("train/circle/0001.png"));
    // Stripes alternate across the whole image: many more colour changes along a
    // row or column than a single shape gives.
    let changes = |img: &image::RgbImage| {
        let mut n = 0;
        let differ = |a: [u8; 3], b: [u8; 3]| {
            a.iter()
                .zip(b)
                .map(|(&p, q)| (i32::from(p) - i32::from(q)).abs())
                .sum::<i32>()
                > 100
        };
        for y in 1..64 {
            for x in 1..64 {
                let p = img.get_pixel(x, y).0;
                n += usize::from(differ(img.get_pixel(x - 1, y).0, p))
                    + usize::from(differ(img.get_pixel(x, y - 1).0, p));
            }
        }
        n
    };
    let s = (0..3)
        .map(|i| changes(&load(&format!("train/stripes/{i:04}.png"))))
        .min()
        .unwrap();
    let c = (0..3)
        .map(|i| changes(&load(&format!("train/circle/{i:04}.png"))))
        .max()
        .unwrap();
    assert!(s > c, "stripes {s} vs circle {c}");
}

#[test]
fn multilabel_demo_writes_csv_manifests() {
    let d = tempfile::tempdir().unwrap();
    let s = generate_multilabel(
        d.path(),
        &DemoConfig {
            train_per_class: 10,
            val_per_class: 3,
            ..DemoConfig::default()
        },
    )
    .unwrap();
    assert_eq!((s.train, s.val), (40, 12));
    let train = Dataset::open(&d.path().join("train.csv")).unwrap();
    assert!(train.multi_label);
    assert_eq!(train.len(), 40);
    assert!(train.items.iter().all(|i| !i.labels.is_empty()));
    assert!(train.items.iter().any(|i| i.labels.len() >= 2));
    assert!(train.class_counts().iter().all(|&c| c > 0));
    // Dataset::open on the root finds train.csv.
    assert_eq!(Dataset::open(d.path()).unwrap().len(), 40);
    let val = Dataset::open_with_concepts(&d.path().join("val.csv"), &train.concepts).unwrap();
    assert_eq!(val.len(), 12);
}
