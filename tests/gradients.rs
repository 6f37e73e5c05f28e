//! Gradients that other systems got wrong, through the whole pipeline (interpreter, and the
//! JIT at `-O0` and `-O2`):
//!
//! - **second order**: Hessian–vector products ([`Model::hvp`]) against analytic Hessians of
//!   a quadratic form, the lecture's sigmoid neuron and softmax cross-entropy;
//! - **param situations**: two distinct params with equal values (the optimizer's CSE must
//!   not merge them, in the gradient or in the train step's updates), one param used twice
//!   (fan-out), one param not used at all (an exact zero gradient of its shape, and the train
//!   step leaves it unchanged bit for bit);
//! - **stable composites** (`sigmoid`, `log(sigmoid)`, `log_sigmoid`, `softplus`, `softmax`,
//!   `log_softmax`, `log(softmax)`, `logsumexp`, `cross_entropy`, `bce_with_logits`) have
//!   finite values and gradients at every magnitude from 0 to 1e4, both signs;
//! - **equivalent spellings agree**: `relu(x)` and `where(x > 0, x, 0)`, `x^1.5` and
//!   `x*sqrt(x)`, `log(softmax(z))` and `log_softmax(z)`, `sum(x^2)` and `sqrt(sum(x^2))^2`,
//!   at random points and at the kinks (where strong zeros make both give the same number);
//! - a reducing max over more than 2^24 tied elements splits the cotangent evenly (the count
//!   does not stall at float32's 2^24).

#[path = "support/native.rs"]
mod support;

use bpc::ir::{DType, Function, Tensor, interpret};
use bpc::{Arg, Model, OptLevel};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use support::run_twice;

/// Named results: (result name, data).
type Named = Vec<(String, Vec<f64>)>;

/// Results of `f` at minibatch `batch` by the interpreter and by the JIT at -O0 and -O2, each
/// as (engine, result name → data).
fn every_engine(model: &Model, f: &Function, batch: usize, args: &[Tensor]) -> Vec<(String, Named)> {
    let vals = interpret(f, batch, args).unwrap_or_else(|e| panic!("{e}\n{f}"));
    let named = |get: &dyn Fn(usize, bpc::ir::Value) -> Vec<f64>| -> Named {
        f.results.iter().enumerate().map(|(i, r)| (r.name.clone(), get(i, r.value))).collect()
    };
    let mut out = vec![("interpreter".to_string(), named(&|_, v| vals[v.index()].data.clone()))];
    for level in [OptLevel::O0, OptLevel::O2] {
        let native = model.compile(f, batch, level).unwrap();
        let f32s: Vec<Vec<f32>> = args.iter().map(|t| t.data.iter().map(|&x| x as f32).collect()).collect();
        let i32s: Vec<Vec<i32>> = args.iter().map(|t| t.data.iter().map(|&x| x as i32).collect()).collect();
        let mut a: Vec<Arg> = f
            .args
            .iter()
            .enumerate()
            .map(|(i, x)| if x.ty.dtype == DType::I32 { Arg::I32(&i32s[i]) } else { Arg::F32(&f32s[i]) })
            .collect();
        let mut bufs: Vec<Vec<f32>> = f.results.iter().map(|r| vec![f32::NAN; f.shape(r.value).len(batch)]).collect();
        let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(Vec::as_mut_slice).collect();
        native.run(&mut native.workspace(), &mut a, &mut outs).unwrap();
        out.push((format!("JIT {level:?}"), named(&|i, _| bufs[i].iter().map(|&x| f64::from(x)).collect())));
    }
    out
}

fn assert_near(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{what}[{k}]: got {g}, want {w} (all: {got:?} vs {want:?})");
    }
}

/// `H·v` by every engine for a model whose args are `args` (model args, then one direction
/// per param in declaration order), against `want` (param name → expected H·v).
fn check_hvp(src: &str, batch: usize, args: Vec<Tensor>, want: &[(&str, Vec<f64>)]) {
    let model = Model::from_source("hvp.bp", src).unwrap();
    let h = model.hvp().unwrap();
    for (engine, results) in every_engine(&model, &h, batch, &args) {
        for (name, w) in want {
            let got = &results.iter().find(|(n, _)| *n == format!("grad.{name}")).unwrap().1;
            assert_near(got, w, &format!("{engine}: (H v)_{name} of\n{src}"));
        }
    }
}

#[test]
fn hvp_of_a_quadratic_form() {
    // L = ½ wᵀ A w + c·w (A an input): H = (A + Aᵀ)/2, so H v = (A + Aᵀ) v / 2.
    let src = "input A[3, 3]\ninput c[3]\nparam w[3]\nloss 0.5 * (w @ (A @ w)) + c @ w\n";
    let a = [1.0, 2.0, 0.0, -1.0, 3.0, 1.0, 0.5, 0.0, 2.0];
    let v = [1.0, -2.0, 0.5];
    let want: Vec<f64> = (0..3).map(|i| (0..3).map(|j| (a[3 * i + j] + a[3 * j + i]) / 2.0 * v[j]).sum()).collect();
    let args = vec![
        Tensor::new([1, 3, 3], a),
        Tensor::new([1, 3], [0.3, -0.2, 0.1]),
        Tensor::new([3], [0.7, -1.1, 0.4]),
        Tensor::new([3], v),
    ];
    check_hvp(src, 1, args, &[("w", want)]);
    // Over a minibatch of 2 the objective is the mean: H is the mean of the examples' (A + Aᵀ)/2.
    let b = [2.0, 0.0, 1.0, 0.0, -1.0, 0.0, 1.0, 0.0, 4.0];
    let want: Vec<f64> = (0..3)
        .map(|i| (0..3).map(|j| ((a[3 * i + j] + a[3 * j + i]) + (b[3 * i + j] + b[3 * j + i])) / 4.0 * v[j]).sum())
        .collect();
    let ab: Vec<f64> = a.iter().chain(&b).copied().collect();
    let args = vec![
        Tensor::new([2, 3, 3], ab),
        Tensor::new([2, 3], [0.3, -0.2, 0.1, 1.0, 1.0, 1.0]),
        Tensor::new([3], [0.7, -1.1, 0.4]),
        Tensor::new([3], v),
    ];
    check_hvp(src, 2, args, &[("w", want)]);
}

#[test]
fn hvp_of_the_sigmoid_neuron() {
    // L = σ(w·x + b): ∇ = σ'(z)·[x; 1], H = σ''(z)·[x; 1][x; 1]ᵀ with σ'' = σ(1−σ)(1−2σ).
    let src = "input x[2]\nparam w[2]\nparam b\nloss sigmoid(w @ x + b)\n";
    let (x, w, b) = ([-1.0, -2.0], [2.0, -3.0], -3.0);
    let (vw, vb) = ([0.5, -1.0], 2.0);
    let z: f64 = w[0] * x[0] + w[1] * x[1] + b;
    let s = 1.0 / (1.0 + (-z).exp());
    let s2 = s * (1.0 - s) * (1.0 - 2.0 * s);
    let along = x[0] * vw[0] + x[1] * vw[1] + vb;
    let args =
        vec![Tensor::new([1, 2], x), Tensor::new([2], w), Tensor::scalar(b), Tensor::new([2], vw), Tensor::scalar(vb)];
    check_hvp(src, 1, args, &[("w", vec![s2 * along * x[0], s2 * along * x[1]]), ("b", vec![s2 * along])]);
}

#[test]
fn hvp_of_softmax_cross_entropy() {
    // L = CE(W x, y), p = softmax(W x): ∇_W = (p − e_y) xᵀ and H·V = (diag p − p pᵀ)(V x) xᵀ.
    let src = "input x[3]\nlabel y : class(2)\nparam W[2, 3]\nloss cross_entropy(W @ x, y)\n";
    let x = [0.5, -1.0, 2.0];
    let w = [0.1, -0.2, 0.3, -0.4, 0.5, 0.6];
    let v = [1.0, 0.0, -1.0, 0.5, 2.0, 0.0];
    let z: Vec<f64> = (0..2).map(|i| (0..3).map(|j| w[3 * i + j] * x[j]).sum()).collect();
    let m = z[0].max(z[1]);
    let e: Vec<f64> = z.iter().map(|t| (t - m).exp()).collect();
    let p: Vec<f64> = e.iter().map(|t| t / (e[0] + e[1])).collect();
    let vx: Vec<f64> = (0..2).map(|i| (0..3).map(|j| v[3 * i + j] * x[j]).sum()).collect();
    let jvx: Vec<f64> = (0..2).map(|i| p[i] * vx[i] - p[i] * (p[0] * vx[0] + p[1] * vx[1])).collect();
    let want: Vec<f64> = (0..6).map(|k| jvx[k / 3] * x[k % 3]).collect();
    let args = vec![Tensor::new([1, 3], x), Tensor::new([1], [1.0]), Tensor::new([2, 3], w), Tensor::new([2, 3], v)];
    check_hvp(src, 1, args, &[("W", want)]);
}

/// Every gradient of `src` at one example by every engine.
fn grads(src: &str, args: &[Tensor]) -> Vec<(String, Named)> {
    grads_at(src, 1, args)
}

fn get<'a>(results: &'a [(String, Vec<f64>)], name: &str) -> &'a [f64] {
    &results.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1
}

#[test]
fn two_params_with_equal_values_keep_their_own_gradients() {
    // a and b hold the same numbers; CSE at -O2 must not merge `a*x` and `b*x`.
    let src = "input x[2]\nparam a[2] = 1\nparam b[2] = 1\nloss sum(a * x) + 2 * sum(b * x) + sum(a * a)\n";
    let args = [Tensor::new([1, 2], [3.0, -1.0]), Tensor::new([2], [1.0, 1.0]), Tensor::new([2], [1.0, 1.0])];
    for (engine, r) in grads(src, &args) {
        assert_eq!(get(&r, "grad.a"), [5.0, 1.0], "{engine}");
        assert_eq!(get(&r, "grad.b"), [6.0, -2.0], "{engine}");
    }
    // The train step (SGD, lr 0.5) moves each by its own gradient: a − 0.5·(5, 1), b − 0.5·(6, −2).
    let model = Model::from_source("m.bp", src).unwrap();
    let step = model.train_step().unwrap();
    let mut with_lr = args.to_vec();
    with_lr.push(Tensor::scalar(0.5));
    for (engine, r) in stepped(&model, &step, &with_lr) {
        assert_eq!(get(&r, "a"), [-1.5, 0.5], "{engine}: the train step's new a");
        assert_eq!(get(&r, "b"), [-2.0, 2.0], "{engine}: the train step's new b");
    }
}

/// The params after one call of the train step `step` at one example, by the interpreter and
/// by the JIT at `-O0` and `-O2` (which update the param buffers in place).
fn stepped(model: &Model, step: &Function, args: &[Tensor]) -> Vec<(String, Named)> {
    let vals = interpret(step, 1, args).unwrap();
    let updates: Vec<_> = step.results.iter().filter(|r| r.update.is_some()).collect();
    let named = updates.iter().map(|r| (r.name.clone(), vals[r.value.index()].data.clone())).collect();
    let mut out = vec![("interpreter".to_string(), named)];
    for level in [OptLevel::O0, OptLevel::O2] {
        let native = model.compile(step, 1, level).unwrap();
        let mut f32s: Vec<Vec<f32>> = args.iter().map(|t| t.data.iter().map(|&x| x as f32).collect()).collect();
        let updated: Vec<bool> =
            step.args.iter().map(|a| updates.iter().any(|r| r.update == step.arg_named(&a.name))).collect();
        let mut a: Vec<Arg> = f32s
            .iter_mut()
            .zip(&updated)
            .map(|(v, &u)| if u { Arg::F32Mut(v.as_mut_slice()) } else { Arg::F32(v.as_slice()) })
            .collect();
        let mut loss = [f32::NAN];
        native.run(&mut native.workspace(), &mut a, &mut [&mut loss]).unwrap();
        let named = step
            .args
            .iter()
            .zip(&f32s)
            .zip(&updated)
            .filter(|(_, u)| **u)
            .map(|((arg, v), _)| (arg.name.clone(), v.iter().map(|&x| f64::from(x)).collect()))
            .collect();
        out.push((format!("JIT {level:?}"), named));
    }
    out
}

#[test]
fn a_param_used_twice_sums_both_uses() {
    // L = a·x + a·a·x: dL/da = x + 2 a x.
    let src = "input x\nparam a\nloss a * x + a * a * x\n";
    for (engine, r) in grads(src, &[Tensor::new([1], [3.0]), Tensor::scalar(2.0)]) {
        assert_eq!(get(&r, "grad.a"), [15.0], "{engine}");
    }
}

#[test]
fn an_unused_param_gets_an_exact_zero_of_its_shape() {
    let src = "input x\nparam a\nparam unused[2, 3] ~ normal(0, 1)\nloss a * x\n";
    let args = [Tensor::new([1], [3.0]), Tensor::scalar(2.0), Tensor::new([2, 3], [1.0, f64::NAN, 3.0, 4.0, 5.0, 6.0])];
    for (engine, r) in grads(src, &args) {
        // Even a NaN in the unused param does not reach its (exactly zero) gradient.
        assert!(get(&r, "grad.unused").iter().all(|&g| g.to_bits() == 0), "{engine}: {:?}", get(&r, "grad.unused"));
        assert_eq!(get(&r, "grad.a"), [3.0], "{engine}");
    }
    // The train step leaves it as it was, bit for bit (NaN included), in every engine.
    let model = Model::from_source("m.bp", src).unwrap();
    let step = model.train_step().unwrap();
    let with_lr = [args[0].clone(), args[1].clone(), args[2].clone(), Tensor::scalar(0.5)];
    for (engine, r) in stepped(&model, &step, &with_lr) {
        let data = get(&r, "unused");
        assert_eq!(data.len(), 6);
        let same = data.iter().zip(&args[2].data).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{engine}: {data:?}");
    }
}

/// The loss and the gradient of every input of two spellings, by every engine, at `points`
/// (one scalar or vector input `x`), must agree.
fn spellings_agree(a: &str, b: &str, decl: &str, points: &[Vec<f64>]) {
    for p in points {
        let n = p.len();
        let shape: Vec<usize> = if decl.contains('[') { vec![1, n] } else { vec![1] };
        let args = [Tensor::new(shape, p.clone())];
        let ra = grads(&format!("{decl}\nloss {a}\n"), &args);
        let rb = grads(&format!("{decl}\nloss {b}\n"), &args);
        for ((engine, x), (_, y)) in ra.iter().zip(&rb) {
            for name in ["loss", "grad.x"] {
                assert_near(get(x, name), get(y, name), &format!("{engine} {name} of `{a}` vs `{b}` at {p:?}"));
            }
        }
    }
}

fn random_points(n: usize, len: usize, lo: f64, hi: f64) -> Vec<Vec<f64>> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..n).map(|_| (0..len).map(|_| f64::from(rng.random_range(lo as f32..hi as f32))).collect()).collect()
}

#[test]
fn equivalent_spellings_agree() {
    let mut pts = random_points(6, 1, -2.0, 2.0);
    pts.extend([vec![0.0], vec![-0.0]]);
    spellings_agree("relu(x)", "where(x > 0, x, 0)", "input x", &pts);
    let mut pts = random_points(6, 1, 0.01, 3.0);
    pts.push(vec![0.0]);
    spellings_agree("x^1.5", "x * sqrt(x)", "input x", &pts);
    let pts = random_points(6, 3, -5.0, 5.0);
    spellings_agree("sum(log(softmax(x)))", "sum(log_softmax(x))", "input x[3]", &pts);
    let mut pts = random_points(6, 3, -2.0, 2.0);
    pts.push(vec![0.0, 0.0, 0.0]);
    spellings_agree("sum(x^2)", "sqrt(sum(x^2))^2", "input x[3]", &pts);
}

#[test]
fn a_reducing_max_splits_evenly_among_more_than_2_to_the_24_ties() {
    // 2^24 + 2^20 equal elements: a float32 counter stalls at 2^24; the compensated sum
    // keeps the count, so every element gets 1/n and the shares add up to 1.
    let n = (1usize << 24) + (1 << 20);
    let src = format!("param x[{n}]\nloss max(x)\n");
    let model = Model::from_source("ties.bp", src).unwrap();
    let vg = model.value_and_grad(&["x"]).unwrap();
    let x = vec![0.25f32; n];
    let share = 1.0 / n as f64;
    for level in [OptLevel::O0, OptLevel::O2] {
        let native = model.compile(&vg, 1, level).unwrap();
        let mut loss = [0.0f32];
        let mut grad = vec![f32::NAN; n];
        native.run(&mut native.workspace(), &mut [Arg::F32(&x)], &mut [&mut loss, &mut grad]).unwrap();
        assert_eq!(loss[0], 0.25);
        let (lo, hi) =
            grad.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &g| (lo.min(f64::from(g)), hi.max(f64::from(g))));
        let even = (lo - share).abs() <= 1e-6 * share && (hi - share).abs() <= 1e-6 * share;
        assert!(even, "{level:?}: {lo} .. {hi}, want {share}");
    }
}

/// Compiles `src`'s value-and-grad at `level` for minibatch `batch` and calls it twice on one
/// workspace (after poisoning it with a call on NaN arguments): both calls must agree bit for
/// bit and match the interpreter. Arguments are a fixed pattern in [-1.5, 1.5] (class labels 1).
fn two_calls_agree(src: &str, batch: usize, level: OptLevel) {
    let model = Model::from_source("m.bp", src).unwrap();
    let names = model.grad_names();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let vg = model.value_and_grad(&refs).unwrap();
    let native = model.compile(&vg, batch, level).unwrap();
    let mut k = 0;
    let args: Vec<Tensor> = vg
        .args
        .iter()
        .map(|a| {
            let sizes = a.ty.shape.sizes(batch);
            let n = sizes.iter().product();
            let data = (0..n)
                .map(|_| {
                    k += 1;
                    if a.ty.dtype == DType::I32 { 1.0 } else { f64::from(((k * 37) % 31) as f32 / 10.0 - 1.5) }
                })
                .collect::<Vec<f64>>();
            Tensor::new(sizes, data)
        })
        .collect();
    let vals = interpret(&vg, batch, &args).unwrap();
    let (first, second) = run_twice(&native, &vg, &args);
    for (r, (x, y)) in vg.results.iter().zip(first.iter().zip(&second)) {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(x), bits(y), "{level:?}: {} differs between two calls: {x:?} then {y:?}\n{src}", r.name);
        assert_near(
            &x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
            &vals[r.value.index()].data,
            &format!("{level:?} {} of\n{src}", r.name),
        );
    }
}

/// Found by tests/random_programs.rs (shard 2-4 at -O2): two softmaxes and an index panicked
/// in the optimizer's fusion ("fusion groups are not convex"), reduced by hand.
#[test]
fn two_softmaxes_and_an_index_compile_and_agree() {
    for level in [OptLevel::O0, OptLevel::O2] {
        two_calls_agree("input x[2]\ninput z[3]\nloss sum(softmax(z)[0] * softmax(x))\n", 2, level);
    }
}

/// Found by tests/random_programs.rs (shard 1 at -O2): a gradient differed between two calls
/// on one workspace.
#[test]
fn two_calls_on_one_workspace_are_bit_identical() {
    // Reduced by hand from the generated program; needs the matrix product.
    let src = "param p[1]\nparam q[3]\nparam b\ninput w[2]\ninput x[2, 3]\ninput z[2]\nlabel y : class(2)\n\
               loss sum(w * max(x @ q, max(p, b) * sigmoid(cross_entropy(z, y)) + cross_entropy(z, y)))\n";
    for level in [OptLevel::O0, OptLevel::O2] {
        two_calls_agree(src, 2, level);
    }
}

/// `--check-finite` names a source line for every op: every value of the value-and-grad
/// function and of the train step of every example has a span (only step settings such as
/// `lr`, which are not in the program, have none).
#[test]
fn every_value_has_a_source_line() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.retain(|p| p.extension().is_some_and(|x| x == "bp"));
    assert!(files.len() >= 5);
    for path in files {
        let model = Model::load(&path).unwrap();
        let names = model.grad_names();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        for f in [model.value_and_grad(&refs).unwrap(), model.train_step().unwrap(), model.hvp().unwrap_or_default()] {
            for v in f.values() {
                let setting = matches!(f.inst(v), bpc::Inst::Arg(id) if f.arg(*id).kind == bpc::ArgKind::Hyper);
                assert!(setting || !f.span(v).is_none(), "{}: {v} of {} has no span\n{f}", path.display(), f.name);
            }
        }
    }
}

/// The magnitudes the stable composites are swept over: both signs of 0 to 1e4, through the
/// places a naive formula breaks in float32 (`e^x` overflows past 88.72, `1 − σ(x)` rounds to 0
/// past about 17, `e^-x` underflows below -87.3).
fn extreme_points() -> Vec<f64> {
    let mags = [0.0, 1e-3, 0.5, 1.0, 10.0, 17.0, 20.0, 50.0, 87.0, 88.7, 89.0, 100.0, 104.0, 200.0, 1e3, 5e3, 1e4];
    mags.iter().flat_map(|&m| [m, -m]).map(|x: f64| f64::from(x as f32)).collect()
}

/// `σ(x)` in float64 without overflow.
fn sigma(x: f64) -> f64 {
    if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) }
}

/// SPEC §2: `sigmoid`, `log(sigmoid)`, `softplus`, `softmax`, `log_softmax`, `logsumexp`,
/// `cross_entropy` and `bce_with_logits` have finite values and gradients for |x| up to 1e4, in
/// the interpreter and in the JIT at `-O0` and `-O2`. Every point of [`extreme_points`] is one
/// example of a minibatch (so `grad.x[i]` is `ℓ'(x_i)/B`); the JIT must agree with the
/// interpreter, and the interpreter with the closed-form derivative where there is a short one.
#[test]
fn stable_composites_are_finite_for_inputs_up_to_1e4() {
    let xs = extreme_points();
    let batch = xs.len();
    let b = batch as f64;
    // Scalar composites of `input x`, with ℓ'(x).
    type Slope = fn(f64) -> f64;
    let scalar: &[(&str, Slope)] = &[
        ("sigmoid(x)", |x| sigma(x) * sigma(-x)),
        ("log(sigmoid(x))", |x| sigma(-x)),
        ("log_sigmoid(x)", |x| sigma(-x)),
        ("softplus(x)", sigma),
        ("log(sigmoid(-x))", |x| -sigma(x)),
    ];
    for &(loss, slope) in scalar {
        let src = format!("input x\nloss {loss}\n");
        let args = [Tensor::new([batch], xs.clone())];
        for (engine, r) in grads_at(&src, batch, &args) {
            let (value, grad) = (get(&r, "loss"), get(&r, "grad.x"));
            assert!(
                value[0].is_finite() && grad.iter().all(|g| g.is_finite()),
                "{engine}: `{loss}`: {value:?} {grad:?}"
            );
            if engine == "interpreter" {
                let want: Vec<f64> = xs.iter().map(|&x| slope(x) / b).collect();
                assert_near(grad, &want, &format!("interpreter d/dx `{loss}` at {xs:?}"));
            }
        }
    }
    // Vector composites of `input z[3]` = (x, −x, x/2), a class label 1 and a target (1, 0, ½).
    let z: Vec<f64> = xs.iter().flat_map(|&x| [x, -x, f64::from((x / 2.0) as f32)]).collect();
    let w: Vec<f64> = xs.iter().flat_map(|_| [1.0, -2.0, 0.5]).collect();
    let t: Vec<f64> = xs.iter().flat_map(|_| [1.0, 0.0, 0.5]).collect();
    let vector = [
        "sum(w * softmax(z))",
        "sum(w * log_softmax(z))",
        "sum(w * log(softmax(z)))",
        "logsumexp(z)",
        "cross_entropy(z, y)",
        "bce_with_logits(z, t)",
        "sum(w * softmax(z, axis=0)) + logsumexp(z, axis=0)",
    ];
    for loss in vector {
        let src = format!("input z[3]\ninput w[3]\nlabel y : class(3)\nlabel t[3]\nloss {loss}\n");
        let args = [
            Tensor::new([batch, 3], z.clone()),
            Tensor::new([batch, 3], w.clone()),
            Tensor::new([batch], vec![1.0; batch]),
            Tensor::new([batch, 3], t.clone()),
        ];
        let mut oracle: Option<Named> = None;
        for (engine, r) in grads_at(&src, batch, &args) {
            for (name, data) in &r {
                assert!(data.iter().all(|g| g.is_finite()), "{engine}: {name} of `{loss}` is not finite: {data:?}");
            }
            match &oracle {
                None => oracle = Some(r),
                Some(o) => {
                    for (name, data) in o {
                        assert_near(get(&r, name), data, &format!("{engine} vs interpreter: {name} of `{loss}`"));
                    }
                }
            }
        }
        let o = oracle.expect("the interpreter ran");
        let dz = get(&o, "grad.z");
        for (i, zi) in z.chunks(3).enumerate() {
            let m = zi.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = zi.iter().map(|v| (v - m).exp()).collect();
            let p: Vec<f64> = e.iter().map(|v| v / e.iter().sum::<f64>()).collect();
            let want: Vec<f64> = match loss {
                "logsumexp(z)" => p.clone(),
                "cross_entropy(z, y)" => vec![p[0], p[1] - 1.0, p[2]],
                "bce_with_logits(z, t)" => (0..3).map(|k| (sigma(zi[k]) - t[k]) / 3.0).collect(),
                _ => continue,
            };
            let want: Vec<f64> = want.iter().map(|v| v / b).collect();
            assert_near(&dz[3 * i..3 * i + 3], &want, &format!("interpreter d/dz `{loss}` at z = {zi:?}"));
        }
    }
}

/// Every value and gradient of `src` over a minibatch of `batch` by every engine.
fn grads_at(src: &str, batch: usize, args: &[Tensor]) -> Vec<(String, Named)> {
    let model = Model::from_source("m.bp", src).unwrap_or_else(|e| panic!("{e}"));
    let names = model.grad_names();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let vg = model.value_and_grad(&refs).unwrap();
    every_engine(&model, &vg, batch, args)
}
