//! Test harness: hand-built IR functions, random seeded arguments, and the JIT compared with
//! the float64 interpreter.
#![allow(dead_code)]

use bpc_codegen::{Arg, Compiled};
use bpc_ir::{ArgKind, BinaryOp, DType, Function, Init, Inst, Shape, Span, Tensor, Type, UnaryOp, Value, interpret};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A small builder over `Function` for tests.
pub struct B {
    pub f: Function,
}

impl B {
    pub fn new(name: &str) -> B {
        B { f: Function::new(name) }
    }

    fn arg(&mut self, name: &str, kind: ArgKind, ty: Type) -> Value {
        let id = self.f.add_arg(name, kind, ty, Span::NONE);
        self.f.ins(Inst::Arg(id), Span::NONE)
    }

    /// A per-example input `f32[B, dims]`.
    pub fn input(&mut self, name: &str, dims: &[usize]) -> Value {
        self.arg(name, ArgKind::Input, Type::f32(Shape::batched(dims)))
    }

    /// A shared param `f32[dims]`.
    pub fn param(&mut self, name: &str, dims: &[usize]) -> Value {
        self.arg(name, ArgKind::Param { init: Init::Const(0.0) }, Type::f32(Shape::shared(dims)))
    }

    /// A hyperparameter `f32[]`.
    pub fn hyper(&mut self, name: &str) -> Value {
        self.arg(name, ArgKind::Hyper, Type::scalar())
    }

    /// Class labels `i32[B]` in `0..classes`.
    pub fn label(&mut self, name: &str, classes: usize) -> Value {
        let ty = Type { dtype: DType::I32, shape: Shape::batched([]) };
        self.arg(name, ArgKind::Label { classes: Some(classes) }, ty)
    }

    pub fn ins(&mut self, inst: Inst) -> Value {
        self.f.ins(inst, Span::NONE)
    }

    pub fn konst(&mut self, c: f64) -> Value {
        self.ins(Inst::Const(c))
    }

    pub fn un(&mut self, op: UnaryOp, arg: Value) -> Value {
        self.ins(Inst::Unary { op, arg })
    }

    pub fn bin(&mut self, op: BinaryOp, lhs: Value, rhs: Value) -> Value {
        self.ins(Inst::Binary { op, lhs, rhs })
    }

    pub fn bcast(&mut self, arg: Value, to: Shape) -> Value {
        self.ins(Inst::Broadcast { arg, to })
    }

    /// A scalar constant broadcast to the shape of `like`.
    pub fn splat(&mut self, c: f64, like: Value) -> Value {
        let k = self.konst(c);
        let to = self.f.shape(like).clone();
        self.bcast(k, to)
    }

    pub fn result(&mut self, name: &str, v: Value) {
        self.f.add_result(name, v);
    }
}

/// A caller-side argument buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

impl Data {
    pub fn tensor(&self, shape: Vec<usize>) -> Tensor {
        let data: Vec<f64> = match self {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f64).collect(),
        };
        Tensor::new(shape, data)
    }

    pub fn f32(&self) -> &[f32] {
        match self {
            Data::F32(v) => v,
            Data::I32(_) => panic!("not f32"),
        }
    }
}

/// Random arguments: floats from `sample`, class labels uniform in `0..classes`.
pub fn random_args(func: &Function, batch: usize, seed: u64, sample: &dyn Fn(&mut StdRng) -> f32) -> Vec<Data> {
    let mut rng = StdRng::seed_from_u64(seed);
    func.args
        .iter()
        .map(|a| {
            let n = a.ty.shape.len(batch);
            match (a.ty.dtype, &a.kind) {
                (DType::I32, ArgKind::Label { classes: Some(k) }) => {
                    Data::I32((0..n).map(|_| rng.random_range(0..*k as i32)).collect())
                }
                (DType::I32, _) => Data::I32((0..n).map(|_| rng.random_range(0..4)).collect()),
                (DType::F32, _) => Data::F32((0..n).map(|_| sample(&mut rng)).collect()),
            }
        })
        .collect()
}

pub fn uniform(lo: f32, hi: f32) -> impl Fn(&mut StdRng) -> f32 {
    move |r: &mut StdRng| r.random_range(lo..hi)
}

/// Runs the JIT: returns every result in `func.results` order (update results read back
/// from their param buffer) and the argument buffers after the call.
pub fn run_jit(c: &Compiled, func: &Function, args: &[Data]) -> Vec<Vec<f32>> {
    let mut bufs: Vec<Data> = args.to_vec();
    let mut outs: Vec<Vec<f32>> = c.results().iter().map(|r| vec![f32::NAN; r.len]).collect();
    {
        let mut call_args: Vec<Arg> = bufs
            .iter_mut()
            .zip(c.args())
            .map(|(d, info)| match d {
                Data::F32(v) => {
                    if info.updated {
                        Arg::F32Mut(v)
                    } else {
                        Arg::F32(v)
                    }
                }
                Data::I32(v) => Arg::I32(v),
            })
            .collect();
        let mut res: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
        let mut ws = c.workspace();
        c.run(&mut ws, &mut call_args, &mut res).expect("run");
    }
    let mut plain = outs.into_iter();
    func.results
        .iter()
        .map(|r| match r.update {
            Some(p) => bufs[p.index()].f32().to_vec(),
            None => plain.next().expect("result"),
        })
        .collect()
}

/// The interpreter's results in `func.results` order.
pub fn run_interp(func: &Function, batch: usize, args: &[Data]) -> Vec<Vec<f64>> {
    let tensors: Vec<Tensor> = func.args.iter().zip(args).map(|(a, d)| d.tensor(a.ty.shape.sizes(batch))).collect();
    let vals = interpret(func, batch, &tensors).expect("interpret");
    func.results.iter().map(|r| vals[r.value.index()].data.clone()).collect()
}

/// `|got - want| <= tol * max(1, |want|)`, NaN matching NaN and infinities exactly (`want`
/// beyond the f32 range counts as infinite).
pub fn close(got: f32, want: f64, tol: f64) -> bool {
    let g = got as f64;
    // The oracle is f64: what overflows f32 is infinite there.
    let want = if want.abs() > f32::MAX as f64 { want.signum() * f64::INFINITY } else { want };
    if want.is_nan() || g.is_nan() {
        return want.is_nan() && g.is_nan();
    }
    if want.is_infinite() || g.is_infinite() {
        return g == want;
    }
    (g - want).abs() <= tol * want.abs().max(1.0)
}

/// Every result of `f` in `a` and `b` has the same bits.
pub fn assert_same_bits(f: &Function, a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    for (r, (a, b)) in f.results.iter().zip(a.iter().zip(b)) {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(a), bits(b), "{what}: {}", r.name);
    }
}

pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad: Vec<usize> = (0..got.len()).filter(|&i| !close(got[i], want[i], tol)).collect();
    if let Some(&i) = bad.first() {
        panic!(
            "{what}: {} of {} elements differ; first at {i}: jit {} vs interp {} (tol {tol})",
            bad.len(),
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// Compiles `func` at `batch`, runs it and the interpreter on the same random arguments,
/// and compares every result.
pub fn check_with(func: &Function, batch: usize, seed: u64, tol: f64, sample: &dyn Fn(&mut StdRng) -> f32) {
    bpc_ir::verify(func).expect("test function verifies");
    let args = random_args(func, batch, seed, sample);
    let c = bpc_codegen::compile(func, batch).unwrap_or_else(|e| panic!("compile {}: {e}", func.name));
    let got = run_jit(&c, func, &args);
    let want = run_interp(func, batch, &args);
    for (r, (g, w)) in func.results.iter().zip(got.iter().zip(&want)) {
        assert_close(&format!("{} (batch {batch}) result {}", func.name, r.name), g, w, tol);
    }
}

/// `check_with` on uniform(-2, 2) floats.
pub fn check(func: &Function, batch: usize, seed: u64, tol: f64) {
    check_with(func, batch, seed, tol, &uniform(-2.0, 2.0));
}

/// The float32 tolerance of the spec.
pub const F32_TOL: f64 = 1e-5;

/// The lengths that exercise every inner-loop shape: partial vectors, single vectors, the
/// unrolled loop and its remainders.
pub const LENGTHS: [usize; 5] = [1, 3, 5, 17, 1023];
pub const BATCHES: [usize; 3] = [1, 7, 128];
