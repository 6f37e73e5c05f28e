//! Broadcasting patterns and the view instructions (`reshape`, `transpose`, `index`,
//! `scatter`), read with strides by their consumers or materialized, against the interpreter.

mod common;

use bpc_ir::{BinaryOp, Inst, ReduceOp, Shape, UnaryOp};
use common::*;

#[test]
fn scalar_to_tensor() {
    for n in LENGTHS {
        let mut b = B::new("scalar_bcast");
        let x = b.input("x", &[n]);
        let s = b.param("s", &[]);
        let sb = b.bcast(s, Shape::batched([n]));
        let y = b.bin(BinaryOp::Mul, x, sb);
        let y = b.bin(BinaryOp::Sub, sb, y);
        b.result("y", y);
        for batch in BATCHES {
            check(&b.f, batch, n as u64, F32_TOL);
        }
    }
}

#[test]
fn vector_to_matrix_rows_and_shared_to_batched() {
    for n in LENGTHS {
        let mut b = B::new("rows");
        let x = b.input("x", &[3, n]);
        let v = b.param("v", &[n]);
        let w = b.param("w", &[3, n]);
        // [n] -> [B, 3, n] (rows of every example) and [3, n] -> [B, 3, n] (shared to batched).
        let vb = b.bcast(v, Shape::batched([3, n]));
        let wb = b.bcast(w, Shape::batched([3, n]));
        let t = b.bin(BinaryOp::Add, x, vb);
        let y = b.bin(BinaryOp::Mul, t, wb);
        // The same vector broadcast to a shared matrix, then the result read by a reduction.
        let vm = b.bcast(v, Shape::shared([4, n]));
        let r = b.ins(Inst::Reduce { op: ReduceOp::Sum, arg: vm, axes: vec![0] });
        b.result("y", y);
        b.result("r", r);
        for batch in BATCHES {
            check(&b.f, batch, n as u64, F32_TOL);
        }
    }
}

#[test]
fn size_one_axes_and_columns() {
    for n in [1, 5, 17] {
        let mut b = B::new("size_one");
        let x = b.input("x", &[4, n]);
        // A per-example column [4, 1] broadcast along rows: stride 0 on the inner axis.
        let c = b.input("c", &[4, 1]);
        let cb = b.bcast(c, Shape::batched([4, n]));
        // A per-example scalar [] broadcast over its example.
        let s = b.input("s", &[]);
        let sb = b.bcast(s, Shape::batched([4, n]));
        // [1, n] shared to [B, 4, n].
        let r = b.param("r", &[1, n]);
        let rb = b.bcast(r, Shape::batched([4, n]));
        let y = b.bin(BinaryOp::Sub, x, cb);
        let y = b.bin(BinaryOp::Mul, y, sb);
        let y = b.bin(BinaryOp::Add, y, rb);
        b.result("y", y);
        // A materialized broadcast: a result that is a broadcast.
        b.result("cb", cb);
        for batch in BATCHES {
            check(&b.f, batch, n as u64, F32_TOL);
        }
    }
}

/// The frontend lowers some batched contractions to broadcast + mul + reduce of rank 4.
#[test]
fn rank_four_broadcast_mul_reduce() {
    let (m, k, n) = (3, 5, 4);
    let mut b = B::new("bmm");
    let a = b.input("a", &[m, k]);
    let w = b.param("w", &[k, n]);
    let a4 = b.ins(Inst::Reshape { arg: a, to: Shape::batched([m, k, 1]) });
    let a4 = b.bcast(a4, Shape::batched([m, k, n]));
    let w4 = b.bcast(w, Shape::batched([m, k, n]));
    let p = b.bin(BinaryOp::Mul, a4, w4);
    let y = b.ins(Inst::Reduce { op: ReduceOp::Sum, arg: p, axes: vec![2] });
    b.result("y", y);
    for batch in BATCHES {
        check(&b.f, batch, 1, F32_TOL);
    }
}

#[test]
fn reshape_transpose_index_scatter() {
    let mut b = B::new("views");
    let x = b.input("x", &[4, 6]);
    let w = b.param("w", &[3, 5]);
    // reshape (an alias), then transpose (a strided view) read by an elementwise op.
    let r = b.ins(Inst::Reshape { arg: x, to: Shape::batched([6, 4]) });
    let t = b.ins(Inst::Transpose { arg: r });
    let e = b.un(UnaryOp::Neg, t);
    // reshape of a transposed view must copy first.
    let tr = b.ins(Inst::Reshape { arg: t, to: Shape::batched([24]) });
    // index: a row, a scalar of a shared matrix, and a scatter back.
    let row = b.ins(Inst::Index { arg: x, at: vec![2] });
    let one = b.ins(Inst::Index { arg: w, at: vec![1, 3] });
    let wt = b.ins(Inst::Transpose { arg: w });
    let col = b.ins(Inst::Index { arg: wt, at: vec![4] });
    let sc = b.ins(Inst::Scatter { arg: row, at: vec![1], to: Shape::batched([4, 6]) });
    let sc1 = b.ins(Inst::Scatter { arg: one, at: vec![2, 0], to: Shape::shared([3, 5]) });
    b.result("e", e);
    b.result("t", t);
    b.result("tr", tr);
    b.result("row", row);
    b.result("one", one);
    b.result("col", col);
    b.result("sc", sc);
    b.result("sc1", sc1);
    for batch in BATCHES {
        check(&b.f, batch, 3, 0.0);
    }
}

#[test]
fn constants_and_batch_size_fold() {
    let mut b = B::new("consts");
    let x = b.input("x", &[5]);
    let k = b.splat(2.5, x);
    let y = b.bin(BinaryOp::Mul, x, k);
    let bs = b.ins(Inst::BatchSize);
    let s = b.ins(Inst::Reduce { op: ReduceOp::Sum, arg: y, axes: vec![0, 1] });
    let m = b.bin(BinaryOp::Div, s, bs);
    b.result("y", y);
    b.result("m", m);
    b.result("bs", bs);
    // A constant result and a constant matrix fed to a reduction.
    let c = b.konst(-1.5);
    let cm = b.bcast(c, Shape::shared([3, 4]));
    let cs = b.ins(Inst::Reduce { op: ReduceOp::Max, arg: cm, axes: vec![1] });
    b.result("c", c);
    b.result("cs", cs);
    for batch in BATCHES {
        check(&b.f, batch, 5, F32_TOL);
    }
}

#[test]
fn results_that_are_arguments_or_repeated() {
    let mut b = B::new("aliases");
    let x = b.input("x", &[3]);
    let y = b.un(UnaryOp::Abs, x);
    b.result("x", x);
    b.result("y", y);
    b.result("y_again", y);
    for batch in BATCHES {
        check(&b.f, batch, 2, 0.0);
    }
}

/// Zero-sized axes: empty elementwise results, reductions over nothing (0, -inf, NaN mean),
/// and a product contracting over nothing (zeros).
#[test]
fn zero_sized_axes() {
    for &op in ReduceOp::ALL {
        let mut b = B::new("empty");
        let x = b.input("x", &[0]);
        let e = b.un(UnaryOp::Exp, x);
        let r = b.ins(Inst::Reduce { op, arg: x, axes: vec![1] });
        let a = b.param("a", &[3, 0]);
        let w = b.param("w", &[0, 4]);
        let y = b.ins(Inst::MatMul { lhs: a, rhs: w, ta: false, tb: false });
        b.result("e", e);
        b.result("r", r);
        b.result("y", y);
        check(&b.f, 2, 1, 0.0);
    }
}
