//! Tidy: the crate's top-level modules form the layers ARCHITECTURE.md draws, and no
//! module imports one above it, so the module graph has no cycle. Read from the
//! `crate::` paths in the sources (`use` lines and paths written inline).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each top-level module and the floor it stands on: a module may name only modules on
/// lower floors (ARCHITECTURE.md's "knows about" column). `lib` is the crate root
/// (`simulate`, `FinishedRun`).
const FLOORS: &[(&str, u32)] = &[
    ("allocator", 1),
    ("engine", 1),
    ("status", 1),
    ("metrics", 2),
    ("model", 3),
    ("report", 3),
    ("scenario", 4),
    ("graph", 4),
    ("lint", 5),
    ("lib", 5),
    ("explore", 6),
    ("exercise", 6),
    ("multi", 6),
    ("cli", 7),
];

/// Narrower rules than the floors: (module, may name, only these items of it).
const ONLY: &[(&str, &str, &[&str])] = &[
    // Reports read metrics; of the engine, only its time types.
    ("report", "engine", &["SimTime", "SimDuration"]),
];

fn floor(module: &str) -> u32 {
    FLOORS
        .iter()
        .find(|(m, _)| *m == module)
        .unwrap_or_else(|| panic!("src/{module}: a top-level module missing from FLOORS"))
        .1
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => "lib".to_owned(),
        Some(m) => m.to_owned(),
        None => first.into_owned(),
    }
}

/// Every `crate::NAME` a line names, with what follows it (for `ONLY`).
fn crate_paths(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(k) = rest.find("crate::") {
        let after = &rest[k + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let tail = &after[name.len()..];
        let end = tail.find(';').unwrap_or(tail.len());
        out.push((name, tail[..end].to_owned()));
        rest = after;
    }
    out
}

#[test]
fn tidy_no_module_imports_one_on_its_own_floor_or_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut edges = BTreeSet::new();
    let mut wrong = Vec::new();
    for file in &files {
        let from = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for (name, tail) in crate_paths(code) {
                let to = if FLOORS.iter().any(|(m, _)| *m == name) {
                    name
                } else {
                    "lib".to_owned()
                };
                if to == from {
                    continue;
                }
                edges.insert((from.clone(), to.clone()));
                let at = format!("{}:{}: {}", file.display(), n + 1, line.trim());
                if floor(&to) >= floor(&from) {
                    wrong.push(format!(
                        "{from} -> {to} (floor {} -> {}): {at}",
                        floor(&from),
                        floor(&to)
                    ));
                }
                for &(m, dep, items) in ONLY {
                    if m == from
                        && dep == to
                        && tail
                            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .filter(|w| !w.is_empty())
                            .any(|w| !items.contains(&w))
                    {
                        wrong.push(format!("{from} may name only {items:?} of {dep}: {at}"));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
    // The rule has teeth: the layers the code really uses are there.
    for (a, b) in [
        ("model", "metrics"),
        ("metrics", "status"),
        ("model", "engine"),
        ("report", "metrics"),
    ] {
        assert!(
            edges.contains(&(a.to_owned(), b.to_owned())),
            "{a} -> {b} not seen: is the scan reading the sources?"
        );
    }
    assert!(!edges.contains(&("metrics".to_owned(), "model".to_owned())));
}

#[test]
fn the_scan_finds_paths_inline_and_in_use_lines() {
    assert_eq!(
        crate_paths("use crate::engine::{SimDuration, SimTime};"),
        vec![("engine".to_owned(), "::{SimDuration, SimTime}".to_owned())]
    );
    let inline =
        crate_paths("let m = crate::model::World::new(s).finish(crate::engine::SimTime::ZERO);");
    assert_eq!(inline[0].0, "model");
    assert_eq!(inline[1].0, "engine");
}

/// Names that belong to the `World` (its handlers, fibers and invocations): the brokers
/// return commands for them and never name them (issue 13: subsystems own their state,
/// the World owns the flow).
const WORLD_ONLY: &[&str] = &[
    "World",
    "Fiber",
    "Invocation",
    "AnswerTo",
    "Wait",
    "Outcome",
    "fibers",
    "invocations",
];

#[test]
fn tidy_brokers_never_name_the_world_its_fibers_or_invocations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model/broker");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    files.sort();
    assert!(files.len() >= 5, "the broker's rooms are read");
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let names: Vec<&str> = code
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|w| WORLD_ONLY.contains(w))
                .collect();
            if !names.is_empty() {
                wrong.push(format!(
                    "{}:{}: {names:?}: {}",
                    file.display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "broker code naming the World's own types:\n{}",
        wrong.join("\n")
    );
}
