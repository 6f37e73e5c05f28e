//! Lazy values: the members of a fused kernel that are never stored.
//!
//! A [`Lazy`] is an expression over views, all with the value's dims: what one element of
//! the value is, computed from its leaves at the same position. Elementwise instructions
//! compose their operands' expressions; views (`broadcast`, `transpose`, `index`) transform
//! every leaf; the kernel output that reads them finally emits one loop with the composed
//! body. A lazy reduction ([`Pending`]) is a leaf `Src::Acc` that only the epilogue of its
//! own reduction kernel can read.

use bpc_ir::{ReduceOp, Value};

use crate::kernel::{Acc, Expr, Kernel, LoopKernel, collapse};
use crate::plan::{Planner, Ptr, Src, View, expand, lazy_of, ptr_of};
use crate::rows::RowTag;

/// An expression over views of dims `dims`: `body`'s `In(i)` is `ins[i]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Lazy {
    pub body: Expr,
    pub ins: Vec<View>,
    pub dims: Vec<usize>,
    pub batched: bool,
}

/// A planned value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    View(View),
    Lazy(Lazy),
}

/// A reduction not computed yet: its input, axes and reduced dims.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Pending {
    pub op: ReduceOp,
    pub x: Lazy,
    pub axes: Vec<usize>,
    pub dims: Vec<usize>,
    pub batched: bool,
}

/// Renumbers `e`'s inputs by `offset`.
fn shifted(e: &Expr, offset: usize, n: usize) -> Expr {
    let subst: Vec<Expr> = (0..n).map(|i| Expr::In(offset + i)).collect();
    e.clone().substitute(&subst)
}

impl Planner<'_> {
    /// The planned value of `v`.
    fn val(&self, v: Value) -> &Val {
        match &self.vals[v.index()] {
            Some(val) => val,
            None => panic!("internal error: {v} used before it was planned"),
        }
    }

    /// `v` as a lazy expression (a stored value is a single leaf).
    pub(crate) fn lazy(&self, v: Value) -> Lazy {
        match self.val(v) {
            Val::View(x) => lazy_of(x.clone()),
            Val::Lazy(l) => l.clone(),
        }
    }

    /// `v` as a view: a lazy value is computed into an arena buffer (once).
    pub(crate) fn view(&mut self, v: Value) -> View {
        let l = match self.val(v) {
            Val::View(x) => return x.clone(),
            Val::Lazy(l) => l.clone(),
        };
        let out = self.scratch(l.dims.clone(), l.batched);
        self.materialize(&out, l);
        self.vals[v.index()] = Some(Val::View(out.clone()));
        out
    }

    /// An elementwise instruction: lazy inside its kernel, else computed into its buffer.
    pub(crate) fn elementwise(&mut self, v: Value, operands: &[Value], body: Expr) -> Val {
        let mut ins = Vec::new();
        let mut subst = Vec::with_capacity(operands.len());
        for &o in operands {
            let l = self.lazy(o);
            subst.push(shifted(&l.body, ins.len(), l.ins.len()));
            ins.extend(l.ins);
        }
        let l = Lazy { body: body.substitute(&subst), ins, dims: self.sizes(v), batched: self.func.shape(v).batch };
        if self.is_inner(v) {
            return Val::Lazy(l);
        }
        let out = self.out(v);
        self.materialize(&out, l);
        Val::View(out)
    }

    /// A view instruction: transforms a view, or every leaf of a lazy value (a pending
    /// reduction is computed first: its leaf is only read in its own epilogue).
    pub(crate) fn transform(&mut self, arg: Value, f: &dyn Fn(&View) -> View) -> Val {
        if let Val::Lazy(l) = self.val(arg)
            && !l.ins.iter().any(|x| matches!(x.src, Src::Acc(_)))
        {
            let mut l = l.clone();
            l.ins = l.ins.iter().map(f).collect();
            if let Some(x) = l.ins.first() {
                l.dims = x.dims.clone();
                l.batched = x.batched;
            } else {
                // A constant: any leaf-free expression; take the dims from a probe view.
                let probe = f(&View {
                    src: Src::Const(0.0),
                    dims: l.dims.clone(),
                    strides: vec![0; l.dims.len()],
                    batched: l.batched,
                });
                l.dims = probe.dims;
                l.batched = probe.batched;
            }
            return Val::Lazy(l);
        }
        let x = self.view(arg);
        Val::View(f(&x))
    }

    /// Computes `l` into `out` (same dims): one loop, or a reduction with `l` as epilogue.
    pub(crate) fn materialize(&mut self, out: &View, l: Lazy) {
        let mut accs: Vec<usize> =
            l.ins.iter().filter_map(|x| if let Src::Acc(i) = x.src { Some(i) } else { None }).collect();
        accs.dedup();
        match accs[..] {
            [] => self.push_loop(out, &l.ins, l.body, None),
            [i] if self.try_fused_reduce(out, i, &l) => {}
            _ => {
                let mut l = l;
                for i in accs {
                    let buf = self.compute_pending(i);
                    for x in &mut l.ins {
                        if x.src == Src::Acc(i) {
                            x.src = buf.src;
                        }
                    }
                }
                self.push_loop(out, &l.ins, l.body, None);
            }
        }
    }

    /// Pending reduction `i` computed into a scratch buffer of its reduced dims.
    fn compute_pending(&mut self, i: usize) -> View {
        let p = self.pending[i].clone();
        let out = self.scratch(p.dims.clone(), p.batched);
        self.reduce_into(p.op, p.x, &p.axes, &out, None);
        out
    }

    /// `out = epilogue(reduce(x))`, if the epilogue reads the accumulator at the output's
    /// own position (else `false`, and nothing is planned).
    fn try_fused_reduce(&mut self, out: &View, i: usize, l: &Lazy) -> bool {
        let p = self.pending[i].clone();
        let acc_view = View::contiguous(Src::Acc(i), p.dims.clone(), p.batched);
        if p.dims != out.dims || l.ins.iter().any(|x| x.src == Src::Acc(i) && *x != acc_view) {
            return false;
        }
        // The epilogue's inputs: In(0) is the accumulator, the other leaves follow.
        let mut epi_ins = Vec::new();
        let mut subst = Vec::with_capacity(l.ins.len());
        for x in &l.ins {
            if x.src == Src::Acc(i) {
                subst.push(Expr::In(0));
            } else {
                epi_ins.push(x.clone());
                subst.push(Expr::In(epi_ins.len()));
            }
        }
        let epilogue = l.body.clone().substitute(&subst);
        self.reduce_into(p.op, p.x, &p.axes, out, Some((epilogue, epi_ins)));
        true
    }

    /// `out[kept] = op over axes of x`, then `epilogue` over the reduced shape if given
    /// (`In(0)` the reduced value, `In(1 + j)` the `j`-th view). One kernel when the loop
    /// finishes each output in one stretch; else fill, accumulate, then a map.
    pub(crate) fn reduce_into(
        &mut self,
        op: ReduceOp,
        x: Lazy,
        axes: &[usize],
        out: &View,
        epilogue: Option<(Expr, Vec<View>)>,
    ) {
        let x = if x.body.dots() > 0 { lazy_of(self.lazy_view(x)) } else { x };
        let shape =
            View { src: Src::Const(0.0), dims: x.dims.clone(), strides: vec![0; x.dims.len()], batched: x.batched };
        let into = expand(out, &shape, axes);
        let count: usize = axes.iter().map(|&a| x.dims[a]).product();
        let acc = match op {
            ReduceOp::Sum | ReduceOp::Mean => Acc::Sum,
            ReduceOp::Max => Acc::Max,
            ReduceOp::Min => Acc::Min,
            ReduceOp::LogSumExp => {
                let xv = self.lazy_view(x);
                let crate::ops::LseParts { m, s, .. } = self.lse_parts(&xv, axes, out.dims.clone(), out.batched, false);
                let body = Expr::Bin(crate::kernel::Fn2::LseFinish, Box::new(Expr::In(0)), Box::new(Expr::In(1)));
                self.push_loop(out, &[m, s], body, None);
                if let Some((e, ins)) = epilogue {
                    self.epilogue_map(out, e, ins);
                }
                return;
            }
        };
        let reduced = if op == ReduceOp::Mean {
            Expr::bin(bpc_ir::BinaryOp::Div, Expr::In(0), Expr::konst(count as f32))
        } else {
            Expr::In(0)
        };
        let (epi, epi_views) = match &epilogue {
            Some((e, ins)) => {
                let mut s = vec![reduced.clone()];
                s.extend((1..=ins.len()).map(Expr::In));
                (e.clone().substitute(&s), ins.iter().map(|v| expand(v, &shape, axes)).collect())
            }
            None => (reduced.clone(), vec![]),
        };
        let fused_epi = (epi != Expr::In(0)).then_some((epi, epi_views.as_slice()));
        let (k, ptrs, tag) = self.build_loop(&into, &x.ins, fused_epi, x.body.clone(), Some(acc));
        if let Kernel::Loop(mut k) = k
            && self.completes(&k, &tag)
        {
            k.init = true;
            self.push_kernel(Kernel::Loop(k), ptrs, tag);
            return;
        }
        self.fill(out, acc.identity());
        self.push_loop(&into, &x.ins, x.body, Some(acc));
        if op == ReduceOp::Mean {
            self.push_loop(out, std::slice::from_ref(out), reduced, None);
        }
        if let Some((e, ins)) = epilogue {
            self.epilogue_map(out, e, ins);
        }
    }

    /// `out = e(out, ins...)` in place.
    fn epilogue_map(&mut self, out: &View, e: Expr, ins: Vec<View>) {
        let mut all = vec![out.clone()];
        all.extend(ins);
        self.push_loop(out, &all, e, None);
    }

    /// Whether a reduction kernel finishes every output in one stretch where it runs: not
    /// inside a fused row loop when it reduces over the rows.
    fn completes(&self, k: &LoopKernel, tag: &RowTag) -> bool {
        match tag {
            RowTag::Row(rs) if rs[0] == 0 => false,
            _ => k.completes_outputs(),
        }
    }

    /// A lazy value computed into scratch (or the view it already is).
    pub(crate) fn lazy_view(&mut self, l: Lazy) -> View {
        if l.body == Expr::In(0) && l.ins.len() == 1 && !matches!(l.ins[0].src, Src::Acc(_)) {
            return l.ins[0].clone();
        }
        if let (Expr::Const(bits), true) = (&l.body, l.ins.is_empty()) {
            return View {
                src: Src::Const(f32::from_bits(*bits)),
                dims: l.dims.clone(),
                strides: vec![0; l.dims.len()],
                batched: l.batched,
            };
        }
        let out = self.scratch(l.dims.clone(), l.batched);
        self.materialize(&out, l);
        out
    }

    /// Appends a loop kernel over `out.dims`; every input view has those dims.
    pub(crate) fn push_loop(&mut self, out: &View, ins: &[View], body: Expr, acc: Option<Acc>) {
        if out.len() == 0 {
            return;
        }
        let (k, ptrs, tag) = self.build_loop(out, ins, None, body, acc);
        self.push_kernel(k, ptrs, tag);
    }

    /// Records a kernel call (with its row tag inside a fused `rows` kernel).
    pub(crate) fn push_kernel(&mut self, k: Kernel, ptrs: Vec<Ptr>, tag: RowTag) {
        self.kernel(k, ptrs);
        if let Some(r) = &mut self.rows {
            r.tags.push(tag);
        }
    }

    /// The loop kernel for `out = body(ins)`, with `epilogue` (over `epi` views, `In(0)` the
    /// accumulated value) if given; its operand pointers; and its row tag: inside a `rows`
    /// kernel a batched loop keeps its row axis apart for `rows.rs`.
    pub(crate) fn build_loop(
        &self,
        out: &View,
        ins: &[View],
        epilogue: Option<(Expr, &[View])>,
        body: Expr,
        acc: Option<Acc>,
    ) -> (Kernel, Vec<Ptr>, RowTag) {
        let mut ptrs = vec![ptr_of(out)];
        let mut strides = vec![out.strides.clone()];
        let operand = |x: &View, ptrs: &mut Vec<Ptr>, strides: &mut Vec<Vec<isize>>, from: usize| -> Expr {
            debug_assert_eq!(x.dims, out.dims, "loop operand dims");
            match x.src {
                Src::Const(c) => Expr::konst(c),
                Src::Acc(_) => panic!("internal error: an accumulator read outside its epilogue"),
                Src::Mem(p) => {
                    let same = (from..ptrs.len()).find(|&i| ptrs[i] == p && strides[i] == x.strides);
                    let i = same.unwrap_or_else(|| {
                        ptrs.push(p);
                        strides.push(x.strides.clone());
                        ptrs.len() - 1
                    });
                    Expr::In(i - 1)
                }
            }
        };
        let subst: Vec<Expr> = ins.iter().map(|x| operand(x, &mut ptrs, &mut strides, 1)).collect();
        let n_body = ptrs.len() - 1;
        let epilogue = epilogue.map(|(e, views)| {
            let mut s = vec![Expr::In(0)];
            for x in views {
                s.push(match operand(x, &mut ptrs, &mut strides, n_body + 1) {
                    Expr::In(i) => Expr::In(i - n_body + 1),
                    c => c,
                });
            }
            e.substitute(&s)
        });
        let body = body.substitute(&subst);
        let row = self.rows.is_some() && out.batched && !out.dims.is_empty();
        let (dims, mut all, tag) = if row {
            let row_strides: Vec<isize> = strides.iter().map(|s| s[0]).collect();
            let inner: Vec<Vec<isize>> = strides.iter().map(|s| s[1..].to_vec()).collect();
            let (d, s) = collapse(&out.dims[1..], &inner);
            let mut dims = vec![out.dims[0]];
            dims.extend(d);
            let all = s.into_iter().zip(&row_strides).map(|(s, &r)| std::iter::once(r).chain(s).collect()).collect();
            (dims, all, RowTag::Row(row_strides))
        } else {
            let (d, s) = collapse(&out.dims, &strides);
            (d, s, RowTag::Flat)
        };
        let ins = all.split_off(1);
        let out_strides = all.pop().expect("output strides");
        let mut k = LoopKernel::new(dims, out_strides, ins, body, acc);
        k.epi_ins = ptrs.len() - 1 - n_body;
        k.epilogue = epilogue;
        (Kernel::Loop(k), ptrs, tag)
    }
}
