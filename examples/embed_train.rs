//! A training loop of your own around bpc's compiled SGD step: the iris model on
//! `examples/data/iris_train.csv`, evaluated on `iris_test.csv` with the compiled forward
//! pass.
//!
//! ```sh
//! cargo run --release --example embed_train
//! ```
//!
//! (`bpc::Trainer` does all of this, with shuffling, optimizers and validation, in one
//! call; this example shows the pieces.)

use std::path::Path;

use bpc::{Feed, Label, Options, Standardizer};

/// Minibatch size.
const B: usize = 8;

/// What a run of [`train_iris`] measured.
#[derive(Debug)]
pub struct Run {
    /// Mean loss of the first and of the last epoch's steps.
    pub first_loss: f32,
    /// See `first_loss`.
    pub last_loss: f32,
    /// Accuracy on the test set.
    pub test_accuracy: f64,
}

/// Trains the iris model for `epochs` epochs of SGD (learning rate 0.1, minibatches of 8)
/// and measures the test accuracy.
pub fn train_iris(root: &Path, epochs: usize) -> Result<Run, Box<dyn std::error::Error>> {
    let program = bpc::compile_file(root.join("examples/iris.bp"), &Options::default())?;
    let mut train = program.load_csv(root.join("examples/data/iris_train.csv"))?;
    let mut test = program.load_csv(root.join("examples/data/iris_test.csv"))?;
    let scale = Standardizer::fit(&train);
    scale.apply(&mut train);
    scale.apply(&mut test);
    let (Some(train_y), Some(test_y)) = (train.class_labels(), test.class_labels()) else {
        return Err("iris has class labels".into());
    };
    let width = program.inputs()[0].example_len(); // 4 features per example
    let mut params = program.init_params(0)?;

    // The step and its buffers are made once; the loop only copies data and calls it.
    let step = program.train_step(B)?;
    let mut ws = step.workspace();
    let (mut x, mut y) = (vec![0.0f32; B * width], vec![0i32; B]);
    // The step takes exactly B examples: a last, partial minibatch would need a step compiled
    // for its size, so it is dropped (none here: 120 = 15 × 8).
    let n = train.len() - train.len() % B;
    let mut losses = Vec::with_capacity(epochs);
    for epoch in 0..epochs {
        let mut total = 0.0;
        for start in (0..n).step_by(B) {
            for r in 0..B {
                // A fixed permutation of the examples (7 is coprime to 120), varied by epoch.
                let i = ((start + r) * 7 + epoch) % train.len();
                x[r * width..(r + 1) * width].copy_from_slice(train.row(i));
                y[r] = train_y[i];
            }
            total += step.call(&mut ws, params.as_mut_slice(), &Feed::with_labels(&[&x], &[Label::Class(&y)]), 0.1)?;
        }
        losses.push(total / (n / B) as f32);
    }

    // The forward pass to `output` (softmax probabilities) of the whole test set at once.
    let forward = program.forward(test.len())?;
    let mut probs = vec![0.0f32; forward.output_len()];
    forward.call(&mut forward.workspace(), params.as_slice(), &Feed::new(&[&test.features]), &mut probs)?;
    let k = probs.len() / test.len();
    let correct = probs
        .chunks_exact(k)
        .zip(test_y)
        .filter(|&(p, &label)| {
            let best = p.iter().enumerate().fold(0, |b, (j, &v)| if v > p[b] { j } else { b });
            best == label as usize
        })
        .count();
    Ok(Run { first_loss: losses[0], last_loss: losses[epochs - 1], test_accuracy: correct as f64 / test.len() as f64 })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run = train_iris(Path::new(env!("CARGO_MANIFEST_DIR")), 50)?;
    println!("loss {:.4} in the first epoch, {:.4} in the last", run.first_loss, run.last_loss);
    println!("test accuracy {:.4}", run.test_accuracy);
    Ok(())
}
