//! Planning: where every value lives and which kernels compute it, in program order.
//!
//! Each live value becomes a [`View`]: a strided window over a buffer (a caller's argument
//! or result buffer, or a region of the workspace arena) or a folded constant. Computing
//! instructions get a fresh contiguous region (or write straight into their result buffer);
//! `reshape`, `broadcast`, `transpose` and `index` are views of their operand and cost
//! nothing until a consumer reads them with those strides (stride 0 for broadcast axes).
//! A consumer that needs contiguous memory materializes a view with a copy kernel.
//!
//! The output is a list of [`Step`]s for the entry function: kernel calls with their operand
//! pointers, and GEMM calls.

use std::collections::HashMap;

use bpc_ir::{ArgId, BinaryOp, DType, Function, Inst, ReduceOp, Shape, UnaryOp, Value};

use crate::inplace::write_updates_in_place;
use crate::kernel::{Acc, Expr, Fn1, Fn2, Kernel, LoopKernel, collapse};

/// The buffer a pointer is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Base {
    /// The caller's buffer for `Function::args[i]`.
    Arg(usize),
    /// The caller's buffer for the `j`-th non-update result.
    Result(usize),
    /// The workspace arena, at this byte offset.
    Ws(usize),
}

/// A runtime address: a base plus an element offset (all elements are 4 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Ptr {
    pub base: Base,
    pub offset: isize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Src {
    Mem(Ptr),
    /// A folded scalar constant (every element the same).
    Const(f32),
}

/// A strided window: element `idx` is at `offset + Σ idx[d]·strides[d]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct View {
    pub src: Src,
    pub dims: Vec<usize>,
    pub strides: Vec<isize>,
}

impl View {
    fn contiguous(src: Src, dims: Vec<usize>) -> View {
        let strides = match src {
            Src::Mem(_) => natural_strides(&dims),
            Src::Const(_) => vec![0; dims.len()],
        };
        View { src, dims, strides }
    }

    /// Row-major contiguous memory (size-1 axes may have any stride).
    fn is_contiguous(&self) -> bool {
        matches!(self.src, Src::Mem(_))
            && self
                .dims
                .iter()
                .zip(&self.strides)
                .zip(natural_strides(&self.dims))
                .all(|((&n, &s), t)| n == 1 || s == t)
    }

    fn len(&self) -> usize {
        self.dims.iter().product()
    }
}

fn natural_strides(dims: &[usize]) -> Vec<isize> {
    let mut s = vec![1isize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1] as isize;
    }
    s
}

/// A call to the gemm shim: `dst[m,n] = lhs[m,k] · rhs[k,n]`, strides in elements.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GemmCall {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub dst: Ptr,
    pub dst_strides: [isize; 2],
    pub lhs: Ptr,
    pub lhs_strides: [isize; 2],
    pub rhs: Ptr,
    pub rhs_strides: [isize; 2],
    /// 1: `Parallelism::None`; more: `Parallelism::Rayon(threads)`.
    pub threads: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    /// Call `kernels[kernel]` with these operand pointers (output first).
    Kernel {
        kernel: usize,
        ptrs: Vec<Ptr>,
    },
    Gemm(GemmCall),
}

/// What the entry function does, and the kernels it calls.
#[derive(Debug)]
pub(crate) struct Plan {
    pub steps: Vec<Step>,
    pub kernels: Vec<Kernel>,
    pub ws_bytes: usize,
}

/// How products are split over threads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmPolicy {
    pub threads: usize,
    /// Products of at least this many multiply-adds (`m·n·k`) run on `threads` threads.
    pub parallel_min: usize,
}

struct Planner<'f> {
    func: &'f Function,
    batch: usize,
    gemm: GemmPolicy,
    views: Vec<Option<View>>,
    /// Values computed straight into a (non-update) result buffer.
    result_slot: HashMap<Value, usize>,
    ws_bytes: usize,
    steps: Vec<Step>,
    kernels: Vec<Kernel>,
    kernel_ids: HashMap<Kernel, usize>,
}

/// Plans `func` at minibatch size `batch`.
pub(crate) fn plan(func: &Function, batch: usize, gemm: GemmPolicy) -> Plan {
    let mut p = Planner {
        func,
        batch,
        gemm,
        views: vec![None; func.len()],
        result_slot: HashMap::new(),
        ws_bytes: 0,
        steps: Vec::new(),
        kernels: Vec::new(),
        kernel_ids: HashMap::new(),
    };
    for (j, r) in func.results.iter().filter(|r| r.update.is_none()).enumerate() {
        if computes(func.inst(r.value)) && func.ty(r.value).dtype == DType::F32 {
            p.result_slot.entry(r.value).or_insert(j);
        }
    }
    let live = func.live_values();
    for v in func.values() {
        if live[v.index()] {
            let view = p.value(v);
            p.views[v.index()] = Some(view);
        }
    }
    p.results();
    Plan { steps: p.steps, kernels: p.kernels, ws_bytes: p.ws_bytes }
}

/// Whether an instruction writes a fresh buffer (rather than being a view or a constant).
fn computes(inst: &Inst) -> bool {
    match inst {
        Inst::Arg(_)
        | Inst::Const(_)
        | Inst::BatchSize
        | Inst::Broadcast { .. }
        | Inst::Reshape { .. }
        | Inst::Transpose { .. }
        | Inst::Index { .. } => false,
        Inst::Unary { .. }
        | Inst::Binary { .. }
        | Inst::Select { .. }
        | Inst::Reduce { .. }
        | Inst::MatMul { .. }
        | Inst::Softmax { .. }
        | Inst::CrossEntropy { .. }
        | Inst::OneHot { .. }
        | Inst::Scatter { .. } => true,
    }
}

impl Planner<'_> {
    fn view(&self, v: Value) -> View {
        match &self.views[v.index()] {
            Some(view) => view.clone(),
            None => panic!("internal error: {v} used before it was planned"),
        }
    }

    fn sizes(&self, v: Value) -> Vec<usize> {
        self.func.shape(v).sizes(self.batch)
    }

    /// A fresh 64-byte-aligned workspace region of `len` elements.
    fn alloc(&mut self, len: usize) -> Ptr {
        let off = self.ws_bytes;
        self.ws_bytes += (len * 4).div_ceil(64) * 64;
        Ptr { base: Base::Ws(off), offset: 0 }
    }

    /// Where value `v` (a computing instruction) is written.
    fn out(&mut self, v: Value) -> View {
        let dims = self.sizes(v);
        let ptr = match self.result_slot.get(&v) {
            Some(&j) => Ptr { base: Base::Result(j), offset: 0 },
            None => self.alloc(dims.iter().product()),
        };
        View::contiguous(Src::Mem(ptr), dims)
    }

    fn scratch(&mut self, dims: Vec<usize>) -> View {
        let ptr = self.alloc(dims.iter().product());
        View::contiguous(Src::Mem(ptr), dims)
    }

    fn value(&mut self, v: Value) -> View {
        let func = self.func;
        match func.inst(v) {
            Inst::Arg(id) => View::contiguous(Src::Mem(Ptr { base: Base::Arg(id.index()), offset: 0 }), self.sizes(v)),
            Inst::Const(c) => View::contiguous(Src::Const(*c as f32), vec![]),
            Inst::BatchSize => View::contiguous(Src::Const(self.batch as f32), vec![]),
            Inst::Unary { op, arg } => self.map(v, &[*arg], Expr::un(*op, Expr::In(0))),
            Inst::Binary { op, lhs, rhs } => self.map(v, &[*lhs, *rhs], Expr::bin(*op, Expr::In(0), Expr::In(1))),
            Inst::Select { cond, on_true, on_false } => {
                let body = Expr::Select(Box::new(Expr::In(0)), Box::new(Expr::In(1)), Box::new(Expr::In(2)));
                self.map(v, &[*cond, *on_true, *on_false], body)
            }
            Inst::Reduce { op, arg, axes } => {
                let out = self.out(v);
                let x = self.view(*arg);
                self.reduce(*op, &x, axes, &out);
                out
            }
            Inst::Broadcast { arg, to } => broadcast_view(&self.view(*arg), func.shape(*arg), to, self.batch),
            Inst::Reshape { arg, .. } => {
                let x = self.view(*arg);
                let x = if let Src::Const(_) = x.src { x } else { self.materialize(x) };
                View::contiguous(x.src, self.sizes(v))
            }
            Inst::Transpose { arg } => {
                let mut x = self.view(*arg);
                let r = x.dims.len();
                x.dims.swap(r - 2, r - 1);
                x.strides.swap(r - 2, r - 1);
                x
            }
            Inst::Index { arg, at } => index_view(&self.view(*arg), func.shape(*arg), at),
            Inst::MatMul { lhs, rhs, ta, tb } => self.matmul(v, *lhs, *rhs, *ta, *tb),
            Inst::Softmax { arg, axis, log } => self.softmax(v, *arg, *axis, *log),
            Inst::CrossEntropy { logits, label } => self.cross_entropy(v, *logits, *label),
            Inst::OneHot { label, classes } => {
                let out = self.out(v);
                self.fill(&out, 0.0);
                let (rows, y_stride, y) = self.rows_of(self.view(*label));
                self.kernel(Kernel::OneHot { rows, classes: *classes, y_stride }, vec![ptr_of(&out), y]);
                out
            }
            Inst::Scatter { arg, at, to } => {
                let out = self.out(v);
                self.fill(&out, 0.0);
                let dst = index_view(&out, to, at);
                let x = self.view(*arg);
                self.push_loop(&dst, &[x], Expr::In(0), None);
                out
            }
        }
    }

    /// An elementwise instruction: `out = body(operands)`.
    fn map(&mut self, v: Value, operands: &[Value], body: Expr) -> View {
        let out = self.out(v);
        let ins: Vec<View> = operands.iter().map(|&o| self.view(o)).collect();
        self.push_loop(&out, &ins, body, None);
        out
    }

    /// Appends a loop kernel over `out.dims`; every input view has those dims.
    fn push_loop(&mut self, out: &View, ins: &[View], body: Expr, acc: Option<Acc>) {
        if out.len() == 0 {
            return;
        }
        let mut ptrs = vec![ptr_of(out)];
        let mut strides = vec![out.strides.clone()];
        let mut subst = Vec::with_capacity(ins.len());
        for x in ins {
            debug_assert_eq!(x.dims, out.dims, "loop operand dims");
            match x.src {
                Src::Const(c) => subst.push(Expr::konst(c)),
                Src::Mem(p) => {
                    let same = (1..ptrs.len()).find(|&i| ptrs[i] == p && strides[i] == x.strides);
                    let i = same.unwrap_or_else(|| {
                        ptrs.push(p);
                        strides.push(x.strides.clone());
                        ptrs.len() - 1
                    });
                    subst.push(Expr::In(i - 1));
                }
            }
        }
        let body = body.substitute(&subst);
        let (dims, mut strides) = collapse(&out.dims, &strides);
        let ins = strides.split_off(1);
        let out_strides = strides.pop().expect("output strides");
        self.kernel(Kernel::Loop(LoopKernel { dims, out: out_strides, ins, body, acc }), ptrs);
    }

    fn kernel(&mut self, k: Kernel, ptrs: Vec<Ptr>) {
        debug_assert_eq!(k.arity(), ptrs.len());
        let next = self.kernels.len();
        let id = *self.kernel_ids.entry(k.clone()).or_insert(next);
        if id == next {
            self.kernels.push(k);
        }
        self.steps.push(Step::Kernel { kernel: id, ptrs });
    }

    fn fill(&mut self, out: &View, x: f32) {
        self.push_loop(out, &[], Expr::konst(x), None);
    }

    /// `x` itself if contiguous memory, else a contiguous copy in the workspace.
    fn materialize(&mut self, x: View) -> View {
        if x.is_contiguous() {
            return x;
        }
        let out = self.scratch(x.dims.clone());
        self.push_loop(&out, &[x], Expr::In(0), None);
        out
    }

    /// `out[kept] = op over axes of x`.
    fn reduce(&mut self, op: ReduceOp, x: &View, axes: &[usize], out: &View) {
        let into = expand(out, &x.dims, axes);
        let count: usize = axes.iter().map(|&a| x.dims[a]).product();
        let accumulate = |p: &mut Self, acc: Acc| {
            p.fill(out, acc.identity());
            p.push_loop(&into, std::slice::from_ref(x), Expr::In(0), Some(acc));
        };
        match op {
            ReduceOp::Sum => accumulate(self, Acc::Sum),
            ReduceOp::Mean => {
                accumulate(self, Acc::Sum);
                let n = Expr::konst(count as f32);
                self.push_loop(out, std::slice::from_ref(out), Expr::bin(BinaryOp::Div, Expr::In(0), n), None);
            }
            ReduceOp::Max => accumulate(self, Acc::Max),
            ReduceOp::Min => accumulate(self, Acc::Min),
            ReduceOp::LogSumExp => {
                let (m, s) = self.lse_parts(x, axes, out.dims.clone());
                let body = Expr::Bin(Fn2::LseFinish, Box::new(Expr::In(0)), Box::new(Expr::In(1)));
                self.push_loop(out, &[m, s], body, None);
            }
        }
    }

    /// The parts of `logsumexp` over `axes` as two scratch views of the reduced `dims`:
    /// `m = max x` and `s = Σ e^(x - m)`, with `m` taken as 0 in `s` where it is infinite.
    fn lse_parts(&mut self, x: &View, axes: &[usize], dims: Vec<usize>) -> (View, View) {
        let m = self.scratch(dims.clone());
        let m_into = expand(&m, &x.dims, axes);
        self.fill(&m, Acc::Max.identity());
        self.push_loop(&m_into, std::slice::from_ref(x), Expr::In(0), Some(Acc::Max));
        let s = self.scratch(dims);
        let s_into = expand(&s, &x.dims, axes);
        self.fill(&s, 0.0);
        let body = Expr::un(UnaryOp::Exp, Expr::bin(BinaryOp::Sub, Expr::In(0), shift(Expr::In(1))));
        self.push_loop(&s_into, &[x.clone(), m_into], body, Some(Acc::Sum));
        (m, s)
    }

    /// `log_softmax(x) = (x - m) - log s` and `softmax(x) = e^(log_softmax x)` along `axis`:
    /// `x - m` first keeps the result accurate when `x` is large.
    fn softmax(&mut self, v: Value, arg: Value, axis: usize, log: bool) -> View {
        let x = self.view(arg);
        let mut dims = x.dims.clone();
        dims.remove(axis);
        let (m, s) = self.lse_parts(&x, &[axis], dims);
        let (m, s) = (expand(&m, &x.dims, &[axis]), expand(&s, &x.dims, &[axis]));
        let centered = Expr::bin(BinaryOp::Sub, Expr::In(0), shift(Expr::In(1)));
        let diff = Expr::bin(BinaryOp::Sub, centered, Expr::un(UnaryOp::Log, Expr::In(2)));
        let body = if log { diff } else { Expr::un(UnaryOp::Exp, diff) };
        let out = self.out(v);
        self.push_loop(&out, &[x, m, s], body, None);
        out
    }

    /// `(m - z[y]) + log s` per row, `m` and `s` the parts of `logsumexp z`; a class out of
    /// range gives NaN.
    fn cross_entropy(&mut self, v: Value, logits: Value, label: Value) -> View {
        let out = self.out(v);
        let z = self.view(logits);
        let last = z.dims.len() - 1;
        let (m, s) = self.lse_parts(&z, &[last], out.dims.clone());
        self.push_loop(&out, &[s], Expr::un(UnaryOp::Log, Expr::In(0)), None);
        let classes = z.dims[last];
        let (z_row, z) = match rows_stride(&z.dims[..last], &z.strides[..last]) {
            Some(s) if matches!(z.src, Src::Mem(_)) => (s, z),
            _ => {
                let z = self.materialize(z);
                (classes as isize, z)
            }
        };
        let (rows, y_stride, y) = self.rows_of(self.view(label));
        let z_col = z.strides[last];
        let ptrs = vec![ptr_of(&out), ptr_of(&z), y, ptr_of(&m)];
        self.kernel(Kernel::Pick { rows, classes, z_row, z_col, y_stride }, ptrs);
        out
    }

    /// A label view as `rows` elements at one stride (materialized if it has none).
    fn rows_of(&mut self, y: View) -> (usize, isize, Ptr) {
        let rows = y.len();
        if let (Src::Mem(p), Some(s)) = (y.src, rows_stride(&y.dims, &y.strides)) {
            return (rows, s, p);
        }
        let y = self.materialize(y);
        (rows, 1, ptr_of(&y))
    }

    fn matmul(&mut self, v: Value, lhs: Value, rhs: Value, ta: bool, tb: bool) -> View {
        let out = self.out(v);
        let (a, b) = (self.view(lhs), self.view(rhs));
        // gemm reads any strides, but keep it to real memory without stride-0 axes.
        let plain = |x: &View| matches!(x.src, Src::Mem(_)) && x.strides.iter().all(|&s| s != 0);
        let a = if plain(&a) { a } else { self.materialize(a) };
        let b = if plain(&b) { b } else { self.materialize(b) };
        let (m, n) = (out.dims[0], out.dims[1]);
        let k = if ta { a.dims[0] } else { a.dims[1] };
        let op_strides =
            |x: &View, t: bool| if t { [x.strides[1], x.strides[0]] } else { [x.strides[0], x.strides[1]] };
        let work = m.saturating_mul(n).saturating_mul(k);
        let threads = if work >= self.gemm.parallel_min { self.gemm.threads.max(1) } else { 1 };
        if m * n > 0 {
            self.steps.push(Step::Gemm(GemmCall {
                m,
                n,
                k,
                dst: ptr_of(&out),
                dst_strides: [out.strides[0], out.strides[1]],
                lhs: ptr_of(&a),
                lhs_strides: op_strides(&a, ta),
                rhs: ptr_of(&b),
                rhs_strides: op_strides(&b, tb),
                threads,
            }));
        }
        out
    }

    /// Copies every result that was not computed in place into its buffer, then the updates
    /// into their params (after every other read: a param may feed another result).
    fn results(&mut self) {
        let func = self.func;
        for (j, r) in func.results.iter().filter(|r| r.update.is_none()).enumerate() {
            if self.result_slot.get(&r.value) == Some(&j) {
                continue;
            }
            let x = self.view(r.value);
            let dst = View::contiguous(Src::Mem(Ptr { base: Base::Result(j), offset: 0 }), x.dims.clone());
            self.push_loop(&dst, &[x], Expr::In(0), None);
        }
        let mut updates: Vec<(ArgId, View)> = Vec::new();
        for r in func.results.iter() {
            if let Some(p) = r.update {
                let mut x = self.view(r.value);
                // A view of an argument could be overwritten by an earlier update: copy it.
                if let Src::Mem(Ptr { base: Base::Arg(_), .. }) = x.src {
                    let dst = self.scratch(x.dims.clone());
                    self.push_loop(&dst, &[x], Expr::In(0), None);
                    x = dst;
                }
                updates.push((p, x));
            }
        }
        let mut copies = Vec::new();
        for (p, x) in updates {
            let dst = View::contiguous(Src::Mem(Ptr { base: Base::Arg(p.index()), offset: 0 }), x.dims.clone());
            let before = self.steps.len();
            self.push_loop(&dst, &[x], Expr::In(0), None);
            if self.steps.len() > before {
                copies.push((before, p.index()));
            }
        }
        write_updates_in_place(&mut self.steps, &self.kernels, &copies);
    }
}

/// The safe shift of `logsumexp`: `m`, or 0 where `m` is infinite.
fn shift(m: Expr) -> Expr {
    Expr::Un(Fn1::FiniteOr0, Box::new(m))
}

fn ptr_of(x: &View) -> Ptr {
    match x.src {
        Src::Mem(p) => p,
        Src::Const(_) => panic!("internal error: a constant has no address"),
    }
}

/// The single stride that walks all of `dims` in row-major order, if there is one.
fn rows_stride(dims: &[usize], strides: &[isize]) -> Option<isize> {
    let (d, s) = collapse(dims, &[strides.to_vec()]);
    match d[..] {
        [_] => Some(if d[0] == 1 { 1 } else { s[0][0] }),
        _ => None,
    }
}

/// `out` (the reduced shape) seen over `dims`, with stride 0 on the reduced `axes`.
fn expand(out: &View, dims: &[usize], axes: &[usize]) -> View {
    let mut kept = out.strides.iter();
    let strides = (0..dims.len()).map(|a| if axes.contains(&a) { 0 } else { *kept.next().unwrap_or(&0) }).collect();
    View { src: out.src, dims: dims.to_vec(), strides }
}

/// NumPy broadcasting as a view: new and size-1 axes get stride 0.
fn broadcast_view(x: &View, from: &Shape, to: &Shape, batch: usize) -> View {
    let dims = to.sizes(batch);
    let mut strides = vec![0isize; dims.len()];
    let (fb, tb) = (from.batch as usize, to.batch as usize);
    if from.batch {
        strides[0] = x.strides[0];
    }
    let lead = to.dims.len() - from.dims.len();
    for (k, &n) in from.dims.iter().enumerate() {
        if n != 1 {
            strides[tb + lead + k] = x.strides[fb + k];
        }
    }
    View { src: x.src, dims, strides }
}

/// Fixing the leading example axes at `at`: an offset and fewer axes.
fn index_view(x: &View, shape: &Shape, at: &[usize]) -> View {
    let b = shape.batch as usize;
    let mut src = x.src;
    if let Src::Mem(p) = &mut src {
        p.offset += at.iter().enumerate().map(|(i, &k)| k as isize * x.strides[b + i]).sum::<isize>();
    }
    let kept: Vec<usize> = (0..x.dims.len()).filter(|&d| d < b || d >= b + at.len()).collect();
    let dims = kept.iter().map(|&d| x.dims[d]).collect();
    let strides = kept.iter().map(|&d| x.strides[d]).collect();
    View { src, dims, strides }
}
