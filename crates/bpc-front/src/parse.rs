//! Parsing: tokens to [`ast::Module`] with the generated LR parser, and lalrpop's errors in
//! words a person understands ("expected a shape like [3, 4], found `(`").
//!
//! The generated parser is table-driven (its stack is a `Vec`), so deeply nested input
//! cannot overflow the native stack while parsing; the tree it builds is capped in depth by
//! [`ast::Expr::new`], and any capped expression is reported here.

use bpc_ir::{Diagnostic, Span};
use lalrpop_util::ParseError;

use crate::ast::{self, MAX_DEPTH};
use crate::lexer::{self, Tok};

lalrpop_util::lalrpop_mod!(
    #[allow(clippy::all, clippy::pedantic, unused_parens, unused_imports)]
    grammar,
    "/bp.rs"
);

/// Parses a whole program. Lexical and syntax errors stop at the first one; every
/// over-deep expression is reported.
pub fn parse_text(text: &str) -> Result<ast::Module, Vec<Diagnostic>> {
    let tokens = lexer::lex(text).map_err(|d| vec![d])?;
    let module = grammar::ModuleParser::new()
        .parse(tokens.into_iter().map(Ok::<_, Diagnostic>))
        .map_err(|e| vec![syntax_error(e, text.len())])?;
    let deep: Vec<Diagnostic> = module
        .stmts
        .iter()
        .flat_map(|s| s.exprs())
        .filter_map(|e| e.too_deep())
        .map(|span| {
            Diagnostic::error("expression is nested too deeply")
                .at(span, format!("this goes deeper than {MAX_DEPTH} levels"))
                .note("split it into several lines with intermediate names")
        })
        .collect();
    if deep.is_empty() { Ok(module) } else { Err(deep) }
}

/// One lalrpop error as a diagnostic.
fn syntax_error(err: ParseError<usize, Tok, Diagnostic>, len: usize) -> Diagnostic {
    match err {
        ParseError::User { error } => error,
        ParseError::InvalidToken { location } => {
            Diagnostic::error("invalid token").at(Span::new(location, location), "not a token of the language")
        }
        ParseError::UnrecognizedEof { location, expected } => {
            let want = describe(&expected);
            Diagnostic::error(format!("expected {want}, found the end of the file"))
                .at(Span::new(location, location), format!("expected {want}"))
        }
        ParseError::UnrecognizedToken { token: (l, tok, r), expected } => {
            let found = found(&tok, l, r, len);
            let want = describe(&expected);
            let label = match tok {
                Tok::Newline => format!("expected {want}"),
                _ => format!("unexpected {found}"),
            };
            let mut d = Diagnostic::error(format!("expected {want}, found {found}")).at(Span::new(l, r), label);
            if let Some(hint) = hint(&tok, &expected) {
                d = d.note(hint);
            }
            d
        }
        ParseError::ExtraToken { token: (l, tok, r) } => {
            let found = found(&tok, l, r, len);
            Diagnostic::error(format!("unexpected {found}")).at(Span::new(l, r), "nothing more was expected here")
        }
    }
}

fn found(tok: &Tok, l: usize, r: usize, len: usize) -> String {
    match tok {
        Tok::Newline if l == r && l == len => "the end of the file".to_string(),
        Tok::Newline => "the end of the line".to_string(),
        Tok::Ident(name) => format!("name `{name}`"),
        Tok::Num(n) => format!("number `{}`", n.text),
        t => t.to_string(),
    }
}

/// Names a set of expected terminals (as lalrpop spells them: `"\"(\""`, `"Ident"`) in
/// words, grouping the usual sets: all statement keywords are "a statement", everything an
/// expression may start with is "an expression", all binary operators are "an operator".
pub(crate) fn describe(expected: &[String]) -> String {
    let terms: Vec<&str> = expected.iter().map(|e| e.trim_matches('"')).collect();
    let has = |t: &str| terms.contains(&t);
    let mut used: Vec<&str> = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    let mut group = |cond: bool, what: &str, members: &[&'static str], used: &mut Vec<&str>| {
        if cond {
            parts.push(what.to_string());
            used.extend_from_slice(members);
        }
    };
    const STMT: &[&str] = &["Ident", "model", "input", "label", "param", "const", "def", "loss", "output"];
    const EXPR: &[&str] = &["Num", "Ident", "(", "-"];
    const OPS: &[&str] = &["+", "-", "*", "/", "@", "^", "<", "<=", ">", ">=", "==", "[", "("];
    group(has("input"), "a statement (`input`, `param`, `NAME = ...`, `loss`, ...)", STMT, &mut used);
    group(has("Num") && !used.contains(&"Num"), "an expression", EXPR, &mut used);
    group(has("*"), "an operator", OPS, &mut used);
    group(has("[") && !used.contains(&"["), "a shape like [3, 4]", &["["], &mut used);
    group(has("~"), "an initializer like `= 0` or `~ normal(0, 0.1)`", &["~", "="], &mut used);
    group(has(":"), "`: class(K)`", &[":"], &mut used);
    let mut rest: Vec<&str> = terms.iter().copied().filter(|t| !used.contains(t)).collect();
    // The end of the line reads best last.
    rest.sort_by_key(|t| *t == "NL");
    for t in rest {
        parts.push(match t {
            "Ident" => "a name".to_string(),
            "Num" => "a number".to_string(),
            "NL" => "the end of the line".to_string(),
            t => format!("`{t}`"),
        });
    }
    match parts.len() {
        0 => "nothing".to_string(),
        1 => parts.remove(0),
        n => format!("{} or {}", parts[..n - 1].join(", "), parts[n - 1]),
    }
}

/// A hint for common slips.
fn hint(tok: &Tok, expected: &[String]) -> Option<&'static str> {
    let has = |t: &str| expected.iter().any(|e| e.trim_matches('"') == t);
    match tok {
        Tok::LParen if has("[") && !has("*") => Some("shapes are written in square brackets: `x[784]`, `W[10, 784]`"),
        Tok::Ident(_) | Tok::Num(_) if has("*") => Some("multiplication is written `*` (and matrix product `@`)"),
        Tok::Assign if has("*") => Some("`=` binds a name at the start of a line; equality is `==`"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_text(text).unwrap_err()[0].message.clone()
    }

    #[test]
    fn precedence() {
        let m = parse_text("e = -x^2 + a*b@c - 2^-1^y < 1\nloss f(a, axis=1)[0, 1]\n").unwrap();
        assert_eq!(
            m.to_string(),
            "e = ((((-(x ^ 2)) + ((a * b) @ c)) - (2 ^ (-(1 ^ y)))) < 1)\nloss f(a, axis=1)[0, 1]\n"
        );
    }

    #[test]
    fn statements() {
        let text = "model m\ninput x[3]\nlabel y : class(2)\nlabel t\nparam W[2, 3] ~ normal(0, 0.1)\nparam b[2]\n\
                    const c = 1e-4\ndef f(a, b) = a + b\nloss f(W @ x, b)\noutput x\n";
        assert_eq!(
            parse_text(text).unwrap().to_string(),
            text.replace("f(a, b) = a + b", "f(a, b) = (a + b)").replace("W @ x", "(W @ x)")
        );
    }

    #[test]
    fn messages() {
        assert_eq!(err("input x(3)"), "expected a shape like [3, 4] or the end of the line, found `(`");
        assert_eq!(err("x = a b"), "expected an operator or the end of the line, found name `b`");
        assert_eq!(err("x = "), "expected an expression, found the end of the file");
        assert_eq!(err("a < b < c"), "expected `=`, found `<`");
        assert_eq!(err("x = a < b < c"), "comparisons cannot be chained");
        assert_eq!(err("= 3"), "expected a statement (`input`, `param`, `NAME = ...`, `loss`, ...), found `=`");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let n = 10_000;
        let text = format!("loss {}x{}\n", "(".repeat(n), ")".repeat(n));
        assert!(parse_text(&text).is_ok(), "parentheses add no depth");
        let text = format!("loss {}x\n", "-".repeat(n));
        assert_eq!(err(&text), "expression is nested too deeply");
        let text = format!("loss x{}\n", "+x".repeat(n));
        assert_eq!(err(&text), "expression is nested too deeply");
        let text = format!("loss {}x{}\n", "exp(".repeat(n), ")".repeat(n));
        assert_eq!(err(&text), "expression is nested too deeply");
    }
}
