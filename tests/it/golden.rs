//! reports/ is a reviewed snapshot of every bundled scenario's output: the summary,
//! report.json and timeseries.csv must match it byte for byte. A change to any number
//! is deliberate: regenerate with scripts/regen_reports.sh and explain it in the commit.

use std::path::Path;

#[test]
fn every_bundled_scenario_matches_its_committed_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut mismatches = Vec::new();
    for (name, text) in super::support::bundled_scenarios() {
        let label = format!("scenarios/{name}.toml");
        let sc = meshsim::scenario::from_source(&label, &name, &text, &[]).unwrap();
        let seed = sc.spec.seed;
        let out = meshsim::simulate(sc).unwrap();
        let reproduce = format!("meshsim run {label} --seed {seed}");
        let files = [
            (
                "summary.txt",
                format!(
                    "{}\n",
                    meshsim::report::text::summary(&out.report, &reproduce)
                )
                .into_bytes(),
            ),
            ("report.json", out.report.to_json().into_bytes()),
            (
                "timeseries.csv",
                meshsim::report::csv::timeseries(&out.metrics.series, &out.metrics.consistency),
            ),
        ];
        let dir = root.join("reports").join(&name);
        for (file, bytes) in files {
            match std::fs::read(dir.join(file)) {
                Ok(committed) if committed == bytes => {}
                Ok(_) => mismatches.push(format!("{name}/{file} differs")),
                Err(_) => mismatches.push(format!("{name}/{file} is missing")),
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "reports/ is out of date (run scripts/regen_reports.sh on purpose and say why in the commit):\n  {}",
        mismatches.join("\n  ")
    );
}
