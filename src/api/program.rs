//! [`Program`]: a checked model, what it declares, its IR at each stage, and the factory of
//! its native functions.

use std::path::Path;

use bpc_ir::{ArgKind, Function};
use bpc_opt::OptLevel;

use super::native::{Forward, Hvp, Native, Outs, TrainStep, ValueAndGrad};
use super::{Error, ErrorKind, Params};
use crate::Model;

/// How a [`Program`] is optimized and compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Optimizer level of every native function (`-O0`, `-O1`, `-O2`; default `-O2`).
    /// Results at `O0` and `O2` agree to float32 rounding (SPEC §3).
    pub opt_level: OptLevel,
    /// Threads large matrix products may use; 0 (the default) means all cores. Small
    /// products always run on the calling thread.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options { opt_level: OptLevel::O2, threads: 0 }
    }
}

/// A stage of the pipeline whose IR [`Program::emit`] prints (the command line's `--emit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The syntax tree.
    Ast,
    /// The checked forward function (`--emit-ir`).
    Ir,
    /// Forward plus adjoint: the loss and its gradient with respect to every input, real
    /// label, param and binding ([`Program::grad_names`]).
    Grad,
    /// [`Stage::Grad`] after the optimizer at the program's [`Options::opt_level`], kernels
    /// visible.
    Opt,
}

/// A named tensor a program declares: an input, a label or a param.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The name in the source.
    pub name: String,
    /// The declared shape: per example (without the batch axis) if [`TensorSpec::batched`],
    /// else the whole tensor. `[]` is a scalar.
    pub shape: Vec<usize>,
    /// Whether the tensor has one row per example of the minibatch (inputs, labels, values
    /// derived from them), stored `[B, shape...]` row-major.
    pub batched: bool,
}

impl TensorSpec {
    /// Elements of one example (or of the whole tensor, if not batched): the product of
    /// `shape`.
    pub fn example_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Elements of a buffer holding this tensor at minibatch size `batch`.
    pub fn len(&self, batch: usize) -> usize {
        if self.batched { batch * self.example_len() } else { self.example_len() }
    }
}

/// What a `label` declaration holds per example.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKind {
    /// `label y : class(K)`: one `i32` class index in `0..K` per example
    /// ([`super::Label::Class`]).
    Class(usize),
    /// `label y[...]`: real numbers of the declared shape per example
    /// ([`super::Label::Real`]).
    Real,
}

/// A `label` declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSpec {
    /// Name and per-example shape (`[]` for a class label).
    pub tensor: TensorSpec,
    /// Class or real.
    pub kind: LabelKind,
}

/// Compiles the model `source` (the `.bp` language, SPEC §1) with `options`. Diagnostics
/// call the text `model.bp`; [`Program::from_source`] chooses the name.
///
/// # Errors
/// [`ErrorKind::Program`] with every diagnostic lowering found.
pub fn compile(source: &str, options: &Options) -> Result<Program, Error> {
    Program::from_source("model.bp", source, options)
}

/// Reads and compiles the model at `path`.
///
/// # Errors
/// [`ErrorKind::Io`] naming the path and the system's reason, or [`ErrorKind::Program`].
pub fn compile_file(path: impl AsRef<Path>, options: &Options) -> Result<Program, Error> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(ErrorKind::Io, format!("{}: cannot read: {e}", path.display())))?;
    Program::from_source(path.display().to_string(), text, options)
}

/// A checked model: its source, its forward IR, what it declares, and the factory of its
/// native functions.
///
/// A `Program` is immutable and `Send + Sync` (share it by reference or in an `Arc`;
/// `clone` copies the IR); each native function it makes
/// ([`Program::forward`], [`Program::value_and_grad`], [`Program::train_step`],
/// [`Program::hvp`]) is specialized for one minibatch size and compiled when made.
#[derive(Clone, Debug)]
pub struct Program {
    model: Model,
    options: Options,
    inputs: Vec<TensorSpec>,
    labels: Vec<LabelSpec>,
    params: Params,
}

impl Program {
    /// Compiles `text`; `path` is the name diagnostics show, and its file stem names the
    /// model unless the source has a `model NAME` line.
    ///
    /// # Errors
    /// [`ErrorKind::Program`] with every diagnostic lowering found.
    pub fn from_source(path: impl Into<String>, text: impl Into<String>, options: &Options) -> Result<Program, Error> {
        Program::from_model(Model::from_source(path, text)?, options)
    }

    /// The program of an already checked model.
    pub(crate) fn from_model(model: Model, options: &Options) -> Result<Program, Error> {
        let f = &model.func;
        let spec = |id| {
            let a = f.arg(id);
            TensorSpec { name: a.name.clone(), shape: a.ty.shape.dims.clone(), batched: a.ty.shape.batch }
        };
        let inputs = f.inputs().map(spec).collect();
        let labels = f
            .labels()
            .map(|id| {
                let kind = match f.arg(id).kind {
                    ArgKind::Label { classes: Some(k) } => LabelKind::Class(k),
                    _ => LabelKind::Real,
                };
                LabelSpec { tensor: spec(id), kind }
            })
            .collect();
        let params = Params::zeros(f, model.hash());
        Ok(Program { model, options: options.clone(), inputs, labels, params })
    }

    /// The model's name: its `model NAME` line, else the file stem.
    pub fn name(&self) -> &str {
        &self.model.func.name
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.model.source.text
    }

    /// The options every native function of this program is compiled with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The checked forward function (results `loss`, then `output` and `logits` when the
    /// model has them); `Display` prints it as `--emit-ir` does.
    pub fn function(&self) -> &Function {
        &self.model.func
    }

    /// The lower-level facade the command line uses.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The text of `stage` (see [`Stage`]).
    ///
    /// # Errors
    /// [`ErrorKind::Program`] if the loss cannot be differentiated ([`Stage::Grad`],
    /// [`Stage::Opt`]).
    pub fn emit(&self, stage: Stage) -> Result<String, Error> {
        let m = &self.model;
        Ok(match stage {
            Stage::Ast => bpc_front::parse(&m.source).map_err(|d| Error::program(&m.source, d))?.to_string(),
            Stage::Ir => m.func.to_string(),
            Stage::Grad | Stage::Opt => {
                let names = m.grad_names();
                let vg = m.value_and_grad(&names.iter().map(String::as_str).collect::<Vec<_>>())?;
                match stage {
                    Stage::Opt => bpc_opt::optimize(&vg, self.options.opt_level).to_string(),
                    _ => vg.to_string(),
                }
            }
        })
    }

    /// The inputs in declaration order: the `inputs` of a [`super::Feed`].
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    /// The labels in declaration order: the `labels` of a [`super::Feed`].
    pub fn labels(&self) -> &[LabelSpec] {
        &self.labels
    }

    /// The params in declaration order, each with its whole shape; the slab of a
    /// [`Params`] holds them in this order, contiguously.
    pub fn params(&self) -> Vec<TensorSpec> {
        self.params
            .iter()
            .map(|(name, shape, _)| TensorSpec { name: name.to_string(), shape: shape.to_vec(), batched: false })
            .collect()
    }

    /// Floats in the param slab: the sum of every param's element count.
    pub fn param_len(&self) -> usize {
        self.params.len()
    }

    /// Every name a gradient can be taken with respect to: inputs, real labels and params
    /// in declaration order, then the bindings in source order (not class labels, nor
    /// values that are constants).
    pub fn grad_names(&self) -> Vec<String> {
        self.model.grad_names()
    }

    /// Every param drawn from its initializer (`~ normal(0, 0.5)`, `= 0`, ...), each from
    /// its own random stream of `seed`: the same seed gives the same params on every run.
    ///
    /// # Errors
    /// [`ErrorKind::Other`] if an initializer does not fit its param's shape.
    pub fn init_params(&self, seed: u64) -> Result<Params, Error> {
        Params::init(&self.model.func, self.model.hash(), seed)
    }

    /// Params read from a safetensors checkpoint (as `bpc train --save` writes and
    /// [`Params::save`] writes).
    ///
    /// # Errors
    /// [`ErrorKind::Checkpoint`] naming the file: unreadable, not safetensors, a param
    /// missing or of the wrong shape (every one that differs is named).
    pub fn load_params(&self, path: impl AsRef<Path>) -> Result<Params, Error> {
        Params::load(&self.model.func, self.model.hash(), path.as_ref())
    }

    /// The forward function at minibatch size `batch`: the model's `output` (else the
    /// logits passed to `cross_entropy`, else the `loss`) for `batch` examples.
    ///
    /// # Errors
    /// [`ErrorKind::Call`] if `batch` is 0.
    pub fn forward(&self, batch: usize) -> Result<Forward, Error> {
        let f = &self.model.func;
        let name = ["output", "logits", "loss"].into_iter().find(|n| f.result(n).is_some()).unwrap_or("loss");
        let func = bpc_train::eval::keeping(f, &[name]);
        Ok(Forward::new(Native::compile(self, &func, batch, Outs::Named(name))?))
    }

    /// The value and gradient of the loss with respect to `wrt` (names from
    /// [`Program::grad_names`]; `&program.param_names()` for the params), at minibatch
    /// size `batch`. The loss is the mean over the minibatch of the per-example loss (plus
    /// any regularizer), so a gradient with respect to a per-example tensor has
    /// `[B, shape...]` elements, each d loss / d element.
    ///
    /// # Errors
    /// [`ErrorKind::Program`] for an unknown name or a class label (pointing at its
    /// declaration) or a loss that is not a scalar; [`ErrorKind::Call`] if `batch` is 0.
    pub fn value_and_grad(&self, wrt: &[&str], batch: usize) -> Result<ValueAndGrad, Error> {
        let vg = self.model.value_and_grad(wrt)?;
        Ok(ValueAndGrad::new(Native::compile(self, &vg, batch, Outs::Grads)?))
    }

    /// The names of the params in declaration order, for [`Program::value_and_grad`].
    pub fn param_names(&self) -> Vec<&str> {
        self.params.names().collect()
    }

    /// The SGD train step at minibatch size `batch`: forward, adjoint and `p ← p − lr·∇p`
    /// for every param, fused and compiled as one native function. For momentum, Adam and
    /// the rest, use a [`super::Trainer`].
    ///
    /// # Errors
    /// [`ErrorKind::Program`] if the loss is not a scalar or a declaration is named `lr`;
    /// [`ErrorKind::Call`] if `batch` is 0.
    pub fn train_step(&self, batch: usize) -> Result<TrainStep, Error> {
        let step = self.model.train_step()?;
        Ok(TrainStep::new(Native::compile(self, &step, batch, Outs::None)?))
    }

    /// The Hessian–vector product of the loss with respect to the params at minibatch size
    /// `batch`: given a direction `v` (one slab like the params'), `H·v` (the same layout),
    /// computed by differentiating the gradient program a second time.
    ///
    /// # Errors
    /// [`ErrorKind::Program`] if the model has no params or its loss is not a scalar;
    /// [`ErrorKind::Call`] if `batch` is 0.
    pub fn hvp(&self, batch: usize) -> Result<Hvp, Error> {
        let h = self.model.hvp()?;
        let native = Native::compile(self, &h, batch, Outs::Grads)?;
        // `H·v` is written over a slab laid out like the params.
        for (spec, range) in native.out_layout() {
            if self.params.range(&spec.name).as_ref() != Some(range) {
                let m =
                    format!("{}: internal error: H·v of {} is not laid out like the params", self.name(), spec.name);
                return Err(Error::new(ErrorKind::Other, m));
            }
        }
        Ok(Hvp::new(native))
    }

    /// Loads a CSV (or `.csv.gz`) data set laid out for this program: the label column
    /// (`label`, else the last), the other columns filling the inputs in declaration order,
    /// each reshaped row-major (SPEC §4).
    ///
    /// # Errors
    /// [`ErrorKind::Data`] naming `file:line:column` and what was expected, or the path
    /// and the system's reason if the file cannot be read.
    pub fn load_csv(&self, path: impl AsRef<Path>) -> Result<super::Dataset, Error> {
        let schema = self.schema()?;
        Ok(bpc_train::data::load(path.as_ref(), &schema, &bpc_train::LoadOptions::default())?)
    }

    /// The data layout a CSV must have.
    pub(crate) fn schema(&self) -> Result<bpc_train::Schema, Error> {
        bpc_train::Schema::of(&self.model.func).map_err(|e| Error::new(ErrorKind::Data, e.0))
    }

    /// The zero slab with every param's name and shape.
    pub(crate) fn param_layout(&self) -> &Params {
        &self.params
    }
}
