//! The IR text form: the `Display` of a [`Function`].
//!
//! ```text
//! function add_mul {
//!   input x: f32[B]
//!   ...
//!   v3: f32[B] = add v0, v1                      # q
//!   v5: f32[] = reduce_mean v4, axes=[0]         # loss
//! adjoint:
//!   v6: f32[] = const 1.0
//!   ...
//!   result loss = v5
//!   update W1 = v20
//! }
//! ```
//!
//! Every binding shows its type; attributes follow the operands as `key=value`; source names
//! are trailing comments. The members of a fused kernel (`crate::fusion`) are indented in a
//! `kernel kN KIND { ... }` block whose header comment is its scalar body. The text is stable: golden tests pin it.

use std::fmt::{self, Write as _};

use crate::function::{ArgKind, Function, Inst, Value};

const COMMENT_COLUMN: usize = 48;

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "function {} {{", self.name)?;
        for a in &self.args {
            match &a.kind {
                ArgKind::Input => writeln!(f, "  input {}: {}", a.name, a.ty)?,
                ArgKind::Label { classes: Some(k) } => writeln!(f, "  label {}: {} class({k})", a.name, a.ty)?,
                ArgKind::Label { classes: None } => writeln!(f, "  label {}: {}", a.name, a.ty)?,
                ArgKind::Param { init } => writeln!(f, "  param {}: {} {init}", a.name, a.ty)?,
                ArgKind::Hyper => writeln!(f, "  hyper {}: {}", a.name, a.ty)?,
                ArgKind::State => writeln!(f, "  state {}: {}", a.name, a.ty)?,
            }
        }
        let kernels = self.kernels.as_deref().unwrap_or_default();
        for v in self.values() {
            if self.adjoint_start == Some(v) {
                writeln!(f, "adjoint:")?;
            }
            let kernel = kernels.iter().position(|k| k.values.contains(&v));
            if let Some(i) = kernel.filter(|&i| kernels[i].values[0] == v) {
                let mut line = String::new();
                crate::fusion::header(&mut line, i, &kernels[i]);
                let pad = COMMENT_COLUMN.saturating_sub(line.len()).max(1);
                writeln!(f, "{line}{:pad$}# {}", "", kernels[i].body_text(self))?;
            }
            let indent = if kernel.is_some() { "    " } else { "  " };
            let mut line = format!("{indent}{v}: {} = ", self.ty(v));
            write_inst(&mut line, self, self.inst(v))?;
            let names: Vec<&str> = self.names.iter().filter(|(_, n)| *n == v).map(|(s, _)| s.as_str()).collect();
            if !names.is_empty() {
                let pad = COMMENT_COLUMN.saturating_sub(line.len()).max(1);
                write!(line, "{:pad$}# {}", "", names.join(", "))?;
            }
            writeln!(f, "{line}")?;
            if kernel.is_some_and(|i| kernels[i].values.last() == Some(&v)) {
                writeln!(f, "  }}")?;
            }
        }
        for r in &self.results {
            match r.update {
                Some(p) => writeln!(f, "  update {} = {}", self.arg(p).name, r.value)?,
                None => writeln!(f, "  result {} = {}", r.name, r.value)?,
            }
        }
        writeln!(f, "}}")
    }
}

fn list(xs: &[usize]) -> String {
    let items: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

fn operands(vs: &[Value]) -> String {
    let items: Vec<String> = vs.iter().map(|v| v.to_string()).collect();
    items.join(", ")
}

/// Writes one instruction's text: opcode, operands, attributes.
pub fn write_inst(out: &mut String, func: &Function, inst: &Inst) -> fmt::Result {
    let ops = operands(&inst.operands());
    match inst {
        Inst::Arg(id) => write!(out, "arg {}", func.arg(*id).name),
        Inst::Const(c) => write!(out, "const {c:?}"),
        Inst::BatchSize => write!(out, "batch_size"),
        Inst::Unary { op, .. } => write!(out, "{op} {ops}"),
        Inst::Binary { op, .. } => write!(out, "{op} {ops}"),
        Inst::Select { .. } => write!(out, "select {ops}"),
        Inst::Reduce { op, axes, .. } => write!(out, "{op} {ops}, axes={}", list(axes)),
        Inst::Broadcast { .. } => write!(out, "broadcast {ops}"),
        Inst::Reshape { .. } => write!(out, "reshape {ops}"),
        Inst::Transpose { .. } => write!(out, "transpose {ops}"),
        Inst::MatMul { ta, tb, .. } => {
            write!(out, "matmul {ops}")?;
            if *ta {
                write!(out, ", ta")?;
            }
            if *tb {
                write!(out, ", tb")?;
            }
            Ok(())
        }
        Inst::Softmax { axis, log: false, .. } => write!(out, "softmax {ops}, axis={axis}"),
        Inst::Softmax { axis, log: true, .. } => write!(out, "log_softmax {ops}, axis={axis}"),
        Inst::CrossEntropy { .. } => write!(out, "cross_entropy {ops}"),
        Inst::OneHot { classes, .. } => write!(out, "onehot {ops}, classes={classes}"),
        Inst::Index { at, .. } => write!(out, "index {ops}, at={}", list(at)),
        Inst::Scatter { at, .. } => write!(out, "scatter {ops}, at={}", list(at)),
    }
}
