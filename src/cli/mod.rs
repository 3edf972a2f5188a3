//! The `meshsim` command line. Exit codes: 0 ok, 1 an expectation failed,
//! 2 invalid input (scenario, override, or a run refused by its event budget).

use crate::report;
use crate::scenario::{self, Scenario, ScenarioError};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    },
    /// Check a scenario without running it.
    Validate {
        scenario: String,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// List the bundled scenarios.
    List,
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
        } => run(&scenario, seed, out, set, quiet),
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
) -> ExitCode {
    if let Some(seed) = seed {
        set.push(format!("simulation.seed={seed}"));
    }
    let scenario = match load(arg, &set) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    let seed = scenario.spec.seed;
    let (name, path) = (scenario.name.clone(), scenario.path.clone());
    let crate::Outcome { report, metrics } = match crate::simulate(scenario) {
        Ok(o) => o,
        Err(e) => return invalid(&format!("{path}: {e}")),
    };
    let scenario_name = name;
    let dir = out.unwrap_or_else(|| PathBuf::from("out").join(&scenario_name));
    let files = [
        ("report.json", report.to_json().into_bytes()),
        (
            "timeseries.csv",
            report::csv::timeseries(&metrics.series, &metrics.consistency),
        ),
    ];
    if let Err(e) = report::write_all(&dir, &files) {
        eprintln!("cannot write the reports to {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    if !quiet {
        let mut reproduce = format!("meshsim run {arg} --seed {seed}");
        for s in set.iter().filter(|s| !s.starts_with("simulation.seed=")) {
            reproduce.push_str(&format!(" --set {s}"));
        }
        print!("{}", report::text::summary(&report, &reproduce));
        println!("\nwrote {}/report.json and timeseries.csv", dir.display());
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
