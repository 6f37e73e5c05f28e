//! Reduction inner loops: accumulators in registers, combined into the output once.
//!
//! Sums are compensated (Kahan 1965): each accumulator carries the rounding error of its
//! last addition and feeds it back into the next, so the error does not grow with the
//! length (plain `f32` accumulation drifts by up to `n·ε·Σ|x|`). The compensated add is a
//! chain of four dependent operations, so [`GROUP`] vectors are first added pairwise with
//! plain adds, off that chain: a sum is then within about `3ε·Σ|x|` of the exact one at
//! any length, but one that cancels far below `Σ|x|` is no longer within a few ulp of its
//! own value. `max`/`min` need no compensation.

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
        let steps = |elems: usize| {
            let mut s = vector_steps(splats, elems as i64);
            s[0] = 0;
            s
        };
        let mut state: Vec<Value> = ptrs.to_vec();
        for _ in 0..u {
            state.extend(init(e, acc));
        }
        // Groups of `g` unrolled blocks, then the whole blocks left over one at a time (a
        // group of one is the block itself).
        let g = group(acc);
        for (count, g) in [(n / (4 * u * g), g), ((n % (4 * u * g)) / (4 * u), 1)] {
            state = counted(e, count, state, &mut |e, s| {
                let (p, accs) = s.split_at(np);
                let mut next = advance(e, p, &steps(4 * u * g));
                for (j, st) in accs.chunks(sl).enumerate() {
                    let xs = (0..g)
                        .map(|q| {
                            let ins = inputs(e, p, 16 * (j + u * q) as i32, 4);
                            body(e, &k.body, &ins, None)
                        })
                        .collect();
                    let x = tree_sum(e, xs);
                    next.extend(add(e, acc, st, x));
                }
                next
            });
        }
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
    let mut rows = |e: &mut Em, p: &[Value]| -> Vec<Value> {
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
        (0..nvec)
            .map(|j| {
                let ins = load_inputs(e, &with_out, &splats[..k.body_ins()], 16 * j as i32, lanes);
                body(e, &k.body, &ins, None)
            })
            .collect()
    };
    let accs = levels(e, k, acc, reduced, ptrs[1..].to_vec(), accs, &mut rows);
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

/// The body's values at the operand pointers, one vector per accumulator.
type Rows<'a> = dyn FnMut(&mut Em, &[Value]) -> Vec<Value> + 'a;

/// A sum adds this many vectors (rows of the innermost reduced axis, or consecutive
/// unrolled blocks of a row) pairwise with plain adds before each compensated add. The
/// compensated add is four dependent operations, so one per vector held a column block's
/// loop to a row per ~17 cycles; the pairwise tree is off that chain. A group's sum is off
/// by at most `γ₃·Σ|x|` over the group (`γ₃ ≈ 3ε`, Higham 2002 §4.2) and the compensated
/// adds do not compound these errors (§4.3). Measured on 1024 × 256 uniform(−1, 1) column
/// sums: worst error `5.6e-9·Σ|x|` (`3.3e-9` without groups), up to 13 ulp of a column's
/// own sum where it cancels (0.5 without); MNIST's bias-gradient sum went from 2.3% to 0.7%
/// of its train step's samples.
const GROUP: usize = 8;

/// How many vectors a sum adds up with plain adds before one compensated add ([`GROUP`]);
/// 1 for `max`/`min`.
fn group(acc: Acc) -> usize {
    match acc {
        Acc::Sum => GROUP,
        Acc::Max | Acc::Min => 1,
    }
}

/// `(x0 + x1) + (x2 + x3)`, pairwise.
fn tree_sum(e: &mut Em, mut xs: Vec<Value>) -> Value {
    while xs.len() > 1 {
        xs = xs.chunks(2).map(|c| if let [a, b] = *c { e.add(a, b) } else { c[0] }).collect();
    }
    xs[0]
}

/// Folds each body value `xs[j]` into the `j`-th accumulator of `accs`.
fn fold(e: &mut Em, acc: Acc, accs: &[Value], xs: &[Value]) -> Vec<Value> {
    let sl = state_len(acc);
    accs.chunks(sl).zip(xs).flat_map(|(st, &x)| add(e, acc, st, x)).collect()
}

/// Loops over the reduced `axes` carrying the input pointers and the accumulators; returns
/// the accumulators.
fn levels(
    e: &mut Em,
    k: &LoopKernel,
    acc: Acc,
    axes: &[usize],
    ptrs: Vec<Value>,
    accs: Vec<Value>,
    rows: &mut Rows,
) -> Vec<Value> {
    let Some((&d, rest)) = axes.split_first() else {
        let xs = rows(e, &ptrs);
        return fold(e, acc, &accs, &xs);
    };
    let np = ptrs.len();
    let steps: Vec<i64> = k.ins.iter().map(|s| s[d] as i64 * 4).collect();
    // Only the innermost axis is grouped; outer ones recurse one row at a time.
    let group = if rest.is_empty() { group(acc) } else { 1 };
    let n = k.dims[d];
    let (grouped, singles) = if group > 1 { (n / group, n % group) } else { (0, n) };
    let state: Vec<Value> = ptrs.into_iter().chain(accs).collect();
    let state = counted(e, grouped, state, &mut |e, s| {
        let (p, a) = s.split_at(np);
        let mut p = p.to_vec();
        let mut group_rows = Vec::with_capacity(group);
        for _ in 0..group {
            group_rows.push(rows(e, &p));
            p = advance(e, &p, &steps);
        }
        let xs: Vec<Value> =
            (0..group_rows[0].len()).map(|j| tree_sum(e, group_rows.iter().map(|r| r[j]).collect())).collect();
        p.extend(fold(e, acc, a, &xs));
        p
    });
    let state = counted(e, singles, state, &mut |e, s| {
        let (p, a) = s.split_at(np);
        let a = levels(e, k, acc, rest, p.to_vec(), a.to_vec(), rows);
        let mut next = advance(e, p, &steps);
        next.extend(a);
        next
    });
    state[np..].to_vec()
}
