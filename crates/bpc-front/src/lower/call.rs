//! Calls: the built-in functions (one table) and `def`s (inlined at each call).
//!
//! Composite built-ins lower to primitives here: `mse(p, t)` is `mean((p - t)^2)` over the
//! example's elements, `bce_with_logits(z, y)` is `mean(softplus(z) - z*y)` (the stable form,
//! as PyTorch's `BCEWithLogitsLoss`); `softmax`, `logsumexp` and `cross_entropy` are IR
//! primitives, computed max-subtracted.

use std::collections::HashMap;

use bpc_ir::{BinaryOp, Diagnostic, Inst, ReduceOp, Shape, Span, UnaryOp};

use super::expr::show;
use super::names::suggest;
use super::{Def, Fail, Frame, Lowerer, MAX_VALUES, Opd, R, Val};
use crate::ast::{Arg, Expr, ExprKind, Ident};

/// A built-in function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    Unary(UnaryOp),
    /// `max(a, b)` elementwise or `max(x)` / `max(x, axis=K)` reducing.
    Max,
    Min,
    Where,
    Transpose,
    Sum,
    Mean,
    Softmax,
    LogSoftmax,
    LogSumExp,
    CrossEntropy,
    Mse,
    BceWithLogits,
}

/// A checked built-in call, before its operands are lowered.
struct Plan<'m> {
    name: &'static str,
    builtin: Builtin,
    positional: Vec<&'m Expr>,
    axis: Option<&'m Expr>,
}

/// Name, builtin, the accepted positional counts, whether `axis=` is accepted, usage.
const TABLE: &[(&str, Builtin, &[usize], bool, &str)] = &[
    ("exp", Builtin::Unary(UnaryOp::Exp), &[1], false, "exp(x)"),
    ("log", Builtin::Unary(UnaryOp::Log), &[1], false, "log(x)"),
    ("sqrt", Builtin::Unary(UnaryOp::Sqrt), &[1], false, "sqrt(x)"),
    ("abs", Builtin::Unary(UnaryOp::Abs), &[1], false, "abs(x)"),
    ("sigmoid", Builtin::Unary(UnaryOp::Sigmoid), &[1], false, "sigmoid(x)"),
    ("tanh", Builtin::Unary(UnaryOp::Tanh), &[1], false, "tanh(x)"),
    ("relu", Builtin::Unary(UnaryOp::Relu), &[1], false, "relu(x)"),
    ("softplus", Builtin::Unary(UnaryOp::Softplus), &[1], false, "softplus(x)"),
    ("log_sigmoid", Builtin::Unary(UnaryOp::LogSigmoid), &[1], false, "log_sigmoid(x)"),
    ("max", Builtin::Max, &[1, 2], true, "max(a, b), max(x) or max(x, axis=K)"),
    ("min", Builtin::Min, &[1, 2], true, "min(a, b), min(x) or min(x, axis=K)"),
    ("where", Builtin::Where, &[3], false, "where(cond, a, b)"),
    ("transpose", Builtin::Transpose, &[1], false, "transpose(W)"),
    ("sum", Builtin::Sum, &[1], true, "sum(x) or sum(x, axis=K)"),
    ("mean", Builtin::Mean, &[1], true, "mean(x) or mean(x, axis=K)"),
    ("softmax", Builtin::Softmax, &[1], true, "softmax(x) or softmax(x, axis=K)"),
    ("log_softmax", Builtin::LogSoftmax, &[1], true, "log_softmax(x) or log_softmax(x, axis=K)"),
    ("logsumexp", Builtin::LogSumExp, &[1], true, "logsumexp(x) or logsumexp(x, axis=K)"),
    ("cross_entropy", Builtin::CrossEntropy, &[2], false, "cross_entropy(logits, class_label)"),
    ("mse", Builtin::Mse, &[2], false, "mse(prediction, target)"),
    ("bce_with_logits", Builtin::BceWithLogits, &[2], false, "bce_with_logits(z, y)"),
];

impl Builtin {
    /// The built-in function names, in table order.
    pub(crate) fn names() -> impl Iterator<Item = &'static str> {
        TABLE.iter().map(|row| row.0)
    }

    pub(crate) fn from_name(name: &str) -> Option<Builtin> {
        TABLE.iter().find(|row| row.0 == name).map(|row| row.1)
    }
}

impl<'m> Lowerer<'m> {
    /// A call. On the recursion path (a `def` body calls more `def`s), so the checks and
    /// the op building live in separate, non-inlined functions and this frame stays small.
    #[inline(never)]
    pub(crate) fn call(&mut self, func: &'m Ident, args: &'m [Arg], span: Span) -> R<Val> {
        if let Some(&def) = self.defs.get(&func.name) {
            return self.inline(def, args, span);
        }
        let plan = self.plan_builtin(func, args, span)?;
        let axis = match plan.axis {
            Some(e) => Some((self.const_int(e, "`axis`")?, e.span)),
            None => None,
        };
        let mut ops = Vec::with_capacity(plan.positional.len());
        for e in &plan.positional {
            ops.push(self.operand(e));
        }
        let ops: Vec<Opd> = ops.into_iter().collect::<R<_>>()?;
        self.apply_builtin(&plan, &ops, axis, span)
    }

    /// Resolves a built-in call and checks its keywords and arity.
    #[inline(never)]
    fn plan_builtin(&mut self, func: &Ident, args: &'m [Arg], span: Span) -> R<Plan<'m>> {
        let Some(&(name, builtin, arities, takes_axis, usage)) = TABLE.iter().find(|row| row.0 == func.name) else {
            let d = self.unknown_function(&func.name, func.span);
            return Err(self.error(d));
        };
        let positional: Vec<&'m Expr> = args.iter().filter(|a| a.keyword.is_none()).map(|a| &a.value).collect();
        let mut axis: Option<&'m Expr> = None;
        for a in args {
            let Some(k) = &a.keyword else { continue };
            let bad = if k.name != "axis"
                || !takes_axis
                || (positional.len() == 2 && matches!(builtin, Builtin::Max | Builtin::Min))
            {
                let hint = if takes_axis { suggest(&k.name, ["axis"].into_iter()) } else { None };
                Some(match hint {
                    Some(h) if h != k.name => format!("did you mean `{h}`?"),
                    _ => format!("`{name}` takes no keyword arguments here"),
                })
            } else if axis.is_some() {
                Some("`axis` is given twice".to_string())
            } else {
                None
            };
            if let Some(why) = bad {
                let d = Diagnostic::error(format!("unknown keyword argument `{}` for `{name}`", k.name))
                    .at(k.span, why)
                    .note(format!("usage: {usage}"));
                return Err(self.error(d));
            }
            axis = Some(&a.value);
        }
        if !arities.contains(&positional.len()) {
            let n = positional.len();
            let want = arities.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" or ");
            let s = if arities == [1] { "" } else { "s" };
            let d = Diagnostic::error(format!(
                "`{name}` takes {want} argument{s} but {n} {} given",
                if n == 1 { "was" } else { "were" }
            ))
            .at(span, format!("{n} argument{}", plural(n)))
            .note(format!("usage: {usage}"));
            return Err(self.error(d));
        }
        Ok(Plan { name, builtin, positional, axis })
    }

    /// Builds a built-in call from its lowered operands.
    #[inline(never)]
    fn apply_builtin(&mut self, plan: &Plan<'m>, ops: &[Opd], axis: Option<(i64, Span)>, span: Span) -> R<Val> {
        if plan.builtin == Builtin::CrossEntropy {
            return self.cross_entropy(ops[0], ops[1], span);
        }
        for &o in ops {
            self.check_float(o)?;
        }
        self.builtin(plan.builtin, plan.name, ops, axis, span)
    }

    fn builtin(&mut self, b: Builtin, name: &str, ops: &[Opd], axis: Option<(i64, Span)>, span: Span) -> R<Val> {
        match (b, ops) {
            (Builtin::Unary(op), &[x]) => self.unary(op, x, span),
            (Builtin::Max, &[a, b]) => self.binary(BinaryOp::Max, a, b, span),
            (Builtin::Min, &[a, b]) => self.binary(BinaryOp::Min, a, b, span),
            (Builtin::Max, &[x]) => self.reduce(ReduceOp::Max, x, axis, span),
            (Builtin::Min, &[x]) => self.reduce(ReduceOp::Min, x, axis, span),
            (Builtin::Sum, &[x]) => self.reduce(ReduceOp::Sum, x, axis, span),
            (Builtin::Mean, &[x]) => self.reduce(ReduceOp::Mean, x, axis, span),
            (Builtin::LogSumExp, &[x]) => self.reduce(ReduceOp::LogSumExp, x, axis, span),
            (Builtin::Softmax, &[x]) => self.softmax(x, axis, false, span),
            (Builtin::LogSoftmax, &[x]) => self.softmax(x, axis, true, span),
            (Builtin::Where, &[c, a, b]) => self.select(c, a, b, span),
            (Builtin::Transpose, &[x]) => self.transpose(x, span),
            (Builtin::Mse, &[p, t]) => {
                let d = Opd { val: self.binary_in(BinaryOp::Sub, p, t, span, "mse")?, span };
                let sq = Opd { val: self.binary(BinaryOp::Mul, d, d, span)?, span };
                self.reduce(ReduceOp::Mean, sq, None, span)
            }
            (Builtin::BceWithLogits, &[z, y]) => {
                let sp = Opd { val: self.unary(UnaryOp::Softplus, z, span)?, span };
                let zy = Opd { val: self.binary_in(BinaryOp::Mul, z, y, span, "bce_with_logits")?, span };
                let e = Opd { val: self.binary(BinaryOp::Sub, sp, zy, span)?, span };
                self.reduce(ReduceOp::Mean, e, None, span)
            }
            _ => unreachable!("`{name}` called with {} arguments passed the arity check", ops.len()),
        }
    }

    /// The physical axis for the user's `axis=k` (negative counts from the end) of a value
    /// whose example has `rank` axes.
    fn axis(&mut self, (k, span): (i64, Span), shape: &Shape, what: &str) -> R<usize> {
        let rank = shape.dims.len() as i64;
        let a = if k < 0 { k + rank } else { k };
        if a < 0 || a >= rank {
            let d = Diagnostic::error(format!("axis {k} is out of range for {what}"))
                .at(span, format!("the value has shape {}, so axis is 0 to {}", show(shape), rank - 1));
            let d = if rank == 0 {
                Diagnostic::error(format!("axis {k} is out of range for {what}"))
                    .at(span, "the value is a scalar, it has no axes")
            } else {
                d
            };
            return Err(self.error(d));
        }
        Ok(a as usize + shape.batch as usize)
    }

    /// A reduction over the example's elements (never the batch axis) or one example axis.
    fn reduce(&mut self, op: ReduceOp, x: Opd, axis: Option<(i64, Span)>, span: Span) -> R<Val> {
        let shape = self.shape_of(x.val);
        let axes = match axis {
            Some(a) => vec![self.axis(a, &shape, &format!("`{}`", user_name(op)))?],
            None => (shape.batch as usize..shape.rank()).collect(),
        };
        if axes.is_empty() {
            // A scalar's elements are itself.
            return Ok(x.val);
        }
        let arg = self.materialize(x);
        Ok(Val::Tensor(self.ins(Inst::Reduce { op, arg, axes }, span)))
    }

    fn softmax(&mut self, x: Opd, axis: Option<(i64, Span)>, log: bool, span: Span) -> R<Val> {
        let name = if log { "log_softmax" } else { "softmax" };
        let shape = self.shape_of(x.val);
        if shape.dims.is_empty() {
            let d = Diagnostic::error(format!("`{name}` needs a vector or a matrix"))
                .at(x.span, "this is a scalar")
                .note("softmax normalizes along an axis; a scalar has none");
            return Err(self.error(d));
        }
        let axis = match axis {
            Some(a) => self.axis(a, &shape, &format!("`{name}`"))?,
            None => shape.rank() - 1,
        };
        let arg = self.materialize(x);
        Ok(Val::Tensor(self.ins(Inst::Softmax { arg, axis, log }, span)))
    }

    fn select(&mut self, c: Opd, a: Opd, b: Opd, span: Span) -> R<Val> {
        if let (Val::Const(c), Val::Const(a), Val::Const(b)) = (c.val, a.val, b.val) {
            return Ok(Val::Const(if c != 0.0 { a } else { b }));
        }
        let (v, _) = self.broadcast_all(&[c, a, b], "`where`", span)?;
        Ok(Val::Tensor(self.ins(Inst::Select { cond: v[0], on_true: v[1], on_false: v[2] }, span)))
    }

    /// NumPy's transpose: a matrix's axes swap; a vector or scalar is unchanged.
    fn transpose(&mut self, x: Opd, span: Span) -> R<Val> {
        let shape = self.shape_of(x.val);
        match shape.dims.len() {
            0 | 1 => Ok(x.val),
            2 => {
                let arg = self.materialize(x);
                Ok(Val::Tensor(self.ins(Inst::Transpose { arg }, span)))
            }
            n => {
                let d = Diagnostic::error("`transpose` needs a matrix")
                    .at(x.span, format!("this has shape {} ({n} axes)", show(&shape)));
                Err(self.error(d))
            }
        }
    }

    /// `cross_entropy(z, y)`: `z` holds K logits per example, `y` is declared `class(K)`.
    fn cross_entropy(&mut self, zo: Opd, yo: Opd, span: Span) -> R<Val> {
        let (z, y) = (zo, yo);
        self.check_float(zo)?;
        let Val::Class { value: label, classes } = yo.val else {
            let d = Diagnostic::error("the second argument of `cross_entropy` must be a class label")
                .at(y.span, format!("this is a number of shape {}", show(&self.shape_of(yo.val))))
                .note("declare it as `label y : class(K)`; for real-valued targets use `mse` or `bce_with_logits`");
            return Err(self.error(d));
        };
        let zs = self.shape_of(zo.val);
        if zs.dims != [classes] {
            let label_name = match self.func.inst(label) {
                Inst::Arg(id) => self.func.arg(*id).name.clone(),
                _ => "label".into(),
            };
            let d = Diagnostic::error(format!(
                "`cross_entropy` logits of shape {} do not match the {classes} classes of `{label_name}`",
                show(&zs)
            ))
            .at(z.span, format!("this has shape {}", show(&zs)))
            .also(y.span, format!("`{label_name}` is declared class({classes})"))
            .note(format!("the logits must be a vector of {classes} numbers per example"));
            return Err(self.error(d));
        }
        let v = self.materialize(zo);
        let logits = self.broadcast_to(v, &Shape::batched([classes]), span);
        self.logits.get_or_insert(logits);
        Ok(Val::Tensor(self.ins(Inst::CrossEntropy { logits, label }, span)))
    }

    /// A call of a `def`: its parameters bound to the arguments' values, its body lowered.
    #[inline(never)]
    fn inline(&mut self, def: Def<'m>, args: &'m [Arg], span: Span) -> R<Val> {
        self.check_call(def, args, span)?;
        let mut locals = HashMap::new();
        let mut failed = false;
        for (p, a) in def.params.iter().zip(args) {
            match self.expr(&a.value) {
                Ok(v) => {
                    locals.insert(p.name.clone(), v);
                }
                Err(Fail) => failed = true,
            }
        }
        if failed {
            return Err(Fail);
        }
        self.frames.push(Frame { def: def.name.name.clone(), call: span, locals });
        let out = self.expr(def.body);
        self.frames.pop();
        out
    }

    /// A `def` call's arguments and the program size; no recursion.
    #[inline(never)]
    fn check_call(&mut self, def: Def<'m>, args: &'m [Arg], span: Span) -> R<()> {
        let name = def.name.name.as_str();
        if def.bad {
            return Err(Fail);
        }
        if self.func.len() > MAX_VALUES {
            let d = Diagnostic::error("the program is too large")
                .at(span, format!("inlining this call goes past {MAX_VALUES} instructions"))
                .note("`def`s that call other `def`s several times grow exponentially when inlined");
            return Err(self.error(d));
        }
        if let Some(k) = args.iter().find_map(|a| a.keyword.as_ref()) {
            let d = Diagnostic::error(format!("unknown keyword argument `{}` for `{name}`", k.name))
                .at(k.span, "a `def` takes positional arguments only")
                .also(def.name.span, format!("`{name}` is defined here"));
            return Err(self.error(d));
        }
        if args.len() != def.params.len() {
            let (want, n) = (def.params.len(), args.len());
            let d = Diagnostic::error(format!(
                "`{name}` takes {want} argument{} but {n} {} given",
                plural(want),
                if n == 1 { "was" } else { "were" }
            ))
            .at(span, format!("{n} argument{}", plural(n)))
            .also(def.name.span, format!("`{name}` is defined here with {want}"));
            return Err(self.error(d));
        }
        if let Some(pos) = self.frames.iter().position(|f| f.def == name) {
            let chain: Vec<&str> = self.frames[pos..].iter().map(|f| f.def.as_str()).chain([name]).collect();
            let d = Diagnostic::error(format!("`{name}` is recursive"))
                .at(span, format!("`{name}` is called again here, inside its own body"))
                .note(format!("the calls go {}", chain.join(" -> ")))
                .note("a `def` is inlined at each call, so it cannot call itself, directly or through another `def`");
            return Err(self.error(d));
        }
        Ok(())
    }

    /// A `def`'s parameter list: no built-in name, no repeated parameter.
    pub(crate) fn check_def_signature(&mut self, name: &Ident, params: &[Ident]) -> bool {
        if Builtin::from_name(&name.name).is_some() {
            let d = Diagnostic::error(format!("`{}` is a built-in function", name.name))
                .at(name.span, "a `def` cannot redefine it")
                .note("pick another name");
            self.error(d);
            return false;
        }
        for (i, p) in params.iter().enumerate() {
            if let Some(first) = params[..i].iter().find(|q| q.name == p.name) {
                let d = Diagnostic::error(format!("parameter `{}` appears twice in `{}`", p.name, name.name))
                    .at(p.span, "repeated here")
                    .also(first.span, "first here");
                self.error(d);
                return false;
            }
        }
        true
    }

    /// Names in a `def` body must be its parameters or defined somewhere in the program,
    /// and its calls must be built-ins or `def`s: checked even if the `def` is never called.
    pub(crate) fn check_def_body(&mut self, params: &[Ident], body: &Expr) {
        match &body.kind {
            ExprKind::Num(_) | ExprKind::TooDeep => {}
            ExprKind::Name(n) => {
                if !params.iter().any(|p| &p.name == n)
                    && !self.defined_at.contains_key(n)
                    && !self.defs.contains_key(n)
                {
                    // A close parameter name is the likelier typo; else a close global.
                    let d = match suggest(n, params.iter().map(|p| p.name.as_str())) {
                        Some(s) => Diagnostic::error(format!("unknown name `{n}`"))
                            .at(body.span, format!("did you mean `{s}`?")),
                        None => self.unknown_name(n, body.span),
                    };
                    self.error(d);
                }
            }
            ExprKind::Neg(a) => self.check_def_body(params, a),
            ExprKind::Binary { lhs, rhs, .. } => {
                self.check_def_body(params, lhs);
                self.check_def_body(params, rhs);
            }
            ExprKind::Call { func, args } => {
                if Builtin::from_name(&func.name).is_none() && !self.defs.contains_key(&func.name) {
                    let d = self.unknown_function(&func.name, func.span);
                    self.error(d);
                }
                args.iter().for_each(|a| self.check_def_body(params, &a.value));
            }
            ExprKind::Index { base, indices } => {
                self.check_def_body(params, base);
                indices.iter().for_each(|i| self.check_def_body(params, i));
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The user-facing name of a reduction.
fn user_name(op: ReduceOp) -> &'static str {
    match op {
        ReduceOp::Sum => "sum",
        ReduceOp::Mean => "mean",
        ReduceOp::Max => "max",
        ReduceOp::Min => "min",
        ReduceOp::LogSumExp => "logsumexp",
    }
}
