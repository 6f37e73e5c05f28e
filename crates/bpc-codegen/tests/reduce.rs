//! Reductions over every axis set (including the batch axis), softmax, cross-entropy and
//! one-hot, against the interpreter; stability at |x| = 1e4.

mod common;

use bpc_codegen::Arg;
use bpc_ir::{Inst, ReduceOp, UnaryOp};
use common::*;
use rand::RngExt;
use rand::rngs::StdRng;

/// Every non-empty sorted subset of `0..rank`.
fn axis_sets(rank: usize) -> Vec<Vec<usize>> {
    (1..1u32 << rank).map(|m| (0..rank).filter(|&a| m & (1 << a) != 0).collect()).collect()
}

fn reduce_tol(op: ReduceOp) -> f64 {
    match op {
        ReduceOp::LogSumExp => 4e-6,
        ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Max | ReduceOp::Min => F32_TOL,
    }
}

#[test]
fn every_reduce_op_over_every_axis_set_of_a_batched_tensor() {
    for &op in ReduceOp::ALL {
        for (a, c) in [(3, 5), (2, 17), (1, 1023)] {
            for axes in axis_sets(3) {
                let mut b = B::new(&format!("{op}_{axes:?}"));
                let x = b.input("x", &[a, c]);
                let r = b.ins(Inst::Reduce { op, arg: x, axes });
                b.result("r", r);
                for batch in BATCHES {
                    check(&b.f, batch, (a * c) as u64, reduce_tol(op));
                }
            }
        }
    }
}

#[test]
fn every_reduce_op_over_shared_tensors() {
    for &op in ReduceOp::ALL {
        for dims in [vec![1usize], vec![7], vec![4, 9], vec![2, 3, 5]] {
            for axes in axis_sets(dims.len()) {
                let mut b = B::new("shared");
                let w = b.param("w", &dims);
                let r = b.ins(Inst::Reduce { op, arg: w, axes });
                b.result("r", r);
                check(&b.f, 1, 5, reduce_tol(op));
            }
        }
    }
}

/// Reducing a large batch of rows: the accumulate-into-memory and register paths at scale.
#[test]
fn long_reductions() {
    for &op in ReduceOp::ALL {
        let mut b = B::new("long");
        let x = b.input("x", &[300]);
        let r0 = b.ins(Inst::Reduce { op, arg: x, axes: vec![0] });
        let r1 = b.ins(Inst::Reduce { op, arg: x, axes: vec![1] });
        let r01 = b.ins(Inst::Reduce { op, arg: x, axes: vec![0, 1] });
        b.result("r0", r0);
        b.result("r1", r1);
        b.result("r01", r01);
        check(&b.f, 128, 8, reduce_tol(op));
    }
}

#[test]
fn softmax_and_log_softmax_along_each_axis() {
    for log in [false, true] {
        for axis in [1, 2] {
            for (a, c) in [(3, 5), (4, 10), (2, 17)] {
                let mut b = B::new("softmax");
                let x = b.input("x", &[a, c]);
                let s = b.ins(Inst::Softmax { arg: x, axis, log });
                b.result("s", s);
                for batch in BATCHES {
                    check_with(&b.f, batch, 3, 4e-6, &uniform(-20.0, 20.0));
                }
            }
        }
        // A shared matrix along its first axis.
        let mut b = B::new("softmax_shared");
        let w = b.param("w", &[6, 3]);
        let s = b.ins(Inst::Softmax { arg: w, axis: 0, log });
        b.result("s", s);
        check(&b.f, 1, 4, 4e-6);
    }
}

#[test]
fn cross_entropy_and_onehot() {
    for k in [1, 3, 10, 17] {
        let mut b = B::new("ce");
        let z = b.input("z", &[k]);
        let y = b.label("y", k);
        let l = b.ins(Inst::CrossEntropy { logits: z, label: y });
        let m = b.ins(Inst::Reduce { op: ReduceOp::Mean, arg: l, axes: vec![0] });
        let o = b.ins(Inst::OneHot { label: y, classes: k });
        b.result("l", l);
        b.result("m", m);
        b.result("o", o);
        for batch in BATCHES {
            check_with(&b.f, batch, k as u64, 4e-6, &uniform(-10.0, 10.0));
        }
    }
}

/// A class outside `0..K` must not read out of bounds: the loss is NaN, the one-hot row NaN.
#[test]
fn out_of_range_classes_give_nan() {
    let k = 4;
    let mut b = B::new("ce_bad");
    let z = b.input("z", &[k]);
    let y = b.label("y", k);
    let l = b.ins(Inst::CrossEntropy { logits: z, label: y });
    let o = b.ins(Inst::OneHot { label: y, classes: k });
    b.result("l", l);
    b.result("o", o);
    let c = bpc_codegen::compile(&b.f, 4).unwrap();
    let z: Vec<f32> = (0..16).map(|i| i as f32 * 0.25).collect();
    let labels = [0, -1, 4, i32::MAX];
    let mut l = vec![0.0f32; 4];
    let mut o = vec![0.0f32; 16];
    c.run(&mut c.workspace(), &mut [Arg::F32(&z), Arg::I32(&labels)], &mut [&mut l, &mut o]).unwrap();
    assert!(l[0].is_finite() && l[1..].iter().all(|v| v.is_nan()), "{l:?}");
    assert_eq!(&o[..4], &[1.0, 0.0, 0.0, 0.0]);
    assert!(o[4..].iter().all(|v| v.is_nan()), "{o:?}");
}

/// sigmoid, softplus, log_sigmoid, logsumexp and cross-entropy at |x| = 1e4: finite, right.
#[test]
fn stable_at_ten_thousand() {
    let xs = [1e4f32, -1e4, 9999.5, -9999.5, 0.0, 88.0, -88.0, 100.0, -100.0, -1e4, 1e4, 20.0];
    let n = xs.len();
    let mut b = B::new("stable");
    let x = b.input("x", &[n]);
    let mut outs = Vec::new();
    for op in [UnaryOp::Sigmoid, UnaryOp::Softplus, UnaryOp::LogSigmoid, UnaryOp::Tanh, UnaryOp::Exp] {
        let y = b.un(op, x);
        b.result(op.name(), y);
        outs.push(op);
    }
    let lse = b.ins(Inst::Reduce { op: ReduceOp::LogSumExp, arg: x, axes: vec![1] });
    b.result("lse", lse);
    let y = b.label("y", n);
    let ce = b.ins(Inst::CrossEntropy { logits: x, label: y });
    b.result("ce", ce);
    let sm = b.ins(Inst::Softmax { arg: x, axis: 1, log: true });
    b.result("log_softmax", sm);
    let c = bpc_codegen::compile(&b.f, 1).unwrap();
    let args = vec![Data::F32(xs.to_vec()), Data::I32(vec![1])];
    let got = run_jit(&c, &b.f, &args);
    let want = run_interp(&b.f, 1, &args);
    for (r, (g, w)) in b.f.results.iter().zip(got.iter().zip(&want)) {
        // exp(1e4) overflows to inf by definition; everything else is finite.
        if r.name != "exp" {
            assert!(g.iter().all(|v| v.is_finite()), "{}: {g:?}", r.name);
        }
        assert_close(&r.name, g, w, 4e-6);
    }
    // Exact values: sigmoid(±1e4) = 1, 0; softplus(1e4) = 1e4; log_sigmoid(-1e4) = -1e4.
    assert_eq!(&got[0][..2], &[1.0, 0.0]);
    assert_eq!(&got[1][..2], &[1e4, 0.0]);
    assert_eq!(&got[2][..2], &[0.0, -1e4]);
}

/// Sums add groups of vectors pairwise before each compensated add (rows of a column sum,
/// unrolled blocks of a row sum). Every row count and length around the vector, unroll and
/// group boundaries, on small integers: exact in `f32` in any order, so a row or block that
/// the loop counts drop or repeat changes the result.
#[test]
fn grouped_sums_are_exact_at_every_boundary() {
    let ints = |r: &mut StdRng| r.random_range(-8i32..=8) as f32;
    for n in [1, 4, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 130, 255, 256, 257, 300] {
        let mut b = B::new(&format!("sum_{n}"));
        let x = b.input("x", &[n]);
        let rows = b.ins(Inst::Reduce { op: ReduceOp::Sum, arg: x, axes: vec![1] });
        let cols = b.ins(Inst::Reduce { op: ReduceOp::Sum, arg: x, axes: vec![0] });
        b.result("rows", rows);
        b.result("cols", cols);
        for batch in [1, 7, 8, 9, 16, 17, 33, 129] {
            check_with(&b.f, batch, n as u64, 0.0, &ints);
        }
    }
    // Reduced axes that are not adjacent stay two loops: only the inner one is grouped.
    for (a, m, c) in [(2, 3, 5), (2, 9, 4), (3, 17, 2), (1, 8, 7), (2, 24, 9)] {
        let mut b = B::new(&format!("sum_{a}x{m}x{c}"));
        let x = b.input("x", &[a, m, c]);
        let r = b.ins(Inst::Reduce { op: ReduceOp::Sum, arg: x, axes: vec![0, 2] });
        b.result("r", r);
        for batch in [1, 3, 9, 20] {
            check_with(&b.f, batch, (a * m * c) as u64, 0.0, &ints);
        }
    }
}
