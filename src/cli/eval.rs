//! `bpc eval MODEL --set ...`: one example through value-and-grad (SPEC §4).
//!
//! The value-and-grad function is taken with respect to every input, real label, param and
//! binding ([`Model::grad_names`]); one extra result `value.NAME` per named value makes the
//! JIT report every binding too. It runs at minibatch size 1 with the JIT, or with the
//! float64 interpreter under `--interp`.

use std::path::Path;

use bpc::ir::{ArgKind, DType, Tensor};
use bpc::train::Params;
use bpc::{Arg, Error, Function, Model};

use super::set::{self, Setting};
use super::{EvalArgs, json_object};

/// A named tensor: the example shape and the elements (f32 from the JIT, f64 from the
/// interpreter, which the printing keeps apart so each prints its shortest form).
pub struct Named {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
    pub single: bool,
}

pub fn run(args: &EvalArgs) -> Result<(), Error> {
    let model = Model::load(&args.model)?;
    let inputs = bind(&model, &args.set, args.params.as_deref(), args.seed)?;
    let wrt = model.grad_names();
    let vg = with_value_results(&model, &wrt)?;
    if args.check_finite {
        check_finite(&model, &vg, &inputs)?;
    }
    let mut results = if args.interp { interpret(&vg, &inputs)? } else { jit(&model, &vg, &inputs, args.opt.level())? };
    for (a, data) in model.func.args.iter().zip(&inputs) {
        if !a.ty.is_float() {
            let shape = a.ty.shape.dims.clone();
            results.push(Named { name: format!("value.{}", a.name), shape, data: data.clone(), single: false });
        }
    }
    let find = |key: &str| results.iter().find(|r| r.name == key).expect("every result was computed");
    let mut values: Vec<&Named> = model.func.names.iter().map(|(n, _)| find(&format!("value.{n}"))).collect();
    values.push(find("loss"));
    if model.func.result("output").is_some() {
        values.push(find("output"));
    }
    let grads: Vec<&Named> = wrt.iter().map(|n| find(&format!("grad.{n}"))).collect();
    let hvp = if args.hvp.is_empty() { Vec::new() } else { hvp(&model, args, &inputs)? };
    let hvp: Vec<&Named> = hvp.iter().filter(|r| r.name.starts_with("grad.")).collect();
    print(
        args.json,
        &[
            ("values", "values", &values),
            ("grads", "gradients d loss / d name", &grads),
            ("hvp", "Hessian-vector product (H v) per param", &hvp),
        ],
    );
    Ok(())
}

/// Value-and-grad w.r.t. `wrt`, plus a result `value.NAME` per float named value.
fn with_value_results(model: &Model, wrt: &[String]) -> Result<Function, Error> {
    let refs: Vec<&str> = wrt.iter().map(String::as_str).collect();
    let mut vg = model.value_and_grad(&refs)?;
    for (name, _) in &model.func.names {
        let v = vg.named(name).expect("value_and_grad keeps the names");
        // Class labels (i32) are arguments: their value is what was set, not a result.
        if vg.ty(v).is_float() {
            vg.add_result(format!("value.{name}"), v);
        }
    }
    Ok(vg)
}

/// `--check-finite`: the first op of `vg` that is not finite at the point, as an error.
fn check_finite(model: &Model, vg: &Function, inputs: &[Vec<f64>]) -> Result<(), Error> {
    let tensors: Vec<Tensor> =
        vg.args.iter().zip(inputs).map(|(a, d)| Tensor::new(a.ty.shape.sizes(1), d.clone())).collect();
    match bpc::train::finite::first_non_finite(vg, 1, &tensors, "--check-finite") {
        Ok(None) => Ok(()),
        Ok(Some(d)) => Err(model.render(&d)),
        Err(e) => Err(Error::msg(format!("interpreter: {e}"))),
    }
}

/// Prints the non-empty sections `(JSON key, title, rows)`: one JSON object keyed by
/// section, or titled lists.
fn print(json: bool, sections: &[(&str, &str, &[&Named])]) {
    let label = |r: &Named| r.name.split_once('.').map_or(r.name.clone(), |(_, n)| n.to_string());
    let present = sections.iter().filter(|(_, _, rows)| !rows.is_empty());
    if json {
        let obj = |xs: &[&Named]| json_object(xs.iter().map(|r| (label(r), json_tensor(r))));
        println!("{}", json_object(present.map(|(key, _, rows)| (key.to_string(), obj(rows)))));
        return;
    }
    let width = sections.iter().flat_map(|(_, _, rows)| rows.iter()).map(|r| label(r).len()).max().unwrap_or(0);
    for (_, title, rows) in present {
        println!("{title}");
        for r in rows.iter() {
            println!("  {:width$} = {}", label(r), text_tensor(r));
        }
    }
}

/// `--hvp`: the Hessian–vector product along the given direction (zero for params not named).
fn hvp(model: &Model, args: &EvalArgs, inputs: &[Vec<f64>]) -> Result<Vec<Named>, Error> {
    let f = &model.func;
    let h = model.hvp()?;
    let mut dirs: Vec<Option<Vec<f64>>> = vec![None; f.args.len()];
    for text in &args.hvp {
        for s in set::parse_flag(text, "--hvp").map_err(Error::msg)? {
            let id = f.arg_named(&s.name).filter(|&id| matches!(f.arg(id).kind, ArgKind::Param { .. })).ok_or_else(
                || {
                    Error::msg(format!(
                        "in --hvp '{}': `{}` is not a param; a direction is given for params ({})",
                        s.text,
                        s.name,
                        param_names(f)
                    ))
                },
            )?;
            let dims = &f.arg(id).ty.shape.dims;
            if s.shape != *dims {
                return Err(Error::msg(format!(
                    "in --hvp '{}': {} is declared with shape {dims:?} but the direction has shape {:?}",
                    s.text, s.name, s.shape
                )));
            }
            if dirs[id.index()].replace(s.data).is_some() {
                return Err(Error::msg(format!("--hvp gives `{}` twice", s.name)));
            }
        }
    }
    if dirs.iter().all(Option::is_none) {
        return Err(Error::msg(format!(
            "--hvp gives no direction: write NAME=VALUE for one or more of {}",
            param_names(f)
        )));
    }
    let mut all = inputs.to_vec();
    for id in f.params() {
        let len = f.arg(id).ty.shape.example_len();
        all.push(dirs[id.index()].take().unwrap_or_else(|| vec![0.0; len]));
    }
    if args.interp { interpret(&h, &all) } else { jit(model, &h, &all, args.opt.level()) }
}

/// The model's params, for messages: "`W1`, `b1`".
fn param_names(f: &Function) -> String {
    f.params().map(|id| format!("`{}`", f.arg(id).name)).collect::<Vec<_>>().join(", ")
}

/// One f64 buffer per argument of the model (physical layout at batch 1), from `--set`,
/// the checkpoint or the initializers.
pub(super) fn bind(model: &Model, sets: &[String], params: Option<&Path>, seed: u64) -> Result<Vec<Vec<f64>>, Error> {
    let f = &model.func;
    let mut settings: Vec<Setting> = Vec::new();
    for s in sets {
        for new in set::parse(s).map_err(Error::msg)? {
            if let Some(old) = settings.iter().find(|o| o.name == new.name) {
                return Err(Error::msg(format!(
                    "--set gives `{}` twice ('{}' and '{}')",
                    new.name, old.text, new.text
                )));
            }
            settings.push(new);
        }
    }
    let mut out: Vec<Option<Vec<f64>>> = vec![None; f.args.len()];
    for s in &settings {
        let id = f.arg_named(&s.name).filter(|&id| !matches!(f.arg(id).kind, ArgKind::Hyper)).ok_or_else(|| {
            let what =
                if f.named(&s.name).is_some() { "is a binding, computed by the model" } else { "is not declared" };
            Error::msg(format!("in --set '{}': `{}` {what}; only inputs, labels and params can be set", s.text, s.name))
        })?;
        let a = f.arg(id);
        if s.shape != a.ty.shape.dims {
            return Err(Error::msg(format!(
                "in --set '{}': {} is declared with shape {:?} but the value has shape {:?}",
                s.text, s.name, a.ty.shape.dims, s.shape
            )));
        }
        if let ArgKind::Label { classes: Some(k) } = a.kind
            && s.data.iter().any(|&c| c.fract() != 0.0 || c < 0.0 || c >= k as f64)
        {
            return Err(Error::msg(format!(
                "in --set '{}': {} is class({k}): expected an integer from 0 to {}",
                s.text,
                s.name,
                k - 1
            )));
        }
        out[id.index()] = Some(s.data.clone());
    }
    let slab = match params {
        Some(p) => bpc::train::checkpoint::load(p, f).map_err(|e| Error::msg(e.for_model(&model.source.path)))?.0,
        None => Params::init(f, seed).map_err(|e| Error::msg(format!("{}: {e}", model.source.path)))?,
    };
    for info in &slab.info {
        let slot = &mut out[info.arg.index()];
        if slot.is_none() {
            *slot = Some(slab.data[info.offset..info.offset + info.len].iter().map(|&x| f64::from(x)).collect());
        }
    }
    f.args
        .iter()
        .zip(out)
        .map(|(a, v)| {
            v.ok_or_else(|| {
                let what = match a.kind {
                    ArgKind::Input => "input",
                    ArgKind::Label { .. } => "label",
                    ArgKind::Param { .. } | ArgKind::Hyper | ArgKind::State => "argument",
                };
                Error::msg(format!("{what} {} is not set: give it with --set '{}=...'", a.name, a.name))
            })
        })
        .collect()
}

/// The non-update results of `func`, named, with their example shapes.
fn shapes(func: &Function) -> Vec<(String, Vec<usize>, usize)> {
    func.results
        .iter()
        .filter(|r| r.update.is_none())
        .map(|r| {
            let s = &func.ty(r.value).shape;
            (r.name.clone(), s.dims.clone(), s.len(1))
        })
        .collect()
}

fn interpret(vg: &Function, inputs: &[Vec<f64>]) -> Result<Vec<Named>, Error> {
    let tensors: Vec<Tensor> =
        vg.args.iter().zip(inputs).map(|(a, d)| Tensor::new(a.ty.shape.sizes(1), d.clone())).collect();
    let vals = bpc::ir::interpret(vg, 1, &tensors).map_err(|e| Error::msg(format!("interpreter: {e}")))?;
    let named = shapes(vg).into_iter().map(|(name, shape, _)| {
        let v = vg.result(&name).expect("named result").value;
        Named { name, shape, data: vals[v.index()].data.clone(), single: false }
    });
    Ok(named.collect())
}

fn jit(model: &Model, vg: &Function, inputs: &[Vec<f64>], level: bpc::OptLevel) -> Result<Vec<Named>, Error> {
    let native = model.compile(vg, 1, level)?;
    let f32s: Vec<Vec<f32>> = inputs.iter().map(|d| d.iter().map(|&x| x as f32).collect()).collect();
    let i32s: Vec<Vec<i32>> = inputs.iter().map(|d| d.iter().map(|&x| x as i32).collect()).collect();
    let mut args: Vec<Arg> = vg
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| if a.ty.dtype == DType::I32 { Arg::I32(&i32s[i]) } else { Arg::F32(&f32s[i]) })
        .collect();
    let shapes = shapes(vg);
    let mut bufs: Vec<Vec<f32>> = shapes.iter().map(|s| vec![0.0; s.2]).collect();
    let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
    let mut ws = native.workspace();
    native
        .run(&mut ws, &mut args, &mut outs)
        .map_err(|e| Error::msg(format!("{}: call failed: {}", model.source.path, e.0)))?;
    let named = shapes.into_iter().zip(bufs).map(|((name, shape, _), b)| Named {
        name,
        shape,
        data: b.into_iter().map(f64::from).collect(),
        single: true,
    });
    Ok(named.collect())
}

/// A number as JSON text: its shortest form at its precision; `null` for NaN and infinities.
fn json_number(x: f64, single: bool) -> String {
    if x.is_finite() { number(x, single) } else { "null".into() }
}

/// Shortest round-trip text, with an exponent for very small or large magnitudes.
fn number(x: f64, single: bool) -> String {
    let tiny_or_huge = x != 0.0 && (x.abs() < 1e-5 || x.abs() >= 1e16);
    match (single, tiny_or_huge) {
        (true, false) => (x as f32).to_string(),
        (true, true) => format!("{:e}", x as f32),
        (false, false) => x.to_string(),
        (false, true) => format!("{x:e}"),
    }
}

/// Nested lists of `data` in `shape`, row-major; `fmt` renders one element.
fn nest(shape: &[usize], data: &[f64], fmt: &dyn Fn(f64) -> String, sep: &str) -> String {
    match shape {
        [] => fmt(data[0]),
        [_, rest @ ..] => {
            let inner: usize = rest.iter().product();
            let parts: Vec<String> = data.chunks(inner.max(1)).map(|c| nest(rest, c, fmt, sep)).collect();
            format!("[{}]", parts.join(sep))
        }
    }
}

pub fn json_tensor(r: &Named) -> String {
    nest(&r.shape, &r.data, &|x| json_number(x, r.single), ",")
}

fn text_tensor(r: &Named) -> String {
    nest(&r.shape, &r.data, &|x| number(x, r.single), ", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_short() {
        assert_eq!(number(f64::from(0.731_058_6f32), true), "0.7310586");
        assert_eq!(number(-12.0, true), "-12");
        assert_eq!(number(1e-20, false), "1e-20");
        assert_eq!(json_number(f64::NAN, true), "null");
    }

    #[test]
    fn tensors_nest_row_major() {
        let r = Named { name: "W".into(), shape: vec![2, 2], data: vec![1.0, 2.0, 3.0, 4.5], single: true };
        assert_eq!(json_tensor(&r), "[[1,2],[3,4.5]]");
        assert_eq!(text_tensor(&r), "[[1, 2], [3, 4.5]]");
    }
}
