//! # bpc-front: the `.bp` language
//!
//! Source text goes through three steps, each a plain function:
//!
//! 1. [`lexer::lex`] resolves the line structure (a statement per line, continued inside
//!    open brackets) and matches brackets;
//! 2. [`parse`] runs the lalrpop grammar (`grammar/bp.lalrpop`) into an [`ast::Module`];
//! 3. [`lower`] checks names and shapes and builds the forward [`Function`] in `bpc-ir`.
//!
//! Invariants kept here:
//!
//! - **No input panics.** Every problem in the user's program is a [`Diagnostic`] with a
//!   span; expression depth is capped (both in the tree and through `def` inlining), so no
//!   recursion can overflow the stack. A panic means a bug in this crate.
//! - **The program describes one example.** Lowering decides per value whether it is
//!   per-example (depends on an input or a label: physical shape `[B, ...]`) or shared, and
//!   makes every broadcast explicit. Axis numbers the user writes count the example's axes;
//!   the IR's count the batch axis.
//! - **Constants fold.** `const`s, numbers and expressions of them are `f64` at compile time
//!   and enter the IR as one `const` each, where they meet a tensor.
//! - **Spans travel.** Every value the lowering creates carries the span of the source
//!   expression it comes from.

pub mod ast;
pub mod lexer;
mod lower;
mod parse;
mod render;

use bpc_ir::{Diagnostic, Function};

pub use lower::MAX_INLINE_DEPTH;

/// A model's source text and the path it was read from (shown in diagnostics).
#[derive(Clone, Debug)]
pub struct Source {
    pub path: String,
    pub text: String,
}

impl Source {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Source {
        Source { path: path.into(), text: text.into() }
    }

    /// The file stem of `path` (`examples/mnist.bp` gives `mnist`), or `model`.
    pub fn stem(&self) -> String {
        std::path::Path::new(&self.path)
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("model")
            .to_string()
    }
}

/// Parses a program into its syntax tree (printable with `Display`: `bpc MODEL --emit ast`).
///
/// Errors: the first lexical or syntax error, or every expression nested deeper than
/// [`ast::MAX_DEPTH`].
pub fn parse(src: &Source) -> Result<ast::Module, Vec<Diagnostic>> {
    parse::parse_text(&src.text)
}

/// Lowers a parsed program into its checked forward [`Function`], named by its `model` line
/// (else `model`; [`compile`] uses the file stem instead).
///
/// See [`compile`] for what the function holds. Errors: every name, shape, arity and
/// declaration problem found (lowering goes on after an error where it can).
pub fn lower(module: &ast::Module) -> Result<Function, Vec<Diagnostic>> {
    lower::lower_module(module)
}

/// Parses and lowers a model into its checked forward [`Function`].
///
/// The function's args are the declarations in source order (`input`, `label`, `param`);
/// its results are `loss` (the minibatch objective `f32[]`, the mean over the batch of the
/// per-example loss), `output` (if declared) and `logits` (the first argument of the first
/// `cross_entropy`, if any). `names` maps every declaration and binding to its value.
pub fn compile(src: &Source) -> Result<Function, Vec<Diagnostic>> {
    let module = parse(src)?;
    let mut func = lower(&module)?;
    if module.model_name().is_none() {
        func.name = src.stem();
    }
    Ok(func)
}

/// Renders diagnostics as text with `file:line:column` and a caret under each span (no colour).
pub fn render(src: &Source, diags: &[Diagnostic]) -> String {
    render::render(src, diags)
}
