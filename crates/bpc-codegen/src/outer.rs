//! Small products as register tiles of rank-1 updates: each step along `k` loads one row of
//! `b` (up to two 16-float vectors of one row of `c`) and multiplies it by one broadcast
//! element of each of up to 8 rows of `a`, into up to 16 AVX-512 accumulators. Nothing is packed:
//! the rows of `b` and `c` must be contiguous, as in `dH = dY·W2` and the weight updates
//! `W − lr·dYᵀ·h` (the forward `x·Wᵀ`, contiguous along `k`, is [`crate::dots`]' form).
//!
//! gemmkit's set-up and packing dominate these products: the digits step's five products
//! (32×64 → 32 → 10 at batch 32) spent about 40% of the step in it (perf). Measured alone
//! (best of 30 × 1000 calls, in one process, against gemmkit's serial path): digits
//! `W2 − lr·dFᵀ·h` 10×32×32 1.7–2.3× the speed, `dF·W2` 32×32×10 1.5×,
//! `W1 − lr·dHᵀ·x` 32×64×32 1.2–1.4×; MNIST batch 32 `W2 − lr·dFᵀ·h` 10×256×32 1.3×,
//! `dF·W2` 32×256×10 1.3×. From 10×256×64 (164 K multiply-adds) gemmkit was faster
//! (0.8–0.9×), hence [`MAX_WORK`]. In the digits train step (one thread, in-process paired
//! medians of 31 rounds) the step took 0.95× the time with these tiles; the MNIST batch-32
//! step did not move (1.01× at one thread, 1.005× at two).

use crate::thin::Prod;

/// Products of at most this many multiply-adds are taken.
const MAX_WORK: usize = 1 << 17;

/// Runs `p` if it is small and the rows of `b` and `c` are contiguous, on a CPU with
/// AVX-512; `false` (nothing written) otherwise. With `beta = 0`, `c` is not read.
///
/// # Safety
/// As for the GEMM library: every element the shapes and strides reach is inside its buffer,
/// and `c` does not overlap `a` or `b`.
pub(crate) unsafe fn run(p: &Prod) -> bool {
    let work = p.m.saturating_mul(p.n).saturating_mul(p.k);
    if p.csb != 1 || p.csc != 1 || p.m == 0 || p.n == 0 || p.k == 0 || work > MAX_WORK {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; the caller's contract.
        unsafe { rows_avx512(p) };
        return true;
    }
    false
}

/// Whether [`bpc_row_product`] has its AVX-512 kernel on this CPU: only then does code
/// generation call it (elsewhere the dot product stays inlined in the kernel body).
pub(crate) fn row_product_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// One row of a short product, `c[j] = Σ_{q<k} a[q·sa] · b[q·sb + j]` for `j < n`, summed in
/// `q` order with one fused multiply-add per term: the same values as the dot product inlined
/// in a map kernel (`Expr::Dot` over `f32x4` with `fma`), 16 lanes at a time and 8 column
/// vectors in flight. A kernel whose body holds such a dot (the relu mask of the backward
/// pass, `(h > 0) ? dY·W2 : 0`) calls this once per row into a stack buffer and reads it as an
/// input (emit.rs). At MNIST batch 128 (2 threads) that kernel had 3.7% of perf's samples
/// with the 10-long dot inlined (about 70 µs of a 940 µs step), 1.5% with this call.
///
/// # Safety
/// The CPU has AVX-512F ([`row_product_available`]); `c` holds `n` elements, `a` and `b` every
/// element the strides reach; `c` overlaps neither.
pub(crate) unsafe extern "C" fn bpc_row_product(
    c: *mut f32,
    a: *const f32,
    sa: isize,
    b: *const f32,
    sb: isize,
    k: usize,
    n: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = Prod { m: 1, n, k, alpha: 1.0, beta: 0.0, a, rsa: 0, csa: sa, b, rsb: sb, csb: 1, c, rsc: 0, csc: 1 };
        // SAFETY: the caller's contract.
        unsafe { row_avx512(&p) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("bpc_row_product called without AVX-512 ({c:?}, {a:?}, {sa}, {b:?}, {sb}, {k}, {n})")
}

/// Blocks of 8 vectors (128 columns), then one block of the 1–7 vectors left, the last masked.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_avx512(p: &Prod) {
    let mut j = 0;
    while j < p.n {
        let width = (p.n - j).min(128);
        // SAFETY (all): columns `j..j + width` are inside the row.
        unsafe {
            match width.div_ceil(16) {
                8 => tile::<1, 8>(p, 0, j, masks(width)),
                7 => tile::<1, 7>(p, 0, j, masks(width)),
                6 => tile::<1, 6>(p, 0, j, masks(width)),
                5 => tile::<1, 5>(p, 0, j, masks(width)),
                4 => tile::<1, 4>(p, 0, j, masks(width)),
                3 => tile::<1, 3>(p, 0, j, masks(width)),
                2 => tile::<1, 2>(p, 0, j, masks(width)),
                _ => tile::<1, 1>(p, 0, j, masks(width)),
            }
        }
        j += width;
    }
}

/// The lane masks of `V` vectors covering `width` columns.
#[cfg(target_arch = "x86_64")]
fn masks<const V: usize>(width: usize) -> [u16; V] {
    std::array::from_fn(|v| {
        let w = width.saturating_sub(16 * v).min(16);
        ((1u32 << w) - 1) as u16
    })
}

/// Column blocks of two vectors (the last one or two may be partial), each over row tiles.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_avx512(p: &Prod) {
    let mut j = 0;
    while j < p.n {
        let width = p.n - j;
        // SAFETY (both): columns `j..j + width.min(32)` are inside the product.
        if width > 16 {
            unsafe { column_block::<2>(p, j, width.min(32)) };
        } else {
            unsafe { column_block::<1>(p, j, width) };
        }
        j += 32;
    }
}

/// Columns `j..j + width` (`width ≤ 16·V`) of every row, in row tiles of at most 8 rows as
/// even as the rows allow (10 rows: two tiles of 5, whose 10 accumulators keep the FMA units
/// busier than 8 and then 2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn column_block<const V: usize>(p: &Prod, j: usize, width: usize) {
    let masks = masks::<V>(width);
    let r = p.m.div_ceil(p.m.div_ceil(8));
    let mut i = 0;
    while i < p.m {
        let rows = r.min(p.m - i);
        // SAFETY: rows `i..i + rows` and the masked columns are inside the product.
        unsafe {
            match rows {
                8 => tile::<8, V>(p, i, j, masks),
                7 => tile::<7, V>(p, i, j, masks),
                6 => tile::<6, V>(p, i, j, masks),
                5 => tile::<5, V>(p, i, j, masks),
                4 => tile::<4, V>(p, i, j, masks),
                3 => tile::<3, V>(p, i, j, masks),
                2 => tile::<2, V>(p, i, j, masks),
                _ => tile::<1, V>(p, i, j, masks),
            }
        }
        i += rows;
    }
}

/// The `R × 16·V` tile of `c` at `(i, j)`, lanes outside `masks` neither read nor written:
/// `c = alpha·Σ_q a[i.., q]·b[q, j..] + beta·c`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize, const V: usize>(p: &Prod, i: usize, j: usize, masks: [u16; V]) {
    use std::arch::x86_64::*;
    let a: [*const f32; R] = std::array::from_fn(|r| p.a.wrapping_offset((i + r) as isize * p.rsa));
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    // SAFETY: the tile's rows of `a` hold `k` elements `csa` apart; row `q` of `b` holds the
    // masked lanes from column `j`; row `i + r` of `c` the masked lanes from `j` (`csc = 1`).
    unsafe {
        let mut b = p.b.add(j);
        let mut at = 0isize;
        for _ in 0..p.k {
            let bv: [__m512; V] = std::array::from_fn(|v| _mm512_maskz_loadu_ps(masks[v], b.add(16 * v)));
            for r in 0..R {
                let av = _mm512_set1_ps(*a[r].offset(at));
                for v in 0..V {
                    acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
                }
            }
            b = b.wrapping_offset(p.rsb);
            at += p.csa;
        }
        let alpha = _mm512_set1_ps(p.alpha);
        for (r, row) in acc.iter().enumerate() {
            let c = p.c.offset((i + r) as isize * p.rsc + j as isize);
            for (v, &sum) in row.iter().enumerate() {
                let dst = c.add(16 * v);
                let mut x = _mm512_mul_ps(alpha, sum);
                if p.beta != 0.0 {
                    x = _mm512_fmadd_ps(_mm512_set1_ps(p.beta), _mm512_maskz_loadu_ps(masks[v], dst), x);
                }
                _mm512_mask_storeu_ps(dst, masks[v], x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row-tile height and partial column block, row-major and transposed `a`, `beta` 0
    /// over a NaN `c` and not 0; against the definition in f64. Products over the limit, with
    /// `b` along `k` or with strided rows of `c` are refused.
    #[test]
    fn tiles_and_edges_match_the_definition() {
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        for (m, n, k, a_t, beta) in [
            (32, 32, 10, false, 0.0),
            (10, 32, 32, true, 1.0),
            (32, 64, 32, true, -0.5),
            (13, 37, 9, false, 0.0),
            (1, 1, 1, false, 1.0),
            (9, 17, 5, true, 0.0),
            (3, 33, 7, false, 0.25),
            (8, 16, 40, true, 2.0),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.1).collect();
            let b: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 19) as f32 - 9.0) * 0.1).collect();
            let c0: Vec<f32> = (0..m * n).map(|i| if beta == 0.0 { f32::NAN } else { (i % 5) as f32 }).collect();
            let mut c = c0.clone();
            // a[i, q]: row-major, or stored transposed (k×m); b[q, j] row-major.
            let (rsa, csa) = if a_t { (1, m as isize) } else { (k as isize, 1) };
            let (rsb, csb) = (n as isize, 1);
            let p = Prod {
                m,
                n,
                k,
                alpha: -0.5,
                beta,
                a: a.as_ptr(),
                rsa,
                csa,
                b: b.as_ptr(),
                rsb,
                csb,
                c: c.as_mut_ptr(),
                rsc: n as isize,
                csc: 1,
            };
            // SAFETY: the buffers hold every element the shapes and strides reach.
            assert!(unsafe { run(&p) }, "{m}x{n}x{k} refused");
            for i in 0..m {
                for j in 0..n {
                    let at = |q: usize| a[(i as isize * rsa + q as isize * csa) as usize] as f64;
                    let bt = |q: usize| b[(q as isize * rsb + j as isize * csb) as usize] as f64;
                    let dot: f64 = (0..k).map(|q| at(q) * bt(q)).sum();
                    let old = if beta == 0.0 { 0.0 } else { beta as f64 * c0[i * n + j] as f64 };
                    let want = -0.5 * dot + old;
                    let got = c[i * n + j] as f64;
                    assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{m}x{n}x{k} ({i},{j}): {got} vs {want}");
                }
            }
        }
        let refused = |m: usize, n: usize, k: usize, rsb: isize, csb: isize, csc: isize| {
            let (a, b, mut c) = (vec![0.0f32; m * k], vec![0.0f32; n * k], vec![0.0f32; m * n]);
            let p = Prod {
                m,
                n,
                k,
                alpha: 1.0,
                beta: 0.0,
                a: a.as_ptr(),
                rsa: k as isize,
                csa: 1,
                b: b.as_ptr(),
                rsb,
                csb,
                c: c.as_mut_ptr(),
                rsc: if csc == 1 { n as isize } else { 1 },
                csc,
            };
            // SAFETY: as above.
            !unsafe { run(&p) }
        };
        assert!(refused(64, 256, 10, 256, 1, 1), "over MAX_WORK");
        assert!(refused(32, 10, 32, 1, 32, 1), "b along k");
        assert!(refused(8, 32, 8, 32, 1, 8), "columns of c not contiguous");
    }

    /// One row of every width from 1 to 300 (every block count, masked edges) and strided
    /// `a`: bit for bit the sequential fused multiply-adds of the inlined dot product, and
    /// nothing written past `n`.
    #[test]
    fn row_products_are_the_inlined_dot_bit_for_bit() {
        if !row_product_available() {
            return;
        }
        for k in [1, 3, 10, 16] {
            for n in 1..=300 {
                let sa = 3isize;
                let sb = n as isize + 5;
                let a: Vec<f32> = (0..k * 3).map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.13).collect();
                let b: Vec<f32> = (0..k * (n + 5)).map(|i| ((i * 5 % 19) as f32 - 9.0) * 0.07).collect();
                let mut c = vec![f32::NAN; n + 17];
                // SAFETY: AVX-512 is there; `c` holds `n` elements, `a` and `b` all they reach.
                unsafe { bpc_row_product(c.as_mut_ptr(), a.as_ptr(), sa, b.as_ptr(), sb, k, n) };
                for j in 0..n {
                    let want = (0..k).fold(0.0f32, |acc, q| a[q * 3].mul_add(b[q * (n + 5) + j], acc));
                    assert_eq!(c[j].to_bits(), want.to_bits(), "k {k} n {n} j {j}");
                }
                assert!(c[n..].iter().all(|x| x.is_nan()), "k {k} n {n}: written past the row");
            }
        }
    }
}
