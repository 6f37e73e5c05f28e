//! `bpc check MODEL [--data D.csv] [--tol 1e-6]`: the float64 gradient check (SPEC §4).
//!
//! The adjoint program's gradients (run by the float64 interpreter) are compared with
//! central finite differences `(L(x + h) - L(x - h)) / 2h`, `h = 1e-5·max(1, |x|)`, of the
//! forward program, for every input, real label and param, at a few examples (the first
//! `--rows` of `--data`, else a fixed synthetic pattern) and the params' initial values.
//! Each element passes when `|numeric - analytic| <= tol·max(1, |analytic|)`. Large tensors
//! are sampled at `--samples` evenly spaced elements.

use bpc::ir::{ArgKind, Tensor};
use bpc::train::data::{self, LoadOptions};
use bpc::train::{Labels, Params};
use bpc::{Error, Model};

use super::train::schema;
use super::{CheckArgs, json_object};

/// The outcome for one argument.
struct Checked {
    name: String,
    elements: usize,
    checked: usize,
    max_error: f64,
    /// The worst element: (index, analytic, numeric).
    worst: (usize, f64, f64),
}

pub fn run(a: &CheckArgs) -> Result<(), Error> {
    if !(a.tol.is_finite() && a.tol >= 0.0) {
        return Err(Error::msg(format!("--tol {}: expected a finite number >= 0, such as 1e-6", a.tol)));
    }
    if a.samples == 0 {
        return Err(Error::msg("--samples 0: expected at least 1 element per tensor"));
    }
    let model = Model::load(&a.model)?;
    let f = &model.func;
    let (mut args, rows) = point(&model, a, a.rows.max(1) as usize)?;
    let wrt: Vec<String> = f
        .args
        .iter()
        .filter(|x| x.ty.is_float() && !matches!(x.kind, ArgKind::Hyper))
        .map(|x| x.name.clone())
        .collect();
    let refs: Vec<&str> = wrt.iter().map(String::as_str).collect();
    let vg = model.value_and_grad(&refs)?;
    let vals = bpc::ir::interpret(&vg, rows, &args).map_err(|e| Error::msg(format!("interpreter: {e}")))?;
    let loss_at = |args: &[Tensor]| -> Result<f64, Error> {
        let v = bpc::ir::interpret(f, rows, args).map_err(|e| Error::msg(format!("interpreter: {e}")))?;
        Ok(v[f.result("loss").expect("a model has a loss").value.index()].data[0])
    };
    let mut report = Vec::new();
    for name in &wrt {
        let i = f.arg_named(name).expect("wrt names are args").index();
        let grad = &vals[vg.result(&format!("grad.{name}")).expect("one gradient per name").value.index()].data;
        let n = args[i].data.len();
        let picks: Vec<usize> =
            if n <= a.samples { (0..n).collect() } else { (0..a.samples).map(|k| k * n / a.samples).collect() };
        let mut c =
            Checked { name: name.clone(), elements: n, checked: picks.len(), max_error: 0.0, worst: (0, 0.0, 0.0) };
        for &k in &picks {
            let x = args[i].data[k];
            let h = 1e-5 * x.abs().max(1.0);
            args[i].data[k] = x + h;
            let up = loss_at(&args)?;
            args[i].data[k] = x - h;
            let down = loss_at(&args)?;
            args[i].data[k] = x;
            let numeric = (up - down) / (2.0 * h);
            let err = (numeric - grad[k]).abs() / grad[k].abs().max(1.0);
            if err > c.max_error || err.is_nan() {
                c.max_error = err;
                c.worst = (k, grad[k], numeric);
            }
        }
        report.push(c);
    }
    let failed: Vec<&Checked> = report.iter().filter(|c| c.max_error.is_nan() || c.max_error > a.tol).collect();
    print_report(a, &report, rows);
    match failed.first() {
        None => Ok(()),
        Some(c) => Err(Error::msg(format!(
            "{}: gradient check failed for {} (element {}): adjoint {}, finite difference {}, relative error {:e} > {:e}",
            model.source.path, c.name, c.worst.0, c.worst.1, c.worst.2, c.max_error, a.tol
        ))),
    }
}

fn print_report(a: &CheckArgs, report: &[Checked], rows: usize) {
    if a.json {
        let checks: Vec<String> = report
            .iter()
            .map(|c| {
                json_object([
                    ("name".to_string(), serde_json::Value::from(c.name.clone()).to_string()),
                    ("elements".to_string(), c.elements.to_string()),
                    ("checked".to_string(), c.checked.to_string()),
                    ("max_error".to_string(), serde_json::Value::from(c.max_error).to_string()),
                ])
            })
            .collect();
        let ok = report.iter().all(|c| c.max_error <= a.tol);
        println!(
            "{}",
            json_object([
                ("ok".to_string(), ok.to_string()),
                ("examples".to_string(), rows.to_string()),
                ("tol".to_string(), serde_json::Value::from(a.tol).to_string()),
                ("checks".to_string(), format!("[{}]", checks.join(","))),
            ])
        );
    } else {
        println!("gradient check at {rows} examples, tolerance {:e}", a.tol);
        for c in report {
            let verdict = if c.max_error <= a.tol { "ok" } else { "FAILED" };
            println!(
                "  {:<12} {:>4}/{:<6} elements  max relative error {:.2e}  {verdict}",
                c.name, c.checked, c.elements, c.max_error
            );
        }
    }
}

/// Every argument as an f64 tensor, and the number of examples: examples from `--data` or
/// synthetic, params from the checkpoint or their initializers.
fn point(model: &Model, a: &CheckArgs, rows: usize) -> Result<(Vec<Tensor>, usize), Error> {
    let f = &model.func;
    let params = match &a.params {
        Some(p) => bpc::train::checkpoint::load(p, f).map_err(|e| Error::msg(e.to_string()))?.0,
        None => Params::init(f, a.seed).map_err(|e| Error::msg(format!("{}: {e}", model.source.path)))?,
    };
    let (features, labels, rows) = match &a.data {
        Some(path) => {
            let schema = schema(model)?;
            let d = data::load(path, &schema, &LoadOptions::default()).map_err(|e| Error::msg(e.to_string()))?;
            let r = rows.min(d.len());
            let labels: Vec<f64> = match &d.labels {
                Labels::Class { values, .. } => values[..r].iter().map(|&c| f64::from(c)).collect(),
                Labels::Real(values) => values[..r * d.label_width].iter().map(|&y| f64::from(y)).collect(),
                Labels::None => vec![0.0; r],
            };
            (d.features[..r * d.n_features].iter().map(|&x| f64::from(x)).collect::<Vec<_>>(), labels, r)
        }
        None => (Vec::new(), Vec::new(), rows),
    };
    let n_features: usize = f.inputs().map(|id| f.arg(id).ty.shape.example_len()).sum();
    let mut offset = 0;
    let mut pattern = Pattern(0x9e37_79b9_7f4a_7c15);
    let out = f.args.iter().map(|x| {
        let sizes = x.ty.shape.sizes(rows);
        let len = x.ty.shape.example_len();
        let data: Vec<f64> = match &x.kind {
            ArgKind::Input if !features.is_empty() => {
                let d = (0..rows).flat_map(|r| features[r * n_features + offset..][..len].to_vec()).collect();
                offset += len;
                d
            }
            ArgKind::Input => (0..rows * len).map(|_| pattern.next()).collect(),
            ArgKind::Label { classes: Some(k) } if labels.is_empty() => (0..rows).map(|r| (r % k) as f64).collect(),
            ArgKind::Label { classes: None } if labels.is_empty() => (0..rows * len).map(|_| pattern.next()).collect(),
            ArgKind::Label { .. } => labels.clone(),
            ArgKind::Param { .. } => params.get(&x.name).expect("every param").iter().map(|&p| f64::from(p)).collect(),
            ArgKind::Hyper | ArgKind::State => vec![0.0; len],
        };
        Tensor::new(sizes, data)
    });
    Ok((out.collect(), rows))
}

/// A fixed pseudo-random pattern in [-1, 1) (xorshift64), so checks are reproducible.
struct Pattern(u64);

impl Pattern {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}
