//! The bridge from generated code to the GEMM library (and the libm-style symbols
//! Cranelift may call).
//!
//! Matrix products are not generated: Cranelift has only 128-bit vectors and reaches about a
//! third of a library GEMM's speed on this CPU (see `shared/notes/cranelift.md`). The entry
//! function calls [`bpc_gemm`] once per product with a pointer to a [`GemmDesc`] that the
//! compiled function owns, the operand pointers, optional runtime scales and the calling
//! workspace's packing memory. The library is `gemmkit`, whose `gemm_unchecked_with` packs
//! into a caller-owned `gemmkit::Workspace` (one per [`crate::Workspace`]): after the first
//! call has grown it, a product allocates nothing (the `gemm` crate allocates its packing
//! buffers on every call). It selects AVX-512 or AVX2+FMA kernels at run time. Products with
//! a unit dimension (a minibatch of 1) take [`crate::thin`]'s loops instead, products up to
//! mid-sized whose operands are both contiguous along `k` (`x·Wᵀ`) [`crate::dots`]' tiles,
//! and other small ones whose rows of `b` and `c` are contiguous [`crate::outer`]'s. The
//! weight gradient of a wide layer at a large minibatch runs with both operands packed
//! ([`packs_both`]).
//!
//! On several threads, large products use gemmkit's own parallel loops; mid-sized ones are
//! split by the owner-computes rule ([`Split::Owner`]), each pool thread always taking the
//! same rows of the product's largest operand, so that a weight matrix stays divided between
//! the cores' private caches across the forward product and its update.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rayon::iter::{IntoParallelIterator, ParallelIterator};

use crate::plan::{Axis, Split};
use crate::thin::Prod;

/// Shape, strides (in elements) and threading of one product `dst = lhs · rhs`, where
/// `lhs` is `m×k` and `rhs` is `k×n` after the `ta`/`tb` flags were turned into strides.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GemmDesc {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub dst_rs: isize,
    pub dst_cs: isize,
    pub lhs_rs: isize,
    pub lhs_cs: isize,
    pub rhs_rs: isize,
    pub rhs_cs: isize,
    /// 1 runs on the calling thread; more splits the product over rayon's threads: into the
    /// blocks of [`Split::Owner`] (at most this many), or by gemmkit with this many threads.
    pub threads: usize,
    /// How a product with `threads > 1` is split.
    pub split: Split,
    /// `dst = alpha·s·(lhs·rhs) + beta·t·dst`, `s` and `t` the runtime scales (1 without);
    /// with `beta = 0` the destination is not read. A fused SGD update `W − lr·(dYᵀX)` is
    /// `alpha = −1`, `s = lr`, `beta = 1` with `dst = W`; a momentum buffer's
    /// `μ·buf + dYᵀX` is `alpha = 1`, `beta = 1`, `t = μ` with `dst = buf`.
    pub alpha: f32,
    pub beta: f32,
    /// gemmkit copies both operands into its micropanels ([`packs_both`], [`ForcedPacking`]).
    pub pack: bool,
}

/// Whether gemmkit should copy both operands of `d` into its micropanels rather than read
/// its `A` in place: when, after gemmkit's own orientation swap (a row-major `C` makes it
/// compute `Cᵀ = Bᵀ·Aᵀ`), `A` is column-major (so gemmkit would walk it in place) with a
/// depth stride of at least 512 elements, a depth `k` of at least `depth_min` and at least
/// 64 columns of `C` reusing each packed panel. That is the weight gradient of a wide layer
/// at a large minibatch: MNIST's `W1 − lr·dHᵀ·x` walks `x` with a 3 KB stride over the whole
/// batch. gemmkit alone, paired medians of 21 rounds: 256×1024×784 1.10–1.19× the speed on
/// two threads and 1.19–1.31× on one, 256×512×784 1.14× and 1.27×, 256×1024×512 1.23×; not
/// taken: 10×1024×256 (`dW2`, one column tile) 0.42×, 256×1024×256 (1 KB stride) 1.00×,
/// 256×128×784 1.00×, 32×256×784 0.89×. Same result bits: gemmkit reads the two knobs
/// only after it has fixed the route (gemv, small-k and small-m·n ignore them), the depth
/// blocking, the panel sizes and the threads, and on x86 runs the same kernel, in the same
/// order along `k`, on a packed panel as in place (a test in `tests/matmul.rs` holds it to
/// that).
pub(crate) fn packs_both(d: &GemmDesc, depth_min: usize) -> bool {
    let swapped = d.dst_cs.unsigned_abs() < d.dst_rs.unsigned_abs();
    // A and B of the product gemmkit runs, and its number of columns.
    let (rsa, csa, n) = if swapped { (d.rhs_cs, d.rhs_rs, d.m) } else { (d.lhs_rs, d.lhs_cs, d.n) };
    rsa == 1 && csa.unsigned_abs() >= 512 && d.k >= depth_min && n >= 64
}

/// `dst = alpha·s·(lhs·rhs) + beta·t·dst` with `s = *scale`, `t = *beta_scale` (1 if null).
///
/// # Safety
/// `desc` points to a live [`GemmDesc`]; the three matrix pointers address buffers that hold
/// every element its strides reach; `dst` does not overlap the operands; `scale` and
/// `beta_scale` are null or point to an `f32`; `ws` points to the calling thread's own `gemmkit::Workspace`.
pub(crate) unsafe extern "C" fn bpc_gemm(
    desc: *const GemmDesc,
    dst: *mut f32,
    lhs: *const f32,
    rhs: *const f32,
    scale: *const f32,
    beta_scale: *const f32,
    ws: *mut gemmkit::Workspace,
) {
    // SAFETY: the entry function passes a descriptor owned by the live `Compiled`, and the
    // workspace of the `Workspace` it was called with (exclusively borrowed by `run`).
    let (d, ws) = unsafe { (&*desc, &mut *ws) };
    // SAFETY: null or the caller's one-element hyperparameter buffer.
    let s = if scale.is_null() { 1.0 } else { unsafe { *scale } };
    // SAFETY: as `scale`.
    let t = if beta_scale.is_null() { 1.0 } else { unsafe { *beta_scale } };
    let p = Prod {
        m: d.m,
        n: d.n,
        k: d.k,
        alpha: d.alpha * s,
        beta: d.beta * t,
        a: lhs,
        rsa: d.lhs_rs,
        csa: d.lhs_cs,
        b: rhs,
        rsb: d.rhs_rs,
        csb: d.rhs_cs,
        c: dst,
        rsc: d.dst_rs,
        csc: d.dst_cs,
    };
    // SAFETY (all three): shapes and strides were checked when the function was compiled,
    // and the caller's buffers were length-checked by `Compiled::run`.
    match d.split {
        _ if d.threads <= 1 => unsafe { serial(&p, ws, d.pack) },
        Split::Owner { axis, step } => unsafe { owner_split(&p, axis, step, d.pack) },
        Split::Library => unsafe { library(&p, ws, gemmkit::Parallelism::Rayon(d.threads), d.pack) },
    }
}

/// One product on the calling thread: [`crate::thin`]'s loops for a unit dimension,
/// [`crate::dots`]' tiles for `x·Wᵀ` up to mid-sized, [`crate::outer`]'s for other small
/// products with contiguous rows of `b` and `c`, gemmkit otherwise.
///
/// # Safety
/// As [`bpc_gemm`]: every element the shapes and strides reach is inside its buffer, and the
/// destination does not overlap the operands.
unsafe fn serial(p: &Prod, ws: &mut gemmkit::Workspace, pack: bool) {
    // SAFETY: the caller's contract.
    unsafe {
        if !(crate::thin::run(p) || crate::dots::run(p) || crate::outer::run(p)) {
            library(p, ws, gemmkit::Parallelism::Serial, pack)
        }
    }
}

/// gemmkit on the product; with `pack`, with both operands packed ([`ForcedPacking`]).
///
/// # Safety
/// As [`serial`].
unsafe fn library(p: &Prod, ws: &mut gemmkit::Workspace, par: gemmkit::Parallelism, pack: bool) {
    let _packing = pack.then(ForcedPacking::begin);
    // SAFETY: the caller's contract.
    unsafe {
        gemmkit::gemm_unchecked_with(
            ws, p.m, p.k, p.n, p.alpha, p.a, p.rsa, p.csa, p.b, p.rsb, p.csb, p.beta, p.c, p.rsc, p.csc, par,
        )
    }
}

/// gemmkit decides on each call whether to pack each operand, and has no per-call setting for
/// it, only process-wide knobs (`gemmkit::tuning`): while one of these guards lives, its
/// two packing thresholds are 0 (always pack); when the last one in the process is dropped,
/// they go back to the values they had before bpc first changed them (the defaults, or a
/// `GEMMKIT_*` variable's). They are captured once: captured again when the count next
/// leaves 0, they could be a 0 not yet put back, and would stay 0. A gemmkit call that starts
/// on another thread while a guard lives (another compiled function's, or the program's own)
/// packs too, which can make it slower (a forced pack of a 10×1024×256 product measured
/// 0.42× the speed), and one that starts while another thread's last guard is putting the
/// knobs back may not pack, a guarded one included; either way its result has the same bits.
/// A program's own `set_*` of these two knobs after bpc's first packed product is undone
/// when the last guard drops.
struct ForcedPacking;

/// Live [`ForcedPacking`] guards, and the knobs' values before the first.
static FORCED: AtomicUsize = AtomicUsize::new(0);
static KNOBS_BEFORE: OnceLock<(usize, usize)> = OnceLock::new();

impl ForcedPacking {
    fn begin() -> ForcedPacking {
        use gemmkit::tuning as t;
        KNOBS_BEFORE.get_or_init(|| (t::lhs_pack_threshold(), t::rhs_pack_threshold()));
        if FORCED.fetch_add(1, Ordering::SeqCst) == 0 {
            t::set_lhs_pack_threshold(0);
            t::set_rhs_pack_threshold(0);
        }
        ForcedPacking
    }
}

impl Drop for ForcedPacking {
    fn drop(&mut self) {
        use gemmkit::tuning as t;
        if FORCED.fetch_sub(1, Ordering::SeqCst) == 1 {
            // `begin` set `KNOBS_BEFORE` before the count first went up.
            if let Some(&(lhs, rhs)) = KNOBS_BEFORE.get() {
                t::set_lhs_pack_threshold(lhs);
                t::set_rhs_pack_threshold(rhs);
            }
        }
    }
}

/// The rows `[i0, i1)` (along `axis`) of the product.
fn block(p: &Prod, axis: Axis, i0: usize, i1: usize) -> Prod {
    let o = i0 as isize;
    match axis {
        Axis::M => Prod { m: i1 - i0, a: p.a.wrapping_offset(o * p.rsa), c: p.c.wrapping_offset(o * p.rsc), ..*p },
        Axis::N => Prod { n: i1 - i0, b: p.b.wrapping_offset(o * p.csb), c: p.c.wrapping_offset(o * p.csc), ..*p },
    }
}

thread_local! {
    /// Each pool thread's packing memory for its blocks of owner-split products.
    static POOL_WS: RefCell<gemmkit::Workspace> = const { RefCell::new(gemmkit::Workspace::new()) };
}

/// The product cut along `axis` into blocks of `step` rows (at most 64), each rayon task
/// first claiming the block of its own thread index, then any block not yet claimed: the same
/// thread takes the same block, and the same rows of a weight matrix, in every product of the
/// same shape whenever both threads are awake for it, and each block runs exactly once.
///
/// # Safety
/// As [`serial`].
unsafe fn owner_split(p: &Prod, axis: Axis, step: usize, pack: bool) {
    let len = if axis == Axis::M { p.m } else { p.n };
    let parts = len.div_ceil(step);
    debug_assert!(parts <= 64, "owner_cut makes at most 64 blocks");
    let all = u64::MAX >> (64 - parts);
    let claimed = AtomicU64::new(0);
    let shared = Shared(p);
    (0..parts).into_par_iter().for_each(|_| {
        let p = shared.get();
        let own = rayon::current_thread_index().unwrap_or(0) % parts;
        for i in std::iter::once(own).chain(0..parts) {
            let seen = claimed.fetch_or(1 << i, Ordering::AcqRel);
            if seen & (1 << i) == 0 {
                let b = block(p, axis, i * step, ((i + 1) * step).min(len));
                // SAFETY: block `i` is inside the caller's product, and no other thread
                // writes its destination rows (each block is claimed once). The borrow of
                // `POOL_WS` cannot be re-entered: `serial` never calls into rayon (gemmkit's
                // serial path runs inline), so no other task runs on this thread inside it.
                POOL_WS.with(|ws| unsafe { serial(&b, &mut ws.borrow_mut(), pack) });
            } else if seen | (1 << i) == all {
                break;
            }
        }
    });
}

/// The product, shared with the pool threads.
struct Shared<'a>(&'a Prod);
// SAFETY: the pool threads read the descriptor and write disjoint blocks of its destination
// (disjoint because the destination's strides give every element its own address, the
// shim's contract) while `owner_split` waits for them.
unsafe impl Sync for Shared<'_> {}
impl Shared<'_> {
    fn get(&self) -> &Prod {
        self.0
    }
}

// libm-style functions Cranelift emits calls to when an ISA lacks an instruction (e.g. `fma`
// without FMA, `floor` without SSE4.1). Registered with the JIT under these names.
pub(crate) extern "C" fn fmaf(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}
pub(crate) extern "C" fn floorf(x: f32) -> f32 {
    x.floor()
}
pub(crate) extern "C" fn ceilf(x: f32) -> f32 {
    x.ceil()
}
pub(crate) extern "C" fn truncf(x: f32) -> f32 {
    x.trunc()
}
pub(crate) extern "C" fn nearbyintf(x: f32) -> f32 {
    x.round_ties_even()
}

/// Host symbols for `JITBuilder::symbol`.
pub(crate) fn symbols() -> [(&'static str, *const u8); 6] {
    [
        ("bpc_gemm", bpc_gemm as *const u8),
        ("fmaf", fmaf as *const u8),
        ("floorf", floorf as *const u8),
        ("ceilf", ceilf as *const u8),
        ("truncf", truncf as *const u8),
        ("nearbyintf", nearbyintf as *const u8),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use gemmkit::tuning as t;

    fn desc(m: usize, n: usize, k: usize, lhs: [isize; 2], rhs: [isize; 2], dst: [isize; 2]) -> GemmDesc {
        GemmDesc {
            m,
            n,
            k,
            dst_rs: dst[0],
            dst_cs: dst[1],
            lhs_rs: lhs[0],
            lhs_cs: lhs[1],
            rhs_rs: rhs[0],
            rhs_cs: rhs[1],
            threads: 1,
            split: Split::Library,
            alpha: 1.0,
            beta: 0.0,
            pack: false,
        }
    }

    /// MNIST's products at batch `b`: only `dW1 = dHᵀ·x` from batch 512 up.
    #[test]
    fn only_wide_weight_gradients_at_large_batches_are_packed() {
        for (b, dw1) in [(128, false), (511, false), (512, true), (1024, true)] {
            let x_w1t = desc(b, 256, 784, [784, 1], [1, 784], [256, 1]);
            let dht_x = desc(256, 784, b, [1, 256], [784, 1], [784, 1]);
            let dft_h = desc(10, 256, b, [1, 10], [256, 1], [256, 1]);
            let h_w2t = desc(b, 10, 256, [256, 1], [1, 256], [10, 1]);
            let packed = [x_w1t, dht_x, dft_h, h_w2t].map(|d| packs_both(&d, crate::DEFAULT_PACK_DEPTH_MIN));
            assert_eq!(packed, [false, dw1, false, false], "batch {b}");
        }
        // The same gradient into a column-major destination: gemmkit does not swap, and
        // reads `dHᵀ` (depth stride 256) in place.
        assert!(!packs_both(&desc(256, 784, 1024, [1, 256], [784, 1], [1, 256]), 512));
    }

    /// The knobs are 0 while any guard lives and back to their values when the last is
    /// dropped, also when guards begin and drop on several threads at once (as the blocks of
    /// an owner-split product do). One test: another test's guards would change the knobs.
    #[test]
    fn forced_packing_puts_the_knobs_back() {
        let before = (t::lhs_pack_threshold(), t::rhs_pack_threshold());
        let outer = ForcedPacking::begin();
        let inner = ForcedPacking::begin();
        assert_eq!((t::lhs_pack_threshold(), t::rhs_pack_threshold()), (0, 0));
        drop(outer);
        assert_eq!((t::lhs_pack_threshold(), t::rhs_pack_threshold()), (0, 0));
        drop(inner);
        assert_eq!((t::lhs_pack_threshold(), t::rhs_pack_threshold()), before);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..5000 {
                        let g = ForcedPacking::begin();
                        let nested = (i % 3 == 0).then(ForcedPacking::begin);
                        // 0, or (while another thread puts them back) the values before.
                        assert!([0, before.0].contains(&t::lhs_pack_threshold()));
                        drop(g);
                        drop(nested);
                    }
                });
            }
        });
        assert_eq!(FORCED.load(Ordering::SeqCst), 0);
        assert_eq!((t::lhs_pack_threshold(), t::rhs_pack_threshold()), before);
    }
}
