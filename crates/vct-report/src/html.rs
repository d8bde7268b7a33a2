//! The page: static HTML for the tables, charts and thumbnails, plus the data the
//! inline script needs for the interactive parts (sorting, the confusion heat map,
//! per-concept PR and ROC curves).

use std::fmt::Write as _;

use serde::Serialize;
use vct_metrics::{ConceptMetrics, EvalMetrics};

use crate::svg::{chart, Chart, Series};
use crate::{Derived, Evaluation, ReportError, ReportInput, ReportOptions};

const CSS: &str = include_str!("report.css");
const JS: &str = include_str!("report.js");

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

fn num(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into())
}

/// A value for `data-v` (the sort key): missing values sort first.
fn key(v: Option<f64>) -> String {
    v.map(|v| format!("{v}")).unwrap_or_else(|| "-1".into())
}

/// Rounded for the page's data (4 decimals are finer than a pixel).
fn r4(v: f64) -> f32 {
    ((v * 1e4).round() / 1e4) as f32
}

/// At most `max` points: the means of equal runs of consecutive points (a long run's
/// per-step series, smoothed to what a chart can show).
fn bucket_means(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max == 0 {
        return points;
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .map(|c| {
            let n = c.len() as f64;
            (
                c.iter().map(|p| p.0).sum::<f64>() / n,
                c.iter().map(|p| p.1).sum::<f64>() / n,
            )
        })
        .collect()
}

/// Most points a per-step training curve keeps.
const STEP_POINTS: usize = 1500;

/// At most `max` points of `points`, evenly spaced, first and last kept.
fn thin<T: Copy>(points: &[T], max: usize) -> Vec<T> {
    let max = max.max(2);
    if points.len() <= max {
        return points.to_vec();
    }
    let n = points.len() - 1;
    let mut out: Vec<T> = Vec::with_capacity(max);
    let mut last = usize::MAX;
    for k in 0..max {
        let i = (k * n + (max - 1) / 2) / (max - 1);
        if i != last {
            out.push(points[i]);
            last = i;
        }
    }
    out
}

#[derive(Serialize)]
struct CurveData {
    /// `[recall, precision]`, from recall 0.
    pr: Option<Vec<[f32; 2]>>,
    /// `[fpr, tpr]`, from (0, 0).
    roc: Option<Vec<[f32; 2]>>,
    ap: Option<f64>,
    auc: Option<f64>,
    /// The best-F1 point `[recall, precision]` (multi-label).
    best: Option<[f32; 2]>,
}

#[derive(Serialize)]
struct PageData<'a> {
    concepts: Vec<&'a str>,
    multi_label: bool,
    support: Vec<u64>,
    recall: Vec<f64>,
    /// `confusion[true][predicted]` (single-label data only).
    confusion: Option<&'a Vec<Vec<u64>>>,
    curves: Vec<CurveData>,
}

fn page_data<'a>(e: &'a Evaluation, d: &Derived, opts: &ReportOptions) -> PageData<'a> {
    let m = &e.metrics;
    PageData {
        concepts: m.per_concept.iter().map(|c| c.concept.as_str()).collect(),
        multi_label: m.multi_label,
        support: m.per_concept.iter().map(|c| c.support).collect(),
        recall: m.per_concept.iter().map(|c| c.recall).collect(),
        confusion: (!m.multi_label).then_some(&m.confusion),
        curves: d
            .curves
            .iter()
            .zip(&m.per_concept)
            .map(|(c, pc)| CurveData {
                pr: c.pr.as_ref().map(|pr| {
                    // scikit-learn's curve starts at (recall 0, precision 1).
                    let pts: Vec<[f32; 2]> = std::iter::once([0.0, 1.0])
                        .chain(pr.iter().map(|p| [r4(p.recall), r4(p.precision)]))
                        .collect();
                    thin(&pts, opts.curve_points)
                }),
                roc: c.roc.as_ref().map(|roc| {
                    let pts: Vec<[f32; 2]> = roc.iter().map(|p| [r4(p.fpr), r4(p.tpr)]).collect();
                    thin(&pts, opts.curve_points)
                }),
                ap: pc.average_precision,
                auc: pc.roc_auc,
                best: pc.best_f1.map(|b| [r4(b.recall), r4(b.precision)]),
            })
            .collect(),
    }
}

fn kv_table(id: &str, caption: &str, rows: &[(String, String)]) -> String {
    let mut s = format!(
        "<table class=\"kv\" id=\"{id}\"><caption>{}</caption>",
        esc(caption)
    );
    for (k, v) in rows {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    s.push_str("</table>");
    s
}

fn card(label: &str, value: &str) -> String {
    format!(
        "<div class=\"card\"><div class=\"card-value\">{}</div><div class=\"card-label\">{}</div></div>",
        esc(value),
        esc(label)
    )
}

fn overview(m: &EvalMetrics) -> String {
    let mut s = String::from("<div class=\"cards\" id=\"summary\">");
    s.push_str(&card("images", &m.count.to_string()));
    if !m.multi_label {
        s.push_str(&card("top-1 accuracy", &pct(m.top1)));
    }
    if let Some(t5) = m.top5 {
        s.push_str(&card("top-5 accuracy", &pct(t5)));
    }
    if let Some(map) = m.mean_average_precision {
        s.push_str(&card("mean average precision", &format!("{map:.3}")));
    }
    s.push_str(&card("macro F1", &format!("{:.3}", m.macro_f1)));
    if let Some(auc) = m.macro_roc_auc {
        s.push_str(&card("macro ROC AUC", &format!("{auc:.3}")));
    }
    if let Some(l) = m.loss {
        s.push_str(&card("loss", &format!("{l:.4}")));
    }
    if let Some(c) = &m.calibration {
        s.push_str(&card(
            "expected calibration error",
            &format!("{:.3}", c.expected_calibration_error),
        ));
    }
    s.push_str("</div>");
    s
}

fn training(input: &ReportInput) -> String {
    let mut s = String::from("<section id=\"training\"><h2>Training</h2>");
    if input.epochs.is_empty() && input.steps.is_empty() {
        s.push_str(
            "<p class=\"empty\">No training history (events.jsonl) was found.</p></section>",
        );
        return s;
    }
    // Steps sit at fractions of their epoch, so per-step and per-epoch values share
    // the epoch axis.
    let mut step_x = Vec::with_capacity(input.steps.len());
    let mut i = 0;
    while i < input.steps.len() {
        let epoch = input.steps[i].epoch;
        let n = input.steps[i..]
            .iter()
            .take_while(|r| r.epoch == epoch)
            .count();
        for k in 0..n {
            step_x.push(epoch as f64 - 1.0 + (k + 1) as f64 / n as f64);
        }
        i += n;
    }
    let step_points = |f: &dyn Fn(&crate::StepRow) -> Option<f64>| -> Vec<(f64, f64)> {
        let all = input
            .steps
            .iter()
            .zip(&step_x)
            .filter_map(|(r, &x)| f(r).map(|y| (x, y)))
            .collect();
        bucket_means(all, STEP_POINTS)
    };
    let epoch_points = |f: &dyn Fn(&crate::EpochRow) -> Option<f64>| -> Vec<(f64, f64)> {
        input
            .epochs
            .iter()
            .filter_map(|r| f(r).map(|y| (r.epoch as f64, y)))
            .collect()
    };
    let x_range = Some((
        0.0,
        input.epochs.last().map(|e| e.epoch).unwrap_or(1).max(1) as f64,
    ))
    .filter(|_| !input.epochs.is_empty());
    s.push_str("<div class=\"charts\">");
    s.push_str(&chart(&Chart {
        id: "loss-chart",
        title: "Loss",
        x_label: "epoch",
        y_label: "loss",
        series: vec![
            Series {
                name: "train (step)",
                color: "#9ecae1",
                points: step_points(&|r| r.loss),
                dots: false,
                stroke: 1.0,
            },
            Series {
                name: "train (epoch)",
                color: "#1f77b4",
                points: epoch_points(&|r| Some(r.train_loss)),
                dots: true,
                stroke: 2.0,
            },
            Series {
                name: "validation",
                color: "#d62728",
                points: epoch_points(&|r| r.val_loss),
                dots: true,
                stroke: 2.0,
            },
        ],
        bars: Vec::new(),
        x_range,
        y_range: None,
        diagonal: false,
    }));
    s.push_str(&chart(&Chart {
        id: "accuracy-chart",
        title: "Validation accuracy",
        x_label: "epoch",
        y_label: "score",
        series: vec![
            Series {
                name: "top-1 accuracy",
                color: "#2ca02c",
                points: epoch_points(&|r| r.val_top1),
                dots: true,
                stroke: 2.0,
            },
            Series {
                name: "mAP",
                color: "#9467bd",
                points: epoch_points(&|r| r.val_map),
                dots: true,
                stroke: 2.0,
            },
        ],
        bars: Vec::new(),
        x_range,
        y_range: Some((0.0, 1.0)),
        diagonal: false,
    }));
    let mut lr = step_points(&|r| Some(r.lr));
    if lr.is_empty() {
        lr = epoch_points(&|r| Some(r.lr));
    }
    s.push_str(&chart(&Chart {
        id: "lr-chart",
        title: "Learning rate",
        x_label: "epoch",
        y_label: "learning rate",
        series: vec![Series {
            name: "lr",
            color: "#333333",
            points: lr,
            dots: false,
            stroke: 2.0,
        }],
        bars: Vec::new(),
        x_range,
        y_range: None,
        diagonal: false,
    }));
    s.push_str("</div>");
    if !input.epochs.is_empty() {
        s.push_str(
            "<table class=\"data\" id=\"epoch-table\"><thead><tr><th>epoch</th><th>train loss</th>\
             <th>val loss</th><th>val top-1</th><th>val mAP</th><th>lr</th></tr></thead><tbody>",
        );
        for e in &input.epochs {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3e}</td></tr>",
                e.epoch,
                e.train_loss,
                e.val_loss.map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into()),
                e.val_top1.map(pct).unwrap_or_else(|| "–".into()),
                num(e.val_map),
                e.lr
            );
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("</section>");
    s
}

/// The largest entry of a confusion row off its diagonal: (predicted, count).
fn most_confused(row: &[u64], truth: usize) -> Option<(usize, u64)> {
    row.iter()
        .enumerate()
        .filter(|&(j, &n)| j != truth && n > 0)
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
        .map(|(j, &n)| (j, n))
}

fn concept_table(m: &EvalMetrics) -> String {
    let mut s = String::from(
        "<section id=\"metrics\"><h2>Per-concept metrics</h2>\
         <p class=\"hint\">Click a column to sort; click a row to see its curves.</p>\
         <div class=\"scroll\"><table class=\"data sortable\" id=\"concept-table\"><thead><tr>\
         <th data-sort=\"num\">#</th><th data-sort=\"text\">concept</th>\
         <th data-sort=\"num\">support</th><th data-sort=\"num\">precision</th>\
         <th data-sort=\"num\">recall</th><th data-sort=\"num\">F1</th>\
         <th data-sort=\"num\">ROC AUC</th><th data-sort=\"num\">AP</th>",
    );
    if m.multi_label {
        s.push_str("<th data-sort=\"num\">TP</th><th data-sort=\"num\">FP</th><th data-sort=\"num\">FN</th>");
    } else {
        s.push_str("<th data-sort=\"text\">most confused with</th>");
    }
    s.push_str("</tr></thead><tbody>");
    let names: Vec<&str> = m.per_concept.iter().map(|c| c.concept.as_str()).collect();
    for (j, c) in m.per_concept.iter().enumerate() {
        let cell = |v: Option<f64>| format!("<td data-v=\"{}\">{}</td>", key(v), num(v));
        let _ = write!(
            s,
            "<tr data-concept=\"{j}\"><td data-v=\"{j}\">{j}</td><td>{}</td><td data-v=\"{}\">{}</td>{}{}{}{}{}",
            esc(&c.concept),
            c.support,
            c.support,
            cell(Some(c.precision)),
            cell(Some(c.recall)),
            cell(Some(c.f1)),
            cell(c.roc_auc),
            cell(c.average_precision)
        );
        if m.multi_label {
            let row = m.confusion.get(j).cloned().unwrap_or_default();
            for k in [3, 1, 2] {
                let v = row.get(k).copied().unwrap_or(0);
                let _ = write!(s, "<td data-v=\"{v}\">{v}</td>");
            }
        } else {
            let other = m
                .confusion
                .get(j)
                .and_then(|row| most_confused(row, j))
                .map(|(k, n)| format!("{} ({n})", names.get(k).copied().unwrap_or("?")))
                .unwrap_or_else(|| "–".into());
            let _ = write!(s, "<td>{}</td>", esc(&other));
        }
        s.push_str("</tr>");
    }
    let _ = write!(
        s,
        "</tbody><tfoot><tr><td></td><th>macro average</th><td></td><td>{:.3}</td><td>{:.3}</td>\
         <td>{:.3}</td><td>{}</td><td>{}</td></tr></tfoot></table></div></section>",
        m.macro_precision,
        m.macro_recall,
        m.macro_f1,
        num(m.macro_roc_auc),
        num(m.mean_average_precision)
    );
    s
}

fn thresholds(per_concept: &[ConceptMetrics]) -> String {
    let mut s = String::from(
        "<section id=\"thresholds\"><h2>Per-concept thresholds that maximise F1</h2>\
         <p class=\"hint\">Predict a concept when its probability is at least the threshold. \
         The metrics above use 0.5 for every concept.</p><div class=\"scroll\">\
         <table class=\"data sortable\" id=\"threshold-table\"><thead><tr>\
         <th data-sort=\"text\">concept</th><th data-sort=\"num\">threshold</th>\
         <th data-sort=\"num\">precision</th><th data-sort=\"num\">recall</th>\
         <th data-sort=\"num\">F1</th><th data-sort=\"num\">F1 at 0.5</th></tr></thead><tbody>",
    );
    for c in per_concept {
        match &c.best_f1 {
            Some(b) => {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td data-v=\"{}\">{:.4}</td><td data-v=\"{}\">{:.3}</td>\
                     <td data-v=\"{}\">{:.3}</td><td data-v=\"{}\">{:.3}</td><td data-v=\"{}\">{:.3}</td></tr>",
                    esc(&c.concept),
                    b.threshold,
                    b.threshold,
                    b.precision,
                    b.precision,
                    b.recall,
                    b.recall,
                    b.f1,
                    b.f1,
                    c.f1,
                    c.f1
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td data-v=\"-1\" colspan=\"4\">no positive images</td>\
                     <td data-v=\"{}\">{:.3}</td></tr>",
                    esc(&c.concept),
                    c.f1,
                    c.f1
                );
            }
        }
    }
    s.push_str("</tbody></table></div></section>");
    s
}

fn confusion(m: &EvalMetrics) -> String {
    let mut s = String::from("<section id=\"confusion\"><h2>Confusion matrix</h2>");
    if m.multi_label {
        s.push_str(
            "<p class=\"hint\">Multi-label data has no single confusion matrix: each concept's \
             true and false positives and negatives (at P &gt; 0.5) are in the per-concept table.</p></section>",
        );
        return s;
    }
    s.push_str(
        "<div class=\"controls\"><label>order <select id=\"confusion-order\">\
         <option value=\"index\">concept index</option><option value=\"name\">name</option>\
         <option value=\"support\">support</option><option value=\"recall\">recall (worst first)</option>\
         <option value=\"confused\">most confused together</option></select></label> \
         <label>values <select id=\"confusion-norm\"><option value=\"row\">share of the true concept</option>\
         <option value=\"count\">counts</option></select></label></div>\
         <p class=\"hint\">Rows: true concept; columns: predicted. Hover a cell for its count.</p>\
         <div class=\"heat-wrap\"><canvas id=\"confusion-canvas\" width=\"10\" height=\"10\"></canvas>\
         <div id=\"confusion-tip\" class=\"tip\" hidden></div></div>",
    );
    // The largest confusions, readable at any number of concepts.
    let mut pairs: Vec<(u64, usize, usize)> = Vec::new();
    for (i, row) in m.confusion.iter().enumerate() {
        for (j, &n) in row.iter().enumerate() {
            if i != j && n > 0 {
                pairs.push((n, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    pairs.truncate(20);
    let name = |i: usize| {
        m.per_concept
            .get(i)
            .map(|c| c.concept.as_str())
            .unwrap_or("?")
    };
    s.push_str("<h3>Largest confusions</h3>");
    if pairs.is_empty() {
        s.push_str("<p class=\"empty\">No image was confused with another concept.</p>");
    } else {
        s.push_str(
            "<table class=\"data\" id=\"confusion-pairs\"><thead><tr><th>true</th><th>predicted</th>\
             <th>images</th><th>share of true</th></tr></thead><tbody>",
        );
        for (n, i, j) in pairs {
            let total: u64 = m.confusion[i].iter().sum();
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{n}</td><td>{}</td></tr>",
                esc(name(i)),
                esc(name(j)),
                pct(n as f64 / total.max(1) as f64)
            );
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("</section>");
    s
}

fn curves_section() -> String {
    "<section id=\"curves\"><h2>Precision-recall and ROC curves</h2>\
     <div class=\"controls\"><label>concept <select id=\"curve-concept\"></select></label>\
     <span id=\"curve-summary\"></span></div>\
     <div class=\"charts\"><div id=\"pr-chart\" class=\"js-chart\"></div>\
     <div id=\"roc-chart\" class=\"js-chart\"></div></div></section>"
        .into()
}

fn calibration(m: &EvalMetrics) -> String {
    let mut s = String::from("<section id=\"calibration\"><h2>Calibration</h2>");
    let Some(c) = &m.calibration else {
        s.push_str("<p class=\"empty\">No images.</p></section>");
        return s;
    };
    let _ = write!(
        s,
        "<p class=\"hint\">{} Expected calibration error: <b>{:.4}</b>. Bars: the share of \
         probabilities in each bin; points on the diagonal are perfectly calibrated.</p>",
        if m.multi_label {
            "Every (image, concept) probability against whether the image has the concept."
        } else {
            "Each image's top-1 probability against whether the top-1 concept was right."
        },
        c.expected_calibration_error
    );
    let total: u64 = c.bins.iter().map(|b| b.count).sum();
    s.push_str("<div class=\"charts\">");
    s.push_str(&chart(&Chart {
        id: "calibration-chart",
        title: "Reliability diagram",
        x_label: "mean predicted probability",
        y_label: "fraction positive",
        series: vec![Series {
            name: "model",
            color: "#1f77b4",
            points: c
                .bins
                .iter()
                .map(|b| (b.mean_probability, b.fraction_positive))
                .collect(),
            dots: true,
            stroke: 2.0,
        }],
        bars: c
            .bins
            .iter()
            .map(|b| (b.lower, b.upper, b.count as f64 / total.max(1) as f64))
            .collect(),
        x_range: Some((0.0, 1.0)),
        y_range: Some((0.0, 1.0)),
        diagonal: true,
    }));
    s.push_str("</div>");
    s.push_str(
        "<table class=\"data\" id=\"calibration-table\"><thead><tr><th>bin</th><th>images</th>\
         <th>mean probability</th><th>fraction positive</th></tr></thead><tbody>",
    );
    for b in &c.bins {
        let _ = write!(
            s,
            "<tr><td>{:.2}–{:.2}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            b.lower, b.upper, b.count, b.mean_probability, b.fraction_positive
        );
    }
    s.push_str("</tbody></table></section>");
    s
}

fn top_losses(e: &Evaluation, d: &Derived, opts: &ReportOptions) -> String {
    let m = &e.metrics;
    let mut s = String::from("<section id=\"top-losses\"><h2>Most confidently wrong</h2>");
    if d.errors.is_empty() {
        s.push_str("<p class=\"empty\">Every image was predicted right.</p></section>");
        return s;
    }
    let _ = write!(
        s,
        "<p class=\"hint\">The {} wrong images the model was surest of ({}).</p><div class=\"losses\">",
        d.errors.len(),
        if m.multi_label {
            "largest |probability − truth| among the wrongly decided concepts"
        } else {
            "highest probability of a wrong top-1 concept"
        }
    );
    let name = |i: usize| {
        m.per_concept
            .get(i)
            .map(|c| c.concept.as_str())
            .unwrap_or("?")
    };
    for err in &d.errors {
        let Some(img) = e.images.get(err.index) else {
            continue;
        };
        let path = img.path.display().to_string();
        let prob = |j: usize| img.probabilities.get(j).copied().unwrap_or(f32::NAN);
        let _ = write!(
            s,
            "<figure class=\"loss-card\" data-index=\"{}\">",
            err.index
        );
        match crate::thumb::thumbnail_data_uri(
            &img.path,
            opts.thumbnail_size,
            opts.thumbnail_quality,
        ) {
            Ok(uri) => {
                let _ = write!(
                    s,
                    "<img class=\"thumb\" src=\"{uri}\" alt=\"{}\">",
                    esc(&path)
                );
            }
            Err(why) => {
                let _ = write!(
                    s,
                    "<div class=\"thumb no-thumb\">no preview: {}</div>",
                    esc(&why)
                );
            }
        }
        let list = |ids: &[usize], wrong: &dyn Fn(usize) -> bool| -> String {
            if ids.is_empty() {
                return "<i>none</i>".into();
            }
            ids.iter()
                .map(|&j| {
                    format!(
                        "<span class=\"{}\">{} <small>{:.3}</small></span>",
                        if wrong(j) { "concept wrong" } else { "concept" },
                        esc(name(j)),
                        prob(j)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let truth = list(&err.truth, &|j| !err.predicted.contains(&j));
        let predicted = list(&err.predicted, &|j| !err.truth.contains(&j));
        let _ = write!(
            s,
            "<figcaption><div class=\"path\" title=\"{0}\">{0}</div><div>true: {truth}</div>\
             <div>predicted: {predicted}</div><div class=\"confidence\">confidence {1:.3}</div>\
             </figcaption></figure>",
            esc(&path),
            err.confidence
        );
    }
    s.push_str("</div></section>");
    s
}

/// The whole document.
pub(crate) fn page(
    input: &ReportInput,
    derived: Option<&Derived>,
    opts: &ReportOptions,
) -> Result<String, ReportError> {
    let mut s = String::with_capacity(1 << 16);
    let title = if input.title.is_empty() {
        "Evaluation report"
    } else {
        &input.title
    };
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"generator\" content=\"vct-report {}\"><title>{}</title><style>{CSS}</style>\
         <script>{}</script></head><body>",
        env!("CARGO_PKG_VERSION"),
        esc(title),
        ERROR_CAPTURE
    );
    let _ = write!(
        s,
        "<header><h1>{}</h1><p class=\"subtitle\">{}</p></header>\
         <pre id=\"report-errors\" hidden></pre><nav><a href=\"#run\">run</a> \
         <a href=\"#training\">training</a>",
        esc(title),
        esc(&input.subtitle)
    );
    let eval = input.evaluation.as_ref().zip(derived);
    if let Some((e, _)) = eval {
        s.push_str(
            " <a href=\"#metrics\">metrics</a> <a href=\"#confusion\">confusion</a> \
             <a href=\"#curves\">PR / ROC</a> <a href=\"#calibration\">calibration</a> \
             <a href=\"#top-losses\">top losses</a>",
        );
        if e.metrics.multi_label {
            s.push_str(" <a href=\"#thresholds\">thresholds</a>");
        }
    }
    s.push_str("</nav><main>");
    if let Some((e, _)) = eval {
        let _ = write!(
            s,
            "<section id=\"overview\"><h2>Overview</h2><p>{}</p>{}</section>",
            esc(&e.name),
            overview(&e.metrics)
        );
    }
    s.push_str("<section id=\"run\"><h2>Run</h2><div class=\"tables\">");
    s.push_str(&kv_table("run-table", "settings", &input.run));
    s.push_str(&kv_table(
        "hparams-table",
        "hyperparameters",
        &input.hyperparameters,
    ));
    s.push_str(&kv_table("data-table", "data", &input.data));
    s.push_str("</div></section>");
    s.push_str(&training(input));
    match eval {
        Some((e, d)) => {
            s.push_str(&concept_table(&e.metrics));
            if e.metrics.multi_label {
                s.push_str(&thresholds(&e.metrics.per_concept));
            }
            s.push_str(&confusion(&e.metrics));
            s.push_str(&curves_section());
            s.push_str(&calibration(&e.metrics));
            s.push_str(&top_losses(e, d, opts));
            let json = serde_json::to_string(&page_data(e, d, opts))?;
            // `</` would end the script element; `<\/` is the same JSON string.
            let _ = write!(
                s,
                "<script type=\"application/json\" id=\"report-data\">{}</script>",
                json.replace("</", "<\\/")
            );
        }
        None => s.push_str(
            "<section id=\"evaluation\"><h2>Evaluation</h2><p class=\"empty\">This run has no \
             validation set; evaluate it with <code>eval --data DIR --report FILE</code>.</p></section>",
        ),
    }
    let _ = writeln!(
        s,
        "</main><footer>vct-report {} — one self-contained file</footer><script>{JS}</script></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    Ok(s)
}

/// Collects script and resource errors into `#report-errors` (and `window.reportErrors`),
/// so a reader — and the browser test — sees any failure on the page itself.
const ERROR_CAPTURE: &str = "window.reportErrors=[];window.addEventListener('error',function(e){\
var t=e.target&&e.target.tagName?('cannot load '+e.target.tagName.toLowerCase()):(e.message||'error');\
window.reportErrors.push(String(t));var p=document.getElementById('report-errors');\
if(p){p.hidden=false;p.textContent=window.reportErrors.join('\\n');}},true);";
