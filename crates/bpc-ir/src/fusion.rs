//! Fused kernels: the optimizer's grouping of values into single loop kernels.
//!
//! A [`Kernel`] names a contiguous run of values that code generation computes in one
//! generated function instead of one per instruction. The grouping changes no value: a
//! function with kernels means exactly what it means without them (the interpreter ignores
//! them), so fusion can never change a result, only how it is computed. Members that are
//! used only inside their kernel are never stored to memory; the others are its outputs.
//!
//! `Function::kernels` is `None` for a function the optimizer has not seen (code generation
//! then plans one kernel per instruction and a buffer per value), `Some` after `-O1`/`-O2`.
//!
//! In the text form a kernel is a block around its members, with its scalar body (what one
//! element of each output is) as a trailing comment:
//!
//! ```text
//!   kernel k0 map {                               # v9[b,i] = relu(v6[b,i] + v3[i])
//!     v7: f32[B,256] = broadcast v3
//!     v8: f32[B,256] = add v6, v7
//!     v9: f32[B,256] = relu v8                    # h
//!   }
//! ```

use std::fmt::Write as _;

use crate::function::{Function, Inst, Value};
use crate::ops::{BinaryOp, ReduceOp, UnaryOp};

/// What shape of loop nest a kernel is; code generation lowers each kind its own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelKind {
    /// Elementwise ops over one shape, composed into one loop body (views and constants
    /// feed it; a matrix product with a small contracted axis may be inlined as a dot).
    Map,
    /// An elementwise producer, one reduction over some axes, and an elementwise epilogue
    /// over the reduced shape (a mean's division, an SGD update) in one loop nest.
    Reduce,
    /// Row-wise work over the same leading rows (softmax, cross-entropy, their gradient,
    /// reductions over the rows) interleaved in one loop over the rows.
    Rows,
    /// A matrix product whose epilogue `d + c·(a·b)` is the GEMM's own `alpha`/`beta`.
    Gemm,
}

impl KernelKind {
    pub const ALL: &'static [KernelKind] = &[KernelKind::Map, KernelKind::Reduce, KernelKind::Rows, KernelKind::Gemm];

    /// The name in the IR text.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Map => "map",
            KernelKind::Reduce => "reduce",
            KernelKind::Rows => "rows",
            KernelKind::Gemm => "gemm",
        }
    }

    pub fn from_name(text: &str) -> Option<KernelKind> {
        KernelKind::ALL.iter().copied().find(|k| k.name() == text)
    }
}

/// A fused kernel: its kind and its members, a contiguous run of values in program order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub kind: KernelKind,
    pub values: Vec<Value>,
}

impl Kernel {
    /// The members some value outside the kernel (or a result) reads: what it stores.
    pub fn outputs(&self, func: &Function) -> Vec<Value> {
        let first = self.values[0].index();
        let last = self.values[self.values.len() - 1].index();
        let inside = |v: Value| (first..=last).contains(&v.index());
        let mut out = vec![false; self.values.len()];
        for r in &func.results {
            if inside(r.value) {
                out[r.value.index() - first] = true;
            }
        }
        for v in func.values().skip(last + 1) {
            for o in func.inst(v).operands() {
                if inside(o) {
                    out[o.index() - first] = true;
                }
            }
        }
        self.values.iter().zip(out).filter(|(_, o)| *o).map(|(v, _)| *v).collect()
    }

    /// The scalar body: one `vN[idx] = expr` per output, members expanded inline.
    pub fn body_text(&self, func: &Function) -> String {
        let outputs = self.outputs(func);
        let mut parts = Vec::new();
        for &o in &outputs {
            let idx = indices(func, o);
            parts.push(format!("{o}{} = {}", idx, self.expr(func, o, &idx, 0)));
        }
        parts.join("; ")
    }

    fn member(&self, v: Value) -> bool {
        self.values.first().is_some_and(|f| v >= *f) && self.values.last().is_some_and(|l| v <= *l)
    }

    /// `v` at the loop position `idx` (text like `[b,i]`), inlining members up to a depth.
    fn expr(&self, func: &Function, v: Value, idx: &str, depth: usize) -> String {
        if !self.member(v) || depth > 12 {
            return leaf(func, v, idx);
        }
        let sub = |x: Value, i: &str| self.expr(func, x, i, depth + 1);
        match func.inst(v) {
            Inst::Const(c) => format!("{c:?}"),
            Inst::Arg(_) | Inst::BatchSize => leaf(func, v, idx),
            Inst::Unary { op, arg } => match op {
                UnaryOp::Neg => format!("-{}", sub(*arg, idx)),
                _ => format!("{op}({})", sub(*arg, idx)),
            },
            Inst::Binary { op, lhs, rhs } => {
                let (a, b) = (sub(*lhs, idx), sub(*rhs, idx));
                match infix(*op) {
                    Some(s) => format!("({a} {s} {b})"),
                    None => format!("{op}({a}, {b})"),
                }
            }
            Inst::Select { cond, on_true, on_false } => {
                format!("({} ? {} : {})", sub(*cond, idx), sub(*on_true, idx), sub(*on_false, idx))
            }
            Inst::Broadcast { arg, .. } => sub(*arg, &broadcast_index(func, *arg, v, idx)),
            Inst::Reshape { arg, .. } => match reshape_index(func, *arg, v, idx) {
                Some(i) => sub(*arg, &i),
                None => leaf(func, v, idx),
            },
            Inst::Reduce { op, arg, axes } => {
                let name = match op {
                    ReduceOp::Sum => "sum",
                    ReduceOp::Mean => "mean",
                    ReduceOp::Max => "max",
                    ReduceOp::Min => "min",
                    ReduceOp::LogSumExp => "logsumexp",
                };
                let inner = indices(func, *arg);
                let over: Vec<String> = axes.iter().map(|&a| axis_letter(func, *arg, a)).collect();
                format!("{name}_{}({})", over.join(""), sub(*arg, &inner))
            }
            Inst::Softmax { arg, log, .. } => {
                let name = if *log { "log_softmax" } else { "softmax" };
                format!("{name}({}){idx}", self.expr(func, *arg, "", depth + 1))
            }
            Inst::CrossEntropy { logits, label } => {
                format!("cross_entropy({}, {}){idx}", self.expr(func, *logits, "", depth + 1), leaf(func, *label, ""))
            }
            Inst::OneHot { label, classes } => format!("onehot({}, {classes}){idx}", leaf(func, *label, "")),
            Inst::MatMul { lhs, rhs, ta, tb } => {
                let t = |f: bool| if f { "ᵀ" } else { "" };
                format!("({}{} @ {}{}){idx}", leaf(func, *lhs, ""), t(*ta), leaf(func, *rhs, ""), t(*tb))
            }
            Inst::Transpose { .. } | Inst::Index { .. } | Inst::Scatter { .. } => leaf(func, v, idx),
        }
    }
}

fn infix(op: BinaryOp) -> Option<&'static str> {
    match op {
        BinaryOp::Add => Some("+"),
        BinaryOp::Sub => Some("-"),
        BinaryOp::Mul => Some("*"),
        BinaryOp::StrongMul => Some("*!"),
        BinaryOp::Div => Some("/"),
        BinaryOp::Lt => Some("<"),
        BinaryOp::Le => Some("<="),
        BinaryOp::Gt => Some(">"),
        BinaryOp::Ge => Some(">="),
        BinaryOp::Eq => Some("=="),
        BinaryOp::Pow | BinaryOp::Max | BinaryOp::Min => None,
    }
}

/// A value outside the kernel read at `idx`: `v6[b,i]`, or a folded constant.
fn leaf(func: &Function, v: Value, idx: &str) -> String {
    match func.inst(v) {
        Inst::Const(c) => format!("{c:?}"),
        Inst::BatchSize => "B".into(),
        _ => format!("{v}{idx}"),
    }
}

const LETTERS: [&str; 6] = ["i", "j", "k", "l", "m", "n"];

fn axis_letter(func: &Function, v: Value, axis: usize) -> String {
    let s = func.shape(v);
    if s.batch && axis == 0 { "b".into() } else { LETTERS[(axis - s.batch as usize) % LETTERS.len()].into() }
}

/// `[b,i,j]` for the physical axes of `v` (empty for a scalar).
fn indices(func: &Function, v: Value) -> String {
    let rank = func.shape(v).rank();
    if rank == 0 {
        return String::new();
    }
    let names: Vec<String> = (0..rank).map(|a| axis_letter(func, v, a)).collect();
    format!("[{}]", names.join(","))
}

/// The index of the operand `arg` of `broadcast` at the result index `idx` (NumPy rules:
/// leading axes dropped, size-1 axes read at 0).
fn broadcast_index(func: &Function, arg: Value, out: Value, idx: &str) -> String {
    let (from, to) = (func.shape(arg), func.shape(out));
    let names: Vec<&str> = idx.trim_matches(['[', ']']).split(',').filter(|s| !s.is_empty()).collect();
    if names.len() != to.rank() {
        return String::new();
    }
    let mut kept = Vec::new();
    if from.batch {
        kept.push(names[0].to_string());
    }
    let lead = to.dims.len() - from.dims.len();
    for (k, &n) in from.dims.iter().enumerate() {
        kept.push(if n == 1 { "0".into() } else { names[to.batch as usize + lead + k].to_string() });
    }
    if kept.is_empty() { String::new() } else { format!("[{}]", kept.join(",")) }
}

/// The index of a reshape's operand when the reshape only adds or drops size-1 axes.
fn reshape_index(func: &Function, arg: Value, out: Value, idx: &str) -> Option<String> {
    let (from, to) = (func.shape(arg).sizes(2), func.shape(out).sizes(2));
    let names: Vec<&str> = idx.trim_matches(['[', ']']).split(',').filter(|s| !s.is_empty()).collect();
    if names.len() != to.len() {
        return None;
    }
    let mut kept = names.iter().zip(&to).filter(|(_, n)| **n != 1).map(|(s, _)| *s);
    let mut out = Vec::new();
    for &n in &from {
        out.push(if n == 1 { "0" } else { kept.next()? });
    }
    if kept.next().is_some() {
        return None;
    }
    Some(if out.is_empty() { String::new() } else { format!("[{}]", out.join(",")) })
}

/// Checks `kernels` against `func`: members exist, are contiguous and in order, and no
/// value is in two kernels.
pub fn check_kernels(func: &Function, kernels: &[Kernel]) -> Result<(), String> {
    let mut owner = vec![None; func.len()];
    for (i, k) in kernels.iter().enumerate() {
        let Some(&first) = k.values.first() else { return Err(format!("kernel k{i} is empty")) };
        for (j, &v) in k.values.iter().enumerate() {
            if v.index() >= func.len() {
                return Err(format!("kernel k{i} names undefined {v}"));
            }
            if v.index() != first.index() + j {
                return Err(format!("kernel k{i} is not a contiguous run of values at {v}"));
            }
            if let Some(o) = owner[v.index()].replace(i) {
                return Err(format!("{v} is in kernels k{o} and k{i}"));
            }
        }
    }
    Ok(())
}

/// Writes the header line of kernel `i` (without its body comment).
pub(crate) fn header(out: &mut String, i: usize, k: &Kernel) {
    let _ = write!(out, "  kernel k{i} {} {{", k.kind.name());
}

#[cfg(test)]
mod tests {
    use crate::{read, verify};

    const TEXT: &str = "\
function f {
  input x: f32[B,3]
  param b: f32[3] = 0
  v0: f32[B,3] = arg x
  v1: f32[3] = arg b
  kernel k0 map {                               # v4[b,i] = relu((v0[b,i] + v1[i]))
    v2: f32[B,3] = broadcast v1
    v3: f32[B,3] = add v0, v2
    v4: f32[B,3] = relu v3                      # h
  }
  kernel k1 reduce {                            # v7 = (sum_bi(v4[b,i]) / B)
    v5: f32[] = reduce_sum v4, axes=[0,1]
    v6: f32[] = batch_size
    v7: f32[] = div v5, v6
  }
  result loss = v7
  result h = v4
}
";

    #[test]
    fn kernels_print_their_scalar_body_and_read_back() {
        let f = read(TEXT).unwrap();
        verify(&f).unwrap();
        assert_eq!(f.to_string(), TEXT);
        let ks = f.kernels.as_ref().unwrap();
        assert_eq!((ks.len(), ks[0].outputs(&f), ks[1].outputs(&f)), (2, vec![crate::Value(4)], vec![crate::Value(7)]));
    }

    #[test]
    fn kernels_are_contiguous_and_disjoint() {
        let mut f = read(TEXT).unwrap();
        f.kernels.as_mut().unwrap()[1].values = vec![crate::Value(5), crate::Value(7)];
        assert_eq!(verify(&f).unwrap_err().to_string(), "kernel k1 is not a contiguous run of values at v7");
        f.kernels.as_mut().unwrap()[1].values = vec![crate::Value(4), crate::Value(5)];
        assert_eq!(verify(&f).unwrap_err().to_string(), "v4 is in kernels k0 and k1");
    }
}
