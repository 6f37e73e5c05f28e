//! The forward function on a whole data set: validation metrics and predictions.
//!
//! Examples are run in order in minibatches of [`EVAL_BATCH`] (and one smaller last
//! minibatch), so a data set of any size costs at most two compiled functions.

use bpc_ir::Function;
use bpc_opt::OptLevel;

use crate::data::{Dataset, LabelEncoding, Labels};
use crate::params::Params;
use crate::runner::{Batch, RunError, Runner, Slab};
use crate::schema::Schema;

/// Minibatch size for evaluation and prediction.
pub const EVAL_BATCH: usize = 256;

/// The copy of `func` whose results are only those named in `keep` (in `func`'s order),
/// optimized at `level` for minibatch size `batch` (`bpc_opt::optimize_for_batch`); dead
/// code for the others is the optimizer's to remove.
pub fn forward_function(func: &Function, keep: &[&str], level: OptLevel, batch: usize) -> Function {
    bpc_opt::optimize_for_batch(&keeping(func, keep), level, batch)
}

/// The copy of `func` whose results are only those named in `keep`, before the optimizer.
pub fn keeping(func: &Function, keep: &[&str]) -> Function {
    let mut f = func.clone();
    f.results.retain(|r| keep.contains(&r.name.as_str()));
    f
}

/// The result accuracy is measured on: `output`, else `logits` (SPEC §4), if the model has a
/// class label and that result holds one score per class.
pub fn accuracy_source(func: &Function, schema: &Schema) -> Option<&'static str> {
    let k = schema.classes()?;
    ["output", "logits"].into_iter().find(|n| func.result(n).is_some_and(|r| func.ty(r.value).shape.dims == [k]))
}

/// Number of rows of `scores` (`labels.len()` rows of `k`) whose argmax is the label.
/// Ties go to the first maximum; NaN never wins.
pub fn count_correct(scores: &[f32], k: usize, labels: &[i32]) -> usize {
    labels.iter().zip(scores.chunks_exact(k)).filter(|&(&y, row)| argmax(row) == y as usize).count()
}

/// Index of the first maximum of `row` (0 for an all-NaN row).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] || row[best].is_nan() && !x.is_nan() {
            best = i;
        }
    }
    best
}

/// Loss and accuracy over a data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// Example-weighted mean of the minibatch losses.
    pub loss: f64,
    /// `None` for real labels or a model without class scores.
    pub accuracy: Option<f64>,
}

/// A forward function ready to run over data sets.
pub struct Evaluator {
    runner: Runner,
    batch: Batch,
    loss: Option<usize>,
    scores: Option<usize>,
}

impl Evaluator {
    /// Compiles the forward pass of `func` with the results `loss` and the accuracy source.
    pub fn for_metrics(
        func: &Function,
        schema: &Schema,
        params: &Params,
        level: OptLevel,
    ) -> Result<Evaluator, RunError> {
        let mut keep = vec!["loss"];
        keep.extend(accuracy_source(func, schema));
        Evaluator::new(keeping(func, &keep), level, schema, params)
    }

    /// Compiles the forward pass of `func` with its `output` (else `logits`) as the result.
    pub fn for_prediction(
        func: &Function,
        schema: &Schema,
        params: &Params,
        level: OptLevel,
    ) -> Result<Evaluator, RunError> {
        let name = ["output", "logits"]
            .into_iter()
            .find(|n| func.result(n).is_some())
            .ok_or_else(|| RunError::Call("the model declares no `output` (and has no logits) to predict".into()))?;
        Evaluator::new(keeping(func, &[name]), level, schema, params)
    }

    fn new(func: Function, level: OptLevel, schema: &Schema, params: &Params) -> Result<Evaluator, RunError> {
        let loss = func.results.iter().position(|r| r.name == "loss");
        let scores = func.results.iter().position(|r| r.name == "output" || r.name == "logits");
        let scores = scores.filter(|_| accuracy_source(&func, schema).is_some() || loss.is_none());
        let runner = Runner::new(func, level, schema, params, EVAL_BATCH)?;
        Ok(Evaluator { runner, batch: Batch::new(schema, EVAL_BATCH), loss, scores })
    }

    /// Lets large matrix products use `threads` threads (0: all cores).
    pub fn with_threads(mut self, threads: usize) -> Evaluator {
        self.runner.set_threads(threads);
        self
    }

    /// Compiles for the minibatch sizes a data set of `n` examples needs; returns the time.
    pub fn prepare(&mut self, n: usize) -> Result<std::time::Duration, RunError> {
        let mut t = std::time::Duration::ZERO;
        for rows in [EVAL_BATCH.min(n), n % EVAL_BATCH] {
            if rows > 0 {
                t += self.runner.prepare(rows)?;
            }
        }
        Ok(t)
    }

    /// Runs over `data` in order, calling `visit(first_row, runner)` after each minibatch.
    fn sweep(
        &mut self,
        data: &Dataset,
        params: &Params,
        mut visit: impl FnMut(usize, &Batch, &Runner),
    ) -> Result<(), RunError> {
        let mut idx: Vec<usize> = Vec::with_capacity(EVAL_BATCH);
        for start in (0..data.len()).step_by(EVAL_BATCH) {
            idx.clear();
            idx.extend(start..(start + EVAL_BATCH).min(data.len()));
            self.batch.gather(data, &idx);
            self.runner.run(&self.batch, Slab::Shared(&params.data), 0.0)?;
            visit(start, &self.batch, &self.runner);
        }
        Ok(())
    }

    /// Loss and accuracy of `params` on `data`.
    pub fn metrics(&mut self, data: &Dataset, params: &Params) -> Result<Metrics, RunError> {
        let (loss_i, scores_i) = (self.loss, self.scores);
        let (mut loss, mut correct) = (0f64, 0usize);
        self.sweep(data, params, |_, batch, r| {
            if let Some(i) = loss_i {
                loss += f64::from(r.result(i, batch.rows)[0]) * batch.rows as f64;
            }
            if let Some(i) = scores_i {
                correct += count_correct(r.result(i, batch.rows), r.result_width(i), &batch.classes[..batch.rows]);
            }
        })?;
        let n = data.len().max(1) as f64;
        let has_classes = matches!(data.labels, Labels::Class { .. });
        Ok(Metrics { loss: loss / n, accuracy: scores_i.filter(|_| has_classes).map(|_| correct as f64 / n) })
    }

    /// The prediction for every example of `data`.
    pub fn predict(
        &mut self,
        data: &Dataset,
        params: &Params,
        classes: Option<usize>,
    ) -> Result<Predictions, RunError> {
        let i = self.scores.or(self.runner.func().results.iter().position(|r| r.update.is_none())).expect("one result");
        let name = self.runner.func().results[i].name.clone();
        let width = self.runner.result_width(i);
        let mut values = vec![0.0; data.len() * width];
        self.sweep(data, params, |start, batch, r| {
            values[start * width..(start + batch.rows) * width].copy_from_slice(r.result(i, batch.rows));
        })?;
        let classes = classes.filter(|&k| k == width).map(|k| values.chunks_exact(k).map(argmax).collect());
        Ok(Predictions { name, rows: data.len(), width, values, classes })
    }
}

/// What `predict` computes: the `output` (or `logits`) rows and, for a class label, the
/// argmax class of each.
#[derive(Clone, Debug, PartialEq)]
pub struct Predictions {
    /// The result predicted: `output` or `logits`.
    pub name: String,
    pub rows: usize,
    /// Elements per example.
    pub width: usize,
    /// `rows * width` floats.
    pub values: Vec<f32>,
    pub classes: Option<Vec<usize>>,
}

impl Predictions {
    /// Accuracy against the class labels of `data`, if it has them.
    pub fn accuracy(&self, data: &Dataset) -> Option<f64> {
        let (Some(pred), Labels::Class { values, .. }) = (&self.classes, &data.labels) else { return None };
        let hits = pred.iter().zip(values).filter(|&(&p, &y)| p == y as usize).count();
        Some(hits as f64 / self.rows.max(1) as f64)
    }

    /// The text of class `c`: its name if the labels were names, else the index.
    pub fn class_text(c: usize, encoding: Option<&LabelEncoding>) -> String {
        match encoding {
            Some(LabelEncoding::Names(n)) if c < n.len() => n[c].clone(),
            Some(LabelEncoding::Names(_) | LabelEncoding::Integers) | None => c.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum_and_skips_nan() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, 2.0]), 2);
        assert_eq!(argmax(&[3.0, f32::NAN]), 0);
    }

    #[test]
    fn counts_correct_rows() {
        let scores = [0.9, 0.1, 0.2, 0.8, 0.6, 0.4];
        assert_eq!(count_correct(&scores, 2, &[0, 1, 1]), 2);
    }

    #[test]
    fn class_text_uses_names() {
        let enc = LabelEncoding::Names(vec!["a".into(), "b".into()]);
        assert_eq!(Predictions::class_text(1, Some(&enc)), "b");
        assert_eq!(Predictions::class_text(1, Some(&LabelEncoding::Integers)), "1");
    }
}
