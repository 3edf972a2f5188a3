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

/// A progress bar on stderr for a run or an explore that lasts longer than about a
/// second: only on a terminal and without `-q`. It is fed from the CLI side (the run
/// reports every `model::PROGRESS_EVERY` events, an explore after each seed), reads the
/// wall clock here, and never touches the outputs.
pub struct Bar {
    bar: Option<indicatif::ProgressBar>,
    started: std::time::Instant,
    revealed: bool,
}

impl Bar {
    /// `len`: the run's simulated milliseconds, or the number of seeds (None: unknown).
    pub fn new(quiet: bool, len: Option<u64>, template: &str) -> Bar {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let style = indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            let bar = indicatif::ProgressBar::with_draw_target(
                len,
                indicatif::ProgressDrawTarget::hidden(),
            );
            bar.set_style(style);
            bar
        });
        Bar {
            bar,
            started: std::time::Instant::now(),
            revealed: false,
        }
    }

    /// For a run: a bar over simulated time, or over requests sent for a run with a
    /// request limit and no duration (a spinner without either).
    pub fn run(quiet: bool, duration_ms: Option<u64>, max_requests: Option<u64>) -> Bar {
        let len = duration_ms.or(max_requests);
        let template = match len {
            Some(_) => "{bar:40} {msg} · ETA {eta}",
            None => "{spinner} {msg}",
        };
        Bar::new(quiet, len, template)
    }

    pub fn progress(&mut self, p: crate::model::Progress) {
        let Some(bar) = &self.bar else { return };
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = p.events as f64 / elapsed.max(1e-9);
        let now_s = p.now.as_secs_f64();
        if let (None, Some(max)) = (p.end, p.max_requests) {
            // The ETA is indicatif's, from the requests sent per wall second; the run
            // still drains after the last one.
            bar.set_position(p.requests_sent.min(max));
            bar.set_message(format!(
                "{} of {max} requests · simulated {now_s:.1} s · {} events · {:.2}M events/s",
                p.requests_sent,
                p.events,
                rate / 1e6
            ));
            self.reveal();
            return;
        }
        let msg = match p.end {
            Some(end) => format!(
                "simulated {now_s:.1} s of {:.1} s · {} events · {:.2}M events/s",
                end.as_secs_f64(),
                p.events,
                rate / 1e6
            ),
            None => format!(
                "simulated {now_s:.1} s · {} events · {:.2}M events/s",
                p.events,
                rate / 1e6
            ),
        };
        bar.set_position((now_s * 1000.0) as u64);
        bar.set_message(msg);
        self.reveal();
    }

    /// Advances by `n` (an explore's seeds).
    pub fn advance(&mut self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
        self.reveal();
    }

    /// Shown only once the work has lasted about a second.
    fn reveal(&mut self) {
        if let Some(bar) = &self.bar
            && !self.revealed
            && self.started.elapsed().as_millis() >= 1000
        {
            self.revealed = true;
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }

    /// Clears the bar before anything else is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
