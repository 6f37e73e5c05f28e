//! Common-subexpression elimination: one value per distinct computation.

use std::collections::HashMap;

use bpc_ir::{Function, Inst, Type};

use crate::rewrite::Rewriter;

/// What makes two instructions the same computation. Constants compare by their bits (so
/// `0.0` and `-0.0` stay apart); `arg` compares by argument, so two params or inputs are
/// never merged, whatever their values or types.
#[derive(PartialEq, Eq, Hash)]
struct Key(String, Type);

fn key(func: &Function, inst: &Inst, ty: &Type) -> Key {
    let mut text = String::new();
    match inst {
        Inst::Const(c) => text = format!("const {:#x}", c.to_bits()),
        _ => bpc_ir::print::write_inst(&mut text, func, inst).expect("writing to a String"),
    }
    Key(text, ty.clone())
}

/// Replaces every instruction that repeats an earlier one (same op, same attributes, same
/// operands after replacement, same type) by that earlier value. Everything else is kept;
/// names of a replaced value move to the value that replaces it.
pub fn eliminate_common_subexpressions(func: &Function) -> Function {
    let mut seen: HashMap<Key, bpc_ir::Value> = HashMap::new();
    Rewriter::new(func).run(|rw, v| {
        let inst = rw.mapped(v);
        let k = key(&rw.out, &inst, func.ty(v));
        match seen.get(&k) {
            Some(&w) => w,
            None => {
                let w = rw.copy(v);
                seen.insert(k, w);
                w
            }
        }
    })
}
