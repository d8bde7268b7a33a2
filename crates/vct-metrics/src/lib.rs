//! Classification metrics on plain slices, following scikit-learn's definitions:
//! top-k accuracy, per-concept precision / recall / F1, ROC AUC (ties averaged),
//! average precision (step-wise, no interpolation), macro averages, mean average
//! precision and confusion matrices. No tensor library needed.
//!
//! Feed scores batch by batch into a [`MetricsAccumulator`], then call
//! [`MetricsAccumulator::finish`].

use serde::{Deserialize, Serialize};

/// The true labels of one batch.
#[derive(Debug, Clone, Copy)]
pub enum Labels<'a> {
    /// One concept index per image (single-label data).
    Single(&'a [usize]),
    /// A multi-hot row of `concepts` values per image (multi-label data).
    MultiHot(&'a [f32]),
}

/// Per-concept scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptMetrics {
    /// Concept name.
    pub concept: String,
    /// Images that truly have the concept.
    pub support: u64,
    /// TP / (TP + FP); 0 when nothing was predicted positive (as scikit-learn).
    pub precision: f64,
    /// TP / (TP + FN); 0 when the concept never occurs.
    pub recall: f64,
    /// Harmonic mean of precision and recall; 0 when both are 0.
    pub f1: f64,
    /// Area under the ROC curve, one-vs-rest; `None` when only one class occurs.
    pub roc_auc: Option<f64>,
    /// Average precision; `None` when the concept never occurs.
    pub average_precision: Option<f64>,
    /// Multi-label data: the threshold that maximises this concept's F1 (`None` for
    /// single-label data, which predicts by argmax, and for concepts that never occur).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_f1: Option<F1Threshold>,
}

/// Everything measured on one evaluation pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Number of images.
    pub count: u64,
    /// Mean loss per image, when the caller supplied losses.
    pub loss: Option<f64>,
    /// Fraction of images whose top-scoring concept is a true concept.
    pub top1: f64,
    /// Same within the five top-scoring concepts (`None` with fewer than 6 concepts).
    pub top5: Option<f64>,
    /// Per-concept scores, in concept-index order.
    pub per_concept: Vec<ConceptMetrics>,
    /// Unweighted mean of per-concept precision.
    pub macro_precision: f64,
    /// Unweighted mean of per-concept recall.
    pub macro_recall: f64,
    /// Unweighted mean of per-concept F1.
    pub macro_f1: f64,
    /// Mean ROC AUC over concepts where it is defined.
    pub macro_roc_auc: Option<f64>,
    /// Mean average precision over concepts that occur.
    pub mean_average_precision: Option<f64>,
    /// Single-label: `confusion[true][predicted]` counts. Multi-label: per concept
    /// `[tn, fp, fn, tp]` (scikit-learn's multilabel confusion matrix, flattened).
    pub confusion: Vec<Vec<u64>>,
    /// Whether the data was multi-label (threshold 0.5 per concept) or single-label (argmax).
    pub multi_label: bool,
    /// How well the probabilities match the frequencies ([`calibration`] with
    /// [`CALIBRATION_BINS`] bins): single-label data bins each image's top-1 probability
    /// against whether it was right; multi-label data bins every (image, concept)
    /// probability against the truth. `None` without images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// Bins of the calibration [`EvalMetrics`] reports.
pub const CALIBRATION_BINS: usize = 10;

/// The point of a precision-recall curve at one threshold (predicted positive:
/// score ≥ threshold).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrPoint {
    /// The score threshold.
    pub threshold: f32,
    /// TP / (TP + FP) at the threshold.
    pub precision: f64,
    /// TP / (TP + FN) at the threshold.
    pub recall: f64,
}

/// The point of a ROC curve at one threshold (predicted positive: score ≥ threshold).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// The score threshold (`+∞` for the first point, where nothing is positive).
    pub threshold: f32,
    /// False-positive rate FP / (FP + TN).
    pub fpr: f64,
    /// True-positive rate TP / (TP + FN).
    pub tpr: f64,
}

/// The threshold with the highest F1 (predicted positive: score ≥ threshold).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct F1Threshold {
    /// The score threshold.
    pub threshold: f32,
    /// Precision there.
    pub precision: f64,
    /// Recall there.
    pub recall: f64,
    /// F1 there.
    pub f1: f64,
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lower edge (exclusive, except for the first bin).
    pub lower: f64,
    /// Upper edge (inclusive).
    pub upper: f64,
    /// Probabilities in the bin.
    pub count: u64,
    /// Their mean.
    pub mean_probability: f64,
    /// The fraction of them whose outcome was positive.
    pub fraction_positive: f64,
}

/// A reliability diagram: the non-empty bins, and the expected calibration error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The non-empty bins, lowest first (scikit-learn's `calibration_curve`, uniform
    /// strategy).
    pub bins: Vec<CalibrationBin>,
    /// Σ (count / total) · |fraction positive − mean probability| over the bins.
    pub expected_calibration_error: f64,
}

/// A concept's curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptCurves {
    /// Concept name.
    pub concept: String,
    /// Precision-recall curve ([`pr_curve`]); `None` when the concept never occurs.
    pub pr: Option<Vec<PrPoint>>,
    /// ROC curve ([`roc_curve`]); `None` unless both classes occur.
    pub roc: Option<Vec<RocPoint>>,
}

/// An image whose prediction was wrong, and how sure the model was of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfidentError {
    /// The image's index, in the order the images were added.
    pub index: usize,
    /// Its true concepts.
    pub truth: Vec<usize>,
    /// The predicted concepts: the argmax (single-label) or every concept with P > 0.5.
    pub predicted: Vec<usize>,
    /// How confidently wrong: the probability of the wrong top-1 concept
    /// (single-label), or the largest |P − truth| over the wrongly decided concepts
    /// (multi-label).
    pub confidence: f64,
}

/// Collects scores and labels over batches.
#[derive(Debug, Clone)]
pub struct MetricsAccumulator {
    concepts: Vec<String>,
    multi_label: bool,
    scores: Vec<f32>,
    truth: Vec<bool>,
    single: Vec<usize>,
    loss_sum: f64,
    loss_count: u64,
}

/// Why a batch could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError(pub String);

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShapeError {}

impl MetricsAccumulator {
    /// An empty accumulator for `concepts`; `multi_label` picks thresholding
    /// (P > 0.5 per concept) instead of argmax.
    pub fn new(concepts: Vec<String>, multi_label: bool) -> Self {
        MetricsAccumulator {
            concepts,
            multi_label,
            scores: Vec::new(),
            truth: Vec::new(),
            single: Vec::new(),
            loss_sum: 0.0,
            loss_count: 0,
        }
    }

    /// Adds a batch: `scores` are probabilities, row-major `[batch, concepts]`.
    pub fn add(&mut self, scores: &[f32], labels: Labels<'_>) -> Result<(), ShapeError> {
        let c = self.concepts.len();
        if c == 0 || !scores.len().is_multiple_of(c) {
            return Err(ShapeError(format!(
                "scores have {} values, not a multiple of {c} concepts",
                scores.len()
            )));
        }
        let n = scores.len() / c;
        match labels {
            Labels::Single(targets) => {
                if targets.len() != n {
                    return Err(ShapeError(format!(
                        "{} labels for {n} score rows",
                        targets.len()
                    )));
                }
                if let Some(&bad) = targets.iter().find(|&&t| t >= c) {
                    return Err(ShapeError(format!(
                        "label {bad} out of range for {c} concepts"
                    )));
                }
                for &t in targets {
                    self.truth.extend((0..c).map(|j| j == t));
                    self.single.push(t);
                }
            }
            Labels::MultiHot(hot) => {
                if hot.len() != scores.len() {
                    return Err(ShapeError(format!(
                        "{} multi-hot values for {} scores",
                        hot.len(),
                        scores.len()
                    )));
                }
                self.truth.extend(hot.iter().map(|&v| v > 0.5));
            }
        }
        self.scores.extend_from_slice(scores);
        Ok(())
    }

    /// Adds the summed loss of `count` images.
    pub fn add_loss(&mut self, loss_sum: f64, count: u64) {
        self.loss_sum += loss_sum;
        self.loss_count += count;
    }

    /// Number of images added so far.
    pub fn len(&self) -> usize {
        self.scores.len() / self.concepts.len().max(1)
    }

    /// True before any batch was added.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Computes every metric.
    pub fn finish(&self) -> EvalMetrics {
        let c = self.concepts.len();
        let n = self.len();
        let row = |i: usize| &self.scores[i * c..(i + 1) * c];
        let truth = |i: usize, j: usize| self.truth[i * c + j];

        let mut top1_hits = 0u64;
        let mut top5_hits = 0u64;
        for i in 0..n {
            let order = ranking(row(i));
            if truth(i, order[0]) {
                top1_hits += 1;
            }
            if order.iter().take(5).any(|&j| truth(i, j)) {
                top5_hits += 1;
            }
        }

        // Predictions: argmax (single-label) or P > 0.5 (multi-label).
        let predicted = |i: usize, j: usize| {
            if self.multi_label {
                row(i)[j] > 0.5
            } else {
                ranking(row(i))[0] == j
            }
        };
        let mut confusion = Vec::new();
        if !self.multi_label {
            confusion = vec![vec![0u64; c]; c];
            for i in 0..n {
                confusion[self.single[i]][ranking(row(i))[0]] += 1;
            }
        }
        let mut per_concept = Vec::with_capacity(c);
        for j in 0..c {
            let (mut tp, mut fp, mut fneg, mut tn) = (0u64, 0u64, 0u64, 0u64);
            for i in 0..n {
                match (truth(i, j), predicted(i, j)) {
                    (true, true) => tp += 1,
                    (false, true) => fp += 1,
                    (true, false) => fneg += 1,
                    (false, false) => tn += 1,
                }
            }
            if self.multi_label {
                confusion.push(vec![tn, fp, fneg, tp]);
            }
            let precision = ratio(tp, tp + fp);
            let recall = ratio(tp, tp + fneg);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            let column: Vec<f32> = (0..n).map(|i| row(i)[j]).collect();
            let labels: Vec<bool> = (0..n).map(|i| truth(i, j)).collect();
            per_concept.push(ConceptMetrics {
                concept: self.concepts[j].clone(),
                support: tp + fneg,
                precision,
                recall,
                f1,
                roc_auc: roc_auc(&column, &labels),
                average_precision: average_precision(&column, &labels),
                best_f1: if self.multi_label {
                    best_f1_threshold(&column, &labels)
                } else {
                    None
                },
            });
        }
        let mean = |f: &dyn Fn(&ConceptMetrics) -> f64| {
            if c == 0 {
                0.0
            } else {
                per_concept.iter().map(f).sum::<f64>() / c as f64
            }
        };
        EvalMetrics {
            count: n as u64,
            loss: (self.loss_count > 0).then(|| self.loss_sum / self.loss_count as f64),
            top1: ratio(top1_hits, n as u64),
            top5: (c > 5).then(|| ratio(top5_hits, n as u64)),
            macro_precision: mean(&|m| m.precision),
            macro_recall: mean(&|m| m.recall),
            macro_f1: mean(&|m| m.f1),
            macro_roc_auc: mean_defined(per_concept.iter().map(|m| m.roc_auc)),
            mean_average_precision: mean_defined(per_concept.iter().map(|m| m.average_precision)),
            per_concept,
            confusion,
            multi_label: self.multi_label,
            calibration: (n > 0).then(|| {
                let (probs, outcomes) = self.calibration_pairs();
                calibration(&probs, &outcomes, CALIBRATION_BINS)
            }),
        }
    }

    /// The (probability, outcome) pairs the calibration bins: each image's top-1
    /// probability and whether it was right (single-label), or every probability and
    /// its truth (multi-label).
    fn calibration_pairs(&self) -> (Vec<f32>, Vec<bool>) {
        let c = self.concepts.len();
        if self.multi_label {
            return (self.scores.clone(), self.truth.clone());
        }
        (0..self.len())
            .map(|i| {
                let row = &self.scores[i * c..(i + 1) * c];
                let top = ranking(row)[0];
                (row[top], top == self.single[i])
            })
            .unzip()
    }

    /// Per concept, one-vs-rest, the precision-recall and ROC curves.
    pub fn curves(&self) -> Vec<ConceptCurves> {
        let c = self.concepts.len();
        let n = self.len();
        (0..c)
            .map(|j| {
                let column: Vec<f32> = (0..n).map(|i| self.scores[i * c + j]).collect();
                let labels: Vec<bool> = (0..n).map(|i| self.truth[i * c + j]).collect();
                ConceptCurves {
                    concept: self.concepts[j].clone(),
                    pr: pr_curve(&column, &labels),
                    roc: roc_curve(&column, &labels),
                }
            })
            .collect()
    }

    /// The wrongly predicted images, most confident first (ties: the earlier image
    /// first), at most `limit` of them. See [`ConfidentError::confidence`].
    pub fn confident_errors(&self, limit: usize) -> Vec<ConfidentError> {
        let c = self.concepts.len();
        let mut errors = Vec::new();
        for i in 0..self.len() {
            let row = &self.scores[i * c..(i + 1) * c];
            let truth_row = &self.truth[i * c..(i + 1) * c];
            let truth: Vec<usize> = (0..c).filter(|&j| truth_row[j]).collect();
            if self.multi_label {
                let predicted: Vec<usize> = (0..c).filter(|&j| row[j] > 0.5).collect();
                let worst = (0..c)
                    .filter(|&j| (row[j] > 0.5) != truth_row[j])
                    .map(|j| (row[j] as f64 - if truth_row[j] { 1.0 } else { 0.0 }).abs())
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
                if let Some(confidence) = worst {
                    errors.push(ConfidentError {
                        index: i,
                        truth,
                        predicted,
                        confidence,
                    });
                }
            } else {
                let top = ranking(row)[0];
                if top != self.single[i] {
                    errors.push(ConfidentError {
                        index: i,
                        truth,
                        predicted: vec![top],
                        confidence: row[top] as f64,
                    });
                }
            }
        }
        errors.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(a.index.cmp(&b.index))
        });
        errors.truncate(limit);
        errors
    }
}

/// Concept indices by descending score; ties keep the lower index first.
fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn mean_defined(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let defined: Vec<f64> = values.flatten().collect();
    (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
}

/// ROC AUC as the Mann–Whitney statistic with tied scores given their mean rank
/// (equal to scikit-learn's `roc_auc_score`). `None` unless both classes occur.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let mean_rank = (i + j + 2) as f64 / 2.0;
        rank_sum_pos += mean_rank * order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let n_pos = n_pos as f64;
    Some((rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg as f64))
}

/// `(threshold, tp, fp)` at each distinct score, highest first: the counts of
/// positives and negatives scored at or above it (scikit-learn's `_binary_clf_curve`).
fn threshold_counts(scores: &[f32], labels: &[bool]) -> Vec<(f32, usize, usize)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut out = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let threshold = scores[order[i]];
        while i < order.len() && scores[order[i]] == threshold {
            if labels[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        out.push((threshold, tp, fp));
    }
    out
}

/// Average precision: Σ (Rₙ − Rₙ₋₁) Pₙ over distinct score thresholds, highest
/// first (scikit-learn's `average_precision_score`). `None` without positives.
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let curve = pr_curve(scores, labels)?;
    let mut last_recall = 0.0;
    let mut ap = 0.0;
    for p in curve {
        ap += (p.recall - last_recall) * p.precision;
        last_recall = p.recall;
    }
    Some(ap)
}

/// The precision-recall curve: one point per distinct score, highest threshold first
/// (scikit-learn's `precision_recall_curve` reversed, without its final
/// `(precision 1, recall 0)` point). `None` without positives.
pub fn pr_curve(scores: &[f32], labels: &[bool]) -> Option<Vec<PrPoint>> {
    let n_pos = labels.iter().filter(|&&l| l).count();
    if n_pos == 0 {
        return None;
    }
    Some(
        threshold_counts(scores, labels)
            .into_iter()
            .map(|(threshold, tp, fp)| PrPoint {
                threshold,
                precision: tp as f64 / (tp + fp) as f64,
                recall: tp as f64 / n_pos as f64,
            })
            .collect(),
    )
}

/// The ROC curve: `(0, 0)` at threshold `+∞`, then one point per distinct score,
/// highest first (scikit-learn's `roc_curve` with `drop_intermediate=False`).
/// `None` unless both classes occur.
pub fn roc_curve(scores: &[f32], labels: &[bool]) -> Option<Vec<RocPoint>> {
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let start = RocPoint {
        threshold: f32::INFINITY,
        fpr: 0.0,
        tpr: 0.0,
    };
    Some(
        std::iter::once(start)
            .chain(
                threshold_counts(scores, labels)
                    .into_iter()
                    .map(|(threshold, tp, fp)| RocPoint {
                        threshold,
                        fpr: fp as f64 / n_neg as f64,
                        tpr: tp as f64 / n_pos as f64,
                    }),
            )
            .collect(),
    )
}

/// The threshold of the precision-recall curve with the highest F1 (the highest such
/// threshold on ties). `None` without positives.
pub fn best_f1_threshold(scores: &[f32], labels: &[bool]) -> Option<F1Threshold> {
    let mut best: Option<F1Threshold> = None;
    for p in pr_curve(scores, labels)? {
        let f1 = if p.precision + p.recall > 0.0 {
            2.0 * p.precision * p.recall / (p.precision + p.recall)
        } else {
            0.0
        };
        if best.is_none_or(|b| f1 > b.f1) {
            best = Some(F1Threshold {
                threshold: p.threshold,
                precision: p.precision,
                recall: p.recall,
                f1,
            });
        }
    }
    best
}

/// A reliability diagram of `probabilities` against `outcomes` in `bins` equal-width
/// bins of [0, 1]: a probability on an edge belongs to the lower bin, as in
/// scikit-learn's `calibration_curve` (uniform strategy); values outside [0, 1] go
/// to the end bins. Empty bins are left out.
pub fn calibration(probabilities: &[f32], outcomes: &[bool], bins: usize) -> Calibration {
    let bins = bins.max(1);
    // numpy's linspace(0, 1, bins + 1): k · (1 / bins).
    let step = 1.0 / bins as f64;
    let edge = |k: usize| if k == bins { 1.0 } else { k as f64 * step };
    let mut count = vec![0u64; bins];
    let mut sum = vec![0f64; bins];
    let mut positive = vec![0u64; bins];
    for (&p, &o) in probabilities.iter().zip(outcomes) {
        let p = p as f64;
        let b = (1..bins).filter(|&k| edge(k) < p).count();
        count[b] += 1;
        sum[b] += p;
        positive[b] += o as u64;
    }
    let total: u64 = count.iter().sum();
    let mut out = Vec::new();
    let mut ece = 0.0;
    for b in 0..bins {
        if count[b] == 0 {
            continue;
        }
        let mean_probability = sum[b] / count[b] as f64;
        let fraction_positive = positive[b] as f64 / count[b] as f64;
        ece += count[b] as f64 / total as f64 * (fraction_positive - mean_probability).abs();
        out.push(CalibrationBin {
            lower: edge(b),
            upper: edge(b + 1),
            count: count[b],
            mean_probability,
            fraction_positive,
        });
    }
    Calibration {
        bins: out,
        expected_calibration_error: ece,
    }
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
