//! # bpc-opt: the optimizer pipeline
//!
//! (Stub: being built.)

use bpc_ir::Function;

/// `-O0` turns every pass off; `-O2` is the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OptLevel {
    O0,
    O1,
    #[default]
    O2,
}

/// Runs the passes of `level` over `func`.
pub fn optimize(func: &Function, level: OptLevel) -> Function {
    let _ = level;
    func.clone()
}
