//! A self-contained HTML evaluation report of an image classifier: one file with its
//! CSS, JavaScript, SVG charts and JPEG thumbnails inline, so it opens from disk, by
//! mail or on a machine without network.
//!
//! The report shows the run's settings, hyperparameters and data; the training loss,
//! accuracy and learning-rate curves; per-concept precision, recall, F1, ROC AUC,
//! average precision and support; the confusion matrix as a heat map drawn on a canvas
//! (any number of concepts, reorderable); per-concept precision-recall and ROC curves;
//! a reliability diagram; the most confidently wrong images; and, for multi-label
//! data, the per-concept thresholds that maximise F1.
//!
//! Every number comes from `vct-metrics`: the caller passes the [`EvalMetrics`] it
//! wrote to `metrics.json`, and the per-image results the curves, calibration and
//! top losses are computed from. The input is plain data ([`ReportInput`]); this crate
//! knows nothing about training.
//!
//! ```
//! use vct_metrics::{Labels, MetricsAccumulator};
//! use vct_report::{render, Evaluation, ImageRecord, ReportInput, ReportOptions};
//!
//! let concepts = vec!["cat".to_string(), "dog".to_string()];
//! let images = vec![
//!     ImageRecord { path: "val/cat/1.jpg".into(), labels: vec![0], probabilities: vec![0.8, 0.2] },
//!     ImageRecord { path: "val/dog/1.jpg".into(), labels: vec![1], probabilities: vec![0.6, 0.4] },
//! ];
//! let mut acc = MetricsAccumulator::new(concepts, false);
//! acc.add(&[0.8, 0.2, 0.6, 0.4], Labels::Single(&[0, 1])).unwrap();
//! let input = ReportInput {
//!     title: "my run".into(),
//!     evaluation: Some(Evaluation { name: "validation".into(), metrics: acc.finish(), images }),
//!     ..ReportInput::default()
//! };
//! let html = render(&input, &ReportOptions::default()).unwrap();
//! assert!(html.contains("id=\"confusion\"") && html.contains("val/dog/1.jpg"));
//! ```

#![warn(missing_docs)]

mod html;
mod svg;
mod thumb;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vct_metrics::{ConfidentError, EvalMetrics, Labels, MetricsAccumulator};

pub use thumb::thumbnail_data_uri;

/// Everything a report shows. Empty parts are left out of the page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportInput {
    /// The page title (e.g. the run folder).
    pub title: String,
    /// A line under the title (e.g. template, architecture, vct version).
    pub subtitle: String,
    /// Run settings as (name, value) rows.
    pub run: Vec<(String, String)>,
    /// Hyperparameters as (key, value) rows.
    pub hyperparameters: Vec<(String, String)>,
    /// The data summary as (name, value) rows.
    pub data: Vec<(String, String)>,
    /// One row per training epoch.
    pub epochs: Vec<EpochRow>,
    /// One row per training step.
    pub steps: Vec<StepRow>,
    /// The evaluation of the model; `None` for a run without validation data.
    pub evaluation: Option<Evaluation>,
}

/// One epoch of training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: Option<f64>,
    /// Validation top-1 accuracy.
    pub val_top1: Option<f64>,
    /// Validation mean average precision.
    pub val_map: Option<f64>,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
}

/// One training step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// 1-based epoch the step belongs to.
    pub epoch: usize,
    /// Global step number.
    pub step: usize,
    /// The step's loss, when it was read.
    pub loss: Option<f64>,
    /// The step's learning rate.
    pub lr: f64,
}

/// An evaluation: its metrics and every image's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// What was evaluated (e.g. "validation set: data/val").
    pub name: String,
    /// The metrics (those of `metrics.json`).
    pub metrics: EvalMetrics,
    /// One record per image, in evaluation order.
    pub images: Vec<ImageRecord>,
}

/// One evaluated image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image file (a thumbnail is read from it).
    pub path: PathBuf,
    /// Its true concept indices.
    pub labels: Vec<usize>,
    /// Every concept's probability, in concept order.
    pub probabilities: Vec<f32>,
}

/// Settings of the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportOptions {
    /// How many of the most confidently wrong images to show.
    pub top_losses: usize,
    /// The longer side of a thumbnail, in pixels.
    pub thumbnail_size: u32,
    /// JPEG quality of the thumbnails (1-100).
    pub thumbnail_quality: u8,
    /// At most this many points per PR or ROC curve (evenly thinned, ends kept).
    pub curve_points: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            top_losses: 24,
            thumbnail_size: 112,
            thumbnail_quality: 80,
            curve_points: 200,
        }
    }
}

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// An image's record does not fit the metrics' concepts.
    #[error("image {path}: {what}")]
    BadImage {
        /// The image.
        path: PathBuf,
        /// What is wrong, with the expected value.
        what: String,
    },
    /// The data embedded for the page's script could not be serialised.
    #[error("serialising the report data: {0}")]
    Json(#[from] serde_json::Error),
}

/// What the page derives from the per-image results (with vct-metrics).
#[derive(Debug)]
pub(crate) struct Derived {
    pub curves: Vec<vct_metrics::ConceptCurves>,
    pub errors: Vec<ConfidentError>,
}

/// Recomputes, from the images, what metrics.json does not hold: the curves and
/// the most confidently wrong images.
fn derive(e: &Evaluation, opts: &ReportOptions) -> Result<Derived, ReportError> {
    let concepts: Vec<String> = e
        .metrics
        .per_concept
        .iter()
        .map(|c| c.concept.clone())
        .collect();
    let c = concepts.len();
    let mut acc = MetricsAccumulator::new(concepts, e.metrics.multi_label);
    for img in &e.images {
        let bad = |what: String| ReportError::BadImage {
            path: img.path.clone(),
            what,
        };
        if img.probabilities.len() != c {
            return Err(bad(format!(
                "{} probabilities, expected one per concept ({c})",
                img.probabilities.len()
            )));
        }
        if let Some(&l) = img.labels.iter().find(|&&l| l >= c) {
            return Err(bad(format!("label {l}, expected below {c} concepts")));
        }
        if e.metrics.multi_label {
            let mut hot = vec![0f32; c];
            for &l in &img.labels {
                hot[l] = 1.0;
            }
            acc.add(&img.probabilities, Labels::MultiHot(&hot))
        } else {
            if img.labels.len() != 1 {
                return Err(bad(format!(
                    "{} true concepts, expected exactly one for single-label metrics",
                    img.labels.len()
                )));
            }
            acc.add(&img.probabilities, Labels::Single(&img.labels))
        }
        .map_err(|err| bad(err.to_string()))?;
    }
    Ok(Derived {
        curves: acc.curves(),
        errors: acc.confident_errors(opts.top_losses),
    })
}

/// Renders the report as one HTML document.
pub fn render(input: &ReportInput, opts: &ReportOptions) -> Result<String, ReportError> {
    let derived = input
        .evaluation
        .as_ref()
        .map(|e| derive(e, opts))
        .transpose()?;
    html::page(input, derived.as_ref(), opts)
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
