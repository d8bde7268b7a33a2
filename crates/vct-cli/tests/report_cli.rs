//! `train` writes `report.html` and TensorBoard event files, `eval --report` writes a
//! report, on a tiny generated data set; the report in headless Chromium and the event
//! files in TensorBoard's own reader (ignored tests, run by `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode};

use clap::Parser;
use vct_tensorboard::{event, event_files, read_events};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: vct_cli::Command,
}

fn vct(tmp: &Path, args: &[&str]) {
    let cli = Cli::try_parse_from(std::iter::once("vct").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let ctx = vct_cli::Context {
        runs: tmp.join("runs"),
        demo_data: tmp.join("demo"),
        prog: "vct".into(),
    };
    let code = vct_cli::run(cli.command, &ctx).unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
    assert_eq!(code, ExitCode::SUCCESS, "{args:?}");
}

/// 4 concepts, 16 training and 8 validation images (multi-label: a manifest).
fn data(tmp: &Path, multi: bool) -> PathBuf {
    let cfg = vct_data::demo::DemoConfig {
        seed: 3,
        size: 40,
        train_per_class: 4,
        val_per_class: 2,
    };
    let root = tmp.join(if multi { "multi" } else { "single" });
    if multi {
        vct_data::demo::generate_multilabel(&root, &cfg).unwrap();
    } else {
        vct_data::demo::generate(&root, &cfg).unwrap();
    }
    root
}

/// Trains Inception-v2 at 32 px, batch 8 (2 steps per epoch), for `epochs`.
fn train(tmp: &Path, multi: bool, epochs: usize) -> PathBuf {
    let data = data(tmp, multi);
    let out = tmp.join(if multi { "run-multi" } else { "run" });
    let epochs = format!("num_epochs={epochs}");
    vct(
        tmp,
        &[
            "train",
            "--template",
            "clarifai_inceptionv2",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--set",
            "image_size=32",
            "--set",
            "batch_size=8",
            "--set",
            &epochs,
            "--set",
            if multi { "logreg=1" } else { "logreg=0" },
            "--plain",
        ],
    );
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The page's embedded script data.
fn page_data(html: &str) -> serde_json::Value {
    let start = "id=\"report-data\">";
    let a = html.find(start).unwrap() + start.len();
    let b = html[a..].find("</script>").unwrap() + a;
    serde_json::from_str(&html[a..b]).unwrap()
}

/// `events.jsonl`'s (step, loss) and (epoch, val_top1) pairs.
type Logged = (Vec<(i64, f64)>, Vec<(usize, f64)>);

fn logged(out: &Path) -> Logged {
    let text = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    let mut steps = Vec::new();
    let mut epochs = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v["event"].as_str() {
            Some("step") => steps.push((v["step"].as_i64().unwrap(), v["loss"].as_f64().unwrap())),
            Some("epoch") => epochs.push((
                v["epoch"].as_u64().unwrap() as usize,
                v["val_top1"].as_f64().unwrap(),
            )),
            _ => {}
        }
    }
    (steps, epochs)
}

/// Every scalar of the run's TensorBoard files, in file order: (tag, step, value).
fn tensorboard_scalars(dir: &Path) -> Vec<(String, i64, f32)> {
    let mut out = Vec::new();
    for f in event_files(dir).unwrap() {
        for e in read_events(&f).unwrap() {
            for (tag, v) in e.scalars() {
                out.push((tag.to_string(), e.step, v));
            }
        }
    }
    out
}

fn series(scalars: &[(String, i64, f32)], tag: &str) -> Vec<(i64, f32)> {
    scalars
        .iter()
        .filter(|s| s.0 == tag)
        .map(|s| (s.1, s.2))
        .collect()
}

#[test]
fn train_writes_a_report_and_tensorboard_logs_and_eval_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let out = train(tmp.path(), false, 2);

    // report.html: the best model on the validation set, as metrics.json says.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let metrics = json(&out.join("metrics.json"));
    for id in [
        "summary",
        "hparams-table",
        "loss-chart",
        "lr-chart",
        "concept-table",
        "confusion-canvas",
        "pr-chart",
        "calibration-chart",
        "top-losses",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "#{id} missing");
    }
    assert!(!html.contains("src=\"http") && !html.contains("<link"));
    let data = page_data(&html);
    assert_eq!(data["concepts"].as_array().unwrap().len(), 4);
    assert_eq!(data["confusion"], metrics["confusion"]);
    assert!(html.contains(&format!(
        "{:.1}%",
        100.0 * metrics["top1"].as_f64().unwrap()
    )));
    // A card per wrong validation image (at most 24), each with a real file's thumbnail.
    let confusion = metrics["confusion"].as_array().unwrap();
    let wrong: u64 = (0..4)
        .flat_map(|i| (0..4).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| confusion[i][j].as_u64().unwrap())
        .sum();
    assert_eq!(html.matches("<figure").count() as u64, wrong.min(24));
    assert_eq!(
        html.matches("data:image/jpeg;base64,").count() as u64,
        wrong.min(24)
    );
    // The hyperparameters the run used, and the training curves from events.jsonl.
    assert!(
        html.contains("<th>image_size</th><td>32</td>"),
        "hyperparameters"
    );
    let (steps, epochs) = logged(&out);
    assert_eq!((steps.len(), epochs.len()), (4, 2));
    let at = html.find("id=\"epoch-table\"").unwrap();
    let table = &html[at..at + html[at..].find("</table>").unwrap()];
    assert_eq!(table.matches("<tr><td>").count(), 2);

    // TensorBoard: one file, every step's loss and lr, each epoch's validation metrics
    // at the epoch's last step — the values events.jsonl holds.
    let tb = out.join("tensorboard");
    assert_eq!(event_files(&tb).unwrap().len(), 1);
    let scalars = tensorboard_scalars(&tb);
    let loss = series(&scalars, "train/loss");
    assert_eq!(loss.len(), 4);
    for ((s, l), (step, value)) in steps.iter().zip(&loss) {
        assert_eq!(s, step);
        assert_eq!(*l as f32, *value);
    }
    assert_eq!(series(&scalars, "train/lr").len(), 4);
    let top1 = series(&scalars, "val/top1");
    assert_eq!(
        top1,
        epochs
            .iter()
            .map(|(e, v)| (2 * *e as i64, *v as f32))
            .collect::<Vec<_>>()
    );
    for tag in [
        "val/loss",
        "val/macro_f1",
        "val/expected_calibration_error",
        "train/epoch_loss",
    ] {
        assert_eq!(series(&scalars, tag).len(), 2, "{tag}");
    }

    // A resumed run logs into a second file that starts with a restart at step 5.
    vct(
        tmp.path(),
        &[
            "train",
            "--resume",
            out.to_str().unwrap(),
            "--set",
            "num_epochs=3",
            "--plain",
        ],
    );
    let files = event_files(&tb).unwrap();
    assert_eq!(files.len(), 2);
    let second = read_events(&files[1]).unwrap();
    assert!(matches!(&second[1].what, Some(event::What::SessionLog(s)) if s.status == 1));
    assert_eq!(second[1].step, 5);
    let loss = series(&tensorboard_scalars(&tb), "train/loss");
    assert_eq!(
        loss.iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );

    // eval --report without --data: the run's own validation set.
    let report = tmp.path().join("eval-report.html");
    vct(
        tmp.path(),
        &[
            "eval",
            "--model",
            out.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let html = std::fs::read_to_string(&report).unwrap();
    let evaluated = json(&out.join("eval/metrics.json"));
    assert_eq!(page_data(&html)["confusion"], evaluated["confusion"]);
    assert_eq!(evaluated["count"], 8);
    assert!(html.contains("the validation set of"));

    // --no-tensorboard and --tensorboard exclude each other.
    assert!(
        Cli::try_parse_from(["vct", "train", "--tensorboard", "x", "--no-tensorboard"]).is_err()
    );
}

/// The Chromium binary: `$VCT_CHROMIUM`, else the first of the usual names on PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("VCT_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        if let Some(dir) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .find(|d| d.join(name).is_file())
        {
            return dir.join(name);
        }
    }
    panic!("no Chromium found: install Debian's chromium or set VCT_CHROMIUM");
}

/// Runs headless Chromium on `page` (with `fragment`, e.g. `#check`) with `args`;
/// returns (stdout, stderr).
fn headless(page: &Path, fragment: &str, args: &[&str]) -> (String, String) {
    let url = format!(
        "file://{}{fragment}",
        page.canonicalize().unwrap().display()
    );
    let out = Process::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            // Console messages (and uncaught errors) go to stderr as `CONSOLE` lines.
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .args(args)
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The DOM after the page's script ran (and, with `#check`, drew every view once): no
/// console output, no recorded error, and the parts the script builds are there.
fn check_in_browser(report: &Path, multi: bool, shot: &Path) {
    let html = std::fs::read_to_string(report).unwrap();
    let concepts = page_data(&html)["concepts"].as_array().unwrap().len();
    let (dom, log) = headless(report, "#check", &["--dump-dom"]);
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(
        dom.contains("data-report-ready=\"yes\""),
        "the script did not finish"
    );
    assert!(
        dom.contains("<pre id=\"report-errors\" hidden=\"\"></pre>"),
        "errors recorded on the page"
    );
    // Built by the script: the curve selector's options and both charts' SVGs.
    let select = &dom[dom.find("id=\"curve-concept\"").unwrap()..];
    let select = &select[..select.find("</select>").unwrap()];
    assert_eq!(select.matches("<option").count(), concepts, "{select}");
    for chart in ["pr-chart", "roc-chart"] {
        let at = dom.find(&format!("id=\"{chart}\"")).unwrap();
        let part = &dom[at..at + 4000.min(dom.len() - at)];
        // PR needs a positive image; every concept of these data sets has some.
        assert!(
            part.contains("<svg") && part.contains("class=\"line curve\""),
            "{chart}"
        );
    }
    // Every heat-map order × scale (5 × 2, single-label), every concept's curves, and
    // every sortable column (clicked twice) were drawn.
    let views = if multi { 0 } else { 10 } + concepts + html.matches("data-sort=").count();
    assert!(
        dom.contains(&format!("data-report-checked=\"{views}\"")),
        "self-check: expected {views} views"
    );
    assert!(dom.contains("aria-sort=\"descending\""), "sorted headers");
    if multi {
        assert!(dom.contains("id=\"threshold-table\""));
        assert!(!dom.contains("id=\"confusion-canvas\""));
    } else {
        // The heat map was drawn for every concept.
        assert!(
            dom.contains(&format!("data-concepts=\"{concepts}\"")),
            "heat map not drawn"
        );
    }
    let shot_arg = format!("--screenshot={}", shot.display());
    let _ = std::fs::remove_file(shot);
    let (_, log) = headless(report, "", &[&shot_arg, "--window-size=1280,3000"]);
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let bytes = std::fs::metadata(shot).unwrap().len();
    let img = image::open(shot).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1280, 3000));
    // Not a blank page: many distinct colours (text, charts, thumbnails).
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(
        bytes > 50_000 && colours.len() > 200,
        "{bytes} bytes, {} colours",
        colours.len()
    );
    eprintln!("screenshot {} ({bytes} bytes)", shot.display());
}

#[test]
#[ignore = "needs Chromium (Debian's chromium; .ci/run installs it)"]
fn browser_report_of_a_trained_run_renders_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let single = train(tmp.path(), false, 2);
    // Kept beside the screenshots, for a person to look at after CI.
    std::fs::copy(
        single.join("report.html"),
        shots.join("report-single-label.html"),
    )
    .unwrap();
    check_in_browser(
        &single.join("report.html"),
        false,
        &shots.join("report-single-label.png"),
    );
    let multi = train(tmp.path(), true, 2);
    std::fs::copy(
        multi.join("report.html"),
        shots.join("report-multi-label.html"),
    )
    .unwrap();
    check_in_browser(
        &multi.join("report.html"),
        true,
        &shots.join("report-multi-label.png"),
    );
}

#[test]
#[ignore = "needs Python with tensorboard ($VCT_TEST_PYTHON); .ci/run sets up a venv"]
fn python_tensorboard_reads_a_training_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = train(tmp.path(), false, 2);
    vct(
        tmp.path(),
        &[
            "train",
            "--resume",
            out.to_str().unwrap(),
            "--set",
            "num_epochs=3",
            "--plain",
        ],
    );
    let python = std::env::var("VCT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0})
acc.Reload()
print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
"#;
    let res = Process::new(&python)
        .args(["-c", script])
        .arg(out.join("tensorboard"))
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    let (steps, epochs) = logged(&out);
    let loss: Vec<(i64, f64)> = got["train/loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    assert_eq!(loss.len(), 6);
    for ((s, l), (step, value)) in steps.iter().zip(&loss) {
        assert_eq!(s, step);
        // As f32: serde_json's default parser may be an ulp off in f64.
        assert_eq!(*l as f32, *value as f32);
    }
    let top1: Vec<(i64, f32)> = got["val/top1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap() as f32))
        .collect();
    assert_eq!(
        top1,
        epochs
            .iter()
            .map(|(e, v)| (2 * *e as i64, *v as f32))
            .collect::<Vec<_>>()
    );
    assert_eq!(got["train/lr"].as_array().unwrap().len(), 6);
}

/// Real photos: `train` on `../shared/data/hymenoptera_data` (ants vs bees, 244 + 153
/// JPEGs of many sizes) writes a report whose thumbnails are those photos and which
/// renders in Chromium, and TensorBoard files with every step's loss.
#[test]
#[ignore = "needs ../shared/data and Chromium (.ci/run installs it)"]
fn shared_data_report_and_tensorboard_of_hymenoptera() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/hymenoptera_data");
    assert!(data.is_dir(), "{} is missing", data.display());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    vct(
        tmp.path(),
        &[
            "train",
            "--template",
            "Clarifai_InceptionV2",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--set",
            "image_size=48",
            "--set",
            "batch_size=32",
            "--set",
            "num_epochs=1",
            "--set",
            "logreg=0",
            "--plain",
        ],
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let page = page_data(&html);
    assert_eq!(page["concepts"], serde_json::json!(["ants", "bees"]));
    let metrics = json(&out.join("metrics.json"));
    assert_eq!(page["confusion"], metrics["confusion"]);
    let support: u64 = metrics["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(
        support, 153,
        "every validation photo is in the confusion matrix"
    );
    assert!(html.contains("data:image/jpeg;base64,"), "thumbnails");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::copy(
        out.join("report.html"),
        shots.join("report-hymenoptera.html"),
    )
    .unwrap();
    check_in_browser(
        &out.join("report.html"),
        false,
        &shots.join("report-hymenoptera.png"),
    );
    let (steps, _) = logged(&out);
    let loss = series(&tensorboard_scalars(&out.join("tensorboard")), "train/loss");
    assert_eq!(loss.len(), steps.len());
    assert_eq!(steps.len(), 244_usize.div_ceil(32));
}
