//! The `meshsim` command line. Exit codes: 0 ok, 1 an expectation failed,
//! 2 invalid input (scenario, override, or a run refused by its event budget).

use crate::report;
use crate::scenario::{self, Scenario, ScenarioError};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
        /// Also write the plots as PNG (plots/*.png; SVG is always written).
        #[arg(long)]
        png: bool,
    },
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
    Explore {
        scenario: String,
        /// How many seeds [default: the [explore] section's `seeds`, else 100].
        #[arg(long)]
        seeds: Option<u64>,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// Where to write the replay scenario [default: out/explore].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            scenario,
            seed,
            out,
            set,
            quiet,
            png,
        } => run(&scenario, seed, out, set, quiet, png),
        Command::Graph {
            scenario,
            format,
            set,
        } => views::graph_command(&scenario, &set, format),
        Command::Validate { scenario, set } => match load(&scenario, &set) {
            Ok(s) => {
                println!(
                    "{}: ok ({} services, {} endpoints, {} workloads)",
                    s.path,
                    s.spec.services.len(),
                    s.spec.endpoints.len(),
                    s.spec.workloads.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => invalid(&e),
        },
        Command::Explore {
            scenario,
            seeds,
            first_seed,
            out,
        } => explore(&scenario, seeds, first_seed, out),
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
    let text = scenario::read(arg, path)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".to_owned());
    Ok((arg.to_owned(), stem, text))
}

fn explore(arg: &str, seeds: Option<u64>, first_seed: u64, out: Option<PathBuf>) -> ExitCode {
    use crate::explore;
    let (path, stem, text) = match source(arg) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    // The scenario itself must be valid before anything is drawn.
    let name = match scenario::from_source(&path, &stem, &text, &[]) {
        Ok(s) => s.name,
        Err(e) => return invalid(&e),
    };
    let plan = match explore::plan(&path, &text) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return invalid(&format!(
                "{path}: no [explore] section: add one with fault templates, e.g.\n\n[explore]\nseeds = 100\nwindow = [\"5s\", \"60s\"]\nfaults = [{{ kind = \"crash\", service = \"worker\", max = 2, length = [\"1s\", \"20s\"] }}]"
            ));
        }
        Err(e) => return invalid(&e),
    };
    let n = seeds.unwrap_or(plan.seeds);
    let mut bar = views::Bar::new(false, Some(n), "{bar:40} seed {pos}/{len} · ETA {eta}");
    for seed in first_seed..first_seed.saturating_add(n) {
        let drawn = explore::draw(&plan, seed);
        let problems = match explore::trial(&path, &name, &text, &plan, seed, &drawn) {
            Ok(p) => p,
            Err(e) => {
                bar.finish();
                return invalid(&format!("seed {seed}: {e}"));
            }
        };
        bar.inc();
        if problems.is_empty() {
            continue;
        }
        bar.finish();
        println!("seed {seed} fails with {} drawn faults:", drawn.len());
        for p in &problems {
            println!("  {p}");
        }
        let minimal = explore::shrink(
            |fs| explore::trial(&path, &name, &text, &plan, seed, fs).is_ok_and(|p| !p.is_empty()),
            drawn,
        );
        let problems =
            explore::trial(&path, &name, &text, &plan, seed, &minimal).unwrap_or_default();
        let dir = out.unwrap_or_else(|| PathBuf::from("out").join("explore"));
        let file = dir.join(format!("{name}-seed-{seed}.toml"));
        let replay = format!(
            "{text}\n# ---- added by `meshsim explore`: the minimal failing fault schedule of seed {seed} ----\n{}",
            explore::faults_toml(&plan, &minimal)
        );
        if let Err(e) = report::write_all(
            &dir,
            &[(&format!("{name}-seed-{seed}.toml"), replay.into_bytes())],
        ) {
            eprintln!("cannot write {}: {e}", file.display());
            return ExitCode::from(2);
        }
        println!(
            "\nminimal fault schedule ({} faults):{}",
            minimal.len(),
            explore::faults_toml(&plan, &minimal)
        );
        println!("it still fails with:");
        for p in &problems {
            println!("  {p}");
        }
        println!("\nreplay: meshsim run {} --seed {seed}", file.display());
        return ExitCode::from(1);
    }
    bar.finish();
    println!(
        "{n} seeds from {first_seed}: every run met its expectations and the consistency invariants"
    );
    ExitCode::SUCCESS
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
    scenario::load(path, set)
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
    png: bool,
) -> ExitCode {
    if let Some(seed) = seed {
        set.push(format!("simulation.seed={seed}"));
    }
    let scenario = match load(arg, &set) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    let seed = scenario.spec.seed;
    let diagram = crate::graph::svg(&crate::graph::Topology::from_spec(&scenario.spec));
    let name = scenario.name.clone();
    let dir = out.unwrap_or_else(|| PathBuf::from("out").join(&name));
    // Before the run, not after it: a long run must not end in "cannot write".
    if let Err(e) = report::check_writable(&dir, report::RUN_OUTPUTS) {
        eprintln!("cannot write the reports to {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let (path, text) = (scenario.path.clone(), scenario.text.clone());
    let mut bar = views::Bar::run(quiet, scenario.spec.duration.map(|d| d.as_nanos() / 1_000_000));
    let outcome = crate::simulate_with_progress(scenario, &mut |p| bar.progress(p));
    bar.finish();
    let crate::Outcome { report, metrics } = match outcome {
        Ok(o) => o,
        Err(e) => return invalid(&scenario::run_error::locate(&path, &text, &e)),
    };
    let mut reproduce = format!("meshsim run {arg} --seed {seed}");
    for s in set.iter().filter(|s| !s.starts_with("simulation.seed=")) {
        reproduce.push_str(&format!(" --set {s}"));
    }
    let summary = report::text::summary(&report, &reproduce);
    let csv = report::csv::timeseries(&metrics.series, &metrics.consistency);
    let views = match report::views::files(&report::views::Views {
        report: &report,
        metrics: &metrics,
        timeseries_csv: &csv,
        summary: &summary,
        reproduce: &reproduce,
        diagram: Some(&diagram),
        png,
    }) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("cannot draw the views of {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut files = vec![
        ("report.json", report.to_json().into_bytes()),
        ("timeseries.csv", csv),
    ];
    files.extend(views.iter().map(|(n, b)| (n.as_str(), b.clone())));
    assert!(
        files
            .iter()
            .map(|f| f.0)
            .filter(|n| !n.starts_with("plots/"))
            .eq(report::RUN_OUTPUTS.iter().copied())
    );
    if let Err(e) = report::write_all(&dir, &files) {
        eprintln!("cannot write the reports to {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    if !quiet {
        print!("{summary}");
        println!(
            "\nwrote {}/report.json, timeseries.csv, report.html and plots/",
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
