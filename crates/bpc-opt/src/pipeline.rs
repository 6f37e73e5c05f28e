//! The pass pipeline: which passes each optimization level runs, in order.

use bpc_ir::{Function, verify};

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
    let mut f = func.clone();
    f.kernels = None;
    if level == OptLevel::O0 {
        return f;
    }
    f = run_pass(&f, "dce", eliminate_dead_code);
    // Each rewrite exposes more of the others (a folded constant is a `x * 1`; a hoisted sum
    // is a `(a / B) · B`): iterate to a fixed point, which is reached in a few rounds.
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
    f = match level {
        OptLevel::O2 => run_pass(&f, "fuse", fuse),
        OptLevel::O0 | OptLevel::O1 => {
            f.kernels = Some(Vec::new());
            f
        }
    };
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
    use bpc_ir::read;

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

    #[test]
    fn o1_and_o2_eliminate_dead_code() {
        let f = read(TEXT).unwrap();
        let want = "function f {\n  input x: f32[]\n  v0: f32[] = arg x\n  v1: f32[] = exp v0\n  result loss = v1\n}\n";
        for level in [OptLevel::O1, OptLevel::O2] {
            assert_eq!(optimize(&f, level).to_string(), want);
        }
    }
}
