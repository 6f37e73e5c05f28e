//! # bpc-opt: the optimizer pipeline
//!
//! [`optimize`] runs the passes of an optimization level as a plain sequence of free
//! functions, each `Function -> Function`, Cranelift's `Context::optimize` shape. In debug
//! builds the verifier runs after every pass, so a pass that breaks an invariant (an operand
//! used before its definition, a type its operands do not give) is caught at the pass that
//! did it. Passes keep the calling convention (the argument list) and the meaning of every
//! result; they may drop, renumber and rewrite values, keeping each value's source span.
//!
//! The passes, in pipeline order:
//! - [`eliminate_dead_code`]: drop what no result needs;
//! - [`eliminate_common_subexpressions`]: one value per distinct computation (never merging
//!   two arguments);
//! - [`fold_constants`]: elementwise ops of constants become constants;
//! - [`simplify`]: `x*1`, `x+0`, `neg(neg x)`, `log(exp x)`, `sqrt(x)^2` for `x >= 0`, view
//!   chains, the relu mask read from the activation, the transpose of a matrix product
//!   computed as the swapped product (each rewrite's exactness is documented);
//! - [`hoist_shared`]: a shared term of the loss is added once to the batch mean, and its
//!   cotangent is not summed back over a broadcast;
//! - [`fuse`]: groups values into fused kernels (`bpc_ir::fusion`) and schedules them, so
//!   code generation computes each group in one loop nest and stores only its outputs.
//!
//! [`optimize_for_batch`] also binds `batch_size` to the compiled minibatch size
//! ([`bind_batch_size`]) between the classic passes and fusion.
//!
//! [`shard_for_batch`] splits a function into data-parallel shards of the minibatch and a
//! combine that adds their partial sums (code generation runs the shards on their own
//! threads).
//!
//! [`adjoint_residuals`] is an analysis, not a pass: the forward activations the adjoint
//! reads, the yardstick `--emit stats` holds the arena against.
//!
//! Every rewrite keeps what the function computes to float32 rounding; the fusion pass keeps
//! it exactly (kernels only group values). `-O0` runs none of them.

mod batch;
mod cse;
mod dce;
mod fold;
mod fuse;
mod hoist;
mod pipeline;
mod residuals;
mod rewrite;
mod shard;
mod simplify;

pub use batch::bind_batch_size;
pub use cse::eliminate_common_subexpressions;
pub use dce::eliminate_dead_code;
pub use fold::fold_constants;
pub use fuse::fuse;
pub use hoist::hoist_shared;
pub use pipeline::{OptLevel, optimize, optimize_for_batch};
pub use residuals::{adjoint_residual_bytes, adjoint_residuals};
pub use shard::{Sharded, shard_for_batch};
pub use simplify::simplify;
