//! `meshsim trace S --request N`: one request's whole life as a Chrome trace (Perfetto),
//! and `run --trace-sample RATE`'s trace file. The format: docs/traces.md.

use super::{interrupt, invalid, load_seeded, memory_budget, run_bar, run_failed, simulate};
use crate::metrics::trace::{RequestTrace, Traces};
use crate::model::spec::WorkloadId;
use crate::model::trace::{Observe, TraceSelect};
use crate::report;
use crate::scenario::Scenario;
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
    let mut scenario = match load_seeded(&args.scenario, args.seed, &mut set) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let w = match workload_index(&scenario, args.workload.as_deref()) {
        Ok(w) => w,
        Err(code) => return code,
    };
    if args.request == 0 {
        return invalid(&"--request counts from 1 (the workload's first request)");
    }
    let workload = scenario.spec.workloads[w].name.clone();
    let name = scenario.name.clone();
    let out = args.out.unwrap_or_else(|| {
        crate::multi::runner::default_out(&name, &set)
            .join(format!("trace-{workload}-{}.json", args.request))
    });
    let (path, text) = (scenario.path.clone(), scenario.text.clone());
    // The same memory budget as `run`: the estimate refuses before the run, the
    // counting allocator stops it at a progress pause; nothing is written then.
    let budget = match memory_budget(&mut scenario, args.max_memory) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let observe = Observe {
        trace: Some(TraceSelect::Request {
            workload: WorkloadId(w as u32),
            number: args.request,
        }),
        check_attribution: false,
    };
    let mut bar = run_bar(args.quiet, &scenario);
    interrupt::watch();
    let traces = match simulate(scenario, &observe, &mut bar, budget, None) {
        Ok((_, traces)) => traces,
        Err(e) => return run_failed(&path, &text, &e),
    };
    let Some(t) = traces.traces.first() else {
        return invalid(&format!(
            "{path}: workload {workload} did not finish a request number {} in this run \
             (it sends fewer, or that one was still in flight at the end)",
            args.request
        ));
    };
    if let Err(e) = write_trace(&out, &traces) {
        eprintln!("cannot write {}: {e}", out.display());
        return ExitCode::from(2);
    }
    if !args.quiet {
        print_traced(t, &workload, args.request, &out);
    }
    ExitCode::SUCCESS
}

/// The index of the workload --workload names (the first one without it).
fn workload_index(scenario: &Scenario, name: Option<&str>) -> Result<usize, ExitCode> {
    let workloads = &scenario.spec.workloads;
    let Some(name) = name else {
        return Ok(0);
    };
    match workloads.iter().position(|w| w.name == name) {
        Some(i) => Ok(i),
        None => {
            let names: Vec<&str> = workloads.iter().map(|w| w.name.as_str()).collect();
            Err(invalid(&format!(
                "--workload {name}: {} has no such workload (it has: {})",
                scenario.path,
                names.join(", ")
            )))
        }
    }
}

/// One line on the traced request (when, how long, its status and size), and where
/// its trace went.
fn print_traced(t: &RequestTrace, workload: &str, request: u64, out: &Path) {
    let root = &t.spans[0];
    let attempts = t.spans.iter().filter(|s| s.cat == "attempt").count();
    let invocations = t.spans.iter().filter(|s| s.cat == "invocation").count();
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
        "request {request} of {workload}: sent at {:.6} s, {:.3} ms, status {status}; \
         {attempts} attempts, {invocations} invocations, {} spans",
        root.start_ns as f64 / 1e9,
        (root.end_ns - root.start_ns) as f64 / 1e6,
        t.spans.len()
    );
    println!(
        "wrote {} (open it at https://ui.perfetto.dev: Open trace file; or chrome://tracing: Load)",
        out.display()
    );
}
