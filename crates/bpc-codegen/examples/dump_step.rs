//! Prints a model's train step after `-O2` and its codegen stats at batch 128:
//!
//!     cargo run -p bpc-codegen --release --example dump_step -- examples/mnist.bp [sgd|momentum|nesterov|adam|adamw]

use bpc_autodiff::{Optimizer, train_step};
use bpc_front::Source;
use bpc_opt::{OptLevel, optimize};

fn main() {
    let path = std::env::args().nth(1).expect("usage: dump_step MODEL.bp [OPTIMIZER]");
    let text = std::fs::read_to_string(&path).expect("a readable model");
    let f = bpc_front::compile(&Source::new(&path, text)).expect("a valid model");
    let opt = match std::env::args().nth(2).as_deref() {
        Some("momentum") => Optimizer::Momentum { nesterov: false },
        Some("nesterov") => Optimizer::Momentum { nesterov: true },
        Some("adam") => Optimizer::Adam,
        Some("adamw") => Optimizer::AdamW,
        _ => Optimizer::Sgd,
    };
    let step = optimize(&train_step(&f, opt).expect("a train step"), OptLevel::O2);
    print!("{step}");
    let c = bpc_codegen::compile(&step, 128).expect("compiles");
    println!("{:?}", c.stats());
}
