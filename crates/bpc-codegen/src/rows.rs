//! Fusing the kernels of a `rows` group into one loop over the rows.
//!
//! While a `rows` group is planned, every kernel it emits is tagged: a *row* kernel is a
//! loop whose outermost axis is the minibatch (it keeps that axis apart, with one stride per
//! operand), a *flat* one is not. At the end of the group they become one [`RowsKernel`]:
//! flat kernels that read nothing the row kernels write run before the loop (fills of
//! accumulators), the others after it (a mean's division, an SGD update of a bias); each
//! row kernel runs once per row, in order, on that row. An arena buffer that only row
//! kernels of the group touch and nothing outside reads (the row max and sum of softmax,
//! a one-hot row) then holds one row: its row stride becomes 0. When no phase reads an
//! accumulator another phase writes, the loop takes two rows per iteration, phase by phase
//! (such a buffer then holds two rows), so the two rows' latency chains overlap.

use bpc_ir::{Inst, Value};

use crate::kernel::{Kernel, LoopKernel, RowsKernel};
use crate::plan::{Base, Planner, Ptr, Src, Step};

/// How a kernel emitted inside a `rows` group relates to the rows.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RowTag {
    /// Its loop does not run over the rows.
    Flat,
    /// Its outermost loop runs over the rows; per-operand strides of that axis.
    Row(Vec<isize>),
}

/// The `rows` group being planned.
#[derive(Debug)]
pub(crate) struct RowsCtx {
    first: Value,
    pub last: Value,
    first_step: usize,
    first_buf: usize,
    pub tags: Vec<RowTag>,
}

/// A step split into its per-row kernel (row strides apart) or kept whole.
enum Part {
    Pre(Kernel, Vec<Ptr>),
    Phase(Kernel, Vec<Ptr>, Vec<isize>),
    Post(Kernel, Vec<Ptr>),
}

impl Planner<'_> {
    pub(crate) fn begin_rows(&mut self, first: Value, last: Value) {
        self.lse_memo.clear();
        self.log_memo.clear();
        let (first_step, first_buf) = (self.steps.len(), self.bufs.len());
        self.rows = Some(RowsCtx { first, last, first_step, first_buf, tags: Vec::new() });
    }

    /// Whether the `rows` group being planned takes `softmax(x)` (not its log) along the last
    /// axis: the exponentials of `x` are then worth storing (`ops.rs`, `LseParts`).
    pub(crate) fn rows_softmax_of(&self, x: Value) -> bool {
        let Some(ctx) = &self.rows else { return false };
        let shape = self.func.shape(x);
        let last_axis = shape.dims.len() + usize::from(shape.batch) - 1;
        self.func.values().filter(|&v| v >= ctx.first && v <= ctx.last).any(
            |v| matches!(self.func.inst(v), Inst::Softmax { arg, axis, log: false } if *arg == x && *axis == last_axis),
        )
    }

    /// Replaces the group's steps by one rows kernel, if they fit the pattern.
    pub(crate) fn end_rows(&mut self) {
        let Some(ctx) = self.rows.take() else { return };
        // Buffers of this group may hold one row from now on: forget them.
        self.lse_memo.clear();
        self.log_memo.clear();
        let steps = &self.steps[ctx.first_step..];
        if steps.len() != ctx.tags.len() || steps.len() < 2 {
            return;
        }
        let Some(parts) = self.split(steps, &ctx.tags) else { return };
        if !parts.iter().any(|p| matches!(p, Part::Phase(..))) {
            return;
        }
        let kept = self.stored_bufs(ctx.first, ctx.last);
        let (kernel, ptrs) = assemble(parts, self.batch, ctx.first_buf, &kept, &mut self.bufs);
        self.steps.truncate(ctx.first_step);
        self.kernel(Kernel::Rows(Box::new(kernel)), ptrs);
    }

    /// Arena buffers behind the group's outputs (values read after it, or results).
    fn stored_bufs(&self, first: Value, last: Value) -> Vec<usize> {
        let func = self.func;
        let inside = |v: Value| v >= first && v <= last;
        let mut read_after = vec![false; func.len()];
        for v in func.values().skip(last.index() + 1) {
            for o in func.inst(v).operands() {
                read_after[o.index()] = true;
            }
        }
        for r in &func.results {
            read_after[r.value.index()] = true;
        }
        let mut out = Vec::new();
        for v in func.values().filter(|&v| inside(v) && read_after[v.index()]) {
            if let Some(crate::lazy::Val::View(x)) = &self.vals[v.index()]
                && let Src::Mem(Ptr { base: Base::Buf(b), .. }) = x.src
            {
                out.push(b);
            }
        }
        out
    }

    /// Sorts the steps into pre, phases and post; `None` if a flat step both reads what a
    /// row step writes and writes what a later row step reads.
    fn split(&self, steps: &[Step], tags: &[RowTag]) -> Option<Vec<Part>> {
        let mut tainted: Vec<Ptr> = Vec::new();
        let mut parts = Vec::new();
        for (i, (step, tag)) in steps.iter().zip(tags).enumerate() {
            let Step::Kernel { kernel, ptrs } = step else { return None };
            let k = self.kernels[*kernel].clone();
            let acc = step.accesses(&self.kernels);
            let writes: Vec<Base> = acc.iter().filter(|a| a.2).map(|a| a.0.base).collect();
            match tag {
                RowTag::Row(rs) => {
                    tainted.extend(acc.iter().filter(|a| a.2).map(|a| a.0));
                    parts.push(Part::Phase(inner(k, rs.len())?, ptrs.clone(), rs.clone()));
                }
                RowTag::Flat => {
                    let reads_rows = acc.iter().any(|a| a.1 && tainted.iter().any(|t| t.base == a.0.base));
                    if !reads_rows {
                        parts.push(Part::Pre(k, ptrs.clone()));
                        continue;
                    }
                    let later_reads = steps[i + 1..].iter().zip(&tags[i + 1..]).any(|(s, t)| {
                        matches!(t, RowTag::Row(_))
                            && s.accesses(&self.kernels).iter().any(|a| a.1 && writes.contains(&a.0.base))
                    });
                    if later_reads {
                        return None;
                    }
                    tainted.extend(acc.iter().filter(|a| a.2).map(|a| a.0));
                    parts.push(Part::Post(k, ptrs.clone()));
                }
            }
        }
        Some(parts)
    }
}

/// A row-tagged kernel without its row axis (the fused loop walks it).
fn inner(k: Kernel, operands: usize) -> Option<Kernel> {
    match k {
        Kernel::Loop(l) => {
            if l.dims.len() < 2 || l.ins.len() + 1 != operands {
                return None;
            }
            let mut k = LoopKernel::new(l.dims[1..].to_vec(), l.out[1..].to_vec(), vec![], l.body, l.acc);
            k.ins = l.ins.iter().map(|s| s[1..].to_vec()).collect();
            k.init = l.init;
            k.epilogue = l.epilogue;
            k.epi_ins = l.epi_ins;
            Some(Kernel::Loop(k))
        }
        Kernel::Pick { classes, z_col, .. } => Some(Kernel::Pick { rows: 1, classes, z_row: 0, z_col, y_stride: 0 }),
        Kernel::OneHot { classes, .. } => Some(Kernel::OneHot { rows: 1, classes, y_stride: 0 }),
        Kernel::Rows(_) => None,
    }
}

/// Builds the rows kernel and its operand pointers. Buffers allocated in the group
/// (`>= first_buf`) that are not `kept`, are touched only by phases and always with the
/// same row stride, shrink to one row.
fn assemble(
    parts: Vec<Part>,
    rows: usize,
    first_buf: usize,
    kept: &[usize],
    bufs: &mut [usize],
) -> (RowsKernel, Vec<Ptr>) {
    // Which buffers can hold one row.
    let mut stride_of: Vec<Option<Option<isize>>> = vec![None; bufs.len()];
    let mut contract = vec![true; bufs.len()];
    for part in &parts {
        let (ptrs, rs): (&[Ptr], Option<&[isize]>) = match part {
            Part::Pre(_, p) | Part::Post(_, p) => (p, None),
            Part::Phase(_, p, rs) => (p, Some(rs)),
        };
        for (i, p) in ptrs.iter().enumerate() {
            let Base::Buf(b) = p.base else { continue };
            match rs {
                None => contract[b] = false,
                Some(rs) => match stride_of[b] {
                    None => stride_of[b] = Some(Some(rs[i])),
                    Some(Some(s)) if s == rs[i] => {}
                    Some(_) => contract[b] = false,
                },
            }
        }
    }
    let shrink = |b: usize| -> Option<usize> {
        let s = stride_of[b]??;
        (b >= first_buf && contract[b] && !kept.contains(&b) && s > 0 && bufs[b] == rows * s as usize)
            .then_some(s as usize)
    };
    let shrunk: Vec<Option<usize>> = (0..bufs.len()).map(shrink).collect();
    let mut operands: Vec<(Ptr, isize)> = Vec::new();
    let mut index = |p: Ptr, rs: isize| -> usize {
        let rs = match p.base {
            Base::Buf(b) if shrunk[b].is_some() => 0,
            _ => rs,
        };
        match operands.iter().position(|&o| o == (p, rs)) {
            Some(i) => i,
            None => {
                operands.push((p, rs));
                operands.len() - 1
            }
        }
    };
    let mut k = RowsKernel { rows, row_strides: vec![], pair: None, pre: vec![], phases: vec![], post: vec![] };
    for part in parts {
        match part {
            Part::Pre(kernel, ptrs) => k.pre.push((kernel, ptrs.iter().map(|&p| index(p, 0)).collect())),
            Part::Post(kernel, ptrs) => k.post.push((kernel, ptrs.iter().map(|&p| index(p, 0)).collect())),
            Part::Phase(kernel, ptrs, rs) => {
                let idx = ptrs.iter().zip(&rs).map(|(&p, &r)| index(p, r)).collect();
                k.phases.push((kernel, idx));
            }
        }
    }
    k.row_strides = operands.iter().map(|o| o.1).collect();
    let row_of = |p: &Ptr| match p.base {
        Base::Buf(b) => shrunk[b],
        _ => None,
    };
    let pair: Vec<isize> = operands.iter().map(|(p, rs)| row_of(p).map_or(*rs, |s| s as isize)).collect();
    let paired = rows >= 2 && pairable(&k, &pair);
    for (b, s) in shrunk.iter().enumerate() {
        if let Some(s) = s {
            bufs[b] = if paired { 2 * s } else { *s };
        }
    }
    k.pair = paired.then_some(pair);
    (k, operands.into_iter().map(|o| o.0).collect())
}

/// Whether two rows can interleave phase by phase: every operand the two rows share
/// (offset 0 between them) that a phase writes is touched by that phase alone (an
/// accumulator: it still sees the first row, then the second).
fn pairable(k: &RowsKernel, pair: &[isize]) -> bool {
    let mut toucher: Vec<Option<usize>> = vec![None; pair.len()];
    let mut written = vec![false; pair.len()];
    let mut shared_by_two = vec![false; pair.len()];
    for (j, (kernel, idx)) in k.phases.iter().enumerate() {
        for (role, &i) in kernel.roles().iter().zip(idx) {
            written[i] |= role.write;
            match toucher[i] {
                None => toucher[i] = Some(j),
                Some(t) if t != j => shared_by_two[i] = true,
                Some(_) => {}
            }
        }
    }
    (0..pair.len()).all(|i| pair[i] != 0 || !written[i] || !shared_by_two[i])
}
