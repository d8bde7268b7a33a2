//! RandAugment, Mixup and CutMix.

use candle_core::{Device, Tensor};
use image::{Rgb, RgbImage};
use vct_augment::{item_rng, Mixup, MixupMode, RandAugment, Transform};

fn card() -> RgbImage {
    RgbImage::from_fn(40, 30, |x, y| {
        Rgb([
            (x * 6) as u8,
            (y * 8) as u8,
            if (x / 5 + y / 5) % 2 == 0 { 200 } else { 40 },
        ])
    })
}

#[test]
fn randaugment_is_reproducible_keeps_size_and_changes_images() {
    let ra = RandAugment::new(2, 9.0, 0.5);
    let mut changed = 0;
    for i in 0..40 {
        let a = ra.apply(card(), &mut item_rng(0, 0, i)).unwrap();
        assert_eq!(a.dimensions(), (40, 30));
        assert_eq!(a, ra.apply(card(), &mut item_rng(0, 0, i)).unwrap());
        changed += usize::from(a != card());
    }
    // Each of 2 ops applies with p = 0.5: about 3/4 of images change.
    assert!((20..40).contains(&changed), "{changed}");
    // n = 0 is the identity.
    assert_eq!(
        RandAugment::new(0, 9.0, 0.5)
            .apply(card(), &mut item_rng(0, 0, 0))
            .unwrap(),
        card()
    );
    assert!(RandAugment::new(2, 11.0, 0.0)
        .apply(card(), &mut item_rng(0, 0, 0))
        .is_err());
}

fn batch(n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let images: Vec<f32> = (0..n * 3 * 8 * 8).map(|i| (i / (3 * 64)) as f32).collect();
    let mut targets = vec![0f32; n * k];
    for i in 0..n {
        targets[i * k + i % k] = 1.0;
    }
    (images, targets)
}

#[test]
fn mixup_blends_with_the_reversed_batch() {
    let m = Mixup {
        mixup_alpha: 0.4,
        cutmix_alpha: 0.0,
        prob: 1.0,
        switch_prob: 0.0,
    };
    let (mut x, mut t) = batch(4, 3);
    let mode = m
        .apply_slices(&mut x, [4, 3, 8, 8], &mut t, &mut item_rng(0, 0, 0))
        .unwrap();
    let MixupMode::Mixup { lambda } = mode else {
        panic!("{mode:?}")
    };
    assert!((0.0..=1.0).contains(&lambda));
    // Image i was filled with value i; mixed with image 3 - i.
    for i in 0..4 {
        let want = (i as f64 * lambda + (3 - i) as f64 * (1.0 - lambda)) as f32;
        assert!(x[i * 192..(i + 1) * 192]
            .iter()
            .all(|&v| (v - want).abs() < 1e-5));
        let row: f32 = t[i * 3..i * 3 + 3].iter().sum();
        assert!((row - 1.0).abs() < 1e-6);
        assert!(
            (t[i * 3 + i % 3] as f64
                - (lambda
                    + if (3 - i) % 3 == i % 3 {
                        1.0 - lambda
                    } else {
                        0.0
                    }))
            .abs()
                < 1e-6
        );
    }
}

#[test]
fn cutmix_pastes_a_box_and_weights_targets_by_its_area() {
    let m = Mixup {
        mixup_alpha: 0.0,
        cutmix_alpha: 1.0,
        prob: 1.0,
        switch_prob: 0.0,
    };
    let mut boxes = 0;
    for seed in 0..20 {
        let (mut x, mut t) = batch(2, 2);
        let mode = m
            .apply_slices(&mut x, [2, 3, 8, 8], &mut t, &mut item_rng(seed, 0, 0))
            .unwrap();
        let MixupMode::CutMix {
            lambda,
            top,
            left,
            height,
            width,
        } = mode
        else {
            panic!("{mode:?}")
        };
        assert!((lambda - (1.0 - (height * width) as f64 / 64.0)).abs() < 1e-9);
        // Image 0 got image 1's pixels (value 1) exactly inside the box.
        let pasted = x[..192].iter().filter(|&&v| v == 1.0).count();
        assert_eq!(pasted, 3 * height * width);
        for c in 0..3 {
            for y in 0..8 {
                for xx in 0..8 {
                    let inside =
                        (top..top + height).contains(&y) && (left..left + width).contains(&xx);
                    assert_eq!(x[c * 64 + y * 8 + xx], if inside { 1.0 } else { 0.0 });
                }
            }
        }
        assert!(
            (f64::from(t[0]) - lambda).abs() < 1e-6
                && (f64::from(t[1]) - (1.0 - lambda)).abs() < 1e-6
        );
        boxes += usize::from(height * width > 0);
    }
    assert!(boxes > 10);
    // Through tensors, and prob 0 leaves the batch alone.
    let (x, t) = batch(2, 2);
    let xt = Tensor::from_vec(x.clone(), (2, 3, 8, 8), &Device::Cpu).unwrap();
    let tt = Tensor::from_vec(t.clone(), (2, 2), &Device::Cpu).unwrap();
    let off = Mixup { prob: 0.0, ..m };
    let (x2, t2, mode) = off.apply(&xt, &tt, &mut item_rng(0, 0, 0)).unwrap();
    assert_eq!(mode, MixupMode::None);
    assert_eq!(x2.flatten_all().unwrap().to_vec1::<f32>().unwrap(), x);
    assert_eq!(t2.flatten_all().unwrap().to_vec1::<f32>().unwrap(), t);
}
