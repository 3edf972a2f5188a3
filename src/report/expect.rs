//! Expectations: `[[expect]] check = "workloads.checkout.latency_ms.p99 < 200"`.
//! A check is a path into report.json, a comparison and a number. Paths are dot
//! separated; a segment may be quoted (`edges."a->b/get".amplification`) and array
//! entries are indexed (`faults.0.affected`). Booleans compare as 1 and 0.

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    pub fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::Lt => value < bound,
            Op::Le => value <= bound,
            Op::Gt => value > bound,
            Op::Ge => value >= bound,
            Op::Eq => value == bound,
            Op::Ne => value != bound,
        }
    }
}

/// What a metric is compared with: a number, or another metric of the same report.
#[derive(Clone, Debug, PartialEq)]
pub enum Bound {
    Number(f64),
    Path(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub path: Vec<String>,
    pub op: Op,
    pub bound: Bound,
}

impl Check {
    /// Every path the check reads.
    pub fn paths(&self) -> impl Iterator<Item = &[String]> {
        std::iter::once(self.path.as_slice()).chain(match &self.bound {
            Bound::Path(p) => Some(p.as_slice()),
            Bound::Number(_) => None,
        })
    }

    /// (value, passed) on a report (or a window's view of it).
    pub fn evaluate(&self, report: &Value) -> Result<(f64, bool), String> {
        let value = resolve(report, &self.path)?;
        let bound = match &self.bound {
            Bound::Number(x) => *x,
            Bound::Path(p) => resolve(report, p)?,
        };
        Ok((value, self.op.holds(value, bound)))
    }
}

/// Which statistic an expectation checks when a scenario runs at many seeds
/// (`[[expect]] over = ...`); a single run checks its one value whatever this says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Over {
    /// The mean over seeds (the default).
    #[default]
    Mean,
    /// Every seed on its own.
    AllSeeds,
    /// The far end of the 95% interval: the upper bound for `<`/`<=`, the lower for
    /// `>`/`>=`, both ends for `==`/`!=`.
    Ci95,
}

impl Over {
    pub const EXPECTED: &'static str = "\"mean\", \"all_seeds\" or \"ci95\"";

    pub fn parse(s: &str) -> Option<Over> {
        match s {
            "mean" => Some(Over::Mean),
            "all_seeds" => Some(Over::AllSeeds),
            "ci95" => Some(Over::Ci95),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Over::Mean => "mean",
            Over::AllSeeds => "all_seeds",
            Over::Ci95 => "ci95",
        }
    }
}

pub const EXPECTED: &str = "PATH OP NUMBER or PATH OP PATH, e.g. \"workloads.checkout.latency_ms.p99 < 200\" \
     (OP: < <= > >= == !=)";

/// Parses `PATH OP NUMBER`.
pub fn parse(text: &str) -> Result<Check, String> {
    let t = text.trim();
    // The operator is the first of these found outside quotes; two-character ones first.
    let mut in_quotes = false;
    let mut found = None;
    let bytes = t.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        if c == b'"' {
            in_quotes = !in_quotes;
        }
        if in_quotes {
            continue;
        }
        let two = t.get(i..i + 2);
        let op = match (two, c) {
            (Some("<="), _) => Some((Op::Le, 2)),
            (Some(">="), _) => Some((Op::Ge, 2)),
            (Some("=="), _) => Some((Op::Eq, 2)),
            (Some("!="), _) => Some((Op::Ne, 2)),
            (_, b'<') => Some((Op::Lt, 1)),
            (_, b'>') if i == 0 || bytes[i - 1] != b'-' => Some((Op::Gt, 1)),
            _ => None,
        };
        if let Some((op, len)) = op {
            found = Some((i, op, len));
            break;
        }
    }
    let Some((at, op, len)) = found else {
        return Err(format!("no comparison in `{t}`; expected {EXPECTED}"));
    };
    let (path_text, bound_text) = (t[..at].trim(), t[at + len..].trim());
    let bound = match bound_text.parse::<f64>() {
        // `nan` and `inf` parse as numbers, but a comparison with NaN never holds and
        // one with an infinity always or never does: either is a mistake.
        Ok(x) if !x.is_finite() => {
            return Err(format!(
                "`{bound_text}` is not a finite number; expected {EXPECTED}"
            ));
        }
        Ok(x) => Bound::Number(x),
        Err(_) if bound_text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '"') => {
            Bound::Path(split_path(bound_text)?)
        }
        Err(_) => {
            return Err(format!(
                "`{bound_text}` is neither a number nor a metric path; expected {EXPECTED}"
            ));
        }
    };
    let path = split_path(path_text)?;
    Ok(Check { path, op, bound })
}

fn split_path(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                if cur.is_empty() && !was_quoted {
                    return Err(format!("`{text}` has an empty path segment"));
                }
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            _ => cur.push(c),
        }
    }
    if quoted {
        return Err(format!("`{text}` has an unclosed quote"));
    }
    if cur.is_empty() && !was_quoted {
        return Err(format!(
            "`{text}` is not a metric path; expected {EXPECTED}"
        ));
    }
    out.push(cur);
    Ok(out)
}

/// The number at `path`, or why there is none (naming what exists where it broke off).
pub fn resolve(report: &Value, path: &[String]) -> Result<f64, String> {
    let mut v = report;
    for (depth, seg) in path.iter().enumerate() {
        let here = if depth == 0 {
            "report.json".to_owned()
        } else {
            format!("`{}`", path[..depth].join("."))
        };
        // Error counts list only the statuses that happened: any other status is 0.
        if depth > 0
            && path[depth - 1] == "errors"
            && depth + 1 == path.len()
            && crate::status::Status::from_name(seg).is_some_and(|s| !s.is_ok())
            && v.as_object().is_some_and(|m| !m.contains_key(seg))
        {
            return Ok(0.0);
        }
        v = match v {
            Value::Object(m) => m.get(seg).ok_or_else(|| {
                let keys: Vec<&str> = m.keys().map(String::as_str).collect();
                format!(
                    "{here} has no `{seg}` (it has: {})",
                    if keys.is_empty() {
                        "nothing".to_owned()
                    } else {
                        keys.join(", ")
                    }
                )
            })?,
            Value::Array(a) => {
                let i: usize = seg
                    .parse()
                    .map_err(|_| format!("{here} is a list: expected an index, found `{seg}`"))?;
                a.get(i)
                    .ok_or_else(|| format!("{here} has {} entries: no index {i}", a.len()))?
            }
            _ => {
                return Err(format!(
                    "{here} is a value, not a table: nothing at `{seg}`"
                ));
            }
        };
    }
    match v {
        Value::Number(n) => Ok(n.as_f64().expect("finite JSON numbers")),
        Value::Bool(b) => Ok(f64::from(u8::from(*b))),
        _ => Err(format!("`{}` is not a number", path.join("."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_operators_and_quoted_segments() {
        let c = parse("workloads.checkout.latency_ms.p99 < 200").unwrap();
        assert_eq!(c.path, ["workloads", "checkout", "latency_ms", "p99"]);
        assert_eq!((c.op, c.bound), (Op::Lt, Bound::Number(200.0)));
        let c = parse(r#"edges."orders->inventory/check".amplification <= 1.5"#).unwrap();
        assert_eq!(
            c.path,
            ["edges", "orders->inventory/check", "amplification"]
        );
        assert_eq!(c.op, Op::Le);
        // An unquoted arrow is not a comparison.
        let c = parse("edges.a->b/get.calls >= 10").unwrap();
        assert_eq!((c.path[1].as_str(), c.op), ("a->b/get", Op::Ge));
        assert_eq!(
            parse("faults.0.affected > 0").unwrap().path,
            ["faults", "0", "affected"]
        );
        assert!(
            parse("workloads.x.ok")
                .unwrap_err()
                .contains("no comparison")
        );
        assert!(
            parse("workloads.x.ok > 1e")
                .unwrap_err()
                .contains("neither a number")
        );
        for bound in ["nan", "NaN", "inf", "-inf", "infinity", "1e999"] {
            let err = parse(&format!("workloads.x.ok < {bound}")).unwrap_err();
            assert!(err.contains("not a finite number"), "{bound}: {err}");
        }
        let c = parse("workloads.a.ok > workloads.b.ok").unwrap();
        assert_eq!(
            c.bound,
            Bound::Path(vec!["workloads".into(), "b".into(), "ok".into()])
        );
        assert!(
            parse("workloads..ok > 1")
                .unwrap_err()
                .contains("empty path segment")
        );
    }

    #[test]
    fn resolves_numbers_and_explains_missing_keys() {
        let report: Value = serde_json::from_str(
            r#"{"workloads": {"w": {"ok": 3, "latency_ms": {"p99": 12.5}}}, "faults": [{"affected": 7}], "flag": true}"#,
        )
        .unwrap();
        let path = |s: &str| parse(&format!("{s} > 0")).unwrap().path;
        assert_eq!(
            resolve(&report, &path("workloads.w.latency_ms.p99")),
            Ok(12.5)
        );
        assert_eq!(resolve(&report, &path("faults.0.affected")), Ok(7.0));
        assert_eq!(resolve(&report, &path("flag")), Ok(1.0));
        let err = resolve(&report, &path("workloads.w.latncy_ms.p99")).unwrap_err();
        assert_eq!(
            err,
            "`workloads.w` has no `latncy_ms` (it has: latency_ms, ok)"
        );
        let with_errors: Value =
            serde_json::from_str(r#"{"e": {"errors": {"internal": 2}}}"#).unwrap();
        assert_eq!(resolve(&with_errors, &path("e.errors.internal")), Ok(2.0));
        assert_eq!(
            resolve(&with_errors, &path("e.errors.unavailable")),
            Ok(0.0)
        );
        assert!(resolve(&with_errors, &path("e.errors.teapot")).is_err());
        let err = resolve(&report, &path("faults.3.affected")).unwrap_err();
        assert!(err.contains("has 1 entries: no index 3"), "{err}");
    }
}
