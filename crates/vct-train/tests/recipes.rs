//! What the recipes give the data side: the RSB-A1 pipelines resize bicubically
//! (the Clarifai ones bilinearly), softmax templates refuse rows of several
//! concepts, and run records written before these settings still load.

use std::path::Path;

use vct_augment::{
    item_rng, CenterCrop, Filter, Pipeline, RandomResizedCrop, Resize, RgbImage, Transform,
};
use vct_data::Dataset;
use vct_hparams::{HyperParams, Template};
use vct_train::data::{check_labels, eval_pipeline, train_pipeline};
use vct_train::loss::{Output, Reduction};
use vct_train::recipe::Recipe;
use vct_train::run::{DataSummary, RunRecord};
use vct_train::TrainError;

/// Hard edges and noise, where bicubic and bilinear differ visibly.
fn card(w: u32, h: u32) -> RgbImage {
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let edge = if (x / 7 + y / 5) % 2 == 0 { 250 } else { 5 };
            px.extend([edge, ((x * 31 + y * 17) % 256) as u8, (x * 255 / w) as u8]);
        }
    }
    RgbImage::from_raw(w, h, px).unwrap()
}

fn random_init() -> vct_train::config::InitConfig {
    vct_train::config::InitConfig {
        random_init: true,
        ..Default::default()
    }
}

fn rsb(extra: &[&str]) -> Recipe {
    let mut hp = HyperParams::defaults(Template::RsbA1);
    for s in extra {
        hp = hp.with_override(s).unwrap();
    }
    Recipe::new(&hp, 3, 0, &random_init()).unwrap()
}

#[test]
fn rsb_a1_pipelines_resize_bicubic_and_clarifai_bilinear() {
    let img = card(300, 260);
    let recipe = rsb(&[]);
    let p = &recipe.preprocess;
    // Evaluation: mmpretrain's ResizeEdge(236, bicubic) + CenterCrop(224).
    let by_hand = |filter| {
        Pipeline::default()
            .push(Resize::shorter_side(236).with_filter(filter))
            .push(CenterCrop::new(224))
            .apply(img.clone(), &mut item_rng(0, 0, 0))
            .unwrap()
    };
    let got = eval_pipeline(p)
        .apply(img.clone(), &mut item_rng(0, 0, 0))
        .unwrap();
    assert_eq!(got, by_hand(Filter::Bicubic));
    assert_ne!(got, by_hand(Filter::Bilinear));
    // Training: RandomResizedCrop(224, bicubic); no flip, so the pipeline is the crop.
    let recipe = rsb(&["flip_probability=0"]);
    let crop = |filter| {
        RandomResizedCrop::new(224, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0))
            .with_filter(filter)
            .apply(img.clone(), &mut item_rng(4, 1, 2))
            .unwrap()
    };
    let got = train_pipeline(&recipe.preprocess, None)
        .apply(img.clone(), &mut item_rng(4, 1, 2))
        .unwrap();
    assert_eq!(got, crop(Filter::Bicubic));
    assert_ne!(got, crop(Filter::Bilinear));
    // A Clarifai template: shorter side to image_size, bilinear.
    let hp = HyperParams::defaults(Template::ResNext)
        .with_override("image_size=64")
        .unwrap();
    let clarifai = Recipe::new(&hp, 3, 0, &random_init()).unwrap();
    let got = eval_pipeline(&clarifai.preprocess)
        .apply(img.clone(), &mut item_rng(0, 0, 0))
        .unwrap();
    let want = Pipeline::default()
        .push(Resize::shorter_side(64))
        .push(CenterCrop::new(64))
        .apply(img, &mut item_rng(0, 0, 0))
        .unwrap();
    assert_eq!(got, want);
}

fn write_png(path: &Path, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut img = card(8, 8);
    img.iter_mut().for_each(|v| *v = v.wrapping_add(seed));
    img.save(path).unwrap();
}

#[test]
fn softmax_templates_refuse_rows_of_several_concepts_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        write_png(&dir.path().join(format!("img/{n}.png")), i as u8);
    }
    let single = dir.path().join("single.csv");
    std::fs::write(&single, "image,labels\nimg/a.png,cat\nimg/b.png,dog\n").unwrap();
    let multi = dir.path().join("multi.csv");
    std::fs::write(
        &multi,
        "image,labels\nimg/a.png,cat\nimg/b.png,dog\nimg/c.png,cat dog\n",
    )
    .unwrap();
    let single = Dataset::open(&single).unwrap();
    let multi = Dataset::open(&multi).unwrap();
    assert!(!single.multi_label && multi.multi_label);

    let softmax = HyperParams::defaults(Template::ResNext)
        .with_override("logreg=0")
        .unwrap();
    check_labels(&softmax, &single, None).unwrap();
    let err = check_labels(&softmax, &multi, None).unwrap_err();
    assert!(matches!(err, TrainError::NotSingleLabel { .. }));
    let text = err.to_string();
    assert!(
        text.contains("multi.csv:4: image ")
            && text.contains("c.png has 2 concepts (cat, dog)")
            && text.contains("Clarifai_ResNext with logreg = 0 trains a softmax")
            && text.contains("set logreg = 1"),
        "{text}"
    );
    // The validation set is checked too.
    let err = check_labels(&softmax, &single, Some(&multi)).unwrap_err();
    assert!(err.to_string().contains("multi.csv:4"), "{err}");
    // RSB-A1 names its own key.
    let exclusive = HyperParams::defaults(Template::RsbA1)
        .with_override("concepts_mutually_exclusive=true")
        .unwrap();
    let text = check_labels(&exclusive, &multi, None)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("concepts_mutually_exclusive = true"),
        "{text}"
    );
    // Sigmoid templates take either.
    let sigmoid = HyperParams::defaults(Template::ResNext);
    check_labels(&sigmoid, &multi, Some(&single)).unwrap();
}

#[test]
fn run_records_written_before_the_loss_and_filter_settings_load() {
    let recipe = rsb(&[]);
    // What vct 0.1's first layout wrote: hyperparameters and seed at the top level, no
    // loss settings, no resize filter.
    let mut preprocess = serde_json::to_value(&recipe.preprocess).unwrap();
    preprocess.as_object_mut().unwrap().remove("filter");
    let legacy = serde_json::json!({
        "vct_version": "0.1.0",
        "hparams": recipe.hparams,
        "concepts": ["a", "b", "c"],
        "seed": 1,
        "arch": "resnet50",
        "output": "Sigmoid",
        "preprocess": preprocess,
        "flip_average_eval": false,
        "init": "random (seed 1)",
        "data": DataSummary::default(),
        "stop_reason": null,
        "best": null,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.json");
    std::fs::write(&path, legacy.to_string()).unwrap();
    let old = RunRecord::read(&path).unwrap();
    // It was trained with what these defaults say.
    assert_eq!(old.loss().label_smoothing, 0.0);
    assert_eq!(old.loss().reduction, Reduction::MeanOverElements);
    assert_eq!(old.loss().output, Output::Sigmoid);
    assert_eq!(old.preprocess.filter, Filter::Bilinear);
    assert_eq!(
        (old.config.seed, old.config.hparams.template()),
        (1, Template::RsbA1)
    );
    // The current layout records the recipe's loss and filter.
    let json = serde_json::to_value(RunRecord {
        loss: recipe.loss,
        preprocess: recipe.preprocess.clone(),
        ..old
    })
    .unwrap();
    assert_eq!(json["loss"]["label_smoothing"], 0.1);
    assert_eq!(json["loss"]["reduction"], "SumOverBatch");
    assert_eq!(json["preprocess"]["filter"], "bicubic");
}
