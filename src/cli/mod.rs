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
        Command::Run {
            scenario,
            seeds: Some(seeds),
            out,
            set,
            quiet,
            threads,
            ..
        } => multi::run_seeds(multi::SeedsArgs {
            scenario,
            seeds,
            out,
            set,
            quiet,
            threads,
        }),
        Command::Run {
            scenario,
            seed,
            out,
            set,
            quiet,
            max_memory,
            png,
            trace_sample,
            ..
        } => run(
            &scenario,
            seed,
            out,
            set,
            quiet,
            max_memory,
            png,
            trace_sample,
        ),
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
        Command::List => {
            for (file, text) in BUNDLED {
                let name = file.trim_end_matches(".toml");
                println!("{name:<28} {}", first_line(&description(text)));
            }
            ExitCode::SUCCESS
        }
    }
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
    if let Some(seed) = seed {
        set.push(format!("simulation.seed={seed}"));
    }
    let mut scenario = match load(arg, &set) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    let seed = scenario.spec.seed;
    let diagram = crate::graph::svg(&crate::graph::Topology::from_spec(&scenario.spec));
    let name = scenario.name.clone();
    // A run with overrides gets its own default folder: it must not overwrite the
    // report of the scenario as written (or of another variant).
    let dir = out.unwrap_or_else(|| crate::multi::runner::default_out(&name, &set));
    // Before the run, not after it: a long run must not end in "cannot write".
    if let Err(e) = report::check_writable(&dir, report::RUN_OUTPUTS) {
        eprintln!("cannot write the reports to {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let (path, text) = (scenario.path.clone(), scenario.text.clone());
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
            return invalid(&format!(
                "{path}: this scenario needs about {} of memory before it runs (the most: {}), \
                 above the budget of {}; make it smaller, or raise the budget with --max-memory",
                human(need.bytes),
                need.largest,
                human(budget)
            ));
        }
    }
    let mut bar = views::Bar::run(
        quiet,
        scenario.spec.duration.map(|d| d.as_nanos() / 1_000_000),
        scenario.spec.max_requests,
    );
    // The time series streams to its temporary as the run goes (memory stays bounded
    // whatever the run's length); it joins the set, all or nothing, at the end.
    let cannot_write = |e: &dyn std::fmt::Display| {
        eprintln!("cannot write the reports to {}: {e}", dir.display());
        ExitCode::from(2)
    };
    // Before the temporary exists: a signal from now on removes it.
    interrupt::watch();
    let (staged, file) = match report::Staged::create(&dir, "timeseries.csv") {
        Ok(s) => s,
        Err(e) => return cannot_write(&e),
    };
    let stream = report::csv::TimeseriesStream::new(file, &staged.scratch("flows"));
    let observe = crate::model::trace::Observe {
        trace: trace_sample.map(crate::model::trace::TraceSelect::Sample),
        check_attribution: false,
    };
    let outcome = crate::simulate_observed(
        scenario,
        &observe,
        &mut |p| {
            bar.progress(p);
            interrupt::check(p)?;
            budget.map_or(Ok(()), |b| memory_within(b, p))
        },
        Some(Box::new(stream)),
    );
    bar.finish();
    let (
        crate::FinishedRun {
            report,
            mut metrics,
        },
        traces,
    ) = match outcome {
        Ok(o) => o,
        Err(e @ crate::engine::RunError::Interrupted { .. }) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(interrupt::EXIT_CODE);
        }
        Err(e) => return invalid(&scenario::run_error::locate(&path, &text, &e)),
    };
    if let Some(Err(e)) = metrics.series.take_sink().map(|s| s.finish()) {
        return cannot_write(&e);
    }
    let quote = crate::multi::runner::shell_quote;
    let mut reproduce = format!("meshsim run {} --seed {seed}", quote(arg));
    for s in set.iter().filter(|s| !s.starts_with("simulation.seed=")) {
        reproduce.push_str(&format!(" --set {}", quote(s)));
    }
    let summary = report::text::summary(&report, &reproduce);
    let csv = match std::fs::File::open(staged.path()) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => return cannot_write(&e),
    };
    let views = match report::views::files_reading(
        &report::views::Views {
            report: &report,
            metrics: &metrics,
            timeseries_csv: &[],
            summary: &summary,
            reproduce: &reproduce,
            diagram: Some(&diagram),
            png,
        },
        csv,
    ) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("cannot draw the views of {path}: {e}");
            return ExitCode::from(2);
        }
    };
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
    // The sampled traces join the same all-or-nothing set.
    if trace_sample.is_some() {
        files.push((
            "trace.json",
            report::trace::chrome_json(&traces).into_bytes(),
        ));
    }
    if let Err(e) = report::write_all_staged(&dir, &files, staged) {
        return cannot_write(&e);
    }
    if !quiet {
        print!("{summary}");
        let trace = if trace_sample.is_some() {
            ", trace.json"
        } else {
            ""
        };
        println!(
            "\nwrote {}/report.json, timeseries.csv{trace}, report.html and plots/",
            dir.display()
        );
    }
    let failed = report.expectations.iter().filter(|e| !e.passed).count();
    if failed > 0 {
        // Also with --quiet: a CI log must say what failed.
        for e in report.expectations.iter().filter(|e| !e.passed) {
            eprintln!("FAIL {}: value {}", e.check, e.value);
        }
        eprintln!(
            "{failed} of {} expectations failed (seed {seed}, scenario hash {})",
            report.expectations.len(),
            report.scenario_hash
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
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
