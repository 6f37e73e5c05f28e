//! Shape rules: the result type of every instruction, or why its operands don't fit.
//!
//! Used by `Function::push` and by the verifier. The frontend checks the user's program
//! first and reports mismatches with spans; an error here means a pass built bad IR.

use std::fmt;

use crate::function::{Function, Inst};
use crate::types::{DType, Dim, Shape, Type};

/// Why an instruction's operands do not fit it.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeError(pub String);

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TypeError {}

macro_rules! bail {
    ($($t:tt)*) => { return Err(TypeError(format!($($t)*))) };
}

/// NumPy broadcasting of two shapes (example axes right-aligned; batched if either is).
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> Option<Shape> {
    let n = a.dims.len().max(b.dims.len());
    let mut dims = vec![0; n];
    for (i, d) in dims.iter_mut().enumerate() {
        let da = dim_from_right(&a.dims, n - 1 - i);
        let db = dim_from_right(&b.dims, n - 1 - i);
        *d = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(Shape { batch: a.batch || b.batch, dims })
}

fn dim_from_right(dims: &[usize], k: usize) -> usize {
    if k < dims.len() { dims[dims.len() - 1 - k] } else { 1 }
}

/// Whether `from` broadcasts to exactly `to`.
pub fn broadcasts_to(from: &Shape, to: &Shape) -> bool {
    broadcast_shapes(from, to).as_ref() == Some(to) && (!from.batch || to.batch)
}

/// The result type of `inst` in `func`.
pub fn infer_type(func: &Function, inst: &Inst) -> Result<Type, TypeError> {
    for v in inst.operands() {
        if v.index() >= func.len() {
            bail!("operand {v} is not defined before its use");
        }
    }
    let ty = |v| func.ty(v);
    let float = |v| -> Result<&Type, TypeError> {
        let t = func.ty(v);
        if !t.is_float() {
            bail!("operand {v} is {t}, expected a float tensor");
        }
        Ok(t)
    };
    let out = match inst {
        Inst::Arg(id) => match func.args.get(id.index()) {
            Some(a) => a.ty.clone(),
            None => bail!("argument {} does not exist", id.0),
        },
        Inst::Const(_) | Inst::BatchSize => Type::scalar(),
        Inst::Unary { arg, .. } => float(*arg)?.clone(),
        Inst::Binary { lhs, rhs, .. } => same(float(*lhs)?, float(*rhs)?)?.clone(),
        Inst::Select { cond, on_true, on_false } => {
            let t = same(float(*on_true)?, float(*on_false)?)?;
            same(float(*cond)?, t)?.clone()
        }
        Inst::Reduce { arg, axes, .. } => {
            let t = float(*arg)?;
            let phys = t.shape.physical();
            if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= phys.len()) {
                bail!("reduce axes {axes:?} are not sorted, distinct axes of {t}");
            }
            let kept: Vec<Dim> = phys.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect();
            Type::f32(Shape::from_physical(&kept).expect("batch stays leading"))
        }
        Inst::Broadcast { arg, to } => {
            let t = ty(*arg);
            if !broadcasts_to(&t.shape, to) {
                bail!("{t} does not broadcast to {to}");
            }
            Type { dtype: t.dtype, shape: to.clone() }
        }
        Inst::Reshape { arg, to } => {
            let t = ty(*arg);
            if t.shape.batch != to.batch || t.shape.example_len() != to.example_len() {
                bail!("cannot reshape {t} to {to}");
            }
            Type { dtype: t.dtype, shape: to.clone() }
        }
        Inst::Transpose { arg } => {
            let t = float(*arg)?;
            let [m, n] = t.shape.dims[..] else { bail!("transpose needs a rank-2 example, got {t}") };
            Type::f32(Shape { batch: t.shape.batch, dims: vec![n, m] })
        }
        Inst::MatMul { lhs, rhs, ta, tb } => {
            let (a, b) = (float(*lhs)?, float(*rhs)?);
            let (pa, pb) = (a.shape.physical(), b.shape.physical());
            let (&[r0, c0], &[r1, c1]) = (&pa[..], &pb[..]) else {
                bail!("matmul needs physical rank-2 operands, got {a} and {b}")
            };
            let (m, k) = if *ta { (c0, r0) } else { (r0, c0) };
            let (k2, n) = if *tb { (c1, r1) } else { (r1, c1) };
            if k != k2 {
                bail!("matmul contracts {k} with {k2} ({a} · {b}, ta={ta}, tb={tb})");
            }
            match Shape::from_physical(&[m, n]) {
                Some(s) => Type::f32(s),
                None => bail!("matmul result [{m},{n}] would put the batch axis second"),
            }
        }
        Inst::Softmax { arg, axis, .. } => {
            let t = float(*arg)?;
            if *axis < t.shape.batch as usize || *axis >= t.shape.rank() {
                bail!("softmax axis {axis} is not an example axis of {t}");
            }
            t.clone()
        }
        Inst::CrossEntropy { logits, label } => {
            let (z, y) = (float(*logits)?, ty(*label));
            if y.dtype != DType::I32 {
                bail!("cross_entropy label {label} is {y}, expected class indices i32");
            }
            let mut phys = y.shape.physical();
            let Some(&Dim::Fixed(_)) = z.shape.physical().last() else {
                bail!("cross_entropy logits {z} have no class axis")
            };
            phys.push(*z.shape.physical().last().unwrap());
            if phys != z.shape.physical() {
                bail!("cross_entropy logits {z} do not match labels {y}");
            }
            Type::f32(y.shape.clone())
        }
        Inst::OneHot { label, classes } => {
            let y = ty(*label);
            if y.dtype != DType::I32 {
                bail!("onehot needs i32 class indices, got {y}");
            }
            let mut s = y.shape.clone();
            s.dims.push(*classes);
            Type::f32(s)
        }
        Inst::Index { arg, at } => {
            let t = ty(*arg);
            index_result(&t.shape, at).map(|shape| Type { dtype: t.dtype, shape })?
        }
        Inst::Scatter { arg, at, to } => {
            let t = float(*arg)?;
            if index_result(to, at)? != t.shape {
                bail!("scatter of {t} at {at:?} does not fit {to}");
            }
            Type::f32(to.clone())
        }
    };
    Ok(out)
}

fn same<'a>(a: &'a Type, b: &Type) -> Result<&'a Type, TypeError> {
    if a != b {
        bail!("operand types differ: {a} and {b}");
    }
    Ok(a)
}

/// The shape left after fixing the leading example axes at `at`.
fn index_result(s: &Shape, at: &[usize]) -> Result<Shape, TypeError> {
    if at.len() > s.dims.len() {
        bail!("{} indices into a rank-{} example", at.len(), s.dims.len());
    }
    for (&i, &n) in at.iter().zip(&s.dims) {
        if i >= n {
            bail!("index {i} is out of range for an axis of {n}");
        }
    }
    Ok(Shape { batch: s.batch, dims: s.dims[at.len()..].to_vec() })
}
