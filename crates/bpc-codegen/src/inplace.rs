//! Writing param updates in place.
//!
//! An update result is first planned as a copy from its arena buffer into the param's
//! buffer after every other step. When the one kernel that computes that buffer reads the
//! param only at the element it writes (an elementwise loop, or the epilogue of a reduction
//! such as `b − lr·Σ_b dY`, possibly inside a fused `rows` kernel), and nothing after it
//! reads the param or the buffer, that kernel writes the param directly and the copy goes.
//! (A train step's `W − lr·dW` is such a kernel: this saves a full pass over every weight.)

use crate::kernel::{Expr, Kernel, LoopKernel};
use crate::plan::{Base, Ptr, Step};

/// `copies` are `(step index, param argument index)` of the final update copies.
pub(crate) fn write_updates_in_place(steps: &mut Vec<Step>, kernels: &[Kernel], copies: &[(usize, usize)]) {
    let mut dropped = vec![false; steps.len()];
    for &(c, param) in copies {
        if let Some((s, operand)) = in_place_writer(steps, kernels, &dropped, c, param) {
            if let Step::Kernel { ptrs, .. } = &mut steps[s] {
                ptrs[operand] = Ptr { base: Base::Arg(param), offset: 0 };
            }
            dropped[c] = true;
        }
    }
    let mut i = 0;
    steps.retain(|_| {
        i += 1;
        !dropped[i - 1]
    });
}

/// The step (and its operand) that can write `param` directly instead of the buffer copied
/// by step `c`.
fn in_place_writer(
    steps: &[Step],
    kernels: &[Kernel],
    dropped: &[bool],
    c: usize,
    param: usize,
) -> Option<(usize, usize)> {
    let live = |i: usize| !dropped[i] && i != c;
    let Step::Kernel { kernel, ptrs } = &steps[c] else { return None };
    let Kernel::Loop(copy) = &kernels[*kernel] else { return None };
    // The copy reads a whole contiguous arena buffer.
    let region = ptrs[1].base;
    if copy.body != Expr::In(0) || copy.ins[0] != copy.out || ptrs[1].offset != 0 || !matches!(region, Base::Buf(_)) {
        return None;
    }
    let touches = |i: usize, b: Base, write: bool| {
        steps[i].accesses(kernels).iter().any(|&(p, r, w)| p.base == b && if write { w } else { r })
    };
    let writers: Vec<usize> = (0..steps.len()).filter(|&i| live(i) && touches(i, region, true)).collect();
    let &[s] = &writers[..] else { return None };
    let Step::Kernel { kernel, ptrs } = &steps[s] else { return None };
    let arg = Base::Arg(param);
    let operand = match &kernels[*kernel] {
        Kernel::Loop(k) => writes_elementwise(k, ptrs, region, arg, copy).then_some(0)?,
        Kernel::Rows(r) => {
            // The one sub-kernel writing the region, run once (before or after the rows).
            let subs = r.pre.iter().chain(&r.post);
            let mut found = None;
            for (k, idx) in subs {
                let sub_ptrs: Vec<Ptr> = idx.iter().map(|&i| ptrs[i]).collect();
                if sub_ptrs[0].base == region
                    && let Kernel::Loop(k) = k
                    && writes_elementwise(k, &sub_ptrs, region, arg, copy)
                {
                    found = Some(idx[0]);
                }
            }
            let operand = found?;
            // The region's operand is used by that sub-kernel alone, and the param's
            // operands by sub-kernels run once.
            let uses = r.pre.iter().chain(&r.phases).chain(&r.post).filter(|(_, idx)| idx.contains(&operand)).count();
            let param_in_phase = r.phases.iter().any(|(_, idx)| idx.iter().any(|&i| ptrs[i].base == arg));
            (uses == 1 && !param_in_phase).then_some(operand)?
        }
        Kernel::Pick { .. } | Kernel::OneHot { .. } => return None,
    };
    let region_read_elsewhere = (0..steps.len()).any(|i| live(i) && i != s && touches(i, region, false));
    let param_read_later = (s + 1..steps.len()).any(|i| live(i) && touches(i, arg, false));
    (!region_read_elsewhere && !param_read_later).then_some((s, operand))
}

/// Whether loop `k` (operands `ptrs`) writes all of `region` (as the copy reads it) and
/// reads `arg` only at the element it writes (for a reduction: only in its epilogue).
fn writes_elementwise(k: &LoopKernel, ptrs: &[Ptr], region: Base, arg: Base, copy: &LoopKernel) -> bool {
    if ptrs[0].base != region || ptrs[0].offset != 0 {
        return false;
    }
    let whole = match k.acc {
        None => k.out == copy.out && k.dims == copy.dims,
        Some(_) => k.init,
    };
    let n = k.body_ins();
    let param_ok = k
        .ins
        .iter()
        .zip(&ptrs[1..])
        .enumerate()
        .all(|(j, (st, p))| p.base != arg || (p.offset == 0 && *st == k.out && (k.acc.is_none() || j >= n)));
    whole && param_ok && !ptrs[1..].iter().any(|p| p.base == region)
}
