//! # bpc-ir: the typed tensor IR
//!
//! A model is lowered into one [`Function`]: straight-line SSA over float32 tensors with
//! static shapes, in program order (every operand is defined before its use). Invariants
//! the rest of the compiler relies on:
//!
//! - **Types are exact.** Every value carries its [`Type`]; [`infer_type`] is the one place
//!   that says what an instruction produces, and [`verify()`] re-checks every value against it.
//! - **Batching is explicit.** A per-example value has a leading symbolic minibatch axis `B`
//!   (`f32[B,256]`); a shared one (params, consts, what depends only on them) has none.
//!   Elementwise ops take operands of one type: broadcasting is an explicit `broadcast`.
//! - **Physical axes.** Axis numbers in `reduce`, `softmax` and `matmul` count the batch axis.
//! - **Spans travel.** Each value keeps the source span it came from (in a side table), so a
//!   late stage can still point at the user's code.
//! - **One op, one table.** [`UnaryOp`], [`BinaryOp`] and [`ReduceOp`] give each primitive its
//!   text name and its float64 semantics; [`interpret`] runs them and is the oracle.
//!
//! The text form ([`std::fmt::Display`] of a function, see [`mod@print`]) is stable and used by
//! golden tests.

pub mod function;
pub mod fusion;
pub mod infer;
pub mod interp;
pub mod ops;
pub mod print;
pub mod read;
pub mod span;
pub mod types;
pub mod verify;

pub use function::{ArgData, ArgId, ArgKind, Function, Init, Inst, Output, Value, ValueData};
pub use fusion::{Kernel, KernelKind};
pub use infer::{TypeError, broadcast_shapes, broadcasts_to, infer_type};
pub use interp::{InterpError, Tensor, interpret};
pub use ops::{BinaryOp, ReduceOp, UnaryOp};
pub use read::{ReadError, read};
pub use span::{Diagnostic, Label, Span};
pub use types::{DType, Dim, Shape, Type};
pub use verify::{VerifyError, verify};

#[cfg(test)]
mod tests {
    use super::*;

    /// The lecture's first example, built by hand: f = (x + y) * z, batched.
    fn add_mul() -> Function {
        let mut f = Function::new("add_mul");
        let s = Span::NONE;
        let ty = Type::f32(Shape::batched([]));
        let args: Vec<Value> = ["x", "y", "z"]
            .iter()
            .map(|n| {
                let id = f.add_arg(*n, ArgKind::Input, ty.clone(), s);
                f.ins(Inst::Arg(id), s)
            })
            .collect();
        let q = f.ins(Inst::Binary { op: BinaryOp::Add, lhs: args[0], rhs: args[1] }, s);
        let out = f.ins(Inst::Binary { op: BinaryOp::Mul, lhs: q, rhs: args[2] }, s);
        let loss = f.ins(Inst::Reduce { op: ReduceOp::Mean, arg: out, axes: vec![0] }, s);
        f.names.push(("q".into(), q));
        f.names.push(("f".into(), out));
        f.add_result("loss", loss);
        f
    }

    #[test]
    fn prints_and_verifies() {
        let f = add_mul();
        verify(&f).unwrap();
        let expected = "\
function add_mul {
  input x: f32[B]
  input y: f32[B]
  input z: f32[B]
  v0: f32[B] = arg x
  v1: f32[B] = arg y
  v2: f32[B] = arg z
  v3: f32[B] = add v0, v1                       # q
  v4: f32[B] = mul v3, v2                       # f
  v5: f32[] = reduce_mean v4, axes=[0]
  result loss = v5
}
";
        assert_eq!(f.to_string(), expected);
    }

    #[test]
    fn reads_what_it_prints() {
        let f = add_mul();
        let back = read(&f.to_string()).unwrap();
        assert_eq!(back.to_string(), f.to_string());
        let err = read("function f {\n  v0: f32[] = const 1.0\n  v1: f32[B] = exp v0\n}\n").unwrap_err();
        assert_eq!(err.to_string(), "line 3: v1 is written f32[B] but its operands give f32[]");
    }

    #[test]
    fn interprets_the_lecture_numbers() {
        let f = add_mul();
        let args = [Tensor::new([2], [-2.0, 1.0]), Tensor::new([2], [5.0, 1.0]), Tensor::new([2], [-4.0, 2.0])];
        let vals = interpret(&f, 2, &args).unwrap();
        assert_eq!(vals[4].data, vec![-12.0, 4.0]);
        assert_eq!(vals[5].data, vec![-4.0]);
    }

    #[test]
    fn matmul_over_the_batch() {
        let mut f = Function::new("mm");
        let s = Span::NONE;
        let x = f.add_arg("x", ArgKind::Input, Type::f32(Shape::batched([3])), s);
        let w = f.add_arg("W", ArgKind::Param { init: Init::Const(0.0) }, Type::f32(Shape::shared([2, 3])), s);
        let x = f.ins(Inst::Arg(x), s);
        let w = f.ins(Inst::Arg(w), s);
        let y = f.ins(Inst::MatMul { lhs: x, rhs: w, ta: false, tb: true }, s);
        assert_eq!(f.ty(y).to_string(), "f32[B,2]");
        // The weight gradient contracts over the batch axis and is shared.
        let dw = f.ins(Inst::MatMul { lhs: y, rhs: x, ta: true, tb: false }, s);
        assert_eq!(f.ty(dw).to_string(), "f32[2,3]");
        assert!(f.push(Inst::MatMul { lhs: x, rhs: w, ta: false, tb: false }, s).is_err());
        let vals = interpret(
            &f,
            1,
            &[Tensor::new([1, 3], [1.0, 2.0, 3.0]), Tensor::new([2, 3], [1.0, 0.0, 0.0, 0.0, 1.0, 1.0])],
        )
        .unwrap();
        assert_eq!(vals[y.index()].data, vec![1.0, 5.0]);
    }
}
