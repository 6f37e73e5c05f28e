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

pub use bpc_autodiff::Optimizer;
pub use bpc_train::{
    Dataset, EpochReport, Labels, LrSchedule, Metrics, OptimizerConfig, Standardizer, TrainConfig, TrainReport,
};
