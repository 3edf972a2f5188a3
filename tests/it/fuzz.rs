//! A structured mutation fuzzer over the bundled scenarios (issue 11, section 6).
//!
//! Case `i` takes bundled scenario `i mod n` and applies one to three mutations drawn
//! from a ChaCha8 stream seeded with `i` (so a case number is its own reproducer):
//! numbers to 0, -1, huge, NaN or infinite; durations to zero, a nanosecond or the end
//! of the clock; a field dropped, duplicated, renamed to a sibling's name or retyped;
//! two names swapped; an array entry copied or removed; a table copied under a new
//! name; a line duplicated or removed; the text truncated. The event budget is capped
//! so every run is short.
//!
//! Each mutant must be, exactly as `meshsim run` would judge it: accepted and run
//! (exit 0 or 1), or refused with every error located (`file:line:column`, exit 2),
//! a refused run included. A panic, an unlocated error, an abort (an allocation
//! failure kills the process) or a hang is a finding. Cases run in child processes
//! (this test binary, its `fuzz::worker` test) under a memory limit, so an abort or a
//! hang is caught, attributed to its case, and the next batch goes on after it.
//!
//! `cargo test` runs 300 cases; the long run (see the README) is
//! `MESHSIM_FUZZ_CASES=100000 cargo test --release --test it fuzz::mutants`, which also
//! writes its findings to `target/fuzz-findings.txt`.

use super::support;
use meshsim::scenario;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use toml::Value;

/// The event budget every mutant runs under (unless it sets a smaller one).
const MAX_EVENTS: i64 = 50_000;
/// The test that, with `MESHSIM_FUZZ_WORKER=FROM..TO` set, is the worker.
const WORKER_TEST: &str = "fuzz::mutants_of_the_bundled_scenarios_run_or_are_refused_at_a_location";
/// A case that prints nothing for this long is a hang. Generous: the machine is shared.
const HANG: Duration = Duration::from_secs(60);
/// The address space a worker may use: an allocation past it aborts the worker.
const MEMORY_KB: u64 = 4_000_000;

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn node<'a>(root: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut v = root;
    for s in path {
        v = match (s, v) {
            (Seg::Key(k), Value::Table(t)) => t.get_mut(k)?,
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

fn paths(v: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match v {
        Value::Table(t) => {
            for (k, child) in t {
                here.push(Seg::Key(k.clone()));
                out.push(here.clone());
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                here.push(Seg::Index(i));
                out.push(here.clone());
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Table(t) => t.values().for_each(|v| strings(v, out)),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, v: &'a [T]) -> &'a T {
    &v[rng.random_range(0..v.len())]
}

const INTEGERS: [i64; 9] = [
    0,
    -1,
    1,
    i64::MAX,
    i64::MIN,
    4_294_967_295,
    1_000_000_000,
    10_000_000,
    65_536,
];
const FLOATS: [f64; 8] = [
    0.0,
    -1.0,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    1e300,
    1e-300,
    1.000_001,
];
const DURATIONS: [&str; 8] = [
    "0s",
    "1ns",
    "5124095h",
    "-1s",
    "99999999999h",
    "1e3s",
    "584y",
    "0.5ns",
];

/// One structural mutation of the document; a description of it, or None if it did
/// not apply.
fn mutate_value(root: &mut Value, rng: &mut ChaCha8Rng) -> Option<String> {
    let mut all = Vec::new();
    paths(root, &mut Vec::new(), &mut all);
    if all.is_empty() {
        return None;
    }
    let path = pick(rng, &all).clone();
    let (last, parent_path) = path.split_last()?;
    let label = format!("{path:?}");
    let mut names = Vec::new();
    strings(root, &mut names);
    let choice = rng.random_range(0..10);
    match choice {
        // Drop.
        0 => {
            match (node(root, parent_path)?, last) {
                (Value::Table(t), Seg::Key(k)) => {
                    t.remove(k);
                }
                (Value::Array(a), Seg::Index(i)) => {
                    a.remove(*i);
                }
                _ => return None,
            }
            Some(format!("drop {label}"))
        }
        // Duplicate: a copy under a new key, or a second array entry.
        1 => {
            let copy = node(root, &path)?.clone();
            match (node(root, parent_path)?, last) {
                (Value::Table(t), Seg::Key(k)) => {
                    t.insert(format!("{k}_2"), copy);
                }
                (Value::Array(a), Seg::Index(i)) => a.insert(*i, copy),
                _ => return None,
            }
            Some(format!("duplicate {label}"))
        }
        // Rename a key to a sibling's name (or a new one).
        2 => {
            let Seg::Key(k) = last else { return None };
            let Value::Table(t) = node(root, parent_path)? else {
                return None;
            };
            let keys: Vec<String> = t.keys().cloned().collect();
            let to = if rng.random_bool(0.5) {
                pick(rng, &keys).clone()
            } else {
                format!("{k}x")
            };
            let v = t.remove(k)?;
            t.insert(to.clone(), v);
            Some(format!("rename {label} to {to}"))
        }
        // Retype.
        3 => {
            let v = node(root, &path)?;
            *v = match rng.random_range(0..6) {
                0 => Value::String("x".into()),
                1 => Value::Integer(7),
                2 => Value::Boolean(true),
                3 => Value::Array(vec![]),
                4 => Value::Table(Default::default()),
                _ => Value::Float(0.5),
            };
            Some(format!("retype {label} to {v}"))
        }
        // Swap in another string of the document (a name where another is expected).
        4 if !names.is_empty() => {
            let s = pick(rng, &names).clone();
            let v = node(root, &path)?;
            if !v.is_str() {
                return None;
            }
            *v = Value::String(s.clone());
            Some(format!("set {label} to {s:?}"))
        }
        // Numbers and durations to the edges.
        _ => {
            let v = node(root, &path)?;
            let new = match v {
                Value::Integer(_) => {
                    if rng.random_bool(0.8) {
                        Value::Integer(*pick(rng, &INTEGERS))
                    } else {
                        Value::Float(*pick(rng, &FLOATS))
                    }
                }
                Value::Float(_) => Value::Float(*pick(rng, &FLOATS)),
                Value::String(s) if scenario::duration::parse(s).is_ok() => {
                    Value::String(pick(rng, &DURATIONS).to_string())
                }
                Value::String(_) => Value::String(
                    ["", "x", "0s", "a/b", &"n".repeat(300)][rng.random_range(0..5)].into(),
                ),
                Value::Boolean(b) => Value::Boolean(!*b),
                Value::Array(a) => {
                    if a.is_empty() {
                        return None;
                    }
                    let first = a[0].clone();
                    match rng.random_range(0..3) {
                        0 => Value::Array(vec![]),
                        1 => Value::Array(vec![first; 40]),
                        _ => Value::Array(a.iter().rev().cloned().collect()),
                    }
                }
                _ => return None,
            };
            *v = new;
            Some(format!("set {label} to {}", v))
        }
    }
}

/// Lines duplicated or removed, or the text cut short.
fn mutate_text(text: &str, rng: &mut ChaCha8Rng) -> (String, String) {
    let lines: Vec<&str> = text.lines().collect();
    match rng.random_range(0..3) {
        0 if !lines.is_empty() => {
            let i = rng.random_range(0..lines.len());
            let mut v = lines.clone();
            v.insert(i, lines[i]);
            (v.join("\n"), format!("duplicate line {}", i + 1))
        }
        1 if !lines.is_empty() => {
            let i = rng.random_range(0..lines.len());
            let mut v = lines.clone();
            v.remove(i);
            (v.join("\n"), format!("remove line {}", i + 1))
        }
        _ => {
            let mut at = rng.random_range(0..=text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            (text[..at].to_owned(), format!("truncate at byte {at}"))
        }
    }
}

/// Keeps a run short: an integer `max_events` above the cap, or none, becomes the cap.
fn cap_budget(root: &mut Value) {
    if let Some(Value::Table(sim)) = root.get_mut("simulation") {
        match sim.get("max_events") {
            Some(Value::Integer(n)) if *n <= MAX_EVENTS => {}
            None | Some(Value::Integer(_)) => {
                sim.insert("max_events".into(), Value::Integer(MAX_EVENTS));
            }
            Some(_) => {}
        }
    }
}

/// Shortens a bundled scenario before it is mutated, so that most mutants that are
/// valid run to their end within the event budget instead of exhausting it.
fn shorten(root: &mut Value) {
    let Some(Value::Table(sim)) = root.get_mut("simulation") else {
        return;
    };
    if let Some(Value::Integer(n)) = sim.get_mut("requests") {
        *n = (*n).min(2_000);
    }
    if let Some(Value::String(d)) = sim.get_mut("duration")
        && scenario::duration::parse(d).is_ok_and(|d| d.as_secs_f64() > 60.0)
    {
        *d = "60s".into();
    }
}

/// Case `i`: (bundled scenario name, mutant text, what was done).
fn case(i: u64, bundled: &[(String, String)]) -> (String, String, Vec<String>) {
    let (name, base) = &bundled[(i % bundled.len() as u64) as usize];
    let mut rng = ChaCha8Rng::seed_from_u64(i);
    let mut root: Value = toml::from_str(base).expect("bundled scenarios parse");
    shorten(&mut root);
    let mut done = Vec::new();
    for _ in 0..rng.random_range(1..=3) {
        if let Some(d) = mutate_value(&mut root, &mut rng) {
            done.push(d);
        }
    }
    cap_budget(&mut root);
    let mut text = toml::to_string(&root).unwrap_or_else(|e| {
        done.push(format!("(not serializable: {e})"));
        base.clone()
    });
    if rng.random_bool(0.15) {
        let (t, d) = mutate_text(&text, &mut rng);
        text = t;
        done.push(d);
    }
    (name.clone(), text, done)
}

/// How meshsim judges a mutant; Err is a finding.
fn judge(text: &str) -> Result<u8, String> {
    let located = |rendered: &str, places: &[scenario::Located]| -> Result<u8, String> {
        if places.is_empty() {
            return Err(format!("refused without a location:\n{rendered}"));
        }
        for l in places {
            let at = format!("{}:{}:{}", l.path, l.line, l.column);
            if l.line == 0 || l.column == 0 || !rendered.contains(&at) {
                return Err(format!("location {at} not shown in:\n{rendered}"));
            }
        }
        Ok(2)
    };
    let sc = match scenario::from_source("fuzz.toml", "fuzz", text, &[]) {
        Ok(sc) => sc,
        Err(e) => return located(&e.to_string(), e.located()),
    };
    let (path, source) = (sc.path.clone(), sc.text.clone());
    match meshsim::simulate(sc) {
        Ok(o) => Ok(if o.passed() { 0 } else { 1 }),
        Err(e) => {
            let r = scenario::run_error::locate(&path, &source, &e);
            located(&r.rendered, &r.located)
        }
    }
}

/// The worker: runs the cases `FROM..TO` in this process, one line
/// per case on stdout (`start I`, then `done I CODE` or `finding I WHY`).
fn worker(range: &str) {
    let (from, to) = range.split_once("..").expect("FROM..TO");
    let (from, to): (u64, u64) = (from.parse().unwrap(), to.parse().unwrap());
    let bundled = support::bundled_scenarios();
    // A caught panic is a finding, reported below; keep the default hook quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let mut out = std::io::stdout().lock();
    for i in from..to {
        let (_, text, _) = case(i, &bundled);
        writeln!(out, "start {i}").unwrap();
        out.flush().unwrap();
        let verdict = std::panic::catch_unwind(|| judge(&text)).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panic: {msg}"))
        });
        match verdict {
            Ok(code) => writeln!(out, "done {i} {code}").unwrap(),
            Err(why) => writeln!(out, "finding {i} {}", why.replace('\n', "\\n")).unwrap(),
        }
        out.flush().unwrap();
    }
}

struct Findings {
    /// (case, what happened)
    found: Vec<(u64, String)>,
    /// How many cases ended with exit code 0, 1, 2.
    codes: [u64; 3],
}

/// Runs cases `from..to` in child processes under the memory limit, restarting after
/// each case that kills its process or hangs.
fn run_cases(from: u64, to: u64) -> Findings {
    let exe = std::env::current_exe().unwrap();
    let mut f = Findings {
        found: Vec::new(),
        codes: [0; 3],
    };
    let mut next = from;
    while next < to {
        let before = next;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -v {MEMORY_KB}; exec \"$0\" \"$@\""))
            .arg(&exe)
            .args([WORKER_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env("MESHSIM_FUZZ_WORKER", format!("{next}..{to}"))
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let mut started = None;
        loop {
            match rx.recv_timeout(HANG) {
                Ok(line) => {
                    let mut parts = line.splitn(3, ' ');
                    let (kind, i) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    let Ok(i) = i.parse::<u64>() else { continue };
                    match kind {
                        "start" => started = Some(i),
                        "done" => {
                            let code: usize = parts.next().unwrap_or("9").parse().unwrap_or(9);
                            f.codes[code.min(2)] += 1;
                            started = None;
                            next = i + 1;
                        }
                        "finding" => {
                            f.found
                                .push((i, parts.next().unwrap_or("").replace("\\n", "\n")));
                            started = None;
                            next = i + 1;
                        }
                        _ => {}
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    if let Some(i) = started.take() {
                        f.found
                            .push((i, format!("hang: no answer within {HANG:?}")));
                        next = i + 1;
                    }
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = child.wait().unwrap();
        let _ = reader.join();
        if let Some(i) = started {
            f.found.push((i, format!("the process died: {status}")));
            next = i + 1;
        } else if next == before {
            panic!("the fuzz worker made no progress at case {next}: {status}");
        }
    }
    f
}

fn describe(found: &[(u64, String)]) -> String {
    let bundled = support::bundled_scenarios();
    let mut s = String::new();
    for (i, why) in found {
        let (name, text, done) = case(*i, &bundled);
        s.push_str(&format!(
            "case {i} (from {name}: {}):\n{why}\n--- mutant ---\n{text}\n--------------\n\n",
            done.join("; ")
        ));
    }
    s
}

/// `MESHSIM_FUZZ_CASES` cases (300 unless set) from `MESHSIM_FUZZ_FIRST` (0), in
/// batches of 1000 with progress on stderr; findings, with their mutants, go to
/// target/fuzz-findings.txt as well as into the failure message.
#[test]
fn mutants_of_the_bundled_scenarios_run_or_are_refused_at_a_location() {
    if let Ok(range) = std::env::var("MESHSIM_FUZZ_WORKER") {
        return worker(&range);
    }
    let var = |name: &str, default: u64| {
        std::env::var(name).map_or(default, |v| v.parse().expect("a number of cases"))
    };
    let (first, n) = (var("MESHSIM_FUZZ_FIRST", 0), var("MESHSIM_FUZZ_CASES", 300));
    let mut found = Vec::new();
    let mut codes = [0; 3];
    let mut at = first;
    while at < first + n {
        let end = (at + 1000).min(first + n);
        let f = run_cases(at, end);
        found.extend(f.found);
        for (c, k) in codes.iter_mut().zip(f.codes) {
            *c += k;
        }
        if n > 1000 {
            eprintln!(
                "fuzz: cases {first}..{end}: {} findings, exit codes {codes:?}",
                found.len()
            );
        }
        at = end;
    }
    if !found.is_empty() {
        let report: PathBuf = [env!("CARGO_MANIFEST_DIR"), "target", "fuzz-findings.txt"]
            .iter()
            .collect();
        let text = describe(&found);
        std::fs::write(&report, &text).unwrap();
        panic!(
            "{} findings (also in {}):\n{text}",
            found.len(),
            report.display()
        );
    }
    // The fuzzer must reach every verdict, or its mutations are too weak (or too strong).
    assert!(codes[0] > 0 && codes[2] > 0, "exit codes seen: {codes:?}");
}

#[test]
fn a_few_mutants_through_the_binary_exit_0_1_or_2_and_write_nothing_when_refused() {
    let bundled = support::bundled_scenarios();
    let dir = tempfile::tempdir().unwrap();
    for i in (0..400).step_by(37) {
        let (_, text, done) = case(i, &bundled);
        let file = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&file, &text).unwrap();
        let out = dir.path().join(format!("out{i}"));
        let o = Command::new(env!("CARGO_BIN_EXE_meshsim"))
            .arg("run")
            .arg(&file)
            .arg("-q")
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        let code = o.status.code();
        assert!(
            matches!(code, Some(0..=2)),
            "case {i} ({done:?}): {:?}\n{stderr}",
            o.status
        );
        if code == Some(2) {
            let at = format!("case{i}.toml:");
            assert!(
                stderr.contains(&at),
                "case {i} ({done:?}): not located:\n{stderr}"
            );
            assert!(!out.exists(), "case {i}: wrote {out:?} although refused");
        }
    }
}
