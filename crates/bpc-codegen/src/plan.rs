//! Planning: where every value lives and which kernels compute it, in program order.
//!
//! Each live value becomes a [`View`] (a strided window over a caller's buffer, an arena
//! buffer, or a folded constant) or, inside a fused kernel, a *lazy* value (`lazy.rs`): an
//! expression over views that is never stored and is inlined into the kernel that reads it.
//! `reshape`, `broadcast`, `transpose` and `index` are views of their operand and cost
//! nothing until a consumer reads them with those strides (stride 0 for broadcast axes).
//!
//! Without the optimizer (`Function::kernels` is `None`, `-O0`) every computing instruction
//! gets its own kernel and its own arena buffer. With it, the members of each fused kernel
//! that nothing outside reads are lazy, so each kernel becomes one loop nest (`rows`
//! kernels one loop over the rows, `rows.rs`; `gemm` kernels one GEMM call with
//! alpha/beta, `ops.rs`), and arena buffers are shared by liveness (`alloc.rs`).
//!
//! The output is a list of [`Step`]s for the entry function: kernel calls with their operand
//! pointers, and GEMM calls.

use std::collections::HashMap;

use bpc_ir::{DType, Function, Inst, KernelKind, Shape, Value};

use crate::inplace::write_updates_in_place;
use crate::kernel::{Expr, Kernel};
use crate::lazy::{Lazy, Val};
use crate::rows::RowsCtx;

/// The buffer a pointer is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Base {
    /// The caller's buffer for `Function::args[i]`.
    Arg(usize),
    /// The caller's buffer for the `j`-th non-update result.
    Result(usize),
    /// The workspace arena, at this byte offset.
    Ws(usize),
    /// Arena buffer `i` while planning; `alloc.rs` turns it into a `Ws` offset.
    Buf(usize),
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
    /// The accumulator of pending reduction `i` (`lazy.rs`), laid out as a contiguous
    /// buffer of the reduced shape: only inside the epilogue of that reduction.
    Acc(usize),
}

/// A strided window: element `idx` is at `offset + Σ idx[d]·strides[d]`. `batched`: the
/// leading axis is the minibatch axis (the rows of a fused `rows` kernel).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct View {
    pub src: Src,
    pub dims: Vec<usize>,
    pub strides: Vec<isize>,
    pub batched: bool,
}

impl View {
    pub(crate) fn contiguous(src: Src, dims: Vec<usize>, batched: bool) -> View {
        let strides = match src {
            Src::Mem(_) | Src::Acc(_) => natural_strides(&dims),
            Src::Const(_) => vec![0; dims.len()],
        };
        View { src, dims, strides, batched }
    }

    /// Row-major contiguous memory (size-1 axes may have any stride).
    pub(crate) fn is_contiguous(&self) -> bool {
        matches!(self.src, Src::Mem(_))
            && self
                .dims
                .iter()
                .zip(&self.strides)
                .zip(natural_strides(&self.dims))
                .all(|((&n, &s), t)| n == 1 || s == t)
    }

    pub(crate) fn len(&self) -> usize {
        self.dims.iter().product()
    }
}

pub(crate) fn natural_strides(dims: &[usize]) -> Vec<isize> {
    let mut s = vec![1isize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1] as isize;
    }
    s
}

/// A call to the gemm shim: `dst[m,n] = alpha·s·(lhs[m,k] · rhs[k,n]) + beta·t·dst`, strides
/// in elements, `s` and `t` read at run time from `scale` and `beta_scale` (1 without).
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
    /// 1: on the calling thread; more: split over that many threads.
    pub threads: usize,
    /// How a product with `threads > 1` is split.
    pub split: Split,
    pub alpha: f32,
    pub beta: f32,
    pub scale: Option<Ptr>,
    pub beta_scale: Option<Ptr>,
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

impl Step {
    /// `(pointer, read, written)` for every operand.
    pub(crate) fn accesses(&self, kernels: &[Kernel]) -> Vec<(Ptr, bool, bool)> {
        match self {
            Step::Kernel { kernel, ptrs } => {
                kernels[*kernel].roles().iter().zip(ptrs).map(|(r, p)| (*p, r.read, r.write)).collect()
            }
            Step::Gemm(g) => {
                let mut a = vec![(g.dst, g.beta != 0.0, true), (g.lhs, true, false), (g.rhs, true, false)];
                a.extend(g.scale.map(|p| (p, true, false)));
                a.extend(g.beta_scale.map(|p| (p, true, false)));
                a
            }
        }
    }
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
    /// Products of at least this many multiply-adds (`m·n·k`) not split by owner computes
    /// run on `threads` threads, split by the library.
    pub parallel_min: usize,
    /// Products with at least `owner_min` and fewer than `owner_max` multiply-adds run on
    /// `threads` threads split by rows of their largest operand ([`Split::Owner`]) where
    /// [`owner_cut`] finds a cut.
    pub owner_min: usize,
    pub owner_max: usize,
}

/// How a product runs on more than one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, u8)]
pub(crate) enum Split {
    /// gemmkit's own parallel loops.
    Library,
    /// Owner computes: the largest operand is cut into one block of rows per thread, and
    /// pool thread `i` takes block `i` whenever it is awake to (a thread with nothing left
    /// takes the blocks not yet started), so a weight matrix that fits the cores' private
    /// caches stays split between them from one product to the next (the forward `x·W1ᵀ` and
    /// the update of `W1` touch the same half of `W1` on the same core). Planned only where
    /// the largest operand is a caller's buffer whose rows do not lie along `k` ([`owner_cut`]):
    /// blocks of `step` rows of the destination along `axis`.
    Owner { axis: Axis, step: usize },
}

/// The destination dimension an owner-computes split cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Axis {
    M,
    N,
}

/// The axis that cuts the largest of `dst` (`m×n`), `lhs` (`m×k`) and `rhs` (`k×n`) into
/// blocks of whole rows (in memory order: the dimension with the larger stride), and the
/// block length for `threads` blocks (whole 16-lane vectors where the axis allows). `None` if
/// that matrix is not `caller_owned` (owner computes pays for a buffer every call touches
/// again, a weight the train step reads in the forward and writes in its update or a
/// gradient result; an activation the calling thread has just written measured slower split
/// this way than whole, MNIST batch 1024's `h·W2ᵀ` 112 µs against 79 µs), if its rows run
/// along `k` (which cannot be cut without a reduction across threads), or if the axis is too
/// short for two blocks. Ties go to the last of the three.
pub(crate) fn owner_cut(
    [m, n, k]: [usize; 3],
    [dst, lhs, rhs]: [[isize; 2]; 3],
    caller_owned: [bool; 3],
    threads: usize,
) -> Option<(Axis, usize)> {
    let outer = |[rs, cs]: [isize; 2], along_rows, along_cols| {
        if rs.unsigned_abs() >= cs.unsigned_abs() { along_rows } else { along_cols }
    };
    let axis = [
        (m.saturating_mul(n), outer(dst, Some(Axis::M), Some(Axis::N))),
        (m.saturating_mul(k), outer(lhs, Some(Axis::M), None)),
        (k.saturating_mul(n), outer(rhs, None, Some(Axis::N))),
    ]
    .into_iter()
    .zip(caller_owned)
    .max_by_key(|(c, _)| c.0)
    .and_then(|(c, owned)| c.1.filter(|_| owned))?;
    let len = if axis == Axis::M { m } else { n };
    let step = len.div_ceil(threads.clamp(1, 64)).next_multiple_of(16);
    (step < len).then_some((axis, step))
}

/// What the optimizer's kernels say about one value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Role {
    /// Computed and stored (an output of its kernel, or in none).
    Stored,
    /// A member only its own kernel reads: lazy.
    Inner(KernelKind),
    /// A member of a `gemm` kernel below its root: planned by the root.
    GemmInner,
    /// The root of `gemm` kernel `i`.
    GemmRoot(usize),
}

pub(crate) struct Planner<'f> {
    pub func: &'f Function,
    pub batch: usize,
    pub gemm: GemmPolicy,
    /// The optimizer ran: share buffers by liveness and write updates in place.
    pub optimized: bool,
    pub vals: Vec<Option<Val>>,
    pub role: Vec<Role>,
    /// Values computed straight into a (non-update) result buffer.
    pub result_slot: HashMap<Value, usize>,
    /// Params already written in place (by a fused GEMM update).
    pub written: Vec<bool>,
    pub steps: Vec<Step>,
    pub kernels: Vec<Kernel>,
    kernel_ids: HashMap<Kernel, usize>,
    /// Elements of each arena buffer (`Base::Buf`).
    pub bufs: Vec<usize>,
    pub pending: Vec<crate::lazy::Pending>,
    pub rows: Option<RowsCtx>,
    /// `logsumexp` parts already computed, by input and axes.
    pub lse_memo: Vec<(View, Vec<usize>, crate::ops::LseParts)>,
    /// `log s` of a memoized sum of exponentials already stored: `s -> log s`.
    pub log_memo: Vec<(View, View)>,
    /// `(step index, arg index)` of the final copies of update results.
    pub update_copies: Vec<(usize, usize)>,
}

/// Plans `func` at minibatch size `batch`.
pub(crate) fn plan(func: &Function, batch: usize, gemm: GemmPolicy) -> Plan {
    let mut p = Planner {
        func,
        batch,
        gemm,
        optimized: func.kernels.is_some(),
        vals: vec![None; func.len()],
        role: roles(func),
        result_slot: HashMap::new(),
        written: vec![false; func.args.len()],
        steps: Vec::new(),
        kernels: Vec::new(),
        kernel_ids: HashMap::new(),
        bufs: Vec::new(),
        pending: Vec::new(),
        rows: None,
        lse_memo: Vec::new(),
        log_memo: Vec::new(),
        update_copies: Vec::new(),
    };
    for (j, r) in func.results.iter().filter(|r| r.update.is_none()).enumerate() {
        if computes(func.inst(r.value)) && func.ty(r.value).dtype == DType::F32 {
            p.result_slot.entry(r.value).or_insert(j);
        }
    }
    let rows_kernels: Vec<(Value, Value)> = func
        .kernels
        .iter()
        .flatten()
        .filter(|k| k.kind == KernelKind::Rows)
        .map(|k| (k.values[0], k.values[k.values.len() - 1]))
        .collect();
    let live = func.live_values();
    for v in func.values() {
        if let Some(&(first, last)) = rows_kernels.iter().find(|(f, _)| *f == v) {
            p.begin_rows(first, last);
        }
        if live[v.index()] {
            let val = p.value(v);
            p.vals[v.index()] = val;
            // A stored view of a lazy value (a broadcast read after its kernel) is computed
            // now: the lazy leaves may be buffers that hold one row of a fused row loop.
            if p.role[v.index()] == Role::Stored && matches!(p.vals[v.index()], Some(Val::Lazy(_))) {
                p.view(v);
            }
        }
        if p.rows.as_ref().is_some_and(|r| r.last == v) {
            p.end_rows();
        }
    }
    p.results();
    if p.optimized {
        write_updates_in_place(&mut p.steps, &mut p.kernels, &p.update_copies);
    }
    let ws_bytes = crate::alloc::allocate(&mut p.steps, &p.kernels, &p.bufs, p.optimized);
    let (steps, kernels) = used_kernels(p.steps, p.kernels);
    if std::env::var_os("BPC_DEBUG_PLAN").is_some() {
        for s in &steps {
            match s {
                Step::Kernel { kernel, ptrs } => eprintln!("{:?}\n   {ptrs:?}", kernels[*kernel]),
                Step::Gemm(g) => eprintln!("{g:?}"),
            }
        }
    }
    Plan { steps, kernels, ws_bytes }
}

/// Drops kernels no step calls (those fused into a rows kernel), renumbering the rest.
fn used_kernels(mut steps: Vec<Step>, kernels: Vec<Kernel>) -> (Vec<Step>, Vec<Kernel>) {
    let mut new_id = vec![None; kernels.len()];
    let mut used = Vec::new();
    for s in &mut steps {
        if let Step::Kernel { kernel, .. } = s {
            let id = *new_id[*kernel].get_or_insert_with(|| {
                used.push(kernels[*kernel].clone());
                used.len() - 1
            });
            *kernel = id;
        }
    }
    (steps, used)
}

/// Each value's [`Role`] under the function's kernels.
fn roles(func: &Function) -> Vec<Role> {
    let mut role = vec![Role::Stored; func.len()];
    for (i, k) in func.kernels.iter().flatten().enumerate() {
        let outputs = k.outputs(func);
        let root = k.values[k.values.len() - 1];
        for &v in &k.values {
            role[v.index()] = match k.kind {
                KernelKind::Gemm if v == root => Role::GemmRoot(i),
                KernelKind::Gemm => Role::GemmInner,
                _ if outputs.contains(&v) => Role::Stored,
                kind => Role::Inner(kind),
            };
        }
    }
    role
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
    pub(crate) fn sizes(&self, v: Value) -> Vec<usize> {
        self.func.shape(v).sizes(self.batch)
    }

    /// A fresh arena buffer of `elems` elements.
    pub(crate) fn alloc(&mut self, elems: usize) -> Ptr {
        self.bufs.push(elems);
        Ptr { base: Base::Buf(self.bufs.len() - 1), offset: 0 }
    }

    /// Where value `v` (a computing instruction) is written.
    pub(crate) fn out(&mut self, v: Value) -> View {
        let dims = self.sizes(v);
        let ptr = match self.result_slot.get(&v) {
            Some(&j) => Ptr { base: Base::Result(j), offset: 0 },
            None => self.alloc(dims.iter().product()),
        };
        View::contiguous(Src::Mem(ptr), dims, self.func.shape(v).batch)
    }

    pub(crate) fn scratch(&mut self, dims: Vec<usize>, batched: bool) -> View {
        let ptr = self.alloc(dims.iter().product());
        View::contiguous(Src::Mem(ptr), dims, batched)
    }

    /// Appends a call of kernel `k` (shared with identical kernels) with these operands.
    pub(crate) fn kernel(&mut self, k: Kernel, ptrs: Vec<Ptr>) {
        debug_assert_eq!(k.arity(), ptrs.len());
        let next = self.kernels.len();
        let id = *self.kernel_ids.entry(k.clone()).or_insert(next);
        if id == next {
            self.kernels.push(k);
        }
        self.steps.push(Step::Kernel { kernel: id, ptrs });
    }

    /// Plans value `v`; `None` for members a GEMM kernel's root plans.
    fn value(&mut self, v: Value) -> Option<Val> {
        let func = self.func;
        let batched = func.shape(v).batch;
        let view = |src: Src, p: &Self| Some(Val::View(View::contiguous(src, p.sizes(v), batched)));
        match self.role[v.index()] {
            Role::GemmInner => return None,
            Role::GemmRoot(i) => return Some(Val::View(self.gemm_update(v, i))),
            Role::Stored | Role::Inner(_) => {}
        }
        let val = match func.inst(v) {
            Inst::Arg(id) => return view(Src::Mem(Ptr { base: Base::Arg(id.index()), offset: 0 }), self),
            Inst::Const(c) => Val::View(View { src: Src::Const(*c as f32), dims: vec![], strides: vec![], batched }),
            Inst::BatchSize => {
                Val::View(View { src: Src::Const(self.batch as f32), dims: vec![], strides: vec![], batched })
            }
            Inst::Unary { op, arg } => self.elementwise(v, &[*arg], Expr::un(*op, Expr::In(0))),
            Inst::Binary { op, lhs, rhs } => {
                self.elementwise(v, &[*lhs, *rhs], Expr::bin(*op, Expr::In(0), Expr::In(1)))
            }
            Inst::Select { cond, on_true, on_false } => {
                let body = Expr::Select(Box::new(Expr::In(0)), Box::new(Expr::In(1)), Box::new(Expr::In(2)));
                self.elementwise(v, &[*cond, *on_true, *on_false], body)
            }
            Inst::Reduce { op, arg, axes } => self.reduce_value(v, *op, *arg, axes),
            Inst::Broadcast { arg, to } => {
                let (from, to, b) = (func.shape(*arg).clone(), to.clone(), self.batch);
                self.transform(*arg, &|x| broadcast_view(x, &from, &to, b))
            }
            Inst::Reshape { arg, .. } => self.reshape(v, *arg),
            Inst::Transpose { arg } => self.transform(*arg, &|x| {
                let mut x = x.clone();
                let r = x.dims.len();
                x.dims.swap(r - 2, r - 1);
                x.strides.swap(r - 2, r - 1);
                x
            }),
            Inst::Index { arg, at } => {
                let (shape, at) = (func.shape(*arg).clone(), at.clone());
                self.transform(*arg, &|x| index_view(x, &shape, &at))
            }
            Inst::MatMul { lhs, rhs, ta, tb } => self.matmul(v, *lhs, *rhs, *ta, *tb),
            Inst::Softmax { arg, axis, log } => Val::View(self.softmax(v, *arg, *axis, *log)),
            Inst::CrossEntropy { logits, label } => Val::View(self.cross_entropy(v, *logits, *label)),
            Inst::OneHot { label, classes } => Val::View(self.onehot(v, *label, *classes)),
            Inst::Scatter { arg, at, to } => Val::View(self.scatter(v, *arg, at, to)),
        };
        Some(val)
    }

    /// Whether `v` is lazy (read only inside its own fused kernel).
    pub(crate) fn is_inner(&self, v: Value) -> bool {
        matches!(self.role[v.index()], Role::Inner(_))
    }

    /// A reshape: a view of contiguous memory (or of a constant), else of a contiguous copy.
    fn reshape(&mut self, v: Value, arg: Value) -> Val {
        let dims = self.sizes(v);
        let batched = self.func.shape(v).batch;
        if let Some(Val::Lazy(l)) = &self.vals[arg.index()]
            && l.ins.iter().all(|x| x.is_contiguous() || matches!(x.src, Src::Const(_)))
        {
            let mut l = l.clone();
            for x in &mut l.ins {
                *x = View::contiguous(x.src, dims.clone(), batched);
            }
            l.dims = dims;
            l.batched = batched;
            return Val::Lazy(l);
        }
        let x = self.view(arg);
        let x = if let Src::Const(_) = x.src { x } else { self.materialize_view(x) };
        Val::View(View::contiguous(x.src, dims, batched))
    }

    /// `x` itself if contiguous memory, else a contiguous copy in the arena.
    pub(crate) fn materialize_view(&mut self, x: View) -> View {
        if x.is_contiguous() {
            return x;
        }
        let out = self.scratch(x.dims.clone(), x.batched);
        self.push_loop(&out, &[x], Expr::In(0), None);
        out
    }

    pub(crate) fn fill(&mut self, out: &View, x: f32) {
        self.push_loop(out, &[], Expr::konst(x), None);
    }
}

/// The pointer of a memory view.
pub(crate) fn ptr_of(x: &View) -> Ptr {
    match x.src {
        Src::Mem(p) => p,
        Src::Const(_) | Src::Acc(_) => panic!("internal error: a constant has no address"),
    }
}

/// The single stride that walks all of `dims` in row-major order, if there is one.
pub(crate) fn rows_stride(dims: &[usize], strides: &[isize]) -> Option<isize> {
    let (d, s) = crate::kernel::collapse(dims, &[strides.to_vec()]);
    match d[..] {
        [_] => Some(if d[0] == 1 { 1 } else { s[0][0] }),
        _ => None,
    }
}

/// `out` (the reduced shape) seen over `x`'s dims, with stride 0 on the reduced `axes`.
pub(crate) fn expand(out: &View, x: &View, axes: &[usize]) -> View {
    let mut kept = out.strides.iter();
    let strides = (0..x.dims.len()).map(|a| if axes.contains(&a) { 0 } else { *kept.next().unwrap_or(&0) }).collect();
    View { src: out.src, dims: x.dims.clone(), strides, batched: x.batched }
}

/// NumPy broadcasting as a view: new and size-1 axes get stride 0.
pub(crate) fn broadcast_view(x: &View, from: &Shape, to: &Shape, batch: usize) -> View {
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
    View { src: x.src, dims, strides, batched: to.batch }
}

/// Fixing the leading example axes at `at`: an offset and fewer axes.
pub(crate) fn index_view(x: &View, shape: &Shape, at: &[usize]) -> View {
    let b = shape.batch as usize;
    let mut src = x.src;
    if let Src::Mem(p) = &mut src {
        p.offset += at.iter().enumerate().map(|(i, &k)| k as isize * x.strides[b + i]).sum::<isize>();
    }
    let kept: Vec<usize> = (0..x.dims.len()).filter(|&d| d < b || d >= b + at.len()).collect();
    let dims = kept.iter().map(|&d| x.dims[d]).collect();
    let strides = kept.iter().map(|&d| x.strides[d]).collect();
    View { src, dims, strides, batched: x.batched }
}

/// A lazy value that is just one view.
pub(crate) fn lazy_of(x: View) -> Lazy {
    let (dims, batched) = (x.dims.clone(), x.batched);
    match x.src {
        Src::Const(c) => Lazy { body: Expr::konst(c), ins: vec![], dims, batched },
        Src::Mem(_) | Src::Acc(_) => Lazy { body: Expr::In(0), ins: vec![x], dims, batched },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNED: [bool; 3] = [true; 3];

    /// Row-major strides of an `r×c` matrix, and the transposed view of one.
    const fn rm(c: usize) -> [isize; 2] {
        [c as isize, 1]
    }
    const fn tr(c: usize) -> [isize; 2] {
        [1, c as isize]
    }

    #[test]
    fn owner_cut_takes_the_largest_operands_rows() {
        // x·W1ᵀ at batch 32: W1 (256×784, the rhs viewed transposed) is the largest; its rows
        // are the output's columns.
        assert_eq!(owner_cut([32, 256, 784], [rm(256), rm(784), tr(784)], OWNED, 2), Some((Axis::N, 128)));
        // The update W1 − lr·dHᵀ·x at batch 32: the destination W1 is the largest.
        assert_eq!(owner_cut([256, 784, 32], [rm(784), tr(256), rm(784)], OWNED, 2), Some((Axis::M, 128)));
        // At batch 1024 the largest is x, whose rows lie along k: not cut.
        assert_eq!(owner_cut([256, 784, 1024], [rm(784), tr(256), rm(784)], OWNED, 2), None);
        // Negative strides order rows by their magnitude too.
        assert_eq!(owner_cut([256, 784, 32], [[-784, 1], [1, -256], [784, -1]], OWNED, 2), Some((Axis::M, 128)));
        // An activation as the largest operand (batch 1024's `h·W2ᵀ`, `h` not the caller's): whole.
        assert_eq!(owner_cut([1024, 10, 256], [rm(10), rm(256), tr(256)], [false, false, true], 2), None);
        // Ties go to the last of destination, lhs, rhs.
        assert_eq!(owner_cut([64, 64, 64], [rm(64), rm(64), tr(64)], OWNED, 2), Some((Axis::N, 32)));
    }

    #[test]
    fn owner_cut_blocks_are_whole_vectors_and_at_most_64() {
        // 200 rows over 3 threads: blocks of 80 (a multiple of 16), the last one ragged.
        assert_eq!(owner_cut([200, 10, 300], [rm(10), rm(300), rm(10)], OWNED, 3), Some((Axis::M, 80)));
        // 100 threads on 2048 rows: 64 blocks of 32.
        let (_, step) = owner_cut([2048, 8, 8], [rm(8), rm(8), rm(8)], OWNED, 100).unwrap();
        assert_eq!((step, 2048usize.div_ceil(step)), (32, 64));
        // An axis of 16 or fewer elements cannot make two blocks of whole vectors.
        assert_eq!(owner_cut([16, 4, 4000], [rm(4), rm(4000), rm(4)], OWNED, 2), None);
        assert_eq!(owner_cut([17, 4, 4000], [rm(4), rm(4000), rm(4)], OWNED, 2), Some((Axis::M, 16)));
    }
}
