//! # bpc-codegen: Cranelift JIT
//!
//! (Stub: the interface the other crates code against; being built.)

use std::time::Duration;

use bpc_ir::Function;

/// A caller buffer bound to one argument of a compiled function, in `Function::args` order.
pub enum Arg<'a> {
    /// Inputs, real labels, params that are only read, hyperparameters (`f32[]`: one float).
    F32(&'a [f32]),
    /// Class labels.
    I32(&'a [i32]),
    /// A param the function updates in place (a result with `update: Some(param)`).
    F32Mut(&'a mut [f32]),
}

/// Why a call was refused: a buffer of the wrong length or kind, a foreign workspace.
#[derive(Debug)]
pub struct CallError(pub String);

/// Why compilation failed.
#[derive(Debug)]
pub struct CodegenError(pub String);

/// Scratch memory for one thread's calls of one compiled function; allocated once.
pub struct Workspace {}

/// Native code for one function specialized for one minibatch size. `Send + Sync`.
pub struct Compiled {}

/// JIT-compiles `func` for minibatch size `batch`.
pub fn compile(func: &Function, batch: usize) -> Result<Compiled, CodegenError> {
    let _ = (func, batch);
    todo!("bpc-codegen")
}

impl Compiled {
    pub fn batch(&self) -> usize {
        todo!()
    }

    /// Source to callable code.
    pub fn compile_time(&self) -> Duration {
        todo!()
    }

    pub fn workspace(&self) -> Workspace {
        todo!()
    }

    /// Runs the function: `args` one per `Function::args` entry, `results` one buffer per
    /// result that is not an in-place update, in `Function::results` order. Checks every
    /// length; never allocates.
    pub fn run(&self, ws: &mut Workspace, args: &mut [Arg<'_>], results: &mut [&mut [f32]]) -> Result<(), CallError> {
        let _ = (ws, args, results);
        todo!()
    }
}
