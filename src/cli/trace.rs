//! `meshsim trace S --request N`: one request's whole life as a Chrome trace (Perfetto),
//! and `run --trace-sample RATE`'s trace file. The format: docs/traces.md.

use super::{interrupt, invalid, load, memory_within, views};
use crate::metrics::trace::Traces;
use crate::model::spec::WorkloadId;
use crate::model::trace::{Observe, TraceSelect};
use crate::report;
use crate::scenario::memory::{estimate, human, machine_budget};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct TraceArgs {
    pub scenario: String,
    pub request: u64,
    pub workload: Option<String>,
    pub out: Option<PathBuf>,
    pub set: Vec<String>,
    pub seed: Option<u64>,
    pub quiet: bool,
    /// As `run`'s: refused before the run above it, stopped during it past it.
    pub max_memory: Option<u64>,
}

/// A sample rate: a probability in [0, 1].
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "`{s}` is not a sample rate: a number from 0 to 1, e.g. 0.01"
        )),
    }
}

/// Writes a trace file whole (through a temporary name, as every output).
pub fn write_trace(path: &Path, traces: &Traces) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace.json".to_owned());
    report::write_all(
        dir,
        &[(
            name.as_str(),
            report::trace::chrome_json(traces).into_bytes(),
        )],
    )
}

pub fn trace(args: TraceArgs) -> ExitCode {
    let mut set = args.set.clone();
    if let Some(seed) = args.seed {
        set.push(format!("simulation.seed={seed}"));
    }
    let mut scenario = match load(&args.scenario, &set) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    let workloads = &scenario.spec.workloads;
    let w = match &args.workload {
        Some(name) => match workloads.iter().position(|w| &w.name == name) {
            Some(i) => i,
            None => {
                let names: Vec<&str> = workloads.iter().map(|w| w.name.as_str()).collect();
                return invalid(&format!(
                    "--workload {name}: {} has no such workload (it has: {})",
                    scenario.path,
                    names.join(", ")
                ));
            }
        },
        None => 0,
    };
    if args.request == 0 {
        return invalid(&"--request counts from 1 (the workload's first request)");
    }
    let workload = workloads[w].name.clone();
    let name = scenario.name.clone();
    let out = args.out.unwrap_or_else(|| {
        crate::multi::runner::default_out(&name, &set)
            .join(format!("trace-{workload}-{}.json", args.request))
    });
    let (path, text) = (scenario.path.clone(), scenario.text.clone());
    // The same memory budget as `run`: the estimate refuses before the run, the
    // counting allocator stops it at a progress pause; nothing is written then.
    let budget = args.max_memory.or_else(machine_budget);
    if let Some(given) = args.max_memory {
        scenario.spec.holds.memory_budget = given;
    }
    if let Some(budget) = budget {
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
    let observe = Observe {
        trace: Some(TraceSelect::Request {
            workload: WorkloadId(w as u32),
            number: args.request,
        }),
        check_attribution: false,
    };
    let mut bar = views::Bar::run(
        args.quiet,
        scenario.spec.duration.map(|d| d.as_nanos() / 1_000_000),
        scenario.spec.max_requests,
    );
    interrupt::watch();
    let outcome = crate::simulate_observed(
        scenario,
        &observe,
        &mut |p| {
            bar.progress(p);
            interrupt::check(p)?;
            budget.map_or(Ok(()), |b| memory_within(b, p))
        },
        None,
    );
    bar.finish();
    let (_, traces) = match outcome {
        Ok(o) => o,
        Err(e @ crate::engine::RunError::Interrupted { .. }) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(interrupt::EXIT_CODE);
        }
        Err(e) => {
            return invalid(&crate::scenario::run_error::locate(&path, &text, &e));
        }
    };
    let Some(t) = traces.traces.first() else {
        return invalid(&format!(
            "{path}: workload {workload} did not finish a request number {} in this run \
             (it sends fewer, or that one was still in flight at the end)",
            args.request
        ));
    };
    let root = &t.spans[0];
    let attempts = t.spans.iter().filter(|s| s.cat == "attempt").count();
    let invocations = t.spans.iter().filter(|s| s.cat == "invocation").count();
    if let Err(e) = write_trace(&out, &traces) {
        eprintln!("cannot write {}: {e}", out.display());
        return ExitCode::from(2);
    }
    if args.quiet {
        return ExitCode::SUCCESS;
    }
    let status = root
        .args
        .iter()
        .find(|(k, _)| *k == "status")
        .and_then(|(_, v)| match v {
            crate::metrics::trace::Arg::Text(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_default();
    println!(
        "request {} of {workload}: sent at {:.6} s, {:.3} ms, status {status}; \
         {attempts} attempts, {invocations} invocations, {} spans",
        args.request,
        root.start_ns as f64 / 1e9,
        (root.end_ns - root.start_ns) as f64 / 1e6,
        t.spans.len()
    );
    println!(
        "wrote {} (open it at https://ui.perfetto.dev: Open trace file; or chrome://tracing: Load)",
        out.display()
    );
    ExitCode::SUCCESS
}
