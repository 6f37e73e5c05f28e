//! Name resolution: `def` parameters, then global names defined so far; and the messages
//! for a name that is not there (unknown, used before its definition, a function used as
//! a value), with a close name suggested when one exists.

use bpc_ir::{Diagnostic, Span};

use super::call::Builtin;
use super::{Fail, Global, Lowerer, R, Val};

impl Lowerer<'_> {
    /// The value of `name` at this point of the program.
    #[inline(never)]
    pub(crate) fn lookup(&mut self, name: &str, span: Span) -> R<Val> {
        if let Some(&v) = self.frames.last().and_then(|f| f.locals.get(name)) {
            return Ok(v);
        }
        match self.globals.get(name) {
            Some(&Global::Value(v)) => return Ok(v),
            Some(Global::Poisoned) => return Err(Fail),
            None => {}
        }
        let d = if self.defs.contains_key(name) || Builtin::from_name(name).is_some() {
            let kind = if self.defs.contains_key(name) { "a `def`" } else { "a built-in function" };
            Diagnostic::error(format!("`{name}` is a function, not a value"))
                .at(span, format!("`{name}` is {kind}"))
                .note(format!("call it with arguments: `{name}(...)`"))
        } else if let Some(&at) = self.defined_at.get(name) {
            Diagnostic::error(format!("`{name}` is used before it is defined"))
                .at(span, "used here")
                .also(at, "defined here, later")
                .note("a program runs from top to bottom; move the definition up")
        } else {
            self.unknown_name(name, span)
        };
        Err(self.error(d))
    }

    /// "unknown name", suggesting a close name in scope.
    pub(crate) fn unknown_name(&self, name: &str, span: Span) -> Diagnostic {
        let locals = self.frames.last().into_iter().flat_map(|f| f.locals.keys());
        let candidates = locals.chain(self.globals.keys()).map(String::as_str);
        let d = Diagnostic::error(format!("unknown name `{name}`"));
        match suggest(name, candidates) {
            Some(s) => d.at(span, format!("did you mean `{s}`?")),
            None => d.at(span, "not defined anywhere in the program"),
        }
    }

    /// "unknown function", suggesting a close built-in or `def`.
    pub(crate) fn unknown_function(&self, name: &str, span: Span) -> Diagnostic {
        let is_value =
            self.globals.contains_key(name) || self.frames.last().is_some_and(|f| f.locals.contains_key(name));
        if is_value {
            return Diagnostic::error(format!("`{name}` is not a function"))
                .at(span, format!("`{name}` is a value"))
                .note("multiplication is written `*`, and the matrix product `@`");
        }
        let mut candidates: Vec<&str> = Builtin::names().collect();
        candidates.extend(self.defs.keys().map(String::as_str));
        let d = Diagnostic::error(format!("unknown function `{name}`"));
        let d = match suggest(name, candidates.into_iter()) {
            Some(s) => d.at(span, format!("did you mean `{s}`?")),
            None => d.at(span, "neither a built-in function nor a `def`"),
        };
        d.note(format!("the built-in functions are {}", Builtin::names().collect::<Vec<_>>().join(", ")))
    }
}

/// The candidate closest to `name` by edit distance, if close enough to be a likely typo
/// (at most a third of the name's length, at least one edit, and fewer edits than the
/// name has characters), or equal ignoring case.
pub(crate) fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let len = name.chars().count();
    let limit = (len / 3).max(1).min(len.saturating_sub(1));
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = if c.eq_ignore_ascii_case(name) { 0 } else { distance(name, c) };
        if d <= limit && best.is_none_or(|(bd, bc)| (d, c) < (bd, bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Levenshtein distance over chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (prev + (ca != cb) as usize).min(row[j] + 1).min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(suggest("W3", ["W1", "W2", "b1"].into_iter()), Some("W1"));
        assert_eq!(suggest("sigmod", ["sigmoid", "softmax"].into_iter()), Some("sigmoid"));
        assert_eq!(suggest("zzz", ["sigmoid"].into_iter()), None);
        assert_eq!(suggest("y", ["w"].into_iter()), None);
        assert_eq!(suggest("X", ["x"].into_iter()), Some("x"));
    }
}
