//! The pass pipeline: which passes each optimization level runs, in order.

use bpc_ir::{Function, verify};

use crate::batch::bind_batch_size;
use crate::cse::eliminate_common_subexpressions;
use crate::dce::eliminate_dead_code;
use crate::fold::fold_constants;
use crate::fuse::fuse;
use crate::hoist::hoist_shared;
use crate::simplify::simplify;

/// `-O0` turns every pass off; `-O2` is the default.
///
/// - `-O0`: nothing. Code generation then plans one kernel per instruction and one buffer
///   per value, and writes param updates with a final copy.
/// - `-O1`: the classic passes (dead code, common subexpressions, constant folding,
///   algebraic simplification, hoisting of shared values), and buffer reuse by liveness with
///   in-place updates in code generation (`Function::kernels` is set, empty).
/// - `-O2`: `-O1` plus fusion (the `fuse` pass): elementwise chains, reductions with their producers
///   and epilogues, row-wise softmax/cross-entropy work, GEMM epilogues and SGD updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OptLevel {
    /// `-O0`: no pass.
    O0,
    /// `-O1`: the classic passes and buffer reuse.
    O1,
    /// `-O2` (the default): `-O1` plus fusion.
    #[default]
    O2,
}

/// Runs the passes of `level` over `func` and returns the optimized copy.
///
/// # Panics
/// In debug builds, if a pass produces IR the verifier rejects (a compiler bug), naming the
/// pass.
pub fn optimize(func: &Function, level: OptLevel) -> Function {
    optimize_at(func, level, None)
}

/// [`optimize`] for a function compiled at minibatch size `batch` (what `bpc_codegen::compile`
/// is given): after the classic passes, `batch_size` is bound to `batch`
/// ([`bind_batch_size`]) and they run again, so `1 / B` is a constant and, at `B = 1`, the
/// batch mean's cotangent costs nothing. `--emit opt` prints [`optimize`]'s symbolic form.
/// A `batch` of 0 (which code generation refuses) leaves `batch_size` symbolic.
///
/// # Panics
/// As [`optimize`].
pub fn optimize_for_batch(func: &Function, level: OptLevel, batch: usize) -> Function {
    optimize_at(func, level, Some(batch))
}

fn optimize_at(func: &Function, level: OptLevel, batch: Option<usize>) -> Function {
    let mut f = func.clone();
    f.kernels = None;
    if level == OptLevel::O0 {
        return f;
    }
    f = run_pass(&f, "dce", eliminate_dead_code);
    f = classic_passes(f);
    // Hoisting matches `(a / B) · B` with `B` symbolic: bind the batch size after it.
    if let Some(b) = batch.filter(|&b| b > 0) {
        f = bind_batch_size(&f, b);
        f = classic_passes(f);
    }
    f = match level {
        OptLevel::O2 => run_pass(&f, "fuse", fuse),
        OptLevel::O0 | OptLevel::O1 => {
            f.kernels = Some(Vec::new());
            f
        }
    };
    f
}

/// The classic passes to a fixed point: each rewrite exposes more of the others (a folded
/// constant is a `x * 1`; a hoisted sum is a `(a / B) · B`), reached in a few rounds.
fn classic_passes(mut f: Function) -> Function {
    for _ in 0..4 {
        let before = f.to_string();
        f = run_pass(&f, "cse", eliminate_common_subexpressions);
        f = run_pass(&f, "fold", fold_constants);
        f = run_pass(&f, "simplify", simplify);
        f = run_pass(&f, "hoist", hoist_shared);
        f = run_pass(&f, "dce", eliminate_dead_code);
        if f.to_string() == before {
            break;
        }
    }
    f
}

/// Runs one pass, then the verifier in debug builds.
fn run_pass(func: &Function, name: &str, pass: fn(&Function) -> Function) -> Function {
    let out = pass(func);
    if cfg!(debug_assertions)
        && let Err(e) = verify(&out)
    {
        panic!("internal error: pass `{name}` produced invalid IR in `{}`: {e}\n{out}", out.name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpc_ir::interp::results;
    use bpc_ir::{Inst, Tensor, interpret, read};

    const TEXT: &str = "\
function f {
  input x: f32[]
  v0: f32[] = arg x
  v1: f32[] = exp v0
  v2: f32[] = neg v0
  result loss = v1
}
";

    #[test]
    fn o0_runs_nothing() {
        let f = read(TEXT).unwrap();
        assert_eq!(optimize(&f, OptLevel::O0), f);
    }

    /// Binding the batch size keeps every result, at the batch it was bound to (f64
    /// interpreter; the rewrites round differently, hence the tolerance).
    #[test]
    fn optimize_for_batch_keeps_results() {
        let text = include_str!("../tests/filetests/batch1.ir");
        let input: String = text
            .split("; after")
            .next()
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with(';'))
            .collect::<Vec<_>>()
            .join("\n");
        let f = read(&input).unwrap();
        for batch in [1, 3] {
            let args: Vec<Tensor> = (0..5)
                .map(|a| {
                    Tensor::new(
                        [batch],
                        (0..batch).map(|i| [2.0, -1.0, -3.0, -2.0, -3.0][a] + 0.25 * i as f64).collect::<Vec<_>>(),
                    )
                })
                .collect();
            let want = interpret(&f, batch, &args).unwrap();
            let bound = optimize_for_batch(&f, OptLevel::O2, batch);
            assert!(!bound.values().any(|v| *bound.inst(v) == Inst::BatchSize), "{bound}");
            let got = interpret(&bound, batch, &args).unwrap();
            for ((name, w), (_, g)) in results(&f, &want).into_iter().zip(results(&bound, &got)) {
                for (a, b) in w.data.iter().zip(&g.data) {
                    assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{name} at batch {batch}: {a} vs {b}");
                }
            }
        }
        // The lecture's point: value 0.7310586, d/dw0 = -0.1966119.
        let bound = optimize_for_batch(&f, OptLevel::O2, 1);
        let one = interpret(&bound, 1, &[2.0, -1.0, -3.0, -2.0, -3.0].map(|x| Tensor::new([1], vec![x]))).unwrap();
        let r = results(&bound, &one);
        assert!(
            (r[0].1.data[0] - 0.7310585786300049).abs() < 1e-15 && (r[1].1.data[0] + 0.19661193324148185).abs() < 1e-15,
            "{r:?}"
        );
    }

    #[test]
    fn o1_and_o2_eliminate_dead_code() {
        let f = read(TEXT).unwrap();
        let want = "function f {\n  input x: f32[]\n  v0: f32[] = arg x\n  v1: f32[] = exp v0\n  result loss = v1\n}\n";
        for level in [OptLevel::O1, OptLevel::O2] {
            assert_eq!(optimize(&f, level).to_string(), want);
        }
    }
}
