//! Request traces (Chrome trace-event JSON) and where the tail comes from (critical-path
//! attribution): exact arithmetic with constant distributions, the trace's shape, and
//! reports that tracing does not change.

use crate::support::{bundled_scenarios, json, run, run_file};
use meshsim::metrics::trace::Traces;
use meshsim::model::spec::WorkloadId;
use meshsim::model::trace::{Observe, TraceSelect};
use meshsim::scenario;
use serde_json::Value;
use std::collections::BTreeMap;

pub(crate) fn observed(
    name: &str,
    text: &str,
    overrides: &[&str],
    select: TraceSelect,
) -> (String, Traces) {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let sc = scenario::from_source(name, name, text, &overrides).unwrap();
    let observe = Observe {
        trace: Some(select),
        check_attribution: false,
    };
    let (outcome, traces) =
        meshsim::simulate_observed(sc, &observe, &mut |_| Ok(()), None).unwrap();
    (outcome.report.to_json(), traces)
}

fn bundled(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/scenarios/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// (where, what) -> share, of a workload's attribution set ("p99" or "p50").
fn shares(report: &Value, workload: &str, set: &str) -> BTreeMap<(String, String), f64> {
    report["workloads"][workload]["attribution"][set]
        .as_array()
        .unwrap_or_else(|| panic!("no attribution for {workload}"))
        .iter()
        .map(|s| {
            (
                (
                    s["where"].as_str().unwrap().to_owned(),
                    s["what"].as_str().unwrap().to_owned(),
                ),
                s["share"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn assert_shares(got: &BTreeMap<(String, String), f64>, want: &[(&str, &str, f64)]) {
    let want: BTreeMap<(String, String), f64> = want
        .iter()
        .map(|&(w, x, s)| ((w.to_owned(), x.to_owned()), s))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, v) in &want {
        assert!((got[k] - v).abs() < 1e-12, "{k:?}: {} != {v}", got[k]);
    }
    let sum: f64 = got.values().sum();
    assert!((sum - 1.0).abs() < 1e-12, "shares sum to {sum}");
}

#[test]
fn chain_165ms_attribution_is_the_exact_arithmetic() {
    let r = json(&run_file("chain_165ms.toml", &[]).report);
    let want = [
        ("a/get", "work", 50.0 / 165.0),
        ("b/get", "work", 50.0 / 165.0),
        ("c/get", "work", 50.0 / 165.0),
        ("a/get", "network", 5.0 / 165.0),
        ("b/get", "network", 5.0 / 165.0),
        ("c/get", "network", 5.0 / 165.0),
    ];
    for set in ["p99", "p50"] {
        assert_shares(&shares(&r, "clients", set), &want);
    }
    let p99 = &r["workloads"]["clients"]["attribution"]["p99"];
    // Largest first, ties by name: a, b, c's work, then a, b, c's network.
    let order: Vec<(&str, &str)> = p99
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["where"].as_str().unwrap(), s["what"].as_str().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("a/get", "work"),
            ("b/get", "work"),
            ("c/get", "work"),
            ("a/get", "network"),
            ("b/get", "network"),
            ("c/get", "network")
        ]
    );
    assert_eq!(p99[0]["mean_ms"], 50.0);
    assert_eq!(p99[5]["mean_ms"], 5.0);
    let summary = meshsim::report::text::summary(&run_file("chain_165ms.toml", &[]).report, "");
    assert!(
        summary.contains("clients: 30% of p99 is a/get work, 30% b/get work, 30% c/get work"),
        "{summary}"
    );
}

#[test]
fn the_315ms_variant_moves_the_shares_to_c() {
    let r = json(
        &run_file(
            "chain_165ms.toml",
            &["services.c.endpoints.get.steps.0.work=200ms"],
        )
        .report,
    );
    assert_eq!(r["workloads"]["clients"]["latency_ms"]["p99"], 315.0);
    let want = [
        ("a/get", "work", 50.0 / 315.0),
        ("b/get", "work", 50.0 / 315.0),
        ("c/get", "work", 200.0 / 315.0),
        ("a/get", "network", 5.0 / 315.0),
        ("b/get", "network", 5.0 / 315.0),
        ("c/get", "network", 5.0 / 315.0),
    ];
    assert_shares(&shares(&r, "clients", "p99"), &want);
    assert_shares(&shares(&r, "clients", "p50"), &want);
}

/// One worker, 10 ms of work, a request every 5 ms: request i (from 0) waits 5i ms.
const QUEUE: &str = r#"
[simulation]
requests = 10
[network]
latency = "0ms"
[report]
attribution = true
[services.s]
workers = 1
[services.s.endpoints.get]
steps = [{ work = "10ms" }]
[workloads.w]
target = "s/get"
arrivals = "constant"
rate = 200
"#;

#[test]
fn queueing_goes_to_queue_wait() {
    let r = json(&run(QUEUE, &[]).report);
    // p99: the last request alone, 45 ms waiting and 10 working.
    assert_eq!(r["workloads"]["w"]["latency_ms"]["max"], 55.0);
    assert_eq!(r["workloads"]["w"]["attribution"]["p99_requests"], 1);
    assert_shares(
        &shares(&r, "w", "p99"),
        &[
            ("s/get", "queue_wait", 45.0 / 55.0),
            ("s/get", "work", 10.0 / 55.0),
        ],
    );
    // p50: the 5th smallest latency, 30 ms, 20 of them waiting (reported as the middle
    // of its histogram bucket).
    let p50 = r["workloads"]["w"]["latency_ms"]["p50"].as_f64().unwrap();
    assert!((p50 / 30.0 - 1.0).abs() < 0.004, "{p50}");
    assert_eq!(r["workloads"]["w"]["attribution"]["p50_requests"], 1);
    assert_shares(
        &shares(&r, "w", "p50"),
        &[
            ("s/get", "queue_wait", 20.0 / 30.0),
            ("s/get", "work", 10.0 / 30.0),
        ],
    );
}

#[test]
fn attribution_is_on_unless_turned_off_and_changes_nothing_else() {
    let plain = QUEUE.replace("[report]\nattribution = true\n", "");
    assert_ne!(plain, QUEUE);
    let off = json(&run(&plain, &["report.attribution=false"]).report);
    assert!(off["workloads"]["w"].get("attribution").is_none());
    let mut on = json(&run(&plain, &[]).report);
    assert_eq!(on["workloads"]["w"]["attribution"]["p99_requests"], 1);
    on["workloads"]["w"]
        .as_object_mut()
        .unwrap()
        .remove("attribution");
    // The scenario hash differs (the override), nothing else.
    on["scenario_hash"] = off["scenario_hash"].clone();
    assert_eq!(on, off);
}

/// Two workloads on different paths, constant times, workers to spare: `direct` is
/// 5 + 10 + 5 = 20 ms at a; `deep` is 5 + 30 (b) + 5 + 20 (c) + 5 + 5 = 70 ms.
const TWO_PATHS: &str = r#"
[simulation]
requests = 400
[network]
latency = "5ms"
[services.a]
workers = 64
[services.a.endpoints.get]
steps = [{ work = "10ms" }]
[services.b]
workers = 64
[services.b.endpoints.get]
steps = [{ work = "30ms" }, { call = "c/get" }]
[services.c]
workers = 64
[services.c.endpoints.get]
steps = [{ work = "20ms" }]
[workloads.direct]
target = "a/get"
rate = 50
[workloads.deep]
target = "b/get"
rate = 50
"#;

#[test]
fn each_workload_has_its_own_attribution_in_the_report_the_summary_and_the_page() {
    let finished = run(TWO_PATHS, &[]);
    let r = json(&finished.report);
    let direct = [
        ("a/get", "work", 10.0 / 20.0),
        ("a/get", "network", 10.0 / 20.0),
    ];
    let deep = [
        ("b/get", "work", 30.0 / 70.0),
        ("c/get", "work", 20.0 / 70.0),
        ("b/get", "network", 10.0 / 70.0),
        ("c/get", "network", 10.0 / 70.0),
    ];
    for set in ["p99", "p50"] {
        assert_shares(&shares(&r, "direct", set), &direct);
        assert_shares(&shares(&r, "deep", set), &deep);
    }
    for w in ["direct", "deep"] {
        let a = &r["workloads"][w]["attribution"];
        let requests = r["workloads"][w]["requests"].as_u64().unwrap();
        // Every request takes the same time: one bucket holds them all.
        assert_eq!(a["p99_requests"].as_u64(), Some(requests), "{w}");
        assert_eq!(a["p50_requests"].as_u64(), Some(requests), "{w}");
    }
    assert_eq!(
        r["workloads"]["deep"]["attribution"]["p99"][0]["mean_ms"],
        30.0
    );
    let summary = meshsim::report::text::summary(&finished.report, "");
    assert!(
        summary.contains("direct: 50% of p99 is a/get work, 50% a/get network"),
        "{summary}"
    );
    assert!(
        summary.contains("deep: 43% of p99 is b/get work, 29% c/get work, 14% b/get network"),
        "{summary}"
    );
    let mut html = String::new();
    meshsim::report::attribution::html(&mut html, &finished.report);
    for w in ["direct", "deep"] {
        for set in ["p99", "p50"] {
            assert!(html.contains(&format!("<h3>{w}: {set} (")), "{html}");
        }
    }
}

/// api calls slow with a 30 ms per-try timeout, 3 attempts, 10 ms fixed backoff; slow
/// always takes 100 ms. Every attempt times out: 1 + (30 + 10 + 30 + 10 + 30) + 1 = 112 ms.
const RETRIES: &str = r#"
[simulation]
requests = 1
[network]
latency = "1ms"
[report]
attribution = true
[policies.p]
timeout = "30ms"
[policies.p.retry]
max_attempts = 3
backoff = "fixed"
base = "10ms"
jitter = "none"
on = ["deadline_exceeded"]
[services.api]
workers = 4
[services.api.endpoints.get]
steps = [{ call = "slow/get", policy = "p" }]
[services.slow]
workers = 4
[services.slow.endpoints.get]
steps = [{ work = "100ms" }]
[workloads.w]
target = "api/get"
arrivals = "constant"
rate = 1                       # the request leaves at 1 s
"#;

pub(crate) fn events(traces: &Traces) -> Vec<Value> {
    let text = meshsim::report::trace::chrome_json(traces);
    let doc: Value = serde_json::from_str(&text).expect("the trace is JSON");
    doc["traceEvents"].as_array().unwrap().clone()
}

/// Every span has what the Trace Event Format asks of a complete event, lies inside
/// its parent, and spans of one thread nest properly.
pub(crate) fn check_shape(events: &[Value]) {
    let mut spans: BTreeMap<u64, &Value> = BTreeMap::new();
    for e in events {
        match e["ph"].as_str().unwrap() {
            "M" => {
                assert!(
                    e["pid"].is_u64() && e["tid"].is_u64() && e["args"]["name"].is_string()
                        || e["args"]["sort_index"].is_u64()
                );
            }
            "X" => {
                for k in ["name", "cat"] {
                    assert!(e[k].is_string(), "{e}");
                }
                for k in ["ts", "dur"] {
                    assert!(e[k].as_f64().unwrap() >= 0.0, "{e}");
                }
                assert!(e["pid"].is_u64() && e["tid"].is_u64(), "{e}");
                spans.insert(e["args"]["span"].as_u64().unwrap(), e);
            }
            "s" | "f" => {
                assert!(
                    e["id"].is_u64() && e["ts"].is_f64() && e["pid"].is_u64(),
                    "{e}"
                );
                if e["ph"] == "f" {
                    assert_eq!(e["bp"], "e");
                }
            }
            other => panic!("unexpected phase {other}"),
        }
    }
    let end = |e: &Value| e["ts"].as_f64().unwrap() + e["dur"].as_f64().unwrap();
    for e in spans.values() {
        if let Some(p) = e["args"]["parent"].as_u64() {
            let p = spans[&p];
            assert!(
                // Microseconds as f64: start and duration round apart by far less than a ns.
                p["ts"].as_f64().unwrap() <= e["ts"].as_f64().unwrap() + 1e-3
                    && end(e) <= end(p) + 1e-3,
                "{} not inside its parent {}",
                e["name"],
                p["name"]
            );
        }
    }
    let mut threads: BTreeMap<(u64, u64), Vec<(f64, f64)>> = BTreeMap::new();
    for e in spans.values() {
        threads
            .entry((e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap()))
            .or_default()
            .push((e["ts"].as_f64().unwrap(), end(e)));
    }
    for v in threads.values() {
        for (i, a) in v.iter().enumerate() {
            for b in &v[i + 1..] {
                let le = |x: f64, y: f64| x <= y + 1e-3;
                let apart = le(a.1, b.0) || le(b.1, a.0);
                let nested = (le(a.0, b.0) && le(b.1, a.1)) || (le(b.0, a.0) && le(a.1, b.1));
                assert!(apart || nested, "{a:?} and {b:?} overlap on one thread");
            }
        }
    }
    // Every flow has its start and its end.
    let mut flows: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    for e in events.iter().filter(|e| e["ph"] == "s" || e["ph"] == "f") {
        let f = flows.entry(e["id"].as_u64().unwrap()).or_default();
        if e["ph"] == "s" {
            f.0 += 1;
        } else {
            f.1 += 1;
        }
    }
    assert!(flows.values().all(|&c| c == (1, 1)), "{flows:?}");
    // ...and each end lies on a span of its thread (Perfetto binds it to that span).
    for e in events.iter().filter(|e| e["ph"] == "s" || e["ph"] == "f") {
        let ts = e["ts"].as_f64().unwrap();
        let on = &threads[&(e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap())];
        assert!(
            on.iter().any(|&(a, b)| a <= ts + 1e-3 && ts <= b + 1e-3),
            "flow {e} binds to no span"
        );
    }
}

#[test]
fn a_trace_numbers_attempts_and_shows_their_outcomes_and_backoffs() {
    let (_, traces) = observed(
        "retries",
        RETRIES,
        &[],
        TraceSelect::Request {
            workload: WorkloadId(0),
            number: 1,
        },
    );
    assert_eq!(traces.traces.len(), 1);
    let ev = events(&traces);
    check_shape(&ev);
    let named = |cat: &str| -> Vec<&Value> { ev.iter().filter(|e| e["cat"] == cat).collect() };
    let root = named("request");
    assert_eq!(root.len(), 1);
    assert_eq!(
        (root[0]["ts"].as_f64(), root[0]["dur"].as_f64()),
        (Some(1e6), Some(112_000.0))
    );
    assert_eq!(root[0]["args"]["status"], "deadline_exceeded");
    // The workload's one attempt (ends with the error), then api's three timeouts.
    let attempts: Vec<(u64, &str, f64, f64)> = named("attempt")
        .iter()
        .map(|e| {
            (
                e["args"]["attempt"].as_u64().unwrap(),
                e["args"]["outcome"].as_str().unwrap(),
                e["ts"].as_f64().unwrap() - 1e6,
                e["dur"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (1, "error deadline_exceeded", 0.0, 112_000.0),
            (1, "timeout", 1_000.0, 30_000.0),
            (2, "timeout", 41_000.0, 30_000.0),
            (3, "timeout", 81_000.0, 30_000.0),
        ]
    );
    let backoffs: Vec<(f64, f64)> = named("backoff")
        .iter()
        .map(|e| (e["ts"].as_f64().unwrap() - 1e6, e["dur"].as_f64().unwrap()))
        .collect();
    assert_eq!(backoffs, [(31_000.0, 10_000.0), (71_000.0, 10_000.0)]);
    // Three invocations of slow, each still working when its attempt gave up: they
    // are cut at the request's end (the first at 101 ms, done; the others cut at 112).
    let slow: Vec<&Value> = named("invocation")
        .into_iter()
        .filter(|e| e["name"] == "slow/get")
        .collect();
    assert_eq!(slow.len(), 3);
    assert_eq!(slow[0]["dur"], 100_000.0);
    assert_eq!(slow[1]["args"]["cut_at_request_end"], true);
    // A hop per request (4) and per reply received (api's to the client; slow's first
    // reply came at 101 ms, after its attempt gave up, and is no hop of this request).
    assert_eq!(ev.iter().filter(|e| e["ph"] == "s").count(), 5);
}

#[test]
fn a_timed_out_attempt_is_what_the_callee_did_until_the_timeout() {
    let r = json(&run(RETRIES, &[]).report);
    assert_eq!(r["workloads"]["w"]["latency_ms"]["p99"], 112.0);
    assert_shares(
        &shares(&r, "w", "p99"),
        &[
            ("slow/get", "work", 87.0 / 112.0),
            ("slow/get", "backoff", 20.0 / 112.0),
            ("slow/get", "network", 3.0 / 112.0),
            ("api/get", "network", 2.0 / 112.0),
        ],
    );
}

#[test]
fn tracing_changes_no_byte_of_the_report() {
    for name in [
        "trace_retries",
        "hedging_tail",
        "call_chain_parallel",
        "payment_worker_rabbitmq",
        "saga_orchestrated",
        "saga_choreography",
        "email_dlq",
        "kafka_consumer_group",
    ] {
        let text = bundled(name);
        let plain = run_file(&format!("{name}.toml"), &[]).report.to_json();
        let (traced, traces) = observed(name, &text, &[], TraceSelect::Sample(0.05));
        assert!(!traces.traces.is_empty(), "{name}: nothing traced");
        check_shape(&events(&traces));
        // The scenario's label differs (file vs name); everything else is the same.
        let strip = |s: &str| -> Value {
            let mut v: Value = serde_json::from_str(s).unwrap();
            v["scenario"] = Value::Null;
            v
        };
        assert_eq!(strip(&plain), strip(&traced), "{name}");
    }
}

#[test]
fn the_sample_is_the_same_on_every_run_and_about_its_rate() {
    let text = bundled("trace_retries");
    let numbers = || -> Vec<u64> {
        observed("t", &text, &[], TraceSelect::Sample(0.1))
            .1
            .traces
            .iter()
            .map(|t| t.number)
            .collect()
    };
    let a = numbers();
    assert_eq!(a, numbers());
    // About 3,000 requests at 10%: the count is binomial (sd ~16).
    assert!((230..=370).contains(&a.len()), "{}", a.len());
}

#[test]
fn every_bundled_scenario_traces_into_a_well_formed_file() {
    for (name, text) in bundled_scenarios() {
        if name == "mm1" || name == "mmc" || name == "explore_payments" {
            continue; // millions of requests; their shape is the chain's
        }
        let (_, traces) = observed(&name, &text, &[], TraceSelect::Sample(0.01));
        check_shape(&events(&traces));
    }
}

/// Requests pile up without bound (a million a second into a 1 ms endpoint with one
/// worker): the counting allocator stops the run at the budget.
const FLOOD: &str = r#"[simulation]
duration = "1h"
max_requests_in_flight = 1000000000
max_pending_events = 1000000000
[services.api]
queue = 10000000
[services.api.endpoints.get]
steps = [{ work = "1ms" }]
[workloads.w]
target = "api/get"
rate = 1000000
"#;

#[test]
fn trace_stops_at_the_memory_budget_as_run_does_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flood.toml");
    std::fs::write(&path, FLOOD).unwrap();
    let out = dir.path().join("t.json");
    assert_cmd::Command::cargo_bin("meshsim")
        .unwrap()
        .arg("trace")
        .arg(&path)
        .args(["--request", "1", "-q", "--max-memory", "64MB", "--out"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "above the memory budget of 61 MiB; nothing was written",
        ))
        .stderr(predicates::str::contains("flood.toml:1:1"));
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // A budget the estimate refuses stops it before it runs.
    assert_cmd::Command::cargo_bin("meshsim")
        .unwrap()
        .arg("trace")
        .arg(&path)
        .args(["--request", "1", "--max-memory", "1MB", "--out"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("before it runs"));
    assert!(!out.exists());
}

/// The path recorder (sequential scenarios) and the tree cut every request alike: the
/// run asserts it request by request, over every bundled scenario (tree-only ones run
/// too: the check is then the tree's own sums).
#[test]
fn the_path_and_the_tree_cut_every_request_alike() {
    let mut by_path = Vec::new();
    for (name, text) in bundled_scenarios() {
        let overrides: Vec<String> = match name.as_str() {
            "mm1" | "mmc" | "explore_payments" => vec!["simulation.requests=20000".into()],
            _ => Vec::new(),
        };
        let mut overrides = overrides;
        overrides.push("report.attribution=true".into());
        let sc = scenario::from_source(&name, &name, &text, &overrides).unwrap();
        if meshsim::model::trace::attributes_by_path(&sc.spec) {
            by_path.push(name.clone());
        }
        let observe = Observe {
            trace: None,
            check_attribution: true,
        };
        let (outcome, _) = meshsim::simulate_observed(sc, &observe, &mut |_| Ok(()), None).unwrap();
        let r = json(&outcome.report);
        for (w, v) in r["workloads"].as_object().unwrap() {
            if v["requests"].as_u64().unwrap_or(0) > 0 && v["latency_ms"].is_object() {
                assert!(
                    v.get("attribution").is_some(),
                    "{name}: {w} has no attribution"
                );
            }
        }
    }
    for name in [
        "chain_165ms",
        "retry_storm",
        "cascading_failure",
        "trace_retries",
        "mmc",
    ] {
        assert!(
            by_path.contains(&name.to_string()),
            "{name} is cut along its path: {by_path:?}"
        );
    }
}
