//! Zero heap allocations per training step: the MNIST train step (784 → 256 relu → 10,
//! cross-entropy, SGD), compiled at every level and data-parallel, allocates nothing once its workspace has
//! been used once (the first call grows the GEMM packing memory), counted by a global
//! allocator per thread.

use bpc_autodiff::{Optimizer, train_step};
use bpc_codegen::{Arg, Options, compile};
use bpc_front::Source;
use bpc_opt::{OptLevel, optimize};

#[path = "../../../tests/support/alloc.rs"]
mod alloc;
use alloc::{all_allocs, allocs};

#[test]
fn the_mnist_train_step_allocates_nothing_per_call() {
    let text = include_str!("../../../examples/mnist.bp");
    let f = bpc_front::compile(&Source::new("mnist.bp", text)).unwrap();
    let step = train_step(&f, Optimizer::Sgd).unwrap();
    // Batch 32's products are split by owner computes, batch 128's by the GEMM library, and
    // batch 512's elementwise kernels too (on a machine with more than one core).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut cases = Vec::new();
    for (level, batch) in [(OptLevel::O0, 128), (OptLevel::O2, 128), (OptLevel::O2, 32), (OptLevel::O2, 512)] {
        let c = compile(&optimize(&step, level), batch).unwrap();
        if level == OptLevel::O2 {
            assert_eq!(c.stats().parallel_kernels > 0, cores > 1 && batch == 512, "{:?}", c.stats());
        }
        cases.push((format!("{level:?}"), batch, c));
    }
    // Two data-parallel shards of 64 rows and their combine.
    let s = bpc_opt::shard_for_batch(&step, OptLevel::O2, 128, 2).unwrap();
    let c = bpc_codegen::compile_sharded(
        &step,
        &s.shard,
        &s.combine,
        2,
        128,
        &Options { threads: 2, ..Options::default() },
    )
    .unwrap();
    cases.push(("2 shards".to_string(), 128, c));
    for (level, batch, c) in cases {
        let mut ws = c.workspace();
        let x: Vec<f32> = (0..batch * 784).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect();
        let y: Vec<i32> = (0..batch).map(|i| (i % 10) as i32).collect();
        let mut w1: Vec<f32> = (0..256 * 784).map(|i| (((i * 104_729) % 2001) as f32 - 1000.0) * 1e-5).collect();
        let mut b1 = vec![0.0f32; 256];
        let mut w2: Vec<f32> = (0..2560).map(|i| (((i * 7_727) % 2001) as f32 - 1000.0) * 1e-5).collect();
        let mut b2 = vec![0.0f32; 10];
        let mut outs: Vec<Vec<f32>> = c.results().iter().map(|r| vec![0.0; r.len]).collect();
        let mut counts = Vec::new();
        // Called from a rayon worker, as `bpc train` calls it: a product split over the threads
        // then forks on the worker's own deque. (From any other thread rayon's shared queue
        // allocates a 63-slot block once every 63 split products.)
        rayon::scope(|_| {
            for _ in 0..100 {
                let mut results: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
                let mut args = [
                    Arg::F32(&x),
                    Arg::I32(&y),
                    Arg::F32Mut(&mut w1),
                    Arg::F32Mut(&mut b1),
                    Arg::F32Mut(&mut w2),
                    Arg::F32Mut(&mut b2),
                    Arg::F32(&[0.01]),
                ];
                // The shards run on rayon's threads: count every thread's allocations.
                let count = if c.stats().shards > 0 { all_allocs } else { allocs };
                let before = count();
                c.run(&mut ws, &mut args, &mut results).unwrap();
                counts.push(count() - before);
            }
        });
        assert!(counts[1..].iter().all(|&n| n == 0), "{level}, batch {batch}: allocations per call {counts:?}");
        assert!(outs[0][0].is_finite());
    }
}
