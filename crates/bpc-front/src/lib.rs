//! # bpc-front: the `.bp` language
//!
//! (Stub: the interface the other crates code against; being built.)

use bpc_ir::{Diagnostic, Function};

/// A model's source text and the path it was read from (shown in diagnostics).
#[derive(Clone, Debug)]
pub struct Source {
    pub path: String,
    pub text: String,
}

/// Parses and lowers a model into its checked forward [`Function`].
///
/// The function's args are the declarations in source order (`input`, `label`, `param`);
/// its results are `loss` (the minibatch objective `f32[]`, the mean over the batch of the
/// per-example loss), `output` (if declared) and `logits` (the first argument of the first
/// `cross_entropy`, if any). `names` maps every declaration and binding to its value.
pub fn compile(src: &Source) -> Result<Function, Vec<Diagnostic>> {
    let _ = src;
    todo!("bpc-front")
}

/// Renders diagnostics as text with `file:line:column` and a caret under each span (no colour).
pub fn render(src: &Source, diags: &[Diagnostic]) -> String {
    let _ = (src, diags);
    todo!("bpc-front")
}
