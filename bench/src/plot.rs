//! PNG plots of a run, drawn with plotters' bitmap backend and a bundled font (DejaVu Sans,
//! `bench/assets/`), so nothing depends on the machine's fonts:
//! - `pps.png`: received Mpps per case and topology (bar: median; whisker: min to max);
//! - `rules.png`: Mpps against security-group rule count, kernel and ctpath-xdp (log-log), with
//!   the ceiling as a reference line;
//! - `latency_cdf.png`: the round-trip CDF of each topology (the per-run quantile curves
//!   averaged), on a log time axis.
//!
//! Owns [`PlotError`]. Panic contract: nothing here panics.

use std::path::{Path, PathBuf};

use plotters::{
    coord::Shift,
    prelude::*,
    style::{register_font, FontStyle},
};
use thiserror::Error;

use crate::{
    report::{Results, Stats},
    topology::TopologyKind,
};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const SIZE: (u32, u32) = (1000, 600);

#[derive(Debug, Error)]
pub enum PlotError {
    #[error("the bundled font does not load")]
    Font,
    #[error("drawing {path}: {message}")]
    Draw { path: String, message: String },
}

fn color(kind: TopologyKind) -> RGBColor {
    match kind {
        TopologyKind::Kernel => RGBColor(204, 85, 60),
        TopologyKind::CtpathXdp => RGBColor(40, 110, 200),
        TopologyKind::CtpathTc => RGBColor(140, 80, 180),
        TopologyKind::CtpathAfxdp => RGBColor(60, 160, 90),
        TopologyKind::Ceiling => RGBColor(130, 130, 130),
        TopologyKind::GeneratorOnly => RGBColor(205, 185, 110),
    }
}

/// Draws every plot of `results` into `dir`; returns the files written.
pub fn all(results: &Results, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| PlotError::Font)?;
    let mut written = Vec::new();
    for (name, draw) in [
        (
            "pps.png",
            pps as fn(&Results, &DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
        ),
        ("rules.png", rules),
        ("latency_cdf.png", latency_cdf),
    ] {
        let path = dir.join(name);
        let error = |message: String| PlotError::Draw {
            path: path.display().to_string(),
            message,
        };
        {
            let root = BitMapBackend::new(&path, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(|e| error(e.to_string()))?;
            draw(results, &root).map_err(error)?;
            root.present().map_err(|e| error(e.to_string()))?;
        }
        written.push(path);
    }
    Ok(written)
}

fn subtitle(results: &Results) -> String {
    format!(
        "cpus={} · {} · {} CPUs · Linux {}",
        results.placement.mode,
        results.machine.cpu_model,
        results.machine.cpus,
        results.machine.kernel
    )
}

/// The subtitle (machine, CPUs) under a plot and its legend at `legend`.
fn finish<'a, CT: CoordTranslate>(
    results: &Results,
    root: &DrawingArea<BitMapBackend<'a>, Shift>,
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
    legend: SeriesLabelPosition,
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.draw(&Text::new(
        subtitle(results),
        (20, SIZE.1 as i32 - 22),
        ("sans-serif", 13).into_font(),
    ))
    .map_err(|x| e(&x))?;
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|x| e(&x))?;
    Ok(())
}

fn pps(results: &Results, root: &DrawingArea<BitMapBackend, Shift>) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let c = &results.config;
    let kinds: Vec<TopologyKind> = results.measured();
    let cases = &c.traffic;
    let stats = |k, t| results.pps_stats(k, t, c.base_rules);
    let ymax = cases
        .iter()
        .flat_map(|&t| kinds.iter().map(move |&k| (k, t)))
        .filter_map(|(k, t)| stats(k, t).max)
        .fold(0.0, f64::max)
        / 1e6
        * 1.3;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "Received pps at the destination, security group of {} rule(s)",
                c.base_rules
            ),
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..cases.len() as f64, 0f64..ymax.max(0.1))
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("Mpps (bar: median, whisker: min-max)")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|x| e(&x))?;
    let width = 0.8 / kinds.len().max(1) as f64;
    for (j, &kind) in kinds.iter().enumerate() {
        let col = color(kind);
        let bars: Vec<(f64, Stats)> = cases
            .iter()
            .enumerate()
            .map(|(i, &t)| (i as f64 + 0.1 + j as f64 * width, stats(kind, t)))
            .collect();
        chart
            .draw_series(bars.iter().filter_map(|(x, s)| {
                Some(Rectangle::new(
                    [(*x, 0.0), (x + width * 0.9, s.median? / 1e6)],
                    col.filled(),
                ))
            }))
            .map_err(|x| e(&x))?
            .label(kind.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], col.filled()));
        chart
            .draw_series(bars.iter().filter_map(|(x, s)| {
                let mid = x + width * 0.45;
                Some(PathElement::new(
                    vec![(mid, s.min? / 1e6), (mid, s.max? / 1e6)],
                    BLACK.stroke_width(2),
                ))
            }))
            .map_err(|x| e(&x))?;
        chart
            .draw_series(bars.iter().filter_map(|(x, s)| {
                let (m, top) = (s.median? / 1e6, s.max? / 1e6);
                Some(Text::new(
                    format!("{m:.2}"),
                    (x + width * 0.05, top + ymax * 0.035),
                    ("sans-serif", 13).into_font(),
                ))
            }))
            .map_err(|x| e(&x))?;
    }
    for (i, t) in cases.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(
            t.to_string(),
            (px - 45, py + 12),
            ("sans-serif", 16).into_font(),
        ))
        .map_err(|x| e(&x))?;
    }
    finish(results, root, &mut chart, SeriesLabelPosition::UpperRight)
}

fn rules(results: &Results, root: &DrawingArea<BitMapBackend, Shift>) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let c = &results.config;
    let t = results.headline_traffic();
    let mut counts = c.rules.clone();
    if !counts.contains(&c.base_rules) {
        counts.insert(0, c.base_rules);
    }
    let kinds = results.dataplanes();
    let ceiling = results
        .pps_stats(TopologyKind::Ceiling, t, c.base_rules)
        .median;
    let all: Vec<f64> = kinds
        .iter()
        .flat_map(|&k| {
            counts
                .iter()
                .flat_map(move |&n| results.pps_values(k, t, n))
        })
        .chain(ceiling)
        .map(|v| v / 1e6)
        .filter(|v| *v > 0.0)
        .collect();
    let ymin = all.iter().copied().fold(f64::INFINITY, f64::min).min(1.0) / 2.0;
    let ymax = all.iter().copied().fold(0.0, f64::max).max(0.01) * 2.0;
    let xmax = counts.iter().copied().max().unwrap_or(10).max(10) as f64 * 2.0;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Received pps vs security-group rules ({t})"),
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d((0.5f64..xmax).log_scale(), (ymin..ymax).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("rules in the destination pod's security group (N)")
        .y_desc("Mpps (line: median, dots: runs)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|x| e(&x))?;
    for kind in kinds {
        let col = color(kind);
        let line: Vec<(f64, f64)> = counts
            .iter()
            .filter_map(|&n| Some((n as f64, results.pps_stats(kind, t, n).median? / 1e6)))
            .collect();
        chart
            .draw_series(LineSeries::new(line, col.stroke_width(3)))
            .map_err(|x| e(&x))?
            .label(kind.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(3)));
        let dots: Vec<(f64, f64)> = counts
            .iter()
            .flat_map(|&n| {
                results
                    .pps_values(kind, t, n)
                    .into_iter()
                    .map(move |v| (n as f64, v / 1e6))
            })
            .collect();
        chart
            .draw_series(dots.into_iter().map(|p| Circle::new(p, 4, col.filled())))
            .map_err(|x| e(&x))?;
    }
    if let Some(ceiling) = ceiling {
        let col = color(TopologyKind::Ceiling);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.5, ceiling / 1e6), (xmax, ceiling / 1e6)],
                8,
                6,
                col.stroke_width(2),
            ))
            .map_err(|x| e(&x))?
            .label("ceiling (N does not apply)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2)));
    }
    finish(results, root, &mut chart, SeriesLabelPosition::LowerLeft)
}

fn latency_cdf(results: &Results, root: &DrawingArea<BitMapBackend, Shift>) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let kinds = results.dataplanes();
    // Per topology: the per-run quantile curves, averaged point by point.
    let curves: Vec<(TopologyKind, Vec<(f64, f64)>)> = kinds
        .iter()
        .map(|&k| {
            let runs = results.latency_samples(k);
            let points = runs.first().map_or(0, |r| r.cdf.len());
            let curve = (0..points)
                .map(|i| {
                    let q = runs[0].cdf[i].0;
                    let us = runs.iter().map(|r| r.cdf[i].1).sum::<f64>() / runs.len() as f64;
                    (us, q)
                })
                .collect();
            (k, curve)
        })
        .collect();
    let xs = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0));
    let xmin = xs.clone().fold(f64::INFINITY, f64::min).clamp(0.1, 1e6) / 1.3;
    let xmax = xs.fold(0.0, f64::max).max(xmin * 10.0) * 1.3;
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Round trip CDF, UDP request/response pod to pod across nodes",
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(70)
        .build_cartesian_2d((xmin..xmax).log_scale(), 0f64..1.0)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("round trip (µs, log scale)")
        .y_desc("fraction of round trips ≤ x")
        .x_label_formatter(&|_| String::new())
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|x| e(&x))?;
    // plotters labels only powers of ten on a short log axis: label 1-2-5 steps by hand.
    let mut decade = 10f64.powf(xmin.log10().floor());
    while decade <= xmax {
        for step in [1.0, 2.0, 5.0] {
            let x = decade * step;
            if x >= xmin && x <= xmax {
                let (px, py) = chart.backend_coord(&(x, 0.0));
                root.draw(&PathElement::new(vec![(px, py), (px, py + 5)], BLACK))
                    .map_err(|x| e(&x))?;
                root.draw(&Text::new(
                    format!("{x}"),
                    (px - 8, py + 8),
                    ("sans-serif", 15).into_font(),
                ))
                .map_err(|x| e(&x))?;
            }
        }
        decade *= 10.0;
    }
    for (kind, curve) in curves {
        let col = color(kind);
        let p99 = curve.iter().find(|(_, q)| *q >= 0.99).map_or(0.0, |p| p.0);
        chart
            .draw_series(LineSeries::new(curve, col.stroke_width(3)))
            .map_err(|x| e(&x))?
            .label(format!("{} (p99 {p99:.1} µs)", kind.name()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(3)));
    }
    finish(results, root, &mut chart, SeriesLabelPosition::LowerRight)
}
