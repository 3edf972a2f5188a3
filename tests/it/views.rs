//! The views of a run: plots, report.html (in a real headless Chromium too), the
//! system diagram (`meshsim graph`), and the empty cells of the time series.

use meshsim::graph::{self, Topology};
use meshsim::report::views::{Views, files};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a bundled scenario and draws its views as the CLI does (with PNGs if asked).
fn views_of(name: &str, png: bool) -> Vec<(String, Vec<u8>)> {
    let label = format!("scenarios/{name}.toml");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&label)).unwrap();
    let sc = meshsim::scenario::from_source(&label, name, &text, &[]).unwrap();
    let diagram = graph::svg(&Topology::from_spec(&sc.spec));
    let seed = sc.spec.seed;
    let out = meshsim::simulate(sc).unwrap();
    let reproduce = format!("meshsim run {label} --seed {seed}");
    let summary = meshsim::report::text::summary(&out.report, &reproduce);
    let csv = meshsim::report::csv::timeseries(&out.metrics.series, &out.metrics.consistency);
    files(&Views {
        report: &out.report,
        metrics: &out.metrics,
        timeseries_csv: &csv,
        summary: &summary,
        reproduce: &reproduce,
        diagram: Some(&diagram),
        png,
    })
    .unwrap()
}

fn file<'a>(views: &'a [(String, Vec<u8>)], name: &str) -> &'a str {
    let bytes = &views
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1;
    std::str::from_utf8(bytes).unwrap()
}

/// Every text node of an SVG, which must parse as XML.
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("SVG does not parse: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_owned())
        .collect()
}

#[test]
fn plots_parse_and_carry_titles_series_names_and_every_fault_window() {
    let views = views_of("cascading_failure", true);
    let cdf = svg_texts(file(&views, "plots/latency_cdf.svg"));
    assert!(cdf.contains(&"cascading_failure: latency distribution per workload".to_owned()));
    for w in ["browsers", "shoppers"] {
        assert!(
            cdf.iter()
                .any(|t| t.starts_with(&format!("{w}: p50 ")) && t.contains("p99.9")),
            "no legend for {w}: {cdf:?}"
        );
    }
    let ts = svg_texts(file(&views, "plots/timeseries.svg"));
    let panels = [
        "Throughput and errors by status per workload",
        "Latency per workload (gaps: nothing answered)",
        "Queue length per endpoint (mean waiting for a worker)",
        "Attempts per edge (shaded: its breaker open or half-open at the bucket's end)",
    ];
    for p in panels {
        assert!(ts.contains(&p.to_owned()), "no panel {p}");
    }
    for s in [
        "browsers answers/s",
        "shoppers p99",
        "frontend/browse",
        "inventory->db/query",
    ] {
        assert!(ts.contains(&s.to_owned()), "no series {s}");
    }
    // The one fault window, labelled on every panel.
    let labels = ts.iter().filter(|t| *t == "fault: slow db 30s..1m").count();
    assert_eq!(labels, panels.len());
    for png in ["plots/latency_cdf.png", "plots/timeseries.png"] {
        let bytes = &views.iter().find(|(n, _)| n == png).unwrap().1;
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png} is not a PNG");
    }
}

#[test]
fn breaker_bands_and_broker_panels_appear_when_there_is_something_to_show() {
    let views = views_of("cascading_failure_protected", false);
    let ts = svg_texts(file(&views, "plots/timeseries.svg"));
    assert!(ts.iter().any(|t| t.starts_with("breaker open: ")), "{ts:?}");
    let views = views_of("kafka_consumer_group", false);
    let ts = svg_texts(file(&views, "plots/timeseries.svg"));
    assert!(ts.contains(&"Broker: queue depth and consumer-group lag".to_owned()));
}

#[test]
fn a_bucket_in_which_nothing_answered_has_no_latency_rather_than_zero() {
    let out = super::support::run_file("retry_storm.toml", &[]);
    let csv = String::from_utf8(meshsim::report::csv::timeseries(
        &out.metrics.series,
        &out.metrics.consistency,
    ))
    .unwrap();
    let rows = meshsim::report::plots::parse_rows(csv.as_bytes()).unwrap();
    let workload: Vec<_> = rows.iter().filter(|r| r.kind == "workload").collect();
    let silent: Vec<_> = workload
        .iter()
        .filter(|r| r.completed == Some(0.0))
        .collect();
    assert!(
        !silent.is_empty(),
        "retry_storm has buckets where nothing answered"
    );
    assert!(
        silent
            .iter()
            .all(|r| r.p50_ms.is_none() && r.p99_ms.is_none())
    );
    // And a bucket that answered has its latency.
    assert!(
        workload
            .iter()
            .filter(|r| r.completed > Some(0.0))
            .all(|r| r.p99_ms.is_some())
    );
}

const SECTIONS: [&str; 6] = [
    "run",
    "expectations",
    "diagram",
    "plots",
    "tables",
    "summary",
];

#[test]
fn the_html_report_is_self_contained_and_has_every_section() {
    let views = views_of("hybrid_order", false);
    let html = file(&views, "report.html");
    for id in SECTIONS.iter().chain(&["consistency"]) {
        assert!(html.contains(&format!(" id=\"{id}\"")), "no section {id}");
    }
    // The diagram and both plots, inline.
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(html.contains("class=\"meshsim-diagram\""));
    assert!(html.contains(
        "<code id=\"reproduce\">meshsim run scenarios/hybrid_order.toml --seed 17</code>"
    ));
    // Nothing to fetch: no URL, no script, no external reference.
    for banned in [
        "http:",
        "https:",
        "<script",
        " src=",
        "<link",
        "@import",
        "@font-face",
    ] {
        assert!(!html.contains(banned), "report.html contains {banned}");
    }
    let refs: Vec<_> = html
        .match_indices("url(")
        .map(|(i, _)| &html[i..i + 20])
        .collect();
    assert!(
        refs.iter().all(|r| r.starts_with("url(#meshsim-")),
        "{refs:?}"
    );
    // Expectations with their verdicts.
    assert!(html.contains("all 21 expectations met"));
    assert_eq!(html.matches("<td class=\"pass\">pass</td>").count(), 21);
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|b| d.join(b)))
        .find(|p| p.is_file())
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing in CI (.ci/run installs it)"
        );
        eprintln!(
            "SKIPPED the_html_report_renders_in_headless_chromium: chromium is not installed (apt-get install -y chromium)"
        );
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("views-browser");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["cascading_failure", "hybrid_order"] {
        let views = views_of(name, false);
        let page = dir.join(format!("{name}.html"));
        std::fs::write(&page, file(&views, "report.html")).unwrap();
        let shot = dir.join(format!("{name}.png"));
        let browse = |extra: &[&str], profile: &str| {
            Command::new(&browser)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ])
                .arg(format!("--user-data-dir={}", dir.join(profile).display()))
                .args(extra)
                .arg(format!("file://{}", page.display()))
                .output()
                .unwrap()
        };
        let dom = browse(&["--dump-dom"], &format!("{name}-dom"));
        assert!(
            dom.status.success(),
            "{}",
            String::from_utf8_lossy(&dom.stderr)
        );
        let dom = String::from_utf8(dom.stdout).unwrap();
        for id in SECTIONS {
            assert!(
                dom.contains(&format!(" id=\"{id}\"")),
                "{name}: rendered page lacks {id}"
            );
        }
        assert_eq!(
            dom.matches("<svg").count(),
            3,
            "{name}: the diagram and two plots"
        );
        assert!(dom.contains("class=\"meshsim-diagram\""));
        assert!(dom.contains(&format!("{name}: over simulated time")));
        let out = browse(
            &[
                "--window-size=1280,2400",
                &format!("--screenshot={}", shot.display()),
            ],
            &format!("{name}-shot"),
        );
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        assert!(
            !log.contains("net::ERR_"),
            "{name}: something failed to load:\n{log}"
        );
        let png = std::fs::read(&shot).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 50_000, "{name}: a nearly empty screenshot");
        eprintln!("screenshot: {}", shot.display());
    }
}

#[test]
fn the_diagram_of_the_chain_is_exact() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/chain_165ms.toml"),
    )
    .unwrap();
    let sc = meshsim::scenario::from_source("chain.toml", "chain", &text, &[]).unwrap();
    let t = Topology::from_spec(&sc.spec);
    assert_eq!(
        graph::mermaid(&t),
        "flowchart LR\n\
         \x20 subgraph g0[\"a\"]\n    n1[\"a/get<br/>1 x 16 workers\"]\n  end\n\
         \x20 subgraph g1[\"b\"]\n    n2[\"b/get<br/>1 x 16 workers\"]\n  end\n\
         \x20 subgraph g2[\"c\"]\n    n3[\"c/get<br/>1 x 16 workers\"]\n  end\n\
         \x20 n0([\"clients<br/>open: 10 rps\"])\n\
         \x20 n0 -->|\"none\"| n1\n\
         \x20 n1 -->|\"none\"| n2\n\
         \x20 n2 -->|\"none\"| n3\n"
    );
    let dot = graph::dot(&t);
    assert!(dot.starts_with("digraph meshsim {\n  rankdir=LR;"));
    assert!(dot.contains("  n0 -> n1 [label=\"none\", style=solid];"));
}

#[test]
fn the_diagram_shows_brokers_consumers_policies_and_parallel_joins() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/hybrid_order.toml"),
    )
    .unwrap();
    let sc = meshsim::scenario::from_source("h.toml", "h", &text, &[]).unwrap();
    let m = graph::mermaid(&Topology::from_spec(&sc.spec));
    for s in [
        "subgraph g5[\"rabbit (rabbitmq)\"]",
        "{{\"rabbit/events<br/>topic exchange\"}}",
        "-.->|\"publish (confirms) key order.created\"|",
        "-->|\"parallel all: internal, timeout 60ms\"|",
        "==>|\"delivers, prefetch 8\"|",
        "[\"email_worker/handle<br/>consumer: 2 x 16 workers\"]",
    ] {
        assert!(m.contains(s), "no {s} in\n{m}");
    }
}

#[test]
fn every_bundled_scenario_has_a_diagram_with_a_box_per_node() {
    for (name, text) in super::support::bundled_scenarios() {
        let sc = meshsim::scenario::from_source("s.toml", &name, &text, &[]).unwrap();
        let t = Topology::from_spec(&sc.spec);
        let svg = graph::svg(&t);
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{name}: {e}"));
        let boxes = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("node"))
            .count();
        let links = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("link"))
            .count();
        assert_eq!((boxes, links), (t.nodes.len(), t.links.len()), "{name}");
        assert!(
            t.links
                .iter()
                .all(|l| l.from < t.nodes.len() && l.to < t.nodes.len())
        );
    }
}

fn meshsim() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("meshsim").unwrap()
}

#[test]
fn run_writes_the_plots_and_the_page_and_no_progress_bar_into_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let out = meshsim()
        .args(["run", "chain_165ms", "--png", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    // stderr is a pipe here: no progress bar, nothing at all for a passing run.
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("report.html and plots/"));
    for f in [
        "report.html",
        "plots/latency_cdf.svg",
        "plots/latency_cdf.png",
        "plots/timeseries.svg",
        "plots/timeseries.png",
    ] {
        assert!(dir.path().join(f).is_file(), "no {f}");
    }
    // No temporary file left behind.
    let stray: Vec<_> = std::fs::read_dir(dir.path().join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn graph_prints_mermaid_by_default_and_dot_or_svg_on_request() {
    let out = meshsim().args(["graph", "chain_165ms"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("flowchart LR\n"));
    let out = meshsim()
        .args(["graph", "chain_165ms", "--format", "dot"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("digraph meshsim {"));
    let out = meshsim()
        .args(["graph", "chain_165ms", "--format", "svg"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("<svg "));
    let out = meshsim()
        .args(["graph", "no_such_scenario"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_throughput_panel_draws_errors_by_status_class() {
    // retry_storm's client sees timeouts and unavailable answers, nothing else.
    let views = views_of("retry_storm", false);
    let ts = svg_texts(file(&views, "plots/timeseries.svg"));
    for s in [
        "client answers/s",
        "client errors/s: timeout",
        "client errors/s: unavailable",
    ] {
        assert!(ts.contains(&s.to_owned()), "no series {s}: {ts:?}");
    }
    for absent in [
        "client errors/s",
        "client errors/s: rejected",
        "client errors/s: internal",
    ] {
        assert!(!ts.contains(&absent.to_owned()), "{absent}");
    }
}

#[test]
fn a_long_series_is_drawn_from_bins_of_buckets() {
    // 8002 one-second buckets: k = ceil(8002 / 4000) = 3 buckets per point.
    let mut csv = String::from(
        "t_start_s,t_end_s,kind,name,completed,errors,p50_ms,p99_ms,errors_timeout,breaker\n",
    );
    for b in 0..8002 {
        let p99 = if b == 4 { 90 } else { 10 };
        let breaker = if b == 5 { "open" } else { "closed" };
        csv.push_str(&format!(
            "{b},{},workload,w,2,1,5,{p99},1,{breaker}\n",
            b + 1
        ));
    }
    let rows = meshsim::report::plots::parse_rows_binned(csv.as_bytes(), 1.0, 8002).unwrap();
    assert_eq!(rows.len(), 2668);
    let second = &rows[1];
    assert_eq!((second.start_s, second.end_s), (3.0, 6.0));
    assert_eq!((second.completed, second.errors), (Some(6.0), Some(3.0)));
    assert_eq!(second.errors_by_class[0], Some(3.0));
    // The spike and the open breaker stay visible.
    assert_eq!(
        (second.p99_ms, second.breaker.as_str()),
        (Some(90.0), "open")
    );
    // The last bin holds the one bucket left.
    assert_eq!(rows[2667].completed, Some(2.0));
    // Up to 4000 buckets, rows are as written.
    assert_eq!(
        meshsim::report::plots::parse_rows_binned(csv.as_bytes(), 1.0, 4000)
            .unwrap()
            .len(),
        8002
    );
}

#[test]
fn binned_queue_lengths_are_weighted_by_time_and_series_stay_apart() {
    // Two series interleaved as the run writes them; 4002 buckets: k = 2. The last
    // bucket of the run is a quarter of a second, so its mean weighs a quarter.
    let mut csv = String::from("t_start_s,t_end_s,kind,name,queue_length_mean,depth\n");
    for b in 0..4002u32 {
        let end = if b == 4001 { 4001.25 } else { f64::from(b + 1) };
        let (q, depth) = if b % 2 == 0 { (1.0, 3) } else { (4.0, 7) };
        csv.push_str(&format!("{b},{end},endpoint,api/get,{q},\n"));
        csv.push_str(&format!("{b},{end},queue,jobs,,{depth}\n"));
    }
    let rows = meshsim::report::plots::parse_rows_binned(csv.as_bytes(), 1.0, 4002).unwrap();
    // 2001 bins per series, the endpoint's first, then the queue's.
    assert_eq!(rows.len(), 4002);
    assert!(rows[..2001].iter().all(|r| r.name == "api/get"));
    assert!(rows[2001..].iter().all(|r| r.name == "jobs"));
    // A whole bin: (1 x 1 s + 4 x 1 s) / 2 s.
    assert_eq!(rows[0].queue_length_mean, Some(2.5));
    assert_eq!((rows[0].start_s, rows[0].end_s), (0.0, 2.0));
    // The depth keeps the bin's highest.
    assert_eq!(rows[2001].depth, Some(7.0));
    assert_eq!(rows[2001].queue_length_mean, None);
    // The last bin: 1 for a second, then 4 for a quarter: (1 + 1) / 1.25, not 2.5.
    assert_eq!(rows[2000].queue_length_mean, Some(1.6));
    assert_eq!((rows[2000].start_s, rows[2000].end_s), (4000.0, 4001.25));
}
