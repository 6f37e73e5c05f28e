//! The update rules compiled into a train step: PyTorch's `torch.optim` forms, emitted as IR
//! after the adjoint so the optimizer fuses them with the gradient kernels.
//!
//! Every hyperparameter is a runtime `Hyper` scalar (changing the learning rate, a schedule,
//! never recompiles); optimizer state (a momentum buffer, Adam's two moments) is a `State`
//! argument per param, zero at the start, that the step reads and overwrites in place. With
//! `g` the gradient, `w` the param, `t` the 1-based step count (the driver passes Adam's bias
//! corrections `1 − β1^t` and `sqrt(1 − β2^t)` as hyperparameters):
//!
//! - weight decay (all but AdamW, when compiled in): `g ← g + wd·w` (L2, as `torch.optim`);
//! - SGD: `w ← w − lr·g`;
//! - momentum (dampening 0): `v ← μ·v + g`, then `w ← w − lr·v`, or with Nesterov
//!   `w ← w − lr·(g + μ·v)` (`torch.optim.SGD`);
//! - Adam: `m ← β1·m + (1−β1)·g`, `s ← β2·s + (1−β2)·g²`,
//!   `w ← w − (lr / (1−β1^t)) · m / (sqrt(s) / sqrt(1−β2^t) + eps)` (`torch.optim.Adam`);
//! - AdamW: first `w ← w·(1 − lr·wd)` (decoupled decay, Loshchilov & Hutter 2019), then Adam.

use bpc_ir::{ArgId, ArgKind, BinaryOp, Function, Inst, Output, Span, Type, UnaryOp, Value};

/// The update rule of a train step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimizer {
    /// Plain SGD, `w ← w − lr·g`.
    Sgd,
    /// SGD with momentum `μ` (hyper `momentum`), PyTorch's form; state `momentum_buffer.P`.
    Momentum { nesterov: bool },
    /// Adam (Kingma & Ba 2015) as `torch.optim.Adam`; state `exp_avg.P`, `exp_avg_sq.P`.
    Adam,
    /// Adam with decoupled weight decay, as `torch.optim.AdamW`.
    AdamW,
}

impl Optimizer {
    /// The lower-case name used on the command line and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Sgd => "sgd",
            Optimizer::Momentum { nesterov: false } => "momentum",
            Optimizer::Momentum { nesterov: true } => "nesterov",
            Optimizer::Adam => "adam",
            Optimizer::AdamW => "adamw",
        }
    }

    /// The optimizer called `name` by [`Optimizer::name`] (as a checkpoint records it).
    pub fn from_name(name: &str) -> Option<Optimizer> {
        Some(match name {
            "sgd" => Optimizer::Sgd,
            "momentum" => Optimizer::Momentum { nesterov: false },
            "nesterov" => Optimizer::Momentum { nesterov: true },
            "adam" => Optimizer::Adam,
            "adamw" => Optimizer::AdamW,
            _ => return None,
        })
    }

    /// The state tensors kept per param, as prefixes of their argument names (`P` → `PREFIX.P`).
    pub fn state_prefixes(self) -> &'static [&'static str] {
        match self {
            Optimizer::Sgd => &[],
            Optimizer::Momentum { .. } => &[state::MOMENTUM_BUFFER],
            Optimizer::Adam | Optimizer::AdamW => &[state::EXP_AVG, state::EXP_AVG_SQ],
        }
    }
}

/// An optimizer and whether a weight-decay term is compiled in (its value is the runtime
/// hyper `weight_decay`; leaving it out keeps a plain step free of the extra term).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateRule {
    /// The optimizer whose update is compiled in.
    pub optimizer: Optimizer,
    /// Whether the weight-decay term is compiled in.
    pub weight_decay: bool,
}

impl From<Optimizer> for UpdateRule {
    fn from(optimizer: Optimizer) -> UpdateRule {
        UpdateRule { optimizer, weight_decay: false }
    }
}

impl UpdateRule {
    /// The `Hyper` arguments the step takes, in argument order.
    pub fn hypers(self) -> Vec<&'static str> {
        let mut h = vec![hyper::LR];
        match self.optimizer {
            Optimizer::Sgd => {}
            Optimizer::Momentum { .. } => h.push(hyper::MOMENTUM),
            Optimizer::Adam | Optimizer::AdamW => h.extend([
                hyper::BETA1,
                hyper::BETA2,
                hyper::EPS,
                hyper::BIAS_CORRECTION1,
                hyper::BIAS_CORRECTION2_SQRT,
            ]),
        }
        if self.weight_decay {
            h.push(hyper::WEIGHT_DECAY);
        }
        h
    }
}

/// Names of the `Hyper` arguments. All but `lr` are dotted, so they can never collide with a
/// declaration of the model.
pub mod hyper {
    pub const LR: &str = "lr";
    pub const MOMENTUM: &str = "opt.momentum";
    pub const BETA1: &str = "opt.beta1";
    pub const BETA2: &str = "opt.beta2";
    pub const EPS: &str = "opt.eps";
    /// `1 − β1^t` at step `t` (1-based).
    pub const BIAS_CORRECTION1: &str = "opt.bias_correction1";
    /// `sqrt(1 − β2^t)` at step `t`.
    pub const BIAS_CORRECTION2_SQRT: &str = "opt.bias_correction2_sqrt";
    pub const WEIGHT_DECAY: &str = "opt.weight_decay";
}

/// Prefixes of the `State` argument names (PyTorch's state keys): `exp_avg.W1`.
pub mod state {
    pub const MOMENTUM_BUFFER: &str = "momentum_buffer";
    pub const EXP_AVG: &str = "exp_avg";
    pub const EXP_AVG_SQ: &str = "exp_avg_sq";
}

/// Appends the hyper and state arguments of `rule` to `out` and one update result per param
/// (then per state argument): `weights[i]` is param `params[i]`'s value, `grads[i]` its gradient.
pub(crate) fn append_updates(
    out: &mut Function,
    rule: UpdateRule,
    params: &[ArgId],
    weights: &[Value],
    grads: &[Value],
) {
    let mut h = Hypers::declare(out, rule);
    let mut state_updates = Vec::new();
    let mut states = Vec::new();
    for prefix in rule.optimizer.state_prefixes() {
        for &p in params {
            let a = out.arg(p);
            let (name, ty, span) = (format!("{prefix}.{}", a.name), a.ty.clone(), a.span);
            states.push(out.add_arg(name, ArgKind::State, ty, span));
        }
    }
    let n = params.len();
    for (i, ((&p, &w), &g)) in params.iter().zip(weights).zip(grads).enumerate() {
        let span = out.arg(p).span;
        let mut e = Emit { f: out, span, shape_of: w };
        let new = match rule.optimizer {
            Optimizer::Sgd => {
                let g = e.decayed(g, w, &mut h);
                e.sub_scaled(w, h.lr, g)
            }
            Optimizer::Momentum { nesterov } => {
                let g = e.decayed(g, w, &mut h);
                let v = e.read(states[i]);
                let mu = h.get(&mut *e.f, hyper::MOMENTUM);
                let v = e.axpy(g, mu, v);
                state_updates.push((states[i], v));
                let d = if nesterov { e.axpy(g, mu, v) } else { v };
                e.sub_scaled(w, h.lr, d)
            }
            Optimizer::Adam | Optimizer::AdamW => {
                let w = if rule.optimizer == Optimizer::AdamW && rule.weight_decay {
                    let keep = h.adamw_keep(&mut *e.f);
                    e.scale(keep, w)
                } else {
                    w
                };
                let g = if rule.optimizer == Optimizer::Adam { e.decayed(g, w, &mut h) } else { g };
                let (m, s) = (e.read(states[i]), e.read(states[n + i]));
                let (b1, c1) = (h.get(&mut *e.f, hyper::BETA1), h.one_minus(&mut *e.f, hyper::BETA1));
                let (b2, c2) = (h.get(&mut *e.f, hyper::BETA2), h.one_minus(&mut *e.f, hyper::BETA2));
                let m = e.lerp(b1, m, c1, g);
                let gg = e.bin(BinaryOp::Mul, g, g);
                let s = e.lerp(b2, s, c2, gg);
                state_updates.push((states[i], m));
                state_updates.push((states[n + i], s));
                let root = e.unary(UnaryOp::Sqrt, s);
                let bc2 = h.get(&mut *e.f, hyper::BIAS_CORRECTION2_SQRT);
                let bc2 = e.splat(bc2);
                let denom = e.bin(BinaryOp::Div, root, bc2);
                let eps = h.get(&mut *e.f, hyper::EPS);
                let eps = e.splat(eps);
                let denom = e.bin(BinaryOp::Add, denom, eps);
                let ratio = e.bin(BinaryOp::Div, m, denom);
                let step = h.step_size(&mut *e.f);
                e.sub_scaled(w, step, ratio)
            }
        };
        out.results.push(Output { name: out.arg(p).name.clone(), value: new, update: Some(p) });
    }
    state_updates.sort_by_key(|&(s, _)| s);
    for (s, v) in state_updates {
        out.results.push(Output { name: out.arg(s).name.clone(), value: v, update: Some(s) });
    }
}

/// The scalar hyperparameters of a step, read once and shared by every param's update.
struct Hypers {
    rule: UpdateRule,
    args: Vec<(&'static str, ArgId)>,
    values: Vec<(&'static str, Value)>,
    lr: Value,
}

impl Hypers {
    fn declare(f: &mut Function, rule: UpdateRule) -> Hypers {
        let args: Vec<_> =
            rule.hypers().into_iter().map(|n| (n, f.add_arg(n, ArgKind::Hyper, Type::scalar(), Span::NONE))).collect();
        let lr = f.ins(Inst::Arg(args[0].1), Span::NONE);
        Hypers { rule, args, values: vec![(hyper::LR, lr)], lr }
    }

    /// The value of hyper `name` (read on first use).
    fn get(&mut self, f: &mut Function, name: &'static str) -> Value {
        if let Some(&(_, v)) = self.values.iter().find(|(n, _)| *n == name) {
            return v;
        }
        let id = self.args.iter().find(|(n, _)| *n == name).expect("the rule declares this hyper").1;
        let v = f.ins(Inst::Arg(id), Span::NONE);
        self.values.push((name, v));
        v
    }

    /// A scalar computed from hypers, cached under `key`.
    fn derived(
        &mut self,
        f: &mut Function,
        key: &'static str,
        make: impl FnOnce(&mut Self, &mut Function) -> Value,
    ) -> Value {
        if let Some(&(_, v)) = self.values.iter().find(|(n, _)| *n == key) {
            return v;
        }
        let v = make(self, f);
        self.values.push((key, v));
        v
    }

    /// `1 − name`.
    fn one_minus(&mut self, f: &mut Function, name: &'static str) -> Value {
        let key = if name == hyper::BETA1 { "1-beta1" } else { "1-beta2" };
        self.derived(f, key, |h, f| {
            let x = h.get(f, name);
            let one = f.ins(Inst::Const(1.0), Span::NONE);
            f.ins(Inst::Binary { op: BinaryOp::Sub, lhs: one, rhs: x }, Span::NONE)
        })
    }

    /// `lr / (1 − β1^t)`.
    fn step_size(&mut self, f: &mut Function) -> Value {
        self.derived(f, "step_size", |h, f| {
            let bc1 = h.get(f, hyper::BIAS_CORRECTION1);
            f.ins(Inst::Binary { op: BinaryOp::Div, lhs: h.lr, rhs: bc1 }, Span::NONE)
        })
    }

    /// `1 − lr·wd`, AdamW's decoupled decay factor.
    fn adamw_keep(&mut self, f: &mut Function) -> Value {
        self.derived(f, "1-lr*wd", |h, f| {
            let wd = h.get(f, hyper::WEIGHT_DECAY);
            let decay = f.ins(Inst::Binary { op: BinaryOp::Mul, lhs: h.lr, rhs: wd }, Span::NONE);
            let one = f.ins(Inst::Const(1.0), Span::NONE);
            f.ins(Inst::Binary { op: BinaryOp::Sub, lhs: one, rhs: decay }, Span::NONE)
        })
    }
}

/// Elementwise emission at one param's shape, every value carrying the param's span.
struct Emit<'a> {
    f: &'a mut Function,
    span: Span,
    /// A value of the param's type.
    shape_of: Value,
}

impl Emit<'_> {
    fn read(&mut self, arg: ArgId) -> Value {
        self.f.ins(Inst::Arg(arg), self.span)
    }

    fn bin(&mut self, op: BinaryOp, lhs: Value, rhs: Value) -> Value {
        self.f.ins(Inst::Binary { op, lhs, rhs }, self.span)
    }

    fn unary(&mut self, op: UnaryOp, arg: Value) -> Value {
        self.f.ins(Inst::Unary { op, arg }, self.span)
    }

    /// A scalar broadcast to the param's shape (itself for a scalar param).
    fn splat(&mut self, s: Value) -> Value {
        let shape = self.f.shape(self.shape_of).clone();
        if *self.f.shape(s) == shape { s } else { self.f.ins(Inst::Broadcast { arg: s, to: shape }, self.span) }
    }

    /// `a·x` for a scalar `a`.
    fn scale(&mut self, a: Value, x: Value) -> Value {
        let a = self.splat(a);
        self.bin(BinaryOp::Mul, a, x)
    }

    /// `y + a·x` for a scalar `a`.
    fn axpy(&mut self, y: Value, a: Value, x: Value) -> Value {
        let ax = self.scale(a, x);
        self.bin(BinaryOp::Add, y, ax)
    }

    /// `y − a·x` for a scalar `a`.
    fn sub_scaled(&mut self, y: Value, a: Value, x: Value) -> Value {
        let ax = self.scale(a, x);
        self.bin(BinaryOp::Sub, y, ax)
    }

    /// `a·x + b·y` for scalars `a`, `b`.
    fn lerp(&mut self, a: Value, x: Value, b: Value, y: Value) -> Value {
        let ax = self.scale(a, x);
        self.axpy(ax, b, y)
    }

    /// `g + wd·w` when weight decay is compiled in, else `g`.
    fn decayed(&mut self, g: Value, w: Value, h: &mut Hypers) -> Value {
        if !h.rule.weight_decay {
            return g;
        }
        let wd = h.get(self.f, hyper::WEIGHT_DECAY);
        self.axpy(g, wd, w)
    }
}

#[cfg(test)]
mod tests {
    use bpc_ir::{ArgKind, Function, Inst, verify};

    use super::{Optimizer, UpdateRule};
    use crate::train_step;

    const MODEL: &str = "input x[2]\nlabel y\nparam W[2] ~ normal(0, 1)\nparam b = 0\nloss (sum(W * x) + b - y)^2\n";

    fn names(f: &Function, kind: fn(&ArgKind) -> bool) -> Vec<&str> {
        f.args.iter().filter(|a| kind(&a.kind)).map(|a| a.name.as_str()).collect()
    }

    /// Every rule is compiled into the step: its hyperparameters are `Hyper` arguments (no
    /// value of them is a constant of the step, so a schedule never recompiles), its state
    /// is `State` arguments, and params and state are updated in place.
    #[test]
    fn every_rule_takes_its_hypers_and_state_as_arguments() {
        let f = bpc_front::compile(&bpc_front::Source::new("m.bp", MODEL)).unwrap();
        for (rule, state) in [
            (UpdateRule::from(Optimizer::Sgd), &[][..]),
            (
                UpdateRule { optimizer: Optimizer::Momentum { nesterov: true }, weight_decay: true },
                &["momentum_buffer.W", "momentum_buffer.b"],
            ),
            (UpdateRule::from(Optimizer::Adam), &["exp_avg.W", "exp_avg.b", "exp_avg_sq.W", "exp_avg_sq.b"]),
            (
                UpdateRule { optimizer: Optimizer::AdamW, weight_decay: true },
                &["exp_avg.W", "exp_avg.b", "exp_avg_sq.W", "exp_avg_sq.b"],
            ),
        ] {
            let step = train_step(&f, rule).unwrap();
            verify(&step).unwrap();
            let name = rule.optimizer.name();
            assert_eq!(names(&step, |k| matches!(k, ArgKind::Hyper)), rule.hypers(), "{name}");
            assert_eq!(names(&step, |k| matches!(k, ArgKind::State)), state, "{name}");
            let updated: Vec<&str> =
                step.results.iter().filter_map(|r| r.update).map(|a| step.arg(a).name.as_str()).collect();
            assert_eq!(updated, [&["W", "b"][..], state].concat(), "{name}");
            let consts: Vec<f64> = step
                .values()
                .filter_map(|v| match step.inst(v) {
                    Inst::Const(c) => Some(*c),
                    _ => None,
                })
                .collect();
            assert!(consts.iter().all(|c| [0.0, 1.0, 2.0, 0.5].contains(c)), "{name}: constants {consts:?}");
            assert_eq!(Optimizer::from_name(name), Some(rule.optimizer));
        }
    }
}
