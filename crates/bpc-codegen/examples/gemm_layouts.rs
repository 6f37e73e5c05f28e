//! GFLOP/s of gemmkit and gemm (one thread) on the two large products of the MNIST train
//! step at batch 128, as bpc lays them out and transposed (`Cᵀ = Bᵀ·Aᵀ`):
//!
//!     cargo run -p bpc-codegen --release --example gemm_layouts

use std::time::Instant;

struct P {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
    dst: [isize; 2],
    lhs: [isize; 2],
    rhs: [isize; 2],
    beta: f32,
}

fn best<F: FnMut()>(mut f: F, flops: f64) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..30 {
        let t = Instant::now();
        for _ in 0..20 {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / 20.0);
    }
    flops / best / 1e9
}

fn main() {
    let b = 128;
    let ps = [
        P { name: "x.W1t", m: b, n: 256, k: 784, dst: [256, 1], lhs: [784, 1], rhs: [1, 784], beta: 0.0 },
        P { name: "dHt.x", m: 256, n: 784, k: b, dst: [784, 1], lhs: [1, 256], rhs: [784, 1], beta: 1.0 },
    ];
    let mut ws = gemmkit::Workspace::new();
    for p in ps {
        let a = vec![0.5f32; p.m * p.k];
        let bb = vec![0.25f32; p.k * p.n];
        let mut c = vec![0.0f32; p.m * p.n];
        let flops = 2.0 * (p.m * p.n * p.k) as f64;
        let kit = |ws: &mut gemmkit::Workspace, c: &mut [f32], t: bool| unsafe {
            if t {
                gemmkit::gemm_unchecked_with(
                    ws,
                    p.n,
                    p.k,
                    p.m,
                    1e-3,
                    bb.as_ptr(),
                    p.rhs[1],
                    p.rhs[0],
                    a.as_ptr(),
                    p.lhs[1],
                    p.lhs[0],
                    p.beta,
                    c.as_mut_ptr(),
                    p.dst[1],
                    p.dst[0],
                    gemmkit::Parallelism::Serial,
                )
            } else {
                gemmkit::gemm_unchecked_with(
                    ws,
                    p.m,
                    p.k,
                    p.n,
                    1e-3,
                    a.as_ptr(),
                    p.lhs[0],
                    p.lhs[1],
                    bb.as_ptr(),
                    p.rhs[0],
                    p.rhs[1],
                    p.beta,
                    c.as_mut_ptr(),
                    p.dst[0],
                    p.dst[1],
                    gemmkit::Parallelism::Serial,
                )
            }
        };
        let g_kit = best(|| kit(&mut ws, &mut c, false), flops);
        let g_kit_t = best(|| kit(&mut ws, &mut c, true), flops);
        let g_gemm = best(
            || unsafe {
                gemm::gemm(
                    p.m,
                    p.n,
                    p.k,
                    c.as_mut_ptr(),
                    p.dst[1],
                    p.dst[0],
                    p.beta != 0.0,
                    a.as_ptr(),
                    p.lhs[1],
                    p.lhs[0],
                    bb.as_ptr(),
                    p.rhs[1],
                    p.rhs[0],
                    1.0,
                    1e-3,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            },
            flops,
        );
        println!(
            "{:6} m={} n={} k={}: gemmkit {g_kit:.1}, gemmkit transposed {g_kit_t:.1}, gemm {g_gemm:.1} GFLOP/s",
            p.name, p.m, p.n, p.k
        );
    }
}
