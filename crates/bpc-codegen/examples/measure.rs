//! In-process figures for the codegen report (not a test; numbers vary with the machine):
//!
//!     cargo run -p bpc-codegen --release --example measure [scalar|mnist|fused|gemm]...
//!
//! - `scalar`: ns per call of the lecture's sigmoid neuron, value and all 5 gradients;
//! - `mnist`: compile time and steps/s of the 784→256 relu→10 cross-entropy SGD step at
//!   batch 128 (and 1, 32, 1024 for the examples/s table);
//! - `fused`: GB/s of `relu(a*b + c)` over 16M floats (three kernels until fusion lands);
//! - `gemm`: one thread vs two on square-ish products, to place the parallel threshold.

use std::time::{Duration, Instant};

use bpc_autodiff::{Optimizer, train_step, value_and_grad};
use bpc_codegen::{Arg, Options, compile, compile_with};
use bpc_front::Source;
use bpc_ir::{BinaryOp, Function, Inst, Shape, Span, Type, UnaryOp};
use bpc_opt::{OptLevel, optimize};

fn model(name: &str, text: &str) -> Function {
    bpc_front::compile(&Source::new(name, text)).expect("example compiles")
}

/// The median of `samples` timings of `f` run `reps` times each, per run.
fn median(samples: usize, reps: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed() / reps as u32
        })
        .collect();
    times.sort();
    times[samples / 2]
}

fn scalar() {
    let f = model("sigmoid_neuron.bp", include_str!("../../../examples/sigmoid_neuron.bp"));
    let vg = optimize(&value_and_grad(&f, &["w0", "x0", "w1", "x1", "w2"]).unwrap(), OptLevel::O2);
    let c = compile(&vg, 1).unwrap();
    let mut ws = c.workspace();
    let vals = [2.0f32, -1.0, -3.0, -2.0, -3.0];
    let mut out = [[0.0f32]; 6];
    let t = median(15, 200_000, || {
        let mut args: [Arg; 5] = std::array::from_fn(|i| Arg::F32(std::slice::from_ref(&vals[i])));
        let [a, b, c2, d, e, g] = &mut out;
        c.run(&mut ws, &mut args, &mut [a, b, c2, d, e, g]).unwrap();
    });
    println!(
        "scalar-grad: {:.1} ns/call (value {:.7}, grads {:?}); {} kernels, {} kernel calls, compiled in {:.2} ms",
        t.as_nanos() as f64,
        out[0][0],
        &out[1..].iter().map(|o| o[0]).collect::<Vec<_>>(),
        c.stats().kernels,
        c.stats().kernel_calls,
        c.compile_time().as_secs_f64() * 1e3
    );
}

fn mnist() {
    let text = include_str!("../../../examples/mnist.bp");
    // `MEASURE_BATCHES=1,32` picks the batch sizes.
    let batches: Vec<usize> = std::env::var("MEASURE_BATCHES")
        .map(|s| s.split(',').map(|b| b.trim().parse().expect("MEASURE_BATCHES: sizes like 1,32")).collect())
        .unwrap_or_else(|_| vec![128, 1, 32, 1024]);
    for batch in batches {
        let t0 = Instant::now();
        let f = model("mnist.bp", text);
        let step = optimize(&train_step(&f, Optimizer::Sgd).unwrap(), OptLevel::O2);
        let c = compile(&step, batch).unwrap();
        let total = t0.elapsed();
        let mut ws = c.workspace();
        let x: Vec<f32> = (0..batch * 784).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect();
        let y: Vec<i32> = (0..batch).map(|i| (i % 10) as i32).collect();
        let mut w1: Vec<f32> = (0..256 * 784).map(|i| (((i * 104_729) % 2001) as f32 - 1000.0) * 1e-5).collect();
        let mut b1 = vec![0.0f32; 256];
        let mut w2: Vec<f32> = (0..2560).map(|i| (((i * 7_727) % 2001) as f32 - 1000.0) * 1e-5).collect();
        let mut b2 = vec![0.0f32; 10];
        let mut outs: Vec<Vec<f32>> = c.results().iter().map(|r| vec![0.0; r.len]).collect();
        let mut step_once = || {
            let mut args = [
                Arg::F32(&x),
                Arg::I32(&y),
                Arg::F32Mut(&mut w1),
                Arg::F32Mut(&mut b1),
                Arg::F32Mut(&mut w2),
                Arg::F32Mut(&mut b2),
                Arg::F32(&[0.01]),
            ];
            let mut res: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
            c.run(&mut ws, &mut args, &mut res).unwrap();
        };
        let first = Instant::now();
        step_once();
        let first = first.elapsed();
        let reps = (2000 / batch).clamp(3, 200);
        let t = median(9, reps, &mut step_once);
        println!(
            "mnist-mlp batch {batch:>4}: {:8.1} steps/s, {:9.0} examples/s, {:.3} ms/step; first step {:.2} ms; \
             codegen {:.2} ms, source-to-callable {:.2} ms; {} kernels ({} calls), {} gemms, ws {} KiB; loss {:.4}",
            1.0 / t.as_secs_f64(),
            batch as f64 / t.as_secs_f64(),
            t.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3,
            c.compile_time().as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3,
            c.stats().kernels,
            c.stats().kernel_calls,
            c.stats().gemm_calls,
            c.stats().workspace_bytes / 1024,
            outs[0][0]
        );
    }
}

fn fused() {
    let n = 16 << 20;
    let mut f = Function::new("fused");
    let s = Span::NONE;
    let ty = Type::f32(Shape::shared([n]));
    let mut arg = |name: &str| {
        let id = f.add_arg(name, bpc_ir::ArgKind::Input, ty.clone(), s);
        f.ins(Inst::Arg(id), s)
    };
    let (a, b, c) = (arg("a"), arg("b"), arg("c"));
    let ab = f.ins(Inst::Binary { op: BinaryOp::Mul, lhs: a, rhs: b }, s);
    let abc = f.ins(Inst::Binary { op: BinaryOp::Add, lhs: ab, rhs: c }, s);
    let r = f.ins(Inst::Unary { op: UnaryOp::Relu, arg: abc }, s);
    f.add_result("r", r);
    let comp = compile(&f, 1).unwrap();
    let mut ws = comp.workspace();
    let (a, b, c): (Vec<f32>, Vec<f32>, Vec<f32>) =
        (0..n).map(|i| ((i % 7) as f32 - 3.0, (i % 5) as f32 * 0.5, (i % 3) as f32 - 1.0)).fold(
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n)),
            |(mut a, mut b, mut c), (x, y, z)| {
                a.push(x);
                b.push(y);
                c.push(z);
                (a, b, c)
            },
        );
    let mut out = vec![0.0f32; n];
    let t = median(9, 3, || {
        comp.run(&mut ws, &mut [Arg::F32(&a), Arg::F32(&b), Arg::F32(&c)], &mut [&mut out]).unwrap();
    });
    let secs = t.as_secs_f64();
    println!(
        "fused-elementwise relu(a*b+c), 16M floats, {} kernels: {:.2} ms, {:.1} GB/s counting 16 B/element \
         (a, b, c, out), {:.1} GB/s of actual traffic (32 B/element through two temporaries)",
        comp.stats().kernel_calls,
        secs * 1e3,
        16.0 * n as f64 / secs / 1e9,
        32.0 * n as f64 / secs / 1e9
    );
}

fn gemm() {
    for (m, k, n) in [(32, 64, 64), (64, 128, 128), (128, 256, 128), (128, 784, 256), (256, 256, 256), (512, 512, 512)]
    {
        let mut f = Function::new("mm");
        let s = Span::NONE;
        let a = f.add_arg("a", bpc_ir::ArgKind::Input, Type::f32(Shape::shared([m, k])), s);
        let b = f.add_arg("b", bpc_ir::ArgKind::Input, Type::f32(Shape::shared([n, k])), s);
        let (a, b) = (f.ins(Inst::Arg(a), s), f.ins(Inst::Arg(b), s));
        let y = f.ins(Inst::MatMul { lhs: a, rhs: b, ta: false, tb: true }, s);
        f.add_result("y", y);
        let av = vec![0.5f32; m * k];
        let bv = vec![0.25f32; n * k];
        let mut out = vec![0.0f32; m * n];
        let mut times = Vec::new();
        for threads in [1, 2] {
            let opts = Options { threads, gemm_parallel_min: 0, owner_split_max: 0, ..Options::default() };
            let c = compile_with(&f, 1, &opts).unwrap();
            let mut ws = c.workspace();
            let reps = (20_000_000 / (m * n * k)).clamp(3, 2000);
            times.push(median(9, reps, || {
                c.run(&mut ws, &mut [Arg::F32(&av), Arg::F32(&bv)], &mut [&mut out]).unwrap();
            }));
        }
        let gf = |t: Duration| 2.0 * (m * n * k) as f64 / t.as_secs_f64() / 1e9;
        println!(
            "gemm {m}x{k}x{n} ({:.1}M MACs): 1 thread {:.1} GFLOP/s, 2 threads {:.1} GFLOP/s ({:.2}x)",
            (m * n * k) as f64 / 1e6,
            gf(times[0]),
            gf(times[1]),
            times[0].as_secs_f64() / times[1].as_secs_f64()
        );
    }
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let all = which.is_empty();
    let want = |s: &str| all || which.iter().any(|w| w == s);
    if want("scalar") {
        scalar();
    }
    if want("mnist") {
        mnist();
    }
    if want("fused") {
        fused();
    }
    if want("gemm") {
        gemm();
    }
}
