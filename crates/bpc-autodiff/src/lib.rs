//! # bpc-autodiff: reverse mode as an IR -> IR pass
//!
//! [`append_adjoint`] takes a checked forward [`Function`] and appends its adjoint (backward)
//! program as ordinary IR after the forward values, the shape of JAX's autodidax: seed the
//! cotangent of the scalar loss with `1.0`, walk the primal values backwards, apply one
//! vector–Jacobian rule per instruction (`vjp.rs`, one exhaustive `match`), and sum the
//! cotangents of a value used several times with `add`. Invariants:
//!
//! - **The adjoint is IR.** It uses only the primitives the forward uses, so it verifies,
//!   interprets, optimizes and compiles like any function, and can be differentiated again.
//! - **The forward is untouched.** Values `0..adjoint_start` are the input function's, with
//!   their names and results; the adjoint reads the forward results it needs (`exp: ct·out`).
//! - **Only what is asked for.** Code is emitted only for values on a path from a `wrt`
//!   value to the loss; a `wrt` value the loss does not depend on gets an exact zero.
//! - **Spans travel.** Every appended value has the span of the primal instruction it comes
//!   from, so "inf in the adjoint" can name a source line.
//! - **Batching is explicit.** The loss is `(1/B) Σ_i loss_i + shared terms`: the frontend's
//!   `reduce_mean` over the batch axis transposes to a `1/batch_size` scale, and a shared
//!   value broadcast into the per-example part has its cotangent summed over the batch axis,
//!   so a regularizer's gradient comes out exactly once.
//!
//! [`value_and_grad`] and [`train_step`] package the adjoint as the functions the driver
//! compiles: the loss and named gradients, or the loss and in-place optimizer updates.

pub mod optim;
mod sweep;
mod vjp;

use bpc_ir::{ArgId, Diagnostic, Function, Inst, Output, Value};

pub use optim::{Optimizer, UpdateRule};
pub use sweep::append_adjoint;

/// Forward plus adjoint of the `loss` result.
///
/// Results: `loss` (`f32[]`), then `grad.NAME` for each name in `wrt` (same type as NAME's
/// value), then `func`'s other results (`output`, `logits`) unchanged. A name is an argument
/// or a binding of `func.names`; `func.names` are kept.
///
/// # Errors
/// A [`Diagnostic`] if `func` has no `loss` result or it is not `f32[]`, if a name is
/// unknown, or if it names a class label (pointing at its declaration).
pub fn value_and_grad(func: &Function, wrt: &[&str]) -> Result<Function, Diagnostic> {
    let loss = loss_of(func)?;
    let mut base = func.clone();
    let targets = wrt.iter().map(|name| lookup(&mut base, name)).collect::<Result<Vec<_>, _>>()?;
    let (mut out, grads) = append_adjoint(&base, loss, &targets)?;
    let others = take_other_results(&mut out);
    for (name, g) in wrt.iter().zip(grads) {
        out.add_result(format!("grad.{name}"), g);
    }
    out.results.extend(others);
    Ok(out)
}

/// Forward, adjoint of `loss` with respect to every param, and the update.
///
/// Appends the `Hyper` arguments of `rule` ([`UpdateRule::hypers`]: `lr: f32[]`, the learning
/// rate, then the optimizer's settings) and its `State` arguments (per state prefix, one per
/// param in declaration order, named `PREFIX.P` with P's type). Results: `loss`, then `func`'s
/// other results (`output`, `logits`, for the driver's train accuracy), then one result per
/// param in declaration order, named after it with `update: Some(param)`: the param's new value
/// (see [`optim`] for the rules), then one per state argument with `update: Some(state)`.
///
/// # Errors
/// A [`Diagnostic`] if `func` has no scalar `loss`, or already has an argument named `lr`.
pub fn train_step(func: &Function, rule: impl Into<UpdateRule>) -> Result<Function, Diagnostic> {
    let rule = rule.into();
    let loss = loss_of(func)?;
    if let Some(id) = func.arg_named(optim::hyper::LR) {
        return Err(Diagnostic::error("`lr` is the learning rate of the train step and cannot name a declaration")
            .at(func.arg(id).span, "declared here")
            .note("rename this declaration"));
    }
    let mut base = func.clone();
    let params: Vec<ArgId> = base.params().collect();
    let weights: Vec<Value> = params.iter().map(|&p| read_arg(&mut base, p)).collect();
    let (mut out, grads) = append_adjoint(&base, loss, &weights)?;
    let others = take_other_results(&mut out);
    out.results.extend(others);
    optim::append_updates(&mut out, rule, &params, &weights, &grads);
    Ok(out)
}

/// The value of the `loss` result.
fn loss_of(func: &Function) -> Result<Value, Diagnostic> {
    match func.result("loss") {
        Some(r) => Ok(r.value),
        None => Err(Diagnostic::error(format!("`{}` has no `loss` to differentiate", func.name))
            .note("a model declares exactly one `loss EXPR`")),
    }
}

/// Leaves `loss` as the only result of `f` and returns the others, in order.
fn take_other_results(f: &mut Function) -> Vec<Output> {
    let (loss, others) = std::mem::take(&mut f.results).into_iter().partition(|r| r.name == "loss");
    f.results = loss;
    others
}

/// The value a gradient name refers to: a binding or declaration of `func.names`, else an
/// argument (read now if the function never reads it).
fn lookup(func: &mut Function, name: &str) -> Result<Value, Diagnostic> {
    if let Some(v) = func.named(name) {
        return Ok(v);
    }
    match func.arg_named(name) {
        Some(id) => Ok(read_arg(func, id)),
        None => Err(Diagnostic::error(format!("cannot differentiate with respect to `{name}`: no such name"))
            .note("gradients are taken with respect to inputs, real labels, params and bindings")),
    }
}

/// The value that reads argument `id`, appending one if the function never reads it.
fn read_arg(func: &mut Function, id: ArgId) -> Value {
    match func.arg_value(id) {
        Some(v) => v,
        None => {
            let span = func.arg(id).span;
            func.ins(Inst::Arg(id), span)
        }
    }
}
