//! The lexer: source text to tokens, with line structure resolved.
//!
//! The `.bp` language is line-oriented: one statement per line, except that a line continues
//! while a `(` or `[` is open. The lexer owns that rule, so the grammar only sees a `Newline`
//! token where a statement really ends (blank lines and comments collapse away, and the token
//! stream always ends with one). Brackets are matched here too, which gives better messages
//! ("this `(` is never closed") than a parser could.

use std::fmt;

use bpc_ir::{Diagnostic, Span};

/// A number literal: its value and its text as written (`.5`, `1e-4`).
#[derive(Clone, Debug, PartialEq)]
pub struct Number {
    pub value: f64,
    pub text: String,
}

/// A token. Keywords are reserved; `class`, `normal`, `xavier`, ... are plain identifiers
/// checked where they are used.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    Num(Number),
    Model,
    Input,
    Label,
    Param,
    Const,
    Def,
    Loss,
    Output,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Assign,
    Tilde,
    Plus,
    Minus,
    Star,
    Slash,
    At,
    Caret,
    Lt,
    Le,
    Gt,
    Ge,
    EqEq,
    Newline,
}

impl Tok {
    fn keyword(word: &str) -> Option<Tok> {
        Some(match word {
            "model" => Tok::Model,
            "input" => Tok::Input,
            "label" => Tok::Label,
            "param" => Tok::Param,
            "const" => Tok::Const,
            "def" => Tok::Def,
            "loss" => Tok::Loss,
            "output" => Tok::Output,
            _ => return None,
        })
    }

    /// The token as written (for keywords and punctuation).
    pub fn text(&self) -> &str {
        match self {
            Tok::Ident(s) => s,
            Tok::Num(n) => &n.text,
            Tok::Model => "model",
            Tok::Input => "input",
            Tok::Label => "label",
            Tok::Param => "param",
            Tok::Const => "const",
            Tok::Def => "def",
            Tok::Loss => "loss",
            Tok::Output => "output",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Assign => "=",
            Tok::Tilde => "~",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::At => "@",
            Tok::Caret => "^",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::EqEq => "==",
            Tok::Newline => "\n",
        }
    }
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Newline => f.write_str("end of line"),
            t => write!(f, "`{}`", t.text()),
        }
    }
}

/// A token with its byte range, as the generated parser takes it.
pub type Spanned = (usize, Tok, usize);

/// Splits `text` into tokens; the first malformed piece of text is an error.
///
/// The stream ends with a zero-width `Newline` at the end of the text unless the text is
/// empty (or only comments), so every statement is terminated.
pub fn lex(text: &str) -> Result<Vec<Spanned>, Diagnostic> {
    // A byte-order mark (as some editors write) is not part of the program.
    let pos = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let mut lx = Lexer { text, bytes: text.as_bytes(), pos, open: Vec::new(), out: Vec::new() };
    lx.run()?;
    Ok(lx.out)
}

struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Open brackets: the byte and its position.
    open: Vec<(u8, usize)>,
    out: Vec<Spanned>,
}

impl Lexer<'_> {
    fn run(&mut self) -> Result<(), Diagnostic> {
        while let Some(&c) = self.bytes.get(self.pos) {
            let start = self.pos;
            match c {
                b'\n' => {
                    self.pos += 1;
                    if self.open.is_empty() {
                        self.newline(start, start + 1);
                    }
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'#' => {
                    while self.bytes.get(self.pos).is_some_and(|&b| b != b'\n') {
                        self.pos += 1;
                    }
                }
                b'0'..=b'9' | b'.' => self.number()?,
                b'a'..=b'z' | b'A'..=b'Z' | b'_' => self.word(),
                _ => self.punct(c)?,
            }
        }
        if let Some(&(b, at)) = self.open.last() {
            let ch = b as char;
            return Err(Diagnostic::error(format!("unclosed `{ch}`"))
                .at(Span::new(at, at + 1), format!("this `{ch}` is never closed"))
                .note("a statement may continue over several lines only inside brackets"));
        }
        let end = self.text.len();
        self.newline(end, end);
        Ok(())
    }

    /// Ends a statement, unless the last token already did (blank lines, comments).
    fn newline(&mut self, start: usize, end: usize) {
        if self.out.last().is_some_and(|(_, t, _)| *t != Tok::Newline) {
            self.out.push((start, Tok::Newline, end));
        }
    }

    fn push(&mut self, start: usize, tok: Tok) {
        self.out.push((start, tok, self.pos));
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `3`, `3.`, `.5`, `1e-4`, `2.5E+3`.
    fn number(&mut self) -> Result<(), Diagnostic> {
        let start = self.pos;
        let mut n = self.digits();
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            n += self.digits();
        }
        if n == 0 {
            return Err(Diagnostic::error("unexpected `.`")
                .at(Span::new(start, start + 1), "a number needs digits, like `0.5` or `.5`"));
        }
        if matches!(self.bytes.get(self.pos), Some(b'e' | b'E')) {
            let mark = self.pos;
            self.pos += 1;
            if matches!(self.bytes.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                let span = Span::new(start, self.pos);
                let text = &self.text[start..self.pos];
                return Err(Diagnostic::error(format!("malformed number `{text}`"))
                    .at(span, "the exponent needs digits, like `1e-4`")
                    .note(format!("the number ends at `{}`", &self.text[start..mark])));
            }
        }
        let text = &self.text[start..self.pos];
        let value: f64 = text.parse().expect("the lexer only accepts float syntax");
        if !value.is_finite() {
            return Err(Diagnostic::error(format!("number `{text}` is too large"))
                .at(Span::new(start, self.pos), "this overflows to infinity")
                .note(format!("the largest float32 is about {:e}", f32::MAX)));
        }
        self.push(start, Tok::Num(Number { value, text: text.to_string() }));
        Ok(())
    }

    fn word(&mut self) {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_') {
            self.pos += 1;
        }
        let word = &self.text[start..self.pos];
        let tok = Tok::keyword(word).unwrap_or_else(|| Tok::Ident(word.to_string()));
        self.push(start, tok);
    }

    fn punct(&mut self, c: u8) -> Result<(), Diagnostic> {
        let start = self.pos;
        let next = self.bytes.get(self.pos + 1).copied();
        let (tok, len) = match (c, next) {
            (b'<', Some(b'=')) => (Tok::Le, 2),
            (b'>', Some(b'=')) => (Tok::Ge, 2),
            (b'=', Some(b'=')) => (Tok::EqEq, 2),
            (b'<', _) => (Tok::Lt, 1),
            (b'>', _) => (Tok::Gt, 1),
            (b'=', _) => (Tok::Assign, 1),
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b'[', _) => (Tok::LBracket, 1),
            (b']', _) => (Tok::RBracket, 1),
            (b',', _) => (Tok::Comma, 1),
            (b':', _) => (Tok::Colon, 1),
            (b'~', _) => (Tok::Tilde, 1),
            (b'+', _) => (Tok::Plus, 1),
            (b'-', _) => (Tok::Minus, 1),
            (b'*', _) => (Tok::Star, 1),
            (b'/', _) => (Tok::Slash, 1),
            (b'@', _) => (Tok::At, 1),
            (b'^', _) => (Tok::Caret, 1),
            _ => return Err(self.bad_char(start)),
        };
        self.pos += len;
        match tok {
            Tok::LParen => self.open.push((b'(', start)),
            Tok::LBracket => self.open.push((b'[', start)),
            Tok::RParen | Tok::RBracket => self.close(c, start)?,
            _ => {}
        }
        self.push(start, tok);
        Ok(())
    }

    fn close(&mut self, c: u8, at: usize) -> Result<(), Diagnostic> {
        let want = if c == b')' { b'(' } else { b'[' };
        let here = Span::new(at, at + 1);
        match self.open.pop() {
            Some((b, _)) if b == want => Ok(()),
            Some((b, open_at)) => {
                let expected = if b == b'(' { ')' } else { ']' };
                Err(Diagnostic::error(format!("mismatched `{}`", c as char))
                    .at(here, format!("expected `{expected}` here"))
                    .also(Span::new(open_at, open_at + 1), format!("to close this `{}`", b as char)))
            }
            None => Err(Diagnostic::error(format!("unmatched `{}`", c as char))
                .at(here, "there is no open bracket for this to close")),
        }
    }

    fn bad_char(&self, start: usize) -> Diagnostic {
        let ch = self.text[start..].chars().next().expect("not at the end");
        let span = Span::new(start, start + ch.len_utf8());
        let what = match ch {
            '"' | '\'' => "the language has no strings".to_string(),
            ';' => "statements end at the end of the line".to_string(),
            '{' | '}' => "use `(` and `)` to group".to_string(),
            '!' => "the comparisons are `<`, `<=`, `>`, `>=` and `==`".to_string(),
            c if c.is_alphabetic() => "names are ASCII letters, digits and `_`".to_string(),
            _ => "this character is not part of the language".to_string(),
        };
        Diagnostic::error(format!("unexpected character `{}`", ch.escape_debug())).at(span, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        lex(text).unwrap().into_iter().map(|(_, t, _)| t).collect()
    }

    #[test]
    fn lines_continue_inside_brackets() {
        let t = toks("# c\n\nx = f(a,\n  b)  # tail\n\n");
        let texts: Vec<&str> = t.iter().map(Tok::text).collect();
        assert_eq!(texts, ["x", "=", "f", "(", "a", ",", "b", ")", "\n"]);
    }

    #[test]
    fn numbers() {
        for (text, v) in [("3", 3.0), (".5", 0.5), ("1e-4", 1e-4), ("2.5E+3", 2500.0), ("3.", 3.0)] {
            assert_eq!(toks(text)[0], Tok::Num(Number { value: v, text: text.into() }));
        }
        assert!(lex("1e").is_err());
        assert!(lex("1e999").is_err());
        assert!(lex(".").is_err());
    }

    #[test]
    fn brackets_must_match() {
        assert_eq!(lex("(]").unwrap_err().message, "mismatched `]`");
        assert_eq!(lex(")").unwrap_err().message, "unmatched `)`");
        assert_eq!(lex("f(x").unwrap_err().message, "unclosed `(`");
        assert!(toks("").is_empty());
        assert_eq!(toks("\u{feff}x\r\n").len(), 2);
    }
}
