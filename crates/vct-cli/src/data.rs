//! `data check DIR`: what is wrong with a dataset before training, as a table for
//! people or `--json` for tools (the shape of [`vct_data::check::CheckReport`]).
//! The checks live in `vct_data::check`; this module parses the flags and prints.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use vct_data::check::{CheckOptions, CheckReport, Finding, Severity, SplitPath};
use vct_hparams::{HyperParams, Template};

/// Arguments of `data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

/// The `data` commands.
#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Find problems in a dataset before training: files that do not decode,
    /// empty and non-image files, small and EXIF-rotated images, exact and near
    /// duplicates (train/val leakage, one image in two concepts), concept counts,
    /// empty concept folders, multi-label statistics. Exit code 1 on errors.
    Check(CheckArgs),
}

/// Arguments of `data check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The dataset: a folder `root/<concept>/<image>` (or with `train/` and `val/`
    /// inside), a CSV / JSONL manifest (or a folder with `train.csv` / `val.csv`),
    /// or CIFAR-10 binaries.
    dir: PathBuf,
    /// A validation set to check beside DIR (folder or manifest), as `train --val`.
    #[arg(long)]
    val: Option<PathBuf>,
    /// Compare image sizes with this template's `image_size` (default: 224).
    #[arg(long)]
    template: Option<String>,
    /// Hyperparameter file whose `image_size` counts (with --template).
    #[arg(long, requires = "template")]
    params: Option<PathBuf>,
    /// Override a hyperparameter, e.g. `--set image_size=320` (with --template).
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "template")]
    sets: Vec<String>,
    /// The input size to compare with, overriding the template's.
    #[arg(long, value_name = "PIXELS")]
    min_size: Option<u32>,
    /// Headers and content hashes only: no pixel decode, no near duplicates (fast).
    #[arg(long)]
    quick: bool,
    /// Near-duplicate threshold: perceptual-hash distance out of 256 bits (0: off).
    #[arg(long, value_name = "BITS", default_value_t = vct_data::check::DEFAULT_NEAR_DISTANCE)]
    near_distance: u32,
    /// Warn about training concepts with fewer images.
    #[arg(long, default_value_t = 10)]
    min_images: usize,
    /// Warn when the largest training concept has more than this many times the
    /// images of the smallest.
    #[arg(long, default_value_t = 100.0)]
    max_imbalance: f64,
    /// Decoding threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the report as JSON (one object; see the vct-data README for its fields).
    #[arg(long)]
    json: bool,
    /// List every finding and concept (the table shows 10 findings of each kind
    /// and 40 concepts).
    #[arg(long)]
    all: bool,
}

/// Runs a `data` command.
pub fn run(args: DataArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DataCommand::Check(a) => check(a),
    }
}

/// The options the flags ask for.
fn options(args: &CheckArgs) -> anyhow::Result<CheckOptions> {
    let mut opts = if args.quick {
        CheckOptions::quick()
    } else {
        CheckOptions::full()
    };
    if let Some(name) = &args.template {
        let t: Template = name.parse()?;
        let hp = HyperParams::defaults(t).layered(args.params.as_deref(), &args.sets)?;
        opts.min_size = u32::try_from(hp.image_size()).unwrap_or(u32::MAX);
        opts.min_size_from = format!("{} image_size", t.name());
    }
    if let Some(s) = args.min_size {
        opts.min_size = s;
        opts.min_size_from = "--min-size".into();
    }
    if !args.quick {
        opts.near_duplicate_distance = (args.near_distance > 0).then_some(args.near_distance);
    }
    if !(args.max_imbalance.is_finite() && args.max_imbalance >= 1.0) {
        anyhow::bail!(
            "--max-imbalance {}: expected a ratio of at least 1",
            args.max_imbalance
        );
    }
    opts.min_images = args.min_images;
    opts.max_imbalance = args.max_imbalance;
    opts.threads = args.threads;
    Ok(opts)
}

/// Runs `data check`: exit code 1 when the report has errors.
pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let opts = options(&args)?;
    let report = match &args.val {
        None => vct_data::check::check(&args.dir, &opts),
        Some(val) => {
            let (_, found) = vct_data::check::find_check_splits(&args.dir)?;
            let train = found
                .into_iter()
                .find(|s| s.name == "train" || s.name == "data")
                .map(|s| s.path)
                .unwrap_or_else(|| args.dir.clone());
            let splits = [SplitPath::new("train", train), SplitPath::new("val", val)];
            vct_data::check::check_splits(&args.dir, "splits", &splits, &opts)
        }
    }
    .with_context(|| format!("checking {}", args.dir.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report, args.all));
    }
    Ok(if report.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The report for people: splits, concept counts, then errors and warnings.
pub fn table(report: &CheckReport, all: bool) -> String {
    let mut out = String::new();
    let o = &report.options;
    let _ = writeln!(
        out,
        "data check of {} ({}): {}; input size {} ({}), {:.1} s",
        report.root.display(),
        report.layout.replace('_', " "),
        if o.decode {
            "every image decoded"
        } else {
            "headers only (--quick)"
        },
        o.min_size,
        o.min_size_from,
        report.seconds
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<6} {:>7} {:>7} {:>8} {:>13} {:>21} {:>6} {:>5}  colour modes",
        "split",
        "files",
        "usable",
        "concepts",
        "labels/image",
        "size (w×h, min–max)",
        "small",
        "exif"
    );
    for s in &report.splits {
        let labels = s
            .labels
            .as_ref()
            .map(|l| {
                if l.multi_label {
                    format!(
                        "{:.2} ({}–{})",
                        l.mean_per_image, l.min_per_image, l.max_per_image
                    )
                } else {
                    "1".into()
                }
            })
            .unwrap_or_else(|| "-".into());
        let seen = s.concepts.iter().filter(|c| c.count > 0).count();
        let size = s
            .sizes
            .map(|z| {
                format!(
                    "{}–{} × {}–{}",
                    z.width.min, z.width.max, z.height.min, z.height.max
                )
            })
            .unwrap_or_else(|| "-".into());
        let modes: Vec<String> = s
            .color_modes
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "{:<6} {:>7} {:>7} {:>8} {:>13} {:>21} {:>6} {:>5}  {}",
            s.name,
            s.files,
            s.usable,
            seen,
            labels,
            size,
            s.small,
            s.exif_rotated,
            modes.join(", ")
        );
    }
    for s in &report.splits {
        if let Some(l) = s.labels.as_ref().filter(|l| l.multi_label) {
            let hist: Vec<String> = l
                .histogram
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(k, n)| format!("{k}:{n}"))
                .collect();
            let _ = writeln!(
                out,
                "{}: multi-label; images by concepts per image {}; {} of {} concepts seen{}",
                s.name,
                hist.join(" "),
                l.concepts_seen,
                report.concepts.len(),
                if l.never_seen.is_empty() {
                    String::new()
                } else {
                    format!(", never seen: {}", list(&l.never_seen, 12, all))
                }
            );
        }
    }

    // Concepts × splits.
    let _ = writeln!(out);
    let width = report
        .concepts
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(7)
        .clamp(7, 40);
    let mut head = format!("{:<width$}", "concept");
    for s in &report.splits {
        let _ = write!(head, " {:>7}", s.name);
    }
    let _ = writeln!(out, "{head}");
    let shown = if all { usize::MAX } else { 40 };
    for (ci, c) in report.concepts.iter().enumerate().take(shown) {
        let mut row = format!("{c:<width$}");
        for s in &report.splits {
            let n = s.concepts.get(ci).map(|x| x.count).unwrap_or(0);
            let _ = write!(row, " {n:>7}");
        }
        let _ = writeln!(out, "{row}");
    }
    if report.concepts.len() > shown {
        let _ = writeln!(
            out,
            "... and {} more concepts (--all)",
            report.concepts.len() - shown
        );
    }

    for (severity, title) in [(Severity::Error, "errors"), (Severity::Warning, "warnings")] {
        let of: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.severity == severity)
            .collect();
        if of.is_empty() {
            continue;
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{title} ({}):", of.len());
        // Grouped by kind, in order of first appearance.
        let mut kinds: Vec<&str> = Vec::new();
        for f in &of {
            if !kinds.contains(&f.problem.kind()) {
                kinds.push(f.problem.kind());
            }
        }
        for kind in kinds {
            let these: Vec<&&Finding> = of.iter().filter(|f| f.problem.kind() == kind).collect();
            let limit = if all { usize::MAX } else { 10 };
            for f in these.iter().take(limit) {
                let _ = writeln!(out, "  {kind:<16} {}", f.message);
            }
            if these.len() > limit {
                let _ = writeln!(
                    out,
                    "  {kind:<16} ... and {} more (--all or --json)",
                    these.len() - limit
                );
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} error{}, {} warning{}{}",
        report.errors,
        if report.errors == 1 { "" } else { "s" },
        report.warnings,
        if report.warnings == 1 { "" } else { "s" },
        if report.has_errors() {
            " (exit code 1)"
        } else {
            ""
        }
    );
    out
}

fn list(items: &[String], n: usize, all: bool) -> String {
    if all || items.len() <= n {
        items.join(", ")
    } else {
        format!("{}, ... ({} more)", items[..n].join(", "), items.len() - n)
    }
}

/// The cheap check `train` runs first (headers, content hashes, counts; no decode),
/// with the run's `image_size`, printed to stderr one line per finding, at most
/// `limit` per kind.
pub fn precheck(
    splits: &[SplitPath],
    root: &Path,
    image_size: u32,
    prog: &str,
    limit: usize,
) -> Option<CheckReport> {
    let mut opts = CheckOptions::quick();
    opts.min_size = image_size;
    opts.min_size_from = "image_size".into();
    let report = match vct_data::check::check_splits(root, "splits", splits, &opts) {
        Ok(r) => r,
        // Training itself names what it cannot open.
        Err(_) => return None,
    };
    if report.findings.is_empty() {
        eprintln!(
            "data check: no problems found in {} files ({:.1} s)",
            report.splits.iter().map(|s| s.files).sum::<usize>(),
            report.seconds
        );
        return Some(report);
    }
    eprintln!(
        "data check: {} error{}, {} warning{} ({:.1} s; `{prog} data check {}` also decodes every image and finds near duplicates):",
        report.errors,
        if report.errors == 1 { "" } else { "s" },
        report.warnings,
        if report.warnings == 1 { "" } else { "s" },
        report.seconds,
        root.display()
    );
    let mut shown: Vec<(&str, usize)> = Vec::new();
    for f in &report.findings {
        let kind = f.problem.kind();
        let n = match shown.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                shown.push((kind, 1));
                1
            }
        };
        if n <= limit {
            let level = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            eprintln!("  {level}: {}", f.message);
        } else if n == limit + 1 {
            let total = report.of_kind(kind).count();
            eprintln!("  ... {} more {kind}", total - limit);
        }
    }
    Some(report)
}
