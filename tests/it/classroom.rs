//! Classroom material: every exercise's start fails its check and its solution passes;
//! lints fire where the bundled failures are explained, with exact locations, and not
//! on their fixed versions; their arithmetic agrees with runs; the commands' exit codes.

use assert_cmd::Command;
use meshsim::exercise::Exercise;
use meshsim::lint::{self, Finding, Severity};
use meshsim::scenario;
use predicates::str::contains;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn exercises() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("exercises"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn judge(dir: &Path, file: &str) -> Vec<(String, f64, bool)> {
    let ex = Exercise::load(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    ex.judge(&path.display().to_string(), &text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|j| (j.requirement.check, j.value, j.passed))
        .collect()
}

#[test]
fn there_are_at_least_ten_exercises_each_complete() {
    let dirs = exercises();
    assert!(dirs.len() >= 10, "{} exercises", dirs.len());
    for d in &dirs {
        for f in ["README.md", "start.toml", "solution.toml", "check.toml"] {
            assert!(d.join(f).is_file(), "{} lacks {f}", d.display());
        }
        let readme = std::fs::read_to_string(d.join("README.md")).unwrap();
        assert!(
            readme.contains("<details>"),
            "{}: no progressive hints",
            d.display()
        );
    }
}

#[test]
fn every_exercise_start_fails_and_its_solution_passes() {
    for d in exercises() {
        let start = judge(&d, "start.toml");
        assert!(
            start.iter().any(|(_, _, passed)| !passed),
            "{}: start.toml already passes: {start:?}",
            d.display()
        );
        let solution = judge(&d, "solution.toml");
        let failed: Vec<_> = solution.iter().filter(|(_, _, p)| !p).collect();
        assert!(
            failed.is_empty(),
            "{}: solution.toml fails {failed:?}",
            d.display()
        );
    }
}

#[test]
fn an_exercise_ignores_the_students_own_expectations() {
    // Deleting nothing and adding a check that always holds passes nothing: the
    // exercise's checks are what count.
    let dir = root().join("exercises/01-chain-arithmetic");
    let ex = Exercise::load(&dir).unwrap();
    let text = std::fs::read_to_string(dir.join("start.toml")).unwrap()
        + "\n[[expect]]\ncheck = \"events >= 0\"\n";
    let judged = ex.judge("mine.toml", &text).unwrap();
    assert_eq!(judged.len(), ex.requirements.len());
    assert!(judged.iter().any(|j| !j.passed));
}

fn lint_file(name: &str) -> (String, Vec<Finding>) {
    let text = std::fs::read_to_string(root().join("scenarios").join(name)).unwrap();
    let sc = scenario::from_source(name, name, &text, &[]).unwrap();
    let findings = lint::lint(&sc.spec, &text);
    (text, findings)
}

fn at(text: &str, f: &Finding) -> (usize, usize) {
    scenario::diag::line_column(text, f.span.start)
}

#[test]
fn the_cascading_failure_draws_unbounded_waits_on_its_checkout_path() {
    let (text, findings) = lint_file("cascading_failure.toml");
    let waits: Vec<(usize, usize, &str)> = findings
        .iter()
        .filter(|f| f.code == "unbounded-wait")
        .map(|f| {
            let (l, c) = at(&text, f);
            (l, c, &text[f.span.clone()])
        })
        .collect();
    assert_eq!(
        waits,
        [
            (35, 37, "\"orders/place\""),
            (47, 37, "\"inventory/reserve\"")
        ]
    );
    let (_, protected) = lint_file("cascading_failure_protected.toml");
    assert!(protected.is_empty(), "{protected:?}");
}

#[test]
fn the_retry_storm_draws_its_amplification_and_the_budget_does_not() {
    let (text, findings) = lint_file("retry_storm.toml");
    let amp = findings
        .iter()
        .find(|f| f.code == "retry-amplification")
        .expect("amplification");
    assert_eq!(amp.measure, Some(64.0));
    assert_eq!(at(&text, amp), (69, 37));
    assert_eq!(amp.severity, Severity::Warning);
    let overload = findings
        .iter()
        .find(|f| f.code == "overload")
        .expect("overload");
    // 100/s x 64 attempts x 20 ms / 8 workers.
    assert!(
        (overload.measure.unwrap() - 16.0).abs() < 1e-9,
        "{overload:?}"
    );
    let inversions: Vec<f64> = findings
        .iter()
        .filter(|f| f.code == "timeout-inversion")
        .map(|f| f.measure.unwrap())
        .collect();
    // b/get: 1 ms + 4 x 300 ms + 10 + 20 + 40 ms of backoff; a/get: 1 ms + 4 x 1.2 s + 10 + 10 + 10 ms.
    assert_eq!(inversions.len(), 2, "{findings:?}");
    assert!((inversions[0] - 1.271).abs() < 1e-9, "{inversions:?}");
    let (_, budget) = lint_file("retry_storm_budget.toml");
    assert!(budget.is_empty(), "{budget:?}");
}

/// One request becomes max_attempts^3 attempts at the bottom when it always fails.
#[test]
fn amplification_arithmetic_matches_a_run() {
    let text = r#"
[simulation]
seed = 1
requests = 50
[network]
latency = "1ms"
[policies.default.retry]
max_attempts = 4
backoff = "fixed"
base = "1ms"
jitter = "none"
on = ["unavailable"]
[services.a.endpoints.get]
steps = [{ call = "b/get" }]
[services.b.endpoints.get]
steps = [{ call = "c/get" }]
[services.c]
workers = 64
[services.c.endpoints.get]
steps = [{ work = "1ms" }, { fail = "unavailable", p = 1.0 }]
[workloads.client]
target = "a/get"
rate = 2
"#;
    let sc = scenario::from_source("amp.toml", "amp", text, &[]).unwrap();
    let findings = lint::lint(&sc.spec, text);
    let amp = findings
        .iter()
        .find(|f| f.code == "retry-amplification")
        .expect("amplification finding");
    // client->a 4 x a->b 4 x b->c 4.
    assert_eq!(amp.measure, Some(64.0));
    let out = meshsim::simulate(sc).unwrap();
    let json = out.report.json_value();
    let arrivals = json["endpoints"]["c/get"]["arrivals"].as_f64().unwrap();
    assert_eq!(arrivals, 64.0 * 50.0);
}

/// Constant arrivals and constant work: the lint's utilization is the measured one.
#[test]
fn utilization_arithmetic_matches_a_run() {
    let text = r#"
[simulation]
seed = 1
duration = "100s"
[network]
latency = "1ms"
[services.a]
workers = 4
[services.a.endpoints.get]
steps = [{ work = "10ms" }, { call = "b/get" }]
[services.b]
workers = 3
[services.b.endpoints.get]
steps = [{ work = "20ms" }]
[workloads.client]
target = "a/get"
arrivals = "constant"
rate = 110
"#;
    let sc = scenario::from_source("util.toml", "util", text, &[]).unwrap();
    let findings = lint::lint(&sc.spec, text);
    let a = findings
        .iter()
        .find(|f| f.code == "overload")
        .expect("a is over 0.85");
    // a holds a worker for 10 ms of work + 2 x 1 ms of network + b's 20 ms: 110/s x 32 ms / 4.
    assert!((a.measure.unwrap() - 0.88).abs() < 1e-12, "{a:?}");
    assert_eq!(a.severity, Severity::Warning);
    assert!(a.message.contains("`a`"), "{}", a.message);
    let out = meshsim::simulate(sc).unwrap();
    let json = out.report.json_value();
    let measured = json["endpoints"]["a/get"]["utilization"].as_f64().unwrap();
    assert!((measured - 0.88).abs() < 0.002, "measured {measured}");
    let b = json["endpoints"]["b/get"]["utilization"].as_f64().unwrap();
    // b: 110/s x 20 ms / 3 = 0.733, below the warning: no finding for it.
    assert!((b - 2.2 / 3.0).abs() < 0.002, "measured {b}");
    assert_eq!(findings.iter().filter(|f| f.code == "overload").count(), 1);
}

#[test]
fn writes_caches_effects_and_unused_parts_are_found() {
    let text = r#"
[simulation]
seed = 1
duration = "1s"
[services.api.endpoints.buy]
steps = [{ call = "payments/charge", policy = "cached" }, { call = "payments/charge2", policy = "retrying" }]
[services.payments.endpoints.charge]
steps = [{ effect = "charge" }]
[services.payments.endpoints.charge2]
steps = [{ effect = "charge2" }]
[services.payments.endpoints.refund]
steps = [{ work = "1ms" }]
[services.payments.endpoints.unused]
steps = [{ work = "1ms" }]
[services.orphan.endpoints.get]
steps = [{ work = "1ms" }]
[policies.cached]
cache = { ttl = "1m" }
[policies.retrying.retry]
max_attempts = 3
[policies.forgotten]
timeout = "1s"
[policies.tight]
timeout = "1s"
deadline = "1s"
retry = { max_attempts = 3 }
[services.api.endpoints.sell]
steps = [{ call = "payments/refund", policy = "tight" }, { publish = "rabbit/jobs" }, { publish = "rabbit/sink" }, { publish = "rabbit/captures" }]
[brokers.rabbit]
[brokers.rabbit.queues.nobody]
[brokers.rabbit.queues.jobs]
[brokers.rabbit.queues.sink]
[consumers.worker]
queue = "rabbit/jobs"
steps = [{ effect = "job_done" }]
[services.payments.endpoints.capture]
idempotency = "24h"
steps = [{ fail = "unavailable", p = 0.1 }]
[consumers.capturer]
queue = "rabbit/captures"
dedupe = { by = "message" }
steps = [{ call = "payments/capture" }]
[brokers.rabbit.queues.captures]
[workloads.seller]
target = "api/sell"
rate = 1
[workloads.w]
target = "api/buy"
rate = 1
keys = 10
"#;
    let sc = scenario::from_source("w.toml", "w", text, &[]).unwrap();
    let findings = lint::lint(&sc.spec, text);
    let codes: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| (f.code, &text[f.span.clone()]))
        .collect();
    for expected in [
        ("cached-write", "\"payments/charge\""),
        ("retried-effect", "\"payments/charge2\""),
        ("unreachable-service", "orphan"),
        ("unused-endpoint", "unused"),
        ("unused-policy", "forgotten"),
        ("unused-queue", "nobody"),
        ("retry-outside-deadline", "tight"),
        ("redelivered-effect", "worker"),
        ("queue-grows-forever", "sink"),
        ("replayed-failure", "\"payments/capture\""),
    ] {
        assert!(codes.contains(&expected), "{expected:?} not in {codes:?}");
    }
    let rendered = lint::render("w.toml", text, &findings);
    assert!(rendered.contains("warning[cached-write]"), "{rendered}");
    assert!(rendered.contains("--> w.toml:6:"), "{rendered}");
    assert!(rendered.contains("= help: "), "{rendered}");
}

#[test]
fn every_lint_code_is_documented() {
    let doc = std::fs::read_to_string(root().join("docs/lint.md")).unwrap();
    for code in lint::CODES {
        assert!(
            doc.contains(&format!("`{code}`")),
            "docs/lint.md lacks {code}"
        );
    }
}

fn meshsim() -> Command {
    Command::cargo_bin("meshsim").unwrap()
}

#[test]
fn lint_exits_1_with_deny_warnings_and_validate_shows_warnings() {
    meshsim()
        .args(["lint", "retry_storm"])
        .assert()
        .success()
        .stdout(contains("warning[retry-amplification]"))
        .stdout(contains("4 warnings"));
    meshsim()
        .args(["lint", "retry_storm", "--deny", "warnings"])
        .assert()
        .code(1);
    meshsim()
        .args(["lint", "retry_storm_budget", "--deny", "warnings"])
        .assert()
        .success()
        .stdout(contains("no findings"));
    meshsim()
        .args(["validate", "cascading_failure"])
        .assert()
        .success()
        .stderr(contains("warning[unbounded-wait]"))
        .stdout(contains("2 warnings"));
}

#[test]
fn show_new_and_suggestions() {
    let chain = std::fs::read_to_string(root().join("scenarios/chain_165ms.toml")).unwrap();
    meshsim()
        .args(["show", "chain_165ms"])
        .assert()
        .success()
        .stdout(chain);
    meshsim()
        .args(["show", "chian_165ms"])
        .assert()
        .code(2)
        .stderr(contains("did you mean `chain_165ms`?"));
    meshsim()
        .args(["run", "retry_strom"])
        .assert()
        .code(2)
        .stderr(contains("did you mean `retry_storm`?"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.toml");
    meshsim()
        .args(["new", "--template", "queue"])
        .arg(&file)
        .assert()
        .success();
    meshsim().arg("validate").arg(&file).assert().success();
    // Never overwrites.
    meshsim().args(["new"]).arg(&file).assert().code(2);
}

#[test]
fn exercise_check_exit_codes() {
    let dir = root().join("exercises/01-chain-arithmetic");
    meshsim()
        .args(["exercise", "check"])
        .arg(&dir)
        .arg(dir.join("solution.toml"))
        .assert()
        .success()
        .stdout(contains("PASS"))
        .stdout(contains("passed: all 3 checks hold"))
        .stdout(contains("lint: 1 warning"));
    meshsim()
        .args(["exercise", "check"])
        .arg(&dir)
        .arg(dir.join("start.toml"))
        .assert()
        .code(1)
        .stdout(contains(
            "FAIL  every request takes exactly what the arithmetic says",
        ))
        .stdout(contains("measured 420"))
        .stdout(contains("hint: "));
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "[simulation]\nseed = \"x\"\n").unwrap();
    meshsim()
        .args(["exercise", "check"])
        .arg(&dir)
        .arg(bad.path())
        .assert()
        .code(2);
}
