//! The calling side: buffer checks, workspaces, threads, in-place updates, compile errors,
//! CLIF text and statistics.

mod common;

use bpc_codegen::{Arg, Options, compile, compile_with};
use bpc_ir::{BinaryOp, Inst, ReduceOp, Shape, UnaryOp};
use common::*;

/// loss = mean(relu(x·wᵀ)), and w -= lr·(loss·w): a function with an input, a param that is
/// updated in place, a hyperparameter and a plain result.
fn step() -> bpc_ir::Function {
    let mut b = B::new("step");
    let x = b.input("x", &[3]);
    let w = b.param("w", &[2, 3]);
    let lr = b.hyper("lr");
    let y = b.ins(Inst::MatMul { lhs: x, rhs: w, ta: false, tb: true });
    let r = b.un(UnaryOp::Relu, y);
    let loss = b.ins(Inst::Reduce { op: ReduceOp::Mean, arg: r, axes: vec![0, 1] });
    let lw = b.bcast(loss, Shape::shared([2, 3]));
    let lrw = b.bcast(lr, Shape::shared([2, 3]));
    let g = b.bin(BinaryOp::Mul, lw, w);
    let d = b.bin(BinaryOp::Mul, lrw, g);
    let w2 = b.bin(BinaryOp::Sub, w, d);
    b.result("loss", loss);
    b.f.results.push(bpc_ir::Output { name: "w".into(), value: w2, update: Some(bpc_ir::ArgId(1)) });
    b.f
}

#[test]
fn updates_land_in_the_param_buffer() {
    let f = step();
    for batch in BATCHES {
        check(&f, batch, 1, F32_TOL);
    }
    let c = compile(&f, 2).unwrap();
    assert_eq!(c.batch(), 2);
    assert!(c.args()[1].updated && !c.args()[0].updated);
    assert_eq!(c.results().len(), 1);
    let x = [1.0f32, 2.0, 3.0, -1.0, 0.5, 2.0];
    let mut w = [0.1f32, 0.2, 0.3, -0.3, 0.2, 0.1];
    let mut loss = [0.0f32];
    let mut ws = c.workspace();
    c.run(&mut ws, &mut [Arg::F32(&x), Arg::F32Mut(&mut w), Arg::F32(&[0.5])], &mut [&mut loss]).unwrap();
    // y = [[1.4, 0.4], [0.6, 0.6]] -> relu mean = 0.75.
    let want = 0.75f32;
    assert!((loss[0] - want).abs() < 1e-6, "{loss:?}");
    assert!((w[0] - 0.1 * (1.0 - 0.5 * want)).abs() < 1e-6, "{w:?}");
}

#[test]
fn wrong_buffers_are_refused_not_panics() {
    let f = step();
    let c = compile(&f, 2).unwrap();
    let mut ws = c.workspace();
    let x = [0.0f32; 6];
    let mut w = [0.0f32; 6];
    let mut loss = [0.0f32];
    let msg = |r: Result<(), bpc_codegen::CallError>| r.unwrap_err().to_string();
    // A short input.
    let e = msg(c.run(&mut ws, &mut [Arg::F32(&x[..5]), Arg::F32Mut(&mut w), Arg::F32(&[0.1])], &mut [&mut loss]));
    assert!(e.contains("argument x has 5 elements, expected 6"), "{e}");
    // An updated param passed read-only.
    let e = msg(c.run(&mut ws, &mut [Arg::F32(&x), Arg::F32(&[0.0; 6]), Arg::F32(&[0.1])], &mut [&mut loss]));
    assert!(e.contains("must be Arg::F32Mut"), "{e}");
    // Labels where floats are expected.
    let e = msg(c.run(&mut ws, &mut [Arg::I32(&[0; 6]), Arg::F32Mut(&mut w), Arg::F32(&[0.1])], &mut [&mut loss]));
    assert!(e.contains("argument x must be Arg::F32"), "{e}");
    // Too few arguments, too many results, a wrong result length.
    let e = msg(c.run(&mut ws, &mut [Arg::F32(&x)], &mut [&mut loss]));
    assert!(e.contains("expected 3 arguments, got 1"), "{e}");
    let mut extra = [0.0f32];
    let e =
        msg(c.run(&mut ws, &mut [Arg::F32(&x), Arg::F32Mut(&mut w), Arg::F32(&[0.1])], &mut [&mut loss, &mut extra]));
    assert!(e.contains("expected 1 result buffers, got 2"), "{e}");
    let mut long = [0.0f32; 2];
    let e = msg(c.run(&mut ws, &mut [Arg::F32(&x), Arg::F32Mut(&mut w), Arg::F32(&[0.1])], &mut [&mut long]));
    assert!(e.contains("result loss has 2 elements, expected 1"), "{e}");
    // A workspace of another compiled function (even of the same IR).
    let other = compile(&f, 2).unwrap();
    let mut foreign = other.workspace();
    let e = msg(c.run(&mut foreign, &mut [Arg::F32(&x), Arg::F32Mut(&mut w), Arg::F32(&[0.1])], &mut [&mut loss]));
    assert!(e.contains("another compiled function"), "{e}");
    // Class labels as floats.
    let mut b = B::new("labels");
    let z = b.input("z", &[3]);
    let y = b.label("y", 3);
    let l = b.ins(Inst::CrossEntropy { logits: z, label: y });
    b.result("l", l);
    let c = compile(&b.f, 1).unwrap();
    let e = msg(c.run(&mut c.workspace(), &mut [Arg::F32(&[0.0; 3]), Arg::F32(&[0.0])], &mut [&mut [0.0f32]]));
    assert!(e.contains("argument y must be Arg::I32"), "{e}");
}

#[test]
fn compile_errors() {
    let f = step();
    let e = compile(&f, 0).unwrap_err().to_string();
    assert!(e.contains("at least 1"), "{e}");
    // IR the verifier rejects: a result of an undefined value.
    let mut bad = f.clone();
    bad.add_result("ghost", bpc_ir::Value(999));
    assert!(compile(&bad, 1).unwrap_err().to_string().contains("invalid IR"));
    // A class-label result.
    let mut b = B::new("labels_out");
    let y = b.label("y", 3);
    b.result("y", y);
    let e = compile(&b.f, 1).unwrap_err().to_string();
    assert!(e.contains("results must be f32"), "{e}");
    // Shapes too large to address.
    let mut b = B::new("huge");
    let x = b.input("x", &[1 << 40, 1 << 30]);
    b.result("x", x);
    assert!(compile(&b.f, 1).unwrap_err().to_string().contains("too large"));
}

#[test]
fn one_compiled_function_on_two_threads() {
    let mut b = B::new("mlp");
    let x = b.input("x", &[64]);
    let w = b.param("w", &[32, 64]);
    let h = b.ins(Inst::MatMul { lhs: x, rhs: w, ta: false, tb: true });
    let h = b.un(UnaryOp::Tanh, h);
    let s = b.ins(Inst::Softmax { arg: h, axis: 1, log: true });
    b.result("s", s);
    let f = b.f;
    let c = compile(&f, 16).unwrap();
    let args = random_args(&f, 16, 9, &uniform(-1.0, 1.0));
    let want = run_jit(&c, &f, &args);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut ws = c.workspace();
                    let (x, w) = (args[0].f32(), args[1].f32());
                    let mut out = vec![0.0f32; want[0].len()];
                    for _ in 0..200 {
                        c.run(&mut ws, &mut [Arg::F32(x), Arg::F32(w)], &mut [&mut out]).unwrap();
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), want[0]);
        }
    });
    // And a Compiled moved to another thread and dropped there.
    std::thread::spawn(move || drop(c)).join().unwrap();
}

#[test]
fn clif_text_and_stats() {
    let f = step();
    let opts = Options { keep_clif: true, ..Options::default() };
    let c = compile_with(&f, 4, &opts).unwrap();
    let names: Vec<&str> = c.clif().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"entry"));
    assert!(c.clif().iter().all(|(_, text)| text.starts_with("function ")));
    // The entry calls the gemm shim once; kernels use f32x4.
    let entry = &c.clif().last().unwrap().1;
    assert!(entry.contains("call"), "{entry}");
    assert!(c.clif().iter().any(|(_, t)| t.contains("f32x4")));
    let s = c.stats();
    assert_eq!(s.gemm_calls, 1);
    assert_eq!(s.kernels, c.clif().len() - 1);
    assert!(s.kernel_calls >= s.kernels && s.workspace_bytes > 0 && s.workspace_bytes.is_multiple_of(64));
    assert!(c.compile_time().as_nanos() > 0);
    // Without the option no text is kept.
    assert!(compile(&f, 4).unwrap().clif().is_empty());
}

/// Identical kernels are compiled once and shared.
#[test]
fn identical_kernels_are_shared() {
    let mut b = B::new("shared");
    let x = b.input("x", &[100]);
    let mut v = x;
    for _ in 0..5 {
        v = b.un(UnaryOp::Exp, v);
        v = b.un(UnaryOp::Neg, v);
    }
    b.result("v", v);
    let c = compile(&b.f, 3).unwrap();
    assert_eq!((c.stats().kernels, c.stats().kernel_calls, c.stats().inlined), (2, 10, 0));
    check(&b.f, 3, 1, 1e-5);
    // At 24 elements the kernels are emitted inline in the entry instead.
    let mut b = B::new("small");
    let x = b.input("x", &[8]);
    let y = b.un(UnaryOp::Exp, x);
    b.result("y", y);
    let c = compile(&b.f, 3).unwrap();
    assert_eq!((c.stats().kernels, c.stats().kernel_calls, c.stats().inlined), (0, 0, 1));
    check(&b.f, 3, 1, 2e-6);
}

fn update(f: &mut bpc_ir::Function, name: &str, value: bpc_ir::Value, param: usize) {
    f.results.push(bpc_ir::Output { name: name.into(), value, update: Some(bpc_ir::ArgId(param as u32)) });
}

/// The last kernel of `w - lr·g` writes `w` directly; when something still reads `w`
/// afterwards, or reads it transposed, or the new value is also a plain result, it must not.
#[test]
fn in_place_updates_only_when_legal() {
    let build = |variant: usize| {
        let mut b = B::new("upd");
        let w = b.param("w", &[4, 4]);
        let v = b.param("v", &[4, 4]);
        let lr = b.hyper("lr");
        let lrb = b.bcast(lr, Shape::shared([4, 4]));
        let g = b.un(UnaryOp::Tanh, v);
        let d = b.bin(BinaryOp::Mul, lrb, g);
        let other = match variant {
            // w read transposed by the kernel that computes the new w.
            2 => b.ins(Inst::Transpose { arg: w }),
            _ => w,
        };
        let w2 = b.bin(BinaryOp::Sub, other, d);
        let v2 = b.bin(BinaryOp::Add, v, g);
        match variant {
            // w read after its new value was computed.
            1 => {
                let s = b.ins(Inst::Reduce { op: ReduceOp::Sum, arg: w, axes: vec![0, 1] });
                b.result("s", s);
            }
            // The new value also returned as a plain result.
            3 => b.result("w2", w2),
            _ => {}
        }
        update(&mut b.f, "w", w2, 0);
        update(&mut b.f, "v", v2, 1);
        b.f
    };
    for variant in 0..4 {
        let f = build(variant);
        check(&f, 1, variant as u64, F32_TOL);
        check(&bpc_opt::optimize(&f, bpc_opt::OptLevel::O1), 1, variant as u64, F32_TOL);
    }
    // With the optimizer, variant 0 needs no copies: tanh, mul, sub, add write their final
    // buffers. Without it (-O0), every update is a final copy.
    let steps = |variant, level| {
        let s = compile(&bpc_opt::optimize(&build(variant), level), 1).unwrap().stats();
        s.kernel_calls + s.inlined
    };
    assert_eq!(steps(0, bpc_opt::OptLevel::O1), 4);
    assert_eq!(steps(2, bpc_opt::OptLevel::O1), 5);
    assert_eq!(steps(0, bpc_opt::OptLevel::O0), 6);
}

/// Params that swap values: each update reads the other param, which an earlier update may
/// already have overwritten.
#[test]
fn swapping_params() {
    let mut b = B::new("swap");
    let w = b.param("w", &[3]);
    let v = b.param("v", &[3]);
    update(&mut b.f, "w", v, 0);
    update(&mut b.f, "v", w, 1);
    check(&b.f, 1, 1, 0.0);
}
