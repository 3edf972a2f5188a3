//! `meshsim run S --seeds N`: one report whose every number is the mean over seeds
//! with its 95% interval, `{"mean": X, "ci95": [LOW, HIGH], "seeds": N}`, at the same
//! path as in report.json; expectations re-checked on that aggregate.

use super::runner::SeedRun;
use super::stats::Interval;
use crate::report::expect::{Check, Op, Over};
use serde_json::{Map, Value};

pub const SCHEMA: &str = "meshsim.seeds/1";

/// The aggregate of reports of the same scenario at different seeds. Numbers and
/// booleans (as 1/0, so a mean is a fraction) become intervals; strings stay when
/// every seed agrees, else become the list of each seed's; tables and lists are
/// walked key by key. An error count a seed does not list is a 0 for that seed (a
/// report lists only the statuses that happened); any other key a seed lacks is left
/// out of that key's mean, which `seeds` then says.
pub fn aggregate(reports: &[&Value]) -> Value {
    walk(reports, false)
}

/// `zero_fill`: these are the tables of an `errors` key, where an absent count is 0.
fn walk(vals: &[&Value], zero_fill: bool) -> Value {
    if vals.iter().all(|v| v.is_number() || v.is_boolean()) {
        let xs: Vec<f64> = vals.iter().map(|v| number(v)).collect();
        return Interval::of(&xs).to_json();
    }
    if vals.iter().all(|v| v.is_object()) {
        let mut keys: Vec<&String> = vals
            .iter()
            .flat_map(|v| v.as_object().expect("checked").keys())
            .collect();
        keys.sort();
        keys.dedup();
        let mut out = Map::new();
        for k in keys {
            let children: Vec<&Value> = vals.iter().filter_map(|v| v.get(k)).collect();
            let value = if zero_fill && children.len() < vals.len() {
                let zero = Value::from(0);
                let filled: Vec<&Value> = vals.iter().map(|v| v.get(k).unwrap_or(&zero)).collect();
                walk(&filled, false)
            } else {
                walk(&children, k == "errors")
            };
            out.insert(k.clone(), value);
        }
        return Value::Object(out);
    }
    if vals.iter().all(|v| v.is_array()) {
        if let Some(parts) = keyed_parts(vals) {
            return parts;
        }
        let len = vals
            .iter()
            .map(|v| v.as_array().expect("checked").len())
            .max()
            .unwrap_or(0);
        return Value::Array(
            (0..len)
                .map(|i| {
                    let children: Vec<&Value> = vals.iter().filter_map(|v| v.get(i)).collect();
                    walk(&children, false)
                })
                .collect(),
        );
    }
    if vals.windows(2).all(|w| w[0] == w[1]) {
        return vals.first().map_or(Value::Null, |v| (*v).clone());
    }
    Value::Array(vals.iter().map(|v| (*v).clone()).collect())
}

/// Lists of attribution parts (`{"where", "what", "share", ...}`): each seed sorts its
/// own by share, so position i can name different parts in different seeds. They are
/// aggregated by (where, what) instead, a part a seed lacks counting as a share of 0
/// there, and listed by mean share (ties by where, then what), as one report lists them.
fn keyed_parts(vals: &[&Value]) -> Option<Value> {
    let key = |p: &Value| {
        Some((
            p.get("where")?.as_str()?.to_owned(),
            p.get("what")?.as_str()?.to_owned(),
        ))
    };
    let lists: Vec<&Vec<Value>> = vals
        .iter()
        .map(|v| v.as_array().expect("checked"))
        .collect();
    let items = || lists.iter().flat_map(|l| l.iter());
    if items().next().is_none() || !items().all(|p| p.is_object() && key(p).is_some()) {
        return None;
    }
    let mut keys: Vec<(String, String)> = items().filter_map(key).collect();
    keys.sort();
    keys.dedup();
    let zero = Value::from(0);
    let mut parts: Vec<(f64, Value)> = keys
        .into_iter()
        .map(|k| {
            let found: Vec<Option<&Value>> = lists
                .iter()
                .map(|l| l.iter().find(|p| key(p).as_ref() == Some(&k)))
                .collect();
            let mut out = Map::new();
            out.insert("where".into(), Value::from(k.0.clone()));
            out.insert("what".into(), Value::from(k.1.clone()));
            let fields: Vec<&String> = {
                let mut f: Vec<&String> = found
                    .iter()
                    .flatten()
                    .flat_map(|p| p.as_object().expect("checked").keys())
                    .filter(|f| *f != "where" && *f != "what")
                    .collect();
                f.sort();
                f.dedup();
                f
            };
            for f in fields {
                let children: Vec<&Value> = if f == "share" {
                    found
                        .iter()
                        .map(|p| p.and_then(|p| p.get(f)).unwrap_or(&zero))
                        .collect()
                } else {
                    found
                        .iter()
                        .filter_map(|p| p.and_then(|p| p.get(f)))
                        .collect()
                };
                out.insert(f.clone(), walk(&children, false));
            }
            let share = out
                .get("share")
                .and_then(|s| s.get("mean"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            (share, Value::Object(out))
        })
        .collect();
    // Stable: equal shares keep the (where, what) order.
    parts.sort_by(|a, b| b.0.total_cmp(&a.0));
    Some(Value::Array(parts.into_iter().map(|(_, p)| p).collect()))
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => v.as_f64().expect("a JSON number is finite"),
    }
}

/// One expectation judged over seeds.
#[derive(Clone, Debug)]
pub struct Judged {
    pub check: String,
    pub over: Over,
    /// The statistic compared: the mean, the interval's far end, or (all_seeds) the
    /// worst seed's value.
    pub value: f64,
    pub passed: bool,
    /// Seeds whose own run failed the check.
    pub failed_seeds: Vec<u64>,
}

/// Judges `check` (the scenario's `index`-th expectation) over the seeds' runs.
pub fn judge(text: &str, check: &Check, over: Over, index: usize, runs: &[SeedRun]) -> Judged {
    let values: Vec<f64> = runs.iter().map(|r| r.checks[index].0).collect();
    let bounds: Vec<f64> = runs.iter().map(|r| r.checks[index].1).collect();
    let failed_seeds: Vec<u64> = runs
        .iter()
        .filter(|r| !r.checks[index].2)
        .map(|r| r.seed)
        .collect();
    let v = Interval::of(&values);
    let bound_mean = Interval::of(&bounds).mean;
    let (value, passed) = match over {
        Over::AllSeeds => {
            // The worst seed: the first failing one, else the one nearest its bound.
            let worst = runs
                .iter()
                .position(|r| !r.checks[index].2)
                .unwrap_or_else(|| nearest(&values, &bounds));
            (values[worst], failed_seeds.is_empty())
        }
        Over::Mean => (v.mean, check.op.holds(v.mean, bound_mean)),
        Over::Ci95 => {
            // The interval of value - bound, paired per seed, against 0: with a
            // constant bound this is the value's own interval against the bound.
            let diffs: Vec<f64> = values.iter().zip(&bounds).map(|(a, b)| a - b).collect();
            let d = Interval::of(&diffs);
            let (far, passed) = match check.op {
                Op::Lt | Op::Le => (d.high(), check.op.holds(d.high(), 0.0)),
                Op::Gt | Op::Ge => (d.low(), check.op.holds(d.low(), 0.0)),
                Op::Eq => (d.high(), d.low() == 0.0 && d.high() == 0.0),
                Op::Ne => (d.low(), !(d.low() <= 0.0 && d.high() >= 0.0)),
            };
            (far + bound_mean, passed)
        }
    };
    Judged {
        check: text.to_owned(),
        over,
        value,
        passed,
        failed_seeds,
    }
}

fn nearest(values: &[f64], bounds: &[f64]) -> usize {
    (0..values.len())
        .min_by(|&a, &b| {
            let da = (values[a] - bounds[a]).abs();
            let db = (values[b] - bounds[b]).abs();
            da.total_cmp(&db)
        })
        .unwrap_or(0)
}

/// The aggregate report: `aggregate` of the seeds' reports, with the run's identity
/// (`seeds` instead of `seed`) and the expectations judged over seeds.
pub fn report(runs: &[SeedRun], judged: &[Judged]) -> Value {
    let reports: Vec<&Value> = runs.iter().map(|r| &r.report).collect();
    let mut agg = aggregate(&reports);
    let m = agg.as_object_mut().expect("a report is a table");
    m.remove("seed");
    m.remove("expectations");
    m.insert("schema".into(), Value::from(SCHEMA));
    m.insert(
        "seeds".into(),
        Value::from(runs.iter().map(|r| r.seed).collect::<Vec<_>>()),
    );
    m.insert(
        "expectations".into(),
        Value::Array(
            judged
                .iter()
                .map(|j| {
                    serde_json::json!({
                        "check": j.check,
                        "over": j.over.name(),
                        "value": finite(j.value),
                        "passed": j.passed,
                        "failed_seeds": j.failed_seeds,
                    })
                })
                .collect(),
        ),
    );
    agg
}

fn finite(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn runs(values: &[f64], bound: f64) -> Vec<SeedRun> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| SeedRun {
                seed: 10 + i as u64,
                report: json!({}),
                timeseries: Vec::new(),
                checks: vec![(v, bound, v < bound)],
                events: 0,
                curves: Vec::new(),
                files: None,
            })
            .collect()
    }

    #[test]
    fn each_statistic_judges_as_documented() {
        let check = crate::report::expect::parse("x < 2.5").unwrap();
        let r = runs(&[1.0, 2.0, 3.0], 2.5);
        // The mean, 2, is below 2.5.
        let mean = judge("x < 2.5", &check, Over::Mean, 0, &r);
        assert_eq!(
            (mean.value, mean.passed, mean.failed_seeds.as_slice()),
            (2.0, true, &[12][..])
        );
        // Seed 12 (value 3) fails on its own.
        let all = judge("x < 2.5", &check, Over::AllSeeds, 0, &r);
        assert_eq!((all.value, all.passed), (3.0, false));
        // The interval's upper end: 2 + t(0.975, 2) x 1 / sqrt(3) = 4.484.
        let ci = judge("x < 2.5", &check, Over::Ci95, 0, &r);
        assert!(!ci.passed);
        assert!(
            (ci.value - (2.0 + 4.302_652_730 / 3f64.sqrt())).abs() < 1e-6,
            "{}",
            ci.value
        );
        // `>`: the lower end, 4 - 2.484 = 1.516, is above 1.
        let gt = crate::report::expect::parse("x > 1").unwrap();
        let r = runs(&[3.0, 4.0, 5.0], 1.0);
        let ci = judge("x > 1", &gt, Over::Ci95, 0, &r);
        assert!(ci.passed && (ci.value - (4.0 - 4.302_652_730 / 3f64.sqrt())).abs() < 1e-6);
        let gt3 = crate::report::expect::parse("x > 3").unwrap();
        assert!(!judge("x > 3", &gt3, Over::Ci95, 0, &runs(&[3.0, 4.0, 5.0], 3.0)).passed);
        assert!(judge("x > 3", &gt3, Over::Mean, 0, &runs(&[3.0, 4.0, 5.0], 3.0)).passed);
    }

    #[test]
    fn attribution_parts_are_aggregated_by_where_and_what_not_by_position() {
        let a = serde_json::json!({"p99": [
            {"where": "a/x", "what": "work", "share": 0.75, "mean_ms": 30.0},
            {"where": "b/y", "what": "network", "share": 0.25, "mean_ms": 10.0}]});
        let b = serde_json::json!({"p99": [
            {"where": "b/y", "what": "network", "share": 0.5, "mean_ms": 20.0},
            {"where": "a/x", "what": "work", "share": 0.25, "mean_ms": 10.0},
            {"where": "c/z", "what": "queue_wait", "share": 0.25, "mean_ms": 10.0}]});
        let agg = aggregate(&[&a, &b]);
        let parts = agg["p99"].as_array().unwrap();
        let names: Vec<(&str, &str)> = parts
            .iter()
            .map(|p| (p["where"].as_str().unwrap(), p["what"].as_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [("a/x", "work"), ("b/y", "network"), ("c/z", "queue_wait")]
        );
        assert_eq!(parts[0]["share"]["mean"], 0.5);
        assert_eq!(parts[1]["share"]["mean"], 0.375);
        // Absent in one seed: a share of 0 there; its mean_ms from the seed that has it.
        assert_eq!(parts[2]["share"]["mean"], 0.125);
        assert_eq!(parts[2]["mean_ms"]["mean"], 10.0);
        assert_eq!(parts[2]["mean_ms"]["seeds"], 1);
        let shares: f64 = parts
            .iter()
            .map(|p| p["share"]["mean"].as_f64().unwrap())
            .sum();
        assert_eq!(shares, 1.0);
    }

    #[test]
    fn aggregate_is_the_mean_with_missing_error_counts_as_zero() {
        let a =
            json!({"w": {"ok": 10, "errors": {"timeout": 4}, "stop": "end_time", "flag": true}});
        let b = json!({"w": {"ok": 20, "errors": {}, "stop": "end_time", "flag": false}});
        let agg = aggregate(&[&a, &b]);
        assert_eq!(agg["w"]["ok"]["mean"], 15.0);
        assert_eq!(agg["w"]["ok"]["seeds"], 2);
        assert_eq!(agg["w"]["errors"]["timeout"]["mean"], 2.0);
        assert_eq!(agg["w"]["errors"]["timeout"]["seeds"], 2);
        assert_eq!(agg["w"]["stop"], "end_time");
        assert_eq!(agg["w"]["flag"]["mean"], 0.5);
        // t(0.975, 1) = 12.706: 15 +- 12.706 x 5.
        let ci = agg["w"]["ok"]["ci95"].as_array().unwrap();
        assert!((ci[1].as_f64().unwrap() - (15.0 + 12.706_204_736 * 5.0)).abs() < 1e-5);
    }
}
