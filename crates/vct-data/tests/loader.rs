//! Sampling orders and the prefetching loader: determinism across thread counts,
//! epochs, lengths, balanced sampling.

use std::collections::HashMap;
use std::sync::Arc;

use vct_augment::{Mixup, Normalize, Pipeline, RandomFlip, RandomResizedCrop};
use vct_data::demo::{generate, DemoConfig};
use vct_data::{epoch_order, Dataset, Loader, LoaderConfig};

fn demo_set(dir: &std::path::Path, per_class: usize) -> Dataset {
    let cfg = DemoConfig {
        seed: 3,
        size: 32,
        train_per_class: per_class,
        val_per_class: 1,
    };
    generate(dir, &cfg).unwrap();
    Dataset::open(&dir.join("train")).unwrap()
}

fn augmenting() -> Arc<Pipeline> {
    Arc::new(
        Pipeline::default()
            .push(RandomResizedCrop::new(24, (0.3, 1.0), (0.75, 4.0 / 3.0)))
            .push(RandomFlip::new(0.5, false)),
    )
}

fn collect(ds: &Arc<Dataset>, cfg: LoaderConfig) -> Vec<(Vec<f32>, Vec<f32>, Vec<usize>)> {
    Loader::new(ds.clone(), augmenting(), cfg)
        .map(|b| {
            let b = b.unwrap();
            (
                b.images.flatten_all().unwrap().to_vec1().unwrap(),
                b.targets.flatten_all().unwrap().to_vec1().unwrap(),
                b.indices,
            )
        })
        .collect()
}

#[test]
fn one_and_four_threads_give_bit_identical_batches() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Arc::new(demo_set(dir.path(), 10));
    let cfg = LoaderConfig {
        batch_size: 7,
        seed: 11,
        epoch: 2,
        items_per_epoch: 50,
        normalize: Normalize::ImageNet,
        mixup: Some(Mixup::rsb_a1()),
        ..LoaderConfig::default()
    };
    let one = collect(&ds, LoaderConfig { threads: 1, ..cfg });
    let four = collect(
        &ds,
        LoaderConfig {
            threads: 4,
            prefetch: 1,
            ..cfg
        },
    );
    assert_eq!(one.len(), 8);
    for (a, b) in one.iter().zip(&four) {
        assert_eq!(a.2, b.2);
        assert!(a
            .0
            .iter()
            .zip(&b.0)
            .all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(a
            .1
            .iter()
            .zip(&b.1)
            .all(|(x, y)| x.to_bits() == y.to_bits()));
    }
    // Another epoch or seed changes the batches.
    let other_epoch = collect(&ds, LoaderConfig { epoch: 3, ..cfg });
    assert_ne!(one[0].0, other_epoch[0].0);
    // An item's augmentation does not depend on batch size (i.e. batch order).
    let no_mix = LoaderConfig { mixup: None, ..cfg };
    let by7 = collect(&ds, no_mix);
    let by5 = collect(
        &ds,
        LoaderConfig {
            batch_size: 5,
            ..no_mix
        },
    );
    let flat = |v: &[(Vec<f32>, Vec<f32>, Vec<usize>)]| {
        v.iter().flat_map(|b| b.0.clone()).collect::<Vec<f32>>()
    };
    assert_eq!(flat(&by7), flat(&by5));
}

#[test]
fn lengths_targets_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Arc::new(demo_set(dir.path(), 5));
    let cfg = LoaderConfig {
        batch_size: 6,
        shuffle: false,
        ..LoaderConfig::default()
    };
    let mut loader = Loader::new(ds.clone(), augmenting(), cfg);
    assert_eq!(loader.len(), 4); // 20 images in 6 + 6 + 6 + 2
    assert_eq!(loader.progress().items_total, 20);
    let first = loader.next().unwrap().unwrap();
    assert_eq!(first.images.dims(), &[6, 3, 24, 24]);
    assert_eq!(first.targets.dims(), &[6, 4]);
    assert_eq!(first.indices, vec![0, 1, 2, 3, 4, 5]);
    let t: Vec<Vec<f32>> = first.targets.to_vec2().unwrap();
    for (row, labels) in t.iter().zip(&first.labels) {
        assert_eq!(labels.len(), 1);
        assert_eq!(row.iter().sum::<f32>(), 1.0);
        assert_eq!(row[labels[0]], 1.0);
    }
    assert_eq!(loader.progress().batches_done, 1);
    let rest: Vec<_> = loader.by_ref().map(|b| b.unwrap().indices.len()).collect();
    assert_eq!(rest, vec![6, 6, 2]);
    assert_eq!(loader.progress().items_done, 20);

    let dropped = Loader::new(
        ds.clone(),
        augmenting(),
        LoaderConfig {
            drop_last: true,
            ..cfg
        },
    );
    assert_eq!(dropped.len(), 3);
    assert_eq!(dropped.count(), 3);
    // Stopping early does not hang.
    let mut early = Loader::new(
        ds.clone(),
        augmenting(),
        LoaderConfig {
            items_per_epoch: 10_000,
            prefetch: 1,
            ..cfg
        },
    );
    assert!(early.next().is_some());
    drop(early);
    let bad = Loader::new(
        ds,
        augmenting(),
        LoaderConfig {
            batch_size: 0,
            ..cfg
        },
    )
    .next()
    .unwrap();
    assert!(bad.unwrap_err().to_string().contains("batch size"));
}

#[test]
fn epoch_orders_shuffle_cycle_and_balance() {
    let dir = tempfile::tempdir().unwrap();
    let ds = demo_set(dir.path(), 5); // 20 items, 5 per concept
    let plain = epoch_order(&ds, 0, 1, 0, false, false);
    assert_eq!(
        plain.iter().map(|p| p.0).collect::<Vec<_>>(),
        (0..20).collect::<Vec<_>>()
    );
    let a = epoch_order(&ds, 0, 1, 0, true, false);
    assert_eq!(a, epoch_order(&ds, 0, 1, 0, true, false));
    assert_ne!(a, epoch_order(&ds, 0, 1, 1, true, false));
    let mut sorted: Vec<usize> = a.iter().map(|p| p.0).collect();
    sorted.sort();
    assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    // Fewer than the dataset: distinct items.
    let few = epoch_order(&ds, 7, 1, 0, true, false);
    assert_eq!(few.len(), 7);
    assert_eq!(
        few.iter()
            .map(|p| p.0)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        7
    );
    // More: whole passes, each a fresh permutation, keys distinct.
    let many = epoch_order(&ds, 50, 1, 0, true, false);
    let mut seen: HashMap<usize, usize> = HashMap::new();
    for p in &many {
        *seen.entry(p.0).or_default() += 1;
    }
    assert!(seen.values().all(|&c| c == 2 || c == 3));
    assert_ne!(
        many[..20].iter().map(|p| p.0).collect::<Vec<_>>(),
        many[20..40].iter().map(|p| p.0).collect::<Vec<_>>()
    );
    assert_eq!(
        many.iter()
            .map(|p| p.1)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        50
    );
    // Balanced: concepts drawn about equally even when the data is not balanced.
    let dir2 = tempfile::tempdir().unwrap();
    generate(
        dir2.path(),
        &DemoConfig {
            seed: 0,
            size: 16,
            train_per_class: 2,
            val_per_class: 1,
        },
    )
    .unwrap();
    for i in 0..30 {
        std::fs::copy(
            dir2.path().join("train/circle/0000.png"),
            dir2.path().join(format!("train/circle/x{i}.png")),
        )
        .unwrap();
    }
    let skewed = Dataset::open(&dir2.path().join("train")).unwrap();
    assert_eq!(skewed.class_counts(), vec![32, 2, 2, 2]);
    let bal = epoch_order(&skewed, 4000, 5, 0, true, true);
    let mut per = [0usize; 4];
    for p in &bal {
        per[skewed.items[p.0].labels[0]] += 1;
    }
    assert!(per.iter().all(|&c| (850..1150).contains(&c)), "{per:?}");
}

/// The loader's fused path (`Pipeline::load_into` into batch slots) gives, batch
/// for batch, what decode → `Pipeline::apply` → `write_chw` gives for each item
/// with its rng, on real photos; a truncated file is skipped and the slots
/// after it close up.
#[test]
fn fused_batches_equal_decode_apply_write_chw_on_photos() {
    use vct_augment::{decode_file, item_rng, write_chw, DecodeOptions, RandomCrop, Resize};
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vct-augment/tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    for (concept, files) in [
        ("a", ["photos/ants_500x333.jpg", "photos/ants_375x500.jpg"]),
        ("b", ["photos/gray_512x640.jpg", "progressive.jpg"]),
    ] {
        std::fs::create_dir(dir.path().join(concept)).unwrap();
        for f in files {
            let name = f.rsplit('/').next().unwrap();
            std::fs::copy(fixtures.join(f), dir.path().join(concept).join(name)).unwrap();
        }
    }
    // Header intact (the scan keeps it), scan data cut: fails at decode time.
    let jpeg = std::fs::read(fixtures.join("photos/ants_500x333.jpg")).unwrap();
    std::fs::write(dir.path().join("a/cut.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    let ds = Arc::new(Dataset::open(dir.path()).unwrap());
    assert_eq!(ds.len(), 5);
    let pipeline = Arc::new(
        Pipeline::default()
            .push(Resize::shorter_side(160))
            .push(RandomCrop::new(128))
            .push(RandomFlip::new(0.5, false)),
    );
    assert_eq!(pipeline.output_size(), Some((128, 128)));
    let per = 3 * 128 * 128;
    for epoch in 0..3 {
        let cfg = LoaderConfig {
            batch_size: 3,
            seed: 5,
            epoch,
            items_per_epoch: 9,
            threads: 2,
            ..LoaderConfig::default()
        };
        let order = epoch_order(&ds, 9, 5, epoch, true, false);
        let mut seen = 0;
        let mut skipped = 0;
        for (b, batch) in Loader::new(ds.clone(), pipeline.clone(), cfg).enumerate() {
            let batch = batch.unwrap();
            let got: Vec<f32> = batch.images.flatten_all().unwrap().to_vec1().unwrap();
            let chunk = &order[b * 3..(b * 3 + 3).min(order.len())];
            let good: Vec<_> = chunk
                .iter()
                .filter(|(idx, _)| !ds.items[*idx].path().ends_with("cut.jpg"))
                .collect();
            assert_eq!(batch.skipped.len(), chunk.len() - good.len());
            skipped += batch.skipped.len();
            assert_eq!(
                batch.indices,
                good.iter().map(|(i, _)| *i).collect::<Vec<_>>()
            );
            for (slot, &&(idx, key)) in good.iter().enumerate() {
                let img = decode_file(ds.items[idx].path(), &DecodeOptions::default()).unwrap();
                let img = pipeline.apply(img, &mut item_rng(5, epoch, key)).unwrap();
                let mut want = vec![0f32; per];
                write_chw(&img, Normalize::ImageNet, &mut want).unwrap();
                assert!(
                    got[slot * per..(slot + 1) * per] == want[..],
                    "epoch {epoch}, batch {b}, slot {slot}"
                );
            }
            seen += good.len();
        }
        assert_eq!(seen + skipped, 9);
        assert!(skipped > 0, "the cut file was never drawn");
    }
}
