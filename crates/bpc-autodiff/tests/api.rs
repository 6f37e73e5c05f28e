//! `append_adjoint`, `value_and_grad` and `train_step` as the rest of the compiler uses them:
//! result layout, exact IR text, errors with spans, fan-out, unused params, spans of the
//! adjoint, the SGD step, and differentiating an adjoint again.

mod common;

use bpc_autodiff::{Optimizer, append_adjoint, train_step, value_and_grad};
use bpc_ir::{ArgKind, BinaryOp, Function, Inst, ReduceOp, Span, Tensor, UnaryOp, Value, verify};
use common::{Case, Domain, assert_close, batched, get, random_tensor, run, shared};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// x: f32[B,4] → relu(W1 x + b1) → W2 h → cross-entropy, plus `output` and `logits`
/// results, as the frontend builds a classifier.
fn classifier() -> Case {
    let mut c = Case::new("classifier");
    let x = c.input("x", batched(&[4]));
    let y = c.label("y", batched(&[]), 3);
    let w1 = c.param("W1", shared(&[5, 4]));
    let b1 = c.param("b1", shared(&[5]));
    let w2 = c.param("W2", shared(&[3, 5]));
    let h = c.ins(Inst::MatMul { lhs: x, rhs: w1, ta: false, tb: true });
    let b1 = c.ins(Inst::Broadcast { arg: b1, to: batched(&[5]) });
    let h = c.bin(BinaryOp::Add, h, b1);
    let h = c.ins(Inst::Unary { op: UnaryOp::Relu, arg: h });
    c.f.names.push(("h".into(), h));
    let f = c.ins(Inst::MatMul { lhs: h, rhs: w2, ta: false, tb: true });
    c.f.names.push(("f".into(), f));
    let ce = c.ins(Inst::CrossEntropy { logits: f, label: y });
    let loss = c.ins(Inst::Reduce { op: ReduceOp::Mean, arg: ce, axes: vec![0] });
    let out = c.ins(Inst::Softmax { arg: f, axis: 1, log: false });
    c.f.add_result("loss", loss);
    c.f.add_result("output", out);
    c.f.add_result("logits", f);
    c
}

fn result_names(f: &Function) -> Vec<&str> {
    f.results.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn value_and_grad_prints_exactly() {
    let mut c = Case::new("add_mul");
    let [x, y, z] = ["x", "y", "z"].map(|n| c.input(n, batched(&[])));
    let q = c.bin(BinaryOp::Add, x, y);
    let f = c.bin(BinaryOp::Mul, q, z);
    let loss = c.ins(Inst::Reduce { op: ReduceOp::Mean, arg: f, axes: vec![0] });
    c.f.names.extend([("q".into(), q), ("f".into(), f)]);
    c.f.add_result("loss", loss);
    let g = value_and_grad(&c.f, &["x", "z", "q"]).unwrap();
    let expected = "\
function add_mul {
  input x: f32[B]
  input y: f32[B]
  input z: f32[B]
  v0: f32[B] = arg x
  v1: f32[B] = arg y
  v2: f32[B] = arg z
  v3: f32[B] = add v0, v1                       # q
  v4: f32[B] = mul v3, v2                       # f
  v5: f32[] = reduce_mean v4, axes=[0]
adjoint:
  v6: f32[] = const 1.0
  v7: f32[] = batch_size
  v8: f32[] = div v6, v7
  v9: f32[] = strong_mul v6, v8
  v10: f32[B] = broadcast v9
  v11: f32[B] = strong_mul v10, v2
  v12: f32[B] = strong_mul v10, v3
  result loss = v5
  result grad.x = v11
  result grad.z = v12
  result grad.q = v11
}
";
    assert_eq!(g.to_string(), expected);
    assert_eq!(g.adjoint_start, Some(Value(6)));
}

#[test]
fn value_and_grad_keeps_names_and_other_results() {
    let c = classifier();
    let g = value_and_grad(&c.f, &["W1", "h", "x"]).unwrap();
    verify(&g).unwrap();
    assert_eq!(result_names(&g), ["loss", "grad.W1", "grad.h", "grad.x", "output", "logits"]);
    assert_eq!(g.names, c.f.names);
    let types: Vec<String> = g.results.iter().map(|r| g.ty(r.value).to_string()).collect();
    assert_eq!(types, ["f32[]", "f32[5,4]", "f32[B,5]", "f32[B,4]", "f32[B,3]", "f32[B,3]"]);
}

#[test]
fn train_step_is_one_sgd_step() {
    let c = classifier();
    let step = train_step(&c.f, Optimizer::Sgd).unwrap();
    verify(&step).unwrap();
    assert_eq!(result_names(&step), ["loss", "output", "logits", "W1", "b1", "W2"]);
    let lr = step.arg_named("lr").unwrap();
    assert_eq!(step.arg(lr).kind, ArgKind::Hyper);
    assert_eq!(step.arg(lr).ty.to_string(), "f32[]");
    let params: Vec<_> = step.params().collect();
    let updates: Vec<_> = step.results.iter().filter_map(|r| r.update).collect();
    assert_eq!(updates, params);

    let grads = value_and_grad(&c.f, &["W1", "b1", "W2"]).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    for batch in [1, 4] {
        let args = c.sample(&mut rng, batch);
        let eta = 0.25;
        let mut step_args = args.clone();
        step_args.push(Tensor::scalar(eta));
        let stepped = run(&step, batch, &step_args);
        let g = run(&grads, batch, &args);
        assert_eq!(get(&stepped, "loss"), get(&g, "loss"));
        for (i, name) in ["W1", "b1", "W2"].iter().enumerate() {
            let w = &args[2 + i].data;
            let dw = &get(&g, &format!("grad.{name}")).data;
            let want: Vec<f64> = w.iter().zip(dw).map(|(w, d)| w - eta * d).collect();
            assert_eq!(get(&stepped, name).data, want, "{name}");
        }
    }
}

#[test]
fn train_step_refuses_a_declaration_named_lr() {
    let mut c = Case::new("m");
    let x = c.input("lr", shared(&[]));
    c.f.args[0].span = Span::new(6, 8);
    c.f.add_result("loss", x);
    let err = train_step(&c.f, Optimizer::Sgd).unwrap_err();
    assert_eq!(err.span(), Some(Span::new(6, 8)));
}

#[test]
fn fan_out_accumulates() {
    // x is used three times: f = x·x + x, df/dx = 2x + 1.
    let mut c = Case::new("fan_out");
    let x = c.input("x", shared(&[3]));
    let sq = c.bin(BinaryOp::Mul, x, x);
    let f = c.bin(BinaryOp::Add, sq, x);
    let of = c.sum_all(f);
    let (adj, g) = append_adjoint(&c.f, of, &[x]).unwrap();
    let adds = adj.values().skip(adj.adjoint_start.unwrap().index());
    let adds = adds.filter(|&v| matches!(adj.inst(v), Inst::Binary { op: BinaryOp::Add, .. })).count();
    assert_eq!(adds, 2, "three contributions, two adds\n{adj}");
    let vals = bpc_ir::interpret(&adj, 1, &[Tensor::new([3], [1.0, -2.0, 0.5])]).unwrap();
    assert_eq!(vals[g[0].index()].data, [3.0, -3.0, 2.0]);
}

#[test]
fn an_unused_param_gets_an_exact_zero_of_its_shape() {
    let mut c = classifier();
    let id = c.f.add_arg(
        "unused",
        ArgKind::Param { init: bpc_ir::Init::Const(0.0) },
        bpc_ir::Type::f32(shared(&[2, 3])),
        Span::NONE,
    );
    c.domains.push(Domain::Any);
    let g = value_and_grad(&c.f, &["unused", "W2"]).unwrap();
    verify(&g).unwrap();
    let zero = g.result("grad.unused").unwrap().value;
    assert_eq!(g.ty(zero).to_string(), "f32[2,3]");
    let Inst::Broadcast { arg, .. } = g.inst(zero) else { panic!("{g}") };
    assert_eq!(*g.inst(*arg), Inst::Const(0.0));
    let args = c.sample(&mut StdRng::seed_from_u64(0), 2);
    assert_eq!(get(&run(&g, 2, &args), "grad.unused").data, [0.0; 6]);
    // The train step leaves it as it is.
    let step = train_step(&c.f, Optimizer::Sgd).unwrap();
    assert!(step.results.iter().any(|r| r.update == Some(id)));
}

#[test]
fn a_class_label_cannot_be_differentiated() {
    let mut c = classifier();
    c.f.args[1].span = Span::new(20, 40);
    let err = value_and_grad(&c.f, &["y"]).unwrap_err();
    assert_eq!(err.message, "cannot differentiate with respect to class label `y`");
    assert_eq!(err.span(), Some(Span::new(20, 40)));
    let y = c.f.arg_value(c.f.arg_named("y").unwrap()).unwrap();
    let loss = c.f.result("loss").unwrap().value;
    assert_eq!(append_adjoint(&c.f, loss, &[y]).unwrap_err().span(), Some(Span::new(20, 40)));
}

#[test]
fn unknown_names_and_non_scalar_losses_are_errors() {
    let c = classifier();
    let err = value_and_grad(&c.f, &["nope"]).unwrap_err();
    assert_eq!(err.message, "cannot differentiate with respect to `nope`: no such name");
    let mut f = c.f.clone();
    let logits = f.result("logits").unwrap().value;
    f.set_span(logits, Span::new(3, 9));
    let err = append_adjoint(&f, logits, &[]).unwrap_err();
    assert_eq!(err.message, "cannot differentiate a non-scalar: the loss must be f32[], found f32[B,3]");
    assert_eq!(err.span(), Some(Span::new(3, 9)));
    f.results.retain(|r| r.name != "loss");
    assert!(value_and_grad(&f, &["W1"]).is_err());
}

#[test]
fn adjoint_values_carry_the_span_of_their_primal() {
    let mut c = classifier();
    let n = c.f.len();
    for (i, v) in c.f.values().collect::<Vec<_>>().into_iter().enumerate() {
        c.f.set_span(v, Span::new(10 * i + 1, 10 * i + 5));
    }
    let g = value_and_grad(&c.f, &["W1", "b1", "W2"]).unwrap();
    let primal: Vec<Span> = (0..n).map(|i| c.f.span(Value(i as u32))).collect();
    for v in g.values().skip(n) {
        assert!(primal.contains(&g.span(v)), "{v} has span {:?}\n{g}", g.span(v));
    }
    // The relu's rule emits the `gt` mask and the `select` with the relu's span.
    let relu = c.f.values().find(|&v| matches!(c.f.inst(v), Inst::Unary { op: UnaryOp::Relu, .. })).unwrap();
    let select = g.values().find(|&v| matches!(g.inst(v), Inst::Select { .. })).unwrap();
    assert_eq!(g.span(select), c.f.span(relu));
}

#[test]
fn a_shared_regularizer_counts_once_per_step() {
    // loss = mean_i(x_i + λ Σ W²): dW = 2λW whatever the batch size.
    let mut c = Case::new("reg");
    let x = c.input("x", batched(&[]));
    let w = c.param("W", shared(&[2]));
    let sq = c.bin(BinaryOp::Mul, w, w);
    let r = c.sum_all(sq);
    let lambda = c.konst(0.5, shared(&[]));
    let r = c.bin(BinaryOp::Mul, lambda, r);
    let r = c.ins(Inst::Broadcast { arg: r, to: batched(&[]) });
    let e = c.bin(BinaryOp::Add, x, r);
    let loss = c.ins(Inst::Reduce { op: ReduceOp::Mean, arg: e, axes: vec![0] });
    c.f.add_result("loss", loss);
    let g = value_and_grad(&c.f, &["W"]).unwrap();
    for batch in [1, 3, 8] {
        let args = [Tensor::new([batch], vec![1.0; batch]), Tensor::new([2], [3.0, -1.0])];
        assert_close(&get(&run(&g, batch, &args), "grad.W").data, &[3.0, -1.0], 1e-12);
    }
}

#[test]
fn the_adjoint_can_be_differentiated_again() {
    // f = Σ tanh(x)·v … first order g = (1 − tanh²x)·v; then Σ g·u differentiated in x gives
    // the Hessian–vector product −2 tanh(x)(1 − tanh²x)·v·u.
    let mut c = Case::new("hvp");
    let x = c.input("x", shared(&[3]));
    let v = c.input("v", shared(&[3]));
    let u = c.input("u", shared(&[3]));
    let t = c.ins(Inst::Unary { op: UnaryOp::Tanh, arg: x });
    let tv = c.bin(BinaryOp::Mul, t, v);
    let f = c.sum_all(tv);
    let (mut first, g) = append_adjoint(&c.f, f, &[x]).unwrap();
    let gu = first.ins(Inst::Binary { op: BinaryOp::Mul, lhs: g[0], rhs: u }, Span::NONE);
    let s = first.ins(Inst::Reduce { op: ReduceOp::Sum, arg: gu, axes: vec![0] }, Span::NONE);
    let (second, h) = append_adjoint(&first, s, &[x]).unwrap();
    verify(&second).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let args: Vec<Tensor> = (0..3).map(|_| random_tensor(&mut rng, vec![3], Domain::Any)).collect();
    let vals = bpc_ir::interpret(&second, 1, &args).unwrap();
    let want: Vec<f64> = (0..3)
        .map(|i| {
            let th = args[0].data[i].tanh();
            -2.0 * th * (1.0 - th * th) * args[1].data[i] * args[2].data[i]
        })
        .collect();
    assert_close(&vals[h[0].index()].data, &want, 1e-12);
}
