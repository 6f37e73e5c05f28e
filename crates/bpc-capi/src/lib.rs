//! # bpc-capi: the C ABI of bpc
//!
//! A C or C++ program compiles a `.bp` model from source text, asks for its inputs' and
//! params' names and shapes, compiles the value and gradient of its loss for one minibatch
//! size, and calls it on its own `float` buffers. The header `include/bpc.h` is generated
//! from this file by cbindgen (`tests/header.rs` keeps it up to date); `examples/c/grad.c`
//! is a complete program.
//!
//! Invariants:
//!
//! - **No panic crosses the boundary.** Every function runs inside `catch_unwind`; a panic
//!   (a bug in bpc) becomes an error like any other.
//! - **Every pointer is checked.** A NULL handle, a NULL buffer with a non-zero length, a
//!   count that does not match the program: an error, never a crash. Buffers that are not
//!   NULL must hold the length given with them (C cannot check that).
//! - **Errors** return `NULL` or [`BPC_ERROR`] and leave a message on the calling thread,
//!   read with [`bpc_last_error`] (program errors with `file:line:column` and a caret).
//! - **Threads.** A `BpcProgram` and a `BpcValueAndGrad` are immutable and may be used from
//!   many threads at once; each thread brings its own `BpcWorkspace`.
//! - **No allocation per call** of [`bpc_value_and_grad_call`] after the first with a
//!   workspace: the buffer lists live in the workspace.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

use bpc::{Feed, Label, LabelKind, OptLevel, Options, Program, ValueAndGrad, Workspace};

/// Returned by functions that succeed.
pub const BPC_OK: i32 = 0;
/// Returned by functions that fail; [`bpc_last_error`] says why.
pub const BPC_ERROR: i32 = -1;

/// A compiled model: its source, its IR and its declarations. Free with
/// [`bpc_program_free`].
pub struct BpcProgram {
    program: Program,
    inputs: Vec<Named>,
    params: Vec<Named>,
    labels: Vec<Named>,
}

/// A name and a shape, kept as C sees them.
struct Named {
    name: CString,
    shape: Vec<usize>,
}

/// The value and gradient of a program's loss, compiled for one minibatch size. Free with
/// [`bpc_value_and_grad_free`].
pub struct BpcValueAndGrad {
    vg: ValueAndGrad,
    grads: Vec<(Named, usize, usize)>,
    labels: Vec<LabelKind>,
}

/// Scratch memory for calls of one value-and-grad function from one thread. Free with
/// [`bpc_workspace_free`].
pub struct BpcWorkspace {
    ws: Workspace,
    inputs: Vec<&'static [f32]>,
    labels: Vec<Label<'static>>,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// Runs `f`, turning an error or a panic into `fail` and the thread's last error.
fn guard<T>(fail: T, f: impl FnOnce() -> Result<T, String>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(message)) => {
            set_error(&message);
            fail
        }
        Err(panic) => {
            set_error(&format!("internal error (a bug in bpc): {}", panic_text(&*panic)));
            fail
        }
    }
}

fn panic_text(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(String::as_str)).unwrap_or("panic")
}

/// The text of a NUL-terminated string argument.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string.
unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, String> {
    if s.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: not NULL, NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(s) }.to_str().map_err(|_| format!("{what} is not UTF-8"))
}

/// `len` elements at `p` (NULL is the empty slice when `len` is 0).
///
/// # Safety
/// `p` is NULL or points to `len` initialized elements that outlive `'a`.
unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], String> {
    match (p.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(format!("{what} is NULL but its length is {len}")),
        // SAFETY: the caller's contract.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(p, len) }),
    }
}

/// [`slice`] for element `i` of the array `what` (the name is only formatted on error).
///
/// # Safety
/// As [`slice`].
unsafe fn item<'a, T>(p: *const T, len: usize, what: &str, i: usize) -> Result<&'a [T], String> {
    if p.is_null() && len > 0 {
        return Err(format!("{what}[{i}] is NULL but its length is {len}"));
    }
    // SAFETY: the caller's contract.
    unsafe { slice(p, len, what) }
}

/// [`slice`], mutable.
///
/// # Safety
/// As [`slice`], and nothing else accesses the elements during `'a`.
unsafe fn slice_mut<'a, T>(p: *mut T, len: usize, what: &str) -> Result<&'a mut [T], String> {
    match (p.is_null(), len) {
        (true, 0) => Ok(&mut []),
        (true, _) => Err(format!("{what} is NULL but its length is {len}")),
        // SAFETY: the caller's contract.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts_mut(p, len) }),
    }
}

/// The handle behind `p`.
///
/// # Safety
/// `p` is NULL or a live handle of this library.
unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, String> {
    // SAFETY: the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| format!("{what} is NULL"))
}

fn named(name: &str, shape: &[usize]) -> Named {
    Named { name: CString::new(name).unwrap_or_default(), shape: shape.to_vec() }
}

/// The message of the last failed call on this thread (empty if none failed). The text is
/// valid until the next failing call on this thread; copy it to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn bpc_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Compiles the model `source` (the `.bp` language, NUL-terminated UTF-8). `path` names the
/// source in diagnostics (NULL: `model.bp`). `opt_level` is 0, 1 or 2 (`-O0`..`-O2`);
/// `threads` caps the threads of large matrix products (0: all cores). Returns NULL on
/// error (a program error's message shows the line and a caret).
///
/// # Safety
/// `source` and `path` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_compile(
    source: *const c_char,
    path: *const c_char,
    opt_level: i32,
    threads: usize,
) -> *mut BpcProgram {
    guard(ptr::null_mut(), || {
        // SAFETY: the caller's contract.
        let text = unsafe { self::text(source, "source") }?;
        let path = if path.is_null() { "model.bp" } else { unsafe { self::text(path, "path") }? };
        let opt_level = match opt_level {
            0 => OptLevel::O0,
            1 => OptLevel::O1,
            2 => OptLevel::O2,
            n => return Err(format!("opt_level must be 0, 1 or 2, not {n}")),
        };
        let program = Program::from_source(path, text, &Options { opt_level, threads }).map_err(|e| e.to_string())?;
        let inputs = program.inputs().iter().map(|t| named(&t.name, &t.shape)).collect();
        let params = program.params().iter().map(|t| named(&t.name, &t.shape)).collect();
        let labels = program.labels().iter().map(|l| named(&l.tensor.name, &l.tensor.shape)).collect();
        Ok(Box::into_raw(Box::new(BpcProgram { program, inputs, params, labels })))
    })
}

/// Frees a program (NULL is ignored). Functions made from it stay valid.
///
/// # Safety
/// `program` is NULL or a live handle from [`bpc_compile`], not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_free(program: *mut BpcProgram) {
    if !program.is_null() {
        // SAFETY: made by `Box::into_raw` in `bpc_compile`; the caller gives it up.
        guard((), || {
            drop(unsafe { Box::from_raw(program) });
            Ok(())
        });
    }
}

/// Which declarations a query is about.
#[derive(Clone, Copy)]
enum Decl {
    Input,
    Param,
    Label,
}

fn decls(p: &BpcProgram, kind: Decl) -> &[Named] {
    match kind {
        Decl::Input => &p.inputs,
        Decl::Param => &p.params,
        Decl::Label => &p.labels,
    }
}

/// # Safety
/// `p` is NULL or a live program handle.
unsafe fn count(p: *const BpcProgram, kind: Decl) -> usize {
    guard(0, || Ok(decls(unsafe { handle(p, "program") }?, kind).len()))
}

/// # Safety
/// `p` is NULL or a live program handle.
unsafe fn decl<T>(p: *const BpcProgram, kind: Decl, i: usize, fail: T, f: impl FnOnce(&Named) -> T) -> T {
    guard(fail, || {
        let list = decls(unsafe { handle(p, "program") }?, kind);
        let n = list.get(i).ok_or_else(|| format!("index {i} is out of range (there are {})", list.len()))?;
        Ok(f(n))
    })
}

/// The number of `input` declarations (0 if `program` is NULL).
///
/// # Safety
/// `program` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_input_count(program: *const BpcProgram) -> usize {
    unsafe { count(program, Decl::Input) }
}

/// The name of input `i` (declaration order), valid while the program lives; NULL if out
/// of range.
///
/// # Safety
/// `program` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_input_name(program: *const BpcProgram, i: usize) -> *const c_char {
    unsafe { decl(program, Decl::Input, i, ptr::null(), |n| n.name.as_ptr()) }
}

/// The rank of input `i`'s per-example shape (0 for a scalar, and if out of range).
///
/// # Safety
/// `program` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_input_rank(program: *const BpcProgram, i: usize) -> usize {
    unsafe { decl(program, Decl::Input, i, 0, |n| n.shape.len()) }
}

/// The per-example shape of input `i` (rank elements; a minibatch of B examples holds
/// `B × product` floats, row-major), valid while the program lives; NULL if out of range.
///
/// # Safety
/// `program` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_input_shape(program: *const BpcProgram, i: usize) -> *const usize {
    unsafe { decl(program, Decl::Input, i, ptr::null(), |n| n.shape.as_ptr()) }
}

/// The number of `label` declarations.
///
/// # Safety
/// `program` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_label_count(program: *const BpcProgram) -> usize {
    unsafe { count(program, Decl::Label) }
}

/// The name of label `i`; NULL if out of range.
///
/// # Safety
/// `program` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_label_name(program: *const BpcProgram, i: usize) -> *const c_char {
    unsafe { decl(program, Decl::Label, i, ptr::null(), |n| n.name.as_ptr()) }
}

/// The number of classes of label `i` (its buffer holds `int32_t` class indices), or 0 for
/// a real label (its buffer holds `float`s) and if out of range.
///
/// # Safety
/// `program` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_label_classes(program: *const BpcProgram, i: usize) -> usize {
    guard(0, || {
        let p = unsafe { handle(program, "program") }?;
        Ok(match p.program.labels().get(i).map(|l| l.kind) {
            Some(LabelKind::Class(k)) => k,
            Some(LabelKind::Real) | None => 0,
        })
    })
}

/// The number of `param` declarations.
///
/// # Safety
/// `program` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_param_count(program: *const BpcProgram) -> usize {
    unsafe { count(program, Decl::Param) }
}

/// The name of param `i` (declaration order: its place in the param slab); NULL if out of
/// range.
///
/// # Safety
/// `program` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_param_name(program: *const BpcProgram, i: usize) -> *const c_char {
    unsafe { decl(program, Decl::Param, i, ptr::null(), |n| n.name.as_ptr()) }
}

/// The rank of param `i`'s shape.
///
/// # Safety
/// `program` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_param_rank(program: *const BpcProgram, i: usize) -> usize {
    unsafe { decl(program, Decl::Param, i, 0, |n| n.shape.len()) }
}

/// The shape of param `i` (rank elements), valid while the program lives; NULL if out of
/// range.
///
/// # Safety
/// `program` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_param_shape(program: *const BpcProgram, i: usize) -> *const usize {
    unsafe { decl(program, Decl::Param, i, ptr::null(), |n| n.shape.as_ptr()) }
}

/// Floats in the param slab: every param's elements, in declaration order, row-major.
///
/// # Safety
/// `program` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_param_len(program: *const BpcProgram) -> usize {
    guard(0, || Ok(unsafe { handle(program, "program") }?.program.param_len()))
}

/// Fills `params` (`len` floats, [`bpc_program_param_len`]) from the params' initializers,
/// each from its own random stream of `seed`.
///
/// # Safety
/// `program` is NULL or a live handle; `params` is NULL or points to `len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_program_init_params(
    program: *const BpcProgram,
    seed: u64,
    params: *mut f32,
    len: usize,
) -> i32 {
    guard(BPC_ERROR, || {
        let p = unsafe { handle(program, "program") }?;
        let out = unsafe { slice_mut(params, len, "params") }?;
        let init = p.program.init_params(seed).map_err(|e| e.to_string())?;
        if out.len() != init.len() {
            return Err(format!("params has {} floats, the program's params have {}", out.len(), init.len()));
        }
        out.copy_from_slice(init.as_slice());
        Ok(BPC_OK)
    })
}

/// Compiles the value of the loss and its gradient with respect to the `n_wrt` names `wrt`
/// (inputs, real labels, params or bindings; `wrt` NULL and `n_wrt` 0: every param in
/// declaration order) for minibatches of `batch` examples. Returns NULL on error (an
/// unknown name, a class label, a batch of 0).
///
/// # Safety
/// `program` is NULL or a live handle; `wrt` is NULL or points to `n_wrt` NUL-terminated
/// strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_value_and_grad(
    program: *const BpcProgram,
    wrt: *const *const c_char,
    n_wrt: usize,
    batch: usize,
) -> *mut BpcValueAndGrad {
    guard(ptr::null_mut(), || {
        let p = &unsafe { handle(program, "program") }?.program;
        let names: Vec<&str> = if wrt.is_null() && n_wrt == 0 {
            p.param_names()
        } else {
            let ptrs = unsafe { slice(wrt, n_wrt, "wrt") }?;
            ptrs.iter().enumerate().map(|(i, &s)| unsafe { text(s, &format!("wrt[{i}]")) }).collect::<Result<_, _>>()?
        };
        let vg = p.value_and_grad(&names, batch).map_err(|e| e.to_string())?;
        let grads = vg.grads().iter().map(|(t, r)| (named(&t.name, &t.shape), r.start, r.len())).collect();
        let labels = p.labels().iter().map(|l| l.kind).collect();
        Ok(Box::into_raw(Box::new(BpcValueAndGrad { vg, grads, labels })))
    })
}

/// Frees a value-and-grad function (NULL is ignored); free its workspaces first.
///
/// # Safety
/// `vg` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_value_and_grad_free(vg: *mut BpcValueAndGrad) {
    if !vg.is_null() {
        // SAFETY: made by `Box::into_raw` in `bpc_value_and_grad`.
        guard((), || {
            drop(unsafe { Box::from_raw(vg) });
            Ok(())
        });
    }
}

/// Floats of the gradient buffer: the gradients in `wrt` order, each of its name's
/// elements (`batch ×` per-example elements for a per-example name).
///
/// # Safety
/// `vg` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_value_and_grad_grad_len(vg: *const BpcValueAndGrad) -> usize {
    guard(0, || Ok(unsafe { handle(vg, "value_and_grad") }?.vg.grad_len()))
}

/// Where the gradient with respect to the `i`-th name starts in the gradient buffer (0 if
/// out of range).
///
/// # Safety
/// `vg` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_value_and_grad_grad_offset(vg: *const BpcValueAndGrad, i: usize) -> usize {
    guard(0, || Ok(unsafe { handle(vg, "value_and_grad") }?.grads.get(i).map_or(0, |g| g.1)))
}

/// The name of the `i`-th gradient, valid while `vg` lives; NULL if out of range.
///
/// # Safety
/// `vg` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_value_and_grad_grad_name(vg: *const BpcValueAndGrad, i: usize) -> *const c_char {
    guard(ptr::null(), || {
        Ok(unsafe { handle(vg, "value_and_grad") }?.grads.get(i).map_or(ptr::null(), |g| g.0.name.as_ptr()))
    })
}

/// A workspace for calling `vg` from one thread; NULL on error.
///
/// # Safety
/// `vg` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_workspace_new(vg: *const BpcValueAndGrad) -> *mut BpcWorkspace {
    guard(ptr::null_mut(), || {
        let v = unsafe { handle(vg, "value_and_grad") }?;
        let ws = BpcWorkspace { ws: v.vg.workspace(), inputs: Vec::new(), labels: Vec::new() };
        Ok(Box::into_raw(Box::new(ws)))
    })
}

/// Frees a workspace (NULL is ignored).
///
/// # Safety
/// `ws` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_workspace_free(ws: *mut BpcWorkspace) {
    if !ws.is_null() {
        // SAFETY: made by `Box::into_raw` in `bpc_workspace_new`.
        guard((), || {
            drop(unsafe { Box::from_raw(ws) });
            Ok(())
        });
    }
}

/// Computes the loss of one minibatch and its gradients.
///
/// - `params`: the param slab, `params_len` floats ([`bpc_program_param_len`]).
/// - `inputs[i]`: input `i`'s minibatch, `input_lens[i]` floats (`batch ×` its per-example
///   elements, row-major), for the `n_inputs` inputs in declaration order.
/// - `labels[i]`: label `i`'s minibatch, `label_lens[i]` elements: `int32_t` class indices
///   in `0..K` for a class label of K classes, else `float`s ([`bpc_program_label_classes`]);
///   `n_labels` is the number of labels (or 0 when the loss does not read them).
/// - `loss`: receives the loss (the mean over the minibatch); `grads`: receives the
///   gradients, `grads_len` floats ([`bpc_value_and_grad_grad_len`]).
///
/// Returns [`BPC_OK`], or [`BPC_ERROR`] (nothing computed, `grads` untouched) for a NULL
/// handle, a count or a length that does not match, a class index outside `0..K` (the error
/// names the label, the example and the value), or a workspace of another function.
///
/// # Safety
/// Handles are NULL or live; every non-NULL pointer points to as many elements as its
/// length says; `ws` is not used by another call at the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bpc_value_and_grad_call(
    vg: *const BpcValueAndGrad,
    ws: *mut BpcWorkspace,
    params: *const f32,
    params_len: usize,
    inputs: *const *const f32,
    input_lens: *const usize,
    n_inputs: usize,
    labels: *const *const c_void,
    label_lens: *const usize,
    n_labels: usize,
    loss: *mut f32,
    grads: *mut f32,
    grads_len: usize,
) -> i32 {
    guard(BPC_ERROR, || {
        let v = unsafe { handle(vg, "value_and_grad") }?;
        // SAFETY: the caller's contract: a live workspace used by this call only.
        let w = unsafe { ws.as_mut() }.ok_or("workspace is NULL")?;
        let loss = unsafe { loss.as_mut() }.ok_or("loss is NULL")?;
        let params = unsafe { slice(params, params_len, "params") }?;
        let grads = unsafe { slice_mut(grads, grads_len, "grads") }?;
        let input_ptrs = unsafe { slice(inputs, n_inputs, "inputs") }?;
        let input_lens = unsafe { slice(input_lens, n_inputs, "input_lens") }?;
        let label_ptrs = unsafe { slice(labels, n_labels, "labels") }?;
        let label_lens = unsafe { slice(label_lens, n_labels, "label_lens") }?;
        let kinds = if n_labels == 0 { &[][..] } else { &v.labels[..] };
        if n_labels != kinds.len() {
            return Err(format!("expected {} labels, got {n_labels}", v.labels.len()));
        }
        let BpcWorkspace { ws, inputs: input_store, labels: label_store } = w;
        let mut feed_inputs: Vec<&[f32]> = recycle(std::mem::take(input_store));
        for (i, (&p, &n)) in input_ptrs.iter().zip(input_lens).enumerate() {
            feed_inputs.push(unsafe { item(p, n, "inputs", i) }?);
        }
        let mut feed_labels: Vec<Label<'_>> = recycle(std::mem::take(label_store));
        for (i, ((&p, &n), kind)) in label_ptrs.iter().zip(label_lens).zip(kinds).enumerate() {
            feed_labels.push(match kind {
                LabelKind::Class(_) => Label::Class(unsafe { item(p.cast::<i32>(), n, "labels", i) }?),
                LabelKind::Real => Label::Real(unsafe { item(p.cast::<f32>(), n, "labels", i) }?),
            });
        }
        let result = v.vg.call(ws, params, &Feed::with_labels(&feed_inputs, &feed_labels), grads);
        *input_store = recycle(feed_inputs);
        *label_store = recycle(feed_labels);
        *loss = result.map_err(|e| e.to_string())?;
        Ok(BPC_OK)
    })
}

/// Reuses a vector's allocation for elements of another lifetime (emptied, then collected
/// in place), so the buffer lists of a call need no allocation.
fn recycle<A, B>(mut v: Vec<A>) -> Vec<B> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}
