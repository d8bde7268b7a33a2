//! Metrics against hand-computed values and scikit-learn's documented examples.

use vct_metrics::{average_precision, roc_auc, Labels, MetricsAccumulator};

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
