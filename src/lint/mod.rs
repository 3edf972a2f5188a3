//! `meshsim lint`: what is wrong with a design before it runs. Each lint is a function
//! over the built system (`system::System`, adapted from the model's `Spec`) that returns
//! findings: a code, a severity, the span it is about, what is wrong (with the
//! arithmetic), why it matters and how to fix it. docs/lint.md describes every code.

mod rules;
pub mod system;

use crate::model::Spec;
use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Note,
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Every lint code, with its severity range, in the order docs/lint.md lists them.
pub const CODES: &[&str] = &[
    "overload",
    "retry-amplification",
    "timeout-inversion",
    "retry-outside-deadline",
    "unbounded-wait",
    "cached-write",
    "redelivered-effect",
    "retried-effect",
    "replayed-failure",
    "unreachable-service",
    "unused-endpoint",
    "unused-policy",
    "unused-queue",
    "queue-grows-forever",
];

#[derive(Clone, Debug)]
pub struct Finding {
    pub code: &'static str,
    pub severity: Severity,
    pub span: Range<usize>,
    /// What is wrong, with its numbers.
    pub message: String,
    /// Under the caret.
    pub label: String,
    /// Why it matters.
    pub explanation: String,
    /// What to change.
    pub fix: String,
    /// The number the finding is about (a utilization, attempts per request, a time in
    /// seconds), for tests and tools.
    pub measure: Option<f64>,
}

/// Every finding on a built scenario (`text` is the source it was built from), most
/// severe first, then in file order.
pub fn lint(spec: &Spec, text: &str) -> Vec<Finding> {
    let system = system::System::new(spec, text);
    let mut findings = rules::all(&system);
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.span.start.cmp(&b.span.start))
            .then(a.code.cmp(b.code))
            .then(a.message.cmp(&b.message))
    });
    findings
}

/// Renders findings against their source, like the validation errors.
pub fn render(path: &str, text: &str, findings: &[Finding]) -> String {
    let renderer = Renderer::plain();
    let mut out = String::new();
    for f in findings {
        let start = floor(text, f.span.start.min(text.len()));
        let end = floor(text, f.span.end.clamp(start, text.len()));
        let level = match f.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
            Severity::Note => Level::NOTE,
        };
        let group = level
            .primary_title(f.message.as_str())
            .id(f.code)
            .element(
                Snippet::source(text).path(path).fold(true).annotation(
                    AnnotationKind::Primary
                        .span(start..end)
                        .label(f.label.as_str()),
                ),
            )
            .element(Level::NOTE.message(f.explanation.as_str()))
            .element(Level::HELP.message(f.fix.as_str()));
        out.push_str(renderer.render(&[group]).trim_end());
        out.push_str("\n\n");
    }
    out
}

/// "2 errors, 1 warning" (what a summary line says).
pub fn tally(findings: &[Finding]) -> String {
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let parts: Vec<String> = [Severity::Error, Severity::Warning, Severity::Note]
        .into_iter()
        .filter(|s| count(*s) > 0)
        .map(|s| crate::report::numbers::plural(count(s) as u64, s.name()))
        .collect();
    if parts.is_empty() {
        "no findings".to_owned()
    } else {
        parts.join(", ")
    }
}

fn floor(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}
