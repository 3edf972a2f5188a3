//! `latency_cdf.svg`: every workload's latency distribution on one chart, latency on a
//! log axis, p50/p90/p99/p99.9 marked and labelled.

use super::{Curve, FONT, PlotInput, color, err, ms_label};
use plotters::coord::Shift;
use plotters::prelude::*;

pub(super) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    input: &PlotInput,
) -> Result<(), String> {
    let (lo, hi) = latency_range(input);
    let mut chart = ChartBuilder::on(area)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.05)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction of answers at or below")
        .x_label_formatter(&|v| super::axis_label(*v))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    if input.curves.is_empty() {
        chart
            .draw_series(std::iter::once(Text::new(
                "no answers in the measured window",
                ((lo * hi).sqrt(), 0.5),
                (FONT, 18),
            )))
            .map_err(err)?;
        return Ok(());
    }
    for (i, c) in input.curves.iter().enumerate() {
        let col = color(i);
        chart
            .draw_series(LineSeries::new(steps(c, lo), col.stroke_width(2)))
            .map_err(err)?
            .label(legend(c))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(3)));
        // Each mark a dot; p50 and p99 named beside it (below and right of a CDF
        // point is empty); the values are in the legend.
        for &(label, ms, q) in &c.marks {
            let at = (ms.max(lo), q);
            let tag = if label == "p50" || label == "p99" {
                label
            } else {
                ""
            };
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at(at)
                        + Circle::new((0, 0), 4, col.filled())
                        + Text::new(tag, (7, 2), (FONT, 12).into_font().color(&col)),
                ))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// The latency axis's range: the curves' with room either side, never down to zero
/// (a log axis; an instant refusal answers in 0 ms).
fn latency_range(input: &PlotInput) -> (f64, f64) {
    const FLOOR_MS: f64 = 1e-3;
    let xs = || {
        input
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.0))
    };
    let lo = xs().fold(f64::INFINITY, f64::min).max(FLOOR_MS);
    let hi = xs().fold(0.0, f64::max).max(lo);
    if input.curves.is_empty() {
        (1.0, 1000.0)
    } else {
        (lo / 1.5, hi * 1.5)
    }
}

/// A curve as a step function: each sampled quantile holds until the next one.
fn steps(c: &Curve, lo: f64) -> Vec<(f64, f64)> {
    let mut path = Vec::with_capacity(c.points.len() * 2);
    let mut prev_q = 0.0;
    for &(ms, q) in &c.points {
        let x = ms.max(lo);
        path.push((x, prev_q));
        path.push((x, q));
        prev_q = q;
    }
    path
}

/// A workload's legend entry, with its marked quantiles' values.
fn legend(c: &Curve) -> String {
    format!(
        "{}: {}",
        c.name,
        c.marks
            .iter()
            .map(|(l, ms, _)| format!("{l} {}", ms_label(*ms)))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
