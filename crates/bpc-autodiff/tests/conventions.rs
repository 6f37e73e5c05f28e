//! SPEC §2's derivative conventions, exactly, at the points where the derivative is not
//! defined: relu'(0) = 0, abs'(0) = 0, max/min ties ½/½, reducing max/min split evenly among
//! tied extrema, and IEEE elsewhere (sqrt'(0) = inf).

mod common;

use bpc_autodiff::append_adjoint;
use bpc_ir::{BinaryOp, Inst, ReduceOp, Shape, Tensor, UnaryOp, Value, interpret};
use common::{Case, batched, shared};

/// d(Σ y)/d(each input) at the given arguments, one gradient per input in `inputs`.
fn grads(mut case: Case, y: Value, inputs: &[Value], batch: usize, args: &[Tensor]) -> Vec<Vec<f64>> {
    let of = case.sum_all(y);
    let (adj, gs) = append_adjoint(&case.f, of, inputs).unwrap();
    let vals = interpret(&adj, batch, args).unwrap();
    gs.iter().map(|g| vals[g.index()].data.clone()).collect()
}

fn unary_grad(op: UnaryOp, xs: &[f64]) -> Vec<f64> {
    let mut c = Case::new(op.name());
    let x = c.input("x", shared(&[xs.len()]));
    let y = c.ins(Inst::Unary { op, arg: x });
    grads(c, y, &[x], 1, &[Tensor::new([xs.len()], xs)]).remove(0)
}

#[test]
fn relu_and_abs_have_zero_slope_at_zero() {
    assert_eq!(unary_grad(UnaryOp::Relu, &[-1.0, 0.0, 2.0]), [0.0, 0.0, 1.0]);
    assert_eq!(unary_grad(UnaryOp::Relu, &[-0.0]), [0.0]);
    assert_eq!(unary_grad(UnaryOp::Abs, &[-1.0, 0.0, 2.0]), [-1.0, 0.0, 1.0]);
}

#[test]
fn sqrt_at_zero_is_ieee_inf() {
    assert_eq!(unary_grad(UnaryOp::Sqrt, &[0.0, 4.0]), [f64::INFINITY, 0.25]);
}

#[test]
fn binary_max_and_min_split_a_tie_in_half() {
    for (op, want_a, want_b) in
        [(BinaryOp::Max, [0.0, 0.5, 1.0], [1.0, 0.5, 0.0]), (BinaryOp::Min, [1.0, 0.5, 0.0], [0.0, 0.5, 1.0])]
    {
        let mut c = Case::new(op.name());
        let a = c.input("a", shared(&[3]));
        let b = c.input("b", shared(&[3]));
        let y = c.bin(op, a, b);
        let args = [Tensor::new([3], [1.0, 2.0, 3.0]), Tensor::new([3], [2.0, 2.0, 1.0])];
        assert_eq!(grads(c, y, &[a, b], 1, &args), [want_a.to_vec(), want_b.to_vec()], "{op}");
    }
}

#[test]
fn reducing_max_and_min_split_among_tied_extrema() {
    let reduce = |op: ReduceOp, shape: Shape, axes: Vec<usize>, x: Tensor, batch: usize| {
        let mut c = Case::new(op.name());
        let v = c.input("x", shape);
        let y = c.ins(Inst::Reduce { op, arg: v, axes });
        grads(c, y, &[v], batch, &[x]).remove(0)
    };
    let x = || Tensor::new([3], [3.0, 3.0, 1.0]);
    assert_eq!(reduce(ReduceOp::Max, shared(&[3]), vec![0], x(), 1), [0.5, 0.5, 0.0]);
    assert_eq!(reduce(ReduceOp::Min, shared(&[3]), vec![0], Tensor::new([3], [1.0, 1.0, 3.0]), 1), [0.5, 0.5, 0.0]);
    // Over the batch axis: three examples, two of them tied for the max.
    assert_eq!(reduce(ReduceOp::Max, batched(&[]), vec![0], x(), 3), [0.5, 0.5, 0.0]);
    // Along the last axis of each row, one tie per row.
    let rows = Tensor::new([2, 3], [3.0, 3.0, 1.0, 0.0, 2.0, 2.0]);
    assert_eq!(reduce(ReduceOp::Max, shared(&[2, 3]), vec![1], rows, 1), [0.5, 0.5, 0.0, 0.0, 0.5, 0.5]);
    // Three-way tie.
    let flat = Tensor::new([2, 2], [1.0, 5.0, 5.0, 5.0]);
    let third = 1.0 / 3.0;
    assert_eq!(reduce(ReduceOp::Max, shared(&[2, 2]), vec![0, 1], flat, 1), [0.0, third, third, third]);
}
