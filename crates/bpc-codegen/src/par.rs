//! Large elementwise kernels and reductions split over threads.
//!
//! At MNIST batch 1024 the loop kernels around the products (bias + relu, the relu mask of
//! the backward pass, the bias gradient's sum over the batch) touch 1–3 MB each, read cold
//! from memory, and took 13% of the 2-thread step on the calling thread while the other core
//! waited. A loop kernel whose output keeps an axis (`out` stride ≠ 0 there) computes each
//! output element from operand positions that are linear in the loop indices, so the range
//! of that axis can be cut into blocks: block `i` is the same kernel with that axis shorter
//! and every operand pointer advanced by `i·block` steps of its stride along the axis. Each
//! output element is written by one block, and is computed the same way as unsplit (the
//! reduced axes are walked whole), so the result is bit-identical.
//!
//! A split kernel is compiled as a function of one pointer (the operand address array) for
//! the block length, and another for a shorter last block; the entry stores the operand
//! addresses in a stack slot and calls [`bpc_par`], which runs the blocks on rayon's pool.

use rayon::iter::{IntoParallelIterator, ParallelIterator};

use crate::kernel::{Kernel, LoopKernel};

/// Operands of a kernel that may be split (kernels with more run whole).
pub(crate) const MAX_OPERANDS: usize = 16;

/// A generated block function: `ptrs` holds one address per operand, output first.
pub(crate) type BlockFn = unsafe extern "C" fn(ptrs: *const usize);

/// Where a kernel is cut: along loop axis `axis`, into `parts` blocks of `block` indices (the
/// last one `last` indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    pub axis: usize,
    pub block: usize,
    pub last: usize,
    pub parts: usize,
}

/// The cut of `kernel` for `threads` threads, if it is a loop kernel of at least
/// `min_elements` iterations, too large to inline, with at most [`MAX_OPERANDS`] operands:
/// along an axis the output keeps, the outermost one at least `4·threads` long (blocks within
/// a quarter of each other), else the longest that has room for two blocks. The innermost
/// axis is cut at multiples of 16 elements (whole 64-byte lines of a line-aligned buffer).
pub(crate) fn cut(kernel: &Kernel, threads: usize, min_elements: usize) -> Option<Cut> {
    let Kernel::Loop(k) = kernel else { return None };
    if threads < 2 || kernel.elements() < min_elements || kernel.inline() || k.ins.len() + 1 > MAX_OPERANDS {
        return None;
    }
    let inner = k.dims.len() - 1;
    let split = |axis: usize| {
        let len = k.dims[axis];
        let align = if axis == inner { 16 } else { 1 };
        let block = len.div_ceil(threads).next_multiple_of(align);
        (block < len).then(|| {
            let parts = len.div_ceil(block);
            Cut { axis, block, last: len - (parts - 1) * block, parts }
        })
    };
    let mut kept: Vec<usize> = (0..k.dims.len()).filter(|&d| k.out[d] != 0).collect();
    let long = kept.iter().copied().find(|&d| k.dims[d] >= 4 * threads).and_then(split);
    kept.sort_by_key(|&d| std::cmp::Reverse(k.dims[d]));
    long.or_else(|| kept.into_iter().find_map(split))
}

/// `k` over `len` indices of the cut axis: one block.
pub(crate) fn block_kernel(k: &LoopKernel, axis: usize, len: usize) -> Kernel {
    let mut dims = k.dims.clone();
    dims[axis] = len;
    Kernel::Loop(LoopKernel { dims, ..k.clone() })
}

/// What [`bpc_par`] needs to run one split kernel; owned by the compiled function and
/// addressed by its entry.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ParDesc {
    pub parts: usize,
    pub operands: usize,
    /// Bytes each operand's address advances from one block to the next.
    pub advance: [isize; MAX_OPERANDS],
    /// The function of the first `parts - 1` blocks, and of the last.
    pub block: Option<BlockFn>,
    pub last: Option<BlockFn>,
}

impl ParDesc {
    pub(crate) fn new(k: &LoopKernel, c: Cut) -> ParDesc {
        let mut advance = [0; MAX_OPERANDS];
        for (a, s) in advance.iter_mut().zip(std::iter::once(&k.out).chain(&k.ins)) {
            *a = s[c.axis] * c.block as isize * 4;
        }
        ParDesc { parts: c.parts, operands: k.ins.len() + 1, advance, block: None, last: None }
    }
}

/// Runs the blocks of a split kernel on rayon's pool (called from a pool thread, as `bpc
/// train` calls the step, that thread runs blocks too; from any other thread it waits).
///
/// # Safety
/// `desc` points to a live, finalized [`ParDesc`]; `ptrs` to its `operands` addresses, each
/// valid for every element the unsplit kernel reaches; no input shares memory with an output
/// element another block writes (the planner's in-place kernels read an aliased input only at
/// the element being written).
pub(crate) unsafe extern "C" fn bpc_par(desc: *const ParDesc, ptrs: *const usize) {
    // SAFETY: the entry passes its own descriptor and a stack array of `operands` addresses.
    let (d, base) = unsafe { (&*desc, std::slice::from_raw_parts(ptrs, (*desc).operands)) };
    (0..d.parts).into_par_iter().for_each(|i| {
        let mut at = [0usize; MAX_OPERANDS];
        for ((a, &p), &step) in at.iter_mut().zip(base).zip(&d.advance) {
            *a = p.wrapping_add_signed(step * i as isize);
        }
        let f = if i + 1 == d.parts { d.last } else { d.block };
        let f = f.expect("a finalized descriptor");
        // SAFETY: block `i` of the kernel reaches only elements the whole kernel reaches,
        // and writes outputs no other block writes (the cut axis is kept by the output).
        unsafe { f(at.as_ptr()) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{Acc, Expr};

    fn map(dims: Vec<usize>, strides: Vec<isize>) -> Kernel {
        Kernel::Loop(LoopKernel::new(dims, strides.clone(), vec![strides], Expr::In(0), None))
    }

    #[test]
    fn flat_maps_are_cut_at_whole_lines() {
        let c = cut(&map(vec![262_144], vec![1]), 2, 1 << 16).unwrap();
        assert_eq!(c, Cut { axis: 0, block: 131_072, last: 131_072, parts: 2 });
        let c = cut(&map(vec![100_001], vec![1]), 2, 1 << 16).unwrap();
        assert_eq!(c, Cut { axis: 0, block: 50_016, last: 49_985, parts: 2 });
        let c = cut(&map(vec![100_000], vec![1]), 3, 1 << 16).unwrap();
        assert_eq!(c, Cut { axis: 0, block: 33_344, last: 33_312, parts: 3 });
        assert_eq!(cut(&map(vec![1000], vec![1]), 2, 1 << 16), None, "too small");
        assert_eq!(cut(&map(vec![262_144], vec![1]), 1, 1 << 16), None, "one thread");
        assert_eq!(cut(&map(vec![64], vec![1]), 2, 0), None, "inlined");
        assert_eq!(cut(&map(vec![4, 32], vec![32, 1]), 2, 0).map(|c| (c.axis, c.block)), Some((1, 16)), "longest");
        assert_eq!(cut(&map(vec![80], vec![1]), 8, 0).map(|c| c.parts), Some(5), "whole lines");
    }

    #[test]
    fn rows_are_cut_anywhere_and_reductions_along_a_kept_axis() {
        // Bias + relu over [1024, 256]: by rows.
        let c = cut(&map(vec![1024, 256], vec![256, 1]), 2, 1 << 16).unwrap();
        assert_eq!(c, Cut { axis: 0, block: 512, last: 512, parts: 2 });
        let c = cut(&map(vec![1023, 256], vec![256, 1]), 2, 1 << 16).unwrap();
        assert_eq!(c, Cut { axis: 0, block: 512, last: 511, parts: 2 });
        // The bias gradient, a sum over the batch of [1024, 256]: by columns.
        let sum = LoopKernel::new(vec![1024, 256], vec![0, 1], vec![vec![256, 1]], Expr::In(0), Some(Acc::Sum));
        let c = cut(&Kernel::Loop(sum.clone()), 2, 1 << 16).unwrap();
        assert_eq!(c, Cut { axis: 1, block: 128, last: 128, parts: 2 });
        let d = ParDesc::new(&sum, c);
        assert_eq!((d.parts, d.operands, &d.advance[..2]), (2, 2, &[512, 512][..]));
        // A full reduction keeps no axis.
        let all = LoopKernel::new(vec![1024, 256], vec![0, 0], vec![vec![256, 1]], Expr::In(0), Some(Acc::Sum));
        assert_eq!(cut(&Kernel::Loop(all), 2, 1 << 16), None);
        // A short outer axis is passed over for an even cut: [3, 4096] by columns; [5, 40]
        // by columns too, in whole lines (32 and 8).
        let c = cut(&map(vec![3, 4096], vec![4096, 1]), 2, 0).unwrap();
        assert_eq!((c.axis, c.block, c.parts), (1, 2048, 2));
        let c = cut(&map(vec![5, 40], vec![40, 1]), 2, 0).unwrap();
        assert_eq!((c.axis, c.block, c.last), (1, 32, 8));
        // [5, 7, 3]: no axis 8 long; the longest, 7, splits as 4 and 3.
        let c = cut(&map(vec![5, 7, 3], vec![21, 3, 1]), 2, 0).unwrap();
        assert_eq!((c.axis, c.block, c.last), (1, 4, 3));
    }
}
