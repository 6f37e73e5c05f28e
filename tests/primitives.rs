//! Every primitive of the first slice through the whole pipeline: source → IR → adjoint →
//! optimizer → Cranelift. For each, the JIT's value and gradients are compared with the
//! float64 interpreter (to float32 rounding) and the interpreter's gradients with central
//! finite differences of the interpreted loss (float64), at several random points and a
//! minibatch of 3, so shared and per-example operands and the batch mean are exercised.

use bpc::ir::{ArgKind, DType, Function, Tensor, interpret};
use bpc::{Arg, Model, OptLevel};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const BATCH: usize = 3;
const POINTS: u64 = 4;

/// Where an argument's random values come from.
#[derive(Clone, Copy)]
enum Domain {
    /// Uniform on [-2, 2], kept at least 0.05 away from 0 (the kinks of relu and abs).
    Any,
    /// Uniform on [0.5, 2] (log, sqrt, a fractional power).
    Positive,
}

/// One case: the primitive's name, the program (a scalar loss per example) and the domain of
/// the arguments named in `positive`.
struct Case {
    name: &'static str,
    program: &'static str,
    positive: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case { name: "add", program: "input a[3]\ninput b[3]\ninput w[3]\nloss sum(w * (a + b))", positive: &[] },
    Case { name: "sub", program: "input a[3]\ninput b[3]\ninput w[3]\nloss sum(w * (a - b))", positive: &[] },
    Case { name: "mul", program: "input a[3]\ninput b[3]\ninput w[3]\nloss sum(w * (a * b))", positive: &[] },
    Case { name: "div", program: "input a[3]\ninput b[3]\ninput w[3]\nloss sum(w * (a / b))", positive: &["b"] },
    Case { name: "neg", program: "input a[3]\ninput w[3]\nloss sum(w * -a)", positive: &[] },
    Case { name: "pow_square", program: "input a[3]\ninput w[3]\nloss sum(w * a^2)", positive: &[] },
    Case { name: "pow_cube", program: "input a[3]\ninput w[3]\nloss sum(w * a^3)", positive: &[] },
    Case { name: "pow_fraction", program: "input a[3]\ninput w[3]\nloss sum(w * a^1.5)", positive: &["a"] },
    Case { name: "pow_negative", program: "input a[3]\ninput w[3]\nloss sum(w * a^-1)", positive: &["a"] },
    Case { name: "exp", program: "input a[3]\ninput w[3]\nloss sum(w * exp(a))", positive: &[] },
    Case { name: "log", program: "input a[3]\ninput w[3]\nloss sum(w * log(a))", positive: &["a"] },
    Case { name: "sqrt", program: "input a[3]\ninput w[3]\nloss sum(w * sqrt(a))", positive: &["a"] },
    Case { name: "sigmoid", program: "input a[3]\ninput w[3]\nloss sum(w * sigmoid(a))", positive: &[] },
    Case { name: "tanh", program: "input a[3]\ninput w[3]\nloss sum(w * tanh(a))", positive: &[] },
    Case { name: "relu", program: "input a[3]\ninput w[3]\nloss sum(w * relu(a))", positive: &[] },
    Case { name: "max", program: "input a[3]\ninput b[3]\ninput w[3]\nloss sum(w * max(a, b))", positive: &[] },
    Case { name: "min", program: "input a[3]\ninput b[3]\ninput w[3]\nloss sum(w * min(a, b))", positive: &[] },
    Case {
        name: "matmul",
        program: "param A[2, 3] = 0\nparam B[3, 4] = 0\ninput w[2, 4]\nloss sum(w * (A @ B))",
        positive: &[],
    },
    Case {
        name: "matvec_batched",
        program: "param W[4, 3] = 0\ninput x[3]\ninput w[4]\nloss sum(w * (W @ x))",
        positive: &[],
    },
    Case {
        name: "vecmat_batched",
        program: "param W[3, 4] = 0\ninput x[3]\ninput w[4]\nloss sum(w * (x @ W))",
        positive: &[],
    },
    Case { name: "dot_shared", program: "param u[3] = 0\ninput x[3]\nloss (u @ x)^2", positive: &[] },
    Case { name: "dot_per_example", program: "input u[3]\ninput x[3]\nloss (u @ x)^2", positive: &[] },
    Case { name: "transpose", program: "param A[2, 3] = 0\ninput w[3, 2]\nloss sum(w * transpose(A))", positive: &[] },
    Case { name: "sum", program: "input a[2, 3]\nparam c[3] = 0\nloss sum(a * c)^2", positive: &[] },
    Case { name: "mean", program: "input a[2, 3]\nparam c[3] = 0\nloss mean(a * c)^2", positive: &[] },
    Case {
        name: "broadcast",
        program: "input a[2, 3]\nparam r[3] = 0\nparam s = 0\ninput w[2, 3]\nloss sum(w * (a + r + s))",
        positive: &[],
    },
    Case {
        name: "cross_entropy",
        program: "input x[4]\nlabel y : class(3)\nparam W[3, 4] = 0\nparam b[3] = 0\nloss cross_entropy(W @ x + b, y)",
        positive: &[],
    },
    Case { name: "mse", program: "input x[3]\nlabel t[2]\nparam W[2, 3] = 0\nloss mse(W @ x, t)", positive: &[] },
    Case {
        name: "shared_regularizer",
        program: "input x[3]\nparam W[2, 3] = 0\nconst lambda = 0.1\nloss sum(tanh(W @ x)) + lambda * sum(W^2)",
        positive: &[],
    },
];

#[test]
fn jit_gradients_match_the_interpreter_and_finite_differences() {
    for case in CASES {
        let model = Model::from_source(format!("{}.bp", case.name), case.program)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let wrt: Vec<String> = float_args(&model.func);
        let wrt_refs: Vec<&str> = wrt.iter().map(String::as_str).collect();
        let vg = model.value_and_grad(&wrt_refs).unwrap();
        for level in [OptLevel::O0, OptLevel::O2] {
            let native = model.compile(&vg, BATCH, level).unwrap();
            let mut ws = native.workspace();
            for point in 0..POINTS {
                let mut rng = StdRng::seed_from_u64(point * 7919 + case.name.len() as u64);
                let args = sample_args(&model.func, case.positive, &mut rng);

                // The float64 oracle.
                let tensors: Vec<Tensor> = args.iter().map(|a| Tensor::new(a.shape.clone(), a.as_f64())).collect();
                let values = interpret(&vg, BATCH, &tensors).unwrap();

                // The JIT.
                let mut bufs: Vec<Vec<f32>> =
                    vg.results.iter().map(|r| vec![0.0; vg.shape(r.value).len(BATCH)]).collect();
                let mut jit_args: Vec<Arg> = args.iter().map(ArgData::as_arg).collect();
                let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(Vec::as_mut_slice).collect();
                native.run(&mut ws, &mut jit_args, &mut outs).unwrap();

                for (r, jit) in vg.results.iter().zip(&bufs) {
                    let oracle = &values[r.value.index()].data;
                    for (i, (&j, &o)) in jit.iter().zip(oracle).enumerate() {
                        assert!(
                            (j as f64 - o).abs() <= 1e-5 * o.abs().max(1.0),
                            "{} {level:?} point {point}: JIT {}[{i}] = {j}, interpreter {o}",
                            case.name,
                            r.name
                        );
                    }
                }

                // Central differences of the interpreted loss, per element of every float arg.
                for name in &wrt {
                    let a = model.func.arg_named(name).unwrap().index();
                    let grad = &values[vg.result(&format!("grad.{name}")).unwrap().value.index()].data;
                    for (i, &g) in grad.iter().enumerate() {
                        let fd = central_difference(&model.func, &tensors, a, i);
                        assert!(
                            (g - fd).abs() <= 1e-6 * fd.abs().max(1.0),
                            "{} point {point}: d loss / d {name}[{i}] = {g}, finite differences {fd}",
                            case.name
                        );
                    }
                }
            }
        }
    }
}

/// A lecture example: the model, the point (`--set`), the expected results.
type LectureCase<'a> = (&'a str, &'a [(&'a str, f32)], &'a [(&'a str, f64)]);

/// The lecture's numbers through the JIT (SPEC §1 table), to 1e-6.
#[test]
fn lecture_numbers_through_the_jit() {
    let cases: &[LectureCase] = &[
        (
            "examples/add_mul.bp",
            &[("x", -2.0), ("y", 5.0), ("z", -4.0)],
            &[("loss", -12.0), ("grad.x", -4.0), ("grad.y", -4.0), ("grad.z", 3.0), ("grad.q", -4.0)],
        ),
        (
            "examples/sigmoid_neuron.bp",
            &[("w0", 2.0), ("x0", -1.0), ("w1", -3.0), ("x1", -2.0), ("w2", -3.0)],
            &[
                ("loss", 0.731059),
                ("grad.w0", -0.196612),
                ("grad.x0", 0.393224),
                ("grad.w1", -0.393224),
                ("grad.x1", -0.589836),
                ("grad.w2", 0.196612),
            ],
        ),
        ("examples/max_gate.bp", &[("x", 4.0), ("y", 2.0)], &[("loss", 4.0), ("grad.x", 1.0), ("grad.y", 0.0)]),
    ];
    for (path, set, want) in cases {
        let model = Model::load(path).unwrap();
        let names = model.grad_names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let vg = model.value_and_grad(&names).unwrap();
        let native = model.compile(&vg, 1, OptLevel::O2).unwrap();
        let vals: Vec<[f32; 1]> = vg.args.iter().map(|a| [set.iter().find(|(n, _)| *n == a.name).unwrap().1]).collect();
        let mut args: Vec<Arg> = vals.iter().map(|v| Arg::F32(v.as_slice())).collect();
        let mut bufs = vec![[0.0f32]; vg.results.len()];
        let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
        native.run(&mut native.workspace(), &mut args, &mut outs).unwrap();
        for (name, w) in *want {
            let i = vg.results.iter().position(|r| r.name == *name).unwrap();
            // The table gives six significant digits.
            assert!((bufs[i][0] as f64 - w).abs() <= 1e-6, "{path}: {name} = {}, lecture {w}", bufs[i][0]);
        }
    }
}

fn float_args(f: &Function) -> Vec<String> {
    f.args.iter().filter(|a| a.ty.is_float()).map(|a| a.name.clone()).collect()
}

/// One argument's sample, kept as the f32 the JIT sees (the interpreter widens it exactly).
struct ArgData {
    shape: Vec<usize>,
    f32s: Vec<f32>,
    i32s: Vec<i32>,
}

impl ArgData {
    fn as_f64(&self) -> Vec<f64> {
        if self.i32s.is_empty() {
            self.f32s.iter().map(|&x| x as f64).collect()
        } else {
            self.i32s.iter().map(|&x| x as f64).collect()
        }
    }

    fn as_arg(&self) -> Arg<'_> {
        if self.i32s.is_empty() { Arg::F32(&self.f32s) } else { Arg::I32(&self.i32s) }
    }
}

fn sample_args(f: &Function, positive: &[&str], rng: &mut StdRng) -> Vec<ArgData> {
    f.args
        .iter()
        .map(|a| {
            let shape = a.ty.shape.sizes(BATCH);
            let n: usize = shape.iter().product();
            match (a.ty.dtype, &a.kind) {
                (DType::I32, ArgKind::Label { classes: Some(k) }) => {
                    ArgData { shape, f32s: vec![], i32s: (0..n).map(|_| rng.random_range(0..*k as i32)).collect() }
                }
                _ => {
                    let domain = if positive.contains(&a.name.as_str()) { Domain::Positive } else { Domain::Any };
                    ArgData { shape, f32s: (0..n).map(|_| sample(domain, rng)).collect(), i32s: vec![] }
                }
            }
        })
        .collect()
}

fn sample(domain: Domain, rng: &mut StdRng) -> f32 {
    match domain {
        Domain::Any => loop {
            let x: f32 = rng.random_range(-2.0..2.0);
            if x.abs() > 0.05 {
                return x;
            }
        },
        Domain::Positive => rng.random_range(0.5..2.0),
    }
}

/// `(L(x + h) - L(x - h)) / 2h` for element `i` of argument `arg`, in float64.
fn central_difference(f: &Function, args: &[Tensor], arg: usize, i: usize) -> f64 {
    let loss = f.result("loss").unwrap().value.index();
    let h = 1e-6 * args[arg].data[i].abs().max(1.0);
    let eval = |delta: f64| {
        let mut a = args.to_vec();
        a[arg].data[i] += delta;
        interpret(f, BATCH, &a).unwrap()[loss].data[0]
    };
    (eval(h) - eval(-h)) / (2.0 * h)
}
