//! Behaviour checked against numbers known in advance: queueing theory, exact
//! arithmetic with constant distributions, exact counts.

use super::support::{self, json, run, run_file};
use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}
fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Erlang-C: (P(wait), Wq, W) for an M/M/c queue, in the time unit of 1/mu.
fn erlang_c(lambda: f64, mu: f64, c: u32) -> (f64, f64, f64) {
    let a = lambda / mu;
    let rho = a / c as f64;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..c {
        term *= a / k as f64;
        sum += term;
    }
    let last = term * a / c as f64 / (1.0 - rho);
    let p_wait = last / (sum + last);
    let wq = p_wait / (c as f64 * mu - lambda);
    (p_wait, wq, wq + 1.0 / mu)
}

#[test]
fn erlang_c_matches_the_peers_reference_values() {
    let (p, wq, w) = erlang_c(9.0, 1.0, 10);
    assert!(
        (p - 0.668732).abs() < 1e-6 && (wq - 0.668732).abs() < 1e-6 && (w - 1.668732).abs() < 1e-6
    );
    let (_, wq, w) = erlang_c(0.9, 1.0, 1);
    assert!((wq - 9.0).abs() < 1e-9 && (w - 10.0).abs() < 1e-9);
}

/// The endpoint's mean (ms) must have a 99% CI narrower than +-3% that holds `truth_s`.
fn assert_mean_in_ci(stat: &Value, truth_s: f64, what: &str) {
    let mean = f(&stat["mean"]);
    let [lo, hi] = [f(&stat["mean_ci99"][0]), f(&stat["mean_ci99"][1])];
    let truth = truth_s * 1e3;
    let half_pct = (hi - lo) / 2.0 / mean * 100.0;
    assert!(
        half_pct < 3.0,
        "{what}: CI half-width {half_pct:.2}% is not below 3%"
    );
    assert!(
        lo <= truth && truth <= hi,
        "{what}: {truth} ms outside the 99% CI [{lo}, {hi}] (mean {mean})"
    );
}

fn check_queue(report: &Value, lambda: f64, c: u32) {
    let (_, wq, w) = erlang_c(lambda, 1.0, c);
    let ep = &report["endpoints"]["server/serve"];
    assert_eq!(n(&ep["rejected"]), 0);
    assert_mean_in_ci(&ep["queue_wait_ms"], wq, "Wq");
    assert_mean_in_ci(&ep["latency_ms"], w, "W");
    // Little's law, L = lambda W, on the run's own numbers.
    let little = &ep["little"];
    let rel =
        (f(&little["l"]) - f(&little["lambda_rps"]) * f(&little["w_s"])).abs() / f(&little["l"]);
    assert!(rel < 0.01, "Little's law off by {rel}");
    // And against theory: lambda within 1% of the configured rate, utilization rho.
    assert!((f(&little["lambda_rps"]) / lambda - 1.0).abs() < 0.01);
    assert!((f(&ep["utilization"]) - lambda / c as f64).abs() < 0.01);
}

#[test]
fn mm1_matches_erlang_c_within_its_confidence_interval() {
    let out = run_file("mm1.toml", &[]);
    check_queue(&json(&out.report), 0.9, 1);
}

#[test]
fn mmc_matches_erlang_c_within_its_confidence_interval() {
    // 2 x 10^7 customers: at 10^7 the Wq interval is +-2.9%, too close to the 3% bar
    // for a test that must survive an unrelated change in the random draws.
    let out = run_file(
        "mmc.toml",
        &[
            "simulation.requests=20000000",
            "simulation.max_events=200000000",
        ],
    );
    check_queue(&json(&out.report), 9.0, 10);
}

#[test]
fn the_chain_costs_exactly_165_ms_and_315_with_a_slow_c() {
    // Requests leave at 0.1 s, 0.2 s, ... 59.9 s; those answered before the 60 s end count.
    for (set, want, ok) in [
        (vec![], 165.0, 598),
        (
            vec!["services.c.endpoints.get.steps.0.work=200ms"],
            315.0,
            596,
        ),
    ] {
        let r = json(&run_file("chain_165ms.toml", &set).report);
        let lat = &r["workloads"]["clients"]["latency_ms"];
        for q in ["p50", "p99", "max", "mean"] {
            assert_eq!(f(&lat[q]), want, "{q} with {set:?}");
        }
        assert_eq!(n(&r["workloads"]["clients"]["ok"]), ok);
    }
}

const FANOUT: &str = r#"
[simulation]
duration = "10s"
[network]
latency = "1ms"
[services.front.endpoints.get]
steps = [{ parallel = [
  { call = "a/get" }, { call = "b/get" }, { call = "c/get" },
], join = "all" }]
[services.a]
workers = 100
[services.a.endpoints.get]
steps = [{ work = "10ms" }]
[services.b]
workers = 100
[services.b.endpoints.get]
steps = [{ work = "30ms" }]
[services.c]
workers = 100
[services.c.endpoints.get]
steps = [{ work = "20ms" }]
[services.front]
workers = 100
[workloads.w]
target = "front/get"
arrivals = "constant"
rate = 20
"#;

#[test]
fn a_constant_fanout_costs_its_slowest_branch() {
    // Client hop 2 ms + max(10, 30, 20) + 2 ms branch hop = 34 ms; `any` takes the
    // fastest (14 ms) and a quorum of 2 the second fastest (24 ms).
    for (join, want) in [
        (r#"join = "all""#, 34.0),
        (r#"join = "any""#, 14.0),
        (r#"join = "quorum", quorum = 2"#, 24.0),
    ] {
        let text = FANOUT.replace(r#"join = "all""#, join);
        let r = json(&run(&text, &[]).report);
        let lat = &r["workloads"]["w"]["latency_ms"];
        assert_eq!(
            (f(&lat["p50"]), f(&lat["max"])),
            (want, want),
            "join {join}"
        );
    }
}

#[test]
fn any_and_quorum_cancel_the_branches_they_no_longer_need() {
    let text = FANOUT.replace("join = \"all\"", "join = \"any\"");
    let r = json(&run(&text, &[]).report);
    let answered = n(&r["workloads"]["w"]["ok"]);
    // a (10 ms) wins; b and c are abandoned and their answers arrive late.
    assert_eq!(n(&r["edges"]["front->a/get"]["cancelled"]), 0);
    assert_eq!(n(&r["edges"]["front->b/get"]["cancelled"]), answered);
    assert_eq!(n(&r["edges"]["front->c/get"]["cancelled"]), answered);
    assert_eq!(n(&r["edges"]["front->b/get"]["late_replies"]), answered);
}

#[test]
fn all_fails_fast_and_all_settled_degrades_on_optional_failures() {
    // b fails at once: `all` fails as soon as b's answer is back (a 2 ms round trip),
    // cancelling a and c.
    let text = FANOUT.replace(
        "steps = [{ work = \"30ms\" }]",
        "steps = [{ fail = \"not_found\" }]",
    );
    let r = json(&run(&text, &[]).report);
    let w = &r["workloads"]["w"];
    assert_eq!(
        n(&w["errors"]["not_found"]),
        n(&w["requests"]) - n(&w["in_flight"])
    );
    assert_eq!(
        f(&w["latency_ms"]["max"]),
        4.0,
        "2 ms client hop + 2 ms to b and back"
    );
    assert_eq!(
        n(&r["edges"]["front->c/get"]["cancelled"]),
        n(&w["errors"]["not_found"])
    );

    // all_settled with b optional: ok but degraded, after the slowest branch (c, 20 ms).
    let settled = text
        .replace("join = \"all\"", "join = \"all_settled\"")
        .replace(
            "{ call = \"b/get\" }",
            "{ call = \"b/get\", required = false }",
        );
    let r = json(&run(&settled, &[]).report);
    let w = &r["workloads"]["w"];
    assert_eq!(n(&w["ok"]), n(&w["degraded"]));
    assert!(n(&w["ok"]) > 190);
    assert_eq!(f(&w["latency_ms"]["max"]), 24.0);

    // ...and with b required, the page fails with b's status, translated by the endpoint.
    let required = text
        .replace("join = \"all\"", "join = \"all_settled\"")
        .replace(
            "[services.front.endpoints.get]\n",
            "[services.front.endpoints.get]\ntranslate = { not_found = \"invalid_argument\" }\n",
        );
    let r = json(&run(&required, &[]).report);
    let w = &r["workloads"]["w"];
    assert_eq!(n(&w["ok"]), 0);
    assert_eq!(
        n(&w["errors"]["invalid_argument"]),
        n(&w["requests"]) - n(&w["in_flight"])
    );
}

#[test]
fn a_callee_slower_than_the_timeout_is_cut_at_exactly_the_timeout() {
    let text = r#"
[simulation]
duration = "10s"
[network]
latency = "3ms"
[services.front]
workers = 50
[services.front.endpoints.get]
steps = [{ call = "slow/get", timeout = "40ms" }]
[services.slow]
workers = 50
[services.slow.endpoints.get]
steps = [{ work = "100ms" }]
[workloads.w]
target = "front/get"
arrivals = "constant"
rate = 10
"#;
    let r = json(&run(text, &[]).report);
    let edge = &r["edges"]["front->slow/get"];
    assert_eq!(n(&edge["timeouts"]), n(&edge["calls"]));
    assert_eq!(
        (f(&edge["latency_ms"]["p50"]), f(&edge["latency_ms"]["max"])),
        (40.0, 40.0)
    );
    let w = &r["workloads"]["w"];
    // 3 ms to front, 40 ms timeout, 3 ms back; the error is the timeout's.
    assert_eq!(f(&w["latency_ms"]["max"]), 46.0);
    assert_eq!(n(&w["errors"]["deadline_exceeded"]), n(&w["requests"]));
    // The callee does not know: it finishes every request and answers late.
    let slow = &r["endpoints"]["slow/get"];
    assert_eq!(n(&slow["ok"]), n(&slow["completed"]));
    assert_eq!(f(&slow["latency_ms"]["p50"]), 100.0);
}

#[test]
fn loss_on_a_link_times_out_one_minus_one_minus_p_squared_of_calls() {
    // p = 0.1 on requests and replies: 1 - 0.9^2 = 0.19 of calls time out. Over
    // n = 200,000 calls the standard error of the share is sqrt(0.19 * 0.81 / n) =
    // 0.00088; a tolerance of 0.004 is 4.5 standard errors, so this fails on a real
    // error (e.g. loss applied one way only gives 0.10) and essentially never on chance.
    let text = r#"
[simulation]
requests = 200000
[[network.links]]
from = "front"
to = "back"
loss = 0.1
[services.front]
workers = 1000
[services.front.endpoints.get]
steps = [{ call = "back/get", timeout = "10ms" }]
[services.back]
workers = 1000
[services.back.endpoints.get]
steps = [{ work = "1ms" }]
[workloads.w]
target = "front/get"
rate = 1000
"#;
    let r = json(&run(text, &[]).report);
    let e = &r["edges"]["front->back/get"];
    assert_eq!(n(&e["calls"]), 200_000);
    let share = n(&e["timeouts"]) as f64 / n(&e["calls"]) as f64;
    assert!((share - 0.19).abs() < 0.004, "timeout share {share}");
    // Lost requests never reach the callee; lost replies do, after the work.
    assert_eq!(
        n(&e["timeouts"]),
        n(&e["lost_requests"]) + n(&e["lost_replies"])
    );
    assert_eq!(
        n(&r["endpoints"]["back/get"]["arrivals"]),
        200_000 - n(&e["lost_requests"])
    );
    // The client-facing link is lossless: no request is lost on the way in.
    assert_eq!(n(&r["edges"]["w->front/get"]["lost_requests"]), 0);
}

#[test]
fn a_full_queue_rejects_with_unavailable() {
    // One worker, no queue, 100 ms of work, a request every 50 ms: the worker frees up
    // exactly when every other request arrives (the completion was scheduled first, so
    // it is handled first), so exactly half are served and half rejected.
    let text = r#"
[simulation]
requests = 200
[services.s]
workers = 1
queue = 0
[services.s.endpoints.get]
steps = [{ work = "100ms" }]
[workloads.w]
target = "s/get"
arrivals = "constant"
rate = 20
"#;
    let r = json(&run(text, &[]).report);
    assert_eq!(n(&r["workloads"]["w"]["ok"]), 100);
    assert_eq!(n(&r["workloads"]["w"]["errors"]["unavailable"]), 100);
    assert_eq!(n(&r["endpoints"]["s/get"]["rejected"]), 100);
    assert_eq!(r["stop"], "drained");
}

#[test]
fn a_held_worker_queues_callers_and_a_released_one_does_not() {
    // front has one worker and waits 100 ms on back for each request; requests come
    // every 50 ms. Held (thread per request): front serves 10/s of 20/s, its queue
    // grows. Released (event loop): every request takes exactly the 100 ms of back.
    let text = r#"
[simulation]
requests = 100
[services.front]
workers = 1
worker_during_calls = "held"
[services.front.endpoints.get]
steps = [{ call = "back/get" }]
[services.back]
workers = 100
[services.back.endpoints.get]
steps = [{ work = "100ms" }]
[workloads.w]
target = "front/get"
arrivals = "constant"
rate = 20
"#;
    let held = json(&run(text, &[]).report);
    let released = json(&run(text, &["services.front.worker_during_calls=released"]).report);
    let lat = |r: &Value, q: &str| f(&r["workloads"]["w"]["latency_ms"][q]);
    assert_eq!(
        (lat(&released, "p50"), lat(&released, "max")),
        (100.0, 100.0)
    );
    // Held: the k-th request (k from 0) waits k x 50 ms; the last one waits 4.95 s.
    assert_eq!(lat(&held, "max"), 100.0 + 99.0 * 50.0);
    assert!(f(&held["endpoints"]["front/get"]["queue_length"]["mean"]) > 10.0);
}

#[test]
fn warmup_excludes_early_requests_exactly() {
    let text = r#"
[simulation]
duration = "10s"
warmup = "5s"
[services.s.endpoints.get]
steps = [{ work = "10ms" }]
[workloads.w]
target = "s/get"
arrivals = "constant"
rate = 10
"#;
    let r = json(&run(text, &[]).report);
    // Arrivals at 0.1 s, 0.2 s, ... 9.9 s; the measured ones are 5.0 s to 9.9 s.
    assert_eq!(n(&r["workloads"]["w"]["requests"]), 50);
    assert_eq!(n(&r["endpoints"]["s/get"]["arrivals"]), 50);
    assert_eq!(f(&r["window_s"]), 5.0);
    assert!((f(&r["endpoints"]["s/get"]["utilization"]) - 0.1).abs() < 1e-9);
}

#[test]
fn closed_loop_users_alternate_think_and_wait() {
    // 5 users, 100 ms think then a 100 ms request: each sends at 0.1, 0.3, ... 9.9 s,
    // 50 requests each. The last ones end at 10.0 s, the end of the run: in flight.
    let text = r#"
[simulation]
duration = "10s"
[services.s]
workers = 5
[services.s.endpoints.get]
steps = [{ work = "100ms" }]
[workloads.users]
target = "s/get"
users = 5
think = "100ms"
"#;
    let r = json(&run(text, &[]).report);
    let w = &r["workloads"]["users"];
    assert_eq!(
        (n(&w["requests"]), n(&w["ok"]), n(&w["in_flight"])),
        (250, 245, 5)
    );
    assert_eq!(f(&w["latency_ms"]["max"]), 100.0);
}

#[test]
fn a_rate_schedule_changes_the_rate_at_its_boundaries() {
    // 10/s for 5 s (0.1 .. 4.9 s: 49), paused until 8 s, then 20/s (8.05 .. 9.95 s: 39).
    let text = r#"
[simulation]
duration = "10s"
[services.s]
workers = 10
[services.s.endpoints.get]
steps = [{ work = "1ms" }]
[workloads.w]
target = "s/get"
arrivals = "constant"
schedule = [{ at = "0s", rate = 10 }, { at = "5s", rate = 0 }, { at = "8s", rate = 20 }]
"#;
    let r = json(&run(text, &[]).report);
    assert_eq!(n(&r["workloads"]["w"]["requests"]), 88);
}

#[test]
fn balancers_spread_load_as_their_rules_say() {
    // Two single-worker replicas, 80 ms of work, a request every 50 ms: alternating
    // replicas never queue, so p99 is exactly 80 ms; random choice sometimes doubles
    // up and queues.
    let text = r#"
[simulation]
requests = 2000
[services.s]
replicas = 2
workers = 1
balancer = "round_robin"
[services.s.endpoints.get]
steps = [{ work = "80ms" }]
[workloads.w]
target = "s/get"
arrivals = "constant"
rate = 20
"#;
    for (balancer, exact) in [
        ("round_robin", true),
        ("least_outstanding", true),
        ("power_of_two_choices", true),
        ("random", false),
    ] {
        let r = json(&run(text, &[&format!("services.s.balancer={balancer}")]).report);
        let p99 = f(&r["workloads"]["w"]["latency_ms"]["p99"]);
        assert_eq!(p99 == 80.0, exact, "{balancer}: p99 {p99}");
    }
}

#[test]
fn translation_maps_a_callee_status_to_the_callers() {
    let text = r#"
[simulation]
requests = 10
[services.api.endpoints.get]
translate = { not_found = "invalid_argument" }
steps = [{ call = "db/read" }, { call = "auth/check", translate = { permission_denied = "internal" } }]
[services.db.endpoints.read]
steps = [{ fail = "not_found", p = 0.5 }]
[services.auth.endpoints.check]
steps = [{ fail = "permission_denied" }]
[workloads.w]
target = "api/get"
rate = 1
"#;
    let r = json(&run(text, &[]).report);
    let errors = &r["workloads"]["w"]["errors"];
    let (inv, internal) = (n(&errors["invalid_argument"]), n(&errors["internal"]));
    assert_eq!(inv + internal, 10);
    assert_eq!(inv, n(&r["endpoints"]["db/read"]["errors"]["not_found"]));
    assert_eq!(
        internal,
        n(&r["edges"]["api->auth/check"]["errors"]["permission_denied"])
    );
    assert!(errors.get("not_found").is_none() && errors.get("permission_denied").is_none());
}

#[test]
fn an_exhausted_event_budget_is_an_error_not_a_hang() {
    // Zero think and zero work: time never advances, the budget must stop it.
    let text = r#"
[simulation]
duration = "1s"
max_events = 10000
[services.s.endpoints.get]
steps = [{ work = "0s" }]
[workloads.w]
target = "s/get"
users = 1
"#;
    let sc = meshsim::scenario::from_source("loop.toml", "loop", text, &[]).unwrap();
    let err = meshsim::simulate(sc).err().expect("budget exhausted");
    assert!(
        err.to_string().contains("event budget of 10000 events"),
        "{err}"
    );
    let _ = support::error; // shared helpers are used by other modules
}
