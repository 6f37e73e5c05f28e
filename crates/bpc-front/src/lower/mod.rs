//! Lowering: the checked syntax tree to the forward [`Function`].
//!
//! One walk over the statements in source order. Declarations become args (read once with
//! `arg`), bindings and the loss become values. Each expression lowers to a [`Val`]: a
//! compile-time scalar (numbers, `const`s and what is computed from them only, folded in
//! `f64`), a tensor value in the IR, or a class label (usable only by `cross_entropy`).
//! `def`s are inlined at each call, with their parameters bound to the argument `Val`s.
//!
//! Errors are recorded as diagnostics and lowering goes on with the next statement; a name
//! whose definition failed is *poisoned*, so its uses fail quietly instead of cascading.

mod call;
mod expr;
mod matmul;
mod names;

use std::collections::HashMap;

use bpc_ir::{ArgKind, DType, Diagnostic, Function, Init, Inst, ReduceOp, Shape, Span, Type, Value};

use crate::ast::{Expr, Ident, InitExpr, Module, ShapeExpr, Stmt, StmtKind};

/// How deep expression lowering may recurse, counting through inlined `def` bodies; deeper
/// is an error (a chain of `def`s calling each other can nest without limit otherwise).
/// A level takes about 1 KiB of stack in a release build, so the limit fits in a thread
/// with a 1 MiB stack (`tests/robust.rs` checks that).
pub const MAX_INLINE_DEPTH: u32 = 500;

/// The most axes a declared tensor may have (per example).
const MAX_RANK: usize = 4;

/// The most elements one tensor may have per example (2^31, 8 GiB of float32).
const MAX_ELEMENTS: usize = 1 << 31;

/// The most IR values a program may lower to (`def`s calling each other twice per body
/// grow exponentially when inlined).
pub(crate) const MAX_VALUES: usize = 100_000;

/// A failure whose diagnostic has been recorded already.
#[derive(Debug)]
pub(crate) struct Fail;

pub(crate) type R<T> = Result<T, Fail>;

/// What an expression lowers to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Val {
    /// A compile-time scalar.
    Const(f64),
    /// A float tensor in the IR.
    Tensor(Value),
    /// A class label `i32[B]` with its class count.
    Class { value: Value, classes: usize },
}

/// A lowered operand with the span of its source expression.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Opd {
    pub val: Val,
    pub span: Span,
}

/// What a global name stands for.
#[derive(Clone, Copy, Debug)]
enum Global {
    Value(Val),
    /// Its definition failed; uses fail without a second message.
    Poisoned,
}

/// A `def`, hoisted: callable from anywhere, its body resolved at each call.
#[derive(Clone, Copy, Debug)]
struct Def<'m> {
    name: &'m Ident,
    params: &'m [Ident],
    body: &'m Expr,
    /// Its signature was rejected: calls fail without a second message.
    bad: bool,
}

/// One inlined call: the def's name, the call's span, and its parameters' values.
struct Frame {
    def: String,
    call: Span,
    locals: HashMap<String, Val>,
}

pub(crate) struct Lowerer<'m> {
    func: Function,
    diags: Vec<Diagnostic>,
    /// Names defined so far.
    globals: HashMap<String, Global>,
    /// Where every global name of the program is defined (first definition).
    defined_at: HashMap<String, Span>,
    defs: HashMap<String, Def<'m>>,
    frames: Vec<Frame>,
    depth: u32,
    /// The inlining depth limit was hit (and reported).
    too_deep: bool,
    /// The logits of the first `cross_entropy`.
    logits: Option<Value>,
}

/// Lowers `module`; see [`crate::compile`] for the function's contents.
pub(crate) fn lower_module(module: &Module) -> Result<Function, Vec<Diagnostic>> {
    let name = module.model_name().map_or("model", |n| n.name.as_str());
    let mut lw = Lowerer {
        func: Function::new(name),
        diags: Vec::new(),
        globals: HashMap::new(),
        defined_at: HashMap::new(),
        defs: HashMap::new(),
        frames: Vec::new(),
        depth: 0,
        too_deep: false,
        logits: None,
    };
    let skip = lw.collect(module);
    let (mut loss, mut output) = (None, None);
    for (stmt, skip) in module.stmts.iter().zip(skip) {
        if skip {
            continue;
        }
        match &stmt.kind {
            StmtKind::Loss(e) => loss = lw.loss(e).ok(),
            StmtKind::Output(e) => output = lw.output(e).ok(),
            _ => lw.stmt(stmt),
        }
    }
    if !lw.diags.is_empty() {
        return Err(dedup(lw.diags));
    }
    let Some(loss) = loss else {
        unreachable!("a missing or failed loss is diagnosed");
    };
    lw.func.add_result("loss", loss);
    if let Some(out) = output {
        lw.func.add_result("output", out);
    }
    if let Some(z) = lw.logits {
        lw.func.add_result("logits", z);
    }
    if let Err(e) = bpc_ir::verify(&lw.func) {
        if cfg!(debug_assertions) {
            panic!("internal error: lowering built invalid IR: {e}\n{}", lw.func);
        }
        return Err(vec![Diagnostic::error(format!("internal compiler error: lowering built invalid IR: {e}"))]);
    }
    Ok(lw.func)
}

/// Drops repeats (a diagnostic inside a `def` body is found at every call).
fn dedup(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    for d in diags {
        if !out.iter().any(|o| o.message == d.message && o.span() == d.span()) {
            out.push(d);
        }
    }
    out
}

impl<'m> Lowerer<'m> {
    /// Records `d`, with a label at each enclosing `def` call, and returns the failure.
    pub(crate) fn error(&mut self, mut d: Diagnostic) -> Fail {
        const SHOWN: usize = 3;
        for f in self.frames.iter().rev().take(SHOWN) {
            d = d.also(f.call, format!("in this call of `{}`", f.def));
        }
        if self.frames.len() > SHOWN {
            let outer = &self.frames[0];
            d = d.also(outer.call, format!("in this call of `{}`", outer.def));
            if self.frames.len() > SHOWN + 1 {
                d = d.note(format!("{} more calls of `def`s lie between these", self.frames.len() - SHOWN - 1));
            }
        }
        self.diags.push(d);
        Fail
    }

    pub(crate) fn ins(&mut self, inst: Inst, span: Span) -> Value {
        self.func.ins(inst, span)
    }

    /// The first pass: hoists `def`s, finds every name's definition, and reports the
    /// structural errors (a name defined twice, misplaced `model`, the `loss` count).
    /// Returns which statements to skip (the repeated definitions).
    fn collect(&mut self, module: &'m Module) -> Vec<bool> {
        let mut skip = vec![false; module.stmts.len()];
        let mut loss: Option<Span> = None;
        let mut output: Option<Span> = None;
        for (i, stmt) in module.stmts.iter().enumerate() {
            let defined = match &stmt.kind {
                StmtKind::Model(n) => {
                    if i > 0 {
                        let d = Diagnostic::error("`model` must be the first line")
                            .at(n.span.to(stmt.span), "this names the model too late")
                            .note("the model's name is optional; when given, it comes before everything else");
                        self.error(d);
                    }
                    None
                }
                StmtKind::Input { name, .. }
                | StmtKind::ClassLabel { name, .. }
                | StmtKind::RealLabel { name, .. }
                | StmtKind::Param { name, .. }
                | StmtKind::Const { name, .. }
                | StmtKind::Bind { name, .. }
                | StmtKind::Def { name, .. } => Some(name),
                StmtKind::Loss(_) => {
                    skip[i] = self.once(&mut loss, stmt.span, "loss");
                    None
                }
                StmtKind::Output(_) => {
                    skip[i] = self.once(&mut output, stmt.span, "output");
                    None
                }
            };
            let Some(name) = defined else { continue };
            if let Some(&first) = self.defined_at.get(&name.name) {
                let d = Diagnostic::error(format!("`{}` is defined twice", name.name))
                    .at(name.span, "defined again here")
                    .also(first, "first defined here")
                    .note("each name is bound once; pick a new name for the new value");
                self.error(d);
                skip[i] = true;
                continue;
            }
            self.defined_at.insert(name.name.clone(), name.span);
            if let StmtKind::Def { name, params, body } = &stmt.kind {
                let bad = !self.check_def_signature(name, params);
                self.defs.insert(name.name.clone(), Def { name, params, body, bad });
                skip[i] = bad;
            }
        }
        if loss.is_none() {
            let d = match module.stmts.last() {
                Some(last) => Diagnostic::error("the program has no `loss`")
                    .at(Span::new(last.span.end as usize, last.span.end as usize), "expected a `loss` statement"),
                None => Diagnostic::error("the program is empty").at(Span::new(0, 0), "expected a model here"),
            };
            self.error(d.note(
                "a model needs exactly one `loss EXPR`, a scalar per example, such as `loss cross_entropy(f, y)`",
            ));
        }
        skip
    }

    /// Reports a second `loss` / `output`; true if this statement is the repeat.
    fn once(&mut self, first: &mut Option<Span>, span: Span, what: &str) -> bool {
        match *first {
            Some(at) => {
                let d = Diagnostic::error(format!("the program has more than one `{what}`"))
                    .at(span, format!("a second `{what}`"))
                    .also(at, format!("the first `{what}` is here"))
                    .note(format!("a model has exactly one `{what}`; add terms with `+` to combine them"));
                self.error(d);
                true
            }
            None => {
                *first = Some(span);
                false
            }
        }
    }

    fn stmt(&mut self, stmt: &'m Stmt) {
        // Errors are recorded; a failed name is poisoned.
        let (name, result) = match &stmt.kind {
            StmtKind::Model(_) | StmtKind::Loss(_) | StmtKind::Output(_) => return,
            StmtKind::Def { params, body, .. } => {
                // Hoisted by `collect`; here only its names are checked.
                self.check_def_body(params, body);
                return;
            }
            StmtKind::Input { name, shape } => (name, self.declare(name, shape, ArgKind::Input, true)),
            StmtKind::RealLabel { name, shape } => {
                (name, self.declare(name, shape, ArgKind::Label { classes: None }, true))
            }
            StmtKind::ClassLabel { name, func, classes } => (name, self.class_label(name, func, classes)),
            StmtKind::Param { name, shape, init } => (name, self.param(name, shape, init.as_ref())),
            StmtKind::Const { name, value } => (name, self.constant(name, value)),
            StmtKind::Bind { name, value } => (name, self.bind(name, value)),
        };
        let global = match result {
            Ok(v) => Global::Value(v),
            Err(Fail) => Global::Poisoned,
        };
        self.globals.insert(name.name.clone(), global);
    }

    /// `input`/`label` (real) declarations: batched; `param`s: shared.
    fn declare(&mut self, name: &Ident, shape: &'m Option<ShapeExpr>, kind: ArgKind, batched: bool) -> R<Val> {
        let dims = self.shape(shape)?;
        let ty = Type::f32(Shape { batch: batched, dims });
        Ok(Val::Tensor(self.arg(name, kind, ty)))
    }

    fn arg(&mut self, name: &Ident, kind: ArgKind, ty: Type) -> Value {
        let id = self.func.add_arg(name.name.clone(), kind, ty, name.span);
        let v = self.ins(Inst::Arg(id), name.span);
        self.func.names.push((name.name.clone(), v));
        v
    }

    fn class_label(&mut self, name: &Ident, func: &Ident, classes: &'m Expr) -> R<Val> {
        if func.name != "class" {
            let d = Diagnostic::error(format!("expected `class(K)`, found `{}(...)`", func.name))
                .at(func.span, "a label is either `label y : class(K)` or `label y[SHAPE]`");
            return Err(self.error(d));
        }
        let k = self.const_int(classes, "the class count")?;
        if k < 2 {
            let d = Diagnostic::error(format!("invalid class count {k}"))
                .at(classes.span, "a class label needs at least 2 classes")
                .note("for a real-valued target write `label y` or `label y[SHAPE]`");
            return Err(self.error(d));
        }
        let Ok(classes) = i32::try_from(k) else {
            let d =
                Diagnostic::error(format!("invalid class count {k}")).at(classes.span, "class indices must fit in i32");
            return Err(self.error(d));
        };
        let classes = classes as usize;
        let ty = Type { dtype: DType::I32, shape: Shape::batched([]) };
        let value = self.arg(name, ArgKind::Label { classes: Some(classes) }, ty);
        Ok(Val::Class { value, classes })
    }

    fn param(&mut self, name: &Ident, shape: &'m Option<ShapeExpr>, init: Option<&'m InitExpr>) -> R<Val> {
        let init = match init {
            None => Init::Const(0.0),
            Some(i) => self.init(i)?,
        };
        self.declare(name, shape, ArgKind::Param { init }, false)
    }

    /// The example dims of a declaration: positive integer constants, at most [`MAX_RANK`].
    fn shape(&mut self, shape: &'m Option<ShapeExpr>) -> R<Vec<usize>> {
        let Some(shape) = shape else { return Ok(vec![]) };
        if shape.dims.len() > MAX_RANK {
            let d = Diagnostic::error(format!("a tensor may have at most {MAX_RANK} axes"))
                .at(shape.span, format!("this shape has {}", shape.dims.len()));
            return Err(self.error(d));
        }
        let mut dims = Vec::with_capacity(shape.dims.len());
        for e in &shape.dims {
            let n = self.const_int(e, "a dimension")?;
            if n < 1 {
                let d =
                    Diagnostic::error(format!("invalid dimension {n}")).at(e.span, "a dimension must be at least 1");
                return Err(self.error(d));
            }
            dims.push(usize::try_from(n).unwrap_or(usize::MAX));
        }
        self.check_size(&dims, shape.span)?;
        Ok(dims)
    }

    /// Errors if a tensor of example `dims` would be larger than [`MAX_ELEMENTS`].
    pub(crate) fn check_size(&mut self, dims: &[usize], span: Span) -> R<()> {
        let n = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if n.is_some_and(|n| n <= MAX_ELEMENTS) {
            return Ok(());
        }
        let count = match n {
            Some(n) => n.to_string(),
            None => "more than 2^64".to_string(),
        };
        let d = Diagnostic::error("tensor too large")
            .at(span, format!("a tensor of shape {} has {count} elements", expr::show_dims(dims)))
            .note(format!("a tensor may hold at most {MAX_ELEMENTS} elements per example"));
        Err(self.error(d))
    }

    fn init(&mut self, init: &'m InitExpr) -> R<Init> {
        let (name, args, span) = match init {
            InitExpr::Value(e) => return Ok(Init::Const(self.const_finite(e, "an initial value")?)),
            InitExpr::Dist { name, args, span } => (name, args.as_deref().unwrap_or(&[]), *span),
        };
        let want = match name.name.as_str() {
            "normal" | "uniform" => 2,
            "xavier" | "he" => 0,
            other => {
                let hint = names::suggest(other, ["normal", "uniform", "xavier", "he"].into_iter());
                let d = Diagnostic::error(format!("unknown initializer `{other}`"))
                    .at(name.span, hint.map_or("not an initializer".into(), |h| format!("did you mean `{h}`?")))
                    .note("initializers are `~ normal(mean, std)`, `~ uniform(lo, hi)`, `~ xavier`, `~ he` and `= NUMBER`");
                return Err(self.error(d));
            }
        };
        if args.len() != want {
            let form = match name.name.as_str() {
                "normal" => "`~ normal(mean, std)`",
                "uniform" => "`~ uniform(lo, hi)`",
                "xavier" => "`~ xavier`",
                _ => "`~ he`",
            };
            let d = Diagnostic::error(format!("`{}` takes {want} arguments but {} were given", name.name, args.len()))
                .at(span, format!("write {form}"));
            return Err(self.error(d));
        }
        let vals = args.iter().map(|a| self.const_finite(a, "an initializer argument")).collect::<Vec<_>>();
        let vals: Vec<f64> = vals.into_iter().collect::<R<_>>()?;
        let init = match name.name.as_str() {
            "normal" => Init::Normal { mean: vals[0], std: vals[1] },
            "uniform" => Init::Uniform { lo: vals[0], hi: vals[1] },
            "xavier" => Init::Xavier,
            _ => Init::He,
        };
        let bad = match init {
            Init::Normal { std, .. } if std < 0.0 => Some((&args[1], "the standard deviation must not be negative")),
            Init::Uniform { lo, hi } if lo > hi => Some((&args[1], "the upper bound is below the lower bound")),
            _ => None,
        };
        if let Some((arg, why)) = bad {
            let d = Diagnostic::error(format!("invalid `{}` initializer", name.name)).at(arg.span, why);
            return Err(self.error(d));
        }
        Ok(init)
    }

    fn constant(&mut self, name: &Ident, value: &'m Expr) -> R<Val> {
        let v = self.expr(value)?;
        if let Val::Const(c) = v {
            return Ok(Val::Const(c));
        }
        Err(self.not_constant(value, &format!("`{}` is not a constant", name.name)))
    }

    fn bind(&mut self, name: &Ident, value: &'m Expr) -> R<Val> {
        let o = Opd { val: self.expr(value)?, span: value.span };
        self.check_float(o)?;
        // A binding names an IR value (so `eval` can show it and its gradient).
        let v = self.materialize(o);
        self.func.names.push((name.name.clone(), v));
        Ok(Val::Tensor(v))
    }

    /// `loss EXPR`: a scalar per example; the result is the minibatch mean `f32[]`.
    fn loss(&mut self, e: &'m Expr) -> R<Value> {
        let o = Opd { val: self.expr(e)?, span: e.span };
        self.check_float(o)?;
        let shape = self.shape_of(o.val);
        if !shape.dims.is_empty() {
            let d = Diagnostic::error("the loss must be a scalar per example")
                .at(e.span, format!("this has shape {}", expr::show(&shape)))
                .note("reduce it to a scalar, for example with `sum(...)` or `mean(...)`");
            return Err(self.error(d));
        }
        let v = self.materialize(o);
        if shape.batch {
            return Ok(self.ins(Inst::Reduce { op: ReduceOp::Mean, arg: v, axes: vec![0] }, e.span));
        }
        Ok(v)
    }

    fn output(&mut self, e: &'m Expr) -> R<Value> {
        let o = Opd { val: self.expr(e)?, span: e.span };
        self.check_float(o)?;
        Ok(self.materialize(o))
    }

    /// An expression that must fold to a finite constant.
    fn const_finite(&mut self, e: &'m Expr, what: &str) -> R<f64> {
        let c = self.const_value(e, what)?;
        if !c.is_finite() {
            let d = Diagnostic::error(format!("{what} must be finite")).at(e.span, format!("this is {c}"));
            return Err(self.error(d));
        }
        Ok(c)
    }

    /// An expression that must fold to a constant.
    pub(crate) fn const_value(&mut self, e: &'m Expr, what: &str) -> R<f64> {
        match self.expr(e)? {
            Val::Const(c) => Ok(c),
            Val::Tensor(_) | Val::Class { .. } => Err(self.not_constant(e, &format!("{what} must be a constant"))),
        }
    }

    /// An expression that must fold to an integer constant.
    pub(crate) fn const_int(&mut self, e: &'m Expr, what: &str) -> R<i64> {
        let c = self.const_value(e, what)?;
        if c.fract() != 0.0 || c.abs() > 9.0e15 {
            let d = Diagnostic::error(format!("{what} must be an integer")).at(e.span, format!("this is {c}"));
            return Err(self.error(d));
        }
        Ok(c as i64)
    }

    /// "... is not a constant", pointing at the first name in `e` that is not a `const`.
    fn not_constant(&mut self, e: &Expr, message: &str) -> Fail {
        let mut d = Diagnostic::error(message);
        match self.first_non_const(e) {
            Some((name, span)) => {
                d = d.at(span, format!("`{name}` is not a `const`")).also(e.span, "in this expression");
            }
            None => d = d.at(e.span, "this is not a constant"),
        }
        self.error(d.note("constants are computed from numbers and other `const`s only"))
    }

    fn first_non_const(&self, e: &Expr) -> Option<(String, Span)> {
        use crate::ast::ExprKind;
        match &e.kind {
            ExprKind::Name(n) => match self.globals.get(n) {
                Some(Global::Value(Val::Const(_))) => None,
                _ => Some((n.clone(), e.span)),
            },
            ExprKind::Num(_) | ExprKind::TooDeep => None,
            ExprKind::Neg(a) => self.first_non_const(a),
            ExprKind::Binary { lhs, rhs, .. } => self.first_non_const(lhs).or_else(|| self.first_non_const(rhs)),
            ExprKind::Call { args, .. } => args.iter().find_map(|a| self.first_non_const(&a.value)),
            ExprKind::Index { base, indices } => {
                self.first_non_const(base).or_else(|| indices.iter().find_map(|i| self.first_non_const(i)))
            }
        }
    }
}
