//! Lowering checked by running it: each program is compiled and evaluated by the float64
//! interpreter (`bpc_ir::interpret`), and the values are compared with the lecture's
//! numbers or with results computed by hand here.

use bpc_front::{Source, compile};
use bpc_ir::{Function, Inst, Tensor, interpret};

fn build(text: &str) -> Function {
    let src = Source::new("test.bp", text);
    match compile(&src) {
        Ok(f) => f,
        Err(d) => panic!("does not compile:\n{}", bpc_front::render(&src, &d)),
    }
}

/// Runs `func` at `batch` with the args given by name (row-major, physical sizes); args
/// not given are filled with 0.1, 0.2, 0.3, ... so every element differs.
fn run(func: &Function, batch: usize, given: &[(&str, &[f64])]) -> Vec<Tensor> {
    let args: Vec<Tensor> = func
        .args
        .iter()
        .map(|a| {
            let sizes = a.ty.shape.sizes(batch);
            let n: usize = sizes.iter().product();
            let data = match given.iter().find(|(name, _)| *name == a.name) {
                Some((_, d)) => d.to_vec(),
                None => (1..=n).map(|i| i as f64 / 10.0).collect(),
            };
            Tensor::new(sizes, data)
        })
        .collect();
    interpret(func, batch, &args).unwrap_or_else(|e| panic!("interpret: {e}\n{func}"))
}

fn named<'a>(func: &Function, vals: &'a [Tensor], name: &str) -> &'a Tensor {
    let v = func.named(name).or_else(|| func.result(name).map(|r| r.value));
    &vals[v.unwrap_or_else(|| panic!("no value named {name}")).index()]
}

fn ty(func: &Function, name: &str) -> String {
    func.ty(func.named(name).unwrap()).to_string()
}

fn close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "{got:?} vs {want:?}");
    }
}

fn example(name: &str) -> Function {
    let local = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/");
    let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/examples/");
    let path = [local, shared].iter().map(|d| format!("{d}{name}.bp")).find(|p| std::path::Path::new(p).exists());
    let path = path.unwrap_or_else(|| panic!("example {name} not found"));
    build(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn lecture_add_mul() {
    let f = example("add_mul");
    let v = run(&f, 1, &[("x", &[-2.0]), ("y", &[5.0]), ("z", &[-4.0])]);
    assert_eq!(named(&f, &v, "q").data, [3.0]);
    assert_eq!(named(&f, &v, "loss").data, [-12.0]);
    // Batch 3: the objective is the mean of the per-example losses.
    let v = run(&f, 3, &[("x", &[-2.0, 1.0, 0.0]), ("y", &[5.0, 1.0, 2.0]), ("z", &[-4.0, 2.0, 3.0])]);
    assert_eq!(named(&f, &v, "f").data, [-12.0, 4.0, 6.0]);
    assert_eq!(named(&f, &v, "loss").data, [-2.0 / 3.0]);
}

#[test]
fn lecture_sigmoid_neuron() {
    let f = example("sigmoid_neuron");
    let point: [(&str, &[f64]); 5] =
        [("w0", &[2.0]), ("x0", &[-1.0]), ("w1", &[-3.0]), ("x1", &[-2.0]), ("w2", &[-3.0])];
    let v = run(&f, 1, &point);
    close(&named(&f, &v, "loss").data, &[0.731059], 1e-6);
    let three: Vec<(&str, Vec<f64>)> = point.iter().map(|(n, d)| (*n, vec![d[0]; 3])).collect();
    let three: Vec<(&str, &[f64])> = three.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    let v = run(&f, 3, &three);
    close(&named(&f, &v, "f").data, &[0.7310585786300049; 3], 1e-12);
}

#[test]
fn lecture_max_gate() {
    let f = example("max_gate");
    let v = run(&f, 1, &[("x", &[4.0]), ("y", &[2.0])]);
    assert_eq!(named(&f, &v, "loss").data, [4.0]);
    let v = run(&f, 3, &[("x", &[4.0, -1.0, 0.0]), ("y", &[2.0, 5.0, 0.0])]);
    assert_eq!(named(&f, &v, "f").data, [4.0, 5.0, 0.0]);
}

#[test]
fn lecture_squared_error() {
    let f = example("squared_error");
    let v = run(&f, 1, &[("w", &[1.0, 2.0, 3.0]), ("x", &[0.5, -1.0, 2.0]), ("y", &[4.0])]);
    close(&named(&f, &v, "loss").data, &[0.25], 1e-12);
    let v = run(
        &f,
        3,
        &[
            ("w", &[1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
            ("x", &[0.5, -1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0]),
            ("y", &[4.0, 1.0, 6.0]),
        ],
    );
    close(&named(&f, &v, "e").data, &[0.25, 1.0, 0.0], 1e-12);
}

#[test]
fn lecture_logistic() {
    let f = example("logistic");
    let v = run(&f, 1, &[("w", &[1.0, -1.0]), ("x", &[2.0, 1.0])]);
    close(&named(&f, &v, "loss").data, &[0.3132617], 1e-7);
    assert_eq!(ty(&f, "e"), "f32[B]");
}

#[test]
fn classifiers_batch_the_examples_and_share_the_params() {
    let f = example("mnist");
    assert_eq!(ty(&f, "h"), "f32[B,256]");
    assert_eq!(ty(&f, "f"), "f32[B,10]");
    assert_eq!(ty(&f, "W1"), "f32[256,784]");
    let names: Vec<&str> = f.results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["loss", "output", "logits"]);
    assert_eq!(f.ty(f.result("loss").unwrap().value).to_string(), "f32[]");
    // `W1 @ x` is one GEMM over the minibatch.
    let gemms = f.values().filter(|&v| matches!(f.inst(v), Inst::MatMul { .. })).count();
    assert_eq!(gemms, 2);
}

#[test]
fn regularizer_is_shared_and_applies_in_full() {
    let text = "input x[2]\nlabel y : class(2)\nparam W[2, 2]\nconst lambda = 0.5\nf = W @ x\nr = lambda * sum(W^2)\n\
                loss cross_entropy(f, y) + r\n";
    let f = build(text);
    assert_eq!(ty(&f, "r"), "f32[]");
    let w = [1.0, 2.0, 3.0, 4.0];
    let v = run(&f, 2, &[("x", &[1.0, 0.0, 0.0, 1.0]), ("y", &[0.0, 1.0]), ("W", &w)]);
    // Logits: example 0 is [1, 3], example 1 is [2, 4].
    let ce = |z: [f64; 2], c: usize| (z[0].exp() + z[1].exp()).ln() - z[c];
    let want = (ce([1.0, 3.0], 0) + ce([2.0, 4.0], 1)) / 2.0 + 0.5 * 30.0;
    close(&named(&f, &v, "loss").data, &[want], 1e-12);
    close(&named(&f, &v, "logits").data, &[1.0, 3.0, 2.0, 4.0], 0.0);
}

#[test]
fn broadcasting_follows_numpy() {
    let text = "input x[3]\nparam c[2, 1]\nparam s\ny = x + c\nz = y * s - 1\nloss sum(z)\n";
    let f = build(text);
    assert_eq!(ty(&f, "y"), "f32[B,2,3]");
    let v = run(&f, 2, &[("x", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), ("c", &[10.0, 20.0]), ("s", &[2.0])]);
    assert_eq!(named(&f, &v, "y").data, [11.0, 12.0, 13.0, 21.0, 22.0, 23.0, 14.0, 15.0, 16.0, 24.0, 25.0, 26.0]);
    assert_eq!(named(&f, &v, "z").data[..3], [21.0, 23.0, 25.0]);
}

/// Row-major `a[m,k] · b[k,n]`.
fn mm(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    out
}

fn seq(n: usize, start: f64) -> Vec<f64> {
    (0..n).map(|i| start + i as f64 * 0.5 - (i % 3) as f64).collect()
}

/// Compiles `out = a @ b` for the given declarations, checks its example shape, and
/// compares every example of the batch with `mm` on the example's slices.
fn check_matmul(decl_a: &str, decl_b: &str, dims_out: &str, (m, k, n): (usize, usize, usize), batch: usize) {
    let text = format!("{decl_a}\n{decl_b}\nout = a @ b\nloss sum(out)\n");
    let f = build(&text);
    let out_ty = ty(&f, "out");
    assert!(out_ty.ends_with(dims_out), "{text}: {out_ty}\n{f}");
    let a_len: usize = f.args[0].ty.shape.len(batch);
    let b_len: usize = f.args[1].ty.shape.len(batch);
    let (a, b) = (seq(a_len, 1.0), seq(b_len, -2.0));
    let v = run(&f, batch, &[("a", &a), ("b", &b)]);
    let got = &named(&f, &v, "out").data;
    let rows = if f.ty(f.named("out").unwrap()).shape.batch { batch } else { 1 };
    for e in 0..rows {
        let pick = |x: &[f64], batched: bool, len: usize| {
            if batched { x[e * len..(e + 1) * len].to_vec() } else { x.to_vec() }
        };
        let ea = pick(&a, f.args[0].ty.shape.batch, m * k);
        let eb = pick(&b, f.args[1].ty.shape.batch, k * n);
        let want = mm(&ea, &eb, m, k, n);
        close(&got[e * m * n..(e + 1) * m * n], &want, 1e-12);
    }
}

#[test]
fn matmul_every_case() {
    // Shared · shared.
    check_matmul("param a[3]", "param b[3]", "[]", (1, 3, 1), 2);
    check_matmul("param a[2, 3]", "param b[3]", "[2]", (2, 3, 1), 2);
    check_matmul("param a[3]", "param b[3, 4]", "[4]", (1, 3, 4), 2);
    check_matmul("param a[2, 3]", "param b[3, 4]", "[2,4]", (2, 3, 4), 2);
    // One GEMM over the minibatch.
    check_matmul("param a[2, 3]", "input b[3]", "[B,2]", (2, 3, 1), 3);
    check_matmul("input a[3]", "param b[3, 4]", "[B,4]", (1, 3, 4), 3);
    check_matmul("input a[3]", "param b[3]", "[B]", (1, 3, 1), 3);
    check_matmul("param a[3]", "input b[3]", "[B]", (1, 3, 1), 3);
    // The general form.
    check_matmul("input a[3]", "input b[3]", "[B]", (1, 3, 1), 3);
    check_matmul("input a[2, 3]", "param b[3]", "[B,2]", (2, 3, 1), 3);
    check_matmul("input a[2, 3]", "input b[3, 4]", "[B,2,4]", (2, 3, 4), 3);
    check_matmul("param a[2, 3]", "input b[3, 4]", "[B,2,4]", (2, 3, 4), 3);
    check_matmul("input a[3]", "input b[3, 4]", "[B,4]", (1, 3, 4), 3);
    check_matmul("input a[2, 3]", "param b[3, 4]", "[B,2,4]", (2, 3, 4), 3);
}

#[test]
fn matmul_cases_use_the_expected_instructions() {
    let f = build("input x[3]\nparam W[2, 3]\nparam w[3]\nh = W @ x\nd = x @ w\nloss sum(h) + d\n");
    let h = f.named("h").unwrap();
    assert_eq!(
        *f.inst(h),
        Inst::MatMul { lhs: f.named("x").unwrap(), rhs: f.named("W").unwrap(), ta: false, tb: true }
    );
    assert_eq!(ty(&f, "d"), "f32[B]");
    assert!(matches!(f.inst(f.named("d").unwrap()), Inst::Reshape { .. }));
}

#[test]
fn matmul_of_higher_rank_broadcasts_the_leading_axes() {
    let f = build("param a[2, 2, 3]\nparam b[3, 2]\nout = a @ b\nloss sum(out)\n");
    assert_eq!(ty(&f, "out"), "f32[2,2,2]");
    let (a, b) = (seq(12, 1.0), seq(6, -1.0));
    let v = run(&f, 1, &[("a", &a), ("b", &b)]);
    let mut want = mm(&a[..6], &b, 2, 3, 2);
    want.extend(mm(&a[6..], &b, 2, 3, 2));
    close(&named(&f, &v, "out").data, &want, 1e-12);
}

#[test]
fn axis_reductions_count_the_example_axes() {
    let text = "input X[2, 3]\ns0 = sum(X, axis=0)\ns1 = mean(X, axis=1)\nmx = max(X, axis=-1)\nmn = min(X)\n\
                l = logsumexp(X, axis=0)\nsm = softmax(X, axis=0)\nls = log_softmax(X)\nloss sum(s0) + mn\n";
    let f = build(text);
    assert_eq!(ty(&f, "s0"), "f32[B,3]");
    assert_eq!(ty(&f, "s1"), "f32[B,2]");
    assert_eq!(ty(&f, "mn"), "f32[B]");
    let x = [1.0, 5.0, 3.0, 4.0, 2.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0];
    let v = run(&f, 2, &[("X", &x)]);
    assert_eq!(named(&f, &v, "s0").data, [5.0, 7.0, 9.0, 0.0, 0.0, -1.0]);
    assert_eq!(named(&f, &v, "s1").data, [3.0, 4.0, 0.0, -1.0 / 3.0]);
    assert_eq!(named(&f, &v, "mx").data, [5.0, 6.0, 0.0, 0.0]);
    assert_eq!(named(&f, &v, "mn").data, [1.0, -1.0]);
    let lse = |a: f64, b: f64| (a.exp() + b.exp()).ln();
    close(&named(&f, &v, "l").data[..3], &[lse(1.0, 4.0), lse(5.0, 2.0), lse(3.0, 6.0)], 1e-12);
    let sm = &named(&f, &v, "sm").data;
    close(&[sm[0] + sm[3], sm[1] + sm[4]], &[1.0, 1.0], 1e-12);
    let ls = &named(&f, &v, "ls").data;
    close(&[ls[0]], &[1.0 - (1f64.exp() + 5f64.exp() + 3f64.exp()).ln()], 1e-12);
}

#[test]
fn constant_indexing() {
    let text = "input v[3]\nparam W[2, 3]\nconst i = 1\na = v[2]\nb = W[i, 2]\nr = W[i]\nloss a + b + sum(r)\n";
    let f = build(text);
    assert_eq!(ty(&f, "a"), "f32[B]");
    assert_eq!(ty(&f, "b"), "f32[]");
    assert_eq!(ty(&f, "r"), "f32[3]");
    let v = run(&f, 1, &[("v", &[7.0, 8.0, 9.0]), ("W", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])]);
    assert_eq!(named(&f, &v, "a").data, [9.0]);
    assert_eq!(named(&f, &v, "b").data, [6.0]);
    assert_eq!(named(&f, &v, "r").data, [4.0, 5.0, 6.0]);
}

#[test]
fn defs_are_inlined_and_shadow() {
    let text = "input x[2]\nparam W[2, 2]\nparam b[2]\ndef sq(x) = x * x\ndef layer(x, W, b) = relu(W @ x + b)\n\
                def twice(x) = layer(layer(x, W, b), W, b)\nh = twice(x)\nloss sum(sq(h))\n";
    let f = build(text);
    let v = run(&f, 1, &[("x", &[1.0, -1.0]), ("W", &[1.0, 2.0, 3.0, 4.0]), ("b", &[0.5, 0.0])]);
    // layer([1, -1]) = relu([-1 + 0.5, -1]) = [0, 0]; then relu([0.5, 0]) = [0.5, 0].
    assert_eq!(named(&f, &v, "h").data, [0.5, 0.0]);
    assert_eq!(named(&f, &v, "loss").data, [0.25]);
    // def params are not names.
    assert!(f.names.iter().all(|(n, _)| ["x", "W", "b", "h"].contains(&n.as_str())));
}

#[test]
fn consts_fold_to_one_constant() {
    let f = build(
        "input x\nconst a = 2\nconst b = a^3 + 1 - exp(0)\ndef half(t) = t / 2\ny = x * b * half(a) + 2^-1\nloss y\n",
    );
    let consts: Vec<f64> =
        f.values().filter_map(|v| if let Inst::Const(c) = f.inst(v) { Some(*c) } else { None }).collect();
    assert_eq!(consts, [8.0, 1.0, 0.5]);
    let v = run(&f, 1, &[("x", &[3.0])]);
    assert_eq!(named(&f, &v, "y").data, [24.5]);
}

#[test]
fn losses_and_elementwise_builtins() {
    let text = "input z[2]\nlabel t[2]\nm = mse(z, t)\nb = bce_with_logits(z, t)\nw = where(z > 0, z, 0.5 * z)\n\
                c = (z <= t) + (z == t) + min(z, t) - abs(z)\ntr = transpose(z)\nloss m + b\noutput sigmoid(w) + tanh(c) + softplus(tr) + log_sigmoid(z)\n";
    let f = build(text);
    assert_eq!(f.args[1].kind, bpc_ir::ArgKind::Label { classes: None });
    let v = run(&f, 1, &[("z", &[1.0, -2.0]), ("t", &[1.0, 0.0])]);
    close(&named(&f, &v, "m").data, &[2.0], 1e-12);
    let sp = |x: f64| (1.0 + x.exp()).ln();
    close(&named(&f, &v, "b").data, &[(sp(1.0) - 1.0 + sp(-2.0)) / 2.0], 1e-12);
    assert_eq!(named(&f, &v, "w").data, [1.0, -1.0]);
    assert_eq!(named(&f, &v, "c").data, [1.0 + 1.0 + 1.0 - 1.0, 1.0 + 0.0 - 2.0 - 2.0]);
    assert_eq!(named(&f, &v, "tr").data, [1.0, -2.0]);
}

#[test]
fn transpose_of_a_matrix() {
    let f = build("param W[2, 3]\nT = transpose(W)\nloss sum(T @ W)\n");
    assert_eq!(ty(&f, "T"), "f32[3,2]");
    let v = run(&f, 1, &[("W", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])]);
    assert_eq!(named(&f, &v, "T").data, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
}

#[test]
fn shared_loss_is_not_averaged() {
    let f = build("model reg\nparam w[2] = 3\nloss sum(w^2)\n");
    assert_eq!(f.name, "reg");
    assert_eq!(f.args[0].kind, bpc_ir::ArgKind::Param { init: bpc_ir::Init::Const(3.0) });
    let v = run(&f, 4, &[("w", &[1.0, 2.0])]);
    assert_eq!(named(&f, &v, "loss").data, [5.0]);
}

#[test]
fn initializers() {
    let f = build(
        "param a[2] ~ normal(0, 0.1)\nparam b[2, 3] ~ uniform(-1, 1)\nparam c[2] ~ xavier\nparam d[2] ~ he\nparam e = -2\nloss sum(a) + sum(b) + sum(c) + sum(d) + e\n",
    );
    use bpc_ir::Init;
    let inits: Vec<Init> = f
        .args
        .iter()
        .map(|a| match a.kind {
            bpc_ir::ArgKind::Param { init } => init,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        inits,
        [
            Init::Normal { mean: 0.0, std: 0.1 },
            Init::Uniform { lo: -1.0, hi: 1.0 },
            Init::Xavier,
            Init::He,
            Init::Const(-2.0)
        ]
    );
}

#[test]
fn spans_point_at_the_source() {
    let text = "input x\ny = exp(x) + 1\nloss y\n";
    let f = build(text);
    let y = f.named("y").unwrap();
    assert_eq!(&text[f.span(y).range()], "exp(x) + 1");
    assert!(f.values().all(|v| !f.span(v).is_none()), "every value has a span");
}

#[test]
fn a_class_label_passes_through_a_def() {
    let f = build("input x[3]\nlabel y : class(3)\ndef ce(z, t) = cross_entropy(z, t)\nloss ce(x, y)\n");
    let v = run(&f, 2, &[("x", &[0.0, 0.0, 0.0, 1.0, 2.0, 3.0]), ("y", &[0.0, 2.0])]);
    let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    close(&named(&f, &v, "loss").data, &[(3f64.ln() + lse - 3.0) / 2.0], 1e-12);
    assert_eq!(f.ty(f.result("logits").unwrap().value).to_string(), "f32[B,3]");
}

#[test]
fn shared_logits_are_broadcast_over_the_batch() {
    let f = build("label y : class(2)\nparam b[2]\nloss cross_entropy(b, y)\n");
    let v = run(&f, 2, &[("b", &[0.0, 0.0]), ("y", &[0.0, 1.0])]);
    close(&named(&f, &v, "loss").data, &[2f64.ln()], 1e-12);
}

#[test]
fn the_function_is_named_by_the_model_line_or_the_file() {
    let src = Source::new("dir/my_model.bp", "input x\nloss x\n");
    assert_eq!(compile(&src).unwrap().name, "my_model");
    let src = Source::new("dir/my_model.bp", "model other\ninput x\nloss x\n");
    assert_eq!(compile(&src).unwrap().name, "other");
}

#[test]
fn the_ast_text_parses_back_to_itself() {
    for name in ["add_mul", "sigmoid_neuron", "squared_error", "logistic", "digits", "mnist"] {
        let local = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/");
        let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/examples/");
        let path = [local, shared].iter().map(|d| format!("{d}{name}.bp")).find(|p| std::path::Path::new(p).exists());
        let text = std::fs::read_to_string(path.unwrap()).unwrap();
        let printed = bpc_front::parse(&Source::new("a.bp", text)).unwrap().to_string();
        let again = bpc_front::parse(&Source::new("b.bp", printed.clone())).unwrap().to_string();
        assert_eq!(printed, again);
    }
    let m = bpc_front::parse(&Source::new("a.bp", "model m\nloss -x^2 * (a + b) @ W[0]\n")).unwrap();
    assert_eq!(m.to_string(), "model m\nloss (((-(x ^ 2)) * (a + b)) @ W[0])\n");
}
