//! The `meshsim` binary: commands, outputs on disk, exit codes.

use assert_cmd::Command;
use predicates::str::contains;

fn meshsim() -> Command {
    Command::cargo_bin("meshsim").unwrap()
}

fn scenario(name: &str) -> String {
    format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn run_writes_the_report_and_the_time_series() {
    let dir = tempfile::tempdir().unwrap();
    meshsim()
        .args(["run", &scenario("chain_165ms.toml"), "--out"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(contains("clients"))
        .stdout(contains("  165  "))
        .stdout(contains("reproduce: meshsim run"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["schema"], "meshsim.report/1");
    assert_eq!(report["scenario"], "chain_165ms");
    assert_eq!(report["seed"], 1);
    for key in ["duration_s", "events", "workloads", "endpoints", "edges"] {
        assert!(report.get(key).is_some(), "report.json lacks {key}");
    }
    let csv = std::fs::read_to_string(dir.path().join("timeseries.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "t_start_s,t_end_s,kind,name,completed,errors,throughput_rps,p50_ms,p99_ms,queue_length_mean,attempts,breaker,errors_timeout,errors_unavailable,errors_rejected,errors_internal,errors_other"
    );
    // 60 one-second buckets x (1 workload + 3 endpoints + 3 edges).
    assert_eq!(lines.count(), 420);
    assert!(
        csv.contains("\n1,2,edge,b->c/get,10,0,10,,,,10,,,,,,\n"),
        "{csv}"
    );
    assert!(
        csv.contains("\n1,2,workload,clients,10,0,10,165,165,,,,0,0,0,0,0\n"),
        "{}",
        &csv[..400]
    );
}

#[test]
fn seed_and_set_change_the_run() {
    let dir = tempfile::tempdir().unwrap();
    meshsim()
        .args(["run", &scenario("chain_165ms.toml"), "-q", "--seed", "77"])
        .args([
            "--set",
            "services.c.endpoints.get.steps.0.work=200ms",
            "--out",
        ])
        .arg(dir.path())
        .assert()
        .success()
        .stdout("");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["seed"], 77);
    assert_eq!(report["workloads"]["clients"]["latency_ms"]["p50"], 315.0);
}

#[test]
fn list_shows_every_bundled_scenario_with_its_description() {
    let out = meshsim().arg("list").assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for name in [
        "mm1",
        "mmc",
        "chain_165ms",
        "call_chain_800ms",
        "call_chain_parallel",
        "fanout_partial",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && l.len() > name.len() + 10),
            "{name} missing:\n{text}"
        );
    }
}

#[test]
fn a_bundled_scenario_runs_by_name() {
    let dir = tempfile::tempdir().unwrap();
    meshsim()
        .args(["run", "chain_165ms", "-q", "--out"])
        .arg(dir.path())
        .assert()
        .success();
    assert!(dir.path().join("report.json").exists());
}

#[test]
fn a_bad_override_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    meshsim()
        .args([
            "run",
            &scenario("chain_165ms.toml"),
            "--set",
            "services.zz.workers=3",
            "--out",
        ])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(contains("`services` has no `zz` (it has: a, b, c)"));
    assert!(!dir.path().join("report.json").exists());
}

#[test]
fn a_runaway_scenario_exits_2_naming_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("loop.toml");
    std::fs::write(
        &file,
        "[simulation]\nduration = \"1s\"\nmax_events = 1000\n[services.s.endpoints.get]\n\
         steps = [{ work = \"0s\" }]\n[workloads.w]\ntarget = \"s/get\"\nusers = 2\n",
    )
    .unwrap();
    meshsim()
        .args(["run"])
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .code(2)
        .stderr(contains("event budget of 1000 events"));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn explore_passes_the_inbox_worker_and_shrinks_the_plain_workers_failure() {
    let dir = std::env::temp_dir().join(format!("meshsim-explore-{}", std::process::id()));
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args([
            "explore",
            "scenarios/explore_payments.toml",
            "--seeds",
            "10",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    // The same scenario, judged on the worker without a store: the first seed fails,
    // and no fault is needed to make it fail.
    let text = std::fs::read_to_string("scenarios/explore_payments.toml")
        .unwrap()
        .replace(
            "exactly_once = [\"charge\"]",
            "exactly_once = [\"charge_plain\"]",
        );
    let path = dir.join("plain.toml");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&path, text).unwrap();
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .arg("explore")
        .arg(&path)
        .args(["--seeds", "5", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.contains("seed 1 fails"), "{out}");
    assert!(out.contains("minimal fault schedule (0 faults)"), "{out}");
    assert!(
        out.contains("effect charge_plain not exactly once"),
        "{out}"
    );
    // The replay file reproduces the failure with `meshsim run`.
    let replay = dir.join("explore_payments-seed-1.toml");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .arg("run")
        .arg(&replay)
        .args(["--seed", "1", "-q", "--out"])
        .arg(dir.join("run"))
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(1),
        "the replay carries the failed invariant as an [[expect]]"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run/report.json")).unwrap()).unwrap();
    assert!(
        report["consistency"]["effects"]["charge_plain"]["duplicated"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(report["consistency"]["effects"]["charge"]["duplicated"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explore_regression_inbox_commits_when_its_delivery_was_taken_back() {
    // Seed 13 of explore_payments once charged twice: a broker outage took the
    // delivery back while the handler ran; its commit skipped the inbox store.
    let text = std::fs::read_to_string("scenarios/explore_payments.toml").unwrap()
        + "\n[[faults]]\nkind = \"broker_down\"\nbroker = \"rabbit\"\nfrom = \"37528302402ns\"\nuntil = \"37529426019ns\"\n";
    let dir = std::env::temp_dir().join(format!("meshsim-explore13-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("s.toml"), text).unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .arg("run")
        .arg(dir.join("s.toml"))
        .args(["--seed", "13", "-q", "--out"])
        .arg(dir.join("run"))
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run/report.json")).unwrap()).unwrap();
    assert_eq!(report["consistency"]["effects"]["charge"]["duplicated"], 0);
    assert_eq!(
        report["consistency"]["effects"]["charge"]["exactly_once"],
        1500
    );
    let _ = std::fs::remove_dir_all(&dir);
}
