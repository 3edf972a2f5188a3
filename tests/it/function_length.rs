//! Tidy: functions a reader can hold. No function in src/ runs over 70 lines, except
//! the ones listed below (each waiting to be split where a name explains a part); a
//! listed function that got short must leave the list. `scripts/long_functions.py`
//! prints the same list with lengths.

use std::path::{Path, PathBuf};

const LIMIT: usize = 70;

/// (file under src/, function): longer than LIMIT today.
const ALLOWED: &[(&str, &str)] = &[
    ("cli/multi.rs", "check"),
    ("cli/multi.rs", "compare"),
    ("cli/multi.rs", "sweep"),
];

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

/// The name of the function a line declares, if it does.
fn declared(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    if let Some(r) = rest.strip_prefix("pub") {
        rest = match r.strip_prefix('(') {
            Some(r) => r.split_once(')')?.1,
            None => r,
        }
        .trim_start();
    }
    for qualifier in ["const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(qualifier).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(&rest[..end])
}

/// (function, first line, length in lines) of every function with a body, up to the
/// file's `#[cfg(test)]` module. A body ends at the first `}` at its `fn`'s indentation
/// (rustfmt's layout).
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "#[cfg(test)]" {
            break;
        }
        let Some(name) = declared(line) else {
            continue;
        };
        let indent = &line[..line.len() - line.trim_start().len()];
        let Some(open) = (i..lines.len()).find(|&j| lines[j].trim_end().ends_with(['{', ';', '}']))
        else {
            continue;
        };
        if !lines[open].trim_end().ends_with('{') {
            continue; // no body, or on one line
        }
        let close = (open + 1..lines.len())
            .find(|&k| lines[k].starts_with(indent) && lines[k][indent.len()..].starts_with('}'))
            .unwrap_or(lines.len() - 1);
        out.push((name.to_owned(), i + 1, close - i + 1));
    }
    out
}

#[test]
fn tidy_no_function_runs_over_70_lines_unless_listed() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut long = Vec::new();
    let mut seen = 0;
    for file in &files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        for (name, line, length) in functions(&std::fs::read_to_string(file).unwrap()) {
            seen += 1;
            if length > LIMIT {
                long.push((rel.clone(), name, line, length));
            }
        }
    }
    assert!(seen > 500, "read only {seen} functions");
    let new: Vec<_> = long
        .iter()
        .filter(|(f, n, _, _)| !ALLOWED.contains(&(f.as_str(), n.as_str())))
        .collect();
    assert!(
        new.is_empty(),
        "functions over {LIMIT} lines: split them where a name explains a part: {new:?}"
    );
    let stale: Vec<_> = ALLOWED
        .iter()
        .filter(|(f, n)| !long.iter().any(|(lf, ln, _, _)| lf == f && ln == n))
        .collect();
    assert!(
        stale.is_empty(),
        "no longer over {LIMIT} lines: take them off ALLOWED: {stale:?}"
    );
}

#[test]
fn the_length_counts_from_fn_to_its_closing_brace() {
    let text = "impl X {\n    pub(crate) fn a(\n        x: u32,\n    ) -> u32 {\n        x\n    }\n\n    fn b() {}\n    fn c();\n}\n#[cfg(test)]\nfn d() {\n}\n";
    assert_eq!(functions(text), vec![("a".to_owned(), 2, 5)]);
}
