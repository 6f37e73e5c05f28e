//! The reverse sweep: [`append_adjoint`] and the small instruction emitter the VJP rules use.
//!
//! The shape is autodidax's `backward_pass`: seed the cotangent of the output with 1, walk
//! the primal values backwards, hand each value's cotangent to its VJP rule (`vjp.rs`), and
//! sum the contributions an operand receives from its several uses (fan-out) with `add`.
//! Only *relevant* values take part: those `of` depends on that also depend on a `wrt`
//! value, so no code is emitted for gradients nobody asked for (the input of the first
//! layer in a train step, the label of a cross-entropy, a comparison's operands).

use std::collections::HashMap;

use bpc_ir::{BinaryOp, Diagnostic, Function, Inst, ReduceOp, Shape, Span, Type, UnaryOp, Value};

use crate::vjp;

/// Appends to a copy of `func` the adjoint of the scalar `of` with respect to each of `wrt`.
///
/// Returns the new function (its `adjoint_start` is the first appended value) and, for each
/// `wrt` value, the value holding d`of`/d`wrt`: same type as the primal, an exact zero
/// (`broadcast(const 0.0)`) where `of` does not depend on it. Every appended value carries
/// the span of the primal instruction whose rule emitted it.
///
/// # Errors
/// A [`Diagnostic`] if `of` is not a scalar `f32[]` (at `of`'s span), or if a `wrt` value is
/// not a float tensor: a class label is pointed at its declaration.
///
/// # Panics
/// If `of` or a `wrt` value is not a value of `func` (a compiler bug, not a user error).
pub fn append_adjoint(func: &Function, of: Value, wrt: &[Value]) -> Result<(Function, Vec<Value>), Diagnostic> {
    for &v in wrt.iter().chain([&of]) {
        assert!(v.index() < func.len(), "internal error: append_adjoint on {v}, which `{}` does not define", func.name);
    }
    check_output(func, of)?;
    for &w in wrt {
        check_input(func, w)?;
    }
    let start = Value(func.len() as u32);
    let mut sweep = Sweep::new(func.clone(), relevant(func, of, wrt));
    sweep.span = func.span(of);
    let seed = sweep.splat(1.0, &Shape::scalar());
    sweep.cts[of.index()] = Some(seed);
    for v in (0..=of.0).rev().map(Value) {
        if let (true, Some(ct)) = (sweep.relevant[v.index()], sweep.cts[v.index()]) {
            sweep.span = sweep.func.span(v);
            vjp::pullback(&mut sweep, v, ct);
        }
    }
    let grads = wrt.iter().map(|&w| sweep.cotangent(w)).collect();
    let mut out = sweep.func;
    out.adjoint_start = Some(start);
    Ok((out, grads))
}

/// The loss must be one float: reverse mode seeds its cotangent with 1.
fn check_output(func: &Function, of: Value) -> Result<(), Diagnostic> {
    let ty = func.ty(of);
    if *ty == Type::scalar() {
        return Ok(());
    }
    Err(Diagnostic::error(format!("cannot differentiate a non-scalar: the loss must be f32[], found {ty}"))
        .at(func.span(of), format!("this is {ty}"))
        .note("a per-example loss is averaged over the minibatch into one number (reduce_mean over the batch axis)"))
}

/// Gradients exist only for float values; a class label is an integer index.
fn check_input(func: &Function, w: Value) -> Result<(), Diagnostic> {
    let ty = func.ty(w);
    if ty.is_float() {
        return Ok(());
    }
    let (span, what) = if let Inst::Arg(id) = func.inst(w) {
        (func.arg(*id).span, format!("class label `{}`", func.arg(*id).name))
    } else {
        (func.span(w), "an integer value".to_string())
    };
    Err(Diagnostic::error(format!("cannot differentiate with respect to {what}"))
        .at(span, format!("this is {ty}, not a float tensor"))
        .note("class labels are integer indices: only float inputs, params and bindings have gradients"))
}

/// `relevant[v]`: `of` depends on `v` and `v` depends on (or is) one of `wrt`.
/// Indexed up to `of` inclusive; later values never are.
fn relevant(func: &Function, of: Value, wrt: &[Value]) -> Vec<bool> {
    let n = of.index() + 1;
    let mut from_wrt = vec![false; n];
    for v in func.values().take(n) {
        from_wrt[v.index()] = wrt.contains(&v) || func.inst(v).operands().iter().any(|o| from_wrt[o.index()]);
    }
    let mut needed = vec![false; n];
    needed[of.index()] = true;
    for v in func.values().take(n).rev() {
        if needed[v.index()] {
            for o in func.inst(v).operands() {
                needed[o.index()] = true;
            }
        }
    }
    from_wrt.iter().zip(&needed).map(|(a, b)| *a && *b).collect()
}

/// The state of one reverse sweep, and the emitter the VJP rules build with. Every value it
/// emits gets `span`, the span of the primal instruction being transposed.
pub(crate) struct Sweep {
    pub(crate) func: Function,
    relevant: Vec<bool>,
    /// The accumulated cotangent of each primal value, once it has one.
    cts: Vec<Option<Value>>,
    span: Span,
    /// Splatted constants already emitted, by (bits of the number, shape).
    consts: HashMap<(u64, Shape), Value>,
}

impl Sweep {
    fn new(func: Function, relevant: Vec<bool>) -> Sweep {
        let cts = vec![None; func.len()];
        Sweep { func, relevant, cts, span: Span::NONE, consts: HashMap::new() }
    }

    /// The cotangent accumulated for `v`, or an exact zero of its type.
    fn cotangent(&mut self, v: Value) -> Value {
        match self.cts[v.index()] {
            Some(ct) => ct,
            None => {
                self.span = self.func.span(v);
                let shape = self.shape(v);
                self.splat(0.0, &shape)
            }
        }
    }

    /// Adds the cotangent contribution `f` builds to `operand`'s, if `operand` is relevant;
    /// otherwise emits nothing. Fan-out accumulates with `add`.
    pub(crate) fn give(&mut self, operand: Value, f: impl FnOnce(&mut Sweep) -> Value) {
        if !self.relevant.get(operand.index()).copied().unwrap_or(false) {
            return;
        }
        let c = f(self);
        let sum = match self.cts[operand.index()] {
            Some(old) => self.bin(BinaryOp::Add, old, c),
            None => c,
        };
        self.cts[operand.index()] = Some(sum);
    }

    /// The primal instruction of `v` (a copy: the rules append while they read it).
    pub(crate) fn inst(&self, v: Value) -> Inst {
        self.func.inst(v).clone()
    }

    pub(crate) fn shape(&self, v: Value) -> Shape {
        self.func.shape(v).clone()
    }

    /// Appends `inst` with the current primal span; the rules build only well-typed code.
    pub(crate) fn ins(&mut self, inst: Inst) -> Value {
        self.func.ins(inst, self.span)
    }

    pub(crate) fn un(&mut self, op: UnaryOp, arg: Value) -> Value {
        self.ins(Inst::Unary { op, arg })
    }

    pub(crate) fn bin(&mut self, op: BinaryOp, lhs: Value, rhs: Value) -> Value {
        self.ins(Inst::Binary { op, lhs, rhs })
    }

    /// `c` everywhere in `shape`: `const c`, broadcast unless `shape` is a shared scalar.
    pub(crate) fn splat(&mut self, c: f64, shape: &Shape) -> Value {
        let key = (c.to_bits(), shape.clone());
        if let Some(&v) = self.consts.get(&key) {
            return v;
        }
        let v = match self.consts.get(&(c.to_bits(), Shape::scalar())) {
            Some(&k) => k,
            None => {
                let k = self.ins(Inst::Const(c));
                self.consts.insert((c.to_bits(), Shape::scalar()), k);
                k
            }
        };
        let v = self.broadcast(v, shape);
        self.consts.insert(key, v);
        v
    }

    /// `c` in the shape of `like`.
    pub(crate) fn splat_like(&mut self, c: f64, like: Value) -> Value {
        let shape = self.shape(like);
        self.splat(c, &shape)
    }

    /// `op(a, c)` with the constant `c` splatted to `a`'s shape.
    pub(crate) fn bin_c(&mut self, op: BinaryOp, a: Value, c: f64) -> Value {
        let k = self.splat_like(c, a);
        self.bin(op, a, k)
    }

    /// `op(c, a)` with the constant `c` splatted to `a`'s shape.
    pub(crate) fn c_bin(&mut self, op: BinaryOp, c: f64, a: Value) -> Value {
        let k = self.splat_like(c, a);
        self.bin(op, k, a)
    }

    /// `broadcast(v)` to `to`, or `v` itself if it already has that shape.
    pub(crate) fn broadcast(&mut self, v: Value, to: &Shape) -> Value {
        if self.func.shape(v) == to { v } else { self.ins(Inst::Broadcast { arg: v, to: to.clone() }) }
    }

    /// `reshape(v)` to `to`, or `v` itself if it already has that shape.
    pub(crate) fn reshape(&mut self, v: Value, to: &Shape) -> Value {
        if self.func.shape(v) == to { v } else { self.ins(Inst::Reshape { arg: v, to: to.clone() }) }
    }

    /// `reduce_sum(v)` over the physical `axes`, or `v` itself if there are none.
    pub(crate) fn sum(&mut self, v: Value, axes: Vec<usize>) -> Value {
        if axes.is_empty() { v } else { self.ins(Inst::Reduce { op: ReduceOp::Sum, arg: v, axes }) }
    }

    pub(crate) fn matmul(&mut self, lhs: Value, rhs: Value, ta: bool, tb: bool) -> Value {
        self.ins(Inst::MatMul { lhs, rhs, ta, tb })
    }
}
