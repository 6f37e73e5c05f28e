//! The embedding API: [`compile`] a model into a [`Program`], make native functions of it
//! for a minibatch size, and call them on caller-owned buffers (see the crate docs).

mod error;
mod native;
mod params;
mod program;
mod trainer;

pub use error::{Error, ErrorKind};
pub use native::{Feed, Forward, Hvp, Label, TrainStep, ValueAndGrad, Workspace};
pub use params::Params;
pub use program::{LabelKind, LabelSpec, Options, Program, Stage, TensorSpec, compile, compile_file};
pub use trainer::Trainer;

// The types of the training driver and of the stages that appear in this API's signatures
// and fields, re-exported so their docs are part of this crate's.
pub use bpc_autodiff::{Optimizer, UpdateRule};
pub use bpc_codegen::{CallError, Stats};
pub use bpc_train::optimizer::HyperKey;
pub use bpc_train::{
    CheckpointError, DataError, Dataset, EpochReport, Hypers, LabelEncoding, Labels, LrSchedule, Metrics,
    OptimizerConfig, Position, Standardizer, Stop, TrainConfig, TrainReport,
};
