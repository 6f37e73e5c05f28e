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

// ---------------------------------------------------------------- strong zeros (SPEC §2)

/// `value_and_grad` of a `.bp` program with respect to every float argument, run at one
/// example with the scalars `values` in argument order: (loss, gradients in argument order).
fn eval_source(src: &str, values: &[f64]) -> (f64, Vec<f64>) {
    let f = compile_source(src);
    let names: Vec<String> = f.args.iter().filter(|a| a.ty.is_float()).map(|a| a.name.clone()).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let g = bpc_autodiff::value_and_grad(&f, &refs).unwrap();
    let args: Vec<Tensor> = values.iter().map(|&x| Tensor::new([1], [x])).collect();
    let r = common::run(&g, 1, &args);
    let grads = names.iter().map(|n| common::get(&r, &format!("grad.{n}")).data[0]).collect();
    (common::get(&r, "loss").data[0], grads)
}

fn compile_source(src: &str) -> bpc_ir::Function {
    let s = bpc_front::Source::new("t.bp", src);
    bpc_front::compile(&s).unwrap_or_else(|d| panic!("{}", bpc_front::render(&s, &d)))
}

/// Bitwise equality that also matches NaN and tells +0 from -0 apart where it matters:
/// strong zeros are +0.
fn same(got: &[f64], want: &[f64]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()))
}

#[test]
fn where_keeps_inf_and_nan_of_the_inactive_branch_out_of_the_gradient() {
    let cases: &[(&str, f64, f64, f64)] = &[
        // sqrt at 0: sqrt'(0) = inf behind a zero cotangent.
        ("input x\nloss where(x > 0, sqrt(x), 0)\n", 0.0, 0.0, 0.0),
        ("input x\nloss where(x > 0, sqrt(x), 0)\n", -0.0, 0.0, 0.0),
        // sqrt(-1) = NaN in the inactive branch.
        ("input x\nloss where(x > 0, sqrt(x), 0)\n", -1.0, 0.0, 0.0),
        ("input x\nloss where(x > 0, sqrt(x), 0)\n", 4.0, 2.0, 0.25),
        // log(0) = -inf, log'(0) = inf; log(-1) = NaN.
        ("input x\nloss where(x > 0, log(x), 0)\n", 0.0, 0.0, 0.0),
        ("input x\nloss where(x > 0, log(x), 0)\n", -1.0, 0.0, 0.0),
        ("input x\nloss where(x <= 0, 0, log(x))\n", 0.0, 0.0, 0.0),
        // 1/x at 0: inf in the inactive branch, and its quotient rule ct/x.
        ("input x\nloss where(x == 0, 1, 1 / x)\n", 0.0, 1.0, 0.0),
        ("input x\nloss where(x == 0, 1, x / x)\n", 0.0, 1.0, 0.0),
    ];
    for &(src, x, loss, grad) in cases {
        let (l, g) = eval_source(src, &[x]);
        assert!(same(&[l], &[loss]) && same(&g, &[grad]), "{src} at x = {x}: loss {l}, grad {g:?}");
    }
}

#[test]
fn a_zero_factor_stops_an_infinite_partial_with_either_sign() {
    // d/dx (w·sqrt(x)) at x = 0 is w·inf: 0 when w is +0 or -0, inf otherwise (IEEE).
    let src = "input w\ninput x\nloss w * sqrt(x)\n";
    for w in [0.0, -0.0] {
        for x in [0.0, -0.0] {
            let (l, g) = eval_source(src, &[w, x]);
            // d/dw = sqrt(x) = ±0 comes out as the strong product's +0.
            assert!(l == 0.0 && same(&g, &[0.0, 0.0]), "w = {w:?}, x = {x:?}: loss {l}, grads {g:?}");
        }
    }
    let (_, g) = eval_source(src, &[2.0, 0.0]);
    assert_eq!(g, [0.0, f64::INFINITY]);
    // log(0) behind a zero factor, and a -0 cotangent made by negation.
    let (_, g) = eval_source("input w\ninput x\nloss -(w * log(x))\n", &[0.0, 0.0]);
    assert_eq!(g[1].to_bits(), 0.0f64.to_bits(), "{g:?}");
}

#[test]
fn max_and_relu_do_not_leak_the_inactive_side() {
    // max(x, log(x)) at 0: log is -inf and inactive, its partial 1/x = inf gets a zero share.
    let (l, g) = eval_source("input x\nloss max(x, log(x))\n", &[0.0]);
    assert_eq!((l, g), (0.0, vec![1.0]));
    let (l, g) = eval_source("input x\nloss min(-x, -log(x))\n", &[0.0]);
    assert_eq!((l, g[0].to_bits()), (0.0, (-1.0f64).to_bits()));
    // relu'(0) = 0 stops sqrt'(0) = inf.
    let (l, g) = eval_source("input x\nloss relu(sqrt(x))\n", &[0.0]);
    assert!(l == 0.0 && same(&g, &[0.0]), "{g:?}");
    // abs'(0) = 0 stops it too.
    let (_, g) = eval_source("input x\nloss abs(sqrt(x))\n", &[0.0]);
    assert!(same(&g, &[0.0]), "{g:?}");
    // A tie of max with an inf partial on both sides is IEEE: half of inf.
    let (_, g) = eval_source("input x\nloss max(sqrt(x), sqrt(x))\n", &[0.0]);
    assert_eq!(g, [f64::INFINITY]);
}

#[test]
fn reducing_max_ignores_nan_partials_of_the_losers() {
    // x = [1, 0]: the loser log(0) = -inf gets a zero share, so its partial 1/0 = inf does
    // not reach x.
    let f = compile_source("input x[2]\nloss max(log(x))\n");
    let g = bpc_autodiff::value_and_grad(&f, &["x"]).unwrap();
    let r = common::run(&g, 1, &[Tensor::new([1, 2], [1.0, 0.0])]);
    assert!(same(&common::get(&r, "grad.x").data, &[1.0, 0.0]), "{:?}", common::get(&r, "grad.x").data);
}

#[test]
fn strong_zeros_hold_at_second_order() {
    // H·v of where(x > 0, sqrt(x), 0) at x = 0 is 0 (not NaN); at x = 4 it is -1/(4 x^1.5)·v.
    for (x, want) in [(0.0, 0.0), (-0.0, 0.0), (4.0, -1.0 / 32.0)] {
        let h = hessian_vector("input x\nloss where(x > 0, sqrt(x), 0)\n", &[x], &[1.0]);
        assert!(same(&h, &[want]), "x = {x}: {h:?}");
    }
    // Behind a zero factor: d²/dx² (w·sqrt(x)) at w = 0, x = 0, and the mixed term d²/dw dx.
    let h = hessian_vector("input w\ninput x\nloss w * sqrt(x)\n", &[0.0, 0.0], &[0.0, 1.0]);
    assert!(same(&h, &[f64::INFINITY, 0.0]), "{h:?}");
    let h = hessian_vector("input w\ninput x\nloss w * sqrt(x)\n", &[0.0, 0.0], &[1.0, 0.0]);
    assert!(same(&h, &[0.0, f64::INFINITY]), "{h:?}");
    // relu at 0, second order: relu'' = 0 everywhere.
    let h = hessian_vector("input x\nloss relu(x)^2\n", &[0.0], &[1.0]);
    assert!(same(&h, &[0.0]), "{h:?}");
}

/// The Hessian–vector product `H·v` of the loss of `src` in its float inputs at `x`,
/// by differentiating `⟨∇L, v⟩` again.
fn hessian_vector(src: &str, x: &[f64], v: &[f64]) -> Vec<f64> {
    let f = compile_source(src);
    let wrt: Vec<Value> = (0..f.args.len()).map(|i| f.arg_value(bpc_ir::ArgId(i as u32)).unwrap()).collect();
    let loss = f.result("loss").unwrap().value;
    let (mut first, grads) = append_adjoint(&f, loss, &wrt).unwrap();
    let s = bpc_ir::Span::NONE;
    let mut dot = None;
    for (i, &g) in grads.iter().enumerate() {
        let k = first.ins(Inst::Const(v[i]), s);
        let k = first.ins(Inst::Broadcast { arg: k, to: first.shape(g).clone() }, s);
        let p = first.ins(Inst::Binary { op: BinaryOp::StrongMul, lhs: g, rhs: k }, s);
        let p = first.ins(Inst::Reduce { op: ReduceOp::Sum, arg: p, axes: vec![0] }, s);
        dot = Some(match dot {
            None => p,
            Some(d) => first.ins(Inst::Binary { op: BinaryOp::Add, lhs: d, rhs: p }, s),
        });
    }
    let (second, h) = append_adjoint(&first, dot.unwrap(), &wrt).unwrap();
    bpc_ir::verify(&second).unwrap();
    let args: Vec<Tensor> = x.iter().map(|&x| Tensor::new([1], [x])).collect();
    let vals = interpret(&second, 1, &args).unwrap();
    h.iter().map(|h| vals[h.index()].data[0]).collect()
}

#[test]
fn strong_mul_is_exactly_zero_with_a_zero_factor() {
    let sm = |a: f64, b: f64| BinaryOp::StrongMul.eval(a, b);
    for z in [0.0, -0.0] {
        for other in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 3.0, -0.0] {
            assert_eq!(sm(z, other).to_bits(), 0.0f64.to_bits());
            assert_eq!(sm(other, z).to_bits(), 0.0f64.to_bits());
        }
    }
    assert_eq!(sm(2.0, -3.0), -6.0);
    assert!(sm(f64::NAN, 1.0).is_nan());
    assert_eq!(sm(f64::INFINITY, -1.0), f64::NEG_INFINITY);
}

#[test]
fn pow_at_a_zero_base() {
    // Constant exponents: IEEE values, slopes c·0^(c-1) with c = 0 giving exactly 0.
    let inf = f64::INFINITY;
    for (src, value, slope) in [
        ("input x\nloss x^0\n", 1.0, 0.0),
        ("input x\nloss x^1\n", 0.0, 1.0),
        ("input x\nloss x^2\n", 0.0, 0.0),
        ("input x\nloss x^0.5\n", 0.0, inf),
        ("input x\nloss x^-1\n", inf, -inf),
        ("input x\nloss x^-2\n", inf, -inf),
    ] {
        let (l, g) = eval_source(src, &[0.0]);
        assert!(same(&[l], &[value]) && same(&g, &[slope]), "{src}: {l}, {g:?}");
    }
    // A tensor exponent: d/dx = y·x^(y-1) (0 at y = 0), d/dy = x^y·log x with log 0 taken as 0.
    let src = "input x\ninput y\nloss x^y\n";
    let ln2 = 2f64.ln();
    for (x, y, value, dx, dy) in [
        (0.0, 2.0, 0.0, 0.0, 0.0),
        (0.0, 1.0, 0.0, 1.0, 0.0),
        (0.0, 0.0, 1.0, 0.0, 0.0),
        (0.0, 0.5, 0.0, inf, 0.0),
        (0.0, -1.0, inf, -inf, 0.0),
        (2.0, 3.0, 8.0, 12.0, 8.0 * ln2),
        (2.0, 0.0, 1.0, 0.0, ln2),
        (-2.0, 3.0, -8.0, 12.0, f64::NAN),
    ] {
        let (l, g) = eval_source(src, &[x, y]);
        assert!(same(&[l], &[value]) && same(&g, &[dx, dy]), "{x}^{y}: {l}, {g:?}");
    }
    // A constant base: d/dy 2^y = 2^y·log 2, d/dy 0^y = 0.
    let (_, g) = eval_source("input y\nloss 2^y\n", &[3.0]);
    assert_eq!(g, [8.0 * ln2]);
    let (l, g) = eval_source("input y\nloss 0^y\n", &[3.0]);
    assert!(l == 0.0 && same(&g, &[0.0]), "{g:?}");
}
