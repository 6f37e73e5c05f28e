//! # bpc-train: data, params, checkpoints, optimizers and the training driver
//!
//! Everything between a checked model and a trained one, outside the compiler itself:
//!
//! - [`data`] loads CSV / `.csv.gz` into a [`Dataset`] laid out by the model's [`Schema`]
//!   (the feature columns fill the inputs in declaration order, row-major). Bad data is an
//!   error naming `file:line:column` before anything is trained; it never panics.
//! - [`standardize`] fits per-feature mean/std on the training set only.
//! - [`params`] keeps every param in one contiguous `f32` slab in declaration order;
//!   [`init`] draws each from its own stream (seed mixed with a hash of its name).
//! - [`checkpoint`] saves/loads that slab and the optimizer state as safetensors, atomically.
//! - [`optimizer`] holds the optimizer settings, the per-step hyperparameter values, the
//!   optimizer state slab and learning-rate schedules (the update rules are compiled into
//!   the step by `bpc_autodiff::optim`).
//! - [`driver::train`] runs epochs of shuffled minibatches through the JIT-compiled train
//!   step (one compiled step per minibatch size: the full one and the last, smaller one),
//!   with early stopping and interruption; [`eval`] runs the forward function for validation
//!   metrics and predictions; [`metrics`] has the confusion matrix, R² and RMSE.
//!
//! Invariants: the step loop allocates nothing (buffers are gathered into, argument lists
//! reuse their storage); the only randomness is the seed (init streams and one shuffling
//! stream per epoch), so a run is reproducible bit for bit on one machine for a given thread
//! count, and a resumed run continues exactly where the checkpoint left off.

pub mod checkpoint;
mod columns;
pub mod data;
pub mod driver;
pub mod eval;
pub mod finite;
pub mod init;
mod labels;
pub mod metrics;
pub mod optimizer;
pub mod params;
pub mod plot;
pub mod report;
pub mod runner;
pub mod schema;
pub mod standardize;

#[cfg(test)]
mod testutil;

pub use checkpoint::{CheckpointError, Meta, model_hash};
pub use data::{DataError, Dataset, LabelEncoding, LabelPolicy, Labels, LoadOptions};
pub use driver::{Position, Snapshot, TrainConfig, train};
pub use eval::{Evaluator, Metrics, Predictions};
pub use init::InitError;
pub use metrics::{Confusion, Regression};
pub use optimizer::{Hypers, LrSchedule, OptState, OptimizerConfig};
pub use params::{ParamInfo, Params};
pub use report::{EpochReport, Stop, TrainReport};
pub use runner::RunError;
pub use schema::{LabelKind, Schema, SchemaError};
pub use standardize::Standardizer;
