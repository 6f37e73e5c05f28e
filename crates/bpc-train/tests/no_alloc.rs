//! The step loop allocates nothing of its own: gathering a minibatch and calling the
//! compiled train step through a `Runner` allocates exactly as often as calling
//! `Compiled::run` directly with prebuilt buffers (counted per thread).

use bpc_train::data::LabelEncoding;
use bpc_train::driver::step_function;
use bpc_train::runner::{Batch, Runner, Slab};
use bpc_train::{Dataset, Labels, Params, Schema};

#[path = "../../../tests/support/alloc.rs"]
mod alloc;
use alloc::allocs;

const MLP: &str = "input x[4]\nlabel y : class(3)\nparam W1[8, 4] ~ normal(0, 0.5)\nparam b1[8] = 0\n\
                   param W2[3, 8] ~ normal(0, 0.5)\nparam b2[3] = 0\nh = tanh(W1 @ x + b1)\nf = W2 @ h + b2\n\
                   loss cross_entropy(f, y)\noutput softmax(f)\n";

/// Allocations per call of the compiled step at batch 4, called directly.
fn direct_per_call(step: &bpc_ir::Function) -> usize {
    use bpc_codegen::Arg;
    let c = bpc_codegen::compile(step, 4).unwrap();
    let mut ws = c.workspace();
    let (x, y, lr) = (vec![0.5f32; 16], vec![1i32; 4], [0.1f32]);
    let (mut w1, mut b1, mut w2, mut b2) = (vec![0.1f32; 32], vec![0.0f32; 8], vec![0.1f32; 24], vec![0.0f32; 3]);
    let (mut loss, mut out, mut logits) = ([0.0f32], vec![0.0f32; 12], vec![0.0f32; 12]);
    let mut counts = Vec::new();
    for _ in 0..3 {
        let mut args = [
            Arg::F32(&x),
            Arg::I32(&y),
            Arg::F32Mut(&mut w1),
            Arg::F32Mut(&mut b1),
            Arg::F32Mut(&mut w2),
            Arg::F32Mut(&mut b2),
            Arg::F32(&lr),
        ];
        let mut res: [&mut [f32]; 3] = [&mut loss, &mut out, &mut logits];
        let before = allocs();
        c.run(&mut ws, &mut args, &mut res).unwrap();
        counts.push(allocs() - before);
    }
    counts[2]
}

#[test]
fn the_step_loop_adds_no_allocations() {
    let f = bpc_front::compile(&bpc_front::Source::new("t.bp", MLP)).expect("model compiles");
    let schema = Schema::of(&f).unwrap();
    let mut params = Params::init(&f, 0).unwrap();
    let n = 8;
    let data = Dataset {
        path: "t.csv".into(),
        feature_names: (0..4).map(|i| format!("f{i}")).collect(),
        label_names: vec!["label".into()],
        label_width: 1,
        n_features: 4,
        rows: n,
        features: (0..n * 4).map(|i| (i as f32 * 0.37).sin()).collect(),
        labels: Labels::Class { values: (0..n as i32).map(|i| i % 3).collect(), encoding: LabelEncoding::Integers },
    };
    let step = bpc_opt::optimize_for_batch(&step_function(&f, &schema).unwrap(), bpc_opt::OptLevel::O2, 4);
    assert_eq!(
        step.results.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["loss", "output", "logits", "W1", "b1", "W2", "b2"]
    );
    let direct = direct_per_call(&step);
    let mut runner = Runner::new(step, bpc_opt::OptLevel::O2, &schema, &params, 4).unwrap();
    runner.prepare(4).unwrap();
    let mut batch = Batch::new(&schema, 4);
    let order: Vec<usize> = (0..n).rev().collect();
    for idx in order.chunks(4) {
        batch.gather(&data, idx);
        runner.run(&batch, Slab::Mut(&mut params.data), 0.1).unwrap();
    }
    let before = allocs();
    for _ in 0..10 {
        for idx in order.chunks(4) {
            batch.gather(&data, idx);
            runner.run(&batch, Slab::Mut(&mut params.data), 0.1).unwrap();
        }
    }
    let per_step = (allocs() - before) as f64 / 20.0;
    assert_eq!(per_step, direct as f64, "allocations per step through the runner vs Compiled::run alone");
    assert!(params.data.iter().all(|x| x.is_finite()));
}
