//! `meshsim explore`: seeds in parallel, the first failure (in seed order, so the same
//! whatever the thread count) shrunk and written as a replay that fails.

use super::{invalid, source};
use crate::explore::{self, Drawn, Plan, Problem};
use crate::multi::runner::{self, default_out};
use crate::report;
use crate::scenario;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ExploreArgs {
    pub scenario: String,
    /// How many seeds [default: the [explore] section's `seeds`, else 100].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=crate::multi::runner::MAX_SEEDS))]
    pub seeds: Option<u64>,
    /// The first seed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
    pub first_seed: u64,
    /// Where to write the replay scenario [default: out/explore].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run only slice i of N (seeds i-1 modulo N after the first); `meshsim merge`
    /// keeps the lowest failing seed.
    #[arg(long, value_name = "i/N")]
    pub shard: Option<String>,
}

/// explore.json: what an exploration (or one shard of it) covered and found. Shards
/// of one exploration differ only in `shard` and what they found; `merge` keeps the
/// lowest failing seed, which is what the unsharded exploration stops at.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Found {
    pub schema: String,
    pub scenario: String,
    /// FNV-1a of the scenario text, in hex.
    pub scenario_hash: String,
    pub first_seed: u64,
    pub seeds: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shard: Option<[usize; 2]>,
    /// The first failing seed of the seeds covered, and its replay file's name.
    pub failing_seed: Option<u64>,
    pub replay: Option<String>,
}

pub const SCHEMA: &str = "meshsim.explore/1";

/// Unites the explore.json (and replay) of every shard 1..N of one exploration.
pub fn merge(parts: Vec<(PathBuf, Found)>, out: &std::path::Path) -> ExitCode {
    let Some((_, first)) = parts.first() else {
        return invalid(&"merge: no shard folders given");
    };
    let Some([_, n]) = first.shard else {
        return invalid(&format!(
            "{}: a whole exploration, not a shard",
            parts[0].0.display()
        ));
    };
    if let Err(e) = every_shard_once(&parts, n) {
        return invalid(&e);
    }
    let lowest = parts
        .iter()
        .filter_map(|(d, f)| Some((f.failing_seed?, d, f)))
        .min_by_key(|x| x.0);
    let mut whole = exploration(first);
    let mut files = Vec::new();
    if let Some((seed, dir, f)) = lowest {
        let name = f.replay.clone().unwrap_or_default();
        match std::fs::read(dir.join(&name)) {
            Ok(bytes) => files.push((name.clone(), bytes)),
            Err(e) => return invalid(&format!("{}: {e}", dir.join(&name).display())),
        }
        whole.failing_seed = Some(seed);
        whole.replay = Some(name);
    }
    files.push(("explore.json".to_owned(), found_json(&whole)));
    let named: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    if let Err(e) = report::write_all(out, &named) {
        eprintln!("cannot write to {}: {e}", out.display());
        return ExitCode::from(2);
    }
    match whole.failing_seed {
        Some(s) => {
            println!(
                "merged {n} shards: seed {s} fails first; replay in {}",
                out.join(whole.replay.unwrap_or_default()).display()
            );
            ExitCode::from(1)
        }
        None => {
            println!(
                "merged {n} shards: every seed met its expectations and the consistency invariants"
            );
            ExitCode::SUCCESS
        }
    }
}

/// What every shard of one exploration shares: all but which shard it is and what it
/// found.
fn exploration(f: &Found) -> Found {
    Found {
        shard: None,
        failing_seed: None,
        replay: None,
        ..f.clone()
    }
}

/// Checks that `parts` are the shards 1..=n of one exploration, each given once.
fn every_shard_once(parts: &[(PathBuf, Found)], n: usize) -> Result<(), String> {
    let first = exploration(&parts[0].1);
    let mut seen = vec![false; n];
    for (dir, f) in parts {
        match f.shard {
            Some([i, m]) if m == n && exploration(f) == first => {
                if std::mem::replace(&mut seen[i - 1], true) {
                    return Err(format!("{}: shard {i}/{n} given twice", dir.display()));
                }
            }
            _ => {
                return Err(format!(
                    "{}: not a shard of the same exploration as {}",
                    dir.display(),
                    parts[0].0.display()
                ));
            }
        }
    }
    match seen.iter().position(|s| !s) {
        Some(i) => Err(format!("merge: shard {}/{n} is missing", i + 1)),
        None => Ok(()),
    }
}

fn found_json(f: &Found) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(f).expect("serializes");
    s.push('\n');
    s.into_bytes()
}

pub fn explore(a: ExploreArgs) -> ExitCode {
    let (path, stem, text) = match source(&a.scenario) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    // The scenario itself must be valid before anything is drawn.
    let sc = match scenario::from_source(&path, &stem, &text, &[]) {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    let name = sc.name.clone();
    let plan = match explore::plan(&path, &text) {
        Ok(Some(p)) => p,
        Ok(None) => Plan::seed_search(),
        Err(e) => return invalid(&e),
    };
    let known: Vec<&str> = sc.spec.effects.iter().map(|e| e.name.as_str()).collect();
    if let Err(e) = explore::check_effects(&path, &text, &plan, &known) {
        return invalid(&e);
    }
    let n = a.seeds.unwrap_or(plan.seeds);
    let last = match last_seed(a.first_seed, n) {
        Ok(l) => l,
        Err(e) => return invalid(&e),
    };
    let shard = match a
        .shard
        .as_deref()
        .map(crate::multi::sweep::parse_shard)
        .transpose()
    {
        Ok(s) => s,
        Err(e) => return invalid(&e),
    };
    let [shard_i, shard_n] = shard.unwrap_or([1, 1]);
    let found_file = Found {
        schema: SCHEMA.to_owned(),
        scenario: path.clone(),
        scenario_hash: format!("{:016x}", crate::engine::rng::stable_hash(text.as_bytes())),
        first_seed: a.first_seed,
        seeds: n,
        shard,
        failing_seed: None,
        replay: None,
    };
    let dir = a.out.clone().unwrap_or_else(|| match shard {
        Some([i, n]) => default_out("explore", &[]).join(format!("shard-{i}-of-{n}")),
        None => default_out("explore", &[]),
    });
    let pool = match runner::pool(a.threads) {
        Ok(p) => p,
        Err(e) => return invalid(&e),
    };
    let subject = Subject {
        path: &path,
        name: &name,
        text: &text,
        plan: &plan,
    };
    let found = match search(&subject, &pool, a.first_seed, last, [shard_i, shard_n]) {
        Ok(f) => f,
        Err(e) => return invalid(&e),
    };
    let Some((seed, drawn, problems)) = found else {
        return none_failed(&plan, &dir, &found_file);
    };
    shrink_and_replay(&subject, &dir, found_file, seed, drawn, problems)
}

/// Seeds are TOML integers: the last one of `n` from `first` must fit in 2^63 - 1.
fn last_seed(first: u64, n: u64) -> Result<u64, String> {
    first
        .checked_add(n - 1)
        .filter(|&l| l <= i64::MAX as u64)
        .ok_or_else(|| {
            format!(
                "--first-seed {first} with {n} seeds goes past the largest seed, 2^63 - 1 = {}; start at {} at most",
                i64::MAX,
                (i64::MAX as u64) - (n - 1)
            )
        })
}

/// The scenario an exploration runs and its plan: what every trial needs.
struct Subject<'a> {
    path: &'a str,
    name: &'a str,
    text: &'a str,
    plan: &'a Plan,
}

impl Subject<'_> {
    /// What goes wrong when seed `seed` runs with `faults`.
    fn trial(&self, seed: u64, faults: &[Drawn]) -> Result<Vec<Problem>, String> {
        explore::trial(self.path, self.name, self.text, self.plan, seed, faults)
    }
}

/// The first failing seed: its draws and what went wrong.
type Failure = (u64, Vec<Drawn>, Vec<Problem>);

/// The first failing seed of this shard's seeds from `first` to `last`, with its
/// drawn faults and what went wrong; None when every seed passed.
fn search(
    s: &Subject,
    pool: &rayon::ThreadPool,
    first: u64,
    last: u64,
    [shard_i, shard_n]: [usize; 2],
) -> Result<Option<Failure>, String> {
    // Seeds go in batches so a failure early on stops the search soon; the first
    // failing seed of a batch, in seed order, is the one reported.
    let batch = (pool.current_num_threads() * 4) as u64;
    let mut next = first;
    let mut bar = super::views::Bar::new(
        false,
        Some(last.saturating_sub(first).saturating_add(1)),
        "{bar:40} seed {pos}/{len} · ETA {eta}",
    );
    let found = loop {
        if next > last {
            break None;
        }
        let end = last.min(next.saturating_add(batch - 1));
        // A shard takes the seeds i-1 modulo N places after the first.
        let seeds: Vec<u64> = (next..=end)
            .filter(|s| (s - first) % shard_n as u64 == shard_i as u64 - 1)
            .collect();
        let results = runner::map_ordered(pool, &seeds, "explore", |&seed| {
            let drawn = explore::draw(s.plan, seed);
            s.trial(seed, &drawn).map(|p| (seed, drawn, p))
        });
        let mut hit = None;
        for r in results {
            match r {
                Ok((_, _, p)) if p.is_empty() => {}
                Ok(found) => {
                    hit = Some(found);
                    break;
                }
                Err(e) => {
                    bar.finish();
                    return Err(e);
                }
            }
        }
        bar.advance(end - next + 1);
        if hit.is_some() {
            break hit;
        }
        next = end + 1;
    };
    bar.finish();
    Ok(found)
}

/// Writes explore.json for a search in which every seed passed, and says so.
fn none_failed(plan: &Plan, dir: &std::path::Path, found_file: &Found) -> ExitCode {
    let what = if plan.templates.is_empty() {
        "no fault templates: every seed ran as written"
    } else {
        "each with a drawn fault schedule"
    };
    if let Err(e) = report::write_all(dir, &[("explore.json", found_json(found_file))]) {
        eprintln!("cannot write to {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let slice = match found_file.shard {
        Some([i, n]) => format!(" (shard {i}/{n})"),
        None => String::new(),
    };
    println!(
        "{} seeds from {}{slice} ({what}): every run met its expectations and the consistency invariants",
        found_file.seeds, found_file.first_seed
    );
    ExitCode::SUCCESS
}

/// Shrinks a failing seed's fault schedule to one that still fails, writes it as a
/// replay scenario beside explore.json, and says how to run it.
fn shrink_and_replay(
    s: &Subject,
    dir: &std::path::Path,
    mut found_file: Found,
    seed: u64,
    drawn: Vec<Drawn>,
    problems: Vec<Problem>,
) -> ExitCode {
    println!("seed {seed} fails with {} drawn faults:", drawn.len());
    for p in &problems {
        println!("  {p}");
    }
    let minimal = explore::shrink(|fs| s.trial(seed, fs).is_ok_and(|p| !p.is_empty()), drawn);
    let problems = s.trial(seed, &minimal).unwrap_or(problems);
    let file_name = format!("{}-seed-{seed}.toml", s.name);
    let replay = explore::replay(s.text, s.plan, seed, &minimal, &problems);
    found_file.failing_seed = Some(seed);
    found_file.replay = Some(file_name.clone());
    let files = [
        (file_name.as_str(), replay.into_bytes()),
        ("explore.json", found_json(&found_file)),
    ];
    if let Err(e) = report::write_all(dir, &files) {
        eprintln!("cannot write {}: {e}", dir.join(file_name).display());
        return ExitCode::from(2);
    }
    println!(
        "\nminimal fault schedule ({} faults):{}",
        minimal.len(),
        explore::faults_toml(s.plan, &minimal)
    );
    println!("it still fails with:");
    for p in &problems {
        println!("  {p}");
    }
    let file = dir.join(&file_name).display().to_string();
    println!(
        "\nreplay (fails until fixed): meshsim run {} --seed {seed}",
        runner::shell_quote(&file)
    );
    ExitCode::from(1)
}
