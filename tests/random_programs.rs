//! Random well-typed programs (`tests/programs`, a proptest generator over every op and
//! broadcasting pattern) through the whole pipeline, checking for each:
//!
//! - **JIT = float64 interpreter**: the loss and every gradient (inputs, labels, params,
//!   bindings) of the JIT at `-O2` and at `-O0` agree with the interpreter, and with each
//!   other, to float32 rounding, `|jit − f64| ≤ 1e-5·max(1, |f64|)`;
//! - **interpreter = central finite differences** of the interpreted loss, per element of
//!   every float argument, `|ad − fd| ≤ 1e-5·max(1, |fd|)` (h = 1e-6·max(1, |x|), float64);
//! - **every result element is written**: result buffers are filled with NaN before the call,
//!   and the workspace is poisoned by a first call on all-NaN arguments;
//! - **determinism**: a second call on the same workspace gives bit-identical results;
//! - **second order**: for every program with params, the Hessian–vector product (the adjoint
//!   differentiated again) against central differences of the gradient in the interpreter,
//!   and for every eighth such program the JIT's at `-O2` against the interpreter's
//!   ([`second_order`]).
//!
//! Points are drawn at random (uniform in [-2, 2], minibatch of 2) and used only where the
//! program is smooth and well-scaled there: every kink (relu, abs, max/min, comparisons, a
//! reducing max) at least 1e-3 (relative) from its decision boundary or exactly on it (a
//! structural tie such as `max(e, e)`), and every value finite and below 1e4 in magnitude;
//! otherwise another point is drawn (three tries). The proptest runners are seeded, four
//! shards of 2 500 programs run in parallel; a failure prints the shard's seed and the
//! (shrunk) program text. `BPC_RANDOM_PROGRAMS=N` changes the programs per shard.

mod programs;
#[path = "support/native.rs"]
mod support;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use bpc::ir::{ArgKind, BinaryOp, Function, Inst, ReduceOp, Tensor, UnaryOp, interpret};
use bpc::{Model, OptLevel};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use support::run_twice;

const BATCH: usize = 2;
const PROGRAMS_PER_SHARD: u32 = 2500;

/// What one shard saw.
#[derive(Default, Debug)]
struct Tally {
    programs: usize,
    /// Programs compared at a point (the others had no smooth, well-scaled point in 3 tries).
    compared: usize,
    at_o0: usize,
    jit_elements: usize,
    fd_elements: usize,
    /// JIT elements outside the plain `1e-5·max(1, |x|)` that the rounding allowance admitted.
    within_spread_only: usize,
    /// Programs with params whose Hessian–vector product was checked against finite
    /// differences of the gradient (interpreter), and of those, compared in the JIT at -O2.
    hvp_programs: usize,
    hvp_jit: usize,
    ops: BTreeMap<&'static str, usize>,
    /// Seconds spent optimizing and JIT-compiling, in finite differences, and in the
    /// second-order checks.
    seconds: [f64; 3],
}

fn shard(seed: u8) {
    let cases = std::env::var("BPC_RANDOM_PROGRAMS").ok().and_then(|s| s.parse().ok()).unwrap_or(PROGRAMS_PER_SHARD);
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 2000, ..Config::default() };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let tally = std::cell::RefCell::new(Tally::default());
    let result = runner.run(&programs::program(), |p| {
        let mut t = tally.borrow_mut();
        p.count_ops(&mut t.ops);
        check(&p.source(), &mut t)
    });
    if let Err(e) = result {
        match e {
            TestError::Fail(why, p) => {
                panic!(
                    "random program failed (shard seed {seed}, proptest ChaCha [{seed}; 32]):\n{}\n{why}",
                    p.source()
                )
            }
            TestError::Abort(why) => panic!("shard seed {seed}: {why}"),
        }
    }
    let t = tally.into_inner();
    println!("shard {seed}: {t:?}");
    // proptest runs the shrunk failures too; without failures, `programs` counts each case once.
    assert_eq!(t.programs, cases as usize);
    assert!(t.compared * 10 >= t.programs * 9, "too few programs had a usable point: {t:?}");
    assert!(t.hvp_programs * 2 >= t.programs && t.hvp_jit * 10 >= t.hvp_programs, "too few second-order checks: {t:?}");
    for op in programs::all_ops() {
        let n = t.ops.get(op).copied().unwrap_or(0);
        assert!(n * 1000 >= cases as usize, "op `{op}` occurred only {n} times in {cases} programs");
    }
}

#[test]
fn random_programs_shard_1() {
    shard(1);
}

#[test]
fn random_programs_shard_2() {
    shard(2);
}

#[test]
fn random_programs_shard_3() {
    shard(3);
}

#[test]
fn random_programs_shard_4() {
    shard(4);
}

fn fail(src: &str, msg: String) -> Result<(), TestCaseError> {
    Err(TestCaseError::fail(format!("{msg}\n--- program ---\n{src}")))
}

/// Compiles `src` once and checks it at one smooth point (see the module docs).
fn check(src: &str, t: &mut Tally) -> Result<(), TestCaseError> {
    t.programs += 1;
    let model = match Model::from_source("random.bp", src) {
        Ok(m) => m,
        Err(e) => return fail(src, format!("the generator made a program that does not compile:\n{e}")),
    };
    let wrt = model.grad_names();
    let refs: Vec<&str> = wrt.iter().map(String::as_str).collect();
    let vg = match model.value_and_grad(&refs) {
        Ok(vg) => vg,
        Err(e) => return fail(src, format!("value_and_grad failed: {e}")),
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    src.hash(&mut hasher);
    let h = hasher.finish();
    let mut rng = StdRng::seed_from_u64(h);
    let Some((args, vals)) = (0..3).find_map(|_| {
        let args = sample(&model.func, &mut rng);
        let vals = interpret(&vg, BATCH, &args).ok()?;
        (well_scaled(&vals) && smooth(&model.func, &vals)).then_some((args, vals))
    }) else {
        return Ok(());
    };
    t.compared += 1;
    let spread = rounding_spread(&vg, &args, &vals, h);
    // Every program at both levels: `-O0` (no passes) must agree with `-O2` as with the oracle.
    let mut at_o2: Vec<Vec<f32>> = Vec::new();
    for level in [OptLevel::O2, OptLevel::O0] {
        t.at_o0 += usize::from(level == OptLevel::O0);
        let clock = std::time::Instant::now();
        let compiled = model.compile(&vg, BATCH, level);
        t.seconds[0] += clock.elapsed().as_secs_f64();
        let native = match compiled {
            Ok(n) => n,
            Err(e) => return fail(src, format!("{level:?}: {e}")),
        };
        let (first, second) = run_twice(&native, &vg, &args);
        for (r, (jit, again)) in vg.results.iter().zip(first.iter().zip(&second)) {
            let oracle = &vals[r.value.index()].data;
            let noise = &spread[r.value.index()];
            for (i, ((&j, &j2), &o)) in jit.iter().zip(again).zip(oracle).enumerate() {
                t.jit_elements += 1;
                if j.to_bits() != j2.to_bits() {
                    return fail(src, format!("{level:?}: {}[{i}] is {j} on one call and {j2} on the next", r.name));
                }
                let plain = 1e-5 * o.abs().max(1.0);
                t.within_spread_only += usize::from(!within(f64::from(j) - o, plain));
                if !within(f64::from(j) - o, plain + 4.0 * noise[i]) {
                    let point = describe(&vg, &args);
                    let n = noise[i];
                    let msg = format!("{level:?}: JIT {}[{i}] = {j}, interpreter {o} (rounding spread {n:e})", r.name);
                    return fail(src, format!("{msg}\nat {point}"));
                }
            }
        }
        if level == OptLevel::O2 {
            at_o2 = first;
        } else {
            for (r, (o0, o2)) in vg.results.iter().zip(first.iter().zip(&at_o2)) {
                let noise = &spread[r.value.index()];
                for (i, (&a, &b)) in o0.iter().zip(o2).enumerate() {
                    let (a, b) = (f64::from(a), f64::from(b));
                    let agree = (a - b).abs() <= 1e-5 * b.abs().max(1.0) + 4.0 * noise[i] || (a.is_nan() && b.is_nan());
                    if !agree {
                        return fail(src, format!("{}[{i}] is {a} at -O0 and {b} at -O2", r.name));
                    }
                }
            }
        }
    }
    // Central differences of the interpreted loss in every element of every float argument.
    let clock = std::time::Instant::now();
    let f = &model.func;
    let loss = f.result("loss").expect("a loss").value.index();
    for (a, arg) in f.args.iter().enumerate() {
        if !arg.ty.is_float() {
            continue;
        }
        let g = &vals[vg.result(&format!("grad.{}", arg.name)).expect("a gradient per float arg").value.index()].data;
        for (i, &ad) in g.iter().enumerate() {
            let x = args[a].data[i];
            let step = 1e-6 * x.abs().max(1.0);
            let at = |d: f64| {
                let mut moved = args.clone();
                moved[a].data[i] = x + d;
                interpret(f, BATCH, &moved).map(|v| v[loss].data[0])
            };
            let (Ok(up), Ok(down)) = (at(step), at(-step)) else {
                return fail(src, "the interpreter failed near the point".into());
            };
            let fd = (up - down) / (2.0 * step);
            t.fd_elements += 1;
            if !within(ad - fd, 1e-5 * fd.abs().max(1.0)) {
                let point = describe(&vg, &args);
                return fail(src, format!("d loss / d {}[{i}] = {ad}, finite differences {fd}\nat {point}", arg.name));
            }
        }
    }
    t.seconds[1] += clock.elapsed().as_secs_f64();
    if f.params().next().is_some() {
        let clock = std::time::Instant::now();
        second_order(src, &model, &args, h, t)?;
        t.seconds[2] += clock.elapsed().as_secs_f64();
    }
    Ok(())
}

/// Second order (the adjoint differentiated again): the Hessian–vector product of the loss
/// with respect to the params ([`Model::hvp`]) along a fixed direction, by the interpreter
/// against central differences of the interpreted gradient along it (`h = 1e-6`, to
/// `1e-5·max(1, |fd|)`), and for every eighth program by the JIT at `-O2` against the
/// interpreter (to `1e-4·max(1, |x|)` plus 4× the rounding spread).
fn second_order(src: &str, model: &Model, args: &[Tensor], seed: u64, t: &mut Tally) -> Result<(), TestCaseError> {
    let f = &model.func;
    let names: Vec<String> = f.params().map(|id| f.arg(id).name.clone()).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (h, vg) = match (model.hvp(), model.value_and_grad(&refs)) {
        (Ok(h), Ok(vg)) => (h, vg),
        (Err(e), _) | (_, Err(e)) => return fail(src, format!("second order: {e}")),
    };
    let mut k = 0usize;
    let dirs: Vec<Tensor> = f
        .params()
        .map(|id| {
            let ty = &f.arg(id).ty;
            let v = (0..ty.shape.example_len())
                .map(|_| {
                    k += 1;
                    (0.3 + 0.4 * (k % 3) as f64) * if k.is_multiple_of(2) { -1.0 } else { 1.0 }
                })
                .collect::<Vec<f64>>();
            Tensor::new(ty.shape.sizes(BATCH), v)
        })
        .collect();
    let mut all = args.to_vec();
    all.extend(dirs.iter().cloned());
    let Ok(hv) = interpret(&h, BATCH, &all) else {
        return fail(src, "second order: the interpreter failed on the HVP".into());
    };
    let step = 1e-6;
    let grads_at = |sign: f64| {
        let mut moved = args.to_vec();
        for (id, d) in f.params().zip(&dirs) {
            for (x, v) in moved[id.index()].data.iter_mut().zip(&d.data) {
                *x += sign * step * v;
            }
        }
        interpret(&vg, BATCH, &moved)
    };
    let (Ok(up), Ok(down)) = (grads_at(1.0), grads_at(-1.0)) else {
        return fail(src, "second order: the interpreter failed near the point".into());
    };
    for name in &names {
        let g = format!("grad.{name}");
        let (at_h, at_vg) = (h.result(&g).expect("H v per param"), vg.result(&g).expect("a gradient per param"));
        let (u, d) = (&up[at_vg.value.index()].data, &down[at_vg.value.index()].data);
        for (i, &ad) in hv[at_h.value.index()].data.iter().enumerate() {
            let fd = (u[i] - d[i]) / (2.0 * step);
            if !within(ad - fd, 1e-5 * fd.abs().max(1.0)) {
                let point = describe(&vg, args);
                return fail(
                    src,
                    format!("(H v)_{name}[{i}] = {ad}, finite differences of the gradient {fd}\nat {point}"),
                );
            }
        }
    }
    t.hvp_programs += 1;
    if !seed.is_multiple_of(8) {
        return Ok(());
    }
    let native = match model.compile(&h, BATCH, OptLevel::O2) {
        Ok(n) => n,
        Err(e) => return fail(src, format!("second order, -O2: {e}")),
    };
    let spread = rounding_spread(&h, &all, &hv, seed);
    let (jit, _) = run_twice(&native, &h, &all);
    for (r, got) in h.results.iter().zip(&jit) {
        let (oracle, noise) = (&hv[r.value.index()].data, &spread[r.value.index()]);
        for (i, (&j, &o)) in got.iter().zip(oracle).enumerate() {
            if !within(f64::from(j) - o, 1e-4 * o.abs().max(1.0) + 4.0 * noise[i]) {
                return fail(src, format!("second order, -O2: JIT {}[{i}] = {j}, interpreter {o}", r.name));
            }
        }
    }
    t.hvp_jit += 1;
    Ok(())
}

/// How far float32 rounding can move each element of each value of `f` at `args`, found by
/// Monte Carlo arithmetic (Parker 1997): `f` is re-run in float64 three times with every
/// intermediate element multiplied by `1 + r`, `r` uniform in ±8 float32 ulps, and the largest
/// deviation from `vals` is kept. Where a computation cancels (`Σ w·v` of large terms with a
/// small sum), this is what float32 can be expected to miss by, and the JIT is allowed 4× it
/// on top of the plain `1e-5·max(1, |x|)`.
fn rounding_spread(f: &Function, args: &[Tensor], vals: &[Tensor], seed: u64) -> Vec<Vec<f64>> {
    let (g, deltas) = perturbed(f);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut spread: Vec<Vec<f64>> = vals.iter().map(|t| vec![0.0; t.len()]).collect();
    let u = 8.0 * f64::from(f32::EPSILON) / 2.0;
    for _ in 0..3 {
        let mut all = args.to_vec();
        for &(v, _) in &deltas {
            let n = vals[v.index()].len();
            let d: Vec<f64> = (0..n).map(|_| 1.0 + u * rng.random_range(-1.0..1.0)).collect();
            all.push(Tensor::new(vals[v.index()].shape.clone(), d));
        }
        let Ok(p) = interpret(&g, BATCH, &all) else { continue };
        for &(v, m) in &deltas {
            for (s, (&a, &b)) in spread[v.index()].iter_mut().zip(vals[v.index()].data.iter().zip(&p[m.index()].data)) {
                let d = (a - b).abs();
                *s = if d.is_nan() { f64::INFINITY } else { s.max(d) };
            }
        }
    }
    spread
}

/// `f` with every float value `v` that is not an argument read replaced, for its users and
/// the results, by `v ⊙ δ_v` (`mul`), `δ_v` a new argument of `v`'s type. Returns the new
/// function and, per perturbed value, (`v` in `f`, `v ⊙ δ_v` in the new function).
fn perturbed(f: &Function) -> (Function, Vec<(bpc::ir::Value, bpc::ir::Value)>) {
    use bpc::ir::{Output, Span, Value};
    let mut g = Function::new(f.name.clone());
    g.args = f.args.clone();
    let mut map: Vec<Value> = Vec::with_capacity(f.len());
    let mut deltas = Vec::new();
    for v in f.values() {
        let mut inst = f.inst(v).clone();
        inst.map_operands(|o| map[o.index()]);
        let ty = f.ty(v).clone();
        let nv = g.push_typed(inst, ty.clone(), Span::NONE);
        if ty.is_float() && !matches!(f.inst(v), Inst::Arg(_)) {
            let id = g.add_arg(format!("delta.{v}"), ArgKind::Input, ty.clone(), Span::NONE);
            let d = g.push_typed(Inst::Arg(id), ty.clone(), Span::NONE);
            let m = g.push_typed(Inst::Binary { op: BinaryOp::Mul, lhs: nv, rhs: d }, ty, Span::NONE);
            deltas.push((v, m));
            map.push(m);
        } else {
            map.push(nv);
        }
    }
    g.results = f.results.iter().map(|r| Output { value: map[r.value.index()], ..r.clone() }).collect();
    (g, deltas)
}

/// `|diff| ≤ tol`; false for NaN.
fn within(diff: f64, tol: f64) -> bool {
    diff.abs() <= tol
}

/// Random arguments: floats uniform in [-2, 2], class labels uniform.
fn sample(f: &Function, rng: &mut StdRng) -> Vec<Tensor> {
    f.args
        .iter()
        .map(|a| {
            let shape = a.ty.shape.sizes(BATCH);
            let n: usize = shape.iter().product();
            let data: Vec<f64> = match a.kind {
                ArgKind::Label { classes: Some(k) } => (0..n).map(|_| rng.random_range(0..k) as f64).collect(),
                // Exactly representable in float32, so the JIT sees the same point.
                _ => (0..n).map(|_| f64::from(rng.random_range(-2.0f32..2.0))).collect(),
            };
            Tensor::new(shape, data)
        })
        .collect()
}

fn well_scaled(vals: &[Tensor]) -> bool {
    vals.iter().flat_map(|t| &t.data).all(|x| x.is_finite() && x.abs() <= 1e4)
}

/// Whether `a` and `b` are exactly equal or clearly apart.
fn apart(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() > 1e-3 * a.abs().max(b.abs()).max(1.0)
}

/// Every decision of the forward program (relu, abs, max/min, comparisons, reducing max/min)
/// is exactly on or clearly away from its boundary.
fn smooth(f: &Function, vals: &[Tensor]) -> bool {
    f.values().all(|v| {
        let data = |x: bpc::ir::Value| &vals[x.index()].data;
        match f.inst(v) {
            Inst::Unary { op: UnaryOp::Relu | UnaryOp::Abs, arg } => data(*arg).iter().all(|&x| apart(x, 0.0)),
            Inst::Binary { op, lhs, rhs } if op.is_comparison() || matches!(op, BinaryOp::Max | BinaryOp::Min) => {
                data(*lhs).iter().zip(data(*rhs)).all(|(&a, &b)| apart(a, b))
            }
            Inst::Reduce { op: ReduceOp::Max | ReduceOp::Min, arg, axes } => {
                let sizes = f.shape(*arg).sizes(BATCH);
                let out = data(v);
                data(*arg).iter().enumerate().all(|(i, &x)| apart(x, out[reduced_index(&sizes, axes, i)]))
            }
            _ => true,
        }
    })
}

/// The index into the reduced tensor of element `i` of a tensor of `sizes` reduced over `axes`.
fn reduced_index(sizes: &[usize], axes: &[usize], mut i: usize) -> usize {
    let mut coords = vec![0; sizes.len()];
    for (k, &n) in sizes.iter().enumerate().rev() {
        coords[k] = i % n;
        i /= n;
    }
    let mut out = 0;
    for (k, &n) in sizes.iter().enumerate() {
        if !axes.contains(&k) {
            out = out * n + coords[k];
        }
    }
    out
}

fn describe(f: &Function, args: &[Tensor]) -> String {
    let parts: Vec<String> = f.args.iter().zip(args).map(|(a, t)| format!("{} = {:?}", a.name, t.data)).collect();
    parts.join(", ")
}
