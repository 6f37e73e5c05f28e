//! The float64 reference interpreter: the oracle for every test of the autodiff and the JIT.
//!
//! It runs a [`Function`] at a given minibatch size on `f64` tensors, one instruction at a
//! time, straight from the op table's reference semantics. It is never on the training path.

use std::fmt;

use crate::function::{ArgId, ArgKind, Function, Inst, Value};
use crate::ops::{ReduceOp, lse_parts};
use crate::types::Shape;

/// A dense row-major `f64` tensor with its physical sizes (batch axis included).
/// Class labels are stored as integral floats.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Tensor {
    /// A tensor of `shape` holding `data`; panics if the lengths disagree.
    pub fn new(shape: impl Into<Vec<usize>>, data: impl Into<Vec<f64>>) -> Tensor {
        let (shape, data) = (shape.into(), data.into());
        assert_eq!(shape.iter().product::<usize>(), data.len(), "tensor data does not fit shape {shape:?}");
        Tensor { shape, data }
    }

    pub fn scalar(x: f64) -> Tensor {
        Tensor { shape: vec![], data: vec![x] }
    }

    pub fn zeros(shape: impl Into<Vec<usize>>) -> Tensor {
        let shape = shape.into();
        let n = shape.iter().product();
        Tensor { shape, data: vec![0.0; n] }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Why the interpreter stopped: bad arguments or a class label out of range.
#[derive(Clone, Debug, PartialEq)]
pub struct InterpError(pub String);

impl fmt::Display for InterpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InterpError {}

/// Every value of `func` after running it at minibatch size `batch` on `args` (one tensor
/// per `func.args` entry, physical sizes at that batch size).
pub fn interpret(func: &Function, batch: usize, args: &[Tensor]) -> Result<Vec<Tensor>, InterpError> {
    if args.len() != func.args.len() {
        return Err(InterpError(format!("{} expects {} arguments, got {}", func.name, func.args.len(), args.len())));
    }
    for (a, t) in func.args.iter().zip(args) {
        let want = a.ty.shape.sizes(batch);
        if t.shape != want {
            return Err(InterpError(format!("argument {} has shape {:?}, expected {want:?}", a.name, t.shape)));
        }
    }
    let mut vals: Vec<Tensor> = Vec::with_capacity(func.len());
    for v in func.values() {
        let out_shape = func.shape(v).sizes(batch);
        let t = eval(func, v, batch, args, &vals, out_shape)?;
        vals.push(t);
    }
    Ok(vals)
}

/// The named results of a run, in `func.results` order.
pub fn results<'a>(func: &'a Function, values: &'a [Tensor]) -> Vec<(&'a str, &'a Tensor)> {
    func.results.iter().map(|r| (r.name.as_str(), &values[r.value.index()])).collect()
}

fn eval(
    func: &Function,
    v: Value,
    batch: usize,
    args: &[Tensor],
    vals: &[Tensor],
    shape: Vec<usize>,
) -> Result<Tensor, InterpError> {
    let get = |x: Value| &vals[x.index()];
    let out = match func.inst(v) {
        Inst::Arg(id) => args[id.index()].clone(),
        Inst::Const(c) => Tensor::scalar(*c),
        Inst::BatchSize => Tensor::scalar(batch as f64),
        Inst::Unary { op, arg } => map(get(*arg), |x| op.eval(x)),
        Inst::Binary { op, lhs, rhs } => {
            let (a, b) = (get(*lhs), get(*rhs));
            Tensor::new(shape, a.data.iter().zip(&b.data).map(|(&x, &y)| op.eval(x, y)).collect::<Vec<_>>())
        }
        Inst::Select { cond, on_true, on_false } => {
            let (c, t, e) = (get(*cond), get(*on_true), get(*on_false));
            let data: Vec<f64> = (0..c.len()).map(|i| if c.data[i] != 0.0 { t.data[i] } else { e.data[i] }).collect();
            Tensor::new(shape, data)
        }
        Inst::Reduce { op, arg, axes } => reduce(*op, get(*arg), axes, shape),
        Inst::Broadcast { arg, to } => broadcast(get(*arg), func.shape(*arg), to, shape),
        Inst::Reshape { arg, .. } => Tensor::new(shape, get(*arg).data.clone()),
        Inst::Transpose { arg } => transpose(get(*arg), shape),
        Inst::MatMul { lhs, rhs, ta, tb } => matmul(get(*lhs), get(*rhs), *ta, *tb, shape),
        Inst::Softmax { arg, axis, log } => softmax(get(*arg), *axis, *log),
        Inst::CrossEntropy { logits, label } => {
            let (z, y) = (get(*logits), get(*label));
            let k = *z.shape.last().expect("logits have a class axis");
            let mut data = Vec::with_capacity(y.len());
            for (r, &c) in y.data.iter().enumerate() {
                let row = &z.data[r * k..(r + 1) * k];
                data.push(cross_entropy_row(row, row[class_index(func, *label, c, k)?]));
            }
            Tensor::new(shape, data)
        }
        Inst::OneHot { label, classes } => {
            let y = get(*label);
            let mut out = Tensor::zeros(shape);
            for (r, &c) in y.data.iter().enumerate() {
                out.data[r * classes + class_index(func, *label, c, *classes)?] = 1.0;
            }
            out
        }
        Inst::Index { arg, at } => {
            let (x, s) = (get(*arg), func.shape(*arg));
            let (offset, rest) = index_offset(s, at);
            let rows = if s.batch { batch } else { 1 };
            let mut data = Vec::with_capacity(rows * rest);
            for b in 0..rows {
                let base = b * s.example_len() + offset;
                data.extend_from_slice(&x.data[base..base + rest]);
            }
            Tensor::new(shape, data)
        }
        Inst::Scatter { arg, at, to } => {
            let x = get(*arg);
            let (offset, rest) = index_offset(to, at);
            let mut out = Tensor::zeros(shape);
            let rows = if to.batch { batch } else { 1 };
            for b in 0..rows {
                let base = b * to.example_len() + offset;
                out.data[base..base + rest].copy_from_slice(&x.data[b * rest..(b + 1) * rest]);
            }
            out
        }
    };
    Ok(out)
}

fn class_index(func: &Function, label: Value, c: f64, k: usize) -> Result<usize, InterpError> {
    if c.fract() != 0.0 || c < 0.0 || c >= k as f64 {
        let name = match func.inst(label) {
            Inst::Arg(ArgId(i)) if matches!(func.args[*i as usize].kind, ArgKind::Label { .. }) => {
                func.args[*i as usize].name.as_str()
            }
            _ => "label",
        };
        return Err(InterpError(format!("class label {name} = {c} is not an integer in 0..{k}")));
    }
    Ok(c as usize)
}

fn map(x: &Tensor, f: impl Fn(f64) -> f64) -> Tensor {
    Tensor { shape: x.shape.clone(), data: x.data.iter().map(|&a| f(a)).collect() }
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Multi-index of flat position `flat` in `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for i in (0..shape.len()).rev() {
        idx[i] = flat % shape[i];
        flat /= shape[i];
    }
    idx
}

fn reduce(op: ReduceOp, x: &Tensor, axes: &[usize], shape: Vec<usize>) -> Tensor {
    let out_len: usize = shape.iter().product();
    let out_strides = strides(&shape);
    let mut groups = vec![Vec::new(); out_len];
    for (flat, &a) in x.data.iter().enumerate() {
        let idx = unravel(flat, &x.shape);
        let kept = idx.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d);
        let o: usize = kept.zip(&out_strides).map(|(d, s)| d * s).sum();
        groups[o].push(a);
    }
    Tensor::new(shape, groups.iter().map(|g| op.eval(g)).collect::<Vec<_>>())
}

fn broadcast(x: &Tensor, from: &Shape, to: &Shape, shape: Vec<usize>) -> Tensor {
    let in_strides = strides(&x.shape);
    let lead = to.dims.len() - from.dims.len();
    let out_len: usize = shape.iter().product();
    let mut data = Vec::with_capacity(out_len);
    for flat in 0..out_len {
        let o = unravel(flat, &shape);
        let mut i = 0;
        if from.batch {
            i += o[0] * in_strides[0];
        }
        for (k, &n) in from.dims.iter().enumerate() {
            let coord = if n == 1 { 0 } else { o[to.batch as usize + lead + k] };
            i += coord * in_strides[from.batch as usize + k];
        }
        data.push(x.data[i]);
    }
    Tensor::new(shape, data)
}

fn transpose(x: &Tensor, shape: Vec<usize>) -> Tensor {
    let r = x.shape.len();
    let (m, n) = (x.shape[r - 2], x.shape[r - 1]);
    let mut data = vec![0.0; x.len()];
    for b in 0..x.len() / (m * n).max(1) {
        for i in 0..m {
            for j in 0..n {
                data[b * m * n + j * m + i] = x.data[b * m * n + i * n + j];
            }
        }
    }
    Tensor::new(shape, data)
}

fn matmul(a: &Tensor, b: &Tensor, ta: bool, tb: bool, shape: Vec<usize>) -> Tensor {
    let (c0, c1) = (a.shape[1], b.shape[1]);
    let k = if ta { a.shape[0] } else { a.shape[1] };
    let (m, n) = (shape[0], shape[1]);
    let at = |i: usize, p: usize| if ta { a.data[p * c0 + i] } else { a.data[i * c0 + p] };
    let bt = |p: usize, j: usize| if tb { b.data[j * c1 + p] } else { b.data[p * c1 + j] };
    let mut data = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            data[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
        }
    }
    Tensor::new(shape, data)
}

fn softmax(x: &Tensor, axis: usize, log: bool) -> Tensor {
    let len = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let outer: usize = x.shape[..axis].iter().product();
    let mut out = x.clone();
    for o in 0..outer {
        for i in 0..inner {
            let at = |l: usize| (o * len + l) * inner + i;
            let line: Vec<f64> = (0..len).map(|l| x.data[at(l)]).collect();
            for (l, y) in softmax_line(&line, log).into_iter().enumerate() {
                out.data[at(l)] = y;
            }
        }
    }
    out
}

/// `softmax` (or `log_softmax`) of one line as `e^(z - m) / s` (or `(z - m) - ln s`), `m` the
/// max and `s = Σ e^(z - m)`: `z - lse` would lose `ln s` when `|m|` is beyond about 1e16.
/// An infinite or NaN max is `logsumexp` itself (all -inf: NaN; +inf: NaN there, 0 elsewhere).
fn softmax_line(line: &[f64], log: bool) -> Vec<f64> {
    let (m, s) = lse_parts(line);
    if !m.is_finite() {
        return line.iter().map(|z| if log { z - m } else { (z - m).exp() }).collect();
    }
    line.iter().map(|z| if log { (z - m) - s.ln() } else { (z - m).exp() / s }).collect()
}

/// `logsumexp(row) - z_y` as `(m - z_y) + ln s` (as [`softmax_line`]).
fn cross_entropy_row(row: &[f64], z_y: f64) -> f64 {
    let (m, s) = lse_parts(row);
    if !m.is_finite() {
        return m - z_y;
    }
    (m - z_y) + s.ln()
}

/// Offset of `at` within one example of `s`, and the elements left after it.
fn index_offset(s: &Shape, at: &[usize]) -> (usize, usize) {
    let st = strides(&s.dims);
    let offset = at.iter().zip(&st).map(|(i, s)| i * s).sum();
    let rest = s.dims[at.len()..].iter().product();
    (offset, rest)
}
