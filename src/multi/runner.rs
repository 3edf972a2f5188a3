//! One design (a scenario text plus `--set` overrides) run at many seeds, in
//! parallel across cores. Runs are independent, so they can go to any thread; the
//! results come back in the order of the inputs (rayon's indexed `collect`), which is
//! what makes every output identical whatever the thread count.

use crate::metrics::consistency::{FlowMetrics, LagRow};
use crate::metrics::{RowSink, SeriesKind, SeriesRow};
use crate::report::csv::TimeseriesStream;
use crate::report::expect::Bound;
use crate::scenario::{self, Scenario, ScenarioError};
use rayon::prelude::*;

/// The most seeds one command runs (per design or per sweep point): every seed's
/// report is held until the aggregate is written (~100 KB each for a large scenario;
/// its time series is not: `Rows`).
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

/// What a run keeps of its time series. Rows never pile up in memory run after run:
/// a many-run command keeps its runs' summaries, and at most one run's rows at a time.
#[derive(Clone, Debug)]
pub enum Rows {
    /// None: each bucket's rows are dropped as it closes (sweeps, checks, all but the
    /// first seed of a comparison).
    Dropped,
    /// The bytes of its `timeseries.csv`, in memory (a comparison's first seed, for the
    /// pictures that overlay the two designs).
    Kept,
    /// Its `report.json` and `timeseries.csv` in this folder (`run --seeds`): the rows
    /// stream to a staged temporary as buckets close, and `SeedRun::commit` moves both
    /// files in once every run has succeeded.
    Files(std::path::PathBuf),
}

/// What one seed's run left: its report as JSON, per expectation the value the check
/// read and the bound it compared with, and what `Rows` asked for. Its size depends on
/// the scenario's entities, not on the run's length.
pub struct SeedRun {
    pub seed: u64,
    pub report: serde_json::Value,
    /// With `Rows::Kept`; empty otherwise.
    pub timeseries: Vec<u8>,
    /// (value, bound, passed) per `[[expect]]`, in the scenario's order.
    pub checks: Vec<(f64, f64, bool)>,
    pub events: u64,
    /// Each workload's latency CDF (for pictures that overlay designs).
    pub curves: Vec<crate::report::plots::Curve>,
    /// With `Rows::Files`: the staged time series and the report's text.
    pub files: Option<SeedFiles>,
}

/// A run's files waiting to be moved in (`Rows::Files`).
pub struct SeedFiles {
    dir: std::path::PathBuf,
    staged: crate::report::Staged,
    report_text: String,
}

impl SeedRun {
    /// Moves the run's `report.json` and `timeseries.csv` into their folder, as one set
    /// (nothing to do without `Rows::Files`).
    pub fn commit(&mut self) -> Result<(), String> {
        let Some(f) = self.files.take() else {
            return Ok(());
        };
        let files = [
            ("report.json", f.report_text.into_bytes()),
            // Already written, in `staged`.
            ("timeseries.csv", Vec::new()),
        ];
        crate::report::write_all_staged(&f.dir, &files, f.staged)
            .map_err(|e| format!("cannot write to {}: {e}", f.dir.display()))
    }
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

    /// Runs one seed, keeping of its time series what `rows` says. Errors are
    /// messages: the design was validated before any run, so what remains is a run
    /// refused by its budget, or a file that cannot be written.
    pub fn run(&self, seed: u64, rows: &Rows) -> Result<SeedRun, String> {
        let sc = self.scenario(Some(seed)).map_err(|e| e.to_string())?;
        let (staged, sink) = row_sink(rows)?;
        let expectations = sc.expectations.clone();
        let path = sc.path.clone();
        let streamed = sink.is_some();
        let mut outcome = crate::simulate_streaming(sc, &mut |_| Ok(()), sink)
            .map_err(|e| format!("{path} seed {seed}: {e}"))?;
        if let Some(sink) = outcome.metrics.series.take_sink() {
            sink.finish()
                .map_err(|e| format!("{path} seed {seed}: cannot write its time series: {e}"))?;
        }
        assert!(
            !streamed
                || (outcome.metrics.series.rows.is_empty()
                    && outcome.metrics.consistency.lag_rows.is_empty()),
            "a streamed run keeps no rows"
        );
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
        let timeseries = match rows {
            Rows::Kept => crate::report::csv::timeseries(
                &outcome.metrics.series,
                &outcome.metrics.consistency,
            ),
            Rows::Dropped | Rows::Files(_) => Vec::new(),
        };
        let files = match (rows, staged) {
            (Rows::Files(dir), Some(staged)) => Some(SeedFiles {
                dir: dir.clone(),
                staged,
                report_text: outcome.report.to_json(),
            }),
            _ => None,
        };
        Ok(SeedRun {
            seed,
            timeseries,
            report,
            checks,
            events: outcome.report.events,
            curves: outcome
                .metrics
                .workloads
                .iter()
                .filter_map(|w| crate::report::plots::curve(&w.name, &w.latency))
                .collect(),
            files,
        })
    }
}

/// A staged `timeseries.csv`, if rows go to a file, and the sink the run writes to
/// (None: the rows are kept in memory).
type RowOutput = (Option<crate::report::Staged>, Option<Box<dyn RowSink>>);

/// Where a run's time-series rows go, as `rows` says: dropped, kept in memory, or
/// streamed to a staged `timeseries.csv` (returned with its stream).
fn row_sink(rows: &Rows) -> Result<RowOutput, String> {
    Ok(match rows {
        Rows::Dropped => (None, Some(Box::new(DroppedRows))),
        Rows::Kept => (None, None),
        Rows::Files(dir) => {
            let (staged, file) = crate::report::Staged::create(dir, "timeseries.csv")
                .map_err(|e| format!("cannot write to {}: {e}", dir.display()))?;
            let stream = TimeseriesStream::new(file, &staged.scratch("flows"));
            (Some(staged), Some(Box::new(stream)))
        }
    })
}

/// A sink that drops every row: a run whose time series nobody reads.
pub(crate) struct DroppedRows;

impl RowSink for DroppedRows {
    fn rows(&mut self, _: &[(SeriesKind, String)], _: &[SeriesRow]) {}
    fn flow_rows(&mut self, _: &[FlowMetrics], _: &[LagRow]) {}
    fn finish(self: Box<Self>) -> Result<(), String> {
        Ok(())
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

/// Runs `design` at every seed, in parallel, the k-th seed keeping `rows(k, seed)` of
/// its time series; the first error (in seed order) wins.
pub fn run_seeds(
    pool: &rayon::ThreadPool,
    design: &Design,
    seeds: &[u64],
    rows: impl Fn(usize, u64) -> Rows + Sync + Send,
) -> Result<Vec<SeedRun>, String> {
    let indexed: Vec<(usize, u64)> = seeds.iter().copied().enumerate().collect();
    let mut results = map_ordered(pool, &indexed, "seeds", |&(k, s)| {
        design.run(s, &rows(k, s))
    });
    if let Some(k) = results.iter().position(Result::is_err) {
        let error = results.remove(k).err().expect("found above");
        // The staged files of the other runs go, the last made first, so the folders
        // the first ones created are empty when their turn comes.
        while results.pop().is_some() {}
        return Err(error);
    }
    Ok(results.into_iter().map(|r| r.expect("no error")).collect())
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
    use std::path::Path;

    fn mm1(bucket: &str) -> Design {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/mm1.toml");
        Design {
            source: Source {
                path: path.to_owned(),
                stem: "mm1".to_owned(),
                text: std::fs::read_to_string(path).unwrap(),
            },
            // About 3 simulated hours: 11,000 one-second buckets or 4 one-hour ones.
            set: vec![
                "simulation.requests=10000".to_owned(),
                format!("report.bucket=\"{bucket}\""),
            ],
        }
    }

    /// The bytes a finished run still holds: what a many-run command keeps per run.
    fn held(r: &SeedRun) -> usize {
        r.timeseries.len()
            + r.files.as_ref().map_or(0, |f| f.report_text.len())
            + serde_json::to_string(&r.report).unwrap().len()
            + r.curves.iter().map(|c| c.points.len() * 16).sum::<usize>()
    }

    #[test]
    fn a_finished_run_holds_the_same_whatever_its_number_of_buckets() {
        let pool = pool(Some(1)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let seeds = [1, 2];
        for rows in [
            |_: &Path| Rows::Dropped,
            |d: &Path| Rows::Files(d.to_path_buf()),
        ] {
            let mut held_by = Vec::new();
            for bucket in ["1s", "1h"] {
                let out = dir.path().join(bucket);
                let runs = run_seeds(&pool, &mm1(bucket), &seeds, |_, s| {
                    rows(&out.join(s.to_string()))
                })
                .unwrap();
                assert!(runs.iter().all(|r| r.timeseries.is_empty()));
                held_by.push(runs.iter().map(held).sum::<usize>());
            }
            // Rows kept would be ~1 MB a run at 1 s (11,000 rows of 3 series).
            assert!(held_by[0] < held_by[1] + 1024, "{held_by:?}");
        }
        // Kept (a comparison's first seed): the CSV, one row per bucket and series.
        let kept = mm1("1s").run(1, &Rows::Kept).unwrap();
        let lines = kept.timeseries.iter().filter(|&&b| b == b'\n').count();
        assert!(lines > 3 * 10_000, "{lines}");
    }

    #[test]
    fn a_seeds_files_stream_and_appear_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seeds").join("7");
        let mut run = mm1("1s").run(7, &Rows::Files(out.clone())).unwrap();
        // Until the commit only hidden temporaries exist: a failed sibling run would
        // leave nothing.
        let visible = |d: &Path| {
            std::fs::read_dir(d)
                .unwrap()
                .filter(|e| {
                    !e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with('.')
                })
                .count()
        };
        assert_eq!(visible(&out), 0);
        run.commit().unwrap();
        assert_eq!(visible(&out), 2);
        // The streamed file is the one the rows kept in memory make.
        let kept = mm1("1s").run(7, &Rows::Kept).unwrap();
        assert_eq!(
            std::fs::read(out.join("timeseries.csv")).unwrap(),
            kept.timeseries
        );
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        assert_eq!(report, kept.report);
        // A run dropped before its commit takes its folders with it.
        let gone = dir.path().join("gone");
        drop(mm1("1h").run(8, &Rows::Files(gone.join("8"))).unwrap());
        assert!(!gone.exists());
    }

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
