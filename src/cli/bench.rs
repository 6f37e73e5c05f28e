//! `bpc bench MODEL [--batch B]`: compile time, first-step time, steps/s and examples/s of
//! the train step on synthetic data (SPEC §4, §6).
//!
//! Inputs are a fixed pseudo-random pattern in [-1, 1), class labels cycle through the
//! classes, real labels are 0; params come from their initializers. The step runs at least
//! `--min-steps` times and for at least `--seconds`.

use std::time::Instant;

use bpc::train::driver::step_function;
use bpc::train::runner::{Batch, Runner, Slab};
use bpc::train::{Params, Schema};
use bpc::{Error, Model};

use super::train::{run_error, schema};
use super::{BenchArgs, json_object};

pub fn run(a: &BenchArgs) -> Result<(), Error> {
    let model = Model::load(&a.model)?;
    let schema: Schema = schema(&model)?;
    let batch_size = a.batch as usize;
    let mut params =
        Params::init(&model.func, a.seed).map_err(|e| Error::msg(format!("{}: {e}", model.source.path)))?;
    let t0 = Instant::now();
    let step = step_function(&model.func, &schema).map_err(|e| run_error(&model, e))?;
    let mut runner =
        Runner::new(step, a.opt.level(), &schema, &params, batch_size).map_err(|e| run_error(&model, e))?;
    runner.set_threads(a.threads);
    let jit = runner.prepare(batch_size).map_err(|e| run_error(&model, e))?;
    let compile = t0.elapsed();

    let batch = Batch::synthetic(&schema, batch_size).map_err(|e| run_error(&model, e))?;
    let t1 = Instant::now();
    runner.run(&batch, Slab::Mut(&mut params.data), a.lr).map_err(|e| run_error(&model, e))?;
    let first = t1.elapsed();

    let t2 = Instant::now();
    let mut steps = 0u64;
    while steps < a.min_steps || t2.elapsed().as_secs_f64() < a.seconds {
        runner.run(&batch, Slab::Mut(&mut params.data), a.lr).map_err(|e| run_error(&model, e))?;
        steps += 1;
    }
    let secs = t2.elapsed().as_secs_f64();
    let steps_per_s = steps as f64 / secs;
    let examples_per_s = steps_per_s * batch_size as f64;
    if a.json {
        let num = |x: f64| serde_json::Value::from(x).to_string();
        println!(
            "{}",
            json_object([
                ("model".to_string(), serde_json::Value::from(model.func.name.clone()).to_string()),
                ("batch".to_string(), batch_size.to_string()),
                ("compile_ms".to_string(), num(compile.as_secs_f64() * 1e3)),
                ("optimize_jit_ms".to_string(), num(jit.as_secs_f64() * 1e3)),
                ("first_step_ms".to_string(), num(first.as_secs_f64() * 1e3)),
                ("steps".to_string(), steps.to_string()),
                ("steps_per_s".to_string(), num(steps_per_s)),
                ("examples_per_s".to_string(), num(examples_per_s)),
            ])
        );
    } else {
        println!("train step of {} at batch {batch_size}", model.func.name);
        println!(
            "  compile        {:.2} ms (optimizer + JIT {:.2} ms)",
            compile.as_secs_f64() * 1e3,
            jit.as_secs_f64() * 1e3
        );
        println!("  first step     {:.3} ms", first.as_secs_f64() * 1e3);
        println!("  steps          {steps} in {secs:.2} s");
        println!("  steps/s        {steps_per_s:.1}");
        println!("  examples/s     {examples_per_s:.0}");
    }
    Ok(())
}
