//! The many-run commands: `run --seeds`, `compare`, `sweep`, `merge`, `check`.

use super::{invalid, source};
use crate::multi::check::{self, Case, Suite};
use crate::multi::compare;
use crate::multi::runner::{self, Design, SeedRun, Source, default_out, shell_quote};
use crate::multi::seeds::{self, Judged};
use crate::multi::stats::Interval;
use crate::multi::sweep;
use crate::report;
use crate::scenario::Scenario;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn design(arg: &str, set: &[String]) -> Result<Design, ExitCode> {
    let (path, stem, text) = source(arg).map_err(|e| invalid(&e))?;
    Ok(Design {
        source: Source { path, stem, text },
        set: set.to_vec(),
    })
}

/// The design checked before any run: errors once, located, exit 2.
fn validated(d: &Design) -> Result<Scenario, ExitCode> {
    d.scenario(None).map_err(|e| invalid(&e))
}

fn write(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<(), ExitCode> {
    report::write_all(dir, files).map_err(|e| {
        eprintln!("cannot write to {}: {e}", dir.display());
        ExitCode::from(2)
    })
}

/// Each expectation judged over the seeds, by the statistic it asks for.
fn judge_all(sc: &Scenario, runs: &[SeedRun]) -> Vec<Judged> {
    sc.expectations
        .iter()
        .enumerate()
        .map(|(i, e)| seeds::judge(&e.text, &e.check, e.over, i, runs))
        .collect()
}

fn seeds_label(seeds: &[u64]) -> String {
    match seeds {
        [one] => format!("seed {one}"),
        [first, .., last] => format!("seeds {first}..{last} ({})", seeds.len()),
        [] => "no seeds".to_owned(),
    }
}

fn reproduce(command: &str, args: &[String]) -> String {
    let mut s = format!("meshsim {command}");
    for a in args {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s
}

fn interval_text(v: &serde_json::Value) -> String {
    let mean = v["mean"].as_f64().unwrap_or(f64::NAN);
    match v["ci95"].as_array() {
        Some(ci) => format!(
            "{mean:.3} ({:.3}..{:.3})",
            ci[0].as_f64().unwrap_or(f64::NAN),
            ci[1].as_f64().unwrap_or(f64::NAN)
        ),
        None => format!("{mean:.3}"),
    }
}

pub struct SeedsArgs {
    pub scenario: String,
    pub seeds: String,
    pub out: Option<PathBuf>,
    pub set: Vec<String>,
    pub quiet: bool,
    pub threads: Option<usize>,
}

/// `meshsim run S --seeds N`.
pub fn run_seeds(a: SeedsArgs) -> ExitCode {
    let seed_list = match runner::parse_seeds(&a.seeds) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    let d = match design(&a.scenario, &a.set) {
        Ok(d) => d,
        Err(c) => return c,
    };
    let sc = match validated(&d) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let pool = match runner::pool(a.threads) {
        Ok(p) => p,
        Err(e) => return invalid(&e),
    };
    let mut distinct = a.set.clone();
    distinct.push(format!("seeds={}", a.seeds));
    let dir = a
        .out
        .clone()
        .unwrap_or_else(|| default_out(&format!("{}-seeds", sc.name), &distinct));
    // Each seed's time series streams to its folder as the run goes (staged: a failed
    // run leaves none of them); only the reports stay in memory for the aggregate.
    let seed_dir = |seed: u64| dir.join("seeds").join(seed.to_string());
    let mut runs = match runner::run_seeds(&pool, &d, &seed_list, |_, seed| {
        runner::Rows::Files(seed_dir(seed))
    }) {
        Ok(r) => r,
        Err(e) => return invalid(&e),
    };
    let judged = judge_all(&sc, &runs);
    let agg = seeds::report(&runs, &judged);
    for r in &mut runs {
        if let Err(e) = r.commit() {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    }
    let mut text = serde_json::to_string_pretty(&agg).expect("serializes");
    text.push('\n');
    if let Err(c) = write(&dir, &[("report.json", text.into_bytes())]) {
        return c;
    }
    if !a.quiet {
        print_seeds(&a, &sc.name, &seed_list, &agg, &judged, &dir);
    }
    seeds_verdict(&judged, &seed_list)
}

/// The terminal summary of `run --seeds`: the command that repeats it, each workload's
/// means over seeds, the checks.
fn print_seeds(
    a: &SeedsArgs,
    name: &str,
    seed_list: &[u64],
    agg: &serde_json::Value,
    judged: &[Judged],
    dir: &Path,
) {
    let mut args = vec![
        "run".to_owned(),
        a.scenario.clone(),
        "--seeds".into(),
        a.seeds.clone(),
    ];
    for s in &a.set {
        args.extend(["--set".to_owned(), s.clone()]);
    }
    println!(
        "meshsim {}  {}  scenario hash {}",
        name,
        seeds_label(seed_list),
        agg["scenario_hash"].as_str().unwrap_or("(differs by seed)")
    );
    println!("reproduce: {}", reproduce(&args[0], &args[1..]));
    println!("every number: the mean over seeds (95% interval)\n");
    if let Some(w) = agg["workloads"].as_object() {
        for (name, v) in w {
            println!(
                "workload {name}: requests {}  p50 ms {}  p99 ms {}  error rate {}",
                interval_text(&v["requests"]),
                interval_text(&v["latency_ms"]["p50"]),
                interval_text(&v["latency_ms"]["p99"]),
                interval_text(&v["error_rate"]),
            );
        }
    }
    print_judged(judged);
    println!(
        "\nwrote {}/report.json and seeds/SEED/{{report.json,timeseries.csv}}",
        dir.display()
    );
}

/// Exit 1 with a line per check that failed over the seeds, else 0.
fn seeds_verdict(judged: &[Judged], seed_list: &[u64]) -> ExitCode {
    let failed: Vec<&Judged> = judged.iter().filter(|j| !j.passed).collect();
    if !failed.is_empty() {
        for j in &failed {
            eprintln!(
                "FAIL {} (over {}): value {}; seeds failing on their own: {:?}",
                j.check,
                j.over.name(),
                j.value,
                j.failed_seeds
            );
        }
        eprintln!(
            "{} of {} expectations failed over {}",
            failed.len(),
            judged.len(),
            seeds_label(seed_list)
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn print_judged(judged: &[Judged]) {
    if judged.is_empty() {
        return;
    }
    println!("\nexpectations:");
    for j in judged {
        println!(
            "  {} {} (over {}: {:.4}){}",
            if j.passed { "ok  " } else { "FAIL" },
            j.check,
            j.over.name(),
            j.value,
            if j.failed_seeds.is_empty() {
                String::new()
            } else {
                format!("; failing seeds {:?}", j.failed_seeds)
            }
        );
    }
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Design A: a scenario file or bundled name.
    pub a: String,
    /// Design B [default: A again, with --set-b variants].
    pub b: Option<String>,
    /// An override of A only (repeatable).
    #[arg(long = "set-a", value_name = "PATH=VALUE")]
    pub set_a: Vec<String>,
    /// An override of B only (repeatable).
    #[arg(long = "set-b", value_name = "PATH=VALUE")]
    pub set_b: Vec<String>,
    /// Seeds: N (1 to N) or A..B.
    #[arg(long, default_value = "10", value_name = "N|A..B")]
    pub seeds: String,
    /// Give B other seeds than A (no common random numbers): to see what the
    /// pairing buys.
    #[arg(long)]
    pub independent: bool,
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where to write compare.json, a.json and b.json [default: out/compare-A-vs-B-HASH].
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, short)]
    pub quiet: bool,
}

/// `meshsim compare A B`.
pub fn compare(a: CompareArgs) -> ExitCode {
    let seed_list = match runner::parse_seeds(&a.seeds) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    if a.b.is_none() && a.set_a.is_empty() && a.set_b.is_empty() {
        eprintln!(
            "note: comparing {} with itself (give B, or --set-a/--set-b variants)",
            a.a
        );
    }
    let (da, db) = match (
        design(&a.a, &a.set_a),
        design(a.b.as_deref().unwrap_or(&a.a), &a.set_b),
    ) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let (sa, sb) = match (validated(&da), validated(&db)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let seeds_b: Vec<u64> = if a.independent {
        seed_list
            .iter()
            .map(|s| s + compare::INDEPENDENT_OFFSET)
            .collect()
    } else {
        seed_list.clone()
    };
    let pool = match runner::pool(a.threads) {
        Ok(p) => p,
        Err(e) => return invalid(&e),
    };
    // Only the first seed's rows are drawn (the overlay below); the others' are dropped
    // as their buckets close.
    let rows = |k: usize, _| {
        if k == 0 {
            runner::Rows::Kept
        } else {
            runner::Rows::Dropped
        }
    };
    let (ra, rb) = match (
        runner::run_seeds(&pool, &da, &seed_list, rows),
        runner::run_seeds(&pool, &db, &seeds_b, rows),
    ) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return invalid(&e),
    };
    let deltas = compare::compare(&ra, &rb);
    let side = |s: &Scenario, set: &[String]| serde_json::json!({"scenario": s.name, "path": s.path, "set": set});
    let head = serde_json::json!({
        "schema": "meshsim.compare/1",
        "a": side(&sa, &a.set_a),
        "b": side(&sb, &a.set_b),
        "seeds": seed_list,
        "seeds_b": seeds_b,
        "common_random_numbers": !a.independent,
    });
    let mut distinct = vec![
        a.a.clone(),
        a.b.clone().unwrap_or_default(),
        a.seeds.clone(),
    ];
    distinct.extend(a.set_a.iter().map(|s| format!("a:{s}")));
    distinct.extend(a.set_b.iter().map(|s| format!("b:{s}")));
    if a.independent {
        distinct.push("independent".into());
    }
    let dir = a
        .out
        .unwrap_or_else(|| default_out(&format!("compare-{}-vs-{}", sa.name, sb.name), &distinct));
    let pretty = |v: &serde_json::Value| {
        let mut s = serde_json::to_string_pretty(v).expect("serializes");
        s.push('\n');
        s.into_bytes()
    };
    let agg_a = seeds::report(&ra, &judge_all(&sa, &ra));
    let agg_b = seeds::report(&rb, &judge_all(&sb, &rb));
    // Both designs on the same pictures (latency CDF, time series), from their first seed:
    // with common random numbers the two saw the same traffic.
    let overlay = {
        use crate::report::plots::{Curve, PlotInput, Row, parse_rows, render};
        let curves = |side: &str, run: &SeedRun| -> Vec<Curve> {
            run.curves
                .iter()
                .map(|c| Curve {
                    name: format!("{side}: {}", c.name),
                    ..c.clone()
                })
                .collect()
        };
        let rows = |side: &str, run: &SeedRun| -> Result<Vec<Row>, String> {
            Ok(parse_rows(&run.timeseries)?
                .into_iter()
                .map(|r| Row {
                    name: format!("{side}: {}", r.name),
                    ..r
                })
                .collect())
        };
        let input = rows("A", &ra[0]).and_then(|a_rows| {
            Ok(PlotInput {
                scenario: format!(
                    "A: {} (seed {}) vs B: {} (seed {})",
                    sa.name, ra[0].seed, sb.name, rb[0].seed
                ),
                curves: [curves("A", &ra[0]), curves("B", &rb[0])].concat(),
                faults: Vec::new(),
                rows: [a_rows, rows("B", &rb[0])?].concat(),
            })
        });
        match input.and_then(|i| render(&i, false)) {
            Ok(plots) => plots,
            Err(e) => return invalid(&format!("cannot draw the comparison: {e}")),
        }
    };
    let files = [
        ("compare.json", compare::to_json(&deltas, head).into_bytes()),
        ("a.json", pretty(&agg_a)),
        ("b.json", pretty(&agg_b)),
        ("latency_cdf.svg", overlay[0].svg.clone().into_bytes()),
        ("timeseries.svg", overlay[1].svg.clone().into_bytes()),
    ];
    if let Err(c) = write(&dir, &files) {
        return c;
    }
    if !a.quiet {
        let label = |s: &Scenario, set: &[String]| {
            if set.is_empty() {
                s.name.clone()
            } else {
                format!("{} with {}", s.name, set.join(", "))
            }
        };
        println!(
            "A: {}\nB: {}\n{}, {}\n",
            label(&sa, &a.set_a),
            label(&sb, &a.set_b),
            seeds_label(&seed_list),
            if a.independent {
                "independent seeds for B (no common random numbers)"
            } else {
                "common random numbers (the same seeds for both)"
            }
        );
        let lead = compare::headline(&deltas, 12);
        if lead.is_empty() {
            println!(
                "no significant difference in latency, errors or throughput (95% intervals of B - A include 0)"
            );
        } else {
            println!("B against A, significant changes first by size (95% interval):");
            for l in lead {
                println!("  {l}");
            }
        }
        let significant = deltas.values().filter(|d| d.significant()).count();
        println!(
            "\n{significant} of {} metrics differ significantly; wrote {}/compare.json, a.json, b.json, latency_cdf.svg, timeseries.svg",
            deltas.len(),
            dir.display()
        );
    }
    ExitCode::SUCCESS
}

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    pub scenario: String,
    /// A parameter and its values, PATH=v1,v2,... (repeatable: a grid).
    #[arg(long = "param", value_name = "PATH=V1,V2,...", required = true)]
    pub params: Vec<String>,
    /// Seeds per point: N (1 to N) or A..B.
    #[arg(long, default_value = "3", value_name = "N|A..B")]
    pub seeds: String,
    /// A report path to record per run (repeatable) [default: each workload's
    /// latency_ms.p50, latency_ms.p99, error_rate, throughput_rps].
    #[arg(long = "metric", value_name = "PATH")]
    pub metrics: Vec<String>,
    /// An override applied to every point (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run only slice i of N (runs whose index is i-1 modulo N); `meshsim merge` unites them.
    #[arg(long, value_name = "i/N")]
    pub shard: Option<String>,
    /// [default: out/sweep-NAME-HASH, and /shard-i-of-N for a shard]
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, short)]
    pub quiet: bool,
}

/// `meshsim sweep`.
pub fn sweep(a: SweepArgs) -> ExitCode {
    let seed_list = match runner::parse_seeds(&a.seeds) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    let params = match a
        .params
        .iter()
        .map(|p| sweep::parse_param(p))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => return invalid(&"sweep: give at least one --param PATH=v1,v2,..."),
        Err(e) => return invalid(&e),
    };
    let shard = match a.shard.as_deref().map(sweep::parse_shard).transpose() {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    let d = match design(&a.scenario, &a.set) {
        Ok(d) => d,
        Err(c) => return c,
    };
    let base = match validated(&d) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let workloads: Vec<String> = base.spec.workloads.iter().map(|w| w.name.clone()).collect();
    let metrics = if a.metrics.is_empty() {
        workloads
            .iter()
            .flat_map(|w| {
                [
                    "latency_ms.p50",
                    "latency_ms.p99",
                    "error_rate",
                    "throughput_rps",
                ]
                .map(|m| format!("workloads.{w}.{m}"))
            })
            .collect()
    } else {
        a.metrics.clone()
    };
    let mut plan = sweep::Plan {
        schema: sweep::SCHEMA.into(),
        scenario: base.path.clone(),
        scenario_hash: format!(
            "{:016x}",
            crate::engine::rng::stable_hash(d.source.text.as_bytes())
        ),
        set: a.set.clone(),
        params,
        seeds: seed_list,
        metrics,
        workloads,
    };
    let points = plan
        .params
        .iter()
        .try_fold(1usize, |n, p| n.checked_mul(p.values.len()));
    match points {
        Some(p)
            if p <= sweep::MAX_POINTS && p.saturating_mul(plan.seeds.len()) <= sweep::MAX_RUNS => {}
        _ => {
            return invalid(&format!(
                "sweep: {} points x {} seeds; at most {} points and {} runs",
                points.map_or("too many".to_owned(), |p| p.to_string()),
                plan.seeds.len(),
                sweep::MAX_POINTS,
                sweep::MAX_RUNS
            ));
        }
    }
    // Every point must be a valid scenario, and every metric a number its report has,
    // before anything runs.
    for i in 0..plan.points() {
        let variant = Design {
            source: d.source.clone(),
            set: plan.overrides(i),
        };
        let sc = match variant.scenario(None) {
            Ok(s) => s,
            Err(e) => {
                return invalid(&format!(
                    "sweep point {i} ({}):\n{e}",
                    plan.overrides(i).join(" ")
                ));
            }
        };
        if i == 0 {
            let metrics = crate::model::World::new(sc.spec.clone())
                .finish(crate::engine::SimTime::ZERO, true);
            let skeleton =
                crate::report::Report::new(&crate::report::RunInfo::skeleton(), &metrics)
                    .json_value();
            for m in &plan.metrics {
                let path = match crate::report::expect::parse(&format!("{m} == 0")) {
                    Ok(c) => c.path,
                    Err(e) => return invalid(&format!("--metric {m}: {e}")),
                };
                if let Err(e) = crate::report::expect::resolve(&skeleton, &path) {
                    return invalid(&format!("--metric {m}: {e}"));
                }
            }
        }
    }
    plan.workloads.sort();
    let pool = match runner::pool(a.threads) {
        Ok(p) => p,
        Err(e) => return invalid(&e),
    };
    let output = match sweep::run(&pool, &d, &plan, shard) {
        Ok(o) => o,
        Err(e) => return invalid(&e),
    };
    let mut distinct = a.params.clone();
    distinct.extend(a.set.iter().cloned());
    distinct.extend(a.metrics.iter().cloned());
    distinct.push(format!("seeds={}", a.seeds));
    let dir = a.out.unwrap_or_else(|| {
        let d = default_out(&format!("sweep-{}", base.name), &distinct);
        match shard {
            Some([i, n]) => d.join(format!("shard-{i}-of-{n}")),
            None => d,
        }
    });
    let files = match sweep::files(&output) {
        Ok(f) => f,
        Err(e) => return invalid(&e),
    };
    if let Err(c) = write(&dir, &files) {
        return c;
    }
    if !a.quiet {
        let what = match shard {
            Some([i, n]) => format!(
                "shard {i}/{n}: {} of {} runs",
                output.runs.len(),
                plan.runs()
            ),
            None => format!(
                "{} points x {} seeds = {} runs",
                plan.points(),
                plan.seeds.len(),
                plan.runs()
            ),
        };
        println!("sweep {}: {what}", base.name);
        let names: Vec<&str> = files.iter().map(|f| f.0).collect();
        println!("wrote {}/{}", dir.display(), names.join(", "));
        if shard.is_some() {
            println!("when every shard is done: meshsim merge SHARD_DIR... --out DIR");
        }
    }
    ExitCode::SUCCESS
}

/// `meshsim merge DIR... --out DIR`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> ExitCode {
    // Shards of an exploration have an explore.json, shards of a sweep a runs.json.
    if dirs
        .iter()
        .all(|d| d.join("explore.json").is_file() && !d.join("runs.json").exists())
    {
        let mut parts = Vec::new();
        for d in dirs {
            let file = d.join("explore.json");
            match std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<super::explore::Found>(&b)
                        .map_err(|e| format!("not an exploration's explore.json: {e}"))
                }) {
                Ok(f) => parts.push((d.clone(), f)),
                Err(e) => return invalid(&format!("{}: {e}", file.display())),
            }
        }
        return super::explore::merge(parts, out);
    }
    let mut parts = Vec::new();
    for d in dirs {
        let file = d.join("runs.json");
        let read = std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                serde_json::from_slice::<sweep::Output>(&b)
                    .map_err(|e| format!("not a sweep's runs.json: {e}"))
            });
        match read {
            Ok(o) => parts.push((d.display().to_string(), o)),
            Err(e) => return invalid(&format!("{}: {e}", file.display())),
        }
    }
    let whole = match sweep::merge(parts) {
        Ok(w) => w,
        Err(e) => return invalid(&e),
    };
    let files = match sweep::files(&whole) {
        Ok(f) => f,
        Err(e) => return invalid(&e),
    };
    if let Err(c) = write(out, &files) {
        return c;
    }
    println!(
        "merged {} shards ({} runs) into {}",
        dirs.len(),
        whole.runs.len(),
        out.display()
    );
    ExitCode::SUCCESS
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[arg(required = true)]
    pub scenarios: Vec<String>,
    /// Seeds: N (1 to N) or A..B [default: each scenario's own seed].
    #[arg(long, value_name = "N|A..B")]
    pub seeds: Option<String>,
    /// Write JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Append a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Compare with DIR/NAME/report.json; fail on a regression beyond --tolerance.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Save this run's reports as a baseline: DIR/NAME/report.json.
    #[arg(long, value_name = "DIR")]
    pub write_baseline: Option<PathBuf>,
    /// How much worse than the baseline a metric may get: 5% or 0.05.
    #[arg(long, default_value = "5%")]
    pub tolerance: String,
    /// A report path compared with the baseline (repeatable) [default: each
    /// workload's latency_ms.p50, latency_ms.p99 and error_rate].
    #[arg(long = "metric", value_name = "PATH")]
    pub metrics: Vec<String>,
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `meshsim check S...`.
pub fn check(a: CheckArgs) -> ExitCode {
    let tolerance = match check::parse_tolerance(&a.tolerance) {
        Ok(t) => t,
        Err(e) => return invalid(&e),
    };
    let seed_list = match a.seeds.as_deref().map(runner::parse_seeds).transpose() {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    let pool = match runner::pool(a.threads) {
        Ok(p) => p,
        Err(e) => return invalid(&e),
    };
    // Every scenario is validated before any runs: a typo fails fast.
    let mut designs = Vec::new();
    for s in &a.scenarios {
        let d = match design(s, &[]) {
            Ok(d) => d,
            Err(c) => return c,
        };
        match validated(&d) {
            Ok(sc) => designs.push((d, sc)),
            Err(c) => return c,
        }
    }
    let mut suites = Vec::new();
    for (d, sc) in &designs {
        let seeds = seed_list.clone().unwrap_or_else(|| vec![sc.spec.seed]);
        let runs = match runner::run_seeds(&pool, d, &seeds, |_, _| runner::Rows::Dropped) {
            Ok(r) => r,
            Err(e) => return invalid(&e),
        };
        let judged = judge_all(sc, &runs);
        let mut cases: Vec<Case> = judged
            .iter()
            .map(|j| Case {
                name: j.check.clone(),
                failure: (!j.passed).then(|| {
                    let seeds_text = if seeds.len() == 1 {
                        format!("seed {}", seeds[0])
                    } else if j.failed_seeds.is_empty() {
                        format!("over {} seeds; no seed fails on its own", seeds.len())
                    } else {
                        format!(
                            "over {} seeds; failing seeds {:?}",
                            seeds.len(),
                            j.failed_seeds
                        )
                    };
                    format!(
                        "value {} ({} of the check, {seeds_text})",
                        j.value,
                        j.over.name()
                    )
                }),
            })
            .collect();
        let current = if runs.len() == 1 {
            runs[0].report.clone()
        } else {
            seeds::report(&runs, &judged)
        };
        if let Some(dir) = &a.baseline {
            let file = dir.join(&sc.name).join("report.json");
            let saved: serde_json::Value = match std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(v) => v,
                Err(e) => return invalid(&format!("baseline {}: {e}", file.display())),
            };
            let metrics = if a.metrics.is_empty() {
                sc.spec
                    .workloads
                    .iter()
                    .flat_map(|w| {
                        ["latency_ms.p50", "latency_ms.p99", "error_rate"]
                            .map(|m| format!("workloads.{}.{m}", w.name))
                    })
                    .collect()
            } else {
                a.metrics.clone()
            };
            for m in metrics {
                let path = match crate::report::expect::parse(&format!("{m} == 0")) {
                    Ok(c) => c.path,
                    Err(e) => return invalid(&format!("--metric {m}: {e}")),
                };
                let base = match check::saved_number(&saved, &path) {
                    Ok(x) => x,
                    Err(e) => return invalid(&format!("baseline {}: {e}", file.display())),
                };
                let values: Result<Vec<f64>, String> = runs
                    .iter()
                    .map(|r| crate::report::expect::resolve(&r.report, &path))
                    .collect();
                match values {
                    Ok(v) => cases.push(check::against_baseline(
                        &m,
                        base,
                        &Interval::of(&v),
                        tolerance,
                    )),
                    Err(e) => return invalid(&format!("--metric {m}: {e}")),
                }
            }
        }
        if let Some(dir) = &a.write_baseline {
            let mut text = serde_json::to_string_pretty(&current).expect("serializes");
            text.push('\n');
            if let Err(c) = write(&dir.join(&sc.name), &[("report.json", text.into_bytes())]) {
                return c;
            }
        }
        suites.push(Suite {
            scenario: sc.name.clone(),
            path: sc.path.clone(),
            seeds,
            cases,
        });
    }
    for s in &suites {
        println!(
            "{} {}: {} checks, {} failed ({})",
            if s.failures() == 0 { "ok  " } else { "FAIL" },
            s.scenario,
            s.cases.len(),
            s.failures(),
            seeds_label(&s.seeds)
        );
        for c in &s.cases {
            if let Some(why) = &c.failure {
                println!("    {}: {why}", c.name);
            }
        }
    }
    for (file, text) in [
        (&a.junit, a.junit.as_ref().map(|_| check::junit(&suites))),
        (
            &a.summary,
            a.summary.as_ref().map(|_| check::markdown(&suites)),
        ),
    ] {
        if let (Some(file), Some(text)) = (file, text) {
            // The step summary is appended to (GitHub collects several steps' output).
            let append = a.summary.as_ref() == Some(file);
            let result = if append {
                use std::io::Write;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .and_then(|mut f| f.write_all(text.as_bytes()))
            } else {
                let dir = file
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                report::write_all(dir, &[(&name, text.into_bytes())])
            };
            if let Err(e) = result {
                eprintln!("cannot write {}: {e}", file.display());
                return ExitCode::from(2);
            }
        }
    }
    let failed: usize = suites.iter().map(Suite::failures).sum();
    if failed > 0 {
        eprintln!("{failed} checks failed");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
