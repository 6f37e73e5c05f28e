//! Native functions specialized for one minibatch size, called on caller-owned buffers.
//!
//! A [`Native`] binds each argument of a compiled function to the caller's data (an input or
//! label of the [`Feed`], a range of the param slab, the direction slab, the learning rate)
//! and each result to a range of the caller's output slab or to scratch in the
//! [`Workspace`]. Everything is checked before any code runs; a call then carves the slabs
//! with `split_at_mut` into argument lists whose storage the workspace keeps between calls,
//! so after the first call nothing is allocated.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bpc_codegen::{Arg, Compiled};
use bpc_ir::{ArgId, ArgKind, DType, Function, Inst};

use super::{Error, ErrorKind, Program, TensorSpec};

/// One minibatch of data for a native function compiled for minibatch size `B`.
///
/// `inputs` holds one buffer per [`Program::inputs`] entry, in that order, each of
/// `B × example_len` floats (`[B, shape...]` row-major); `labels` one per
/// [`Program::labels`] entry. Functions that do not read the labels (a forward pass to the
/// `output`) accept an empty `labels`.
///
/// A feed only borrows: build it in the call, or bind the arrays it points to first.
///
/// ```
/// # use bpc::{Feed, Label};
/// let (x, y) = (vec![0.5f32; 8], vec![1i32, 0]); // x[2, 4], y[2]
/// let inputs = [&x[..]];
/// let labels = [Label::Class(&y)];
/// let feed = Feed::with_labels(&inputs, &labels);
/// // or, as a struct literal, whose temporaries live as long as `feed2`:
/// let feed2 = Feed { inputs: &[&x], labels: &[Label::Class(&y)] };
/// assert_eq!((feed.inputs[0].len(), feed2.labels.len()), (8, 1));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Feed<'a> {
    /// One buffer per input, in declaration order.
    pub inputs: &'a [&'a [f32]],
    /// One buffer per label, in declaration order.
    pub labels: &'a [Label<'a>],
}

impl<'a> Feed<'a> {
    /// A feed of inputs only.
    pub fn new(inputs: &'a [&'a [f32]]) -> Feed<'a> {
        Feed { inputs, labels: &[] }
    }

    /// A feed of inputs and labels.
    pub fn with_labels(inputs: &'a [&'a [f32]], labels: &'a [Label<'a>]) -> Feed<'a> {
        Feed { inputs, labels }
    }
}

/// The labels of one minibatch.
#[derive(Clone, Copy, Debug)]
pub enum Label<'a> {
    /// `label y : class(K)`: `B` class indices in `0..K`. A call checks every index first
    /// and refuses one outside `0..K` with an [`ErrorKind::Call`] error naming the label,
    /// the example and the value (nothing is computed or updated).
    Class(&'a [i32]),
    /// A real label: `B × example_len` floats.
    Real(&'a [f32]),
}

/// Scratch memory for calling one native function from one thread: the arena of every
/// intermediate value, the results the caller does not receive, and the storage of the
/// argument lists. Made by the function's `workspace()`, once per thread; a call with a
/// workspace of another function is refused.
pub struct Workspace {
    owner: u64,
    inner: bpc_codegen::Workspace,
    scratch: Vec<Vec<f32>>,
    /// Stand-ins for labels a function does not read.
    unread_f32: Vec<f32>,
    unread_i32: Vec<i32>,
    args: Vec<Arg<'static>>,
    results: Vec<&'static mut [f32]>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace").field("owner", &self.owner).field("arena", &self.inner).finish_non_exhaustive()
    }
}

/// The param slab a call reads, or reads and updates.
pub(crate) enum Slab<'a> {
    Shared(&'a [f32]),
    Mut(&'a mut [f32]),
}

/// What feeds one argument.
#[derive(Clone, Debug)]
enum Slot {
    Input(usize),
    Label { index: usize, class: bool, read: bool },
    Param { range: Range<usize>, update: bool },
    Direction(Range<usize>),
    Lr,
}

/// Where one (non-update) result goes.
#[derive(Clone, Debug)]
enum Sink {
    Scratch,
    Out(Range<usize>),
}

/// Which results the caller receives in its output slab.
pub(crate) enum Outs<'a> {
    /// None (a train step).
    None,
    /// The one result named so.
    Named(&'a str),
    /// Every `grad.NAME` result, in result order.
    Grads,
}

/// A compiled function bound to the data layout of its program.
pub(crate) struct Native {
    id: u64,
    compiled: Compiled,
    func: Function,
    slots: Vec<Slot>,
    sinks: Vec<Sink>,
    scratch: Vec<usize>,
    /// Index into the scratch buffers of the `loss` result, if it is not an output.
    loss: Option<usize>,
    out: Vec<(TensorSpec, Range<usize>)>,
    out_len: usize,
    param_len: usize,
    input_names: Vec<String>,
    label_names: Vec<String>,
    labels_read: bool,
    has_direction: bool,
}

impl Native {
    /// Optimizes `raw` (before the optimizer) for minibatch size `batch`, compiles it
    /// (data-parallel when `bpc_train::runner::compile_sharded` does) and binds it to
    /// `program`'s inputs, labels and param slab; `outs` chooses the caller's results.
    pub(crate) fn compile(program: &Program, raw: &Function, batch: usize, outs: Outs<'_>) -> Result<Native, Error> {
        check_batch(program.name(), batch)?;
        let level = program.options().opt_level;
        let func = bpc_opt::optimize_for_batch(raw, level, batch);
        let opts = bpc_codegen::Options { threads: program.options().threads, ..bpc_codegen::Options::default() };
        let compiled = bpc_train::runner::compile_sharded(raw, level, batch, &opts)
            .unwrap_or_else(|| bpc_codegen::compile_with(&func, batch, &opts))
            .map_err(|e| {
                let path = &program.model().source.path;
                Error::new(ErrorKind::Compile, format!("{path}: code generation failed: {}", e.0))
            })?;
        let internal = |m: String| Error::new(ErrorKind::Other, format!("{}: internal error: {m}", func.name));
        let layout = program.param_layout();
        let read = args_read(&func);
        let mut slots = Vec::with_capacity(func.args.len());
        let mut last = 0;
        for (i, a) in func.args.iter().enumerate() {
            let slot = match &a.kind {
                ArgKind::Input => Slot::Input(
                    program
                        .inputs()
                        .iter()
                        .position(|t| t.name == a.name)
                        .ok_or_else(|| internal(format!("input {} is not the program's", a.name)))?,
                ),
                ArgKind::Label { .. } => Slot::Label {
                    index: program
                        .labels()
                        .iter()
                        .position(|l| l.tensor.name == a.name)
                        .ok_or_else(|| internal(format!("label {} is not the program's", a.name)))?,
                    class: a.ty.dtype == DType::I32,
                    read: read[i],
                },
                ArgKind::Param { .. } => match (layout.range(&a.name), a.name.strip_prefix("dir.")) {
                    (Some(range), _) => {
                        if range.start < last {
                            return Err(internal("params out of declaration order".into()));
                        }
                        last = range.end;
                        let update = func.results.iter().any(|r| r.update == Some(ArgId(i as u32)));
                        Slot::Param { range, update }
                    }
                    (None, Some(p)) => Slot::Direction(
                        layout.range(p).ok_or_else(|| internal(format!("direction {} of no param", a.name)))?,
                    ),
                    (None, None) => return Err(internal(format!("param {} is not in the slab", a.name))),
                },
                ArgKind::Hyper if a.name == "lr" => Slot::Lr,
                ArgKind::Hyper | ArgKind::State => {
                    return Err(internal(format!("argument {} is an optimizer setting or state", a.name)));
                }
            };
            slots.push(slot);
        }
        let (mut sinks, mut scratch, mut out, mut loss, mut offset) = (Vec::new(), Vec::new(), Vec::new(), None, 0);
        for r in func.results.iter().filter(|r| r.update.is_none()) {
            let shape = func.shape(r.value);
            let len = shape.len(batch);
            let name = match outs {
                Outs::None => None,
                Outs::Named(n) => (r.name == n).then_some(n),
                Outs::Grads => r.name.strip_prefix("grad."),
            };
            match name {
                Some(n) => {
                    let spec = TensorSpec { name: n.to_string(), shape: shape.dims.clone(), batched: shape.batch };
                    out.push((spec, offset..offset + len));
                    sinks.push(Sink::Out(offset..offset + len));
                    offset += len;
                }
                None => {
                    if r.name == "loss" {
                        loss = Some(scratch.len());
                    }
                    scratch.push(len);
                    sinks.push(Sink::Scratch);
                }
            }
        }
        let labels_read = slots.iter().any(|s| matches!(s, Slot::Label { read: true, .. }));
        let has_direction = slots.iter().any(|s| matches!(s, Slot::Direction(_)));
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Ok(Native {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            compiled,
            func,
            slots,
            sinks,
            scratch,
            loss,
            out,
            out_len: offset,
            param_len: layout.len(),
            input_names: program.inputs().iter().map(|t| t.name.clone()).collect(),
            label_names: program.labels().iter().map(|l| l.tensor.name.clone()).collect(),
            labels_read,
            has_direction,
        })
    }

    pub(crate) fn workspace(&self) -> Workspace {
        let label_len = |class| {
            self.func
                .args
                .iter()
                .filter(|a| matches!(a.kind, ArgKind::Label { .. }) && (a.ty.dtype == DType::I32) == class)
                .map(|a| a.ty.shape.len(self.compiled.batch()))
                .max()
                .unwrap_or(0)
        };
        Workspace {
            owner: self.id,
            inner: self.compiled.workspace(),
            scratch: self.scratch.iter().map(|&n| vec![0.0; n]).collect(),
            unread_f32: vec![0.0; label_len(false)],
            unread_i32: vec![0; label_len(true)],
            args: Vec::with_capacity(self.slots.len()),
            results: Vec::with_capacity(self.sinks.len()),
        }
    }

    pub(crate) fn batch(&self) -> usize {
        self.compiled.batch()
    }

    pub(crate) fn func(&self) -> &Function {
        &self.func
    }

    pub(crate) fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    pub(crate) fn compile_time(&self) -> Duration {
        self.compiled.compile_time()
    }

    pub(crate) fn out_layout(&self) -> &[(TensorSpec, Range<usize>)] {
        &self.out
    }

    pub(crate) fn out_len(&self) -> usize {
        self.out_len
    }

    /// The `loss` of the last call with `ws` (NaN if the function has none).
    pub(crate) fn loss(&self, ws: &Workspace) -> f32 {
        self.loss.map_or(f32::NAN, |k| ws.scratch[k][0])
    }

    /// Checks everything a call is given before any code runs: the workspace, every buffer's
    /// length (with the minibatch arithmetic in the message), the label kinds, and that
    /// every class index is in `0..K` (O(B); an index outside would make the loss NaN and a
    /// train step would then write NaN into every param).
    fn check(&self, ws: &Workspace, params: usize, feed: &Feed<'_>, dir: usize, out: usize) -> Result<(), Error> {
        let name = &self.func.name;
        let fail = |m: String| Err(Error::new(ErrorKind::Call, format!("{name}: {m}")));
        if ws.owner != self.id {
            return fail("the workspace was made by another native function".into());
        }
        if params != self.param_len {
            return fail(format!("the param slab has {params} floats, the program's params have {}", self.param_len));
        }
        if feed.inputs.len() != self.input_names.len() {
            let (want, names) = (buffers(self.input_names.len(), "input"), self.input_names.join(", "));
            return fail(format!("expected {want} ({names}), got {}", feed.inputs.len()));
        }
        let unread = feed.labels.is_empty() && !self.labels_read;
        if feed.labels.len() != self.label_names.len() && !unread {
            let (want, names) = (buffers(self.label_names.len(), "label"), self.label_names.join(", "));
            return fail(format!("expected {want} ({names}), got {}", feed.labels.len()));
        }
        for (s, a) in self.slots.iter().zip(&self.func.args) {
            let got = match *s {
                Slot::Input(i) => feed.inputs[i].len(),
                Slot::Label { index, class, .. } => match feed.labels.get(index) {
                    None => continue,
                    Some(Label::Class(_)) if !class => {
                        return fail(format!("label {} is real: pass Label::Real", self.label_names[index]));
                    }
                    Some(Label::Real(_)) if class => {
                        return fail(format!("label {} is a class label: pass Label::Class", self.label_names[index]));
                    }
                    Some(Label::Real(y)) => y.len(),
                    Some(Label::Class(y)) => {
                        if y.len() == a.ty.shape.len(self.batch())
                            && let ArgKind::Label { classes: Some(k) } = a.kind
                            && let Some((i, v)) =
                                y.iter().enumerate().find(|(_, v)| !(0..k as i64).contains(&i64::from(**v)))
                        {
                            return fail(format!(
                                "label {}[{i}] is {v}, not a class of `label {} : class({k})` (0 to {}); \
                                 nothing was computed or updated",
                                a.name,
                                a.name,
                                k - 1
                            ));
                        }
                        y.len()
                    }
                },
                Slot::Param { .. } | Slot::Direction(_) | Slot::Lr => continue,
            };
            if got != a.ty.shape.len(self.batch()) {
                return fail(length_message(&a.name, &a.ty.shape, self.batch(), got));
            }
        }
        if self.has_direction && dir != self.param_len {
            return fail(format!("the direction has {dir} floats, the program's params have {}", self.param_len));
        }
        if out != self.out_len {
            let what: Vec<String> = self.out.iter().map(|(t, r)| format!("{} ({})", t.name, r.len())).collect();
            return fail(format!("the output buffer has {out} floats, expected {}: {}", self.out_len, what.join(", ")));
        }
        Ok(())
    }

    /// Runs the function: params from `params`, data from `feed`, the learning rate `lr`
    /// (train steps), the direction `dir` (HVP), results into `out` and the workspace.
    pub(crate) fn call(
        &self,
        ws: &mut Workspace,
        params: Slab<'_>,
        feed: &Feed<'_>,
        lr: f32,
        dir: &[f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        let n = match &params {
            Slab::Shared(s) => s.len(),
            Slab::Mut(s) => s.len(),
        };
        self.check(ws, n, feed, dir.len(), out.len())?;
        let Workspace { inner, scratch, unread_f32, unread_i32, args: arg_store, results: result_store, .. } = ws;
        let lr = [lr];
        let (shared, mut rest, mutable): (&[f32], &mut [f32], bool) = match params {
            Slab::Shared(s) => (s, &mut [], false),
            Slab::Mut(m) => (&[], m, true),
        };
        let mut consumed = 0;
        let mut args: Vec<Arg<'_>> = recycle(std::mem::take(arg_store));
        for slot in &self.slots {
            args.push(match slot {
                Slot::Input(i) => Arg::F32(feed.inputs[*i]),
                Slot::Label { index, class, .. } => match (feed.labels.get(*index), class) {
                    (Some(Label::Class(y)), _) => Arg::I32(y),
                    (Some(Label::Real(y)), _) => Arg::F32(y),
                    (None, true) => Arg::I32(unread_i32),
                    (None, false) => Arg::F32(unread_f32),
                },
                // Only train steps update params, and they are given a mutable slab.
                Slot::Param { range, .. } if !mutable => Arg::F32(&shared[range.clone()]),
                Slot::Param { range, update } => {
                    // A mutable slab (a train step): carved front to back, params in order.
                    let (_, tail) = std::mem::take(&mut rest).split_at_mut(range.start - consumed);
                    let (p, tail) = tail.split_at_mut(range.len());
                    rest = tail;
                    consumed = range.end;
                    if *update { Arg::F32Mut(p) } else { Arg::F32(p) }
                }
                Slot::Direction(range) => Arg::F32(&dir[range.clone()]),
                Slot::Lr => Arg::F32(&lr),
            });
        }
        let mut results: Vec<&mut [f32]> = recycle(std::mem::take(result_store));
        let (mut scratch, mut out, mut taken) = (scratch.iter_mut(), out, 0);
        for sink in &self.sinks {
            results.push(match sink {
                Sink::Scratch => scratch.next().expect("one scratch buffer per scratch result"),
                Sink::Out(range) => {
                    let (_, tail) = std::mem::take(&mut out).split_at_mut(range.start - taken);
                    let (r, tail) = tail.split_at_mut(range.len());
                    out = tail;
                    taken = range.end;
                    r
                }
            });
        }
        let status = self.compiled.run(inner, &mut args, &mut results);
        *arg_store = recycle(args);
        *result_store = recycle(results);
        Ok(status?)
    }
}

/// Refuses a minibatch size of 0 ([`ErrorKind::Call`]): native code is made for `B >= 1`.
pub(crate) fn check_batch(program: &str, batch: usize) -> Result<(), Error> {
    if batch == 0 {
        let m = format!("{program}: the minibatch size must be at least 1, got 0");
        return Err(Error::new(ErrorKind::Call, m));
    }
    Ok(())
}

/// `1 input buffer`, `2 input buffers`.
fn buffers(n: usize, what: &str) -> String {
    format!("{n} {what} buffer{}", if n == 1 { "" } else { "s" })
}

/// Why a buffer of `got` elements does not fit the argument `name` of shape `shape` at
/// minibatch size `batch`, with the arithmetic, and for a whole number of examples of
/// another count, what to do about it.
fn length_message(name: &str, shape: &bpc_ir::Shape, batch: usize, got: usize) -> String {
    let want = shape.len(batch);
    if !shape.batch {
        return format!(
            "argument {name} has {got} elements, expected {want} ({name}{:?}, not per example)",
            shape.dims
        );
    }
    let per = shape.example_len();
    let example = if shape.dims.is_empty() { "1 per example".to_string() } else { format!("{name}{:?}", shape.dims) };
    let mut m = format!("argument {name} has {got} elements, expected {want} (minibatch {batch} × {example})");
    if per > 0 && got > 0 && got.is_multiple_of(per) {
        let n = got / per;
        m += &format!("; {got} elements are {n} examples: compile a function for minibatch size {n}");
    }
    m
}

/// `read[i]`: some result depends on argument `i`.
fn args_read(func: &Function) -> Vec<bool> {
    let live = func.live_values();
    let mut read = vec![false; func.args.len()];
    for v in func.values() {
        if let Inst::Arg(id) = func.inst(v)
            && live[v.index()]
        {
            read[id.index()] = true;
        }
    }
    read
}

/// Reuses a vector's allocation for elements of another lifetime: emptied, then collected
/// in place (std keeps the buffer when the layouts match), so argument lists borrow fresh
/// buffers every call without allocating (as `bpc_train::runner` does).
fn recycle<A, B>(mut v: Vec<A>) -> Vec<B> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// The methods every native function has.
macro_rules! native_common {
    ($ty:ident) => {
        impl $ty {
            /// A workspace for calling this function from one thread (allocated here, once).
            pub fn workspace(&self) -> Workspace {
                self.native.workspace()
            }

            /// The minibatch size `B` the code was specialized for.
            pub fn batch(&self) -> usize {
                self.native.batch()
            }

            /// The optimized IR the code was compiled from (`Display` prints it).
            pub fn function(&self) -> &Function {
                self.native.func()
            }

            /// Kernel, GEMM and workspace counts of the native code.
            pub fn stats(&self) -> bpc_codegen::Stats {
                self.native.compiled().stats()
            }

            /// Time from optimized IR to callable code.
            pub fn compile_time(&self) -> Duration {
                self.native.compile_time()
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("function", &self.native.func().name)
                    .field("batch", &self.batch())
                    .field("stats", &self.stats())
                    .finish_non_exhaustive()
            }
        }
    };
}

/// The forward pass to the model's `output` (else its logits, else its loss), compiled for
/// one minibatch size. Made by [`Program::forward`].
///
/// The code is specialized for the minibatch size `B` it was made with ([`Forward::batch`]):
/// every call takes exactly `B` examples. For a data set whose size is not a multiple of
/// `B`, make a second `Forward` for the last, partial minibatch (or one for the whole set);
/// see [`TrainStep`] for the loop.
pub struct Forward {
    native: Native,
}

native_common!(Forward);

impl Forward {
    pub(crate) fn new(native: Native) -> Forward {
        Forward { native }
    }

    /// The result this function computes: its name and shape (per example if batched).
    pub fn output(&self) -> &TensorSpec {
        &self.native.out_layout()[0].0
    }

    /// Floats of the output buffer: `B × example_len` (or `example_len` if not batched).
    pub fn output_len(&self) -> usize {
        self.native.out_len()
    }

    /// Computes the output of `feed`'s `B` examples with the param slab `params` into `out`
    /// (`[B, shape...]` row-major).
    ///
    /// # Errors
    /// [`ErrorKind::Call`], before any code runs, for a `ws` of another function, a
    /// `params` slab of the wrong length, a wrong number of inputs (or labels, when the
    /// output reads them), a buffer of the wrong length (the message shows the minibatch
    /// arithmetic, e.g. `argument x has 32 elements, expected 64 (minibatch 16 × x[4])`),
    /// a class index outside `0..K`, an `out` of the wrong length.
    pub fn call(&self, ws: &mut Workspace, params: &[f32], feed: &Feed<'_>, out: &mut [f32]) -> Result<(), Error> {
        self.native.call(ws, Slab::Shared(params), feed, 0.0, &[], out)
    }
}

/// The loss and its gradient with respect to chosen names, compiled for one minibatch size.
/// Made by [`Program::value_and_grad`].
///
/// The code is specialized for the minibatch size `B` it was made with
/// ([`ValueAndGrad::batch`]): every call takes exactly `B` examples, and a buffer of another
/// length is refused ([`ErrorKind::Call`]). The last, partial minibatch of an epoch needs a
/// function of its own (or is dropped); see [`TrainStep`] for the loop.
pub struct ValueAndGrad {
    native: Native,
}

native_common!(ValueAndGrad);

impl ValueAndGrad {
    pub(crate) fn new(native: Native) -> ValueAndGrad {
        ValueAndGrad { native }
    }

    /// The layout of the gradient slab: one entry per name asked for, in that order, with
    /// its shape and its range in the slab. For the params (in declaration order) it is
    /// the layout of [`super::Params`].
    pub fn grads(&self) -> &[(TensorSpec, Range<usize>)] {
        self.native.out_layout()
    }

    /// Floats of the gradient slab.
    pub fn grad_len(&self) -> usize {
        self.native.out_len()
    }

    /// Computes the loss of `feed`'s `B` examples with the param slab `params`, and writes
    /// the gradient d loss / d name of every name asked for into `grads` (laid out as
    /// [`ValueAndGrad::grads`] says). Returns the loss.
    ///
    /// # Errors
    /// [`ErrorKind::Call`], before any code runs, as for [`Forward::call`] (labels are
    /// required), or a `grads` slab of the wrong length.
    pub fn call(&self, ws: &mut Workspace, params: &[f32], feed: &Feed<'_>, grads: &mut [f32]) -> Result<f32, Error> {
        self.native.call(ws, Slab::Shared(params), feed, 0.0, &[], grads)?;
        Ok(self.native.loss(ws))
    }
}

/// One SGD step on one minibatch, compiled for one minibatch size: forward, adjoint and
/// the update `p ← p − lr·∇p` fused into one native function. Made by
/// [`Program::train_step`].
///
/// The code is specialized for the minibatch size `B` it was made with
/// ([`TrainStep::batch`]): every call takes exactly `B` examples, and a buffer of another
/// length is refused ([`ErrorKind::Call`]). When the number of examples is not a multiple
/// of `B`, the last, partial minibatch needs a step compiled for its own size, or is
/// dropped:
///
/// ```
/// # use bpc::{Feed, Label, Options};
/// # let program = bpc::compile(
/// #     "input x[2]\nlabel y : class(3)\nparam W[3, 2] = 0\nloss cross_entropy(W @ x, y)\n",
/// #     &Options::default(),
/// # )?;
/// # let mut params = program.init_params(0)?;
/// let (x, y) = (vec![0.5f32; 10 * 2], vec![1i32; 10]); // 10 examples of x[2]
/// let step = program.train_step(4)?; // examples 0..4 and 4..8
/// let last = program.train_step(10 % 4)?; // examples 8..10 (or skip them)
/// let (mut ws, mut last_ws) = (step.workspace(), last.workspace());
/// for (xb, yb) in x.chunks(4 * 2).zip(y.chunks(4)) {
///     let (inputs, labels) = ([xb], [Label::Class(yb)]);
///     let feed = Feed::with_labels(&inputs, &labels);
///     match yb.len() {
///         4 => step.call(&mut ws, params.as_mut_slice(), &feed, 0.1)?,
///         _ => last.call(&mut last_ws, params.as_mut_slice(), &feed, 0.1)?,
///     };
/// }
/// # assert!(params.as_slice().iter().all(|p| p.is_finite() && *p != 0.0));
/// # Ok::<(), bpc::Error>(())
/// ```
pub struct TrainStep {
    native: Native,
}

native_common!(TrainStep);

impl TrainStep {
    pub(crate) fn new(native: Native) -> TrainStep {
        TrainStep { native }
    }

    /// Updates the param slab `params` in place by one SGD step of learning rate `lr` on
    /// `feed`'s `B` examples; returns the loss before the update.
    ///
    /// # Errors
    /// [`ErrorKind::Call`], before any code runs (`params` are then untouched), as for
    /// [`ValueAndGrad::call`].
    pub fn call(&self, ws: &mut Workspace, params: &mut [f32], feed: &Feed<'_>, lr: f32) -> Result<f32, Error> {
        self.native.call(ws, Slab::Mut(params), feed, lr, &[], &mut [])?;
        Ok(self.native.loss(ws))
    }
}

/// The Hessian–vector product of the loss with respect to the params, compiled for one
/// minibatch size. Made by [`Program::hvp`].
pub struct Hvp {
    native: Native,
}

native_common!(Hvp);

impl Hvp {
    pub(crate) fn new(native: Native) -> Hvp {
        Hvp { native }
    }

    /// Writes `H·v` into `out`, where `H` is the Hessian of the loss of `feed`'s `B`
    /// examples with respect to every param at the slab `params`, and `v` is `direction`;
    /// `direction` and `out` are laid out like the param slab. Returns the directional
    /// derivative `⟨∇loss, v⟩`.
    ///
    /// # Errors
    /// [`ErrorKind::Call`], before any code runs, as for [`ValueAndGrad::call`], or a
    /// `direction` or `out` of the wrong length.
    pub fn call(
        &self,
        ws: &mut Workspace,
        params: &[f32],
        feed: &Feed<'_>,
        direction: &[f32],
        out: &mut [f32],
    ) -> Result<f32, Error> {
        self.native.call(ws, Slab::Shared(params), feed, 0.0, direction, out)?;
        Ok(self.native.loss(ws))
    }
}
