//! Algebraic simplification: local rewrites that drop work.
//!
//! Exact in IEEE arithmetic (the result is bit-for-bit the same):
//! - `x * 1`, `1 * x`, `x / 1`, `x - 0`, `x ^ 1` → `x`; `neg(neg x)` → `x`;
//! - `broadcast(broadcast x)`, `reshape(reshape x)` → one view; a view to the operand's own
//!   type → the operand; `reshape` of a broadcast scalar → that scalar broadcast;
//! - `x > 0` where `relu(x)` is also computed → `relu(x) > 0` (the same mask, NaN included:
//!   it lets the pre-activation die right after the activation, as in the relu adjoint);
//! - `transpose(transpose x)` → `x`;
//! - `op(transpose a)·op(b)` → the product of `a` with its flag flipped (BLAS's transa/transb;
//!   likewise for `b`, both in one rewrite): code generation reads a transpose as a strided
//!   view either way, so the GEMM call gets the same strides; the rewrite lets the next one
//!   and fusion see the product itself.
//!
//! Transpose folding, exact in real arithmetic: `transpose(op(a)·op(b))` → `op(b)ᵀ·op(a)ᵀ`,
//! the operands swapped and both flags flipped, when the product has no other use. The
//! adjoint of `transpose(W) @ x` is `transpose(dHᵀ·x)`; computed as `xᵀ·dH` it comes out in
//! `W`'s own layout, so the SGD update of `W` folds into the product instead of a kernel that
//! reads the gradient transposed. The product then has the other layout: it, and the products
//! that read it, may take another kernel and sum in another order (last-bit differences).
//!
//! Exact in real arithmetic, documented deviations in floating point:
//! - `x + 0`, `0 + x` → `x`: differs only for `x = -0` (gives `-0` where IEEE gives `+0`);
//!   `strong_mul(x, 1)` → `x` likewise (the strong product gives `+0` for `x = -0`);
//!   `strong_mul(x, c)` → `x * c` for a constant `c` finite and nonzero in `f32` (the guard only
//!   matters for a zero or non-finite factor; `±0 · c` keeps IEEE's sign where the strong
//!   product gives `+0`), e.g. the batch mean's cotangent `1 / B` once `B` is bound;
//! - `log(exp x)` → `x`: the rewritten form is the exact one (no rounding, no overflow of
//!   `exp` to inf for `x > 88`);
//! - `sqrt(x)^2` and `sqrt(x) * sqrt(x)` → `x` where `x >= 0` is known ([`nonneg`]): the
//!   unrewritten form is within 1 ulp of `x` (and NaN for negative `x`, hence the condition);
//! - `q / b` where `q = 1 / b` → `q * q`: the adjoint of `1 / b` (the lecture's sigmoid gate
//!   `1 / (1 + e^-z)`) without its second division; both forms round twice, so they agree to
//!   about 1 ulp, and zeros, infinities and NaN come out the same.

use bpc_ir::{BinaryOp, Function, Inst, ReduceOp, UnaryOp, Value};

use crate::rewrite::{Rewriter, constant};

/// Applies the rewrites above, each on the already-simplified operands.
pub fn simplify(func: &Function) -> Function {
    let mut uses = vec![0usize; func.len()];
    for v in func.values() {
        for o in func.inst(v).operands() {
            uses[o.index()] += 1;
        }
    }
    for r in &func.results {
        uses[r.value.index()] += 1;
    }
    Rewriter::new(func).run(|rw, v| {
        let inst = rw.mapped(v);
        // Here, not in `rewrite`: it needs the source's use count of the product. The operand
        // must be a product in the source too: one that only maps to a product (`M * 1`,
        // `transpose(transpose M)`) says nothing about the product's other uses.
        if let Inst::Transpose { arg } = *func.inst(v)
            && uses[arg.index()] == 1
            && matches!(func.inst(arg), Inst::MatMul { .. })
            && let Inst::MatMul { lhs, rhs, ta, tb } = *rw.out.inst(rw.get(arg))
        {
            return rw.emit(Inst::MatMul { lhs: rhs, rhs: lhs, ta: !tb, tb: !ta }, func.span(v));
        }
        match rewrite(&rw.out, &inst, func, v) {
            Some(Rewrite::Value(w)) => w,
            Some(Rewrite::Inst(i)) => rw.emit(i, func.span(v)),
            None => rw.copy(v),
        }
    })
}

enum Rewrite {
    Value(Value),
    Inst(Inst),
}

fn rewrite(out: &Function, inst: &Inst, src: &Function, v: Value) -> Option<Rewrite> {
    let is = |x: Value, c: f64| constant(out, x).is_some_and(|k| k == c && k.is_sign_positive());
    // A factor that makes the strong product an IEEE one (as the f32 the code multiplies by).
    let plain = |x: Value| constant(out, x).is_some_and(|k| (k as f32).is_finite() && k as f32 != 0.0);
    let same_type = |x: Value| *out.ty(x) == *src.ty(v);
    use Rewrite::{Inst as I, Value as V};
    match *inst {
        Inst::Binary { op: BinaryOp::Mul, lhs, rhs } if is(rhs, 1.0) => Some(V(lhs)),
        Inst::Binary { op: BinaryOp::Mul, lhs, rhs } if is(lhs, 1.0) => Some(V(rhs)),
        Inst::Binary { op: BinaryOp::StrongMul, lhs, rhs } if is(rhs, 1.0) => Some(V(lhs)),
        Inst::Binary { op: BinaryOp::StrongMul, lhs, rhs } if is(lhs, 1.0) => Some(V(rhs)),
        Inst::Binary { op: BinaryOp::StrongMul, lhs, rhs } if plain(rhs) || plain(lhs) => {
            Some(I(Inst::Binary { op: BinaryOp::Mul, lhs, rhs }))
        }
        Inst::Binary { op: BinaryOp::Div, lhs, rhs } if is(rhs, 1.0) => Some(V(lhs)),
        Inst::Binary { op: BinaryOp::Div, lhs, rhs } => match *out.inst(lhs) {
            Inst::Binary { op: BinaryOp::Div, lhs: one, rhs: b } if b == rhs && is(one, 1.0) => {
                Some(I(Inst::Binary { op: BinaryOp::Mul, lhs, rhs: lhs }))
            }
            _ => None,
        },
        Inst::Binary { op: BinaryOp::Sub, lhs, rhs } if is(rhs, 0.0) => Some(V(lhs)),
        Inst::Binary { op: BinaryOp::Add, lhs, rhs } if is(rhs, 0.0) => Some(V(lhs)),
        Inst::Binary { op: BinaryOp::Add, lhs, rhs } if is(lhs, 0.0) => Some(V(rhs)),
        Inst::Binary { op: BinaryOp::Pow, lhs, rhs } if is(rhs, 1.0) => Some(V(lhs)),
        Inst::Binary { op: BinaryOp::Pow, lhs, rhs } if is(rhs, 2.0) => sqrt_of_nonneg(out, lhs).map(V),
        Inst::Binary { op: BinaryOp::Mul, lhs, rhs } if lhs == rhs => sqrt_of_nonneg(out, lhs).map(V),
        Inst::Binary { op: BinaryOp::Gt, lhs, rhs } if is(rhs, 0.0) => {
            let relu = out.values().find(|&w| *out.inst(w) == Inst::Unary { op: UnaryOp::Relu, arg: lhs })?;
            Some(I(Inst::Binary { op: BinaryOp::Gt, lhs: relu, rhs }))
        }
        Inst::Unary { op: UnaryOp::Neg, arg } => match *out.inst(arg) {
            Inst::Unary { op: UnaryOp::Neg, arg: x } => Some(V(x)),
            _ => None,
        },
        Inst::Unary { op: UnaryOp::Log, arg } => match *out.inst(arg) {
            Inst::Unary { op: UnaryOp::Exp, arg: x } => Some(V(x)),
            _ => None,
        },
        Inst::Transpose { arg } => match *out.inst(arg) {
            Inst::Transpose { arg: x } => Some(V(x)),
            _ => None,
        },
        Inst::MatMul { lhs, rhs, ta, tb } => {
            let untranspose = |x: Value, t: bool| match *out.inst(x) {
                Inst::Transpose { arg } => (arg, !t),
                _ => (x, t),
            };
            let ((a, ta), (b, tb)) = (untranspose(lhs, ta), untranspose(rhs, tb));
            ((a, b) != (lhs, rhs)).then_some(I(Inst::MatMul { lhs: a, rhs: b, ta, tb }))
        }
        Inst::Broadcast { arg, .. } | Inst::Reshape { arg, .. } if same_type(arg) => Some(V(arg)),
        Inst::Broadcast { arg, ref to } => match *out.inst(arg) {
            Inst::Broadcast { arg: x, .. } => Some(I(Inst::Broadcast { arg: x, to: to.clone() })),
            _ => None,
        },
        Inst::Reshape { arg, ref to } => match *out.inst(arg) {
            Inst::Reshape { arg: x, .. } => Some(I(Inst::Reshape { arg: x, to: to.clone() })),
            Inst::Broadcast { arg: x, .. } if out.shape(x).rank() == 0 => {
                Some(I(Inst::Broadcast { arg: x, to: to.clone() }))
            }
            _ => None,
        },
        _ => None,
    }
}

/// `x` if `s = sqrt(x)` with `x >= 0` known.
fn sqrt_of_nonneg(f: &Function, s: Value) -> Option<Value> {
    match *f.inst(s) {
        Inst::Unary { op: UnaryOp::Sqrt, arg } if nonneg(f, arg, 0) => Some(arg),
        _ => None,
    }
}

/// Whether every element of `v` is known to be `>= 0` (or NaN, where the rewrites that ask
/// are exact anyway). Conservative: `false` when unsure.
pub(crate) fn nonneg(f: &Function, v: Value, depth: usize) -> bool {
    if depth > 16 {
        return false;
    }
    let nn = |x: Value| nonneg(f, x, depth + 1);
    match *f.inst(v) {
        Inst::Const(c) => c >= 0.0,
        Inst::BatchSize | Inst::OneHot { .. } => true,
        Inst::Arg(_) | Inst::CrossEntropy { .. } | Inst::Scatter { .. } => false,
        Inst::Unary { op, .. } => match op {
            UnaryOp::Exp | UnaryOp::Abs | UnaryOp::Sqrt | UnaryOp::Relu | UnaryOp::Sigmoid | UnaryOp::Softplus => true,
            UnaryOp::Neg | UnaryOp::Log | UnaryOp::Tanh | UnaryOp::LogSigmoid => false,
        },
        Inst::Binary { op, lhs, rhs } => match op {
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq => true,
            BinaryOp::Mul | BinaryOp::StrongMul => lhs == rhs || (nn(lhs) && nn(rhs)),
            BinaryOp::Add | BinaryOp::Div | BinaryOp::Min => nn(lhs) && nn(rhs),
            BinaryOp::Max => nn(lhs) || nn(rhs),
            BinaryOp::Pow => nn(lhs) || constant(f, rhs).is_some_and(|y| y.fract() == 0.0 && (y / 2.0).fract() == 0.0),
            BinaryOp::Sub => false,
        },
        Inst::Select { on_true, on_false, .. } => nn(on_true) && nn(on_false),
        Inst::Reduce { op, arg, .. } => match op {
            ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Max | ReduceOp::Min => nn(arg),
            ReduceOp::LogSumExp => false,
        },
        Inst::Broadcast { arg, .. } | Inst::Reshape { arg, .. } | Inst::Transpose { arg } | Inst::Index { arg, .. } => {
            nn(arg)
        }
        Inst::MatMul { lhs, rhs, .. } => nn(lhs) && nn(rhs),
        Inst::Softmax { log, .. } => !log,
    }
}
