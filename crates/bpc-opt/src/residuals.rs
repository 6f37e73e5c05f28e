//! The residuals of an adjoint: the forward activations the backward program really reads.
//!
//! This is the yardstick for buffer planning: a tape-based reverse mode has to keep these
//! values from the forward pass until the adjoint has read them, so a step's arena cannot
//! be much smaller than their bytes, and a good plan should not be much larger.

use bpc_ir::{Function, Inst, Value};

/// The forward values an instruction of the adjoint reads, in definition order.
///
/// A value is a residual when it is defined before `func.adjoint_start`, some instruction at
/// or after it reads it, and it occupies memory of its own: arguments (the caller's
/// buffers), constants and the batch size are not residuals, and a read through a view
/// (`broadcast`, `reshape`, `transpose`, `index`: free in code generation) counts as a read
/// of the viewed value. Run it on the function after the classic passes (`-O1`), so dead
/// forward values and duplicates are gone, and before fusion, which may move forward values
/// past the adjoint's start. Empty for a function without an adjoint.
pub fn adjoint_residuals(func: &Function) -> Vec<Value> {
    let Some(start) = func.adjoint_start else { return Vec::new() };
    let mut residual = vec![false; func.len()];
    for v in func.values().filter(|v| v.index() >= start.index()) {
        for operand in func.inst(v).operands() {
            let base = viewed(func, operand);
            if base.index() < start.index() && owns_memory(func.inst(base)) {
                residual[base.index()] = true;
            }
        }
    }
    func.values().filter(|v| residual[v.index()]).collect()
}

/// The bytes of [`adjoint_residuals`] at minibatch size `batch` (every element is 4 bytes).
pub fn adjoint_residual_bytes(func: &Function, batch: usize) -> usize {
    adjoint_residuals(func).iter().map(|&v| func.shape(v).len(batch) * 4).sum()
}

/// The value `v` is a view of (itself if it is not a view).
fn viewed(func: &Function, mut v: Value) -> Value {
    loop {
        match func.inst(v) {
            Inst::Broadcast { arg, .. }
            | Inst::Reshape { arg, .. }
            | Inst::Transpose { arg }
            | Inst::Index { arg, .. } => v = *arg,
            Inst::Arg(_)
            | Inst::Const(_)
            | Inst::BatchSize
            | Inst::Unary { .. }
            | Inst::Binary { .. }
            | Inst::Select { .. }
            | Inst::Reduce { .. }
            | Inst::MatMul { .. }
            | Inst::Softmax { .. }
            | Inst::CrossEntropy { .. }
            | Inst::OneHot { .. }
            | Inst::Scatter { .. } => return v,
        }
    }
}

/// Whether a value defined by `inst` needs memory of its own when it is kept.
fn owns_memory(inst: &Inst) -> bool {
    match inst {
        Inst::Arg(_) | Inst::Const(_) | Inst::BatchSize => false,
        Inst::Broadcast { .. } | Inst::Reshape { .. } | Inst::Transpose { .. } | Inst::Index { .. } => false,
        Inst::Unary { .. }
        | Inst::Binary { .. }
        | Inst::Select { .. }
        | Inst::Reduce { .. }
        | Inst::MatMul { .. }
        | Inst::Softmax { .. }
        | Inst::CrossEntropy { .. }
        | Inst::OneHot { .. }
        | Inst::Scatter { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpc_ir::read;

    #[test]
    fn residuals_are_forward_values_the_adjoint_reads_through_views() {
        // h = relu(z) is read by the mask and z through a reshape; the argument x, the
        // constant and the reduction v4 (read only by the forward) are not residuals.
        let f = read(
            "\
function f {
  input x: f32[B,3]
  param W: f32[2,3] = 0
  v0: f32[B,3] = arg x
  v1: f32[2,3] = arg W
  v2: f32[B,2] = matmul v0, v1, tb
  v3: f32[B,2] = relu v2
  v4: f32[B] = reduce_sum v3, axes=[1]
  v5: f32[] = reduce_mean v4, axes=[0]
adjoint:
  v6: f32[] = const 0.0
  v7: f32[B,2] = broadcast v6
  v8: f32[B,2] = gt v3, v7
  v9: f32[B,2,1] = reshape v2
  v10: f32[B,2,1] = neg v9
  result loss = v5
  result m = v8
  result n = v10
}
",
        )
        .unwrap();
        let v: Vec<Value> = f.values().collect();
        assert_eq!(adjoint_residuals(&f), vec![v[2], v[3]]);
        assert_eq!(adjoint_residual_bytes(&f, 5), 2 * 5 * 2 * 4);
    }
}
