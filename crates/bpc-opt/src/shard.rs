//! Data-parallel sharding: a function over a minibatch of `B` examples as `S` shards of `B/S`
//! rows each, which can run on their own threads, and one combining function.
//!
//! Legal for every function lowered from a program (SPEC §1, "Batching"): a program describes
//! one example (its own `mean`s reduce that example's axes), so values of different examples
//! meet only in the compiler's reductions over the minibatch axis (the loss's batch mean, a shared value's gradient summed over the
//! examples: `reduce_sum`/`reduce_mean` over axis 0, a `matmul` contracting the batch axis),
//! and each of those is a sum of per-example terms. A shard computes every per-example value
//! of its rows and the partial sums of those reductions; the combine adds the partial sums
//! (a mean's `1/n` applied after the sum) and computes what depends on them: the loss, the
//! gradients and the optimizer's updates. This is data parallelism as in PyTorch's DDP or
//! `jax.pmap` with a `psum` of the gradients, derived from the IR instead of written by hand.
//!
//! The sums are reassociated (`Σ_B = Σ_shards Σ_rows`), so results agree with the unsharded
//! function to float32 rounding, not bit for bit.

use bpc_ir::{ArgId, ArgKind, BinaryOp, Function, Inst, Output, ReduceOp, Value};

use crate::pipeline::{OptLevel, optimize, optimize_for_batch};

/// A function split into shards and a combine, both optimized.
///
/// - `shard`, compiled for `batch / shards` rows: the original function's arguments (same
///   order and names; it updates none), results: the original's batched results (same
///   order and names), then the partial sums `partial.0`, `partial.1`, … of its rows.
/// - `combine`, compiled for `batch` (it has no batched value): the original's shared
///   arguments (params, optimizer state, settings; same order and names), then `partial.i.s`,
///   shard `s`'s `partial.i`, for every shard `s` (outer) and partial `i`; results: the
///   original's shared results (same order and names, in-place updates included).
///
/// The combine's `1/n` of a mean over the minibatch is a constant: compile the two for the
/// `batch` and `shards` given here (`bpc_codegen::compile_sharded`).
#[derive(Clone, Debug)]
pub struct Sharded {
    pub shard: Function,
    pub combine: Function,
    pub shards: usize,
    /// The whole minibatch's size.
    pub batch: usize,
}

/// Splits `func` (before the optimizer, as given to [`optimize_for_batch`]) for a minibatch of
/// `batch` examples into `shards` equal shards and a combine, optimized at `level`. `None`
/// when `shards < 2`, `batch` is not a multiple of `shards`, `level` is `-O0`, or `func` mixes
/// examples other than through sums over the minibatch axis (no program does; hand-written IR
/// can), or feeds such a sum back into a per-example value.
pub fn shard_for_batch(func: &Function, level: OptLevel, batch: usize, shards: usize) -> Option<Sharded> {
    if shards < 2 || !batch.is_multiple_of(shards) || level == OptLevel::O0 {
        return None;
    }
    // The classic passes with `batch_size` bound to the whole minibatch: from here a constant
    // `1/B` is the minibatch's, and hoisting (which may introduce `batch_size` again, for a
    // sum over a shard's rows) has already run on the whole.
    let mut f = optimize_for_batch(func, OptLevel::O1, batch);
    f.kernels = None;
    let (shard, combine) = split(&f, batch, shards)?;
    Some(Sharded {
        shard: optimize_for_batch(&shard, level, batch / shards),
        combine: optimize(&combine, level),
        shards,
        batch,
    })
}

/// A reduction over the minibatch axis: the value, and the factor its sum is multiplied by
/// (`1/n` for a mean over `n` elements, else 1).
struct Partial {
    value: Value,
    scale: f64,
}

fn split(f: &Function, batch: usize, shards: usize) -> Option<(Function, Function)> {
    let batched = |v: Value| f.shape(v).batch;
    let mut partials: Vec<Partial> = Vec::new();
    let mut partial_of: Vec<Option<usize>> = vec![None; f.len()];
    // `after[v]`: `v` depends on a partial sum, so only the combine can compute it.
    let mut after = vec![false; f.len()];
    for v in f.values() {
        let ops = f.inst(v).operands();
        if batched(v) {
            if ops.iter().any(|o| after[o.index()]) {
                return None;
            }
            continue;
        }
        if !ops.iter().any(|&o| batched(o)) {
            after[v.index()] = ops.iter().any(|o| after[o.index()]);
            continue;
        }
        let scale = match f.inst(v) {
            Inst::Reduce { op: ReduceOp::Sum, axes, .. } if axes.contains(&0) => 1.0,
            Inst::Reduce { op: ReduceOp::Mean, axes, arg } if axes.contains(&0) => {
                let dims = &f.shape(*arg).dims;
                let n: usize = axes.iter().filter(|&&a| a > 0).map(|&a| dims[a - 1]).product();
                1.0 / (batch * n) as f64
            }
            // A shared product of batched operands contracts the batch axis.
            Inst::MatMul { .. } => 1.0,
            _ => return None,
        };
        partial_of[v.index()] = Some(partials.len());
        partials.push(Partial { value: v, scale });
        after[v.index()] = true;
    }

    let mut shard = Function::new(f.name.clone());
    shard.args = f.args.clone();
    let mut map: Vec<Option<Value>> = vec![None; f.len()];
    for v in f.values() {
        if after[v.index()] && partial_of[v.index()].is_none() {
            continue;
        }
        let mut inst = f.inst(v).clone();
        // A mean over the minibatch becomes a partial sum (its `1/n` is the combine's); a mean
        // over an example's own axes stays a mean.
        if let Inst::Reduce { op: op @ ReduceOp::Mean, .. } = &mut inst
            && partial_of[v.index()].is_some()
        {
            *op = ReduceOp::Sum;
        }
        inst.map_operands(|o| map[o.index()].expect("a shard value's operands are the shard's"));
        map[v.index()] = Some(shard.push_typed(inst, f.ty(v).clone(), f.span(v)));
    }
    shard.results = f
        .results
        .iter()
        .filter(|r| batched(r.value))
        .map(|r| Output { name: r.name.clone(), value: map[r.value.index()].expect("computed"), update: None })
        .collect();
    for (i, p) in partials.iter().enumerate() {
        shard.add_result(format!("partial.{i}"), map[p.value.index()].expect("computed"));
    }
    shard.names = f.names.iter().filter_map(|(n, v)| Some((n.clone(), map[v.index()]?))).collect();

    let mut combine = Function::new(f.name.clone());
    let mut arg_map: Vec<Option<ArgId>> = vec![None; f.args.len()];
    for (i, a) in f.args.iter().enumerate() {
        if !a.ty.shape.batch {
            arg_map[i] = Some(combine.add_arg(a.name.clone(), a.kind.clone(), a.ty.clone(), a.span));
        }
    }
    let partial_args: Vec<Vec<ArgId>> = (0..shards)
        .map(|s| {
            partials
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let (ty, span) = (f.ty(p.value).clone(), f.span(p.value));
                    combine.add_arg(format!("partial.{i}.{s}"), ArgKind::Input, ty, span)
                })
                .collect()
        })
        .collect();
    let mut map: Vec<Option<Value>> = vec![None; f.len()];
    for v in f.values().filter(|&v| !batched(v)) {
        let span = f.span(v);
        map[v.index()] = Some(match partial_of[v.index()] {
            Some(i) => {
                let ty = f.ty(v).clone();
                let read = |c: &mut Function, s: usize| c.push_typed(Inst::Arg(partial_args[s][i]), ty.clone(), span);
                let mut sum = read(&mut combine, 0);
                for s in 1..shards {
                    let rhs = read(&mut combine, s);
                    sum = combine.push_typed(Inst::Binary { op: BinaryOp::Add, lhs: sum, rhs }, ty.clone(), span);
                }
                if partials[i].scale != 1.0 {
                    let mut k = combine.ins(Inst::Const(partials[i].scale), span);
                    if ty.shape.rank() > 0 {
                        k = combine.ins(Inst::Broadcast { arg: k, to: ty.shape.clone() }, span);
                    }
                    sum = combine.push_typed(Inst::Binary { op: BinaryOp::Mul, lhs: sum, rhs: k }, ty, span);
                }
                sum
            }
            None => {
                let mut inst = f.inst(v).clone();
                if let Inst::Arg(a) = &mut inst {
                    *a = arg_map[a.index()].expect("a shared value reads a shared arg");
                }
                inst.map_operands(|o| map[o.index()].expect("a shared value's operands are shared"));
                combine.push_typed(inst, f.ty(v).clone(), span)
            }
        });
    }
    combine.results = f
        .results
        .iter()
        .filter(|r| !batched(r.value))
        .map(|r| Output {
            name: r.name.clone(),
            value: map[r.value.index()].expect("computed"),
            update: r.update.map(|a| arg_map[a.index()].expect("an update targets a shared arg")),
        })
        .collect();
    combine.names = f.names.iter().filter_map(|(n, v)| Some((n.clone(), map[v.index()]?))).collect();
    Some((shard, combine))
}
