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
//! a unit dimension (a minibatch of 1) take [`crate::thin`]'s loops instead, and small products
//! whose operands are both contiguous along `k` (`x·Wᵀ`) [`crate::dots`]' tiles.

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
    /// `dst = alpha·s·(lhs·rhs) + beta·t·dst`, `s` and `t` the runtime scales (1 without);
    /// with `beta = 0` the destination is not read. A fused SGD update `W − lr·(dYᵀX)` is
    /// `alpha = −1`, `s = lr`, `beta = 1` with `dst = W`; a momentum buffer's
    /// `μ·buf + dYᵀX` is `alpha = 1`, `beta = 1`, `t = μ` with `dst = buf`.
    pub alpha: f32,
    pub beta: f32,
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
    if d.threads <= 1 {
        let p = crate::thin::Prod {
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
        // SAFETY: as for the library call below.
        if unsafe { crate::thin::run(&p) || crate::dots::run(&p) } {
            return;
        }
    }
    let par = if d.threads > 1 { gemmkit::Parallelism::Rayon(d.threads) } else { gemmkit::Parallelism::Serial };
    // SAFETY: shapes and strides were checked when the function was compiled, and the
    // caller's buffers were length-checked by `Compiled::run`.
    unsafe {
        gemmkit::gemm_unchecked_with(
            ws,
            d.m,
            d.k,
            d.n,
            d.alpha * s,
            lhs,
            d.lhs_rs,
            d.lhs_cs,
            rhs,
            d.rhs_rs,
            d.rhs_cs,
            d.beta * t,
            dst,
            d.dst_rs,
            d.dst_cs,
            par,
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
