//! Criterion benches of the SPEC §6 workloads that exist so far:
//!
//! - `scalar_grad`: the lecture's sigmoid neuron, value and all five gradients, one call of
//!   the native function on caller buffers (ns per call);
//! - `mnist_mlp_train_step/128`: one SGD step (forward, adjoint, update) of
//!   `examples/mnist.bp` (784 → 256 relu → 10, cross-entropy) on a minibatch of 128
//!   (throughput in examples).
//!
//! Run with `cargo bench --bench workloads`.

use std::hint::black_box;

use bpc::{Arg, Model, OptLevel};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

fn mnist_train_step(c: &mut Criterion) {
    const BATCH: usize = 128;
    let model = Model::load("examples/mnist.bp").unwrap();
    let step = model.train_step().unwrap();
    let native = model.compile(&step, BATCH, OptLevel::O2).unwrap();
    let mut ws = native.workspace();
    let mut rng = StdRng::seed_from_u64(0);
    let x: Vec<f32> = (0..BATCH * 784).map(|_| rng.random_range(-1.0..1.0)).collect();
    let y: Vec<i32> = (0..BATCH).map(|_| rng.random_range(0..10)).collect();
    let mut w1: Vec<f32> = (0..256 * 784).map(|_| rng.random_range(-0.01..0.01)).collect();
    let mut b1 = vec![0.0f32; 256];
    let mut w2: Vec<f32> = (0..10 * 256).map(|_| rng.random_range(-0.01..0.01)).collect();
    let mut b2 = vec![0.0f32; 10];
    // A tiny learning rate keeps the params where they started over millions of steps.
    let lr = [1e-6f32];
    let mut results: Vec<Vec<f32>> = native.results().iter().map(|r| vec![0.0; r.len]).collect();
    let mut group = c.benchmark_group("mnist_mlp_train_step");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("128", |b| {
        b.iter(|| {
            let mut args = [
                Arg::F32(&x),
                Arg::I32(&y),
                Arg::F32Mut(&mut w1),
                Arg::F32Mut(&mut b1),
                Arg::F32Mut(&mut w2),
                Arg::F32Mut(&mut b2),
                Arg::F32(&lr),
            ];
            let mut outs: Vec<&mut [f32]> = results.iter_mut().map(Vec::as_mut_slice).collect();
            native.run(&mut ws, &mut args, &mut outs).unwrap();
            black_box(&results);
        })
    });
    group.finish();
}

criterion_group!(benches, scalar_grad, mnist_train_step);
criterion_main!(benches);
