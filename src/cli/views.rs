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

/// Where the bar of a run stands after `elapsed_s` wall seconds, and what it says: over
/// simulated time (milliseconds), or, for a run limited by `requests` alone, over the
/// requests answered (the run is done once the last one is answered, so indicatif's ETA
/// is from the answers per wall second; the requests sent run ahead by those in flight).
fn bar_line(p: &crate::model::Progress, elapsed_s: f64) -> (u64, String) {
    let rate = p.events as f64 / elapsed_s.max(1e-9) / 1e6;
    let now_s = p.now.as_secs_f64();
    let (answered, events) = (p.requests_answered, p.events);
    match (p.end, p.max_requests) {
        (None, Some(max)) => (
            answered.min(max),
            format!(
                "{answered} of {max} requests answered · simulated {now_s:.1} s · \
                 {events} events · {rate:.2}M events/s"
            ),
        ),
        (end, _) => {
            let of = end.map_or(String::new(), |e| format!(" of {:.1} s", e.as_secs_f64()));
            (
                (now_s * 1000.0) as u64,
                format!(
                    "simulated {now_s:.1} s{of} · {answered} requests answered · \
                     {events} events · {rate:.2}M events/s"
                ),
            )
        }
    }
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
        let (position, message) = bar_line(&p, self.started.elapsed().as_secs_f64());
        bar.set_position(position);
        bar.set_message(message);
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

#[cfg(test)]
mod tests {
    use super::bar_line;
    use crate::engine::SimTime;
    use crate::model::Progress;

    fn at(now_ms: u64, end_s: Option<u64>, max: Option<u64>) -> Progress {
        Progress {
            now: SimTime::from_nanos(now_ms * 1_000_000),
            end: end_s.map(|s| SimTime::from_nanos(s * 1_000_000_000)),
            events: 3_000_000,
            requests_sent: 1_200,
            requests_answered: 1_150,
            max_requests: max,
        }
    }

    #[test]
    fn a_request_limited_run_counts_the_requests_answered() {
        let (position, message) = bar_line(&at(12_500, None, Some(5_000)), 2.0);
        assert_eq!(position, 1_150, "answered, not the 1,200 sent");
        assert_eq!(
            message,
            "1150 of 5000 requests answered · simulated 12.5 s · 3000000 events · 1.50M events/s"
        );
        // Never past the bar's end.
        let mut p = at(12_500, None, Some(1_000));
        p.requests_answered = 1_001;
        assert_eq!(bar_line(&p, 1.0).0, 1_000);
    }

    #[test]
    fn a_run_with_a_duration_moves_with_simulated_time() {
        let (position, message) = bar_line(&at(12_500, Some(60), Some(5_000)), 4.0);
        assert_eq!(position, 12_500);
        assert_eq!(
            message,
            "simulated 12.5 s of 60.0 s · 1150 requests answered · 3000000 events · 0.75M events/s"
        );
        let (position, message) = bar_line(&at(12_500, None, None), 4.0);
        assert_eq!(position, 12_500);
        assert!(message.starts_with("simulated 12.5 s · 1150 requests answered"));
    }
}
