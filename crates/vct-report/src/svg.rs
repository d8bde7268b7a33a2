//! Small static SVG line charts (the training curves and the reliability diagram),
//! drawn here so they show without JavaScript and print as they look.

use std::fmt::Write as _;

use crate::html::esc;

/// One line of a chart.
pub(crate) struct Series<'a> {
    pub name: &'a str,
    /// A CSS colour.
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
    /// Draw a dot on each point (epoch values) or only the line (per-step values).
    pub dots: bool,
    pub stroke: f64,
}

/// A chart: lines, optional bars (`x0, x1, height` in data units), an optional
/// y = x diagonal.
pub(crate) struct Chart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series<'a>>,
    pub bars: Vec<(f64, f64, f64)>,
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    pub diagonal: bool,
}

const W: f64 = 640.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 48.0;

/// About `n` round tick values covering `lo..=hi`.
pub(crate) fn ticks(lo: f64, hi: f64, n: usize) -> (Vec<f64>, f64) {
    let span = (hi - lo).abs().max(f64::MIN_POSITIVE);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    ((first..=last).map(|k| k as f64 * step).collect(), step)
}

/// A tick label: plain decimals, or an exponent for tiny values such as learning rates.
pub(crate) fn tick_label(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if step < 1e-3 {
        return format!("{v:.1e}");
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo <= hi).then_some((lo, hi))
}

/// The chart as an `<svg>` element (an empty-state note when it has no points).
pub(crate) fn chart(c: &Chart<'_>) -> String {
    let xs = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (Some(xr), Some(yr)) = (c.x_range.or(range(xs)), c.y_range.or(range(ys))) else {
        return format!(
            "<p class=\"empty\" id=\"{}\">{}: nothing recorded.</p>",
            esc(c.id),
            esc(c.title)
        );
    };
    let (x0, x1) = if xr.1 > xr.0 {
        xr
    } else {
        (xr.0 - 0.5, xr.0 + 0.5)
    };
    let (y0, y1) = if c.y_range.is_some() {
        yr
    } else {
        // From zero for losses and rates; a little headroom above.
        let lo = if yr.0 >= 0.0 { 0.0 } else { yr.0 };
        let hi = if yr.1 > lo { yr.1 * 1.05 } else { lo + 1.0 };
        (lo, hi)
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" id=\"{}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        esc(c.id),
        esc(c.title)
    );
    let _ = write!(
        s,
        "<text class=\"chart-title\" x=\"{LEFT}\" y=\"18\">{}</text>",
        esc(c.title)
    );
    let (xt, xstep) = ticks(x0, x1, 8);
    let (yt, ystep) = ticks(y0, y1, 5);
    for v in &yt {
        let y = sy(*v);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            tick_label(*v, ystep)
        );
    }
    for v in &xt {
        let x = sx(*v);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + ph,
            TOP + ph + 18.0,
            tick_label(*v, xstep)
        );
    }
    let _ = write!(
        s,
        "<rect class=\"frame\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\"/>\
         <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text class=\"axis\" transform=\"translate(14 {:.1}) rotate(-90)\" \
         text-anchor=\"middle\">{}</text>",
        LEFT + pw / 2.0,
        H - 8.0,
        esc(c.x_label),
        TOP + ph / 2.0,
        esc(c.y_label)
    );
    for &(a, b, h) in &c.bars {
        let _ = write!(
            s,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"/>",
            sx(a),
            sy(h),
            (sx(b) - sx(a)).max(0.5),
            (sy(y0) - sy(h)).max(0.0)
        );
    }
    if c.diagonal {
        let _ = write!(
            s,
            "<line class=\"diagonal\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>",
            sx(x0.max(y0)),
            sy(x0.max(y0)),
            sx(x1.min(y1)),
            sy(x1.min(y1))
        );
    }
    for series in &c.series {
        let pts: Vec<(f64, f64)> = series
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(x, y)| (sx(x), sy(y)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let d: String = pts
            .iter()
            .enumerate()
            .map(|(i, (x, y))| format!("{}{x:.1},{y:.1}", if i == 0 { "M" } else { "L" }))
            .collect();
        let _ = write!(
            s,
            "<path class=\"line\" d=\"{d}\" stroke=\"{}\" stroke-width=\"{}\"><title>{}</title></path>",
            esc(series.color),
            series.stroke,
            esc(series.name)
        );
        if series.dots {
            for (x, y) in &pts {
                let _ = write!(
                    s,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{}\"/>",
                    esc(series.color)
                );
            }
        }
    }
    // The legend on the title's line, right-aligned, clear of the data.
    let mut right = W - RIGHT;
    for series in c.series.iter().rev().filter(|s| !s.points.is_empty()) {
        let width = 28.0 + 7.0 * series.name.chars().count() as f64;
        let lx = right - width;
        let _ = write!(
            s,
            "<line x1=\"{lx:.1}\" x2=\"{:.1}\" y1=\"14\" y2=\"14\" stroke=\"{}\" \
             stroke-width=\"3\"/><text class=\"legend\" x=\"{:.1}\" y=\"18\">{}</text>",
            lx + 18.0,
            esc(series.color),
            lx + 22.0,
            esc(series.name)
        );
        right = lx - 6.0;
    }
    s.push_str("</svg>");
    s
}
