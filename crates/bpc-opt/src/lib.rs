//! # bpc-opt: the optimizer pipeline
//!
//! [`optimize`] runs the passes of an optimization level as a plain sequence of free
//! functions, each `Function -> Function`, Cranelift's `Context::optimize` shape. In debug
//! builds the verifier runs after every pass, so a pass that breaks an invariant (an operand
//! used before its definition, a type its operands do not give) is caught at the pass that
//! did it. Passes keep the calling convention (the argument list) and the meaning of every
//! result; they may drop, renumber and rewrite values, keeping each value's source span.
//!
//! Passes so far: [`eliminate_dead_code`]. `-O0` runs none.

mod dce;
mod pipeline;

pub use dce::eliminate_dead_code;
pub use pipeline::{OptLevel, optimize};
