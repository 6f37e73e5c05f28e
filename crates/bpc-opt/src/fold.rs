//! Constant folding: elementwise instructions whose operands are all constants.

use bpc_ir::{Function, Inst, ReduceOp};

use crate::rewrite::Rewriter;

/// Replaces an elementwise op (or a `reduce_mean`/`reduce_max`/`reduce_min` of a constant)
/// whose operands are constants (scalars, or broadcasts of one) by the constant it gives,
/// computed with the op table's float64 semantics (`UnaryOp::eval`, `BinaryOp::eval`): the
/// interpreter's own arithmetic, so `-O0` and `-O2` agree on it exactly there, and to
/// float32 rounding in compiled code (which rounds the folded constant once, where the
/// unfolded code would round each step).
pub fn fold_constants(func: &Function) -> Function {
    Rewriter::new(func).run(|rw, v| {
        let inst = rw.mapped(v);
        let c = |x| rw.constant(x);
        let folded = match &inst {
            Inst::Unary { op, arg } => c(*arg).map(|a| op.eval(a)),
            Inst::Binary { op, lhs, rhs } => c(*lhs).zip(c(*rhs)).map(|(a, b)| op.eval(a, b)),
            Inst::Select { cond, on_true, on_false } => {
                c(*cond).and_then(|k| if k != 0.0 { c(*on_true) } else { c(*on_false) })
            }
            // Every element of the reduced group is the same number.
            Inst::Reduce { op: ReduceOp::Mean | ReduceOp::Max | ReduceOp::Min, arg, .. } => c(*arg),
            _ => None,
        };
        match folded {
            Some(k) => {
                let shape = func.shape(v).clone();
                rw.splat(k, &shape, func.span(v))
            }
            None => rw.copy(v),
        }
    })
}
