//! Data-parallel execution: a function split by `bpc_opt::shard_for_batch` into shards of the
//! minibatch, each compiled for its rows and run on its own thread with its own workspace,
//! then the combine, which adds the shards' partial sums and runs the rest on the calling
//! thread (its large kernels split over the threads as usual).
//!
//! The sharded [`Compiled`] keeps the original function's calling convention: the shards
//! read rows `s·r .. (s+1)·r` of every batched argument and write the same rows of every
//! batched result (row-major with the batch axis first, so a shard's rows are one
//! contiguous block); the partial sums live in the outer workspace.

use std::time::Instant;

use bpc_ir::Function;
use rayon::iter::{IndexedParallelIterator, IntoParallelRefMutIterator, ParallelIterator};

use crate::runtime::{Code, Compiled, Workspace};
use crate::{CodegenError, Options, Stats, buffers, compile_with};

/// Where a pointer of an inner call comes from.
#[derive(Clone, Copy, Debug)]
enum Src {
    /// The outer call's argument or result pointer `slot`, advanced by `row_bytes` per row
    /// of the shard's offset (0 for a shared buffer).
    Outer { slot: usize, row_bytes: usize },
    /// Partial sum `index` in the outer workspace (shard-major), advanced by one shard's
    /// partials per shard of the offset: a shard's `partial.i` is `Partial(i)`, the combine's
    /// `partial.i.s` is `Partial(s·count + i)` at offset 0.
    Partial(usize),
}

pub(crate) struct Sharding {
    shard: Compiled,
    combine: Compiled,
    shards: usize,
    rows: usize,
    /// Per shard argument, then per shard result.
    shard_ptrs: Vec<Src>,
    /// Per combine argument, then per combine result.
    combine_ptrs: Vec<Src>,
    /// Byte offset of each partial (shard-major) in the outer workspace.
    partials: Vec<usize>,
    partial_bytes: usize,
    pub(crate) clif: Vec<(String, String)>,
}

/// Compiles the shards and combine of `func` (as split by `bpc_opt::shard_for_batch`, whose
/// conventions this checks by name) for minibatch size `batch`: one [`Compiled`] with
/// `func`'s arguments and results. The shards are compiled for one thread each. `shards` and
/// `batch` must be those of the split (`Sharded::shards`, `Sharded::batch`): the combine reads
/// one set of partial sums per shard (checked) and its mean's `1/B` is a constant (not
/// checkable here).
pub fn compile_sharded(
    func: &Function,
    shard: &Function,
    combine: &Function,
    shards: usize,
    batch: usize,
    opts: &Options,
) -> Result<Compiled, CodegenError> {
    let start = Instant::now();
    let fail = |m: String| CodegenError(format!("{}: sharding: {m}", func.name));
    if shards < 2 || !batch.is_multiple_of(shards) {
        return Err(fail(format!("{batch} rows cannot be cut into {shards} equal shards")));
    }
    let rows = batch / shards;
    let shard_c = compile_with(shard, rows, &Options { threads: 1, ..opts.clone() })?;
    let combine_c = compile_with(combine, batch, opts)?;
    let (args, results) = buffers(func, batch);
    let row_bytes = |len: usize, batched: bool| if batched { len / batch * 4 } else { 0 };
    let arg_slot = |name: &str| {
        let i = func.args.iter().position(|a| a.name == name)?;
        Some(Src::Outer { slot: i, row_bytes: row_bytes(args[i].len, func.args[i].ty.shape.batch) })
    };
    let result_slot = |name: &str| {
        let i = results.iter().position(|r| r.name == name)?;
        let batched = func.result(name).is_some_and(|r| func.shape(r.value).batch);
        Some(Src::Outer { slot: args.len() + i, row_bytes: row_bytes(results[i].len, batched) })
    };
    let shard_partials: Vec<usize> =
        shard_c.results.iter().filter(|r| r.name.starts_with("partial.")).map(|r| r.len).collect();
    let mut partials = Vec::new();
    let mut partial_bytes = 0;
    for _ in 0..shards {
        for len in &shard_partials {
            partials.push(partial_bytes);
            partial_bytes += (len * 4).next_multiple_of(64);
        }
    }
    let partial_index = |name: &str| -> Option<usize> {
        let (i, s) = name.strip_prefix("partial.")?.split_once('.')?;
        let (i, s): (usize, usize) = (i.parse().ok()?, s.parse().ok()?);
        (i < shard_partials.len() && s < shards).then_some(s * shard_partials.len() + i)
    };
    let mut shard_ptrs = Vec::new();
    for a in &shard_c.args {
        shard_ptrs
            .push(arg_slot(&a.name).ok_or_else(|| fail(format!("shard argument {} is not the function's", a.name)))?);
    }
    for (k, r) in shard_c.results.iter().enumerate() {
        let src = match r.name.strip_prefix("partial.") {
            Some(_) => Some(Src::Partial(k - (shard_c.results.len() - shard_partials.len()))),
            None => result_slot(&r.name),
        };
        shard_ptrs.push(src.ok_or_else(|| fail(format!("shard result {} is not the function's", r.name)))?);
    }
    let partial_args =
        combine_c.args.iter().filter_map(|a| partial_index(&a.name)).collect::<std::collections::BTreeSet<_>>();
    if partial_args.len() != shards * shard_partials.len()
        || combine_c.args.iter().any(|a| a.name.starts_with("partial.") && partial_index(&a.name).is_none())
    {
        return Err(fail(format!(
            "the combine does not read the {} partial sums of {shards} shards",
            shard_partials.len()
        )));
    }
    let mut combine_ptrs = Vec::new();
    for a in &combine_c.args {
        let src = partial_index(&a.name).map(Src::Partial).or_else(|| arg_slot(&a.name));
        combine_ptrs.push(src.ok_or_else(|| fail(format!("combine argument {} is unknown", a.name)))?);
    }
    for r in &combine_c.results {
        combine_ptrs.push(
            result_slot(&r.name).ok_or_else(|| fail(format!("combine result {} is not the function's", r.name)))?,
        );
    }
    let (s, c) = (shard_c.stats, combine_c.stats);
    let stats = Stats {
        kernels: s.kernels + c.kernels,
        kernel_calls: shards * s.kernel_calls + c.kernel_calls,
        inlined: shards * s.inlined + c.inlined,
        gemm_calls: shards * s.gemm_calls + c.gemm_calls,
        owner_splits: c.owner_splits,
        packed_gemms: shards * s.packed_gemms + c.packed_gemms,
        parallel_kernels: c.parallel_kernels,
        row_products: s.row_products + c.row_products,
        workspace_bytes: shards * s.workspace_bytes + c.workspace_bytes + partial_bytes,
        shards,
    };
    let clif = [("shard", &shard_c), ("combine", &combine_c)]
        .iter()
        .flat_map(|(part, c)| c.clif().iter().map(move |(n, t)| (format!("{part}.{n}"), t.clone())))
        .collect();
    let sharding = Sharding {
        shard: shard_c,
        combine: combine_c,
        shards,
        rows,
        shard_ptrs,
        combine_ptrs,
        partials,
        partial_bytes,
        clif,
    };
    Ok(Compiled {
        id: crate::runtime::next_id(),
        name: func.name.clone(),
        batch,
        compile_time: start.elapsed(),
        args,
        results,
        stats,
        code: Code::Sharded(Box::new(sharding)),
    })
}

impl Sharding {
    pub(crate) fn partial_bytes(&self) -> usize {
        self.partial_bytes
    }

    /// The shards' workspaces, then the combine's.
    pub(crate) fn workspaces(&self) -> Result<Vec<Workspace>, CodegenError> {
        let mut w = (0..self.shards).map(|_| self.shard.try_workspace()).collect::<Result<Vec<_>, _>>()?;
        w.push(self.combine.try_workspace()?);
        Ok(w)
    }

    /// Runs the shards on rayon's threads, then the combine.
    ///
    /// # Safety
    /// `ws.ptrs` holds the outer call's checked argument and result pointers, and `ws` was
    /// made by the `Compiled` owning `self`.
    pub(crate) unsafe fn run(&self, ws: &mut Workspace) {
        let base = ws.mem.as_mut_ptr() as usize;
        let resolve = |src: Src, shard: usize, outer: &[usize]| match src {
            Src::Outer { slot, row_bytes } => outer[slot] + shard * self.rows * row_bytes,
            Src::Partial(i) => base + self.partials[shard * (self.partials.len() / self.shards) + i],
        };
        let (outer, inner) = (&ws.ptrs, &mut ws.inner);
        for (s, w) in inner[..self.shards].iter_mut().enumerate() {
            for (p, &src) in w.ptrs.iter_mut().zip(&self.shard_ptrs) {
                *p = resolve(src, s, outer);
            }
        }
        // The combine's partials are indexed across all shards: as shard 0's, they need no offset.
        for (p, &src) in inner[self.shards].ptrs.iter_mut().zip(&self.combine_ptrs) {
            *p = resolve(src, 0, outer);
        }
        let (Code::Jit(shard), Code::Jit(combine_code)) = (&self.shard.code, &self.combine.code) else {
            unreachable!("shards and combines are compiled by compile_with");
        };
        let entry = shard.entry;
        inner[..self.shards].par_iter_mut().with_max_len(1).for_each(|w| {
            // SAFETY: each shard's pointers address its own rows of the batched buffers, its
            // own partials, the shared read-only arguments and its own workspace.
            unsafe { w.enter(entry) }
        });
        // SAFETY: the combine reads the partials the shards wrote and the outer shared buffers.
        unsafe { inner[self.shards].enter(combine_code.entry) }
    }
}
