//! The `meshsim` command line. Exit codes: 0 ok, 1 an expectation failed,
//! 2 invalid input (scenario, override, or a run refused by its event budget).

mod explore;
mod interrupt;
mod multi;

use crate::report;
use crate::scenario::{self, Scenario, ScenarioError};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod classroom;
mod trace;
mod views;

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

#[derive(Parser, Debug)]
#[command(
    name = "meshsim",
    version,
    about = "Deterministic simulation of how microservices talk to each other"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a scenario: print the summary, write report.json and timeseries.csv.
    Run {
        /// A scenario file, or the name of a bundled scenario (see `meshsim list`).
        scenario: String,
        /// Override the scenario's seed (0 to 2^63 - 1: TOML integers are signed).
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
        seed: Option<u64>,
        /// Where to write the reports [default: out/<scenario name>].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Change one scenario value by its TOML path, e.g.
        /// --set services.c.endpoints.get.steps.0.work=200ms (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
        /// Refuse a scenario estimated to need more memory than this, e.g. 4GB
        /// [default: three quarters of the machine's memory].
        #[arg(long, value_name = "SIZE", value_parser = scenario::memory::parse_size)]
        max_memory: Option<u64>,
        /// Also write the plots as PNG (plots/*.png; SVG is always written).
        #[arg(long)]
        png: bool,
        /// Run many seeds: N (1 to N) or A..B; report the mean and 95% interval of
        /// every number, and each seed's report under DIR/seeds/.
        #[arg(long, value_name = "N|A..B", conflicts_with = "seed")]
        seeds: Option<String>,
        /// Threads for --seeds [default: one per core].
        #[arg(long)]
        threads: Option<usize>,
        /// Also trace this fraction of the requests (0 to 1; chosen by a hash of seed,
        /// workload and request number, so the report does not change) into
        /// DIR/trace.json, for Perfetto (docs/traces.md).
        #[arg(long, value_name = "RATE", value_parser = trace::parse_rate, conflicts_with = "seeds")]
        trace_sample: Option<f64>,
    },
    /// Trace one request: its whole life (every attempt, hop, queue wait and piece of
    /// work) as Chrome trace-event JSON for Perfetto or chrome://tracing.
    Trace {
        scenario: String,
        /// Which request of the workload, from 1.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        request: u64,
        /// The workload [default: the first, by name].
        #[arg(long)]
        workload: Option<String>,
        /// The trace file [default: out/<scenario>/trace-<workload>-<N>.json].
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
        seed: Option<u64>,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
        /// Refuse, or stop, a run that needs more memory than this, e.g. 4GB, as `run`
        /// does [default: three quarters of the machine's memory].
        #[arg(long, value_name = "SIZE", value_parser = scenario::memory::parse_size)]
        max_memory: Option<u64>,
    },
    /// Compare two designs at the same seeds (common random numbers): per metric the
    /// paired difference B - A with its 95% interval.
    Compare(multi::CompareArgs),
    /// Run a grid of parameter values x seeds in parallel: sweep.csv, points.csv, runs.json.
    Sweep(multi::SweepArgs),
    /// Unite the shards of a sweep (or an exploration) into what the unsharded run writes.
    Merge {
        /// The shards' output folders.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[arg(long, required = true)]
        out: PathBuf,
    },
    /// Run scenarios and their expectations as a CI gate (exit 0 ok, 1 failed, 2 invalid).
    Check(multi::CheckArgs),
    /// Print the system's diagram: workloads, services, endpoints, calls with their
    /// policies, brokers, queues, topics and consumers.
    Graph {
        scenario: String,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: views::GraphFormat,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// Check a scenario without running it.
    Validate {
        scenario: String,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// List the bundled scenarios.
    List,
    /// Run many seeds with fault schedules drawn from the scenario's [explore]
    /// section; shrink the first failure and write a scenario that replays it.
    Explore(explore::ExploreArgs),
    /// What is wrong with a design before it runs: findings with a code, a severity,
    /// where, why and how to fix it (docs/lint.md). Exit 1 on an error (or, with
    /// --deny warnings, on a warning).
    Lint {
        scenario: String,
        /// `warnings`: exit 1 on a warning too (for CI).
        #[arg(long, value_parser = ["warnings"])]
        deny: Option<String>,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// Print a bundled scenario's source.
    Show { name: String },
    /// Write a commented starting scenario.
    New {
        #[arg(long, value_enum, default_value_t = classroom::Template::Chain)]
        template: classroom::Template,
        file: PathBuf,
    },
    /// Classroom exercises (see exercises/).
    Exercise {
        #[command(subcommand)]
        action: classroom::ExerciseCommand,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        command @ Command::Run { .. } => run_command(command),
        Command::Trace {
            scenario,
            request,
            workload,
            out,
            seed,
            set,
            quiet,
            max_memory,
        } => trace::trace(trace::TraceArgs {
            scenario,
            request,
            workload,
            out,
            set,
            seed,
            quiet,
            max_memory,
        }),
        Command::Graph {
            scenario,
            format,
            set,
        } => views::graph_command(&scenario, &set, format),
        Command::Compare(args) => multi::compare(args),
        Command::Sweep(args) => multi::sweep(args),
        Command::Merge { dirs, out } => multi::merge(&dirs, &out),
        Command::Check(args) => multi::check(args),
        Command::Validate { scenario, set } => classroom::validate(&scenario, &set),
        Command::Explore(args) => explore::explore(args),
        Command::Lint {
            scenario,
            deny,
            set,
        } => classroom::lint(&scenario, deny.is_some(), &set),
        Command::Show { name } => classroom::show(&name),
        Command::New { template, file } => classroom::new(template, &file),
        Command::Exercise { action } => classroom::exercise(action),
        Command::List => list(),
    }
}

/// `run`: one seed, or many with --seeds.
fn run_command(command: Command) -> ExitCode {
    let Command::Run {
        scenario,
        seed,
        out,
        set,
        quiet,
        max_memory,
        png,
        seeds,
        threads,
        trace_sample,
    } = command
    else {
        unreachable!("main passes only `run` here");
    };
    match seeds {
        Some(seeds) => multi::run_seeds(multi::SeedsArgs {
            scenario,
            seeds,
            out,
            set,
            quiet,
            threads,
        }),
        None => run(
            &scenario,
            seed,
            out,
            set,
            quiet,
            max_memory,
            png,
            trace_sample,
        ),
    }
}

/// `list`: each bundled scenario with the first line of its description.
fn list() -> ExitCode {
    for (file, text) in BUNDLED {
        let name = file.trim_end_matches(".toml");
        println!("{name:<28} {}", first_line(&description(text)));
    }
    ExitCode::SUCCESS
}

fn description(text: &str) -> String {
    toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| {
            t.get("simulation")?
                .get("description")?
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

fn first_line(s: &str) -> &str {
    s.trim().lines().next().unwrap_or("")
}

/// A scenario's path label, default name and text: a file, or a bundled one by name.
fn source(arg: &str) -> Result<(String, String, String), ScenarioError> {
    let path = Path::new(arg);
    if !path.exists()
        && let Some((file, text)) = BUNDLED
            .iter()
            .find(|(f, _)| f.trim_end_matches(".toml") == arg || *f == arg)
    {
        let name = file.trim_end_matches(".toml").to_owned();
        return Ok((format!("scenarios/{file}"), name, (*text).to_owned()));
    }
    // A missing file may be a misspelled bundled name: say which one it resembles.
    let text = scenario::read(arg, path).map_err(|e| match e {
        ScenarioError::Read { source, .. } => ScenarioError::Read {
            path: classroom::with_suggestion(arg),
            source,
        },
        e => e,
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".to_owned());
    Ok((arg.to_owned(), stem, text))
}

/// A path if it exists, else a bundled scenario by name.
fn load(arg: &str, set: &[String]) -> Result<Scenario, ScenarioError> {
    let path = Path::new(arg);
    if !path.exists()
        && let Some((file, text)) = BUNDLED
            .iter()
            .find(|(f, _)| f.trim_end_matches(".toml") == arg || *f == arg)
    {
        let label = format!("scenarios/{file}");
        return scenario::from_source(&label, file.trim_end_matches(".toml"), text, set);
    }
    scenario::load(path, set).map_err(|e| match e {
        ScenarioError::Read { path, source } => ScenarioError::Read {
            path: classroom::with_suggestion(&path),
            source,
        },
        e => e,
    })
}

/// `load`, with --seed as one more override (so it shows in the run's folder name).
fn load_seeded(arg: &str, seed: Option<u64>, set: &mut Vec<String>) -> Result<Scenario, ExitCode> {
    if let Some(seed) = seed {
        set.push(format!("simulation.seed={seed}"));
    }
    load(arg, set).map_err(|e| invalid(&e))
}

fn invalid(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(2)
}

fn run(
    arg: &str,
    seed: Option<u64>,
    out: Option<PathBuf>,
    mut set: Vec<String>,
    quiet: bool,
    max_memory: Option<u64>,
    png: bool,
    trace_sample: Option<f64>,
) -> ExitCode {
    let mut scenario = match load_seeded(arg, seed, &mut set) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let seed = scenario.spec.seed;
    let diagram = crate::graph::svg(&crate::graph::Topology::from_spec(&scenario.spec));
    let dir = match out_dir(out, &scenario.name, &set) {
        Ok(dir) => dir,
        Err(code) => return code,
    };
    let (path, text) = (scenario.path.clone(), scenario.text.clone());
    let budget = match memory_budget(&mut scenario, max_memory) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let mut bar = run_bar(quiet, &scenario);
    // Before the temporary exists: a signal from now on removes it.
    interrupt::watch();
    // The time series streams to its temporary as the run goes (memory stays bounded
    // whatever the run's length); it joins the set, all or nothing, at the end.
    let (staged, stream) = match stage_timeseries(&dir) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let observe = crate::model::trace::Observe {
        trace: trace_sample.map(crate::model::trace::TraceSelect::Sample),
        check_attribution: false,
    };
    let ran = simulate(scenario, &observe, &mut bar, budget, Some(Box::new(stream)));
    let (finished, traces) = match ran {
        Ok(o) => o,
        Err(e) => return run_failed(&path, &text, &e),
    };
    let crate::FinishedRun {
        report,
        mut metrics,
    } = finished;
    if let Some(Err(e)) = metrics.series.take_sink().map(|s| s.finish()) {
        return cannot_write(&dir, &e);
    }
    let reproduce = reproduce_command(arg, seed, &set);
    let summary = report::text::summary(&report, &reproduce);
    let views = report::views::Views {
        report: &report,
        metrics: &metrics,
        timeseries_csv: &[],
        summary: &summary,
        reproduce: &reproduce,
        diagram: Some(&diagram),
        png,
    };
    let traces = trace_sample.map(|_| &traces);
    if let Err(code) = write_reports(&dir, &path, staged, &views, traces) {
        return code;
    }
    if !quiet {
        print_run(&summary, &dir, traces.is_some());
    }
    expectations_verdict(&report, seed)
}

/// The run's output folder, refused before the run, not after it: a long run must not
/// end in "cannot write". A run with overrides gets its own default folder: it must
/// not overwrite the report of the scenario as written (or of another variant).
fn out_dir(out: Option<PathBuf>, name: &str, set: &[String]) -> Result<PathBuf, ExitCode> {
    let dir = out.unwrap_or_else(|| crate::multi::runner::default_out(name, set));
    match report::check_writable(&dir, report::RUN_OUTPUTS) {
        Ok(()) => Ok(dir),
        Err(e) => Err(cannot_write(&dir, &e)),
    }
}

fn cannot_write(dir: &Path, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("cannot write the reports to {}: {e}", dir.display());
    ExitCode::from(2)
}

/// The time series' temporary in the output folder, and the stream that writes it.
fn stage_timeseries(
    dir: &Path,
) -> Result<(report::Staged, report::csv::TimeseriesStream), ExitCode> {
    let (staged, file) =
        report::Staged::create(dir, "timeseries.csv").map_err(|e| cannot_write(dir, &e))?;
    let stream = report::csv::TimeseriesStream::new(file, &staged.scratch("flows"));
    Ok((staged, stream))
}

/// The summary, and what was written where.
fn print_run(summary: &str, dir: &Path, traced: bool) {
    print!("{summary}");
    let trace = if traced { ", trace.json" } else { "" };
    println!(
        "\nwrote {}/report.json, timeseries.csv{trace}, report.html and plots/",
        dir.display()
    );
}

/// Draws the views from the staged time series and writes the whole output set.
fn write_reports(
    dir: &Path,
    path: &str,
    staged: report::Staged,
    views: &report::views::Views,
    traces: Option<&crate::metrics::trace::Traces>,
) -> Result<(), ExitCode> {
    let csv = match std::fs::File::open(staged.path()) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => return Err(cannot_write(dir, &e)),
    };
    let drawn = match report::views::files_reading(views, csv) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("cannot draw the views of {path}: {e}");
            return Err(ExitCode::from(2));
        }
    };
    let files = output_files(views.report, &drawn, traces);
    report::write_all_staged(dir, &files, staged).map_err(|e| cannot_write(dir, &e))
}

/// The memory budget a run keeps to (the given one, else the machine's), after
/// refusing a scenario whose estimate is already above it. `Err` is the exit code.
fn memory_budget(
    scenario: &mut Scenario,
    max_memory: Option<u64>,
) -> Result<Option<u64>, ExitCode> {
    let budget = max_memory.or_else(scenario::memory::machine_budget);
    // The hold limits follow only a budget the user gave: unset, they are sized to the
    // same fixed budget as in `check`, `sweep` and the library, so a scenario trips at
    // the same event on every machine (the allocator guards the machine's memory).
    if let Some(given) = max_memory {
        scenario.spec.holds.memory_budget = given;
    }
    if let Some(budget) = budget {
        use scenario::memory::{estimate, human};
        let need = estimate(&scenario.spec);
        if need.bytes > budget {
            return Err(invalid(&format!(
                "{}: this scenario needs about {} of memory before it runs (the most: {}), \
                 above the budget of {}; make it smaller, or raise the budget with --max-memory",
                scenario.path,
                human(need.bytes),
                need.largest,
                human(budget)
            )));
        }
    }
    Ok(budget)
}

/// The progress bar of one run, as long as its duration or request count.
fn run_bar(quiet: bool, scenario: &Scenario) -> views::Bar {
    views::Bar::run(
        quiet,
        scenario.spec.duration.map(|d| d.as_nanos() / 1_000_000),
        scenario.spec.max_requests,
    )
}

/// Runs the scenario with its progress bar, stopping at a signal or past the memory
/// budget.
fn simulate(
    scenario: Scenario,
    observe: &crate::model::trace::Observe,
    bar: &mut views::Bar,
    budget: Option<u64>,
    rows: Option<Box<dyn crate::metrics::RowSink>>,
) -> Result<(crate::FinishedRun, crate::metrics::trace::Traces), crate::engine::RunError> {
    let outcome = crate::simulate_observed(
        scenario,
        observe,
        &mut |p| {
            bar.progress(p);
            interrupt::check(p)?;
            budget.map_or(Ok(()), |b| memory_within(b, p))
        },
        rows,
    );
    bar.finish();
    outcome
}

/// Says why a run stopped, and exits with the code that tells why.
fn run_failed(path: &str, text: &str, e: &crate::engine::RunError) -> ExitCode {
    match e {
        crate::engine::RunError::Interrupted { .. } => {
            eprintln!("{path}: {e}");
            ExitCode::from(interrupt::EXIT_CODE)
        }
        e => invalid(&scenario::run_error::locate(path, text, e)),
    }
}

/// The command line that makes this run again.
fn reproduce_command(arg: &str, seed: u64, set: &[String]) -> String {
    let quote = crate::multi::runner::shell_quote;
    let mut reproduce = format!("meshsim run {} --seed {seed}", quote(arg));
    for s in set.iter().filter(|s| !s.starts_with("simulation.seed=")) {
        reproduce.push_str(&format!(" --set {}", quote(s)));
    }
    reproduce
}

/// The run's output set, written all or nothing: the report, the time series (already
/// in the staging folder), the views, and the sampled traces if asked.
fn output_files<'a>(
    report: &report::Report,
    views: &'a [(String, Vec<u8>)],
    traces: Option<&crate::metrics::trace::Traces>,
) -> Vec<(&'a str, Vec<u8>)> {
    let mut files = vec![
        ("report.json", report.to_json().into_bytes()),
        // Already written, in `staged`.
        ("timeseries.csv", Vec::new()),
    ];
    files.extend(views.iter().map(|(n, b)| (n.as_str(), b.clone())));
    assert!(
        files
            .iter()
            .map(|f| f.0)
            .filter(|n| !n.starts_with("plots/"))
            .eq(report::RUN_OUTPUTS.iter().copied())
    );
    if let Some(traces) = traces {
        files.push((
            "trace.json",
            report::trace::chrome_json(traces).into_bytes(),
        ));
    }
    files
}

/// Exit 0 when every expectation held; else each failure on stderr (also with
/// --quiet: a CI log must say what failed) and exit 1.
fn expectations_verdict(report: &report::Report, seed: u64) -> ExitCode {
    let failed = report.expectations.iter().filter(|e| !e.passed).count();
    if failed == 0 {
        return ExitCode::SUCCESS;
    }
    for e in report.expectations.iter().filter(|e| !e.passed) {
        eprintln!("FAIL {}: value {}", e.check, e.value);
    }
    eprintln!(
        "{failed} of {} expectations failed (seed {seed}, scenario hash {})",
        report.expectations.len(),
        report.scenario_hash
    );
    ExitCode::from(1)
}

/// The run's memory, read between two events from the counting allocator: past the
/// budget, the run stops before anything is written.
fn memory_within(budget: u64, p: crate::model::Progress) -> Result<(), crate::engine::RunError> {
    let held = crate::allocator::held();
    if held > budget {
        return Err(crate::engine::RunError::MemoryBudget {
            held,
            budget,
            at: p.now,
            events: p.events,
        });
    }
    Ok(())
}
