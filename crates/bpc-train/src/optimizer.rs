//! Optimizer settings, the runtime values of a step's hyperparameters, the optimizer state
//! slab, and learning-rate schedules.
//!
//! The update rules themselves are compiled into the train step ([`bpc_autodiff::optim`]);
//! this module supplies what changes between steps without recompiling: the learning rate
//! (from the schedule), Adam's bias corrections `1 − β1^t` and `sqrt(1 − β2^t)` for the
//! 1-based step count `t`, and the state buffers the step reads and overwrites in place.

use std::fmt;

use bpc_autodiff::optim::hyper;
use bpc_autodiff::{Optimizer, UpdateRule};
use bpc_ir::{Function, Init};

use crate::params::{ParamInfo, Params};

/// The optimizer and its settings (PyTorch's defaults: momentum 0.9, β1 0.9, β2 0.999,
/// eps 1e-8, no weight decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerConfig {
    /// The update rule (default SGD).
    pub optimizer: Optimizer,
    /// `μ` of [`Optimizer::Momentum`].
    pub momentum: f32,
    /// Adam's decay rate of the first-moment (mean) estimate.
    pub beta1: f32,
    /// Adam's decay rate of the second-moment (uncentered variance) estimate.
    pub beta2: f32,
    /// Adam's term added to `√v̂` in the denominator, for numerical stability.
    pub eps: f32,
    /// L2 penalty added to the gradient (decoupled for AdamW); 0 compiles no decay term.
    pub weight_decay: f32,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            optimizer: Optimizer::Sgd,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl OptimizerConfig {
    /// What the train step compiles.
    pub fn rule(&self) -> UpdateRule {
        UpdateRule { optimizer: self.optimizer, weight_decay: self.weight_decay != 0.0 }
    }

    /// The hyperparameter values of step `t` (1-based) at learning rate `lr`.
    pub fn hypers(&self, lr: f32, t: u64) -> Hypers {
        let mut h = Hypers::lr(lr);
        h.values[HyperKey::Momentum as usize] = self.momentum;
        h.values[HyperKey::Beta1 as usize] = self.beta1;
        h.values[HyperKey::Beta2 as usize] = self.beta2;
        h.values[HyperKey::Eps as usize] = self.eps;
        h.values[HyperKey::WeightDecay as usize] = self.weight_decay;
        // In f64 (as PyTorch computes them in Python floats), rounded once.
        let t = t.min(i32::MAX as u64) as i32;
        h.values[HyperKey::BiasCorrection1 as usize] = (1.0 - f64::from(self.beta1).powi(t)) as f32;
        h.values[HyperKey::BiasCorrection2Sqrt as usize] = (1.0 - f64::from(self.beta2).powi(t)).sqrt() as f32;
        h
    }

    /// The settings as JSON text for a checkpoint's metadata.
    pub fn to_json(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("optimizer".into(), self.optimizer.name().into());
        match self.optimizer {
            Optimizer::Sgd => {}
            Optimizer::Momentum { .. } => {
                m.insert("momentum".into(), f64::from(self.momentum).into());
            }
            Optimizer::Adam | Optimizer::AdamW => {
                m.insert("beta1".into(), f64::from(self.beta1).into());
                m.insert("beta2".into(), f64::from(self.beta2).into());
                m.insert("eps".into(), f64::from(self.eps).into());
            }
        }
        m.insert("weight_decay".into(), f64::from(self.weight_decay).into());
        serde_json::Value::Object(m).to_string()
    }
}

impl OptimizerConfig {
    /// The settings recorded by [`OptimizerConfig::to_json`] (fields it leaves out, such as
    /// Adam's betas for SGD, keep their defaults; other fields are ignored).
    pub fn from_json(text: &str) -> Result<OptimizerConfig, String> {
        let bad = |what: &str| format!("bad optimizer settings ({what}): `{text}`");
        let v: serde_json::Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
        let name = v["optimizer"].as_str().ok_or_else(|| bad("no optimizer name"))?;
        let optimizer = Optimizer::from_name(name).ok_or_else(|| bad("unknown optimizer"))?;
        let mut c = OptimizerConfig { optimizer, ..OptimizerConfig::default() };
        for (key, field) in [
            ("momentum", &mut c.momentum),
            ("beta1", &mut c.beta1),
            ("beta2", &mut c.beta2),
            ("eps", &mut c.eps),
            ("weight_decay", &mut c.weight_decay),
        ] {
            match &v[key] {
                serde_json::Value::Null => {}
                x => *field = x.as_f64().filter(|x| x.is_finite()).ok_or_else(|| bad(key))? as f32,
            }
        }
        Ok(c)
    }
}

/// The `Hyper` arguments a train step may take, in a fixed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HyperKey {
    /// The learning rate of the step (the schedule applied).
    Lr,
    /// Momentum's `μ`.
    Momentum,
    /// Adam's `β1`.
    Beta1,
    /// Adam's `β2`.
    Beta2,
    /// Adam's `ε`.
    Eps,
    /// `1 − β1^t` at the 1-based step `t`.
    BiasCorrection1,
    /// `sqrt(1 − β2^t)` at the 1-based step `t`.
    BiasCorrection2Sqrt,
    /// The weight-decay coefficient.
    WeightDecay,
}

impl HyperKey {
    /// The key of the `Hyper` argument named `name`, if it is one the driver supplies.
    pub fn of(name: &str) -> Option<HyperKey> {
        Some(match name {
            hyper::LR => HyperKey::Lr,
            hyper::MOMENTUM => HyperKey::Momentum,
            hyper::BETA1 => HyperKey::Beta1,
            hyper::BETA2 => HyperKey::Beta2,
            hyper::EPS => HyperKey::Eps,
            hyper::BIAS_CORRECTION1 => HyperKey::BiasCorrection1,
            hyper::BIAS_CORRECTION2_SQRT => HyperKey::BiasCorrection2Sqrt,
            hyper::WEIGHT_DECAY => HyperKey::WeightDecay,
            _ => return None,
        })
    }
}

/// The values of every hyperparameter for one call, indexed by [`HyperKey`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hypers {
    /// `values[key as usize]` is the value of `key` (unused keys are 0).
    pub values: [f32; 8],
}

impl Hypers {
    /// Only a learning rate (the others 0): enough for a plain SGD step or a forward pass.
    pub fn lr(lr: f32) -> Hypers {
        let mut values = [0.0; 8];
        values[HyperKey::Lr as usize] = lr;
        Hypers { values }
    }

    /// The value of `key`.
    pub fn get(&self, key: HyperKey) -> f32 {
        self.values[key as usize]
    }
}

/// The optimizer's state: its step count and one slab of buffers, laid out as the train
/// step's `State` arguments (`PREFIX.P` per state prefix, params in declaration order).
#[derive(Clone, Debug, PartialEq)]
pub struct OptState {
    pub optimizer: Optimizer,
    /// Steps taken so far (Adam's `t` of the next step is `steps + 1`).
    pub steps: u64,
    pub slab: Params,
}

impl OptState {
    /// Zero state of `optimizer` for the params of `func` (the forward model).
    pub fn new(func: &Function, optimizer: Optimizer) -> OptState {
        let params = Params::zeros(func);
        let mut info = Vec::new();
        let mut offset = 0;
        for prefix in optimizer.state_prefixes() {
            for p in &params.info {
                info.push(ParamInfo {
                    name: format!("{prefix}.{}", p.name),
                    arg: p.arg,
                    shape: p.shape.clone(),
                    init: Init::Const(0.0),
                    offset,
                    len: p.len,
                });
                offset += p.len;
            }
        }
        OptState { optimizer, steps: 0, slab: Params { data: vec![0.0; offset], info } }
    }
}

/// How the learning rate changes during training.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// The base learning rate every epoch (the default).
    Constant,
    /// `lr · factor^⌊(epoch − 1) / every⌋` (PyTorch's `StepLR`, stepped per epoch).
    Step {
        /// Epochs between two decays.
        every: usize,
        /// What each decay multiplies the learning rate by.
        factor: f32,
    },
    /// `lr · (1 + cos(π·p)) / 2`, `p` the fraction of all steps done (annealed every step
    /// to 0 at the end; PyTorch's `CosineAnnealingLR` with `eta_min = 0`).
    Cosine,
}

impl LrSchedule {
    /// Parses `constant`, `step:EPOCHS:FACTOR` or `cosine`.
    pub fn parse(text: &str) -> Result<LrSchedule, String> {
        let bad = || format!("expected constant, step:EPOCHS:FACTOR (e.g. step:10:0.5) or cosine, found `{text}`");
        match text.trim() {
            "constant" => Ok(LrSchedule::Constant),
            "cosine" => Ok(LrSchedule::Cosine),
            t => {
                let rest = t.strip_prefix("step:").ok_or_else(bad)?;
                let (every, factor) = rest.split_once(':').ok_or_else(bad)?;
                let every: usize = every.parse().ok().filter(|&e| e >= 1).ok_or_else(bad)?;
                let factor: f32 = factor.parse().ok().filter(|f: &f32| f.is_finite() && *f > 0.0).ok_or_else(bad)?;
                Ok(LrSchedule::Step { every, factor })
            }
        }
    }

    /// The learning rate of a step in `epoch` (1-based) when a fraction `progress` of all the
    /// run's steps is done.
    pub fn lr(&self, base: f32, epoch: usize, progress: f64) -> f32 {
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Step { every, factor } => {
                let k = (epoch.saturating_sub(1) / every).min(i32::MAX as usize) as i32;
                (f64::from(base) * f64::from(factor).powi(k)) as f32
            }
            LrSchedule::Cosine => {
                let p = progress.clamp(0.0, 1.0);
                (f64::from(base) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())) as f32
            }
        }
    }
}

impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LrSchedule::Constant => f.write_str("constant"),
            LrSchedule::Step { every, factor } => write!(f, "step:{every}:{factor}"),
            LrSchedule::Cosine => f.write_str("cosine"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(LrSchedule::parse("constant").unwrap().lr(0.1, 7, 0.5), 0.1);
        let s = LrSchedule::parse("step:10:0.5").unwrap();
        assert_eq!(s, LrSchedule::Step { every: 10, factor: 0.5 });
        assert_eq!([1, 10, 11, 21].map(|e| s.lr(0.8, e, 0.0)), [0.8, 0.8, 0.4, 0.2]);
        let c = LrSchedule::parse("cosine").unwrap();
        assert_eq!((c.lr(0.2, 1, 0.0), c.lr(0.2, 1, 0.5), c.lr(0.2, 1, 1.0)), (0.2, 0.1, 0.0));
        for bad in ["", "step", "step:0:0.5", "step:3", "step:3:-1", "linear", "step:a:0.5"] {
            assert!(LrSchedule::parse(bad).unwrap_err().contains("expected constant, step:EPOCHS:FACTOR"), "{bad}");
        }
        assert_eq!(s.to_string(), "step:10:0.5");
    }

    #[test]
    fn bias_corrections_follow_the_step_count() {
        let cfg = OptimizerConfig { optimizer: Optimizer::Adam, ..OptimizerConfig::default() };
        let h = cfg.hypers(1e-3, 1);
        assert_eq!(h.get(HyperKey::BiasCorrection1), (1.0 - f64::from(0.9f32)) as f32);
        assert_eq!(h.get(HyperKey::BiasCorrection2Sqrt), (1.0 - f64::from(0.999f32)).sqrt() as f32);
        let h = cfg.hypers(1e-3, 2);
        assert_eq!(h.get(HyperKey::BiasCorrection1), (1.0 - f64::from(0.9f32).powi(2)) as f32);
        assert_eq!((h.get(HyperKey::Lr), h.get(HyperKey::Eps)), (1e-3, 1e-8));
    }

    #[test]
    fn settings_round_trip_through_json() {
        let d = OptimizerConfig::default();
        for c in [
            d,
            OptimizerConfig {
                optimizer: Optimizer::Momentum { nesterov: true },
                momentum: 0.8,
                weight_decay: 0.1,
                ..d
            },
            OptimizerConfig { optimizer: Optimizer::AdamW, beta1: 0.5, beta2: 0.9, eps: 1e-6, weight_decay: 0.01, ..d },
        ] {
            assert_eq!(OptimizerConfig::from_json(&c.to_json()), Ok(c), "{}", c.to_json());
        }
        assert_eq!(
            OptimizerConfig::from_json(r#"{"optimizer":"rmsprop"}"#).unwrap_err(),
            r#"bad optimizer settings (unknown optimizer): `{"optimizer":"rmsprop"}`"#
        );
        assert!(OptimizerConfig::from_json(r#"{"optimizer":"adam","beta1":"x"}"#).unwrap_err().contains("(beta1)"));
    }

    #[test]
    fn state_layout_matches_the_step() {
        use bpc_ir::{ArgKind, Shape, Span, Type};
        let mut f = Function::new("m");
        f.add_arg("x", ArgKind::Input, Type::f32(Shape::batched([2])), Span::NONE);
        f.add_arg("W", ArgKind::Param { init: Init::Xavier }, Type::f32(Shape::shared([3, 2])), Span::NONE);
        f.add_arg("b", ArgKind::Param { init: Init::Const(0.0) }, Type::f32(Shape::shared([3])), Span::NONE);
        let s = OptState::new(&f, Optimizer::Adam);
        let names: Vec<(&str, usize)> = s.slab.info.iter().map(|i| (i.name.as_str(), i.offset)).collect();
        assert_eq!(names, [("exp_avg.W", 0), ("exp_avg.b", 6), ("exp_avg_sq.W", 9), ("exp_avg_sq.b", 15)]);
        assert_eq!(s.slab.data.len(), 18);
        assert!(OptState::new(&f, Optimizer::Sgd).slab.is_empty());
    }
}
