//! Where the time goes, in words and in a table: the text summary's lines ("62% of p99
//! is pricing/quote queue wait") and report.html's section, both from report.json's
//! `workloads.NAME.attribution`.

use super::json::{Report, ShareReport};
use std::fmt::Write;

/// Parts named in the summary per set.
const TOP_TEXT: usize = 3;
/// Rows per set in report.html; the rest are summed into one row.
const TOP_HTML: usize = 12;

/// A time in ms to three significant digits, as the summary prints them.
fn ms(x: f64) -> String {
    let decimals = match x.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    super::numbers::number(format!("{x:.decimals$}").parse().unwrap_or(x))
}

fn what_words(what: &str) -> String {
    what.replace('_', " ")
}

fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p >= 9.95 || p == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

fn sentence(set: &str, shares: &[ShareReport]) -> String {
    let mut s = String::new();
    for (i, x) in shares.iter().take(TOP_TEXT).enumerate() {
        if i == 0 {
            let _ = write!(
                s,
                "{} of {set} is {} {}",
                percent(x.share),
                x.place,
                what_words(x.what)
            );
        } else {
            let _ = write!(
                s,
                ", {} {} {}",
                percent(x.share),
                x.place,
                what_words(x.what)
            );
        }
    }
    s
}

/// The summary's lines: per workload, the top parts of p99 and of p50.
pub fn text(out: &mut String, r: &Report) {
    let with: Vec<_> = r
        .workloads
        .iter()
        .filter_map(|(n, w)| w.attribution.as_ref().map(|a| (n, a, w)))
        .filter(|(_, a, _)| !a.p99.is_empty())
        .collect();
    if with.is_empty() {
        return;
    }
    out.push_str("\nwhere the time goes (critical path of the requests at p99 and at p50)\n");
    for (name, a, w) in with {
        let _ = writeln!(
            out,
            "{name}: {} ({} requests at or above {} ms)",
            sentence("p99", &a.p99),
            a.p99_requests,
            ms(w.latency_ms.p99)
        );
        let _ = writeln!(
            out,
            "{name}: {} ({} requests around {} ms)",
            sentence("p50", &a.p50),
            a.p50_requests,
            ms(w.latency_ms.p50)
        );
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn rows(out: &mut String, shares: &[ShareReport]) {
    out.push_str(
        "<table><tr><th>where</th><th>what</th><th>share</th><th>mean ms</th><th></th></tr>\n",
    );
    let row = |out: &mut String, place: &str, what: &str, share: f64, mean_ms: f64| {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{mean_ms:.3}</td>\
             <td style=\"text-align:left;width:240px\"><div style=\"background:#4a78b5;height:10px;width:{:.1}%\"></div></td></tr>",
            esc(place),
            esc(what),
            percent(share),
            share * 100.0
        );
    };
    for s in shares.iter().take(TOP_HTML) {
        row(out, &s.place, &what_words(s.what), s.share, s.mean_ms);
    }
    if shares.len() > TOP_HTML {
        let rest = &shares[TOP_HTML..];
        let share: f64 = rest.iter().map(|s| s.share).sum();
        let mean: f64 = rest.iter().map(|s| s.mean_ms).sum();
        row(out, &format!("{} others", rest.len()), "", share, mean);
    }
    out.push_str("</table>\n");
}

/// report.html's section: per workload, a table of the parts of p99 and of p50.
pub fn html(out: &mut String, r: &Report) {
    out.push_str("<section id=\"attribution\"><h2>Where the time goes</h2>\n");
    out.push_str(
        "<p>Each request's latency cut along its critical path into (endpoint, what) parts; \
                  waiting on a callee is split into the callee's own parts, and a parallel join \
                  follows the branch that decided it. p99: the requests at or above the p99 \
                  value's histogram bucket; p50: those in the p50 value's bucket.</p>\n",
    );
    let mut any = false;
    for (name, w) in &r.workloads {
        let Some(a) = &w.attribution else { continue };
        if a.p99.is_empty() {
            continue;
        }
        any = true;
        let _ = writeln!(
            out,
            "<h3>{}: p99 ({} requests at or above {} ms)</h3>",
            esc(name),
            a.p99_requests,
            ms(w.latency_ms.p99)
        );
        rows(out, &a.p99);
        let _ = writeln!(
            out,
            "<h3>{}: p50 ({} requests around {} ms)</h3>",
            esc(name),
            a.p50_requests,
            ms(w.latency_ms.p50)
        );
        rows(out, &a.p50);
    }
    if !any {
        out.push_str(
            "<p>No attribution: no request was answered, or `[report] attribution = false`.</p>\n",
        );
    }
    out.push_str("</section>\n");
}
