//! Matrix products through the gemm shim: every `ta`/`tb` combination, the minibatch axis as
//! a row and as the contracted axis, transposed and indexed views as operands.

mod common;

use bpc_codegen::{Options, compile_with};
use bpc_ir::{BinaryOp, Inst, Shape};
use common::*;

/// The tolerance for f32 dot products of length `k` against the f64 oracle: the gemm crate
/// sums in plain f32 (one accumulator per output), so the error of a cancelling dot product
/// grows like `ε·√k·|partial sums|`; the spec's 1e-5 holds up to k ≈ 100 at unit scale.
fn dot_tol(k: usize) -> f64 {
    F32_TOL * (k as f64 / 100.0).sqrt().max(1.0)
}

/// `op(A)·op(B)` with `A` shared `[m,k]` (or `[k,m]` if `ta`) and `B` shared too.
#[test]
fn all_four_flag_combinations_on_shared_operands() {
    for (m, k, n) in [(1, 1, 1), (3, 5, 4), (17, 33, 9), (64, 31, 65)] {
        for ta in [false, true] {
            for tb in [false, true] {
                let mut b = B::new("mm");
                let a = b.param("a", &if ta { [k, m] } else { [m, k] });
                let w = b.param("w", &if tb { [n, k] } else { [k, n] });
                let y = b.ins(Inst::MatMul { lhs: a, rhs: w, ta, tb });
                b.result("y", y);
                check(&b.f, 1, (m * k * n) as u64, dot_tol(k));
            }
        }
    }
}

/// The minibatch axis as rows (`X W^T`), as the contracted axis (`dY^T X`, the weight
/// gradient: B×256 by B×784 gives 256×784) and both operands batched.
#[test]
fn batch_axis_as_rows_and_as_the_contraction() {
    for batch in BATCHES {
        let mut b = B::new("layer");
        let x = b.input("x", &[784]);
        let w = b.param("w", &[256, 784]);
        let dy = b.input("dy", &[256]);
        let y = b.ins(Inst::MatMul { lhs: x, rhs: w, ta: false, tb: true });
        let dw = b.ins(Inst::MatMul { lhs: dy, rhs: x, ta: true, tb: false });
        let dx = b.ins(Inst::MatMul { lhs: dy, rhs: w, ta: false, tb: false });
        b.result("y", y);
        b.result("dw", dw);
        b.result("dx", dx);
        check_with(&b.f, batch, batch as u64, dot_tol(784), &uniform(-1.0, 1.0));
    }
}

/// A batched left operand with each flag that admits one (`ta` with `tb` would need the
/// batch axis second in the right operand): rows, contraction, transposed weights.
#[test]
fn batched_operands_with_each_flag() {
    for batch in BATCHES {
        for (ta, tb) in [(false, false), (false, true), (true, false)] {
            let mut b = B::new("bb");
            let u = b.input("u", &[5]);
            let rhs = match (ta, tb) {
                (true, _) => b.input("v", &[3]),
                (false, true) => b.param("w", &[3, 5]),
                (false, false) => b.param("w", &[5, 3]),
            };
            let y = b.ins(Inst::MatMul { lhs: u, rhs, ta, tb });
            b.result("y", y);
            check(&b.f, batch, 3, F32_TOL);
        }
    }
}

/// Operands that are views: a transpose (strides swapped, no copy), a broadcast (copied
/// first), an indexed row block, and a product feeding elementwise code.
#[test]
fn view_operands() {
    let mut b = B::new("views");
    let x = b.input("x", &[6]);
    let w = b.param("w", &[4, 6]);
    let wt = b.ins(Inst::Transpose { arg: w });
    let y = b.ins(Inst::MatMul { lhs: x, rhs: wt, ta: false, tb: false });
    let v = b.param("v", &[6]);
    let vb = b.bcast(v, Shape::shared([3, 6]));
    let z = b.ins(Inst::MatMul { lhs: vb, rhs: w, ta: false, tb: true });
    let w3 = b.param("w3", &[2, 4, 6]);
    let slab = b.ins(Inst::Index { arg: w3, at: vec![1] });
    let s = b.ins(Inst::MatMul { lhs: x, rhs: slab, ta: false, tb: true });
    let t = b.bin(BinaryOp::Add, y, s);
    b.result("y", y);
    b.result("z", z);
    b.result("t", t);
    for batch in BATCHES {
        check(&b.f, batch, 4, F32_TOL);
    }
}

/// Above the threshold a product runs on several threads; the result must not change.
#[test]
fn threaded_products_match() {
    let mut b = B::new("big");
    let x = b.input("x", &[300]);
    let w = b.param("w", &[200, 300]);
    let y = b.ins(Inst::MatMul { lhs: x, rhs: w, ta: false, tb: true });
    b.result("y", y);
    let args = random_args(&b.f, 64, 1, &uniform(-1.0, 1.0));
    let want = run_interp(&b.f, 64, &args);
    for threads in [1, 2] {
        let opts = Options { threads, gemm_parallel_min: 1, owner_split_max: 0, ..Options::default() };
        let c = compile_with(&b.f, 64, &opts).unwrap();
        assert_eq!(c.stats().gemm_calls, 1);
        let got = run_jit(&c, &b.f, &args);
        assert_close(&format!("threads {threads}"), &got[0], &want[0], F32_TOL);
    }
}

/// Owner-computes splits (every product split by rows of its largest operand): the forward
/// `x·Wᵀ` cut along `W`'s rows (batch 64) or `x`'s rows (batch 512), the weight gradient
/// `dᵀ·x` cut along its own rows (batch 64) or left whole because its largest operand, `x`,
/// runs along the contracted axis (batch 512); blocks of 16-lane multiples plus a ragged last
/// one; 2 and 3 threads.
#[test]
fn owner_split_products_match() {
    let mut b = B::new("owner");
    let x = b.input("x", &[300]);
    let d = b.input("d", &[200]);
    let w = b.param("w", &[200, 300]);
    let y = b.ins(Inst::MatMul { lhs: x, rhs: w, ta: false, tb: true });
    let g = b.ins(Inst::MatMul { lhs: d, rhs: x, ta: true, tb: false });
    b.result("y", y);
    b.result("g", g);
    for batch in [64, 512] {
        let args = random_args(&b.f, batch, 7, &uniform(-1.0, 1.0));
        let want = run_interp(&b.f, batch, &args);
        for threads in [2, 3] {
            let opts = Options {
                threads,
                gemm_parallel_min: usize::MAX,
                owner_split_min: 1,
                owner_split_max: usize::MAX,
                ..Options::default()
            };
            let c = compile_with(&b.f, batch, &opts).unwrap();
            assert_eq!(c.stats().gemm_calls, 2);
            // At batch 512 the weight gradient's largest operand is `x`, whose rows lie along
            // the contracted axis: it runs whole.
            assert_eq!(c.stats().owner_splits, if batch == 64 { 2 } else { 1 }, "batch {batch}");
            let got = run_jit(&c, &b.f, &args);
            assert_close(&format!("y, batch {batch}, threads {threads}"), &got[0], &want[0], dot_tol(300));
            assert_close(&format!("g, batch {batch}, threads {threads}"), &got[1], &want[1], dot_tol(batch));
        }
    }
}

/// The default policy on 2 threads for MNIST's first layer (`x·W1ᵀ` and `dHᵀ·x`, 784 → 256):
/// at batch 128 (25.7M multiply-adds each, above `DEFAULT_GEMM_PARALLEL_MIN`) both are split
/// by owner computes along `W1`'s rows; at batch 256 (51.4M, from `DEFAULT_OWNER_SPLIT_MAX`)
/// both by gemmkit's parallel loops; same values as the interpreter.
#[test]
fn default_policy_owner_splits_batch_128_not_256() {
    let mut b = B::new("layer1");
    let x = b.input("x", &[784]);
    let d = b.input("d", &[256]);
    let w = b.param("w", &[256, 784]);
    let y = b.ins(Inst::MatMul { lhs: x, rhs: w, ta: false, tb: true });
    let g = b.ins(Inst::MatMul { lhs: d, rhs: x, ta: true, tb: false });
    b.result("y", y);
    b.result("g", g);
    for (batch, owner) in [(128, 2), (256, 0)] {
        let args = random_args(&b.f, batch, 5, &uniform(-1.0, 1.0));
        let want = run_interp(&b.f, batch, &args);
        let c = compile_with(&b.f, batch, &Options { threads: 2, ..Options::default() }).unwrap();
        assert_eq!((c.stats().gemm_calls, c.stats().owner_splits), (2, owner), "batch {batch}");
        let got = run_jit(&c, &b.f, &args);
        assert_close(&format!("y, batch {batch}"), &got[0], &want[0], dot_tol(784));
        assert_close(&format!("g, batch {batch}"), &got[1], &want[1], dot_tol(batch));
    }
}

/// The weight gradient of a wide layer at a large minibatch (`dYᵀ·X`, 256×784 contracting
/// 512–1024 rows) is run by gemmkit with both operands packed (`Options::pack_depth_min`):
/// the same bits as unpacked, on 1 and 2 threads. Only that product is packed: not the
/// forward `X·Wᵀ` (gemmkit packs `W` anyway), nor a 10-row gradient (one column tile), nor
/// the same gradient at batch 128.
#[test]
fn packed_weight_gradients_match_unpacked_bit_for_bit() {
    let mut b = B::new("wide");
    let x = b.input("x", &[784]);
    let w = b.param("w", &[256, 784]);
    let dy = b.input("dy", &[256]);
    let dz = b.input("dz", &[10]);
    let y = b.ins(Inst::MatMul { lhs: x, rhs: w, ta: false, tb: true });
    let dw = b.ins(Inst::MatMul { lhs: dy, rhs: x, ta: true, tb: false });
    let dv = b.ins(Inst::MatMul { lhs: dz, rhs: x, ta: true, tb: false });
    b.result("y", y);
    b.result("dw", dw);
    b.result("dv", dv);
    for (batch, packed) in [(128, 0), (512, 1), (1024, 1)] {
        let args = random_args(&b.f, batch, 3, &uniform(-1.0, 1.0));
        let want = run_interp(&b.f, batch, &args);
        for threads in [1, 2] {
            let run = |pack_depth_min| {
                let c = compile_with(&b.f, batch, &Options { threads, pack_depth_min, ..Options::default() }).unwrap();
                (c.stats().packed_gemms, run_jit(&c, &b.f, &args))
            };
            let (none, plain) = run(usize::MAX);
            let (some, got) = run(bpc_codegen::DEFAULT_PACK_DEPTH_MIN);
            assert_eq!((none, some), (0, packed), "batch {batch}, threads {threads}");
            assert_same_bits(&b.f, &plain, &got, &format!("batch {batch}, threads {threads}"));
            assert_close(&format!("dw, batch {batch}, threads {threads}"), &got[1], &want[1], dot_tol(batch));
        }
    }
}
