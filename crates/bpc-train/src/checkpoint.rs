//! Checkpoints: params as safetensors (SPEC §4).
//!
//! One F32 tensor per param, named as in the model, with its shape. The string metadata
//! holds the model source hash, the standardization statistics (JSON arrays), the class
//! names (a JSON array) and the number of epochs done. Files are written atomically (a
//! temporary file in the same directory, then a rename), so a failed save never leaves a
//! half-written checkpoint over a good one. Loading checks every param of the model is
//! present with the right dtype and shape and that the file holds nothing else.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bpc_ir::Function;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::init::fnv1a;
use crate::params::Params;
use crate::standardize::Standardizer;

/// What a checkpoint records besides the params.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Meta {
    /// [`model_hash`] of the source the params were trained with.
    pub model_hash: String,
    pub standardizer: Option<Standardizer>,
    /// Class names when the training labels were names (index = class).
    pub class_names: Option<Vec<String>>,
    pub epochs: usize,
}

/// A checkpoint error: the file and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for CheckpointError {}

/// A stable hash of a model's source text: `fnv1a64:` and 16 hex digits.
pub fn model_hash(source: &str) -> String {
    format!("fnv1a64:{:016x}", fnv1a(source.as_bytes()))
}

const HASH: &str = "bpc.model_hash";
const EPOCHS: &str = "bpc.epochs";
const MEAN: &str = "bpc.standardize.mean";
const STD: &str = "bpc.standardize.std";
const CLASSES: &str = "bpc.class_names";

/// Writes `params` and `meta` to `path` atomically.
pub fn save(path: &Path, params: &Params, meta: &Meta) -> Result<(), CheckpointError> {
    let err = |message: String| CheckpointError { path: path.display().to_string(), message };
    let bytes: Vec<Vec<u8>> = params
        .info
        .iter()
        .map(|i| params.data[i.offset..i.offset + i.len].iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (info, b) in params.info.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, info.shape.clone(), b)
            .map_err(|e| err(format!("cannot store param {}: {e}", info.name)))?;
        views.push((info.name.clone(), view));
    }
    let blob =
        safetensors::serialize(views, Some(metadata(meta))).map_err(|e| err(format!("cannot serialize: {e}")))?;
    write_atomic(path, &blob).map_err(|e| err(format!("cannot write: {e}")))
}

fn metadata(meta: &Meta) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert(HASH.to_string(), meta.model_hash.clone());
    m.insert(EPOCHS.to_string(), meta.epochs.to_string());
    if let Some(s) = &meta.standardizer {
        m.insert(MEAN.to_string(), serde_json::to_string(&s.mean).expect("floats serialize"));
        m.insert(STD.to_string(), serde_json::to_string(&s.std).expect("floats serialize"));
    }
    if let Some(c) = &meta.class_names {
        m.insert(CLASSES.to_string(), serde_json::to_string(c).expect("strings serialize"));
    }
    m
}

/// Writes `bytes` to a temporary sibling of `path`, syncs it, and renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads the params of `func` and the metadata from `path`.
pub fn load(path: &Path, func: &Function) -> Result<(Params, Meta), CheckpointError> {
    let err = |message: String| CheckpointError { path: path.display().to_string(), message };
    let buf = fs::read(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let st = SafeTensors::deserialize(&buf).map_err(|e| err(format!("not a safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&buf).map_err(|e| err(format!("not a safetensors file: {e}")))?;
    let mut params = Params::zeros(func);
    let mut have = st.names();
    have.sort();
    for info in &params.info {
        let t = st
            .tensor(&info.name)
            .map_err(|_| err(format!("param {} is missing (the checkpoint has: {})", info.name, have.join(", "))))?;
        if t.dtype() != Dtype::F32 {
            return Err(err(format!("param {} is stored as {:?}, expected F32", info.name, t.dtype())));
        }
        if t.shape() != info.shape.as_slice() {
            return Err(err(format!(
                "param {} has shape {:?} in the checkpoint but {:?} in the model",
                info.name,
                t.shape(),
                info.shape
            )));
        }
        let out = &mut params.data[info.offset..info.offset + info.len];
        for (x, b) in out.iter_mut().zip(t.data().chunks_exact(4)) {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    if let Some(extra) = have.iter().find(|n| params.info(n).is_none()) {
        return Err(err(format!("the checkpoint has a tensor `{extra}` that the model does not declare as a param")));
    }
    let empty = HashMap::new();
    let m = header.metadata().as_ref().unwrap_or(&empty);
    let meta = parse_meta(m).map_err(err)?;
    Ok((params, meta))
}

fn parse_meta(m: &HashMap<String, String>) -> Result<Meta, String> {
    let epochs = match m.get(EPOCHS) {
        Some(s) => s.parse().map_err(|_| format!("bad metadata {EPOCHS}: `{s}` is not a count"))?,
        None => 0,
    };
    let floats = |key: &str| -> Result<Option<Vec<f32>>, String> {
        json_array(m, key)?
            .map(|xs| xs.iter().map(|x| x.as_f64().map(|v| v as f32).ok_or(format!("bad metadata {key}"))).collect())
            .transpose()
    };
    let standardizer = match (floats(MEAN)?, floats(STD)?) {
        (Some(mean), Some(std)) if mean.len() == std.len() => Some(Standardizer { mean, std }),
        (None, None) => None,
        _ => return Err(format!("bad metadata: {MEAN} and {STD} must both be present with equal lengths")),
    };
    let class_names = json_array(m, CLASSES)?
        .map(|xs| xs.iter().map(|x| x.as_str().map(str::to_string).ok_or(format!("bad metadata {CLASSES}"))).collect())
        .transpose()?;
    Ok(Meta { model_hash: m.get(HASH).cloned().unwrap_or_default(), standardizer, class_names, epochs })
}

/// The metadata entry `key` parsed as a JSON array.
fn json_array(m: &HashMap<String, String>, key: &str) -> Result<Option<Vec<serde_json::Value>>, String> {
    let Some(text) = m.get(key) else { return Ok(None) };
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Array(xs)) => Ok(Some(xs)),
        Ok(_) | Err(_) => Err(format!("bad metadata {key}: expected a JSON array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use bpc_ir::{ArgKind, Init, Shape, Span, Type};

    fn model(w: [usize; 2]) -> Function {
        let mut f = Function::new("m");
        let s = Span::NONE;
        f.add_arg("W", ArgKind::Param { init: Init::Normal { mean: 0.0, std: 1.0 } }, Type::f32(Shape::shared(w)), s);
        f.add_arg("b", ArgKind::Param { init: Init::Const(0.0) }, Type::f32(Shape::shared([w[0]])), s);
        f
    }

    fn meta() -> Meta {
        Meta {
            model_hash: model_hash("param W[2, 3]\n"),
            standardizer: Some(Standardizer { mean: vec![1.5, -2.0], std: vec![0.25, 0.0] }),
            class_names: Some(vec!["setosa".into(), "versicolor".into()]),
            epochs: 12,
        }
    }

    #[test]
    fn round_trips_params_and_metadata() {
        let dir = TempDir::new("ckpt");
        let path = dir.path().join("p.safetensors");
        let f = model([2, 3]);
        let p = Params::init(&f, 5).unwrap();
        save(&path, &p, &meta()).unwrap();
        let (q, m) = load(&path, &f).unwrap();
        assert_eq!(q, p);
        assert_eq!(m, meta());
        assert!(m.model_hash.starts_with("fnv1a64:") && m.model_hash.len() == 24);
        // Only the checkpoint itself is left in the directory (no temp file).
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn shape_and_presence_errors_name_the_param() {
        let dir = TempDir::new("ckpt-err");
        let path = dir.path().join("p.safetensors");
        save(&path, &Params::zeros(&model([2, 3])), &Meta::default()).unwrap();
        let e = load(&path, &model([3, 2])).unwrap_err();
        assert_eq!(e.message, "param W has shape [2, 3] in the checkpoint but [3, 2] in the model");
        let mut more = model([2, 3]);
        more.add_arg("c", ArgKind::Param { init: Init::Const(0.0) }, Type::f32(Shape::shared([1])), Span::NONE);
        assert_eq!(load(&path, &more).unwrap_err().message, "param c is missing (the checkpoint has: W, b)");
        let mut fewer = Function::new("m");
        fewer.add_arg("W", ArgKind::Param { init: Init::Const(0.0) }, Type::f32(Shape::shared([2, 3])), Span::NONE);
        assert_eq!(
            load(&path, &fewer).unwrap_err().message,
            "the checkpoint has a tensor `b` that the model does not declare as a param"
        );
    }

    #[test]
    fn unreadable_files_are_errors() {
        let dir = TempDir::new("ckpt-bad");
        let e = load(&dir.path().join("none.safetensors"), &model([2, 3])).unwrap_err();
        assert!(e.message.starts_with("cannot open: No such file or directory"), "{e}");
        let junk = dir.write("junk.safetensors", b"hello");
        assert!(load(&junk, &model([2, 3])).unwrap_err().message.starts_with("not a safetensors file"));
        let e = save(&dir.path().join("no/such/dir/p.safetensors"), &Params::zeros(&model([2, 3])), &Meta::default());
        assert!(e.unwrap_err().message.starts_with("cannot write: No such file or directory"));
    }
}
