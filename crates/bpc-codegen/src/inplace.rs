//! Writing param updates in place.
//!
//! An update result is first planned as a copy from its arena buffer into the param's
//! buffer after every other step. When the kernel that last writes that buffer computes its
//! final value elementwise and reads the param only at the element it writes (an
//! elementwise loop, the epilogue of a reduction such as `b − lr·Σ_b dY`, or such a loop run
//! after the row loop of a fused `rows` kernel), and nothing after it reads the old value
//! of the param, that kernel writes the param directly and the copy goes; steps after it that read
//! the buffer read the param instead. (A train step's `W − lr·dW` is such a kernel: this
//! saves a full pass over every weight; Adam's new moments `m`, `v` are written straight
//! into their state and read from there by the weight's update.)

use crate::kernel::{Expr, Kernel, LoopKernel};
use crate::plan::{Base, Ptr, Step, natural_strides};

/// `copies` are `(step index, param argument index)` of the final update copies. Kernels
/// may be added (a rows kernel with one more operand).
pub(crate) fn write_updates_in_place(steps: &mut Vec<Step>, kernels: &mut Vec<Kernel>, copies: &[(usize, usize)]) {
    let mut dropped = vec![false; steps.len()];
    for &(c, param) in copies {
        if let Some((s, redirect)) = in_place_writer(steps, kernels, &dropped, c, param) {
            let region = match &steps[c] {
                Step::Kernel { ptrs, .. } => ptrs[1].base,
                Step::Gemm(_) => continue,
            };
            // Later readers of the update (Adam's new moment read by the param's update)
            // read it from the param's buffer, which holds it from step `s` on.
            for later in s + 1..steps.len() {
                if !dropped[later] && later != c {
                    rebase(&mut steps[later], region, Base::Arg(param));
                }
            }
            let Step::Kernel { kernel, ptrs } = &mut steps[s] else { continue };
            let arg = Ptr { base: Base::Arg(param), offset: 0 };
            match redirect {
                Redirect::Output => ptrs[0] = arg,
                Redirect::Post(j) => {
                    let Kernel::Rows(r) = &kernels[*kernel] else { continue };
                    let mut r = r.clone();
                    r.row_strides.push(0);
                    if let Some(pair) = &mut r.pair {
                        pair.push(0);
                    }
                    r.post[j].1[0] = r.row_strides.len() - 1;
                    ptrs.push(arg);
                    kernels.push(Kernel::Rows(r));
                    *kernel = kernels.len() - 1;
                }
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

/// Points every operand of `step` into `from` at the same offset of `to`.
fn rebase(step: &mut Step, from: Base, to: Base) {
    let fix = |p: &mut Ptr| {
        if p.base == from {
            p.base = to;
        }
    };
    match step {
        Step::Kernel { ptrs, .. } => ptrs.iter_mut().for_each(fix),
        Step::Gemm(g) => {
            for p in [&mut g.dst, &mut g.lhs, &mut g.rhs] {
                fix(p);
            }
            for p in [&mut g.scale, &mut g.beta_scale].into_iter().flatten() {
                fix(p);
            }
        }
    }
}

/// Which operand of the writer becomes the param.
enum Redirect {
    /// A loop kernel's output.
    Output,
    /// The output of `post[j]` of a rows kernel (a new operand).
    Post(usize),
}

/// The step that can write `param` directly instead of the buffer copied by step `c`.
fn in_place_writer(
    steps: &[Step],
    kernels: &[Kernel],
    dropped: &[bool],
    c: usize,
    param: usize,
) -> Option<(usize, Redirect)> {
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
    let s = (0..steps.len()).rfind(|&i| live(i) && touches(i, region, true))?;
    let arg = Base::Arg(param);
    // Later readers of the region are pointed at the param (it holds the same values from
    // step `s` on); later readers of the param would see the update too early.
    let param_read_later = (s + 1..steps.len()).any(|i| live(i) && touches(i, arg, false));
    if param_read_later || touches(s, arg, true) {
        return None;
    }
    let Step::Kernel { kernel, ptrs } = &steps[s] else { return None };
    match &kernels[*kernel] {
        Kernel::Loop(k) => final_elementwise(k, ptrs, region, arg, copy).then_some((s, Redirect::Output)),
        Kernel::Rows(r) => {
            // The last sub-kernel writing the region runs after the rows, and no later one
            // reads the param.
            let sub_ptrs = |idx: &[usize]| -> Vec<Ptr> { idx.iter().map(|&i| ptrs[i]).collect() };
            let (j, (k, idx)) = r.post.iter().enumerate().rev().find(|(_, (_, idx))| ptrs[idx[0]].base == region)?;
            let Kernel::Loop(k) = k else { return None };
            let later = r.post[j + 1..]
                .iter()
                .any(|(_, idx)| idx.iter().any(|&i| ptrs[i].base == arg || ptrs[i].base == region));
            (!later && final_elementwise(k, &sub_ptrs(idx), region, arg, copy)).then_some((s, Redirect::Post(j)))
        }
        Kernel::Pick { .. } | Kernel::OneHot { .. } => None,
    }
}

/// Whether loop `k` (operands `ptrs`) writes the final value of all of `region` (as the
/// copy reads it) and reads `arg` only at the element it writes (in a reduction, only in
/// its epilogue).
fn final_elementwise(k: &LoopKernel, ptrs: &[Ptr], region: Base, arg: Base, copy: &LoopKernel) -> bool {
    if ptrs[0].base != region || ptrs[0].offset != 0 {
        return false;
    }
    // The same loop, or both dense row-major over the same number of elements (the copy's
    // loop is collapsed to one axis; a loop with a broadcast operand is not).
    let dense = |l: &LoopKernel| l.out == natural_strides(&l.dims);
    let len = |l: &LoopKernel| l.dims.iter().product::<usize>();
    let whole = match k.acc {
        None => (k.out == copy.out && k.dims == copy.dims) || (dense(k) && dense(copy) && len(k) == len(copy)),
        Some(_) => k.init,
    };
    let n = k.body_ins();
    let param_ok = k
        .ins
        .iter()
        .zip(&ptrs[1..])
        .enumerate()
        .all(|(j, (st, p))| p.base != arg || (p.offset == 0 && *st == k.out && (k.acc.is_none() || j >= n)));
    whole && param_ok
}
