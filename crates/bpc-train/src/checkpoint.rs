//! Checkpoints: params and optimizer state as safetensors (SPEC §4).
//!
//! One F32 tensor per param, named as in the model, with its shape; the optimizer's state
//! tensors follow as `optimizer.NAME` (`optimizer.exp_avg.W1`, PyTorch's state keys). The
//! string metadata (`bpc.*` keys) holds the model source hash, the standardization statistics
//! (JSON arrays), the class names and feature columns (JSON arrays), the position in training
//! (whole epochs done, examples done of the next epoch, the seed), and the optimizer's name,
//! step count and settings (JSON), the target epoch count and the per-epoch history (train and
//! validation loss and accuracy, a JSON array, so a resumed run plots every epoch). The
//! metadata keys are written sorted, so the same state gives the same bytes (safetensors
//! itself writes them in `HashMap` order). Files are written atomically (a temporary file in the same
//! directory, synced, then a rename), so a crash never leaves a half-written checkpoint over
//! a good one. Loading checks that every param of the model is present with the right dtype
//! and shape (naming every param that differs) and that the file holds nothing else.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bpc_ir::Function;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use bpc_autodiff::Optimizer;

use crate::init::fnv1a;
use crate::optimizer::OptState;
use crate::params::Params;
use crate::report::EpochReport;
use crate::standardize::Standardizer;

/// What a checkpoint records besides the params.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Meta {
    /// [`model_hash`] of the source the params were trained with.
    pub model_hash: String,
    pub standardizer: Option<Standardizer>,
    /// Class names when the training labels were names (index = class).
    pub class_names: Option<Vec<String>>,
    /// The `--features` columns the model was trained on, if chosen.
    pub features: Option<Vec<String>>,
    /// Whole epochs done.
    pub epochs: usize,
    /// Examples done of epoch `epochs + 1` (an interrupted epoch), in its shuffled order.
    pub examples: usize,
    /// The shuffling seed of the run.
    pub seed: Option<u64>,
    /// The optimizer's name (`sgd`, `momentum`, `nesterov`, `adam`, `adamw`).
    pub optimizer: Option<String>,
    /// Optimizer steps taken (Adam's `t`).
    pub optimizer_steps: u64,
    /// The optimizer's settings as JSON text, for the record.
    pub optimizer_config: Option<String>,
    /// The epoch count the run was asked for (`--epochs`), so a resumed run goes on to it.
    pub target_epochs: Option<usize>,
    /// The figures of every epoch done so far, in order (see [`EpochReport::history_json`]:
    /// loss and accuracy only; the speed fields read back as 0).
    pub history: Vec<EpochReport>,
}

/// A checkpoint error: the file and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointError {
    /// The checkpoint file.
    pub path: String,
    /// What was wrong with it (`Display` prints `path: message`).
    pub message: String,
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for CheckpointError {}

impl CheckpointError {
    /// The error as text; when the file is a checkpoint whose tensors do not fit the model at
    /// `model` (a path), with the hint `(is it a checkpoint of MODEL?)`.
    pub fn for_model(&self, model: &str) -> String {
        if self.message.contains(MISFIT) {
            format!("{self} (is it a checkpoint of {model}?)")
        } else {
            self.to_string()
        }
    }
}

/// What a load error says when the tensors do not fit the model (see [`CheckpointError::for_model`]).
const MISFIT: &str = "does not fit the model";

/// A stable hash of a model's source text: `fnv1a64:` and 16 hex digits.
pub fn model_hash(source: &str) -> String {
    format!("fnv1a64:{:016x}", fnv1a(source.as_bytes()))
}

const HASH: &str = "bpc.model_hash";
const EPOCHS: &str = "bpc.epochs";
const EXAMPLES: &str = "bpc.epoch_examples";
const SEED: &str = "bpc.seed";
const MEAN: &str = "bpc.standardize.mean";
const STD: &str = "bpc.standardize.std";
const CLASSES: &str = "bpc.class_names";
const FEATURES: &str = "bpc.features";
const OPTIMIZER: &str = "bpc.optimizer";
const OPTIMIZER_STEPS: &str = "bpc.optimizer.steps";
const OPTIMIZER_CONFIG: &str = "bpc.optimizer.config";
const TARGET_EPOCHS: &str = "bpc.target_epochs";
const HISTORY: &str = "bpc.history";
/// Prefix of the optimizer state tensors' names.
pub const STATE_PREFIX: &str = "optimizer.";

/// Writes `params` and `meta` to `path` atomically.
pub fn save(path: &Path, params: &Params, meta: &Meta) -> Result<(), CheckpointError> {
    save_with_state(path, params, None, meta)
}

/// Writes `params`, the optimizer `state` (its tensors, name and step count) and `meta` to
/// `path` atomically.
pub fn save_with_state(
    path: &Path,
    params: &Params,
    state: Option<&OptState>,
    meta: &Meta,
) -> Result<(), CheckpointError> {
    let err = |message: String| CheckpointError { path: path.display().to_string(), message };
    let mut entries: Vec<(String, &[usize], Vec<u8>)> = Vec::new();
    for i in &params.info {
        entries.push((i.name.clone(), &i.shape, le_bytes(params.slice(i))));
    }
    let mut meta = meta.clone();
    if let Some(st) = state {
        for i in &st.slab.info {
            entries.push((format!("{STATE_PREFIX}{}", i.name), &i.shape, le_bytes(st.slab.slice(i))));
        }
        meta.optimizer = Some(st.optimizer.name().to_string());
        meta.optimizer_steps = st.steps;
    }
    let mut views = Vec::with_capacity(entries.len());
    for (name, shape, b) in &entries {
        let view = TensorView::new(Dtype::F32, shape.to_vec(), b)
            .map_err(|e| err(format!("cannot store tensor {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let meta = &meta;
    let blob =
        safetensors::serialize(views, Some(metadata(meta))).map_err(|e| err(format!("cannot serialize: {e}")))?;
    let blob = sorted_header(blob).map_err(|e| err(format!("cannot serialize: {e}")))?;
    write_atomic(path, &blob).map_err(|e| err(format!("cannot write: {e}")))
}

/// `blob` (a serialized safetensors file) with its header rewritten in a canonical order:
/// `__metadata__` first with its keys sorted, then the tensors sorted by name. safetensors
/// writes the metadata map in `HashMap` order, which differs from run to run; the data
/// section and every offset stay as they are (offsets are relative to the data section).
fn sorted_header(blob: Vec<u8>) -> Result<Vec<u8>, String> {
    const N: usize = 8;
    let len = blob.get(..N).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize);
    let Some(end) = len.and_then(|n| n.checked_add(N)).filter(|&e| e <= blob.len()) else {
        return Err("the serialized header is truncated".into());
    };
    // serde_json's map is ordered by key (no `preserve_order`), so parsing sorts every object.
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&blob[N..end]).map_err(|e| e.to_string())?;
    let meta = header.get("__metadata__").map(|m| ("__metadata__", m));
    let entries: Vec<String> = meta
        .into_iter()
        .chain(header.iter().filter(|(k, _)| *k != "__metadata__").map(|(k, v)| (k.as_str(), v)))
        .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k)))
        .collect();
    let mut text = format!("{{{}}}", entries.join(",")).into_bytes();
    // Pad with spaces to a multiple of 8, as safetensors does, so the data stays aligned.
    text.resize(text.len().next_multiple_of(N), b' ');
    let mut out = Vec::with_capacity(N + text.len() + blob.len() - end);
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text);
    out.extend(&blob[end..]);
    Ok(out)
}

fn le_bytes(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn metadata(meta: &Meta) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert(HASH.to_string(), meta.model_hash.clone());
    m.insert(EPOCHS.to_string(), meta.epochs.to_string());
    m.insert(EXAMPLES.to_string(), meta.examples.to_string());
    if let Some(s) = meta.seed {
        m.insert(SEED.to_string(), s.to_string());
    }
    if let Some(f) = &meta.features {
        m.insert(FEATURES.to_string(), serde_json::to_string(f).expect("strings serialize"));
    }
    if let Some(o) = &meta.optimizer {
        m.insert(OPTIMIZER.to_string(), o.clone());
        m.insert(OPTIMIZER_STEPS.to_string(), meta.optimizer_steps.to_string());
    }
    if let Some(c) = &meta.optimizer_config {
        m.insert(OPTIMIZER_CONFIG.to_string(), c.clone());
    }
    if let Some(s) = &meta.standardizer {
        m.insert(MEAN.to_string(), serde_json::to_string(&s.mean).expect("floats serialize"));
        m.insert(STD.to_string(), serde_json::to_string(&s.std).expect("floats serialize"));
    }
    if let Some(c) = &meta.class_names {
        m.insert(CLASSES.to_string(), serde_json::to_string(c).expect("strings serialize"));
    }
    if let Some(t) = meta.target_epochs {
        m.insert(TARGET_EPOCHS.to_string(), t.to_string());
    }
    if !meta.history.is_empty() {
        m.insert(HISTORY.to_string(), EpochReport::history_json(&meta.history));
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

/// Reads the params of `func` and the metadata from `path` (optimizer state is skipped).
pub fn load(path: &Path, func: &Function) -> Result<(Params, Meta), CheckpointError> {
    let (params, meta, _) = load_with_state(path, func, None)?;
    Ok((params, meta))
}

/// Reads only the metadata of the checkpoint at `path` (to learn how it was trained before
/// loading it for a model).
pub fn read_meta(path: &Path) -> Result<Meta, CheckpointError> {
    let err = |message: String| CheckpointError { path: path.display().to_string(), message };
    let buf = fs::read(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&buf).map_err(|e| err(format!("not a safetensors file: {e}")))?;
    let empty = HashMap::new();
    parse_meta(header.metadata().as_ref().unwrap_or(&empty)).map_err(err)
}

/// Reads the params of `func`, the metadata and, if the checkpoint was saved by `optimizer`,
/// its state (`None` when it was saved by another optimizer or without state).
pub fn load_with_state(
    path: &Path,
    func: &Function,
    optimizer: Option<Optimizer>,
) -> Result<(Params, Meta, Option<OptState>), CheckpointError> {
    let err = |message: String| CheckpointError { path: path.display().to_string(), message };
    let buf = fs::read(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let st = SafeTensors::deserialize(&buf).map_err(|e| err(format!("not a safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&buf).map_err(|e| err(format!("not a safetensors file: {e}")))?;
    let mut params = Params::zeros(func);
    let mut have: Vec<&str> = st.names();
    have.sort();
    let (state_names, param_names): (Vec<&str>, Vec<&str>) = have.iter().partition(|n| n.starts_with(STATE_PREFIX));
    let problems = read_tensors(&st, &mut params, "", &param_names);
    if !problems.is_empty() {
        return Err(err(format!("{MISFIT}: {}", problems.join("; "))));
    }
    let empty = HashMap::new();
    let m = header.metadata().as_ref().unwrap_or(&empty);
    let meta = parse_meta(m).map_err(err)?;
    let state = match optimizer {
        Some(o) if meta.optimizer.as_deref() == Some(o.name()) => {
            let mut s = OptState::new(func, o);
            s.steps = meta.optimizer_steps;
            let problems = read_tensors(&st, &mut s.slab, STATE_PREFIX, &state_names);
            if !problems.is_empty() {
                return Err(err(format!("its {} state {MISFIT}: {}", o.name(), problems.join("; "))));
            }
            Some(s)
        }
        Some(_) | None => None,
    };
    Ok((params, meta, state))
}

/// Fills `slab` from the tensors named `prefix` + entry name; returns every problem (a
/// missing tensor, a wrong dtype or shape, a tensor of `have` the slab does not declare).
fn read_tensors(st: &SafeTensors, slab: &mut Params, prefix: &str, have: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let what = if prefix.is_empty() { "param" } else { "optimizer state" };
    for info in &slab.info {
        let name = format!("{prefix}{}", info.name);
        let Ok(t) = st.tensor(&name) else {
            problems.push(format!("{what} {} is missing (the checkpoint has: {})", info.name, have.join(", ")));
            continue;
        };
        if t.dtype() != Dtype::F32 {
            problems.push(format!("{what} {} is stored as {:?}, expected F32", info.name, t.dtype()));
        } else if t.shape() != info.shape.as_slice() {
            problems.push(format!(
                "{what} {} has shape {:?} in the checkpoint but {:?} in the model",
                info.name,
                t.shape(),
                info.shape
            ));
        } else {
            let out = &mut slab.data[info.offset..info.offset + info.len];
            for (x, b) in out.iter_mut().zip(t.data().chunks_exact(4)) {
                *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
    for extra in have.iter().filter(|n| slab.info(&n[prefix.len()..]).is_none()) {
        problems.push(format!("the checkpoint has a tensor `{extra}` that the model does not declare as a {what}"));
    }
    problems
}

fn parse_meta(m: &HashMap<String, String>) -> Result<Meta, String> {
    let count = |key: &str| -> Result<u64, String> {
        match m.get(key) {
            Some(s) => s.parse().map_err(|_| format!("bad metadata {key}: `{s}` is not a count")),
            None => Ok(0),
        }
    };
    let epochs = count(EPOCHS)? as usize;
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
    let strings = |key: &str| -> Result<Option<Vec<String>>, String> {
        json_array(m, key)?
            .map(|xs| xs.iter().map(|x| x.as_str().map(str::to_string).ok_or(format!("bad metadata {key}"))).collect())
            .transpose()
    };
    Ok(Meta {
        model_hash: m.get(HASH).cloned().unwrap_or_default(),
        standardizer,
        class_names: strings(CLASSES)?,
        features: strings(FEATURES)?,
        epochs,
        examples: count(EXAMPLES)? as usize,
        seed: m.get(SEED).map(|_| count(SEED)).transpose()?,
        optimizer: m.get(OPTIMIZER).cloned(),
        optimizer_steps: count(OPTIMIZER_STEPS)?,
        optimizer_config: m.get(OPTIMIZER_CONFIG).cloned(),
        target_epochs: m.get(TARGET_EPOCHS).map(|_| count(TARGET_EPOCHS)).transpose()?.map(|t| t as usize),
        history: match m.get(HISTORY) {
            Some(text) => EpochReport::parse_history(text).map_err(|e| format!("bad metadata {HISTORY}: {e}"))?,
            None => Vec::new(),
        },
    })
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
            features: Some(vec!["b".into(), "a".into()]),
            epochs: 12,
            examples: 40,
            seed: Some(3),
            optimizer: None,
            optimizer_steps: 0,
            optimizer_config: Some(r#"{"optimizer":"sgd","weight_decay":0.0}"#.into()),
            target_epochs: Some(30),
            history: (1..=12)
                .map(|e| EpochReport {
                    epoch: e,
                    train_loss: 1.0 / e as f64,
                    train_accuracy: Some(0.5 + e as f64 / 100.0),
                    val_loss: Some(1.5 / e as f64),
                    val_accuracy: (e > 1).then_some(0.25),
                    examples_per_s: 0.0,
                    seconds: 0.0,
                    lr: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_same_state_gives_the_same_bytes_with_sorted_metadata() {
        let dir = TempDir::new("ckpt-bytes");
        let f = model([2, 3]);
        let p = Params::init(&f, 5).unwrap();
        let mut state = OptState::new(&f, Optimizer::Adam);
        state.slab.data.iter_mut().enumerate().for_each(|(i, x)| *x = i as f32);
        state.steps = 7;
        // Every save builds a new metadata map with its own random iteration order.
        let files: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                let path = dir.path().join(format!("p{i}.safetensors"));
                save_with_state(&path, &p, Some(&state), &meta()).unwrap();
                fs::read(&path).unwrap()
            })
            .collect();
        assert!(files.iter().all(|f| f == &files[0]), "checkpoints of the same state differ");
        let n = u64::from_le_bytes(files[0][..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header = std::str::from_utf8(&files[0][8..8 + n]).unwrap();
        assert!(header.starts_with(r#"{"__metadata__":{"bpc.class_names":"#), "{header}");
        let keys: Vec<&str> = header.split("\"bpc.").skip(1).map(|k| k.split('"').next().unwrap()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 13, "{keys:?}");
        // The tensors follow in name order, and the file reads back whole.
        let w = header.find(r#""W":"#).unwrap();
        assert!(w < header.find(r#""b":"#).unwrap() && w < header.find(r#""optimizer.exp_avg.W":"#).unwrap());
        let (q, m, st) = load_with_state(&dir.path().join("p0.safetensors"), &f, Some(Optimizer::Adam)).unwrap();
        let st = st.unwrap();
        assert_eq!(
            (q, m, st.slab.data, st.steps),
            (p, Meta { optimizer: Some("adam".into()), optimizer_steps: 7, ..meta() }, state.slab.data, 7)
        );
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
        assert_eq!(
            e.message,
            "does not fit the model: param W has shape [2, 3] in the checkpoint but [3, 2] in the model; \
             param b has shape [2] in the checkpoint but [3] in the model"
        );
        let mut more = model([2, 3]);
        more.add_arg("c", ArgKind::Param { init: Init::Const(0.0) }, Type::f32(Shape::shared([1])), Span::NONE);
        assert_eq!(
            load(&path, &more).unwrap_err().message,
            "does not fit the model: param c is missing (the checkpoint has: W, b)"
        );
        let mut fewer = Function::new("m");
        fewer.add_arg("W", ArgKind::Param { init: Init::Const(0.0) }, Type::f32(Shape::shared([2, 3])), Span::NONE);
        assert_eq!(
            load(&path, &fewer).unwrap_err().message,
            "does not fit the model: the checkpoint has a tensor `b` that the model does not declare as a param"
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

    /// The names in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn saving_replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = TempDir::new("ckpt-atomic");
        let path = dir.path().join("p.safetensors");
        let f = model([2, 3]);
        let mut p = Params::zeros(&f);
        save(&path, &p, &Meta { epochs: 1, ..Meta::default() }).unwrap();
        p.data.iter_mut().for_each(|x| *x = 2.5);
        save(&path, &p, &Meta { epochs: 2, ..Meta::default() }).unwrap();
        assert_eq!(listing(dir.path()), ["p.safetensors"]);
        let (back, meta) = load(&path, &f).unwrap();
        assert_eq!((back.data, meta.epochs), (p.data.clone(), 2));
        assert_eq!(read_meta(&path).unwrap().epochs, 2);

        // A write that fails at the rename (the target is a directory) removes its temporary
        // file and leaves the target as it was.
        let blocked = dir.path().join("blocked.safetensors");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), b"kept").unwrap();
        let e = save(&blocked, &p, &Meta::default()).unwrap_err();
        assert!(e.message.starts_with("cannot write: "), "{e}");
        assert_eq!(listing(dir.path()), ["blocked.safetensors", "p.safetensors"]);
        assert_eq!(fs::read(blocked.join("inside")).unwrap(), b"kept");
        // The file is first written to a hidden sibling: a crash leaves at most that behind.
        let tmp = path.with_file_name(format!(".p.safetensors.tmp-{}", std::process::id()));
        assert!(!tmp.exists());
    }
}
