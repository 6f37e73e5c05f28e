//! Dead-code elimination: drop every value no result depends on.

use bpc_ir::{Function, Output, Value};

/// Removes the values of `func` that no result depends on, transitively.
///
/// The survivors keep their program order and spans and are renumbered densely; `results`,
/// `names` (a name of a dropped value is dropped with it) and `adjoint_start` (the first
/// surviving value at or after it; `None` if no adjoint value survives) are remapped.
/// Arguments are the calling convention and are all kept, read or not.
pub fn eliminate_dead_code(func: &Function) -> Function {
    let live = func.live_values();
    let mut out = Function::new(func.name.clone());
    out.args = func.args.clone();
    let mut renumber: Vec<Option<Value>> = vec![None; func.len()];
    for v in func.values().filter(|v| live[v.index()]) {
        let mut inst = func.inst(v).clone();
        inst.map_operands(|o| renumber[o.index()].expect("a live value's operands are live and earlier"));
        renumber[v.index()] = Some(out.push_typed(inst, func.ty(v).clone(), func.span(v)));
    }
    let new = |v: Value| renumber[v.index()];
    out.results =
        func.results.iter().map(|r| Output { value: new(r.value).expect("results are live"), ..r.clone() }).collect();
    out.names = func.names.iter().filter_map(|(n, v)| new(*v).map(|v| (n.clone(), v))).collect();
    out.adjoint_start = func.adjoint_start.and_then(|s| func.values().skip(s.index()).find_map(new));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpc_ir::{Inst, UnaryOp, read, verify};

    fn dce(text: &str) -> String {
        let out = eliminate_dead_code(&read(text).unwrap());
        verify(&out).unwrap();
        out.to_string()
    }

    #[test]
    fn drops_dead_values_and_renumbers() {
        let before = "\
function f {
  input x: f32[B,3]
  param W: f32[3] = 0
  v0: f32[B,3] = arg x
  v1: f32[3] = arg W
  v2: f32[B,3] = exp v0                         # unused
  v3: f32[B,3] = broadcast v1                   # wb
  v4: f32[B,3] = mul v0, v3                     # y
  v5: f32[B,3] = neg v2
  v6: f32[] = reduce_sum v4, axes=[0,1]
  result loss = v6
  result y = v4
}
";
        let after = "\
function f {
  input x: f32[B,3]
  param W: f32[3] = 0
  v0: f32[B,3] = arg x
  v1: f32[3] = arg W
  v2: f32[B,3] = broadcast v1                   # wb
  v3: f32[B,3] = mul v0, v2                     # y
  v4: f32[] = reduce_sum v3, axes=[0,1]
  result loss = v4
  result y = v3
}
";
        assert_eq!(dce(before), after);
        assert_eq!(dce(after), after, "idempotent");
    }

    #[test]
    fn keeps_args_updates_and_remaps_the_adjoint_start() {
        let before = "\
function step {
  input x: f32[B]
  param w: f32[] = 0
  hyper lr: f32[]
  v0: f32[B] = arg x
  v1: f32[] = arg w
  v2: f32[B] = broadcast v1
  v3: f32[B] = mul v0, v2                       # f
  v4: f32[] = reduce_mean v3, axes=[0]
adjoint:
  v5: f32[] = const 1.0
  v6: f32[] = const 0.0
  v7: f32[] = batch_size
  v8: f32[] = div v5, v7
  v9: f32[B] = broadcast v8
  v10: f32[B] = mul v9, v0
  v11: f32[] = reduce_sum v10, axes=[0]
  v12: f32[] = arg lr
  v13: f32[] = mul v12, v11
  v14: f32[] = sub v1, v13
  result loss = v4
  update w = v14
}
";
        let after = "\
function step {
  input x: f32[B]
  param w: f32[] = 0
  hyper lr: f32[]
  v0: f32[B] = arg x
  v1: f32[] = arg w
  v2: f32[B] = broadcast v1
  v3: f32[B] = mul v0, v2                       # f
  v4: f32[] = reduce_mean v3, axes=[0]
adjoint:
  v5: f32[] = const 1.0
  v6: f32[] = batch_size
  v7: f32[] = div v5, v6
  v8: f32[B] = broadcast v7
  v9: f32[B] = mul v8, v0
  v10: f32[] = reduce_sum v9, axes=[0]
  v11: f32[] = arg lr
  v12: f32[] = mul v11, v10
  v13: f32[] = sub v1, v12
  result loss = v4
  update w = v13
}
";
        assert_eq!(dce(before), after);
    }

    #[test]
    fn the_adjoint_start_moves_past_dead_adjoint_values_or_disappears() {
        let text = |result: &str| {
            format!(
                "function g {{\n  input x: f32[]\n  v0: f32[] = arg x\n  v1: f32[] = exp v0\nadjoint:\n  \
                 v2: f32[] = const 2.0\n  v3: f32[] = exp v1\n  v4: f32[] = mul v2, v3\n  result loss = v1\n  \
                 result out = {result}\n}}\n"
            )
        };
        let run = |result: &str| eliminate_dead_code(&read(&text(result)).unwrap());
        let all = run("v4");
        assert_eq!((all.len(), all.adjoint_start), (5, Some(Value(2))));
        // The first adjoint value dies: the adjoint now starts at the old v3, renumbered v2.
        let tail = run("v3");
        assert_eq!((tail.len(), tail.adjoint_start), (3, Some(Value(2))));
        assert_eq!(*tail.inst(Value(2)), Inst::Unary { op: UnaryOp::Exp, arg: Value(1) });
        let none = run("v1");
        assert_eq!((none.len(), none.adjoint_start), (2, None));
    }
}
