//! The param slab: every param of a model in one contiguous `f32` buffer, in declaration
//! order (SPEC §3), so an optimizer update is one loop and a checkpoint one copy.

use bpc_ir::{ArgId, ArgKind, Function, Init};

use crate::init::{InitError, fill};

/// Where one param lives in the slab.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    pub name: String,
    /// The function argument it binds to.
    pub arg: ArgId,
    pub shape: Vec<usize>,
    pub init: Init,
    /// First element in [`Params::data`].
    pub offset: usize,
    /// Element count: the product of `shape`.
    pub len: usize,
}

/// All params of a model in one slab.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub data: Vec<f32>,
    pub info: Vec<ParamInfo>,
}

impl Params {
    /// The layout of `func`'s params, all zeros.
    pub fn zeros(func: &Function) -> Params {
        Params::layout(func, func.params())
    }

    /// The layout of `func`'s `State` arguments (optimizer state), all zeros.
    pub fn states(func: &Function) -> Params {
        Params::layout(func, func.states())
    }

    /// A zero slab of the arguments `ids` (params or states) in that order.
    fn layout(func: &Function, ids: impl Iterator<Item = ArgId>) -> Params {
        let mut info = Vec::new();
        let mut offset = 0;
        for id in ids {
            let a = func.arg(id);
            let init = match a.kind {
                ArgKind::Param { init } => init,
                ArgKind::State => Init::Const(0.0),
                ArgKind::Input | ArgKind::Label { .. } | ArgKind::Hyper => {
                    unreachable!("a slab holds params or optimizer state")
                }
            };
            let len = a.ty.shape.example_len();
            info.push(ParamInfo { name: a.name.clone(), arg: id, shape: a.ty.shape.dims.clone(), init, offset, len });
            offset += len;
        }
        Params { data: vec![0.0; offset], info }
    }

    /// Every param drawn from its initializer, each from its own stream of `seed`.
    pub fn init(func: &Function, seed: u64) -> Result<Params, InitError> {
        let mut p = Params::zeros(func);
        for (info, slot) in p.info.iter().zip(split(&info_lens(&p.info), &mut p.data)) {
            fill(info.init, &info.name, &info.shape, seed, slot)?;
        }
        Ok(p)
    }

    /// The param named `name`.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.info.iter().find(|i| i.name == name).map(|i| &self.data[i.offset..i.offset + i.len])
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        let i = self.info.iter().find(|i| i.name == name)?;
        Some(&mut self.data[i.offset..i.offset + i.len])
    }

    /// The metadata of the param named `name`.
    pub fn info(&self, name: &str) -> Option<&ParamInfo> {
        self.info.iter().find(|i| i.name == name)
    }

    /// The slice of the entry `info`.
    pub fn slice(&self, info: &ParamInfo) -> &[f32] {
        &self.data[info.offset..info.offset + info.len]
    }

    /// One disjoint mutable slice per param, in declaration order (for `Arg::F32Mut`).
    pub fn split_mut(&mut self) -> Vec<&mut [f32]> {
        split(&info_lens(&self.info), &mut self.data)
    }

    /// Number of params.
    pub fn len(&self) -> usize {
        self.info.len()
    }

    pub fn is_empty(&self) -> bool {
        self.info.is_empty()
    }
}

fn info_lens(info: &[ParamInfo]) -> Vec<usize> {
    info.iter().map(|i| i.len).collect()
}

/// Splits `data` into consecutive slices of `lens` with `split_at_mut`.
fn split<'a>(lens: &[usize], mut data: &'a mut [f32]) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(lens.len());
    for &n in lens {
        let (head, tail) = std::mem::take(&mut data).split_at_mut(n);
        out.push(head);
        data = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpc_ir::{Shape, Span, Type};

    pub(crate) fn mlp() -> Function {
        let mut f = Function::new("mlp");
        let s = Span::NONE;
        f.add_arg("x", ArgKind::Input, Type::f32(Shape::batched([4])), s);
        f.add_arg(
            "W1",
            ArgKind::Param { init: Init::Normal { mean: 0.0, std: 0.5 } },
            Type::f32(Shape::shared([3, 4])),
            s,
        );
        f.add_arg("b1", ArgKind::Param { init: Init::Const(0.5) }, Type::f32(Shape::shared([3])), s);
        f.add_arg(
            "y",
            ArgKind::Label { classes: Some(3) },
            Type { dtype: bpc_ir::DType::I32, shape: Shape::batched([]) },
            s,
        );
        f.add_arg("s", ArgKind::Param { init: Init::Xavier }, Type::f32(Shape::shared([])), s);
        f
    }

    #[test]
    fn layout_is_declaration_order() {
        let p = Params::zeros(&mlp());
        let names: Vec<(&str, usize, usize)> = p.info.iter().map(|i| (i.name.as_str(), i.offset, i.len)).collect();
        assert_eq!(names, vec![("W1", 0, 12), ("b1", 12, 3), ("s", 15, 1)]);
        assert_eq!(p.info[0].shape, vec![3, 4]);
        assert_eq!(p.info[2].shape, Vec::<usize>::new());
        assert_eq!(p.data.len(), 16);
    }

    #[test]
    fn init_fills_each_param_from_its_stream() {
        let p = Params::init(&mlp(), 3).unwrap();
        assert_eq!(p.get("b1").unwrap(), &[0.5, 0.5, 0.5]);
        let mut w = vec![0.0; 12];
        fill(Init::Normal { mean: 0.0, std: 0.5 }, "W1", &[3, 4], 3, &mut w).unwrap();
        assert_eq!(p.get("W1").unwrap(), &w[..]);
        assert!(p.get("s").unwrap()[0].abs() <= 3f32.sqrt());
        assert!(p.get("x").is_none());
    }

    #[test]
    fn split_gives_disjoint_slices() {
        let mut p = Params::zeros(&mlp());
        let mut parts = p.split_mut();
        assert_eq!(parts.iter().map(|s| s.len()).collect::<Vec<_>>(), vec![12, 3, 1]);
        parts[1][2] = 7.0;
        parts[2][0] = 9.0;
        assert_eq!((p.data[14], p.data[15]), (7.0, 9.0));
    }
}
