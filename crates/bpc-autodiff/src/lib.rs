//! # bpc-autodiff: reverse mode as an IR -> IR pass
//!
//! (Stub: the interface the other crates code against; being built.)

use bpc_ir::{Diagnostic, Function, Value};

/// Appends the adjoint of scalar `of` to a copy of `func` and returns it with the cotangent
/// value of each of `wrt` (an exact zero of the right shape where `of` does not depend on it).
pub fn append_adjoint(func: &Function, of: Value, wrt: &[Value]) -> Result<(Function, Vec<Value>), Diagnostic> {
    let _ = (func, of, wrt);
    todo!("bpc-autodiff")
}

/// Forward plus adjoint of the `loss` result: results `loss`, then `grad.NAME` for each name
/// in `wrt` (arguments or bindings of `func.names`).
pub fn value_and_grad(func: &Function, wrt: &[&str]) -> Result<Function, Diagnostic> {
    let _ = (func, wrt);
    todo!("bpc-autodiff")
}

/// The update rule compiled into a train step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// `W -= lr * dW`, `lr` a runtime argument.
    Sgd,
}

/// Forward, adjoint with respect to every param, and the update: appends a `Hyper` argument
/// `lr: f32[]`; results `loss`, then one in-place update per param.
pub fn train_step(func: &Function, optimizer: Optimizer) -> Result<Function, Diagnostic> {
    let _ = (func, optimizer);
    todo!("bpc-autodiff")
}
