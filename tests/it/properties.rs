//! Properties over generated scenarios: random chains, worker models, joins, policies
//! and fault schedules. Whatever the combination, a run must not panic, must conserve
//! requests and calls, must count every attempt, and must replay byte for byte.

use super::support::json;
use proptest::prelude::*;
use serde_json::Value;

#[derive(Debug, Clone)]
struct Knobs {
    workers: u32,
    queue: u32,
    released: bool,
    join: &'static str,
    timeout_ms: Option<u32>,
    deadline_ms: Option<u32>,
    attempts: Option<u32>,
    jitter: &'static str,
    breaker: bool,
    bulkhead: Option<(u32, u32)>,
    rate: Option<u32>,
    hedge_ms: Option<u32>,
    fault: Option<(&'static str, u32, u32)>,
    seed: u64,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        (
            1u32..6,
            0u32..10,
            any::<bool>(),
            prop::sample::select(vec!["all", "any", "all_settled"]),
        ),
        (
            prop::option::of(5u32..80),
            prop::option::of(20u32..200),
            prop::option::of(1u32..4),
            prop::sample::select(vec!["none", "full", "equal", "decorrelated"]),
        ),
        (
            any::<bool>(),
            prop::option::of((1u32..4, 0u32..30)),
            prop::option::of(20u32..200),
            prop::option::of(2u32..30),
        ),
        (
            prop::option::of((
                prop::sample::select(vec![
                    "down",
                    "crash",
                    "slow",
                    "error",
                    "partition",
                    "link_loss",
                    "link_latency",
                ]),
                0u32..800,
                100u32..800,
            )),
            0u64..i64::MAX as u64,
        ),
    )
        .prop_map(
            |(
                (workers, queue, released, join),
                (timeout_ms, deadline_ms, attempts, jitter),
                (breaker, bulkhead, rate, hedge_ms),
                (fault, seed),
            )| Knobs {
                workers,
                queue,
                released,
                join,
                timeout_ms,
                deadline_ms,
                attempts,
                jitter,
                breaker,
                bulkhead,
                rate,
                hedge_ms,
                fault,
                seed,
            },
        )
}

fn scenario(k: &Knobs) -> String {
    let mut policy = String::from("[policies.default]\n");
    if let Some(t) = k.timeout_ms {
        policy += &format!("timeout = \"{t}ms\"\n");
    }
    if let Some(d) = k.deadline_ms {
        policy += &format!("deadline = \"{d}ms\"\npropagate_deadline = true\n");
    }
    // gRPC-style configs may not both retry and hedge: hedging wins when both are drawn.
    if let Some(h) = k.hedge_ms {
        policy += &format!(
            "[policies.default.hedge]\ndelay = \"{h}ms\"\nmax_attempts = 3\nnon_fatal = [\"unavailable\", \"deadline_exceeded\"]\n"
        );
    } else if let Some(a) = k.attempts {
        policy += &format!(
            "[policies.default.retry]\nmax_attempts = {}\nbackoff = \"exponential\"\nbase = \"2ms\"\njitter = \"{}\"\non = [\"unavailable\", \"deadline_exceeded\", \"internal\", \"resource_exhausted\"]\n",
            a + 1,
            k.jitter
        );
    }
    if k.breaker {
        policy += "[policies.default.breaker]\nsize = 10\nminimum_calls = 5\nopen_for = \"50ms\"\nhalf_open_probes = 2\n";
    }
    if let Some((max, wait)) = k.bulkhead {
        policy += &format!(
            "[policies.default.bulkhead]\nmax_concurrent = {max}\nmax_wait = \"{wait}ms\"\n"
        );
    }
    if let Some(r) = k.rate {
        policy += &format!("[policies.default.rate_limit]\nrate = {r}\nburst = 5\n");
    }
    let hold = if k.released { "released" } else { "held" };
    let fault = match k.fault {
        None => String::new(),
        Some((kind, from, len)) => {
            let target = match kind {
                "partition" | "link_loss" | "link_latency" => {
                    "between = [\"front\", \"b\"]".to_owned()
                }
                _ => "service = \"b\"".to_owned(),
            };
            let extra = match kind {
                "slow" => "extra = \"30ms\"",
                "error" => "status = \"internal\"\np = 0.5",
                "link_loss" => "loss = 0.5",
                "link_latency" => "latency = \"20ms\"",
                _ => "",
            };
            format!(
                "[[faults]]\nkind = \"{kind}\"\n{target}\nfrom = \"{from}ms\"\nuntil = \"{}ms\"\n{extra}\n",
                from + len
            )
        }
    };
    let required = if k.join == "all_settled" {
        ", required = false"
    } else {
        ""
    };
    format!(
        r#"
[simulation]
seed = {seed}
requests = 150
duration = "20s"
[network]
latency = {{ dist = "exponential", mean = "1ms" }}
{policy}
[services.front]
workers = {workers}
queue = {queue}
worker_during_calls = "{hold}"
[services.front.endpoints.get]
steps = [{{ work = "1ms" }}, {{ parallel = [{{ call = "b/get" }}, {{ call = "c/get"{required} }}], join = "{join}" }}]
[services.b]
workers = {workers}
queue = {queue}
[services.b.endpoints.get]
steps = [{{ work = {{ dist = "exponential", mean = "5ms" }} }}, {{ fail = "unavailable", p = 0.1 }}]
[services.c]
workers = 2
[services.c.endpoints.get]
steps = [{{ work = {{ dist = "uniform", min = "1ms", max = "10ms" }} }}]
[workloads.w]
target = "front/get"
rate = 300
{fault}
"#,
        seed = k.seed,
        workers = k.workers,
        queue = k.queue,
        join = k.join,
    )
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn errors(v: &Value) -> u64 {
    v.as_object().unwrap().values().map(n).sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn runs_conserve_requests_calls_and_attempts(k in knobs()) {
        let text = scenario(&k);
        let sc = meshsim::scenario::from_source("prop.toml", "prop", &text, &[])
            .unwrap_or_else(|e| panic!("generated an invalid scenario:\n{e}\n{text}"));
        let out = meshsim::simulate(sc).expect("runs within its budget");
        let report = out.report.to_json();
        let r = json(&out.report);

        // Every request sent is answered (ok or an error) or still in flight.
        let w = &r["workloads"]["w"];
        prop_assert_eq!(n(&w["requests"]), n(&w["ok"]) + errors(&w["errors"]) + n(&w["in_flight"]));
        prop_assert!(n(&w["degraded"]) <= n(&w["ok"]));

        for (name, e) in r["edges"].as_object().unwrap() {
            let settled = n(&e["ok"]) + errors(&e["errors"]);
            // No logical call ends twice.
            prop_assert!(settled <= n(&e["calls"]), "{}: {} settled of {} calls", name, settled, n(&e["calls"]));
            // Every call made at least one try: sent, refused before leaving, or not
            // sent at all because its inherited deadline had passed.
            let rejected = &e["rejected"];
            let tries = n(&e["attempts"]) + n(&rejected["breaker"]) + n(&rejected["bulkhead"]) + n(&rejected["rate_limit"]) + n(&e["expired"]) + n(&e["cancelled"]);
            prop_assert!(tries >= n(&e["calls"]), "{}: {} tries for {} calls", name, tries, n(&e["calls"]));
            prop_assert!(n(&e["retries"]) + n(&e["hedges"]) <= n(&e["attempts"]));
            prop_assert!(n(&e["hedges_won"]) <= n(&e["hedges"]));
            // A message is lost at most once per attempt and direction.
            prop_assert!(n(&e["lost_requests"]) <= n(&e["attempts"]));
        }
        for (name, ep) in r["endpoints"].as_object().unwrap() {
            // Requests reaching a replica are taken in, refused for a full queue, or
            // refused by a fault; answers never outnumber what was taken in.
            prop_assert_eq!(n(&ep["arrivals"]), n(&ep["admitted"]) + n(&ep["rejected"]) + n(&ep["faulted"]), "{}", name);
            prop_assert!(n(&ep["completed"]) <= n(&ep["admitted"]), "{}", name);
            prop_assert!(ep["utilization"].as_f64().unwrap() <= 1.0 + 1e-9, "{}", name);
        }
        if let Some((kind, _, _)) = k.fault {
            // `affected` is the truth, not a wish: with no traffic in its window a fault
            // touches nothing (the exact tests check each kind does fire). A refusing or
            // failing fault cannot touch more requests than reached the service.
            let affected = n(&r["faults"][0]["affected"]);
            if kind == "down" || kind == "error" {
                prop_assert!(affected <= n(&r["endpoints"]["b/get"]["arrivals"]));
                prop_assert_eq!(affected, n(&r["endpoints"]["b/get"]["faulted"]));
            }
        }

        // Same scenario, same seed: the same report, byte for byte.
        let again = meshsim::simulate(meshsim::scenario::from_source("prop.toml", "prop", &text, &[]).unwrap()).unwrap();
        prop_assert_eq!(report, again.report.to_json());
    }
}
