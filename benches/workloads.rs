//! Criterion benches of every SPEC §6 workload:
//!
//! - `scalar_grad`: the lecture's sigmoid neuron, value and all five gradients, one call of
//!   the native function on caller buffers (ns per call);
//! - `mnist_mlp_train_step/{1,32,128,1024}`: one SGD step (forward, adjoint, update) of
//!   `examples/mnist.bp` (784 → 256 relu → 10, cross-entropy) on a minibatch of that size
//!   (throughput in examples);
//! - `digits_mlp_train_step/32`: the same for `examples/digits.bp` (64 → 32 tanh → 10,
//!   cross-entropy plus an L2 term);
//! - `compile/mnist_mlp_train_step`: source text to a callable mnist train step at batch 32;
//! - `fused_elementwise/16M`: `relu(a*b + c)` over 16M floats (throughput in bytes: 16 per
//!   element, a, b, c read and the result written).
//!
//! Run with `cargo bench --bench workloads` (one: `cargo bench --bench workloads -- scalar_grad`).
//! The IDs are stable: other work compares against them. The side-by-side comparison with
//! PyTorch, JAX and NumPy is `benches/peers/run.sh`.

use std::hint::black_box;
use std::time::Duration;

use bpc::ir::DType;
use bpc::{Arg, Compiled, Model, OptLevel};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn scalar_grad(c: &mut Criterion) {
    let model = Model::load("examples/sigmoid_neuron.bp").unwrap();
    let vg = model.value_and_grad(&["w0", "x0", "w1", "x1", "w2"]).unwrap();
    let native = model.compile(&vg, 1, OptLevel::O2).unwrap();
    let mut ws = native.workspace();
    let inputs = [[2.0f32], [-1.0], [-3.0], [-2.0], [-3.0]];
    let mut out = [[0.0f32]; 6];
    c.bench_function("scalar_grad", |b| {
        b.iter(|| {
            let [w0, x0, w1, x1, w2] = &inputs;
            let mut args = [Arg::F32(w0), Arg::F32(x0), Arg::F32(w1), Arg::F32(x1), Arg::F32(w2)];
            let [o0, o1, o2, o3, o4, o5] = &mut out;
            native.run(&mut ws, &mut args, &mut [o0, o1, o2, o3, o4, o5]).unwrap();
            black_box(&out);
        })
    });
}

/// Caller buffers for every argument of a compiled train step: inputs uniform in [-1, 1),
/// class labels cycling through 0..10, params uniform in ±0.01, and the learning rate `lr`.
fn train_args(native: &Compiled, lr: f32) -> (Vec<Vec<f32>>, Vec<Vec<i32>>) {
    let mut rng = StdRng::seed_from_u64(0);
    let mut floats = Vec::new();
    let mut labels = Vec::new();
    for a in native.args() {
        match a.dtype {
            DType::I32 => labels.push((0..a.len).map(|i| (i % 10) as i32).collect()),
            DType::F32 if a.name == "lr" => floats.push(vec![lr]),
            DType::F32 if a.updated => floats.push((0..a.len).map(|_| rng.random_range(-0.01..0.01)).collect()),
            DType::F32 => floats.push((0..a.len).map(|_| rng.random_range(-1.0..1.0)).collect()),
        }
    }
    (floats, labels)
}

/// One group `NAME/BATCH` per minibatch size of the train step of the model at `path`.
fn train_step_group(c: &mut Criterion, name: &str, path: &str, batches: &[usize]) {
    let model = Model::load(path).unwrap();
    let step = model.train_step().unwrap();
    let mut group = c.benchmark_group(name);
    for &batch in batches {
        let native = model.compile(&step, batch, OptLevel::O2).unwrap();
        let mut ws = native.workspace();
        // A tiny learning rate keeps the params where they started over millions of steps.
        let (mut floats, labels) = train_args(&native, 1e-6);
        let mut results: Vec<Vec<f32>> = native.results().iter().map(|r| vec![0.0; r.len]).collect();
        group.throughput(Throughput::Elements(batch as u64));
        if batch >= 1024 {
            group.sample_size(20);
        }
        group.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter(|| {
                let (mut fl, mut lab) = (floats.iter_mut(), labels.iter());
                let mut args: Vec<Arg> = native
                    .args()
                    .iter()
                    .map(|a| match a.dtype {
                        DType::I32 => Arg::I32(lab.next().unwrap()),
                        DType::F32 if a.updated => Arg::F32Mut(fl.next().unwrap()),
                        DType::F32 => Arg::F32(fl.next().unwrap()),
                    })
                    .collect();
                let mut outs: Vec<&mut [f32]> = results.iter_mut().map(Vec::as_mut_slice).collect();
                native.run(&mut ws, &mut args, &mut outs).unwrap();
                black_box(&results);
            })
        });
    }
    group.finish();
}

fn mnist_train_step(c: &mut Criterion) {
    train_step_group(c, "mnist_mlp_train_step", "examples/mnist.bp", &[1, 32, 128, 1024]);
}

fn digits_train_step(c: &mut Criterion) {
    train_step_group(c, "digits_mlp_train_step", "examples/digits.bp", &[32]);
}

fn compile(c: &mut Criterion) {
    let text = std::fs::read_to_string("examples/mnist.bp").unwrap();
    let mut group = c.benchmark_group("compile");
    group.sample_size(20);
    group.bench_function("mnist_mlp_train_step", |b| {
        b.iter(|| {
            let model = Model::from_source("mnist.bp", text.as_str()).unwrap();
            let step = model.train_step().unwrap();
            black_box(model.compile(&step, 32, OptLevel::O2).unwrap())
        })
    });
    group.finish();
}

fn fused_elementwise(c: &mut Criterion) {
    const N: usize = 16 << 20;
    let model = Model::from_source("fused.bp", "input a\ninput b\ninput c\nloss a\noutput relu(a*b + c)\n").unwrap();
    // Only the output is kept: what is timed is the one fused loop.
    let mut func = model.func.clone();
    func.results.retain(|r| r.name == "output");
    let native = model.compile(&func, N, OptLevel::O2).unwrap();
    let mut ws = native.workspace();
    let a: Vec<f32> = (0..N).map(|i| (i % 7) as f32 - 3.0).collect();
    let b: Vec<f32> = (0..N).map(|i| (i % 5) as f32 * 0.5).collect();
    let cc: Vec<f32> = (0..N).map(|i| (i % 3) as f32 - 1.0).collect();
    let mut out = vec![0.0f32; N];
    let mut group = c.benchmark_group("fused_elementwise");
    group.throughput(Throughput::Bytes(16 * N as u64));
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    group.bench_function("16M", |bch| {
        bch.iter(|| {
            native.run(&mut ws, &mut [Arg::F32(&a), Arg::F32(&b), Arg::F32(&cc)], &mut [&mut out]).unwrap();
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, scalar_grad, mnist_train_step, digits_train_step, compile, fused_elementwise);
criterion_main!(benches);
