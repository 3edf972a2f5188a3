//! `meshsim check`: scenarios and their expectations as a CI gate, written as JUnit
//! XML (GitHub, GitLab and Jenkins read it) and a Markdown summary, and compared with
//! saved baseline reports with a tolerance.

use super::stats::Interval;
use serde_json::Value;

/// One test case: an expectation, or a metric compared with its baseline.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    /// None: passed; Some: why it failed (the value, and the seed or seeds).
    pub failure: Option<String>,
}

/// One scenario's cases.
#[derive(Clone, Debug)]
pub struct Suite {
    pub scenario: String,
    pub path: String,
    pub seeds: Vec<u64>,
    pub cases: Vec<Case>,
}

impl Suite {
    pub fn failures(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_some()).count()
    }
}

/// `--tolerance 5%` (or `0.05`): 0 to 1000%.
pub fn parse_tolerance(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let x = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|x| x / 100.0),
        None => t.parse::<f64>(),
    };
    match x {
        Ok(x) if (0.0..=10.0).contains(&x) => Ok(x),
        _ => Err(format!(
            "--tolerance {text}: expected a share such as 5% or 0.05, from 0 to 1000%"
        )),
    }
}

/// Metrics where more is better (a drop is the regression); for every other metric
/// (latencies, error rates, amplification, queue lengths) a rise is.
pub fn higher_is_better(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    matches!(
        last,
        "throughput_rps"
            | "ok"
            | "completed"
            | "exactly_once"
            | "hit_ratio"
            | "handled_ok"
            | "acked"
    )
}

/// A number of a saved report: a plain number, or the mean of an aggregate's
/// `{mean, ci95, seeds}`.
pub fn saved_number(report: &Value, path: &[String]) -> Result<f64, String> {
    let mut p = path.to_vec();
    if let Ok(x) = crate::report::expect::resolve(report, &p) {
        return Ok(x);
    }
    p.push("mean".into());
    crate::report::expect::resolve(report, &p)
        .map_err(|_| crate::report::expect::resolve(report, path).expect_err("resolved above"))
}

/// Compares the current value of a metric with its baseline. `current` is one run's
/// value, or (with seeds) the interval across seeds: a regression then counts only
/// when the whole interval lies beyond the tolerated limit.
pub fn against_baseline(path: &str, baseline: f64, current: &Interval, tolerance: f64) -> Case {
    let up = !higher_is_better(path);
    let limit = if up {
        baseline + baseline.abs() * tolerance
    } else {
        baseline - baseline.abs() * tolerance
    };
    let (far, regressed) = if up {
        (current.low(), current.low() > limit)
    } else {
        (current.high(), current.high() < limit)
    };
    let change = if baseline != 0.0 {
        format!(
            "{:+.1}%",
            100.0 * (current.mean - baseline) / baseline.abs()
        )
    } else {
        format!("{:+}", current.mean - baseline)
    };
    let interval = match current.ci95 {
        Some([lo, hi]) => format!(" (95% interval {lo:.4}..{hi:.4} over {} seeds)", current.n),
        None => String::new(),
    };
    Case {
        name: format!("baseline: {path}"),
        failure: regressed.then(|| {
            format!(
                "{path} regressed: {:.4}{interval} against the baseline's {baseline:.4} ({change}); limit {limit:.4} (tolerance {:.1}%, {} is the bound checked)",
                current.mean,
                tolerance * 100.0,
                if current.ci95.is_some() { format!("{far:.4}") } else { "the value".to_owned() },
            )
        }),
    }
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no other control characters.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one testsuite per scenario, one testcase per expectation or baseline
/// metric, a failure element with the value and the seed.
pub fn junit(suites: &[Suite]) -> String {
    let tests: usize = suites.iter().map(|s| s.cases.len()).sum();
    let failures: usize = suites.iter().map(Suite::failures).sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"meshsim check\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\">\n"
    );
    for s in suites {
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\">\n",
            xml(&s.scenario),
            s.cases.len(),
            s.failures()
        ));
        out.push_str(&format!(
            "    <properties>\n      <property name=\"scenario\" value=\"{}\"/>\n      <property name=\"seeds\" value=\"{}\"/>\n    </properties>\n",
            xml(&s.path),
            s.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
        ));
        for c in &s.cases {
            let head = format!(
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml(&s.scenario),
                xml(&c.name)
            );
            match &c.failure {
                None => out.push_str(&format!("{head}/>\n")),
                Some(why) => out.push_str(&format!(
                    "{head}>\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml(why),
                    xml(why)
                )),
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A Markdown summary (for `$GITHUB_STEP_SUMMARY`): a table of scenarios, then every
/// failure.
pub fn markdown(suites: &[Suite]) -> String {
    let failures: usize = suites.iter().map(Suite::failures).sum();
    let mut out = format!(
        "## meshsim check: {}\n\n| scenario | seeds | checks | failed |\n| --- | --- | ---: | ---: |\n",
        if failures == 0 {
            "passed".to_owned()
        } else {
            format!("{failures} failed")
        }
    );
    for s in suites {
        let seeds = match s.seeds.as_slice() {
            [one] => one.to_string(),
            [first, .., last] => format!("{first}..{last} ({})", s.seeds.len()),
            [] => String::new(),
        };
        out.push_str(&format!(
            "| {} {} | {seeds} | {} | {} |\n",
            if s.failures() == 0 { "✅" } else { "❌" },
            md(&s.scenario),
            s.cases.len(),
            s.failures()
        ));
    }
    if failures > 0 {
        out.push_str("\n### Failures\n\n");
        for s in suites {
            for c in &s.cases {
                if let Some(why) = &c.failure {
                    out.push_str(&format!(
                        "- **{}** `{}`: {}\n",
                        md(&s.scenario),
                        md(&c.name),
                        md(why)
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_and_direction() {
        assert_eq!(parse_tolerance("5%").unwrap(), 0.05);
        assert_eq!(parse_tolerance("0.1").unwrap(), 0.1);
        assert!(parse_tolerance("-1%").is_err() && parse_tolerance("x").is_err());
        let one = |x| Interval::of(&[x]);
        let p99 = "workloads.w.latency_ms.p99";
        assert!(
            against_baseline(p99, 100.0, &one(104.9), 0.05)
                .failure
                .is_none()
        );
        assert!(
            against_baseline(p99, 100.0, &one(105.1), 0.05)
                .failure
                .is_some()
        );
        let tput = "workloads.w.throughput_rps";
        assert!(
            against_baseline(tput, 100.0, &one(96.0), 0.05)
                .failure
                .is_none()
        );
        assert!(
            against_baseline(tput, 100.0, &one(94.0), 0.05)
                .failure
                .is_some()
        );
        // With seeds, only a regression the whole interval shows counts.
        let wide = Interval::of(&[100.0, 120.0, 110.0]);
        assert!(against_baseline(p99, 100.0, &wide, 0.05).failure.is_none());
        let clear = Interval::of(&[120.0, 121.0, 122.0]);
        assert!(against_baseline(p99, 100.0, &clear, 0.05).failure.is_some());
    }

    #[test]
    fn junit_counts_and_escapes() {
        let s = Suite {
            scenario: "a&b".into(),
            path: "x.toml".into(),
            seeds: vec![1, 2],
            cases: vec![
                Case {
                    name: "p < 1".into(),
                    failure: None,
                },
                Case {
                    name: "q > 2".into(),
                    failure: Some("value 1 \"seed\" 2".into()),
                },
            ],
        };
        let x = junit(&[s]);
        assert!(x.contains("<testsuites name=\"meshsim check\" tests=\"2\" failures=\"1\""));
        assert!(x.contains("name=\"a&amp;b\""));
        assert!(x.contains("name=\"p &lt; 1\"/>"));
        assert!(x.contains("message=\"value 1 &quot;seed&quot; 2\""));
    }
}
