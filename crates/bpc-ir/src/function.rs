//! The function: a straight-line typed SSA program over tensors.
//!
//! Values live in one vector in program order (a value's index is its position, so every
//! operand precedes its use), each with its instruction, its type and, in a parallel side
//! table, its source span. Arguments (inputs, labels, params and runtime settings such as
//! the learning rate) are declared in `args` and read by `Inst::Arg`. Results name the values
//! a caller gets back; a result with `update: Some(param)` is that param's new value, which
//! the compiled step writes over the param in place.

use std::fmt;

use crate::fusion::Kernel;
use crate::infer::{TypeError, infer_type};
use crate::ops::{BinaryOp, ReduceOp, UnaryOp};
use crate::span::Span;
use crate::types::{Shape, Type};

/// An SSA value, printed `v7`. Its index is its position in program order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub u32);

impl Value {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// An argument of a [`Function`], indexing `Function::args`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArgId(pub u32);

impl ArgId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// How a param is initialized (SPEC §1). For `W[out, in]`, fan_in = in and fan_out = out;
/// for a vector of n, both are n.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Every element the same number (`= 0`; also what no initializer means).
    Const(f64),
    /// `~ normal(mean, std)`.
    Normal { mean: f64, std: f64 },
    /// `~ uniform(lo, hi)`.
    Uniform { lo: f64, hi: f64 },
    /// `~ xavier`: Glorot uniform, ±sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010).
    Xavier,
    /// `~ he`: normal with std sqrt(2 / fan_in) (He et al., 2015).
    He,
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Const(c) => write!(f, "= {c}"),
            Init::Normal { mean, std } => write!(f, "~ normal({mean}, {std})"),
            Init::Uniform { lo, hi } => write!(f, "~ uniform({lo}, {hi})"),
            Init::Xavier => f.write_str("~ xavier"),
            Init::He => f.write_str("~ he"),
        }
    }
}

/// What an argument is.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgKind {
    /// A per-example input: `input x[784]`.
    Input,
    /// A per-example label: `class(K)` gives an `i32` class index, `None` a real target.
    Label { classes: Option<usize> },
    /// A trainable param with its initializer.
    Param { init: Init },
    /// A runtime scalar setting of the step, such as the learning rate `lr`.
    Hyper,
    /// Optimizer state (a momentum buffer, Adam's moments): read by the step and written
    /// over in place by an update result, like a param, but not trained; zero at the start.
    State,
}

/// One argument: its source name, kind, type and declaration span.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgData {
    pub name: String,
    pub kind: ArgKind,
    pub ty: Type,
    pub span: Span,
}

/// An instruction. Operand shapes follow the rules in `infer.rs`; physical axes count the
/// minibatch axis (axis 0 of a batched value).
#[derive(Clone, Debug, PartialEq)]
pub enum Inst {
    /// Reads an argument.
    Arg(ArgId),
    /// A scalar constant `f32[]`.
    Const(f64),
    /// The step's minibatch size as a scalar `f32[]` (fixed when a step is specialized).
    BatchSize,
    Unary {
        op: UnaryOp,
        arg: Value,
    },
    /// Both operands have the result's type; lowering inserts `Broadcast`s first.
    Binary {
        op: BinaryOp,
        lhs: Value,
        rhs: Value,
    },
    /// `where(cond, on_true, on_false)`: `cond` is a 0/1 mask; nonzero picks `on_true`.
    /// VJP: `ct` to the branch taken and an exact 0 to the other (a select, so inf or NaN in
    /// the inactive branch's partials never reaches the gradient); none to the mask.
    Select {
        cond: Value,
        on_true: Value,
        on_false: Value,
    },
    /// Reduces the physical `axes` (sorted, distinct) away. VJP: per [`ReduceOp`].
    Reduce {
        op: ReduceOp,
        arg: Value,
        axes: Vec<usize>,
    },
    /// NumPy broadcasting of the example axes to `to`; may also add the batch axis. VJP: `ct`
    /// summed over the broadcast axes back to the operand's shape (over the batch axis too, so
    /// a shared value's gradient counts every example once).
    Broadcast {
        arg: Value,
        to: Shape,
    },
    /// Same elements, new example shape; the batch axis is kept. VJP: `ct` reshaped back.
    Reshape {
        arg: Value,
        to: Shape,
    },
    /// Swaps the two example axes of a rank-2 example. VJP: `ct` transposed back.
    Transpose {
        arg: Value,
    },
    /// `op(lhs) · op(rhs)` on physical rank-2 operands, `op` transposing when the flag is
    /// set (BLAS's transa/transb). The minibatch axis may be a row or the contracted axis.
    /// VJP (`C = op(A)·op(B)`): `dA = dC·op(B)ᵀ`, `dB = op(A)ᵀ·dC`, each laid out as its
    /// operand; IEEE products (strong zeros do not apply inside GEMMs, SPEC §2).
    MatMul {
        lhs: Value,
        rhs: Value,
        ta: bool,
        tb: bool,
    },
    /// Softmax (or log-softmax) along a physical example axis, max-subtracted (no overflow for
    /// any finite input). VJP: `out ⊙ (ct − Σ ct ⊙ out)`; log-softmax `ct − e^out ⊙ Σ ct`.
    Softmax {
        arg: Value,
        axis: usize,
        log: bool,
    },
    /// `logsumexp(logits) - logits[label]` along the last axis: logits `f32[.., K]`,
    /// label `i32[..]` of class indices, result `f32[..]`; max-subtracted. VJP: `ct ⊙
    /// (softmax(logits) − onehot(label))`, finite for any finite logits; none to the label (an
    /// integer: differentiating with respect to it is a compile-time error, SPEC §2).
    CrossEntropy {
        logits: Value,
        label: Value,
    },
    /// Class indices `i32[..]` to a 0/1 `f32[.., classes]`. No gradient (an integer operand).
    OneHot {
        label: Value,
        classes: usize,
    },
    /// Constant indexing of the leading example axes: `W[i, j]`, `v[i]`, `W[i]` (a row).
    /// VJP: `ct` scattered back to `at`, zeros elsewhere.
    Index {
        arg: Value,
        at: Vec<usize>,
    },
    /// The adjoint of `Index`: zeros of shape `to` with `arg` placed at `at`. VJP: `ct`
    /// indexed at `at` (so an adjoint differentiates again).
    Scatter {
        arg: Value,
        at: Vec<usize>,
        to: Shape,
    },
}

impl Inst {
    /// The operands, in order.
    pub fn operands(&self) -> Vec<Value> {
        match self {
            Inst::Arg(_) | Inst::Const(_) | Inst::BatchSize => vec![],
            Inst::Unary { arg, .. }
            | Inst::Reduce { arg, .. }
            | Inst::Broadcast { arg, .. }
            | Inst::Reshape { arg, .. }
            | Inst::Transpose { arg }
            | Inst::Softmax { arg, .. }
            | Inst::Index { arg, .. }
            | Inst::Scatter { arg, .. } => vec![*arg],
            Inst::OneHot { label, .. } => vec![*label],
            Inst::Binary { lhs, rhs, .. } | Inst::MatMul { lhs, rhs, .. } => vec![*lhs, *rhs],
            Inst::CrossEntropy { logits, label } => vec![*logits, *label],
            Inst::Select { cond, on_true, on_false } => vec![*cond, *on_true, *on_false],
        }
    }

    /// Rewrites every operand through `f` (for passes that renumber or replace values).
    pub fn map_operands(&mut self, mut f: impl FnMut(Value) -> Value) {
        match self {
            Inst::Arg(_) | Inst::Const(_) | Inst::BatchSize => {}
            Inst::Unary { arg, .. }
            | Inst::Reduce { arg, .. }
            | Inst::Broadcast { arg, .. }
            | Inst::Reshape { arg, .. }
            | Inst::Transpose { arg }
            | Inst::Softmax { arg, .. }
            | Inst::Index { arg, .. }
            | Inst::Scatter { arg, .. } => *arg = f(*arg),
            Inst::OneHot { label, .. } => *label = f(*label),
            Inst::Binary { lhs, rhs, .. } | Inst::MatMul { lhs, rhs, .. } => {
                *lhs = f(*lhs);
                *rhs = f(*rhs);
            }
            Inst::CrossEntropy { logits, label } => {
                *logits = f(*logits);
                *label = f(*label);
            }
            Inst::Select { cond, on_true, on_false } => {
                *cond = f(*cond);
                *on_true = f(*on_true);
                *on_false = f(*on_false);
            }
        }
    }
}

/// A value's definition.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueData {
    pub inst: Inst,
    pub ty: Type,
}

/// A named result of a function.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub value: Value,
    /// `Some(arg)`: the new value of that param (or optimizer state), written over it in place.
    pub update: Option<ArgId>,
}

/// A straight-line typed SSA function over tensors. See the module docs.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Function {
    pub name: String,
    pub args: Vec<ArgData>,
    values: Vec<ValueData>,
    spans: Vec<Span>,
    pub results: Vec<Output>,
    /// Source names of values (bindings and declarations), for printing and `eval`.
    pub names: Vec<(String, Value)>,
    /// Where the appended adjoint program begins, if one was appended.
    pub adjoint_start: Option<Value>,
    /// The optimizer's fused kernels (`crate::fusion`): `None` before the optimizer ran.
    /// They group values without changing any, so passes that rewrite values drop them.
    pub kernels: Option<Vec<Kernel>>,
}

impl Function {
    pub fn new(name: impl Into<String>) -> Function {
        Function { name: name.into(), ..Function::default() }
    }

    /// Declares an argument; read it with `Inst::Arg`.
    pub fn add_arg(&mut self, name: impl Into<String>, kind: ArgKind, ty: Type, span: Span) -> ArgId {
        self.args.push(ArgData { name: name.into(), kind, ty, span });
        ArgId(self.args.len() as u32 - 1)
    }

    /// Appends `inst` after checking its operands; the result type is inferred.
    pub fn push(&mut self, inst: Inst, span: Span) -> Result<Value, TypeError> {
        let ty = infer_type(self, &inst)?;
        Ok(self.push_typed(inst, ty, span))
    }

    /// Appends `inst` in a pass that constructs only well-typed code: a type error here is a
    /// bug in the compiler, not in the user's program, and panics with the message.
    pub fn ins(&mut self, inst: Inst, span: Span) -> Value {
        match self.push(inst, span) {
            Ok(v) => v,
            Err(e) => panic!("internal error: ill-typed instruction in `{}`: {e}", self.name),
        }
    }

    /// Appends without checking; the verifier re-infers every type.
    pub fn push_typed(&mut self, inst: Inst, ty: Type, span: Span) -> Value {
        self.values.push(ValueData { inst, ty });
        self.spans.push(span);
        Value(self.values.len() as u32 - 1)
    }

    pub fn inst(&self, v: Value) -> &Inst {
        &self.values[v.index()].inst
    }

    pub fn ty(&self, v: Value) -> &Type {
        &self.values[v.index()].ty
    }

    pub fn shape(&self, v: Value) -> &Shape {
        &self.values[v.index()].ty.shape
    }

    pub fn span(&self, v: Value) -> Span {
        self.spans[v.index()]
    }

    pub fn set_span(&mut self, v: Value, span: Span) {
        self.spans[v.index()] = span;
    }

    pub fn data(&self, v: Value) -> &ValueData {
        &self.values[v.index()]
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// All values in program order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = Value> + ExactSizeIterator + use<> {
        (0..self.values.len() as u32).map(Value)
    }

    pub fn arg(&self, id: ArgId) -> &ArgData {
        &self.args[id.index()]
    }

    /// The argument with this source name.
    pub fn arg_named(&self, name: &str) -> Option<ArgId> {
        self.args.iter().position(|a| a.name == name).map(|i| ArgId(i as u32))
    }

    /// The value that reads `id`, if the function reads it.
    pub fn arg_value(&self, id: ArgId) -> Option<Value> {
        self.values().find(|&v| *self.inst(v) == Inst::Arg(id))
    }

    /// The result with this name.
    pub fn result(&self, name: &str) -> Option<&Output> {
        self.results.iter().find(|r| r.name == name)
    }

    /// The value bound to this source name.
    pub fn named(&self, name: &str) -> Option<Value> {
        self.names.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// Adds a plain (not in-place) result.
    pub fn add_result(&mut self, name: impl Into<String>, value: Value) {
        self.results.push(Output { name: name.into(), value, update: None });
    }

    /// `live[v]`: some result depends on `v`. One backward scan suffices, since operands
    /// precede their uses.
    pub fn live_values(&self) -> Vec<bool> {
        let mut live = vec![false; self.len()];
        for r in &self.results {
            live[r.value.index()] = true;
        }
        for v in self.values().rev() {
            if live[v.index()] {
                for o in self.inst(v).operands() {
                    live[o.index()] = true;
                }
            }
        }
        live
    }

    /// Args of kind `Param`, in declaration order.
    pub fn params(&self) -> impl Iterator<Item = ArgId> + '_ {
        self.args_where(|k| matches!(k, ArgKind::Param { .. }))
    }

    /// Args of kind `Input`, in declaration order.
    pub fn inputs(&self) -> impl Iterator<Item = ArgId> + '_ {
        self.args_where(|k| matches!(k, ArgKind::Input))
    }

    /// Args of kind `State` (optimizer state), in declaration order.
    pub fn states(&self) -> impl Iterator<Item = ArgId> + '_ {
        self.args_where(|k| matches!(k, ArgKind::State))
    }

    /// Args of kind `Label`, in declaration order.
    pub fn labels(&self) -> impl Iterator<Item = ArgId> + '_ {
        self.args_where(|k| matches!(k, ArgKind::Label { .. }))
    }

    fn args_where<'a>(&'a self, keep: impl Fn(&ArgKind) -> bool + 'a) -> impl Iterator<Item = ArgId> + 'a {
        self.args.iter().enumerate().filter(move |(_, a)| keep(&a.kind)).map(|(i, _)| ArgId(i as u32))
    }
}
