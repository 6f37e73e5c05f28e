//! Newton's method with derivatives compiled by bpc, embedded in a plain Rust program.
//!
//! ```sh
//! cargo run --release --example embed_grad
//! ```
//!
//! 1. The root of f(x) = x³ − 2x − 5 (Newton's own example): x ← x − f(x)/f'(x), where one
//!    native call of the value-and-grad function gives both f(x) and f'(x).
//! 2. A minimum of g(w) = w⁴ − 3w² + w: w ← w − g'(w)/g''(w), with g'' from the
//!    Hessian–vector product along the direction 1.

use bpc::{Feed, Options};

/// The iterates `(x, f(x))` of Newton's method for the root of x³ − 2x − 5 from `x0`.
pub fn newton_root(x0: f32, steps: usize) -> Result<Vec<(f32, f32)>, bpc::Error> {
    let program = bpc::compile("input x\nloss x^3 - 2*x - 5\n", &Options::default())?;
    // One example per call (batch 1): the loss is f(x) and d loss / d x is f'(x).
    let vg = program.value_and_grad(&["x"], 1)?;
    let mut ws = vg.workspace();
    let (mut x, mut dfdx) = ([x0], [0.0f32]);
    let mut trace = Vec::with_capacity(steps);
    for _ in 0..steps {
        let f = vg.call(&mut ws, &[], &Feed::new(&[&x]), &mut dfdx)?;
        trace.push((x[0], f));
        x[0] -= f / dfdx[0];
    }
    Ok(trace)
}

/// The iterates `(w, g(w))` of Newton's method for a minimum of w⁴ − 3w² + w from `w0`.
pub fn newton_minimum(w0: f32, steps: usize) -> Result<Vec<(f32, f32)>, bpc::Error> {
    let program = bpc::compile("param w = 0\nloss w^4 - 3*w^2 + w\n", &Options::default())?;
    let vg = program.value_and_grad(&program.param_names(), 1)?;
    let hvp = program.hvp(1)?;
    let (mut ws_vg, mut ws_hvp) = (vg.workspace(), hvp.workspace());
    let mut params = program.init_params(0)?;
    params.as_mut_slice()[0] = w0;
    let (mut grad, mut curvature) = ([0.0f32], [0.0f32]);
    let mut trace = Vec::with_capacity(steps);
    for _ in 0..steps {
        let g = vg.call(&mut ws_vg, params.as_slice(), &Feed::new(&[]), &mut grad)?;
        // H·1 = g''(w).
        hvp.call(&mut ws_hvp, params.as_slice(), &Feed::new(&[]), &[1.0], &mut curvature)?;
        trace.push((params.as_slice()[0], g));
        params.as_mut_slice()[0] -= grad[0] / curvature[0];
    }
    Ok(trace)
}

fn main() -> Result<(), bpc::Error> {
    println!("root of x^3 - 2x - 5");
    for (i, (x, f)) in newton_root(2.0, 5)?.into_iter().enumerate() {
        println!("  step {i}  x = {x:.7}  f(x) = {f:.3e}");
    }
    println!("minimum of w^4 - 3w^2 + w");
    for (i, (w, g)) in newton_minimum(2.0, 6)?.into_iter().enumerate() {
        println!("  step {i}  w = {w:.7}  g(w) = {g:.7}");
    }
    Ok(())
}
