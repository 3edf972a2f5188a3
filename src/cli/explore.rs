//! `meshsim explore`: seeds in parallel, the first failure (in seed order, so the same
//! whatever the thread count) shrunk and written as a replay that fails.

use super::{invalid, source};
use crate::explore::{self, Plan};
use crate::multi::runner::{self, default_out};
use crate::report;
use crate::scenario;
use std::path::PathBuf;
use std::process::ExitCode;

pub struct ExploreArgs {
    pub scenario: String,
    pub seeds: Option<u64>,
    pub first_seed: u64,
    pub out: Option<PathBuf>,
    pub threads: Option<usize>,
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
    // Seeds are TOML integers: the last one must fit in 2^63 - 1.
    let last = match a.first_seed.checked_add(n - 1).filter(|&l| l <= i64::MAX as u64) {
        Some(l) => l,
        None => {
            return invalid(&format!(
                "--first-seed {} with {n} seeds goes past the largest seed, 2^63 - 1 = {}; start at {} at most",
                a.first_seed,
                i64::MAX,
                (i64::MAX as u64) - (n - 1)
            ));
        }
    };
    let pool = match runner::pool(a.threads) {
        Ok(p) => p,
        Err(e) => return invalid(&e),
    };
    // Seeds go in batches so a failure early on stops the search soon; the first
    // failing seed of a batch, in seed order, is the one reported.
    let batch = (pool.current_num_threads() * 4) as u64;
    let mut next = a.first_seed;
    let found = loop {
        if next > last {
            break None;
        }
        let end = last.min(next.saturating_add(batch - 1));
        let seeds: Vec<u64> = (next..=end).collect();
        let results = runner::map_ordered(&pool, &seeds, "explore", |&seed| {
            let drawn = explore::draw(&plan, seed);
            explore::trial(&path, &name, &text, &plan, seed, &drawn).map(|p| (seed, drawn, p))
        });
        let mut hit = None;
        for r in results {
            match r {
                Ok((_, _, p)) if p.is_empty() => {}
                Ok(found) => {
                    hit = Some(found);
                    break;
                }
                Err(e) => return invalid(&e),
            }
        }
        if hit.is_some() {
            break hit;
        }
        next = end + 1;
    };
    let Some((seed, drawn, problems)) = found else {
        let what = if plan.templates.is_empty() {
            "no fault templates: every seed ran as written"
        } else {
            "each with a drawn fault schedule"
        };
        println!(
            "{n} seeds from {} ({what}): every run met its expectations and the consistency invariants",
            a.first_seed
        );
        return ExitCode::SUCCESS;
    };
    println!("seed {seed} fails with {} drawn faults:", drawn.len());
    for p in &problems {
        println!("  {p}");
    }
    let minimal = explore::shrink(
        |fs| explore::trial(&path, &name, &text, &plan, seed, fs).is_ok_and(|p| !p.is_empty()),
        drawn,
    );
    let problems = explore::trial(&path, &name, &text, &plan, seed, &minimal).unwrap_or(problems);
    let dir = a.out.unwrap_or_else(|| default_out("explore", &[]));
    let file_name = format!("{name}-seed-{seed}.toml");
    let replay = explore::replay(&text, &plan, seed, &minimal, &problems);
    if let Err(e) = report::write_all(&dir, &[(&file_name, replay.into_bytes())]) {
        eprintln!("cannot write {}: {e}", dir.join(&file_name).display());
        return ExitCode::from(2);
    }
    println!(
        "\nminimal fault schedule ({} faults):{}",
        minimal.len(),
        explore::faults_toml(&plan, &minimal)
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
