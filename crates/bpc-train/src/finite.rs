//! `--check-finite`: name the first op, forward or adjoint, that produced inf or NaN.
//!
//! The function is re-run in the float64 interpreter on the same arguments and its values
//! are scanned in program order; a magnitude beyond float32's range counts as an overflow,
//! since the compiled code computes in float32. The diagnostic points at the source span the
//! value came from (spans travel through autodiff), so it names the line.

use bpc_ir::{ArgId, ArgKind, DType, Diagnostic, Function, Inst, InterpError, Tensor, Value, interpret};

use crate::optimizer::{HyperKey, Hypers};
use crate::params::Params;
use crate::runner::{Batch, RunError};

/// Whether `x` is not a finite float32.
pub fn not_f32_finite(x: f64) -> bool {
    !x.is_finite() || x.abs() > f64::from(f32::MAX)
}

/// The first value of `func` at minibatch size `batch` on `args` with an element that is not
/// a finite float32, as a diagnostic (`context` opens its message, e.g. "step 17 of epoch
/// 3"); `None` if every value is finite.
pub fn first_non_finite(
    func: &Function,
    batch: usize,
    args: &[Tensor],
    context: &str,
) -> Result<Option<Diagnostic>, InterpError> {
    let vals = interpret(func, batch, args)?;
    let Some(v) = func.values().find(|v| vals[v.index()].data.iter().any(|&x| not_f32_finite(x))) else {
        return Ok(None);
    };
    let data = &vals[v.index()].data;
    let bad = data.iter().copied().find(|&x| not_f32_finite(x)).expect("found above");
    let what = if bad.is_nan() {
        "NaN"
    } else if bad.is_finite() {
        "a value beyond float32's range"
    } else if bad > 0.0 {
        "inf"
    } else {
        "-inf"
    };
    let count = data.iter().filter(|&&x| not_f32_finite(x)).count();
    if let Inst::Arg(id) = func.inst(v) {
        return Ok(Some(non_finite_arg(func, *id, context, what, count, data.len())));
    }
    let op = op_name(func, v);
    let span = func.span(v);
    let mut d = match func.adjoint_start.filter(|&s| v >= s) {
        None => Diagnostic::error(format!("{context}: `{op}` in the forward pass produced {what}")),
        Some(start) => {
            // The adjoint's instructions carry the span of the primal op whose pullback made them.
            let primal = func
                .values()
                .take_while(|&u| u < start)
                .filter(|&u| !span.is_none() && func.span(u) == span && !matches!(func.inst(u), Inst::Arg(_)))
                .last()
                .map(|u| op_name(func, u));
            let of = primal.as_deref().map(|p| format!(", in the gradient of `{p}`,")).unwrap_or_default();
            Diagnostic::error(format!("{context}: `{op}` in the adjoint (backward) pass{of} produced {what}"))
        }
    };
    if !span.is_none() {
        let label = if func.adjoint_start.is_some_and(|s| v >= s) {
            format!("the gradient of this is not finite (`{op}` of its pullback)")
        } else {
            format!("this ({op}) is not finite")
        };
        d = d.at(span, label);
    }
    d = d.note(format!("{count} of its {} elements are not finite; value {v} of {}", data.len(), func.name));
    Ok(Some(d))
}

/// An argument that is not finite before any op runs: named with its kind, pointing at its
/// declaration (a step setting such as `lr` has none: its flag is named instead).
fn non_finite_arg(func: &Function, id: ArgId, context: &str, what: &str, count: usize, len: usize) -> Diagnostic {
    let a = func.arg(id);
    let (kind, source) = match a.kind {
        ArgKind::Input => ("input", "the data or --set"),
        ArgKind::Label { .. } => ("label", "the data or --set"),
        ArgKind::Param { .. } => ("param", "the checkpoint (--params, --init), --set, or training"),
        ArgKind::State => ("optimizer state", "the optimizer's update"),
        ArgKind::Hyper => ("setting", "the command line"),
    };
    let mut d = Diagnostic::error(format!("{context}: {kind} `{}` is {what} before any op runs", a.name));
    d = if a.span.is_none() {
        d.note(format!("`{}` is a setting of the step (--{}), not a name in the program", a.name, a.name))
    } else {
        d.at(a.span, format!("`{}` is declared here", a.name))
    };
    d.note(format!("{count} of its {len} elements are not finite; its value comes from {source}"))
}

/// Re-runs a failed train step (`raw`, before the optimizer) in the float64 interpreter from
/// the params and optimizer state `before` it, on the minibatch `batch` with `hypers`, and
/// names the first op at fault.
#[allow(clippy::too_many_arguments)]
pub(crate) fn diagnose_step(
    raw: &Function,
    params: &Params,
    params_before: &[f32],
    state: &Params,
    state_before: &[f32],
    batch: &Batch,
    hypers: &Hypers,
    context: &str,
) -> RunError {
    let rows = batch.rows;
    let f64s = |xs: &[f32]| xs.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let mut inputs = batch.inputs.iter();
    let args: Vec<Tensor> = raw
        .args
        .iter()
        .map(|a| {
            let sizes = a.ty.shape.sizes(rows);
            let n = a.ty.shape.len(rows);
            let data = match &a.kind {
                ArgKind::Input => f64s(&inputs.next().expect("one buffer per input")[..n]),
                ArgKind::Label { .. } if a.ty.dtype == DType::I32 => {
                    batch.classes[..n].iter().map(|&c| f64::from(c)).collect()
                }
                ArgKind::Label { .. } => f64s(&batch.reals[..n]),
                ArgKind::Param { .. } => {
                    let info = params.info(&a.name).expect("every param is in the slab");
                    f64s(&params_before[info.offset..info.offset + info.len])
                }
                ArgKind::State => {
                    let info = state.info(&a.name).expect("every state is in the slab");
                    f64s(&state_before[info.offset..info.offset + info.len])
                }
                ArgKind::Hyper => {
                    let key = HyperKey::of(&a.name).expect("the runner bound every hyper");
                    vec![f64::from(hypers.get(key)); n]
                }
            };
            Tensor::new(sizes, data)
        })
        .collect();
    match first_non_finite(raw, rows, &args, context) {
        Ok(Some(d)) => RunError::NonFinite(d),
        Ok(None) => RunError::NonFinite(Diagnostic::error(format!(
            "{context}: the loss or an updated param is not finite in float32, though the float64 \
             interpreter finds every value finite (float32 underflow or rounding)"
        ))),
        Err(e) => RunError::Call(format!("{context}: the loss is not finite, and re-running the step failed: {e}")),
    }
}

/// The opcode of `v`'s instruction as the IR text prints it.
fn op_name(func: &Function, v: Value) -> String {
    let mut text = String::new();
    let _ = bpc_ir::print::write_inst(&mut text, func, func.inst(v));
    text.split_whitespace().next().unwrap_or("op").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpc_ir::{ArgKind, Inst, ReduceOp, Shape, Span, Type, UnaryOp};

    /// `loss = mean(log(x))` with `log` at source bytes 10..16.
    fn log_model() -> Function {
        let mut f = Function::new("m");
        let x = f.add_arg("x", ArgKind::Input, Type::f32(Shape::batched([])), Span::NONE);
        let x = f.ins(Inst::Arg(x), Span::NONE);
        let l = f.ins(Inst::Unary { op: UnaryOp::Log, arg: x }, Span::new(10, 16));
        let m = f.ins(Inst::Reduce { op: ReduceOp::Mean, arg: l, axes: vec![0] }, Span::NONE);
        f.add_result("loss", m);
        f
    }

    #[test]
    fn names_the_first_non_finite_op_and_its_span() {
        let f = log_model();
        let d = first_non_finite(&f, 2, &[Tensor::new([2], [1.0, 0.0])], "step 1").unwrap().unwrap();
        assert_eq!(d.message, "step 1: `log` in the forward pass produced -inf");
        assert_eq!(d.span(), Some(Span::new(10, 16)));
        assert_eq!(d.notes, vec!["1 of its 2 elements are not finite; value v1 of m"]);
        assert!(first_non_finite(&f, 1, &[Tensor::new([1], [2.0])], "").unwrap().is_none());
    }

    #[test]
    fn a_non_finite_argument_is_named_at_its_declaration() {
        let mut f = log_model();
        f.args[0].span = Span::new(0, 7);
        let d = first_non_finite(&f, 1, &[Tensor::new([1], [f64::NAN])], "--check-finite").unwrap().unwrap();
        assert_eq!(d.message, "--check-finite: input `x` is NaN before any op runs");
        assert_eq!(d.span(), Some(Span::new(0, 7)));
        // A step setting has no declaration: its flag is named.
        let mut g = Function::new("g");
        let lr = g.add_arg("lr", ArgKind::Hyper, Type::scalar(), Span::NONE);
        let v = g.ins(Inst::Arg(lr), Span::NONE);
        g.add_result("loss", v);
        let d = first_non_finite(&g, 1, &[Tensor::scalar(f64::INFINITY)], "step 1").unwrap().unwrap();
        assert_eq!(d.message, "step 1: setting `lr` is inf before any op runs");
        assert_eq!(d.notes[0], "`lr` is a setting of the step (--lr), not a name in the program");
    }

    #[test]
    fn float32_overflow_counts() {
        assert!(not_f32_finite(1e39) && not_f32_finite(f64::NAN) && !not_f32_finite(3e38));
    }
}
