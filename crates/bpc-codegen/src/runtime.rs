//! Compiled functions and their workspaces: the calling side.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bpc_ir::DType;
use cranelift_jit::JITModule;

use crate::gemm::GemmDesc;
use crate::jit::EntryFn;
use crate::{Arg, CallError, CodegenError, Stats};

/// One caller buffer a compiled function expects: an argument or a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferInfo {
    /// The argument's or result's name in the IR.
    pub name: String,
    pub dtype: DType,
    /// Elements at the compiled batch size.
    pub len: usize,
    /// An argument the function overwrites (a param with an update result): pass it as
    /// [`Arg::F32Mut`].
    pub updated: bool,
}

/// Native code for one function specialized for one minibatch size.
///
/// Immutable once built: `run` takes `&self`, so one `Compiled` may be called from many
/// threads at once, each with its own [`Workspace`].
pub struct Compiled {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) batch: usize,
    pub(crate) compile_time: Duration,
    pub(crate) args: Vec<BufferInfo>,
    pub(crate) results: Vec<BufferInfo>,
    pub(crate) stats: Stats,
    pub(crate) code: Code,
}

/// What `run` calls.
pub(crate) enum Code {
    /// One entry function.
    Jit(Jit),
    /// Data-parallel shards and their combine (`shard.rs`).
    Sharded(Box<crate::shard::Sharding>),
}

/// A JIT module and its entry. The module is only kept to free the code on drop (behind a
/// `Mutex` because `JITModule` is `Send` but not `Sync`; it is never locked while code runs).
pub(crate) struct Jit {
    pub(crate) clif: Vec<(String, String)>,
    pub(crate) entry: EntryFn,
    /// GEMM descriptors, addressed by the generated code: must outlive it.
    pub(crate) _gemms: Box<[GemmDesc]>,
    /// Descriptors of the kernels split over threads, addressed by the generated code.
    pub(crate) _pars: Box<[crate::par::ParDesc]>,
    pub(crate) module: Box<Mutex<Option<JITModule>>>,
}

/// A fresh identity for a `Compiled`, so a workspace can't be used with another one.
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct Line([u8; 64]);

/// Scratch memory for one thread's calls of one compiled function: the arena holding every
/// intermediate value (64-byte-aligned regions) and the pointer array passed to the entry.
/// Allocated once by [`Compiled::workspace`]; `run` does not allocate.
pub struct Workspace {
    owner: u64,
    pub(crate) mem: Vec<Line>,
    pub(crate) ptrs: Vec<usize>,
    /// Packing memory of the GEMM library, grown by the first call that needs it.
    gemm: gemmkit::Workspace,
    /// A sharded function's: one workspace per shard, then the combine's.
    pub(crate) inner: Vec<Workspace>,
}

impl Workspace {
    /// Calls `entry` with this workspace's pointer array, arena and GEMM packing memory.
    ///
    /// # Safety
    /// `entry` belongs to the function this workspace was made for, and `ptrs` holds valid
    /// pointers to buffers of the sizes that function was compiled for.
    pub(crate) unsafe fn enter(&mut self, entry: EntryFn) {
        // SAFETY: the caller's contract.
        unsafe { entry(self.ptrs.as_ptr(), self.mem.as_mut_ptr().cast::<u8>(), &mut self.gemm) }
    }
}

impl fmt::Debug for Workspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workspace").field("owner", &self.owner).field("bytes", &(self.mem.len() * 64)).finish()
    }
}

impl Compiled {
    /// The compiled function's name (`Function::name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The minibatch size the code was specialized for.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Time from IR to callable code (planning, Cranelift, finalizing).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// A workspace for calling this function from one thread. Its pages are touched here, so
    /// the first call does not pay for page faults. Panics if the memory cannot be allocated
    /// ([`Compiled::try_workspace`] returns an error instead).
    pub fn workspace(&self) -> Workspace {
        self.try_workspace().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Compiled::workspace`], or an error saying how many bytes could not be allocated (a
    /// minibatch too large for this machine's memory).
    pub fn try_workspace(&self) -> Result<Workspace, CodegenError> {
        let (bytes, inner) = match &self.code {
            Code::Jit(_) => (self.stats.workspace_bytes, Vec::new()),
            Code::Sharded(s) => (s.partial_bytes(), s.workspaces()?),
        };
        let lines = bytes.div_ceil(64).max(1);
        let mut mem = Vec::new();
        mem.try_reserve_exact(lines)
            .map_err(|_| CodegenError(format!("cannot allocate the {bytes} bytes of workspace of {}", self.name())))?;
        mem.resize(lines, Line([0; 64]));
        for line in mem.iter_mut().step_by(4096 / 64) {
            // Volatile: a zero stored into zeroed memory is otherwise elided.
            // SAFETY: `line` is a valid, exclusive reference.
            unsafe { std::ptr::write_volatile(&mut line.0[0], 0) };
        }
        let ptrs = vec![0; self.args.len() + self.results.len()];
        Ok(Workspace { owner: self.id, mem, ptrs, gemm: gemmkit::Workspace::new(), inner })
    }

    /// The arguments, in `Function::args` order.
    pub fn args(&self) -> &[BufferInfo] {
        &self.args
    }

    /// The results a caller passes buffers for (those that are not in-place updates), in
    /// `Function::results` order.
    pub fn results(&self) -> &[BufferInfo] {
        &self.results
    }

    /// Kernel, GEMM and workspace counts.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// `(function name, CLIF text)` of every kernel and the entry, if compiled with
    /// `Options::keep_clif`; empty otherwise.
    pub fn clif(&self) -> &[(String, String)] {
        match &self.code {
            Code::Jit(j) => &j.clif,
            Code::Sharded(s) => &s.clif,
        }
    }

    /// Runs the function: `args` one per `Function::args` entry, `results` one buffer per
    /// result that is not an in-place update, in `Function::results` order. Update results
    /// are written over their param's [`Arg::F32Mut`] buffer. Checks every buffer's kind and
    /// length against the types at the compiled batch size, and that `ws` came from this
    /// function. Allocates nothing, except that the first call with a workspace grows its
    /// GEMM packing memory once (and each pool thread's, the first time it runs a block of a
    /// split product), and that a product or kernel split over threads, when `run` is called
    /// from outside rayon's pool, goes through rayon's shared queue, which allocates one block
    /// per 63 such splits. Called from a rayon worker (as `bpc train` does) it allocates nothing.
    ///
    /// Inlined into the caller (the messages are made out of line): a scalar call is a few
    /// dozen ns, and the call and its prologue were a sixth of it.
    #[inline]
    pub fn run(&self, ws: &mut Workspace, args: &mut [Arg<'_>], results: &mut [&mut [f32]]) -> Result<(), CallError> {
        if ws.owner != self.id || args.len() != self.args.len() || results.len() != self.results.len() {
            return Err(self.refusal(ws, args, results));
        }
        // A scalar call costs a few dozen ns, so the checks are one pass without early exits
        // that stores every pointer and folds the verdicts into one flag; the message is made
        // by `refusal` only when the flag says so.
        let (arg_ptrs, result_ptrs) = ws.ptrs.split_at_mut(self.args.len());
        let mut ok = true;
        for ((info, a), slot) in self.args.iter().zip(args.iter_mut()).zip(arg_ptrs) {
            let (len, kind_ok) = a.check(info);
            *slot = match a {
                Arg::F32(s) => s.as_ptr() as usize,
                Arg::F32Mut(s) => s.as_mut_ptr() as usize,
                Arg::I32(s) => s.as_ptr() as usize,
            };
            ok &= kind_ok & (len == info.len);
        }
        for ((info, r), slot) in self.results.iter().zip(results.iter_mut()).zip(result_ptrs) {
            *slot = r.as_mut_ptr() as usize;
            ok &= r.len() == info.len;
        }
        if !ok {
            return Err(self.refusal(ws, args, results));
        }
        // SAFETY: every buffer was checked to hold exactly the elements its type has at the
        // compiled batch size, and the kernels only address elements inside those types;
        // the workspace is this function's own (its size was checked by identity), so its
        // pointer array has one slot per argument and result, all written above. Results
        // are distinct `&mut` buffers; an updated param is the caller's `&mut`.
        match &self.code {
            Code::Jit(j) => unsafe { ws.enter(j.entry) },
            // SAFETY: as above; the shards address disjoint rows of the batched buffers.
            Code::Sharded(s) => unsafe { s.run(ws) },
        }
        Ok(())
    }

    /// Why `run` refuses a call: the first failed check, in argument order.
    #[cold]
    #[inline(never)]
    fn refusal(&self, ws: &Workspace, args: &[Arg<'_>], results: &[&mut [f32]]) -> CallError {
        let m = if ws.owner != self.id {
            "the workspace was made by another compiled function".to_string()
        } else if args.len() != self.args.len() {
            format!("expected {} arguments, got {}", self.args.len(), args.len())
        } else if results.len() != self.results.len() {
            format!("expected {} result buffers, got {}", self.results.len(), results.len())
        } else {
            let arg = self.args.iter().zip(args).find_map(|(info, a)| {
                let (len, kind_ok) = a.check(info);
                if !kind_ok {
                    let want = match (info.dtype, info.updated) {
                        (DType::I32, _) => "Arg::I32",
                        (DType::F32, true) => "Arg::F32Mut (it is updated in place)",
                        (DType::F32, false) => "Arg::F32 or Arg::F32Mut",
                    };
                    Some(format!("argument {} must be {want}, got {}", info.name, a.kind()))
                } else {
                    (len != info.len)
                        .then(|| format!("argument {} has {len} elements, expected {}", info.name, info.len))
                }
            });
            let short = self.results.iter().zip(results).find(|(info, r)| r.len() != info.len);
            let result =
                short.map(|(info, r)| format!("result {} has {} elements, expected {}", info.name, r.len(), info.len));
            arg.or(result).expect("refusal called for a call that passes every check")
        };
        CallError(format!("{}: {m}", self.name))
    }
}

impl Arg<'_> {
    /// The buffer's length, and whether its kind may be passed for `info` (an updated param
    /// must be `F32Mut`, the dtype must match): the one rule `run` and `refusal` share.
    #[inline]
    fn check(&self, info: &BufferInfo) -> (usize, bool) {
        match self {
            Arg::F32(s) => (s.len(), info.dtype == DType::F32 && !info.updated),
            Arg::F32Mut(s) => (s.len(), info.dtype == DType::F32),
            Arg::I32(s) => (s.len(), info.dtype == DType::I32),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Arg::F32(_) => "Arg::F32",
            Arg::I32(_) => "Arg::I32",
            Arg::F32Mut(_) => "Arg::F32Mut",
        }
    }
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("name", &self.name)
            .field("batch", &self.batch)
            .field("compile_time", &self.compile_time)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Drop for Jit {
    fn drop(&mut self) {
        let slot = self.module.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(module) = slot.take() {
            // SAFETY: `&mut self` means no call is running, and the code is unreachable
            // after the `Compiled` owning this is gone.
            unsafe { module.free_memory() };
        }
    }
}
