//! Same scenario, same seed: the same report, byte for byte. And per-entity random
//! streams: what one entity draws does not depend on what else exists.

use super::support::{json, run};
use std::path::Path;

/// Every bundled scenario, with the long ones shortened so the suite stays quick.
fn bundled() -> Vec<(String, String, Vec<String>)> {
    let all = super::support::bundled_scenarios();
    assert!(all.len() >= 6, "the bundled scenarios are missing");
    all.into_iter()
        .map(|(name, text)| {
            let shorten = if text.contains("requests = 10_000_000") {
                vec!["simulation.requests=100000".to_owned()]
            } else {
                vec![]
            };
            (name, text, shorten)
        })
        .collect()
}

fn report_json(name: &str, text: &str, overrides: &[String]) -> String {
    let sc = meshsim::scenario::from_source(name, name, text, overrides).unwrap();
    meshsim::simulate(sc).unwrap().report.to_json()
}

#[test]
fn every_bundled_scenario_reports_byte_identically_twice() {
    for (name, text, shorten) in bundled() {
        let a = report_json(&name, &text, &shorten);
        let b = report_json(&name, &text, &shorten);
        assert!(a == b, "{name}: two runs differ");
        // And the seed matters: a different seed gives a different report.
        let mut reseeded = shorten.clone();
        reseeded.push("simulation.seed=999".into());
        if !name.starts_with("chain_165ms") {
            assert_ne!(
                a,
                report_json(&name, &text, &reseeded),
                "{name}: the seed changed nothing"
            );
        }
    }
}

#[test]
fn an_unrelated_service_and_workload_leave_existing_latencies_unchanged() {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/call_chain_800ms.toml"),
    )
    .unwrap();
    let extended = format!(
        "{base}\n[services.audit]\nworkers = 4\n[services.audit.endpoints.log]\n\
         steps = [{{ work = {{ dist = \"exponential\", mean = \"30ms\" }} }}]\n\
         [workloads.auditors]\ntarget = \"audit/log\"\nrate = 50\n"
    );
    let a = json(&run(&base, &[]).report);
    let b = json(&run(&extended, &[]).report);
    assert!(
        b["workloads"]["auditors"]["requests"].as_u64().unwrap() > 1000,
        "the new workload ran"
    );
    assert_eq!(a["workloads"]["shoppers"], b["workloads"]["shoppers"]);
    assert_eq!(
        a["endpoints"]["discount/apply"],
        b["endpoints"]["discount/apply"]
    );
}

/// The simulation core must not reach for anything whose order or value changes
/// between runs: hash-map iteration, the wall clock, OS randomness.
#[test]
fn tidy_the_core_uses_no_nondeterministic_apis() {
    let banned = [
        "HashMap",
        "HashSet",
        "Instant::now",
        "SystemTime",
        "thread_rng",
        "rand::rng()",
        "OsRng",
        "StdRng",
        "from_entropy",
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    let mut files = Vec::new();
    let mut dirs: Vec<_> = ["engine", "model", "metrics", "scenario", "report", "graph"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    // Subdirectories too (scenario/build/).
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    {
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            // Code only: a comment may well say what not to use.
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim_start().starts_with("//"))
            {
                for word in banned {
                    assert!(
                        !line.contains(word),
                        "{}:{} uses {word}",
                        path.display(),
                        i + 1
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "tidy checked only {checked} files");
}

/// Every bundled scenario states what it demonstrates in `[[expect]]` checks (the retry
/// storm stays down after its fault, the budget version recovers, the protected system
/// keeps browsing healthy...): all of them must hold, and each scenario that has a
/// fault must check something.
#[test]
fn every_bundled_scenario_meets_its_expectations() {
    let mut checked = 0;
    for (name, text, shorten) in bundled() {
        let sc = meshsim::scenario::from_source(&name, &name, &text, &shorten).unwrap();
        let has_faults = !sc.spec.faults.is_empty();
        let out = meshsim::simulate(sc).unwrap();
        for e in &out.report.expectations {
            assert!(
                e.passed,
                "{name}: `{}` failed with value {}",
                e.check, e.value
            );
            checked += 1;
        }
        if has_faults {
            assert!(
                !out.report.expectations.is_empty(),
                "{name} has faults but checks nothing"
            );
        }
    }
    assert!(
        checked >= 20,
        "only {checked} expectations in the bundled scenarios"
    );
}
