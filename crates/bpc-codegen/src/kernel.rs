//! The kernel IR: what one generated Cranelift function computes.
//!
//! A [`Kernel`] is a value type (hashable, so identical kernels are compiled once and shared
//! by every step that needs them). The main form is a [`LoopKernel`]: a loop nest over `dims`
//! whose body is an [`Expr`] of the operands at the current position, stored to (or
//! accumulated into) the output. Elementwise ops, copies, fills, broadcasts (stride 0), every
//! reduction and the passes of softmax are all loop kernels; fusion later grows the body.
//! Strides are in elements and may be 0 (broadcast or reduced axis) or anything else
//! (transposed and indexed views).

use bpc_ir::{BinaryOp, UnaryOp};

/// A unary function of a kernel body: an IR op or a helper of a lowered composite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Fn1 {
    Ir(UnaryOp),
    /// `x` if it is finite or NaN, else 0: the safe shift `m` of `logsumexp`.
    FiniteOr0,
}

/// A binary function of a kernel body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Fn2 {
    Ir(BinaryOp),
    /// `lse(m, s) = m + log s`, or `m` when `m` is infinite (all `-inf`, or a `+inf`).
    LseFinish,
}

/// A kernel body: a pure expression of the operands at one position.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Expr {
    /// Input operand `i` (operand 0 of the kernel is the output, so this is pointer `i + 1`).
    In(usize),
    /// A constant, by its `f32` bits.
    Const(u32),
    Un(Fn1, Box<Expr>),
    Bin(Fn2, Box<Expr>, Box<Expr>),
    /// `where(c, t, f)`: `c != 0` (NaN counts as nonzero) picks `t`.
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `x^n` for a constant integer `n` (|n| <= [`MAX_POWI`]), as multiplications.
    PowI(Box<Expr>, i32),
    /// A short dot product, the inlined matrix product of fusion: `Σ_{p<k} a[p·sa]·b[p·sb]`
    /// where `a` and `b` are input operands (always `In` after substitution) read at the
    /// current position plus `p` steps of `sa`/`sb` elements.
    Dot {
        a: Box<Expr>,
        b: Box<Expr>,
        k: usize,
        sa: isize,
        sb: isize,
    },
}

/// An `Expr::Dot` of input operands `a` and `b`: `Σ_{p<k} a[p·sa]·b[p·sb]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InputDot {
    pub a: usize,
    pub b: usize,
    pub k: usize,
    pub sa: isize,
    pub sb: isize,
}

/// The largest constant integer exponent lowered to multiplications.
pub(crate) const MAX_POWI: i32 = 64;

impl Expr {
    pub(crate) fn konst(x: f32) -> Expr {
        Expr::Const(x.to_bits())
    }

    pub(crate) fn un(op: UnaryOp, a: Expr) -> Expr {
        Expr::Un(Fn1::Ir(op), Box::new(a))
    }

    pub(crate) fn bin(op: BinaryOp, a: Expr, b: Expr) -> Expr {
        Expr::Bin(Fn2::Ir(op), Box::new(a), Box::new(b))
    }

    /// Replaces each `In(i)` by `subst[i]` and rewrites `pow` by a constant integer.
    pub(crate) fn substitute(self, subst: &[Expr]) -> Expr {
        match self {
            Expr::In(i) => subst[i].clone(),
            Expr::Const(c) => Expr::Const(c),
            Expr::Un(f, a) => Expr::Un(f, Box::new(a.substitute(subst))),
            Expr::Bin(f, a, b) => {
                let (a, b) = (a.substitute(subst), b.substitute(subst));
                let n = match (f, &b) {
                    (Fn2::Ir(BinaryOp::Pow), Expr::Const(bits)) => integral_exponent(f32::from_bits(*bits)),
                    _ => None,
                };
                match n {
                    Some(n) => Expr::PowI(Box::new(a), n),
                    None => Expr::Bin(f, Box::new(a), Box::new(b)),
                }
            }
            Expr::Select(c, t, f) => Expr::Select(
                Box::new(c.substitute(subst)),
                Box::new(t.substitute(subst)),
                Box::new(f.substitute(subst)),
            ),
            Expr::PowI(a, n) => Expr::PowI(Box::new(a.substitute(subst)), n),
            Expr::Dot { a, b, k, sa, sb } => {
                Expr::Dot { a: Box::new(a.substitute(subst)), b: Box::new(b.substitute(subst)), k, sa, sb }
            }
        }
    }

    /// How many dot products the body contains.
    pub(crate) fn dots(&self) -> usize {
        match self {
            Expr::In(_) | Expr::Const(_) => 0,
            Expr::Un(_, a) | Expr::PowI(a, _) => a.dots(),
            Expr::Bin(_, a, b) => a.dots() + b.dots(),
            Expr::Select(c, t, f) => c.dots() + t.dots() + f.dots(),
            Expr::Dot { .. } => 1,
        }
    }

    /// The first dot product of the body, if its operands are inputs.
    pub(crate) fn find_dot(&self) -> Option<InputDot> {
        match self {
            Expr::In(_) | Expr::Const(_) => None,
            Expr::Un(_, a) | Expr::PowI(a, _) => a.find_dot(),
            Expr::Bin(_, a, b) => a.find_dot().or_else(|| b.find_dot()),
            Expr::Select(c, t, f) => c.find_dot().or_else(|| t.find_dot()).or_else(|| f.find_dot()),
            Expr::Dot { a, b, k, sa, sb } => match (&**a, &**b) {
                (Expr::In(a), Expr::In(b)) => Some(InputDot { a: *a, b: *b, k: *k, sa: *sa, sb: *sb }),
                _ => None,
            },
        }
    }

    /// Rough cost in vector instructions, to pick the unroll factor.
    pub(crate) fn cost(&self) -> usize {
        match self {
            Expr::In(_) | Expr::Const(_) => 0,
            Expr::Un(f, a) => a.cost() + fn1_cost(*f),
            Expr::Bin(f, a, b) => a.cost() + b.cost() + fn2_cost(*f),
            Expr::Select(c, t, f) => c.cost() + t.cost() + f.cost() + 2,
            Expr::PowI(a, n) => a.cost() + 2 * (32 - n.unsigned_abs().leading_zeros() as usize) + 1,
            Expr::Dot { k, .. } => 2 * k,
        }
    }
}

fn integral_exponent(y: f32) -> Option<i32> {
    (y.fract() == 0.0 && y.abs() <= MAX_POWI as f32).then_some(y as i32)
}

fn fn1_cost(f: Fn1) -> usize {
    match f {
        Fn1::Ir(op) => match op {
            UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu => 1,
            UnaryOp::Sqrt => 4,
            UnaryOp::Exp | UnaryOp::Log => 20,
            UnaryOp::Sigmoid | UnaryOp::Tanh => 30,
            UnaryOp::Softplus | UnaryOp::LogSigmoid => 50,
        },
        Fn1::FiniteOr0 => 3,
    }
}

fn fn2_cost(f: Fn2) -> usize {
    match f {
        Fn2::Ir(op) => match op {
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul => 1,
            BinaryOp::StrongMul => 4,
            BinaryOp::Div => 4,
            BinaryOp::Max | BinaryOp::Min => 4,
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq => 2,
            BinaryOp::Pow => 60,
        },
        Fn2::LseFinish => 25,
    }
}

/// How a loop kernel combines its body with the output: `out = acc(out, body)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Acc {
    Sum,
    /// NaN-propagating max, as `ReduceOp::Max`.
    Max,
    Min,
}

impl Acc {
    /// The identity the output is filled with before accumulating.
    pub(crate) fn identity(self) -> f32 {
        match self {
            Acc::Sum => 0.0,
            Acc::Max => f32::NEG_INFINITY,
            Acc::Min => f32::INFINITY,
        }
    }
}

/// A loop nest over `dims` (row-major, innermost last). Operand 0 is the output with strides
/// `out`; operand `i + 1` is input `i` with strides `ins[i]` (all in elements, one per dim).
///
/// With `acc`, the body is accumulated into the output; `init` starts each output element at
/// the accumulator's identity instead of its stored value, and `epilogue` (if any) maps the
/// accumulated value before it is stored: its `In(0)` is that value and `In(1 + j)` the
/// `j`-th of the last `epi_ins` inputs, read at the output's position. Both need the loop to
/// finish each output element before moving on ([`LoopKernel::completes_outputs`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LoopKernel {
    pub dims: Vec<usize>,
    pub out: Vec<isize>,
    pub ins: Vec<Vec<isize>>,
    pub body: Expr,
    pub acc: Option<Acc>,
    pub init: bool,
    pub epilogue: Option<Expr>,
    pub epi_ins: usize,
}

impl LoopKernel {
    /// A plain loop: `out = body(ins)` or `out = acc(out, body(ins))`.
    pub(crate) fn new(dims: Vec<usize>, out: Vec<isize>, ins: Vec<Vec<isize>>, body: Expr, acc: Option<Acc>) -> Self {
        LoopKernel { dims, out, ins, body, acc, init: false, epilogue: None, epi_ins: 0 }
    }

    /// The inputs the body reads (the rest feed the epilogue).
    pub(crate) fn body_ins(&self) -> usize {
        self.ins.len() - self.epi_ins
    }

    /// Whether the emitted loop finishes every output element in one stretch (all reduced
    /// axes walked inside the kept ones), so it can start from the identity and apply an
    /// epilogue. Mirrors the dispatch of `emit::emit_loop`.
    pub(crate) fn completes_outputs(&self) -> bool {
        let Some(_) = self.acc else { return true };
        if self.out.iter().all(|&s| s != 0) {
            return true; // nothing reduced here: each output gets one term
        }
        let inner = self.dims.len() - 1;
        let unit = self.ins.iter().all(|s| s[inner] == 0 || s[inner] == 1);
        let outer_reduced = (0..inner).any(|d| self.out[d] == 0);
        if unit && self.out[inner] == 1 && outer_reduced {
            return true; // columns: reduced axes inside each block of outputs
        }
        unit && self.out[inner] == 0 && !outer_reduced && self.body.dots() == 0
    }
}

/// Kernels up to this many elements are inlined: a call with its prologue costs a few ns,
/// about what a loop of a dozen vectors does.
pub(crate) const INLINE_MAX_ELEMENTS: usize = 64;

/// One generated function. Its parameters are one pointer per operand, output first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    Loop(LoopKernel),
    /// Cross-entropy's last pass over `rows` examples of `classes` logits, with `m` the row
    /// max and `l` holding `log Σ e^(z - m)`: `out[r] = (m[r] - z[r, y[r]]) + l[r]`, or
    /// NaN when the class `y[r]` (i32) is not in `0..classes` (never read out of bounds).
    /// `m - z[y]` first keeps the small loss accurate when the logits are large. Operands:
    /// out (contiguous), z, y, m (contiguous), l (contiguous).
    Pick {
        rows: usize,
        classes: usize,
        z_row: isize,
        z_col: isize,
        y_stride: isize,
    },
    /// One-hot rows over a zero-filled contiguous `out[rows, classes]`: `out[r, y[r]] = 1`; a
    /// row whose class is out of range is filled with NaN. Operands: out, y.
    OneHot {
        rows: usize,
        classes: usize,
        y_stride: isize,
    },
    /// Row-wise kernels fused into one loop over `rows` (fusion's `rows` kind): `pre` runs
    /// once before the loop, every `phases` kernel once per row in order, `post` once after.
    /// Each sub-kernel names its operands by index into this kernel's operands; operand `i`
    /// advances by `row_strides[i]` elements per row (0 for `pre`/`post` operands and for
    /// buffers that hold one row at a time).
    Rows(Box<RowsKernel>),
}

/// See [`Kernel::Rows`].
///
/// With `pair`, the loop takes two rows per iteration and emits each phase for the first
/// row, then for the second (operand `i` of the second row is `pair[i]` elements further;
/// one-row buffers hold two rows): the two rows' dependency chains (max, exp, sum, log)
/// overlap, and each accumulator still sees the rows in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RowsKernel {
    pub rows: usize,
    pub row_strides: Vec<isize>,
    pub pair: Option<Vec<isize>>,
    pub pre: Vec<(Kernel, Vec<usize>)>,
    pub phases: Vec<(Kernel, Vec<usize>)>,
    pub post: Vec<(Kernel, Vec<usize>)>,
}

/// How a kernel uses one of its operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Role {
    pub read: bool,
    pub write: bool,
}

impl Kernel {
    /// A short name for the function (used in `--emit clif`).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Kernel::Loop(k) if k.acc.is_some() => "reduce",
            Kernel::Loop(k) if k.ins.is_empty() => "fill",
            Kernel::Loop(_) => "map",
            Kernel::Pick { .. } => "pick",
            Kernel::OneHot { .. } => "onehot",
            Kernel::Rows(_) => "rows",
        }
    }

    /// Elements the kernel touches (its loop nest's iterations; rows × classes for labels).
    pub(crate) fn elements(&self) -> usize {
        match self {
            Kernel::Loop(k) => k.dims.iter().product(),
            Kernel::Pick { rows, classes, .. } | Kernel::OneHot { rows, classes, .. } => rows * classes,
            Kernel::Rows(r) => {
                let sub = |ks: &[(Kernel, Vec<usize>)]| ks.iter().map(|(k, _)| k.elements()).sum::<usize>();
                sub(&r.pre) + r.rows * sub(&r.phases) + sub(&r.post)
            }
        }
    }

    /// Small enough to emit inline in the entry function rather than call.
    pub(crate) fn inline(&self) -> bool {
        self.elements() <= INLINE_MAX_ELEMENTS
    }

    /// Number of pointer parameters.
    pub(crate) fn arity(&self) -> usize {
        match self {
            Kernel::Loop(k) => 1 + k.ins.len(),
            Kernel::Pick { .. } => 5,
            Kernel::OneHot { .. } => 2,
            Kernel::Rows(r) => r.row_strides.len(),
        }
    }

    /// How each operand is used, in operand order.
    pub(crate) fn roles(&self) -> Vec<Role> {
        let (r, w, rw) =
            (Role { read: true, write: false }, Role { read: false, write: true }, Role { read: true, write: true });
        match self {
            Kernel::Loop(k) => {
                let out = if k.acc.is_some() && !k.init { rw } else { w };
                std::iter::once(out).chain(k.ins.iter().map(|_| r)).collect()
            }
            Kernel::Pick { .. } => vec![w, r, r, r, r],
            Kernel::OneHot { .. } => vec![rw, r],
            Kernel::Rows(rows) => {
                let mut roles = vec![Role { read: false, write: false }; rows.row_strides.len()];
                for (k, idx) in rows.pre.iter().chain(&rows.phases).chain(&rows.post) {
                    for (role, &i) in k.roles().iter().zip(idx) {
                        roles[i].read |= role.read;
                        roles[i].write |= role.write;
                    }
                }
                roles
            }
        }
    }
}

/// Drops size-1 axes and merges adjacent axes that are contiguous for every operand, so the
/// common cases become one flat loop (elementwise) or two (row reductions, batch sums).
pub(crate) fn collapse(dims: &[usize], strides: &[Vec<isize>]) -> (Vec<usize>, Vec<Vec<isize>>) {
    let mut out_dims: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<isize>> = vec![Vec::new(); strides.len()];
    for (d, &n) in dims.iter().enumerate() {
        if n == 1 {
            continue;
        }
        let mergeable = !out_dims.is_empty()
            && strides.iter().zip(&out_strides).all(|(s, o)| *o.last().unwrap() == s[d] * n as isize);
        if mergeable {
            *out_dims.last_mut().unwrap() *= n;
            for (s, o) in strides.iter().zip(&mut out_strides) {
                *o.last_mut().unwrap() = s[d];
            }
        } else {
            out_dims.push(n);
            for (s, o) in strides.iter().zip(&mut out_strides) {
                o.push(s[d]);
            }
        }
    }
    if out_dims.is_empty() {
        out_dims.push(1);
        for o in &mut out_strides {
            o.push(0);
        }
    }
    (out_dims, out_strides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_merges_contiguous_and_keeps_reduced() {
        // [B=4, 3, 5] elementwise: one flat loop of 60.
        let (d, s) = collapse(&[4, 3, 5], &[vec![15, 5, 1], vec![15, 5, 1]]);
        assert_eq!((d, s), (vec![60], vec![vec![1], vec![1]]));
        // Reducing the last axis of [4, 3, 5]: output strides [3, 1, 0].
        let (d, s) = collapse(&[4, 3, 5], &[vec![3, 1, 0], vec![15, 5, 1]]);
        assert_eq!((d, s), (vec![12, 5], vec![vec![1, 0], vec![5, 1]]));
        // A vector broadcast over rows: [7, 1, 10] with the operand [10].
        let (d, s) = collapse(&[7, 1, 10], &[vec![10, 10, 1], vec![0, 0, 1]]);
        assert_eq!((d, s), (vec![7, 10], vec![vec![10, 1], vec![0, 1]]));
        let (d, s) = collapse(&[1, 1], &[vec![1, 1]]);
        assert_eq!((d, s), (vec![1], vec![vec![0]]));
    }

    #[test]
    fn pow_by_a_constant_integer_becomes_multiplications() {
        let e = Expr::bin(BinaryOp::Pow, Expr::In(0), Expr::In(1));
        let e = e.substitute(&[Expr::In(0), Expr::konst(-3.0)]);
        assert_eq!(e, Expr::PowI(Box::new(Expr::In(0)), -3));
        let e = Expr::bin(BinaryOp::Pow, Expr::In(0), Expr::konst(0.5)).substitute(&[Expr::In(0)]);
        assert!(matches!(e, Expr::Bin(..)));
    }
}
