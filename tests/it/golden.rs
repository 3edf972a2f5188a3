//! reports/ is a reviewed snapshot of every bundled scenario's output: the summary,
//! report.json, timeseries.csv, the SVG plots and report.html must match it byte for byte. A change to any number
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
        let diagram = meshsim::graph::svg(&meshsim::graph::Topology::from_spec(&sc.spec));
        let out = meshsim::simulate(sc).unwrap();
        let reproduce = format!("meshsim run {label} --seed {seed}");
        let csv = meshsim::report::csv::timeseries(&out.metrics.series, &out.metrics.consistency);
        let summary = meshsim::report::text::summary(&out.report, &reproduce);
        let views = meshsim::report::views::files(&meshsim::report::views::Views {
            report: &out.report,
            metrics: &out.metrics,
            timeseries_csv: &csv,
            summary: &summary,
            reproduce: &reproduce,
            diagram: Some(&diagram),
            png: false,
        })
        .unwrap();
        let mut files = vec![
            (
                "summary.txt",
                format!(
                    "{}\n",
                    meshsim::report::text::summary(&out.report, &reproduce)
                )
                .into_bytes(),
            ),
            ("report.json", out.report.to_json().into_bytes()),
            ("timeseries.csv", csv.clone()),
        ];
        files.extend(views.iter().map(|(n, b)| (n.as_str(), b.clone())));
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
