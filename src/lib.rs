//! bpc: a JIT-compiled gradient compiler.
pub use bpc_ir as ir;
