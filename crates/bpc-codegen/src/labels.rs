//! Kernels indexed by class labels: cross-entropy's pick and one-hot rows.
//!
//! A label is read as `i32` and tested with one unsigned compare (`y < classes` also
//! rejects negative labels); an out-of-range label never addresses memory: it reads class 0
//! and replaces the result by NaN. These are scalar loops over rows (one or two memory
//! accesses per row, next to a row-sized reduction).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, I32, I64};
use cranelift_codegen::ir::{InstBuilder, Value};

use crate::emit::{advance, counted, out_flags};
use crate::math::Em;

/// Loads class `y[r]`, tests `0 <= y < classes`, and returns it (0 if out of range) as i64.
fn class_at(e: &mut Em, y_ptr: Value, classes: usize) -> (Value, Value) {
    let y = e.load_input(I32, y_ptr, 0);
    let ok = e.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, y, classes as i64);
    let zero = e.b.ins().iconst(I32, 0);
    let y = e.b.ins().select(ok, y, zero);
    let y = e.b.ins().uextend(I64, y);
    (y, ok)
}

/// `out[r] = (m[r] - z[r, y[r]]) + l[r]` (`l` holds `log s`; see `Kernel::Pick`), NaN for
/// a label out of range. Operands: out, z, y, m, l.
pub(crate) fn pick(e: &mut Em, rows: usize, classes: usize, [z_row, z_col, y_stride]: [isize; 3], params: &[Value]) {
    let steps = [4, z_row as i64 * 4, y_stride as i64 * 4, 4, 4];
    counted(e, rows, params.to_vec(), &mut |e, p| {
        let (y, ok) = class_at(e, p[2], classes);
        let off = e.b.ins().imul_imm_s(y, z_col as i64 * 4);
        let addr = e.b.ins().iadd(p[1], off);
        let z = e.load_input(F32, addr, 0);
        let m = e.load_input(F32, p[3], 0);
        let o = e.load_input(F32, p[4], 0);
        let d = e.b.ins().fsub(m, z);
        let d = e.b.ins().fadd(d, o);
        let nan = e.b.ins().f32const(f32::NAN);
        let r = e.b.ins().select(ok, d, nan);
        e.b.ins().store(out_flags(), r, p[0], 0);
        advance(e, p, &steps)
    });
}

/// Over a zero-filled `out[rows, classes]`: `out[r, y[r]] = 1`, or a NaN row for a label out
/// of range. Operands: out, y.
pub(crate) fn onehot(e: &mut Em, rows: usize, classes: usize, y_stride: isize, params: &[Value]) {
    let steps = [classes as i64 * 4, y_stride as i64 * 4];
    counted(e, rows, params.to_vec(), &mut |e, p| {
        let (y, ok) = class_at(e, p[1], classes);
        let (hit, miss, join) = (e.b.create_block(), e.b.create_block(), e.b.create_block());
        e.b.ins().brif(ok, hit, &[], miss, &[]);
        e.b.switch_to_block(hit);
        let off = e.b.ins().imul_imm_s(y, 4);
        let addr = e.b.ins().iadd(p[0], off);
        let one = e.b.ins().f32const(1.0);
        e.b.ins().store(out_flags(), one, addr, 0);
        e.b.ins().jump(join, &[]);
        e.b.switch_to_block(miss);
        counted(e, classes, vec![p[0]], &mut |e, q| {
            let nan = e.b.ins().f32const(f32::NAN);
            e.b.ins().store(out_flags(), nan, q[0], 0);
            advance(e, q, &[4])
        });
        e.b.ins().jump(join, &[]);
        e.b.switch_to_block(join);
        advance(e, p, &steps)
    });
}
