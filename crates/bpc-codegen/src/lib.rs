//! # bpc-codegen: Cranelift JIT
//!
//! [`compile`] turns a [`bpc_ir::Function`] into native code specialized for one minibatch
//! size. The invariants it keeps:
//!
//! - **Buffers.** Arguments and (non-update) results are the caller's buffers, passed to
//!   [`Compiled::run`] in `Function::args` / `Function::results` order and checked against
//!   the types at the compiled batch size. Every other stored value gets a 64-byte-aligned
//!   region of one workspace arena ([`Workspace`], one per thread, allocated once); after
//!   the optimizer, regions are shared by liveness and an elementwise kernel may write over
//!   an input that dies there (`alloc.rs`). A result value is computed straight into its
//!   buffer. An update result is written over its param's [`Arg::F32Mut`] buffer: by the
//!   GEMM or kernel that computes it when that reads the param only elementwise and nothing
//!   reads the old param later (`W - lr·dW`; later readers of the update read the param,
//!   `inplace.rs`), else by a copy after every other step.
//! - **Views are free** (`plan.rs`). `reshape`, `broadcast`, `transpose` and `index` are
//!   strided views of their operand; consumers read them with those strides (stride 0 on
//!   broadcast axes), GEMM takes transposes as strides. Constants and the batch size fold
//!   into kernel bodies; `pow` by a constant integer becomes multiplications.
//! - **Kernels** (`kernel.rs`) are loop nests over an output shape with a body built from
//!   ops; the optimizer's fused groups (`Function::kernels`) become one loop nest each,
//!   their inner members never stored (`lazy.rs`, `reduce.rs`, `rows.rs`). Identical
//!   kernels are compiled once, kernels of a few dozen elements are emitted inline in the
//!   entry, and those of 64 K iterations or more are cut into one block per thread along
//!   an axis their output keeps (`par.rs`). Elementwise work is `f32x4` (the widest
//!   Cranelift type on x64), unrolled, with branch-free masks for `relu`, `max`, `where`
//!   and comparisons, and polynomial `exp`/`log` (`math.rs`). Reductions keep accumulators
//!   in registers (rows, and columns for sums over the batch) and compensate sums (Kahan,
//!   over pairwise groups of 8 vectors).
//!   Matrix products call `gemmkit` through an `extern "C"` shim (`gemm.rs`), with packing
//!   memory owned by the workspace (and, for products split over threads, by each pool
//!   thread), so a step allocates nothing, except through rayon when it splits work from
//!   outside its pool (see [`Compiled::run`]).
//! - **Data parallelism** (`shard.rs`, [`compile_sharded`]). A function split by
//!   `bpc_opt::shard_for_batch` runs one shard of the minibatch's rows per thread, each
//!   compiled for one thread with its own workspace, then a combine that adds the shards'
//!   partial sums and runs the update; the caller sees one [`Compiled`] with the original
//!   arguments and results.
//! - **Entry.** One function `extern "C" fn(ptrs, ws)` runs the steps in program order.
//!   Compiled code is immutable: a [`Compiled`] is `Send + Sync`; each thread brings its own
//!   workspace.
//!
//! Deviations from the interpreter, by design: arithmetic is `f32` (the oracle is `f64`),
//! `exp`/`log`/`tanh` are within 1 ulp and `sigmoid`/`softplus`/`log_sigmoid` within 2 (see
//! `tests/math.rs`), GEMM sums in plain `f32`, and a class label outside `0..classes` gives
//! NaN (a NaN row for `onehot`) instead of an error, never an out-of-bounds read.

mod alloc;
mod dots;
mod emit;
mod gemm;
mod inplace;
mod jit;
mod kernel;
mod labels;
mod lazy;
mod math;
mod ops;
mod outer;
mod par;
mod plan;
mod reduce;
mod rows;
mod runtime;
mod shard;
mod thin;

use std::fmt;
use std::time::Instant;

use bpc_ir::{DType, Function};

pub use runtime::{BufferInfo, Compiled, Workspace};
pub use shard::compile_sharded;

/// A caller buffer bound to one argument of a compiled function, in `Function::args` order.
pub enum Arg<'a> {
    /// Inputs, real labels, params that are only read, hyperparameters (`f32[]`: one float).
    F32(&'a [f32]),
    /// Class labels.
    I32(&'a [i32]),
    /// A param the function updates in place (a result with `update: Some(param)`).
    F32Mut(&'a mut [f32]),
}

/// Why a call was refused: a buffer of the wrong length or kind, a foreign workspace.
#[derive(Debug)]
pub struct CallError(
    /// The message: the function's name and what was wrong.
    pub String,
);

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CallError {}

/// Why compilation failed.
#[derive(Debug)]
pub struct CodegenError(pub String);

impl fmt::Display for CodegenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodegenError {}

/// Compilation settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Keep the CLIF text of every generated function ([`Compiled::clif`], `--emit clif`).
    pub keep_clif: bool,
    /// Threads for large matrix products; 0 means all available cores.
    pub threads: usize,
    /// Products with at least this many multiply-adds (`m·n·k`) that are not split by owner
    /// computes are split over `threads` by the GEMM library.
    pub gemm_parallel_min: usize,
    /// Products with at least `owner_split_min` and fewer than `owner_split_max`
    /// multiply-adds are split over `threads` by rows of their largest operand when that
    /// operand is a caller's buffer whose rows do not run along the contracted axis, each
    /// rayon thread preferring the same rows every time (see [`DEFAULT_OWNER_SPLIT_MIN`],
    /// [`DEFAULT_OWNER_SPLIT_MAX`]); other products below `gemm_parallel_min` run on the
    /// calling thread.
    pub owner_split_min: usize,
    /// The end (exclusive) of the owner-computes range of [`Options::owner_split_min`].
    pub owner_split_max: usize,
    /// Loop kernels (elementwise maps, reductions keeping an axis) of at least this many
    /// iterations are split over `threads` along an axis their output keeps
    /// ([`DEFAULT_PARALLEL_KERNEL_MIN`]).
    pub parallel_kernel_min: usize,
    /// A dot product inlined in a kernel whose rows have at least this many multiply-adds is
    /// computed a row at a time by an AVX-512 call ([`DEFAULT_ROW_PRODUCT_MIN`]; `usize::MAX`
    /// never). Same values bit for bit; only on CPUs with AVX-512F and FMA.
    pub row_product_min: usize,
    /// Products that gemmkit, after its orientation swap, would run reading a column-major
    /// left operand in place, with a depth stride of at least 512 elements, at least 64
    /// columns and a depth `k` of at least this, run with both operands packed instead
    /// (`gemm.rs`, `packs_both`; [`DEFAULT_PACK_DEPTH_MIN`]; `usize::MAX` never). Same values
    /// bit for bit.
    pub pack_depth_min: usize,
    /// With more than one thread, a minibatch that cuts into one equal shard per thread of at
    /// least this many rows runs data-parallel (`bpc_opt::shard_for_batch`,
    /// [`compile_sharded`]; [`DEFAULT_SHARD_ROWS_MIN`]; `usize::MAX` never). The caller
    /// decides, since the split needs the function before the optimizer.
    pub shard_rows_min: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            keep_clif: false,
            threads: 0,
            gemm_parallel_min: DEFAULT_GEMM_PARALLEL_MIN,
            owner_split_min: DEFAULT_OWNER_SPLIT_MIN,
            owner_split_max: DEFAULT_OWNER_SPLIT_MAX,
            parallel_kernel_min: DEFAULT_PARALLEL_KERNEL_MIN,
            row_product_min: DEFAULT_ROW_PRODUCT_MIN,
            pack_depth_min: DEFAULT_PACK_DEPTH_MIN,
            shard_rows_min: DEFAULT_SHARD_ROWS_MIN,
        }
    }
}

/// Measured on the shared 2-vCPU VM with the MNIST train step at 2 threads (whole-process
/// A/B, 12 interleaved runs, against the earlier 32M cut): batch 128 (its two large products
/// have 25.7M multiply-adds) took 0.66× the time split over two threads; batch 64 (12.8M)
/// 1.14× and batch 32 (6.4M) 1.18× when split by the library, so the cut is 16M. It now
/// governs the products without an owner-computes cut and those from
/// [`DEFAULT_OWNER_SPLIT_MAX`] up (MNIST's layers from batch 256; batch 1024 on two threads
/// is sharded instead); batch 32–128's layers are split by owner computes.
pub const DEFAULT_GEMM_PARALLEL_MIN: usize = 1 << 24;

/// Products from here up to [`DEFAULT_OWNER_SPLIT_MAX`] multiply-adds are split by the
/// owner-computes rule when their largest operand is a caller's buffer (a param, an input, a
/// result) that can be cut into whole rows of the output: the MNIST `x·W1ᵀ` and
/// `W1 − lr·dHᵀ·x` then touch the same half of `W1` on the same core, which keeps that half
/// in the core's L2 from one product to the next. MNIST train step at 2 threads,
/// whole-process A/B against one thread per product (10–12 interleaved runs): batch 8 took
/// 0.75× the time, batch 32 0.66×, batch 64 0.70×.
/// The same two products split with the halves crossed between the cores ran no faster than
/// one thread, and gemmkit's own parallel loops at batch 32 took 1.3× the owner split's time.
/// Batch 2's products (0.4M) gained less and batch 1's (0.2M) lost, hence the 1M cut.
pub const DEFAULT_OWNER_SPLIT_MIN: usize = 1 << 20;

/// Products with an owner-computes cut take it up to this many multiply-adds, above
/// [`DEFAULT_GEMM_PARALLEL_MIN`] too. MNIST train step at 2 threads, whole-process A/B of
/// 8–10 interleaved runs: at batch 128 (25.7M in each large product) the owner split ran at
/// 1.08× and 1.09× gemmkit's parallel loops; at batch 256 (51.4M) 0.76×, batch 512 0.81×,
/// batch 1024 (unsharded) 0.81×: from batch 256 `x` is as large as `W1` or larger, and the
/// products cut along `x`'s rows, or run on one thread where `x`'s rows lie along the
/// contracted axis (the weight gradient).
pub const DEFAULT_OWNER_SPLIT_MAX: usize = 1 << 25;

/// The relu mask of the backward pass, `(h > 0) ? dY·W2 : 0`, fuses the product `dY·W2` into
/// its kernel as a `k`-long dot product per element, which Cranelift's 4-lane vectors run
/// slowly; from this many multiply-adds per row it is computed a row at a time by AVX-512 into
/// a stack buffer. Train steps with the call against without (in-process paired medians of 31
/// rounds): iris' rows (3 × 16 = 48) 0.95× the speed, so small rows stay inlined; digits'
/// (10 × 32) 1.03×; MNIST's (10 × 256) 1.03× at batch 32 and 128 and 1.19× at batch 1.
pub const DEFAULT_ROW_PRODUCT_MIN: usize = 256;

/// The weight gradient of MNIST's first layer, `W1 − lr·dHᵀ·x`, contracts the minibatch: from
/// this batch size up gemmkit runs it with both operands packed (`gemm.rs`, `packs_both`).
/// MNIST train step, in-process paired medians of 21 rounds, packed against not: batch 1024
/// 1.09× the speed on two threads and 1.07× on one, batch 512 1.03× on two (an earlier A/B
/// of 15 rounds: 1.09–1.12× on two, 1.13–1.15× on one).
pub const DEFAULT_PACK_DEPTH_MIN: usize = 512;

/// Shards of this many rows up run data-parallel ([`Options::shard_rows_min`]). MNIST train
/// step on 2 threads, two shards against the product-by-product split (in-process paired
/// medians of 15 rounds, scratch measurement before this landed): batch 1024 1.03–1.25× the
/// speed, batch 2048 1.03–1.33×, batch 512 0.95–1.02×, batch 256 1.03×, batch 128 0.84×,
/// batch 32 0.63×. With 512 rows a shard's `x` (1.6 MB) stays in its core's 2 MB L2 from the
/// forward product to the weight gradient.
pub const DEFAULT_SHARD_ROWS_MIN: usize = 512;

/// Loop kernels from this many iterations up are split over the threads (`par.rs`). MNIST
/// train step at 2 threads: batch 1024 (bias + relu, the relu mask and the bias gradient over
/// 1024×256) took 0.93× the time split (whole-process A/B, 16 interleaved runs); at batch 128
/// (32 K-element kernels) a cut at 16 K measured the same as none (1.007×, in-process
/// paired medians), so those stay whole.
pub const DEFAULT_PARALLEL_KERNEL_MIN: usize = 1 << 16;

/// What a compiled function is made of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Distinct generated kernel functions (identical kernels are shared).
    pub kernels: usize,
    /// Kernel calls per run.
    pub kernel_calls: usize,
    /// Small kernels emitted inline in the entry function (not counted above).
    pub inlined: usize,
    /// GEMM calls per run.
    pub gemm_calls: usize,
    /// Of those, the calls split over the threads by owner computes ([`Options::owner_split_min`]).
    pub owner_splits: usize,
    /// Of those, the calls gemmkit runs with both operands packed ([`Options::pack_depth_min`]).
    pub packed_gemms: usize,
    /// Of the generated kernels, those split over the threads
    /// ([`Options::parallel_kernel_min`]).
    pub parallel_kernels: usize,
    /// Call sites in the generated code of the AVX-512 row product: a dot product inlined in
    /// a map kernel (`(h > 0) ? dY·W2 : 0`) whose rows it computes (`outer.rs`).
    pub row_products: usize,
    /// Workspace arena size (of a sharded function: every shard's, the combine's and the
    /// partial sums).
    pub workspace_bytes: usize,
    /// Data-parallel shards the minibatch is cut into ([`compile_sharded`]); 0 when it is not.
    /// The call counts above are then per run (every shard's plus the combine's); `kernels`
    /// and `row_products` count the shard's code once.
    pub shards: usize,
}

/// JIT-compiles `func` for minibatch size `batch` with default [`Options`].
pub fn compile(func: &Function, batch: usize) -> Result<Compiled, CodegenError> {
    compile_with(func, batch, &Options::default())
}

/// The caller's buffers of `func` at minibatch size `batch`: its arguments, and its results
/// that are not in-place updates.
fn buffers(func: &Function, batch: usize) -> (Vec<BufferInfo>, Vec<BufferInfo>) {
    let updated: Vec<bool> =
        (0..func.args.len()).map(|i| func.results.iter().any(|r| r.update.map(|p| p.index()) == Some(i))).collect();
    let args = func
        .args
        .iter()
        .zip(updated)
        .map(|(a, updated)| BufferInfo { name: a.name.clone(), dtype: a.ty.dtype, len: a.ty.shape.len(batch), updated })
        .collect();
    let results = func
        .results
        .iter()
        .filter(|r| r.update.is_none())
        .map(|r| BufferInfo {
            name: r.name.clone(),
            dtype: DType::F32,
            len: func.shape(r.value).len(batch),
            updated: false,
        })
        .collect();
    (args, results)
}

/// The threads `opts.threads` asks for (0: every core).
pub fn threads(opts: &Options) -> usize {
    match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// JIT-compiles `func` for minibatch size `batch`. Fails on IR the verifier rejects, a batch
/// size of 0, a non-`f32` result, or buffers too large to address.
pub fn compile_with(func: &Function, batch: usize, opts: &Options) -> Result<Compiled, CodegenError> {
    let start = Instant::now();
    let fail = |m: String| Err(CodegenError(format!("{}: {m}", func.name)));
    if let Err(e) = bpc_ir::verify(func) {
        return fail(format!("invalid IR: {e}"));
    }
    if batch == 0 {
        return fail("the minibatch size must be at least 1".into());
    }
    for v in func.values() {
        let sizes = func.shape(v).sizes(batch);
        if sizes.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).is_none_or(|n| n > (isize::MAX as usize) / 8) {
            return fail(format!("{v} is too large to address at batch size {batch}"));
        }
    }
    if let Some(r) = func.results.iter().find(|r| func.ty(r.value).dtype != DType::F32) {
        return fail(format!("result {} is {}; results must be f32", r.name, func.ty(r.value)));
    }
    let threads = threads(opts);
    let policy = plan::GemmPolicy {
        threads,
        parallel_min: opts.gemm_parallel_min,
        owner_min: opts.owner_split_min,
        owner_max: opts.owner_split_max,
    };
    let plan = plan::plan(func, batch, policy);
    let gemms: Box<[gemm::GemmDesc]> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            plan::Step::Gemm(g) => Some(gemm::GemmDesc {
                m: g.m,
                n: g.n,
                k: g.k,
                dst_rs: g.dst_strides[0],
                dst_cs: g.dst_strides[1],
                lhs_rs: g.lhs_strides[0],
                lhs_cs: g.lhs_strides[1],
                rhs_rs: g.rhs_strides[0],
                rhs_cs: g.rhs_strides[1],
                threads: g.threads,
                split: g.split,
                alpha: g.alpha,
                beta: g.beta,
                pack: false,
            }),
            plan::Step::Kernel { .. } => None,
        })
        .map(|d| gemm::GemmDesc { pack: gemm::packs_both(&d, opts.pack_depth_min), ..d })
        .collect();
    let cuts: Vec<Option<par::Cut>> =
        plan.kernels.iter().map(|k| par::cut(k, threads, opts.parallel_kernel_min)).collect();
    let jitted = jit::build(&plan, func.args.len(), &gemms, &cuts, opts.keep_clif, opts.row_product_min)?;
    let (args, results) = buffers(func, batch);
    let inlined = |s: &plan::Step| matches!(s, plan::Step::Kernel { kernel, .. } if plan.kernels[*kernel].inline());
    let inlined_steps = plan.steps.iter().filter(|s| inlined(s)).count();
    let stats = Stats {
        kernels: plan.kernels.iter().filter(|k| !k.inline()).count(),
        kernel_calls: plan.steps.len() - gemms.len() - inlined_steps,
        inlined: inlined_steps,
        gemm_calls: gemms.len(),
        owner_splits: gemms.iter().filter(|g| matches!(g.split, plan::Split::Owner { .. })).count(),
        packed_gemms: gemms.iter().filter(|g| g.pack).count(),
        parallel_kernels: cuts.iter().flatten().count(),
        row_products: jitted.row_products,
        workspace_bytes: plan.ws_bytes,
        shards: 0,
    };
    Ok(Compiled {
        id: runtime::next_id(),
        name: func.name.clone(),
        batch,
        compile_time: start.elapsed(),
        args,
        results,
        stats,
        code: runtime::Code::Jit(runtime::Jit {
            clif: jitted.clif,
            entry: jitted.entry,
            _gemms: gemms,
            _pars: jitted.pars,
            module: Box::new(std::sync::Mutex::new(Some(jitted.module))),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn compiled_is_send_and_sync_and_workspace_is_send() {
        assert_send_sync::<Compiled>();
        fn assert_send<T: Send>() {}
        assert_send::<Workspace>();
    }
}
