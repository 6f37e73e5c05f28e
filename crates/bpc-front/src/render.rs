//! Diagnostics to text with `codespan-reporting`: `error: ...`, then `--> path:line:column`,
//! the source line and a caret under the span, then the notes. ASCII, no colour, so the
//! text is stable for UI tests and logs.

use bpc_ir::{Diagnostic, Span};
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label as CsLabel};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Chars, Config};

use crate::Source;

pub(crate) fn render(src: &Source, diags: &[Diagnostic]) -> String {
    let file = SimpleFile::new(src.path.as_str(), src.text.as_str());
    let config = Config { chars: Chars::ascii(), ..Config::default() };
    let mut out = String::new();
    for d in diags {
        let labels = d
            .labels
            .iter()
            .map(|l| {
                let range = clamp(&src.text, l.span);
                let label = if l.primary { CsLabel::primary((), range) } else { CsLabel::secondary((), range) };
                label.with_message(l.message.clone())
            })
            .collect();
        let cs = CsDiagnostic::error().with_message(d.message.clone()).with_labels(labels).with_notes(d.notes.clone());
        match term::emit_into_string(&config, &file, &cs) {
            Ok(text) => out.push_str(&text),
            // Spans are clamped to the text, so this is not expected; still never panic.
            Err(_) => out.push_str(&format!("error: {}\n", d.message)),
        }
    }
    out
}

/// The span as a byte range inside `text`, on character boundaries.
fn clamp(text: &str, span: Span) -> std::ops::Range<usize> {
    let fix = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = fix(span.start as usize);
    start..fix(span.end as usize).max(start)
}
