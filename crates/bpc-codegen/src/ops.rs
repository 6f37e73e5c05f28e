//! Planning the non-elementwise instructions: reductions, softmax, cross-entropy, one-hot,
//! scatter, matrix products (plain, inlined as a dot, or fused with an SGD update), and the
//! copies of results.

use bpc_ir::{ArgId, BinaryOp, Inst, ReduceOp, Shape, UnaryOp, Value};

use crate::kernel::{Expr, Fn1, Kernel};
use crate::lazy::{Lazy, Pending, Val};
use crate::plan::{
    Base, GemmCall, Planner, Ptr, Split, Src, Step, View, expand, index_view, lazy_of, owner_cut, ptr_of, rows_stride,
};
use crate::rows::RowTag;

/// The parts of `logsumexp x` over some axes: views of the reduced dims `m = max x` and
/// `s = Σ e^(x - m)` (`m` taken as 0 where it is infinite), and, when a fused `rows` kernel
/// also takes `softmax x`, the exponentials `e = e^(x - m)` themselves, for the softmax to
/// divide by `s` instead of computing them again (in a buffer of one row, or two when the
/// kernel takes two rows per iteration). `s` then sums the stored values: the same values,
/// but from 16 along the axis the loop over them is unrolled by 4 instead of 2, so `s` (and
/// the cross-entropy, `log_softmax`) may differ from the unstored sum in the last bit.
#[derive(Clone, Debug)]
pub(crate) struct LseParts {
    pub m: View,
    pub s: View,
    pub e: Option<View>,
}

impl Planner<'_> {
    /// A reduction: pending (lazy) inside its kernel, else computed with its producer fused.
    pub(crate) fn reduce_value(&mut self, v: Value, op: ReduceOp, arg: Value, axes: &[usize]) -> Val {
        let x = self.lazy(arg);
        let has_acc = x.ins.iter().any(|i| matches!(i.src, Src::Acc(_)));
        let (dims, batched) = (self.sizes(v), self.func.shape(v).batch);
        if self.is_inner(v) && op != ReduceOp::LogSumExp && !has_acc {
            self.pending.push(Pending { op, x, axes: axes.to_vec(), dims: dims.clone(), batched });
            let acc = View::contiguous(Src::Acc(self.pending.len() - 1), dims.clone(), batched);
            return Val::Lazy(Lazy { body: Expr::In(0), ins: vec![acc], dims, batched });
        }
        let x = if has_acc { lazy_of(self.lazy_view(x)) } else { x };
        let out = self.out(v);
        self.reduce_into(op, x, axes, &out, None);
        Val::View(out)
    }

    /// The parts of `logsumexp` over `axes` ([`LseParts`]), computed once per input (softmax
    /// and cross-entropy of the same logits share them); `e` stored if `store_exp`.
    pub(crate) fn lse_parts(
        &mut self,
        x: &View,
        axes: &[usize],
        dims: Vec<usize>,
        batched: bool,
        store_exp: bool,
    ) -> LseParts {
        if let Some((_, _, parts)) = self.lse_memo.iter().find(|(y, a, _)| y == x && a == axes) {
            return parts.clone();
        }
        let m = self.scratch(dims.clone(), batched);
        self.reduce_into(ReduceOp::Max, lazy_of(x.clone()), axes, &m, None);
        let s = self.scratch(dims, batched);
        let m_into = expand(&m, x, axes);
        let body = Expr::un(UnaryOp::Exp, Expr::bin(BinaryOp::Sub, Expr::In(0), shift(Expr::In(1))));
        let l = Lazy { body, ins: vec![x.clone(), m_into], dims: x.dims.clone(), batched: x.batched };
        let e = if store_exp {
            let e = self.scratch(x.dims.clone(), x.batched);
            self.materialize(&e, l);
            self.reduce_into(ReduceOp::Sum, lazy_of(e.clone()), axes, &s, None);
            Some(e)
        } else {
            self.reduce_into(ReduceOp::Sum, l, axes, &s, None);
            None
        };
        let parts = LseParts { m, s, e };
        self.lse_memo.push((x.clone(), axes.to_vec(), parts.clone()));
        parts
    }

    /// `log_softmax(x) = (x - m) - log s` and `softmax(x) = e^(x - m) / s` along `axis`, `m`
    /// and `s` the parts of `logsumexp x` (`x - m` first keeps the result accurate when `x`
    /// is large). Where the exponentials were not stored (outside a fused `rows` kernel),
    /// `softmax(x) = e^(log_softmax x)`, one exponential per element instead of a division.
    pub(crate) fn softmax(&mut self, v: Value, arg: Value, axis: usize, log: bool) -> View {
        let x = self.view(arg);
        let mut dims = x.dims.clone();
        dims.remove(axis);
        let batched = x.batched && axis != 0;
        let store_exp = !log && self.rows_softmax_of(arg);
        let LseParts { m, s, e } = self.lse_parts(&x, &[axis], dims, batched, store_exp);
        let (body, ins) = match e {
            Some(e) if !log => (Expr::bin(BinaryOp::Div, Expr::In(0), Expr::In(1)), vec![e, expand(&s, &x, &[axis])]),
            _ => {
                let m = expand(&m, &x, &[axis]);
                // `log s` as cross-entropy of the same logits stored it, else computed here.
                let (s, log_s) = match self.log_memo.iter().find(|(t, _)| *t == s) {
                    Some((_, l)) => (expand(l, &x, &[axis]), Expr::In(2)),
                    None => (expand(&s, &x, &[axis]), Expr::un(UnaryOp::Log, Expr::In(2))),
                };
                let centered = Expr::bin(BinaryOp::Sub, Expr::In(0), shift(Expr::In(1)));
                let diff = Expr::bin(BinaryOp::Sub, centered, log_s);
                (if log { diff } else { Expr::un(UnaryOp::Exp, diff) }, vec![x, m, s])
            }
        };
        let l = Lazy { body, ins, dims: self.sizes(v), batched: self.func.shape(v).batch };
        if self.is_inner(v) {
            // Read only inside its kernel: recomputed where it is read, never stored.
            let out = self.scratch(l.dims.clone(), l.batched);
            self.materialize(&out, l);
            return out;
        }
        let out = self.out(v);
        self.materialize(&out, l);
        out
    }

    /// `(m - z[y]) + log s` per row, `m` and `s` the parts of `logsumexp z`; a class out of
    /// range gives NaN. `log s` is stored apart (and remembered) so that a softmax of the
    /// same logits reads it instead of taking the logarithm again.
    pub(crate) fn cross_entropy(&mut self, v: Value, logits: Value, label: Value) -> View {
        let out = self.out(v);
        let z = self.view(logits);
        let last = z.dims.len() - 1;
        let store_exp = self.rows_softmax_of(logits);
        let LseParts { m, s, .. } = self.lse_parts(&z, &[last], out.dims.clone(), out.batched, store_exp);
        let log_s = self.scratch(out.dims.clone(), out.batched);
        self.push_loop(&log_s, std::slice::from_ref(&s), Expr::un(UnaryOp::Log, Expr::In(0)), None);
        self.log_memo.push((s, log_s.clone()));
        let classes = z.dims[last];
        let (z_row, z) = match rows_stride(&z.dims[..last], &z.strides[..last]) {
            Some(s) if matches!(z.src, Src::Mem(_)) => (s, z),
            _ => {
                let z = self.materialize_view(z);
                (classes as isize, z)
            }
        };
        let (rows, y_stride, y) = self.rows_of(label);
        let z_col = z.strides[last];
        let ptrs = vec![ptr_of(&out), ptr_of(&z), y, ptr_of(&m), ptr_of(&log_s)];
        let tag = self.row_tag(rows, &[1, z_row, y_stride, 1, 1]);
        self.push_kernel(Kernel::Pick { rows, classes, z_row, z_col, y_stride }, ptrs, tag);
        out
    }

    pub(crate) fn onehot(&mut self, v: Value, label: Value, classes: usize) -> View {
        let out = self.out(v);
        self.fill(&out, 0.0);
        let (rows, y_stride, y) = self.rows_of(label);
        let tag = self.row_tag(rows, &[classes as isize, y_stride]);
        self.push_kernel(Kernel::OneHot { rows, classes, y_stride }, vec![ptr_of(&out), y], tag);
        out
    }

    /// A row kernel over the minibatch inside a fused `rows` kernel: these row strides.
    fn row_tag(&self, rows: usize, strides: &[isize]) -> RowTag {
        match &self.rows {
            Some(_) if rows == self.batch => RowTag::Row(strides.to_vec()),
            _ => RowTag::Flat,
        }
    }

    pub(crate) fn scatter(&mut self, v: Value, arg: Value, at: &[usize], to: &Shape) -> View {
        let out = self.out(v);
        self.fill(&out, 0.0);
        let dst = index_view(&out, to, at);
        let x = self.view(arg);
        self.push_loop(&dst, &[x], Expr::In(0), None);
        out
    }

    /// A label as `rows` elements at one stride (materialized if it has none).
    fn rows_of(&mut self, label: Value) -> (usize, isize, Ptr) {
        let y = self.view(label);
        let rows = y.len();
        if let (Src::Mem(p), Some(s)) = (y.src, rows_stride(&y.dims, &y.strides)) {
            return (rows, s, p);
        }
        let y = self.materialize_view(y);
        (rows, 1, ptr_of(&y))
    }

    /// An operand of a product as memory with no stride-0 axis (gemm reads any strides).
    fn gemm_operand(&mut self, v: Value) -> View {
        let x = self.view(v);
        if matches!(x.src, Src::Mem(_)) && x.strides.iter().all(|&s| s != 0) { x } else { self.materialize_view(x) }
    }

    /// A product: a GEMM call, or inside a `map` kernel a dot product of its short
    /// contracted axis inlined into the kernel body.
    pub(crate) fn matmul(&mut self, v: Value, lhs: Value, rhs: Value, ta: bool, tb: bool) -> Val {
        let (a, b) = (self.gemm_operand(lhs), self.gemm_operand(rhs));
        let op = |x: &View, t: bool| if t { [x.strides[1], x.strides[0]] } else { [x.strides[0], x.strides[1]] };
        let ([ai, ap], [bp, bj]) = (op(&a, ta), op(&b, tb));
        let dims = self.sizes(v);
        let (m, n) = (dims[0], dims[1]);
        let k = if ta { a.dims[0] } else { a.dims[1] };
        let batched = self.func.shape(v).batch;
        if self.is_inner(v) {
            let av = View { src: a.src, dims: dims.clone(), strides: vec![ai, 0], batched };
            let bv = View { src: b.src, dims: dims.clone(), strides: vec![0, bj], batched };
            let body = Expr::Dot { a: Box::new(Expr::In(0)), b: Box::new(Expr::In(1)), k, sa: ap, sb: bp };
            return Val::Lazy(Lazy { body, ins: vec![av, bv], dims, batched });
        }
        let out = self.out(v);
        self.gemm_call(m, n, k, &out, (ptr_of(&a), [ai, ap]), (ptr_of(&b), [bp, bj]), (1.0, None), (0.0, None));
        Val::View(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn gemm_call(
        &mut self,
        m: usize,
        n: usize,
        k: usize,
        dst: &View,
        (lhs, lhs_strides): (Ptr, [isize; 2]),
        (rhs, rhs_strides): (Ptr, [isize; 2]),
        (alpha, scale): (f32, Option<Ptr>),
        (beta, beta_scale): (f32, Option<Ptr>),
    ) {
        if m * n == 0 {
            return;
        }
        let work = m.saturating_mul(n).saturating_mul(k);
        let dst_strides = [dst.strides[0], dst.strides[1]];
        let (dst, lhs_strides, rhs_strides) = (ptr_of(dst), lhs_strides, rhs_strides);
        let g = self.gemm;
        let caller_owned = [dst.base, lhs.base, rhs.base].map(|b| matches!(b, Base::Arg(_) | Base::Result(_)));
        let cut = ((g.owner_min..g.owner_max).contains(&work) && g.threads > 1)
            .then(|| owner_cut([m, n, k], [dst_strides, lhs_strides, rhs_strides], caller_owned, g.threads))
            .flatten();
        let (threads, split) = if let Some((axis, step)) = cut {
            (g.threads, Split::Owner { axis, step })
        } else if work >= g.parallel_min {
            (g.threads.max(1), Split::Library)
        } else {
            (1, Split::Library)
        };
        self.steps.push(Step::Gemm(GemmCall {
            m,
            n,
            k,
            dst,
            dst_strides,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            threads,
            split,
            alpha,
            beta,
            scale,
            beta_scale,
        }));
        if let Some(r) = &mut self.rows {
            r.tags.push(RowTag::Flat);
        }
    }

    /// The root of a `gemm` kernel, one GEMM written over the param or state `W` when this is
    /// its update and nothing later reads it, else into a copy of `W`: `W − c·(A·B)` (an SGD
    /// step) with `alpha = −c`, `beta = 1`; `A·B + c·W` (a momentum buffer) with `alpha = 1`,
    /// `beta = c`.
    pub(crate) fn gemm_update(&mut self, v: Value, _kernel: usize) -> View {
        let func = self.func;
        let Some(GemmUpdate { w, c, mm, sgd }) = gemm_update_parts(func, v) else { unreachable_gemm() };
        let (Inst::MatMul { lhs, rhs, ta, tb }, Inst::Arg(p)) = (func.inst(mm), func.inst(w)) else {
            unreachable_gemm()
        };
        let (a, b) = (self.gemm_operand(*lhs), self.gemm_operand(*rhs));
        let op = |x: &View, t: bool| if t { [x.strides[1], x.strides[0]] } else { [x.strides[0], x.strides[1]] };
        let dims = self.sizes(v);
        let k = if *ta { a.dims[0] } else { a.dims[1] };
        let sign = if sgd { -1.0 } else { 1.0 };
        let coef = match self.view(c) {
            View { src: Src::Const(x), .. } => (sign * x, None),
            x if x.len() == 1 => (sign, Some(ptr_of(&x))),
            x => {
                let x = self.materialize_view(x);
                (sign, Some(ptr_of(&x)))
            }
        };
        let (alpha, beta) = if sgd { (coef, (1.0, None)) } else { ((1.0, None), coef) };
        let in_place = self.update_in_place(v, *p) && !arg_backed(func, *lhs, *p) && !arg_backed(func, *rhs, *p);
        let dst = if in_place {
            self.written[p.index()] = true;
            View::contiguous(Src::Mem(Ptr { base: Base::Arg(p.index()), offset: 0 }), dims.clone(), false)
        } else {
            let out = self.out(v);
            let wv = self.view(w);
            self.push_loop(&out, &[wv], Expr::In(0), None);
            out
        };
        let (lhs, rhs) = ((ptr_of(&a), op(&a, *ta)), (ptr_of(&b), op(&b, *tb)));
        self.gemm_call(dims[0], dims[1], k, &dst, lhs, rhs, alpha, beta);
        dst
    }

    /// Whether `v` (computed from param `p`) may be written over `p` now: it is `p`'s
    /// update, nothing after it in program order reads `p`, and no other result is `p`.
    fn update_in_place(&self, v: Value, p: ArgId) -> bool {
        let func = self.func;
        if !self.optimized || !func.results.iter().any(|r| r.value == v && r.update == Some(p)) {
            return false;
        }
        let reads_p = |x: Value| arg_backed(func, x, p);
        let later = func.values().skip(v.index() + 1).any(|w| func.inst(w).operands().into_iter().any(reads_p));
        let results = func.results.iter().any(|r| r.update.is_none() && reads_p(r.value));
        let twice = func.results.iter().filter(|r| r.update == Some(p)).count() > 1;
        !later && !results && !twice
    }

    /// Copies every result that was not computed in place into its buffer, then the updates
    /// into their params (after every other read: a param may feed another result).
    pub(crate) fn results(&mut self) {
        let func = self.func;
        for (j, r) in func.results.iter().filter(|r| r.update.is_none()).enumerate() {
            if self.result_slot.get(&r.value) == Some(&j) {
                continue;
            }
            let x = self.view(r.value);
            let dst = View::contiguous(Src::Mem(Ptr { base: Base::Result(j), offset: 0 }), x.dims.clone(), false);
            self.push_loop(&dst, &[x], Expr::In(0), None);
        }
        let mut updates: Vec<(ArgId, View)> = Vec::new();
        for r in func.results.iter() {
            if let Some(p) = r.update {
                if self.written[p.index()] {
                    continue;
                }
                let mut x = self.view(r.value);
                // A view of an argument could be overwritten by an earlier update: copy it.
                if let Src::Mem(Ptr { base: Base::Arg(_), .. }) = x.src {
                    let dst = self.scratch(x.dims.clone(), false);
                    self.push_loop(&dst, &[x], Expr::In(0), None);
                    x = dst;
                }
                updates.push((p, x));
            }
        }
        for (p, x) in updates {
            let dst = View::contiguous(Src::Mem(Ptr { base: Base::Arg(p.index()), offset: 0 }), x.dims.clone(), false);
            let before = self.steps.len();
            self.push_loop(&dst, &[x], Expr::In(0), None);
            if self.steps.len() > before {
                self.update_copies.push((before, p.index()));
            }
        }
    }
}

/// Whether `v` is argument `p` or a view of it.
fn arg_backed(func: &bpc_ir::Function, v: Value, p: ArgId) -> bool {
    match func.inst(v) {
        Inst::Arg(id) => *id == p,
        Inst::Broadcast { arg, .. } | Inst::Reshape { arg, .. } | Inst::Transpose { arg } | Inst::Index { arg, .. } => {
            arg_backed(func, *arg, p)
        }
        _ => false,
    }
}

/// The parts of a `gemm` kernel's root (the shapes `bpc_opt::fuse` groups).
struct GemmUpdate {
    /// The param or state argument value written.
    w: Value,
    /// The coefficient (the operand of the broadcast).
    c: Value,
    /// The product.
    mm: Value,
    /// `W − c·(A·B)` rather than `A·B + c·W`.
    sgd: bool,
}

fn gemm_update_parts(func: &bpc_ir::Function, v: Value) -> Option<GemmUpdate> {
    let scaled = |x: Value| match *func.inst(x) {
        Inst::Binary { op: BinaryOp::Mul, lhs, rhs } => match func.inst(lhs) {
            Inst::Broadcast { arg, .. } => Some((*arg, rhs)),
            _ => None,
        },
        _ => None,
    };
    let is_mm = |x: Value| matches!(func.inst(x), Inst::MatMul { .. });
    let is_arg = |x: Value| matches!(func.inst(x), Inst::Arg(_));
    let parts = match *func.inst(v) {
        Inst::Binary { op: BinaryOp::Sub, lhs: w, rhs } => {
            let (c, mm) = scaled(rhs)?;
            GemmUpdate { w, c, mm, sgd: true }
        }
        Inst::Binary { op: BinaryOp::Add, lhs, rhs } => {
            let (mm, (c, w)) = if is_mm(lhs) { (lhs, scaled(rhs)?) } else { (rhs, scaled(lhs)?) };
            GemmUpdate { w, c, mm, sgd: false }
        }
        _ => return None,
    };
    (is_mm(parts.mm) && is_arg(parts.w)).then_some(parts)
}

fn unreachable_gemm() -> ! {
    panic!("internal error: a gemm kernel that is not `W − c·(A·B)` or `A·B + c·W`")
}

/// The safe shift of `logsumexp`: `m`, or 0 where `m` is infinite.
pub(crate) fn shift(m: Expr) -> Expr {
    Expr::Un(Fn1::FiniteOr0, Box::new(m))
}
