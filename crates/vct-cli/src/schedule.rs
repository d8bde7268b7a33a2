//! `cargo xtask schedule`: the learning-rate curve a template's hyperparameters
//! produce — key points printed, the whole curve drawn as an SVG — so a user sees
//! the warmup and decay they chose before training.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use plotters::prelude::*;
use vct_hparams::{HyperParams, Template};
use vct_sched::{Curve, LrSchedule, Schedule, WarmupStyle};
use vct_train::recipe::schedule_for;

/// Arguments of `cargo xtask schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The template (any case).
    template: String,
    /// A hyperparameter file (JSON, YAML or TOML); default: the template's defaults.
    #[arg(long)]
    params: Option<PathBuf>,
    /// Override one key, e.g. `--set num_epochs=10` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Optimisation steps per epoch (images per epoch / batch size, rounded up).
    #[arg(long, conflicts_with = "dataset_size")]
    steps_per_epoch: Option<usize>,
    /// Number of training images; steps per epoch follow from batch_size and
    /// num_items_per_epoch.
    #[arg(long)]
    dataset_size: Option<usize>,
    /// Warmup convention of the RSB-A1 cosine schedule.
    #[arg(long, value_enum, default_value_t = Style::Mmengine)]
    style: Style,
    /// Write the curve as an SVG plot here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `--style` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Style {
    /// Cosine begins after the warmup (mmengine / mmpretrain 1.x).
    Mmengine,
    /// Warmup multiplies a cosine that starts at step 0 (mmcv 1.x).
    Mmcv1,
}

/// Steps per epoch used when neither `--steps-per-epoch` nor `--dataset-size` is given.
const DEFAULT_STEPS_PER_EPOCH: usize = 100;

/// Prints the key points of a template's schedule and optionally plots it.
pub fn schedule(args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    let template: Template = args.template.parse()?;
    let mut hp = match &args.params {
        Some(path) => HyperParams::load(path, Some(template))?,
        None => HyperParams::defaults(template),
    };
    if hp.template() != template {
        bail!(
            "{} holds hyperparameters of {}, not {}",
            args.params
                .as_deref()
                .map_or("the params file".into(), |p| p.display().to_string()),
            hp.template(),
            template
        );
    }
    for assignment in &args.sets {
        hp = hp.with_override(assignment)?;
    }
    let (steps_per_epoch, origin) = match (args.steps_per_epoch, args.dataset_size) {
        (Some(n), _) => (n, "--steps-per-epoch".to_string()),
        (None, Some(images)) => (
            hp.steps_per_epoch(images),
            format!(
                "{} images per epoch / batch_size {}",
                hp.items_per_epoch(images),
                hp.batch_size()
            ),
        ),
        (None, None) => (
            DEFAULT_STEPS_PER_EPOCH,
            "default; pass --steps-per-epoch or --dataset-size".to_string(),
        ),
    };
    let style = match args.style {
        Style::Mmengine => WarmupStyle::Mmengine,
        Style::Mmcv1 => WarmupStyle::Mmcv1,
    };
    let schedule =
        schedule_for(&hp, steps_per_epoch, style).with_context(|| match &args.params {
            Some(path) => format!("{}", path.display()),
            None => format!("{template} defaults"),
        })?;
    print!("{}", describe(template, &schedule, &origin));
    if let Some(out) = &args.out {
        plot(template, &schedule, out)?;
        println!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The printed report: what the curve is, then its key points as a table.
fn describe(template: Template, schedule: &Schedule, origin: &str) -> String {
    let mut text = format!(
        "{template}: {}\n{} steps = {} epochs × {} steps per epoch ({origin})\n",
        template.info().schedule,
        schedule.total_steps,
        schedule.total_steps / schedule.steps_per_epoch,
        schedule.steps_per_epoch,
    );
    match &schedule.curve {
        Curve::WarmupCosine(c) if c.warmup_iters == 0 => text.push_str(&format!(
            "no warmup, cosine {:.3e} → {:.3e}\n",
            c.lr, c.min_lr
        )),
        Curve::WarmupCosine(c) => text.push_str(&format!(
            "warmup {} steps from {:.3e} ({:?} convention), cosine {:.3e} → {:.3e}\n",
            c.warmup_iters,
            c.lr * c.warmup_ratio,
            c.style,
            c.lr,
            c.min_lr
        )),
        Curve::Step(c) => text.push_str(&format!(
            "{:.3e} for {} epochs, then × {} every {} epochs\n",
            c.lr, c.init_epochs, c.gamma, c.step_epochs
        )),
        Curve::Constant(c) => text.push_str(&format!("constant {:.3e}\n", c.lr)),
    }
    for g in &schedule.groups {
        text.push_str(&format!(
            "group {}: lr × {} = {:.3e}\n",
            g.name,
            g.multiplier,
            schedule.lr(0) * g.multiplier
        ));
    }
    text.push_str(&format!(
        "\n{:>8} {:>6} {:>12}  point\n",
        "step", "epoch", "lr"
    ));
    for p in schedule.key_points() {
        text.push_str(&format!(
            "{:>8} {:>6} {:>12.4e}  {}\n",
            p.step,
            p.step / schedule.steps_per_epoch + 1,
            p.lr,
            p.label
        ));
    }
    text
}

/// Draws the curve (and each group's scaled curve) with labelled axes; a log
/// lr axis when a step decay or a group multiplier spans more than two decades
/// (a warmup + cosine stays linear, so its shape reads as it is).
fn plot(template: Template, schedule: &Schedule, out: &Path) -> anyhow::Result<()> {
    match out.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("svg") => {}
        _ => bail!(
            "--out {}: expected a .svg file (the plot is written as SVG)",
            out.display()
        ),
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut series: Vec<(String, Vec<f64>)> = vec![("base lr".into(), schedule.curve_points())];
    for g in &schedule.groups {
        if g.multiplier != 1.0 && g.multiplier > 0.0 {
            let points = series[0].1.iter().map(|lr| lr * g.multiplier).collect();
            series.push((format!("{} (× {})", g.name, g.multiplier), points));
        }
    }
    let positive = series
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .filter(|&v| v > 0.0);
    let (lo, hi) = positive.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if hi <= 0.0 {
        bail!("the learning rate is 0 at every step: nothing to plot");
    }
    let last = schedule.total_steps.saturating_sub(1).max(1);
    let title = format!("Learning rate: {template}");
    let x_desc = format!("step ({} per epoch)", schedule.steps_per_epoch);
    let root = SVGBackend::new(out, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let colors = [BLUE, RED, GREEN];
    let key_points = schedule.key_points();
    // Two axis types cannot share one code path in plotters: draw each.
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc.as_str())
                .y_desc("learning rate")
                .y_label_formatter(&|v| format!("{v:.1e}"))
                .draw()?;
            for (i, (name, points)) in series.iter().enumerate() {
                let color = colors[i % colors.len()];
                chart
                    .draw_series(LineSeries::new(
                        points
                            .iter()
                            .enumerate()
                            .filter(|(_, &v)| v > 0.0)
                            .map(|(s, &v)| (s, v)),
                        color.stroke_width(2),
                    ))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            chart.draw_series(
                key_points
                    .iter()
                    .filter(|p| p.lr > 0.0)
                    .map(|p| Circle::new((p.step, p.lr), 4, BLACK.filled())),
            )?;
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }};
    }
    let builder = || {
        let mut b = ChartBuilder::on(&root);
        b.caption(&title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80);
        b
    };
    if hi / lo > 100.0 && !matches!(schedule.curve, Curve::WarmupCosine(_)) {
        draw!(builder().build_cartesian_2d(0..last, (lo * 0.8..hi * 1.25).log_scale())?);
    } else {
        draw!(builder().build_cartesian_2d(0..last, 0.0..hi * 1.05)?);
    }
    root.present()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(template: &str, out: Option<PathBuf>) -> ScheduleArgs {
        ScheduleArgs {
            template: template.into(),
            params: None,
            sets: vec![],
            steps_per_epoch: Some(10),
            dataset_size: None,
            style: Style::Mmengine,
            out,
        }
    }

    #[test]
    fn every_template_plots_with_title_and_axes() {
        let dir = tempfile::tempdir().unwrap();
        for template in Template::ALL {
            let out = dir.path().join(format!("{}.svg", template.name()));
            let code = schedule(args(template.name(), Some(out.clone()))).unwrap();
            assert_eq!(code, ExitCode::SUCCESS);
            let svg = std::fs::read_to_string(&out).unwrap();
            assert!(svg.starts_with("<svg"), "{template}");
            assert!(svg.contains(template.name()), "{template}: title");
            assert!(svg.contains("learning rate") && svg.contains("step (10 per epoch)"));
            assert!(svg.contains("<polyline"), "{template}: the curve");
        }
    }

    #[test]
    fn key_points_of_the_rsb_a1_defaults() {
        let hp = HyperParams::defaults(Template::RsbA1);
        let s = schedule_for(&hp, 10, WarmupStyle::Mmengine).unwrap();
        let text = describe(Template::RsbA1, &s, "test");
        assert!(
            text.contains("600 steps = 60 epochs × 10 steps per epoch"),
            "{text}"
        );
        let rows: Vec<&str> = text.lines().filter(|l| l.contains("e-")).collect();
        assert!(text.contains("cosine begins"), "{text}");
        assert!(
            rows.iter().any(|r| r.trim_start().starts_with("99 ")),
            "{text}"
        );
        assert!(text.contains("last step (epoch 60)"), "{text}");
    }

    #[test]
    fn png_output_and_bad_template_are_errors() {
        let err = schedule(args(
            "MMClassification_ResNet_50_RSB_A1",
            Some(PathBuf::from("lr.png")),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("lr.png"), "{err}");
        let err = schedule(args("Clarifai_ResNxt", None)).unwrap_err();
        assert!(err.to_string().contains("Clarifai_ResNext"), "{err}");
    }
}
