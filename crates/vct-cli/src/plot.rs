//! `curves.svg`: training loss, validation loss and accuracy, and the learning
//! rate per epoch, so a person can see at a glance how the run went.

use std::path::PathBuf;

use plotters::prelude::*;
use vct_train::trainer::{Control, EpochContext, EpochPoint, EpochReport, Hook};
use vct_train::TrainError;

/// Rewrites `curves.svg` after every epoch, as a trainer hook.
#[derive(Debug)]
pub struct CurvesHook {
    path: PathBuf,
    title: String,
}

impl CurvesHook {
    /// Plots into `path` under `title`.
    pub fn new(path: PathBuf, title: String) -> Self {
        CurvesHook { path, title }
    }
}

impl Hook for CurvesHook {
    fn on_epoch_end(
        &mut self,
        _e: &EpochReport<'_>,
        ctx: EpochContext<'_>,
    ) -> Result<Control, TrainError> {
        let svg = curves_svg(&self.title, &ctx.state.history)
            .map_err(|e| TrainError::Component(format!("plot: {e}")))?;
        vct_train::outputs::write_atomic(&self.path, svg.as_bytes())?;
        Ok(Control::Continue)
    }
}

/// Renders the curves as an SVG document.
pub fn curves_svg(title: &str, points: &[EpochPoint]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| e.to_string())?;
        let panels = root.split_evenly((3, 1));
        let last = points.last().map(|p| p.epoch).unwrap_or(1).max(1) as f64;
        let x_range = 0.0..last + 0.5;

        let losses: Vec<f64> = points
            .iter()
            .flat_map(|p| std::iter::once(p.train_loss).chain(p.val_loss))
            .filter(|v| v.is_finite())
            .collect();
        let loss_max = losses.iter().cloned().fold(0.0f64, f64::max).max(1e-6) * 1.1;
        draw_panel(
            &panels[0],
            "loss",
            x_range.clone(),
            0.0..loss_max,
            &[
                (
                    "train loss",
                    BLUE,
                    points
                        .iter()
                        .map(|p| (p.epoch as f64, Some(p.train_loss)))
                        .collect(),
                ),
                (
                    "validation loss",
                    RED,
                    points
                        .iter()
                        .map(|p| (p.epoch as f64, p.val_loss))
                        .collect(),
                ),
            ],
        )?;
        draw_panel(
            &panels[1],
            "validation",
            x_range.clone(),
            0.0..1.05,
            &[
                (
                    "top-1 accuracy",
                    GREEN,
                    points
                        .iter()
                        .map(|p| (p.epoch as f64, p.val_top1))
                        .collect(),
                ),
                (
                    "mAP",
                    MAGENTA,
                    points.iter().map(|p| (p.epoch as f64, p.val_map)).collect(),
                ),
            ],
        )?;
        let lr_max = points
            .iter()
            .map(|p| p.lr)
            .fold(0.0f64, f64::max)
            .max(1e-12)
            * 1.1;
        draw_panel(
            &panels[2],
            "learning rate",
            x_range,
            0.0..lr_max,
            &[(
                "lr",
                BLACK,
                points
                    .iter()
                    .map(|p| (p.epoch as f64, Some(p.lr)))
                    .collect(),
            )],
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

type Series = (&'static str, RGBColor, Vec<(f64, Option<f64>)>);

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    y_label: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    series: &[Series],
) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_label)
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, color, values) in series {
        let pts: Vec<(f64, f64)> = values
            .iter()
            .filter_map(|(x, y)| y.filter(|v| v.is_finite()).map(|y| (*x, y)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}
