//! [`Params`]: a model's params as named tensors over one contiguous slab.

use std::ops::Range;
use std::path::Path;

use bpc_ir::Function;

use super::{Error, ErrorKind};

/// Every param of a program, in declaration order, in one contiguous `f32` slab (SPEC §3),
/// each a named tensor of its declared shape, row-major.
///
/// The slab ([`Params::as_slice`]) is what native functions take, so an update loop over
/// all params is one loop over it, and a gradient slab of [`super::ValueAndGrad`] with
/// respect to [`super::Program::param_names`] has the same layout.
/// Make one with [`super::Program::init_params`] or [`super::Program::load_params`].
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    slab: bpc_train::Params,
    /// The model's source hash, recorded in checkpoints.
    hash: String,
}

impl Params {
    pub(crate) fn zeros(func: &Function, hash: String) -> Params {
        Params { slab: bpc_train::Params::zeros(func), hash }
    }

    pub(crate) fn init(func: &Function, hash: String, seed: u64) -> Result<Params, Error> {
        let slab = bpc_train::Params::init(func, seed).map_err(|e| Error::new(ErrorKind::Other, e.0))?;
        Ok(Params { slab, hash })
    }

    pub(crate) fn load(func: &Function, hash: String, path: &Path) -> Result<Params, Error> {
        let (slab, _meta) = bpc_train::checkpoint::load(path, func)?;
        Ok(Params { slab, hash })
    }

    /// What differs between these params and `program`'s layout (its zero slab), in
    /// `program`'s terms: `None` if every name and shape agrees, in order.
    pub(crate) fn mismatch(&self, program: &Params) -> Option<String> {
        let mut diffs = Vec::new();
        for (name, shape, _) in program.iter() {
            match self.shape(name) {
                None => diffs.push(format!("{name}{shape:?} is missing from the params")),
                Some(s) if s != shape => diffs.push(format!("{name} is {shape:?} in the program, {s:?} in the params")),
                Some(_) => {}
            }
        }
        for name in self.names().filter(|n| program.shape(n).is_none()) {
            diffs.push(format!("the params have {name}, which the program does not declare"));
        }
        if diffs.is_empty() && !self.names().eq(program.names()) {
            diffs.push("the params are in another order than the program declares them".into());
        }
        (!diffs.is_empty()).then(|| diffs.join("; "))
    }

    /// The number of params (tensors).
    pub fn count(&self) -> usize {
        self.slab.info.len()
    }

    /// Floats in the slab.
    pub fn len(&self) -> usize {
        self.slab.data.len()
    }

    /// Whether the slab is empty (a model without params).
    pub fn is_empty(&self) -> bool {
        self.slab.data.is_empty()
    }

    /// The params' names in declaration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slab.info.iter().map(|i| i.name.as_str())
    }

    /// `(name, shape, values)` of every param in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[usize], &[f32])> {
        self.slab.info.iter().map(|i| (i.name.as_str(), i.shape.as_slice(), self.slab.slice(i)))
    }

    /// The values of the param `name` (row-major), if the program declares it.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.slab.get(name)
    }

    /// The values of the param `name`, to overwrite.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        self.slab.get_mut(name)
    }

    /// The declared shape of the param `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.slab.info(name).map(|i| i.shape.as_slice())
    }

    /// Where the param `name` lives in the slab.
    pub fn range(&self, name: &str) -> Option<Range<usize>> {
        self.slab.info(name).map(|i| i.offset..i.offset + i.len)
    }

    /// The whole slab, params in declaration order.
    pub fn as_slice(&self) -> &[f32] {
        &self.slab.data
    }

    /// The whole slab, to update in place (a [`super::TrainStep`] or an update loop).
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.slab.data
    }

    /// A slab of the same layout filled with zeros: a buffer for gradients with respect
    /// to the params, a direction for [`super::Hvp`].
    pub fn zeros_like(&self) -> Params {
        let mut p = self.clone();
        p.slab.data.fill(0.0);
        p
    }

    /// Writes the params to `path` as safetensors (one F32 tensor per param, named as in
    /// the model, with its shape; the model's source hash in the metadata), atomically: a
    /// failed write leaves any existing file as it was. `bpc predict --params` and
    /// `bpc eval --params` read it.
    ///
    /// # Errors
    /// [`ErrorKind::Checkpoint`] naming the path and the system's reason.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let meta = bpc_train::Meta { model_hash: self.hash.clone(), ..bpc_train::Meta::default() };
        Ok(bpc_train::checkpoint::save(path.as_ref(), &self.slab, &meta)?)
    }

    /// The same slab as the training driver's type, `bpc::train::Params` (another type of
    /// the same name, from the lower-level [`crate::train`] crate): the floats plus each
    /// param's name, shape and offset, as the functions there take them. This type wraps it
    /// and adds the model's source hash for checkpoints; most programs need only
    /// [`Params::as_slice`].
    pub fn as_train(&self) -> &bpc_train::Params {
        &self.slab
    }

    /// [`Params::as_train`], mutable.
    pub fn as_train_mut(&mut self) -> &mut bpc_train::Params {
        &mut self.slab
    }
}
