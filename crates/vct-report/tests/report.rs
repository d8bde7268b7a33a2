//! The page's structure, without a browser: self-contained (no external reference,
//! thumbnails as decodable JPEG data URIs), the sections and their tables, the numbers
//! those of vct-metrics, the embedded data of the script, text escaped.

use std::path::{Path, PathBuf};

use vct_metrics::{EvalMetrics, Labels, MetricsAccumulator};
use vct_report::{
    render, EpochRow, Evaluation, ImageRecord, ReportError, ReportInput, ReportOptions, StepRow,
};

/// Writes a small PNG (a colour per index) and returns its path.
fn png(dir: &Path, i: usize, w: u32, h: u32) -> PathBuf {
    let path = dir.join(format!("img{i:04}.png"));
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(i * 37 % 256) as u8, (x * 8) as u8, (y * 8) as u8])
    });
    img.save(&path).unwrap();
    path
}

/// Deterministic probabilities: the truth gets most mass, except every 7th image,
/// which puts it on the next concept (a confident mistake).
fn single_label(dir: &Path, concepts: usize, n: usize) -> (Vec<ImageRecord>, EvalMetrics) {
    let names: Vec<String> = (0..concepts)
        .map(|j| match j {
            0 => "a</script><b>&\"x\"".to_string(),
            _ => format!("concept-{j:03}"),
        })
        .collect();
    let mut acc = MetricsAccumulator::new(names, false);
    let mut images = Vec::new();
    for i in 0..n {
        let t = i % concepts;
        let mut p = vec![0.2 / (concepts - 1) as f32; concepts];
        let wrong = i % 7 == 0;
        let top = if wrong { (t + 1) % concepts } else { t };
        p[top] = 0.55 + (i % 40) as f32 / 100.0;
        if wrong {
            p[t] = 0.1;
        }
        acc.add(&p, Labels::Single(&[t])).unwrap();
        images.push(ImageRecord {
            path: png(dir, i, 40 + (i % 3) as u32 * 100, 30),
            labels: vec![t],
            probabilities: p,
        });
    }
    acc.add_loss(0.7 * n as f64, n as u64);
    (images, acc.finish())
}

fn history() -> (Vec<EpochRow>, Vec<StepRow>) {
    let epochs = (1..=3)
        .map(|e| EpochRow {
            epoch: e,
            train_loss: 1.0 / e as f64,
            val_loss: Some(1.2 / e as f64),
            val_top1: Some(0.3 * e as f64),
            val_map: None,
            lr: 0.1,
        })
        .collect();
    let steps = (1..=12)
        .map(|s| StepRow {
            epoch: (s - 1) / 4 + 1,
            step: s,
            loss: Some(1.5 / s as f64),
            lr: 0.1 * (1.0 - s as f64 / 13.0),
        })
        .collect();
    (epochs, steps)
}

fn input(evaluation: Option<Evaluation>) -> ReportInput {
    let (epochs, steps) = history();
    ReportInput {
        title: "runs/test".into(),
        subtitle: "Clarifai_InceptionV2 (inception_v2)".into(),
        run: vec![("template".into(), "Clarifai_InceptionV2".into())],
        hyperparameters: vec![("batch_size".into(), "8".into())],
        data: vec![("training images".into(), "16".into())],
        epochs,
        steps,
        evaluation,
    }
}

fn count(html: &str, s: &str) -> usize {
    html.matches(s).count()
}

/// The text between `start` (after it) and the next `end`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let a = html
        .find(start)
        .unwrap_or_else(|| panic!("{start} missing"))
        + start.len();
    let b = html[a..].find(end).unwrap() + a;
    &html[a..b]
}

fn check_self_contained(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    for tag in [
        "section", "table", "svg", "figure", "script", "tbody", "select",
    ] {
        assert_eq!(
            count(html, &format!("<{tag}")),
            count(html, &format!("</{tag}>")),
            "unbalanced <{tag}>"
        );
    }
    // Nothing is fetched: no stylesheet or script links, every src a data URI.
    for bad in [
        "<link",
        "@import",
        "url(",
        "src=\"http",
        "href=\"http",
        "src=\"/",
        "src=\"file",
    ] {
        assert!(!html.contains(bad), "external reference {bad}");
    }
    for src in html.split("src=\"").skip(1) {
        let uri = &src[..src.find('"').unwrap()];
        let b64 = uri
            .strip_prefix("data:image/jpeg;base64,")
            .unwrap_or_else(|| panic!("not a JPEG data URI: {}", &uri[..uri.len().min(40)]));
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
        assert!(img.width() <= 112 && img.height() <= 112);
    }
}

#[test]
fn single_label_report_at_120_concepts() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, metrics) = single_label(tmp.path(), 120, 360);
    let errors = {
        let mut acc = MetricsAccumulator::new(
            metrics
                .per_concept
                .iter()
                .map(|c| c.concept.clone())
                .collect(),
            false,
        );
        for img in &images {
            acc.add(&img.probabilities, Labels::Single(&img.labels))
                .unwrap();
        }
        acc.confident_errors(24)
    };
    let eval = Evaluation {
        name: "validation set: data/val".into(),
        metrics: metrics.clone(),
        images: images.clone(),
    };
    let html = render(&input(Some(eval)), &ReportOptions::default()).unwrap();
    check_self_contained(&html);
    for id in [
        "summary",
        "run-table",
        "hparams-table",
        "data-table",
        "loss-chart",
        "accuracy-chart",
        "lr-chart",
        "epoch-table",
        "concept-table",
        "confusion",
        "confusion-canvas",
        "confusion-order",
        "confusion-pairs",
        "curves",
        "curve-concept",
        "pr-chart",
        "roc-chart",
        "calibration-chart",
        "calibration-table",
        "top-losses",
        "report-data",
        "report-errors",
    ] {
        assert_eq!(count(&html, &format!("id=\"{id}\"")), 1, "#{id}");
    }
    assert!(
        !html.contains("id=\"thresholds\""),
        "single-label data has no thresholds"
    );

    // One row per concept, with the numbers of the metrics.
    let table = between(&html, "id=\"concept-table\"", "</table>");
    assert_eq!(count(table, "<tr data-concept="), 120);
    let row5 = between(table, "<tr data-concept=\"5\">", "</tr>");
    let m5 = &metrics.per_concept[5];
    assert!(row5.contains(&format!(">{:.3}<", m5.precision)), "{row5}");
    assert!(row5.contains(&format!(">{:.3}<", m5.f1)), "{row5}");
    assert!(row5.contains(&format!("data-v=\"{}\">{}<", m5.support, m5.support)));
    // Concept 5's mistakes go to concept 6 (every 7th image).
    assert!(row5.contains("concept-006") || m5.recall == 1.0, "{row5}");

    // Escaped in the page; in the script data, `</` cannot close the element.
    assert!(html.contains("a&lt;/script&gt;&lt;b&gt;&amp;&quot;x&quot;"));
    assert!(!html.contains("a</script><b>"));
    let json = between(&html, "id=\"report-data\">", "</script>");
    let data: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(data["concepts"][0], "a</script><b>&\"x\"");
    assert_eq!(
        data["confusion"],
        serde_json::to_value(&metrics.confusion).unwrap()
    );
    let curves = data["curves"].as_array().unwrap();
    assert_eq!(curves.len(), 120);
    for c in curves {
        let roc = c["roc"].as_array().unwrap();
        let pr = c["pr"].as_array().unwrap();
        assert!(roc.len() <= 200 && pr.len() <= 200);
        assert_eq!(roc[0], serde_json::json!([0.0, 0.0]));
        assert_eq!(roc.last().unwrap(), &serde_json::json!([1.0, 1.0]));
        assert_eq!(pr[0], serde_json::json!([0.0, 1.0]));
    }
    assert_eq!(data["curves"][5]["auc"], serde_json::json!(m5.roc_auc));

    // The most confident mistakes, in vct-metrics' order, with path, truth and prediction.
    let losses = between(&html, "id=\"top-losses\"", "</section>");
    assert_eq!(count(losses, "<figure"), 24);
    assert_eq!(count(losses, "<img class=\"thumb\""), 24);
    let first = &errors[0];
    assert!(losses.contains(&format!("data-index=\"{}\"", first.index)));
    let card = between(
        losses,
        &format!("data-index=\"{}\">", first.index),
        "</figure>",
    );
    let path = images[first.index].path.display().to_string();
    assert!(card.contains(&path), "{card}");
    let truth = &metrics.per_concept[first.truth[0]].concept;
    let predicted = &metrics.per_concept[first.predicted[0]].concept;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    assert!(
        card.contains(&esc(truth)) && card.contains(&esc(predicted)),
        "{card}"
    );
    assert!(card.contains(&format!("{:.3}", first.confidence)));

    // Calibration bins are metrics.json's.
    let cal = metrics.calibration.as_ref().unwrap();
    let cal_table = between(&html, "id=\"calibration-table\"", "</table>");
    assert_eq!(count(cal_table, "<tr><td>"), cal.bins.len());
    assert!(html.contains(&format!("{:.4}", cal.expected_calibration_error)));
}

#[test]
fn multi_label_report_shows_thresholds_and_missing_previews() {
    let tmp = tempfile::tempdir().unwrap();
    let names = vec!["sky".to_string(), "sea".to_string(), "sand".to_string()];
    let mut acc = MetricsAccumulator::new(names, true);
    let mut images = Vec::new();
    for i in 0..12 {
        let hot = [(i % 2) as f32, (i % 3 == 0) as u8 as f32, 0.0];
        let p = [
            0.3 + 0.4 * hot[0] + 0.02 * i as f32,
            0.6 - 0.3 * hot[1],
            0.1,
        ];
        acc.add(&p, Labels::MultiHot(&hot)).unwrap();
        let labels = (0..3).filter(|&j| hot[j] > 0.5).collect();
        // Image 5's file is missing: its card says so instead of failing.
        let path = if i == 5 {
            tmp.path().join("gone.jpg")
        } else {
            png(tmp.path(), i, 64, 64)
        };
        images.push(ImageRecord {
            path,
            labels,
            probabilities: p.to_vec(),
        });
    }
    let metrics = acc.finish();
    let errors = acc.confident_errors(100);
    assert!(errors.iter().any(|e| e.index == 5));
    let eval = Evaluation {
        name: "validation".into(),
        metrics: metrics.clone(),
        images,
    };
    let html = render(&input(Some(eval)), &ReportOptions::default()).unwrap();
    check_self_contained(&html);
    let table = between(&html, "id=\"threshold-table\"", "</table>");
    let sky = metrics.per_concept[0].best_f1.unwrap();
    assert!(
        table.contains(&format!(">{:.4}<", sky.threshold)),
        "{table}"
    );
    assert!(table.contains(&format!(">{:.3}<", sky.f1)));
    // "sand" never occurs: no threshold.
    assert!(table.contains("no positive images"));
    assert!(!html.contains("id=\"confusion-canvas\""));
    let losses = between(&html, "id=\"top-losses\"", "</section>");
    assert_eq!(count(losses, "<figure"), errors.len());
    assert!(losses.contains("no preview:"), "{losses}");
    assert!(losses.contains("gone.jpg"));
    let data: serde_json::Value =
        serde_json::from_str(between(&html, "id=\"report-data\">", "</script>")).unwrap();
    assert_eq!(data["multi_label"], true);
    assert!(data["confusion"].is_null());
    assert!(data["curves"][2]["pr"].is_null() && data["curves"][0]["best"].is_array());
}

#[test]
fn a_run_without_validation_still_reports_its_training() {
    let html = render(&input(None), &ReportOptions::default()).unwrap();
    check_self_contained(&html);
    assert!(html.contains("id=\"loss-chart\"") && html.contains("id=\"lr-chart\""));
    assert!(html.contains("no validation set"));
    assert!(!html.contains("id=\"report-data\""));
    // The per-step loss line has a point per step: 12 segments' worth of path.
    let chart = between(&html, "id=\"loss-chart\"", "</svg>");
    let step_line = between(chart, "<path class=\"line\" d=\"", "\"");
    assert_eq!(count(step_line, "L"), 11);
}

#[test]
fn a_long_run_s_step_curve_is_averaged_down() {
    let mut inp = input(None);
    // 30 000 steps of loss 1 then 3 alternating: 1500 means of 2.
    inp.steps = (1..=30_000)
        .map(|s| StepRow {
            epoch: (s - 1) / 10_000 + 1,
            step: s,
            loss: Some(if s % 2 == 0 { 3.0 } else { 1.0 }),
            lr: 0.1,
        })
        .collect();
    let html = render(&inp, &ReportOptions::default()).unwrap();
    let chart = between(&html, "id=\"loss-chart\"", "</svg>");
    let step_line = between(chart, "<path class=\"line\" d=\"", "\"");
    assert_eq!(count(step_line, "L"), 1499);
    // Every mean is 2: one y coordinate for the whole line.
    let ys: std::collections::HashSet<&str> = step_line
        .split(['M', 'L'])
        .filter(|p| !p.is_empty())
        .map(|p| p.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(ys.len(), 1, "{ys:?}");
}

#[test]
fn records_that_do_not_fit_the_metrics_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut images, metrics) = single_label(tmp.path(), 3, 6);
    images[2].probabilities.pop();
    let eval = Evaluation {
        name: "val".into(),
        metrics: metrics.clone(),
        images: images.clone(),
    };
    let err = render(&input(Some(eval)), &ReportOptions::default()).unwrap_err();
    assert!(matches!(err, ReportError::BadImage { .. }));
    let text = err.to_string();
    assert!(
        text.contains("img0002.png")
            && text.contains("2 probabilities, expected one per concept (3)"),
        "{text}"
    );
    images[2].probabilities.push(0.1);
    images[3].labels = vec![0, 1];
    let eval = Evaluation {
        name: "val".into(),
        metrics,
        images,
    };
    let text = render(&input(Some(eval)), &ReportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("img0003.png") && text.contains("2 true concepts"),
        "{text}"
    );
}

/// `$VCT_CHROMIUM`, else the first of the usual names on PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("VCT_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| {
            std::env::split_paths(&path)
                .map(|d| d.join(n))
                .find(|p| p.is_file())
        })
        .expect("no Chromium found: install Debian's chromium or set VCT_CHROMIUM")
}

#[test]
#[ignore = "needs Chromium (Debian's chromium; .ci/run installs it)"]
fn browser_report_at_120_concepts_draws_every_view() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, metrics) = single_label(tmp.path(), 120, 360);
    let eval = Evaluation {
        name: "synthetic".into(),
        metrics,
        images,
    };
    let html = render(&input(Some(eval)), &ReportOptions::default()).unwrap();
    let page = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-120-concepts.html");
    std::fs::write(&page, &html).unwrap();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2000",
            "--dump-dom",
        ])
        .arg(format!("file://{}#check", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "{console:#?}");
    assert!(dom.contains("data-report-ready=\"yes\""));
    // 5 orders × 2 scales of the heat map, 120 concepts' curves, every sortable column.
    let views = 10 + 120 + count(&html, "data-sort=");
    assert!(
        dom.contains(&format!("data-report-checked=\"{views}\"")),
        "expected {views} views"
    );
    assert!(dom.contains("data-concepts=\"120\""));
    eprintln!(
        "120 concepts: {} KB, every view drawn in {:.1}s (browser start included)",
        html.len() / 1024,
        started.elapsed().as_secs_f64()
    );
}
