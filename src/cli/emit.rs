//! `bpc MODEL --emit STAGE`: print what the compiler made at one stage.

use std::path::Path;

use bpc::codegen::Options;
use bpc::{Error, Model, OptLevel};

use super::Stage;

/// Settings of `--emit`.
pub struct EmitOptions {
    pub level: OptLevel,
    /// Minibatch size for `clif` and `stats`.
    pub batch: usize,
    /// `--set` pairs: the point `dot` and `svg` annotate.
    pub set: Vec<String>,
    pub seed: u64,
}

/// Prints `stage` of the model at `path`. `clif` and `stats` describe the train step (what
/// `bpc train` calls once per minibatch) compiled for minibatches of `batch`.
pub fn run(path: &Path, stage: Stage, opts: &EmitOptions) -> Result<(), Error> {
    let (level, batch) = (opts.level, opts.batch);
    let model = Model::load(path)?;
    let text = match stage {
        Stage::Ast => match bpc::front::parse(&model.source) {
            Ok(ast) => ast.to_string(),
            Err(d) => return Err(Error::msg(bpc::front::render(&model.source, &d))),
        },
        Stage::Ir => model.func.to_string(),
        Stage::Grad | Stage::Opt => {
            let wrt = model.grad_names();
            let refs: Vec<&str> = wrt.iter().map(String::as_str).collect();
            let vg = model.value_and_grad(&refs)?;
            if stage == Stage::Opt { bpc::opt::optimize(&vg, level).to_string() } else { vg.to_string() }
        }
        Stage::Clif | Stage::Stats => {
            let unfused = bpc::opt::optimize(&model.train_step()?, OptLevel::O1);
            let step = bpc::opt::optimize_for_batch(&model.train_step()?, level, batch);
            let copts = Options { keep_clif: stage == Stage::Clif, ..Options::default() };
            let native = bpc::codegen::compile_with(&step, batch, &copts)
                .map_err(|e| Error::msg(format!("{}: code generation failed: {}", model.source.path, e.0)))?;
            if stage == Stage::Clif {
                native.clif().iter().map(|(name, clif)| format!("; {name}\n{clif}\n")).collect()
            } else {
                stats(&model, &step, &native, level) + &residuals(&unfused, native.stats().workspace_bytes, batch)
            }
        }
        Stage::Dot | Stage::Svg => {
            let ann = if opts.set.is_empty() {
                None
            } else {
                let args = super::eval::bind(&model, &opts.set, None, opts.seed)?;
                Some(bpc::graph::annotate(&model, &args)?)
            };
            if stage == Stage::Dot {
                bpc::graph::dot(&model.func, ann.as_ref())
            } else {
                bpc::graph::svg(&model.func, ann.as_ref())
            }
        }
    };
    print!("{text}");
    Ok(())
}

/// The `--emit stats` lines on the residuals: the forward activations the adjoint reads
/// (`bpc_opt::adjoint_residuals` of the step after the classic passes, `unfused`), their
/// bytes at `batch`, and the arena as a multiple of them.
fn residuals(unfused: &bpc::Function, arena: usize, batch: usize) -> String {
    let values = bpc::opt::adjoint_residuals(unfused);
    let bytes = bpc::opt::adjoint_residual_bytes(unfused, batch);
    let names: Vec<String> = values
        .iter()
        .map(|&v| {
            let named = unfused.names.iter().find(|(_, n)| *n == v).map(|(s, _)| s.clone());
            let result = || unfused.results.iter().find(|r| r.value == v).map(|r| r.name.clone());
            let name = named.or_else(result).unwrap_or_else(|| v.to_string());
            format!("{name} {}", unfused.ty(v))
        })
        .collect();
    let ratio = if bytes == 0 { "no residuals".to_string() } else { format!("{:.2}x", arena as f64 / bytes as f64) };
    format!(
        "residual bytes   {bytes} (forward activations the adjoint reads: {})\n\
         arena/residuals  {ratio}\n",
        if names.is_empty() { "none".to_string() } else { names.join(", ") }
    )
}

/// The `--emit stats` table of a compiled train step.
fn stats(model: &Model, step: &bpc::Function, native: &bpc::Compiled, level: OptLevel) -> String {
    let s = native.stats();
    let batch = native.batch();
    let io: usize = native.args().iter().chain(native.results()).map(|b| b.len * 4).sum();
    let (level, passes) = match level {
        OptLevel::O0 => ("-O0", "none: one kernel per instruction, one arena buffer per value"),
        OptLevel::O1 => ("-O1", "dce cse fold simplify hoist, bind B, again; arena buffers shared by liveness"),
        OptLevel::O2 => ("-O2", "dce cse fold simplify hoist, bind B, again, fuse; arena buffers shared by liveness"),
    };
    let groups = step.kernels.as_deref().unwrap_or_default();
    let into_gemm = groups.iter().filter(|k| k.kind == bpc::ir::KernelKind::Gemm).count();
    format!(
        "train step of {} at batch {batch}, {level}\n\
         passes           {passes}\n\
         kernels          {} per step ({} groups fused by the optimizer, {into_gemm} of them into a GEMM; {} inlined \
         into the entry)\n\
         gemm calls       {}\n\
         arena bytes      {}\n\
         argument bytes   {io}\n\
         flops per step   {}\n\
         compile time     {:.2} ms\n",
        model.func.name,
        s.kernel_calls + s.inlined,
        groups.len(),
        s.inlined,
        s.gemm_calls,
        s.workspace_bytes,
        bpc::flops(step, batch),
        native.compile_time().as_secs_f64() * 1e3
    )
}
