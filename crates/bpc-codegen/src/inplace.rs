//! Writing param updates in place.
//!
//! An update result is first planned as a copy from its workspace region into the param's
//! buffer after every other step. When the one kernel that computes that region is an
//! elementwise loop that reads the param only at the element it writes, and nothing after it
//! reads the param or the region, the kernel writes the param directly and the copy goes.
//! (A train step's `W - lr·dW` is such a kernel: this saves a full pass over every weight.)

use crate::kernel::{Expr, Kernel};
use crate::plan::{Base, Ptr, Step};

/// The pointers a step reads.
fn reads(step: &Step) -> Vec<Ptr> {
    match step {
        Step::Kernel { ptrs, .. } => ptrs[1..].to_vec(),
        Step::Gemm(g) => vec![g.lhs, g.rhs],
    }
}

/// The buffer a step writes.
fn writes(step: &Step) -> Base {
    match step {
        Step::Kernel { ptrs, .. } => ptrs[0].base,
        Step::Gemm(g) => g.dst.base,
    }
}

/// `copies` are `(step index, param argument index)` of the final update copies.
pub(crate) fn write_updates_in_place(steps: &mut Vec<Step>, kernels: &[Kernel], copies: &[(usize, usize)]) {
    let mut dropped = vec![false; steps.len()];
    for &(c, param) in copies {
        if let Some(s) = in_place_writer(steps, kernels, &dropped, c, param) {
            if let Step::Kernel { ptrs, .. } = &mut steps[s] {
                ptrs[0] = Ptr { base: Base::Arg(param), offset: 0 };
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

/// The step that can write `param` directly instead of the region copied by step `c`.
fn in_place_writer(steps: &[Step], kernels: &[Kernel], dropped: &[bool], c: usize, param: usize) -> Option<usize> {
    let live = |i: usize| !dropped[i] && i != c;
    let Step::Kernel { kernel, ptrs } = &steps[c] else { return None };
    let Kernel::Loop(copy) = &kernels[*kernel] else { return None };
    // The copy reads a whole contiguous workspace region.
    let region = ptrs[1].base;
    if copy.body != Expr::In(0) || copy.ins[0] != copy.out || ptrs[1].offset != 0 || !matches!(region, Base::Ws(_)) {
        return None;
    }
    let writers: Vec<usize> = (0..steps.len()).filter(|&i| live(i) && writes(&steps[i]) == region).collect();
    let &[s] = &writers[..] else { return None };
    let Step::Kernel { kernel, ptrs } = &steps[s] else { return None };
    let Kernel::Loop(k) = &kernels[*kernel] else { return None };
    if k.acc.is_some() || ptrs[0].offset != 0 || k.out != copy.out || k.dims != copy.dims {
        return None;
    }
    let arg = Base::Arg(param);
    let elementwise = k.ins.iter().zip(&ptrs[1..]).all(|(st, p)| p.base != arg || (p.offset == 0 && *st == k.out));
    let region_read_elsewhere = (0..steps.len()).any(|i| live(i) && reads(&steps[i]).iter().any(|p| p.base == region));
    let param_read_later = (s + 1..steps.len()).any(|i| live(i) && reads(&steps[i]).iter().any(|p| p.base == arg));
    (elementwise && !region_read_elsewhere && !param_read_later).then_some(s)
}
