//! Vector math in CLIF: every value here is an `f32x4`.
//!
//! Cranelift has no transcendental instructions and a libm call per element costs 2–3 ns, so
//! `exp`, `log` and the composites built on them are polynomial approximations with range
//! reduction, after Cephes (`expf.c`, `logf.c`, `tanhf.c`; S. L. Moshier), the same scheme as
//! SLEEF's and the SSE `sse_mathfun` ports. Maximum errors against the correctly rounded
//! result, measured over dense sweeps in `tests/math.rs`: 1 ulp for `exp`, `log` and `tanh`
//! (subnormals included), 2 ulp for `sigmoid`, `softplus` and `log_sigmoid`; `pow` within
//! `(2 + |y ln x|)·ε` relative.
//! Data-dependent choices use `fcmp` masks with `bitselect`/`band` (branch-free; scalar
//! `select` lowers to branches).

// The coefficients are Cephes' published decimals, kept verbatim for reference.
#![allow(clippy::excessive_precision)]

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::types::{F32, F32X4, I8X16, I32, I32X4};
use cranelift_codegen::ir::{Endianness, InstBuilder, MemFlagsData, StackSlot, Value};
use cranelift_frontend::FunctionBuilder;

/// Emits vector math into the function being built.
pub(crate) struct Em<'a, 'f> {
    pub b: &'a mut FunctionBuilder<'f>,
    /// The target has a fused multiply-add (else `madd` is a multiply and an add).
    pub fma: bool,
    /// Emitting into the entry function rather than a kernel function of its own.
    pub inlined: bool,
    /// A dot product over a row of at least this many multiply-adds is computed by a call to
    /// [`bpc_row_product`](crate::outer::bpc_row_product); `usize::MAX` without its kernel
    /// (no AVX-512) or without `fma` (the inlined dot then rounds twice).
    pub row_product_min: usize,
    /// The stack buffer those calls write (shared: each kernel reads its row before the next
    /// call) and its size in bytes.
    pub row_slot: Option<(StackSlot, u32)>,
    /// Calls to it emitted so far.
    pub row_calls: usize,
}

impl Em<'_, '_> {
    /// A splatted constant.
    pub fn c(&mut self, x: f32) -> Value {
        let s = self.b.ins().f32const(x);
        self.b.ins().splat(F32X4, s)
    }

    fn ci(&mut self, x: i32) -> Value {
        let s = self.b.ins().iconst(I32, x as i64);
        self.b.ins().splat(I32X4, s)
    }

    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }

    pub fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }

    pub fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }

    pub fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }

    /// `a * b + c`, fused where the target can.
    pub fn madd(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let p = self.b.ins().fmul(a, b);
            self.b.ins().fadd(p, c)
        }
    }

    /// `a * k + c` for a constant `k`.
    fn maddk(&mut self, a: Value, k: f32, c: Value) -> Value {
        let k = self.c(k);
        self.madd(a, k, c)
    }

    /// A lane mask (all ones where `a cc b`), typed `f32x4` for `bitselect`/`band`.
    pub fn cmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        let m = self.b.ins().fcmp(cc, a, b);
        self.as_f(m)
    }

    /// `mask ? t : f` per lane.
    pub fn sel(&mut self, mask: Value, t: Value, f: Value) -> Value {
        self.b.ins().bitselect(mask, t, f)
    }

    pub fn and(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().band(a, b)
    }

    pub fn or(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().bor(a, b)
    }

    fn as_i(&mut self, v: Value) -> Value {
        self.b.ins().bitcast(I32X4, MemFlagsData::new(), v)
    }

    fn as_f(&mut self, v: Value) -> Value {
        self.b.ins().bitcast(F32X4, MemFlagsData::new(), v)
    }

    /// Horner's rule: `coeffs[0] * x^(n-1) + ... + coeffs[n-1]`.
    fn poly(&mut self, x: Value, coeffs: &[f32]) -> Value {
        let mut acc = self.c(coeffs[0]);
        for &k in &coeffs[1..] {
            let k = self.c(k);
            acc = self.madd(acc, x, k);
        }
        acc
    }

    /// `2^n` for integer lanes `n` in `-126..=127`.
    fn pow2i(&mut self, n: Value) -> Value {
        let bias = self.ci(127);
        let e = self.b.ins().iadd(n, bias);
        let bits = self.b.ins().ishl_imm_u(e, 23);
        self.as_f(bits)
    }

    /// `a·b`, but `+0` wherever `a` or `b` is `±0` (the adjoint's strong zero).
    pub fn strong_mul(&mut self, a: Value, b: Value) -> Value {
        let p = self.mul(a, b);
        let zero = self.c(0.0);
        let za = self.cmp(FloatCC::Equal, a, zero);
        let zb = self.cmp(FloatCC::Equal, b, zero);
        let z = self.or(za, zb);
        self.b.ins().band_not(p, z)
    }

    /// `(1.0 where mask) else 0.0`.
    pub fn mask01(&mut self, mask: Value) -> Value {
        let one = self.c(1.0);
        self.and(mask, one)
    }

    pub fn relu(&mut self, x: Value) -> Value {
        // `ugt` keeps NaN (unordered) lanes; -0 and negatives become +0.
        let zero = self.c(0.0);
        let m = self.cmp(FloatCC::UnorderedOrGreaterThan, x, zero);
        self.and(x, m)
    }

    /// `max(a, b)`: `a` on a tie, NaN if either is NaN (as `BinaryOp::Max`).
    pub fn max(&mut self, a: Value, b: Value) -> Value {
        let lt = self.cmp(FloatCC::LessThan, a, b);
        let bnan = self.cmp(FloatCC::Unordered, b, b);
        let pick_b = self.or(lt, bnan);
        self.sel(pick_b, b, a)
    }

    /// `min(a, b)`: `a` on a tie, NaN if either is NaN.
    pub fn min(&mut self, a: Value, b: Value) -> Value {
        let gt = self.cmp(FloatCC::GreaterThan, a, b);
        let bnan = self.cmp(FloatCC::Unordered, b, b);
        let pick_b = self.or(gt, bnan);
        self.sel(pick_b, b, a)
    }

    /// `e^x`: round `x·log2 e` to `n`, reduce `r = x - n ln 2` (ln 2 split in two), a degree-7
    /// polynomial for `e^r`, then scale by `2^n` in two halves so that results down to the
    /// subnormals and up to overflow (`inf`) come out right. Cephes `expf`'s coefficients;
    /// the polynomial is evaluated by Estrin's scheme (depth 3 instead of Horner's 7) because
    /// a scalar call waits on this chain.
    pub fn exp(&mut self, x: Value) -> Value {
        // Clamp; beyond these bounds the result is 0 or inf anyway. The operand order makes
        // NaN pass through and lets Cranelift pick `minps`/`maxps` instead of a compare and
        // a blend (`bitselect(fcmp lt a b, a, b)`).
        let (lo, hi) = (self.c(-110.0), self.c(100.0));
        let over = self.cmp(FloatCC::LessThan, hi, x);
        let x = self.sel(over, hi, x);
        let under = self.cmp(FloatCC::LessThan, x, lo);
        let x = self.sel(under, lo, x);
        // n = round(x·log2 e) by adding 1.5·2^23: the add rounds to an integer and leaves n
        // in the low mantissa bits (|n| < 2^22 after the clamp), cheaper than `nearest` and
        // a saturating conversion.
        let log2e = self.c(std::f32::consts::LOG2_E);
        let magic = self.c(12_582_912.0);
        let t = self.madd(x, log2e, magic);
        let fx = self.sub(t, magic);
        let r = self.maddk(fx, -0.693359375, x);
        let r = self.maddk(fx, 2.12194440e-4, r);
        // e^r ≈ 1 + r + r²·p(r), p of degree 5 (Cephes' c0..c5, highest first), as
        // p = (c5 + c4·r) + r²·(c3 + c2·r) + r⁴·(c1 + c0·r).
        let [c0, c1, c2, c3, c4, c5] =
            [1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3, 4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1];
        let r2 = self.mul(r, r);
        let k = self.c(c1);
        let q2 = self.maddk(r, c0, k);
        let k = self.c(c3);
        let q1 = self.maddk(r, c2, k);
        let k = self.c(c5);
        let q0 = self.maddk(r, c4, k);
        let r4 = self.mul(r2, r2);
        let lo4 = self.madd(q1, r2, q0);
        let p = self.madd(q2, r4, lo4);
        // 2^n = s1·s2 with n1 = n >> 1, n2 = n - n1, both normal. s1 is folded into the last
        // multiply-add, off the chain: p·(r²·s1) + (r + 1)·s1 rounds to the same value as
        // (p·r² + (r + 1))·s1 (scaling by a power of two in the normal range is exact), and
        // only the final `·s2` can round into the subnormals or overflow.
        let (ti, mi) = (self.as_i(t), self.as_i(magic));
        let n = self.b.ins().isub(ti, mi);
        let n1 = self.b.ins().sshr_imm_u(n, 1);
        let n2 = self.b.ins().isub(n, n1);
        let s1 = self.pow2i(n1);
        let s2 = self.pow2i(n2);
        let one = self.c(1.0);
        let r1 = self.add(r, one);
        let r1s = self.mul(r1, s1);
        let r2s = self.mul(r2, s1);
        let y = self.madd(p, r2s, r1s);
        self.mul(y, s2)
    }

    /// `ln x`: split `x = m·2^e` with `m` in `[√½, √2)`, a degree-9 polynomial in `m - 1`,
    /// then `e·ln 2` in two parts; subnormals are scaled by 2^23 first. `log 0 = -inf`,
    /// `log x<0 = NaN`, `log inf = inf`. Cephes `logf`.
    pub fn log(&mut self, x: Value) -> Value {
        let min_normal = self.c(f32::MIN_POSITIVE);
        let den = self.cmp(FloatCC::LessThan, x, min_normal);
        let scale = self.c(8_388_608.0); // 2^23
        let xs_den = self.mul(x, scale);
        let xs = self.sel(den, xs_den, x);
        let d23 = self.c(23.0);
        let eoff = self.and(den, d23);
        let bits = self.as_i(xs);
        let ebits = self.b.ins().ushr_imm_u(bits, 23);
        let ff = self.ci(0xff);
        let ebits = self.b.ins().band(ebits, ff);
        let e126 = self.ci(126);
        let ei = self.b.ins().isub(ebits, e126);
        let e = self.b.ins().fcvt_from_sint(F32X4, ei);
        let e = self.sub(e, eoff);
        let mant_mask = self.ci(0x807f_ffffu32 as i32);
        let half_bits = self.ci(0x3f00_0000);
        let mb = self.b.ins().band(bits, mant_mask);
        let mb = self.b.ins().bor(mb, half_bits);
        let m = self.as_f(mb);
        // m in [0.5, 1): below √½ use 2m and e - 1.
        let sqrthf = self.c(std::f32::consts::FRAC_1_SQRT_2);
        let small = self.cmp(FloatCC::LessThan, m, sqrthf);
        let m2 = self.add(m, m);
        let m = self.sel(small, m2, m);
        let one = self.c(1.0);
        let m = self.sub(m, one);
        let small1 = self.and(small, one);
        let e = self.sub(e, small1);
        let z = self.mul(m, m);
        let p = self.poly(
            m,
            &[
                7.0376836292E-2,
                -1.1514610310E-1,
                1.1676998740E-1,
                -1.2420140846E-1,
                1.4249322787E-1,
                -1.6668057665E-1,
                2.0000714765E-1,
                -2.4999993993E-1,
                3.3333331174E-1,
            ],
        );
        let y = self.mul(p, m);
        let y = self.mul(y, z);
        let y = self.maddk(e, -2.12194440e-4, y);
        let y = self.maddk(z, -0.5, y);
        let r = self.add(m, y);
        let r = self.maddk(e, 0.693359375, r);
        // Special cases, last one wins: inf -> inf, 0 -> -inf, x < 0 or NaN -> NaN.
        let inf = self.c(f32::INFINITY);
        let is_inf = self.cmp(FloatCC::Equal, x, inf);
        let r = self.sel(is_inf, inf, r);
        let zero = self.c(0.0);
        let is_zero = self.cmp(FloatCC::Equal, x, zero);
        let ninf = self.c(f32::NEG_INFINITY);
        let r = self.sel(is_zero, ninf, r);
        let bad = self.cmp(FloatCC::UnorderedOrLessThan, x, zero);
        let nan = self.c(f32::NAN);
        self.sel(bad, nan, r)
    }

    /// `log(1 + t)` accurate for small `t >= 0`: `log u - ((u - 1) - t) / u` with `u = 1 + t`
    /// (the rounding of `u` is corrected to first order; Goldberg 1991, Theorem 4).
    fn log1p_pos(&mut self, t: Value) -> Value {
        let one = self.c(1.0);
        let u = self.add(one, t);
        let lu = self.log(u);
        let um1 = self.sub(u, one);
        let err = self.sub(um1, t);
        let corr = self.div(err, u);
        self.sub(lu, corr)
    }

    /// `log(1 + e^x) = max(x, 0) + log1p(e^-|x|)`: no overflow for any `x`.
    pub fn softplus(&mut self, x: Value) -> Value {
        let ax = self.b.ins().fabs(x);
        let nax = self.b.ins().fneg(ax);
        let e = self.exp(nax);
        let l = self.log1p_pos(e);
        let r = self.relu(x);
        self.add(r, l)
    }

    /// `log σ(x) = -softplus(-x)`.
    pub fn log_sigmoid(&mut self, x: Value) -> Value {
        let nx = self.b.ins().fneg(x);
        let s = self.softplus(nx);
        self.b.ins().fneg(s)
    }

    /// `σ(x)`: with `e = e^-|x|`, `1/(1+e)` for `x >= 0` and `e/(1+e)` below; never overflows.
    pub fn sigmoid(&mut self, x: Value) -> Value {
        let ax = self.b.ins().fabs(x);
        let nax = self.b.ins().fneg(ax);
        let e = self.exp(nax);
        let one = self.c(1.0);
        let zero = self.c(0.0);
        let pos = self.cmp(FloatCC::GreaterThanOrEqual, x, zero);
        let num = self.sel(pos, one, e);
        let den = self.add(one, e);
        self.div(num, den)
    }

    /// `tanh x`: an odd polynomial below |x| = 0.625 (accurate near 0, keeps -0), else
    /// `(1 - e)/(1 + e)` with `e = e^-2|x|` and the sign of `x`. Cephes `tanhf`.
    pub fn tanh(&mut self, x: Value) -> Value {
        let ax = self.b.ins().fabs(x);
        let s = self.mul(x, x);
        let p = self
            .poly(s, &[-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2, 1.33314422036E-1, -3.33332819422E-1]);
        let ps = self.mul(p, s);
        let small = self.madd(ps, x, x);
        let m2 = self.c(-2.0);
        let t = self.mul(ax, m2);
        let e = self.exp(t);
        let one = self.c(1.0);
        let num = self.sub(one, e);
        let den = self.add(one, e);
        let big = self.div(num, den);
        let sign = self.c(-0.0);
        let sx = self.and(x, sign);
        let big = self.or(big, sx);
        let lim = self.c(0.625);
        let is_small = self.cmp(FloatCC::LessThan, ax, lim);
        self.sel(is_small, small, big)
    }

    /// `x^n` by repeated squaring; a negative `n` takes the reciprocal (`0^-1 = inf`).
    pub fn powi(&mut self, x: Value, n: i32) -> Value {
        let mut k = n.unsigned_abs();
        let mut acc: Option<Value> = None;
        let mut base = x;
        while k > 0 {
            if k & 1 == 1 {
                acc = Some(match acc {
                    Some(a) => self.mul(a, base),
                    None => base,
                });
            }
            k >>= 1;
            if k > 0 {
                base = self.mul(base, base);
            }
        }
        let p = match acc {
            Some(a) => a,
            None => return self.c(1.0),
        };
        if n < 0 {
            let one = self.c(1.0);
            self.div(one, p)
        } else {
            p
        }
    }

    /// `x^y` as `e^(y log|x|)` with IEEE `pow`'s special cases: the sign for negative `x`
    /// and odd integer `y`, NaN for finite negative `x` and non-integer `y`, `x^0 = 1^y = 1`,
    /// `(-1)^±inf = 1`. The relative error grows with `|y log x|` (f32 `log`).
    pub fn pow(&mut self, x: Value, y: Value) -> Value {
        let ax = self.b.ins().fabs(x);
        let l = self.log(ax);
        let t = self.mul(y, l);
        let r = self.exp(t);
        // Integer and odd-integer exponents (every |y| >= 2^24 is even; inf counts as even).
        let fy = self.b.ins().floor(y);
        let y_int = self.cmp(FloatCC::Equal, fy, y);
        let half = self.c(0.5);
        let hy = self.mul(y, half);
        let fhy = self.b.ins().floor(hy);
        let half_int = self.cmp(FloatCC::Equal, fhy, hy);
        let not_half = self.b.ins().bnot(half_int);
        let y_odd = self.and(y_int, not_half);
        let sign = self.c(-0.0);
        let sx = self.and(x, sign);
        let neg = self.and(sx, y_odd);
        let r = self.b.ins().bxor(r, neg);
        // Finite negative x with a non-integer y: NaN.
        let zero = self.c(0.0);
        let ninf = self.c(f32::NEG_INFINITY);
        let x_neg = self.cmp(FloatCC::LessThan, x, zero);
        let x_fin = self.cmp(FloatCC::NotEqual, x, ninf);
        let not_int = self.b.ins().bnot(y_int);
        let bad = self.and(x_neg, x_fin);
        let bad = self.and(bad, not_int);
        let nan = self.c(f32::NAN);
        let r = self.sel(bad, nan, r);
        // Results that are exactly 1.
        let one = self.c(1.0);
        let inf = self.c(f32::INFINITY);
        let ay = self.b.ins().fabs(y);
        let y_inf = self.cmp(FloatCC::Equal, ay, inf);
        let ax_one = self.cmp(FloatCC::Equal, ax, one);
        let one_inf = self.and(y_inf, ax_one);
        let x_one = self.cmp(FloatCC::Equal, x, one);
        let y_zero = self.cmp(FloatCC::Equal, y, zero);
        let ones = self.or(one_inf, x_one);
        let ones = self.or(ones, y_zero);
        self.sel(ones, one, r)
    }

    /// `x` where finite or NaN, 0 where infinite.
    pub fn finite_or_0(&mut self, x: Value) -> Value {
        let ax = self.b.ins().fabs(x);
        let inf = self.c(f32::INFINITY);
        let fin = self.cmp(FloatCC::UnorderedOrLessThan, ax, inf);
        self.and(x, fin)
    }

    /// `m + log s`, or `m` where `m` is infinite.
    pub fn lse_finish(&mut self, m: Value, s: Value) -> Value {
        let l = self.log(s);
        let r = self.add(m, l);
        let am = self.b.ins().fabs(m);
        let inf = self.c(f32::INFINITY);
        let is_inf = self.cmp(FloatCC::Equal, am, inf);
        self.sel(is_inf, m, r)
    }

    /// Swaps lanes of an `f32x4` by a 4-lane pattern (a byte shuffle underneath).
    fn permute(&mut self, v: Value, lanes: [u8; 4]) -> Value {
        let le = MemFlagsData::new().with_endianness(Endianness::Little);
        let bytes = self.b.ins().bitcast(I8X16, le, v);
        let mut mask = [0u8; 16];
        for (i, &l) in lanes.iter().enumerate() {
            for j in 0..4 {
                mask[4 * i + j] = 4 * l + j as u8;
            }
        }
        let imm = self.b.func.dfg.immediates.push(mask.to_vec().into());
        let s = self.b.ins().shuffle(bytes, bytes, imm);
        self.b.ins().bitcast(F32X4, le, s)
    }

    /// Combines the four lanes of `v` with `f`; every lane of the result holds the total.
    pub fn horizontal(&mut self, v: Value, f: impl Fn(&mut Self, Value, Value) -> Value) -> Value {
        let hi = self.permute(v, [2, 3, 0, 1]);
        let v = f(self, v, hi);
        let sw = self.permute(v, [1, 0, 3, 2]);
        f(self, v, sw)
    }

    /// A scalar `f32` into lane 0 (other lanes unspecified).
    pub fn in_lane0(&mut self, x: Value) -> Value {
        self.b.ins().scalar_to_vector(F32X4, x)
    }

    /// Lane 0 as a scalar `f32`.
    pub fn lane0(&mut self, v: Value) -> Value {
        let x = self.b.ins().extractlane(v, 0);
        debug_assert_eq!(self.b.func.dfg.value_type(x), F32);
        x
    }
}
