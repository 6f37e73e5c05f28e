//! End-to-end tests of `bpc train` and `bpc predict` as a practitioner uses them: every
//! optimizer and schedule, early stopping and validation splits, column selection, data as
//! people publish it and bad data stopped before training, the final confusion matrix and
//! regression metrics, checkpoints (metadata, Python's `safetensors`, Ctrl-C and resuming,
//! `--save-every`, another model's checkpoint), determinism, and regression on diabetes.

#[path = "support/cli.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{Scratch, bpc, fails_with, root, stderr, stdout};

/// Runs and expects success; returns (stdout, stderr).
fn ok(args: &[&str]) -> (String, String) {
    let o = bpc(args);
    assert!(o.status.success(), "bpc {args:?} failed:\n{}", stderr(&o));
    (stdout(&o), stderr(&o))
}

/// `train ... --json --quiet`: the epoch objects and the `done` object.
fn train_json(args: &[&str]) -> (Vec<Value>, Value) {
    let mut all = vec!["train"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "--quiet"]);
    let (out, _) = ok(&all);
    let mut lines: Vec<Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    let done = lines.pop().expect("a done line");
    assert_eq!(done["done"], Value::Bool(true), "{done}");
    (lines, done)
}

const IRIS: [&str; 8] = [
    "examples/iris.bp",
    "--data",
    "examples/data/iris_train.csv",
    "--val",
    "examples/data/iris_test.csv",
    "--standardize",
    "--batch",
    "16",
];

/// iris with `extra` flags (60 epochs unless they say otherwise).
fn iris_with(extra: &[&str]) -> (Vec<Value>, Value) {
    let mut args = IRIS.to_vec();
    args.extend_from_slice(extra);
    if !extra.contains(&"--epochs") {
        args.extend_from_slice(&["--epochs", "60"]);
    }
    train_json(&args)
}

// ---------------------------------------------------------------- training

#[test]
fn every_optimizer_and_schedule_trains_iris() {
    for extra in [
        &["--lr", "0.1"][..],
        &["--optimizer", "momentum", "--lr", "0.02"],
        &["--optimizer", "momentum", "--momentum", "0.8", "--nesterov", "--lr", "0.02"],
        &["--optimizer", "adam", "--lr", "0.01"],
        &["--optimizer", "adam", "--beta1", "0.8", "--beta2", "0.99", "--eps", "1e-6", "--weight-decay", "1e-4"],
        &["--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "0.01"],
        &["--lr", "0.2", "--weight-decay", "1e-3", "--lr-schedule", "cosine"],
        &["--optimizer", "adam", "--lr", "0.02", "--lr-schedule", "step:20:0.5"],
    ] {
        let (epochs, done) = iris_with(extra);
        assert_eq!(epochs.len(), 60, "{extra:?}");
        let acc = done["val_accuracy"].as_f64().unwrap();
        eprintln!("iris {extra:?}: validation accuracy {acc}");
        assert!(acc >= 0.9, "{extra:?}: validation accuracy {acc}");
        assert!(epochs[59]["train_loss"].as_f64() < epochs[0]["train_loss"].as_f64(), "{extra:?}");
    }
}

#[test]
fn flags_that_do_not_apply_are_usage_errors() {
    let data = ["train", "examples/iris.bp", "--data", "examples/data/iris_train.csv"];
    for (extra, want) in [
        (&["--beta1", "0.9"][..], "--beta1 applies to --optimizer adam and adamw, not to --optimizer sgd"),
        (
            &["--optimizer", "adam", "--momentum", "0.9"],
            "--momentum applies to --optimizer momentum, not to --optimizer adam",
        ),
        (&["--nesterov"], "--nesterov applies to --optimizer momentum, not to --optimizer sgd"),
        (
            &["--optimizer", "momentum", "--momentum", "1"],
            "expected a number from 0 up to (not including) 1, found `1`",
        ),
        (&["--optimizer", "adam", "--eps", "0"], "expected a positive finite number, found `0`"),
        (&["--weight-decay", "-1"], "expected a finite number, 0 or more, found `-1`"),
        (&["--lr-schedule", "step:0:0.5"], "expected constant, step:EPOCHS:FACTOR (e.g. step:10:0.5) or cosine"),
        (&["--val-split", "1.5"], "expected a fraction between 0 and 1 (e.g. 0.2), found `1.5`"),
        (&["--val-split", "0.2", "--val", "examples/data/iris_test.csv"], "cannot be used with"),
        (&["--save-every", "2"], "--save <P.safetensors>"),
        (&["--optimizer", "rmsprop"], "invalid value 'rmsprop' for '--optimizer <OPTIMIZER>'"),
    ] {
        let mut args = data.to_vec();
        args.extend_from_slice(extra);
        let err = fails_with(2, &args);
        assert!(err.contains(want), "{extra:?}:\n{err}");
    }
    let mut args = data.to_vec();
    args.extend_from_slice(&["--patience", "3"]);
    let err = fails_with(2, &args);
    assert!(err.contains("--patience stops on the validation loss: give --val or --val-split"), "{err}");
}

/// y = 3x − 1 to train on, validation from y = −3x + 1: fitting one moves away from the other.
fn lines(s: &Scratch) -> (String, String, String) {
    let model =
        s.file("lin.bp", "input x\nlabel y\nparam w = 0.5\nparam b = 0\np = w * x + b\nloss mse(p, y)\noutput p\n");
    let csv = |slope: f64, n: usize| {
        (0..n).fold("x,y\n".to_string(), |t, i| {
            let x = i as f64 / n as f64 * 2.0 - 1.0;
            t + &format!("{x},{}\n", slope * x - slope / 3.0)
        })
    };
    (model, s.file("train.csv", &csv(3.0, 32)), s.file("val.csv", &csv(-3.0, 16)))
}

#[test]
fn early_stopping_keeps_the_best_epoch() {
    let s = Scratch::new("patience");
    let (model, train, val) = lines(&s);
    let (epochs, done) =
        train_json(&[&model, "--data", &train, "--val", &val, "--lr", "0.05", "--epochs", "50", "--patience", "3"]);
    assert_eq!(done["stop"], "early_stopping", "{done}");
    let best = done["best_epoch"].as_u64().unwrap() as usize;
    assert_eq!(epochs.len(), best + 3);
    let losses: Vec<f64> = epochs.iter().map(|e| e["val_loss"].as_f64().unwrap()).collect();
    assert!(losses[best..].iter().all(|&l| l >= losses[best - 1]), "{losses:?}");
    // The kept params give the best epoch's validation loss: R² of the final metrics agrees.
    assert!(done["r2"].is_number() && done["metrics_on"] == "validation", "{done}");
}

#[test]
fn a_validation_split_is_held_out() {
    let (out, err) = ok(&[
        "train",
        "examples/iris.bp",
        "--data",
        "examples/data/iris_train.csv",
        "--val-split",
        "0.25",
        "--standardize",
        "--epochs",
        "3",
    ]);
    assert!(out.is_empty());
    assert!(
        err.starts_with("training iris: 131 params, 90 examples, 30 validation, batch 32, sgd lr 0.01, 3 epochs"),
        "{err}"
    );
    assert!(err.contains("val acc"), "{err}");
}

// ---------------------------------------------------------------- data

#[test]
fn features_choose_and_order_the_columns() {
    // An id column and a free-text column, the label first, features in another order.
    let s = Scratch::new("features");
    let rewrite = |file: &str| -> String {
        let text = std::fs::read_to_string(root().join("examples/data").join(file)).unwrap();
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                let f: Vec<&str> = l.split(',').collect();
                if i == 0 {
                    format!("id,label,note,{},{},{},{}\n", f[3], f[2], f[1], f[0])
                } else {
                    format!("r{i},{},\"free, text\",{},{},{},{}\n", f[4], f[3], f[2], f[1], f[0])
                }
            })
            .collect()
    };
    let (train, test) =
        (s.file("train.csv", &rewrite("iris_train.csv")), s.file("test.csv", &rewrite("iris_test.csv")));
    let features = "sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm";
    let ck = s.path("p.safetensors");
    let (_, done) = train_json(&[
        "examples/iris.bp",
        "--data",
        &train,
        "--val",
        &test,
        "--features",
        features,
        "--standardize",
        "--lr",
        "0.1",
        "--batch",
        "16",
        "--epochs",
        "60",
        "--save",
        &ck,
    ]);
    assert!(done["val_accuracy"].as_f64().unwrap() >= 0.9, "{done}");
    // predict takes the checkpoint's feature columns.
    let (out, err) = ok(&["predict", "examples/iris.bp", "--params", &ck, "--data", &test]);
    assert_eq!(out.lines().count(), 31);
    let acc: f64 = err.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(acc >= 0.9, "{err}");
    let err = fails_with(1, &["train", "examples/iris.bp", "--data", &train, "--features", "sepal_length_cm,petals"]);
    assert!(
        err.contains(&format!("{train}:1:1: no column named `petals` for --features (the columns are: id, label")),
        "{err}"
    );
}

#[test]
fn csv_files_as_people_publish_them_load() {
    // A byte-order mark, CRLF, quoted header and fields, spaces around values, blank lines at the end.
    let s = Scratch::new("quirks");
    let text = std::fs::read_to_string(root().join("examples/data/iris_train.csv")).unwrap();
    let mut out = String::from("\u{feff}");
    for (i, l) in text.lines().enumerate() {
        let f: Vec<String> = l.split(',').map(|x| if i == 0 { format!("\"{x}\"") } else { format!(" {x} ") }).collect();
        out += &(f.join(",") + "\r\n");
    }
    out += "\r\n\r\n";
    let file = s.file("published.csv", &out);
    let (epochs, _) =
        train_json(&["examples/iris.bp", "--data", &file, "--standardize", "--lr", "0.1", "--epochs", "20"]);
    assert!(epochs[19]["train_accuracy"].as_f64().unwrap() > 0.9, "{:?}", epochs[19]);
}

#[test]
fn bad_data_stops_before_training_naming_file_line_and_column() {
    let s = Scratch::new("bad-data");
    let header = "sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm,label\n";
    for (name, rows, want) in [
        (
            "missing.csv",
            "5.1,3.5,1.4,0.2,0\n4.9,NA,1.4,0.2,1\n",
            ":3:5: expected a number in column `sepal_width_cm`, found `NA`, a missing value",
        ),
        (
            "empty_field.csv",
            "5.1,3.5,,0.2,0\n",
            ":2:9: expected a number in column `petal_length_cm`, found an empty field",
        ),
        (
            "text.csv",
            "5.1,3.5,1.4,0.2,0\n5.1,3.5,1.4,wide,0\n",
            ":3:13: expected a number in column `petal_width_cm`, found `wide`",
        ),
        ("ragged.csv", "5.1,3.5,1.4,0.2,0,7\n", ":2:19: expected 5 fields as in the header, found 6"),
        (
            "class.csv",
            "5.1,3.5,1.4,0.2,0\n5.1,3.5,1.4,0.2,-1\n",
            ":3:17: class label `-1` is out of range: expected 0 to 2 for class(3)",
        ),
        (
            "names.csv",
            "5.1,3.5,1.4,0.2,ant\n5.1,3.5,1.4,0.2,bee\n5.1,3.5,1.4,0.2,cow\n5.1,3.5,1.4,0.2,doe\n",
            ":5:17: `doe` would be class name number 4, but the label is class(3)",
        ),
    ] {
        let path = s.file(name, &format!("{header}{rows}"));
        let err =
            fails_with(1, &["train", "examples/iris.bp", "--data", &path, "--save", &s.path("never.safetensors")]);
        assert!(err.contains(&format!("{path}{want}")), "{name}:\n{err}");
        assert!(!err.contains("training iris"), "{name}: training started:\n{err}");
    }
    let wide = s.file("wide.csv", "a,b,c,label\n1,2,3,0\n");
    let err = fails_with(1, &["train", "examples/iris.bp", "--data", &wide]);
    assert!(
        err.contains(&format!("{wide}:1:1: the model's inputs (x[4]) take 4 columns per example, but the file has 3 columns besides the label column `label`")),
        "{err}"
    );
    // The validation file must use the training set's classes.
    let names = |ys: &[&str]| ys.iter().fold(header.to_string(), |t, y| t + &format!("5.1,3.5,1.4,0.2,{y}\n"));
    let (train, val) =
        (s.file("n_train.csv", &names(&["ant", "bee", "cow"])), s.file("n_val.csv", &names(&["bee", "elk"])));
    let err = fails_with(1, &["train", "examples/iris.bp", "--data", &train, "--val", &val]);
    assert!(
        err.contains(&format!("{val}:3:17: unknown class `elk`; the training data has classes ant, bee, cow")),
        "{err}"
    );
    assert!(!Path::new(&s.path("never.safetensors")).exists());
    // predict reads data the same way, and writes nothing on bad data.
    let ck = s.path("iris.safetensors");
    ok(&[
        "train",
        "examples/iris.bp",
        "--data",
        "examples/data/iris_train.csv",
        "--epochs",
        "1",
        "--quiet",
        "--save",
        &ck,
    ]);
    let text = s.file("p_text.csv", &format!("{header}5.1,3.5,1.4,0.2,0\n5.1,3.5,1.4,wide,0\n"));
    let unlabeled = s.file("p_ragged.csv", "a,b,c,d\n5.1,3.5,1.4,0.2\n5.1,3.5,1.4\n");
    for (file, want) in [
        (&text, ":3:13: expected a number in column `petal_width_cm`, found `wide`"),
        (&unlabeled, ":3:12: expected 4 fields as in the header, found 3"),
    ] {
        let out = s.path("pred.csv");
        let err = fails_with(1, &["predict", "examples/iris.bp", "--params", &ck, "--data", file, "--out", &out]);
        assert!(err.contains(&format!("{file}{want}")), "{err}");
        assert!(!Path::new(&out).exists());
    }
}

/// `--standardize` statistics come from the training file only (not the validation file),
/// are stored in the checkpoint, and `predict` applies them: one row predicted alone gives
/// the same outputs as in the whole file (statistics of a one-row file would differ).
#[test]
fn standardization_is_fitted_on_the_training_data_and_reused_by_predict() {
    let s = Scratch::new("standardize");
    let ck = s.path("iris.safetensors");
    iris_with(&["--lr", "0.1", "--epochs", "5", "--save", &ck]);
    let model = bpc::Model::load(root().join("examples/iris.bp")).unwrap();
    let (_, meta) = bpc::train::checkpoint::load(Path::new(&ck), &model.func).unwrap();
    let stats = meta.standardizer.expect("statistics in the checkpoint");
    let train = std::fs::read_to_string(root().join("examples/data/iris_train.csv")).unwrap();
    let rows: Vec<Vec<f64>> =
        train.lines().skip(1).map(|l| l.split(',').map(|x| x.parse().unwrap()).collect()).collect();
    for j in 0..4 {
        let mean = rows.iter().map(|r| r[j]).sum::<f64>() / rows.len() as f64;
        let std = (rows.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / rows.len() as f64).sqrt();
        assert!((f64::from(stats.mean[j]) - mean).abs() < 1e-5, "mean of column {j}: {} vs {mean}", stats.mean[j]);
        assert!((f64::from(stats.std[j]) - std).abs() < 1e-5, "std of column {j}: {} vs {std}", stats.std[j]);
    }
    let test = std::fs::read_to_string(root().join("examples/data/iris_test.csv")).unwrap();
    let (all, _) = ok(&["predict", "examples/iris.bp", "--params", &ck, "--data", "examples/data/iris_test.csv"]);
    let lines: Vec<&str> = test.lines().collect();
    let one = s.file("one.csv", &format!("{}\n{}\n", lines[0], lines[5]));
    let (single, _) = ok(&["predict", "examples/iris.bp", "--params", &ck, "--data", &one]);
    let row = |l: &str| l.split(',').map(|x| x.parse::<f64>().unwrap()).collect::<Vec<_>>();
    let (a, b) = (row(single.lines().nth(1).unwrap()), row(all.lines().nth(5).unwrap()));
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6), "{a:?} vs {b:?}");
}

// ---------------------------------------------------------------- output

#[test]
fn the_confusion_matrix_closes_a_classification_run() {
    let s = Scratch::new("confusion");
    let plot = s.path("curve.svg");
    let (_, err) = ok(&[
        "train",
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
        "40",
        "--plot",
        &plot,
    ]);
    assert!(err.contains("on the validation data: confusion matrix (30 examples, accuracy "), "{err}");
    assert!(err.contains("true \\ predicted  0  1  2  recall\n0                10  0  0  1.0000\n"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("epoch ")).count(), 40, "one summary line per epoch:\n{err}");
    let (_, done) = iris_with(&["--lr", "0.1"]);
    let m: Vec<Vec<u64>> = serde_json::from_value(done["confusion"].clone()).unwrap();
    assert_eq!(m.iter().flatten().sum::<u64>(), 30);
    let right: u64 = (0..3).map(|i| m[i][i]).sum();
    assert_eq!(right as f64, (done["val_accuracy"].as_f64().unwrap() * 30.0).round());
    // The plot: loss and accuracy panels with train and validation curves, drawn by plotters.
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg width=\"1000\" height=\"450\""), "{}", &svg[..100]);
    for text in ["train loss", "validation loss", "train accuracy", "validation accuracy"] {
        assert!(svg.contains(text), "no {text} in the plot");
    }
}

#[test]
fn diabetes_regression_reaches_r2_of_04_and_predicts() {
    let s = Scratch::new("diabetes");
    let ck = s.path("d.safetensors");
    let preds = s.path("pred.csv");
    let (epochs, done) = train_json(&[
        "examples/diabetes.bp",
        "--data",
        "examples/data/diabetes_train.csv",
        "--val",
        "examples/data/diabetes_test.csv",
        "--standardize",
        "--lr",
        "0.05",
        "--epochs",
        "100",
        "--save",
        &ck,
    ]);
    let (r2, rmse) = (done["r2"].as_f64().unwrap(), done["rmse"].as_f64().unwrap());
    eprintln!("diabetes: test R² {r2}, RMSE {rmse}, {} examples/s", epochs[99]["examples_per_s"]);
    assert!(r2 >= 0.4, "test R² {r2}");
    assert!(epochs.iter().all(|e| e["train_accuracy"].is_null()), "no accuracy for real labels");
    assert!((rmse * rmse - epochs[99]["val_loss"].as_f64().unwrap()).abs() < 1e-3 * rmse * rmse, "{done}");
    let (_, err) = ok(&[
        "predict",
        "examples/diabetes.bp",
        "--params",
        &ck,
        "--data",
        "examples/data/diabetes_test.csv",
        "--out",
        &preds,
    ]);
    assert!(err.starts_with(&format!("R² {r2:.4}  RMSE {rmse:.4} on 88 examples")), "{err}");
    let text = std::fs::read_to_string(&preds).unwrap();
    assert_eq!(text.lines().next(), Some("output_0"));
    let p: Vec<f64> = text.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    assert_eq!(p.len(), 88);
    assert!(p.iter().all(|x| x.is_finite()), "{p:?}");
}

#[test]
fn a_label_of_several_columns_is_a_vector_target() {
    let s = Scratch::new("vector-label");
    let model = s.file(
        "two.bp",
        "input x[2]\nlabel t[2]\nparam W[2, 2] = 0\nparam b[2] = 0\np = W @ x + b\nloss mse(p, t)\noutput p\n",
    );
    let data = (0..64).fold("t1,a,b,t0\n".to_string(), |t, i| {
        let (a, b) = ((i % 8) as f64 / 4.0 - 1.0, (i / 8) as f64 / 4.0 - 1.0);
        t + &format!("{},{a},{b},{}\n", a - b, 2.0 * a + b + 1.0)
    });
    let file = s.file("d.csv", &data);
    let ck = s.path("p.safetensors");
    let (_, done) = train_json(&[
        &model,
        "--data",
        &file,
        "--label",
        "t0,t1",
        "--optimizer",
        "adam",
        "--lr",
        "0.05",
        "--epochs",
        "80",
        "--batch",
        "8",
        "--save",
        &ck,
    ]);
    assert!(done["r2"].as_f64().unwrap() > 0.999, "{done}");
    let (out, err) = ok(&["predict", &model, "--params", &ck, "--data", &file, "--label", "t0,t1"]);
    assert_eq!(out.lines().next(), Some("output_0,output_1"));
    let r2: f64 = err.split_whitespace().nth(1).and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("{err}"));
    assert!(r2 > 0.999, "{err}");
}

// ---------------------------------------------------------------- checkpoints

#[test]
fn checkpoints_carry_metadata_and_optimizer_state_and_load_in_python() {
    let s = Scratch::new("meta");
    let ck = s.path("iris.safetensors");
    iris_with(&["--optimizer", "adam", "--lr", "0.01", "--epochs", "5", "--save", &ck]);
    let model = bpc::Model::load(root().join("examples/iris.bp")).unwrap();
    let (params, meta, state) =
        bpc::train::checkpoint::load_with_state(Path::new(&ck), &model.func, Some(bpc::autodiff::Optimizer::Adam))
            .unwrap();
    assert_eq!(params.len(), 4);
    assert_eq!((meta.model_hash.clone(), meta.epochs, meta.examples), (model.hash(), 5, 0));
    assert_eq!(meta.standardizer.as_ref().map(|s| s.len()), Some(4));
    assert_eq!((meta.optimizer.as_deref(), meta.optimizer_steps), (Some("adam"), 5 * 8));
    let state = state.expect("adam state");
    assert_eq!(state.slab.info.iter().map(|i| i.name.as_str()).collect::<Vec<_>>()[..2], ["exp_avg.W1", "exp_avg.b1"]);
    assert!(state.slab.data.iter().any(|&x| x != 0.0));

    let python = Command::new("python3").args(["-c", "import safetensors.numpy"]).output();
    if !python.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipped: Python's safetensors (and numpy) are not installed, so the checkpoint is not read from Python"
        );
        return;
    }
    let script = s.file(
        "read.py",
        "import json, sys\n\
         from safetensors import safe_open\n\
         from safetensors.numpy import load_file\n\
         t = load_file(sys.argv[1])\n\
         with safe_open(sys.argv[1], framework='np') as f:\n    meta = f.metadata()\n\
         print(json.dumps({'shapes': {k: list(v.shape) for k, v in t.items()}, 'dtype': str(t['W1'].dtype),\n\
             'W1': float(t['W1'][0, 0]), 'meta': meta}))\n",
    );
    let o = Command::new("python3").args([script.as_str(), ck.as_str()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["shapes"]["W1"], serde_json::json!([16, 4]));
    assert_eq!(j["shapes"]["optimizer.exp_avg_sq.b2"], serde_json::json!([3]));
    assert_eq!(j["dtype"], "float32");
    assert_eq!(j["W1"].as_f64().unwrap(), f64::from(params.get("W1").unwrap()[0]));
    let m = &j["meta"];
    assert_eq!((m["bpc.model_hash"].as_str(), m["bpc.epochs"].as_str()), (Some(model.hash().as_str()), Some("5")));
    assert_eq!((m["bpc.optimizer"].as_str(), m["bpc.optimizer.steps"].as_str()), (Some("adam"), Some("40")));
    let mean: Vec<f64> = serde_json::from_str(m["bpc.standardize.mean"].as_str().unwrap()).unwrap();
    assert_eq!(mean.len(), 4);
    eprintln!("Python's safetensors read the checkpoint: {}", j["shapes"]);
}

#[test]
fn a_checkpoint_of_another_model_is_rejected_naming_the_params() {
    let s = Scratch::new("other-model");
    let ck = s.path("iris.safetensors");
    iris_with(&["--lr", "0.1", "--epochs", "2", "--save", &ck]);
    let src = std::fs::read_to_string(root().join("examples/iris.bp")).unwrap();
    let narrow = s.file(
        "narrow.bp",
        &src.replace("W1[16, 4]", "W1[8, 4]").replace("b1[16]", "b1[8]").replace("W2[3, 16]", "W2[3, 8]"),
    );
    for cmd in ["train", "predict", "eval"] {
        let err = match cmd {
            "train" => fails_with(1, &[cmd, &narrow, "--data", "examples/data/iris_train.csv", "--init", &ck]),
            "predict" => fails_with(1, &[cmd, &narrow, "--data", "examples/data/iris_train.csv", "--params", &ck]),
            _ => fails_with(1, &[cmd, &narrow, "--params", &ck]),
        };
        assert!(
            err.contains(&format!(
                "{ck}: does not fit the model: param W1 has shape [16, 4] in the checkpoint but [8, 4] in the model; \
                 param b1 has shape [16] in the checkpoint but [8] in the model; \
                 param W2 has shape [3, 16] in the checkpoint but [3, 8] in the model (is it a checkpoint of {narrow}?)"
            )),
            "{cmd}: {err}"
        );
    }
    // A file that is no checkpoint at all gets no such hint.
    let missing = s.path("none.safetensors");
    let err = fails_with(1, &["predict", &narrow, "--data", "examples/data/iris_train.csv", "--params", &missing]);
    assert!(err.contains(&format!("{missing}: cannot open: ")) && !err.contains("is it a checkpoint"), "{err}");
}

/// A CSV file given where the model goes says so, by its name or by its first line, for
/// `train` and `predict`.
#[test]
fn a_csv_given_as_the_model_is_named_as_such() {
    let s = Scratch::new("csv-model");
    let renamed =
        s.file("iris_train.txt", &std::fs::read_to_string(root().join("examples/data/iris_train.csv")).unwrap());
    let quoted = s.file("quoted.data", "\u{feff}\"sepal length\",\"sepal width\",label\n5.1,3.5,0\n");
    for model in ["examples/data/iris_train.csv", "examples/data/digits_train.csv.gz", &renamed, &quoted] {
        for cmd in ["train", "predict"] {
            let mut args = vec![cmd, model, "--data", "examples/data/iris_train.csv"];
            if cmd == "predict" {
                args.extend_from_slice(&["--params", "p.safetensors"]);
            }
            let err = fails_with(1, &args);
            assert_eq!(
                err,
                format!(
                    "error: {model}: this looks like a CSV file, not a .bp model; \
                     the model comes first, data goes in --data\n"
                ),
                "{cmd} {model}"
            );
        }
    }
    // A broken model stays a model error.
    let broken = s.file("broken.bp", "input x[4]\nparam W[3, 4] ~ normal(0, 1)\nloss sum(W @ y)\n");
    let err = fails_with(1, &["train", &broken, "--data", "examples/data/iris_train.csv"]);
    assert!(!err.contains("CSV") && err.contains("broken.bp:3:"), "{err}");
}

#[test]
fn ctrl_c_saves_and_the_run_resumes_from_the_checkpoint() {
    let s = Scratch::new("ctrl-c");
    let ck = s.path("digits.safetensors");
    let args = [
        "train",
        "examples/digits.bp",
        "--data",
        "examples/data/digits_train.csv",
        "--val",
        "examples/data/digits_test.csv",
        "--standardize",
        "--optimizer",
        "adam",
        "--batch",
        "16",
        "--epochs",
        "100000",
        "--json",
        "--save",
        &ck,
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpc"))
        .current_dir(root())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"epoch\":1,"), "{first}");
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let (mut rest, mut err) = (String::new(), String::new());
    stdout.read_to_string(&mut rest).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("interrupt: finishing this step, then saving"), "{err}");
    assert!(err.contains(&format!("saved {ck} (resume with --init {ck})")), "{err}");

    let model = bpc::Model::load(root().join("examples/digits.bp")).unwrap();
    let (_, meta, state) =
        bpc::train::checkpoint::load_with_state(Path::new(&ck), &model.func, Some(bpc::autodiff::Optimizer::Adam))
            .unwrap();
    let state = state.expect("adam state saved on Ctrl-C");
    let steps_per_epoch = 1438usize.div_ceil(16) as u64;
    assert!(meta.epochs >= 1 && meta.examples < 1438, "{meta:?}");
    assert_eq!(meta.target_epochs, Some(100000));
    // Every whole epoch's figures, except one finished by the very step that was interrupted.
    let whole = meta.history.iter().map(|e| e.epoch).collect::<Vec<_>>();
    assert!(
        whole == (1..=meta.epochs).collect::<Vec<_>>() || whole == (1..meta.epochs).collect::<Vec<_>>(),
        "{whole:?}"
    );
    assert_eq!(state.steps, meta.epochs as u64 * steps_per_epoch + meta.examples.div_ceil(16) as u64);
    let resume_to = (meta.epochs + 2).to_string();
    let mut resume = args.to_vec();
    resume[12] = &resume_to;
    resume.extend_from_slice(&["--init", &ck, "--quiet"]);
    let (out, _) = ok(&resume);
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["epoch"].as_u64(), Some(meta.epochs as u64 + 1), "{out}");
    assert_eq!(lines.len(), 3, "{out}");
    let acc = lines[2]["val_accuracy"].as_f64().unwrap();
    assert!(acc > 0.9, "{acc}");
    let (_, err) = ok(&["predict", "examples/digits.bp", "--params", &ck, "--data", "examples/data/digits_test.csv"]);
    let predicted: f64 = err.split_whitespace().nth(1).and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("{err}"));
    assert_eq!(predicted, (acc * 1e4).round() / 1e4, "{err}");
    // Resuming a finished run asks for more epochs.
    let done = (meta.epochs + 2).to_string();
    let err = fails_with(
        1,
        &["train", "examples/digits.bp", "--data", "examples/data/digits_train.csv", "--init", &ck, "--epochs", &done],
    );
    assert!(err.contains(&format!("{ck} has already done {done} epochs: give --epochs more than {done}")), "{err}");
}

/// Resuming with only `--init` goes on as before: the checkpoint's optimizer with its
/// settings, learning rate, schedule and seed; the result is bit-identical to one run.
#[test]
fn a_resumed_run_keeps_the_checkpoints_optimizer_schedule_and_seed() {
    let s = Scratch::new("resume-settings");
    let ck = s.path("p.safetensors");
    let how = ["--optimizer", "adam", "--beta1", "0.8", "--lr", "0.02", "--lr-schedule", "step:2:0.5", "--seed", "3"];
    let data = ["examples/iris.bp", "--data", "examples/data/iris_train.csv", "--standardize", "--batch", "16"];
    let (whole, _) = train_json(&[&data[..], &how[..], &["--epochs", "4"]].concat());
    train_json(&[&data[..], &how[..], &["--epochs", "2", "--save", &ck]].concat());
    let mut resume = data.to_vec();
    resume.extend_from_slice(&["--epochs", "4", "--init", &ck]);
    let (_, err) = ok(&[&["train"][..], &resume].concat());
    assert!(err.contains("adam lr 0.02 (step:2:0.5), 4 epochs\nresuming after epoch 2"), "{err}");
    let (rest, _) = train_json(&resume);
    let losses = |e: &[Value]| e.iter().map(|e| e["train_loss"].to_string()).collect::<Vec<_>>();
    assert_eq!(losses(&rest), losses(&whole[2..]), "resumed epochs 3 and 4 match the whole run");
    // A flag given again wins; another optimizer starts from its own defaults.
    let (_, err) = ok(&[&["train"][..], &resume, &["--lr", "0.05"]].concat());
    assert!(err.contains("adam lr 0.05 (step:2:0.5)"), "{err}");
    let (_, err) = ok(&[&["train"][..], &resume, &["--optimizer", "sgd"]].concat());
    assert!(err.contains("holds adam's optimizer state; sgd starts from zero state"), "{err}");
    assert!(err.contains("sgd lr 0.01 (step:2:0.5)"), "{err}");
    let err = fails_with(2, &[&["train"][..], &resume, &["--momentum", "0.5"]].concat());
    assert!(err.contains("--momentum applies to --optimizer momentum, not to --optimizer adam"), "{err}");
}

/// `bpc --help` and `bpc train --help` tell a newcomer how to train, stop, resume and predict,
/// and their example commands run as printed (with fewer epochs and files in a scratch directory).
#[test]
fn the_help_examples_train_resume_and_predict() {
    let s = Scratch::new("help");
    for help in [&["--help"][..], &["train", "--help"]] {
        let (text, _) = ok(help);
        for needle in ["bpc train ", "--optimizer adam", "Ctrl-C", "--init digits.safetensors", "bpc predict "] {
            assert!(text.contains(needle), "`bpc {}` lacks {needle}:\n{text}", help.join(" "));
        }
        let examples: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("bpc train ") || l.starts_with("bpc predict "))
            .collect();
        assert_eq!(examples.len(), if help.len() == 1 { 2 } else { 3 }, "{text}");
        for line in examples {
            let line = line.split(" #").next().unwrap();
            let mut args: Vec<String> = line.split_whitespace().skip(1).map(str::to_string).collect();
            for a in &mut args {
                if a.ends_with(".safetensors")
                    || a.ends_with(".csv") && !a.starts_with("examples/")
                    || a.ends_with(".svg")
                {
                    *a = s.path(a);
                }
            }
            if let Some(i) = args.iter().position(|a| a == "--epochs") {
                args[i + 1] = (args[i + 1].parse::<usize>().unwrap() / 200).to_string();
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let (_, err) = ok(&refs);
            assert!(!err.contains("warning"), "{line}:\n{err}");
        }
    }
    let pred = std::fs::read_to_string(s.path("predictions.csv")).unwrap();
    assert_eq!(pred.lines().count(), 360);
    assert!(Path::new(&s.path("curve.svg")).exists());
}

#[test]
fn save_every_keeps_the_last_good_checkpoint_when_training_diverges() {
    let s = Scratch::new("save-every");
    let (model, train, _) = lines(&s);
    let ck = s.path("p.safetensors");
    // The learning rate grows 100-fold every epoch until the run diverges.
    let err = fails_with(
        1,
        &[
            "train",
            &model,
            "--data",
            &train,
            "--lr",
            "0.001",
            "--lr-schedule",
            "step:1:100",
            "--batch",
            "4",
            "--epochs",
            "20",
            "--save",
            &ck,
            "--save-every",
            "1",
            "--quiet",
        ],
    );
    let at = err.find("epoch ").unwrap_or_else(|| panic!("{err}"));
    let epoch: usize = err[at + 6..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    assert!(err.contains("training diverged") && epoch >= 3, "{err}");
    assert!(err.contains(&format!("training diverged: the loss is inf at step 4 of epoch {epoch}")), "{err}");
    assert!(err.contains(&format!("{ck} keeps the last good checkpoint, of epoch {}", epoch - 1)), "{err}");
    // The error reads as a failed training run (not a fault of the model file), names the
    // files, and suggests only what the run did not use.
    assert!(
        err.starts_with(&format!(
            "error: training diverged: the loss is inf at step 4 of epoch {epoch}; nothing was saved \
             (training {model} on {train}; try a smaller --lr than 0.001 or --standardize; \
             --check-finite names the op that overflowed)\n"
        )),
        "{err}"
    );
    let standardized = fails_with(
        1,
        &[
            "train",
            &model,
            "--data",
            &train,
            "--lr",
            "0.001",
            "--lr-schedule",
            "step:1:100",
            "--epochs",
            "20",
            "--standardize",
            "--quiet",
        ],
    );
    assert!(standardized.starts_with("error: training diverged: the loss is "), "{standardized}");
    assert!(
        standardized.contains(&format!(
            "nothing was saved (training {model} on {train}; try a smaller --lr than 0.001; \
             --check-finite names the op that overflowed)"
        )),
        "{standardized}"
    );
    let m = bpc::Model::load(&model).unwrap();
    let (params, meta) = bpc::train::checkpoint::load(Path::new(&ck), &m.func).unwrap();
    assert_eq!(meta.epochs, epoch - 1, "the checkpoint of the last good epoch");
    assert!(params.data.iter().all(|x| x.is_finite()), "{:?}", params.data);
}

#[test]
fn the_same_seed_and_threads_give_identical_losses() {
    let run = |seed: &str| {
        let (epochs, _) = train_json(&[
            "examples/digits.bp",
            "--data",
            "examples/data/digits_train.csv",
            "--val",
            "examples/data/digits_test.csv",
            "--standardize",
            "--optimizer",
            "adam",
            "--epochs",
            "4",
            "--threads",
            "2",
            "--seed",
            seed,
        ]);
        epochs.iter().map(|e| (e["train_loss"].to_string(), e["val_loss"].to_string())).collect::<Vec<_>>()
    };
    let first = run("3");
    assert_eq!(first, run("3"));
    assert_ne!(first, run("4"));
}

/// Two identical runs write byte-identical checkpoints (the metadata keys are sorted).
#[test]
fn identical_runs_write_identical_checkpoint_bytes() {
    let s = Scratch::new("bytes");
    let (a, b) = (s.path("a.safetensors"), s.path("b.safetensors"));
    for p in [&a, &b] {
        iris_with(&["--optimizer", "adam", "--epochs", "3", "--threads", "1", "--save", p]);
    }
    let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(x == y, "the checkpoints of two identical runs differ");
    let n = u64::from_le_bytes(x[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&x[8..8 + n]).unwrap();
    let keys: Vec<&str> = header.split("\"bpc.").skip(1).map(|k| k.split('"').next().unwrap()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "{header}");
    assert!(keys.contains(&"history") && keys.contains(&"target_epochs"), "{keys:?}");
}

/// A resumed run keeps the earlier epochs' figures: its checkpoint holds every epoch, its
/// plot draws every epoch, its summary counts them; without --epochs it goes on to the
/// count the checkpoint's run was started with. One epoch is "1 epoch".
#[test]
fn a_resumed_run_plots_and_keeps_every_epoch() {
    let s = Scratch::new("history");
    let (ck, ck2, plot) = (s.path("p.safetensors"), s.path("q.safetensors"), s.path("curve.svg"));
    let (first, _) = iris_with(&["--lr", "0.1", "--epochs", "3", "--save", &ck]);
    // Resuming a finished run without --epochs: its target (3) is reached.
    let err = fails_with(1, &["train", IRIS[0], "--data", IRIS[2], "--init", &ck]);
    assert!(err.contains(&format!("{ck} has already done 3 epochs: give --epochs more than 3")), "{err}");
    let mut args = vec!["train"];
    args.extend_from_slice(&IRIS);
    args.extend_from_slice(&["--epochs", "6", "--init", &ck, "--save", &ck2, "--plot", &plot, "--json"]);
    let o = bpc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(", 6 epochs\nresuming after epoch 3\n"), "{err}");
    assert!(!err.contains("examples of epoch"), "{err}");
    assert!(err.contains("done: 3 epochs more (6 in all) in "), "{err}");
    let mut rest: Vec<Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    rest.pop();
    let all: Vec<&Value> = first.iter().chain(&rest).collect();
    assert_eq!(all.iter().map(|e| e["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);

    let model = bpc::Model::load(root().join("examples/iris.bp")).unwrap();
    let (_, meta) = bpc::train::checkpoint::load(Path::new(&ck2), &model.func).unwrap();
    assert_eq!((meta.epochs, meta.target_epochs, meta.history.len()), (6, Some(6), 6));
    for (h, e) in meta.history.iter().zip(&all) {
        assert_eq!(h.epoch as u64, e["epoch"].as_u64().unwrap());
        assert_eq!(Some(h.train_loss), e["train_loss"].as_f64(), "epoch {}", h.epoch);
        assert_eq!(h.train_accuracy, e["train_accuracy"].as_f64(), "epoch {}", h.epoch);
        assert_eq!(h.val_loss, e["val_loss"].as_f64(), "epoch {}", h.epoch);
        assert_eq!(h.val_accuracy, e["val_accuracy"].as_f64(), "epoch {}", h.epoch);
    }
    // The plot's train-loss curve has a point for each of the six epochs, and its x axis
    // starts at epoch 1.
    let svg = std::fs::read_to_string(&plot).unwrap();
    let curves: Vec<usize> = svg
        .split(r##"stroke="#1F77B4" stroke-width="2" points=""##)
        .skip(1)
        .map(|p| p.split('"').next().unwrap().split_whitespace().count())
        .collect();
    assert_eq!(curves, [6, 2, 6, 2], "train loss, its legend mark, train accuracy, its legend mark");
    let regular = bpc::train::plot::training_curves("t", &meta.history).unwrap();
    assert_eq!(svg.matches("points=").count(), regular.matches("points=").count());

    // Without --epochs a resumed run goes on to the checkpoint's target.
    let (_, mut meta) = bpc::train::checkpoint::load(Path::new(&ck), &model.func).unwrap();
    assert_eq!((meta.epochs, meta.target_epochs), (3, Some(3)));
    let (params, _, state) =
        bpc::train::checkpoint::load_with_state(Path::new(&ck), &model.func, Some(bpc::autodiff::Optimizer::Sgd))
            .unwrap();
    meta.target_epochs = Some(5);
    bpc::train::checkpoint::save_with_state(Path::new(&ck), &params, state.as_ref(), &meta).unwrap();
    let mut args = IRIS.to_vec();
    args.extend_from_slice(&["--init", &ck]);
    let (epochs, done) = train_json(&args);
    let numbers: Vec<u64> = epochs.iter().map(|e| e["epoch"].as_u64().unwrap()).collect();
    assert_eq!((numbers, done["epochs"].as_u64()), (vec![4, 5], Some(5)));
    let (_, err) = ok(&["train", IRIS[0], "--data", IRIS[2], "--epochs", "1"]);
    assert!(err.contains(", 1 epoch\n") && err.contains("done: 1 epoch in "), "{err}");
}
