//! Test support: a small builder for hand-made functions and a float64 central
//! finite-difference gradient check against the interpreter.

#![allow(dead_code)]

use bpc_autodiff::append_adjoint;
use bpc_ir::{
    ArgId, ArgKind, BinaryOp, DType, Function, Init, Inst, ReduceOp, Shape, Span, Tensor, Type, Value, interpret,
    verify,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The minibatch size every check runs at.
pub const BATCH: usize = 3;

/// Where a float argument's random values are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Domain {
    /// Uniform magnitude in [0.2, 2] with a random sign: away from the kinks at 0.
    Any,
    /// Uniform in [0.2, 2] (log, sqrt, the base of a tensor power).
    Positive,
    /// Integer class indices in 0..K.
    Classes(usize),
}

/// A function under construction, with the domain of each argument.
pub struct Case {
    pub f: Function,
    pub domains: Vec<Domain>,
}

pub fn batched(dims: &[usize]) -> Shape {
    Shape::batched(dims)
}

pub fn shared(dims: &[usize]) -> Shape {
    Shape::shared(dims)
}

impl Case {
    pub fn new(name: &str) -> Case {
        Case { f: Function::new(name), domains: Vec::new() }
    }

    pub fn input(&mut self, name: &str, shape: Shape) -> Value {
        self.input_in(name, shape, Domain::Any)
    }

    pub fn input_in(&mut self, name: &str, shape: Shape, domain: Domain) -> Value {
        self.arg(name, ArgKind::Input, Type::f32(shape), domain)
    }

    pub fn param(&mut self, name: &str, shape: Shape) -> Value {
        self.arg(name, ArgKind::Param { init: Init::Const(0.0) }, Type::f32(shape), Domain::Any)
    }

    /// A class label `i32` of `shape` with `classes` classes.
    pub fn label(&mut self, name: &str, shape: Shape, classes: usize) -> Value {
        let ty = Type { dtype: DType::I32, shape };
        self.arg(name, ArgKind::Label { classes: Some(classes) }, ty, Domain::Classes(classes))
    }

    fn arg(&mut self, name: &str, kind: ArgKind, ty: Type, domain: Domain) -> Value {
        let id = self.f.add_arg(name, kind, ty, Span::NONE);
        self.domains.push(domain);
        self.f.ins(Inst::Arg(id), Span::NONE)
    }

    pub fn ins(&mut self, inst: Inst) -> Value {
        self.f.ins(inst, Span::NONE)
    }

    pub fn bin(&mut self, op: BinaryOp, lhs: Value, rhs: Value) -> Value {
        self.ins(Inst::Binary { op, lhs, rhs })
    }

    /// `broadcast(const c)` to `shape` (just the const for a shared scalar).
    pub fn konst(&mut self, c: f64, shape: Shape) -> Value {
        let k = self.ins(Inst::Const(c));
        if shape == Shape::scalar() { k } else { self.ins(Inst::Broadcast { arg: k, to: shape }) }
    }

    pub fn sum_all(&mut self, v: Value) -> Value {
        let axes: Vec<usize> = (0..self.f.shape(v).rank()).collect();
        if axes.is_empty() { v } else { self.ins(Inst::Reduce { op: ReduceOp::Sum, arg: v, axes }) }
    }

    /// Random arguments for one check point.
    pub fn sample(&self, rng: &mut StdRng, batch: usize) -> Vec<Tensor> {
        self.f.args.iter().zip(&self.domains).map(|(a, &d)| random_tensor(rng, a.ty.shape.sizes(batch), d)).collect()
    }
}

pub fn random_tensor(rng: &mut StdRng, shape: Vec<usize>, domain: Domain) -> Tensor {
    let n = shape.iter().product();
    let data: Vec<f64> = (0..n)
        .map(|_| match domain {
            Domain::Any => rng.random_range(0.2..2.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 },
            Domain::Positive => rng.random_range(0.2..2.0),
            Domain::Classes(k) => rng.random_range(0..k) as f64,
        })
        .collect();
    Tensor::new(shape, data)
}

/// Checks d/dargs of `Σ y·probe` (a random probe makes the cotangent of `y` non-uniform) by
/// reverse mode against float64 central differences, for every float argument, at three
/// random points: |ad − fd| ≤ 1e-6·max(1, |fd|).
pub fn gradcheck(mut case: Case, y: Value) {
    let name = case.f.name.clone();
    let probe = case.input(&format!("probe_{name}"), case.f.shape(y).clone());
    let weighted = case.bin(BinaryOp::Mul, y, probe);
    let of = case.sum_all(weighted);
    let wrt: Vec<(usize, Value)> = case
        .f
        .args
        .iter()
        .enumerate()
        .filter(|(_, a)| a.ty.is_float())
        .map(|(i, _)| (i, case.f.arg_value(ArgId(i as u32)).expect("every argument is read")))
        .collect();
    let values: Vec<Value> = wrt.iter().map(|&(_, v)| v).collect();
    let (adj, grads) = append_adjoint(&case.f, of, &values).unwrap();
    verify(&adj).unwrap_or_else(|e| panic!("{name}: adjoint does not verify: {e}\n{adj}"));
    for seed in 0..3 {
        let mut rng = StdRng::seed_from_u64(seed);
        let args = case.sample(&mut rng, BATCH);
        let vals = interpret(&adj, BATCH, &args).unwrap();
        for (&(i, _), g) in wrt.iter().zip(&grads) {
            let ad = &vals[g.index()];
            let fd = finite_difference(&case.f, of, &args, i);
            assert_eq!(ad.shape, fd.shape, "{name}: gradient shape of {}", case.f.args[i].name);
            for (j, (&a, &d)) in ad.data.iter().zip(&fd.data).enumerate() {
                assert!(
                    (a - d).abs() <= 1e-6 * d.abs().max(1.0),
                    "{name}: d/d{}[{j}] = {a} by reverse mode, {d} by finite differences (seed {seed})\n{adj}",
                    case.f.args[i].name
                );
            }
        }
    }
}

/// Central differences of the scalar `of` in every element of argument `arg`.
pub fn finite_difference(f: &Function, of: Value, args: &[Tensor], arg: usize) -> Tensor {
    let mut args = args.to_vec();
    let mut grad = Tensor::zeros(args[arg].shape.clone());
    for j in 0..grad.len() {
        let x = args[arg].data[j];
        let h = 1e-6 * x.abs().max(1.0);
        args[arg].data[j] = x + h;
        let up = eval_scalar(f, of, &args);
        args[arg].data[j] = x - h;
        let down = eval_scalar(f, of, &args);
        args[arg].data[j] = x;
        grad.data[j] = (up - down) / (2.0 * h);
    }
    grad
}

fn eval_scalar(f: &Function, of: Value, args: &[Tensor]) -> f64 {
    interpret(f, BATCH, args).unwrap()[of.index()].data[0]
}

/// Runs `f` at minibatch size `batch` and returns its named results.
pub fn run(f: &Function, batch: usize, args: &[Tensor]) -> Vec<(String, Tensor)> {
    let vals = interpret(f, batch, args).unwrap_or_else(|e| panic!("{e}\n{f}"));
    f.results.iter().map(|r| (r.name.clone(), vals[r.value.index()].clone())).collect()
}

/// The result called `name` of a run.
pub fn get<'a>(results: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &results.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no result {name}")).1
}

/// Asserts two lists agree to `tol` absolutely.
pub fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "got {got:?}, want {want:?}");
    }
}
