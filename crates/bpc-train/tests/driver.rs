//! The driver against references computed by hand (SGD in f64 with the same shuffle) and
//! by the f64 interpreter, on models compiled from source.

use bpc_ir::{Function, Tensor};
use bpc_train::data::LabelEncoding;
use bpc_train::eval::Evaluator;
use bpc_train::{Dataset, Labels, Params, Schema, TrainConfig, train};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

fn model(src: &str) -> Function {
    match bpc_front::compile(&bpc_front::Source::new("t.bp", src)) {
        Ok(f) => f,
        Err(d) => panic!("{}", bpc_front::render(&bpc_front::Source::new("t.bp", src), &d)),
    }
}

fn dataset(n_features: usize, features: Vec<f32>, labels: Labels) -> Dataset {
    Dataset {
        path: "t.csv".into(),
        feature_names: (0..n_features).map(|i| format!("f{i}")).collect(),
        label_name: Some("label".into()),
        n_features,
        rows: features.len() / n_features,
        features,
        labels,
    }
}

const LINEAR: &str = "input x\nlabel y\nparam w = 0.5\nparam b = 0\nloss (w * x + b - y)^2\n";

/// y = 3x - 1 on n points in [-1, 1).
fn line(n: usize) -> Dataset {
    let xs: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 * 2.0 - 1.0).collect();
    let ys = xs.iter().map(|x| 3.0 * x - 1.0).collect();
    dataset(1, xs, Labels::Real(ys))
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{what}: {a} vs {b}");
}

#[test]
fn sgd_matches_a_hand_computed_reference() {
    let f = model(LINEAR);
    let data = line(10);
    let cfg = TrainConfig { epochs: 3, batch: 4, lr: 0.1, seed: 7, ..TrainConfig::default() };
    let mut p = Params::init(&f, 0).unwrap();
    let mut epochs = Vec::new();
    let report = train(&f, &mut p, &data, None, &cfg, &mut |e| epochs.push(e.clone())).unwrap();
    // The last minibatch of 10 = 4 + 4 + 2 has its own compiled step.
    assert_eq!(report.compile.iter().map(|c| c.1).collect::<Vec<_>>(), vec![4, 2]);

    let (xs, ys): (Vec<f64>, Vec<f64>) = match &data.labels {
        Labels::Real(y) => {
            (data.features.iter().map(|&x| f64::from(x)).collect(), y.iter().map(|&y| f64::from(y)).collect())
        }
        Labels::None | Labels::Class { .. } => unreachable!(),
    };
    let mut rng = StdRng::seed_from_u64(7);
    let mut order: Vec<usize> = (0..10).collect();
    let (mut w, mut b) = (0.5f64, 0.0f64);
    for e in &epochs {
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for chunk in order.chunks(4) {
            let m = chunk.len() as f64;
            let (mut loss, mut gw, mut gb) = (0.0, 0.0, 0.0);
            for &i in chunk {
                let r = w * xs[i] + b - ys[i];
                loss += r * r;
                gw += 2.0 * r * xs[i];
                gb += 2.0 * r;
            }
            total += loss; // the step's mean loss times its m examples
            w -= 0.1 * gw / m;
            b -= 0.1 * gb / m;
        }
        close(e.train_loss, total / 10.0, &format!("train_loss of epoch {}", e.epoch));
        assert_eq!(e.train_accuracy, None, "real labels have no accuracy");
    }
    close(f64::from(p.get("w").unwrap()[0]), w, "w");
    close(f64::from(p.get("b").unwrap()[0]), b, "b");
}

#[test]
fn runs_are_reproducible_from_the_seed() {
    let f = model(LINEAR);
    let data = line(37);
    let run = |seed| {
        let cfg = TrainConfig { epochs: 4, batch: 8, lr: 0.05, seed, ..TrainConfig::default() };
        let mut p = Params::init(&f, seed).unwrap();
        train(&f, &mut p, &data, None, &cfg, &mut |_| {}).unwrap();
        p.data
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
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
    dataset(2, xs, Labels::Class { values: ys, encoding: LabelEncoding::Integers })
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
    close(m.loss, vals[f.result("loss").unwrap().value.index()].data[0], "loss");
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
fn training_improves_accuracy_and_reports_it() {
    let f = model(SOFTMAX);
    let data = blobs();
    let mut p = Params::init(&f, 0).unwrap();
    let cfg = TrainConfig { epochs: 30, batch: 16, lr: 0.5, ..TrainConfig::default() };
    let r = train(&f, &mut p, &data, Some(&data), &cfg, &mut |_| {}).unwrap();
    let (first, last) = (&r.epochs[0], r.epochs.last().unwrap());
    assert!(last.val_loss.unwrap() < first.val_loss.unwrap());
    assert!(last.train_accuracy.unwrap() > 0.5 && last.val_accuracy.unwrap() > 0.5, "{last:?}");
}
