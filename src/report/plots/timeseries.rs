//! `timeseries.svg`: stacked panels over simulated time on one x axis: answers and
//! errors per second per workload; p50 and p99 per workload; queue length per endpoint;
//! attempts per second per edge with the breaker's open and half-open buckets shaded;
//! with brokers, queue depth and consumer-group lag. Every fault window is shaded and
//! labelled on every panel. A bucket with no value (nothing answered) is a gap.

use super::{FONT, PlotInput, axis_label, color, err};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// One row of `timeseries.csv` (empty cells are None).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub start_s: f64,
    pub end_s: f64,
    pub kind: String,
    pub name: String,
    pub completed: Option<f64>,
    pub errors: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub queue_length_mean: Option<f64>,
    pub attempts: Option<f64>,
    pub breaker: String,
    pub depth: Option<f64>,
}

/// Parses `timeseries.csv` back (columns found by name).
pub fn parse_rows(csv: &[u8]) -> Result<Vec<Row>, String> {
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
    let mut rows = Vec::new();
    for record in r.records() {
        let rec = record.map_err(|e| e.to_string())?;
        let text = |i: Option<usize>| i.and_then(|i| rec.get(i)).unwrap_or("");
        let num = |i: Option<usize>| text(i).parse::<f64>().ok();
        let [completed, errors, p50, p99, queue, attempts, breaker, depth] = optional;
        rows.push(Row {
            start_s: num(Some(start)).ok_or("timeseries: a row without t_start_s")?,
            end_s: num(Some(end)).ok_or("timeseries: a row without t_end_s")?,
            kind: text(Some(kind)).to_owned(),
            name: text(Some(name)).to_owned(),
            completed: num(completed),
            errors: num(errors),
            p50_ms: num(p50),
            p99_ms: num(p99),
            queue_length_mean: num(queue),
            attempts: num(attempts),
            breaker: text(breaker).to_owned(),
            depth: num(depth),
        });
    }
    Ok(rows)
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
        let mut lines = Vec::new();
        for (i, (name, rs)) in workloads.iter().enumerate() {
            lines.push(Line {
                name: format!("{name} answers/s"),
                color: color(i),
                light: false,
                points: rs.iter().map(|r| (mid(r), per_s(r, r.completed))).collect(),
            });
            if rs.iter().any(|r| r.errors.unwrap_or(0.0) > 0.0) {
                lines.push(Line {
                    name: format!("{name} errors/s"),
                    color: color(i),
                    light: true,
                    points: rs.iter().map(|r| (mid(r), per_s(r, r.errors))).collect(),
                });
            }
        }
        panels.push(Panel {
            title: "Throughput and errors per workload".into(),
            y_desc: "per second",
            lines,
            bands: Vec::new(),
        });
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
        panels.push(Panel {
            title: "Latency per workload (gaps: nothing answered)".into(),
            y_desc: "ms",
            lines,
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
            lines: endpoints
                .iter()
                .enumerate()
                .map(|(i, (name, rs))| Line {
                    name: (*name).to_owned(),
                    color: color(i),
                    light: false,
                    points: rs.iter().map(|r| (mid(r), r.queue_length_mean)).collect(),
                })
                .collect(),
            bands: Vec::new(),
        });
    }
    let (edges, hidden) = busiest(series(rows, "edge"), |r| r.attempts.unwrap_or(0.0));
    if !edges.is_empty() {
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
        panels.push(Panel {
            title: more(
                "Attempts per edge (shaded: its breaker open or half-open at the bucket's end)",
                hidden,
            ),
            y_desc: "attempts/s",
            lines: edges
                .iter()
                .enumerate()
                .map(|(i, (name, rs))| Line {
                    name: (*name).to_owned(),
                    color: color(i),
                    light: false,
                    points: rs.iter().map(|r| (mid(r), per_s(r, r.attempts))).collect(),
                })
                .collect(),
            bands,
        });
    }
    let mut flows = series(rows, "queue");
    flows.extend(series(rows, "group"));
    let (flows, hidden) = busiest(flows, |r| r.depth.unwrap_or(0.0) + 1.0);
    if !flows.is_empty() {
        panels.push(Panel {
            title: more("Broker: queue depth and consumer-group lag", hidden),
            y_desc: "messages",
            lines: flows
                .iter()
                .enumerate()
                .map(|(i, (name, rs))| Line {
                    name: (*name).to_owned(),
                    color: color(i),
                    light: false,
                    points: rs.iter().map(|r| (r.end_s, r.depth)).collect(),
                })
                .collect(),
            bands: Vec::new(),
        });
    }
    panels
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
    let y_max = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1))
        .fold(0.0, f64::max);
    let y_top = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
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
