//! One vector–Jacobian product (VJP) rule per primitive: the table of the reverse mode.
//!
//! [`pullback`] is one exhaustive `match` over [`Inst`] (and [`UnaryOp`], [`BinaryOp`],
//! [`ReduceOp`]) with no wildcard arm: a new primitive does not compile until it has a rule
//! here. Each rule receives the primal value `out`, its cotangent `ct` and hands each operand
//! its contribution through [`Sweep::give`]; the rules use the forward result where that is
//! cheaper (`exp: ct·out`, `tanh: ct·(1−out²)`), as JAX's `lax.py` does.
//!
//! Conventions (SPEC §2, following JAX and PyTorch): `relu'(0) = 0`, `abs'(0) = 0`, a tie of
//! binary `max`/`min` gives half the cotangent to each side, a reducing `max`/`min` splits it
//! evenly among the tied extrema; comparisons, masks and class labels get no gradient.
//!
//! **Strong zeros.** Every product "cotangent × local partial derivative" goes through
//! [`Sweep::scale`], which emits `strong_mul` (exactly 0 where either factor is ±0), and so do
//! the quotients (`ct/x` is `ct ⊙ (1/x)`) and the tie split of a reducing max (`mask ⊙ 1/count`).
//! So the inactive branch of `where`/`max`, or `sqrt`/`log` at 0 behind a zero factor, never
//! leaks inf or NaN into a gradient. GEMMs (matmul's rule) are plain IEEE, as SPEC §2 says.
//!
//! **Second order.** The rules emit only primitives, so the adjoint is differentiated like any
//! program. `strong_mul`'s own rule is `mul`'s with strong products, `ct ⊙ b` and `ct ⊙ a`:
//! where no factor is 0 it is the product rule; where `a = 0` (or `b = 0`) with finite factors
//! `strong_mul` equals `a·b`, so the product rule is still its derivative; and a forced zero
//! stays a hard zero one order up (the grad of grad of `where(x > 0, sqrt(x), 0)` at 0 is 0).

use bpc_ir::{BinaryOp, Dim, Inst, ReduceOp, Shape, UnaryOp, Value};

use crate::sweep::Sweep;

/// Propagates `ct`, the cotangent of the primal value `out`, to `out`'s operands.
pub(crate) fn pullback(s: &mut Sweep, out: Value, ct: Value) {
    match s.inst(out) {
        // Sources: nothing to propagate to.
        Inst::Arg(_) | Inst::Const(_) | Inst::BatchSize => {}
        // onehot of an integer label: no gradient to the label.
        Inst::OneHot { .. } => {}
        Inst::Unary { op, arg } => unary(s, op, arg, out, ct),
        Inst::Binary { op, lhs, rhs } => binary(s, op, lhs, rhs, out, ct),
        // where(c, a, b): ct routed to the branch taken, none to the mask.
        Inst::Select { cond, on_true, on_false } => {
            s.give(on_true, |s| s.route(cond, ct, true));
            s.give(on_false, |s| s.route(cond, ct, false));
        }
        Inst::Reduce { op, arg, axes } => reduce(s, op, arg, &axes, out, ct),
        // broadcast: ct summed over the broadcast axes (batch axis included) back to the operand.
        Inst::Broadcast { arg, .. } => s.give(arg, |s| s.sum_to(ct, &s.shape(arg))),
        // reshape: reshape back.
        Inst::Reshape { arg, .. } => s.give(arg, |s| s.reshape(ct, &s.shape(arg))),
        // transpose: transpose back.
        Inst::Transpose { arg } => s.give(arg, |s| s.ins(Inst::Transpose { arg: ct })),
        // C = op(A)·op(B): dA = dC·op(B)ᵀ and dB = op(A)ᵀ·dC, each laid out as its operand is:
        // dA = matmul(dC, B, tb=!tb), or matmul(B, dC, ta=tb, tb) when ta;
        // dB = matmul(A, dC, ta=!ta), or matmul(dC, A, ta, tb=ta) when tb.
        Inst::MatMul { lhs, rhs, ta, tb } => {
            s.give(lhs, |s| if ta { s.matmul(rhs, ct, tb, true) } else { s.matmul(ct, rhs, false, !tb) });
            s.give(rhs, |s| if tb { s.matmul(ct, lhs, true, ta) } else { s.matmul(lhs, ct, !ta, false) });
        }
        // softmax s along an axis: s·(ct − Σ ct·s).
        Inst::Softmax { arg, axis, log: false } => s.give(arg, |s| s.softmax_vjp(ct, out, axis)),
        // log_softmax: ct − softmax·Σ ct, with softmax = exp(out).
        Inst::Softmax { arg, axis, log: true } => s.give(arg, |s| s.log_softmax_vjp(ct, out, axis)),
        // cross_entropy(z, y) = logsumexp(z) − z[y]: ct·(softmax(z) − onehot(y)); none to the label.
        Inst::CrossEntropy { logits, label } => s.give(logits, |s| s.cross_entropy_vjp(ct, logits, label)),
        // index: ct placed back at the indexed position, zeros elsewhere.
        Inst::Index { arg, at } => s.give(arg, |s| s.ins(Inst::Scatter { arg: ct, at, to: s.shape(arg) })),
        // scatter: read the cotangent back at the scattered position.
        Inst::Scatter { arg, at, .. } => s.give(arg, |s| s.ins(Inst::Index { arg: ct, at })),
    }
}

fn unary(s: &mut Sweep, op: UnaryOp, x: Value, out: Value, ct: Value) {
    match op {
        // -x: −ct.
        UnaryOp::Neg => s.give(x, |s| s.un(UnaryOp::Neg, ct)),
        // eˣ: ct·out.
        UnaryOp::Exp => s.chain(x, ct, |_| out),
        // log x: ct/x (log'(0) = inf, IEEE).
        UnaryOp::Log => s.chain(x, ct, |s| s.c_bin(BinaryOp::Div, 1.0, x)),
        // √x: ct·0.5/out (sqrt'(0) = inf, IEEE).
        UnaryOp::Sqrt => s.chain(x, ct, |s| s.c_bin(BinaryOp::Div, 0.5, out)),
        // |x|: ct·sign(x), abs'(0) = 0.
        UnaryOp::Abs => s.chain(x, ct, |s| s.sign(x)),
        // σ(x): ct·out·(1 − out).
        UnaryOp::Sigmoid => s.chain(x, ct, |s| s.sigmoid_slope(out)),
        // tanh x: ct·(1 − out²).
        UnaryOp::Tanh => s.chain(x, ct, |s| s.tanh_slope(out)),
        // relu x: ct where x > 0, else 0: relu'(0) = 0.
        UnaryOp::Relu => s.give(x, |s| s.route_where(BinaryOp::Gt, x, ct)),
        // softplus x = log(1 + eˣ): ct·σ(x).
        UnaryOp::Softplus => s.chain(x, ct, |s| s.un(UnaryOp::Sigmoid, x)),
        // log σ(x): ct·σ(−x).
        UnaryOp::LogSigmoid => s.chain(x, ct, |s| s.sigmoid_of_neg(x)),
    }
}

fn binary(s: &mut Sweep, op: BinaryOp, a: Value, b: Value, out: Value, ct: Value) {
    match op {
        // a + b: ct to both.
        BinaryOp::Add => {
            s.give(a, |_| ct);
            s.give(b, |_| ct);
        }
        // a − b: ct, −ct.
        BinaryOp::Sub => {
            s.give(a, |_| ct);
            s.give(b, |s| s.un(UnaryOp::Neg, ct));
        }
        // a·b: ct·b, ct·a. strong_mul: the same (see "Second order" above).
        BinaryOp::Mul | BinaryOp::StrongMul => {
            s.chain(a, ct, |_| b);
            s.chain(b, ct, |_| a);
        }
        // a/b: ct·(1/b), ct·(−out/b).
        BinaryOp::Div => {
            s.chain(a, ct, |s| s.c_bin(BinaryOp::Div, 1.0, b));
            s.chain(b, ct, |s| s.neg_quotient(out, b));
        }
        // aᵇ: ct·b·aᵇ⁻¹ (0 at b = 0), and ct·out·log a to a tensor exponent (0 at a = 0).
        BinaryOp::Pow => {
            s.chain(a, ct, |s| s.power_slope(a, b));
            s.chain(b, ct, |s| s.times_log(out, a));
        }
        // max: ct to the larger side; a tie gives ½ to each.
        BinaryOp::Max => {
            s.chain(a, ct, |s| s.tie_weight(BinaryOp::Gt, a, b));
            s.chain(b, ct, |s| s.tie_weight(BinaryOp::Gt, b, a));
        }
        // min: ct to the smaller side; a tie gives ½ to each.
        BinaryOp::Min => {
            s.chain(a, ct, |s| s.tie_weight(BinaryOp::Lt, a, b));
            s.chain(b, ct, |s| s.tie_weight(BinaryOp::Lt, b, a));
        }
        // Comparisons give 0/1 masks: no gradient to either side.
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq => {}
    }
}

fn reduce(s: &mut Sweep, op: ReduceOp, x: Value, axes: &[usize], out: Value, ct: Value) {
    match op {
        // Σ: ct broadcast back over the reduced axes.
        ReduceOp::Sum => s.give(x, |s| s.unreduce(ct, x, axes)),
        // mean: ct/n broadcast back; n counts the batch axis as `batch_size`.
        ReduceOp::Mean => s.give(x, |s| s.mean_vjp(ct, x, axes)),
        // max/min: ct split evenly among the tied extrema: mask = (x == out), ct·mask·(1/Σ mask).
        ReduceOp::Max | ReduceOp::Min => s.give(x, |s| s.extremum_vjp(ct, x, out, axes)),
        // logsumexp: ct·softmax(x) = ct·exp(x − out).
        ReduceOp::LogSumExp => s.give(x, |s| s.logsumexp_vjp(ct, x, out, axes)),
    }
}

impl Sweep {
    /// The product of a cotangent `ct` and a local partial derivative `d` of the same type:
    /// `strong_mul`, exactly 0 where either factor is ±0 (SPEC §2's strong zero). The one
    /// place the adjoint multiplies a cotangent, so an inactive branch (`ct = 0`) never turns
    /// an infinite or NaN partial (`sqrt'(0)`, `log'(0)`) into NaN, and a zero partial (a
    /// relu that is off, a tie weight of 0) never passes on an infinite or NaN cotangent.
    pub(crate) fn scale(&mut self, ct: Value, d: Value) -> Value {
        self.bin(BinaryOp::StrongMul, ct, d)
    }

    /// The chain rule for one operand: gives `to` the contribution `ct · partial`, building
    /// the partial derivative only if `to` needs a gradient.
    fn chain(&mut self, to: Value, ct: Value, partial: impl FnOnce(&mut Sweep) -> Value) {
        self.give(to, |s| {
            let d = partial(s);
            s.scale(ct, d)
        })
    }

    /// `ct` where `cond` is (`taken`) or is not (`!taken`) set, 0 elsewhere.
    fn route(&mut self, cond: Value, ct: Value, taken: bool) -> Value {
        let zero = self.splat_like(0.0, ct);
        let (on_true, on_false) = if taken { (ct, zero) } else { (zero, ct) };
        self.ins(Inst::Select { cond, on_true, on_false })
    }

    /// `ct` where `x op 0`, 0 elsewhere.
    fn route_where(&mut self, op: BinaryOp, x: Value, ct: Value) -> Value {
        let mask = self.bin_c(op, x, 0.0);
        self.route(mask, ct, true)
    }

    /// `sign(x) = (x > 0) − (x < 0)`, 0 at 0.
    fn sign(&mut self, x: Value) -> Value {
        let pos = self.bin_c(BinaryOp::Gt, x, 0.0);
        let neg = self.bin_c(BinaryOp::Lt, x, 0.0);
        self.bin(BinaryOp::Sub, pos, neg)
    }

    /// `out·(1 − out)`, σ' from σ's output.
    fn sigmoid_slope(&mut self, out: Value) -> Value {
        let d = self.c_bin(BinaryOp::Sub, 1.0, out);
        self.bin(BinaryOp::Mul, out, d)
    }

    /// `1 − out²`, tanh' from tanh's output.
    fn tanh_slope(&mut self, out: Value) -> Value {
        let sq = self.bin(BinaryOp::Mul, out, out);
        self.c_bin(BinaryOp::Sub, 1.0, sq)
    }

    /// `σ(−x)`.
    fn sigmoid_of_neg(&mut self, x: Value) -> Value {
        let n = self.un(UnaryOp::Neg, x);
        self.un(UnaryOp::Sigmoid, n)
    }

    /// `−out/b`, the partial of `a/b` in `b`.
    fn neg_quotient(&mut self, out: Value, b: Value) -> Value {
        let q = self.bin(BinaryOp::Div, out, b);
        self.un(UnaryOp::Neg, q)
    }

    /// `∂aᵇ/∂a = b·aᵇ⁻¹`, and exactly 0 where `b = 0` (`a⁰ = 1` for every `a`, so even at
    /// `a = 0`, where `aᵇ⁻¹ = inf`): a strong-zero product, as JAX's `_pow_jvp_lhs` selects 0
    /// at `b = 0`. A constant exponent `c` is folded (`c = 0` gives 0).
    fn power_slope(&mut self, a: Value, b: Value) -> Value {
        match self.constant(b) {
            Some(0.0) => self.splat_like(0.0, a),
            Some(c) => {
                let coef = self.splat_like(c, a);
                let pow = self.bin_c(BinaryOp::Pow, a, c - 1.0);
                self.bin(BinaryOp::Mul, coef, pow)
            }
            None => {
                let e = self.bin_c(BinaryOp::Sub, b, 1.0);
                let pow = self.bin(BinaryOp::Pow, a, e);
                self.bin(BinaryOp::StrongMul, b, pow)
            }
        }
    }

    /// `∂aᵇ/∂b = aᵇ·log a`, with `log 0` taken as 0 (JAX's `_replace_zero`): `0ᵇ` is 0 for
    /// every `b > 0`, so its slope in `b` is 0, not `0·(−inf)`. A strong-zero product; a
    /// negative base gives NaN (`aᵇ` is defined only at integer `b` there), as in JAX and
    /// PyTorch. A constant base is folded.
    fn times_log(&mut self, out: Value, a: Value) -> Value {
        let l = match self.constant(a) {
            Some(c) => self.splat_like(if c == 0.0 { 0.0 } else { c.ln() }, a),
            None => {
                let zero = self.bin_c(BinaryOp::Eq, a, 0.0);
                let one = self.splat_like(1.0, a);
                let safe = self.ins(Inst::Select { cond: zero, on_true: one, on_false: a });
                self.un(UnaryOp::Log, safe)
            }
        };
        self.bin(BinaryOp::StrongMul, out, l)
    }

    /// The share of a binary max (`op = gt`) or min (`op = lt`) that goes to `a`:
    /// `½·((a op b) + (a op= b))`, so 1, 0 or ½ at a tie.
    fn tie_weight(&mut self, op: BinaryOp, a: Value, b: Value) -> Value {
        let loose = if op == BinaryOp::Gt { BinaryOp::Ge } else { BinaryOp::Le };
        let strict = self.bin(op, a, b);
        let loose = self.bin(loose, a, b);
        let both = self.bin(BinaryOp::Add, strict, loose);
        self.bin_c(BinaryOp::Mul, both, 0.5)
    }

    /// The number `v` holds everywhere if it is a (broadcast or reshaped) constant.
    fn constant(&self, v: Value) -> Option<f64> {
        if let Inst::Const(c) = self.func.inst(v) {
            return Some(*c);
        }
        if let Inst::Broadcast { arg, .. } | Inst::Reshape { arg, .. } = self.func.inst(v) {
            return self.constant(*arg);
        }
        None
    }

    fn softmax_vjp(&mut self, ct: Value, out: Value, axis: usize) -> Value {
        let w = self.scale(ct, out);
        let dot = self.sum_along(w, axis);
        let centered = self.bin(BinaryOp::Sub, ct, dot);
        self.scale(centered, out)
    }

    fn log_softmax_vjp(&mut self, ct: Value, out: Value, axis: usize) -> Value {
        let total = self.sum_along(ct, axis);
        let softmax = self.un(UnaryOp::Exp, out);
        let w = self.scale(total, softmax);
        self.bin(BinaryOp::Sub, ct, w)
    }

    fn cross_entropy_vjp(&mut self, ct: Value, logits: Value, label: Value) -> Value {
        let shape = self.shape(logits);
        let (last, classes) = (shape.rank() - 1, *shape.dims.last().expect("logits have a class axis"));
        let p = self.ins(Inst::Softmax { arg: logits, axis: last, log: false });
        let y = self.ins(Inst::OneHot { label, classes });
        let d = self.bin(BinaryOp::Sub, p, y);
        let ct = self.unreduce(ct, logits, &[last]);
        self.scale(ct, d)
    }

    fn mean_vjp(&mut self, ct: Value, x: Value, axes: &[usize]) -> Value {
        let dims = self.shape(x).physical();
        let fixed: usize = axes.iter().map(|&a| if let Dim::Fixed(n) = dims[a] { n } else { 1 }).product();
        let mut inv = self.splat(1.0 / fixed as f64, &Shape::scalar());
        if axes.iter().any(|&a| dims[a] == Dim::Batch) {
            let b = self.ins(Inst::BatchSize);
            inv = self.bin(BinaryOp::Div, inv, b);
        }
        let inv = self.broadcast(inv, &self.shape(ct));
        let ct = self.scale(ct, inv);
        self.unreduce(ct, x, axes)
    }

    /// `ct ⊙ (mask ⊙ 1/count)` with `mask = (x == max)`: an even split among tied maxima
    /// (JAX's `_reduce_chooser_jvp_rule`). The count is a float sum of the 0/1 mask, never a
    /// narrow integer: float32 in the JIT reaches 3.4e38 (a tensor holds at most 2^31
    /// elements per example) and its sums are compensated, so past 2^24 ties the count is
    /// right to float32 rounding instead of stalling; float64 in the interpreter.
    fn extremum_vjp(&mut self, ct: Value, x: Value, out: Value, axes: &[usize]) -> Value {
        let out = self.unreduce(out, x, axes);
        let mask = self.bin(BinaryOp::Eq, x, out);
        let count = self.sum(mask, axes.to_vec());
        let inv = self.c_bin(BinaryOp::Div, 1.0, count);
        let inv = self.unreduce(inv, x, axes);
        let share = self.bin(BinaryOp::StrongMul, mask, inv);
        let ct = self.unreduce(ct, x, axes);
        self.scale(ct, share)
    }

    fn logsumexp_vjp(&mut self, ct: Value, x: Value, out: Value, axes: &[usize]) -> Value {
        let out = self.unreduce(out, x, axes);
        let centered = self.bin(BinaryOp::Sub, x, out);
        let softmax = self.un(UnaryOp::Exp, centered);
        let ct = self.unreduce(ct, x, axes);
        self.scale(ct, softmax)
    }

    /// `Σ v` along one physical `axis`, broadcast back to `v`'s shape.
    fn sum_along(&mut self, v: Value, axis: usize) -> Value {
        let total = self.sum(v, vec![axis]);
        self.unreduce(total, v, &[axis])
    }

    /// The inverse shape move of a reduction of `x` over `axes`: reshapes `r` (the reduced
    /// shape) to keep the reduced example axes as 1 (the batch axis, if reduced, as absent),
    /// then broadcasts to `x`'s shape.
    fn unreduce(&mut self, r: Value, x: Value, axes: &[usize]) -> Value {
        let to = self.shape(x);
        let b = to.batch as usize;
        let dims = to.dims.iter().enumerate().map(|(i, &n)| if axes.contains(&(i + b)) { 1 } else { n }).collect();
        let keep = Shape { batch: to.batch && !axes.contains(&0), dims };
        let r = self.reshape(r, &keep);
        self.broadcast(r, &to)
    }

    /// The inverse of a broadcast from `from` to `ct`'s shape: sums `ct` over the added
    /// batch axis, the added leading example axes and the stretched size-1 axes, then
    /// reshapes to `from`.
    fn sum_to(&mut self, ct: Value, from: &Shape) -> Value {
        let to = self.shape(ct);
        let (b, lead) = (to.batch as usize, to.dims.len() - from.dims.len());
        let mut axes = if to.batch && !from.batch { vec![0] } else { vec![] };
        let stretched = |i: usize| i < lead || (from.dims[i - lead] == 1 && to.dims[i] != 1);
        axes.extend((0..to.dims.len()).filter(|&i| stretched(i)).map(|i| i + b));
        let summed = self.sum(ct, axes);
        self.reshape(summed, from)
    }
}
