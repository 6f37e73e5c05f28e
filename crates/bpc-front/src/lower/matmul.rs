//! `@`: NumPy's `matmul` on the example dims, batched.
//!
//! The IR's `matmul` is a physical rank-2 GEMM with BLAS transpose flags, and `reshape` is
//! free, so the common cases become one GEMM:
//!
//! | example shapes                         | IR                                            |
//! |----------------------------------------|-----------------------------------------------|
//! | shared `A[m,k] @ B[k,n]` (and vectors) | `matmul` (vectors reshaped to `[1,k]`/`[k,1]`)|
//! | shared `A[m,k]` @ per-example `x[k]`   | `matmul(x, A, tb)`: `f32[B,m]`, one GEMM      |
//! | per-example `x[k]` @ shared `W[k,n]`   | `matmul(x, W)`: `f32[B,n]`                    |
//! | per-example `x[k]` · shared `w[k]`     | `matmul(x, w as [k,1])` as `f32[B]`           |
//!
//! Everything else (a per-example matrix, two per-example operands, more than 2 axes) is
//! the general form: both operands reshaped so the contracted axis lines up
//! (`a[.., m, k, 1]`, `b[.., 1, k, n]`, the `m`/`n` axes left out for vectors), broadcast
//! to one shape, multiplied, and summed over `k`. Always correct; physical rank ≤ 4 for
//! matrices.

use bpc_ir::{BinaryOp, Diagnostic, Inst, ReduceOp, Shape, Span, Value, broadcast_shapes};

use super::expr::show;
use super::{Lowerer, Opd, R, Val};

impl Lowerer<'_> {
    #[inline(never)]
    pub(crate) fn matmul(&mut self, a: Opd, b: Opd, span: Span) -> R<Val> {
        let (ca, cb) = (self.check_float(a), self.check_float(b));
        ca?;
        cb?;
        let (sa, sb) = (self.shape_of(a.val), self.shape_of(b.val));
        for (o, s, side) in [(a, &sa, "left"), (b, &sb, "right")] {
            if s.dims.is_empty() {
                let d = Diagnostic::error(format!("the {side} operand of `@` is a scalar"))
                    .at(o.span, "this has shape []")
                    .note("`@` multiplies vectors and matrices; use `*` to scale by a scalar");
                return Err(self.error(d));
            }
        }
        let ka = *sa.dims.last().expect("not a scalar");
        let kb = if sb.dims.len() == 1 { sb.dims[0] } else { sb.dims[sb.dims.len() - 2] };
        if ka != kb {
            let d = Diagnostic::error(format!("shape mismatch in `@`: {} @ {}", show(&sa), show(&sb)))
                .at(span, format!("contracts {ka} with {kb}"))
                .also(a.span, format!("this has shape {}", show(&sa)))
                .also(b.span, format!("this has shape {}", show(&sb)))
                .note("`A @ B` needs A's last axis as long as B's first (for a vector, its only) axis");
            return Err(self.error(d));
        }
        let (va, vb) = (self.materialize(a), self.materialize(b));
        let (ra, rb) = (sa.dims.len(), sb.dims.len());
        let k = ka;
        let out = match (sa.batch, ra, sb.batch, rb) {
            (false, 1..=2, false, 1..=2) => self.shared_gemm(va, &sa, vb, &sb, span),
            // A[m,k] @ x[k] per example: x · Aᵀ over the minibatch.
            (false, 2, true, 1) => self.ins(Inst::MatMul { lhs: vb, rhs: va, ta: false, tb: true }, span),
            (true, 1, false, 2) => self.ins(Inst::MatMul { lhs: va, rhs: vb, ta: false, tb: false }, span),
            (true, 1, false, 1) => self.batched_dot(va, vb, k, span),
            (false, 1, true, 1) => self.batched_dot(vb, va, k, span),
            _ => return self.general_matmul(va, &sa, vb, &sb, span),
        };
        Ok(Val::Tensor(out))
    }

    fn reshape(&mut self, v: Value, dims: Vec<usize>, span: Span) -> Value {
        let s = self.func.shape(v);
        if s.dims == dims {
            return v;
        }
        let to = Shape { batch: s.batch, dims };
        self.ins(Inst::Reshape { arg: v, to }, span)
    }

    /// Both shared, rank 1 or 2: vectors become a row (left) or a column (right).
    fn shared_gemm(&mut self, a: Value, sa: &Shape, b: Value, sb: &Shape, span: Span) -> Value {
        let lhs = if sa.dims.len() == 1 { self.reshape(a, vec![1, sa.dims[0]], span) } else { a };
        let rhs = if sb.dims.len() == 1 { self.reshape(b, vec![sb.dims[0], 1], span) } else { b };
        let m = self.ins(Inst::MatMul { lhs, rhs, ta: false, tb: false }, span);
        let mut dims = Vec::new();
        if sa.dims.len() == 2 {
            dims.push(sa.dims[0]);
        }
        if sb.dims.len() == 2 {
            dims.push(sb.dims[1]);
        }
        self.reshape(m, dims, span)
    }

    /// Per-example `x[k]` · shared `w[k]`: `x[B,k] · w[k,1]`, as `f32[B]`.
    fn batched_dot(&mut self, x: Value, w: Value, k: usize, span: Span) -> Value {
        let col = self.reshape(w, vec![k, 1], span);
        let m = self.ins(Inst::MatMul { lhs: x, rhs: col, ta: false, tb: false }, span);
        self.reshape(m, vec![], span)
    }

    /// The general form: align, broadcast, multiply, sum over the contracted axis.
    fn general_matmul(&mut self, a: Value, sa: &Shape, b: Value, sb: &Shape, span: Span) -> R<Val> {
        let (a_vec, b_vec) = (sa.dims.len() == 1, sb.dims.len() == 1);
        // a as [lead_a.., m?, k, 1?] and b as [lead_b.., 1?, k, n?].
        let mut da = sa.dims.clone();
        if !b_vec {
            da.push(1);
        }
        let mut db = sb.dims.clone();
        if !a_vec {
            db.insert(db.len() - if b_vec { 1 } else { 2 }, 1);
        }
        let (a2, b2) = (Shape { batch: sa.batch, dims: da }, Shape { batch: sb.batch, dims: db });
        let Some(full) = broadcast_shapes(&a2, &b2) else {
            let d = Diagnostic::error(format!("shape mismatch in `@`: {} @ {}", show(sa), show(sb)))
                .at(span, "the leading axes do not broadcast")
                .note("for tensors of more than 2 axes, `@` multiplies the matrices in the last two axes and broadcasts the rest");
            return Err(self.error(d));
        };
        self.check_size(&full.dims, span)?;
        let a = self.reshape(a, a2.dims, span);
        let b = self.reshape(b, b2.dims, span);
        let a = self.broadcast_to(a, &full, span);
        let b = self.broadcast_to(b, &full, span);
        let prod = self.ins(Inst::Binary { op: BinaryOp::Mul, lhs: a, rhs: b }, span);
        // The contracted axis is second to last if b contributes an `n` axis, else last.
        let k_axis = full.rank() - if b_vec { 1 } else { 2 };
        Ok(Val::Tensor(self.ins(Inst::Reduce { op: ReduceOp::Sum, arg: prod, axes: vec![k_axis] }, span)))
    }
}
