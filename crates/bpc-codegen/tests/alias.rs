//! Alias regions in the entry function: straight-line inlined kernels tag their loads and
//! stores (arena, arguments, each result), so Cranelift forwards stored values across stores
//! to other buffers. The results must not change: the lecture's sigmoid neuron, value and
//! five gradients, at batch 1 (tagged) equals the closed form and, bit for bit, every example
//! at batches whose entry loops or calls kernels (untagged).

use bpc_codegen::{Arg, Options, compile_with};

/// `bpc_opt::optimize_for_batch` of the sigmoid neuron's value and gradients at batch 1
/// (crates/bpc-opt/tests/filetests/batch1.ir).
const NEURON: &str = "\
function sigmoid_neuron {
  input w0: f32[B]
  input x0: f32[B]
  input w1: f32[B]
  input x1: f32[B]
  input w2: f32[B]
  v0: f32[B] = arg w0
  v1: f32[B] = arg x0
  v2: f32[B] = arg w1
  v3: f32[B] = arg x1
  v4: f32[B] = arg w2
  kernel k0 map {
    v5: f32[B] = mul v0, v1
    v6: f32[B] = mul v2, v3
    v7: f32[B] = add v5, v6
    v8: f32[B] = add v7, v4
    v9: f32[B] = neg v8
    v10: f32[B] = exp v9
  }
  v11: f32[] = const 1.0
  v12: f32[B] = broadcast v11
  kernel k1 map {
    v13: f32[B] = add v12, v10
    v14: f32[B] = div v12, v13
  }
  v15: f32[] = reduce_mean v14, axes=[0]
adjoint:
  kernel k2 map {
    v16: f32[B] = mul v14, v14
    v17: f32[B] = neg v16
    v18: f32[B] = strong_mul v17, v10
    v19: f32[B] = neg v18
  }
  v20: f32[B] = strong_mul v19, v3
  v21: f32[B] = strong_mul v19, v2
  v22: f32[B] = strong_mul v19, v1
  v23: f32[B] = strong_mul v19, v0
  result loss = v15
  result grad.w0 = v22
  result grad.x0 = v23
  result grad.w1 = v20
  result grad.x1 = v21
  result grad.w2 = v19
  result grad.f = v12
}
";

/// Runs the neuron at `batch` with every example at the lecture's point; returns the entry's
/// CLIF and the results (loss, then grad.w0, x0, w1, x1, w2, f).
fn run(batch: usize) -> (String, Vec<Vec<f32>>) {
    let f = bpc_ir::read(NEURON).unwrap();
    let c = compile_with(&f, batch, &Options { keep_clif: true, ..Options::default() }).unwrap();
    let point = [2.0f32, -1.0, -3.0, -2.0, -3.0];
    let inputs: Vec<Vec<f32>> = point.iter().map(|&x| vec![x; batch]).collect();
    let mut args: Vec<Arg> = inputs.iter().map(|x| Arg::F32(x)).collect();
    let mut outs: Vec<Vec<f32>> = c.results().iter().map(|r| vec![f32::NAN; r.len]).collect();
    let mut res: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    let mut ws = c.workspace();
    c.run(&mut ws, &mut args, &mut res).unwrap();
    let entry = c.clif().iter().find(|(name, _)| name == "entry").unwrap().1.clone();
    (entry, outs)
}

#[test]
fn tagged_entry_gives_the_same_results() {
    let (entry, one) = run(1);
    assert!(entry.contains("notrap region") && entry.contains("\"result 0\""), "{entry}");
    // σ(1) and σ'(1) = σ(1)(1 - σ(1)) times the other factor of each product.
    let (s, ds) = (0.7310585786300049f64, 0.19661193324148185f64);
    let want = [s, -ds, 2.0 * ds, -2.0 * ds, -3.0 * ds, ds, 1.0];
    for (i, (got, w)) in one.iter().zip(want).enumerate() {
        assert!((f64::from(got[0]) - w).abs() <= 2e-7 * w.abs(), "result {i}: {} vs {w}", got[0]);
    }
    for batch in [64, 4096] {
        let (entry, many) = run(batch);
        assert!(!entry.contains("region"), "batch {batch}: {entry}");
        for (i, (m, o)) in many.iter().zip(&one).enumerate().skip(1) {
            assert!(
                m.iter().all(|x| x.to_bits() == o[0].to_bits()),
                "batch {batch}, result {i}: {:?} vs {}",
                &m[..4],
                o[0]
            );
        }
    }
}
