//! Rebuilding a function value by value: the shared frame of the rewriting passes.
//!
//! A pass walks the source in program order and, for each value, either emits an
//! instruction into the output (operands already renumbered) or maps the value to one
//! already emitted. `finish` remaps results, names and the adjoint start. Values left
//! unused are dropped by the next dead-code elimination.

use bpc_ir::{Function, Inst, Output, Shape, Span, Value};

pub(crate) struct Rewriter<'f> {
    pub src: &'f Function,
    pub out: Function,
    map: Vec<Option<Value>>,
    adjoint_start: Option<usize>,
}

impl<'f> Rewriter<'f> {
    pub fn new(src: &'f Function) -> Rewriter<'f> {
        let mut out = Function::new(src.name.clone());
        out.args = src.args.clone();
        Rewriter { src, out, map: vec![None; src.len()], adjoint_start: None }
    }

    /// Runs `step` over every source value; it returns the value the source value becomes.
    pub fn run(mut self, mut step: impl FnMut(&mut Self, Value) -> Value) -> Function {
        for v in self.src.values() {
            if self.src.adjoint_start == Some(v) {
                self.adjoint_start = Some(self.out.len());
            }
            let new = step(&mut self, v);
            self.map[v.index()] = Some(new);
        }
        self.finish()
    }

    /// The output value a source value became.
    pub fn get(&self, v: Value) -> Value {
        self.map[v.index()].expect("operands precede their uses")
    }

    /// The source instruction of `v` with its operands renumbered.
    pub fn mapped(&self, v: Value) -> Inst {
        let mut inst = self.src.inst(v).clone();
        inst.map_operands(|o| self.get(o));
        inst
    }

    /// Emits `inst` (operands are output values) with `span`.
    pub fn emit(&mut self, inst: Inst, span: Span) -> Value {
        self.out.ins(inst, span)
    }

    /// Copies source value `v` unchanged.
    pub fn copy(&mut self, v: Value) -> Value {
        let inst = self.mapped(v);
        let ty = self.src.ty(v).clone();
        self.out.push_typed(inst, ty, self.src.span(v))
    }

    /// The scalar constant an output value is, seeing through broadcasts and reshapes.
    pub fn constant(&self, v: Value) -> Option<f64> {
        constant(&self.out, v)
    }

    /// A constant `c` of shape `shape` (a scalar, broadcast if needed).
    pub fn splat(&mut self, c: f64, shape: &Shape, span: Span) -> Value {
        let k = self.emit(Inst::Const(c), span);
        if shape.rank() == 0 { k } else { self.emit(Inst::Broadcast { arg: k, to: shape.clone() }, span) }
    }

    fn finish(self) -> Function {
        let Rewriter { src, mut out, map, adjoint_start } = self;
        let get = |v: Value| map[v.index()].expect("every value was rewritten");
        out.results = src.results.iter().map(|r| Output { value: get(r.value), ..r.clone() }).collect();
        out.names = src.names.iter().map(|(n, v)| (n.clone(), get(*v))).collect();
        out.adjoint_start = adjoint_start.filter(|&s| s < out.len()).map(|s| Value(s as u32));
        out
    }
}

/// The scalar constant `v` is, seeing through broadcasts and reshapes.
pub(crate) fn constant(f: &Function, v: Value) -> Option<f64> {
    match f.inst(v) {
        Inst::Const(c) => Some(*c),
        Inst::Broadcast { arg, .. } | Inst::Reshape { arg, .. } => constant(f, *arg),
        _ => None,
    }
}
