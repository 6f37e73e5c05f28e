//! Products with a unit dimension (what a minibatch of 1 makes): matrix–vector products and
//! rank-1 updates, done here instead of by the GEMM library.
//!
//! At batch 1 the MNIST step's products are `z = x·W1ᵀ` (`m = 1`), `h·W2ᵀ` (`m = 1`),
//! `dW2 = dYᵀ·h` (`k = 1`) and `W1 −= lr·dHᵀ·x` (`k = 1`); gemmkit's gemv and small-k routes
//! took 93% of that step. Here each is one pass over the matrix in its own layout: dot products
//! with four AVX-512 accumulators (intrinsics; LLVM kept portable multi-accumulator arrays on
//! the stack), rank-1 rows and axpys that LLVM vectorizes, chosen at run time (AVX-512,
//! AVX2+FMA, portable). Measured (issue 5 note, `examples/measure.rs`, batch 1, two A/B runs
//! of 30 figures on the loaded 2-vCPU VM): +23% and +10% examples/s over gemmkit. What is left
//! is memory traffic: the rank-1 update reads and writes W1's 784 KB every step.
//! Only layouts whose inner loop is contiguous are taken; any other product returns `false`
//! and goes to the library.

/// `c = alpha·(a·b) + beta·c` with `a` `m×k`, `b` `k×n`, `c` `m×n`, strides in elements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prod {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub beta: f32,
    pub a: *const f32,
    pub rsa: isize,
    pub csa: isize,
    pub b: *const f32,
    pub rsb: isize,
    pub csb: isize,
    pub c: *mut f32,
    pub rsc: isize,
    pub csc: isize,
}

impl Prod {
    /// The same product as `cᵀ = bᵀ·aᵀ`.
    fn transposed(self) -> Prod {
        Prod {
            m: self.n,
            n: self.m,
            a: self.b,
            rsa: self.csb,
            csa: self.rsb,
            b: self.a,
            rsb: self.csa,
            csb: self.rsa,
            rsc: self.csc,
            csc: self.rsc,
            ..self
        }
    }
}

/// Runs `p` if it has a unit dimension and a layout handled here; `false` (nothing written)
/// otherwise. With `beta = 0`, `c` is not read.
///
/// # Safety
/// As for the GEMM library: every element the shapes and strides reach is inside its buffer,
/// and `c` does not overlap `a` or `b`.
pub(crate) unsafe fn run(p: &Prod) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (and so AVX2 and FMA); the caller's contract.
            return unsafe { run_avx512(p) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA; the caller's contract.
            return unsafe { run_avx2(p) };
        }
    }
    // SAFETY: the caller's contract.
    unsafe { run_on::<false, false>(p) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512(p: &Prod) -> bool {
    // SAFETY: the caller's contract.
    unsafe { run_on::<true, true>(p) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(p: &Prod) -> bool {
    // SAFETY: the caller's contract.
    unsafe { run_on::<true, false>(p) }
}

/// `a·b + c`, fused when the caller was compiled with FMA (`mul_add` is a libm call without).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

#[inline(always)]
unsafe fn run_on<const FMA: bool, const Z: bool>(p: &Prod) -> bool {
    if p.m == 0 || p.n == 0 || p.k == 0 {
        return false;
    }
    // SAFETY (all calls below): the caller's contract; each routine reads and writes only
    // elements inside the shapes.
    if p.k == 1 {
        if p.csc == 1 && p.csb == 1 {
            unsafe { rank1::<FMA>(p) };
            return true;
        }
        let t = p.transposed();
        if t.csc == 1 && t.csb == 1 {
            unsafe { rank1::<FMA>(&t) };
            return true;
        }
        return false;
    }
    let p = match (p.m, p.n) {
        (1, _) => *p,
        (_, 1) => p.transposed(),
        _ => return false,
    };
    if p.csa == 1 && p.rsb == 1 {
        unsafe { dots::<FMA, Z>(&p) };
        true
    } else if p.csb == 1 && p.csc == 1 {
        unsafe { axpys::<FMA>(&p) };
        true
    } else {
        false
    }
}

/// `c[i, :] = alpha·a[i]·b[0, :] + beta·c[i, :]` (`k = 1`; rows of `b` and `c` contiguous).
#[inline(always)]
unsafe fn rank1<const FMA: bool>(p: &Prod) {
    // SAFETY: `b` holds `n` contiguous elements (csb = 1).
    let b = unsafe { std::slice::from_raw_parts(p.b, p.n) };
    for i in 0..p.m as isize {
        // SAFETY: row `i` of `a` and of `c` (n contiguous elements, csc = 1) are inside.
        let (coef, c) =
            unsafe { (p.alpha * *p.a.offset(i * p.rsa), std::slice::from_raw_parts_mut(p.c.offset(i * p.rsc), p.n)) };
        match p.beta {
            0.0 => c.iter_mut().zip(b).for_each(|(c, &b)| *c = coef * b),
            1.0 => c.iter_mut().zip(b).for_each(|(c, &b)| *c = madd::<FMA>(coef, b, *c)),
            beta => c.iter_mut().zip(b).for_each(|(c, &b)| *c = madd::<FMA>(coef, b, beta * *c)),
        }
    }
}

const LANES: usize = 16;

/// `Σ x[i]·y[i]` (portable: LLVM vectorizes the 16 lanes; one FMA chain).
#[inline(always)]
fn dot<const FMA: bool>(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (xs, ys) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let tail: f32 = xs.remainder().iter().zip(ys.remainder()).map(|(a, b)| a * b).sum();
    for (xc, yc) in xs.zip(ys) {
        for l in 0..LANES {
            acc[l] = madd::<FMA>(xc[l], yc[l], acc[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ x[i]·y[i]` with four AVX-512 accumulators, so four FMA chains run at once (written
/// with intrinsics: LLVM kept portable multi-accumulator arrays on the stack).
///
/// # Safety
/// The CPU has AVX-512F; `x` and `y` have equal lengths.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(x: &[f32], y: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    let (px, py) = (x.as_ptr(), y.as_ptr());
    let mut s = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load reads 16 elements below `n`.
    unsafe {
        while i + 64 <= n {
            for (q, s) in s.iter_mut().enumerate() {
                let at = i + 16 * q;
                *s = _mm512_fmadd_ps(_mm512_loadu_ps(px.add(at)), _mm512_loadu_ps(py.add(at)), *s);
            }
            i += 64;
        }
        while i + 16 <= n {
            s[0] = _mm512_fmadd_ps(_mm512_loadu_ps(px.add(i)), _mm512_loadu_ps(py.add(i)), s[0]);
            i += 16;
        }
    }
    let sum = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
    _mm512_reduce_add_ps(sum) + x[i..n].iter().zip(&y[i..n]).map(|(a, b)| a * b).sum::<f32>()
}

/// `c[0, j] = alpha·Σ_p a[0, p]·b[p, j] + beta·c[0, j]` with `a`'s row and `b`'s columns
/// contiguous along `k` (`m = 1`).
#[inline(always)]
unsafe fn dots<const FMA: bool, const Z: bool>(p: &Prod) {
    // SAFETY: `a`'s row holds `k` contiguous elements (csa = 1).
    let a = unsafe { std::slice::from_raw_parts(p.a, p.k) };
    for j in 0..p.n as isize {
        // SAFETY: column `j` of `b` holds `k` contiguous elements (rsb = 1); `c[0, j]` is inside.
        let (col, c) = unsafe { (std::slice::from_raw_parts(p.b.offset(j * p.csb), p.k), &mut *p.c.offset(j * p.csc)) };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Z` only when the CPU has AVX-512F (`run_avx512`).
        let s = p.alpha * if Z { unsafe { dot_avx512(a, col) } } else { dot::<FMA>(a, col) };
        #[cfg(not(target_arch = "x86_64"))]
        let s = p.alpha * dot::<FMA>(a, col);
        *c = if p.beta == 0.0 { s } else { madd::<FMA>(p.beta, *c, s) };
    }
}

/// `c[0, :] = alpha·Σ_p a[0, p]·b[p, :] + beta·c[0, :]` with rows of `b` and `c` contiguous
/// (`m = 1`): `c` is scaled once, then one `axpy` per row of `b`.
#[inline(always)]
unsafe fn axpys<const FMA: bool>(p: &Prod) {
    // SAFETY: `c`'s row holds `n` contiguous elements (csc = 1).
    let c = unsafe { std::slice::from_raw_parts_mut(p.c, p.n) };
    match p.beta {
        0.0 => c.fill(0.0),
        1.0 => {}
        beta => c.iter_mut().for_each(|c| *c *= beta),
    }
    for q in 0..p.k as isize {
        // SAFETY: `a[0, q]` and row `q` of `b` (n contiguous elements) are inside.
        let (coef, b) =
            unsafe { (p.alpha * *p.a.offset(q * p.csa), std::slice::from_raw_parts(p.b.offset(q * p.rsb), p.n)) };
        c.iter_mut().zip(b).for_each(|(c, &b)| *c = madd::<FMA>(coef, b, *c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product by the definition, in f64.
    fn reference(p: &Prod, a: &[f32], b: &[f32], c: &[f32]) -> Vec<f64> {
        let mut out: Vec<f64> = c.iter().map(|&x| x as f64).collect();
        for i in 0..p.m as isize {
            for j in 0..p.n as isize {
                let s: f64 = (0..p.k as isize)
                    .map(|q| a[(i * p.rsa + q * p.csa) as usize] as f64 * b[(q * p.rsb + j * p.csb) as usize] as f64)
                    .sum();
                let at = (i * p.rsc + j * p.csc) as usize;
                let old = if p.beta == 0.0 { 0.0 } else { p.beta as f64 * out[at] };
                out[at] = p.alpha as f64 * s + old;
            }
        }
        out
    }

    /// Every unit-dimension shape in every contiguous layout, each beta kind, against f64;
    /// a product without a unit dimension is refused.
    #[test]
    fn unit_dimension_products_match_the_definition() {
        let val = |i: usize| ((i * 37 % 101) as f32 - 50.0) / 16.0;
        let mut taken = 0;
        for (m, n, k) in [(1, 37, 53), (41, 1, 29), (23, 45, 1), (1, 1, 70), (1, 19, 1), (1, 1, 1), (3, 4, 5)] {
            for (ta, tb, tc) in [(false, false, false), (true, false, false), (false, true, false), (true, true, true)]
            {
                for (alpha, beta) in [(1.0, 0.0), (-0.25, 1.0), (0.5, 0.75)] {
                    let a: Vec<f32> = (0..m * k).map(val).collect();
                    let b: Vec<f32> = (0..k * n).map(|i| val(i + 7)).collect();
                    let c: Vec<f32> = (0..m * n).map(|i| if beta == 0.0 { f32::NAN } else { val(i + 3) }).collect();
                    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
                    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
                    let (rsc, csc) = if tc { (1, m as isize) } else { (n as isize, 1) };
                    let mut out = c.clone();
                    let p = Prod {
                        m,
                        n,
                        k,
                        alpha,
                        beta,
                        a: a.as_ptr(),
                        rsa,
                        csa,
                        b: b.as_ptr(),
                        rsb,
                        csb,
                        c: out.as_mut_ptr(),
                        rsc,
                        csc,
                    };
                    // SAFETY: the buffers hold exactly the shapes, `out` is distinct.
                    if !unsafe { run(&p) } {
                        assert_ne!(1, m.min(n).min(k), "{m}x{n}x{k} {ta} {tb} {tc}: a unit-dimension product refused");
                        assert!(out.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()), "refused but written");
                        continue;
                    }
                    taken += 1;
                    assert_eq!(1, m.min(n).min(k), "{m}x{n}x{k}: taken without a unit dimension");
                    for (got, want) in out.iter().zip(reference(&p, &a, &b, &c)) {
                        assert!(
                            (*got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "{m}x{n}x{k}: {got} vs {want}"
                        );
                    }
                }
            }
        }
        assert!(taken >= 60, "only {taken} products taken");
    }
}
