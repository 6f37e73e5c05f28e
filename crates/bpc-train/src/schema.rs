//! What a model asks of a data set: its inputs (in declaration order, each a block of
//! columns) and its label.
//!
//! The CSV columns other than the label fill the inputs in declaration order, each reshaped
//! row-major to its declared shape (SPEC §4), so an example's features are one row of
//! `Schema::features()` floats and input `i` owns the columns `offset..offset + len`.

use std::fmt;

use bpc_ir::{ArgKind, Function};

/// One `input` declaration and the feature columns it owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    pub name: String,
    /// The example shape (without the batch axis).
    pub shape: Vec<usize>,
    /// First feature column (0-based, label excluded).
    pub offset: usize,
    /// Elements per example: the product of `shape`.
    pub len: usize,
}

/// What kind of label a model declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKind {
    /// `label y : class(K)`: an `i32` class index in `0..K`.
    Class(usize),
    /// `label y` (1), `label y[k]` (k), `label y[a, b]` (a·b): real numbers per example, one
    /// data column each (row-major).
    Real(usize),
}

impl LabelKind {
    /// Data columns per example: 1 for a class label.
    pub fn width(self) -> usize {
        match self {
            LabelKind::Class(_) => 1,
            LabelKind::Real(k) => k,
        }
    }
}

/// The label declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSpec {
    pub name: String,
    pub kind: LabelKind,
}

/// The data layout a model expects. Build it with [`Schema::of`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    pub inputs: Vec<InputSpec>,
    pub label: Option<LabelSpec>,
}

/// Why a model cannot be fed from a CSV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaError(pub String);

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SchemaError {}

impl Schema {
    /// The inputs and label of `func`. A model may declare at most one label (a real label
    /// of `k` elements takes `k` columns).
    pub fn of(func: &Function) -> Result<Schema, SchemaError> {
        let mut inputs = Vec::new();
        let mut offset = 0;
        for id in func.inputs() {
            let a = func.arg(id);
            let len = a.ty.shape.example_len();
            inputs.push(InputSpec { name: a.name.clone(), shape: a.ty.shape.dims.clone(), offset, len });
            offset += len;
        }
        let labels: Vec<_> = func.labels().map(|id| func.arg(id)).collect();
        if labels.len() > 1 {
            let names: Vec<&str> = labels.iter().map(|a| a.name.as_str()).collect();
            return Err(SchemaError(format!(
                "the model declares {} labels ({}); a data file has one label column",
                labels.len(),
                names.join(", ")
            )));
        }
        let label = match labels.first() {
            None => None,
            Some(a) => {
                let kind = match a.kind {
                    ArgKind::Label { classes: Some(k) } => LabelKind::Class(k),
                    ArgKind::Label { classes: None } => LabelKind::Real(a.ty.shape.example_len()),
                    ArgKind::Input | ArgKind::Param { .. } | ArgKind::Hyper | ArgKind::State => {
                        unreachable!("Function::labels yields only labels")
                    }
                };
                Some(LabelSpec { name: a.name.clone(), kind })
            }
        };
        Ok(Schema { inputs, label })
    }

    /// Feature columns per example: the sum of the inputs' element counts.
    pub fn features(&self) -> usize {
        self.inputs.iter().map(|i| i.len).sum()
    }

    /// The inputs as text for error messages: `x[4], z`.
    pub fn describe_inputs(&self) -> String {
        let parts: Vec<String> = self
            .inputs
            .iter()
            .map(|i| {
                if i.shape.is_empty() {
                    i.name.clone()
                } else {
                    let dims: Vec<String> = i.shape.iter().map(|d| d.to_string()).collect();
                    format!("{}[{}]", i.name, dims.join(", "))
                }
            })
            .collect();
        parts.join(", ")
    }

    /// The number of classes, for a class label.
    pub fn classes(&self) -> Option<usize> {
        match self.label.as_ref()?.kind {
            LabelKind::Class(k) => Some(k),
            LabelKind::Real(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpc_ir::{Init, Shape, Span, Type};

    fn model(label: Option<ArgKind>) -> Function {
        let mut f = Function::new("m");
        let s = Span::NONE;
        f.add_arg("x", ArgKind::Input, Type::f32(Shape::batched([2, 3])), s);
        f.add_arg("W", ArgKind::Param { init: Init::Xavier }, Type::f32(Shape::shared([3, 6])), s);
        f.add_arg("z", ArgKind::Input, Type::f32(Shape::batched([])), s);
        if let Some(k) = label {
            f.add_arg("y", k, Type::f32(Shape::batched([])), s);
        }
        f
    }

    #[test]
    fn inputs_own_consecutive_columns() {
        let s = Schema::of(&model(Some(ArgKind::Label { classes: Some(4) }))).unwrap();
        assert_eq!(s.inputs[0], InputSpec { name: "x".into(), shape: vec![2, 3], offset: 0, len: 6 });
        assert_eq!(s.inputs[1], InputSpec { name: "z".into(), shape: vec![], offset: 6, len: 1 });
        assert_eq!(s.features(), 7);
        assert_eq!(s.describe_inputs(), "x[2, 3], z");
        assert_eq!(s.label, Some(LabelSpec { name: "y".into(), kind: LabelKind::Class(4) }));
        assert_eq!(s.classes(), Some(4));
    }

    #[test]
    fn real_and_missing_labels() {
        let s = Schema::of(&model(Some(ArgKind::Label { classes: None }))).unwrap();
        assert_eq!(s.label.unwrap().kind, LabelKind::Real(1));
        let mut wide = model(None);
        wide.add_arg("t", ArgKind::Label { classes: None }, Type::f32(Shape::batched([3])), Span::NONE);
        assert_eq!(Schema::of(&wide).unwrap().label.unwrap().kind.width(), 3);
        assert_eq!(Schema::of(&model(None)).unwrap().label, None);
    }

    #[test]
    fn two_labels_are_refused() {
        let mut f = model(Some(ArgKind::Label { classes: None }));
        f.add_arg("t", ArgKind::Label { classes: None }, Type::f32(Shape::batched([])), Span::NONE);
        let e = Schema::of(&f).unwrap_err();
        assert_eq!(e.0, "the model declares 2 labels (y, t); a data file has one label column");
    }
}
