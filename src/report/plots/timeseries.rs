//! `timeseries.svg`: stacked panels over simulated time on one x axis: answers and
//! errors per second per workload, the errors by class of status; p50 and p99 per workload; queue length per endpoint;
//! attempts per second per edge with the breaker's open and half-open buckets shaded;
//! with brokers, queue depth and consumer-group lag. Every fault window is shaded and
//! labelled on every panel. A bucket with no value (nothing answered) is a gap.

use super::{FONT, PlotInput, axis_label, color, err};
use crate::metrics::ERROR_CLASSES;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::io::Read;

/// One row of `timeseries.csv` (empty cells are None).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub start_s: f64,
    pub end_s: f64,
    pub kind: String,
    pub name: String,
    pub completed: Option<f64>,
    pub errors: Option<f64>,
    /// Workloads: errors by class (`metrics::ERROR_CLASSES`); None in a file without them.
    pub errors_by_class: [Option<f64>; ERROR_CLASSES.len()],
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub queue_length_mean: Option<f64>,
    pub attempts: Option<f64>,
    pub breaker: String,
    pub depth: Option<f64>,
}

/// Parses `timeseries.csv` back (columns found by name).
pub fn parse_rows(csv: &[u8]) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    read_rows(csv, |r| rows.push(r))?;
    Ok(rows)
}

/// Every row of `csv`, in file order, to `each`.
fn read_rows(csv: impl Read, mut each: impl FnMut(Row)) -> Result<(), String> {
    let mut r = ::csv::Reader::from_reader(csv);
    let header = r.headers().map_err(|e| e.to_string())?.clone();
    let col = |name: &str| header.iter().position(|h| h == name);
    let need = |name: &str| col(name).ok_or_else(|| format!("timeseries: no column {name}"));
    let (start, end, kind, name) = (
        need("t_start_s")?,
        need("t_end_s")?,
        need("kind")?,
        need("name")?,
    );
    let optional = [
        "completed",
        "errors",
        "p50_ms",
        "p99_ms",
        "queue_length_mean",
        "attempts",
        "breaker",
        "depth",
    ]
    .map(col);
    let classes = ERROR_CLASSES.map(|c| col(&format!("errors_{c}")));
    let mut rec = ::csv::StringRecord::new();
    while r.read_record(&mut rec).map_err(|e| e.to_string())? {
        let text = |i: Option<usize>| i.and_then(|i| rec.get(i)).unwrap_or("");
        let num = |i: Option<usize>| text(i).parse::<f64>().ok();
        let [completed, errors, p50, p99, queue, attempts, breaker, depth] = optional;
        each(Row {
            start_s: num(Some(start)).ok_or("timeseries: a row without t_start_s")?,
            end_s: num(Some(end)).ok_or("timeseries: a row without t_end_s")?,
            kind: text(Some(kind)).to_owned(),
            name: text(Some(name)).to_owned(),
            completed: num(completed),
            errors: num(errors),
            errors_by_class: classes.map(num),
            p50_ms: num(p50),
            p99_ms: num(p99),
            queue_length_mean: num(queue),
            attempts: num(attempts),
            breaker: text(breaker).to_owned(),
            depth: num(depth),
        });
    }
    Ok(())
}

/// Points per series a plot draws at most: a longer series is drawn from bins of
/// consecutive buckets. Above the rows of any bundled scenario (mm1: 3087), and
/// beyond what a 1200-pixel-wide panel can show.
pub const PLOT_POINTS: u64 = 4000;

/// `parse_rows` for the plots, reading `csv` as it goes (a streamed file is never held
/// in memory): with `buckets` (of `bucket_s` seconds) above `PLOT_POINTS`, each
/// series' rows are merged k at a time (k = ceil(buckets / PLOT_POINTS), by bucket
/// number): counts summed, the mean queue length weighted by time, the highest p50,
/// p99 and depth kept (a spike stays visible), open beats half-open beats closed.
/// Rows come out grouped by series, series in order of first appearance.
pub fn parse_rows_binned(csv: impl Read, bucket_s: f64, buckets: u64) -> Result<Vec<Row>, String> {
    let k = buckets.div_ceil(PLOT_POINTS).max(1);
    if k == 1 {
        let mut rows = Vec::new();
        read_rows(csv, |r| rows.push(r))?;
        return Ok(rows);
    }
    let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
    // Per series: its merged rows, and the bin being merged.
    type Merging = (Vec<Row>, Option<(u64, Row)>);
    let mut out: Vec<Merging> = Vec::new();
    read_rows(csv, |r| {
        let bin = (r.start_s / bucket_s).round() as u64 / k;
        let key = (r.kind.clone(), r.name.clone());
        let i = *index.entry(key).or_insert_with(|| {
            out.push((Vec::new(), None));
            out.len() - 1
        });
        let (done, open) = &mut out[i];
        match open {
            Some((b, acc)) if *b == bin => merge(acc, &r),
            _ => {
                if let Some((_, acc)) = open.take() {
                    done.push(acc);
                }
                *open = Some((bin, r));
            }
        }
    })?;
    Ok(out
        .into_iter()
        .flat_map(|(mut done, open)| {
            done.extend(open.map(|(_, r)| r));
            done
        })
        .collect())
}

/// Adds the next row of the same series to a bin.
fn merge(acc: &mut Row, r: &Row) {
    let sum = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let (span_a, span_b) = (acc.end_s - acc.start_s, r.end_s - r.start_s);
    acc.queue_length_mean = match (acc.queue_length_mean, r.queue_length_mean) {
        (Some(a), Some(b)) if span_a + span_b > 0.0 => {
            Some((a * span_a + b * span_b) / (span_a + span_b))
        }
        (a, b) => a.or(b),
    };
    acc.end_s = r.end_s;
    acc.completed = sum(acc.completed, r.completed);
    acc.errors = sum(acc.errors, r.errors);
    for (a, b) in acc.errors_by_class.iter_mut().zip(r.errors_by_class) {
        *a = sum(*a, b);
    }
    acc.attempts = sum(acc.attempts, r.attempts);
    acc.p50_ms = max(acc.p50_ms, r.p50_ms);
    acc.p99_ms = max(acc.p99_ms, r.p99_ms);
    acc.depth = max(acc.depth, r.depth);
    let rank = |b: &str| match b {
        "open" => 2,
        "half_open" => 1,
        _ => 0,
    };
    if rank(&r.breaker) >= rank(&acc.breaker) {
        acc.breaker = r.breaker.clone();
    }
}

/// A line: its legend name, colour, whether it is the lighter companion of another
/// line (errors next to answers, p50 next to p99), and its points (None: a gap).
struct Line {
    name: String,
    color: RGBColor,
    light: bool,
    points: Vec<(f64, Option<f64>)>,
}

/// A panel: its title, y-axis name, lines, and shaded bands of its own (breakers).
pub(super) struct Panel {
    title: String,
    y_desc: &'static str,
    lines: Vec<Line>,
    bands: Vec<(f64, f64, String, RGBColor)>,
}

/// Error classes (`ERROR_CLASSES`): timeout orange, unavailable red, rejected purple,
/// internal brown, other grey.
const CLASS_COLORS: [RGBColor; ERROR_CLASSES.len()] = [
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
];

/// At most this many lines of one kind per panel (the busiest); the CSV has them all.
const MAX_LINES: usize = 8;

/// The series of one kind, in order of first appearance, with their rows.
fn series<'a>(rows: &'a [Row], kind: &str) -> Vec<(&'a str, Vec<&'a Row>)> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_name: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.kind == kind) {
        by_name
            .entry(&r.name)
            .or_insert_with(|| {
                order.push(&r.name);
                Vec::new()
            })
            .push(r);
    }
    order
        .into_iter()
        .map(|n| (n, by_name.remove(n).unwrap_or_default()))
        .collect()
}

fn mid(r: &Row) -> f64 {
    (r.start_s + r.end_s) / 2.0
}

fn per_s(r: &Row, v: Option<f64>) -> Option<f64> {
    let span = r.end_s - r.start_s;
    v.map(|v| if span > 0.0 { v / span } else { 0.0 })
}

/// Keeps the `MAX_LINES` series with the largest `weight` (ties: first seen), in
/// their original order, and drops series whose weight is zero.
fn busiest<'a>(
    all: Vec<(&'a str, Vec<&'a Row>)>,
    weight: impl Fn(&Row) -> f64,
) -> (Vec<(&'a str, Vec<&'a Row>)>, usize) {
    let weights: Vec<f64> = all
        .iter()
        .map(|(_, rs)| rs.iter().map(|r| weight(r)).sum())
        .collect();
    let mut rank: Vec<usize> = (0..all.len()).filter(|&i| weights[i] > 0.0).collect();
    let nonzero = rank.len();
    rank.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    rank.truncate(MAX_LINES);
    rank.sort_unstable();
    let kept: Vec<_> = all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| rank.contains(i))
        .map(|(_, s)| s)
        .collect();
    let hidden = nonzero - kept.len();
    (kept, hidden)
}

/// One line per series, named after it, coloured by its place.
fn one_line_each(
    series: &[(&str, Vec<&Row>)],
    point: impl Fn(&Row) -> (f64, Option<f64>),
) -> Vec<Line> {
    series
        .iter()
        .enumerate()
        .map(|(i, (name, rs))| Line {
            name: (*name).to_owned(),
            color: color(i),
            light: false,
            points: rs.iter().map(|r| point(r)).collect(),
        })
        .collect()
}

fn more(title: &str, hidden: usize) -> String {
    if hidden == 0 {
        title.to_owned()
    } else {
        format!("{title} (the {MAX_LINES} busiest; {hidden} more in timeseries.csv)")
    }
}

/// The panels this run has data for, top to bottom.
pub(super) fn panels(input: &PlotInput) -> Vec<Panel> {
    let rows = &input.rows;
    let mut panels = Vec::new();
    let workloads = series(rows, "workload");
    if !workloads.is_empty() {
        panels.push(Panel {
            title: "Throughput and errors by status per workload".into(),
            y_desc: "per second",
            lines: throughput_lines(&workloads),
            bands: Vec::new(),
        });
        panels.push(Panel {
            title: "Latency per workload (gaps: nothing answered)".into(),
            y_desc: "ms",
            lines: latency_lines(&workloads),
            bands: Vec::new(),
        });
    }
    let (endpoints, hidden) = busiest(series(rows, "endpoint"), |r| {
        r.queue_length_mean.unwrap_or(0.0)
    });
    if !endpoints.is_empty() {
        panels.push(Panel {
            title: more(
                "Queue length per endpoint (mean waiting for a worker)",
                hidden,
            ),
            y_desc: "requests",
            lines: one_line_each(&endpoints, |r| (mid(r), r.queue_length_mean)),
            bands: Vec::new(),
        });
    }
    let (edges, hidden) = busiest(series(rows, "edge"), |r| r.attempts.unwrap_or(0.0));
    if !edges.is_empty() {
        panels.push(Panel {
            title: more(
                "Attempts per edge (shaded: its breaker open or half-open at the bucket's end)",
                hidden,
            ),
            y_desc: "attempts/s",
            lines: one_line_each(&edges, |r| (mid(r), per_s(r, r.attempts))),
            bands: breaker_bands(&edges),
        });
    }
    let mut flows = series(rows, "queue");
    flows.extend(series(rows, "group"));
    let (flows, hidden) = busiest(flows, |r| r.depth.unwrap_or(0.0) + 1.0);
    if !flows.is_empty() {
        panels.push(Panel {
            title: more("Broker: queue depth and consumer-group lag", hidden),
            y_desc: "messages",
            lines: one_line_each(&flows, |r| (r.end_s, r.depth)),
            bands: Vec::new(),
        });
    }
    panels
}

/// Each workload's answers per second, and its errors per second: one thin line per
/// class of error that occurred when the file has them by class, else one for all.
fn throughput_lines(workloads: &[(&str, Vec<&Row>)]) -> Vec<Line> {
    let mut lines = Vec::new();
    for (i, (name, rs)) in workloads.iter().enumerate() {
        lines.push(Line {
            name: format!("{name} answers/s"),
            color: color(i),
            light: false,
            points: rs.iter().map(|r| (mid(r), per_s(r, r.completed))).collect(),
        });
        let by_class = rs
            .iter()
            .any(|r| r.errors_by_class.iter().any(Option::is_some));
        if by_class {
            // One thin line per class of error that occurred, in the class's colour.
            for (k, class) in ERROR_CLASSES.iter().enumerate() {
                if rs.iter().any(|r| r.errors_by_class[k].unwrap_or(0.0) > 0.0) {
                    lines.push(Line {
                        name: format!("{name} errors/s: {class}"),
                        color: CLASS_COLORS[k],
                        light: true,
                        points: rs
                            .iter()
                            .map(|r| (mid(r), per_s(r, r.errors_by_class[k])))
                            .collect(),
                    });
                }
            }
        } else if rs.iter().any(|r| r.errors.unwrap_or(0.0) > 0.0) {
            lines.push(Line {
                name: format!("{name} errors/s"),
                color: color(i),
                light: true,
                points: rs.iter().map(|r| (mid(r), per_s(r, r.errors))).collect(),
            });
        }
    }
    lines
}

/// Each workload's p99 and, lighter, its p50.
fn latency_lines(workloads: &[(&str, Vec<&Row>)]) -> Vec<Line> {
    let mut lines = Vec::new();
    for (i, (name, rs)) in workloads.iter().enumerate() {
        lines.push(Line {
            name: format!("{name} p99"),
            color: color(i),
            light: false,
            points: rs.iter().map(|r| (mid(r), r.p99_ms)).collect(),
        });
        lines.push(Line {
            name: format!("{name} p50"),
            color: color(i),
            light: true,
            points: rs.iter().map(|r| (mid(r), r.p50_ms)).collect(),
        });
    }
    lines
}

/// A shaded band for each bucket that ends with an edge's breaker open or half-open.
fn breaker_bands(edges: &[(&str, Vec<&Row>)]) -> Vec<(f64, f64, String, RGBColor)> {
    let mut bands = Vec::new();
    for (i, (name, rs)) in edges.iter().enumerate() {
        for r in rs {
            let state = match r.breaker.as_str() {
                "open" => "open",
                "half_open" => "half-open",
                _ => continue,
            };
            let label = format!("breaker {state}: {name}");
            let c = color(i);
            bands.push((r.start_s, r.end_s, label, c));
        }
    }
    bands
}

pub(super) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    input: &PlotInput,
) -> Result<(), String> {
    let panels = panels(input);
    if panels.is_empty() {
        area.draw(&Text::new("no time series", (40, 40), (FONT, 18)))
            .map_err(err)?;
        return Ok(());
    }
    let x_end = input
        .rows
        .iter()
        .map(|r| r.end_s)
        .fold(0.0, f64::max)
        .max(1e-9);
    let areas = area.split_evenly((panels.len(), 1));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(area, panel, x_end, input)?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    x_end: f64,
    input: &PlotInput,
) -> Result<(), String> {
    let y_top = y_top(panel);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 15))
        .margin(8)
        .margin_right(230)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_end, 0.0..y_top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("simulated time (s)")
        .y_desc(panel.y_desc)
        .x_label_formatter(&|v| axis_label(*v))
        .y_label_formatter(&|v| axis_label(*v))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(err)?;
    // Fault windows first, so lines stay on top.
    fault_windows(&mut chart, input, x_end, y_top)?;
    // The legend is drawn beside the chart, in the panel's right margin.
    let mut legend: Vec<(String, ShapeStyle, bool)> = Vec::new();
    for (a, b, label, c) in &panel.bands {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(*a, 0.0), (*b, y_top)],
                c.mix(0.12).filled(),
            )))
            .map_err(err)?;
        if !legend.iter().any(|(l, _, _)| l == label) {
            legend.push((label.clone(), c.mix(0.3).filled(), true));
        }
    }
    for line in &panel.lines {
        let style = if line.light {
            line.color.mix(0.45).stroke_width(1)
        } else {
            line.color.stroke_width(2)
        };
        for run in runs(&line.points) {
            if run.len() == 1 {
                chart
                    .draw_series(std::iter::once(Circle::new(run[0], 2, style.filled())))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(run, style))
                    .map_err(err)?;
            }
        }
        legend.push((line.name.clone(), style, false));
    }
    draw_legend(area, &legend)?;
    Ok(())
}

/// The top of a panel's y axis: room above its highest point (1 when all are zero).
fn y_top(panel: &Panel) -> f64 {
    let y_max = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1))
        .fold(0.0, f64::max);
    if y_max > 0.0 { y_max * 1.15 } else { 1.0 }
}

/// Every fault window shaded over the whole height, its label at the top (staggered
/// over three rows, so that adjacent windows' labels do not overlap).
fn fault_windows<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    input: &PlotInput,
    x_end: f64,
    y_top: f64,
) -> Result<(), String> {
    for (k, f) in input.faults.iter().enumerate() {
        let (a, b) = (f.from_s.clamp(0.0, x_end), f.until_s.clamp(0.0, x_end));
        if b <= a {
            continue;
        }
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, 0.0), (b, y_top)],
                RGBColor(214, 39, 40).mix(0.10).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((a, y_top))
                    + Text::new(
                        format!("fault: {}", f.label),
                        (4, 3 + 13 * (k % 3) as i32),
                        (FONT, 12).into_font().color(&RGBColor(160, 20, 20)),
                    ),
            ))
            .map_err(err)?;
    }
    Ok(())
}

/// The legend beside the chart, in the panel's right margin: a swatch for a band, a
/// stroke for a line.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    legend: &[(String, ShapeStyle, bool)],
) -> Result<(), String> {
    let x0 = area.dim_in_pixel().0 as i32 - 220;
    for (k, (label, style, band)) in legend.iter().enumerate() {
        let y = 34 + 15 * k as i32;
        if *band {
            area.draw(&Rectangle::new([(x0, y - 5), (x0 + 20, y + 5)], *style))
                .map_err(err)?;
        } else {
            area.draw(&PathElement::new(vec![(x0, y), (x0 + 20, y)], *style))
                .map_err(err)?;
        }
        area.draw(&Text::new(
            label.clone(),
            (x0 + 26, y - 6),
            (FONT, 12).into_font(),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Contiguous runs of present values: a missing value breaks the line.
fn runs(points: &[(f64, Option<f64>)]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for &(x, y) in points {
        match y {
            Some(y) => current.push((x, y)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_cells_break_a_line_into_runs() {
        let pts = [
            (0.5, Some(1.0)),
            (1.5, Some(2.0)),
            (2.5, None),
            (3.5, Some(4.0)),
            (4.5, None),
        ];
        assert_eq!(
            runs(&pts),
            vec![vec![(0.5, 1.0), (1.5, 2.0)], vec![(3.5, 4.0)]]
        );
    }

    #[test]
    fn rows_parse_back_with_empty_cells_as_none() {
        let csv = b"t_start_s,t_end_s,kind,name,completed,errors,throughput_rps,p50_ms,p99_ms,queue_length_mean,attempts,breaker\n\
            0,1,workload,w,10,1,10,165,170,,,\n\
            1,2,workload,w,0,0,0,,,,,\n";
        let rows = parse_rows(csv).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].p50_ms, rows[0].errors), (Some(165.0), Some(1.0)));
        assert_eq!((rows[1].p50_ms, rows[1].depth), (None, None));
    }
}
