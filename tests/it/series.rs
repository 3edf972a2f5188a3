//! The time series: the default bucket, rows that stream to the CSV as buckets close,
//! and the bound on its rows.

use meshsim::engine::SimDuration;
use std::path::Path;

fn bundled(name: &str) -> String {
    let label = format!("scenarios/{name}.toml");
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(label)).unwrap()
}

fn bucket_of(text: &str, set: &[&str]) -> SimDuration {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    meshsim::scenario::from_source("t.toml", "t", text, &set)
        .unwrap()
        .spec
        .bucket
}

#[test]
fn the_default_bucket_follows_the_runs_length() {
    let mm1 = bundled("mm1").replace("bucket = \"1h\"", "");
    // 10^6 customers at 0.9/s end near 1.11 x 10^6 s: 1000 rows need 1111 s, the next
    // 1-2-5 value is 2000 s (556 rows).
    let s = SimDuration::from_secs;
    assert_eq!(bucket_of(&mm1, &["simulation.requests=1000000"]), s(2000));
    // A duration wins when it ends first; 1 h / 1000 = 3.6 s -> 5 s.
    assert_eq!(
        bucket_of(
            &mm1,
            &["simulation.requests=1000000", "simulation.duration=\"1h\""]
        ),
        s(5)
    );
    // Short runs keep 1 s buckets.
    assert_eq!(bucket_of(&mm1, &["simulation.requests=100"]), s(1));
    // A schedule: 0 requests/s for 10000 s, then 10/s: 10^5 requests end at 20000 s.
    let scheduled = mm1.replace(
        "rate = 0.9 ",
        "schedule = [{ at = \"0s\", rate = 0 }, { at = \"10000s\", rate = 10 }]\n#",
    );
    assert_eq!(
        bucket_of(&scheduled, &["simulation.requests=100000"]),
        s(20)
    );
    // Written, it is kept.
    assert_eq!(bucket_of(&bundled("mm1"), &[]), s(3600));
}

fn scenario(name: &str, set: &[&str], text: Option<String>) -> meshsim::scenario::Scenario {
    let label = format!("scenarios/{name}.toml");
    let text = text.unwrap_or_else(|| bundled(name));
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    meshsim::scenario::from_source(&label, name, &text, &set).unwrap()
}

/// The bytes `meshsim run` streams to `timeseries.csv` as buckets close.
fn streamed(sc: meshsim::scenario::Scenario) -> (Vec<u8>, meshsim::FinishedRun) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ts.csv");
    let file = std::fs::File::create(&path).unwrap();
    let flows = dir.path().join(".ts.flows");
    let stream = meshsim::report::csv::TimeseriesStream::new(file, &flows);
    let mut out = meshsim::simulate_streaming(sc, &mut |_| Ok(()), Some(Box::new(stream))).unwrap();
    out.metrics.series.take_sink().unwrap().finish().unwrap();
    assert!(!flows.exists(), "the flows' scratch file is removed");
    assert!(
        out.metrics.series.rows.is_empty(),
        "streamed rows are not kept"
    );
    (std::fs::read(&path).unwrap(), out)
}

#[test]
fn streamed_rows_are_the_bytes_of_rows_kept_in_memory() {
    // A broker scenario (flow rows appended after the series' rows) and one with
    // breakers and errors of several classes.
    for name in [
        "payment_worker_rabbitmq",
        "retry_storm",
        "kafka_consumer_group",
    ] {
        let kept = meshsim::simulate(scenario(name, &[], None)).unwrap();
        let in_memory =
            meshsim::report::csv::timeseries(&kept.metrics.series, &kept.metrics.consistency);
        let (bytes, out) = streamed(scenario(name, &[], None));
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            String::from_utf8(in_memory).unwrap(),
            "{name}"
        );
        assert_eq!(out.report.to_json(), kept.report.to_json(), "{name}");
    }
}

#[test]
fn errors_are_counted_by_class_per_workload() {
    // retry_storm: the overloaded service answers unavailable, and the client times
    // out; every workload row's classes add up to its errors.
    let out = meshsim::simulate(scenario("retry_storm", &[], None)).unwrap();
    let csv = meshsim::report::csv::timeseries(&out.metrics.series, &out.metrics.consistency);
    let mut r = csv::Reader::from_reader(csv.as_slice());
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let classes = ["timeout", "unavailable", "rejected", "internal", "other"]
        .map(|c| col(&format!("errors_{c}")));
    let mut totals = [0u64; 5];
    for rec in r.records() {
        let rec = rec.unwrap();
        let n = |i: usize| rec[i].parse::<u64>().unwrap();
        if &rec[col("kind")] != "workload" {
            assert!(classes.iter().all(|&i| rec[i].is_empty()));
            continue;
        }
        let by: Vec<u64> = classes.iter().map(|&i| n(i)).collect();
        assert_eq!(by.iter().sum::<u64>(), n(col("errors")));
        for (t, b) in totals.iter_mut().zip(&by) {
            *t += b;
        }
    }
    // The run's own totals by status, from report.json's counts.
    let w = &out.metrics.workloads[0];
    use meshsim::status::Status;
    assert_eq!(totals[0], w.errors.get(Status::DeadlineExceeded));
    assert_eq!(totals[1], w.errors.get(Status::Unavailable));
    assert!(totals[0] > 0 && totals[1] > 0, "{totals:?}");
}

#[test]
fn a_long_broker_outage_keeps_the_default_rows_per_flow() {
    // The consumers crash for 3000 h, under a trickle of requests (3000 would take
    // 4167 h at 0.0002/s): before, 1 s buckets wrote 10.8 million depth rows per queue
    // (585 MB). The default bucket is now 3000 h / 1000 = 10800 s -> 20000 s.
    let text = bundled("payment_worker_rabbitmq")
        .replace(
            "from = \"20s\"\nuntil = \"30s\"",
            "from = \"1s\"\nuntil = \"3000h\"",
        )
        .replace("rate = 50 ", "rate = 0.0002 ");
    let sc = scenario(
        "payment_worker_rabbitmq",
        &["simulation.duration=\"3000h\""],
        Some(text),
    );
    assert_eq!(sc.spec.bucket, SimDuration::from_secs(20_000));
    let (bytes, _) = streamed(sc);
    let text = String::from_utf8(bytes).unwrap();
    let queue_rows = text.lines().filter(|l| l.contains(",queue,")).count();
    let queues = text
        .lines()
        .filter(|l| l.starts_with("0,20000,queue,"))
        .count();
    assert!(queues >= 1);
    assert_eq!(queue_rows, queues * 540, "3000 h in 20000 s buckets");
}

#[test]
fn a_run_that_fails_while_streaming_leaves_nothing_behind() {
    use assert_cmd::Command;
    let dir = tempfile::tempdir().unwrap();
    let file = format!("{}/scenarios/retry_storm.toml", env!("CARGO_MANIFEST_DIR"));
    let run = |out: &Path, set: &[&str]| {
        let mut c = Command::cargo_bin("meshsim").unwrap();
        c.arg("run").arg(&file).arg("--out").arg(out).arg("-q");
        for s in set {
            c.args(["--set", s]);
        }
        c.assert()
    };
    // A fresh folder: the streamed temporary and the folder made for it are removed.
    let fresh = dir.path().join("new").join("out");
    run(&fresh, &["simulation.max_events=5000"]).code(2);
    assert!(!dir.path().join("new").exists());
    // An existing set stays as it was, with no hidden file left.
    let out = dir.path().join("set");
    run(&out, &[]).success();
    let before = std::fs::read(out.join("timeseries.csv")).unwrap();
    run(&out, &["simulation.max_events=5000"]).code(2);
    assert_eq!(std::fs::read(out.join("timeseries.csv")).unwrap(), before);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["plots", "report.html", "report.json", "timeseries.csv"]
    );
}

#[test]
fn a_run_stopped_by_its_progress_callback_leaves_no_temporaries() {
    // What `meshsim run` does on Ctrl-C: the callback's error ends the run, and
    // dropping the staged file removes its temporary, its scratch and its folders.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("new").join("out");
    let (staged, file) = meshsim::report::Staged::create(&out, "timeseries.csv").unwrap();
    let stream = meshsim::report::csv::TimeseriesStream::new(file, &staged.scratch("flows"));
    let scenario =
        meshsim::scenario::from_source("t.toml", "t", &bundled("retry_storm"), &[]).unwrap();
    let mut calls = 0;
    let outcome = meshsim::simulate_streaming(
        scenario,
        &mut |p| {
            calls += 1;
            Err(meshsim::engine::RunError::Interrupted {
                at: p.now,
                events: p.events,
            })
        },
        Some(Box::new(stream)),
    );
    let Err(meshsim::engine::RunError::Interrupted { events, .. }) = outcome else {
        panic!("the run was not stopped");
    };
    assert_eq!((calls, events), (1, meshsim::model::PROGRESS_EVERY));
    assert!(out.exists(), "the temporary is there while the guard lives");
    drop(staged);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[cfg(unix)]
#[test]
fn an_interrupted_run_exits_130_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args([
            "run",
            "mm1",
            "--set",
            "simulation.requests=1000000000",
            "-q",
            "--out",
        ])
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The temporary appears once the handler is installed (the run installs it first);
    // the run of 10^9 requests cannot end before the signal.
    // Bounded: a run that failed before staging must fail the test, not hang it.
    let mut waited = 0;
    while !std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some()) {
        assert!(waited < 6000, "the run never staged its temporary");
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let finished = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert_eq!(finished.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("the run was interrupted at simulated time"),
        "{stderr}"
    );
    assert!(
        !out.exists(),
        "{:?}",
        std::fs::read_dir(&out).map(|d| d.count())
    );
}

#[test]
fn set_creates_a_missing_report_table_and_still_refuses_unknown_keys() {
    let text = bundled("cache_ttl");
    assert!(!text.contains("[report]"));
    assert_eq!(
        bucket_of(&text, &["report.bucket=1h"]),
        SimDuration::from_secs(3600)
    );
    let set = |s: &str| {
        meshsim::scenario::from_source("t.toml", "t", &text, &[s.to_owned()])
            .err()
            .expect("refused")
            .to_string()
    };
    // The table exists now, but the key under it is still checked.
    let typo = set("report.bukcet=1h");
    assert!(
        typo.contains("bukcet") && typo.contains("t.toml:"),
        "{typo}"
    );
    let typo = set("repot.bucket=1h");
    assert!(typo.contains("the top level has no `repot`"), "{typo}");
}
