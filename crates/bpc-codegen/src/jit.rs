//! The JIT module: ISA setup, one Cranelift function per distinct kernel, and the entry.
//!
//! The entry function `extern "C" fn(ptrs: *const *mut u8, ws: *mut u8, gemm: *mut _)`
//! receives one pointer per argument then per non-update result, the arena base and the
//! calling workspace's GEMM packing memory. It runs the
//! plan's steps in order: each kernel is called with its operand addresses (a base plus a
//! constant offset), each product calls [`bpc_gemm`](crate::gemm::bpc_gemm). Kernels over a
//! few dozen elements are emitted inline instead (a call costs about as much as their loop).

use std::collections::HashMap;
use std::sync::Arc;

use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{
    AbiParam, FuncRef, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind, UserFuncName, Value,
};
use cranelift_codegen::isa::{TargetFrontendConfig, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};

use crate::CodegenError;
use crate::emit::emit_kernel;
use crate::gemm::{GemmDesc, symbols};
use crate::kernel::Kernel;
use crate::math::Em;
use crate::par::{BlockFn, Cut, MAX_OPERANDS, ParDesc, block_kernel, bpc_par};
use crate::plan::{Base, Plan, Ptr, Step};

/// The compiled entry point: argument and result pointers, the arena, the GEMM workspace.
pub(crate) type EntryFn = unsafe extern "C" fn(*const usize, *mut u8, *mut gemmkit::Workspace);

/// A finalized module with its entry point, the descriptors of its kernels split over
/// threads (addressed by the entry) and (optionally) the CLIF text of each function.
pub(crate) struct Jitted {
    pub module: JITModule,
    pub entry: EntryFn,
    pub pars: Box<[ParDesc]>,
    pub clif: Vec<(String, String)>,
    /// Call sites of the row product (`outer::bpc_row_product`) in the generated code: one
    /// per emission of a kernel whose dot product it computes (a split kernel's block
    /// functions, and a fused rows kernel's row pairs, emit it more than once).
    pub row_products: usize,
}

fn err(what: &str, e: impl std::fmt::Debug) -> CodegenError {
    CodegenError(format!("{what}: {e:?}"))
}

/// The host ISA with every CPU feature detected (so `fma` and SSE4.1 rounding are real
/// instructions, not libcalls) and `opt_level=speed`.
pub(crate) fn host_isa() -> Result<Arc<dyn TargetIsa>, CodegenError> {
    let mut flags = settings::builder();
    for (k, v) in [("opt_level", "speed"), ("is_pic", "false"), ("use_colocated_libcalls", "false")] {
        flags.set(k, v).map_err(|e| err("cranelift flag", e))?;
    }
    let builder = cranelift_native::builder().map_err(|e| err("host ISA", e))?;
    builder.finish(settings::Flags::new(flags)).map_err(|e| err("host ISA", e))
}

/// Whether `fma` lowers to one instruction on this ISA.
fn has_fma(isa: &dyn TargetIsa) -> bool {
    let flag = |name: &str| isa.isa_flags().iter().any(|f| f.name == name && f.as_bool() == Some(true));
    match isa.name() {
        "x64" => flag("has_fma") && flag("has_avx"),
        "aarch64" => true,
        _ => false,
    }
}

fn pointer_sig(module: &JITModule, n: usize) -> Signature {
    let mut sig = module.make_signature();
    sig.params.extend(std::iter::repeat_n(AbiParam::new(I64), n));
    sig
}

/// Compiles every kernel of `plan` and its entry function, and finalizes the module.
/// `cuts[i]` splits kernel `i` over threads (`par.rs`).
pub(crate) fn build(
    plan: &Plan,
    n_args: usize,
    gemms: &[GemmDesc],
    cuts: &[Option<Cut>],
    keep_clif: bool,
    row_product_min: usize,
) -> Result<Jitted, CodegenError> {
    let isa = host_isa()?;
    let fma = has_fma(&*isa);
    // The row product's fused multiply-adds equal the inlined dot's only with `fma`.
    let row_min = if fma && crate::outer::row_product_available() { row_product_min } else { usize::MAX };
    let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
    for (name, ptr) in symbols() {
        jb.symbol(name, ptr);
    }
    jb.symbol("bpc_par", bpc_par as *const u8);
    let mut module = JITModule::new(jb);
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut clif = Vec::new();

    // Kernels small enough to inline are only emitted inside the entry; a split kernel is
    // one function of the operand array per block length.
    let mut kernel_ids = Vec::with_capacity(plan.kernels.len());
    let mut pars = Vec::new();
    let mut par_of = vec![None; plan.kernels.len()];
    let mut block_ids = Vec::new();
    let mut row_products = 0;
    for (i, k) in plan.kernels.iter().enumerate() {
        let mut define = |name: String, k: &Kernel, array: bool| -> Result<FuncId, CodegenError> {
            let sig = pointer_sig(&module, if array { 1 } else { k.arity() });
            let id = module.declare_function(&name, Linkage::Local, &sig).map_err(|e| err("declare kernel", e))?;
            ctx.func.signature = sig;
            ctx.func.name = UserFuncName::user(0, id.as_u32());
            row_products += define_kernel(&mut ctx.func, &mut fctx, k, array, fma, row_min, module.target_config());
            finish(&mut module, &mut ctx, id, &name, keep_clif.then_some(&mut clif))?;
            Ok(id)
        };
        if let (Some(c), Kernel::Loop(lk)) = (cuts[i], k) {
            let kind = k.kind();
            let block = define(format!("k{i}_{kind}_block"), &block_kernel(lk, c.axis, c.block), true)?;
            let last = if c.last == c.block {
                None
            } else {
                Some(define(format!("k{i}_{kind}_last"), &block_kernel(lk, c.axis, c.last), true)?)
            };
            par_of[i] = Some(pars.len());
            pars.push(ParDesc::new(lk, c));
            block_ids.push((block, last));
            kernel_ids.push(None);
        } else if k.inline() {
            kernel_ids.push(None);
        } else {
            kernel_ids.push(Some(define(format!("k{i}_{}", k.kind()), k, false)?));
        }
    }

    // The descriptors' addresses are built into the entry: allocated before it, their block
    // functions filled in after finalizing, through the same raw pointer.
    let mut pars: Box<[ParDesc]> = pars.into_boxed_slice();
    let pars_base: *mut ParDesc = pars.as_mut_ptr();
    let gemm_sig = pointer_sig(&module, 7);
    let gemm_id =
        module.declare_function("bpc_gemm", Linkage::Import, &gemm_sig).map_err(|e| err("declare gemm", e))?;
    let par_id = module
        .declare_function("bpc_par", Linkage::Import, &pointer_sig(&module, 2))
        .map_err(|e| err("declare par", e))?;
    let sig = pointer_sig(&module, 3);
    let entry_id = module.declare_function("entry", Linkage::Local, &sig).map_err(|e| err("declare entry", e))?;
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, entry_id.as_u32());
    let config = module.target_config();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    let (ptrs, ws, gemm_ws) = (b.block_params(block)[0], b.block_params(block)[1], b.block_params(block)[2]);
    let mut refs: HashMap<FuncId, FuncRef> = HashMap::new();
    let mut fref = |b: &mut FunctionBuilder, id: FuncId| {
        *refs.entry(id).or_insert_with(|| module.declare_func_in_func(id, b.func))
    };
    let mut gemm_no = 0;
    let mut operand_slot = None;
    let mut row_slot = None;
    for step in &plan.steps {
        match step {
            Step::Kernel { kernel, ptrs: operands } => {
                let args: Vec<Value> = operands.iter().map(|p| address(&mut b, *p, ptrs, ws, n_args)).collect();
                match (kernel_ids[*kernel], par_of[*kernel]) {
                    (Some(id), _) => {
                        let f = fref(&mut b, id);
                        b.ins().call(f, &args);
                    }
                    (None, Some(j)) => {
                        let size = 8 * MAX_OPERANDS as u32;
                        let slot = *operand_slot.get_or_insert_with(|| {
                            b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, size, 3))
                        });
                        for (o, &a) in args.iter().enumerate() {
                            b.ins().stack_store(I64, a, slot, 8 * o as i32);
                        }
                        let array = b.ins().stack_addr(I64, slot, 0);
                        let desc = b.ins().iconst(I64, pars_base.wrapping_add(j) as i64);
                        let f = fref(&mut b, par_id);
                        b.ins().call(f, &[desc, array]);
                    }
                    (None, None) => {
                        let mut e =
                            Em { b: &mut b, fma, inlined: true, row_product_min: row_min, row_slot, row_calls: 0 };
                        emit_kernel(&mut e, &plan.kernels[*kernel], &args);
                        (row_products, row_slot) = (row_products + e.row_calls, e.row_slot);
                    }
                }
            }
            Step::Gemm(g) => {
                let desc = b.ins().iconst(I64, &gemms[gemm_no] as *const GemmDesc as i64);
                gemm_no += 1;
                let mut args = vec![desc];
                for p in [g.dst, g.lhs, g.rhs] {
                    args.push(address(&mut b, p, ptrs, ws, n_args));
                }
                for scale in [g.scale, g.beta_scale] {
                    let arg = match scale {
                        Some(p) => address(&mut b, p, ptrs, ws, n_args),
                        None => b.ins().iconst(I64, 0),
                    };
                    args.push(arg);
                }
                args.push(gemm_ws);
                let f = fref(&mut b, gemm_id);
                b.ins().call(f, &args);
            }
        }
    }
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(config);
    tag_alias_regions(&mut ctx.func, n_args);
    finish(&mut module, &mut ctx, entry_id, "entry", keep_clif.then_some(&mut clif))?;
    module.finalize_definitions().map_err(|e| err("finalize", e))?;
    let code = module.get_finalized_function(entry_id);
    // SAFETY: `entry` was declared with three pointer-sized parameters and no results in the
    // platform's C calling convention (`make_signature`).
    let entry = unsafe { std::mem::transmute::<*const u8, EntryFn>(code) };
    // SAFETY: each block function was declared with one pointer parameter and no results in
    // the platform's C calling convention.
    let block_fn = |id| unsafe { std::mem::transmute::<*const u8, BlockFn>(module.get_finalized_function(id)) };
    for (j, (block, last)) in block_ids.into_iter().enumerate() {
        // SAFETY: `j` indexes `pars`, which no reference borrows; no code has run yet.
        let desc = unsafe { &mut *pars_base.add(j) };
        desc.block = Some(block_fn(block));
        desc.last = Some(block_fn(last.unwrap_or(block)));
    }
    Ok(Jitted { module, entry, pars, clif, row_products })
}

/// What an address in the entry points into.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Root {
    Arena,
    Args,
    Result(usize),
    /// The entry's stack slots (the row buffer of an inlined kernel's row product).
    Stack,
}

/// Tags every load and store of the entry with an alias region (Cranelift's `AliasRegion`):
/// one for the arena, one for all arguments, one per result buffer, one for the entry's stack
/// slots. They are disjoint:
/// `Compiled::run` takes the results as distinct `&mut` slices and the arguments as slices
/// that cannot overlap them, and the arena is the workspace's own. Cranelift's alias analysis
/// then forwards a value one inlined kernel stores to the next kernel's load of it across
/// stores to other buffers, and reuses loaded arguments (batch 1, the sigmoid neuron: σ across
/// the loss store, `grad.w2` across the other gradients' stores; 24.8 → 22.1 ns per call).
///
/// Only when every access's address is a known base plus offsets (straight-line inlined
/// kernels); an entry with loops over pointer block parameters is left untagged, since an
/// untagged access must not touch a tagged buffer. Calls (kernels, GEMMs) are fences anyway.
fn tag_alias_regions(func: &mut cranelift_codegen::ir::Function, n_args: usize) {
    use cranelift_codegen::ir::{AliasRegionData, InstructionData, Opcode};
    let Some(entry) = func.layout.entry_block() else { return };
    let (ptrs, ws) = (func.dfg.block_params(entry)[0], func.dfg.block_params(entry)[1]);
    let mut root: HashMap<Value, Option<Root>> = HashMap::from([(ws, Some(Root::Arena))]);
    let mut accesses = Vec::new();
    let blocks: Vec<_> = func.layout.blocks().collect();
    for block in blocks {
        for inst in func.layout.block_insts(block) {
            let data = func.dfg.insts[inst];
            let args: Vec<Value> = func.dfg.inst_args(inst).iter().map(|&v| func.dfg.resolve_aliases(v)).collect();
            let base = |v: Value| root.get(&v).copied().flatten();
            match (data.opcode(), data) {
                (Opcode::Load, InstructionData::Load { arg, offset, .. }) if func.dfg.resolve_aliases(arg) == ptrs => {
                    let i = (i64::from(offset) / 8) as usize;
                    let r = if i < n_args { Root::Args } else { Root::Result(i - n_args) };
                    root.insert(func.dfg.first_result(inst), Some(r));
                }
                (Opcode::Load, _) => match base(args[0]) {
                    Some(r) => accesses.push((inst, r)),
                    None => return,
                },
                (Opcode::Store, _) => match base(args[1]) {
                    Some(r) => accesses.push((inst, r)),
                    None => return,
                },
                (Opcode::StackAddr, _) => {
                    root.insert(func.dfg.first_result(inst), Some(Root::Stack));
                }
                (op, _) if op.can_load() || op.can_store() => return,
                (Opcode::Iadd, _) => {
                    let known: Vec<Root> = args.iter().filter_map(|&a| base(a)).collect();
                    let r = match known[..] {
                        [r] => Some(r),
                        _ => None,
                    };
                    root.insert(func.dfg.first_result(inst), r);
                }
                _ => {}
            }
        }
    }
    for (inst, r) in accesses {
        let (user_id, description) = match r {
            Root::Arena => (0, "arena".to_string()),
            Root::Args => (1, "arguments".to_string()),
            Root::Result(j) => (2 + j as u32, format!("result {j}")),
            Root::Stack => (u32::MAX, "stack".to_string()),
        };
        let region = func.dfg.alias_regions.insert(AliasRegionData { user_id, description: description.into() });
        let Some(flags) = func.dfg.insts[inst].memflags() else { continue };
        let tagged = func.dfg.mem_flags[flags].with_alias_region(Some(region));
        let new = func.dfg.mem_flags.insert_unchecked(tagged);
        if let Some(f) = func.dfg.insts[inst].memflags_mut() {
            *f = new;
        }
    }
}

/// The address `p` inside the entry function.
fn address(b: &mut FunctionBuilder, p: Ptr, ptrs: Value, ws: Value, n_args: usize) -> Value {
    let flags = MemFlagsData::new().with_notrap().with_readonly().with_can_move();
    let base = match p.base {
        Base::Arg(i) => b.ins().load(I64, flags, ptrs, 8 * i as i32),
        Base::Result(j) => b.ins().load(I64, flags, ptrs, 8 * (n_args + j) as i32),
        Base::Ws(off) => b.ins().iadd_imm_s(ws, off as i64),
        Base::Buf(_) => panic!("internal error: an arena buffer without an offset"),
    };
    if p.offset == 0 { base } else { b.ins().iadd_imm_s(base, p.offset as i64 * 4) }
}

/// A kernel function: its parameters are the operand addresses, or with `array` one pointer
/// to an array of them (a block of a split kernel, called by `bpc_par`). Returns the row
/// products it calls.
fn define_kernel(
    func: &mut cranelift_codegen::ir::Function,
    fctx: &mut FunctionBuilderContext,
    k: &Kernel,
    array: bool,
    fma: bool,
    row_product_min: usize,
    config: TargetFrontendConfig,
) -> usize {
    let mut b = FunctionBuilder::new(func, fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    let params = if array {
        let array = b.block_params(block)[0];
        let flags = MemFlagsData::new().with_notrap().with_readonly().with_can_move();
        (0..k.arity()).map(|o| b.ins().load(I64, flags, array, 8 * o as i32)).collect()
    } else {
        b.block_params(block).to_vec()
    };
    let mut e = Em { b: &mut b, fma, inlined: false, row_product_min, row_slot: None, row_calls: 0 };
    emit_kernel(&mut e, k, &params);
    let calls = e.row_calls;
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(config);
    calls
}

/// Defines the function in `ctx` under `id`, keeping its CLIF text if asked.
fn finish(
    module: &mut JITModule,
    ctx: &mut cranelift_codegen::Context,
    id: FuncId,
    name: &str,
    clif: Option<&mut Vec<(String, String)>>,
) -> Result<(), CodegenError> {
    if let Some(texts) = clif {
        texts.push((name.to_string(), ctx.func.display().to_string()));
    }
    module.define_function(id, ctx).map_err(|e| err(&format!("compile {name}"), e))?;
    module.clear_context(ctx);
    Ok(())
}
