//! Arena layout: every planned buffer gets a byte offset in the workspace.
//!
//! Without the optimizer each buffer has its own region. With it, buffers share memory by
//! liveness: a buffer lives from the first step that touches it to the last, and a linear
//! scan over the steps gives each new buffer the first free region that fits (first fit,
//! freed regions coalesced). An elementwise kernel may write its output over an input that
//! dies at that step and is read at exactly the output's positions (`relu(z + b)` over the
//! product `z`): in place.

use crate::kernel::Kernel;
use crate::plan::{Base, Ptr, Step};

/// Arena regions are aligned to a cache line.
const ALIGN: usize = 64;

/// Resolves every `Base::Buf` pointer of `steps` to a `Base::Ws` byte offset and returns
/// the arena size in bytes.
pub(crate) fn allocate(steps: &mut [Step], kernels: &[Kernel], bufs: &[usize], reuse: bool) -> usize {
    let n = bufs.len();
    let (mut first, mut last) = (vec![usize::MAX; n], vec![0usize; n]);
    for (i, s) in steps.iter().enumerate() {
        for (p, _, _) in s.accesses(kernels) {
            if let Base::Buf(b) = p.base {
                first[b] = first[b].min(i);
                last[b] = last[b].max(i);
            }
        }
    }
    let bytes = |b: usize| (bufs[b] * 4).div_ceil(ALIGN) * ALIGN;
    let mut offset = vec![0usize; n];
    let mut end = 0;
    if !reuse {
        for b in (0..n).filter(|&b| first[b] != usize::MAX) {
            offset[b] = end;
            end += bytes(b);
        }
    } else {
        let mut free: Vec<(usize, usize)> = Vec::new();
        let mut owner_of: Vec<Option<usize>> = vec![None; n];
        // The bytes of the region each buffer holds (a donated region keeps its size).
        let mut reg: Vec<usize> = (0..n).map(bytes).collect();
        for (i, s) in steps.iter().enumerate() {
            let mut born: Vec<usize> = (0..n).filter(|&b| first[b] == i).collect();
            born.sort_by_key(|&b| std::cmp::Reverse(bytes(b)));
            for b in born {
                let donor =
                    in_place_donor(s, kernels, b, &last, i).filter(|&d| owner_of[d].is_none() && bytes(d) >= bytes(b));
                if let Some(d) = donor {
                    offset[b] = offset[d];
                    reg[b] = reg[d];
                    owner_of[d] = Some(b);
                    continue;
                }
                offset[b] = match free.iter().position(|&(_, size)| size >= bytes(b)) {
                    Some(j) => {
                        let (at, size) = free[j];
                        if size == bytes(b) {
                            free.remove(j);
                        } else {
                            free[j] = (at + bytes(b), size - bytes(b));
                        }
                        at
                    }
                    None => {
                        end += bytes(b);
                        end - bytes(b)
                    }
                };
            }
            for b in (0..n).filter(|&b| last[b] == i && first[b] != usize::MAX && owner_of[b].is_none()) {
                release(&mut free, offset[b], reg[b]);
            }
        }
    }
    for s in steps.iter_mut() {
        let fix = |p: &mut Ptr| {
            if let Base::Buf(b) = p.base {
                p.base = Base::Ws(offset[b]);
            }
        };
        match s {
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
    end
}

/// Returns `(offset, size)` to the free list, merging it with its neighbours.
fn release(free: &mut Vec<(usize, usize)>, at: usize, size: usize) {
    let j = free.partition_point(|&(o, _)| o < at);
    free.insert(j, (at, size));
    if j + 1 < free.len() && free[j].0 + free[j].1 == free[j + 1].0 {
        free[j].1 += free[j + 1].1;
        free.remove(j + 1);
    }
    if j > 0 && free[j - 1].0 + free[j - 1].1 == free[j].0 {
        free[j - 1].1 += free[j].1;
        free.remove(j);
    }
}

/// A buffer `step` reads for the last time (at step `i`) at exactly the positions where it
/// writes `b`, so `b` may take its memory.
fn in_place_donor(step: &Step, kernels: &[Kernel], b: usize, last: &[usize], i: usize) -> Option<usize> {
    let Step::Kernel { kernel, ptrs } = step else { return None };
    let Kernel::Loop(k) = &kernels[*kernel] else { return None };
    if k.acc.is_some() || ptrs[0] != (Ptr { base: Base::Buf(b), offset: 0 }) {
        return None;
    }
    for (j, p) in ptrs[1..].iter().enumerate() {
        let Base::Buf(d) = p.base else { continue };
        let same_place = p.offset == 0 && k.ins[j] == k.out;
        let elsewhere =
            ptrs[1..].iter().enumerate().any(|(j2, p2)| p2.base == p.base && (k.ins[j2] != k.out || p2.offset != 0));
        if d != b && last[d] == i && same_place && !elsewhere {
            return Some(d);
        }
    }
    None
}
