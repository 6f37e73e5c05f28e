//! The verifier: every operand defined before its use, every type what the shape rules say,
//! every result and update well-formed. Runs after every pass in debug builds.

use std::fmt;

use crate::function::{ArgKind, Function, Value};
use crate::infer::infer_type;

/// The first problem the verifier found.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyError {
    pub value: Option<Value>,
    pub message: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(v) => write!(f, "{v}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Checks `func`'s invariants.
pub fn verify(func: &Function) -> Result<(), VerifyError> {
    let err = |value, message: String| Err(VerifyError { value, message });
    for v in func.values() {
        let data = func.data(v);
        if let Some(bad) = data.inst.operands().into_iter().find(|o| o.index() >= v.index()) {
            return err(Some(v), format!("uses {bad}, which is not defined before it"));
        }
        match infer_type(func, &data.inst) {
            Ok(t) if t == data.ty => {}
            Ok(t) => return err(Some(v), format!("declared {} but its operands give {t}", data.ty)),
            Err(e) => return err(Some(v), e.0),
        }
    }
    for r in &func.results {
        if r.value.index() >= func.len() {
            return err(None, format!("result {} refers to undefined {}", r.name, r.value));
        }
        if let Some(p) = r.update {
            let Some(arg) = func.args.get(p.index()) else {
                return err(None, format!("update {} targets a missing argument", r.name));
            };
            if !matches!(arg.kind, ArgKind::Param { .. } | ArgKind::State) || arg.ty != *func.ty(r.value) {
                return err(
                    Some(r.value),
                    format!("update of {} is {}, expected a param or state of that type", arg.name, func.ty(r.value)),
                );
            }
        }
    }
    if let Some(kernels) = &func.kernels
        && let Err(message) = crate::fusion::check_kernels(func, kernels)
    {
        return err(None, message);
    }
    for (name, v) in &func.names {
        if v.index() >= func.len() {
            return err(None, format!("name {name} refers to undefined {v}"));
        }
    }
    Ok(())
}
