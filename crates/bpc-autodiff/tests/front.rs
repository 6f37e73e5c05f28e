//! The conformance examples (`.bp` sources) through `bpc_front::compile` and
//! `value_and_grad`: the lecture's numbers from their header comments, finite-difference
//! checks of whole models, and golden `--emit grad` text in `tests/golden/NAME.grad` at the
//! repository root (`BPC_BLESS=1` rewrites the expected files).

mod common;

use std::path::{Path, PathBuf};

use bpc_autodiff::value_and_grad;
use bpc_ir::{ArgKind, Function, Inst, Tensor, verify};
use common::{Case, Domain, assert_close, get, gradcheck, run};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `examples/NAME.bp` in the repository once it is there, else the shared conformance copy.
fn example_path(name: &str) -> PathBuf {
    let local = root().join("examples").join(format!("{name}.bp"));
    if local.exists() { local } else { root().join("../shared/examples").join(format!("{name}.bp")) }
}

fn compile(name: &str) -> Function {
    let path = example_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let src = bpc_front::Source::new(format!("examples/{name}.bp"), text);
    bpc_front::compile(&src).unwrap_or_else(|d| panic!("{name}:\n{}", bpc_front::render(&src, &d)))
}

/// What `--emit grad` differentiates by: every float argument, then every binding.
fn grad_names(f: &Function) -> Vec<String> {
    let args = f.args.iter().filter(|a| a.ty.is_float()).map(|a| a.name.clone());
    let bindings = f.names.iter().filter(|(_, v)| !matches!(f.inst(*v), Inst::Arg(_))).map(|(n, _)| n.clone());
    args.chain(bindings).collect()
}

fn value_and_all_grads(f: &Function) -> Function {
    let names = grad_names(f);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let g = value_and_grad(f, &names).unwrap();
    verify(&g).unwrap();
    g
}

/// One example (`B = 1`) with the scalars `values` in argument order.
fn eval(name: &str, values: &[&[f64]]) -> Vec<(String, Tensor)> {
    let f = compile(name);
    let args: Vec<Tensor> = f.args.iter().zip(values).map(|(a, v)| Tensor::new(a.ty.shape.sizes(1), *v)).collect();
    run(&value_and_all_grads(&f), 1, &args)
}

fn scalar(r: &[(String, Tensor)], name: &str) -> f64 {
    get(r, name).data[0]
}

#[test]
fn add_mul_from_source() {
    let r = eval("add_mul", &[&[-2.0], &[5.0], &[-4.0]]);
    let got: Vec<f64> = ["loss", "grad.x", "grad.y", "grad.z", "grad.q", "grad.f"].map(|n| scalar(&r, n)).to_vec();
    assert_eq!(got, [-12.0, -4.0, -4.0, 3.0, -4.0, 1.0]);
}

#[test]
fn sigmoid_neuron_from_source() {
    let r = eval("sigmoid_neuron", &[&[2.0], &[-1.0], &[-3.0], &[-2.0], &[-3.0]]);
    let got = ["loss", "grad.w0", "grad.x0", "grad.w1", "grad.x1", "grad.w2"].map(|n| scalar(&r, n));
    assert_close(&got, &[0.7310586, -0.1966119, 0.3932239, -0.3932239, -0.5898358, 0.1966119], 1e-6);
}

#[test]
fn squared_error_from_source() {
    let r = eval("squared_error", &[&[1.0, 2.0, 3.0], &[0.5, -1.0, 2.0], &[4.0]]);
    assert_eq!(get(&r, "loss").data, [0.25]);
    assert_eq!(get(&r, "grad.w").data, [0.5, -1.0, 2.0]);
    assert_eq!(get(&r, "grad.x").data, [1.0, 2.0, 3.0]);
    assert_eq!(get(&r, "grad.y").data, [-1.0]);
}

#[test]
fn logistic_from_source() {
    let r = eval("logistic", &[&[1.0, -1.0], &[2.0, 1.0]]);
    assert_close(&get(&r, "loss").data, &[0.3132617], 1e-7);
    assert_close(&get(&r, "grad.w").data, &[-0.5378828, -0.2689414], 1e-7);
}

#[test]
fn max_gate_from_source() {
    let r = eval("max_gate", &[&[4.0], &[2.0]]);
    assert_eq!(["loss", "grad.x", "grad.y"].map(|n| scalar(&r, n)), [4.0, 1.0, 0.0]);
}

#[test]
fn whole_models_against_finite_differences() {
    for name in ["add_mul", "sigmoid_neuron", "squared_error", "logistic", "max_gate", "iris"] {
        let f = compile(name);
        let domains = f
            .args
            .iter()
            .map(|a| match a.kind {
                ArgKind::Label { classes: Some(k) } => Domain::Classes(k),
                ArgKind::Input
                | ArgKind::Label { classes: None }
                | ArgKind::Param { .. }
                | ArgKind::Hyper
                | ArgKind::State => Domain::Any,
            })
            .collect();
        let loss = f.result("loss").unwrap().value;
        gradcheck(Case { f, domains }, loss);
    }
}

#[test]
fn golden_grad_text_of_the_examples() {
    let bless = std::env::var_os("BPC_BLESS").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for name in ["add_mul", "sigmoid_neuron", "max_gate", "squared_error", "logistic", "iris"] {
        let got = value_and_all_grads(&compile(name)).to_string();
        let golden = root().join("tests/golden").join(format!("{name}.grad"));
        if bless {
            std::fs::write(&golden, &got).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!("{name}: grad IR differs\n--- expected\n{want}--- got\n{got}")),
            Err(e) => failures.push(format!("{name}: {} ({e}); run with BPC_BLESS=1\n{got}", golden.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
