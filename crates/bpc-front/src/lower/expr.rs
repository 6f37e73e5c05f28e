//! Expressions: names, numbers, operators and indexing, with constant folding and explicit
//! NumPy broadcasting.
//!
//! An elementwise op on two compile-time scalars folds to one. Otherwise its operands'
//! example shapes broadcast (NumPy's rules, `bpc_ir::broadcast_shapes`; the result is
//! per-example if either operand is), each operand that differs from the result gets an
//! explicit `broadcast` (a scalar constant enters the IR as one `const` first), and the op
//! is applied to equal types, as the IR requires.

use bpc_ir::{BinaryOp, Diagnostic, Inst, Shape, Span, UnaryOp, Value, broadcast_shapes};

use super::{Fail, Lowerer, MAX_INLINE_DEPTH, Opd, R, Val};
use crate::ast::{BinOp, Expr, ExprKind, MAX_DEPTH};

/// Example dims as the program writes them: `[3, 4]`, `[]` for a scalar.
pub(crate) fn show_dims(dims: &[usize]) -> String {
    let items: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// A value's shape as the program sees it (the batch axis is invisible).
pub(crate) fn show(shape: &Shape) -> String {
    show_dims(&shape.dims)
}

impl<'m> Lowerer<'m> {
    /// Lowers `e`, counting depth through inlined `def` bodies.
    pub(crate) fn expr(&mut self, e: &'m Expr) -> R<Val> {
        if self.depth >= MAX_INLINE_DEPTH {
            return Err(self.too_deep(e.span));
        }
        self.depth += 1;
        let out = self.expr_inner(e);
        self.depth -= 1;
        out
    }

    fn expr_inner(&mut self, e: &'m Expr) -> R<Val> {
        match &e.kind {
            ExprKind::Num(n) => Ok(Val::Const(n.value)),
            ExprKind::Name(n) => self.lookup(n, e.span),
            ExprKind::Neg(a) => {
                let a = self.operand(a)?;
                self.unary(UnaryOp::Neg, a, e.span)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                // Lower both sides even if the first fails, to report both.
                let (a, b) = (self.operand(lhs), self.operand(rhs));
                let (a, b) = (a?, b?);
                let op = match op {
                    BinOp::MatMul => return self.matmul(a, b, e.span),
                    BinOp::Lt => BinaryOp::Lt,
                    BinOp::Le => BinaryOp::Le,
                    BinOp::Gt => BinaryOp::Gt,
                    BinOp::Ge => BinaryOp::Ge,
                    BinOp::Eq => BinaryOp::Eq,
                    BinOp::Add => BinaryOp::Add,
                    BinOp::Sub => BinaryOp::Sub,
                    BinOp::Mul => BinaryOp::Mul,
                    BinOp::Div => BinaryOp::Div,
                    BinOp::Pow => BinaryOp::Pow,
                };
                self.binary(op, a, b, e.span)
            }
            ExprKind::Call { func, args } => self.call(func, args, e.span),
            ExprKind::Index { base, indices } => self.index(base, indices, e.span),
            ExprKind::TooDeep => Err(self.too_deep_tree(e.span)),
        }
    }

    /// Only for a tree not built by the parser (which reports these itself).
    #[cold]
    #[inline(never)]
    fn too_deep_tree(&mut self, span: Span) -> Fail {
        let d = Diagnostic::error("expression is nested too deeply")
            .at(span, format!("this goes deeper than {MAX_DEPTH} levels"));
        self.error(d)
    }

    #[cold]
    #[inline(never)]
    fn too_deep(&mut self, span: Span) -> Fail {
        if self.too_deep {
            // Reported once; the other operands on the way out would say it again.
            return Fail;
        }
        self.too_deep = true;
        let d = Diagnostic::error("expression is nested too deeply")
            .at(span, format!("with `def`s inlined, this goes deeper than {MAX_INLINE_DEPTH} levels"))
            .note("split it into several lines with intermediate names");
        self.error(d)
    }

    pub(crate) fn operand(&mut self, e: &'m Expr) -> R<Opd> {
        Ok(Opd { val: self.expr(e)?, span: e.span })
    }

    /// The operand's shape; a constant is a shared scalar.
    pub(crate) fn shape_of(&self, v: Val) -> Shape {
        match v {
            Val::Const(_) => Shape::scalar(),
            Val::Tensor(v) | Val::Class { value: v, .. } => self.func.shape(v).clone(),
        }
    }

    /// Errors unless `o` is a float (a class label is only for `cross_entropy`).
    #[inline(never)]
    pub(crate) fn check_float(&mut self, o: Opd) -> R<()> {
        let Val::Class { value, .. } = o.val else { return Ok(()) };
        let name = match self.func.inst(value) {
            Inst::Arg(id) => self.func.arg(*id).name.clone(),
            _ => "label".to_string(),
        };
        let d = Diagnostic::error(format!("class label `{name}` can only be the second argument of cross_entropy"))
            .at(o.span, "a class index, not a number to compute with")
            .note(format!(
                "write `cross_entropy(logits, {name})`; for a real-valued target declare `label {name}[SHAPE]`"
            ));
        Err(self.error(d))
    }

    /// The operand as an IR value: a constant becomes a `const` at its own span.
    pub(crate) fn materialize(&mut self, o: Opd) -> Value {
        match o.val {
            Val::Const(c) => self.ins(Inst::Const(c), o.span),
            Val::Tensor(v) | Val::Class { value: v, .. } => v,
        }
    }

    /// `v` broadcast to `to` (nothing if it has that shape already).
    pub(crate) fn broadcast_to(&mut self, v: Value, to: &Shape, span: Span) -> Value {
        if self.func.shape(v) == to {
            return v;
        }
        self.ins(Inst::Broadcast { arg: v, to: to.clone() }, span)
    }

    /// The operands as IR values of one broadcast shape; `what` names the op in errors.
    #[inline(never)]
    pub(crate) fn broadcast_all(&mut self, ops: &[Opd], what: &str, span: Span) -> R<(Vec<Value>, Shape)> {
        let mut to = Shape::scalar();
        for o in ops {
            let s = self.shape_of(o.val);
            match broadcast_shapes(&to, &s) {
                Some(b) => to = b,
                None => {
                    let mut d =
                        Diagnostic::error(format!("shape mismatch in {what}")).at(span, "the shapes do not broadcast");
                    for o in ops {
                        d = d.also(o.span, format!("this has shape {}", show(&self.shape_of(o.val))));
                    }
                    let d = d.note("shapes broadcast as in NumPy: aligned from the right, each axis equal or 1");
                    return Err(self.error(d));
                }
            }
        }
        self.check_size(&to.dims, span)?;
        let vals = ops
            .iter()
            .map(|&o| {
                let v = self.materialize(o);
                self.broadcast_to(v, &to, span)
            })
            .collect();
        Ok((vals, to))
    }

    #[inline(never)]
    pub(crate) fn unary(&mut self, op: UnaryOp, a: Opd, span: Span) -> R<Val> {
        self.check_float(a)?;
        match a.val {
            Val::Const(c) => Ok(Val::Const(op.eval(c))),
            Val::Tensor(arg) => Ok(Val::Tensor(self.stable_log(op, arg, span))),
            Val::Class { .. } => Err(Fail),
        }
    }

    /// `op(arg)`, with the log of a sigmoid or a softmax built as the stable composite
    /// (SPEC §2: `log(sigmoid)` must not overflow for |x| up to 1e4): `log(sigmoid(x))` is
    /// `log_sigmoid(x)` and `log(softmax(x))` is `log_softmax(x)`, so a sigmoid or softmax
    /// that rounded to 0 does not give `-inf` and a NaN gradient. The same at every `-O`.
    fn stable_log(&mut self, op: UnaryOp, arg: Value, span: Span) -> Value {
        let inst = match (op, self.func.inst(arg)) {
            (UnaryOp::Log, &Inst::Unary { op: UnaryOp::Sigmoid, arg: x }) => {
                Inst::Unary { op: UnaryOp::LogSigmoid, arg: x }
            }
            (UnaryOp::Log, &Inst::Softmax { arg: x, axis, log: false }) => Inst::Softmax { arg: x, axis, log: true },
            _ => Inst::Unary { op, arg },
        };
        self.ins(inst, span)
    }

    pub(crate) fn binary(&mut self, op: BinaryOp, a: Opd, b: Opd, span: Span) -> R<Val> {
        let what = match op {
            BinaryOp::Max | BinaryOp::Min => op.name(),
            _ => binary_symbol(op),
        };
        self.binary_in(op, a, b, span, what)
    }

    /// An elementwise binary op; `what` names it in errors (the composite it is part of).
    #[inline(never)]
    pub(crate) fn binary_in(&mut self, op: BinaryOp, a: Opd, b: Opd, span: Span, what: &str) -> R<Val> {
        let (ca, cb) = (self.check_float(a), self.check_float(b));
        ca?;
        cb?;
        if let (Val::Const(x), Val::Const(y)) = (a.val, b.val) {
            return Ok(Val::Const(op.eval(x, y)));
        }
        let (v, _) = self.broadcast_all(&[a, b], &format!("`{what}`"), span)?;
        Ok(Val::Tensor(self.ins(Inst::Binary { op, lhs: v[0], rhs: v[1] }, span)))
    }

    /// `v[i]`, `W[i, j]`, `W[i]`: constant, non-negative, in range.
    #[inline(never)]
    fn index(&mut self, base: &'m Expr, indices: &'m [Expr], span: Span) -> R<Val> {
        let b = self.operand(base)?;
        let mut at = Vec::with_capacity(indices.len());
        for ix in indices {
            at.push((self.const_int(ix, "an index")?, ix.span));
        }
        self.apply_index(b, &at, span)
    }

    #[inline(never)]
    fn apply_index(&mut self, b: Opd, indices: &[(i64, Span)], span: Span) -> R<Val> {
        self.check_float(b)?;
        let shape = self.shape_of(b.val);
        if indices.len() > shape.dims.len() {
            let d = Diagnostic::error(format!(
                "too many indices: {} for a tensor of shape {}",
                indices.len(),
                show(&shape)
            ))
            .at(span, format!("indexed with {} indices", indices.len()))
            .also(b.span, format!("this has shape {}", show(&shape)));
            return Err(self.error(d));
        }
        let mut at = Vec::with_capacity(indices.len());
        for (&(i, ix_span), &n) in indices.iter().zip(&shape.dims) {
            if i < 0 || i as u64 >= n as u64 {
                let why = if i < 0 {
                    "indices count from 0 and may not be negative".to_string()
                } else {
                    format!("the axis has {n} elements (0 to {})", n - 1)
                };
                let d = Diagnostic::error(format!("index {i} is out of range"))
                    .at(ix_span, why)
                    .also(b.span, format!("this has shape {}", show(&shape)));
                return Err(self.error(d));
            }
            at.push(i as usize);
        }
        if at.is_empty() {
            return Ok(b.val);
        }
        let arg = self.materialize(b);
        Ok(Val::Tensor(self.ins(Inst::Index { arg, at }, span)))
    }
}

fn binary_symbol(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul | BinaryOp::StrongMul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Pow => "^",
        BinaryOp::Max => "max",
        BinaryOp::Min => "min",
        BinaryOp::Lt => "<",
        BinaryOp::Le => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::Ge => ">=",
        BinaryOp::Eq => "==",
    }
}
