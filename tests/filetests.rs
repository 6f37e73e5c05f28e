//! Filetests: `tests/filetests/**/*.bp`, Cranelift's filetest shape for `.bp` models.
//!
//! Each file is a model (so `bpc eval FILE --set ...` runs it as it is) whose first line
//! names the test kind and whose comment lines hold the expectations:
//!
//! ```text
//! # test run
//! input x
//! loss where(x > 0, sqrt(x), 0)
//! # run: x=0 => loss=0, grad.x=0
//! # gradcheck: x=2.5
//! ```
//!
//! - `# test run`: each `# run: POINT => EXPECTED` evaluates the loss and the gradient of
//!   every input, real label, param and binding at `POINT` (one example, `--set` syntax) with
//!   the float64 interpreter (to 1e-9 relative) and with the JIT at `-O0` and at `-O2` (to
//!   float32 rounding, `|a − b| ≤ 1e-5·max(1, |b|)`); inf and NaN must match exactly. Each
//!   `# gradcheck: POINT` compares the interpreter's gradients with central finite differences
//!   of the interpreted loss (`h = 1e-6·max(1, |x|)`, to 1e-6·max(1, |fd|)), and checks
//!   second order there: with every `input` made a `param`, the Hessian–vector product
//!   (the adjoint differentiated again) against central differences of the gradient, in the
//!   interpreter and in the JIT at `-O0` and `-O2` ([`second_order`]).
//! - `# test error`: the model must not compile; each `# error: TEXT` must occur in the
//!   rendered diagnostics.
//!
//! `BPC_BLESS=1` rewrites every `# run:` line's expectations from the interpreter. A run prints
//! one line per failure and `N passed, M failed`, and exits non-zero on a failure.

use std::path::{Path, PathBuf};

use bpc::ir::{DType, Function, Tensor, interpret};
use bpc::{Arg, Model, OptLevel};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let bless = std::env::var_os("BPC_BLESS").is_some_and(|v| v == "1");
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let (mut passed, mut failed) = (0, 0);
    for path in files {
        let rel = path.strip_prefix(&root).unwrap_or(&path).display().to_string();
        if filter.as_ref().is_some_and(|f| !rel.contains(f.as_str())) {
            continue;
        }
        match run_file(&path, bless) {
            Ok(()) => passed += 1,
            Err(e) => {
                failed += 1;
                println!("FAILED {rel}: {e}");
            }
        }
    }
    println!("filetests: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "bp") {
            out.push(p);
        }
    }
}

fn run_file(path: &Path, bless: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let kind = text.lines().next().and_then(|l| l.strip_prefix("# test ")).map(str::trim);
    match kind {
        Some("run") => run_test(path, &text, bless),
        Some("error") => error_test(path, &text),
        _ => Err("the first line must be `# test run` or `# test error`".into()),
    }
}

fn directives<'t>(text: &'t str, key: &str) -> impl Iterator<Item = (usize, &'t str)> {
    let key = format!("# {key}:");
    text.lines().enumerate().filter_map(move |(i, l)| l.strip_prefix(key.as_str()).map(|r| (i, r.trim())))
}

fn error_test(path: &Path, text: &str) -> Result<(), String> {
    let err = match Model::from_source(path.display().to_string(), text) {
        Ok(_) => return Err("compiled, but an error was expected".into()),
        Err(e) => e.to_string(),
    };
    let mut n = 0;
    for (_, want) in directives(text, "error") {
        n += 1;
        if !err.contains(want) {
            return Err(format!("the diagnostics do not contain `{want}`:\n{err}"));
        }
    }
    if n == 0 { Err("no `# error:` line".into()) } else { Ok(()) }
}

/// The value-and-grad function of a model, its gradient names, and the compiled code.
struct Subject {
    model: Model,
    vg: Function,
    natives: Vec<(OptLevel, bpc::Compiled)>,
}

fn run_test(path: &Path, text: &str, bless: bool) -> Result<(), String> {
    let model = Model::from_source(path.display().to_string(), text).map_err(|e| e.to_string())?;
    let wrt = model.grad_names();
    let refs: Vec<&str> = wrt.iter().map(String::as_str).collect();
    let vg = model.value_and_grad(&refs).map_err(|e| e.to_string())?;
    let mut natives = Vec::new();
    for level in [OptLevel::O0, OptLevel::O2] {
        natives.push((level, model.compile(&vg, 1, level).map_err(|e| e.to_string())?));
    }
    let s = Subject { model, vg, natives };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut checks = 0;
    for (i, rest) in directives(text, "run") {
        checks += 1;
        let (point, want) = rest.split_once("=>").unwrap_or((rest, ""));
        let args = bind(&s.model, point.trim())?;
        let got = interpreted(&s.vg, &args)?;
        if bless {
            let exp: Vec<String> = got.iter().map(|(n, d, shape)| format!("{n}={}", show(d, shape))).collect();
            lines[i] = format!("# run: {} => {}", point.trim(), exp.join(", "));
            continue;
        }
        let want = parse_pairs(want.trim())?;
        if want.is_empty() {
            return Err(format!("line {}: no expectations (run with BPC_BLESS=1)", i + 1));
        }
        for (name, w) in &want {
            let (_, g, _) =
                got.iter().find(|(n, _, _)| n == name).ok_or(format!("line {}: no result `{name}`", i + 1))?;
            compare(g, &w.0, 1e-9, &format!("line {}: interpreter {name}", i + 1))?;
        }
        for (level, native) in &s.natives {
            let jit = jitted(&s.vg, native, &args)?;
            for (name, w) in &want {
                let (_, g, _) = jit.iter().find(|(n, _, _)| n == name).expect("same results");
                compare(g, &w.0, 1e-5, &format!("line {}: JIT {level:?} {name}", i + 1))?;
            }
        }
    }
    for (i, point) in directives(text, "gradcheck") {
        checks += 1;
        gradcheck(&s, &bind(&s.model, point)?).map_err(|e| format!("line {}: {e}", i + 1))?;
        second_order(path, text, point).map_err(|e| format!("line {}: second order: {e}", i + 1))?;
    }
    if bless {
        let mut out = lines.join("\n");
        out.push('\n');
        std::fs::write(path, out).map_err(|e| e.to_string())?;
    }
    if checks == 0 { Err("no `# run:` or `# gradcheck:` line".into()) } else { Ok(()) }
}

/// `|got − want| ≤ tol·max(1, |want|)`, or the same non-finite value.
fn compare(got: &[f64], want: &[f64], tol: f64, what: &str) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} elements, expected {}", got.len(), want.len()));
    }
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok =
            if w.is_finite() { within(g - w, tol * w.abs().max(1.0)) } else { g == w || (g.is_nan() && w.is_nan()) };
        if !ok {
            return Err(format!("{what}[{k}] = {g}, expected {w}"));
        }
    }
    Ok(())
}

/// Results `loss` and `grad.NAME` in `vg` order, with example shapes.
type Results = Vec<(String, Vec<f64>, Vec<usize>)>;

fn interpreted(vg: &Function, args: &[Tensor]) -> Result<Results, String> {
    let vals = interpret(vg, 1, args).map_err(|e| e.to_string())?;
    Ok(vg
        .results
        .iter()
        .filter(|r| r.name == "loss" || r.name.starts_with("grad."))
        .map(|r| (r.name.clone(), vals[r.value.index()].data.clone(), vg.shape(r.value).dims.clone()))
        .collect())
}

fn jitted(vg: &Function, native: &bpc::Compiled, args: &[Tensor]) -> Result<Results, String> {
    let f32s: Vec<Vec<f32>> = args.iter().map(|t| t.data.iter().map(|&x| x as f32).collect()).collect();
    let i32s: Vec<Vec<i32>> = args.iter().map(|t| t.data.iter().map(|&x| x as i32).collect()).collect();
    let mut a: Vec<Arg> = vg
        .args
        .iter()
        .enumerate()
        .map(|(i, x)| if x.ty.dtype == DType::I32 { Arg::I32(&i32s[i]) } else { Arg::F32(&f32s[i]) })
        .collect();
    // NaN-poisoned: every element must be written.
    let mut bufs: Vec<Vec<f32>> = vg.results.iter().map(|r| vec![f32::NAN; vg.shape(r.value).len(1)]).collect();
    let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(Vec::as_mut_slice).collect();
    native.run(&mut native.workspace(), &mut a, &mut outs).map_err(|e| e.0)?;
    Ok(vg
        .results
        .iter()
        .zip(bufs)
        .map(|(r, b)| (r.name.clone(), b.into_iter().map(f64::from).collect(), vg.shape(r.value).dims.clone()))
        .collect())
}

fn gradcheck(s: &Subject, args: &[Tensor]) -> Result<(), String> {
    let f = &s.model.func;
    let got = interpreted(&s.vg, args)?;
    let loss = f.result("loss").expect("a loss").value.index();
    for (a, arg) in f.args.iter().enumerate() {
        if !arg.ty.is_float() {
            continue;
        }
        let (_, g, _) = got.iter().find(|(n, _, _)| *n == format!("grad.{}", arg.name)).expect("a gradient per arg");
        for (i, &ad) in g.iter().enumerate() {
            let x = args[a].data[i];
            let h = 1e-6 * x.abs().max(1.0);
            let at = |d: f64| -> Result<f64, String> {
                let mut moved = args.to_vec();
                moved[a].data[i] = x + d;
                Ok(interpret(f, 1, &moved).map_err(|e| e.to_string())?[loss].data[0])
            };
            let fd = (at(h)? - at(-h)?) / (2.0 * h);
            if !within(ad - fd, 1e-6 * fd.abs().max(1.0)) {
                return Err(format!("d loss / d {}[{i}] = {ad}, finite differences {fd}", arg.name));
            }
        }
    }
    Ok(())
}

/// Second order at a `# gradcheck:` point: the model with every `input` declared a `param`
/// (so [`Model::hvp`] differentiates with respect to it), its Hessian–vector product along a
/// fixed direction (elements ±0.3, ±0.7, ...) by the interpreter against central differences
/// of the interpreted gradient along that direction (`h = 1e-5`, to 1e-6·max(1, |fd|)), and by
/// the JIT at `-O0` and `-O2` against the interpreter (to 1e-4·max(1, |x|): float32 rounding
/// through two sweeps).
fn second_order(path: &Path, text: &str, point: &str) -> Result<(), String> {
    let params: String =
        text.lines().map(|l| l.strip_prefix("input ").map_or(l.to_string(), |r| format!("param {r}")) + "\n").collect();
    let model = Model::from_source(path.display().to_string(), params).map_err(|e| e.to_string())?;
    let f = &model.func;
    let args = bind(&model, point)?;
    let names: Vec<String> = f.params().map(|id| f.arg(id).name.clone()).collect();
    if names.is_empty() {
        return Ok(());
    }
    let h = model.hvp().map_err(|e| e.to_string())?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let vg = model.value_and_grad(&refs).map_err(|e| e.to_string())?;
    let mut k = 0usize;
    let dirs: Vec<Tensor> = f
        .params()
        .map(|id| {
            let n = f.arg(id).ty.shape.example_len();
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    k += 1;
                    (0.3 + 0.4 * (k % 3) as f64) * if k.is_multiple_of(2) { -1.0 } else { 1.0 }
                })
                .collect();
            Tensor::new(f.arg(id).ty.shape.sizes(1), v)
        })
        .collect();
    let mut all = args.clone();
    all.extend(dirs.iter().cloned());
    let hv = interpreted(&h, &all)?;
    let step = 1e-5;
    let moved = |sign: f64| -> Result<Results, String> {
        let mut a = args.clone();
        for (id, d) in f.params().zip(&dirs) {
            for (x, v) in a[id.index()].data.iter_mut().zip(&d.data) {
                *x += sign * step * v;
            }
        }
        interpreted(&vg, &a)
    };
    let (up, down) = (moved(1.0)?, moved(-1.0)?);
    for name in &names {
        let g = format!("grad.{name}");
        let find = |r: &Results| r.iter().find(|(n, _, _)| *n == g).map(|(_, d, _)| d.clone()).expect("a gradient");
        let fd: Vec<f64> = find(&up).iter().zip(find(&down)).map(|(a, b)| (a - b) / (2.0 * step)).collect();
        for (i, (&ad, &fd)) in find(&hv).iter().zip(&fd).enumerate() {
            if !within(ad - fd, 1e-6 * fd.abs().max(1.0)) {
                return Err(format!("(H v)_{name}[{i}] = {ad}, finite differences of the gradient {fd}"));
            }
        }
    }
    for level in [OptLevel::O0, OptLevel::O2] {
        let native = model.compile(&h, 1, level).map_err(|e| e.to_string())?;
        for ((name, jit, _), (_, oracle, _)) in jitted(&h, &native, &all)?.iter().zip(&hv) {
            compare(jit, oracle, 1e-4, &format!("JIT {level:?} {name} of H v"))?;
        }
    }
    Ok(())
}

/// One tensor per argument of the model from `NAME=VALUE` pairs (every argument must be set).
fn bind(model: &Model, point: &str) -> Result<Vec<Tensor>, String> {
    let pairs = parse_pairs(point)?;
    let f = &model.func;
    f.args
        .iter()
        .map(|a| {
            let (_, (data, _)) =
                pairs.iter().find(|(n, _)| *n == a.name).ok_or(format!("`{}` is not set in `{point}`", a.name))?;
            let want = a.ty.shape.example_len();
            if data.len() != want {
                return Err(format!("`{}` has {} elements, expected {want}", a.name, data.len()));
            }
            Ok(Tensor::new(a.ty.shape.sizes(1), data.clone()))
        })
        .collect()
}

/// A parsed value: its elements and its shape.
type Value = (Vec<f64>, Vec<usize>);

/// `|diff| ≤ tol`; false for NaN.
fn within(diff: f64, tol: f64) -> bool {
    diff.abs() <= tol
}

/// `NAME=VALUE, ...` with VALUE a number (`inf`, `-inf`, `nan` too) or a nested list.
fn parse_pairs(text: &str) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, r) = rest.split_once('=').ok_or(format!("expected NAME=VALUE in `{rest}`"))?;
        let mut p = Parser { s: r.trim_start(), data: Vec::new() };
        let shape = p.value()?;
        out.push((name.trim().to_string(), (p.data, shape)));
        rest = p.s.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

struct Parser<'s> {
    s: &'s str,
    data: Vec<f64>,
}

impl Parser<'_> {
    /// Parses one value, returning its shape.
    fn value(&mut self) -> Result<Vec<usize>, String> {
        self.s = self.s.trim_start();
        if let Some(r) = self.s.strip_prefix('[') {
            self.s = r;
            let mut inner = None;
            let mut n = 0;
            loop {
                self.s = self.s.trim_start();
                if let Some(r) = self.s.strip_prefix(']') {
                    self.s = r;
                    break;
                }
                let shape = self.value()?;
                if inner.as_ref().is_some_and(|s| *s != shape) {
                    return Err("ragged list".into());
                }
                inner = Some(shape);
                n += 1;
                self.s = self.s.trim_start();
                self.s = self.s.strip_prefix(',').unwrap_or(self.s);
            }
            let mut shape = vec![n];
            shape.extend(inner.unwrap_or_default());
            return Ok(shape);
        }
        let end = self.s.find([',', ']', ' ']).unwrap_or(self.s.len());
        let (num, r) = self.s.split_at(end);
        let x: f64 = match num {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            "nan" | "NaN" => f64::NAN,
            _ => num.parse().map_err(|_| format!("bad number `{num}`"))?,
        };
        self.data.push(x);
        self.s = r;
        Ok(vec![])
    }
}

/// A value as the expectations write it: numbers to 10 significant digits, nested lists.
fn show(data: &[f64], shape: &[usize]) -> String {
    fn num(x: f64) -> String {
        if x.is_nan() {
            "nan".into()
        } else if x.is_infinite() {
            if x > 0.0 { "inf".into() } else { "-inf".into() }
        } else {
            let r: f64 = format!("{x:.9e}").parse().expect("a float");
            if r == 0.0 {
                "0".into()
            } else if r.abs() < 1e-4 || r.abs() >= 1e9 {
                format!("{r:e}")
            } else {
                format!("{r}")
            }
        }
    }
    match shape {
        [] => num(data[0]),
        [_, rest @ ..] => {
            let inner: usize = rest.iter().product();
            let parts: Vec<String> = data.chunks(inner.max(1)).map(|c| show(c, rest)).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}
