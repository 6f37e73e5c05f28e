//! Tensor types: an element type and a static shape whose leading minibatch axis is symbolic.
//!
//! The program describes one example; lowering marks every value that depends on an input or
//! a label as *batched*: its physical shape is `[B, dims...]` with `B` fixed only when a step
//! is specialized for a batch size. Shared values (params, consts and what depends only on
//! them) have physical shape `dims`. Layout is row-major everywhere.

use std::fmt;

/// Element type. Class labels are `I32`; everything differentiable is `F32` (the interpreter
/// computes in `f64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I32,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
        }
    }
}

/// One physical axis: the symbolic minibatch axis or a fixed extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Batch,
    Fixed(usize),
}

impl Dim {
    /// The extent once the batch size is known.
    pub fn size(self, batch: usize) -> usize {
        match self {
            Dim::Batch => batch,
            Dim::Fixed(n) => n,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => f.write_str("B"),
            Dim::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// A shape: `batch` says whether a leading minibatch axis precedes the example's own `dims`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    pub batch: bool,
    pub dims: Vec<usize>,
}

impl Shape {
    pub fn shared(dims: impl Into<Vec<usize>>) -> Shape {
        Shape { batch: false, dims: dims.into() }
    }

    pub fn batched(dims: impl Into<Vec<usize>>) -> Shape {
        Shape { batch: true, dims: dims.into() }
    }

    pub fn scalar() -> Shape {
        Shape::shared([])
    }

    /// Rank counting the batch axis.
    pub fn rank(&self) -> usize {
        self.dims.len() + self.batch as usize
    }

    /// The physical axes, batch first.
    pub fn physical(&self) -> Vec<Dim> {
        let mut out = Vec::with_capacity(self.rank());
        if self.batch {
            out.push(Dim::Batch);
        }
        out.extend(self.dims.iter().map(|&n| Dim::Fixed(n)));
        out
    }

    /// Inverse of [`Shape::physical`]; `None` if `Batch` appears anywhere but first.
    pub fn from_physical(dims: &[Dim]) -> Option<Shape> {
        let batch = dims.first() == Some(&Dim::Batch);
        let mut fixed = Vec::with_capacity(dims.len());
        for d in &dims[batch as usize..] {
            match d {
                Dim::Batch => return None,
                Dim::Fixed(n) => fixed.push(*n),
            }
        }
        Some(Shape { batch, dims: fixed })
    }

    /// Elements per example (the product of `dims`; 1 for a scalar).
    pub fn example_len(&self) -> usize {
        self.dims.iter().product()
    }

    /// Elements in total at batch size `batch`.
    pub fn len(&self, batch: usize) -> usize {
        self.example_len() * if self.batch { batch } else { 1 }
    }

    /// The physical extents at batch size `batch`.
    pub fn sizes(&self, batch: usize) -> Vec<usize> {
        self.physical().iter().map(|d| d.size(batch)).collect()
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.physical().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// A value's type, printed `f32[B,256]`, `f32[10,256]`, `f32[]`, `i32[B]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Type {
    pub dtype: DType,
    pub shape: Shape,
}

impl Type {
    pub fn f32(shape: Shape) -> Type {
        Type { dtype: DType::F32, shape }
    }

    pub fn scalar() -> Type {
        Type::f32(Shape::scalar())
    }

    pub fn is_float(&self) -> bool {
        self.dtype == DType::F32
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype.name(), self.shape)
    }
}
