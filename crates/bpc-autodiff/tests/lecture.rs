//! The lecture's examples and numbers (SPEC §1 table), built by hand in IR the way the
//! frontend lowers them: per-example inputs `f32[B,..]`, `loss = reduce_mean(e, axes=[0])`.

mod common;

use bpc_autodiff::value_and_grad;
use bpc_ir::{BinaryOp, Inst, ReduceOp, Tensor, UnaryOp, Value, verify};
use common::{Case, Domain, assert_close, batched, get, random_tensor, run};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Names `v`, averages it over the batch as `loss`, and returns the finished case.
fn finish(mut c: Case, e: Value, name: &str) -> Case {
    c.f.names.push((name.into(), e));
    let loss = c.ins(Inst::Reduce { op: ReduceOp::Mean, arg: e, axes: vec![0] });
    c.f.add_result("loss", loss);
    c
}

fn scalars(values: &[f64]) -> Vec<Tensor> {
    values.iter().map(|&v| Tensor::new([1], [v])).collect()
}

fn add_mul() -> Case {
    let mut c = Case::new("add_mul");
    let [x, y, z] = ["x", "y", "z"].map(|n| c.input(n, batched(&[])));
    let q = c.bin(BinaryOp::Add, x, y);
    c.f.names.push(("q".into(), q));
    let f = c.bin(BinaryOp::Mul, q, z);
    finish(c, f, "f")
}

#[test]
fn add_mul_gradients() {
    let g = value_and_grad(&add_mul().f, &["x", "y", "z", "q"]).unwrap();
    verify(&g).unwrap();
    let r = run(&g, 1, &scalars(&[-2.0, 5.0, -4.0]));
    let names: Vec<&str> = r.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["loss", "grad.x", "grad.y", "grad.z", "grad.q"]);
    let values: Vec<f64> = r.iter().map(|(_, t)| t.data[0]).collect();
    assert_eq!(values, [-12.0, -4.0, -4.0, 3.0, -4.0]);
}

#[test]
fn add_mul_over_a_minibatch_averages() {
    // Two examples: the loss is their mean, each example's gradient is scaled by 1/B.
    let g = value_and_grad(&add_mul().f, &["x", "z"]).unwrap();
    let args = [Tensor::new([2], [-2.0, 1.0]), Tensor::new([2], [5.0, 1.0]), Tensor::new([2], [-4.0, 2.0])];
    let r = run(&g, 2, &args);
    assert_eq!(get(&r, "loss").data, [-4.0]);
    assert_eq!(get(&r, "grad.x").data, [-2.0, 1.0]);
    assert_eq!(get(&r, "grad.z").data, [1.5, 1.0]);
}

#[test]
fn sigmoid_neuron() {
    let mut c = Case::new("sigmoid_neuron");
    let [w0, x0, w1, x1, w2] = ["w0", "x0", "w1", "x1", "w2"].map(|n| c.input(n, batched(&[])));
    let a = c.bin(BinaryOp::Mul, w0, x0);
    let b = c.bin(BinaryOp::Mul, w1, x1);
    let s = c.bin(BinaryOp::Add, a, b);
    let s = c.bin(BinaryOp::Add, s, w2);
    let n = c.ins(Inst::Unary { op: UnaryOp::Neg, arg: s });
    let e = c.ins(Inst::Unary { op: UnaryOp::Exp, arg: n });
    let one = c.konst(1.0, batched(&[]));
    let d = c.bin(BinaryOp::Add, one, e);
    let f = c.bin(BinaryOp::Div, one, d);
    let c = finish(c, f, "f");
    let g = value_and_grad(&c.f, &["w0", "x0", "w1", "x1", "w2"]).unwrap();
    let r = run(&g, 1, &scalars(&[2.0, -1.0, -3.0, -2.0, -3.0]));
    let values: Vec<f64> = r.iter().map(|(_, t)| t.data[0]).collect();
    assert_close(&values, &[0.7310586, -0.1966119, 0.3932239, -0.3932239, -0.5898358, 0.1966119], 1e-6);
}

/// `e = (y − w·x)²` with `w·x` lowered as `reduce_sum(w * x, axes=[1])`.
fn squared_error() -> Case {
    let mut c = Case::new("squared_error");
    let w = c.input("w", batched(&[3]));
    let x = c.input("x", batched(&[3]));
    let y = c.input("y", batched(&[]));
    let wx = c.bin(BinaryOp::Mul, w, x);
    let dot = c.ins(Inst::Reduce { op: ReduceOp::Sum, arg: wx, axes: vec![1] });
    let r = c.bin(BinaryOp::Sub, y, dot);
    let two = c.konst(2.0, batched(&[]));
    let e = c.bin(BinaryOp::Pow, r, two);
    finish(c, e, "e")
}

#[test]
fn squared_error_chain_rule() {
    let g = value_and_grad(&squared_error().f, &["w", "x", "y"]).unwrap();
    let args = [Tensor::new([1, 3], [1.0, 2.0, 3.0]), Tensor::new([1, 3], [0.5, -1.0, 2.0]), Tensor::new([1], [4.0])];
    let r = run(&g, 1, &args);
    assert_eq!(get(&r, "loss").data, [0.25]);
    assert_eq!(get(&r, "grad.w").data, [0.5, -1.0, 2.0]);
    assert_eq!(get(&r, "grad.x").data, [1.0, 2.0, 3.0]);
    assert_eq!(get(&r, "grad.y").data, [-1.0]);
    // de/dw = −2x(y − wᵀx) at random points; the batch mean scales each example by 1/B.
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..5 {
        let b = 2;
        let args = [vec![b, 3], vec![b, 3], vec![b]].map(|s| random_tensor(&mut rng, s, Domain::Any));
        let r = run(&g, b, &args);
        for i in 0..b {
            let (w, x, y) = (&args[0].data[3 * i..3 * i + 3], &args[1].data[3 * i..3 * i + 3], args[2].data[i]);
            let resid = y - (0..3).map(|k| w[k] * x[k]).sum::<f64>();
            let want: Vec<f64> = x.iter().map(|xk| -2.0 * xk * resid / b as f64).collect();
            assert_close(&get(&r, "grad.w").data[3 * i..3 * i + 3], &want, 1e-12);
        }
    }
}

fn logistic() -> Case {
    let mut c = Case::new("logistic");
    let w = c.input("w", batched(&[2]));
    let x = c.input("x", batched(&[2]));
    let wx = c.bin(BinaryOp::Mul, w, x);
    let dot = c.ins(Inst::Reduce { op: ReduceOp::Sum, arg: wx, axes: vec![1] });
    let s = c.ins(Inst::Unary { op: UnaryOp::Sigmoid, arg: dot });
    let l = c.ins(Inst::Unary { op: UnaryOp::Log, arg: s });
    let e = c.ins(Inst::Unary { op: UnaryOp::Neg, arg: l });
    finish(c, e, "e")
}

#[test]
fn logistic_loss() {
    let g = value_and_grad(&logistic().f, &["w"]).unwrap();
    let r = run(&g, 1, &[Tensor::new([1, 2], [1.0, -1.0]), Tensor::new([1, 2], [2.0, 1.0])]);
    assert_close(&get(&r, "loss").data, &[0.3132617], 1e-7);
    assert_close(&get(&r, "grad.w").data, &[-0.5378828, -0.2689414], 1e-7);
    // de/dw = −σ(−wᵀx)·x at random points.
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..5 {
        let args = [[1, 2], [1, 2]].map(|s| random_tensor(&mut rng, s.to_vec(), Domain::Any));
        let (w, x) = (&args[0].data, &args[1].data);
        let sig = 1.0 / (1.0 + (w[0] * x[0] + w[1] * x[1]).exp());
        let want: Vec<f64> = x.iter().map(|xk| -sig * xk).collect();
        assert_close(&get(&run(&g, 1, &args), "grad.w").data, &want, 1e-12);
    }
}

#[test]
fn max_gate_routes() {
    let mut c = Case::new("max_gate");
    let x = c.input("x", batched(&[]));
    let y = c.input("y", batched(&[]));
    let f = c.bin(BinaryOp::Max, x, y);
    let c = finish(c, f, "f");
    let g = value_and_grad(&c.f, &["x", "y"]).unwrap();
    let values: Vec<f64> = run(&g, 1, &scalars(&[4.0, 2.0])).iter().map(|(_, t)| t.data[0]).collect();
    assert_eq!(values, [4.0, 1.0, 0.0]);
}
