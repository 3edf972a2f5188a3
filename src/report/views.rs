//! The files a run writes besides report.json and timeseries.csv: `plots/*.svg`
//! (`.png` on request) and `report.html`. One function, so the CLI, the regen script
//! and the golden test produce the same bytes.

use super::Report;
use super::html::{Page, page};
use super::plots::{PlotInput, render};
use crate::metrics::Metrics;

/// What the views are drawn from.
pub struct Views<'a> {
    pub report: &'a Report,
    pub metrics: &'a Metrics,
    /// The bytes of `timeseries.csv`: the time-series panels are drawn from them.
    pub timeseries_csv: &'a [u8],
    /// The terminal summary and the command that reproduces the run.
    pub summary: &'a str,
    pub reproduce: &'a str,
    /// The system diagram (inline SVG), drawn from the scenario before the run.
    pub diagram: Option<&'a str>,
    pub png: bool,
}

/// (relative path, bytes), in a fixed order.
pub fn files(v: &Views) -> Result<Vec<(String, Vec<u8>)>, String> {
    let input = PlotInput::new(&v.report.scenario, v.metrics, v.timeseries_csv)?;
    views_of(v, &input)
}

/// `files`, the time series read from `csv` as it goes (a streamed `timeseries.csv`
/// is not held in memory); `v.timeseries_csv` is not read.
pub fn files_reading(v: &Views, csv: impl std::io::Read) -> Result<Vec<(String, Vec<u8>)>, String> {
    let input = PlotInput::from_reader(&v.report.scenario, v.metrics, csv)?;
    views_of(v, &input)
}

fn views_of(v: &Views, input: &PlotInput) -> Result<Vec<(String, Vec<u8>)>, String> {
    let plots = render(input, v.png)?;
    let mut out = Vec::new();
    for p in &plots {
        out.push((format!("plots/{}.svg", p.name), p.svg.clone().into_bytes()));
        if let Some(png) = &p.png {
            out.push((format!("plots/{}.png", p.name), png.clone()));
        }
    }
    let inline: Vec<(String, String)> = plots
        .iter()
        .map(|p| (p.title.clone(), p.svg.clone()))
        .collect();
    let html = page(&Page {
        report: v.report,
        summary: v.summary,
        reproduce: v.reproduce,
        plots: &inline,
        diagram: v.diagram,
    });
    out.push(("report.html".to_owned(), html.into_bytes()));
    Ok(out)
}
