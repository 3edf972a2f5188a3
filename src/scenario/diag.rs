//! Errors in a scenario, located in its source and rendered like a compiler's:
//!
//! ```text
//! error: unknown service `pricing` in call `pricing/quote`
//!   --> scenarios/shop.toml:12:15
//!    |
//! 12 |   { call = "pricing/quote" },
//!    |            ^^^^^^^^^^^^^^^ expected one of: inventory, order
//! ```

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
use std::ops::Range;

/// One problem, found by a check that knows the byte span it is about.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub message: String,
    pub span: Range<usize>,
    /// What was expected there, under the caret.
    pub expected: String,
}

impl Diagnostic {
    pub fn new(
        span: Range<usize>,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            expected: expected.into(),
        }
    }
}

/// A diagnostic placed in a file: what callers and tests read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Renders diagnostics against their source. `note` is added under each one.
pub fn render(path: &str, text: &str, diagnostics: &[Diagnostic], note: Option<&str>) -> String {
    let renderer = Renderer::plain();
    let mut out = String::new();
    for d in diagnostics {
        let start = floor_char_boundary(text, d.span.start.min(text.len()));
        let end = floor_char_boundary(text, d.span.end.clamp(start, text.len()));
        let mut group = Level::ERROR.primary_title(d.message.as_str()).element(
            Snippet::source(text).path(path).fold(true).annotation(
                AnnotationKind::Primary
                    .span(start..end)
                    .label(d.expected.as_str()),
            ),
        );
        if let Some(note) = note {
            group = group.element(Level::NOTE.message(note));
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(renderer.render(&[group]).trim_end());
        out.push('\n');
    }
    out
}

pub fn locate(path: &str, text: &str, d: &Diagnostic) -> Located {
    let (line, column) = line_column(text, d.span.start);
    Located {
        path: path.to_owned(),
        line,
        column,
        message: d.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_column(text, text.rfind('=').unwrap()), (2, 4));
    }

    #[test]
    fn rendering_names_file_line_and_column() {
        let text = "[simulation]\nseed = \"x\"\n";
        let d = Diagnostic::new(20..23, "bad seed", "expected an integer");
        let out = render("s.toml", text, &[d], None);
        assert!(out.contains("s.toml:2:8"), "{out}");
        assert!(out.contains("expected an integer"), "{out}");
    }
}
