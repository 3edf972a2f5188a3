//! Classroom exercises. An exercise is a folder:
//!
//! ```text
//! exercises/03-food-delivery/
//!   README.md       the task, what to change, what to look at, hints
//!   start.toml      the design to improve (fails its check)
//!   solution.toml   a worked answer (passes)
//!   check.toml      what the answer is held to
//! ```
//!
//! `check.toml` keeps the exercise's expectations apart from the student's scenario, so
//! deleting or weakening the `[[expect]]`s in one's own file passes nothing: the student's
//! expectations are removed, the exercise's `set` overrides pin what the answer must not
//! change (the load, the seed, the run's length), and the exercise's expectations are
//! appended and evaluated on a real run.

use crate::scenario::{self, ScenarioError};
use serde::Deserialize;
use std::path::Path;

/// The most expectations one exercise may hold a scenario to.
pub const MAX_CHECKS: usize = 64;

/// The event budget of an exercise's run, unless its check.toml sets another: a
/// student's design that retries forever ends with an error instead of a hang. The
/// bundled exercises need at most ~2.2 million (the retry storm's start).
pub const MAX_EVENTS: u64 = 20_000_000;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawCheckFile {
    title: String,
    /// `--set` assignments applied to the student's scenario before the run.
    #[serde(default)]
    set: Vec<String>,
    #[serde(default)]
    expect: Vec<RawCheck>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    /// What the check means, in the exercise's words.
    what: String,
    check: String,
    from: Option<String>,
    until: Option<String>,
    /// What to look at when it fails.
    hint: String,
}

/// One requirement of an exercise.
#[derive(Clone, Debug)]
pub struct Requirement {
    pub what: String,
    pub check: String,
    pub from: Option<String>,
    pub until: Option<String>,
    pub hint: String,
}

#[derive(Clone, Debug)]
pub struct Exercise {
    pub name: String,
    pub title: String,
    pub set: Vec<String>,
    pub requirements: Vec<Requirement>,
}

/// One requirement, judged on the student's run.
#[derive(Clone, Debug)]
pub struct Judged {
    pub requirement: Requirement,
    pub value: f64,
    pub passed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExerciseError {
    #[error("{0}")]
    Exercise(String),
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    #[error("{0}")]
    Run(String),
}

impl Exercise {
    /// Reads `DIR/check.toml`.
    pub fn load(dir: &Path) -> Result<Exercise, ExerciseError> {
        let path = dir.join("check.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ExerciseError::Exercise(format!(
                "{} is not an exercise: cannot read {}: {e}",
                dir.display(),
                path.display()
            ))
        })?;
        let raw: RawCheckFile = toml::from_str(&text).map_err(|e| {
            ExerciseError::Exercise(format!("{}: {}", path.display(), e.to_string().trim_end()))
        })?;
        if raw.expect.is_empty() || raw.expect.len() > MAX_CHECKS {
            return Err(ExerciseError::Exercise(format!(
                "{}: an exercise needs 1 to {MAX_CHECKS} [[expect]] entries, it has {}",
                path.display(),
                raw.expect.len()
            )));
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "exercise".to_owned());
        Ok(Exercise {
            name,
            title: raw.title,
            set: raw.set,
            requirements: raw
                .expect
                .into_iter()
                .map(|c| Requirement {
                    what: c.what,
                    check: c.check,
                    from: c.from,
                    until: c.until,
                    hint: c.hint,
                })
                .collect(),
        })
    }

    /// The student's scenario with its own expectations removed, the exercise's
    /// overrides applied and the exercise's expectations appended.
    fn judged_text(&self, text: &str) -> Result<String, String> {
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
        doc.remove("expect");
        let mut set = self.set.clone();
        if !set
            .iter()
            .any(|a| a.trim_start().starts_with("simulation.max_events"))
        {
            set.push(format!("simulation.max_events={MAX_EVENTS}"));
        }
        let pinned = scenario::overrides::apply(&doc.to_string(), &set)?;
        let mut out = pinned.trim_end().to_owned();
        out.push_str("\n\n# ---- the exercise's expectations (check.toml) ----\n");
        for r in &self.requirements {
            out.push_str("\n[[expect]]\n");
            out.push_str(&format!("check = {}\n", toml_string(&r.check)));
            if let Some(f) = &r.from {
                out.push_str(&format!("from = {}\n", toml_string(f)));
            }
            if let Some(u) = &r.until {
                out.push_str(&format!("until = {}\n", toml_string(u)));
            }
        }
        Ok(out)
    }

    /// Runs the student's scenario (`label` names it in messages) against the
    /// exercise. Err: the scenario is invalid, or lacks what the exercise reads.
    pub fn judge(&self, label: &str, text: &str) -> Result<Vec<Judged>, ExerciseError> {
        let stem = Path::new(label)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "answer".to_owned());
        // The file as the student wrote it must be valid first, so that errors point
        // at their lines.
        scenario::from_source(label, &stem, text, &[])?;
        let judged = self.judged_text(text).map_err(|e| {
            ExerciseError::Exercise(format!(
                "{label}: the exercise fixes values your scenario lacks (keep the names of \
                 start.toml's services, workloads and brokers): {e}"
            ))
        })?;
        let sc = scenario::from_source(label, &stem, &judged, &[]).map_err(|e| {
            let what: Vec<String> = e.located().iter().map(|l| l.message.clone()).collect();
            ExerciseError::Exercise(format!(
                "{label}: the exercise reads something your scenario does not have (keep the \
                 names of start.toml's services, workloads and brokers):\n  {}",
                if what.is_empty() {
                    e.to_string()
                } else {
                    what.join("\n  ")
                }
            ))
        })?;
        let outcome = crate::simulate(sc).map_err(|e| {
            ExerciseError::Run(format!(
                "{label}: {e} (does something retry or redeliver forever? `meshsim lint {label}` may say)"
            ))
        })?;
        assert_eq!(outcome.report.expectations.len(), self.requirements.len());
        Ok(self
            .requirements
            .iter()
            .zip(&outcome.report.expectations)
            .map(|(r, e)| Judged {
                requirement: r.clone(),
                value: e.value,
                passed: e.passed,
            })
            .collect())
    }
}

fn toml_string(s: &str) -> String {
    toml_edit::Value::from(s).to_string()
}

/// What `meshsim exercise check` prints.
pub fn render(exercise: &Exercise, label: &str, judged: &[Judged]) -> String {
    let mut out = format!("{} ({}): {label}\n", exercise.title, exercise.name);
    for j in judged {
        let r = &j.requirement;
        let window = match (&r.from, &r.until) {
            (None, None) => String::new(),
            (f, u) => format!(
                ", from {} to {}",
                f.as_deref().unwrap_or("0s"),
                u.as_deref().unwrap_or("the end")
            ),
        };
        out.push_str(&format!(
            "  {}  {}\n        {}{window}: measured {}\n",
            if j.passed { "PASS" } else { "FAIL" },
            r.what,
            r.check,
            crate::report::numbers::number(j.value)
        ));
        if !j.passed {
            out.push_str(&format!("        hint: {}\n", r.hint));
        }
    }
    let passed = judged.iter().filter(|j| j.passed).count();
    if passed == judged.len() {
        out.push_str(&format!("passed: all {} checks hold\n", judged.len()));
    } else {
        out.push_str(&format!(
            "not yet: {passed} of {} checks hold\n",
            judged.len()
        ));
    }
    out
}
