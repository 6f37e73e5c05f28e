//! End-to-end tests of the `bpc` command line: the lecture's numbers through `eval`, the IR
//! text, diagnostics for bad programs and bad data, and training to a target accuracy.

#[path = "support/cli.rs"]
mod support;

use serde_json::Value;
use support::{Scratch, bpc, fails_with, root, stderr, stdout};

/// Runs and expects success, returning stdout.
fn ok(args: &[&str]) -> String {
    let o = bpc(args);
    assert!(o.status.success(), "bpc {args:?} failed:\n{}", stderr(&o));
    stdout(&o)
}

/// Runs and expects failure (exit 1, no panic), returning stderr.
fn fails(args: &[&str]) -> String {
    fails_with(1, args)
}

// ---------------------------------------------------------------- eval: the lecture's numbers

/// `eval --json` (JIT, or the interpreter with `--interp`) as parsed JSON.
fn eval_json(model: &str, set: &str, engine: &str) -> Value {
    let mut args = vec!["eval", model, "--set", set, "--json"];
    if !engine.is_empty() {
        args.push(engine);
    }
    serde_json::from_str(&ok(&args)).expect("eval --json prints one JSON object")
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(xs) => xs.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number or array: {other}"),
    }
}

fn close(got: &Value, want: &[f64], what: &str) {
    let got = flat(got);
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-6, "{what}: got {g}, want {w}");
    }
}

/// Checks `values` and `grads` of one lecture example against the table: the JIT at -O2
/// and -O0, and the float64 interpreter.
fn lecture(model: &str, set: &str, values: &[(&str, &[f64])], grads: &[(&str, &[f64])]) {
    for engine in ["", "-O0", "--interp"] {
        let j = eval_json(model, set, engine);
        for (name, want) in values {
            close(&j["values"][name], want, &format!("{model} value {name} ({engine})"));
        }
        for (name, want) in grads {
            close(&j["grads"][name], want, &format!("{model} d loss/d {name} ({engine})"));
        }
    }
}

#[test]
fn lecture_add_mul() {
    lecture(
        "examples/add_mul.bp",
        "x=-2,y=5,z=-4",
        &[("q", &[3.0]), ("f", &[-12.0]), ("loss", &[-12.0])],
        &[("x", &[-4.0]), ("y", &[-4.0]), ("z", &[3.0]), ("q", &[-4.0]), ("f", &[1.0])],
    );
}

#[test]
fn lecture_sigmoid_neuron() {
    lecture(
        "examples/sigmoid_neuron.bp",
        "w0=2,x0=-1,w1=-3,x1=-2,w2=-3",
        &[("f", &[0.731_058_6]), ("loss", &[0.731_058_6])],
        &[
            ("w0", &[-0.196_611_9]),
            ("x0", &[0.393_223_9]),
            ("w1", &[-0.393_223_9]),
            ("x1", &[-0.589_835_8]),
            ("w2", &[0.196_611_9]),
        ],
    );
}

#[test]
fn lecture_max_gate() {
    lecture("examples/max_gate.bp", "x=4,y=2", &[("f", &[4.0])], &[("x", &[1.0]), ("y", &[0.0])]);
}

#[test]
fn lecture_squared_error() {
    // e = (y - w.x)^2 with w.x = 4.5: de/dw = -2 x (y - w.x), de/dx = -2 w (y - w.x).
    lecture(
        "examples/squared_error.bp",
        "w=[1,2,3],x=[0.5,-1,2],y=4",
        &[("e", &[0.25])],
        &[("w", &[0.5, -1.0, 2.0]), ("x", &[1.0, 2.0, 3.0]), ("y", &[-1.0])],
    );
}

#[test]
fn lecture_logistic() {
    // e = -log(sigmoid(w.x)) with w.x = 1: de/dw = -sigmoid(-1) x.
    lecture(
        "examples/logistic.bp",
        "w=[1,-1],x=[2,1]",
        &[("e", &[0.313_261_7])],
        &[("w", &[-0.537_882_8, -0.268_941_4]), ("x", &[-0.268_941_4, 0.268_941_4])],
    );
}

#[test]
fn eval_prints_values_and_gradients_for_people() {
    let out = ok(&["eval", "examples/add_mul.bp", "--set", "x=-2,y=5", "--set", "z=-4"]);
    assert!(out.contains("  q    = 3\n"), "{out}");
    assert!(out.contains("  loss = -12\n"), "{out}");
    assert!(out.contains("gradients d loss / d name\n  x    = -4\n"), "{out}");
}

#[test]
fn eval_errors_name_the_setting() {
    let err = fails(&["eval", "examples/add_mul.bp", "--set", "x=-2,y=5"]);
    assert!(err.contains("input z is not set"), "{err}");
    let err = fails(&["eval", "examples/squared_error.bp", "--set", "w=[1,2],x=[1,2,3],y=1"]);
    assert!(err.contains("in --set 'w=[1,2]': w is declared with shape [3] but the value has shape [2]"), "{err}");
    let err = fails(&["eval", "examples/add_mul.bp", "--set", "x=1,y=2,z=3,q=4"]);
    assert!(err.contains("`q` is a binding"), "{err}");
    let err = fails(&["eval", "examples/add_mul.bp", "--set", "x=[1,2"]);
    assert!(err.contains("unclosed `[`"), "{err}");
}

#[test]
fn eval_with_params_from_initializers() {
    // iris at one example: every param comes from its initializer (seed 0); the loss of a
    // 3-class cross-entropy is positive and d loss / d b2 sums to zero (softmax - onehot).
    let j = eval_json("examples/iris.bp", "x=[5.1,3.5,1.4,0.2],y=0", "");
    let loss = flat(&j["values"]["loss"])[0];
    assert!(loss > 0.0 && loss.is_finite(), "{loss}");
    let db2 = flat(&j["grads"]["b2"]);
    assert!(db2.iter().sum::<f64>().abs() < 1e-6, "{db2:?}");
    assert!(j["grads"].get("y").is_none(), "no gradient for a class label");
    let output = flat(&j["values"]["output"]);
    assert!(output.len() == 3 && (output.iter().sum::<f64>() - 1.0).abs() < 1e-6, "softmax output: {output:?}");
}

// ---------------------------------------------------------------- emit

#[test]
fn emit_ir_golden_text() {
    let want = "\
function add_mul {
  input x: f32[B]
  input y: f32[B]
  input z: f32[B]
  v0: f32[B] = arg x                            # x
  v1: f32[B] = arg y                            # y
  v2: f32[B] = arg z                            # z
  v3: f32[B] = add v0, v1                       # q
  v4: f32[B] = mul v3, v2                       # f
  v5: f32[] = reduce_mean v4, axes=[0]
  result loss = v5
}
";
    assert_eq!(ok(&["examples/add_mul.bp", "--emit-ir"]), want);
    assert_eq!(ok(&["examples/add_mul.bp", "--emit", "ir"]), want);
}

#[test]
fn emit_other_stages() {
    let grad = ok(&["examples/add_mul.bp", "--emit", "grad"]);
    assert!(grad.contains("adjoint:") && grad.contains("result grad.x = "), "{grad}");
    let opt = ok(&["examples/add_mul.bp", "--emit", "opt", "-O0"]);
    assert!(opt.contains("result grad.z = "), "{opt}");
    let ast = ok(&["examples/add_mul.bp", "--emit", "ast"]);
    assert!(ast.contains("loss"), "{ast}");
    let stats = ok(&["examples/iris.bp", "--emit", "stats", "--batch", "16"]);
    assert!(stats.starts_with("train step of iris at batch 16, -O2\n"), "{stats}");
    // Forward W1, W2; adjoint dW2, and dW1 with its SGD update as one GEMM: dh = dz·W2
    // contracts only the 3 classes and is inlined into the tanh adjoint's kernel.
    assert!(stats.contains("gemm calls       3\n"), "{stats}");
    // Issue 4's bar, as the user sees it: mnist's step is 4 GEMMs + 5 kernels, and the arena
    // is 1.12x the residuals (h and the softmax: 128·266 floats).
    let mnist = ok(&["examples/mnist.bp", "--emit", "stats", "--batch", "128"]);
    for line in
        ["kernels          5 per step", "gemm calls       4\n", "residual bytes   136192 ", "arena/residuals  1.12x\n"]
    {
        assert!(mnist.contains(line), "{line}: {mnist}");
    }
    let o0 = ok(&["examples/iris.bp", "--emit", "stats", "--batch", "16", "-O0"]);
    assert!(o0.contains("passes           none") && o0.contains("gemm calls       5\n"), "{o0}");
    let dot = ok(&["examples/sigmoid_neuron.bp", "--emit", "dot", "--set", "w0=2,x0=-1,w1=-3,x1=-2,w2=-3"]);
    // The lecture's figure: w0 = 2 enters the first product with gradient -0.196612.
    assert!(dot.contains(">2</font><br/><font color=\"red\">-0.196612</font>"), "{dot}");
    let svg = ok(&["examples/add_mul.bp", "--emit", "svg"]);
    assert!(svg.starts_with("<svg ") && svg.matches("<ellipse").count() == 2 && svg.ends_with("</svg>\n"), "{svg}");
    // The lecture's sigmoid-neuron figure in one command: values in green, gradients in red.
    let neuron = ok(&["examples/sigmoid_neuron.bp", "--emit", "svg", "--set", "w0=2,x0=-1,w1=-3,x1=-2,w2=-3"]);
    for (text, colour) in [("0.731059", "#1a7f1a"), ("-0.196612", "#c0161b"), ("-0.589836", "#c0161b")] {
        assert!(neuron.contains(&format!("fill=\"{colour}\">{text}</text>")), "{text}: {neuron}");
    }
    well_formed_xml(&neuron);
    // Comparisons, where and a def: labels that could hold `<` or `&` are escaped.
    let s = Scratch::new("svg");
    let m = s.file("m.bp", "def g(u) = u * 2\ninput a\ninput b\nloss where(a < b, g(a), b) + (a >= b)\n");
    well_formed_xml(&ok(&[&m, "--emit", "svg", "--set", "a=1,b=2"]));
    let clif = ok(&["examples/add_mul.bp", "--emit", "clif"]);
    assert!(clif.contains("; entry\nfunction u0:") && clif.contains("system_v"), "{clif}");
}

/// An XML well-formedness check for the SVG (no XML crate in the tree): one root element,
/// every tag closed in order, quoted attributes, and no raw `<` or stray `&` in text.
fn well_formed_xml(doc: &str) {
    let mut open: Vec<&str> = Vec::new();
    let (mut rest, mut roots) = (doc.trim(), 0);
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        for (i, _) in text.match_indices('&') {
            let entity = text[i..].split_once(';').map(|(e, _)| e).unwrap_or("");
            assert!(["&lt", "&gt", "&amp", "&quot", "&apos"].contains(&entity), "a stray `&` in {text:?}");
        }
        let gt = rest[lt..].find('>').unwrap_or_else(|| panic!("an unclosed tag at {:?}", &rest[lt..])) + lt;
        let tag = &rest[lt + 1..gt];
        assert!(!tag.contains('<'), "a `<` inside the tag <{tag}>");
        assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in <{tag}>");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name.trim()), "</{name}> closes the wrong element");
        } else if !tag.starts_with('?') && !tag.starts_with('!') {
            let name = tag.split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("");
            assert!(!name.is_empty(), "an empty tag name in <{tag}>");
            roots += usize::from(open.is_empty());
            if !tag.ends_with('/') {
                open.push(name);
            }
        }
        rest = &rest[gt + 1..];
    }
    assert!(
        open.is_empty() && rest.trim().is_empty() && roots == 1,
        "unclosed {open:?}, trailing {rest:?}, {roots} roots"
    );
}

// ---------------------------------------------------------------- diagnostics

#[test]
fn malformed_program_points_at_line_and_column() {
    let s = Scratch::new("bad-program");
    let path = s.file("bad.bp", "input x\nq = x + * 2\nloss q\n");
    let err = fails(&[&path, "--emit-ir"]);
    assert!(err.contains(&format!("{path}:2:")), "no file:line:column in:\n{err}");
    assert!(err.starts_with("error"), "{err}");
    let err = fails(&["train", &path, "--data", "examples/data/iris_train.csv"]);
    assert!(err.contains(&format!("{path}:2:")), "{err}");
}

#[test]
fn missing_files_name_path_and_reason() {
    let err = fails(&["nope/missing.bp", "--emit-ir"]);
    assert!(err.contains("nope/missing.bp: cannot read: No such file or directory"), "{err}");
    let err = fails(&["train", "examples/iris.bp", "--data", "examples/data/missing.csv"]);
    assert!(err.contains("examples/data/missing.csv: cannot open: No such file or directory"), "{err}");
}

#[test]
fn bad_csv_rows_point_at_line_and_column() {
    let s = Scratch::new("bad-csv");
    let ragged = s.file("ragged.csv", "a,b,c,d,label\n5.1,3.5,1.4,0.2,0\n4.9,3.0,1.4,0\n");
    let err = fails(&["train", "examples/iris.bp", "--data", &ragged]);
    assert!(err.contains(&format!("{ragged}:3:14: expected 5 fields as in the header, found 4")), "{err}");
    let word = s.file("word.csv", "a,b,c,d,label\n5.1,3.5,1.4,0.2,0\n4.9,abc,1.4,0.2,1\n");
    let err = fails(&["train", "examples/iris.bp", "--data", &word]);
    assert!(err.contains(&format!("{word}:3:5: expected a number in column `b`, found `abc`")), "{err}");
    let range = s.file("range.csv", "a,b,c,d,label\n5.1,3.5,1.4,0.2,3\n");
    let err = fails(&["train", "examples/iris.bp", "--data", &range]);
    assert!(err.contains(&format!("{range}:2:17: class label `3` is out of range")), "{err}");
    let wide = s.file("wide.csv", "a,b,label\n1,2,0\n");
    let err = fails(&["train", "examples/iris.bp", "--data", &wide]);
    assert!(
        err.contains(&format!(
            "{wide}:1:1: the model's inputs (x[4]) take 4 columns per example, but the file has 2 columns"
        )),
        "{err}"
    );
    let empty = s.file("empty.csv", "");
    let err = fails(&["train", "examples/iris.bp", "--data", &empty]);
    assert!(err.contains(&format!("{empty}:1:1: empty file")), "{err}");
}

#[test]
fn unavailable_stage_and_bad_flags() {
    let o = bpc(&["train", "examples/iris.bp"]);
    assert_eq!(o.status.code(), Some(2), "clap reports a missing --data");
    for (flag, value, want) in [
        ("--lr", "-1", "expected a positive finite learning rate, found `-1`"),
        ("--lr", "nan", "expected a positive finite learning rate, found `nan`"),
        ("--epochs", "-1", "expected a whole number of at least 1, found `-1`"),
        ("--batch", "0", "expected a whole number of at least 1, found `0`"),
        ("--seed", "-3", "expected a whole number (0 or more), found `-3`"),
    ] {
        let o = bpc(&["train", "examples/iris.bp", "--data", "examples/data/iris_train.csv", flag, value]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}");
        assert!(stderr(&o).contains(want), "{flag} {value}: {}", stderr(&o));
    }
}

#[test]
fn mistyped_command_and_missing_stage_are_usage_errors() {
    let o = bpc(&["evl", "examples/add_mul.bp"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown command `evl`: the commands are eval, train, predict, check, bench"));
    let o = bpc(&["examples/add_mul.bp"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nothing to do: give --emit-ir, --emit STAGE or a command"));
}

#[test]
fn failed_training_overwrites_nothing() {
    let s = Scratch::new("no-overwrite");
    let save = s.file("p.safetensors", "precious");
    let bad = s.file("bad.csv", "a,b,c,d,label\n1,2,3\n");
    fails(&["train", "examples/iris.bp", "--data", &bad, "--save", &save]);
    assert_eq!(std::fs::read_to_string(&save).unwrap(), "precious");
    let err = fails(&[
        "train",
        "examples/iris.bp",
        "--data",
        "examples/data/iris_train.csv",
        "--save",
        "no/dir/p.safetensors",
    ]);
    assert!(err.contains("no/dir/p.safetensors: cannot write"), "{err}");
    // A run whose loss overflows stops at that step and keeps the old checkpoint.
    let model = s.file(
        "div.bp",
        "input x[4]\nlabel y : class(3)\nparam W[3, 4] ~ normal(0, 1)\nloss cross_entropy(exp(W @ x), y)\n",
    );
    let err = fails(&["train", &model, "--data", "examples/data/iris_train.csv", "--lr", "10", "--save", &save]);
    assert!(err.contains("training diverged: the loss is NaN at step 2 of epoch 1; nothing was saved"), "{err}");
    assert_eq!(std::fs::read_to_string(&save).unwrap(), "precious");
}

// ---------------------------------------------------------------- training

/// `train --json` lines: every epoch object, then the `done` object.
fn train_json(args: &[&str]) -> (Vec<Value>, Value) {
    let mut all = vec!["train"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "--quiet"]);
    let out = ok(&all);
    let mut lines: Vec<Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    let done = lines.pop().expect("a done line");
    assert_eq!(done["done"], Value::Bool(true));
    (lines, done)
}

fn report(name: &str, epochs: &[Value]) {
    let last = epochs.last().unwrap();
    eprintln!(
        "{name}: {} epochs, val accuracy {}, train loss {}, {} examples/s",
        epochs.len(),
        last["val_accuracy"],
        last["train_loss"],
        last["examples_per_s"]
    );
}

#[test]
fn iris_trains_to_93_percent() {
    let (epochs, done) = train_json(&[
        "examples/iris.bp",
        "--data",
        "examples/data/iris_train.csv",
        "--val",
        "examples/data/iris_test.csv",
        "--standardize",
        "--lr",
        "0.1",
        "--batch",
        "16",
        "--epochs",
        "100",
    ]);
    report("iris", &epochs);
    assert_eq!(epochs.len(), 100);
    for (i, e) in epochs.iter().enumerate() {
        assert_eq!(e["epoch"], Value::from(i + 1));
        for key in ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "examples_per_s", "seconds"] {
            assert!(e[key].is_number(), "epoch {} has no number {key}: {e}", i + 1);
        }
    }
    let acc = done["val_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.93, "iris validation accuracy {acc}");
    assert!(epochs[99]["train_loss"].as_f64().unwrap() < epochs[0]["train_loss"].as_f64().unwrap());
}

#[test]
fn digits_trains_to_95_percent() {
    let (epochs, done) = train_json(&[
        "examples/digits.bp",
        "--data",
        "examples/data/digits_train.csv",
        "--val",
        "examples/data/digits_test.csv",
        "--standardize",
        "--lr",
        "0.1",
        "--batch",
        "16",
        "--epochs",
        "100",
    ]);
    report("digits", &epochs);
    let acc = done["val_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "digits validation accuracy {acc}");
}

#[test]
fn mnist_one_epoch_to_95_percent() {
    let train = root().join("../shared/data/mnist_train.csv.gz");
    let test = root().join("../shared/data/mnist_test.csv.gz");
    if !train.exists() || !test.exists() {
        eprintln!("skipping MNIST: {} is not present (it is never copied into the repository)", train.display());
        return;
    }
    let (train, test) = (train.display().to_string(), test.display().to_string());
    let (epochs, done) = train_json(&[
        "examples/mnist.bp",
        "--data",
        &train,
        "--val",
        &test,
        "--standardize",
        "--lr",
        "0.1",
        "--batch",
        "32",
        "--epochs",
        "1",
    ]);
    report("mnist", &epochs);
    let acc = done["val_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "MNIST test accuracy after one epoch {acc}");
}

#[test]
fn train_save_then_predict() {
    let s = Scratch::new("predict");
    let params = s.path("iris.safetensors");
    let preds = s.path("pred.csv");
    let data = ["--data", "examples/data/iris_train.csv", "--standardize", "--lr", "0.1", "--batch", "16"];
    let plot = s.path("curve.svg");
    let mut args = vec!["train", "examples/iris.bp", "--epochs", "50", "--quiet", "--save", &params, "--plot", &plot];
    args.extend_from_slice(&data);
    ok(&args);
    let o = bpc(&[
        "predict",
        "examples/iris.bp",
        "--params",
        &params,
        "--data",
        "examples/data/iris_test.csv",
        "--out",
        &preds,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&preds).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("output_0,output_1,output_2,predicted"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 30);
    for r in &rows {
        let f: Vec<f64> = r.split(',').map(|x| x.parse().unwrap()).collect();
        assert!((f[0] + f[1] + f[2] - 1.0).abs() < 1e-5, "softmax rows sum to 1: {r}");
    }
    let err = stderr(&o);
    let acc: f64 = err.split_whitespace().nth(1).and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("{err}"));
    assert!(acc >= 0.9, "{err}");
    // The same params predict the same file without its label column.
    let s2 = Scratch::new("predict-nolabel");
    let text = std::fs::read_to_string(root().join("examples/data/iris_test.csv")).unwrap();
    let unlabeled: String = text.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n").collect();
    let nolabel = s2.file("x.csv", &unlabeled);
    let out = ok(&["predict", "examples/iris.bp", "--params", &params, "--data", &nolabel]);
    assert_eq!(out.lines().count(), 31);
    let j: Value =
        serde_json::from_str(&ok(&["predict", "examples/iris.bp", "--params", &params, "--data", &nolabel, "--json"]))
            .unwrap();
    assert_eq!((j["examples"].clone(), j["accuracy"].clone()), (Value::from(30), Value::Null));
}

#[test]
fn class_names_survive_training_and_prediction() {
    // iris with species names instead of indices, and the label column first.
    let s = Scratch::new("names");
    let names = ["setosa", "versicolor", "virginica"];
    let rename = |file: &str| -> String {
        let text = std::fs::read_to_string(root().join("examples/data").join(file)).unwrap();
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                let (x, y) = l.rsplit_once(',').unwrap();
                let y = if i == 0 { "species" } else { names[y.parse::<usize>().unwrap()] };
                format!("\"{y}\",{x}\r\n")
            })
            .collect()
    };
    let train = s.file("train.csv", &rename("iris_train.csv"));
    let test = s.file("test.csv", &rename("iris_test.csv"));
    let params = s.path("p.safetensors");
    let (_, done) = train_json(&[
        "examples/iris.bp",
        "--data",
        &train,
        "--val",
        &test,
        "--label",
        "species",
        "--standardize",
        "--lr",
        "0.1",
        "--batch",
        "16",
        "--epochs",
        "60",
        "--save",
        &params,
    ]);
    assert!(done["val_accuracy"].as_f64().unwrap() >= 0.9, "{done}");
    let out = ok(&["predict", "examples/iris.bp", "--params", &params, "--data", &test, "--label", "species"]);
    let predicted: Vec<&str> = out.lines().skip(1).map(|l| l.rsplit_once(',').unwrap().1).collect();
    assert_eq!(predicted.len(), 30);
    assert!(predicted.iter().all(|p| names.contains(p)), "{predicted:?}");
    assert!(predicted.contains(&"setosa") && predicted.contains(&"virginica"));
}

#[test]
fn bench_reports_throughput() {
    let out = ok(&["bench", "examples/iris.bp", "--batch", "16", "--seconds", "0", "--min-steps", "5", "--json"]);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((j["model"].as_str(), j["batch"].as_u64(), j["steps"].as_u64()), (Some("iris"), Some(16), Some(5)));
    let (steps, examples) = (j["steps_per_s"].as_f64().unwrap(), j["examples_per_s"].as_f64().unwrap());
    assert!((examples - 16.0 * steps).abs() <= 1e-6 * examples, "{j}");
    assert!(j["compile_ms"].as_f64().unwrap() > 0.0 && j["first_step_ms"].as_f64().unwrap() > 0.0, "{j}");
}

#[test]
fn bench_refuses_a_minibatch_too_large_to_allocate() {
    // 2^62 examples: the buffer sizes overflow; no panic, no abort.
    let err = fails(&["bench", "examples/mnist.bp", "--batch", "4611686018427387904"]);
    assert!(err.contains("examples/mnist.bp: cannot allocate") && err.contains("the minibatch is too large"), "{err}");
    let err = fails_with(2, &["bench", "examples/mnist.bp", "--seconds", "-1"]);
    assert!(err.contains("expected a finite number of seconds, 0 or more, found `-1`"), "{err}");
}

#[test]
fn gradient_check_passes_on_every_example() {
    for m in ["add_mul", "sigmoid_neuron", "max_gate", "squared_error", "logistic", "iris", "digits", "mnist"] {
        let j: Value = serde_json::from_str(&ok(&["check", &format!("examples/{m}.bp"), "--json"])).unwrap();
        assert_eq!(j["ok"], Value::Bool(true), "{m}: {j}");
    }
    let j: Value = serde_json::from_str(&ok(&[
        "check",
        "examples/iris.bp",
        "--data",
        "examples/data/iris_test.csv",
        "--rows",
        "8",
        "--json",
    ]))
    .unwrap();
    assert_eq!((j["ok"].clone(), j["examples"].clone()), (Value::Bool(true), Value::from(8)));
    // A tolerance of 0 cannot be met by rounding: the failure names the tensor.
    let err = fails(&["check", "examples/add_mul.bp", "--tol", "0"]);
    assert!(err.contains("gradient check failed for x"), "{err}");
    for tol in ["nan", "inf", "--tol=-1"] {
        let args = if tol.starts_with("--") {
            vec!["check", "examples/add_mul.bp", tol]
        } else {
            vec!["check", "examples/add_mul.bp", "--tol", tol]
        };
        let err = fails(&args);
        assert!(err.contains("expected a finite number >= 0"), "{err}");
    }
}

#[test]
fn hessian_vector_products() {
    // L = (w·x)^2 has H = 2 x xᵀ: along [1, 0] at x = [1, 2], H v = [2, 4].
    let s = Scratch::new("hvp");
    let model = s.file("q.bp", "input x[2]\nparam w[2] = 0\nloss (w @ x)^2\n");
    for engine in [&[][..], &["--interp"][..]] {
        let mut args = vec!["eval", &model, "--set", "x=[1,2],w=[0.5,-1]", "--hvp", "w=[1,0]", "--json"];
        args.extend_from_slice(engine);
        let j: Value = serde_json::from_str(&ok(&args)).unwrap();
        close(&j["hvp"]["w"], &[2.0, 4.0], "H v");
        close(&j["grads"]["w"], &[-3.0, -6.0], "gradient");
    }
    // Softmax cross-entropy: the Hessian w.r.t. the logits' bias has rows summing to zero.
    let out = ok(&["eval", "examples/iris.bp", "--set", "x=[1,2,3,4],y=1", "--hvp", "b2=[1,0,0]", "--json"]);
    let j: Value = serde_json::from_str(&out).unwrap();
    let hv = flat(&j["hvp"]["b2"]);
    assert!(hv[0] > 0.0 && hv.iter().sum::<f64>().abs() < 1e-6, "{hv:?}");
    let err = fails(&["eval", "examples/iris.bp", "--set", "x=[1,2,3,4],y=1", "--hvp", "x=[1,0,0,0]"]);
    assert!(err.contains("in --hvp 'x=[1,0,0,0]': `x` is not a param"), "{err}");
    assert!(err.contains("(`W1`, `b1`, `W2`, `b2`)"), "the params are listed: {err}");
    let err = fails(&["eval", "examples/iris.bp", "--set", "x=[1,2,3,4],y=1", "--hvp", ""]);
    assert!(err.contains("--hvp gives no direction"), "{err}");
}

#[test]
fn check_finite_names_a_non_finite_param_at_its_declaration() {
    // A checkpoint holding NaN: nothing computed it, so the param itself is named, at its line.
    let s = Scratch::new("nanparam");
    let model = s.file("m.bp", "input x\nlabel t\nparam w = 0.5\nloss (w * x - t)^2\n");
    let data = s.file("d.csv", "x,t\n1,0\n2,0\n");
    let good = s.path("p.safetensors");
    ok(&["train", &model, "--data", &data, "--epochs", "1", "--save", &good, "--quiet"]);
    let mut bytes = std::fs::read(&good).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    let bad = s.path("bad.safetensors");
    std::fs::write(&bad, bytes).unwrap();
    let err = fails(&["eval", &model, "--params", &bad, "--set", "x=1,t=0", "--check-finite"]);
    assert!(err.contains("--check-finite: param `w` is NaN before any op runs"), "{err}");
    assert!(err.contains(&format!("{model}:3:7")) && err.contains("`w` is declared here"), "{err}");
}

#[test]
fn check_finite_names_the_op_and_line() {
    let s = Scratch::new("finite");
    let model = s.file("nf.bp", "input x\ninput y\nr = sqrt(x)\nf = log(r * y)\nloss f\n");
    let err = fails(&["eval", &model, "--set", "x=4,y=0", "--check-finite"]);
    assert!(err.contains("`log` in the forward pass produced -inf"), "{err}");
    assert!(err.contains(&format!("{model}:4:5")), "{err}");
    ok(&["eval", &model, "--set", "x=4,y=1", "--check-finite"]);
    // In the adjoint, the primal op whose pullback overflowed is named, under its own span.
    let sq = s.file("sq.bp", "input x\nparam w = 1\nloss w * sqrt(x)\n");
    let err = fails(&["eval", &sq, "--set", "x=0", "--check-finite"]);
    assert!(err.contains("`div` in the adjoint (backward) pass, in the gradient of `sqrt`, produced inf"), "{err}");
    assert!(err.contains(&format!("{sq}:3:10")) && err.contains("the gradient of this is not finite"), "{err}");
    // Unscaled regression with a large learning rate diverges within the first epoch.
    let lin = s.file("lin.bp", "input x[4]\nlabel y\nparam w[4] = 0\np = w @ x\nloss (p - y)^2\n");
    let data = s.file(
        "d.csv",
        &(0..64).fold("a,b,c,d,y\n".to_string(), |acc, i| acc + &format!("{i},{},{},1,{}\n", i * 2, 100 - i, i * 3)),
    );
    let err = fails(&[
        "train",
        &lin,
        "--data",
        &data,
        "--lr",
        "0.1",
        "--epochs",
        "5",
        "--batch",
        "8",
        "--check-finite",
        "--quiet",
    ]);
    assert!(err.contains("of epoch 1: `"), "{err}");
    assert!(err.contains(&format!("{lin}:")), "{err}");
}
