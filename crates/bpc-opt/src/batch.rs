//! Binding the minibatch size: `batch_size` becomes the constant `B` of a compiled function.

use bpc_ir::{Function, Inst};

use crate::rewrite::Rewriter;

/// Replaces every `batch_size` by the constant `batch`, for a function about to be compiled
/// at that minibatch size (`bpc_codegen::compile` fixes it per compiled function). Folding
/// and simplification then turn the batch mean's `1 / B` into a constant, and at `B = 1`
/// its cotangent's products by `1 / B` disappear.
///
/// Exact for `B < 2²⁴` (every minibatch in practice): `B` is the same `f32`, and a folded
/// `1 / B` (rounded to `f64`, then to `f32`) is the correctly rounded `f32` quotient the
/// unbound code computes, since a double-rounding tie would need 28 equal bits in a row in
/// the binary expansion of `1 / B`, whose runs are shorter than 24 bits.
pub fn bind_batch_size(func: &Function, batch: usize) -> Function {
    Rewriter::new(func).run(|rw, v| match rw.mapped(v) {
        Inst::BatchSize => rw.emit(Inst::Const(batch as f64), func.span(v)),
        _ => rw.copy(v),
    })
}
