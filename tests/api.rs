//! The embedding API (`bpc::compile`, `Program`, native functions, `Params`, `Trainer`):
//! the lecture's numbers, shape errors, threads, allocation per call, and the examples'
//! code run as it is (`examples/embed_*.rs` are included, not copied).

use std::path::{Path, PathBuf};

use bpc::{ErrorKind, Feed, Label, Labels, Options, Program, Stage, Standardizer, TrainConfig, Trainer};

#[path = "../examples/embed_grad.rs"]
#[allow(dead_code)]
mod embed_grad;
#[path = "../examples/embed_train.rs"]
#[allow(dead_code)]
mod embed_train;

#[path = "support/alloc.rs"]
mod alloc;
use alloc::allocs;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn iris() -> Program {
    bpc::compile_file(root().join("examples/iris.bp"), &Options::default()).unwrap()
}

/// Eight iris-shaped examples: `x` is [8, 4], `y` is 8 classes.
fn iris_batch() -> (Vec<f32>, Vec<i32>) {
    ((0..32).map(|i| (i as f32 * 0.37).sin()).collect(), (0..8).map(|i| i % 3).collect())
}

#[test]
fn the_sigmoid_neuron_gives_the_lectures_gradients() {
    let p = bpc::compile_file(root().join("examples/sigmoid_neuron.bp"), &Options::default()).unwrap();
    let names: Vec<&str> = p.inputs().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["w0", "x0", "w1", "x1", "w2"]);
    let vg = p.value_and_grad(&names, 1).unwrap();
    let mut ws = vg.workspace();
    let mut g = vec![0.0; vg.grad_len()];
    let (w0, x0, w1, x1, w2) = ([2.0], [-1.0], [-3.0], [-2.0], [-3.0]);
    let loss = vg.call(&mut ws, &[], &Feed::new(&[&w0, &x0, &w1, &x1, &w2]), &mut g).unwrap();
    assert!((loss - 0.731_058_6).abs() < 1e-6, "{loss}");
    let want = [-0.196_611_94, 0.393_223_88, -0.393_223_88, -0.589_835_8, 0.196_611_94];
    for (a, b) in g.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{g:?}");
    }
    let layout: Vec<(&str, std::ops::Range<usize>)> =
        vg.grads().iter().map(|(t, r)| (t.name.as_str(), r.clone())).collect();
    assert_eq!(layout[4], ("w2", 4..5));
}

#[test]
fn a_program_describes_its_declarations_and_prints_every_stage() {
    let p = iris();
    assert_eq!(p.name(), "iris");
    let x = &p.inputs()[0];
    assert_eq!((x.name.as_str(), x.shape.as_slice(), x.batched, x.len(16)), ("x", &[4][..], true, 64));
    assert_eq!(p.labels()[0].kind, bpc::LabelKind::Class(3));
    let params: Vec<(String, Vec<usize>)> = p.params().into_iter().map(|t| (t.name, t.shape)).collect();
    assert_eq!(params[0], ("W1".to_string(), vec![16, 4]));
    assert_eq!(params[3], ("b2".to_string(), vec![3]));
    assert_eq!(p.param_len(), 16 * 4 + 16 + 3 * 16 + 3);
    assert!(p.emit(Stage::Ast).unwrap().contains("cross_entropy"));
    assert!(p.emit(Stage::Ir).unwrap().starts_with("function iris {"));
    assert!(p.emit(Stage::Grad).unwrap().contains("result grad.W1"));
    assert!(p.emit(Stage::Opt).unwrap().contains("kernel"));
    let vg = p.value_and_grad(&p.param_names(), 8).unwrap();
    assert!(vg.function().to_string().contains("grad.b2"));
    assert_eq!(vg.batch(), 8);
}

#[test]
fn program_errors_carry_diagnostics_rendered_on_demand() {
    let e = bpc::compile("input x\nloss x + y\n", &Options::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Program);
    assert_eq!(e.diagnostics().len(), 1);
    assert!(e.message().contains('y'), "{}", e.message());
    let text = e.to_string();
    assert!(text.starts_with("error:") && text.contains("model.bp:2:10"), "{text}");
    // A class label cannot be differentiated: the error points at its declaration.
    let e = iris().value_and_grad(&["y"], 4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Program);
    assert!(e.to_string().contains("iris.bp:4"), "{e}");
    let e = bpc::compile_file("/nonexistent/m.bp", &Options::default()).unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string().as_str()),
        (ErrorKind::Io, "/nonexistent/m.bp: cannot read: No such file or directory (os error 2)")
    );
    let e = iris().train_step(0).unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string().as_str()),
        (ErrorKind::Call, "iris: the minibatch size must be at least 1, got 0")
    );
}

/// A call's outcome: the error's kind and text.
type Outcome = Result<(), (ErrorKind, String)>;

#[test]
fn bad_buffers_are_errors_before_any_code_runs() {
    let p = iris();
    let params = p.init_params(0).unwrap();
    let vg = p.value_and_grad(&p.param_names(), 8).unwrap();
    let mut ws = vg.workspace();
    let (x, y) = iris_batch();
    let yf = vec![0.0f32; 8];
    let mut g = vec![0.0; vg.grad_len()];
    let labels = [Label::Class(&y)];
    let call = |ws: &mut bpc::Workspace, params: &[f32], feed: &Feed<'_>, g: &mut [f32]| {
        vg.call(ws, params, feed, g).map(|_| ()).map_err(|e| (e.kind(), e.to_string()))
    };
    let ok = Feed { inputs: &[&x], labels: &labels };
    assert!(call(&mut ws, params.as_slice(), &ok, &mut g).is_ok());
    let cases: Vec<(Outcome, &str)> = vec![
        (
            call(&mut ws, &params.as_slice()[1..], &ok, &mut g),
            "the param slab has 130 floats, the program's params have 131",
        ),
        (
            call(&mut ws, params.as_slice(), &Feed::with_labels(&[&x[..28]], &labels), &mut g),
            "argument x has 28 elements, expected 32 (minibatch 8 × x[4])",
        ),
        (
            call(&mut ws, params.as_slice(), &Feed::with_labels(&[&x, &x], &labels), &mut g),
            "expected 1 input buffer (x), got 2",
        ),
        (call(&mut ws, params.as_slice(), &Feed::new(&[&x]), &mut g), "expected 1 label buffer (y), got 0"),
        (
            call(&mut ws, params.as_slice(), &Feed::with_labels(&[&x[..16]], &[Label::Class(&y[..4])]), &mut g),
            "argument x has 16 elements, expected 32 (minibatch 8 × x[4]); 16 elements are 4 examples: \
             compile a function for minibatch size 4",
        ),
        (
            call(&mut ws, params.as_slice(), &Feed::with_labels(&[&x], &[Label::Class(&y[..7])]), &mut g),
            "argument y has 7 elements, expected 8 (minibatch 8 × 1 per example); 7 elements are 7 examples",
        ),
        (
            call(&mut ws, params.as_slice(), &Feed::with_labels(&[&x], &[Label::Real(&yf)]), &mut g),
            "label y is a class label: pass Label::Class",
        ),
        (
            call(&mut ws, params.as_slice(), &Feed::with_labels(&[&x], &labels[..]), &mut g[1..]),
            "the output buffer has 130 floats, expected 131",
        ),
        (
            call(&mut p.value_and_grad(&["x"], 8).unwrap().workspace(), params.as_slice(), &ok, &mut g),
            "the workspace was made by another native function",
        ),
    ];
    for (got, want) in cases {
        let (kind, text) = got.unwrap_err();
        assert_eq!(kind, ErrorKind::Call);
        assert!(text.contains(want), "{text:?} should contain {want:?}");
    }
}

#[test]
fn class_labels_outside_0_to_k_are_refused_and_leave_the_params_as_they_were() {
    let p = iris();
    let step = p.train_step(8).unwrap();
    let mut ws = step.workspace();
    let (x, y) = iris_batch();
    let mut params = p.init_params(0).unwrap();
    let before = params.clone();
    for (i, bad) in [(3, 3), (7, 7), (0, -1), (5, i32::MIN)] {
        let mut yb = y.clone();
        yb[i] = bad;
        let labels = [Label::Class(&yb)];
        let e = step.call(&mut ws, params.as_mut_slice(), &Feed::with_labels(&[&x], &labels), 0.1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Call);
        let want = format!("iris: label y[{i}] is {bad}, not a class of `label y : class(3)` (0 to 2)");
        assert!(e.to_string().starts_with(&want), "{e}");
        assert_eq!(params, before, "a refused call updates nothing");
    }
    // The same check in value-and-grad, and a valid minibatch still trains.
    let vg = p.value_and_grad(&p.param_names(), 8).unwrap();
    let mut g = vec![0.0; vg.grad_len()];
    let yb: Vec<i32> = y.iter().map(|v| v + 1).collect(); // 3 where y is 2
    let e = vg.call(&mut vg.workspace(), params.as_slice(), &Feed::with_labels(&[&x], &[Label::Class(&yb)]), &mut g);
    assert!(e.unwrap_err().to_string().contains("label y[2] is 3"));
    let loss = step.call(&mut ws, params.as_mut_slice(), &Feed::with_labels(&[&x], &[Label::Class(&y)]), 0.1).unwrap();
    assert!(loss.is_finite() && params != before && params.as_slice().iter().all(|v| v.is_finite()));
}

#[test]
fn the_trainer_refuses_params_of_another_program_and_a_minibatch_of_0() {
    let p = iris();
    let train = p.load_csv(root().join("examples/data/iris_train.csv")).unwrap();
    let other = bpc::compile(
        "input x[4]\nlabel y : class(3)\nparam W1[3, 4] = 0\nparam c[3] = 0\nloss cross_entropy(W1 @ x + c, y)\n",
        &Options::default(),
    )
    .unwrap();
    let mut params = other.init_params(0).unwrap();
    let mut trainer = Trainer::new(&p, TrainConfig { epochs: 1, ..TrainConfig::default() }).unwrap();
    let e = trainer.fit(&mut params, &train, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Call);
    assert_eq!(
        e.to_string(),
        "iris: the params do not match this program: W1 is [16, 4] in the program, [3, 4] in the params; \
         b1[16] is missing from the params; W2[3, 16] is missing from the params; b2[3] is missing from the params; \
         the params have c, which the program does not declare"
    );
    assert_eq!(trainer.evaluate(&params, &train).unwrap_err().kind(), ErrorKind::Call);
    trainer.config_mut().batch = 0;
    let mut params = p.init_params(0).unwrap();
    let e = trainer.fit(&mut params, &train, None).unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string().as_str()),
        (ErrorKind::Call, "iris: the minibatch size (TrainConfig::batch) must be at least 1, got 0")
    );
}

#[test]
fn native_functions_agree_with_each_other() {
    let p = iris();
    let mut params = p.init_params(7).unwrap();
    let (x, y) = iris_batch();
    let labels = [Label::Class(&y)];
    let feed = Feed { inputs: &[&x], labels: &labels };
    let vg = p.value_and_grad(&p.param_names(), 8).unwrap();
    let mut g = params.zeros_like();
    let loss = vg.call(&mut vg.workspace(), params.as_slice(), &feed, g.as_mut_slice()).unwrap();
    // The forward output is softmax probabilities; it needs no labels.
    let fwd = p.forward(8).unwrap();
    assert_eq!((fwd.output().name.as_str(), fwd.output_len()), ("output", 24));
    let mut probs = vec![0.0; 24];
    fwd.call(&mut fwd.workspace(), params.as_slice(), &Feed::new(&[&x]), &mut probs).unwrap();
    let nll: f32 = probs.chunks(3).zip(&y).map(|(p, &c)| -p[c as usize].ln()).sum::<f32>() / 8.0;
    assert!((nll - loss).abs() < 1e-5, "{nll} vs {loss}");
    // One SGD step is p - lr·g.
    let step = p.train_step(8).unwrap();
    let before = params.clone();
    let l = step.call(&mut step.workspace(), params.as_mut_slice(), &feed, 0.5).unwrap();
    assert!((l - loss).abs() < 1e-6);
    for ((a, b), d) in params.as_slice().iter().zip(before.as_slice()).zip(g.as_slice()) {
        assert!((a - (b - 0.5 * d)).abs() < 1e-5);
    }
}

/// With 2 threads and 1024 examples, the train step, value-and-grad, Hessian–vector product
/// and forward run as two data-parallel shards of 512 rows; they agree with the same
/// functions on one thread.
#[test]
fn data_parallel_functions_agree_with_one_thread() {
    let program = |threads| {
        bpc::compile_file(root().join("examples/iris.bp"), &Options { threads, ..Options::default() }).unwrap()
    };
    let (one, two) = (program(1), program(2));
    let batch = 1024;
    let x: Vec<f32> = (0..batch * 4).map(|i| (i as f32 * 0.37).sin()).collect();
    let y: Vec<i32> = (0..batch as i32).map(|i| i % 3).collect();
    let labels = [Label::Class(&y)];
    let feed = Feed { inputs: &[&x], labels: &labels };
    let params = one.init_params(7).unwrap();
    let (vg1, vg2) = (
        one.value_and_grad(&one.param_names(), batch).unwrap(),
        two.value_and_grad(&two.param_names(), batch).unwrap(),
    );
    assert_eq!((vg1.stats().shards, vg2.stats().shards), (0, 2));
    let (mut g1, mut g2) = (params.zeros_like(), params.zeros_like());
    let l1 = vg1.call(&mut vg1.workspace(), params.as_slice(), &feed, g1.as_mut_slice()).unwrap();
    let l2 = vg2.call(&mut vg2.workspace(), params.as_slice(), &feed, g2.as_mut_slice()).unwrap();
    assert!((l1 - l2).abs() <= 1e-6 * l1.abs(), "{l1} vs {l2}");
    for (a, b) in g1.as_slice().iter().zip(g2.as_slice()) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1e-2), "{a} vs {b}");
    }
    let (f1, f2) = (one.forward(batch).unwrap(), two.forward(batch).unwrap());
    let (mut o1, mut o2) = (vec![0.0; 3 * batch], vec![0.0; 3 * batch]);
    f1.call(&mut f1.workspace(), params.as_slice(), &Feed::new(&[&x]), &mut o1).unwrap();
    f2.call(&mut f2.workspace(), params.as_slice(), &Feed::new(&[&x]), &mut o2).unwrap();
    assert_eq!(o1, o2, "a forward without reductions over the minibatch gives the same bits");
    let (h1, h2) = (one.hvp(batch).unwrap(), two.hvp(batch).unwrap());
    let v: Vec<f32> = (0..params.len()).map(|i| (i as f32 * 0.61).cos()).collect();
    let (mut hv1, mut hv2) = (params.zeros_like(), params.zeros_like());
    let d1 = h1.call(&mut h1.workspace(), params.as_slice(), &feed, &v, hv1.as_mut_slice()).unwrap();
    let d2 = h2.call(&mut h2.workspace(), params.as_slice(), &feed, &v, hv2.as_mut_slice()).unwrap();
    assert_eq!(h2.stats().shards, 2);
    assert!((d1 - d2).abs() <= 1e-5 * d1.abs().max(1e-2), "{d1} vs {d2}");
    for (a, b) in hv1.as_slice().iter().zip(hv2.as_slice()) {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1e-2), "{a} vs {b}");
    }
    let (s1, s2) = (one.train_step(batch).unwrap(), two.train_step(batch).unwrap());
    let (mut p1, mut p2) = (params.clone(), params.clone());
    for _ in 0..3 {
        let l1 = s1.call(&mut s1.workspace(), p1.as_mut_slice(), &feed, 0.5).unwrap();
        let l2 = s2.call(&mut s2.workspace(), p2.as_mut_slice(), &feed, 0.5).unwrap();
        assert!((l1 - l2).abs() <= 1e-5 * l1.abs(), "{l1} vs {l2}");
    }
    for (a, b) in p1.as_slice().iter().zip(p2.as_slice()) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1e-2), "{a} vs {b}");
    }
}

#[test]
fn hvp_of_a_squared_dot_product() {
    // L = (w·x)²: H = 2 x xᵀ, so H·[1, 0] = [2, 4] at x = [1, 2], and ⟨∇L, v⟩ = 2 (w·x) x₀.
    let p = bpc::compile("input x[2]\nparam w[2] = 0\nloss (w @ x)^2\n", &Options::default()).unwrap();
    let h = p.hvp(1).unwrap();
    let mut out = [0.0; 2];
    let d = h.call(&mut h.workspace(), &[0.5, -1.0], &Feed::new(&[&[1.0, 2.0]]), &[1.0, 0.0], &mut out).unwrap();
    assert_eq!((out, d), ([2.0, 4.0], 2.0 * -1.5));
    let e = h.call(&mut h.workspace(), &[0.5, -1.0], &Feed::new(&[&[1.0, 2.0]]), &[1.0], &mut out).unwrap_err();
    assert!(e.to_string().contains("the direction has 1 floats"), "{e}");
}

#[test]
fn params_round_trip_through_safetensors() {
    let p = iris();
    let mut params = p.init_params(3).unwrap();
    assert_eq!(params.names().collect::<Vec<_>>(), ["W1", "b1", "W2", "b2"]);
    assert_eq!((params.shape("W2"), params.range("b1")), (Some(&[3, 16][..]), Some(64..80)));
    assert_eq!(params.get("b1").unwrap(), &[0.0; 16]);
    params.get_mut("b2").unwrap()[1] = 4.5;
    let dir = std::env::temp_dir().join(format!("bpc-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file: PathBuf = dir.join("iris.safetensors");
    params.save(&file).unwrap();
    assert_eq!(p.load_params(&file).unwrap(), params);
    // Another program's params do not fit.
    let other = bpc::compile("input x[2]\nparam w[2] = 0\nloss (w @ x)^2\n", &Options::default()).unwrap();
    let e = other.load_params(&file).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Checkpoint);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_native_function_called_from_four_threads_gives_identical_results() {
    let p = iris();
    let params = p.init_params(1).unwrap();
    let vg = p.value_and_grad(&p.param_names(), 8).unwrap();
    let (x, y) = iris_batch();
    let labels = [Label::Class(&y)];
    let feed = Feed { inputs: &[&x], labels: &labels };
    let run = || {
        let mut ws = vg.workspace();
        let mut g = vec![0.0; vg.grad_len()];
        let mut last = (0.0, Vec::new());
        for _ in 0..200 {
            let loss = vg.call(&mut ws, params.as_slice(), &feed, &mut g).unwrap();
            last = (loss, g.clone());
        }
        last
    };
    let alone = run();
    let all = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(run)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    for r in all {
        assert_eq!(r.0.to_bits(), alone.0.to_bits());
        assert!(r.1.iter().zip(&alone.1).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Program>();
    send_sync::<bpc::Forward>();
    send_sync::<bpc::ValueAndGrad>();
    send_sync::<bpc::TrainStep>();
    send_sync::<bpc::Hvp>();
    fn send<T: Send>() {}
    send::<bpc::Workspace>();
}

#[test]
fn calls_after_the_first_allocate_nothing() {
    let p = iris();
    let mut params = p.init_params(0).unwrap();
    let (x, y) = iris_batch();
    let labels = [Label::Class(&y)];
    let feed = Feed { inputs: &[&x], labels: &labels };
    let vg = p.value_and_grad(&p.param_names(), 8).unwrap();
    let step = p.train_step(8).unwrap();
    let fwd = p.forward(8).unwrap();
    let h = p.hvp(8).unwrap();
    let (mut w1, mut w2, mut w3, mut w4) = (vg.workspace(), step.workspace(), fwd.workspace(), h.workspace());
    let mut g = vec![0.0; p.param_len()];
    let dir = vec![0.5; p.param_len()];
    let mut out = vec![0.0; 24];
    let mut counts = Vec::new();
    for _ in 0..3 {
        let before = allocs();
        vg.call(&mut w1, params.as_slice(), &feed, &mut g).unwrap();
        step.call(&mut w2, params.as_mut_slice(), &feed, 0.1).unwrap();
        fwd.call(&mut w3, params.as_slice(), &Feed::new(&[&x]), &mut out).unwrap();
        h.call(&mut w4, params.as_slice(), &feed, &dir, &mut g).unwrap();
        counts.push(allocs() - before);
    }
    assert_eq!(counts[1..], [0, 0], "allocations per round of calls: {counts:?}");
}

#[test]
fn the_trainer_trains_iris() {
    let p = iris();
    let mut train = p.load_csv(root().join("examples/data/iris_train.csv")).unwrap();
    let mut val = p.load_csv(root().join("examples/data/iris_test.csv")).unwrap();
    let scale = Standardizer::fit(&train);
    scale.apply(&mut train);
    scale.apply(&mut val);
    assert!(matches!(train.labels, Labels::Class { .. }));
    let mut params = p.init_params(0).unwrap();
    let cfg = TrainConfig { epochs: 100, batch: 16, lr: 0.1, threads: 1, ..TrainConfig::default() };
    let mut trainer = Trainer::new(&p, cfg).unwrap();
    let mut seen = 0;
    let report = trainer.fit_with(&mut params, &train, Some(&val), |_| seen += 1).unwrap();
    assert_eq!((report.epochs.len(), seen), (100, 100));
    let m = trainer.evaluate(&params, &val).unwrap();
    assert!(m.accuracy.unwrap() >= 0.9, "{m:?}");
    assert!(report.epochs[99].train_loss < report.epochs[0].train_loss / 4.0, "{:?}", report.epochs[99]);
}

#[test]
fn embed_grad_finds_the_root_and_the_minimum() {
    let root = embed_grad::newton_root(2.0, 5).unwrap();
    assert_eq!(root.len(), 5);
    assert!((root[4].0 - 2.094_551_5).abs() < 1e-6 && root[4].1.abs() < 1e-5, "{root:?}");
    assert!((root[1].0 - 2.1).abs() < 1e-6);
    let min = embed_grad::newton_minimum(2.0, 6).unwrap();
    assert!((min[1].0 - 1.5).abs() < 1e-6, "{min:?}");
    assert!((min[5].0 - 1.130_901_1).abs() < 1e-5 && (min[5].1 + 1.070_230_2).abs() < 1e-5, "{min:?}");
}

#[test]
fn embed_train_learns_iris_with_a_plain_loop() {
    let run = embed_train::train_iris(root(), 30).unwrap();
    assert!(run.last_loss < run.first_loss / 3.0, "{run:?}");
    assert!(run.test_accuracy >= 0.9, "{run:?}");
}
