//! Calling compiled code on minibatches: gather buffers, argument binding, the per-size
//! cache of compiled functions.
//!
//! A [`Runner`] owns one function and its native code for the full minibatch size and the
//! last, smaller one of an epoch (SPEC §3: each size gets its own compiled step). Each size
//! is optimized for itself ([`bpc_opt::optimize_for_batch`]): `1 / B` is a constant, and a
//! minibatch of 1 pays nothing for the mean's cotangent (MNIST's SGD step at batch 1: 1.14×
//! the speed of the step optimized with `B` symbolic).
//! Its argument list is bound once (one `Slot` per argument); each call carves the param slab into the
//! slices the function reads or updates and hands preallocated buffers to
//! [`Compiled::run`], so a step allocates nothing.

use std::time::Duration;

use bpc_codegen::{Arg, Compiled, Workspace};
use bpc_ir::{ArgKind, DType, Function};
use bpc_opt::OptLevel;

use crate::data::{Dataset, Labels};
use crate::optimizer::{HyperKey, Hypers};
use crate::params::Params;
use crate::schema::Schema;

/// Why training or prediction could not run.
#[derive(Debug)]
pub enum RunError {
    /// The program cannot be differentiated or trained (from the autodiff pass).
    Program(bpc_ir::Diagnostic),
    /// Code generation failed.
    Compile(String),
    /// A call was refused, or the model and the data or params disagree.
    Call(String),
    /// `--check-finite`: a step produced inf or NaN; the diagnostic names the op.
    NonFinite(bpc_ir::Diagnostic),
    /// A step's loss was inf or NaN (training stops there; nothing is saved). The message
    /// says what and where (`training diverged: the loss is inf at step 4 of epoch 3`); the
    /// caller adds what to try, knowing which settings were used.
    Diverged(String),
    /// A checkpoint could not be written during training (`--save-every`).
    Save(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Program(d) | RunError::NonFinite(d) => write!(f, "{}", d.message),
            RunError::Compile(m) => write!(f, "code generation failed: {m}"),
            RunError::Call(m) | RunError::Diverged(m) | RunError::Save(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RunError {}

/// One minibatch, gathered into contiguous per-input buffers sized for `capacity` rows.
pub struct Batch {
    /// One buffer per input of the schema: `rows * len` floats.
    pub inputs: Vec<Vec<f32>>,
    pub classes: Vec<i32>,
    /// Real labels: `rows * label_width` floats.
    pub reals: Vec<f32>,
    pub rows: usize,
    lens: Vec<(usize, usize)>,
    label_width: usize,
}

impl Batch {
    /// Panics if the buffers cannot be allocated ([`Batch::try_new`] returns an error instead).
    pub fn new(schema: &Schema, capacity: usize) -> Batch {
        Batch::try_new(schema, capacity).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Buffers for `capacity` rows of `schema`'s inputs and labels, zeroed, or an error when a
    /// minibatch that large cannot be allocated.
    pub fn try_new(schema: &Schema, capacity: usize) -> Result<Batch, RunError> {
        let width = label_width(schema);
        Ok(Batch {
            inputs: schema
                .inputs
                .iter()
                .map(|i| zeros(i.len.checked_mul(capacity), &format!("input {}", i.name)))
                .collect::<Result<_, _>>()?,
            classes: zeros(Some(capacity), "the labels")?,
            reals: zeros(width.checked_mul(capacity), "the labels")?,
            rows: 0,
            lens: schema.inputs.iter().map(|i| (i.offset, i.len)).collect(),
            label_width: width,
        })
    }

    /// A minibatch of `rows` deterministic synthetic examples, for benchmarks (`bpc bench`):
    /// inputs a fixed pseudo-random pattern in [-1, 1), class labels cycling through the
    /// classes, real labels 0. Fails if the buffers cannot be allocated.
    pub fn synthetic(schema: &Schema, rows: usize) -> Result<Batch, RunError> {
        let mut batch = Batch::try_new(schema, rows)?;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for x in batch.inputs.iter_mut().flatten() {
            // xorshift64: a cheap, fixed pattern (not a statistical RNG).
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *x = (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        }
        let k = schema.classes().unwrap_or(1).max(1);
        for (i, c) in batch.classes.iter_mut().enumerate() {
            *c = (i % k) as i32;
        }
        batch.rows = rows;
        Ok(batch)
    }

    /// Copies the examples `idx` of `data` into the buffers (row `r` = example `idx[r]`).
    pub fn gather(&mut self, data: &Dataset, idx: &[usize]) {
        assert!(
            idx.len() <= self.classes.len(),
            "minibatch of {} rows exceeds capacity {}",
            idx.len(),
            self.classes.len()
        );
        for (buf, &(offset, len)) in self.inputs.iter_mut().zip(&self.lens) {
            for (r, &i) in idx.iter().enumerate() {
                buf[r * len..(r + 1) * len].copy_from_slice(&data.row(i)[offset..offset + len]);
            }
        }
        match &data.labels {
            Labels::None => {}
            Labels::Class { values, .. } => idx.iter().zip(&mut self.classes).for_each(|(&i, c)| *c = values[i]),
            Labels::Real(values) => {
                let w = self.label_width;
                for (r, &i) in idx.iter().enumerate() {
                    self.reals[r * w..(r + 1) * w].copy_from_slice(&values[i * w..(i + 1) * w]);
                }
            }
        }
        self.rows = idx.len();
    }
}

fn label_width(schema: &Schema) -> usize {
    schema.label.as_ref().map_or(1, |l| l.kind.width())
}

/// What feeds one argument of the function.
#[derive(Clone, Debug, PartialEq)]
enum Slot {
    Input(usize),
    ClassLabel,
    RealLabel,
    Param {
        offset: usize,
        len: usize,
        update: bool,
    },
    /// Optimizer state: a range of the state slab, always updated in place.
    State {
        offset: usize,
        len: usize,
    },
    Hyper(HyperKey),
}

/// The param slab, read-only or updated in place by the call.
pub enum Slab<'a> {
    Shared(&'a [f32]),
    Mut(&'a mut [f32]),
}

/// A function, optimized and compiled per minibatch size on demand, with bound arguments
/// and result buffers.
pub struct Runner {
    func: Function,
    level: OptLevel,
    slots: Vec<Slot>,
    /// Non-update results: name, elements per example (or in total if shared), batched?
    results: Vec<(String, usize, bool)>,
    buffers: Vec<Vec<f32>>,
    capacity: usize,
    /// Floats of optimizer state the function reads (the end of its last `State` range).
    state_len: usize,
    /// Threads for large matrix products (0: all cores), see `bpc_codegen::Options`.
    threads: usize,
    compiled: Vec<(usize, Compiled, Workspace)>,
    args_store: Vec<Arg<'static>>,
    results_store: Vec<&'static mut [f32]>,
}

impl Runner {
    /// Binds `func`'s arguments to the data of `schema` and the slab of `params`, with
    /// result buffers for minibatches of up to `capacity` rows. `func` is the function before
    /// the optimizer (an optimized one works too, at the cost of optimizing it again): each
    /// minibatch size is compiled from `bpc_opt::optimize_for_batch(func, level, rows)`.
    pub fn new(
        func: Function,
        level: OptLevel,
        schema: &Schema,
        params: &Params,
        capacity: usize,
    ) -> Result<Runner, RunError> {
        Runner::with_state(func, level, schema, params, &Params { data: Vec::new(), info: Vec::new() }, capacity)
    }

    /// [`Runner::new`] for a step that also reads and updates the optimizer state `state`.
    pub fn with_state(
        func: Function,
        level: OptLevel,
        schema: &Schema,
        params: &Params,
        state: &Params,
        capacity: usize,
    ) -> Result<Runner, RunError> {
        let updated: Vec<_> = func.results.iter().filter_map(|r| r.update).collect();
        let mut slots = Vec::with_capacity(func.args.len());
        let (mut last_offset, mut last_state) = (0, 0);
        for (i, a) in func.args.iter().enumerate() {
            let slot = match &a.kind {
                ArgKind::Input => Slot::Input(
                    schema
                        .inputs
                        .iter()
                        .position(|s| s.name == a.name)
                        .ok_or_else(|| RunError::Call(format!("input {} is not in the data layout", a.name)))?,
                ),
                ArgKind::Label { .. } if a.ty.dtype == DType::I32 => Slot::ClassLabel,
                ArgKind::Label { .. } => Slot::RealLabel,
                ArgKind::Param { .. } => {
                    let info = params
                        .info(&a.name)
                        .ok_or_else(|| RunError::Call(format!("param {} is not in the param slab", a.name)))?;
                    // Params are carved from the slab front to back.
                    assert!(info.offset >= last_offset, "params of {} are not in declaration order", func.name);
                    last_offset = info.offset + info.len;
                    let update = updated.iter().any(|u| u.index() == i);
                    Slot::Param { offset: info.offset, len: info.len, update }
                }
                ArgKind::Hyper => Slot::Hyper(HyperKey::of(&a.name).ok_or_else(|| {
                    RunError::Call(format!("the compiled step takes an unknown setting `{}`", a.name))
                })?),
                ArgKind::State => {
                    let info = state.info(&a.name).ok_or_else(|| {
                        RunError::Call(format!("optimizer state {} is not in the state slab", a.name))
                    })?;
                    assert!(info.offset >= last_state, "states of {} are not in slab order", func.name);
                    last_state = info.offset + info.len;
                    if !updated.iter().any(|u| u.index() == i) {
                        return Err(RunError::Call(format!("optimizer state {} is read but never updated", a.name)));
                    }
                    Slot::State { offset: info.offset, len: info.len }
                }
            };
            slots.push(slot);
        }
        let results: Vec<(String, usize, bool)> = func
            .results
            .iter()
            .filter(|r| r.update.is_none())
            .map(|r| {
                let s = &func.ty(r.value).shape;
                (r.name.clone(), s.example_len(), s.batch)
            })
            .collect();
        let buffers = results
            .iter()
            .map(|(name, n, b)| zeros(if *b { n.checked_mul(capacity) } else { Some(*n) }, &format!("result {name}")))
            .collect::<Result<_, _>>()?;
        let nargs = slots.len();
        let nres = results.len();
        Ok(Runner {
            func,
            level,
            slots,
            results,
            buffers,
            capacity,
            state_len: last_state,
            threads: 0,
            compiled: Vec::new(),
            args_store: Vec::with_capacity(nargs),
            results_store: Vec::with_capacity(nres),
        })
    }

    /// Sets the threads large matrix products may use (0: all cores); applies to sizes
    /// compiled from now on.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads;
    }

    /// The function this runner calls, as given (before each size's optimization; the same
    /// arguments and results).
    pub fn func(&self) -> &Function {
        &self.func
    }

    /// Optimizes and JIT-compiles the function for minibatch size `rows` unless cached;
    /// returns the time that took (zero when cached).
    pub fn prepare(&mut self, rows: usize) -> Result<Duration, RunError> {
        if self.compiled.iter().any(|(b, _, _)| *b == rows) {
            return Ok(Duration::ZERO);
        }
        let t0 = std::time::Instant::now();
        let opts = bpc_codegen::Options { threads: self.threads, ..bpc_codegen::Options::default() };
        let c = compile_for_batch(&self.func, self.level, rows, &opts).map_err(|e| RunError::Compile(e.0))?;
        let t = t0.elapsed();
        let ws = c.try_workspace().map_err(|e| RunError::Compile(e.0))?;
        self.compiled.push((rows, c, ws));
        Ok(t)
    }

    /// Index of the non-update result `name`.
    pub fn result_index(&self, name: &str) -> Option<usize> {
        self.results.iter().position(|(n, _, _)| n == name)
    }

    /// The last call's value of result `i` (`rows * per-example` floats if batched).
    pub fn result(&self, i: usize, rows: usize) -> &[f32] {
        let (_, n, batched) = self.results[i];
        &self.buffers[i][..if batched { n * rows } else { n }]
    }

    /// Elements per example of result `i`.
    pub fn result_width(&self, i: usize) -> usize {
        self.results[i].1
    }

    /// Runs the function on the `batch.rows` examples gathered in `batch`, with learning
    /// rate `lr` (and no optimizer state).
    pub fn run(&mut self, batch: &Batch, slab: Slab<'_>, lr: f32) -> Result<(), RunError> {
        self.run_step(batch, slab, &mut [], &Hypers::lr(lr))
    }

    /// Runs the function on the `batch.rows` examples gathered in `batch`: params from
    /// `slab`, optimizer state from `state` (updated in place), settings from `hypers`.
    pub fn run_step(
        &mut self,
        batch: &Batch,
        slab: Slab<'_>,
        state: &mut [f32],
        hypers: &Hypers,
    ) -> Result<(), RunError> {
        let rows = batch.rows;
        assert!(rows <= self.capacity, "minibatch of {rows} rows exceeds capacity {}", self.capacity);
        if state.len() < self.state_len {
            return Err(RunError::Call(format!(
                "{} needs {} floats of optimizer state, given {}",
                self.func.name,
                self.state_len,
                state.len()
            )));
        }
        self.prepare(rows)?;
        let mut args: Vec<Arg<'_>> = recycle(std::mem::take(&mut self.args_store));
        let (shared, mut rest, mutable): (&[f32], &mut [f32], bool) = match slab {
            Slab::Shared(s) => (s, &mut [], false),
            Slab::Mut(m) => (&[], m, true),
        };
        let mut consumed = 0;
        let (mut state_rest, mut state_consumed) = (state, 0);
        let width = batch.label_width;
        for slot in &self.slots {
            args.push(match *slot {
                Slot::Input(i) => Arg::F32(&batch.inputs[i][..rows * batch.lens[i].1]),
                Slot::ClassLabel => Arg::I32(&batch.classes[..rows]),
                Slot::RealLabel => Arg::F32(&batch.reals[..rows * width]),
                Slot::Hyper(k) => Arg::F32(std::slice::from_ref(&hypers.values[k as usize])),
                Slot::State { offset, len } => {
                    let (_, tail) = std::mem::take(&mut state_rest).split_at_mut(offset - state_consumed);
                    let (s, tail) = tail.split_at_mut(len);
                    state_rest = tail;
                    state_consumed = offset + len;
                    Arg::F32Mut(s)
                }
                Slot::Param { offset, len, update } if mutable => {
                    let (_, tail) = std::mem::take(&mut rest).split_at_mut(offset - consumed);
                    let (p, tail) = tail.split_at_mut(len);
                    rest = tail;
                    consumed = offset + len;
                    if update { Arg::F32Mut(p) } else { Arg::F32(p) }
                }
                Slot::Param { offset, len, update } => {
                    assert!(!update, "{} updates params but was given a read-only slab", self.func.name);
                    Arg::F32(&shared[offset..offset + len])
                }
            });
        }
        let mut results: Vec<&mut [f32]> = recycle(std::mem::take(&mut self.results_store));
        for (buf, &(_, n, batched)) in self.buffers.iter_mut().zip(&self.results) {
            results.push(&mut buf[..if batched { n * rows } else { n }]);
        }
        let (_, c, ws) = self.compiled.iter_mut().find(|(b, _, _)| *b == rows).expect("prepared above");
        let status = c.run(ws, &mut args, &mut results);
        self.args_store = recycle(args);
        self.results_store = recycle(results);
        status.map_err(|e| RunError::Call(e.0))
    }
}

/// Optimizes `func` (before the optimizer) at `level` for minibatch size `batch` and
/// JIT-compiles it: data-parallel when [`compile_sharded`] does, else as one function.
pub fn compile_for_batch(
    func: &Function,
    level: OptLevel,
    batch: usize,
    opts: &bpc_codegen::Options,
) -> Result<Compiled, bpc_codegen::CodegenError> {
    compile_sharded(func, level, batch, opts)
        .unwrap_or_else(|| bpc_codegen::compile_with(&bpc_opt::optimize_for_batch(func, level, batch), batch, opts))
}

/// `func` (before the optimizer) compiled data-parallel for minibatch size `batch`, one shard
/// per thread, if `opts` has more than one thread, `batch` is a multiple of the thread count,
/// the shards have at least `opts.shard_rows_min` rows and the function splits
/// (`bpc_opt::shard_for_batch`); `None` otherwise.
pub fn compile_sharded(
    func: &Function,
    level: OptLevel,
    batch: usize,
    opts: &bpc_codegen::Options,
) -> Option<Result<Compiled, bpc_codegen::CodegenError>> {
    let shards = bpc_codegen::threads(opts);
    if shards < 2 || !batch.is_multiple_of(shards) || batch / shards < opts.shard_rows_min {
        return None;
    }
    let s = bpc_opt::shard_for_batch(func, level, batch, shards)?;
    Some(bpc_codegen::compile_sharded(func, &s.shard, &s.combine, s.shards, s.batch, opts))
}

/// `count` zeros (`None`: the count overflowed), or an error naming `what` when a minibatch
/// is too large for this machine's memory.
fn zeros<T: Clone + Default>(count: Option<usize>, what: &str) -> Result<Vec<T>, RunError> {
    let fail = |n: Option<usize>| {
        let bytes = n.and_then(|n| n.checked_mul(size_of::<T>()));
        let bytes = bytes.map_or("more than 2^64".to_string(), |b| b.to_string());
        RunError::Call(format!("cannot allocate {bytes} bytes for {what}: the minibatch is too large"))
    };
    let n = count.ok_or_else(|| fail(None))?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| fail(Some(n)))?;
    v.resize(n, T::default());
    Ok(v)
}

/// Reuses a vector's allocation for elements of another lifetime: the vector is emptied and
/// collected in place (std's in-place `collect` keeps the buffer when the layouts match), so
/// argument lists borrow fresh buffers every step without allocating.
fn recycle<A, B>(mut v: Vec<A>) -> Vec<B> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::InputSpec;

    #[test]
    fn recycle_keeps_the_allocation() {
        let mut v: Vec<&'static [f32]> = Vec::with_capacity(8);
        v.push(&[1.0]);
        let (ptr, cap) = (v.as_ptr() as usize, v.capacity());
        let data = [2.0f32];
        let mut w: Vec<&[f32]> = recycle(v);
        w.push(&data);
        assert_eq!((w.as_ptr() as usize, w.capacity()), (ptr, cap));
    }

    #[test]
    fn synthetic_batch_is_a_fixed_pattern() {
        let schema = Schema {
            inputs: vec![
                InputSpec { name: "a".into(), shape: vec![2], offset: 0, len: 2 },
                InputSpec { name: "b".into(), shape: vec![], offset: 2, len: 1 },
            ],
            label: Some(crate::schema::LabelSpec { name: "y".into(), kind: crate::schema::LabelKind::Class(3) }),
        };
        let b = Batch::synthetic(&schema, 4).unwrap();
        assert_eq!(b.rows, 4);
        assert_eq!(b.classes, [0, 1, 2, 0]);
        assert_eq!((b.inputs[0].len(), b.inputs[1].len()), (8, 4));
        assert!(b.inputs.iter().flatten().all(|x| (-1.0..1.0).contains(x)));
        // The xorshift64 pattern continues from one input's buffer into the next.
        assert_ne!(b.inputs[0][..4], b.inputs[1][..]);
        assert_eq!(Batch::synthetic(&schema, 4).unwrap().inputs, b.inputs);
    }

    #[test]
    fn gather_copies_rows_per_input() {
        let schema = Schema {
            inputs: vec![
                InputSpec { name: "a".into(), shape: vec![2], offset: 0, len: 2 },
                InputSpec { name: "b".into(), shape: vec![], offset: 2, len: 1 },
            ],
            label: None,
        };
        let data = Dataset {
            path: "t".into(),
            feature_names: vec!["p".into(), "q".into(), "r".into()],
            label_names: vec!["label".into()],
            label_width: 1,
            n_features: 3,
            rows: 3,
            features: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            labels: Labels::Class { values: vec![0, 1, 2], encoding: crate::data::LabelEncoding::Integers },
        };
        let mut b = Batch::new(&schema, 4);
        b.gather(&data, &[2, 0]);
        assert_eq!(&b.inputs[0][..4], &[7.0, 8.0, 1.0, 2.0]);
        assert_eq!(&b.inputs[1][..2], &[9.0, 3.0]);
        assert_eq!((&b.classes[..2], b.rows), (&[2, 0][..], 2));
    }
}
