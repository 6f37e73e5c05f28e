//! Per-epoch figures and their two renderings: a human line for stderr and the JSON
//! object of SPEC §4 for stdout.

use std::time::Duration;

use serde_json::{Value, json};

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// Example-weighted mean of the epoch's step losses.
    pub train_loss: f64,
    /// `None` for real labels.
    pub train_accuracy: Option<f64>,
    /// `None` without validation data.
    pub val_loss: Option<f64>,
    /// Fraction of validation examples whose argmax is their class (class labels only).
    pub val_accuracy: Option<f64>,
    /// Training examples per second of step time (gather, step, metrics; not validation).
    pub examples_per_s: f64,
    /// The epoch's wall time, validation included.
    pub seconds: f64,
    /// The learning rate at the epoch's last step, when a schedule changes it (not in JSON).
    pub lr: Option<f64>,
}

impl EpochReport {
    /// `{"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
    /// "examples_per_s", "seconds"}` in that order; absent figures (and NaN) are `null`.
    pub fn to_json(&self) -> String {
        object(&[
            ("epoch", json!(self.epoch)),
            ("train_loss", json!(self.train_loss)),
            ("train_accuracy", json!(self.train_accuracy)),
            ("val_loss", json!(self.val_loss)),
            ("val_accuracy", json!(self.val_accuracy)),
            ("examples_per_s", json!(self.examples_per_s)),
            ("seconds", json!(self.seconds)),
        ])
    }

    /// The per-epoch history a checkpoint keeps: a JSON array of
    /// `{"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}` (absent figures
    /// and NaN are `null`). Floats print as the shortest text that reads back to the same bits.
    pub fn history_json(epochs: &[EpochReport]) -> String {
        let items: Vec<String> = epochs
            .iter()
            .map(|e| {
                object(&[
                    ("epoch", json!(e.epoch)),
                    ("train_loss", json!(e.train_loss)),
                    ("train_accuracy", json!(e.train_accuracy)),
                    ("val_loss", json!(e.val_loss)),
                    ("val_accuracy", json!(e.val_accuracy)),
                ])
            })
            .collect();
        format!("[{}]", items.join(","))
    }

    /// Reads [`EpochReport::history_json`]'s text: a `null` train loss reads as NaN, the speed
    /// fields (not stored) as 0, `lr` as `None`. Epochs must be positive and increasing.
    pub fn parse_history(text: &str) -> Result<Vec<EpochReport>, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let items = v.as_array().ok_or("expected a JSON array")?;
        let mut out: Vec<EpochReport> = Vec::with_capacity(items.len());
        for item in items {
            let bad = || format!("bad entry {item}");
            let number = |key: &str| -> Result<Option<f64>, String> {
                match &item[key] {
                    Value::Null => Ok(None),
                    x => x.as_f64().map(Some).ok_or_else(bad),
                }
            };
            let epoch = item["epoch"].as_u64().filter(|&e| e >= 1).ok_or_else(bad)? as usize;
            if out.last().is_some_and(|p| p.epoch >= epoch) {
                return Err(format!("epoch {epoch} follows epoch {}", out.last().map_or(0, |p| p.epoch)));
            }
            out.push(EpochReport {
                epoch,
                train_loss: number("train_loss")?.unwrap_or(f64::NAN),
                train_accuracy: number("train_accuracy")?,
                val_loss: number("val_loss")?,
                val_accuracy: number("val_accuracy")?,
                examples_per_s: 0.0,
                seconds: 0.0,
                lr: None,
            });
        }
        Ok(out)
    }

    /// One human-readable line: `epoch 3/10  loss 0.4123  acc 0.8750  val loss ...`.
    pub fn summary(&self, epochs: usize) -> String {
        let mut s = format!("epoch {:>w$}/{epochs}  loss {:.4}", self.epoch, self.train_loss, w = digits(epochs));
        if let Some(a) = self.train_accuracy {
            s += &format!("  acc {a:.4}");
        }
        if let Some(l) = self.val_loss {
            s += &format!("  val loss {l:.4}");
        }
        if let Some(a) = self.val_accuracy {
            s += &format!("  val acc {a:.4}");
        }
        if let Some(lr) = self.lr {
            s += &format!("  lr {lr:.3e}");
        }
        s + &format!("  {:.0} ex/s  {:.2}s", self.examples_per_s, self.seconds)
    }
}

/// A JSON object with its keys in the given order (serde_json's map sorts them).
pub fn object(fields: &[(&str, Value)]) -> String {
    let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{v}", Value::from(*k))).collect();
    format!("{{{}}}", parts.join(","))
}

fn digits(n: usize) -> usize {
    n.to_string().len()
}

/// Why training ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// Every epoch ran.
    Finished,
    /// The validation loss did not improve for `patience` epochs; the params of
    /// `best_epoch` were restored.
    EarlyStopped {
        /// The epoch (1-based) of the lowest validation loss.
        best_epoch: usize,
        /// That validation loss.
        best_val_loss: f64,
    },
    /// The interrupt flag was raised; `at` is the position after the last step taken.
    Interrupted {
        /// Epochs and examples done when training stopped.
        at: crate::driver::Position,
    },
}

impl Stop {
    /// `finished`, `early_stopping` or `interrupted`.
    pub fn name(&self) -> &'static str {
        match self {
            Stop::Finished => "finished",
            Stop::EarlyStopped { .. } => "early_stopping",
            Stop::Interrupted { .. } => "interrupted",
        }
    }
}

/// A whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    /// The epochs this run completed.
    pub epochs: Vec<EpochReport>,
    /// Wall time of the epoch loop.
    pub seconds: f64,
    /// What was JIT-compiled: (function, minibatch size or examples, compile time).
    pub compile: Vec<(String, usize, Duration)>,
    /// Why training ended.
    pub stop: Stop,
}

impl TrainReport {
    /// The last object of `--json`: `{"done": true, "epochs", "seconds", ...final metrics,
    /// "stop"}`, then `extra` fields (e.g. R² or the confusion matrix).
    pub fn done_json(&self, extra: &[(&str, Value)]) -> String {
        let last = self.epochs.last();
        let mut fields = vec![
            ("done", json!(true)),
            ("epochs", json!(self.epochs.last().map_or(0, |e| e.epoch))),
            ("seconds", json!(self.seconds)),
            ("train_loss", json!(last.map(|e| e.train_loss))),
            ("train_accuracy", json!(last.and_then(|e| e.train_accuracy))),
            ("val_loss", json!(last.and_then(|e| e.val_loss))),
            ("val_accuracy", json!(last.and_then(|e| e.val_accuracy))),
            ("examples_per_s", json!(last.map(|e| e.examples_per_s))),
            ("stop", json!(self.stop.name())),
        ];
        if let Stop::EarlyStopped { best_epoch, .. } = self.stop {
            fields.push(("best_epoch", json!(best_epoch)));
        }
        fields.extend(extra.iter().cloned());
        object(&fields)
    }

    /// Total compile time.
    pub fn compile_time(&self) -> Duration {
        self.compile.iter().map(|c| c.2).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> EpochReport {
        EpochReport {
            epoch: 3,
            train_loss: 0.5,
            train_accuracy: Some(0.75),
            val_loss: None,
            val_accuracy: None,
            examples_per_s: 1234.4,
            seconds: 0.25,
            lr: None,
        }
    }

    #[test]
    fn json_has_the_spec_fields_and_nulls() {
        assert_eq!(
            epoch().to_json(),
            r#"{"epoch":3,"train_loss":0.5,"train_accuracy":0.75,"val_loss":null,"val_accuracy":null,"examples_per_s":1234.4,"seconds":0.25}"#
        );
        let nan = EpochReport { train_loss: f64::NAN, ..epoch() };
        let j: Value = serde_json::from_str(&nan.to_json()).unwrap();
        assert_eq!(j["train_loss"], Value::Null);
    }

    #[test]
    fn history_round_trips_bit_for_bit() {
        let a = EpochReport { epoch: 1, train_loss: 0.1 + 0.2, examples_per_s: 0.0, seconds: 0.0, ..epoch() };
        let b = EpochReport {
            epoch: 2,
            train_loss: f64::NAN,
            train_accuracy: None,
            val_loss: Some(1.0 / 3.0),
            val_accuracy: Some(0.5),
            examples_per_s: 0.0,
            seconds: 0.0,
            lr: None,
        };
        let text = EpochReport::history_json(&[a.clone(), b.clone()]);
        assert_eq!(
            text,
            r#"[{"epoch":1,"train_loss":0.30000000000000004,"train_accuracy":0.75,"val_loss":null,"val_accuracy":null},{"epoch":2,"train_loss":null,"train_accuracy":null,"val_loss":0.3333333333333333,"val_accuracy":0.5}]"#
        );
        let back = EpochReport::parse_history(&text).unwrap();
        assert_eq!(back[0], a);
        assert!(back[1].train_loss.is_nan());
        assert_eq!(EpochReport { train_loss: 0.0, ..back[1].clone() }, EpochReport { train_loss: 0.0, ..b });
        assert_eq!(EpochReport::parse_history("[]").unwrap(), []);
        for bad in
            [r#"{"epoch":1}"#, r#"[{"epoch":0}]"#, r#"[{"epoch":2},{"epoch":2}]"#, r#"[{"epoch":1,"val_loss":"x"}]"#]
        {
            assert!(EpochReport::parse_history(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn summary_line() {
        assert_eq!(epoch().summary(10), "epoch  3/10  loss 0.5000  acc 0.7500  1234 ex/s  0.25s");
        let scheduled = EpochReport { lr: Some(0.0125), ..epoch() };
        assert_eq!(scheduled.summary(10), "epoch  3/10  loss 0.5000  acc 0.7500  lr 1.250e-2  1234 ex/s  0.25s");
    }

    #[test]
    fn done_object_repeats_the_final_metrics() {
        let stop = Stop::EarlyStopped { best_epoch: 2, best_val_loss: 0.1 };
        let r = TrainReport { epochs: vec![epoch()], seconds: 1.5, compile: vec![], stop };
        let j: Value = serde_json::from_str(&r.done_json(&[("r2", json!(0.5))])).unwrap();
        assert_eq!(
            (j["done"].clone(), j["epochs"].clone(), j["train_accuracy"].clone()),
            (json!(true), json!(3), json!(0.75))
        );
        assert_eq!(
            (j["stop"].clone(), j["best_epoch"].clone(), j["r2"].clone()),
            (json!("early_stopping"), json!(2), json!(0.5))
        );
    }
}
