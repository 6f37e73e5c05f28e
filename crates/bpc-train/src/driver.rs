//! The SGD driver: epochs of shuffled minibatches through the compiled train step.
//!
//! The train step (forward, adjoint, `W -= lr * dW` fused in) comes from
//! `bpc_autodiff::train_step`, is optimized by `bpc_opt` and JIT-compiled by `bpc_codegen`
//! once for the minibatch size and once for the last, smaller minibatch of an epoch, which
//! is trained on, not dropped. One RNG, seeded once, reshuffles an index vector every epoch;
//! each minibatch is gathered into preallocated per-input buffers and the step is called
//! with the learning rate as its runtime `lr` argument. `train_loss` is the example-weighted
//! mean of the step losses (each the minibatch objective, regularizer included), measured
//! before each step's update, as PyTorch's running loss is.

use std::time::{Duration, Instant};

use bpc_autodiff::Optimizer;
use bpc_ir::{ArgKind, DType, Diagnostic, Function, Tensor};
use bpc_opt::OptLevel;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::data::{Dataset, Labels};
use crate::eval::{Evaluator, accuracy_source, count_correct};
use crate::finite::first_non_finite;
use crate::params::Params;
use crate::report::{EpochReport, TrainReport};
use crate::runner::{Batch, RunError, Runner, Slab};
use crate::schema::Schema;

/// Training settings (SPEC §4 defaults: 10 epochs, batch 32, lr 0.01, seed 0, `-O2`).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    /// Seeds the shuffling (param init has its own streams, see [`crate::init`]).
    pub seed: u64,
    pub opt_level: OptLevel,
    /// Threads for large matrix products; 0 uses all cores.
    pub threads: usize,
    /// After every step, check the loss and the params; on inf or NaN, re-run the step in
    /// the float64 interpreter and stop with a diagnostic naming the first op at fault.
    pub check_finite: bool,
    /// Draw an `indicatif` progress bar on stderr.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch: 32,
            lr: 0.01,
            seed: 0,
            opt_level: OptLevel::O2,
            threads: 0,
            check_finite: false,
            progress: false,
        }
    }
}

/// The optimized train step of `func`: results `loss`, the param updates and, when the
/// model has one, the accuracy source (`output` or `logits`).
pub fn step_function(func: &Function, schema: &Schema, level: OptLevel) -> Result<Function, RunError> {
    Ok(bpc_opt::optimize(&raw_step_function(func, schema)?, level))
}

/// [`step_function`] before the optimizer (every value keeps its source span).
pub fn raw_step_function(func: &Function, schema: &Schema) -> Result<Function, RunError> {
    let mut step = bpc_autodiff::train_step(func, Optimizer::Sgd).map_err(RunError::Program)?;
    if let Some(name) = accuracy_source(func, schema)
        && step.result(name).is_none()
        && keeps_forward(&step, func)
    {
        let v = func.result(name).expect("accuracy source is a result").value;
        step.add_result(name, v);
    }
    Ok(step)
}

/// Whether `step` starts with `func`'s values unchanged (so a forward value keeps its number).
fn keeps_forward(step: &Function, func: &Function) -> bool {
    step.len() >= func.len() && func.values().all(|v| step.data(v) == func.data(v))
}

/// Trains `params` on `train` for `cfg.epochs` epochs, evaluating on `val` after each, and
/// calls `on_epoch` with each epoch's figures.
pub fn train(
    func: &Function,
    params: &mut Params,
    train: &Dataset,
    val: Option<&Dataset>,
    cfg: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<TrainReport, RunError> {
    let schema = Schema::of(func).map_err(|e| RunError::Call(e.0))?;
    let n = train.len();
    if n == 0 || cfg.batch == 0 {
        return Err(RunError::Call("nothing to train: no examples or a minibatch size of 0".into()));
    }
    let full = cfg.batch.min(n);
    let mut compile = Vec::new();
    let raw = raw_step_function(func, &schema)?;
    let mut step = Runner::new(bpc_opt::optimize(&raw, cfg.opt_level), &schema, params, full)?;
    step.set_threads(cfg.threads);
    for rows in [full, n % full] {
        if rows > 0 {
            compile.push(("train step".to_string(), rows, step.prepare(rows)?));
        }
    }
    let mut eval = match val {
        Some(v) => {
            let mut e = Evaluator::for_metrics(func, &schema, params, cfg.opt_level)?.with_threads(cfg.threads);
            compile.push(("forward".to_string(), v.len(), e.prepare(v.len())?));
            Some(e)
        }
        None => None,
    };
    let mut epoch_loop = EpochLoop {
        loss: step.result_index("loss").ok_or_else(|| RunError::Call("the train step has no `loss` result".into()))?,
        scores: accuracy_source(func, &schema).and_then(|s| step.result_index(s)),
        step,
        raw,
        batch: Batch::new(&schema, full),
        before: if cfg.check_finite { params.data.clone() } else { Vec::new() },
        bar: progress_bar(cfg, n.div_ceil(full)),
    };
    let has_classes = matches!(train.labels, Labels::Class { .. });
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut epochs = Vec::with_capacity(cfg.epochs);
    let started = Instant::now();
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        order.shuffle(&mut rng);
        let (loss, correct) = epoch_loop.run(epoch, cfg, &order, full, train, params)?;
        if params.data.iter().any(|x| !x.is_finite()) {
            return Err(RunError::Diverged(format!(
                "training diverged: params became inf or NaN in epoch {epoch}; nothing was saved \
                 (try a smaller --lr or --standardize; --check-finite names the op that overflowed)"
            )));
        }
        let train_time = t0.elapsed();
        let val_metrics = match (&mut eval, val) {
            (Some(e), Some(v)) => Some(e.metrics(v, params)?),
            _ => None,
        };
        let report = EpochReport {
            epoch,
            train_loss: loss / n as f64,
            train_accuracy: epoch_loop.scores.filter(|_| has_classes).map(|_| correct as f64 / n as f64),
            val_loss: val_metrics.map(|m| m.loss),
            val_accuracy: val_metrics.and_then(|m| m.accuracy),
            examples_per_s: n as f64 / train_time.as_secs_f64().max(1e-9),
            seconds: t0.elapsed().as_secs_f64(),
        };
        epoch_loop.bar.suspend(|| on_epoch(&report));
        epochs.push(report);
    }
    epoch_loop.bar.finish_and_clear();
    Ok(TrainReport { epochs, seconds: started.elapsed().as_secs_f64(), compile })
}

/// The state of the step loop, allocated once before the first epoch.
struct EpochLoop {
    step: Runner,
    /// The step before the optimizer, for `--check-finite`'s float64 re-run.
    raw: Function,
    /// Indices of the step's `loss` and accuracy-source results.
    loss: usize,
    scores: Option<usize>,
    batch: Batch,
    /// The params before the current step (`--check-finite` only).
    before: Vec<f32>,
    bar: ProgressBar,
}

impl EpochLoop {
    /// One epoch over `order` in minibatches of `full`: the sum of the step losses weighted
    /// by minibatch size, and the number of correctly classified examples.
    fn run(
        &mut self,
        epoch: usize,
        cfg: &TrainConfig,
        order: &[usize],
        full: usize,
        train: &Dataset,
        params: &mut Params,
    ) -> Result<(f64, usize), RunError> {
        self.bar.set_position(0);
        self.bar.set_message(format!("epoch {epoch}/{}", cfg.epochs));
        let (mut loss, mut correct) = (0f64, 0usize);
        for (s, idx) in order.chunks(full).enumerate() {
            let batch = &mut self.batch;
            batch.gather(train, idx);
            if cfg.check_finite {
                self.before.copy_from_slice(&params.data);
            }
            self.step.run(batch, Slab::Mut(&mut params.data), cfg.lr)?;
            let step_loss = self.step.result(self.loss, batch.rows)[0];
            if cfg.check_finite && (!step_loss.is_finite() || params.data.iter().any(|x| !x.is_finite())) {
                let context = format!("step {} of epoch {epoch}", s + 1);
                return Err(diagnose(&self.raw, params, &self.before, batch, cfg.lr, &context));
            }
            if !step_loss.is_finite() {
                return Err(RunError::Diverged(format!(
                    "training diverged: the loss is {step_loss} at step {} of epoch {epoch}; nothing was saved \
                     (try a smaller --lr or --standardize; --check-finite names the op that overflowed)",
                    s + 1
                )));
            }
            loss += f64::from(step_loss) * batch.rows as f64;
            if let Some(i) = self.scores {
                let scores = self.step.result(i, batch.rows);
                correct += count_correct(scores, self.step.result_width(i), &batch.classes[..batch.rows]);
            }
            self.bar.inc(1);
        }
        Ok((loss, correct))
    }
}

/// Re-runs the failing step in the float64 interpreter from the params `before` it.
fn diagnose(raw: &Function, params: &Params, before: &[f32], batch: &Batch, lr: f32, context: &str) -> RunError {
    let rows = batch.rows;
    let f64s = |xs: &[f32]| xs.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let mut inputs = batch.inputs.iter();
    let args: Vec<Tensor> = raw
        .args
        .iter()
        .map(|a| {
            let sizes = a.ty.shape.sizes(rows);
            let n = a.ty.shape.len(rows);
            let data = match &a.kind {
                ArgKind::Input => f64s(&inputs.next().expect("one buffer per input")[..n]),
                ArgKind::Label { .. } if a.ty.dtype == DType::I32 => {
                    batch.classes[..n].iter().map(|&c| f64::from(c)).collect()
                }
                ArgKind::Label { .. } => f64s(&batch.reals[..n]),
                ArgKind::Param { .. } => {
                    let info = params.info(&a.name).expect("every param is in the slab");
                    f64s(&before[info.offset..info.offset + info.len])
                }
                ArgKind::Hyper => vec![f64::from(lr); n],
            };
            Tensor::new(sizes, data)
        })
        .collect();
    match first_non_finite(raw, rows, &args, context) {
        Ok(Some(d)) => RunError::NonFinite(d),
        Ok(None) => RunError::NonFinite(Diagnostic::error(format!(
            "{context}: the loss or an updated param is not finite in float32, though the float64 \
             interpreter finds every value finite (float32 underflow or rounding)"
        ))),
        Err(e) => RunError::Call(format!("{context}: the loss is not finite, and re-running the step failed: {e}")),
    }
}

fn progress_bar(cfg: &TrainConfig, steps: usize) -> ProgressBar {
    if !cfg.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} steps [{elapsed_precise}, eta {eta}]")
        .expect("valid template");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
