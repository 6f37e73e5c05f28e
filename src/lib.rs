//! # bpc: a JIT-compiled gradient compiler
//!
//! A model written the way the backpropagation lecture writes it (`.bp`, see SPEC §1) is
//! parsed into a typed tensor IR ([`ir`]), differentiated by reverse mode ([`autodiff`]),
//! optimized ([`opt`]) and compiled by Cranelift ([`codegen`]) into native forward,
//! value-and-grad, train-step and Hessian–vector-product functions. This crate is the
//! library over those stages and the `bpc` command line.
//!
//! ```
//! use bpc::{Feed, Label, Options};
//!
//! // A model of one example: 2 features, 3 classes (softmax regression).
//! let program = bpc::compile(
//!     "input x[2]\nlabel y : class(3)\nparam W[3, 2] = 0\nparam b[3] = 0\n\
//!      loss cross_entropy(W @ x + b, y)\n",
//!     &Options::default(),
//! )?;
//! assert_eq!(program.param_names(), ["W", "b"]);
//! let mut params = program.init_params(0)?; // 9 floats: W (3×2) then b (3)
//!
//! // Native code for minibatches of 4 examples, called on the caller's buffers.
//! let x = [0.5, -1.0, 1.0, 0.0, -0.5, 2.0, 0.0, 1.0]; // [4, 2] row-major
//! let y = [0, 2, 1, 2]; // class indices in 0..3, checked by every call
//! // A Feed borrows arrays of buffers (one per input, one per label): bind the arrays to
//! // names first. `Feed::with_labels(&[&x[..]], ..)` works only inside a call's arguments:
//! // in a `let`, its temporary array is dropped at the `;` while the feed still borrows it.
//! let (inputs, labels) = ([&x[..]], [Label::Class(&y)]);
//! let feed = Feed::with_labels(&inputs, &labels);
//!
//! let vg = program.value_and_grad(&program.param_names(), 4)?;
//! let mut ws = vg.workspace(); // one per thread, allocated once
//! let mut grads = vec![0.0; vg.grad_len()]; // laid out like the params
//! let loss = vg.call(&mut ws, params.as_slice(), &feed, &mut grads)?;
//! assert!((loss - 3f32.ln()).abs() < 1e-6); // all logits 0: uniform over 3 classes
//! assert!((grads[6] - (1.0 / 3.0 - 0.25)).abs() < 1e-6); // d loss / d b[0]: p − mean(onehot)
//!
//! // The same step as SGD, fused into one native function: p ← p − 0.1·∇p.
//! let step = program.train_step(4)?;
//! let mut ws = step.workspace();
//! let before = params.as_slice().to_vec();
//! assert_eq!(step.call(&mut ws, params.as_mut_slice(), &feed, 0.1)?, loss);
//! for ((p, p0), g) in params.as_slice().iter().zip(&before).zip(&grads) {
//!     assert!((p - (p0 - 0.1 * g)).abs() < 1e-6);
//! }
//!
//! // Shapes are checked: a buffer of the wrong length is an error, never a panic.
//! let short = [&x[..6]];
//! let err = vg.call(&mut vg.workspace(), params.as_slice(), &Feed::with_labels(&short, &labels), &mut grads);
//! assert_eq!(err.unwrap_err().kind(), bpc::ErrorKind::Call);
//! # Ok::<(), bpc::Error>(())
//! ```
//!
//! ## The pieces
//!
//! - [`compile`] / [`compile_file`] check a model with [`Options`] (optimizer level,
//!   threads) into a [`Program`]: its [`Program::inputs`], [`Program::labels`] and
//!   [`Program::params`] with names and shapes, and its IR at every [`Stage`]
//!   ([`Program::emit`]).
//! - A program makes native functions for one minibatch size `B`: [`Program::forward`],
//!   [`Program::value_and_grad`], [`Program::train_step`] (SGD) and [`Program::hvp`]. Each
//!   is called with a [`Workspace`] (scratch memory, one per thread), the param slab, a
//!   [`Feed`] of the minibatch's inputs and labels (`[B, shape...]` row-major each) and its
//!   output buffers. Every length and class index is checked before any code runs; after
//!   the first call a call allocates nothing. A function takes exactly `B` examples: the
//!   last, partial minibatch of an epoch needs one compiled for its size, or is dropped
//!   (see [`TrainStep`]).
//! - [`Params`] holds the params by name over one contiguous slab, from the initializers
//!   with a seed ([`Program::init_params`]) or a safetensors file
//!   ([`Program::load_params`], [`Params::save`]).
//! - [`Trainer`] is `bpc train`'s driver (shuffling, optimizers, schedules, validation,
//!   early stopping) on a [`Dataset`] from [`Program::load_csv`]; a loop of your own around
//!   a [`TrainStep`] works as well (`examples/embed_train.rs`).
//! - Every failure is an [`Error`]; errors in the program text carry their diagnostics and
//!   render with the source line and a caret on demand.
//!
//! ## Threads
//!
//! [`Program`] and the native functions are `Send + Sync` and immutable: one compiled
//! function may be called from many threads at once, each with its own [`Workspace`]
//! (SPEC §3), and gives each the same results as one thread would. A workspace is `Send`:
//! it may move between threads, but is used by one call at a time (`&mut`).
//!
//! ## Lower levels
//!
//! [`Model`] is the facade the command line uses (IR functions, [`Compiled`] code called
//! with [`Arg`] lists), and the stage crates are re-exported ([`front`], [`ir`],
//! [`autodiff`], [`opt`], [`codegen`], [`train`]). The C ABI is the `bpc-capi` crate.

#![warn(missing_docs)]

mod api;
pub mod graph;

use std::path::Path;

pub use api::*;

// Inlined: the stage crates are documented as modules of this crate, so its docs (and their
// links) are complete without documenting the dependencies.
#[doc(inline)]
pub use bpc_autodiff as autodiff;
#[doc(inline)]
pub use bpc_codegen as codegen;
#[doc(inline)]
pub use bpc_front as front;
#[doc(inline)]
pub use bpc_ir as ir;
#[doc(inline)]
pub use bpc_opt as opt;
#[doc(inline)]
pub use bpc_train as train;

pub use bpc_codegen::{Arg, Compiled};
pub use bpc_front::Source;
pub use bpc_ir::{ArgKind, Diagnostic, Function, Inst};
pub use bpc_opt::OptLevel;

/// A checked model: its source and its forward function.
#[derive(Clone, Debug)]
pub struct Model {
    /// The source text and the path diagnostics show.
    pub source: Source,
    /// The forward function (results `loss`, and `output` / `logits` when present).
    pub func: Function,
}

impl Model {
    /// Reads and compiles the model at `path`; a missing file names the path and the
    /// system's reason.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::new(ErrorKind::Io, format!("{}: cannot read: {e}", path.display())))?;
        Model::from_source(path.display().to_string(), text)
    }

    /// Compiles `text`; `path` is what diagnostics show.
    pub fn from_source(path: impl Into<String>, text: impl Into<String>) -> Result<Model, Error> {
        let source = Source::new(path, text);
        match bpc_front::compile(&source) {
            Ok(func) => Ok(Model { source, func }),
            Err(diags) => Err(Error::program(&source, diags)),
        }
    }

    /// Renders a diagnostic of a later stage against this model's source.
    pub fn render(&self, diag: &Diagnostic) -> Error {
        Error::program(&self.source, vec![diag.clone()])
    }

    /// Every name gradients can be taken with respect to (SPEC §4 `eval`): inputs, real
    /// labels and params in declaration order, then the bindings in source order. Not
    /// class labels, nor names whose value is a constant.
    pub fn grad_names(&self) -> Vec<String> {
        let f = &self.func;
        let mut out: Vec<String> = f
            .args
            .iter()
            .filter(|a| a.ty.is_float() && !matches!(a.kind, ArgKind::Hyper))
            .map(|a| a.name.clone())
            .collect();
        let live = depends_on_args(f);
        for (name, v) in &f.names {
            if f.arg_named(name).is_none() && live[v.index()] && !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }

    /// The forward function plus the adjoint: results `loss`, then `grad.NAME` per name.
    pub fn value_and_grad(&self, wrt: &[&str]) -> Result<Function, Error> {
        bpc_autodiff::value_and_grad(&self.func, wrt).map_err(|d| self.render(&d))
    }

    /// The Hessian–vector product of the loss with respect to the params: the function of
    /// the model's args plus one direction `dir.P` per param `P` (same shape, declared as a
    /// param initialized to 0) whose results are `loss` = Σ_P ⟨∇_P L, dir.P⟩ and `grad.P` =
    /// (H·dir)_P. Built by differentiating the value-and-grad program a second time.
    pub fn hvp(&self) -> Result<Function, Error> {
        let params: Vec<String> = self.func.params().map(|id| self.func.arg(id).name.clone()).collect();
        if params.is_empty() {
            let m = format!("{}: --hvp needs params, and the model declares none", self.source.path);
            return Err(Error::new(ErrorKind::Program, m));
        }
        let refs: Vec<&str> = params.iter().map(String::as_str).collect();
        let mut f = self.value_and_grad(&refs)?;
        let mut total = None;
        for p in &params {
            let g = f.result(&format!("grad.{p}")).expect("one gradient per param").value;
            let ty = f.ty(g).clone();
            let rank = ty.shape.rank();
            // The param's declaration is the source line of everything built for it here.
            let span = f.arg(f.arg_named(p).expect("a param")).span;
            let dir = f.add_arg(format!("dir.{p}"), ArgKind::Param { init: ir::Init::Const(0.0) }, ty, span);
            let d = f.ins(Inst::Arg(dir), span);
            // Strong zeros: a param with no direction (0) contributes exactly 0, even where its
            // gradient is inf.
            let prod = f.ins(Inst::Binary { op: ir::BinaryOp::StrongMul, lhs: g, rhs: d }, span);
            let dot = f.ins(Inst::Reduce { op: ir::ReduceOp::Sum, arg: prod, axes: (0..rank).collect() }, span);
            total = Some(match total {
                None => dot,
                Some(t) => f.ins(Inst::Binary { op: ir::BinaryOp::Add, lhs: t, rhs: dot }, span),
            });
        }
        f.results = vec![ir::Output { name: "loss".into(), value: total.expect("at least one param"), update: None }];
        f.adjoint_start = None;
        bpc_autodiff::value_and_grad(&f, &refs).map_err(|d| self.render(&d))
    }

    /// The SGD train step: results `loss`, `output`/`logits`, then in-place param updates;
    /// takes the learning rate as its last argument `lr`.
    pub fn train_step(&self) -> Result<Function, Error> {
        bpc_autodiff::train_step(&self.func, bpc_autodiff::Optimizer::Sgd).map_err(|d| self.render(&d))
    }

    /// Optimizes `func` at `level` and JIT-compiles it for minibatch size `batch`, on all
    /// cores: data-parallel when the minibatch cuts into one shard of at least
    /// `bpc_codegen::DEFAULT_SHARD_ROWS_MIN` rows per core (`bpc_train::runner::compile_for_batch`).
    ///
    /// # Errors
    /// [`ErrorKind::Call`] if `batch` is 0; [`ErrorKind::Compile`] if code generation fails.
    pub fn compile(&self, func: &Function, batch: usize, level: OptLevel) -> Result<Compiled, Error> {
        if batch == 0 {
            let m = format!("{}: the minibatch size must be at least 1, got 0", self.source.path);
            return Err(Error::new(ErrorKind::Call, m));
        }
        bpc_train::runner::compile_for_batch(func, level, batch, &bpc_codegen::Options::default()).map_err(|e| {
            Error::new(ErrorKind::Compile, format!("{}: code generation failed: {}", self.source.path, e.0))
        })
    }

    /// The stable hash of the source stored in checkpoints.
    pub fn hash(&self) -> String {
        bpc_train::model_hash(&self.source.text)
    }
}

/// Floating-point operations of one call of `func` at minibatch size `batch`, counted the
/// usual way: `2·m·n·k` per matrix product, one per element of an elementwise result or a
/// reduced operand, a few per element of a softmax or cross-entropy (max, subtract, exp, sum,
/// divide). Data movement (broadcast, reshape, transpose, index, scatter, one-hot) is free.
pub fn flops(func: &Function, batch: usize) -> u64 {
    let n = |v: ir::Value| func.shape(v).len(batch) as u64;
    func.values()
        .map(|v| match func.inst(v) {
            Inst::MatMul { lhs, ta, .. } => {
                let sizes = func.shape(*lhs).sizes(batch);
                let k = if *ta { sizes[0] } else { sizes[1] } as u64;
                2 * n(v) * k
            }
            Inst::Unary { .. } | Inst::Binary { .. } | Inst::Select { .. } => n(v),
            Inst::Reduce { arg, .. } => n(*arg),
            Inst::Softmax { arg, .. } => 5 * n(*arg),
            Inst::CrossEntropy { logits, .. } => 4 * n(*logits),
            Inst::Arg(_)
            | Inst::Const(_)
            | Inst::BatchSize
            | Inst::Broadcast { .. }
            | Inst::Reshape { .. }
            | Inst::Transpose { .. }
            | Inst::OneHot { .. }
            | Inst::Index { .. }
            | Inst::Scatter { .. } => 0,
        })
        .sum()
}

/// Per value: whether it depends (transitively) on any argument; constants do not.
pub fn depends_on_args(f: &Function) -> Vec<bool> {
    let mut live = vec![false; f.len()];
    for v in f.values() {
        live[v.index()] = match f.inst(v) {
            Inst::Arg(_) => true,
            Inst::Const(_) | Inst::BatchSize => false,
            inst => inst.operands().iter().any(|o| live[o.index()]),
        };
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grad_names_cover_float_args_and_bindings() {
        let src = "input x[2]\nlabel y : class(2)\nparam W[2, 2] = 0\nconst c = 3\nk = c * 2\nh = W @ x\nloss cross_entropy(h, y)\n";
        let m = Model::from_source("m.bp", src).unwrap();
        assert_eq!(m.grad_names(), vec!["x", "W", "h"]);
    }

    #[test]
    fn flops_count_products_and_elementwise_work() {
        let src = "input x[4]\nparam W[3, 4] = 0\nloss sum(tanh(W @ x))\n";
        let m = Model::from_source("m.bp", src).unwrap();
        // Per example: matmul 2·3·4 = 24, tanh 3, sum 3; then the batch mean reads 8.
        assert_eq!(flops(&m.func, 8), 8 * (24 + 3 + 3) + 8);
    }

    #[test]
    fn hvp_of_a_squared_dot_product() {
        // L = (w·x)^2: H = 2 x xᵀ, so H·[1, 0] = 2 x x₀ = [2, 4] at x = [1, 2].
        let m = Model::from_source("m.bp", "input x[2]\nparam w[2] = 0\nloss (w @ x)^2\n").unwrap();
        let h = m.hvp().unwrap();
        let names: Vec<&str> = h.args.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["x", "w", "dir.w"]);
        let args =
            [ir::Tensor::new([1, 2], [1.0, 2.0]), ir::Tensor::new([2], [0.5, -1.0]), ir::Tensor::new([2], [1.0, 0.0])];
        let vals = ir::interpret(&h, 1, &args).unwrap();
        assert_eq!(vals[h.result("grad.w").unwrap().value.index()].data, vec![2.0, 4.0]);
    }

    #[test]
    fn missing_model_names_the_path() {
        let e = Model::load("/nonexistent/m.bp").unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent/m.bp: cannot read: No such file or directory (os error 2)");
    }
}
