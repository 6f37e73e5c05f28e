//! The training driver: epochs of shuffled minibatches through the compiled train step.
//!
//! The train step (forward, adjoint and the optimizer's update fused in) comes from
//! `bpc_autodiff::train_step`, is optimized by `bpc_opt` and JIT-compiled by `bpc_codegen`
//! once for the minibatch size and once for the last, smaller minibatch of an epoch, which
//! is trained on, not dropped. Every hyperparameter is a runtime argument, so a learning-rate
//! schedule never recompiles. Epoch `e` shuffles with its own stream of the seed
//! ([`crate::init::epoch_stream`]), so a run resumed from a checkpoint at any step sees the
//! same minibatches as one never interrupted. `train_loss` is the example-weighted mean of
//! the step losses (each the minibatch objective, regularizer included), measured before each
//! step's update, as PyTorch's running loss is.
//!
//! Training stops at the end, at the first non-finite loss (an error), when the validation
//! loss has not improved for `patience` epochs (the best epoch's params are restored), or
//! when the interrupt flag is raised (after the current step; the caller saves).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bpc_autodiff::UpdateRule;
use bpc_ir::Function;
use bpc_opt::OptLevel;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use rand::seq::SliceRandom;

use crate::data::{Dataset, Labels};
use crate::eval::{Evaluator, Metrics, accuracy_source, count_correct};
use crate::finite::diagnose_step;
use crate::init::epoch_stream;
use crate::optimizer::{LrSchedule, OptState, OptimizerConfig};
use crate::params::Params;
use crate::report::{EpochReport, Stop, TrainReport};
use crate::runner::{Batch, RunError, Runner, Slab};
use crate::schema::Schema;

/// Training settings (SPEC §4 defaults: 10 epochs, batch 32, lr 0.01, SGD, seed 0, `-O2`).
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Epochs in all, counting those done before [`TrainConfig::start`].
    pub epochs: usize,
    /// The minibatch size `B`: examples per step (at least 1). An epoch of `n` examples has
    /// `n / B` full minibatches and, if `n % B > 0`, a last, smaller one, trained on with a
    /// step compiled for that size.
    pub batch: usize,
    /// The base learning rate, scaled by `schedule`.
    pub lr: f32,
    /// How the learning rate changes from epoch to epoch (default: constant).
    pub schedule: LrSchedule,
    /// The update rule (SGD, momentum, Adam, AdamW) and its hyperparameters (default: SGD).
    pub optimizer: OptimizerConfig,
    /// Seeds the shuffling: each epoch's order of the training set. The params are drawn
    /// separately, when they are initialized from their own seed (`init_params(seed)`).
    pub seed: u64,
    /// Optimizer level of the compiled train step and forward pass (default `-O2`).
    pub opt_level: OptLevel,
    /// Threads for large matrix products; 0 uses all cores.
    pub threads: usize,
    /// After every step, check the loss and the params; on inf or NaN, re-run the step in
    /// the float64 interpreter and stop with a diagnostic naming the first op at fault.
    pub check_finite: bool,
    /// Draw an `indicatif` progress bar on stderr (default `false`; `bpc train` turns it on
    /// unless `--quiet`).
    pub progress: bool,
    /// Stop when the validation loss has not improved for this many epochs.
    pub patience: Option<usize>,
    /// Where a resumed run starts (default: the beginning, no epoch done). Epochs
    /// `start.epochs + 1 ..= epochs` are run.
    pub start: Position,
    /// Raised (by a Ctrl-C handler) to stop after the current step.
    pub interrupt: Option<Arc<AtomicBool>>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch: 32,
            lr: 0.01,
            schedule: LrSchedule::Constant,
            optimizer: OptimizerConfig::default(),
            seed: 0,
            opt_level: OptLevel::O2,
            threads: 0,
            check_finite: false,
            progress: false,
            patience: None,
            start: Position::default(),
            interrupt: None,
        }
    }
}

/// A point in training: whole epochs done, and examples done of the next epoch's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Position {
    /// Whole epochs done.
    pub epochs: usize,
    /// Examples of the next epoch's shuffled order already trained on.
    pub examples: usize,
}

/// The model's trainable state at a point, for checkpoints.
pub struct Snapshot<'a> {
    pub params: &'a Params,
    pub state: &'a OptState,
    pub at: Position,
}

/// The SGD train step of `func` before the optimizer (a [`Runner`] optimizes it per
/// minibatch size): results `loss`, the param updates and, when the model has one, the
/// accuracy source (`output` or `logits`).
pub fn step_function(func: &Function, schema: &Schema) -> Result<Function, RunError> {
    raw_step_function(func, schema, bpc_autodiff::Optimizer::Sgd.into())
}

/// The train step of `rule` before the optimizer (every value keeps its source span).
pub fn raw_step_function(func: &Function, schema: &Schema, rule: UpdateRule) -> Result<Function, RunError> {
    let mut step = bpc_autodiff::train_step(func, rule).map_err(RunError::Program)?;
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

/// Trains `params` (and the optimizer `state`) on `train` up to epoch `cfg.epochs`, evaluating
/// on `val` after each epoch, and calls `on_epoch` with each epoch's figures and a snapshot
/// (an error from it, such as a failed save, stops training).
pub fn train(
    func: &Function,
    params: &mut Params,
    state: &mut OptState,
    train: &Dataset,
    val: Option<&Dataset>,
    cfg: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochReport, &Snapshot) -> Result<(), RunError>,
) -> Result<TrainReport, RunError> {
    let schema = Schema::of(func).map_err(|e| RunError::Call(e.0))?;
    let n = train.len();
    if n == 0 || cfg.batch == 0 {
        return Err(RunError::Call("nothing to train: no examples or a minibatch size of 0".into()));
    }
    if state.optimizer != cfg.optimizer.optimizer {
        return Err(RunError::Call(format!(
            "the optimizer state is {}'s, but training uses {}",
            state.optimizer.name(),
            cfg.optimizer.optimizer.name()
        )));
    }
    if cfg.patience.is_some() && val.is_none() {
        return Err(RunError::Call("early stopping (patience) needs validation data".into()));
    }
    let full = cfg.batch.min(n);
    let mut compile = Vec::new();
    let raw = raw_step_function(func, &schema, cfg.optimizer.rule())?;
    let mut step = Runner::with_state(raw, cfg.opt_level, &schema, params, &state.slab, full)?;
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
    let mut lp = EpochLoop {
        loss: step.result_index("loss").ok_or_else(|| RunError::Call("the train step has no `loss` result".into()))?,
        scores: accuracy_source(func, &schema).and_then(|s| step.result_index(s)),
        step,
        batch: Batch::new(&schema, full),
        before: Before::default(),
        bar: progress_bar(cfg, n),
    };
    let mut best = Best::default();
    let has_classes = matches!(train.labels, Labels::Class { .. });
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let mut epochs = Vec::with_capacity(cfg.epochs.saturating_sub(cfg.start.epochs));
    let started = Instant::now();
    let mut stop = Stop::Finished;
    for epoch in cfg.start.epochs + 1..=cfg.epochs {
        let t0 = Instant::now();
        order.clear();
        order.extend(0..n);
        order.shuffle(&mut epoch_stream(cfg.seed, epoch));
        let skip = if epoch == cfg.start.epochs + 1 { cfg.start.examples.min(n) } else { 0 };
        let ep = lp.run(epoch, cfg, &order, skip, full, train, params, state)?;
        if let Some(done) = ep.interrupted_at {
            let at = if done == n {
                Position { epochs: epoch, examples: 0 }
            } else {
                Position { epochs: epoch - 1, examples: done }
            };
            stop = Stop::Interrupted { at };
            break;
        }
        if params.data.iter().any(|x| !x.is_finite()) {
            return Err(RunError::Diverged(format!("training diverged: params became inf or NaN in epoch {epoch}")));
        }
        let train_time = t0.elapsed();
        let val_metrics: Option<Metrics> = match (&mut eval, val) {
            (Some(e), Some(v)) => Some(e.metrics(v, params)?),
            _ => None,
        };
        let trained = (n - skip).max(1) as f64;
        let report = EpochReport {
            epoch,
            train_loss: ep.loss / trained,
            train_accuracy: lp.scores.filter(|_| has_classes).map(|_| ep.correct as f64 / trained),
            val_loss: val_metrics.map(|m| m.loss),
            val_accuracy: val_metrics.and_then(|m| m.accuracy),
            examples_per_s: (n - skip) as f64 / train_time.as_secs_f64().max(1e-9),
            seconds: t0.elapsed().as_secs_f64(),
            lr: (cfg.schedule != LrSchedule::Constant).then_some(f64::from(ep.last_lr)),
        };
        let snap = Snapshot { params, state, at: Position { epochs: epoch, examples: 0 } };
        lp.bar.suspend(|| on_epoch(&report, &snap))?;
        epochs.push(report);
        if let (Some(patience), Some(m)) = (cfg.patience, val_metrics)
            && let Some(s) = best.observe(epoch, m.loss, patience, params, state)
        {
            stop = s;
            break;
        }
    }
    lp.bar.finish_and_clear();
    if let Stop::EarlyStopped { .. } = stop {
        best.restore(params, state);
    }
    Ok(TrainReport { epochs, seconds: started.elapsed().as_secs_f64(), compile, stop })
}

/// The best validation loss so far and the params and state that reached it.
#[derive(Default)]
struct Best {
    epoch: usize,
    loss: f64,
    params: Vec<f32>,
    state: Vec<f32>,
    state_steps: u64,
}

impl Best {
    /// Records epoch `epoch`'s validation loss; `Some(stop)` when `patience` epochs have
    /// passed without an improvement.
    fn observe(&mut self, epoch: usize, loss: f64, patience: usize, params: &Params, state: &OptState) -> Option<Stop> {
        if self.epoch == 0 || loss < self.loss {
            *self = Best {
                epoch,
                loss,
                params: params.data.clone(),
                state: state.slab.data.clone(),
                state_steps: state.steps,
            };
            return None;
        }
        (epoch - self.epoch >= patience)
            .then_some(Stop::EarlyStopped { best_epoch: self.epoch, best_val_loss: self.loss })
    }

    fn restore(self, params: &mut Params, state: &mut OptState) {
        params.data = self.params;
        state.slab.data = self.state;
        state.steps = self.state_steps;
    }
}

/// What one pass over (part of) an epoch's order gave.
struct EpochRun {
    /// Sum of step losses weighted by minibatch size.
    loss: f64,
    correct: usize,
    last_lr: f32,
    /// `Some(examples done in this epoch)` if the interrupt flag stopped the pass.
    interrupted_at: Option<usize>,
}

/// Params and optimizer state before the current step (`--check-finite` only).
#[derive(Default)]
struct Before {
    params: Vec<f32>,
    state: Vec<f32>,
}

/// The state of the step loop, allocated once before the first epoch.
struct EpochLoop {
    /// Holds the step before the optimizer (`func()`), which `--check-finite` re-runs in
    /// float64.
    step: Runner,
    /// Indices of the step's `loss` and accuracy-source results.
    loss: usize,
    scores: Option<usize>,
    batch: Batch,
    before: Before,
    bar: ProgressBar,
}

impl EpochLoop {
    /// Epoch `epoch` over `order[skip..]` in minibatches of `full`.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        epoch: usize,
        cfg: &TrainConfig,
        order: &[usize],
        skip: usize,
        full: usize,
        train: &Dataset,
        params: &mut Params,
        state: &mut OptState,
    ) -> Result<EpochRun, RunError> {
        let n = order.len();
        self.bar.set_position(skip as u64);
        self.bar.reset_eta();
        self.bar.set_message(format!("epoch {epoch}/{}", cfg.epochs));
        let total = (cfg.epochs * n) as f64;
        let mut run = EpochRun { loss: 0.0, correct: 0, last_lr: cfg.lr, interrupted_at: None };
        let mut done = skip;
        for (s, idx) in order[skip..].chunks(full).enumerate() {
            let batch = &mut self.batch;
            batch.gather(train, idx);
            let progress = ((epoch - 1) * n + done) as f64 / total;
            let lr = cfg.schedule.lr(cfg.lr, epoch, progress);
            run.last_lr = lr;
            state.steps += 1;
            let hypers = cfg.optimizer.hypers(lr, state.steps);
            if cfg.check_finite {
                self.before.params.clone_from(&params.data);
                self.before.state.clone_from(&state.slab.data);
            }
            self.step.run_step(batch, Slab::Mut(&mut params.data), &mut state.slab.data, &hypers)?;
            let step_loss = self.step.result(self.loss, batch.rows)[0];
            let where_ = || format!("step {} of epoch {epoch}", s + 1 + skip.div_ceil(full));
            if cfg.check_finite && (!step_loss.is_finite() || params.data.iter().any(|x| !x.is_finite())) {
                let (p, st) = (&self.before.params, &self.before.state);
                return Err(diagnose_step(self.step.func(), params, p, &state.slab, st, batch, &hypers, &where_()));
            }
            if !step_loss.is_finite() {
                return Err(RunError::Diverged(format!("training diverged: the loss is {step_loss} at {}", where_())));
            }
            run.loss += f64::from(step_loss) * batch.rows as f64;
            if let Some(i) = self.scores {
                let scores = self.step.result(i, batch.rows);
                run.correct += count_correct(scores, self.step.result_width(i), &batch.classes[..batch.rows]);
            }
            done += batch.rows;
            self.bar.inc(batch.rows as u64);
            // Checked after the step: an interrupt finishes the step in flight.
            if cfg.interrupt.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
                run.interrupted_at = Some(done);
                return Ok(run);
            }
        }
        Ok(run)
    }
}

/// A per-epoch bar counting examples, with the rate and the epoch's remaining time.
fn progress_bar(cfg: &TrainConfig, examples: usize) -> ProgressBar {
    if !cfg.progress {
        return ProgressBar::hidden();
    }
    let bar = bar_on(ProgressDrawTarget::stderr(), examples);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The bar's look (an indicatif template): `epoch 3/10 ████░░ 512/1438 examples  45000 ex/s  eta 0s`.
fn bar_on(target: ProgressDrawTarget, examples: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(examples as u64), target);
    let style = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} examples  {rate}  eta {eta}")
        .expect("valid template")
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} ex/s", s.per_sec());
        });
    bar.set_style(style);
    bar
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    use super::*;

    /// A terminal that keeps the last line drawn.
    #[derive(Debug, Default, Clone)]
    struct Screen(Arc<Mutex<String>>);

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            if !s.is_empty() {
                *self.0.lock().unwrap() = s.to_string();
            }
            Ok(())
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.write_line(s)
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_bar_shows_examples_rate_and_eta() {
        let screen = Screen::default();
        let bar = bar_on(ProgressDrawTarget::term_like(Box::new(screen.clone())), 1438);
        bar.set_message("epoch 3/10");
        bar.inc(512);
        bar.force_draw();
        let line = screen.0.lock().unwrap().clone();
        assert!(line.starts_with("epoch 3/10 "), "{line}");
        for part in [" 512/1438 examples  ", " ex/s  eta "] {
            assert!(line.contains(part), "no `{part}` in `{line}`");
        }
        assert_eq!(line.chars().count(), 80, "the bar fills the terminal's width: `{line}`");
    }
}
