//! Metrics against hand-computed values and scikit-learn's documented examples.

use vct_metrics::{
    average_precision, best_f1_threshold, calibration, pr_curve, roc_auc, roc_curve, EvalMetrics,
    Labels, MetricsAccumulator,
};

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

#[test]
fn roc_auc_matches_scikit_learn_examples() {
    // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    close(
        roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap(),
        0.75,
    );
    // Ties count half: one positive and one negative at the same score.
    close(roc_auc(&[0.5, 0.5], &[false, true]).unwrap(), 0.5);
    close(
        roc_auc(&[0.2, 0.5, 0.5, 0.9], &[false, false, true, true]).unwrap(),
        0.875,
    );
    assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
}

#[test]
fn average_precision_matches_scikit_learn_examples() {
    // sklearn.metrics.average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.8333...
    close(
        average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap(),
        5.0 / 6.0,
    );
    // Tied scores form one threshold: P = 1/2 at R = 1.
    close(average_precision(&[0.5, 0.5], &[true, false]).unwrap(), 0.5);
    assert_eq!(average_precision(&[0.3], &[false]), None);
}

#[test]
fn single_label_confusion_precision_recall() {
    let concepts = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let mut acc = MetricsAccumulator::new(concepts, false);
    // Predictions (argmax): a, a, b, c, c ; truth: a, b, b, c, a
    let scores = [
        0.7, 0.2, 0.1, //
        0.5, 0.4, 0.1, //
        0.1, 0.8, 0.1, //
        0.1, 0.1, 0.8, //
        0.2, 0.3, 0.5,
    ];
    acc.add(&scores[..9], Labels::Single(&[0, 1, 1])).unwrap();
    acc.add(&scores[9..], Labels::Single(&[2, 0])).unwrap();
    acc.add_loss(2.5, 5);
    let m = acc.finish();
    assert_eq!(m.count, 5);
    close(m.loss.unwrap(), 0.5);
    close(m.top1, 3.0 / 5.0);
    assert_eq!(m.top5, None);
    assert_eq!(
        m.confusion,
        vec![vec![1, 0, 1], vec![1, 1, 0], vec![0, 0, 1]]
    );
    // a: TP 1, FP 1, FN 1 ; b: TP 1, FP 0, FN 1 ; c: TP 1, FP 1, FN 0
    close(m.per_concept[0].precision, 0.5);
    close(m.per_concept[0].recall, 0.5);
    close(m.per_concept[1].precision, 1.0);
    close(m.per_concept[1].recall, 0.5);
    close(m.per_concept[1].f1, 2.0 / 3.0);
    close(m.per_concept[2].precision, 0.5);
    close(m.per_concept[2].recall, 1.0);
    close(m.macro_precision, (0.5 + 1.0 + 0.5) / 3.0);
    close(m.macro_recall, (0.5 + 0.5 + 1.0) / 3.0);
    assert_eq!(m.per_concept[0].support, 2);
    // concept b's column: scores [0.2,0.4,0.8,0.1,0.3], truth [F,T,T,F,F]
    // positives ranks 4 and 5 of 5 -> AUC = (9 - 3) / 6 = 1
    close(m.per_concept[1].roc_auc.unwrap(), 1.0);
}

#[test]
fn top5_needs_more_than_five_concepts() {
    let concepts: Vec<String> = (0..7).map(|i| format!("c{i}")).collect();
    let mut acc = MetricsAccumulator::new(concepts, false);
    // The truth (6) is ranked 6th for the first image and 1st for the second.
    acc.add(
        &[
            0.9, 0.8, 0.7, 0.6, 0.5, 0.0, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0,
        ],
        Labels::Single(&[6, 6]),
    )
    .unwrap();
    let m = acc.finish();
    close(m.top1, 0.5);
    close(m.top5.unwrap(), 0.5);
}

#[test]
fn multi_label_thresholds_and_map() {
    let concepts = vec!["x".to_string(), "y".to_string()];
    let mut acc = MetricsAccumulator::new(concepts, true);
    let scores = [0.9, 0.6, 0.2, 0.7, 0.8, 0.1, 0.3, 0.4];
    let truth = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0];
    acc.add(&scores, Labels::MultiHot(&truth)).unwrap();
    let m = acc.finish();
    assert!(m.multi_label);
    // x: scores [0.9,0.2,0.8,0.3] truth [T,F,T,F] -> perfect ranking, AP 1
    close(m.per_concept[0].average_precision.unwrap(), 1.0);
    // y: scores [0.6,0.7,0.1,0.4] truth [T,T,F,F] -> AP 1 as well; all thresholds right
    close(m.mean_average_precision.unwrap(), 1.0);
    // x predicted at > 0.5: rows 0 and 2 -> TP 2; confusion [tn, fp, fn, tp]
    assert_eq!(m.confusion[0], vec![2, 0, 0, 2]);
    close(m.macro_f1, 1.0);
}

#[test]
fn shape_errors_are_reported() {
    let mut acc = MetricsAccumulator::new(vec!["a".into(), "b".into()], false);
    assert!(acc.add(&[0.1, 0.2, 0.3], Labels::Single(&[0])).is_err());
    assert!(acc.add(&[0.1, 0.9], Labels::Single(&[2])).is_err());
    assert!(acc.is_empty());
}

// The scores and labels of the curve tests, with ties at 0.8 (both positive) and at
// 0.65 (both negative). Reference values from scikit-learn 1.9.1:
//   y = [0,1,1,0,1,0,0,1,1,0]; s = [0.1,0.8,0.35,0.4,0.8,0.2,0.65,0.9,0.55,0.65]
const CURVE_SCORES: [f32; 10] = [0.1, 0.8, 0.35, 0.4, 0.8, 0.2, 0.65, 0.9, 0.55, 0.65];
const CURVE_LABELS: [bool; 10] = [
    false, true, true, false, true, false, false, true, true, false,
];

fn close32(a: f32, b: f64) {
    assert!((a as f64 - b).abs() < 1e-6, "{a} != {b}");
}

#[test]
fn pr_curve_matches_scikit_learn() {
    // precision_recall_curve(y, s), reversed and without its final (1, 0) point.
    let sk_precision = [
        0.5,
        0.5555555555555556,
        0.625,
        0.5714285714285714,
        0.6666666666666666,
        0.6,
        1.0,
        1.0,
    ];
    let sk_recall = [1.0, 1.0, 1.0, 0.8, 0.8, 0.6, 0.6, 0.2];
    let sk_thresholds = [0.1, 0.2, 0.35, 0.4, 0.55, 0.65, 0.8, 0.9];
    let curve = pr_curve(&CURVE_SCORES, &CURVE_LABELS).unwrap();
    assert_eq!(curve.len(), 8);
    for (k, p) in curve.iter().rev().enumerate() {
        close(p.precision, sk_precision[k]);
        close(p.recall, sk_recall[k]);
        close32(p.threshold, sk_thresholds[k]);
    }
    assert_eq!(pr_curve(&[0.3, 0.4], &[false, false]), None);
    // average_precision_score(y, s) == 0.8 (sum of recall steps times precision).
    close(
        average_precision(&CURVE_SCORES, &CURVE_LABELS).unwrap(),
        0.2 * 1.0 + 0.4 * 1.0 + 0.2 * (2.0 / 3.0) + 0.2 * 0.625,
    );
}

#[test]
fn roc_curve_matches_scikit_learn() {
    // roc_curve(y, s, drop_intermediate=False)
    let sk_fpr = [0.0, 0.0, 0.0, 0.4, 0.4, 0.6, 0.6, 0.8, 1.0];
    let sk_tpr = [0.0, 0.2, 0.6, 0.6, 0.8, 0.8, 1.0, 1.0, 1.0];
    let sk_thresholds = [0.9, 0.8, 0.65, 0.55, 0.4, 0.35, 0.2, 0.1];
    let curve = roc_curve(&CURVE_SCORES, &CURVE_LABELS).unwrap();
    assert_eq!(curve.len(), 9);
    assert_eq!(curve[0].threshold, f32::INFINITY);
    for (k, p) in curve.iter().enumerate() {
        close(p.fpr, sk_fpr[k]);
        close(p.tpr, sk_tpr[k]);
        if k > 0 {
            close32(p.threshold, sk_thresholds[k - 1]);
        }
    }
    // The trapezoids under the curve are the AUC roc_auc computes by ranks.
    let area: f64 = curve
        .windows(2)
        .map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0)
        .sum();
    close(area, roc_auc(&CURVE_SCORES, &CURVE_LABELS).unwrap());
    assert_eq!(roc_curve(&[0.3, 0.4], &[true, true]), None);
}

#[test]
fn best_f1_threshold_maximises_f1() {
    // numpy argmax of 2PR/(P+R) over sklearn's curve: threshold 0.35, P 0.625, R 1,
    // and f1_score(y, s >= 0.35) == 0.7692307692307693 (= 10/13).
    let best = best_f1_threshold(&CURVE_SCORES, &CURVE_LABELS).unwrap();
    close32(best.threshold, 0.35);
    close(best.precision, 0.625);
    close(best.recall, 1.0);
    close(best.f1, 10.0 / 13.0);
    // Equal F1 (2/3) at 0.9 (P 1, R 1/2) and at 0.3 (P 1/2, R 1): the higher
    // threshold wins the tie.
    let tie = best_f1_threshold(&[0.9, 0.5, 0.4, 0.3], &[true, false, false, true]).unwrap();
    close32(tie.threshold, 0.9);
    close(tie.f1, 2.0 / 3.0);
    assert_eq!(best_f1_threshold(&[0.5], &[false]), None);
}

#[test]
fn calibration_matches_scikit_learn() {
    // calibration_curve(y, np.array(p, dtype=np.float32), n_bins=5): the probabilities
    // are f32 as in vct, so 0.2f32 (0.20000000298) lies above the edge 0.2 and 0.8f32
    // above 0.8; an exact edge (0.0) belongs to the lower bin.
    let p = [
        0.05, 0.15, 0.2, 0.4, 0.45, 0.6, 0.7, 0.8, 0.95, 1.0, 0.0, 0.2,
    ];
    let y = [
        false, false, true, false, true, true, false, true, true, true, false, false,
    ];
    let cal = calibration(&p, &y, 5);
    let counts: Vec<u64> = cal.bins.iter().map(|b| b.count).collect();
    assert_eq!(counts, vec![3, 2, 2, 2, 3]);
    let sk_true = [0.0, 0.5, 0.5, 0.5, 1.0];
    let sk_pred = [
        0.06666666890184085,
        0.20000000298023224,
        0.42499999701976776,
        0.6500000059604645,
        0.9166666666666666,
    ];
    for (bin, (t, m)) in cal.bins.iter().zip(sk_true.iter().zip(sk_pred)) {
        close(bin.fraction_positive, *t);
        assert!((bin.mean_probability - m).abs() < 1e-12, "{bin:?} vs {m}");
    }
    // ECE by hand: (3·0.0667 + 2·0.3 + 2·0.075 + 2·0.15 + 3·0.0833) / 12 = 1.5 / 12.
    assert!((cal.expected_calibration_error - 1.5 / 12.0).abs() < 1e-7);
    close(cal.bins[1].lower, 0.2);
    close(cal.bins[4].upper, 1.0);
    // Values outside [0, 1] land in the end bins.
    let clamp = calibration(&[-0.5, 1.5], &[false, true], 4);
    assert_eq!(
        clamp
            .bins
            .iter()
            .map(|b| (b.lower, b.count))
            .collect::<Vec<_>>(),
        vec![(0.0, 1), (0.75, 1)]
    );
}

#[test]
fn accumulator_curves_errors_and_calibration() {
    let concepts = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let mut acc = MetricsAccumulator::new(concepts, false);
    // Predictions (argmax): a, a, b, c, c ; truth: a, b, b, c, a
    let scores = [
        0.7, 0.2, 0.1, //
        0.5, 0.4, 0.1, //
        0.1, 0.8, 0.1, //
        0.1, 0.1, 0.8, //
        0.2, 0.3, 0.5,
    ];
    acc.add(&scores, Labels::Single(&[0, 1, 1, 2, 0])).unwrap();
    // Wrong: image 1 (b taken for a at 0.5) and image 4 (a taken for c at 0.5): a tie,
    // the earlier image first.
    let errors = acc.confident_errors(10);
    assert_eq!(errors.len(), 2);
    assert_eq!(
        (errors[0].index, &errors[0].truth, &errors[0].predicted),
        (1, &vec![1], &vec![0])
    );
    assert_eq!(errors[1].index, 4);
    close(errors[0].confidence, 0.5f32 as f64);
    assert_eq!(acc.confident_errors(1).len(), 1);

    let curves = acc.curves();
    assert_eq!(curves.len(), 3);
    // b's column [0.2, 0.4, 0.8, 0.1, 0.3], truth [F, T, T, F, F]: perfect ranking.
    let roc_b = curves[1].roc.as_ref().unwrap();
    assert_eq!((roc_b[2].fpr, roc_b[2].tpr), (0.0, 1.0));
    assert_eq!(curves[1].pr.as_ref().unwrap().len(), 5);

    let m = acc.finish();
    // Single-label: no per-concept thresholds; calibration of the top-1 probability:
    // 0.7 right, 0.5 wrong, 0.8 right, 0.8 right, 0.5 wrong.
    assert!(m.per_concept.iter().all(|c| c.best_f1.is_none()));
    let cal = m.calibration.as_ref().unwrap();
    let bins: Vec<(u64, f64)> = cal
        .bins
        .iter()
        .map(|b| (b.count, b.fraction_positive))
        .collect();
    assert_eq!(bins, vec![(2, 0.0), (1, 1.0), (2, 1.0)]);
}

#[test]
fn multi_label_errors_and_best_thresholds() {
    let concepts = vec!["x".to_string(), "y".to_string()];
    let mut acc = MetricsAccumulator::new(concepts, true);
    // Image 0 right; image 1 misses y (P 0.1, error 0.9); image 2 adds x (P 0.6,
    // error 0.6).
    let scores = [0.9, 0.8, 0.2, 0.1, 0.6, 0.3];
    let truth = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0];
    acc.add(&scores, Labels::MultiHot(&truth)).unwrap();
    let errors = acc.confident_errors(5);
    let got: Vec<(usize, Vec<usize>, Vec<usize>)> = errors
        .iter()
        .map(|e| (e.index, e.truth.clone(), e.predicted.clone()))
        .collect();
    assert_eq!(got, vec![(1, vec![1], vec![]), (2, vec![], vec![0])]);
    assert!((errors[0].confidence - 0.9).abs() < 1e-6);
    let m = acc.finish();
    // x: scores [0.9, 0.2, 0.6], truth [T, F, F] -> best at 0.9 with F1 1.
    let x = m.per_concept[0].best_f1.unwrap();
    close32(x.threshold, 0.9);
    close(x.f1, 1.0);
    // y: scores [0.8, 0.1, 0.3], truth [T, T, F]: at 0.1 P 2/3 R 1 (F1 0.8) beats 0.8
    // (P 1, R 1/2, F1 2/3).
    let y = m.per_concept[1].best_f1.unwrap();
    close32(y.threshold, 0.1);
    close(y.f1, 0.8);
    assert_eq!(
        m.calibration
            .as_ref()
            .unwrap()
            .bins
            .iter()
            .map(|b| b.count)
            .sum::<u64>(),
        6
    );
}

#[test]
fn metrics_files_without_the_new_fields_still_read() {
    let mut acc = MetricsAccumulator::new(vec!["a".into(), "b".into()], true);
    acc.add(&[0.9, 0.2], Labels::MultiHot(&[1.0, 0.0])).unwrap();
    let m = acc.finish();
    let mut v = serde_json::to_value(&m).unwrap();
    assert!(v["calibration"].is_object() && v["per_concept"][0]["best_f1"].is_object());
    v.as_object_mut().unwrap().remove("calibration");
    for c in v["per_concept"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("best_f1");
    }
    let old: EvalMetrics = serde_json::from_value(v).unwrap();
    assert_eq!(old.calibration, None);
    assert_eq!(old.per_concept[0].best_f1, None);
    assert_eq!(old.top1, m.top1);
}
