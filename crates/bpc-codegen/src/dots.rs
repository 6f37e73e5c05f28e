//! Products whose two operands are contiguous along the contracted axis, `c = a·bᵀ` with `a`
//! and `b` row-major (the forward `x·W1ᵀ` of a dense layer), as register-tiled dot products.
//!
//! gemmkit copies an operand into its micropanels with a plain copy only when the operand is
//! contiguous along its *other* axis; here both are contiguous along `k`, so it packs both one
//! element at a time. At the MNIST forward product that pack took about half of the product's
//! time at minibatch 32 (issue 5 note). A dot-product tile needs no pack: a 4×4 tile of `c`
//! keeps 16 AVX-512 accumulators, and each step along `k` loads 4 rows of `a` and 4 of `b`
//! (16 floats each) for 16 FMAs. (3×8, 2×12, 4×6 and 8×3 tiles measured slower.)

use crate::thin::Prod;

/// Products up to this many multiply-adds are taken here; above it gemmkit's blocked kernels
/// amortize their pack. Measured on the MNIST train step (one thread, 16 interleaved runs
/// each): batch 32 (6.4 M for `x·W1ᵀ`) 0.76× the step time with this path, batch 128
/// (25.7 M) 1.08×, so the cut lies between.
const MAX_WORK: usize = 16 << 20;

/// Shorter contractions are left to gemmkit: each tile ends in 16 horizontal sums, which
/// outweigh a contraction of a few vectors. Measured alone against gemmkit (best of 30 × 1000
/// calls, one process) with the shuffle-tree sums: digits' `x·W1ᵀ` 32×32×64 1.48 µs against
/// 1.99, its `h·W2ᵀ` 32×10×32 0.41 against 1.10; the digits train step at one thread took
/// 0.86× the time with the cut at 32 instead of 128 (whole-process A/B, 14 runs).
const MIN_K: usize = 32;

/// Runs `p` if both operands are contiguous along `k` (`csa = 1`, `rsb = 1`) and the CPU has
/// AVX-512; `false` (nothing written) otherwise. With `beta = 0`, `c` is not read.
///
/// # Safety
/// As for the GEMM library: every element the shapes and strides reach is inside its buffer,
/// and `c` does not overlap `a` or `b`.
pub(crate) unsafe fn run(p: &Prod) -> bool {
    if p.csa != 1 || p.rsb != 1 || p.k < MIN_K || p.m.saturating_mul(p.n).saturating_mul(p.k) > MAX_WORK {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; the caller's contract.
        unsafe { run_avx512(p) };
        return true;
    }
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(p: &Prod) {
    // SAFETY: the caller's contract.
    unsafe { run_tiles::<4, 4>(p) }
}

/// Every `R×C` tile of `c`, then the edge rows and columns one at a time. The loop over
/// the rows of `a` is inside the loop over column tiles, so the `C` rows of `b` stay in L1
/// while `a` streams.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_tiles<const R: usize, const C: usize>(p: &Prod) {
    let (mr, nc) = (p.m / R * R, p.n / C * C);
    // SAFETY (every call): the tile's rows of `a`, columns of `b` and elements of `c` are
    // inside the product (caller's contract).
    unsafe {
        for j in (0..nc).step_by(C) {
            for i in (0..mr).step_by(R) {
                tile::<R, C>(p, i, j);
            }
            for i in mr..p.m {
                tile::<1, C>(p, i, j);
            }
        }
        for j in nc..p.n {
            for i in (0..mr).step_by(R) {
                tile::<R, 1>(p, i, j);
            }
            for i in mr..p.m {
                tile::<1, 1>(p, i, j);
            }
        }
    }
}

/// The `R×C` tile of `c` at `(i, j)`: `R·C` accumulators over `k`, the last partial step with
/// masked loads, then one horizontal sum each: for a 4×4 tile with unit column stride, all 16
/// in one shuffle tree ([`sum16`]; 1.03–1.08× the speed of 16 separate reductions at the
/// MNIST shapes, in-process A/B), stored as four 4-float rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize, const C: usize>(p: &Prod, i: usize, j: usize) {
    use std::arch::x86_64::*;
    let a: [*const f32; R] = std::array::from_fn(|r| p.a.wrapping_offset((i + r) as isize * p.rsa));
    let b: [*const f32; C] = std::array::from_fn(|c| p.b.wrapping_offset((j + c) as isize * p.csb));
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    let mut q = 0;
    // SAFETY: rows `i..i+R` of `a` and columns `j..j+C` of `b` hold `k` contiguous elements;
    // full loads stay below `k`, the masked ones read only lanes below `k`.
    unsafe {
        while q + 16 <= p.k {
            let mut bv = [_mm512_setzero_ps(); C];
            for c in 0..C {
                bv[c] = _mm512_loadu_ps(b[c].add(q));
            }
            for r in 0..R {
                let av = _mm512_loadu_ps(a[r].add(q));
                for c in 0..C {
                    acc[r][c] = _mm512_fmadd_ps(av, bv[c], acc[r][c]);
                }
            }
            q += 16;
        }
        if q < p.k {
            let mask: __mmask16 = (1u32 << (p.k - q)) as u16 - 1;
            let mut bv = [_mm512_setzero_ps(); C];
            for c in 0..C {
                bv[c] = _mm512_maskz_loadu_ps(mask, b[c].add(q));
            }
            for r in 0..R {
                let av = _mm512_maskz_loadu_ps(mask, a[r].add(q));
                for c in 0..C {
                    acc[r][c] = _mm512_fmadd_ps(av, bv[c], acc[r][c]);
                }
            }
        }
        if R == 4 && C == 4 && p.csc == 1 {
            let v: [__m512; 16] = std::array::from_fn(|x| acc[x % 4][x / 4]);
            let f = _mm512_mul_ps(_mm512_set1_ps(p.alpha), sum16(v));
            for r in 0..4 {
                let dst = p.c.offset((i + r) as isize * p.rsc + j as isize);
                let row = match r {
                    0 => _mm512_extractf32x4_ps::<0>(f),
                    1 => _mm512_extractf32x4_ps::<1>(f),
                    2 => _mm512_extractf32x4_ps::<2>(f),
                    _ => _mm512_extractf32x4_ps::<3>(f),
                };
                let row = if p.beta == 0.0 { row } else { _mm_fmadd_ps(_mm_set1_ps(p.beta), _mm_loadu_ps(dst), row) };
                _mm_storeu_ps(dst, row);
            }
            return;
        }
        for (r, row) in acc.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let s = p.alpha * _mm512_reduce_add_ps(v);
                let dst = p.c.offset((i + r) as isize * p.rsc + (j + c) as isize * p.csc);
                *dst = if p.beta == 0.0 { s } else { p.beta.mul_add(*dst, s) };
            }
        }
    }
}

/// The 16 horizontal sums of `v` as one vector, `v[x]`'s sum in lane `4·(x % 4) + x / 4`
/// (so `v[4c + r]` lands in row `r`, column `c` of a row-major 4×4 block): 15 adds and 30
/// shuffles in a tree, instead of 16 separate reductions of 8 operations each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn sum16(v: [std::arch::x86_64::__m512; 16]) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // Pairs of vectors: 128-bit quarters q0+q2 and q1+q3 of each, side by side.
    let s: [__m512; 8] = std::array::from_fn(|x| {
        let (a, b) = (v[2 * x], v[2 * x + 1]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0b01_00_01_00>(a, b), _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b))
    });
    // Quarter L of t[x] holds 4 partial sums of v[4x + L].
    let t: [__m512; 4] = std::array::from_fn(|x| {
        let (a, b) = (s[2 * x], s[2 * x + 1]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(a, b), _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b))
    });
    let u: [__m512; 2] = std::array::from_fn(|x| {
        let (a, b) = (t[2 * x], t[2 * x + 1]);
        _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
    });
    let (a, b) = (_mm512_castps_pd(u[0]), _mm512_castps_pd(u[1]));
    _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_and_edges_match_the_definition() {
        for (m, n, k, beta) in [
            (4, 4, 128, 0.0),
            (7, 5, 137, 0.0),
            (32, 256, 784, 0.5),
            (1, 9, 144, 1.0),
            (13, 3, 200, -1.0),
            (2, 2, 64, 0.0),
            (32, 10, 32, 1.0),
            (5, 7, 31, 0.0),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.1).collect();
            let b: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 19) as f32 - 9.0) * 0.1).collect();
            let c0: Vec<f32> = (0..m * n).map(|i| (i % 5) as f32).collect();
            let mut c = c0.clone();
            let p = Prod {
                m,
                n,
                k,
                alpha: -0.5,
                beta,
                a: a.as_ptr(),
                rsa: k as isize,
                csa: 1,
                b: b.as_ptr(),
                rsb: 1,
                csb: k as isize,
                c: c.as_mut_ptr(),
                rsc: n as isize,
                csc: 1,
            };
            // SAFETY: the buffers hold every element the shapes and strides reach.
            if !unsafe { run(&p) } {
                // No AVX-512 here, or a contraction too short: the library takes the product.
                #[cfg(target_arch = "x86_64")]
                assert!(k < MIN_K || !std::arch::is_x86_feature_detected!("avx512f"), "{m}x{n}x{k} refused");
                continue;
            }
            for i in 0..m {
                for j in 0..n {
                    let dot: f64 = (0..k).map(|q| a[i * k + q] as f64 * b[j * k + q] as f64).sum();
                    let want = -0.5 * dot + beta as f64 * c0[i * n + j] as f64;
                    let got = c[i * n + j] as f64;
                    assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{m}x{n}x{k} ({i},{j}): {got} vs {want}");
                }
            }
        }
    }
}
