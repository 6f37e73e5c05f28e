//! The driver against references computed by hand (every optimizer's PyTorch form in f64,
//! with the same shuffles) and by the f64 interpreter, on models compiled from source; and
//! its promises: bit-identical reruns, resumption that continues bit for bit, early stopping.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bpc_autodiff::Optimizer;
use bpc_ir::{Function, Tensor};
use bpc_train::data::LabelEncoding;
use bpc_train::eval::Evaluator;
use bpc_train::init::epoch_stream;
use bpc_train::{
    Dataset, EpochReport, Labels, LrSchedule, OptState, OptimizerConfig, Params, Position, Regression, Schema, Stop,
    TrainConfig, TrainReport, train,
};
use rand::seq::SliceRandom;

fn model(src: &str) -> Function {
    match bpc_front::compile(&bpc_front::Source::new("t.bp", src)) {
        Ok(f) => f,
        Err(d) => panic!("{}", bpc_front::render(&bpc_front::Source::new("t.bp", src), &d)),
    }
}

fn dataset(n_features: usize, features: Vec<f32>, labels: Labels, label_width: usize) -> Dataset {
    Dataset {
        path: "t.csv".into(),
        feature_names: (0..n_features).map(|i| format!("f{i}")).collect(),
        label_names: vec!["label".into()],
        label_width,
        n_features,
        rows: features.len() / n_features,
        features,
        labels,
    }
}

const LINEAR: &str = "input x\nlabel y\nparam w = 0.5\nparam b = 0\nloss (w * x + b - y)^2\n";

/// y = slope·x + shift on n points in [-1, 1).
fn line(n: usize, slope: f32, shift: f32) -> Dataset {
    let xs: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 * 2.0 - 1.0).collect();
    let ys = xs.iter().map(|x| slope * x + shift).collect();
    dataset(1, xs, Labels::Real(ys), 1)
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol * a.abs().max(1.0), "{what}: {a} vs {b}");
}

/// Trains `f` from its initializers (seed 0) with `cfg`; returns the report, the epoch
/// reports, the params and the optimizer state.
fn run(f: &Function, data: &Dataset, val: Option<&Dataset>, cfg: &TrainConfig) -> (TrainReport, Params, OptState) {
    let mut p = Params::init(f, 0).unwrap();
    let mut s = OptState::new(f, cfg.optimizer.optimizer);
    let r = train(f, &mut p, &mut s, data, val, cfg, &mut |_, _| Ok(())).unwrap();
    (r, p, s)
}

/// One param's optimizer state in the f64 reference.
#[derive(Clone, Copy, Default)]
struct Slot {
    w: f64,
    v: f64,
    m: f64,
    s: f64,
}

/// `torch.optim`'s update of one scalar param with gradient `g` at step `t`, in f64.
fn reference_update(o: &OptimizerConfig, lr: f64, t: i32, p: &mut Slot, g: f64) {
    let (mu, b1, b2, eps, wd) =
        (f64::from(o.momentum), f64::from(o.beta1), f64::from(o.beta2), f64::from(o.eps), f64::from(o.weight_decay));
    let g = if o.optimizer == Optimizer::AdamW { g } else { g + wd * p.w };
    match o.optimizer {
        Optimizer::Sgd => p.w -= lr * g,
        Optimizer::Momentum { nesterov } => {
            p.v = mu * p.v + g;
            p.w -= lr * if nesterov { g + mu * p.v } else { p.v };
        }
        Optimizer::Adam | Optimizer::AdamW => {
            if o.optimizer == Optimizer::AdamW {
                p.w *= 1.0 - lr * wd;
            }
            p.m = b1 * p.m + (1.0 - b1) * g;
            p.s = b2 * p.s + (1.0 - b2) * g * g;
            let denom = p.s.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
            p.w -= lr / (1.0 - b1.powi(t)) * p.m / denom;
        }
    }
}

/// LINEAR trained in f64 with the driver's shuffles: the epoch losses and the final (w, b).
fn reference(data: &Dataset, cfg: &TrainConfig) -> (Vec<f64>, f64, f64) {
    let xs: Vec<f64> = data.features.iter().map(|&x| f64::from(x)).collect();
    let Labels::Real(y) = &data.labels else { unreachable!() };
    let ys: Vec<f64> = y.iter().map(|&y| f64::from(y)).collect();
    let n = xs.len();
    let (mut w, mut b) = (Slot { w: 0.5, ..Slot::default() }, Slot::default());
    let mut losses = Vec::new();
    let mut t = 0;
    for epoch in 1..=cfg.epochs {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut epoch_stream(cfg.seed, epoch));
        let mut total = 0.0;
        for (k, chunk) in order.chunks(cfg.batch).enumerate() {
            let m = chunk.len() as f64;
            let (mut loss, mut gw, mut gb) = (0.0, 0.0, 0.0);
            for &i in chunk {
                let r = w.w * xs[i] + b.w - ys[i];
                loss += r * r;
                gw += 2.0 * r * xs[i] / m;
                gb += 2.0 * r / m;
            }
            total += loss;
            t += 1;
            let progress = ((epoch - 1) * n + k * cfg.batch) as f64 / (cfg.epochs * n) as f64;
            let lr = f64::from(cfg.schedule.lr(cfg.lr, epoch, progress));
            reference_update(&cfg.optimizer, lr, t, &mut w, gw);
            reference_update(&cfg.optimizer, lr, t, &mut b, gb);
        }
        losses.push(total / n as f64);
    }
    (losses, w.w, b.w)
}

#[test]
fn every_optimizer_matches_its_pytorch_form() {
    let f = model(LINEAR);
    let data = line(10, 3.0, -1.0);
    let d = OptimizerConfig::default();
    let cases = [
        OptimizerConfig { optimizer: Optimizer::Sgd, ..d },
        OptimizerConfig { optimizer: Optimizer::Sgd, weight_decay: 0.1, ..d },
        OptimizerConfig { optimizer: Optimizer::Momentum { nesterov: false }, momentum: 0.8, ..d },
        OptimizerConfig { optimizer: Optimizer::Momentum { nesterov: true }, weight_decay: 0.05, ..d },
        OptimizerConfig { optimizer: Optimizer::Adam, ..d },
        OptimizerConfig { optimizer: Optimizer::Adam, beta1: 0.5, beta2: 0.9, eps: 1e-3, weight_decay: 0.1, ..d },
        OptimizerConfig { optimizer: Optimizer::AdamW, weight_decay: 0.3, ..d },
    ];
    for (i, o) in cases.iter().enumerate() {
        for schedule in [LrSchedule::Constant, LrSchedule::Step { every: 1, factor: 0.5 }, LrSchedule::Cosine] {
            let cfg = TrainConfig {
                epochs: 3,
                batch: 4,
                lr: 0.1,
                seed: 7,
                optimizer: *o,
                schedule,
                ..TrainConfig::default()
            };
            let (report, p, state) = run(&f, &data, None, &cfg);
            // The last minibatch of 10 = 4 + 4 + 2 has its own compiled step.
            assert_eq!(report.compile.iter().map(|c| c.1).collect::<Vec<_>>(), vec![4, 2]);
            assert_eq!(state.steps, 9);
            let (losses, w, b) = reference(&data, &cfg);
            let what = format!("case {i} ({}), {schedule}", o.optimizer.name());
            for (e, want) in report.epochs.iter().zip(&losses) {
                close(e.train_loss, *want, 1e-5, &format!("{what}: train_loss of epoch {}", e.epoch));
                assert_eq!(e.train_accuracy, None, "real labels have no accuracy");
            }
            close(f64::from(p.get("w").unwrap()[0]), w, 1e-5, &format!("{what}: w"));
            close(f64::from(p.get("b").unwrap()[0]), b, 1e-5, &format!("{what}: b"));
        }
    }
}

/// Three full-batch steps on one example (x = 2, y = 3, from w = 0.5, b = 0, lr 0.1), against
/// numbers printed by PyTorch 2.15 (`torch.optim.SGD` / `Adam` / `AdamW`, float64). By hand,
/// step 1: r = wx + b − y = −2, loss 4, g_w = 2rx = −8, g_b = 2r = −4;
/// - momentum 0.8: v = g, w = 0.5 + 0.1·8 = 1.3, b = 0.4;
/// - Adam β = (0.8, 0.9), ε = 0.1: m = 0.2g, s = 0.1g², so m/(1−β1) = g and
///   sqrt(s)/sqrt(1−β2) = |g|: w = 0.5 + 0.1·8/(8 + 0.1) = 0.5987654 (ε after the bias-corrected
///   root; ε inside the root, or before the correction, gives another number);
/// - Adam, weight decay 0.5: g_w = −8 + 0.5·0.5 = −7.75, w = 0.5 + 0.1·7.75/7.85 = 0.5987261;
/// - AdamW, weight decay 0.5: w = 0.5·(1 − 0.1·0.5) = 0.475 first (decoupled, lr·wd·w), then
///   the Adam step of the undecayed gradient: 0.475 + 0.0987654 = 0.5737654.
#[test]
fn three_steps_match_pytorch() {
    let f = model(LINEAR);
    let data = dataset(1, vec![2.0], Labels::Real(vec![3.0]), 1);
    let d = OptimizerConfig { beta1: 0.8, beta2: 0.9, eps: 0.1, ..OptimizerConfig::default() };
    type Steps = [(f64, f64, f64); 3];
    let cases: [(OptimizerConfig, Steps); 5] = [
        (
            OptimizerConfig { optimizer: Optimizer::Momentum { nesterov: false }, momentum: 0.8, ..d },
            [(4.0, 1.3, 0.4), (0.0, 1.9400000000000002, 0.7200000000000001), (2.560000000000002, 1.812, 0.656)],
        ),
        (
            OptimizerConfig {
                optimizer: Optimizer::Momentum { nesterov: true },
                momentum: 0.8,
                weight_decay: 0.1,
                ..d
            },
            [
                (4.0, 1.931, 0.7200000000000001),
                (2.5027239999999997, 1.266002, 0.39352000000000015),
                (0.005546674575999965, 1.286526284, 0.4109440000000001),
            ],
        ),
        (
            OptimizerConfig { optimizer: Optimizer::Adam, ..d },
            [
                (4.0, 0.5987654320987654, 0.09756097560975611),
                (2.9067118346917016, 0.6966592177885259, 0.1941670670582895),
                (1.9951972052653342, 0.7929175862431024, 0.2890519621327844),
            ],
        ),
        (
            OptimizerConfig { optimizer: Optimizer::Adam, weight_decay: 0.5, ..d },
            [
                (4.0, 0.5987261146496815, 0.09756097560975611),
                (2.9069799714342732, 0.6964794036735503, 0.19405253585546622),
                (1.9965369442382146, 0.7923796714697344, 0.28858029736591495),
            ],
        ),
        (
            OptimizerConfig { optimizer: Optimizer::AdamW, weight_decay: 0.5, ..d },
            [
                (4.0, 0.5737654320987654, 0.09756097560975611),
                (3.079702650710973, 0.6431737805376748, 0.18950556620190276),
                (2.3230236896305314, 0.7079732518654825, 0.2756445891028528),
            ],
        ),
    ];
    for (o, want) in cases {
        let cfg = TrainConfig { epochs: 3, batch: 1, lr: 0.1, optimizer: o, ..TrainConfig::default() };
        let mut p = Params::init(&f, 0).unwrap();
        let mut s = OptState::new(&f, o.optimizer);
        let mut got = Vec::new();
        train(&f, &mut p, &mut s, &data, None, &cfg, &mut |e, snap| {
            got.push((
                e.train_loss,
                f64::from(snap.params.get("w").unwrap()[0]),
                f64::from(snap.params.get("b").unwrap()[0]),
            ));
            Ok(())
        })
        .unwrap();
        let name = o.optimizer.name();
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            close(g.0, w.0, 2e-6, &format!("{name} wd {}: loss of step {}", o.weight_decay, k + 1));
            close(g.1, w.1, 1e-6, &format!("{name} wd {}: w after step {}", o.weight_decay, k + 1));
            close(g.2, w.2, 1e-6, &format!("{name} wd {}: b after step {}", o.weight_decay, k + 1));
        }
        assert_eq!(s.steps, 3);
    }
}

#[test]
fn runs_are_bit_identical_for_a_seed_and_thread_count() {
    let f = model(LINEAR);
    let data = line(37, 3.0, -1.0);
    let go = |seed, threads| {
        let optimizer = OptimizerConfig { optimizer: Optimizer::Adam, ..OptimizerConfig::default() };
        let cfg = TrainConfig { epochs: 4, batch: 8, lr: 0.05, seed, threads, optimizer, ..TrainConfig::default() };
        let (r, p, s) = run(&f, &data, None, &cfg);
        let losses: Vec<u64> = r.epochs.iter().map(|e| e.train_loss.to_bits()).collect();
        (losses, p.data, s.slab.data)
    };
    assert_eq!(go(1, 1), go(1, 1));
    assert_eq!(go(1, 2), go(1, 2));
    assert_ne!(go(1, 1).1, go(2, 1).1);
}

/// Trains LINEAR with momentum, one step per call (the interrupt flag raised from the
/// start stops each call after its first step), resuming each time from where the last
/// call stopped; the result is bit-identical to one uninterrupted run.
#[test]
fn interrupted_runs_resume_bit_for_bit() {
    let f = model(LINEAR);
    let data = line(10, 3.0, -1.0);
    let optimizer = OptimizerConfig { optimizer: Optimizer::Momentum { nesterov: true }, ..OptimizerConfig::default() };
    let cfg = TrainConfig {
        epochs: 3,
        batch: 4,
        lr: 0.1,
        optimizer,
        schedule: LrSchedule::Cosine,
        opt_level: bpc_opt::OptLevel::O0,
        ..TrainConfig::default()
    };
    let (_, p_whole, s_whole) = run(&f, &data, None, &cfg);

    let mut p = Params::init(&f, 0).unwrap();
    let mut s = OptState::new(&f, cfg.optimizer.optimizer);
    let flag = Arc::new(AtomicBool::new(true));
    let mut at = Position::default();
    let mut positions = Vec::new();
    let mut last_epoch: Vec<EpochReport> = Vec::new();
    while at.epochs < cfg.epochs {
        let c = TrainConfig { start: at, interrupt: Some(flag.clone()), ..cfg.clone() };
        let r = train(&f, &mut p, &mut s, &data, None, &c, &mut |_, _| Ok(())).unwrap();
        let Stop::Interrupted { at: next } = r.stop else { panic!("{:?}", r.stop) };
        at = next;
        positions.push((at.epochs, at.examples));
        last_epoch = r.epochs;
    }
    assert_eq!(positions, [(0, 4), (0, 8), (1, 0), (1, 4), (1, 8), (2, 0), (2, 4), (2, 8), (3, 0)]);
    assert!(last_epoch.is_empty(), "an epoch finished by an interrupt is not reported");
    assert_eq!(p.data, p_whole.data);
    assert_eq!((s.slab.data, s.steps), (s_whole.slab.data, s_whole.steps));
    // Resuming at an epoch boundary reports the same epochs as the uninterrupted run (with a
    // constant rate: a schedule spans the epochs of the run it is given).
    let cfg = TrainConfig { schedule: LrSchedule::Constant, ..cfg };
    let (whole, p_whole, _) = run(&f, &data, None, &cfg);
    let mut p = Params::init(&f, 0).unwrap();
    let mut s = OptState::new(&f, cfg.optimizer.optimizer);
    train(&f, &mut p, &mut s, &data, None, &TrainConfig { epochs: 1, ..cfg.clone() }, &mut |_, _| Ok(())).unwrap();
    let c = TrainConfig { start: Position { epochs: 1, examples: 0 }, ..cfg.clone() };
    let r = train(&f, &mut p, &mut s, &data, None, &c, &mut |_, _| Ok(())).unwrap();
    assert_eq!(r.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(r.epochs[1].train_loss.to_bits(), whole.epochs[2].train_loss.to_bits());
    assert_eq!(p.data, p_whole.data);
}

#[test]
fn early_stopping_keeps_the_best_epoch() {
    // Validation data from another line: fitting the training data moves away from it.
    let f = model(LINEAR);
    let (data, val) = (line(16, 3.0, -1.0), line(8, -3.0, 1.0));
    let cfg = TrainConfig { epochs: 20, batch: 4, lr: 0.05, patience: Some(2), ..TrainConfig::default() };
    let (r, p, _) = run(&f, &data, Some(&val), &cfg);
    let losses: Vec<f64> = r.epochs.iter().map(|e| e.val_loss.unwrap()).collect();
    let best = (0..losses.len()).fold(0, |b, i| if losses[i] < losses[b] { i } else { b }) + 1;
    assert_eq!(r.stop, Stop::EarlyStopped { best_epoch: best, best_val_loss: losses[best - 1] });
    assert_eq!(r.epochs.len(), best + 2, "{losses:?}");
    let (_, p_best, _) = run(&f, &data, Some(&val), &TrainConfig { epochs: best, patience: None, ..cfg.clone() });
    assert_eq!(p.data, p_best.data, "the best epoch's params are restored");
    let mut p = Params::init(&f, 0).unwrap();
    let mut s = OptState::new(&f, Optimizer::Sgd);
    let e = train(&f, &mut p, &mut s, &data, None, &cfg, &mut |_, _| Ok(())).unwrap_err();
    assert_eq!(e.to_string(), "early stopping (patience) needs validation data");
}

#[test]
fn a_real_label_of_two_elements_trains_to_a_fit() {
    let f = model("input x\nlabel t[2]\nparam w[2] = 0\nparam b[2] = 0\np = w * x + b\nloss mse(p, t)\noutput p\n");
    let xs: Vec<f32> = (0..40).map(|i| i as f32 / 20.0 - 1.0).collect();
    let ts: Vec<f32> = xs.iter().flat_map(|&x| [2.0 * x + 1.0, -x]).collect();
    let data = dataset(1, xs, Labels::Real(ts.clone()), 2);
    let optimizer = OptimizerConfig { optimizer: Optimizer::Adam, ..OptimizerConfig::default() };
    let cfg = TrainConfig { epochs: 60, batch: 8, lr: 0.05, optimizer, ..TrainConfig::default() };
    let (r, p, _) = run(&f, &data, None, &cfg);
    assert!(r.epochs.last().unwrap().train_loss < 1e-3, "{:?}", r.epochs.last());
    let schema = Schema::of(&f).unwrap();
    let mut ev = Evaluator::for_prediction(&f, &schema, &p, bpc_opt::OptLevel::O2).unwrap();
    let pred = ev.predict(&data, &p, None).unwrap();
    assert_eq!(pred.width, 2);
    let fit = Regression::new(&pred.values, &ts, 2);
    assert!(fit.r2 > 0.999 && fit.rmse < 0.03, "{fit:?}");
}

const SOFTMAX: &str = "input x[2]\nlabel y : class(3)\nparam W[3, 2] ~ normal(0, 1)\nparam b[3] ~ normal(0, 1)\n\
                       f = W @ x + b\nloss cross_entropy(f, y)\noutput softmax(f)\n";

/// 300 points (more than one evaluation minibatch of 256), three classes by angle.
fn blobs() -> Dataset {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for i in 0..300 {
        let t = i as f32 * 0.7;
        xs.extend([t.cos() * (1.0 + (i % 7) as f32 * 0.1), t.sin()]);
        ys.push(((t.sin().atan2(t.cos()) + std::f32::consts::PI) / (2.0 * std::f32::consts::PI) * 3.0) as i32 % 3);
    }
    dataset(2, xs, Labels::Class { values: ys, encoding: LabelEncoding::Integers }, 1)
}

#[test]
fn evaluation_matches_the_interpreter() {
    let f = model(SOFTMAX);
    let data = blobs();
    let schema = Schema::of(&f).unwrap();
    let params = Params::init(&f, 3).unwrap();
    let mut ev = Evaluator::for_metrics(&f, &schema, &params, bpc_opt::OptLevel::O2).unwrap();
    let m = ev.metrics(&data, &params).unwrap();

    // The whole set as one minibatch in the f64 interpreter.
    let n = data.len();
    let Labels::Class { values, .. } = &data.labels else { unreachable!() };
    let args = vec![
        Tensor::new([n, 2], data.features.iter().map(|&x| f64::from(x)).collect::<Vec<_>>()),
        Tensor::new([n], values.iter().map(|&y| f64::from(y)).collect::<Vec<_>>()),
        Tensor::new([3, 2], params.get("W").unwrap().iter().map(|&x| f64::from(x)).collect::<Vec<_>>()),
        Tensor::new([3], params.get("b").unwrap().iter().map(|&x| f64::from(x)).collect::<Vec<_>>()),
    ];
    let vals = bpc_ir::interpret(&f, n, &args).unwrap();
    close(m.loss, vals[f.result("loss").unwrap().value.index()].data[0], 1e-5, "loss");
    let out = &vals[f.result("output").unwrap().value.index()].data;
    let hits = values
        .iter()
        .zip(out.chunks(3))
        .filter(|&(&y, row)| {
            let best = (0..3).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            best == y as usize
        })
        .count();
    assert_eq!(m.accuracy, Some(hits as f64 / n as f64));

    let mut ev = Evaluator::for_prediction(&f, &schema, &params, bpc_opt::OptLevel::O2).unwrap();
    let pred = ev.predict(&data, &params, Some(3)).unwrap();
    assert_eq!((pred.name.as_str(), pred.rows, pred.width), ("output", 300, 3));
    for (a, b) in pred.values.iter().zip(out) {
        assert!((f64::from(*a) - b).abs() < 1e-5, "{a} vs {b}");
    }
    assert_eq!(pred.accuracy(&data), m.accuracy);
}

#[test]
fn every_optimizer_improves_accuracy_and_reports_it() {
    let f = model(SOFTMAX);
    let data = blobs();
    let d = OptimizerConfig::default();
    for (optimizer, lr) in [
        (Optimizer::Sgd, 0.5),
        (Optimizer::Momentum { nesterov: false }, 0.05),
        (Optimizer::Adam, 0.05),
        (Optimizer::AdamW, 0.05),
    ] {
        let cfg = TrainConfig {
            epochs: 30,
            batch: 16,
            lr,
            optimizer: OptimizerConfig { optimizer, ..d },
            ..TrainConfig::default()
        };
        let (r, _, _) = run(&f, &data, Some(&data), &cfg);
        let (first, last) = (&r.epochs[0], r.epochs.last().unwrap());
        assert!(last.val_loss.unwrap() < first.val_loss.unwrap(), "{}", optimizer.name());
        assert!(
            last.train_accuracy.unwrap() > 0.5 && last.val_accuracy.unwrap() > 0.5,
            "{}: {last:?}",
            optimizer.name()
        );
    }
}
