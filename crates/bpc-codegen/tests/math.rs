//! Accuracy of the polynomial transcendental kernels, in ulp of the correctly rounded f32
//! result, over dense sweeps of their ranges (including subnormal inputs and results).
//! Run with `--nocapture` to see the measured maxima.

mod common;

use bpc_codegen::{Arg, compile};
use bpc_ir::{BinaryOp, UnaryOp};
use common::*;

/// Distance from `got` to the f32 rounding of `want`, in units of the f32 spacing there.
fn ulps(got: f32, want: f64) -> f64 {
    let w = want as f32;
    if w == got || (w.is_nan() && got.is_nan()) {
        return 0.0;
    }
    if !w.is_finite() || !got.is_finite() {
        return f64::INFINITY;
    }
    let spacing = if w == 0.0 { f32::from_bits(1) } else { f32::from_bits(w.abs().to_bits() + 1) - w.abs() };
    ((got as f64) - (w as f64)).abs() / spacing as f64
}

/// Runs `op` over `xs` (one batch of `xs.len()` scalars) and returns the largest ulp error.
fn max_ulps_unary(op: UnaryOp, xs: &[f32]) -> (f64, f32) {
    let mut b = B::new(op.name());
    let x = b.input("x", &[]);
    let y = b.un(op, x);
    b.result("y", y);
    let c = compile(&b.f, xs.len()).unwrap();
    let mut out = vec![0.0f32; xs.len()];
    c.run(&mut c.workspace(), &mut [Arg::F32(xs)], &mut [&mut out]).unwrap();
    xs.iter()
        .zip(&out)
        .map(|(&x, &g)| (ulps(g, op.eval(x as f64)), x))
        .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
}

fn sweep(lo: f64, hi: f64, n: usize) -> Vec<f32> {
    (0..n).map(|i| (lo + (hi - lo) * i as f64 / (n - 1) as f64) as f32).collect()
}

/// Logarithmically spaced positive values from `lo` to `hi`.
fn log_sweep(lo: f64, hi: f64, n: usize) -> Vec<f32> {
    (0..n).map(|i| (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / (n - 1) as f64).exp() as f32).collect()
}

fn assert_ulps(op: UnaryOp, xs: &[f32], bound: f64) {
    let (u, at) = max_ulps_unary(op, xs);
    println!("{op:>12}: max {u:.2} ulp at x = {at:e} over {} points", xs.len());
    assert!(u <= bound, "{op}: {u} ulp at x = {at:e} (bound {bound})");
}

#[test]
fn exp_within_two_ulp() {
    // Includes subnormal results (below about -87.3) and the overflow edge.
    assert_ulps(UnaryOp::Exp, &sweep(-103.0, 88.7, 200_001), 2.0);
    assert_ulps(UnaryOp::Exp, &sweep(-1.0, 1.0, 100_001), 2.0);
}

/// The clamp, the two-step `2^n` scaling and NaN: exact results at and beyond the edges.
#[test]
fn exp_edges_exact() {
    let cases: [(f32, f32); 12] = [
        (f32::INFINITY, f32::INFINITY),
        (f32::NEG_INFINITY, 0.0),
        (1e30, f32::INFINITY),
        (-1e30, 0.0),
        (100.5, f32::INFINITY),
        (89.0, f32::INFINITY),
        (88.72283, 3.4027985e38), // near the largest finite f32 (3.4028235e38)
        (-0.0, 1.0),
        (-87.33655, f32::from_bits(0x7f_ffe6)), // a subnormal just below f32::MIN_POSITIVE
        (-103.5, f32::from_bits(1)),            // the smallest subnormal
        (-104.0, 0.0),
        (-200.0, 0.0),
    ];
    let mut b = B::new("exp");
    let x = b.input("x", &[]);
    let y = b.un(UnaryOp::Exp, x);
    b.result("y", y);
    let xs: Vec<f32> = cases.iter().map(|c| c.0).chain([f32::NAN]).collect();
    let c = compile(&b.f, xs.len()).unwrap();
    let mut out = vec![0.0f32; xs.len()];
    c.run(&mut c.workspace(), &mut [Arg::F32(&xs)], &mut [&mut out]).unwrap();
    for ((x, want), got) in cases.iter().zip(&out) {
        assert_eq!(got.to_bits(), want.to_bits(), "exp({x:e}) = {got:e}, want {want:e}");
    }
    assert!(out[cases.len()].is_nan());
}

#[test]
fn log_within_two_ulp() {
    assert_ulps(UnaryOp::Log, &log_sweep(1e-45, 1e-37, 50_001), 2.0);
    assert_ulps(UnaryOp::Log, &log_sweep(1e-37, 3e38, 200_001), 2.0);
    assert_ulps(UnaryOp::Log, &sweep(0.5, 2.0, 100_001), 2.0);
}

#[test]
fn tanh_sigmoid_softplus_log_sigmoid() {
    assert_ulps(UnaryOp::Tanh, &sweep(-10.0, 10.0, 200_001), 4.0);
    assert_ulps(UnaryOp::Tanh, &sweep(-1e-3, 1e-3, 20_001), 2.0);
    assert_ulps(UnaryOp::Sigmoid, &sweep(-100.0, 100.0, 200_001), 4.0);
    assert_ulps(UnaryOp::Softplus, &sweep(-100.0, 100.0, 200_001), 4.0);
    assert_ulps(UnaryOp::LogSigmoid, &sweep(-100.0, 100.0, 200_001), 4.0);
    assert_ulps(UnaryOp::Softplus, &sweep(-1e4, 1e4, 20_001), 4.0);
}

#[test]
fn pow_relative_error() {
    let n = 200;
    let xs = log_sweep(0.01, 10.0, n);
    let ys = sweep(-5.0, 5.0, n);
    let (x, y): (Vec<f32>, Vec<f32>) = xs.iter().flat_map(|&x| ys.iter().map(move |&y| (x, y))).unzip();
    let mut b = B::new("pow");
    let xv = b.input("x", &[]);
    let yv = b.input("y", &[]);
    let p = b.bin(BinaryOp::Pow, xv, yv);
    b.result("p", p);
    let c = compile(&b.f, x.len()).unwrap();
    let mut out = vec![0.0f32; x.len()];
    c.run(&mut c.workspace(), &mut [Arg::F32(&x), Arg::F32(&y)], &mut [&mut out]).unwrap();
    // `e^(y log x)` in f32 amplifies the rounding of `y log x` by its magnitude (up to 23
    // here): the bound is (2 + |y ln x|)·ε per element.
    let eps = f32::EPSILON as f64;
    let worst = (0..x.len())
        .map(|i| {
            let want = (x[i] as f64).powf(y[i] as f64);
            let rel = (out[i] as f64 - want).abs() / want;
            (rel / ((2.0 + (y[i] as f64 * (x[i] as f64).ln()).abs()) * eps), i)
        })
        .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a });
    println!("pow: max error {:.2} of the bound at {}^{}", worst.0, x[worst.1], y[worst.1]);
    assert!(worst.0 <= 1.0, "{worst:?}");
}
