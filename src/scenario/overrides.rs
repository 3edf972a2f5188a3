//! `--set PATH=VALUE`: change one value of a scenario by its TOML path before it is
//! read, e.g. `services.c.endpoints.get.steps.0.work=200ms`. Path segments are table
//! keys, or indexes into arrays. VALUE is read as TOML (`3`, `0.5`, `true`,
//! `{ dist = "exponential", mean = "1s" }`) and, when it is not valid TOML, as a
//! string, so durations need no quotes. The edit preserves the file's formatting, so
//! errors still point at the right lines. A missing top-level table of a fixed name
//! (`[report]`, `[network]`, `[simulation]`) is created; any other missing key is an
//! error that lists what exists, so a typo is never taken for a new table.

use toml_edit::{DocumentMut, Item, Table, Value};

/// The top-level tables `--set` creates when the scenario has none: those the scenario
/// language names itself (the keys below them are checked when the scenario is read).
const CREATABLE: &[&str] = &["simulation", "report", "network"];

/// Applies `assignments` (each `PATH=VALUE`) to `text`; returns the edited text.
pub fn apply(text: &str, assignments: &[String]) -> Result<String, String> {
    if assignments.is_empty() {
        return Ok(text.to_owned());
    }
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("the scenario is not valid TOML: {e}"))?;
    for a in assignments {
        set(doc.as_item_mut(), a).map_err(|e| format!("--set {a}: {e}"))?;
    }
    Ok(doc.to_string())
}

fn set(root: &mut Item, assignment: &str) -> Result<(), String> {
    let (path, raw) = assignment
        .split_once('=')
        .ok_or("expected PATH=VALUE, e.g. simulation.seed=7")?;
    let path = path.trim();
    let segments: Vec<&str> = path.split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(format!("`{path}` has an empty path segment"));
    }
    let mut value = parse_value(raw.trim());
    let (last, parents) = segments
        .split_last()
        .expect("split yields one segment at least");
    let mut item = root;
    let mut walked = String::new();
    for seg in parents {
        if walked.is_empty() && CREATABLE.contains(seg) && item.get(seg).is_none() {
            item[*seg] = Item::Table(Table::new());
        }
        item = step(item, seg, &walked)?;
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(seg);
    }
    let place = if is_array(item) {
        step(item, last, &walked)?
    } else if item.is_table_like() {
        item.get_mut(*last)
            .expect("table-like items accept any key")
    } else {
        return Err(format!("`{walked}` is a value, not a table or an array"));
    };
    if let Item::Value(old) = place {
        *value.decor_mut() = old.decor().clone();
    }
    *place = Item::Value(value);
    Ok(())
}

fn is_array(item: &Item) -> bool {
    matches!(item, Item::ArrayOfTables(_)) || item.as_value().is_some_and(Value::is_array)
}

/// Steps into an existing child; missing ones are an error that lists what exists.
fn step<'a>(item: &'a mut Item, seg: &str, walked: &str) -> Result<&'a mut Item, String> {
    let at = if walked.is_empty() {
        "the top level".to_owned()
    } else {
        format!("`{walked}`")
    };
    if is_array(item) {
        let len = match &*item {
            Item::ArrayOfTables(a) => a.len(),
            other => other.as_array().map_or(0, |a| a.len()),
        };
        let i: usize = seg
            .parse()
            .map_err(|_| format!("{at} is an array: expected an index, found `{seg}`"))?;
        return item
            .get_mut(i)
            .ok_or_else(|| format!("{at} has {len} entries: no index {i}"));
    }
    let Some(table) = item.as_table_like() else {
        return Err(format!("{at} is a value, not a table or an array"));
    };
    if table.get(seg).is_none() {
        let known: Vec<&str> = table.iter().map(|(k, _)| k).collect();
        return Err(format!(
            "{at} has no `{seg}` (it has: {})",
            if known.is_empty() {
                "nothing".to_owned()
            } else {
                known.join(", ")
            }
        ));
    }
    Ok(item.get_mut(seg).expect("checked above"))
}

fn parse_value(raw: &str) -> Value {
    raw.parse::<Value>().unwrap_or_else(|_| Value::from(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = r#"[simulation]
seed = 1 # the seed

[services.c.endpoints.get]
steps = [{ work = "50ms" }, { call = "d/x" }]
"#;

    #[test]
    fn sets_nested_values_and_keeps_the_layout() {
        let out = apply(
            SRC,
            &[
                "services.c.endpoints.get.steps.0.work=200ms".into(),
                "simulation.seed=7".into(),
                "simulation.warmup=1s".into(),
            ],
        )
        .unwrap();
        assert!(
            out.contains(r#"steps = [{ work = "200ms" }, { call = "d/x" }]"#),
            "{out}"
        );
        assert!(out.contains("seed = 7 # the seed"), "{out}");
        assert!(out.contains(r#"warmup = "1s""#), "{out}");
        assert_eq!(out.lines().position(|l| l.starts_with("steps")), Some(5));
    }

    #[test]
    fn reports_what_is_missing() {
        let err = apply(SRC, &["services.b.replicas=2".into()]).unwrap_err();
        assert!(err.contains("`services` has no `b` (it has: c)"), "{err}");
        let err = apply(SRC, &["services.c.endpoints.get.steps.5.work=1s".into()]).unwrap_err();
        assert!(err.contains("has 2 entries: no index 5"), "{err}");
        let err = apply(SRC, &["simulation.seed".into()]).unwrap_err();
        assert!(err.contains("PATH=VALUE"), "{err}");
    }

    #[test]
    fn creates_a_missing_table_of_the_language_and_refuses_a_typo() {
        let out = apply(SRC, &["report.bucket=1h".into()]).unwrap();
        assert!(out.ends_with("[report]\nbucket = \"1h\"\n"), "{out}");
        assert!(out.starts_with(SRC), "{out}");
        let err = apply(SRC, &["repot.bucket=1h".into()]).unwrap_err();
        assert!(
            err.contains("the top level has no `repot` (it has: simulation, services)"),
            "{err}"
        );
        // Only at the top level: a missing service is not made up.
        let err = apply(SRC, &["services.b.replicas=2".into()]).unwrap_err();
        assert!(err.contains("`services` has no `b`"), "{err}");
    }
}
