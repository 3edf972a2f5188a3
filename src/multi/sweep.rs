//! `meshsim sweep`: a grid of parameter values x seeds, run in parallel, written as
//! `sweep.csv` (one row per point x seed), `points.csv` (mean and 95% interval per
//! point, plus each workload's latency quantiles over every request of the point's
//! seeds) and `runs.json` (everything needed to recompute both, latency histograms
//! included). A shard (`--shard i/N`) runs the runs whose index is i-1 modulo N and
//! writes its rows and its `runs.json`; `merge` unites shards and writes exactly what
//! the unsharded sweep writes, byte for byte: latency statistics of a point come from
//! its runs' histograms merged bucket by bucket, never from averaged percentiles.

use super::runner::Design;
use super::stats::Interval;
use crate::metrics::loghist::LogHistogram;
use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "meshsim.sweep/1";
/// The most grid points one sweep runs.
pub const MAX_POINTS: usize = 100_000;
/// The most runs (points x seeds) one sweep has: each run keeps its latency histograms
/// (tens of KB) until the files are written, and a merge holds every shard's.
pub const MAX_RUNS: usize = 100_000;
/// The quantiles `points.csv` reports over a point's pooled requests.
const POOLED: [(&str, f64); 2] = [("p50", 0.5), ("p99", 0.99)];

/// One swept parameter: a scenario path and its values (each as `--set` reads it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Param {
    pub path: String,
    pub values: Vec<String>,
}

/// What a sweep is: everything but its results. Shards of one sweep have equal plans.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub schema: String,
    pub scenario: String,
    /// FNV-1a of the scenario text, in hex: shards must have run the same file.
    pub scenario_hash: String,
    pub set: Vec<String>,
    pub params: Vec<Param>,
    pub seeds: Vec<u64>,
    pub metrics: Vec<String>,
    /// Workloads whose latency histograms are kept.
    pub workloads: Vec<String>,
}

/// A saved latency distribution: exact count and extremes, histogram buckets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Hist {
    pub count: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    /// (bucket index, count) of the non-empty buckets.
    pub buckets: Vec<(usize, u64)>,
}

/// One run: point x seed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub point: usize,
    pub seed: u64,
    /// The plan's metrics, in order.
    pub values: Vec<f64>,
    /// The plan's workloads' latencies, in order.
    pub latency: Vec<Hist>,
}

/// runs.json.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Output {
    pub plan: Plan,
    /// `[i, N]` for a shard; absent for a whole sweep (or a merge).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shard: Option<[usize; 2]>,
    pub runs: Vec<Run>,
}

impl Plan {
    pub fn points(&self) -> usize {
        self.params.iter().map(|p| p.values.len()).product()
    }

    pub fn runs(&self) -> usize {
        self.points() * self.seeds.len()
    }

    /// The values of point `i`; the last parameter varies fastest.
    pub fn point(&self, mut i: usize) -> Vec<&str> {
        let mut out = vec![""; self.params.len()];
        for (k, p) in self.params.iter().enumerate().rev() {
            out[k] = &p.values[i % p.values.len()];
            i /= p.values.len();
        }
        out
    }

    /// The overrides that make point `i`: the sweep's `--set`s, then its parameters.
    pub fn overrides(&self, i: usize) -> Vec<String> {
        let mut set = self.set.clone();
        for (p, v) in self.params.iter().zip(self.point(i)) {
            set.push(format!("{}={v}", p.path));
        }
        set
    }

    /// Run `r` is point r / seeds at seed r % seeds.
    pub fn run_of(&self, r: usize) -> (usize, u64) {
        let n = self.seeds.len();
        (r / n, self.seeds[r % n])
    }

    fn index(&self, run: &Run) -> Option<usize> {
        let s = self.seeds.iter().position(|&x| x == run.seed)?;
        (run.point < self.points()).then(|| run.point * self.seeds.len() + s)
    }
}

/// `--param PATH=v1,v2,...`: commas inside braces, brackets or quotes belong to a
/// value (`--param 'a.work={ dist = "exponential", mean = "1s" },{ ... }'`).
pub fn parse_param(text: &str) -> Result<Param, String> {
    let expected = "PATH=v1,v2,... e.g. workloads.shoppers.rate=20,40,80";
    let (path, list) = text
        .split_once('=')
        .ok_or_else(|| format!("--param {text}: no `=`; expected {expected}"))?;
    let mut values = Vec::new();
    let (mut depth, mut quoted, mut cur) = (0i32, false, String::new());
    for c in list.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' | '[' if !quoted => depth += 1,
            '}' | ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                values.push(std::mem::take(&mut cur).trim().to_owned());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    values.push(cur.trim().to_owned());
    let path = path.trim();
    if path.is_empty() || values.iter().any(String::is_empty) {
        return Err(format!(
            "--param {text}: an empty path or value; expected {expected}"
        ));
    }
    Ok(Param {
        path: path.to_owned(),
        values,
    })
}

/// `--shard i/N` (1 <= i <= N <= 10000).
pub fn parse_shard(text: &str) -> Result<[usize; 2], String> {
    let bad = || format!("--shard {text}: expected i/N with 1 <= i <= N <= 10000, e.g. 2/8");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || i > n || n > 10_000 {
        return Err(bad());
    }
    Ok([i, n])
}

/// Runs the sweep's runs (all of them, or one shard's) on `pool`.
pub fn run(
    pool: &rayon::ThreadPool,
    design: &Design,
    plan: &Plan,
    shard: Option<[usize; 2]>,
) -> Result<Output, String> {
    let [i, n] = shard.unwrap_or([1, 1]);
    let mine: Vec<usize> = (0..plan.runs()).filter(|r| r % n == i - 1).collect();
    let paths: Vec<Vec<String>> = plan
        .metrics
        .iter()
        .map(|m| crate::report::expect::parse(&format!("{m} == 0")).map(|c| c.path))
        .collect::<Result<_, _>>()?;
    let runs = super::runner::map_ordered(pool, &mine, "sweep", |&r| {
        let (point, seed) = plan.run_of(r);
        let variant = Design {
            source: design.source.clone(),
            set: plan.overrides(point),
        };
        let sc = variant.scenario(Some(seed)).map_err(|e| e.to_string())?;
        // Nothing reads a sweep run's time series: its rows are dropped as buckets close.
        let dropped = Some(Box::new(super::runner::DroppedRows) as _);
        let outcome = crate::simulate_streaming(sc, &mut |_| Ok(()), dropped)
            .map_err(|e| format!("point {point} seed {seed}: {e}"))?;
        let json = outcome.report.json_value();
        let values = paths
            .iter()
            .map(|p| crate::report::expect::resolve(&json, p))
            .collect::<Result<Vec<f64>, String>>()?;
        let latency = plan
            .workloads
            .iter()
            .map(|w| {
                let m = outcome.metrics.workloads.iter().find(|x| &x.name == w);
                m.map_or(
                    Hist {
                        count: 0,
                        min_ns: 0,
                        max_ns: 0,
                        buckets: Vec::new(),
                    },
                    |m| {
                        let (h, min_ns, max_ns) = m.latency.histogram();
                        Hist {
                            count: h.len(),
                            min_ns,
                            max_ns,
                            buckets: h.buckets().collect(),
                        }
                    },
                )
            })
            .collect();
        Ok(Run {
            point,
            seed,
            values,
            latency,
        })
    });
    Ok(Output {
        plan: plan.clone(),
        shard,
        runs: runs.into_iter().collect::<Result<_, String>>()?,
    })
}

fn csv_bytes(rows: Vec<Vec<String>>) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.write_record(&r).expect("writing to memory");
    }
    w.into_inner().expect("writing to memory")
}

fn num(x: f64) -> String {
    format!("{x}")
}

/// sweep.csv: point, seed, the parameters, the metrics; one row per run.
pub fn sweep_csv(out: &Output) -> Vec<u8> {
    let plan = &out.plan;
    let mut header = vec!["point".to_owned(), "seed".to_owned()];
    header.extend(plan.params.iter().map(|p| p.path.clone()));
    header.extend(plan.metrics.iter().cloned());
    let mut rows = vec![header];
    for r in &out.runs {
        let mut row = vec![r.point.to_string(), r.seed.to_string()];
        row.extend(plan.point(r.point).into_iter().map(str::to_owned));
        row.extend(r.values.iter().map(|&x| num(x)));
        rows.push(row);
    }
    csv_bytes(rows)
}

/// points.csv: per point its parameters, the number of seeds, each metric's mean and
/// 95% interval, and each workload's latency quantiles over every request of the
/// point's seeds (from their merged histograms).
pub fn points_csv(out: &Output) -> Result<Vec<u8>, String> {
    let plan = &out.plan;
    let mut header = vec!["point".to_owned()];
    header.extend(plan.params.iter().map(|p| p.path.clone()));
    header.push("seeds".to_owned());
    for m in &plan.metrics {
        for s in ["mean", "ci95_low", "ci95_high"] {
            header.push(format!("{m}.{s}"));
        }
    }
    for w in &plan.workloads {
        for (q, _) in POOLED {
            header.push(format!("workloads.{w}.latency_ms.pooled_{q}"));
        }
    }
    let mut rows = vec![header];
    for point in 0..plan.points() {
        let runs: Vec<&Run> = out.runs.iter().filter(|r| r.point == point).collect();
        if runs.is_empty() {
            continue;
        }
        let mut row = vec![point.to_string()];
        row.extend(plan.point(point).into_iter().map(str::to_owned));
        row.push(runs.len().to_string());
        for k in 0..plan.metrics.len() {
            let xs: Vec<f64> = runs.iter().map(|r| r.values[k]).collect();
            let i = Interval::of(&xs);
            row.push(num(i.mean));
            match i.ci95 {
                Some([lo, hi]) => row.extend([num(lo), num(hi)]),
                None => row.extend([String::new(), String::new()]),
            }
        }
        for w in 0..plan.workloads.len() {
            let mut h: LogHistogram<u64> = LogHistogram::default();
            let (mut min_ns, mut max_ns) = (u64::MAX, 0);
            for r in &runs {
                let s = &r.latency[w];
                for &(b, c) in &s.buckets {
                    if !h.add_bucket(b, c) {
                        return Err(format!("runs.json: no latency bucket {b}"));
                    }
                }
                if s.count > 0 {
                    min_ns = min_ns.min(s.min_ns);
                    max_ns = max_ns.max(s.max_ns);
                }
            }
            for (_, q) in POOLED {
                row.push(if h.is_empty() {
                    String::new()
                } else {
                    num(h.quantile(q).clamp(min_ns, max_ns) as f64 * 1e-6)
                });
            }
        }
        rows.push(row);
    }
    Ok(csv_bytes(rows))
}

pub fn runs_json(out: &Output) -> Vec<u8> {
    let mut s = serde_json::to_string(out).expect("serializes");
    s.push('\n');
    s.into_bytes()
}

/// The files a sweep (or a shard of one) writes.
pub fn files(out: &Output) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let mut f = vec![("sweep.csv", sweep_csv(out)), ("runs.json", runs_json(out))];
    if out.shard.is_none() {
        f.push(("points.csv", points_csv(out)?));
    }
    Ok(f)
}

/// Unites the shards of one sweep into the whole: every shard 1..N exactly once, of
/// the same plan, every run present once.
pub fn merge(parts: Vec<(String, Output)>) -> Result<Output, String> {
    let Some((first_dir, first)) = parts.first() else {
        return Err("merge: no shard folders given".to_owned());
    };
    let (first_dir, plan, first_shard) = (first_dir.clone(), first.plan.clone(), first.shard);
    let n = match first_shard {
        Some([_, n]) => n,
        None => return Err(format!("{first_dir}: a whole sweep, not a shard")),
    };
    let mut seen = vec![false; n];
    let mut runs: Vec<Option<Run>> = vec![None; plan.runs()];
    for (dir, part) in parts {
        if part.plan != plan {
            return Err(format!(
                "{dir}: a shard of another sweep than {first_dir} (scenario, parameters, seeds or metrics differ)"
            ));
        }
        let [i, m] = part
            .shard
            .ok_or_else(|| format!("{dir}: a whole sweep, not a shard"))?;
        if m != n {
            return Err(format!(
                "{dir}: shard {i}/{m}, but {first_dir} is one of {n}"
            ));
        }
        if std::mem::replace(&mut seen[i - 1], true) {
            return Err(format!("{dir}: shard {i}/{n} given twice"));
        }
        for run in part.runs {
            let r = plan.index(&run).filter(|r| r % n == i - 1).ok_or_else(|| {
                format!(
                    "{dir}: a run (point {}, seed {}) outside its shard",
                    run.point, run.seed
                )
            })?;
            if run.values.len() != plan.metrics.len() || run.latency.len() != plan.workloads.len() {
                return Err(format!("{dir}: run {r} does not match the plan's metrics"));
            }
            if runs[r].replace(run).is_some() {
                return Err(format!("{dir}: run {r} twice"));
            }
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(format!("merge: shard {}/{n} is missing", i + 1));
    }
    let runs = runs
        .into_iter()
        .enumerate()
        .map(|(r, x)| x.ok_or_else(|| format!("merge: run {r} is missing from its shard")))
        .collect::<Result<Vec<Run>, String>>()?;
    Ok(Output {
        plan,
        shard: None,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            schema: SCHEMA.into(),
            scenario: "s".into(),
            scenario_hash: "0".into(),
            set: vec![],
            params: vec![
                parse_param("a.x=1,2").unwrap(),
                parse_param("b.y={ k = 1, j = 2 },[3,4],\"p,q\"").unwrap(),
            ],
            seeds: vec![5, 6],
            metrics: vec!["m".into()],
            workloads: vec![],
        }
    }

    #[test]
    fn grid_order_and_values() {
        let p = plan();
        assert_eq!(p.params[1].values, ["{ k = 1, j = 2 }", "[3,4]", "\"p,q\""]);
        assert_eq!((p.points(), p.runs()), (6, 12));
        assert_eq!(p.point(0), ["1", "{ k = 1, j = 2 }"]);
        assert_eq!(p.point(4), ["2", "[3,4]"]);
        assert_eq!(p.run_of(9), (4, 6));
        assert_eq!(p.overrides(5), ["a.x=2", "b.y=\"p,q\""]);
        assert!(parse_param("a.x=1,,2").is_err());
        assert_eq!(parse_shard("2/3").unwrap(), [2, 3]);
        assert!(parse_shard("0/3").is_err() && parse_shard("4/3").is_err());
    }

    #[test]
    fn merge_refuses_missing_duplicate_and_foreign_shards() {
        let p = plan();
        let run = |r: usize| {
            let (point, seed) = p.run_of(r);
            Run {
                point,
                seed,
                values: vec![r as f64],
                latency: vec![],
            }
        };
        let shard = |i: usize| Output {
            plan: p.clone(),
            shard: Some([i, 2]),
            runs: (0..12).filter(|r| r % 2 == i - 1).map(run).collect(),
        };
        let whole = merge(vec![("a".into(), shard(2)), ("b".into(), shard(1))]).unwrap();
        assert_eq!(whole.runs, (0..12).map(run).collect::<Vec<_>>());
        assert!(
            merge(vec![("a".into(), shard(1))])
                .unwrap_err()
                .contains("2/2 is missing")
        );
        assert!(
            merge(vec![("a".into(), shard(1)), ("b".into(), shard(1))])
                .unwrap_err()
                .contains("twice")
        );
        let mut other = shard(2);
        other.plan.seeds = vec![7, 8];
        assert!(
            merge(vec![("a".into(), shard(1)), ("b".into(), other)])
                .unwrap_err()
                .contains("another sweep")
        );
    }
}
