//! Invalid scenarios: one test per class of mistake. Each is rejected with an error
//! that names the file, line and column and what was expected there; the CLI exits
//! with code 2, does not panic, and writes nothing.

use super::support;
use assert_cmd::Command;
use meshsim::scenario::{self, ScenarioError};

/// Asserts `text` is rejected with exactly one error located at `line` (and `col`
/// when given) whose rendering contains every fragment; returns the rendering.
#[track_caller]
fn rejected_at(text: &str, line: usize, col: Option<usize>, fragments: &[&str]) -> String {
    let err = support::error(text);
    let shown = err.to_string();
    let located = err.located();
    assert_eq!(located.len(), 1, "expected one error, got:\n{shown}");
    assert_eq!(located[0].path, "bad.toml");
    assert_eq!(located[0].line, line, "wrong line:\n{shown}");
    match col {
        Some(col) => {
            assert_eq!(located[0].column, col, "wrong column:\n{shown}");
            assert!(shown.contains(&format!("bad.toml:{line}:{col}")), "{shown}");
        }
        None => assert!(shown.contains(&format!("bad.toml:{line}:")), "{shown}"),
    }
    for f in fragments {
        assert!(shown.contains(f), "missing {f:?} in:\n{shown}");
    }
    shown
}

/// A valid scenario around one endpoint body: `a/get` runs `steps`, calls may go
/// to `b/get` or `b/list`. The steps sit on line 5.
fn with_steps(steps: &str) -> String {
    format!(
        r#"[simulation]
duration = "10s"

[services.a.endpoints.get]
steps = [{steps}]

[services.b.endpoints.get]
steps = [{{ work = "1ms" }}]

[services.b.endpoints.list]
steps = [{{ work = "1ms" }}]

[workloads.w]
target = "a/get"
rate = 1
"#
    )
}

#[test]
fn the_helper_scenario_is_valid() {
    // Guards every test below: only the part each one changes is at fault.
    let text = with_steps(r#"{ work = "1ms" }, { call = "b/get" }"#);
    scenario::from_source("ok.toml", "ok", &text, &[]).unwrap();
}

// ---- syntax, field names and types ----

#[test]
fn unknown_top_level_field() {
    // Class: a key the top level does not have (a typo of `services`).
    let text = r#"[simulation]
duration = "10s"

[servces.a.endpoints.get]
steps = [{ work = "1ms" }]
"#;
    rejected_at(text, 4, Some(2), &["unknown field `servces`", "services"]);
}

#[test]
fn unknown_field_in_a_service() {
    // Class: a key a service does not have (`worker` for `workers`).
    let text = r#"[simulation]
duration = "10s"

[services.a]
worker = 4

[services.a.endpoints.get]
steps = [{ work = "1ms" }]
"#;
    rejected_at(text, 5, Some(1), &["unknown field `worker`", "workers"]);
}

#[test]
fn unknown_field_in_a_step() {
    // Class: a key a step does not have (`wrok` for `work`).
    rejected_at(
        &with_steps(r#"{ wrok = "1ms" }"#),
        5,
        Some(12),
        &["unknown field `wrok`", "work"],
    );
}

#[test]
fn toml_syntax_error() {
    // Class: the file is not TOML at all.
    let text = r#"[simulation]
duration = "10s"
seed = = 3
"#;
    rejected_at(text, 3, None, &[]);
}

#[test]
fn wrong_type() {
    // Class: a string where an integer is expected.
    let text = r#"[simulation]
duration = "10s"

[services.a]
workers = "four"
"#;
    rejected_at(
        text,
        5,
        Some(11),
        &["invalid type", "\"four\"", "expected an integer from"],
    );
}

// ---- names that do not resolve ----

#[test]
fn unknown_service_in_a_call() {
    // Class: a call to a service the scenario does not define; lists the known ones.
    rejected_at(
        &with_steps(r#"{ call = "nope/get" }"#),
        5,
        Some(19),
        &["unknown service `nope`", "a, b"],
    );
}

#[test]
fn unknown_endpoint_of_a_known_service() {
    // Class: a call to an endpoint the service lacks; lists the service's endpoints.
    rejected_at(
        &with_steps(r#"{ call = "b/put" }"#),
        5,
        Some(19),
        &["service `b` has no endpoint `put`", "b/get", "b/list"],
    );
}

#[test]
fn call_target_without_a_slash() {
    // Class: a call target that is not SERVICE/ENDPOINT.
    rejected_at(
        &with_steps(r#"{ call = "b" }"#),
        5,
        Some(19),
        &["`b` does not name an endpoint", "SERVICE/ENDPOINT"],
    );
}

#[test]
fn unknown_workload_target() {
    // Class: a workload aimed at an endpoint that does not exist.
    let text = r#"[simulation]
duration = "10s"

[services.a.endpoints.get]
steps = [{ work = "1ms" }]

[workloads.w]
target = "x/get"
rate = 1
"#;
    rejected_at(
        text,
        8,
        Some(10),
        &["unknown service `x`", "a service of this scenario: a"],
    );
}

// ---- durations ----

#[test]
fn bad_duration() {
    // Class: a duration without a unit, with an unknown unit, or negative.
    for (work, why) in [
        ("5", "has no unit"),
        ("5sec", "is not a duration"),
        ("-5ms", "is negative"),
    ] {
        rejected_at(
            &with_steps(&format!(r#"{{ work = "{work}" }}"#)),
            5,
            Some(19),
            &["bad duration", why, "ns, us, ms, s, m, h"],
        );
    }
}

#[test]
fn zero_duration_where_positive_is_needed() {
    // Class: a timeout of "0s".
    rejected_at(
        &with_steps(r#"{ call = "b/get", timeout = "0s" }"#),
        5,
        Some(38),
        &["a timeout must be longer than zero", "a positive duration"],
    );
}

// ---- numbers out of range ----

#[test]
fn probability_above_one() {
    // Class: a probability outside [0, 1] (network loss 1.5).
    let text = r#"[simulation]
duration = "10s"

[network]
loss = 1.5

[services.a.endpoints.get]
steps = [{ work = "1ms" }]

[workloads.w]
target = "a/get"
rate = 1
"#;
    rejected_at(
        text,
        5,
        Some(8),
        &["the loss is 1.5, not a probability", "from 0 to 1"],
    );
}

#[test]
fn probability_below_zero() {
    // Class: a probability outside [0, 1] (fail p = -0.1).
    rejected_at(
        &with_steps(r#"{ fail = "internal", p = -0.1 }"#),
        5,
        Some(35),
        &["`p` is -0.1, not a probability", "from 0 to 1"],
    );
}

#[test]
fn zero_replicas_or_workers() {
    // Class: zero where at least one is needed (replicas, workers).
    for (field, what) in [("replicas", "replicas is 0"), ("workers", "workers is 0")] {
        let text = format!(
            r#"[simulation]
duration = "10s"

[services.a]
{field} = 0

[services.a.endpoints.get]
steps = [{{ work = "1ms" }}]

[workloads.w]
target = "a/get"
rate = 1
"#
        );
        rejected_at(&text, 5, Some(field.len() + 4), &[what, "at least 1"]);
    }
}

#[test]
fn negative_queue() {
    // Class: a negative queue capacity.
    let text = r#"[simulation]
duration = "10s"

[services.a]
queue = -1

[services.a.endpoints.get]
steps = [{ work = "1ms" }]

[workloads.w]
target = "a/get"
rate = 1
"#;
    rejected_at(
        text,
        5,
        Some(9),
        &["the queue capacity is -1", "a capacity >= 0"],
    );
}

#[test]
fn zero_or_negative_rate() {
    // Class: a workload rate that sends nothing.
    for rate in ["0", "-2"] {
        let text = format!(
            r#"[simulation]
duration = "10s"

[services.a.endpoints.get]
steps = [{{ work = "1ms" }}]

[workloads.w]
target = "a/get"
rate = {rate}
"#
        );
        rejected_at(&text, 9, Some(8), &["sends nothing", "a rate above zero"]);
    }
}

// ---- steps ----

#[test]
fn step_with_two_kinds() {
    // Class: a step that is both `work` and `call`.
    rejected_at(
        &with_steps(r#"{ work = "1ms", call = "b/get" }"#),
        5,
        Some(10),
        &["exactly one kind; found `work` and `call`"],
    );
}

#[test]
fn step_with_no_kind() {
    // Class: a step that is none of work, call, parallel, fail, steps.
    rejected_at(
        &with_steps("{}"),
        5,
        Some(10),
        &["exactly one kind; found none", "one of `work`, `call`"],
    );
}

#[test]
fn timeout_on_a_work_step() {
    // Class: a field that belongs to another kind of step.
    rejected_at(
        &with_steps(r#"{ work = "1ms", timeout = "1s" }"#),
        5,
        Some(36),
        &[
            "`timeout` does not apply to a `work` step",
            "on a `call` step",
        ],
    );
}

#[test]
fn unknown_status_in_fail() {
    // Class: `fail` with a status that does not exist; lists the known ones.
    rejected_at(
        &with_steps(r#"{ fail = "teapot" }"#),
        5,
        Some(19),
        &["`teapot` is not a status code here", "unavailable"],
    );
}

#[test]
fn unknown_status_in_translate() {
    // Class: `translate` mapping to a status that does not exist.
    rejected_at(
        &with_steps(r#"{ call = "b/get", translate = { unavailable = "bogus" } }"#),
        5,
        Some(56),
        &["`bogus` is not a status code here", "one of: ok"],
    );
}

#[test]
fn fail_with_ok_is_refused() {
    // Class: `fail = "ok"` is not a failure; "ok" is not offered.
    let shown = rejected_at(
        &with_steps(r#"{ fail = "ok" }"#),
        5,
        Some(19),
        &["`ok` is not a status code here", "one of: invalid_argument"],
    );
    assert!(!shown.contains("one of: ok"), "{shown}");
}

// ---- distributions ----

#[test]
fn unknown_distribution_kind() {
    // Class: `dist` names no known distribution.
    rejected_at(
        &with_steps(r#"{ work = { dist = "gaussian", mean = "1ms" } }"#),
        5,
        Some(28),
        &["unknown distribution `gaussian`", "exponential, normal"],
    );
}

#[test]
fn distribution_field_that_does_not_apply() {
    // Class: `stddev` on an exponential distribution.
    rejected_at(
        &with_steps(r#"{ work = { dist = "exponential", mean = "1ms", stddev = "1ms" } }"#),
        5,
        Some(66),
        &[
            "`stddev` does not apply to a exponential distribution",
            "only: mean",
        ],
    );
}

#[test]
fn lognormal_p99_below_median() {
    // Class: a lognormal whose p99 is below its median.
    rejected_at(
        &with_steps(r#"{ work = { dist = "lognormal", median = "10ms", p99 = "5ms" } }"#),
        5,
        Some(19),
        &["a lognormal needs 0 < median <= p99"],
    );
}

#[test]
fn uniform_min_above_max() {
    // Class: a uniform whose min is above its max.
    rejected_at(
        &with_steps(r#"{ work = { dist = "uniform", min = "5ms", max = "1ms" } }"#),
        5,
        Some(19),
        &["min (5ms) is above max (1ms)", "min <= max"],
    );
}

// ---- call graph and joins ----

#[test]
fn call_cycle_between_two_services() {
    // Class: a -> b -> a can recurse forever; reported at the call closing the cycle.
    let text = r#"[simulation]
duration = "10s"

[services.a.endpoints.get]
steps = [{ call = "b/get" }]

[services.b.endpoints.get]
steps = [{ work = "1ms" }, { call = "a/get" }]

[workloads.w]
target = "a/get"
rate = 1
"#;
    rejected_at(
        text,
        8,
        Some(37),
        &["call cycle a/get -> b/get -> a/get", "without cycles"],
    );
}

#[test]
fn call_cycle_self_call() {
    // Class: an endpoint that calls itself.
    rejected_at(
        &with_steps(r#"{ call = "a/get" }"#),
        5,
        Some(19),
        &["call cycle a/get -> a/get"],
    );
}

#[test]
fn quorum_larger_than_branches() {
    // Class: a quorum that can never be reached.
    rejected_at(
        &with_steps(
            r#"{ parallel = [{ call = "b/get" }, { call = "b/list" }], join = "quorum", quorum = 3 }"#,
        ),
        5,
        Some(92),
        &[
            "a quorum of 3 out of 2 branches can never be reached",
            "from 1 to 2",
        ],
    );
}

#[test]
fn required_outside_all_settled() {
    // Class: `required` on a branch of a join that is not all_settled, or on no branch.
    rejected_at(
        &with_steps(r#"{ parallel = [{ call = "b/get", required = false }], join = "any" }"#),
        5,
        Some(53),
        &["`required` only means something with join = \"all_settled\""],
    );
    rejected_at(
        &with_steps(r#"{ call = "b/get", required = true }"#),
        5,
        Some(39),
        &["`required` only applies to a branch of a parallel step"],
    );
}

// ---- workloads and schedules ----

#[test]
fn schedule_not_starting_at_zero() {
    // Class: a rate schedule whose first entry is not at "0s".
    let text = r#"[simulation]
duration = "10s"

[services.a.endpoints.get]
steps = [{ work = "1ms" }]

[workloads.w]
target = "a/get"
schedule = [
  { at = "1s", rate = 5 },
]
"#;
    rejected_at(text, 10, Some(10), &["must start at \"0s\""]);
}

#[test]
fn schedule_not_increasing() {
    // Class: schedule entries out of time order.
    let text = r#"[simulation]
duration = "10s"

[services.a.endpoints.get]
steps = [{ work = "1ms" }]

[workloads.w]
target = "a/get"
schedule = [
  { at = "0s", rate = 5 },
  { at = "5s", rate = 1 },
  { at = "5s", rate = 2 },
]
"#;
    rejected_at(text, 12, Some(10), &["increasing time order"]);
}

#[test]
fn workload_named_like_a_service() {
    // Class: a workload and a service sharing a name.
    let text = r#"[simulation]
duration = "10s"

[services.a.endpoints.get]
steps = [{ work = "1ms" }]

[workloads.a]
target = "a/get"
rate = 1
"#;
    rejected_at(
        text,
        7,
        Some(12),
        &["`a` names both a service and a workload"],
    );
}

#[test]
fn no_workload() {
    // Class: nothing would ever happen.
    let text = r#"[simulation]
duration = "10s"

[services.a.endpoints.get]
steps = [{ work = "1ms" }]
"#;
    rejected_at(text, 1, None, &["has no workload", "[workloads.NAME]"]);
}

// ---- the simulation table ----

#[test]
fn simulation_that_never_ends() {
    // Class: neither `duration` nor `requests`.
    let text = r#"[simulation]
seed = 3

[services.a.endpoints.get]
steps = [{ work = "1ms" }]

[workloads.w]
target = "a/get"
rate = 1
"#;
    rejected_at(
        text,
        1,
        None,
        &["the simulation never ends", "requests = N"],
    );
}

#[test]
fn warmup_not_shorter_than_duration() {
    // Class: a warmup that covers the whole run.
    for warmup in ["10s", "1m"] {
        let text = format!(
            r#"[simulation]
duration = "10s"
warmup = "{warmup}"

[services.a.endpoints.get]
steps = [{{ work = "1ms" }}]

[workloads.w]
target = "a/get"
rate = 1
"#
        );
        rejected_at(
            &text,
            3,
            Some(10),
            &["covers the whole run", "shorter than `duration`"],
        );
    }
}

// ---- network and names ----

#[test]
fn unused_link_override() {
    // Class: a link between a pair that no call uses.
    let text = r#"[simulation]
duration = "10s"

[[network.links]]
from = "b"
to = "a"
latency = "1ms"

[services.a.endpoints.get]
steps = [{ call = "b/get" }]

[services.b.endpoints.get]
steps = [{ work = "1ms" }]

[workloads.w]
target = "a/get"
rate = 1
"#;
    rejected_at(text, 4, Some(1), &["no call goes from `b` to `a`"]);
}

#[test]
fn invalid_names() {
    // Class: names with a dot or a slash (they would break SERVICE/ENDPOINT and paths).
    let text = r#"[simulation]
duration = "10s"

[services."a.b".endpoints.get]
steps = [{ work = "1ms" }]

[workloads.w]
target = "a.b/get"
rate = 1
"#;
    rejected_at(
        text,
        4,
        Some(11),
        &["`a.b` is not a valid service name", "letters, digits"],
    );
    let text = r#"[simulation]
duration = "10s"

[services.a.endpoints.get]
steps = [{ work = "1ms" }]

[workloads."w/x"]
target = "a/get"
rate = 1
"#;
    rejected_at(text, 7, Some(12), &["`w/x` is not a valid workload name"]);
}

// ---- several at once, and --set ----

#[test]
fn several_errors_reported_at_once() {
    // Class: one run reports every problem, each at its own line.
    let text = r#"[simulation]
duration = "10s"

[services.a]
workers = 0

[services.a.endpoints.get]
steps = [{ work = "5" }, { call = "nope/get" }]

[workloads.w]
target = "a/get"
rate = -1
"#;
    let err = support::error(text);
    let shown = err.to_string();
    let lines: Vec<usize> = err.located().iter().map(|l| l.line).collect();
    assert!(lines.len() >= 3, "{shown}");
    for line in [5, 8, 12] {
        assert!(lines.contains(&line), "no error on line {line}:\n{shown}");
        assert!(shown.contains(&format!("bad.toml:{line}:")), "{shown}");
    }
}

#[test]
fn override_of_a_missing_key() {
    // Class: `--set` naming a key that does not exist; lists the ones that do.
    let text = with_steps(r#"{ work = "1ms" }"#);
    let err = scenario::from_source(
        "bad.toml",
        "bad",
        &text,
        &["services.nope.workers=2".into()],
    )
    .err()
    .expect("rejected");
    let ScenarioError::Override(msg) = &err else {
        panic!("expected an override error, got:\n{err}");
    };
    assert!(msg.contains("services.nope.workers=2"), "{msg}");
    assert!(
        msg.contains("`services` has no `nope` (it has: a, b)"),
        "{msg}"
    );
}

#[test]
fn override_that_makes_the_scenario_invalid() {
    // Class: a valid `--set` whose value is invalid: located in the edited text.
    let text = with_steps(r#"{ work = "1ms" }"#);
    let err = scenario::from_source(
        "bad.toml",
        "bad",
        &text,
        &["services.a.endpoints.get.steps.0.work=-5ms".into()],
    )
    .err()
    .expect("rejected");
    assert_eq!(err.located().len(), 1, "{err}");
    assert_eq!(err.located()[0].line, 5, "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("is negative") && shown.contains("--set"),
        "{shown}"
    );
}

// ---- the command line ----

const INVALID: &str = r#"[simulation]
duration = "10s"

[services.a.endpoints.get]
steps = [{ call = "a/gte" }]

[workloads.w]
target = "a/get"
rate = 1
"#;

#[test]
fn cli_run_on_an_invalid_scenario_exits_2_and_writes_nothing() {
    // Class: the CLI contract: exit code 2, FILE:LINE:COL on stderr, no output written.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, INVALID).unwrap();
    let out = dir.path().join("out");
    let assert = Command::cargo_bin("meshsim")
        .unwrap()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("{}:5:19", file.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("service `a` has no endpoint `gte`"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(assert.get_output().stdout.is_empty());
    assert!(!out.join("report.json").exists());
    assert!(!out.join("timeseries.csv").exists());
}

#[test]
fn cli_validate_reports_invalid_and_bad_set() {
    // Class: `validate` and `--set` errors also exit with 2 and say where.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, INVALID).unwrap();
    let assert = Command::cargo_bin("meshsim")
        .unwrap()
        .arg("validate")
        .arg(&file)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("{}:5:19", file.display())),
        "{stderr}"
    );

    let valid = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/mm1.toml");
    let assert = Command::cargo_bin("meshsim")
        .unwrap()
        .args(["validate", valid, "--set", "services.nope.workers=2"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains("has no `nope` (it has: server)"),
        "{stderr}"
    );
}

#[test]
fn cli_validate_accepts_a_bundled_scenario() {
    // Class: the valid case, so the tests above are not vacuous.
    for name in ["mm1.toml", "chain_165ms.toml"] {
        let path = format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
        Command::cargo_bin("meshsim")
            .unwrap()
            .args(["validate", &path])
            .assert()
            .code(0)
            .stdout(predicates::str::contains(": ok ("));
    }
}

#[test]
fn cli_run_past_the_end_of_the_clock_does_not_panic() {
    // Class: durations each valid but together longer than the clock holds (~584 years).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("long.toml");
    std::fs::write(
        &file,
        r#"[simulation]
requests = 1

[report]
bucket = "5000000h"

[services.a.endpoints.get]
steps = [{ work = "5000000h" }, { work = "5000000h" }]

[workloads.w]
target = "a/get"
rate = 1
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let assert = Command::cargo_bin("meshsim")
        .unwrap()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("long.toml"), "{stderr}");
    assert!(!out.join("report.json").exists());
}
