//! The bridge from generated code to the `gemm` crate (and the libm-style symbols Cranelift
//! may call).
//!
//! Matrix products are not generated: Cranelift has only 128-bit vectors and reaches about a
//! third of `gemm`'s speed on this CPU (see `shared/notes/cranelift.md`). The entry function
//! calls [`bpc_gemm`] once per product with a pointer to a [`GemmDesc`] that the compiled
//! function owns and three runtime pointers.

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
    /// 1 runs on the calling thread; more uses rayon with that many threads.
    pub threads: usize,
    /// `dst = alpha·dst + beta·lhs·rhs` when `read_dst`, else `dst = beta·lhs·rhs` (gemm's
    /// convention). Products are planned with `beta = 1` and no `read_dst`; fusion of scales
    /// and accumulation (e.g. `W - lr·dYᵀX` in place) can use them.
    pub alpha: f32,
    pub beta: f32,
    pub read_dst: bool,
}

/// `dst = alpha·dst + beta·lhs·rhs` (or `beta·lhs·rhs` without `read_dst`).
///
/// # Safety
/// `desc` points to a live [`GemmDesc`] and the three pointers address buffers that hold
/// every element its strides reach; `dst` does not overlap the operands.
pub(crate) unsafe extern "C" fn bpc_gemm(desc: *const GemmDesc, dst: *mut f32, lhs: *const f32, rhs: *const f32) {
    // SAFETY: the entry function passes a descriptor owned by the live `Compiled`.
    let d = unsafe { &*desc };
    if d.k == 0 {
        // An empty sum (gemm's behaviour for k = 0 is not documented).
        for i in 0..d.m as isize {
            for j in 0..d.n as isize {
                // SAFETY: (i, j) is inside dst by the caller's contract.
                unsafe {
                    let p = dst.offset(i * d.dst_rs + j * d.dst_cs);
                    *p = if d.read_dst { d.alpha * *p } else { 0.0 };
                }
            }
        }
        return;
    }
    let parallelism = if d.threads > 1 { gemm::Parallelism::Rayon(d.threads) } else { gemm::Parallelism::None };
    // SAFETY: shapes and strides were checked when the function was compiled, and the
    // caller's buffers were length-checked by `Compiled::run`.
    unsafe {
        gemm::gemm(
            d.m,
            d.n,
            d.k,
            dst,
            d.dst_cs,
            d.dst_rs,
            d.read_dst,
            lhs,
            d.lhs_cs,
            d.lhs_rs,
            rhs,
            d.rhs_cs,
            d.rhs_rs,
            d.alpha,
            d.beta,
            false,
            false,
            false,
            parallelism,
        )
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
