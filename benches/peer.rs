//! The Rust side of the peer comparison (`benches/peers/run.sh`, README "Compare with
//! PyTorch, JAX and NumPy"): in-process measurements of the SPEC §6 workloads that `bpc bench`
//! does not cover, and the GEMM libraries at the MNIST shapes. Every measurement prints one
//! JSON object on its own line (the peer script parses them); the train-step workloads come
//! from `bpc bench --json`.
//!
//! ```text
//! cargo bench --bench peer -- scalar            # sigmoid neuron, value + 5 gradients: ns per call
//! cargo bench --bench peer -- compile           # source text -> callable mnist train step: ms
//! cargo bench --bench peer -- fused             # relu(a*b + c) over 16M floats: GB/s
//! cargo bench --bench peer -- gemm --threads 2  # gemm 0.19, matrixmultiply, gemmkit at the MNIST shapes
//! cargo bench --bench peer -- scaling           # mnist b1024: 2 threads vs 1, paired, and its ceiling
//! cargo bench --bench peer                      # all of the above, gemm at 1 thread
//! ```
//!
//! Timings are medians of several samples in one process; the machine is shared, so only
//! ratios from one run mean much.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use bpc::train::driver::step_function;
use bpc::train::runner::{Batch, Runner, Slab};
use bpc::train::{Params, Schema};
use bpc::{Arg, Model, OptLevel};
use serde_json::json;

const SIGMOID_NEURON: &str = include_str!("../examples/sigmoid_neuron.bp");
const MNIST: &str = include_str!("../examples/mnist.bp");

/// The median of `samples` timings of `reps` calls of `f`, per call.
fn median_per_call(samples: usize, reps: usize, mut f: impl FnMut()) -> Duration {
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

/// How many calls of `f` take about `target`, from one timed call (at least 1).
fn reps_for(target: Duration, f: &mut impl FnMut()) -> usize {
    let t = Instant::now();
    f();
    let once = t.elapsed().max(Duration::from_nanos(1));
    ((target.as_secs_f64() / once.as_secs_f64()) as usize).clamp(1, 10_000_000)
}

/// scalar-grad (SPEC §6): the lecture's sigmoid neuron, value and all five gradients, one
/// native call on caller buffers.
fn scalar() -> Result<(), bpc::Error> {
    let model = Model::from_source("sigmoid_neuron.bp", SIGMOID_NEURON)?;
    let vg = model.value_and_grad(&["w0", "x0", "w1", "x1", "w2"])?;
    let native = model.compile(&vg, 1, OptLevel::O2)?;
    let mut ws = native.workspace();
    let inputs = [[2.0f32], [-1.0], [-3.0], [-2.0], [-3.0]];
    let mut out = [[0.0f32]; 6];
    let mut call = || {
        let [w0, x0, w1, x1, w2] = &inputs;
        let mut args = [Arg::F32(w0), Arg::F32(x0), Arg::F32(w1), Arg::F32(x1), Arg::F32(w2)];
        let [o0, o1, o2, o3, o4, o5] = &mut out;
        native.run(&mut ws, &mut args, &mut [o0, o1, o2, o3, o4, o5]).expect("buffers match the compiled function");
        black_box(&out);
    };
    let reps = reps_for(Duration::from_millis(50), &mut call).max(1000);
    let t = median_per_call(9, reps, call);
    println!(
        "{}",
        json!({
            "workload": "scalar-grad",
            "ns_per_call": t.as_secs_f64() * 1e9,
            "value": out[0][0],
            "grads": out[1..].iter().map(|o| o[0]).collect::<Vec<_>>(),
        })
    );
    Ok(())
}

/// compile (SPEC §6): source text to a callable mnist-mlp SGD train step at minibatch `batch`.
fn compile(batch: usize) -> Result<(), bpc::Error> {
    let mut samples = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let model = Model::from_source("mnist.bp", MNIST)?;
        let step = model.train_step()?;
        let native = model.compile(&step, batch, OptLevel::O2)?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        black_box(native);
    }
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"workload": "compile", "batch": batch, "ms": sorted[sorted.len() / 2], "samples_ms": samples})
    );
    Ok(())
}

/// fused-elementwise (SPEC §6): `relu(a*b + c)` over `n` floats, one call of the compiled
/// forward function with only the output kept. GB/s counts 16 bytes per element (read a, b,
/// c; write the result), the least traffic any implementation can have.
fn fused(n: usize) -> Result<(), bpc::Error> {
    let model = Model::from_source("fused.bp", "input a\ninput b\ninput c\nloss a\noutput relu(a*b + c)\n")?;
    let mut func = model.func.clone();
    func.results.retain(|r| r.name == "output");
    let native = model.compile(&func, n, OptLevel::O2)?;
    let mut ws = native.workspace();
    let a: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
    let b: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 0.5).collect();
    let c: Vec<f32> = (0..n).map(|i| (i % 3) as f32 - 1.0).collect();
    let mut out = vec![0.0f32; n];
    let t = median_per_call(9, 3, || {
        let mut args = [Arg::F32(&a), Arg::F32(&b), Arg::F32(&c)];
        native.run(&mut ws, &mut args, &mut [&mut out]).expect("buffers match the compiled function");
    });
    let stats = native.stats();
    println!(
        "{}",
        json!({
            "workload": "fused-elementwise",
            "n": n,
            "ms": t.as_secs_f64() * 1e3,
            "gb_per_s": 16.0 * n as f64 / t.as_secs_f64() / 1e9,
            "kernel_calls": stats.kernel_calls,
        })
    );
    Ok(())
}

/// One matrix product `dst[m,n] = lhs[m,k] · rhs[k,n]` of the MNIST train step, with the
/// operands' strides as they are stored row-major (a transposed operand is a stride swap).
struct Product {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
    /// (row stride, column stride) of `lhs` and `rhs` as m×k and k×n matrices.
    lhs: (isize, isize),
    rhs: (isize, isize),
}

/// The five products of the 784 → 256 → 10 MLP's train step at minibatch `b`.
fn mnist_products(b: usize) -> [Product; 5] {
    [
        // H[B,256] = X[B,784] · W1[256,784]ᵀ
        Product { name: "x.w1t", m: b, n: 256, k: 784, lhs: (784, 1), rhs: (1, 784) },
        // dW1[256,784] = dH[B,256]ᵀ · X[B,784]
        Product { name: "dht.x", m: 256, n: 784, k: b, lhs: (1, 256), rhs: (784, 1) },
        // F[B,10] = H[B,256] · W2[10,256]ᵀ
        Product { name: "h.w2t", m: b, n: 10, k: 256, lhs: (256, 1), rhs: (1, 256) },
        // dW2[10,256] = dF[B,10]ᵀ · H[B,256]
        Product { name: "dft.h", m: 10, n: 256, k: b, lhs: (1, 10), rhs: (256, 1) },
        // dH[B,256] = dF[B,10] · W2[10,256]
        Product { name: "df.w2", m: b, n: 256, k: 10, lhs: (10, 1), rhs: (256, 1) },
    ]
}

/// A product's operands (fixed patterns) and its destination, row-major.
struct Operands {
    lhs: Vec<f32>,
    rhs: Vec<f32>,
    dst: Vec<f32>,
}

impl Product {
    fn operands(&self) -> Operands {
        Operands {
            lhs: (0..self.m * self.k).map(|i| (i % 17) as f32 * 0.01 - 0.08).collect(),
            rhs: (0..self.k * self.n).map(|i| (i % 13) as f32 * 0.01 - 0.06).collect(),
            dst: vec![0.0; self.m * self.n],
        }
    }

    fn flop(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }

    /// `dst = lhs · rhs` in gemmkit (what bpc-codegen calls), packing into `ws`.
    fn gemmkit(&self, ws: &mut gemmkit::Workspace, o: &mut Operands, par: gemmkit::Parallelism) {
        assert!(o.lhs.len() == self.m * self.k && o.rhs.len() == self.k * self.n && o.dst.len() == self.m * self.n);
        // SAFETY: the buffers have the sizes `operands` gives them, so every index
        // (i·rs + j·cs) of the three matrices stays inside them.
        unsafe {
            gemmkit::gemm_unchecked_with(
                ws,
                self.m,
                self.k,
                self.n,
                1.0f32,
                o.lhs.as_ptr(),
                self.lhs.0,
                self.lhs.1,
                o.rhs.as_ptr(),
                self.rhs.0,
                self.rhs.1,
                0.0,
                o.dst.as_mut_ptr(),
                self.n as isize,
                1,
                par,
            )
        }
    }
}

/// GFLOP/s of `gemm` 0.19 (AVX-512 kernels), `matrixmultiply` and `gemmkit` (what
/// bpc-codegen calls, packing into a reused workspace) on every MNIST product at
/// batches 1, 32, 128 and 1024, on `threads` threads. matrixmultiply takes its thread count
/// from `MATMUL_NUM_THREADS` at its first call (`main` sets it from `--threads`).
fn gemm_compare(threads: usize) {
    for b in [1, 32, 128, 1024] {
        for p in mnist_products(b) {
            let mut ops = p.operands();
            let Operands { lhs, rhs, dst } = &mut ops;
            let flop = p.flop();
            let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
            let mut run_gemm = || unsafe {
                // SAFETY: every index (i·rs + j·cs) stays inside the buffers made above.
                gemm::gemm(
                    p.m,
                    p.n,
                    p.k,
                    dst.as_mut_ptr(),
                    1,
                    p.n as isize,
                    false,
                    lhs.as_ptr(),
                    p.lhs.1,
                    p.lhs.0,
                    rhs.as_ptr(),
                    p.rhs.1,
                    p.rhs.0,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                )
            };
            let reps = reps_for(Duration::from_millis(40), &mut run_gemm);
            let t_gemm = median_per_call(7, reps, run_gemm);
            let mut run_mm = || unsafe {
                // SAFETY: as above.
                matrixmultiply::sgemm(
                    p.m,
                    p.k,
                    p.n,
                    1.0,
                    lhs.as_ptr(),
                    p.lhs.0,
                    p.lhs.1,
                    rhs.as_ptr(),
                    p.rhs.0,
                    p.rhs.1,
                    0.0,
                    dst.as_mut_ptr(),
                    p.n as isize,
                    1,
                )
            };
            let reps = reps_for(Duration::from_millis(40), &mut run_mm);
            let t_mm = median_per_call(7, reps, run_mm);
            let kit_par = if threads > 1 { gemmkit::Parallelism::Rayon(threads) } else { gemmkit::Parallelism::Serial };
            let mut kit_ws = gemmkit::Workspace::new();
            let mut run_kit = || p.gemmkit(&mut kit_ws, &mut ops, kit_par);
            let reps = reps_for(Duration::from_millis(40), &mut run_kit);
            let t_kit = median_per_call(7, reps, run_kit);
            for (lib, t) in [("gemm", t_gemm), ("matrixmultiply", t_mm), ("gemmkit", t_kit)] {
                println!(
                    "{}",
                    json!({
                        "workload": "gemm", "impl": lib, "threads": threads, "batch": b, "product": p.name,
                        "m": p.m, "n": p.n, "k": p.k, "gflops": flop / t.as_secs_f64() / 1e9,
                    })
                );
            }
        }
    }
}

/// The mnist-mlp SGD train step as `bpc bench` runs it in the peer script (same model, init,
/// synthetic minibatch, learning rate 0.1, called from a rayon worker thread as the CLI
/// does), with its own params, minibatch and workspace.
struct Stepper {
    runner: Runner,
    batch: Batch,
    params: Params,
}

impl Stepper {
    fn new(rows: usize, threads: usize) -> Result<Stepper, bpc::Error> {
        fn msg(e: impl std::fmt::Display) -> bpc::Error {
            bpc::Error::msg(e.to_string())
        }
        let model = Model::from_source("mnist.bp", MNIST)?;
        let schema = Schema::of(&model.func).map_err(msg)?;
        let params = Params::init(&model.func, 0).map_err(msg)?;
        let step = step_function(&model.func, &schema).map_err(msg)?;
        let mut runner = Runner::new(step, OptLevel::O2, &schema, &params, rows).map_err(msg)?;
        runner.set_threads(threads);
        runner.prepare(rows).map_err(msg)?;
        let mut s = Stepper { runner, batch: Batch::synthetic(&schema, rows).map_err(msg)?, params };
        s.run_for(Duration::ZERO); // the first step pays for page faults
        Ok(s)
    }

    /// Runs steps for at least `time` (at least one step); examples/s.
    fn run_for(&mut self, time: Duration) -> f64 {
        let t = Instant::now();
        let mut steps = 0;
        while steps == 0 || t.elapsed() < time {
            self.runner.run(&self.batch, Slab::Mut(&mut self.params.data), 0.1).expect("buffers match the step");
            steps += 1;
        }
        (steps * self.batch.rows) as f64 / t.elapsed().as_secs_f64()
    }
}

/// Runs every job for `time` on its own OS thread, all started together; the sum of their
/// results.
fn concurrently(jobs: &mut [impl FnMut() -> f64 + Send]) -> f64 {
    let start = Barrier::new(jobs.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter_mut()
            .map(|job| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    job()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("job panicked")).sum()
    })
}

/// The issue's "2 threads vs 1 at batch 1024" target, measured paired, and the ceiling this
/// machine puts on it, in one process, interleaved phase by phase so that the machine's slow
/// and fast phases (a factor 1.6 between rounds of a peer run) fall on both sides of every
/// ratio. Each round, `time` each:
/// - `one_thread`, `two_threads`: the batch-1024 step compiled for 1 thread and for 2 (as
///   `bpc bench --threads T` runs them: 2 threads shard it into two 512-row halves);
/// - `halves_concurrent`: two independent 1-thread batch-512 steps, one per core, started
///   together, no synchronization: the most any data-parallel split of the batch-1024 step
///   can reach on two cores, as a reference (what `two_threads` adds is the combine and the
///   fork/join; noisy like every figure here, so the 2-thread step can pass it);
/// - `half_alone`: one of those steps with the other core idle;
/// - `gemm_alone`, `gemm_concurrent`: the step's two large products at 512 rows (`x.w1t`,
///   `dht.x`) in gemmkit on one thread, alone and on both cores at once: the machine's
///   2-core scaling for this GEMM when nothing is shared, without any bpc code.
fn scaling(rounds: usize, time: Duration) -> Result<(), bpc::Error> {
    let mut one = Stepper::new(1024, 1)?;
    let mut two = Stepper::new(1024, 2)?;
    let mut halves = [Stepper::new(512, 1)?, Stepper::new(512, 1)?];
    let mut gemms = [big_products(512), big_products(512)];
    for round in 0..rounds {
        let one_thread = one.run_for(time);
        let two_threads = two.run_for(time);
        let halves_concurrent = concurrently(&mut halves.each_mut().map(|h| move || h.run_for(time)));
        let half_alone = halves[0].run_for(time);
        let gemm_concurrent = concurrently(&mut gemms.each_mut().map(|g| move || g.run_for(time)));
        let gemm_alone = gemms[0].run_for(time);
        println!(
            "{}",
            json!({
                "workload": "scaling", "sample": round, "batch": 1024, "seconds": time.as_secs_f64(),
                "one_thread": one_thread, "two_threads": two_threads,
                "halves_concurrent": halves_concurrent, "half_alone": half_alone,
                "gemm_concurrent": gemm_concurrent, "gemm_alone": gemm_alone,
            })
        );
    }
    Ok(())
}

/// The mnist-mlp step's two large products at minibatch `b` (`x.w1t`, `dht.x`: 99% of its
/// FLOPs) in gemmkit on one thread, with their own operands and packing memory.
struct BigProducts {
    ws: gemmkit::Workspace,
    products: Vec<(Product, Operands)>,
}

fn big_products(b: usize) -> BigProducts {
    let products = mnist_products(b)
        .into_iter()
        .filter(|p| p.name == "x.w1t" || p.name == "dht.x")
        .map(|p| {
            let o = p.operands();
            (p, o)
        })
        .collect();
    BigProducts { ws: gemmkit::Workspace::new(), products }
}

impl BigProducts {
    /// Runs both products in turn for at least `time`; GFLOP/s.
    fn run_for(&mut self, time: Duration) -> f64 {
        let t = Instant::now();
        let mut flop = 0.0;
        while flop == 0.0 || t.elapsed() < time {
            for (p, o) in &mut self.products {
                p.gemmkit(&mut self.ws, o, gemmkit::Parallelism::Serial);
                flop += p.flop();
            }
        }
        flop / t.elapsed().as_secs_f64() / 1e9
    }
}

/// `--NAME VALUE` from the arguments, parsed, or `default`.
fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].parse().unwrap_or_else(|_| panic!("{name}: not a valid value: {}", w[1])))
        .unwrap_or(default)
}

fn main() -> Result<(), bpc::Error> {
    // `cargo bench` passes `--bench`; everything else is ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let threads = flag(&args, "--threads", 1usize);
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // SAFETY: no other thread runs yet (no GEMM or JIT call has been made).
        unsafe { std::env::set_var("MATMUL_NUM_THREADS", threads.to_string()) };
    }
    match args.first().map(String::as_str) {
        Some("scalar") => scalar(),
        Some("compile") => compile(flag(&args, "--batch", 32)),
        Some("fused") => fused(flag(&args, "--n", 16 << 20)),
        Some("gemm") => {
            gemm_compare(threads);
            Ok(())
        }
        Some("scaling") => {
            let (rounds, secs) = (flag(&args, "--rounds", 7), flag(&args, "--seconds", 0.4));
            // Called from a pool thread, as `bpc bench` calls its step (`rayon::scope` in the CLI).
            rayon::scope(|_| scaling(rounds, Duration::from_secs_f64(secs)))
        }
        None => {
            scalar()?;
            compile(32)?;
            fused(16 << 20)?;
            gemm_compare(threads);
            Ok(())
        }
        Some(other) => {
            Err(bpc::Error::msg(format!("peer: unknown measurement {other:?} (scalar, compile, fused, gemm, scaling)")))
        }
    }
}
