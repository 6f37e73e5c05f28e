//! Reduction inner loops: accumulators in registers, combined into the output once.
//!
//! Sums are compensated (Kahan 1965): each accumulator carries the rounding error of its
//! last addition and feeds it back into the next, so a long `f32` sum stays within a few
//! ulp of the exact one even when it cancels (plain `f32` accumulation drifts by about
//! `sqrt(n)·ε` of the partial sums). `max`/`min` need no compensation.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::types::{F32, F32X4, I32X4};
use cranelift_codegen::ir::{ConstantData, InstBuilder, MemFlagsData, Value};

use crate::emit::{
    advance, body, combine, counted, epilogue, load_inputs, load_lanes, out_flags, store_lanes, unroll, vector_steps,
};
use crate::kernel::{Acc, LoopKernel};
use crate::math::Em;

/// Values per accumulator: the running vector, plus the compensation for sums.
fn state_len(acc: Acc) -> usize {
    match acc {
        Acc::Sum => 2,
        Acc::Max | Acc::Min => 1,
    }
}

fn init(e: &mut Em, acc: Acc) -> Vec<Value> {
    let id = e.c(acc.identity());
    match acc {
        Acc::Sum => vec![id, id],
        Acc::Max | Acc::Min => vec![id],
    }
}

/// Folds `x` into the accumulator `st`.
fn add(e: &mut Em, acc: Acc, st: &[Value], x: Value) -> Vec<Value> {
    match acc {
        Acc::Sum => {
            let (s, c) = (st[0], st[1]);
            let y = e.sub(x, c);
            let t = e.add(s, y);
            let ts = e.sub(t, s);
            let c = e.sub(ts, y);
            // Once the sum is inf or NaN the compensation is meaningless: drop it so that
            // `inf - inf` in it cannot turn an infinite sum into NaN.
            let ac = e.b.ins().fabs(c);
            let inf = e.c(f32::INFINITY);
            let finite = e.cmp(FloatCC::LessThan, ac, inf);
            let c = e.and(c, finite);
            vec![t, c]
        }
        Acc::Max | Acc::Min => vec![combine(e, acc, st[0], x)],
    }
}

/// The accumulated value (lane by lane).
fn value(e: &mut Em, acc: Acc, st: &[Value]) -> Value {
    match acc {
        Acc::Sum => e.sub(st[0], st[1]),
        Acc::Max | Acc::Min => st[0],
    }
}

/// Folds `x` into the accumulator `st`, or starts it (`None`: still the identity). A
/// compensated sum started from 0 is exactly `(0 + x, 0)` and a max or min from its
/// identity is `x`, so starting saves the arithmetic on the identity, bit for bit.
fn add_to(e: &mut Em, acc: Acc, st: Option<Vec<Value>>, x: Value) -> Vec<Value> {
    match (st, acc) {
        (Some(st), _) => add(e, acc, &st, x),
        (None, Acc::Sum) => {
            let zero = e.c(0.0);
            vec![e.add(zero, x), zero]
        }
        (None, Acc::Max | Acc::Min) => vec![x],
    }
}

/// A row reduced into `*out` (output stride 0 on the inner axis): `u` accumulators over
/// unrolled vectors (when there is a whole unrolled block), one over the remaining single
/// vectors and the masked tail (straight-line code), then horizontally.
pub(crate) fn reduce_row(
    e: &mut Em,
    k: &LoopKernel,
    acc: Acc,
    ptrs: &[Value],
    splats: &[Option<Value>],
    hoisted: &[Value],
) {
    let n = k.dims[k.dims.len() - 1];
    let u = unroll(&k.body);
    let (np, sl) = (ptrs.len(), state_len(acc));
    let inputs = |e: &mut Em, p: &[Value], off: i32, lanes: usize| -> Vec<Value> {
        let mut ins = load_inputs(e, p, &splats[..k.body_ins()], off, lanes);
        ins.extend_from_slice(hoisted);
        ins
    };
    let (p, mut st) = if n >= 4 * u {
        // The output pointer stays put.
        let mut big = vector_steps(splats, 4 * u as i64);
        big[0] = 0;
        let mut state: Vec<Value> = ptrs.to_vec();
        for _ in 0..u {
            state.extend(init(e, acc));
        }
        let state = counted(e, n / (4 * u), state, &mut |e, s| {
            let (p, accs) = s.split_at(np);
            let mut next = advance(e, p, &big);
            for (j, st) in accs.chunks(sl).enumerate() {
                let ins = inputs(e, p, 16 * j as i32, 4);
                let x = body(e, &k.body, &ins, None);
                next.extend(add(e, acc, st, x));
            }
            next
        });
        let (p, accs) = state.split_at(np);
        let mut st = accs[..sl].to_vec();
        for other in accs[sl..].chunks(sl) {
            let v = value(e, acc, other);
            st = add(e, acc, &st, v);
        }
        (p.to_vec(), Some(st))
    } else {
        (ptrs.to_vec(), None)
    };
    let singles = (n % (4 * u)) / 4;
    for j in 0..singles {
        let ins = inputs(e, &p, 16 * j as i32, 4);
        let x = body(e, &k.body, &ins, None);
        st = Some(add_to(e, acc, st, x));
    }
    let tail = n % 4;
    if tail > 0 {
        let ins = inputs(e, &p, 16 * singles as i32, tail);
        let x = body(e, &k.body, &ins, None);
        // A one-element row only ever reads lane 0: no mask, no horizontal step.
        let x = if n == 1 {
            x
        } else {
            let mask = lane_mask(e, tail);
            let ident = e.c(acc.identity());
            e.sel(mask, x, ident)
        };
        st = Some(add_to(e, acc, st, x));
    }
    let st = st.unwrap_or_else(|| init(e, acc));
    let v = value(e, acc, &st);
    let h = if n == 1 { v } else { e.horizontal(v, |e, a, b| combine(e, acc, a, b)) };
    let r = if k.init {
        h
    } else {
        let o = e.b.ins().load(F32, out_flags(), p[0], 0);
        let o = e.in_lane0(o);
        combine(e, acc, o, h)
    };
    // Epilogue inputs sit at the output's position: broadcast along the row.
    let epi: Vec<Value> = splats[k.body_ins()..].iter().map(|s| s.expect("epilogue inputs are per output")).collect();
    let r = epilogue(e, k, r, &epi);
    let r = e.lane0(r);
    e.b.ins().store(out_flags(), r, p[0], 0);
}

/// All ones in the first `lanes` lanes.
fn lane_mask(e: &mut Em, lanes: usize) -> Value {
    let mut bytes = [0u8; 16];
    bytes[..4 * lanes].fill(0xff);
    let c = e.b.func.dfg.constants.insert(ConstantData::from(bytes.to_vec()));
    let m = e.b.ins().vconst(I32X4, c);
    e.b.ins().bitcast(F32X4, MemFlagsData::new(), m)
}

/// The inner (kept, contiguous) axis in blocks of output vectors; for each block the
/// `reduced` axes are walked with the block's accumulators in registers.
pub(crate) fn columns(e: &mut Em, k: &LoopKernel, acc: Acc, reduced: &[usize], ptrs: &[Value]) {
    let n = k.dims[k.dims.len() - 1];
    let u = unroll(&k.body);
    let inner = k.dims.len() - 1;
    let contiguous: Vec<bool> = std::iter::once(true).chain(k.ins.iter().map(|s| s[inner] == 1)).collect();
    let steps = |elems: i64| -> Vec<i64> { contiguous.iter().map(|&c| if c { elems * 4 } else { 0 }).collect() };
    let (big, one) = (steps(4 * u as i64), steps(4));
    let ptrs = counted(e, n / (4 * u), ptrs.to_vec(), &mut |e, p| {
        column_block(e, k, acc, reduced, p, u, 4);
        advance(e, p, &big)
    });
    let ptrs = counted(e, (n % (4 * u)) / 4, ptrs, &mut |e, p| {
        column_block(e, k, acc, reduced, p, 1, 4);
        advance(e, p, &one)
    });
    if !n.is_multiple_of(4) {
        column_block(e, k, acc, reduced, &ptrs, 1, n % 4);
    }
}

/// `nvec` output vectors (of `lanes` lanes) at `ptrs[0]`, each accumulated over the
/// reduced axes, then combined into the output.
fn column_block(e: &mut Em, k: &LoopKernel, acc: Acc, reduced: &[usize], ptrs: &[Value], nvec: usize, lanes: usize) {
    let inner = k.dims.len() - 1;
    let sl = state_len(acc);
    let mut accs = Vec::with_capacity(nvec * sl);
    for _ in 0..nvec {
        accs.extend(init(e, acc));
    }
    let mut leaf = |e: &mut Em, p: &[Value], accs: Vec<Value>| -> Vec<Value> {
        // Inputs broadcast along the inner axis still move with the reduced axes: load here.
        let splats: Vec<Option<Value>> = k
            .ins
            .iter()
            .zip(p)
            .map(|(s, &q)| {
                (s[inner] == 0).then(|| {
                    let x = e.load_input(F32, q, 0);
                    e.b.ins().splat(F32X4, x)
                })
            })
            .collect();
        let mut with_out = vec![ptrs[0]];
        with_out.extend_from_slice(p);
        let mut next = Vec::with_capacity(accs.len());
        for (j, st) in accs.chunks(sl).enumerate() {
            let ins = load_inputs(e, &with_out, &splats[..k.body_ins()], 16 * j as i32, lanes);
            let x = body(e, &k.body, &ins, None);
            next.extend(add(e, acc, st, x));
        }
        next
    };
    let accs = levels(e, k, reduced, ptrs[1..].to_vec(), accs, &mut leaf);
    let n = k.body_ins();
    for (j, st) in accs.chunks(sl).enumerate() {
        let v = value(e, acc, st);
        let off = 16 * j as i32;
        let r = if k.init {
            v
        } else {
            let o = load_lanes(e, ptrs[0], off, lanes, out_flags());
            combine(e, acc, o, v)
        };
        let inner = k.dims.len() - 1;
        let epi: Vec<Value> = (n..k.ins.len())
            .map(|i| {
                if k.ins[i][inner] == 0 {
                    let x = e.b.ins().load(F32, out_flags(), ptrs[1 + i], 0);
                    e.b.ins().splat(F32X4, x)
                } else {
                    load_lanes(e, ptrs[1 + i], off, lanes, out_flags())
                }
            })
            .collect();
        let r = epilogue(e, k, r, &epi);
        store_lanes(e, r, ptrs[0], off, lanes);
    }
}

type Leaf<'a> = dyn FnMut(&mut Em, &[Value], Vec<Value>) -> Vec<Value> + 'a;

/// Loops over the reduced `axes` carrying the input pointers and the accumulators; returns
/// the accumulators.
fn levels(
    e: &mut Em,
    k: &LoopKernel,
    axes: &[usize],
    ptrs: Vec<Value>,
    accs: Vec<Value>,
    leaf: &mut Leaf,
) -> Vec<Value> {
    let Some((&d, rest)) = axes.split_first() else {
        return leaf(e, &ptrs, accs);
    };
    let np = ptrs.len();
    let steps: Vec<i64> = k.ins.iter().map(|s| s[d] as i64 * 4).collect();
    let state: Vec<Value> = ptrs.into_iter().chain(accs).collect();
    let state = counted(e, k.dims[d], state, &mut |e, s| {
        let (p, a) = s.split_at(np);
        let a = levels(e, k, rest, p.to_vec(), a.to_vec(), leaf);
        let mut next = advance(e, p, &steps);
        next.extend(a);
        next
    });
    state[np..].to_vec()
}
