//! The IR text reader: the inverse of the printer (`print.rs`), so IR files can be golden
//! tests and pass inputs. `read(&f.to_string())` gives back `f` (values, types, results,
//! names; spans are not part of the text).

use std::fmt;

use crate::function::{ArgKind, Function, Init, Inst, Output, Value};
use crate::fusion::{Kernel, KernelKind};
use crate::ops::{BinaryOp, ReduceOp, UnaryOp};
use crate::span::Span;
use crate::types::{DType, Shape, Type};

/// A syntax or type error in IR text, with its 1-based line.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ReadError {}

/// Parses one function in the printer's text form.
pub fn read(text: &str) -> Result<Function, ReadError> {
    let mut func = Function::new("");
    let mut started = false;
    let mut kernel_start: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let fail = |message: String| ReadError { line: i + 1, message };
        let (code, comment) = match raw.split_once('#') {
            Some((c, n)) => (c.trim(), Some(n.trim())),
            None => (raw.trim(), None),
        };
        if code.is_empty() {
            continue;
        }
        if !started {
            let name = code.strip_prefix("function ").and_then(|r| r.strip_suffix('{'));
            func.name = name.ok_or_else(|| fail(format!("expected `function NAME {{`, found `{code}`")))?.trim().into();
            started = true;
            continue;
        }
        if let Some(kind) = code.strip_prefix("kernel ").and_then(|r| r.strip_suffix('{')) {
            let kind = kind.split_whitespace().nth(1).and_then(KernelKind::from_name);
            let kind = kind.ok_or_else(|| fail(format!("expected `kernel kN KIND {{`, found `{code}`")))?;
            func.kernels.get_or_insert_with(Vec::new).push(Kernel { kind, values: Vec::new() });
            kernel_start = Some(func.len());
            continue;
        }
        match code {
            "}" if kernel_start.is_some() => {
                let start = kernel_start.take().unwrap_or_default();
                let values: Vec<Value> = (start..func.len()).map(|i| Value(i as u32)).collect();
                if values.is_empty() {
                    return Err(fail("empty kernel".into()));
                }
                let k = func.kernels.as_mut().and_then(|ks| ks.last_mut()).expect("a kernel was opened");
                k.values = values;
                continue;
            }
            "}" => return Ok(func),
            "adjoint:" => {
                func.adjoint_start = Some(Value(func.len() as u32));
                continue;
            }
            _ => {}
        }
        read_line(&mut func, code, comment).map_err(fail)?;
    }
    Err(ReadError { line: text.lines().count(), message: "missing closing `}`".into() })
}

fn read_line(func: &mut Function, code: &str, comment: Option<&str>) -> Result<(), String> {
    let (head, rest) = code.split_once(' ').ok_or_else(|| format!("cannot read `{code}`"))?;
    match head {
        "input" | "label" | "param" | "hyper" | "state" => read_arg(func, head, rest),
        "result" | "update" => {
            let (name, v) = rest.split_once('=').ok_or("expected `NAME = vN`")?;
            let (name, value) = (name.trim().to_string(), value(v.trim(), func)?);
            let update = if head == "update" {
                Some(func.arg_named(&name).ok_or_else(|| format!("update of unknown param `{name}`"))?)
            } else {
                None
            };
            func.results.push(Output { name, value, update });
            Ok(())
        }
        _ => {
            let v =
                value(head.trim_end_matches(':'), &Function::default()).map_err(|_| format!("cannot read `{code}`"))?;
            if v.index() != func.len() {
                return Err(format!("expected v{} next, found {v}", func.len()));
            }
            let (ty, inst) = rest.split_once('=').ok_or("expected `vN: TYPE = INST`")?;
            let ty = read_type(ty.trim())?;
            let inst = read_inst(func, inst.trim(), &ty)?;
            let v = func.push(inst, Span::NONE).map_err(|e| e.0)?;
            if *func.ty(v) != ty {
                return Err(format!("{v} is written {ty} but its operands give {}", func.ty(v)));
            }
            for name in comment.into_iter().flat_map(|c| c.split(',')).map(str::trim).filter(|n| !n.is_empty()) {
                func.names.push((name.to_string(), v));
            }
            Ok(())
        }
    }
}

fn read_arg(func: &mut Function, kind: &str, rest: &str) -> Result<(), String> {
    let (name, rest) = rest.split_once(':').ok_or("expected `NAME: TYPE`")?;
    let rest = rest.trim();
    let (ty, extra) = match rest.find(']') {
        Some(end) => (read_type(&rest[..=end])?, rest[end + 1..].trim()),
        None => return Err(format!("cannot read type in `{rest}`")),
    };
    let kind = match kind {
        "input" => ArgKind::Input,
        "hyper" => ArgKind::Hyper,
        "state" => ArgKind::State,
        "label" if extra.is_empty() => ArgKind::Label { classes: None },
        "label" => {
            let k = extra.strip_prefix("class(").and_then(|r| r.strip_suffix(')')).ok_or("expected `class(K)`")?;
            ArgKind::Label { classes: Some(k.parse().map_err(|_| format!("bad class count `{k}`"))?) }
        }
        _ => ArgKind::Param { init: read_init(extra)? },
    };
    func.add_arg(name.trim(), kind, ty, Span::NONE);
    Ok(())
}

fn read_init(text: &str) -> Result<Init, String> {
    let num = |s: &str| s.trim().parse::<f64>().map_err(|_| format!("bad number `{s}`"));
    if let Some(c) = text.strip_prefix('=') {
        return Ok(Init::Const(num(c)?));
    }
    let call = text.strip_prefix('~').ok_or_else(|| format!("bad initializer `{text}`"))?.trim();
    let two = |inner: &str| -> Result<(f64, f64), String> {
        let (a, b) = inner.strip_suffix(')').and_then(|s| s.split_once(',')).ok_or("expected two arguments")?;
        Ok((num(a)?, num(b)?))
    };
    Ok(match call {
        "xavier" => Init::Xavier,
        "he" => Init::He,
        _ if call.starts_with("normal(") => two(&call[7..]).map(|(mean, std)| Init::Normal { mean, std })?,
        _ if call.starts_with("uniform(") => two(&call[8..]).map(|(lo, hi)| Init::Uniform { lo, hi })?,
        _ => return Err(format!("unknown initializer `{call}`")),
    })
}

fn read_type(text: &str) -> Result<Type, String> {
    let (dtype, dims) = text.split_once('[').ok_or_else(|| format!("bad type `{text}`"))?;
    let dtype = match dtype {
        "f32" => DType::F32,
        "i32" => DType::I32,
        _ => return Err(format!("unknown element type `{dtype}`")),
    };
    let dims = dims.strip_suffix(']').ok_or_else(|| format!("bad type `{text}`"))?;
    let mut shape = Shape::default();
    for (i, d) in dims.split(',').map(str::trim).filter(|d| !d.is_empty()).enumerate() {
        match d {
            "B" if i == 0 => shape.batch = true,
            _ => shape.dims.push(d.parse().map_err(|_| format!("bad extent `{d}` in `{text}`"))?),
        }
    }
    Ok(Type { dtype, shape })
}

fn value(text: &str, func: &Function) -> Result<Value, String> {
    let n: u32 = text
        .strip_prefix('v')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("expected a value, found `{text}`"))?;
    if !func.is_empty() && n as usize >= func.len() {
        return Err(format!("{text} is not defined yet"));
    }
    Ok(Value(n))
}

/// `[1,2]` to a list of numbers.
fn list(text: &str) -> Result<Vec<usize>, String> {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("expected a list, found `{text}`"))?;
    inner
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().map_err(|_| format!("bad number `{s}`")))
        .collect()
}

fn read_inst(func: &Function, text: &str, ty: &Type) -> Result<Inst, String> {
    let (op, rest) = text.split_once(' ').unwrap_or((text, ""));
    // Operands and attributes are comma separated; a list attribute holds commas of its own.
    let mut parts: Vec<String> = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in rest.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur).trim().to_string());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        parts.push(cur.trim().to_string());
    }
    let operands: Vec<Value> =
        parts.iter().filter(|p| p.starts_with('v')).map(|p| value(p, func)).collect::<Result<_, _>>()?;
    let attr = |key: &str| parts.iter().find_map(|p| p.strip_prefix(key).and_then(|r| r.strip_prefix('=')));
    let flag = |key: &str| parts.iter().any(|p| p == key);
    let arg = |i: usize| operands.get(i).copied().ok_or_else(|| format!("`{op}` needs {} operands", i + 1));
    Ok(match op {
        "arg" => Inst::Arg(func.arg_named(rest.trim()).ok_or_else(|| format!("unknown argument `{rest}`"))?),
        "const" => Inst::Const(rest.trim().parse().map_err(|_| format!("bad constant `{rest}`"))?),
        "batch_size" => Inst::BatchSize,
        "select" => Inst::Select { cond: arg(0)?, on_true: arg(1)?, on_false: arg(2)? },
        "transpose" => Inst::Transpose { arg: arg(0)? },
        "matmul" => Inst::MatMul { lhs: arg(0)?, rhs: arg(1)?, ta: flag("ta"), tb: flag("tb") },
        "softmax" | "log_softmax" => Inst::Softmax {
            arg: arg(0)?,
            axis: attr("axis").ok_or("missing axis=")?.parse().map_err(|_| "bad axis")?,
            log: op == "log_softmax",
        },
        "cross_entropy" => Inst::CrossEntropy { logits: arg(0)?, label: arg(1)? },
        "onehot" => Inst::OneHot {
            label: arg(0)?,
            classes: attr("classes").ok_or("missing classes=")?.parse().map_err(|_| "bad classes")?,
        },
        "index" => Inst::Index { arg: arg(0)?, at: list(attr("at").ok_or("missing at=")?)? },
        // The target shape of these is the printed result type.
        "broadcast" => Inst::Broadcast { arg: arg(0)?, to: ty.shape.clone() },
        "reshape" => Inst::Reshape { arg: arg(0)?, to: ty.shape.clone() },
        "scatter" => Inst::Scatter { arg: arg(0)?, at: list(attr("at").ok_or("missing at=")?)?, to: ty.shape.clone() },
        _ => {
            if let Some(op) = UnaryOp::from_name(op) {
                Inst::Unary { op, arg: arg(0)? }
            } else if let Some(op) = BinaryOp::from_name(op) {
                Inst::Binary { op, lhs: arg(0)?, rhs: arg(1)? }
            } else if let Some(op) = ReduceOp::from_name(op) {
                Inst::Reduce { op, arg: arg(0)?, axes: list(attr("axes").ok_or("missing axes=")?)? }
            } else {
                return Err(format!("unknown instruction `{op}`"));
            }
        }
    })
}
