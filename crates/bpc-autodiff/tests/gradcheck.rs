//! Every VJP rule against float64 central finite differences: one small hand-built function
//! per primitive, per broadcasting pattern, per reduction axis set and per matmul layout.

mod common;

use bpc_ir::{BinaryOp, Inst, ReduceOp, Shape, UnaryOp};
use common::{Case, Domain, batched, gradcheck, shared};

fn unary_domain(op: UnaryOp) -> Domain {
    match op {
        UnaryOp::Log | UnaryOp::Sqrt => Domain::Positive,
        UnaryOp::Neg
        | UnaryOp::Exp
        | UnaryOp::Abs
        | UnaryOp::Sigmoid
        | UnaryOp::Tanh
        | UnaryOp::Relu
        | UnaryOp::Softplus
        | UnaryOp::LogSigmoid => Domain::Any,
    }
}

#[test]
fn every_unary_op() {
    for &op in UnaryOp::ALL {
        for shape in [batched(&[3]), shared(&[2, 3])] {
            let mut c = Case::new(op.name());
            let x = c.input_in("x", shape, unary_domain(op));
            let y = c.ins(Inst::Unary { op, arg: x });
            gradcheck(c, y);
        }
    }
}

#[test]
fn every_binary_op() {
    for &op in BinaryOp::ALL {
        // A tensor power needs a positive base; everything else is checked away from 0.
        let base = if op == BinaryOp::Pow { Domain::Positive } else { Domain::Any };
        for shape in [batched(&[3]), shared(&[2, 2])] {
            let mut c = Case::new(op.name());
            let a = c.input_in("a", shape.clone(), base);
            let b = c.input("b", shape);
            let y = c.bin(op, a, b);
            gradcheck(c, y);
        }
    }
}

#[test]
fn pow_with_a_constant_exponent() {
    for (k, domain) in [(2.0, Domain::Any), (3.0, Domain::Any), (0.5, Domain::Positive), (-1.5, Domain::Positive)] {
        let mut c = Case::new("pow_const");
        let x = c.input_in("x", batched(&[3]), domain);
        let e = c.konst(k, batched(&[3]));
        let y = c.bin(BinaryOp::Pow, x, e);
        gradcheck(c, y);
    }
}

#[test]
fn select_routes_to_the_branch_taken() {
    let mut c = Case::new("select");
    let m = c.input("m", batched(&[4]));
    let zero = c.konst(0.0, batched(&[4]));
    let cond = c.bin(BinaryOp::Gt, m, zero);
    let a = c.input("a", batched(&[4]));
    let b = c.input("b", batched(&[4]));
    let y = c.ins(Inst::Select { cond, on_true: a, on_false: b });
    gradcheck(c, y);
    // A raw float mask as the condition: still no gradient to it.
    let mut c = Case::new("select_mask");
    let cond = c.input("cond", shared(&[3]));
    let a = c.input("a", shared(&[3]));
    let b = c.input("b", shared(&[3]));
    let y = c.ins(Inst::Select { cond, on_true: a, on_false: b });
    gradcheck(c, y);
}

#[test]
fn every_reduction_over_every_axis_set() {
    let cases: [(Shape, &[&[usize]]); 3] = [
        (batched(&[3, 4]), &[&[0], &[1], &[2], &[0, 1], &[0, 2], &[1, 2], &[0, 1, 2]]),
        (shared(&[3, 4]), &[&[0], &[1], &[0, 1]]),
        (batched(&[]), &[&[0]]),
    ];
    for &op in ReduceOp::ALL {
        for (shape, axis_sets) in &cases {
            for axes in *axis_sets {
                let mut c = Case::new(op.name());
                let x = c.input("x", shape.clone());
                let y = c.ins(Inst::Reduce { op, arg: x, axes: axes.to_vec() });
                gradcheck(c, y);
            }
        }
    }
}

#[test]
fn every_broadcasting_pattern() {
    let patterns = [
        (shared(&[]), batched(&[3])),
        (shared(&[]), shared(&[2, 3])),
        (shared(&[3]), batched(&[3])),
        (shared(&[3]), shared(&[2, 3])),
        (shared(&[1]), shared(&[4])),
        (shared(&[2, 1]), shared(&[2, 3])),
        (shared(&[1, 3]), batched(&[2, 3])),
        (shared(&[3, 1]), batched(&[2, 3, 4])),
        (batched(&[]), batched(&[3])),
        (batched(&[1]), batched(&[3])),
        (batched(&[2, 1]), batched(&[2, 3])),
        (batched(&[3]), batched(&[2, 3])),
    ];
    for (from, to) in patterns {
        let mut c = Case::new("broadcast");
        let x = c.input("x", from);
        let y = c.ins(Inst::Broadcast { arg: x, to });
        gradcheck(c, y);
    }
}

#[test]
fn reshape_and_transpose() {
    for (from, to) in
        [(batched(&[6]), batched(&[2, 3])), (shared(&[6]), shared(&[3, 2])), (batched(&[2, 3]), batched(&[6]))]
    {
        let mut c = Case::new("reshape");
        let x = c.input("x", from);
        let y = c.ins(Inst::Reshape { arg: x, to });
        gradcheck(c, y);
    }
    for shape in [batched(&[2, 3]), shared(&[2, 3])] {
        let mut c = Case::new("transpose");
        let x = c.input("x", shape);
        let y = c.ins(Inst::Transpose { arg: x });
        gradcheck(c, y);
    }
}

#[test]
fn matmul_all_four_layouts() {
    for ta in [false, true] {
        for tb in [false, true] {
            // op(A) is [2,3], op(B) is [3,4].
            let mut c = Case::new("matmul");
            let a = c.param("A", shared(if ta { &[3, 2] } else { &[2, 3] }));
            let b = c.param("B", shared(if tb { &[4, 3] } else { &[3, 4] }));
            let y = c.ins(Inst::MatMul { lhs: a, rhs: b, ta, tb });
            gradcheck(c, y);
        }
    }
}

#[test]
fn matmul_with_the_batch_axis_as_rows() {
    for tb in [false, true] {
        let mut c = Case::new("matmul_rows");
        let x = c.input("x", batched(&[3]));
        let w = c.param("W", shared(if tb { &[4, 3] } else { &[3, 4] }));
        let y = c.ins(Inst::MatMul { lhs: x, rhs: w, ta: false, tb });
        gradcheck(c, y);
    }
}

#[test]
fn matmul_contracting_over_the_batch_axis() {
    let mut c = Case::new("matmul_batch_contract");
    let x = c.input("x", batched(&[3]));
    let d = c.input("d", batched(&[4]));
    let y = c.ins(Inst::MatMul { lhs: x, rhs: d, ta: true, tb: false });
    gradcheck(c, y);
}

#[test]
fn softmax_and_log_softmax_along_each_axis() {
    for log in [false, true] {
        for (shape, axes) in [(batched(&[3, 4]), vec![1, 2]), (shared(&[3, 4]), vec![0, 1]), (batched(&[4]), vec![1])] {
            for axis in axes {
                let mut c = Case::new(if log { "log_softmax" } else { "softmax" });
                let x = c.input("x", shape.clone());
                let y = c.ins(Inst::Softmax { arg: x, axis, log });
                gradcheck(c, y);
            }
        }
    }
}

#[test]
fn cross_entropy_and_onehot() {
    for (logits, label) in
        [(batched(&[4]), batched(&[])), (batched(&[2, 4]), batched(&[2])), (shared(&[4]), shared(&[]))]
    {
        let mut c = Case::new("cross_entropy");
        let z = c.input("z", logits);
        let y = c.label("y", label, 4);
        let l = c.ins(Inst::CrossEntropy { logits: z, label: y });
        gradcheck(c, l);
    }
    let mut c = Case::new("onehot");
    let z = c.input("z", batched(&[4]));
    let y = c.label("y", batched(&[]), 4);
    let h = c.ins(Inst::OneHot { label: y, classes: 4 });
    let out = c.bin(BinaryOp::Mul, h, z);
    gradcheck(c, out);
}

#[test]
fn index_and_scatter() {
    for (shape, at) in [
        (batched(&[3, 4]), vec![1]),
        (batched(&[3, 4]), vec![1, 2]),
        (shared(&[3, 4]), vec![2]),
        (shared(&[3, 4]), vec![0, 3]),
        (batched(&[3]), vec![]),
    ] {
        let mut c = Case::new("index");
        let x = c.input("x", shape);
        let y = c.ins(Inst::Index { arg: x, at });
        gradcheck(c, y);
    }
    for (shape, at, to) in [(batched(&[4]), vec![1], batched(&[3, 4])), (shared(&[]), vec![2], shared(&[3]))] {
        let mut c = Case::new("scatter");
        let x = c.input("x", shape);
        let y = c.ins(Inst::Scatter { arg: x, at, to });
        gradcheck(c, y);
    }
}

#[test]
fn constants_and_the_batch_size() {
    // y = x · 2/B: the batch size is a constant of the step, not a variable.
    let mut c = Case::new("batch_size");
    let x = c.input("x", batched(&[3]));
    let two = c.ins(Inst::Const(2.0));
    let b = c.ins(Inst::BatchSize);
    let k = c.bin(BinaryOp::Div, two, b);
    let k = c.ins(Inst::Broadcast { arg: k, to: batched(&[3]) });
    let y = c.bin(BinaryOp::Mul, x, k);
    gradcheck(c, y);
}

/// A two-layer MLP with a cross-entropy loss averaged over the batch and a shared L2
/// regularizer broadcast into the per-example loss, as the frontend lowers it.
#[test]
fn a_small_mlp_end_to_end() {
    let mut c = Case::new("mlp");
    let x = c.input("x", batched(&[4]));
    let y = c.label("y", batched(&[]), 3);
    let w1 = c.param("W1", shared(&[5, 4]));
    let b1 = c.param("b1", shared(&[5]));
    let w2 = c.param("W2", shared(&[3, 5]));
    let h = c.ins(Inst::MatMul { lhs: x, rhs: w1, ta: false, tb: true });
    let b1 = c.ins(Inst::Broadcast { arg: b1, to: batched(&[5]) });
    let h = c.bin(BinaryOp::Add, h, b1);
    let h = c.ins(Inst::Unary { op: UnaryOp::Tanh, arg: h });
    let f = c.ins(Inst::MatMul { lhs: h, rhs: w2, ta: false, tb: true });
    let ce = c.ins(Inst::CrossEntropy { logits: f, label: y });
    let sq = c.bin(BinaryOp::Mul, w1, w1);
    let reg = c.sum_all(sq);
    let lambda = c.konst(0.1, Shape::scalar());
    let reg = c.bin(BinaryOp::Mul, lambda, reg);
    let reg = c.ins(Inst::Broadcast { arg: reg, to: batched(&[]) });
    let per_example = c.bin(BinaryOp::Add, ce, reg);
    let loss = c.ins(Inst::Reduce { op: ReduceOp::Mean, arg: per_example, axes: vec![0] });
    gradcheck(c, loss);
}
