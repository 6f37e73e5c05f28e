//! Whole programs from the conformance examples, through the frontend, the adjoint and the
//! optimizer: value-and-grad and train steps, JIT against the interpreter, and the
//! lecture's numbers.

mod common;

use bpc_autodiff::{Optimizer, UpdateRule, train_step, value_and_grad};
use bpc_codegen::{Arg, Options, compile, compile_with};
use bpc_front::Source;
use bpc_ir::{ArgKind, Function};
use bpc_opt::{OptLevel, optimize};
use common::*;

const EXAMPLES: [(&str, &str); 9] = [
    ("add_mul", include_str!("../../../examples/add_mul.bp")),
    ("sigmoid_neuron", include_str!("../../../examples/sigmoid_neuron.bp")),
    ("squared_error", include_str!("../../../examples/squared_error.bp")),
    ("logistic", include_str!("../../../examples/logistic.bp")),
    ("max_gate", include_str!("../../../examples/max_gate.bp")),
    ("iris", include_str!("../../../examples/iris.bp")),
    ("digits", include_str!("../../../examples/digits.bp")),
    ("mnist", include_str!("../../../examples/mnist.bp")),
    ("diabetes", include_str!("../../../examples/diabetes.bp")),
];

fn model(name: &str, text: &str) -> Function {
    bpc_front::compile(&Source::new(format!("{name}.bp"), text)).unwrap_or_else(|d| panic!("{name}: {d:?}"))
}

/// Every float argument: what `bpc eval` differentiates with respect to.
fn float_args(f: &Function) -> Vec<String> {
    f.args.iter().filter(|a| !matches!(a.kind, ArgKind::Label { classes: Some(_) })).map(|a| a.name.clone()).collect()
}

/// Unit-scale values keep the MLPs' logits moderate, as trained weights do.
fn sample(name: &str) -> impl Fn(&mut rand::rngs::StdRng) -> f32 {
    if name == "mnist" { uniform(-0.1, 0.1) } else { uniform(-1.0, 1.0) }
}

/// The value-and-grad of `f` with respect to every float argument, then (if `f` has params)
/// its train step under each of `optimizers`, named for messages.
fn functions(f: &Function, optimizers: &[(&'static str, Optimizer)]) -> Vec<(&'static str, Function)> {
    let wrt = float_args(f);
    let wrt: Vec<&str> = wrt.iter().map(String::as_str).collect();
    let mut funcs = vec![("value_and_grad", value_and_grad(f, &wrt).unwrap())];
    if f.params().next().is_some() {
        funcs.extend(optimizers.iter().map(|&(what, o)| (what, train_step(f, o).unwrap())));
    }
    funcs
}

/// Random arguments for `step` as in training: floats from `sample(name)`, hyperparameters
/// in (0.05, 0.95) and optimizer state in (0, 0.1) (Adam's second moment is a mean of
/// squares).
fn training_args(step: &Function, batch: usize, seed: u64, name: &str) -> Vec<Data> {
    let mut args = random_args(step, batch, seed, &sample(name));
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed + 1);
    for (a, d) in step.args.iter().zip(&mut args) {
        let range = match a.kind {
            ArgKind::Hyper => uniform(0.05, 0.95),
            ArgKind::State => uniform(0.0, 0.1),
            _ => continue,
        };
        *d = Data::F32((0..a.ty.shape.len(batch)).map(|_| range(&mut rng)).collect());
    }
    args
}

#[test]
fn value_and_grad_of_every_example() {
    for (name, text) in EXAMPLES {
        let f = model(name, text);
        let wrt = float_args(&f);
        let wrt: Vec<&str> = wrt.iter().map(String::as_str).collect();
        let vg = value_and_grad(&f, &wrt).unwrap();
        for batch in [1, 7] {
            check_with(&vg, batch, 1, F32_TOL, &sample(name));
            check_with(&optimize(&vg, OptLevel::O2), batch, 2, F32_TOL, &sample(name));
        }
    }
}

#[test]
fn train_step_of_every_example() {
    for (name, text) in EXAMPLES {
        let f = model(name, text);
        if f.params().next().is_none() {
            continue;
        }
        let step = train_step(&f, Optimizer::Sgd).unwrap();
        for batch in [1, 7, 128] {
            check_with(&step, batch, 3, F32_TOL, &sample(name));
            check_with(&optimize(&step, OptLevel::O2), batch, 4, F32_TOL, &sample(name));
        }
    }
}

/// `-O0` (no passes) and `-O2` give the same loss, gradients and updated params on the same
/// arguments, to float32 rounding, for every example's value-and-grad and train step.
#[test]
fn o0_and_o2_agree_on_every_example() {
    for (name, text) in EXAMPLES {
        let f = model(name, text);
        for (what, g) in &functions(&f, &[("train step", Optimizer::Sgd)]) {
            for batch in [1, 7, 128] {
                let args = random_args(g, batch, 5, &sample(name));
                let run = |level| {
                    let o = optimize(g, level);
                    run_jit(&compile(&o, batch).unwrap(), &o, &args)
                };
                let (o0, o2) = (run(OptLevel::O0), run(OptLevel::O2));
                for (r, (a, b)) in g.results.iter().zip(o0.iter().zip(&o2)) {
                    let a: Vec<f64> = a.iter().map(|&x| x as f64).collect();
                    assert_close(&format!("{name} {what} (batch {batch}) {}: -O2 vs -O0", r.name), b, &a, F32_TOL);
                }
            }
        }
    }
}

/// The train step of every optimizer (with weight decay, and without for SGD and Adam) at
/// `-O2` agrees with the interpreter and with `-O0`: updated params and optimizer state
/// included, on [`training_args`].
#[test]
fn every_optimizer_at_o0_and_o2() {
    let rules = [
        UpdateRule { optimizer: Optimizer::Sgd, weight_decay: true },
        UpdateRule::from(Optimizer::Momentum { nesterov: false }),
        UpdateRule { optimizer: Optimizer::Momentum { nesterov: true }, weight_decay: true },
        UpdateRule::from(Optimizer::Adam),
        UpdateRule { optimizer: Optimizer::AdamW, weight_decay: true },
    ];
    for (name, text) in [EXAMPLES[5], EXAMPLES[7], EXAMPLES[8]] {
        let f = model(name, text);
        for rule in rules {
            let step = train_step(&f, rule).unwrap();
            for batch in [1, 7] {
                let args = training_args(&step, batch, 9, name);
                let what = format!("{name} {rule:?} (batch {batch})");
                let want = run_interp(&step, batch, &args);
                let run = |level| {
                    let o = optimize(&step, level);
                    run_jit(&compile(&o, batch).unwrap(), &o, &args)
                };
                let (o0, o2) = (run(OptLevel::O0), run(OptLevel::O2));
                for (r, ((a, b), w)) in step.results.iter().zip(o0.iter().zip(&o2).zip(&want)) {
                    let a: Vec<f64> = a.iter().map(|&x| x as f64).collect();
                    assert_close(&format!("{what} {}: -O2 vs -O0", r.name), b, &a, F32_TOL);
                    assert_close(&format!("{what} {}: -O2 vs interpreter", r.name), b, w, F32_TOL);
                }
            }
        }
    }
}

/// Loop kernels split over threads compute exactly what they compute whole: every example's
/// value-and-grad, SGD and Adam steps at `-O0` and `-O2`, batch 37 (blocks of unequal length),
/// on 2 and 3 threads with every kernel that is not inlined split (maps with broadcasts,
/// in-place updates, sums over the batch cut by columns, tanh), bit for bit against the same
/// threads with none split. The products' splits are the same on both sides.
#[test]
fn split_kernels_match_whole_kernels_bit_for_bit() {
    let mut split_somewhere = 0;
    for (name, text) in EXAMPLES {
        let f = model(name, text);
        for (what, g) in &functions(&f, &[("SGD step", Optimizer::Sgd), ("Adam step", Optimizer::Adam)]) {
            for level in [OptLevel::O0, OptLevel::O2] {
                let o = optimize(g, level);
                let args = training_args(&o, 37, 11, name);
                for threads in [2, 3] {
                    let run = |parallel_kernel_min| {
                        let c = compile_with(&o, 37, &Options { threads, parallel_kernel_min, ..Options::default() })
                            .unwrap();
                        (c.stats().parallel_kernels, run_jit(&c, &o, &args))
                    };
                    let (none, whole) = run(usize::MAX);
                    let (split, parts) = run(1);
                    assert_eq!(none, 0);
                    split_somewhere += split;
                    assert_same_bits(&o, &whole, &parts, &format!("{name} {what} {level:?}, {threads} threads"));
                }
            }
        }
    }
    assert!(split_somewhere > 50, "only {split_somewhere} kernels were split");
}

/// A dot product computed a row at a time by the AVX-512 call is the inlined one bit for bit:
/// every example's value-and-grad, SGD and Adam steps at `-O2`, batches 1 and 37, whole and
/// with every kernel split over 3 threads, with the call taken for every row
/// (`row_product_min` 1) against never. On a CPU without AVX-512 both sides inline the dot.
#[test]
fn row_products_match_inlined_dots_bit_for_bit() {
    let mut calls = 0;
    for (name, text) in EXAMPLES {
        let f = model(name, text);
        for (what, g) in &functions(&f, &[("SGD step", Optimizer::Sgd), ("Adam step", Optimizer::Adam)]) {
            let o = optimize(g, OptLevel::O2);
            for batch in [1, 37] {
                let args = training_args(&o, batch, 5, name);
                for (threads, parallel_kernel_min) in [(0, usize::MAX), (3, 1)] {
                    let run = |row_product_min| {
                        let opts = Options { threads, parallel_kernel_min, row_product_min, ..Options::default() };
                        let c = compile_with(&o, batch, &opts).unwrap();
                        (c.stats().row_products, run_jit(&c, &o, &args))
                    };
                    let (none, inlined) = run(usize::MAX);
                    let (some, rows) = run(1);
                    assert_eq!(none, 0);
                    calls += some;
                    assert_same_bits(&o, &inlined, &rows, &format!("{name} {what}, batch {batch}, {threads} threads"));
                }
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
        assert!(calls >= 40, "only {calls} row products");
    }
}

/// The lecture's sigmoid neuron at w0=2, x0=-1, w1=-3, x1=-2, w2=-3.
#[test]
fn the_lecture_numbers() {
    let f = model("sigmoid_neuron", EXAMPLES[1].1);
    let vg = value_and_grad(&f, &["w0", "x0", "w1", "x1", "w2"]).unwrap();
    let c = compile(&vg, 1).unwrap();
    let vals = [2.0f32, -1.0, -3.0, -2.0, -3.0];
    let mut args: Vec<Arg> = vals.iter().map(std::slice::from_ref).map(Arg::F32).collect();
    let mut out = [[0.0f32]; 6];
    let mut res: Vec<&mut [f32]> = out.iter_mut().map(|o| o.as_mut_slice()).collect();
    c.run(&mut c.workspace(), &mut args, &mut res).unwrap();
    let want = [0.731_058_6, -0.196_611_9, 0.393_223_9, -0.393_223_9, -0.589_835_8, 0.196_611_9];
    for (got, want) in out.iter().zip(want) {
        assert!((got[0] - want).abs() < 1e-6, "{out:?}");
    }
}

/// Softmax cross-entropy through the fused rows kernel (the loss and its gradient
/// `(softmax z − onehot)/B` in one kernel, the softmax dividing the stored exponentials by
/// their sum; inlined into the entry at batch 1)
/// at 3, 10, 17 and 100 classes (from 16 the sums unroll by 4), batch 1, 7 and 33 (rows taken
/// two at a time, and a last one alone), on rows of ordinary logits and rows holding one
/// -inf, only -inf, one +inf, one NaN, ±1e30 and ties at -1e30: the interpreter's NaN and
/// infinities, and its values to float32 rounding elsewhere.
#[test]
fn fused_softmax_cross_entropy_at_extreme_logits() {
    for classes in [3, 10, 17, 100] {
        let text = format!("model edge\ninput z[{classes}]\nlabel y : class({classes})\nloss cross_entropy(z, y)\n");
        let f = model("edge", &text);
        let vg = optimize(&value_and_grad(&f, &["z"]).unwrap(), OptLevel::O2);
        for batch in [1, 7, 33] {
            let mut args = random_args(&vg, batch, classes as u64, &uniform(-10.0, 10.0));
            let z = vg.args.iter().position(|a| a.name == "z").unwrap();
            let Data::F32(z) = &mut args[z] else { panic!("z is f32") };
            for (r, row) in z.chunks_mut(classes).enumerate() {
                let at = (r * 7 + 3) % classes;
                match r % 7 {
                    1 => row[at] = f32::NEG_INFINITY,
                    2 => row.fill(f32::NEG_INFINITY),
                    3 => row[at] = f32::INFINITY,
                    4 => row[at] = f32::NAN,
                    5 => row.iter_mut().for_each(|x| *x *= 1e29),
                    6 => row.fill(-1e30),
                    _ => {}
                }
            }
            let c = compile(&vg, batch).unwrap();
            let got = run_jit(&c, &vg, &args);
            let want = run_interp(&vg, batch, &args);
            for (r, (g, w)) in vg.results.iter().zip(got.iter().zip(&want)) {
                assert_close(&format!("{} at {classes} classes, batch {batch}", r.name), g, w, 1e-5);
            }
        }
    }
}

/// A layer written with its weight stored transposed (`transpose(WT) @ x`) and a penalty
/// on `transpose(A) @ A`: at `-O2` no transpose is left (the forward reads `WT` through the
/// product's flags, the adjoint's `transpose(dHᵀ·x)` is computed as `xᵀ·dH`, and the SGD
/// update of `WT` folds into that product), and value-and-grad and the train steps agree
/// with the interpreter.
#[test]
fn transposed_weights_fold_into_the_products() {
    let f = model(
        "transposed",
        "model transposed\ninput x[6]\nlabel y : class(3)\nparam WT[6, 5] ~ normal(0, 0.5)\nparam b1[5] = 0\n\
         param W2[3, 5] ~ normal(0, 0.5)\nparam A[4, 5] ~ normal(0, 0.5)\nh = tanh(transpose(WT) @ x + b1)\n\
         f = W2 @ h\nloss cross_entropy(f, y) + 0.01 * sum(transpose(A) @ A)\n",
    );
    let sgd = optimize(&train_step(&f, Optimizer::Sgd).unwrap(), OptLevel::O2);
    let text = sgd.to_string();
    assert!(
        sgd.values().all(|v| !matches!(sgd.inst(v), bpc_ir::Inst::Transpose { .. })),
        "a transpose is left:\n{text}"
    );
    let [gemm] =
        &sgd.kernels.as_ref().unwrap().iter().filter(|k| k.kind == bpc_ir::KernelKind::Gemm).collect::<Vec<_>>()[..]
    else {
        panic!("one GEMM kernel, the update of WT:\n{text}")
    };
    let x = sgd.values().find(|&v| sgd.inst(v) == &bpc_ir::Inst::Arg(bpc_ir::ArgId(0))).unwrap();
    assert!(
        matches!(*sgd.inst(gemm.values[0]), bpc_ir::Inst::MatMul { lhs, ta: true, tb: false, .. } if lhs == x),
        "{text}"
    );
    let wt = sgd.results.iter().find(|r| r.update.is_some_and(|a| sgd.arg(a).name == "WT")).unwrap();
    assert_eq!(Some(&wt.value), gemm.values.last(), "the update of WT is the GEMM's epilogue:\n{text}");
    let momentum = UpdateRule::from(Optimizer::Momentum { nesterov: false });
    for (what, g) in
        functions(&f, &[("sgd", Optimizer::Sgd)]).into_iter().chain([("momentum", train_step(&f, momentum).unwrap())])
    {
        for batch in [1, 7, 128] {
            let args = training_args(&g, batch, 11, "transposed");
            let want = run_interp(&g, batch, &args);
            let o = optimize(&g, OptLevel::O2);
            let got = run_jit(&compile(&o, batch).unwrap(), &o, &args);
            for (r, (b, w)) in g.results.iter().zip(got.iter().zip(&want)) {
                assert_close(&format!("{what} (batch {batch}) {}: -O2 vs interpreter", r.name), b, w, F32_TOL);
            }
        }
    }
}

/// Data-parallel sharding (`bpc_opt::shard_for_batch`, `compile_sharded`): every example's
/// value-and-grad and its train step under three optimizers, a model with a shared penalty
/// and a transposed layer, and one with means over an example's own axes, split into 2 and 3 shards of the minibatch, agree with
/// the interpreter on the whole minibatch: batched results (outputs, gradients with respect
/// to inputs) row for row, the loss, gradients, updated params and optimizer state.
#[test]
fn data_parallel_shards_match_the_interpreter() {
    let rules = [
        UpdateRule::from(Optimizer::Sgd),
        UpdateRule { optimizer: Optimizer::Momentum { nesterov: true }, weight_decay: true },
        UpdateRule::from(Optimizer::Adam),
    ];
    let penalty = "model penalty\ninput x[6]\nlabel y : class(3)\nparam WT[6, 5] ~ normal(0, 0.5)\nparam b1[5] = 0\n\
                   param W2[3, 5] ~ normal(0, 0.5)\nh = relu(transpose(WT) @ x + b1)\nf = W2 @ h\n\
                   loss cross_entropy(f, y) + 0.01 * sum(W2 * W2)\noutput softmax(f)\n";
    // Means over an example's own axes (`mse` of a vector, `mean(h, axis=1)`, a shared mean
    // read by every example) stay means in the shard: only the sums over the minibatch
    // become partial sums.
    let means = "model means\ninput x[3, 4]\nlabel y[2]\nparam W[2, 3] ~ normal(0, 0.5)\nparam c[4] ~ normal(0, 0.5)\n\
                 h = tanh(W @ x)\nm = mean(h, axis=1)\nloss mse(m + mean(c), y) + 0.1 * mean(h^2)\noutput m - mean(m)\n";
    for (name, text) in EXAMPLES.into_iter().chain([("penalty", penalty), ("means", means)]) {
        let f = model(name, text);
        let wrt = float_args(&f);
        let wrt: Vec<&str> = wrt.iter().map(String::as_str).collect();
        let mut funcs = vec![("value_and_grad".to_string(), value_and_grad(&f, &wrt).unwrap())];
        if f.params().next().is_some() {
            funcs.extend(rules.iter().map(|&r| (format!("{r:?}"), train_step(&f, r).unwrap())));
        }
        for (what, g) in &funcs {
            for (batch, shards) in [(2, 2), (6, 2), (6, 3), (34, 2)] {
                let s = bpc_opt::shard_for_batch(g, OptLevel::O2, batch, shards)
                    .unwrap_or_else(|| panic!("{name} {what}: every program shards"));
                let c = bpc_codegen::compile_sharded(g, &s.shard, &s.combine, s.shards, s.batch, &Options::default())
                    .unwrap_or_else(|e| panic!("{name} {what}: {e}"));
                assert_eq!(c.stats().shards, shards);
                let args = training_args(g, batch, 17, name);
                let want = run_interp(g, batch, &args);
                let got = run_jit(&c, g, &args);
                for (r, (b, w)) in g.results.iter().zip(got.iter().zip(&want)) {
                    let m = format!("{name} {what} (batch {batch}, {shards} shards) {}", r.name);
                    assert_close(&m, b, w, F32_TOL);
                }
            }
        }
    }
}

/// A function that mixes examples other than by a sum over the minibatch (a max over it,
/// which no program can write) does not shard; nor does a minibatch that does not cut into
/// equal shards; a split compiled for another shard count is refused.
#[test]
fn sharding_refuses_what_is_not_a_sum_over_examples() {
    let max = bpc_ir::read(
        "function m {\n  input x: f32[B,3]\n  v0: f32[B,3] = arg x\n  v1: f32[3] = reduce_max v0, axes=[0]\n  \
         result loss = v1\n}\n",
    )
    .unwrap();
    assert!(bpc_opt::shard_for_batch(&max, OptLevel::O2, 4, 2).is_none());
    let step = train_step(&model("mnist", EXAMPLES[7].1), Optimizer::Sgd).unwrap();
    assert!(bpc_opt::shard_for_batch(&step, OptLevel::O2, 5, 2).is_none());
    assert!(bpc_opt::shard_for_batch(&step, OptLevel::O0, 4, 2).is_none());
    let s = bpc_opt::shard_for_batch(&step, OptLevel::O1, 4, 2).unwrap();
    let e = bpc_codegen::compile_sharded(&step, &s.shard, &s.combine, 4, 8, &Options::default()).unwrap_err();
    assert!(e.0.contains("partial sums of 4 shards"), "{e}");
}
