//! Elementwise kernels against the interpreter: every unary and binary op, `select`, at
//! lengths that exercise the vector loop, its remainders and the partial-vector tail.

mod common;

use bpc_ir::{BinaryOp, Inst, UnaryOp};
use common::*;

/// Tolerance of an op's kernel: the spec's float32 tolerance, looser for the polynomial
/// transcendental kernels (a few ulp, compounded in the composites).
fn unary_tol(op: UnaryOp) -> f64 {
    match op {
        UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Sqrt => 1e-6,
        UnaryOp::Exp | UnaryOp::Log => 2e-6,
        UnaryOp::Sigmoid | UnaryOp::Tanh | UnaryOp::Softplus | UnaryOp::LogSigmoid => 4e-6,
    }
}

fn unary_fn(op: UnaryOp, n: usize) -> bpc_ir::Function {
    let mut b = B::new(&format!("{op}_{n}"));
    let x = b.input("x", &[n]);
    let y = b.un(op, x);
    b.result("y", y);
    b.f
}

#[test]
fn every_unary_op_at_every_length() {
    for &op in UnaryOp::ALL {
        for n in LENGTHS {
            for batch in [1, 7] {
                let f = unary_fn(op, n);
                match op {
                    // Positive arguments only for the functions undefined below 0.
                    UnaryOp::Log | UnaryOp::Sqrt => {
                        check_with(&f, batch, n as u64, unary_tol(op), &uniform(1e-3, 50.0))
                    }
                    _ => check_with(&f, batch, n as u64, unary_tol(op), &uniform(-30.0, 30.0)),
                }
            }
        }
    }
}

#[test]
fn unary_ops_at_batch_128() {
    for &op in UnaryOp::ALL {
        check_with(&unary_fn(op, 17), 128, 3, unary_tol(op), &uniform(0.01, 8.0));
    }
}

fn binary_fn(op: BinaryOp, n: usize) -> bpc_ir::Function {
    let mut b = B::new(&format!("{op}_{n}"));
    let x = b.input("x", &[n]);
    let y = b.input("y", &[n]);
    let z = b.bin(op, x, y);
    b.result("z", z);
    b.f
}

#[test]
fn every_binary_op_at_every_length() {
    for &op in BinaryOp::ALL {
        for n in LENGTHS {
            for batch in [1, 7] {
                let f = binary_fn(op, n);
                match op {
                    BinaryOp::Pow => check_with(&f, batch, n as u64, 1e-5, &uniform(0.05, 3.0)),
                    // Small integers, so that ties (max, min, le, ge, eq) really occur.
                    _ => check_with(&f, batch, n as u64, 1e-6, &|r| uniform(-3.0, 3.0)(r).round()),
                }
                check_with(&f, batch, 100 + n as u64, 2e-6, &uniform(-4.0, 4.0));
            }
        }
    }
}

#[test]
fn binary_ops_at_batch_128() {
    for &op in BinaryOp::ALL {
        check_with(&binary_fn(op, 5), 128, 11, 1e-5, &uniform(0.1, 2.0));
    }
}

#[test]
fn select_picks_by_nonzero_mask() {
    for n in LENGTHS {
        let mut b = B::new("select");
        let x = b.input("x", &[n]);
        let y = b.input("y", &[n]);
        let c = b.bin(BinaryOp::Gt, x, y);
        let s = b.ins(Inst::Select { cond: c, on_true: x, on_false: y });
        // A raw (non-mask) condition: any nonzero value picks on_true.
        let s2 = b.ins(Inst::Select { cond: x, on_true: y, on_false: s });
        b.result("s", s);
        b.result("s2", s2);
        for batch in BATCHES {
            check_with(&b.f, batch, 7, 0.0, &|r| uniform(-2.0, 2.0)(r).round());
        }
    }
}

/// `pow` by a broadcast constant integer becomes multiplications; non-integers go through
/// `exp(y log x)` with IEEE's special cases for negative bases.
#[test]
fn pow_by_constants_and_negative_bases() {
    for e in [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 5.0, 0.5, 1.5, -0.5] {
        let mut b = B::new("pow_const");
        let x = b.input("x", &[17]);
        let k = b.splat(e, x);
        let y = b.bin(BinaryOp::Pow, x, k);
        b.result("y", y);
        // Negative bases too: NaN for non-integer exponents, signed results for odd ones.
        check_with(&b.f, 7, 5, 1e-5, &uniform(-3.0, 3.0));
    }
    // A runtime exponent with integer values and negative bases.
    let f = binary_fn(BinaryOp::Pow, 33);
    check_with(&f, 3, 9, 2e-5, &|r| uniform(-3.0, 3.0)(r).round());
}

#[test]
fn special_values_follow_ieee() {
    let specials =
        [0.0f32, -0.0, 1.0, -1.0, 0.5, -2.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e-40, -1e-40, 3.0, 1e4, -1e4];
    let n = specials.len();
    let sample = |r: &mut rand::rngs::StdRng| {
        use rand::RngExt;
        specials[r.random_range(0..n)]
    };
    for &op in UnaryOp::ALL {
        check_with(&unary_fn(op, 64), 1, 1, unary_tol(op), &sample);
    }
    for &op in BinaryOp::ALL {
        check_with(&binary_fn(op, 256), 1, 2, 2e-6, &sample);
    }
}
