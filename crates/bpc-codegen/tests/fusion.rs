//! Fusion proven by kernel counts: every `fuse_*.ir` filetest of bpc-opt states in its
//! header how many generated kernels (`; kernels N`, inlined ones included) and GEMM calls
//! (`; gemms N`) its function compiles to at `-O2`; the compiled code must also agree with
//! the float64 interpreter and with the same function compiled at `-O0`.

mod common;

use std::path::Path;

use bpc_ir::read;
use bpc_opt::{OptLevel, optimize};
use common::{F32_TOL, assert_close, random_args, run_interp, run_jit, uniform};

fn directive(text: &str, key: &str) -> usize {
    let line = text.lines().find_map(|l| l.strip_prefix(&format!("; {key} "))).expect("a count directive");
    line.trim().parse().expect("a number")
}

#[test]
fn fused_kernel_counts_and_values() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bpc-opt/tests/filetests");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let fuse: Vec<_> = files.iter().filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("fuse_")).collect();
    assert!(fuse.len() >= 6, "the fusion filetests are missing");
    for path in fuse {
        let text = std::fs::read_to_string(path).unwrap();
        let input = text.split("; after\n").next().unwrap();
        let input: String = input.lines().filter(|l| !l.starts_with(';')).map(|l| format!("{l}\n")).collect();
        let f = read(&input).unwrap();
        let (kernels, gemms) = (directive(&text, "kernels"), directive(&text, "gemms"));
        let o2 = optimize(&f, OptLevel::O2);
        let o0 = optimize(&f, OptLevel::O0);
        for batch in [1, 7, 33] {
            let c2 = bpc_codegen::compile(&o2, batch).unwrap();
            let s = c2.stats();
            let what = format!("{} at batch {batch}", path.display());
            assert_eq!((s.kernel_calls + s.inlined, s.gemm_calls), (kernels, gemms), "{what}: {s:?}");
            let args = random_args(&f, batch, 11, &uniform(-2.0, 2.0));
            let got = run_jit(&c2, &o2, &args);
            let want = run_interp(&f, batch, &args);
            let c0 = bpc_codegen::compile(&o0, batch).unwrap();
            let base = run_jit(&c0, &o0, &args);
            for ((r, g), (w, b)) in f.results.iter().zip(&got).zip(want.iter().zip(&base)) {
                assert_close(&format!("{what}: {} vs interpreter", r.name), g, w, F32_TOL);
                let b: Vec<f64> = b.iter().map(|&x| x as f64).collect();
                assert_close(&format!("{what}: {} at -O2 vs -O0", r.name), g, &b, F32_TOL);
            }
        }
    }
}

/// Issue 4's bar for `examples/mnist.bp`: the whole SGD train step (forward, adjoint,
/// update) is at most 5 GEMM calls and 6 generated kernels, and the arena is at most 1.5×
/// the residuals (the forward activations the adjoint reads, `adjoint_residual_bytes` of
/// the step after the classic passes: `h` and the softmax, `B·266` floats). Pinned exactly:
/// 4 GEMMs (`x·W1ᵀ`, `h·W2ᵀ`, `dW2`, and `dW1` with the update as alpha/beta) and 5 kernels
/// (bias+relu, the softmax cross-entropy rows kernel with its gradient and the `b2` update,
/// the relu mask with the inlined `dY·W2`, the `b1` reduce with its update, the `W2` update).
/// On a CPU with AVX-512 the inlined `dY·W2` is computed a row at a time by a call
/// (`Stats::row_products`), and the arena does not grow for it (the rows are on the stack).
#[test]
fn mnist_train_step_counts_and_arena() {
    let f =
        bpc_front::compile(&bpc_front::Source::new("mnist.bp", include_str!("../../../examples/mnist.bp"))).unwrap();
    let step = bpc_autodiff::train_step(&f, bpc_autodiff::Optimizer::Sgd).unwrap();
    let unfused = optimize(&step, OptLevel::O1);
    let o2 = optimize(&step, OptLevel::O2);
    for batch in [32, 128, 1024] {
        let s = bpc_codegen::compile(&o2, batch).unwrap().stats();
        assert_eq!((s.gemm_calls, s.kernel_calls + s.inlined), (4, 5), "batch {batch}: {s:?}");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert!(s.row_products >= 1, "batch {batch}: {s:?}");
        }
        let residuals = bpc_opt::adjoint_residual_bytes(&unfused, batch);
        assert_eq!(residuals, batch * (256 + 10) * 4);
        let ratio = s.workspace_bytes as f64 / residuals as f64;
        assert!(ratio <= 1.5, "batch {batch}: arena {} is {ratio:.2}× the residuals {residuals}", s.workspace_bytes);
    }
}

/// The optimizers' train steps of `examples/mnist.bp` keep the four GEMMs, and every update
/// of a param or of optimizer state is written in place (no final copies, no arena buffer
/// for Adam's moments): (kernel calls, GEMM calls, arena bytes) at batch 128.
#[test]
fn mnist_train_step_with_each_optimizer() {
    use bpc_autodiff::Optimizer;
    let f =
        bpc_front::compile(&bpc_front::Source::new("mnist.bp", include_str!("../../../examples/mnist.bp"))).unwrap();
    let grad_w1 = 256 * 784 * 4;
    for (opt, kernels, arena_max) in [
        (Optimizer::Sgd, 5, 160_000),
        (Optimizer::Momentum { nesterov: false }, 9, 160_000),
        (Optimizer::Adam, 18, 160_000 + grad_w1),
    ] {
        let step = optimize(&bpc_autodiff::train_step(&f, opt).unwrap(), OptLevel::O2);
        let s = bpc_codegen::compile(&step, 128).unwrap().stats();
        assert_eq!((s.kernel_calls + s.inlined, s.gemm_calls), (kernels, 4), "{opt:?}: {s:?}");
        assert!(s.workspace_bytes <= arena_max, "{opt:?}: {s:?}");
    }
}
