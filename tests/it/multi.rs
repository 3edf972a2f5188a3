//! Many runs: `run --seeds`, `compare`, `sweep`/`merge`, `check`, and what `explore`
//! leaves behind.

use std::path::Path;
use std::process::{Command, Output};

fn meshsim(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn scenario(name: &str) -> String {
    format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"))
}

fn json(path: impl AsRef<Path>) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path.as_ref()).unwrap()).unwrap()
}

fn ok(o: &Output) -> String {
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{out}");
    out
}

const SHORT: [&str; 4] = [
    "--set",
    "simulation.duration=60s",
    "--set",
    "simulation.warmup=5s",
];

#[test]
fn seeds_aggregate_is_the_mean_of_the_seed_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "run",
        "call_chain_800ms",
        "--seeds",
        "3..5",
        "-q",
        "--out",
        "agg",
    ];
    args.extend(SHORT);
    ok(&meshsim(dir.path(), &args));
    let agg = json(dir.path().join("agg/report.json"));
    assert_eq!(agg["schema"], "meshsim.seeds/1");
    assert_eq!(agg["seeds"], serde_json::json!([3, 4, 5]));
    let seeds: Vec<serde_json::Value> = (3..=5)
        .map(|s| json(dir.path().join(format!("agg/seeds/{s}/report.json"))))
        .collect();
    for s in &seeds[1..] {
        assert_ne!(
            s["workloads"]["shoppers"]["latency_ms"]["p50"],
            seeds[0]["workloads"]["shoppers"]["latency_ms"]["p50"]
        );
    }
    let at =
        |v: &serde_json::Value, path: &[&str]| path.iter().fold(v.clone(), |v, k| v[*k].clone());
    for path in [
        &["workloads", "shoppers", "latency_ms", "p50"][..],
        &["workloads", "shoppers", "latency_ms", "p99"],
        &["workloads", "shoppers", "requests"],
        &["endpoints", "pricing/quote", "utilization"],
        &["edges", "order->inventory/reserve", "calls"],
    ] {
        let xs: Vec<f64> = seeds
            .iter()
            .map(|s| at(s, path).as_f64().unwrap())
            .collect();
        let mean = xs.iter().sum::<f64>() / 3.0;
        let a = at(&agg, path);
        assert_eq!(a["mean"].as_f64().unwrap(), mean, "{path:?}");
        assert_eq!(a["seeds"], 3);
        // The 95% interval by Student's t with 2 degrees of freedom.
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        let half = 4.302_652_730 * sd / 3f64.sqrt();
        let hi = a["ci95"][1].as_f64().unwrap();
        assert!(
            (hi - (mean + half)).abs() < 1e-6 * mean.abs().max(1.0),
            "{path:?}: {hi} vs {}",
            mean + half
        );
    }
}

#[test]
fn each_seeds_files_are_the_files_of_its_own_run() {
    // A broker scenario: its queue rows are appended after the series' rows, which the
    // stream keeps aside until the run ends.
    let dir = tempfile::tempdir().unwrap();
    // Shortened, the scenario misses some of its expectations (exit 1): the files are
    // written all the same.
    let set = ["--set", "simulation.requests=2000"];
    let written = |o: Output| assert!(matches!(o.status.code(), Some(0 | 1)), "{o:?}");
    let mut args = vec!["run", "payment_worker_rabbitmq", "--seeds", "2..3", "-q"];
    args.extend(["--out", "many"]);
    args.extend(set);
    written(meshsim(dir.path(), &args));
    for seed in ["2", "3"] {
        let mut args = vec!["run", "payment_worker_rabbitmq", "--seed", seed, "-q"];
        args.extend(["--out", seed]);
        args.extend(set);
        written(meshsim(dir.path(), &args));
        for f in ["report.json", "timeseries.csv"] {
            let one = std::fs::read(dir.path().join(seed).join(f)).unwrap();
            let many = std::fs::read(dir.path().join("many/seeds").join(seed).join(f)).unwrap();
            assert!(one.len() > 1000, "{f}");
            assert!(one == many, "seed {seed}: {f} differs");
        }
    }
    // Nothing hidden is left behind (the staged temporaries were moved in).
    let names: Vec<String> = std::fs::read_dir(dir.path().join("many/seeds/2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn comparing_a_scenario_with_itself_is_zero_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "compare",
        "call_chain_800ms",
        "--seeds",
        "3",
        "--out",
        "same",
    ];
    args.extend(
        SHORT
            .iter()
            .enumerate()
            .map(|(i, s)| if i % 2 == 0 { "--set-a" } else { s }),
    );
    args.extend(
        SHORT
            .iter()
            .enumerate()
            .map(|(i, s)| if i % 2 == 0 { "--set-b" } else { s }),
    );
    let out = ok(&meshsim(dir.path(), &args));
    assert!(out.contains("no significant difference"), "{out}");
    let c = json(dir.path().join("same/compare.json"));
    let metrics = c["metrics"].as_object().unwrap();
    assert!(metrics.len() > 100, "{}", metrics.len());
    for (path, m) in metrics {
        assert_eq!(m["delta"], 0.0, "{path}");
        assert_eq!(m["ci95"], serde_json::json!([0.0, 0.0]), "{path}");
        assert_eq!(m["significant"], false, "{path}");
        assert_eq!(m["a"], m["b"], "{path}");
    }
}

#[test]
fn common_random_numbers_narrow_the_interval_of_a_real_difference() {
    // The sequential chain against the fanned-out one, 10 seeds, the full 10 minutes.
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str], out: &str| {
        let mut args = vec![
            "compare",
            "call_chain_800ms",
            "call_chain_parallel",
            "--seeds",
            "10",
            "-q",
            "--out",
            out,
        ];
        args.extend(extra);
        ok(&meshsim(dir.path(), &args));
        json(dir.path().join(out).join("compare.json"))["metrics"].clone()
    };
    let crn = run(&[], "crn");
    let apart = run(&["--independent"], "apart");
    let p50 = "workloads.shoppers.latency_ms.p50";
    let width = |m: &serde_json::Value| {
        let ci = &m[p50]["ci95"];
        ci[1].as_f64().unwrap() - ci[0].as_f64().unwrap()
    };
    for m in [&crn, &apart] {
        assert_eq!(m[p50]["significant"], true);
        let d = m[p50]["delta"].as_f64().unwrap();
        assert!((-380.0..-360.0).contains(&d), "p50 falls by ~370 ms: {d}");
    }
    // Measured: 2.83 ms with common random numbers, 3.54 ms without.
    assert!(
        width(&crn) < 0.85 * width(&apart),
        "{} vs {}",
        width(&crn),
        width(&apart)
    );
    // The same seeds give both designs the same arrivals: not one request more or less.
    let requests = "workloads.shoppers.requests";
    assert_eq!(crn[requests]["delta"], 0.0);
    assert_eq!(crn[requests]["ci95"], serde_json::json!([0.0, 0.0]));
    assert_ne!(apart[requests]["delta"], 0.0);
    // The two designs overlaid: both workloads' CDFs on one chart, A's p50 about 370 ms
    // above B's (seed 1 of each).
    let svg = std::fs::read_to_string(dir.path().join("crn/latency_cdf.svg")).unwrap();
    roxmltree::Document::parse(&svg).expect("the overlay is well-formed SVG");
    let p50_of = |side: &str| -> f64 {
        let key = format!("{side}: shoppers: p50 ");
        let at = svg
            .find(&key)
            .unwrap_or_else(|| panic!("{side}'s curve is in the legend"));
        let rest = &svg[at + key.len()..];
        rest.split(" ms").next().unwrap().trim().parse().unwrap()
    };
    let (a, b) = (p50_of("A"), p50_of("B"));
    assert!(
        (330.0..410.0).contains(&(a - b)),
        "A p50 {a} ms, B p50 {b} ms"
    );
}

#[test]
fn sweep_bytes_do_not_depend_on_threads_or_shards() {
    let dir = tempfile::tempdir().unwrap();
    let grid = |extra: &[&str]| {
        let mut args = vec![
            "sweep",
            "call_chain_800ms",
            "--param",
            "workloads.shoppers.rate=30,40",
            "--param",
            "services.pricing.workers=8,32",
            "--seeds",
            "2",
            "-q",
        ];
        args.extend(SHORT);
        args.extend(extra);
        ok(&meshsim(dir.path(), &args));
    };
    grid(&["--threads", "1", "--out", "t1"]);
    grid(&["--threads", "2", "--out", "t2"]);
    for i in 1..=3 {
        grid(&["--shard", &format!("{i}/3"), "--out", &format!("s{i}")]);
    }
    ok(&meshsim(
        dir.path(),
        &["merge", "s3", "s1", "s2", "--out", "merged"],
    ));
    let read = |d: &str, f: &str| std::fs::read(dir.path().join(d).join(f)).unwrap();
    for f in ["sweep.csv", "points.csv", "runs.json"] {
        assert_eq!(read("t1", f), read("t2", f), "{f}: 1 vs 2 threads");
        assert_eq!(read("t1", f), read("merged", f), "{f}: merged shards");
    }
    let csv = String::from_utf8(read("t1", "sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 2);
    assert!(csv.starts_with("point,seed,workloads.shoppers.rate,services.pricing.workers,workloads.shoppers.latency_ms.p50,"));
    // A shard holds only its slice, and has no points.csv (means of a slice mislead).
    assert_eq!(
        String::from_utf8(read("s1", "sweep.csv"))
            .unwrap()
            .lines()
            .count(),
        1 + 3
    );
    assert!(!dir.path().join("s1/points.csv").exists());
    // Merging needs every shard exactly once.
    let o = meshsim(dir.path(), &["merge", "s1", "s2", "--out", "partial"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("shard 3/3 is missing"));
}

#[test]
fn sweep_pooled_latency_comes_from_merged_histograms() {
    // Constant work: every request of every seed takes 165 ms, so the pooled
    // quantiles are exact, and the point's p50 mean equals them.
    let dir = tempfile::tempdir().unwrap();
    ok(&meshsim(
        dir.path(),
        &[
            "sweep",
            &scenario("chain_165ms"),
            "--param",
            "workloads.clients.rate=5,10",
            "--seeds",
            "2",
            "-q",
            "--out",
            "w",
        ],
    ));
    let points = std::fs::read_to_string(dir.path().join("w/points.csv")).unwrap();
    let mut lines = points.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[col("workloads.clients.latency_ms.pooled_p50")], "165");
        assert_eq!(cells[col("workloads.clients.latency_ms.pooled_p99")], "165");
        assert_eq!(cells[col("seeds")], "2");
    }
}

fn with_expectations(dir: &Path) -> String {
    let text = std::fs::read_to_string(scenario("chain_165ms")).unwrap()
        + "\n[[expect]]\ncheck = \"workloads.clients.latency_ms.p99 < 200\"\n\n[[expect]]\ncheck = \"workloads.clients.latency_ms.p50 < 100\"\n\n[[expect]]\ncheck = \"workloads.clients.error_rate == 0\"\n";
    let path = dir.join("gated.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn check_writes_junit_that_parses_with_the_right_counts() {
    let dir = tempfile::tempdir().unwrap();
    let gated = with_expectations(dir.path());
    let o = meshsim(
        dir.path(),
        &[
            "check",
            &gated,
            &scenario("chain_165ms"),
            "--junit",
            "junit.xml",
            "--summary",
            "summary.md",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(
        (root.attribute("tests"), root.attribute("failures")),
        (Some("3"), Some("1"))
    );
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 2);
    assert_eq!(suites[0].attribute("name"), Some("chain_165ms"));
    assert_eq!(
        (
            suites[0].attribute("tests"),
            suites[0].attribute("failures")
        ),
        (Some("3"), Some("1"))
    );
    assert_eq!(
        (
            suites[1].attribute("tests"),
            suites[1].attribute("failures")
        ),
        (Some("0"), Some("0"))
    );
    let failed: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .collect();
    assert_eq!(failed.len(), 1);
    let case = failed[0].parent().unwrap();
    assert_eq!(
        case.attribute("name"),
        Some("workloads.clients.latency_ms.p50 < 100")
    );
    let msg = failed[0].attribute("message").unwrap();
    assert!(msg.contains("value 165") && msg.contains("seed 1"), "{msg}");
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.starts_with("## meshsim check: 1 failed"), "{md}");
    assert!(
        md.contains("`workloads.clients.latency_ms.p50 < 100`: value 165"),
        "{md}"
    );
}

#[test]
fn baseline_fails_on_a_regression_and_passes_inside_the_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let chain = scenario("chain_165ms");
    ok(&meshsim(
        dir.path(),
        &["check", &chain, "--write-baseline", "base"],
    ));
    let file = dir.path().join("base/chain_165ms/report.json");
    let saved = json(&file);
    assert_eq!(saved["workloads"]["clients"]["latency_ms"]["p99"], 165.0);
    let set_p99 = |p99: f64| {
        let mut v = saved.clone();
        v["workloads"]["clients"]["latency_ms"]["p99"] = p99.into();
        std::fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    // Today's 165 ms is 3% above a saved 160 ms: inside 5%.
    set_p99(160.0);
    ok(&meshsim(
        dir.path(),
        &["check", &chain, "--baseline", "base", "--tolerance", "5%"],
    ));
    // 10% above a saved 150 ms: a regression (as if the design got slower).
    set_p99(150.0);
    let o = meshsim(
        dir.path(),
        &["check", &chain, "--baseline", "base", "--junit", "j.xml"],
    );
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("workloads.clients.latency_ms.p99 regressed: 165.0000 against the baseline's 150.0000 (+10.0%)"), "{out}");
    // ... and a tolerance of 15% lets it pass.
    ok(&meshsim(
        dir.path(),
        &["check", &chain, "--baseline", "base", "--tolerance", "15%"],
    ));
}

#[test]
fn explore_replay_fails_and_bad_explore_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("explore_payments"))
        .unwrap()
        .replace(
            "exactly_once = [\"charge\"]",
            "exactly_once = [\"charge_plain\"]",
        );
    std::fs::write(dir.path().join("plain.toml"), &text).unwrap();
    let o = meshsim(
        dir.path(),
        &["explore", "plain.toml", "--seeds", "3", "--out", "found"],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "replay (fails until fixed): meshsim run found/explore_payments-seed-1.toml --seed 1"
        ),
        "{out}"
    );
    let replay =
        std::fs::read_to_string(dir.path().join("found/explore_payments-seed-1.toml")).unwrap();
    assert!(
        replay.contains("[[expect]]\ncheck = \"consistency.effects.charge_plain.duplicated == 0\""),
        "{replay}"
    );
    let o = meshsim(
        dir.path(),
        &[
            "run",
            "found/explore_payments-seed-1.toml",
            "--seed",
            "1",
            "-q",
            "--out",
            "r",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "the replay fails as the exploration did"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("FAIL consistency.effects.charge_plain.duplicated == 0")
    );

    // An effect that does not exist is a typo: exit 2, located.
    let nope = text.replace(
        "exactly_once = [\"charge_plain\"]",
        "exactly_once = [\"nope\"]",
    );
    std::fs::write(dir.path().join("nope.toml"), nope).unwrap();
    let o = meshsim(
        dir.path(),
        &["explore", "nope.toml", "--seeds", "2", "--out", "x"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nope.toml:")
            && err.contains("no effect named `nope`")
            && err.contains("charge_plain"),
        "{err}"
    );
    // No seeds is not a pass.
    let o = meshsim(dir.path(), &["explore", "plain.toml", "--seeds", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("every run met"));
    // Seeds past 2^63 - 1 are refused by what the user wrote.
    let o = meshsim(
        dir.path(),
        &[
            "explore",
            "plain.toml",
            "--first-seed",
            "9223372036854775807",
            "--seeds",
            "2",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--first-seed 9223372036854775807 with 2 seeds")
            && !err.contains("9223372036854775808"),
        "{err}"
    );
    // The last seed itself is fine.
    let o = meshsim(
        dir.path(),
        &[
            "explore",
            &scenario("chain_165ms"),
            "--first-seed",
            "9223372036854775807",
            "--seeds",
            "1",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn explore_without_templates_is_a_seed_search() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&meshsim(
        dir.path(),
        &["explore", &scenario("chain_165ms"), "--seeds", "4"],
    ));
    assert!(
        out.contains("4 seeds from 1 (no fault templates: every seed ran as written)"),
        "{out}"
    );
    // With an expectation that fails at every seed, the first seed is reported.
    let gated = with_expectations(dir.path());
    let o = meshsim(
        dir.path(),
        &[
            "explore",
            &gated,
            "--seeds",
            "4",
            "--threads",
            "2",
            "--out",
            "e",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("seed 1 fails with 0 drawn faults"), "{out}");
}

#[test]
fn reproduce_line_is_shell_quoted_and_variants_get_their_own_folders() {
    let dir = tempfile::tempdir().unwrap();
    let chain = scenario("chain_165ms");
    ok(&meshsim(dir.path(), &["run", &chain, "-q"]));
    let o = meshsim(
        dir.path(),
        &[
            "run",
            &chain,
            "--set",
            "services.c.endpoints.get.steps.0.work={ dist = \"constant\", value = \"20ms\" }",
        ],
    );
    let out = ok(&o);
    assert!(
        out.contains("--set 'services.c.endpoints.get.steps.0.work={ dist = \"constant\", value = \"20ms\" }'"),
        "{out}"
    );
    ok(&meshsim(dir.path(), &["run", &chain, "-q", "--seed", "5"]));
    let mut folders: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(folders.len(), 3, "{folders:?}");
    assert_eq!(folders[0], "chain_165ms");
    assert!(
        folders[1..]
            .iter()
            .all(|f| f.starts_with("chain_165ms-") && f.len() == "chain_165ms-".len() + 8),
        "{folders:?}"
    );
    // The quoted line pastes back as the same run.
    let seed5 = json(dir.path().join("out").join(&folders[1]).join("report.json"));
    let seed5b = json(dir.path().join("out").join(&folders[2]).join("report.json"));
    assert!(seed5["seed"] == 5 || seed5b["seed"] == 5);
}

#[test]
fn expectations_over_seeds_use_the_statistic_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(scenario("call_chain_800ms")).unwrap();
    let write = |name: &str, expect: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{base}\n[[expect]]\n{expect}\n")).unwrap();
        path.display().to_string()
    };
    // A typo in `over` is located.
    let bad = write(
        "bad.toml",
        "check = \"workloads.shoppers.error_rate == 0\"\nover = \"every_seed\"",
    );
    let o = meshsim(dir.path(), &["run", &bad, "--seeds", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.toml:") && err.contains("\"all_seeds\""),
        "{err}"
    );
    // p50 of 60 s runs: seeds 1..4 scatter around 790 ms; find the extremes, then
    // put the bound between the mean and the worst seed.
    let mut args = vec![
        "run",
        "call_chain_800ms",
        "--seeds",
        "4",
        "-q",
        "--out",
        "plain",
    ];
    args.extend(SHORT);
    ok(&meshsim(dir.path(), &args));
    let agg = json(dir.path().join("plain/report.json"));
    let p50 = &agg["workloads"]["shoppers"]["latency_ms"]["p50"];
    let mean = p50["mean"].as_f64().unwrap();
    let worst = (1..=4)
        .map(|s| json(dir.path().join(format!("plain/seeds/{s}/report.json")))["workloads"]["shoppers"]["latency_ms"]["p50"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert!(worst > mean);
    let bound = (mean + worst) / 2.0;
    for (over, code) in [("mean", 0), ("all_seeds", 1), ("ci95", 1)] {
        let f = write(
            &format!("{over}.toml"),
            &format!("check = \"workloads.shoppers.latency_ms.p50 < {bound}\"\nover = \"{over}\""),
        );
        let mut args = vec!["run", &f, "--seeds", "4", "-q", "--out"];
        let out = format!("o-{over}");
        args.push(&out);
        args.extend(SHORT);
        let o = meshsim(dir.path(), &args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "over = {over}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let e = &json(dir.path().join(&out).join("report.json"))["expectations"][0];
        assert_eq!(e["over"], over);
        assert_eq!(e["passed"], code == 0);
    }
}

#[test]
fn explore_shards_merge_to_the_unsharded_exploration() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("explore_payments"))
        .unwrap()
        .replace(
            "exactly_once = [\"charge\"]",
            "exactly_once = [\"charge_plain\"]",
        );
    std::fs::write(dir.path().join("plain.toml"), &text).unwrap();
    let explore = |extra: &[&str]| {
        let mut args = vec!["explore", "plain.toml", "--seeds", "6", "--first-seed", "3"];
        args.extend(extra);
        meshsim(dir.path(), &args).status.code()
    };
    assert_eq!(explore(&["--out", "whole"]), Some(1));
    for i in 1..=3 {
        assert_eq!(
            explore(&["--shard", &format!("{i}/3"), "--out", &format!("s{i}")]),
            Some(1)
        );
    }
    let found = json(dir.path().join("s2/explore.json"));
    assert_eq!(
        (found["failing_seed"].as_u64(), found["shard"].clone()),
        (Some(4), serde_json::json!([2, 3]))
    );
    let o = meshsim(dir.path(), &["merge", "s2", "s3", "s1", "--out", "merged"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for f in ["explore.json", "explore_payments-seed-3.toml"] {
        let read = |d: &str| std::fs::read(dir.path().join(d).join(f)).unwrap();
        assert_eq!(read("whole"), read("merged"), "{f}");
    }
    // A clean exploration merges to a clean one.
    let chain = scenario("chain_165ms");
    for (out, shard) in [("c", None), ("c1", Some("1/2")), ("c2", Some("2/2"))] {
        let mut args = vec!["explore", chain.as_str(), "--seeds", "4", "--out", out];
        if let Some(s) = shard {
            args.extend(["--shard", s]);
        }
        ok(&meshsim(dir.path(), &args));
    }
    ok(&meshsim(dir.path(), &["merge", "c1", "c2", "--out", "cm"]));
    assert_eq!(
        std::fs::read(dir.path().join("c/explore.json")).unwrap(),
        std::fs::read(dir.path().join("cm/explore.json")).unwrap()
    );
}
