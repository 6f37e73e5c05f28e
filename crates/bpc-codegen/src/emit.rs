//! Kernel bodies in CLIF: loop nests, their vectorized inner loops, and the per-op table.
//!
//! A loop kernel's outer axes become counted loops that carry one pointer per operand. The
//! innermost axis picks one of four shapes by its strides:
//! - **vector** (output contiguous, inputs contiguous or broadcast): `f32x4` unrolled ×2–4,
//!   then up to three single vectors and one partial vector for the last 1–3 elements
//!   (straight-line); what reads only broadcast inputs is computed once per row, and a
//!   long enough dot product of the body once per row by an AVX-512 call into a stack buffer;
//! - **row reduction** (output stride 0 on the inner axis): the same, into vector
//!   accumulators combined once per row (`reduce.rs`);
//! - **column reduction** (inner axis kept, outer axes reduced, e.g. a sum over the batch):
//!   blocks of output vectors stay in registers while the reduced axes are walked;
//! - **scalar** (any other stride, e.g. a transposed read): one element per iteration in lane
//!   0 of a vector, so every op is written once, for `f32x4`.
//!
//! Every trip count is a compile-time constant (the batch size is known), so loops are
//! do-while loops without a zero-trip test and trip counts 0 and 1 emit no loop at all.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, F64, F64X2, I64};
use cranelift_codegen::ir::{
    AbiParam, BlockArg, Endianness, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind, Type, Value,
};

use bpc_ir::{BinaryOp, UnaryOp};

use crate::kernel::{Acc, Expr, Fn1, Fn2, InputDot, Kernel, LoopKernel, RowsKernel};
use crate::labels::{onehot, pick};
use crate::math::Em;
use crate::outer::bpc_row_product;
use crate::reduce::{columns, reduce_row};

/// Flags of input loads. Inputs are never written by the kernel that reads them (an in-place
/// map writes each element only after reading it), so in a kernel function they are
/// read-only and loads may move. Inlined into the entry, other kernels write them.
pub(crate) fn input_flags(e: &Em) -> MemFlagsData {
    let flags = MemFlagsData::new().with_notrap();
    if e.inlined { flags } else { flags.with_readonly().with_can_move() }
}

impl Em<'_, '_> {
    /// Loads an input operand (see [`input_flags`]).
    pub(crate) fn load_input(&mut self, ty: Type, p: Value, off: i32) -> Value {
        let flags = input_flags(self);
        self.b.ins().load(ty, flags, p, off)
    }
}

/// Flags of output loads and stores.
pub(crate) fn out_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Emits the body of `kernel` given its pointer parameters (output first).
pub(crate) fn emit_kernel(e: &mut Em, kernel: &Kernel, params: &[Value]) {
    match kernel {
        Kernel::Loop(k) => emit_loop(e, k, params),
        Kernel::Pick { rows, classes, z_row, z_col, y_stride } => {
            pick(e, *rows, *classes, [*z_row, *z_col, *y_stride], params)
        }
        Kernel::OneHot { rows, classes, y_stride } => onehot(e, *rows, *classes, *y_stride, params),
        Kernel::Rows(r) => emit_rows(e, r, params),
    }
}

/// The fused row loop: `pre`, then every phase once per row, then `post`. A phase reads what
/// an earlier one wrote in the same function, so no input load is read-only here.
fn emit_rows(e: &mut Em, r: &RowsKernel, params: &[Value]) {
    let was = e.inlined;
    e.inlined = true;
    let pick = |idx: &[usize], ps: &[Value]| -> Vec<Value> { idx.iter().map(|&i| ps[i]).collect() };
    for (k, idx) in &r.pre {
        emit_kernel(e, k, &pick(idx, params));
    }
    let steps: Vec<i64> = r.row_strides.iter().map(|&s| s as i64 * 4).collect();
    let (rows, left) = match &r.pair {
        Some(pair) => {
            let second: Vec<i64> = pair.iter().map(|&s| s as i64 * 4).collect();
            let two: Vec<i64> = steps.iter().map(|s| 2 * s).collect();
            let p = counted(e, r.rows / 2, params.to_vec(), &mut |e, p| {
                let q = advance(e, p, &second);
                for (k, idx) in &r.phases {
                    emit_kernel(e, k, &pick(idx, p));
                    emit_kernel(e, k, &pick(idx, &q));
                }
                advance(e, p, &two)
            });
            (r.rows % 2, p)
        }
        None => (r.rows, params.to_vec()),
    };
    counted(e, rows, left, &mut |e, p| {
        for (k, idx) in &r.phases {
            emit_kernel(e, k, &pick(idx, p));
        }
        advance(e, p, &steps)
    });
    for (k, idx) in &r.post {
        emit_kernel(e, k, &pick(idx, params));
    }
    e.inlined = was;
}

fn emit_loop(e: &mut Em, k: &LoopKernel, params: &[Value]) {
    let inner_axis = k.dims.len() - 1;
    let outer: Vec<usize> = (0..inner_axis).collect();
    let strides = operand_strides(k, inner_axis);
    let unit = strides[1..].iter().all(|&s| s == 0 || s == 1);
    match k.acc {
        Some(acc) if unit && strides[0] == 1 && outer.iter().any(|&d| k.out[d] == 0) => {
            // Kept axes outside, reduced axes inside each block of output vectors.
            let (reduced, kept): (Vec<usize>, Vec<usize>) = outer.iter().partition(|&&d| k.out[d] == 0);
            nest(e, k, &kept, params.to_vec(), &mut |e, p| columns(e, k, acc, &reduced, p));
        }
        _ => nest(e, k, &outer, params.to_vec(), &mut |e, p| inner(e, k, p)),
    }
}

/// `for _ in 0..n { vals = body(vals) }`, returning the final `vals`.
pub(crate) fn counted(
    e: &mut Em,
    n: usize,
    init: Vec<Value>,
    body: &mut dyn FnMut(&mut Em, &[Value]) -> Vec<Value>,
) -> Vec<Value> {
    match n {
        0 => init,
        1 => body(e, &init),
        _ => {
            let header = e.b.create_block();
            let exit = e.b.create_block();
            let i = e.b.append_block_param(header, I64);
            let mut params = Vec::with_capacity(init.len());
            let mut outs = Vec::with_capacity(init.len());
            for &v in &init {
                let ty = e.b.func.dfg.value_type(v);
                params.push(e.b.append_block_param(header, ty));
                outs.push(e.b.append_block_param(exit, ty));
            }
            let zero = e.b.ins().iconst(I64, 0);
            let args: Vec<BlockArg> = std::iter::once(zero).chain(init).map(BlockArg::Value).collect();
            e.b.ins().jump(header, &args);
            e.b.switch_to_block(header);
            let next = body(e, &params);
            let i1 = e.b.ins().iadd_imm_s(i, 1);
            let more = e.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, i1, n as i64);
            let back: Vec<BlockArg> = std::iter::once(i1).chain(next.iter().copied()).map(BlockArg::Value).collect();
            let done: Vec<BlockArg> = next.into_iter().map(BlockArg::Value).collect();
            e.b.ins().brif(more, header, &back, exit, &done);
            e.b.switch_to_block(exit);
            outs
        }
    }
}

/// Adds `steps[i]` bytes to pointer `i`.
pub(crate) fn advance(e: &mut Em, ptrs: &[Value], steps: &[i64]) -> Vec<Value> {
    ptrs.iter().zip(steps).map(|(&p, &s)| if s == 0 { p } else { e.b.ins().iadd_imm_s(p, s) }).collect()
}

pub(crate) fn operand_strides(k: &LoopKernel, d: usize) -> Vec<isize> {
    std::iter::once(k.out[d]).chain(k.ins.iter().map(|s| s[d])).collect()
}

/// Loops over the axes `axes` (outermost first), calling `leaf` with the operand pointers.
fn nest(e: &mut Em, k: &LoopKernel, axes: &[usize], ptrs: Vec<Value>, leaf: &mut dyn FnMut(&mut Em, &[Value])) {
    let Some((&d, rest)) = axes.split_first() else {
        leaf(e, &ptrs);
        return;
    };
    let steps: Vec<i64> = operand_strides(k, d).iter().map(|&s| s as i64 * 4).collect();
    counted(e, k.dims[d], ptrs, &mut |e, p| {
        nest(e, k, rest, p.to_vec(), leaf);
        advance(e, p, &steps)
    });
}

/// Unroll factor: ×4 for cheap bodies, ×2 for transcendental ones (register pressure, size);
/// ×4 for a dot product, whose multiply-adds form one chain per vector: four chains in
/// flight instead of two, and each broadcast operand is loaded once for four vectors.
pub(crate) fn unroll(body: &Expr) -> usize {
    if body.cost() > 12 && body.dots() == 0 { 2 } else { 4 }
}

fn inner(e: &mut Em, k: &LoopKernel, ptrs: &[Value]) {
    let d = k.dims.len() - 1;
    let strides = operand_strides(k, d);
    let unit = strides[1..].iter().all(|&s| s == 0 || s == 1);
    // Broadcast (stride-0) inputs are loaded once per row.
    let splats: Vec<Option<Value>> = strides[1..]
        .iter()
        .zip(&ptrs[1..])
        .map(|(&s, &p)| {
            (s == 0).then(|| {
                let x = e.load_input(F32, p, 0);
                e.b.ins().splat(F32X4, x)
            })
        })
        .collect();
    // What reads only broadcast inputs is the same at every position: once per row.
    let mut hoisted = Vec::new();
    let body = hoist(e, &k.body, &splats[..k.body_ins()], &mut hoisted);
    let k = &LoopKernel { body, ..k.clone() };
    match (unit, strides[0], k.acc) {
        (true, 1, _) => match row_dot(e, k, &splats) {
            Some(dot) => {
                // The row of the dot product goes to a stack buffer read as one more input.
                let row = precompute_row(e, dot, ptrs, k.dims[d]);
                let ptrs: Vec<Value> = ptrs.iter().copied().chain([row]).collect();
                let splats: Vec<Option<Value>> = splats.iter().copied().chain([None]).collect();
                vector_row(e, k, &ptrs, &splats, &hoisted, true)
            }
            None => vector_row(e, k, ptrs, &splats, &hoisted, false),
        },
        (true, 0, Some(acc)) => reduce_row(e, k, acc, ptrs, &splats, &hoisted),
        _ => scalar_row(e, k, ptrs, &strides, &splats, &hoisted),
    }
}

/// The longest row buffered on the stack: 16 KB per kernel function, far inside a thread's
/// stack (2 MB for rayon's threads, 8 MB for the main thread).
const ROW_DOT_MAX: usize = 4096;

/// A dot product of the body computed a row at a time by [`bpc_row_product`]:
/// `row[j] = Σ_{p<k} a[p·sa] · b[p·sb + j]`, where input `a` is broadcast along the row (the
/// row of the left factor) and input `b` moves with it (contiguous: the inner loop is a vector
/// row). AVX-512 has 16 lanes where the inlined dot has 4.
fn row_dot(e: &Em, k: &LoopKernel, splats: &[Option<Value>]) -> Option<InputDot> {
    let n = k.dims[k.dims.len() - 1];
    if n > ROW_DOT_MAX || k.body.dots() != 1 {
        return None;
    }
    let d = k.body.find_dot()?;
    if d.k.saturating_mul(n) < e.row_product_min {
        return None;
    }
    match (splats[d.a].is_some(), splats[d.b].is_some()) {
        (true, false) => Some(d),
        (false, true) => Some(InputDot { a: d.b, b: d.a, k: d.k, sa: d.sb, sb: d.sa }),
        _ => None,
    }
}

/// Calls [`bpc_row_product`] for the row at `ptrs` into the function's row buffer; its address.
/// The callee is called by address (a constant in the CLIF), as a libcall would be, so kernel
/// functions need no module import.
fn precompute_row(e: &mut Em, d: InputDot, ptrs: &[Value], n: usize) -> Value {
    let size = (n * 4) as u32;
    let slot = match e.row_slot {
        Some((slot, have)) if have >= size => slot,
        _ => {
            let slot = e.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, size, 6));
            e.row_slot = Some((slot, size));
            slot
        }
    };
    let row = e.b.ins().stack_addr(I64, slot, 0);
    let mut sig = Signature::new(e.b.func.signature.call_conv);
    sig.params.extend(std::iter::repeat_n(AbiParam::new(I64), 7));
    let sig = e.b.import_signature(sig);
    let f = e.b.ins().iconst(I64, bpc_row_product as *const () as i64);
    let ints = [d.sa as i64, d.sb as i64, d.k as i64, n as i64].map(|x| e.b.ins().iconst(I64, x));
    e.b.ins().call_indirect(sig, f, &[row, ptrs[1 + d.a], ints[0], ptrs[1 + d.b], ints[1], ints[2], ints[3]]);
    e.row_calls += 1;
    row
}

/// `x` with constant arithmetic folded and each larger subexpression of broadcast inputs
/// (`splats`) and constants evaluated here, once, pushed on `hoisted` and read back as
/// `In(splats.len() + j)`. The same operations on the same values: bit-identical results.
fn hoist(e: &mut Em, x: &Expr, splats: &[Option<Value>], hoisted: &mut Vec<Value>) -> Expr {
    if let Some(c) = fold(x) {
        return Expr::konst(c);
    }
    if invariant(x, splats) && !matches!(x, Expr::In(_) | Expr::Const(_)) {
        let ins: Vec<Value> = splats.iter().map(|s| s.unwrap_or_else(|| e.c(0.0))).collect();
        hoisted.push(body(e, x, &ins, None));
        return Expr::In(splats.len() + hoisted.len() - 1);
    }
    let mut go = |a: &Expr| Box::new(hoist(e, a, splats, hoisted));
    match x {
        Expr::In(_) | Expr::Const(_) | Expr::Dot { .. } => x.clone(),
        Expr::Un(f, a) => Expr::Un(*f, go(a)),
        Expr::Bin(f, a, b) => Expr::Bin(*f, go(a), go(b)),
        Expr::Select(c, t, f) => Expr::Select(go(c), go(t), go(f)),
        Expr::PowI(a, n) => Expr::PowI(go(a), *n),
    }
}

/// Whether `x` reads nothing that moves along the row.
fn invariant(x: &Expr, splats: &[Option<Value>]) -> bool {
    match x {
        Expr::In(i) => splats[*i].is_some(),
        Expr::Const(_) => true,
        Expr::Un(_, a) | Expr::PowI(a, _) => invariant(a, splats),
        Expr::Bin(_, a, b) => invariant(a, splats) && invariant(b, splats),
        Expr::Select(c, t, f) => invariant(c, splats) && invariant(t, splats) && invariant(f, splats),
        Expr::Dot { .. } => false,
    }
}

/// The value of IEEE arithmetic on constants (correctly rounded in `f32`, as the vector
/// instruction would give), e.g. the `1.0 / B` of a mean's adjoint.
fn fold(x: &Expr) -> Option<f32> {
    match x {
        Expr::Const(c) => Some(f32::from_bits(*c)),
        Expr::Un(Fn1::Ir(UnaryOp::Neg), a) => Some(-fold(a)?),
        Expr::Bin(Fn2::Ir(op), a, b) => {
            let (a, b) = (fold(a)?, fold(b)?);
            match op {
                BinaryOp::Add => Some(a + b),
                BinaryOp::Sub => Some(a - b),
                BinaryOp::Mul => Some(a * b),
                BinaryOp::Div => Some(a / b),
                BinaryOp::StrongMul
                | BinaryOp::Pow
                | BinaryOp::Max
                | BinaryOp::Min
                | BinaryOp::Lt
                | BinaryOp::Le
                | BinaryOp::Gt
                | BinaryOp::Ge
                | BinaryOp::Eq => None,
            }
        }
        _ => None,
    }
}

/// The input vectors at byte offset `off`: full loads, or the first `lanes` elements.
pub(crate) fn load_inputs(e: &mut Em, ptrs: &[Value], splats: &[Option<Value>], off: i32, lanes: usize) -> Vec<Value> {
    splats
        .iter()
        .zip(&ptrs[1..])
        .map(|(s, &p)| match s {
            Some(v) => *v,
            None => load_lanes(e, p, off, lanes, input_flags(e)),
        })
        .collect()
}

pub(crate) fn load_lanes(e: &mut Em, p: Value, off: i32, lanes: usize, flags: MemFlagsData) -> Value {
    match lanes {
        4 => e.b.ins().load(F32X4, flags, p, off),
        1 => {
            let x = e.b.ins().load(F32, flags, p, off);
            e.b.ins().scalar_to_vector(F32X4, x)
        }
        // Two lanes as one 64-bit load (`movsd`), the third inserted.
        _ => {
            let x = e.b.ins().load(F64, flags, p, off);
            let v = e.b.ins().scalar_to_vector(F64X2, x);
            let v = e.b.ins().bitcast(F32X4, little(), v);
            if lanes == 2 {
                return v;
            }
            let x = e.b.ins().load(F32, flags, p, off + 8);
            e.b.ins().insertlane(v, x, 2)
        }
    }
}

pub(crate) fn store_lanes(e: &mut Em, v: Value, p: Value, off: i32, lanes: usize) {
    match lanes {
        4 => {
            e.b.ins().store(out_flags(), v, p, off);
        }
        1 => {
            let x = e.b.ins().extractlane(v, 0);
            e.b.ins().store(out_flags(), x, p, off);
        }
        _ => {
            let d = e.b.ins().bitcast(F64X2, little(), v);
            let x = e.b.ins().extractlane(d, 0);
            e.b.ins().store(out_flags(), x, p, off);
            if lanes == 3 {
                let x = e.b.ins().extractlane(v, 2);
                e.b.ins().store(out_flags(), x, p, off + 8);
            }
        }
    }
}

/// Flags of a bitcast that changes the lane width.
fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// One vector (or the first `lanes` elements) of a contiguous-output row.
fn vector_step(
    e: &mut Em,
    k: &LoopKernel,
    ptrs: &[Value],
    splats: &[Option<Value>],
    hoisted: &[Value],
    (off, lanes): (i32, usize),
    row_dot: bool,
) {
    let n = k.body_ins();
    let mut ins = load_inputs(e, ptrs, &splats[..n], off, lanes);
    ins.extend_from_slice(hoisted);
    let bcast: Vec<bool> = splats.iter().map(Option::is_some).collect();
    let at = At { ptrs: &ptrs[1..], bcast: &bcast, off, lanes, scalar: false, row_dot };
    let mut v = body(e, &k.body, &ins, Some(&at));
    if let Some(acc) = k.acc {
        if !k.init {
            let o = load_lanes(e, ptrs[0], off, lanes, out_flags());
            v = combine(e, acc, o, v);
        }
        let epi: Vec<Value> = (n..k.ins.len())
            .map(|i| match splats[i] {
                Some(s) => s,
                None => load_lanes(e, ptrs[1 + i], off, lanes, input_flags(e)),
            })
            .collect();
        v = epilogue(e, k, v, &epi);
    }
    store_lanes(e, v, ptrs[0], off, lanes);
}

/// The accumulated value `v` through the kernel's epilogue, if it has one.
pub(crate) fn epilogue(e: &mut Em, k: &LoopKernel, v: Value, epi_ins: &[Value]) -> Value {
    match &k.epilogue {
        None => v,
        Some(x) => {
            let ins: Vec<Value> = std::iter::once(v).chain(epi_ins.iter().copied()).collect();
            body(e, x, &ins, None)
        }
    }
}

/// Where a body's inputs are, for a dot product (which reads beyond the current element):
/// input pointers, which inputs are broadcast along the row, the current byte offset
/// along it, and the lanes in use (`scalar`: pointers already at the element, lane 0).
pub(crate) struct At<'a> {
    pub ptrs: &'a [Value],
    pub bcast: &'a [bool],
    pub off: i32,
    pub lanes: usize,
    pub scalar: bool,
    /// The body's dot product was computed for the row into the last of `ptrs`.
    pub row_dot: bool,
}

/// Input `i` at `elems` elements past the current position.
fn load_at(e: &mut Em, at: &At, i: usize, elems: isize) -> Value {
    let extra = (elems * 4) as i32;
    if at.bcast[i] || at.scalar {
        // A broadcast input does not move along the row: no vector offset.
        let off = if at.bcast[i] { extra } else { at.off + extra };
        let x = e.load_input(F32, at.ptrs[i], off);
        return if at.bcast[i] { e.b.ins().splat(F32X4, x) } else { e.in_lane0(x) };
    }
    let flags = input_flags(e);
    load_lanes(e, at.ptrs[i], at.off + extra, at.lanes, flags)
}

/// Byte steps of one vector for each operand (0 for broadcast inputs).
pub(crate) fn vector_steps(splats: &[Option<Value>], elems: i64) -> Vec<i64> {
    std::iter::once(elems * 4).chain(splats.iter().map(|s| if s.is_some() { 0 } else { elems * 4 })).collect()
}

fn vector_row(e: &mut Em, k: &LoopKernel, ptrs: &[Value], splats: &[Option<Value>], hoisted: &[Value], row_dot: bool) {
    let n = k.dims[k.dims.len() - 1];
    let u = unroll(&k.body);
    let big = vector_steps(splats, 4 * u as i64);
    let ptrs = counted(e, n / (4 * u), ptrs.to_vec(), &mut |e, p| {
        for j in 0..u {
            vector_step(e, k, p, splats, hoisted, (16 * j as i32, 4), row_dot);
        }
        advance(e, p, &big)
    });
    // Fewer than `u` single vectors and the partial one: straight-line code.
    let singles = (n % (4 * u)) / 4;
    for j in 0..singles {
        vector_step(e, k, &ptrs, splats, hoisted, (16 * j as i32, 4), row_dot);
    }
    if !n.is_multiple_of(4) {
        vector_step(e, k, &ptrs, splats, hoisted, (16 * singles as i32, n % 4), row_dot);
    }
}

/// One element per iteration, in lane 0: the fallback for strided (non-unit) access.
fn scalar_row(
    e: &mut Em,
    k: &LoopKernel,
    ptrs: &[Value],
    strides: &[isize],
    splats: &[Option<Value>],
    hoisted: &[Value],
) {
    let n = k.dims[k.dims.len() - 1];
    let steps: Vec<i64> = strides.iter().map(|&s| s as i64 * 4).collect();
    counted(e, n, ptrs.to_vec(), &mut |e, p| {
        let mut ins: Vec<Value> = splats[..k.body_ins()]
            .iter()
            .zip(&p[1..])
            .map(|(s, &q)| match s {
                Some(v) => *v,
                None => {
                    let x = e.load_input(F32, q, 0);
                    e.in_lane0(x)
                }
            })
            .collect();
        ins.extend_from_slice(hoisted);
        let bcast: Vec<bool> = splats.iter().map(Option::is_some).collect();
        let at = At { ptrs: &p[1..], bcast: &bcast, off: 0, lanes: 1, scalar: true, row_dot: false };
        let mut v = body(e, &k.body, &ins, Some(&at));
        if let Some(acc) = k.acc {
            if !k.init {
                let o = e.b.ins().load(F32, out_flags(), p[0], 0);
                let o = e.in_lane0(o);
                v = combine(e, acc, o, v);
            }
            let epi: Vec<Value> = (k.body_ins()..k.ins.len())
                .map(|i| match splats[i] {
                    Some(s) => s,
                    None => {
                        let x = e.b.ins().load(F32, out_flags(), p[1 + i], 0);
                        e.in_lane0(x)
                    }
                })
                .collect();
            v = epilogue(e, k, v, &epi);
        }
        let x = e.lane0(v);
        e.b.ins().store(out_flags(), x, p[0], 0);
        advance(e, p, &steps)
    });
}

pub(crate) fn combine(e: &mut Em, acc: Acc, a: Value, b: Value) -> Value {
    match acc {
        Acc::Sum => e.add(a, b),
        Acc::Max => e.max(a, b),
        Acc::Min => e.min(a, b),
    }
}

/// The body expression on `f32x4` operands (`at` locates them for dot products).
pub(crate) fn body(e: &mut Em, x: &Expr, ins: &[Value], at: Option<&At>) -> Value {
    match x {
        Expr::In(i) => ins[*i],
        Expr::Const(bits) => e.c(f32::from_bits(*bits)),
        Expr::Un(f, a) => {
            let a = body(e, a, ins, at);
            match f {
                Fn1::Ir(op) => unary(e, *op, a),
                Fn1::FiniteOr0 => e.finite_or_0(a),
            }
        }
        Expr::Bin(Fn2::Ir(BinaryOp::StrongMul), a, b) if nonzero(a) || nonzero(b) => {
            // A nonzero constant factor is never a strong zero: only the other one is tested.
            let (x, y) = (body(e, a, ins, at), body(e, b, ins, at));
            let t = if nonzero(a) { y } else { x };
            let p = e.mul(x, y);
            let zero = e.c(0.0);
            let z = e.cmp(FloatCC::Equal, t, zero);
            e.b.ins().band_not(p, z)
        }
        Expr::Bin(f, a, b) => {
            let (a, b) = (body(e, a, ins, at), body(e, b, ins, at));
            match f {
                Fn2::Ir(op) => binary(e, *op, a, b),
                Fn2::LseFinish => e.lse_finish(a, b),
            }
        }
        Expr::Select(c, t, f) => {
            let m = match &**c {
                // A comparison's 0/1 mask is nonzero exactly where the comparison holds.
                Expr::Bin(Fn2::Ir(op), x, y) if let Some(cc) = comparison(*op) => {
                    let (x, y) = (body(e, x, ins, at), body(e, y, ins, at));
                    e.cmp(cc, x, y)
                }
                _ => {
                    let c = body(e, c, ins, at);
                    let zero = e.c(0.0);
                    // `!=` is true for NaN, as the interpreter's `c != 0.0`.
                    e.cmp(FloatCC::NotEqual, c, zero)
                }
            };
            let zero = |x: &Expr| matches!(x, Expr::Const(0));
            match (zero(t), zero(f)) {
                (false, true) => {
                    let t = body(e, t, ins, at);
                    e.and(m, t)
                }
                (true, false) => {
                    let f = body(e, f, ins, at);
                    e.b.ins().band_not(f, m)
                }
                _ => {
                    let (t, f) = (body(e, t, ins, at), body(e, f, ins, at));
                    e.sel(m, t, f)
                }
            }
        }
        Expr::PowI(a, n) => {
            let a = body(e, a, ins, at);
            e.powi(a, *n)
        }
        Expr::Dot { a, b, k, sa, sb } => {
            let (Some(at), Expr::In(ia), Expr::In(ib)) = (at, &**a, &**b) else {
                panic!("internal error: a dot product outside an elementwise loop over memory operands")
            };
            if at.row_dot {
                // Stored by a call in this function: not a read-only input.
                let row = at.ptrs[at.ptrs.len() - 1];
                return load_lanes(e, row, at.off, at.lanes, out_flags());
            }
            let mut acc = e.c(0.0);
            for p in 0..*k as isize {
                let x = load_at(e, at, *ia, p * sa);
                let y = load_at(e, at, *ib, p * sb);
                acc = e.madd(x, y, acc);
            }
            acc
        }
    }
}

/// A constant that is not `±0` (NaN included: `NaN == 0` is false, as in `strong_mul`).
fn nonzero(x: &Expr) -> bool {
    matches!(x, Expr::Const(c) if f32::from_bits(*c) != 0.0)
}

/// The code-generation rule of each unary op.
fn unary(e: &mut Em, op: UnaryOp, x: Value) -> Value {
    match op {
        UnaryOp::Neg => e.b.ins().fneg(x),
        UnaryOp::Exp => e.exp(x),
        UnaryOp::Log => e.log(x),
        UnaryOp::Sqrt => e.b.ins().sqrt(x),
        UnaryOp::Abs => e.b.ins().fabs(x),
        UnaryOp::Sigmoid => e.sigmoid(x),
        UnaryOp::Tanh => e.tanh(x),
        UnaryOp::Relu => e.relu(x),
        UnaryOp::Softplus => e.softplus(x),
        UnaryOp::LogSigmoid => e.log_sigmoid(x),
    }
}

/// The code-generation rule of each binary op; comparisons give 0/1 masks (false on NaN).
fn binary(e: &mut Em, op: BinaryOp, a: Value, b: Value) -> Value {
    if let Some(cc) = comparison(op) {
        let m = e.cmp(cc, a, b);
        return e.mask01(m);
    }
    match op {
        BinaryOp::Add => e.add(a, b),
        BinaryOp::Sub => e.sub(a, b),
        BinaryOp::Mul => e.mul(a, b),
        BinaryOp::StrongMul => e.strong_mul(a, b),
        BinaryOp::Div => e.div(a, b),
        BinaryOp::Pow => e.pow(a, b),
        BinaryOp::Max => e.max(a, b),
        BinaryOp::Min => e.min(a, b),
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq => unreachable!("a comparison"),
    }
}

/// The condition of a comparison op (ordered: false on NaN).
fn comparison(op: BinaryOp) -> Option<FloatCC> {
    match op {
        BinaryOp::Lt => Some(FloatCC::LessThan),
        BinaryOp::Le => Some(FloatCC::LessThanOrEqual),
        BinaryOp::Gt => Some(FloatCC::GreaterThan),
        BinaryOp::Ge => Some(FloatCC::GreaterThanOrEqual),
        BinaryOp::Eq => Some(FloatCC::Equal),
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::StrongMul
        | BinaryOp::Div
        | BinaryOp::Pow
        | BinaryOp::Max
        | BinaryOp::Min => None,
    }
}
