//! # bpc: a JIT-compiled gradient compiler
//!
//! A model written the way the backpropagation lecture writes it (`.bp`, see SPEC §1) is
//! parsed into a typed tensor IR ([`ir`]), differentiated by reverse mode ([`autodiff`]),
//! optimized ([`opt`]) and compiled by Cranelift ([`codegen`]) into native forward,
//! value-and-grad and train-step functions; [`train`] holds the data loading and the SGD
//! driver. This crate is the facade over those stages and the `bpc` command line.
//!
//! ```
//! use bpc::{Arg, Model, OptLevel};
//!
//! let model = Model::from_source("add_mul.bp", "input x\ninput y\ninput z\nq = x + y\nf = q * z\nloss f\n")?;
//! let vg = model.value_and_grad(&["x", "y", "z"])?;
//! let native = model.compile(&vg, 1, OptLevel::O2)?;
//! let mut ws = native.workspace();
//! let (mut loss, mut dx, mut dy, mut dz) = ([0.0f32], [0.0f32], [0.0f32], [0.0f32]);
//! native.run(
//!     &mut ws,
//!     &mut [Arg::F32(&[-2.0]), Arg::F32(&[5.0]), Arg::F32(&[-4.0])],
//!     &mut [&mut loss, &mut dx, &mut dy, &mut dz],
//! )?;
//! assert_eq!((loss[0], dx[0], dz[0]), (-12.0, -4.0, 3.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod graph;

use std::fmt;
use std::path::Path;

pub use bpc_autodiff as autodiff;
pub use bpc_codegen as codegen;
pub use bpc_front as front;
pub use bpc_ir as ir;
pub use bpc_opt as opt;
pub use bpc_train as train;

pub use bpc_codegen::{Arg, Compiled, Workspace};
pub use bpc_front::Source;
pub use bpc_ir::{ArgKind, Diagnostic, Function, Inst};
pub use bpc_opt::OptLevel;

/// A failure of the pipeline, rendered for a person: program errors carry the
/// `file:line:column` text with carets from [`bpc_front::render`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.trim_end())
    }
}

impl std::error::Error for Error {}

/// A checked model: its source and its forward function.
#[derive(Clone, Debug)]
pub struct Model {
    pub source: Source,
    /// The forward function (results `loss`, and `output` / `logits` when present).
    pub func: Function,
}

impl Model {
    /// Reads and compiles the model at `path`; a missing file names the path and the
    /// system's reason.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error(format!("{}: cannot read: {e}", path.display())))?;
        Model::from_source(path.display().to_string(), text)
    }

    /// Compiles `text`; `path` is what diagnostics show.
    pub fn from_source(path: impl Into<String>, text: impl Into<String>) -> Result<Model, Error> {
        let source = Source::new(path, text);
        match bpc_front::compile(&source) {
            Ok(func) => Ok(Model { source, func }),
            Err(diags) => Err(Error(bpc_front::render(&source, &diags))),
        }
    }

    /// Renders a diagnostic of a later stage against this model's source.
    pub fn render(&self, diag: &Diagnostic) -> Error {
        Error(bpc_front::render(&self.source, std::slice::from_ref(diag)))
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
            return Err(Error(format!("{}: --hvp needs params, and the model declares none", self.source.path)));
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

    /// Optimizes `func` at `level` and JIT-compiles it for minibatch size `batch`.
    pub fn compile(&self, func: &Function, batch: usize, level: OptLevel) -> Result<Compiled, Error> {
        let opt = bpc_opt::optimize(func, level);
        bpc_codegen::compile(&opt, batch)
            .map_err(|e| Error(format!("{}: code generation failed: {}", self.source.path, e.0)))
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
