//! One design (a scenario text plus `--set` overrides) run at many seeds, in
//! parallel across cores. Runs are independent, so they can go to any thread; the
//! results come back in the order of the inputs (rayon's indexed `collect`), which is
//! what makes every output identical whatever the thread count.

use crate::report::expect::Bound;
use crate::scenario::{self, Scenario, ScenarioError};
use rayon::prelude::*;

/// The most seeds one command runs (per design or per sweep point): every seed's
/// report is held until the aggregate is written (~100 KB each for a large scenario).
pub const MAX_SEEDS: u64 = 10_000;

/// A scenario's text and what to call it.
#[derive(Clone, Debug)]
pub struct Source {
    /// The path or `scenarios/NAME.toml` for a bundled one, for messages.
    pub path: String,
    /// The name used when the scenario sets none.
    pub stem: String,
    pub text: String,
}

/// A design: a scenario and the overrides that make it this variant.
#[derive(Clone, Debug)]
pub struct Design {
    pub source: Source,
    pub set: Vec<String>,
}

/// What one seed's run left: its report (as JSON and as text), its time series and,
/// per expectation, the value the check read and the bound it compared with.
pub struct SeedRun {
    pub seed: u64,
    pub report: serde_json::Value,
    pub report_text: String,
    pub timeseries: Vec<u8>,
    /// (value, bound, passed) per `[[expect]]`, in the scenario's order.
    pub checks: Vec<(f64, f64, bool)>,
    pub events: u64,
    /// Each workload's latency CDF (for pictures that overlay designs).
    pub curves: Vec<crate::report::plots::Curve>,
}

impl Design {
    /// The scenario at `seed` (or its own seed), overrides applied.
    pub fn scenario(&self, seed: Option<u64>) -> Result<Scenario, ScenarioError> {
        let mut set = self.set.clone();
        if let Some(s) = seed {
            set.push(format!("simulation.seed={s}"));
        }
        scenario::from_source(
            &self.source.path,
            &self.source.stem,
            &self.source.text,
            &set,
        )
    }

    /// Runs one seed. Errors are messages: the design was validated before any run,
    /// so what remains is a run refused by its budget.
    pub fn run(&self, seed: u64) -> Result<SeedRun, String> {
        let sc = self.scenario(Some(seed)).map_err(|e| e.to_string())?;
        let expectations = sc.expectations.clone();
        let path = sc.path.clone();
        let outcome = crate::simulate(sc).map_err(|e| format!("{path} seed {seed}: {e}"))?;
        let report = outcome.report.json_value();
        let checks = expectations
            .iter()
            .zip(&outcome.report.expectations)
            .map(|(e, r)| {
                let bound = match &e.check.bound {
                    Bound::Number(x) => *x,
                    Bound::Path(p) => {
                        let view = match e.window {
                            Some(w) => crate::report::json::window_view(
                                &outcome.metrics.windows[w],
                                outcome.metrics.window_end,
                            ),
                            None => report.clone(),
                        };
                        crate::report::expect::resolve(&view, p).unwrap_or(f64::NAN)
                    }
                };
                (r.value, bound, r.passed)
            })
            .collect();
        Ok(SeedRun {
            seed,
            report_text: outcome.report.to_json(),
            timeseries: crate::report::csv::timeseries(
                &outcome.metrics.series,
                &outcome.metrics.consistency,
            ),
            report,
            checks,
            events: outcome.report.events,
            curves: outcome
                .metrics
                .workloads
                .iter()
                .filter_map(|w| crate::report::plots::curve(&w.name, &w.latency))
                .collect(),
        })
    }
}

/// `--seeds N` (seeds 1 to N) or `--seeds A..B` (A to B, both included).
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let expected =
        "N (seeds 1 to N) or A..B (seeds A to B), at most 10000 seeds, each 0 to 2^63 - 1";
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .ok()
            .filter(|&x| x <= i64::MAX as u64)
            .ok_or_else(|| format!("--seeds {text}: `{s}` is not a seed; expected {expected}"))
    };
    let (first, last) = match text.split_once("..") {
        Some((a, b)) => (parse(a)?, parse(b.trim_start_matches('='))?),
        None => {
            let n = parse(text)?;
            if n == 0 {
                return Err(format!("--seeds 0 runs nothing; expected {expected}"));
            }
            (1, n)
        }
    };
    if last < first {
        return Err(format!(
            "--seeds {text}: the range ends before it starts; expected {expected}"
        ));
    }
    if last - first >= MAX_SEEDS {
        return Err(format!(
            "--seeds {text}: {} seeds; expected {expected}",
            last - first + 1
        ));
    }
    Ok((first..=last).collect())
}

/// The pool for `--threads K` (0 or absent: one thread per core).
pub fn pool(threads: Option<usize>) -> Result<rayon::ThreadPool, String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .map_err(|e| format!("cannot start {} threads: {e}", threads.unwrap_or(0)))
}

/// `f` over `items` on `pool`, results in the order of `items`. A progress bar is
/// drawn on stderr when it is a terminal (and only then: logs stay clean).
pub fn map_ordered<T: Sync, R: Send>(
    pool: &rayon::ThreadPool,
    items: &[T],
    what: &str,
    f: impl Fn(&T) -> R + Sync + Send,
) -> Vec<R> {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() && items.len() > 1 {
        let b = indicatif::ProgressBar::new(items.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} runs, eta {eta}")
                .expect("a valid template"),
        );
        b.set_message(what.to_owned());
        Some(b)
    } else {
        None
    };
    let out = pool.install(|| {
        items
            .par_iter()
            .map(|x| {
                let r = f(x);
                if let Some(b) = &bar {
                    b.inc(1);
                }
                r
            })
            .collect()
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    out
}

/// Runs `design` at every seed, in parallel; the first error (in seed order) wins.
pub fn run_seeds(
    pool: &rayon::ThreadPool,
    design: &Design,
    seeds: &[u64],
) -> Result<Vec<SeedRun>, String> {
    map_ordered(pool, seeds, "seeds", |&s| design.run(s))
        .into_iter()
        .collect()
}

/// A string as one shell word (POSIX): left bare when it is only safe characters,
/// else single-quoted with embedded quotes closed and escaped.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A default output folder that only this exact invocation maps to: the base name,
/// plus a short hash of whatever makes the run different (overrides, seeds, params),
/// so two different runs never silently overwrite each other's files.
pub fn default_out(base: &str, distinguishing: &[String]) -> std::path::PathBuf {
    let mut name = base.to_owned();
    if !distinguishing.is_empty() {
        let joined = distinguishing.join("\u{1f}");
        let h = crate::engine::rng::stable_hash(joined.as_bytes());
        name.push_str(&format!("-{:08x}", h as u32));
    }
    std::path::PathBuf::from("out").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_counts_and_ranges() {
        assert_eq!(parse_seeds("3").unwrap(), [1, 2, 3]);
        assert_eq!(parse_seeds("5..7").unwrap(), [5, 6, 7]);
        assert!(parse_seeds("0").unwrap_err().contains("runs nothing"));
        assert!(parse_seeds("7..5").unwrap_err().contains("ends before"));
        assert!(parse_seeds("1..10000").is_ok() && parse_seeds("1..10001").is_err());
        assert!(parse_seeds("9223372036854775808").is_err());
        assert_eq!(
            parse_seeds("9223372036854775807..9223372036854775807").unwrap(),
            [i64::MAX as u64]
        );
    }

    #[test]
    fn shell_quoting_pastes_back_as_one_word() {
        assert_eq!(shell_quote("simulation.seed=7"), "simulation.seed=7");
        assert_eq!(
            shell_quote("services.a.work={ dist = \"exp\" }"),
            "'services.a.work={ dist = \"exp\" }'"
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
