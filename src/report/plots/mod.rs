//! Pictures of a run, drawn with plotters after the run has ended: the latency
//! distribution of every workload (`latency_cdf.svg`) and stacked time-series panels
//! (`timeseries.svg`). SVG always, PNG on request.
//!
//! What is drawn comes from plain data (`PlotInput`): the workloads' final latency
//! summaries, the fault windows, and the time series as the CSV holds it (parsed back
//! from `timeseries.csv`'s bytes, so a series that streams to disk draws the same).
//! Nothing here reads the model or the engine.
//!
//! Text is laid out with ab_glyph from the DejaVu fonts embedded in the binary
//! (registered once, `fonts()`), so a machine without system fonts draws the same
//! pictures byte for byte.

mod cdf;
mod timeseries;

use crate::metrics::{Metrics, Summary};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::Once;

pub use timeseries::{PLOT_POINTS, Row, parse_rows, parse_rows_binned};

/// The one font family every picture uses.
const FONT: &str = "sans-serif";

/// One picture: its file stem and its bytes.
#[derive(Debug, Clone)]
pub struct Plot {
    /// `latency_cdf` or `timeseries`: the file is `plots/<name>.svg` (and `.png`).
    pub name: &'static str,
    pub title: String,
    pub svg: String,
    pub png: Option<Vec<u8>>,
}

/// A workload's latency distribution, as points of its CDF.
#[derive(Debug, Clone)]
pub struct Curve {
    pub name: String,
    /// (latency in ms, fraction of answers at or below it), increasing.
    pub points: Vec<(f64, f64)>,
    /// (label, latency in ms, fraction): p50, p90, p99, p99.9.
    pub marks: Vec<(&'static str, f64, f64)>,
}

/// A `[[faults]]` window, in simulated seconds.
#[derive(Debug, Clone)]
pub struct FaultWindow {
    pub label: String,
    pub from_s: f64,
    pub until_s: f64,
}

/// Everything the pictures are drawn from.
#[derive(Debug, Clone)]
pub struct PlotInput {
    pub scenario: String,
    pub curves: Vec<Curve>,
    pub faults: Vec<FaultWindow>,
    pub rows: Vec<Row>,
}

/// Quantiles sampled for a CDF: dense in the body, denser in the tail.
fn cdf_grid() -> Vec<f64> {
    let mut q: Vec<f64> = (0..=200).map(|i| i as f64 / 200.0 * 0.99).collect();
    q.extend((1..=90).map(|i| 0.99 + i as f64 / 10_000.0));
    q.extend([0.9995, 0.9999, 1.0]);
    q
}

/// A latency summary's CDF (None when nothing answered).
pub fn curve(name: &str, latency: &Summary) -> Option<Curve> {
    if latency.count() == 0 {
        return None;
    }
    let at = |q: f64| {
        if q >= 1.0 {
            latency.max_ms()
        } else if q <= 0.0 {
            latency.min_ms()
        } else {
            latency.quantile_ms(q)
        }
    };
    let grid = cdf_grid();
    let inner = latency.quantiles_ms_of(&grid);
    let points = grid
        .into_iter()
        .zip(inner)
        .map(|(q, v)| (if q <= 0.0 || q >= 1.0 { at(q) } else { v }, q))
        .collect();
    let marks = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)]
        .into_iter()
        .map(|(label, q)| (label, at(q), q))
        .collect();
    Some(Curve {
        name: name.to_owned(),
        points,
        marks,
    })
}

impl PlotInput {
    /// From a finished run's metrics and the bytes of its `timeseries.csv`.
    pub fn new(scenario: &str, metrics: &Metrics, timeseries_csv: &[u8]) -> Result<Self, String> {
        Ok(PlotInput {
            scenario: scenario.to_owned(),
            curves: metrics
                .workloads
                .iter()
                .filter_map(|w| curve(&w.name, &w.latency))
                .collect(),
            faults: metrics
                .faults
                .iter()
                .map(|f| FaultWindow {
                    label: f.label.clone(),
                    from_s: f.from.as_secs_f64(),
                    until_s: f.until.as_secs_f64(),
                })
                .collect(),
            rows: parse_rows_binned(
                timeseries_csv,
                metrics.series.bucket.as_secs_f64(),
                buckets(metrics),
            )?,
        })
    }

    /// `new`, reading `timeseries.csv` from a file as it goes (a streamed series).
    pub fn from_reader(
        scenario: &str,
        metrics: &Metrics,
        csv: impl std::io::Read,
    ) -> Result<Self, String> {
        let mut input = PlotInput::new(scenario, metrics, b"t_start_s,t_end_s,kind,name\n")?;
        input.rows = parse_rows_binned(csv, metrics.series.bucket.as_secs_f64(), buckets(metrics))?;
        Ok(input)
    }
}

/// Buckets of the run's time series.
fn buckets(metrics: &Metrics) -> u64 {
    let end = metrics.window_end.as_nanos();
    end.div_ceil(metrics.series.bucket.as_nanos().max(1))
}

/// Registers the embedded fonts with plotters, once per process.
pub fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (style, bytes) in [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
        ] {
            plotters::style::register_font(FONT, style, bytes)
                .unwrap_or_else(|_| panic!("the embedded DejaVu font must load"));
        }
    });
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Cdf,
    Timeseries,
}

/// Every picture of a run, in a fixed order.
pub fn render(input: &PlotInput, png: bool) -> Result<Vec<Plot>, String> {
    fonts();
    let mut plots = Vec::new();
    for (kind, name, title) in [
        (
            Kind::Cdf,
            "latency_cdf",
            format!("{}: latency distribution per workload", input.scenario),
        ),
        (
            Kind::Timeseries,
            "timeseries",
            format!("{}: over simulated time", input.scenario),
        ),
    ] {
        let size = size(kind, input);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            draw(kind, &root, input, &title)?;
            root.present().map_err(err)?;
        }
        let png = if png {
            Some(png_bytes(size, |root| draw(kind, root, input, &title))?)
        } else {
            None
        };
        plots.push(Plot {
            name,
            title,
            svg,
            png,
        });
    }
    Ok(plots)
}

fn size(kind: Kind, input: &PlotInput) -> (u32, u32) {
    match kind {
        Kind::Cdf => (1000, 560),
        Kind::Timeseries => (
            1100,
            40 + 250 * timeseries::panels(input).len().max(1) as u32,
        ),
    }
}

fn draw<DB: DrawingBackend>(
    kind: Kind,
    root: &DrawingArea<DB, Shift>,
    input: &PlotInput,
    title: &str,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let area = root
        .titled(title, (FONT, 20).into_font().style(FontStyle::Bold))
        .map_err(err)?;
    match kind {
        Kind::Cdf => cdf::draw(&area, input),
        Kind::Timeseries => timeseries::draw(&area, input),
    }
}

fn png_bytes(
    (w, h): (u32, u32),
    draw: impl Fn(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    use image::ImageEncoder;
    let mut pixels = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(err)?;
    }
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&pixels, w, h, image::ColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing failed: {e:?}")
}

/// Ten distinct, colour-blind-friendly colours (Tableau 10), cycled.
pub(crate) fn color(i: usize) -> RGBColor {
    const TABLEAU: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = TABLEAU[i % TABLEAU.len()];
    RGBColor(r, g, b)
}

/// "1581 ms", "15.3 ms", "0.12 ms": three significant digits at most.
pub(crate) fn ms_label(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// A short number for an axis: "1.5k", "20", "0.25".
pub(crate) fn axis_label(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    };
    s.replace(".0k", "k").replace(".0M", "M")
}
