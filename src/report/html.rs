//! `report.html`: one self-contained page per run. Summary tables, expectations with
//! their values, the consistency tables, the plots and the system diagram inline (SVG),
//! and the command that reproduces the run. No script, no font, no file and no URL
//! outside the page: it opens from disk, offline. Deterministic like every output.
//!
//! Tables are drawn from `report.json`'s own value, so a field added to the report
//! shows up here without code of its own.

use super::Report;
use serde_json::Value;
use std::fmt::Write;

/// What the page shows besides the report.
pub struct Page<'a> {
    pub report: &'a Report,
    /// The terminal summary, shown verbatim.
    pub summary: &'a str,
    pub reproduce: &'a str,
    /// (title, inline SVG) for each plot.
    pub plots: &'a [(String, String)],
    /// The system diagram as inline SVG, if there is one.
    pub diagram: Option<&'a str>,
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}\
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:32px}\
h3{font-size:15px;margin:18px 0 6px}\
table{border-collapse:collapse;font-size:12px;margin:6px 0 12px}th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}\
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\
.pass{color:#1a7f37;font-weight:bold}.fail{color:#c62828;font-weight:bold}\
pre{background:#f6f8fa;border:1px solid #ddd;padding:10px;overflow-x:auto;font-size:12px}\
code{background:#f6f8fa;padding:2px 5px}.scroll{overflow-x:auto}figure{margin:12px 0}\
figure svg{max-width:100%;height:auto;border:1px solid #eee}nav a{margin-right:14px}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A cell: numbers to at most 4 decimals, the rest as text.
fn cell(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() => {
                let s = format!("{x:.4}");
                s.trim_end_matches('0').trim_end_matches('.').to_owned()
            }
            _ => n.to_string(),
        },
        Value::String(s) => esc(s),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        Value::Array(a) => esc(&a.iter().map(cell).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => esc(&o
            .iter()
            .map(|(k, v)| format!("{k} {}", cell(v)))
            .collect::<Vec<_>>()
            .join(", ")),
    }
}

/// Flattens an object one level: {"a": 1, "b": {"c": 2}} -> [("a", 1), ("b.c", 2)].
fn flatten(v: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    if let Value::Object(o) = v {
        for (k, v) in o {
            match v {
                Value::Object(inner)
                    if !inner.is_empty()
                        && inner.values().all(|x| !x.is_object())
                        && k != "errors" =>
                {
                    for (k2, v2) in inner {
                        out.push((format!("{k}.{k2}"), v2));
                    }
                }
                _ => out.push((k.clone(), v)),
            }
        }
    }
    out
}

/// A table with one row per entry of a JSON object of objects, columns in the order
/// first seen (or only `pick`, when given).
fn table(out: &mut String, first: &str, map: &Value, pick: Option<&[&str]>) {
    let Value::Object(entries) = map else { return };
    if entries.is_empty() {
        return;
    }
    let rows: Vec<(&String, Vec<(String, &Value)>)> =
        entries.iter().map(|(k, v)| (k, flatten(v))).collect();
    let mut columns: Vec<String> = Vec::new();
    match pick {
        Some(p) => columns.extend(p.iter().map(|s| (*s).to_owned())),
        None => {
            for (_, fields) in &rows {
                for (k, _) in fields {
                    if !columns.contains(k) {
                        columns.push(k.clone());
                    }
                }
            }
        }
    }
    out.push_str("<div class=\"scroll\"><table><tr>");
    let _ = write!(out, "<th>{}</th>", esc(first));
    for c in &columns {
        let _ = write!(out, "<th>{}</th>", esc(c));
    }
    out.push_str("</tr>\n");
    for (name, fields) in &rows {
        let _ = write!(out, "<tr><td>{}</td>", esc(name));
        for c in &columns {
            let v = fields.iter().find(|(k, _)| k == c).map(|(_, v)| cell(v));
            let _ = write!(out, "<td>{}</td>", v.unwrap_or_default());
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></div>\n");
}

/// An SVG document as an element of the page: without an XML declaration, and without
/// the namespace attribute (implied in HTML), so the page holds no URL at all.
fn inline(svg: &str) -> String {
    let svg = svg.trim();
    let svg = match svg.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map_or(rest, |(_, body)| body).trim(),
        None => svg,
    };
    svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
}

pub fn page(p: &Page) -> String {
    let r = p.report;
    let json = r.json_value();
    let mut out = String::new();
    head(&mut out, p);
    expectations(&mut out, r);
    diagram(&mut out, p);
    plots(&mut out, p);
    tables(&mut out, &json);
    super::attribution::html(&mut out, r);
    consistency(&mut out, &json);
    let _ = write!(
        out,
        "<section id=\"summary\"><h2>Text summary</h2>\n<pre>{}</pre>\n</section>\n</body>\n</html>\n",
        esc(p.summary)
    );
    out
}

/// The document's head, the run's header (seed, hash, the verdict, how to reproduce
/// it) and the navigation.
fn head(out: &mut String, p: &Page) {
    let r = p.report;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>meshsim: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&r.scenario)
    );
    let failed = r.expectations.iter().filter(|e| !e.passed).count();
    let verdict = if r.expectations.is_empty() {
        "no expectations".to_owned()
    } else if failed == 0 {
        format!(
            "<span class=\"pass\">all {} expectations met</span>",
            r.expectations.len()
        )
    } else {
        format!(
            "<span class=\"fail\">{failed} of {} expectations failed</span>",
            r.expectations.len()
        )
    };
    let _ = write!(
        out,
        "<header id=\"run\"><h1>meshsim: {}</h1>\n<p>seed {} · scenario hash {} · simulated {:.3} s ({:.3} s measured after a {:.3} s warmup) · {} events · stop: {} · {verdict}</p>\n\
         <p>Reproduce: <code id=\"reproduce\">{}</code></p>\n</header>\n",
        esc(&r.scenario),
        r.seed,
        esc(&r.scenario_hash),
        r.duration_s,
        r.window_s,
        r.warmup_s,
        r.events,
        r.stop,
        esc(p.reproduce)
    );
    out.push_str("<nav><a href=\"#expectations\">Expectations</a><a href=\"#diagram\">Diagram</a><a href=\"#plots\">Plots</a><a href=\"#tables\">Tables</a><a href=\"#attribution\">Where the time goes</a>");
    if r.consistency.is_some() {
        out.push_str("<a href=\"#consistency\">Consistency</a>");
    }
    out.push_str("<a href=\"#summary\">Text summary</a></nav>\n");
}

fn expectations(out: &mut String, r: &Report) {
    out.push_str("<section id=\"expectations\"><h2>Expectations</h2>\n");
    if r.expectations.is_empty() {
        out.push_str("<p>This scenario states no expectations.</p>\n");
    } else {
        out.push_str(
            "<table><tr><th>check</th><th>window (s)</th><th>value</th><th>result</th></tr>\n",
        );
        for e in &r.expectations {
            let window = e
                .window_s
                .map(|[a, b]| format!("{a} .. {b}"))
                .unwrap_or_default();
            let (class, word) = if e.passed {
                ("pass", "pass")
            } else {
                ("fail", "FAIL")
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{window}</td><td>{}</td><td class=\"{class}\">{word}</td></tr>",
                esc(&e.check),
                cell(&serde_json::json!(e.value))
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
}

fn diagram(out: &mut String, p: &Page) {
    out.push_str("<section id=\"diagram\"><h2>The system</h2>\n");
    match p.diagram {
        Some(svg) => {
            out.push_str("<p>Solid arrows: calls (policy, timeout); dashed: messages to and inside a broker; bold: deliveries to consumers.</p>\n<figure class=\"scroll\">");
            out.push_str(&inline(svg));
            out.push_str("</figure>\n");
        }
        None => out.push_str("<p>No diagram.</p>\n"),
    }
    out.push_str("</section>\n");
}

fn plots(out: &mut String, p: &Page) {
    out.push_str("<section id=\"plots\"><h2>Plots</h2>\n");
    for (title, svg) in p.plots {
        // The title is drawn in the picture; the figure names it for screen readers.
        let _ = writeln!(out, "<figure aria-label=\"{}\">", esc(title));
        out.push_str(&inline(svg));
        out.push_str("\n</figure>\n");
    }
    out.push_str("</section>\n");
}

/// The workloads, endpoints, edges and faults tables, read from report.json.
fn tables(out: &mut String, json: &Value) {
    out.push_str("<section id=\"tables\"><h2>Tables</h2>\n<h3>Workloads (latency in ms, at the client)</h3>\n");
    table(
        out,
        "workload",
        &json["workloads"],
        Some(&[
            "target",
            "requests",
            "ok",
            "errors",
            "error_rate",
            "throughput_rps",
            "latency_ms.mean",
            "latency_ms.p50",
            "latency_ms.p90",
            "latency_ms.p99",
            "latency_ms.p999",
            "latency_ms.max",
        ]),
    );
    out.push_str("<h3>Endpoints (at the server)</h3>\n");
    table(
        out,
        "endpoint",
        &json["endpoints"],
        Some(&[
            "arrivals",
            "completed",
            "rejected",
            "errors",
            "utilization",
            "queue_wait_ms.mean",
            "latency_ms.mean",
            "latency_ms.p99",
            "queue_length.mean",
            "queue_length.max",
            "orphaned",
            "expired",
        ]),
    );
    out.push_str("<h3>Edges (at the caller)</h3>\n");
    table(
        out,
        "edge",
        &json["edges"],
        Some(&[
            "policy",
            "calls",
            "attempts",
            "amplification",
            "retries",
            "ok",
            "errors",
            "timeouts",
            "rejected.breaker",
            "rejected.bulkhead",
            "rejected.rate_limit",
            "rejected.budget",
            "late_replies",
            "latency_ms.p50",
            "latency_ms.p99",
        ]),
    );
    faults(out, json);
    out.push_str("</section>\n");
}

fn faults(out: &mut String, json: &Value) {
    if let Value::Array(faults) = &json["faults"]
        && !faults.is_empty()
    {
        out.push_str("<h3>Faults</h3>\n<table><tr><th>fault</th><th>affected</th></tr>\n");
        for f in faults {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td></tr>",
                cell(&f["fault"]),
                cell(&f["affected"])
            );
        }
        out.push_str("</table>\n");
    }
}

/// Each part of report.json's `consistency`: a table per kind of entity, a one-row
/// table per object, a line per number.
fn consistency(out: &mut String, json: &Value) {
    if let Value::Object(c) = &json["consistency"] {
        out.push_str("<section id=\"consistency\"><h2>Consistency</h2>\n");
        for (k, v) in c {
            match v {
                Value::Object(m) if m.values().all(Value::is_object) => {
                    if m.is_empty() {
                        continue;
                    }
                    let _ = writeln!(out, "<h3>{}</h3>", esc(k));
                    table(out, k.trim_end_matches('s'), v, None);
                }
                Value::Object(_) => {
                    let _ = writeln!(out, "<h3>{}</h3>", esc(k));
                    let wrapped = serde_json::json!({ k.clone(): v });
                    table(out, "", &wrapped, None);
                }
                other => {
                    let _ = writeln!(out, "<p>{}: <b>{}</b></p>", esc(k), cell(other));
                }
            }
        }
        out.push_str("</section>\n");
    }
}
