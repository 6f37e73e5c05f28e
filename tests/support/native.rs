//! Calling a compiled function the way the gradient tests do (`tests/gradients.rs`,
//! `tests/random_programs.rs`).

use bpc::Arg;
use bpc::ir::{DType, Function, Tensor};

/// Calls `native` (compiled from `vg`) on `args` twice on one workspace, after poisoning it
/// with a call on NaN arguments; result buffers start as NaN each time. Returns both calls'
/// results, in `vg.results` order.
pub fn run_twice(native: &bpc::Compiled, vg: &Function, args: &[Tensor]) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let batch = native.batch();
    let f32s: Vec<Vec<f32>> = args.iter().map(|t| t.data.iter().map(|&x| x as f32).collect()).collect();
    let nans: Vec<Vec<f32>> = f32s.iter().map(|v| vec![f32::NAN; v.len()]).collect();
    let i32s: Vec<Vec<i32>> = args.iter().map(|t| t.data.iter().map(|&x| x as i32).collect()).collect();
    let mut ws = native.workspace();
    let mut call = |floats: &[Vec<f32>]| {
        let mut a: Vec<Arg> = vg
            .args
            .iter()
            .enumerate()
            .map(|(i, x)| if x.ty.dtype == DType::I32 { Arg::I32(&i32s[i]) } else { Arg::F32(&floats[i]) })
            .collect();
        let mut bufs: Vec<Vec<f32>> = vg.results.iter().map(|r| vec![f32::NAN; vg.shape(r.value).len(batch)]).collect();
        let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(Vec::as_mut_slice).collect();
        native.run(&mut ws, &mut a, &mut outs).expect("buffers fit the compiled types");
        bufs
    };
    call(&nans);
    let first = call(&f32s);
    let second = call(&f32s);
    (first, second)
}
