//! Issue 11, the parts outside the model: reports written all or nothing, `--out`
//! checked before the run, and every refusal located (file, line, column), including
//! the ones that come from the run itself.

use super::support;
use assert_cmd::Command;
use meshsim::scenario::{self, ScenarioError};
use predicates::str::contains;
use std::path::Path;

fn meshsim() -> Command {
    Command::cargo_bin("meshsim").unwrap()
}

fn chain() -> String {
    format!("{}/scenarios/chain_165ms.toml", env!("CARGO_MANIFEST_DIR"))
}

/// Everything in `dir`, sorted, hidden files included.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[track_caller]
fn located_once(e: &ScenarioError, line: usize, column: usize) {
    let shown = e.to_string();
    assert_eq!(e.located().len(), 1, "{shown}");
    let l = &e.located()[0];
    assert_eq!((l.line, l.column), (line, column), "{shown}");
    assert!(
        shown.contains(&format!("{}:{line}:{column}", l.path)),
        "{shown}"
    );
}

// ---- files, all or nothing ----

#[test]
fn a_directory_at_timeseries_csv_leaves_the_previous_report_and_no_temporaries() {
    // Before: report.json was replaced, then the rename of timeseries.csv failed and
    // `.timeseries.csv.tmp` stayed behind.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("report.json"), "previous").unwrap();
    std::fs::create_dir(dir.path().join("timeseries.csv")).unwrap();
    meshsim()
        .args(["run", &chain(), "-q", "--out"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(contains("timeseries.csv is a directory"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("report.json")).unwrap(),
        "previous"
    );
    assert_eq!(listing(dir.path()), ["report.json", "timeseries.csv"]);
}

#[test]
fn a_directory_at_report_json_leaves_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("report.json")).unwrap();
    meshsim()
        .args(["run", &chain(), "-q", "--out"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(contains("report.json is a directory"));
    assert_eq!(listing(dir.path()), ["report.json"]);
}

#[test]
fn a_failure_after_the_run_leaves_no_new_directory_and_no_temporaries() {
    // The check before the run passed; the write still fails (a file name the OS
    // refuses): the directory `write_all` created is removed again.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("new").join("deeper");
    let err = meshsim::report::write_all(
        &out,
        &[
            ("report.json", b"{}".to_vec()),
            ("bad\0name", b"x".to_vec()),
        ],
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn an_out_that_is_a_file_is_refused_before_the_run() {
    // Before: the run went first (here it exhausts its budget, so its error was the
    // one shown); a long run ended only then in "cannot write".
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("loop.toml");
    std::fs::write(
        &file,
        "[simulation]\nduration = \"1s\"\nmax_events = 1000\n[services.s.endpoints.get]\n\
         steps = [{ work = \"0s\" }]\n[workloads.w]\ntarget = \"s/get\"\nusers = 2\n",
    )
    .unwrap();
    let out = dir.path().join("taken");
    std::fs::write(&out, "a file").unwrap();
    let assert = meshsim()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(contains("cannot write the reports"))
        .stderr(contains("is not a directory"));
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(!stderr.contains("event budget"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "a file");
    assert_eq!(listing(dir.path()), ["loop.toml", "taken"]);
}

// ---- located refusals ----

#[test]
fn a_key_of_a_hundred_thousand_parts_is_located_at_its_line() {
    // Before: "recursion limit" at 1:1.
    let text = format!(
        "[simulation]\nduration = \"1s\"\n\n  {}b = 1\n",
        "a.".repeat(100_000)
    );
    let e = support::error(&text);
    located_once(&e, 4, 3);
    assert!(e.to_string().contains("nested too deeply"), "{e}");
}

#[test]
fn arrays_nested_too_deeply_say_so() {
    let text = format!(
        "[simulation]\nduration = \"1s\"\nx = {}{}\n",
        "[".repeat(81),
        "]".repeat(81)
    );
    let e = support::error(&text);
    assert_eq!(e.located()[0].line, 3, "{e}");
    assert!(e.to_string().contains("nested too deeply"), "{e}");
}

#[test]
fn a_file_that_is_not_utf8_is_located_at_its_first_bad_byte() {
    // Before: "cannot read scenario ...: stream did not contain valid UTF-8", no line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latin1.toml");
    std::fs::write(
        &file,
        b"[simulation]\nduration = \"1s\"\nname = \"caf\xe9\"\n",
    )
    .unwrap();
    let err = scenario::load(&file, &[]).err().expect("refused");
    located_once(&err, 3, 12);
    assert!(err.to_string().contains("not UTF-8"), "{err}");
    meshsim()
        .arg("validate")
        .arg(&file)
        .assert()
        .code(2)
        .stderr(contains("latin1.toml:3:12"));
}

#[test]
fn a_check_against_nan_or_infinity_is_refused() {
    // Before: `< nan` was accepted and failed on every run.
    for bound in ["nan", "inf"] {
        let text = format!(
            "[simulation]\nduration = \"1s\"\n[services.s.endpoints.get]\nsteps = [{{ work = \"1ms\" }}]\n\
             [workloads.w]\ntarget = \"s/get\"\nrate = 1\n[[expect]]\ncheck = \"workloads.w.ok < {bound}\"\n"
        );
        let e = support::error(&text);
        located_once(&e, 9, 9);
        assert!(e.to_string().contains("not a finite number"), "{e}");
    }
}

const OVERFLOW: &str = r#"[simulation]
duration = "10s"

[services.a]
workers = 1000

[services.a.endpoints.get]
steps = [{ work = "1ms" }, { work = { dist = "pareto", scale = "1ms", shape = 0.1 } }]

[workloads.w]
target = "a/get"
rate = 100
"#;

#[test]
fn a_distribution_that_overflows_the_clock_is_located() {
    // Before: "at simulated time ... past the end of the simulated clock", no line.
    let sc = scenario::from_source("ovf.toml", "ovf", OVERFLOW, &[]).unwrap();
    let (path, text) = (sc.path.clone(), sc.text.clone());
    let err = meshsim::simulate(sc).err().expect("the clock overflows");
    let refusal = scenario::run_error::locate(&path, &text, &err);
    assert_eq!(refusal.located.len(), 1, "{refusal}");
    assert_eq!(
        (refusal.located[0].line, refusal.located[0].column),
        (8, 39),
        "{refusal}"
    );
    assert!(refusal.rendered.contains("no upper bound"), "{refusal}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ovf.toml");
    std::fs::write(&file, OVERFLOW).unwrap();
    meshsim()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .code(2)
        .stderr(contains("ovf.toml:8:39"))
        .stderr(contains("past the end of the simulated clock"));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn a_constant_that_overflows_the_clock_is_located() {
    // 5124095 h is 2551 s short of the end of the clock: a request that arrives after
    // 2551 s cannot schedule the end of its work.
    let text = r#"[simulation]
duration = "1h"

[services.a]
workers = 10000

[services.a.endpoints.get]
steps = [{ work = "5124095h" }]

[workloads.w]
target = "a/get"
rate = 1
"#;
    let sc = scenario::from_source("c.toml", "c", text, &[]).unwrap();
    let err = meshsim::simulate(sc).err().expect("the clock overflows");
    let refusal = scenario::run_error::locate("c.toml", text, &err);
    assert_eq!(refusal.located.len(), 1, "{refusal}");
    assert_eq!(
        (refusal.located[0].line, refusal.located[0].column),
        (8, 19)
    );
    assert!(refusal.rendered.contains("this can take"), "{refusal}");
}

#[test]
fn an_exhausted_event_budget_points_at_max_events() {
    let text = "[simulation]\nduration = \"1s\"\nmax_events = 1000\n[services.s.endpoints.get]\n\
                steps = [{ work = \"0s\" }]\n[workloads.w]\ntarget = \"s/get\"\nusers = 2\n";
    let sc = scenario::from_source("loop.toml", "loop", text, &[]).unwrap();
    let err = meshsim::simulate(sc).err().expect("the budget runs out");
    let refusal = scenario::run_error::locate("loop.toml", text, &err);
    assert_eq!(refusal.located.len(), 1, "{refusal}");
    assert_eq!(
        (refusal.located[0].line, refusal.located[0].column),
        (3, 14)
    );
    assert!(
        refusal.rendered.contains("event budget of 1000"),
        "{refusal}"
    );
}

// ---- sizes: every one has a maximum, checked at validation ----

/// A valid scenario with a service `a` (line 4 on), a workload `w` (line 9 on), a
/// broker with a queue and a topic and a consumer of each (line 14 on); `extra` is
/// inserted at the line given as a marker.
const SIZES: &str = r#"[simulation]
duration = "1s"

[services.a]
replicas = 1
queue = 10
[services.a.endpoints.get]
steps = [{ work = "1ms" }, { stream = 1, interval = "1ms" }]

[workloads.w]
target = "a/get"
rate = 10

[brokers.b]
preset = "kafka"
[brokers.b.topics.t]
partitions = 1

[consumers.c]
topic = "b/t"
instances = 1
concurrency = 1
steps = [{ work = "1ms" }]

[policies.default]
breaker = { size = 10 }
"#;

#[test]
fn every_size_above_its_maximum_is_refused_where_it_is_written() {
    // Before: `validate` accepted these and `run` aborted allocating them.
    scenario::from_source("ok.toml", "ok", SIZES, &[]).unwrap_or_else(|e| panic!("{e}"));
    let cases = [
        ("replicas = 1", "replicas = 10000000", 5, "replicas"),
        ("queue = 10", "queue = 4294967295", 6, "the queue capacity"),
        ("rate = 10", "rate = 1e300", 12, "a rate of"),
        ("rate = 10", "users = 1000000000", 12, "users"),
        (
            "stream = 1,",
            "stream = 4294967295,",
            8,
            "the number of messages",
        ),
        (
            "partitions = 1",
            "partitions = 4294967295",
            17,
            "partitions",
        ),
        ("instances = 1", "instances = 10000000", 21, "instances"),
        (
            "concurrency = 1",
            "concurrency = 4294967295",
            22,
            "concurrency",
        ),
        ("size = 10", "size = 4294967295", 26, "the window size"),
    ];
    for (from, to, line, what) in cases {
        let text = SIZES.replacen(from, to, 1);
        let e = support::error(&text);
        let shown = e.to_string();
        assert_eq!(e.located().len(), 1, "{to}:\n{shown}");
        assert_eq!(e.located()[0].line, line, "{to}:\n{shown}");
        assert!(shown.contains(what), "{to}:\n{shown}");
        assert!(shown.contains("above meshsim's maximum"), "{to}:\n{shown}");
    }
}

#[test]
fn more_services_than_the_maximum_are_refused_at_the_first_one_too_many() {
    let mut text = String::from("[simulation]\nduration = \"1s\"\n");
    for i in 0..=meshsim::scenario::bounds::MAX_SERVICES {
        text.push_str(&format!(
            "[services.s{i:05}.endpoints.get]\nsteps = [{{ work = \"1ms\" }}]\n"
        ));
    }
    let e = support::error(&text);
    assert_eq!(e.located().len(), 1, "{e}");
    // The 10001st service, in name order, is declared on line 3 + 2 * 10000.
    assert_eq!(e.located()[0].line, 3 + 2 * 10_000, "{e}");
    assert!(
        e.to_string().contains("above meshsim's maximum of 10000"),
        "{e}"
    );
}

#[test]
fn a_heavy_tailed_draw_added_to_a_time_ends_the_run_located_instead_of_panicking() {
    // Found by the fuzzer (case 5216): a stream's intervals are summed; two of
    // 5124095 h overflowed `SimDuration + SimDuration` and panicked. A Pareto whose
    // shape is just above 1 reaches the same sum.
    for interval in [
        r#""5124095h""#,
        r#"{ dist = "pareto", scale = "100000h", shape = 1.0001 }"#,
    ] {
        let text = format!(
            "[simulation]\nduration = \"10s\"\n[services.a]\nworkers = 100\n\
             [services.a.endpoints.get]\nsteps = [{{ stream = 1000, interval = {interval} }}]\n\
             [workloads.w]\ntarget = \"a/get\"\nrate = 10\n"
        );
        let sc = scenario::from_source("s.toml", "s", &text, &[]).unwrap();
        let err = meshsim::simulate(sc).err().expect("the clock overflows");
        let refusal = scenario::run_error::locate("s.toml", &text, &err);
        assert_eq!(refusal.located.len(), 1, "{refusal}");
        assert_eq!(refusal.located[0].line, 6, "{refusal}");
        assert!(
            refusal
                .rendered
                .contains("past the end of the simulated clock"),
            "{refusal}"
        );
    }
}

// ---- memory, estimated before the run ----

/// `services` services with `endpoints` idle endpoints each, and a light workload.
fn many_endpoints(services: usize, endpoints: usize) -> String {
    let mut text = String::from("[simulation]\nduration = \"1s\"\n");
    for s in 0..services {
        for e in 0..endpoints {
            text.push_str(&format!(
                "[services.s{s}.endpoints.e{e}]\nsteps = [{{ work = \"1ms\" }}]\n"
            ));
        }
    }
    text + "[workloads.w]\ntarget = \"s0/e0\"\nrate = 10\n"
}

#[test]
fn the_memory_estimate_follows_what_a_run_was_measured_to_take() {
    // 2000 idle endpoints (one per service) peaked at 33.5 MB of RSS, 1000 at 21.4 MB
    // (/usr/bin/time, dev-opt build; histograms grow as they record, so an idle
    // endpoint costs about 12 KB): the estimate covers the run, with a little to spare.
    let sc = scenario::from_source("m.toml", "m", &many_endpoints(2000, 1), &[]).unwrap();
    let need = scenario::memory::estimate(&sc.spec).bytes;
    assert!((33_500_000..45_000_000).contains(&need), "{need}");
    // 18000 endpoints more: between the measured 12.1 KB each and 20 KB each.
    let sc = scenario::from_source("m.toml", "m", &many_endpoints(2000, 10), &[]).unwrap();
    let ten = scenario::memory::estimate(&sc.spec).bytes;
    assert!(
        (18_000 * 12_100..18_000 * 20_000).contains(&(ten - need)),
        "{ten} vs {need}"
    );
}

#[test]
fn a_scenario_over_the_memory_budget_is_refused_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.toml");
    std::fs::write(&file, many_endpoints(100, 10)).unwrap();
    let out = dir.path().join("out");
    meshsim()
        .arg("run")
        .arg(&file)
        .args(["-q", "--max-memory", "20MB", "--out"])
        .arg(&out)
        .assert()
        .code(2)
        // 8 MiB of base and 1000 endpoints at 16 KB (the run peaks at 21.4 MB).
        .stderr(contains("needs about 24 MiB"))
        .stderr(contains("the most: endpoints"))
        .stderr(contains("--max-memory"));
    assert!(!out.exists());
    meshsim()
        .arg("run")
        .arg(&file)
        .args(["-q", "--max-memory", "1GB", "--out"])
        .arg(&out)
        .assert()
        .code(0);
}
