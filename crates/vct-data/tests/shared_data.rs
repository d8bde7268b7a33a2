//! The real datasets in ../shared/data (run by .ci/run; skipped with a message
//! when ../shared is absent).

mod common;

use std::sync::Arc;

use common::shared_data;
use vct_augment::{CenterCrop, Pipeline, Resize};
use vct_data::{find_splits, Dataset, Loader, LoaderConfig};

/// Opens `<name>/train` and `<name>/val`, checks counts, and decodes every image.
fn check(name: &str, train_n: usize, val_n: usize, concepts: usize) {
    let Some(root) = shared_data() else { return };
    let root = root.join(name);
    let (train_p, val_p) = find_splits(&root).expect("train split");
    let train = Dataset::open(&train_p).unwrap();
    let val = Dataset::open_with_concepts(&val_p.expect("val split"), &train.concepts).unwrap();
    assert_eq!((train.len(), val.len()), (train_n, val_n), "{name}");
    assert_eq!(train.concepts.len(), concepts, "{name}");
    assert!(
        train.skipped.is_empty() && val.skipped.is_empty(),
        "{:?}",
        train.skipped
    );
    // Every image decodes (grayscale and progressive JPEGs included).
    let pipeline = Arc::new(
        Pipeline::default()
            .push(Resize::shorter_side(32))
            .push(CenterCrop::new(32)),
    );
    for ds in [train, val] {
        let n = ds.len();
        let mut loader = Loader::new(
            Arc::new(ds),
            pipeline.clone(),
            LoaderConfig {
                batch_size: 64,
                shuffle: false,
                ..LoaderConfig::default()
            },
        );
        let mut seen = 0;
        for b in loader.by_ref() {
            let b = b.unwrap();
            assert_eq!(&b.images.dims()[1..], &[3, 32, 32]);
            seen += b.indices.len();
        }
        assert_eq!(seen, n, "{name}");
        assert!(loader.skipped().is_empty(), "{:?}", loader.skipped());
    }
}

#[test]
#[ignore = "reads ../shared/data; run by .ci/run"]
fn shared_data_hymenoptera() {
    check("hymenoptera_data", 244, 153, 2);
    let Some(root) = shared_data() else { return };
    let t = Dataset::open(&root.join("hymenoptera_data/train")).unwrap();
    assert_eq!(t.class_counts(), vec![123, 121]);
    assert!(t
        .items
        .iter()
        .any(|i| i.path().ends_with("ants/ant photos.jpg")));
    assert!(t
        .items
        .iter()
        .any(|i| i.path().ends_with("ants/formica.jpeg")));
}

#[test]
#[ignore = "reads ../shared/data; run by .ci/run"]
fn shared_data_imagenette() {
    check("imagenette_224_subset", 1500, 500, 10);
}

#[test]
#[ignore = "reads ../shared/data; run by .ci/run"]
fn shared_data_cifar10_subset() {
    check("cifar10_subset", 3000, 1000, 10);
}

#[test]
#[ignore = "reads ../shared/data; run by .ci/run"]
fn shared_data_coco128_multilabel() {
    let Some(root) = shared_data() else { return };
    let root = root.join("coco128_multilabel");
    let train = Dataset::open(&root.join("train.csv")).unwrap();
    let val = Dataset::open_with_concepts(&root.join("val.csv"), &train.concepts).unwrap();
    assert!(train.multi_label);
    assert_eq!((train.len(), val.len()), (96, 30));
    // classes.txt gives all 80 COCO names; 69 occur in train, 45 in val.
    assert_eq!(train.concepts.len(), 80);
    assert_eq!(train.class_counts().iter().filter(|&&c| c > 0).count(), 69);
    assert_eq!(val.class_counts().iter().filter(|&&c| c > 0).count(), 45);
    let person = train.concepts.index("person").unwrap();
    assert_eq!(train.class_counts()[person], 49);
    let labels: usize = train.items.iter().map(|i| i.labels.len()).sum();
    assert!((labels as f64 / 96.0 - 2.96).abs() < 0.01, "{labels}");
    // The root finds train.csv / val.csv.
    let (t, v) = find_splits(&root).unwrap();
    assert!(t.ends_with("train.csv") && v.unwrap().ends_with("val.csv"));
    let pipeline = Arc::new(Pipeline::default().push(Resize::square(32)));
    let n: usize = Loader::new(
        Arc::new(train),
        pipeline,
        LoaderConfig {
            batch_size: 32,
            shuffle: false,
            ..LoaderConfig::default()
        },
    )
    .map(|b| {
        let b = b.unwrap();
        assert_eq!(b.targets.dims(), &[b.indices.len(), 80]);
        b.indices.len()
    })
    .sum();
    assert_eq!(n, 96);
}
