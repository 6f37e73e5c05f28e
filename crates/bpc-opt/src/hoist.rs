//! Hoisting shared (batch-invariant) values out of the per-example part.
//!
//! Lowering adds a shared term to the per-example loss by broadcasting it over the batch and
//! averaging it back (`mean_b(ce + λ·R)`), and the adjoint sums its cotangent back over the
//! batch. Both walk a `[B]` vector for one number. These rewrites compute it once:
//!
//! - `reduce_mean(x + broadcast(s), axes=[0])` → `reduce_mean(x) + s` and
//!   `reduce_sum(x + broadcast(s), axes=[0])` → `reduce_sum(x) + s·B` (either operand order),
//!   where `broadcast` only adds the batch axis to a shared `s`;
//! - `reduce_sum(broadcast(s), axes=[0])` → `s·B` and `reduce_mean(broadcast(s))` → `s`;
//! - `(a / B) · B` → `a` (`B` the `batch_size`).
//!
//! They are exact in real arithmetic. In floating point the hoisted forms round once where
//! the per-example forms round `B` times, so results move by a few ulp (within the float32
//! tolerance `-O0` and `-O2` are held to), never more.

use bpc_ir::{BinaryOp, Function, Inst, ReduceOp, Shape, Value};

use crate::rewrite::Rewriter;

/// Applies the rewrites above.
pub fn hoist_shared(func: &Function) -> Function {
    Rewriter::new(func).run(|rw, v| {
        let inst = rw.mapped(v);
        let span = func.span(v);
        match inst {
            Inst::Reduce { op: op @ (ReduceOp::Sum | ReduceOp::Mean), arg, ref axes } if axes[..] == [0] => {
                if let Some(s) = batch_broadcast(&rw.out, arg) {
                    return match op {
                        ReduceOp::Mean => s,
                        _ => times_batch(rw, s, span),
                    };
                }
                let Inst::Binary { op: BinaryOp::Add, lhs, rhs } = *rw.out.inst(arg) else { return rw.copy(v) };
                let (x, s) = match (batch_broadcast(&rw.out, lhs), batch_broadcast(&rw.out, rhs)) {
                    (_, Some(s)) => (lhs, s),
                    (Some(s), None) => (rhs, s),
                    (None, None) => return rw.copy(v),
                };
                let reduced = rw.emit(Inst::Reduce { op, arg: x, axes: vec![0] }, span);
                let s = if op == ReduceOp::Sum { times_batch(rw, s, span) } else { s };
                rw.emit(Inst::Binary { op: BinaryOp::Add, lhs: reduced, rhs: s }, span)
            }
            Inst::Binary { op: BinaryOp::Mul, lhs, rhs } => {
                let f = &rw.out;
                let over_b = |q: Value, b: Value| match *f.inst(q) {
                    Inst::Binary { op: BinaryOp::Div, lhs: a, rhs: d } if is_batch(f, d) && is_batch(f, b) => Some(a),
                    _ => None,
                };
                match over_b(lhs, rhs).or_else(|| over_b(rhs, lhs)) {
                    Some(a) => a,
                    None => rw.copy(v),
                }
            }
            _ => rw.copy(v),
        }
    })
}

/// `s` if `v = broadcast(s)` only adds the batch axis to a shared `s`.
fn batch_broadcast(f: &Function, v: Value) -> Option<Value> {
    match f.inst(v) {
        Inst::Broadcast { arg, to } if !f.shape(*arg).batch && to.batch && f.shape(*arg).dims == to.dims => Some(*arg),
        _ => None,
    }
}

/// Whether `v` is the batch size (a scalar, or a broadcast of it).
fn is_batch(f: &Function, v: Value) -> bool {
    match f.inst(v) {
        Inst::BatchSize => true,
        Inst::Broadcast { arg, .. } => is_batch(f, *arg),
        _ => false,
    }
}

/// `s · B`, with the batch size broadcast to `s`'s shape.
fn times_batch(rw: &mut Rewriter, s: Value, span: bpc_ir::Span) -> Value {
    let b = rw.emit(Inst::BatchSize, span);
    let shape: Shape = rw.out.shape(s).clone();
    let b = if shape.rank() == 0 { b } else { rw.emit(Inst::Broadcast { arg: b, to: shape }, span) };
    rw.emit(Inst::Binary { op: BinaryOp::Mul, lhs: s, rhs: b }, span)
}
