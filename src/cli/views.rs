//! The CLI side of the views: `meshsim graph`, the diagram and views a run writes,
//! and the progress bar of long runs.

use super::{invalid, load};
use crate::graph::{self, Topology};
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    /// Renders in GitHub Markdown (```mermaid blocks).
    Mermaid,
    /// Graphviz: `meshsim graph S --format dot | dot -Tsvg > system.svg`.
    Dot,
    /// The SVG meshsim draws itself (the one in report.html).
    Svg,
}

/// `meshsim graph S`: prints the topology.
pub fn graph_command(arg: &str, set: &[String], format: GraphFormat) -> ExitCode {
    let scenario = match load(arg, set) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    let t = Topology::from_spec(&scenario.spec);
    print!(
        "{}",
        match format {
            GraphFormat::Mermaid => graph::mermaid(&t),
            GraphFormat::Dot => graph::dot(&t),
            GraphFormat::Svg => graph::svg(&t),
        }
    );
    ExitCode::SUCCESS
}
