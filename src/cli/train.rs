//! `bpc train MODEL --data TRAIN.csv ...`: load, standardize, train, save (SPEC §4).
//!
//! All inputs (model, data, initial params, the save directory) are checked before the
//! first step, so a typo never costs a training run; the checkpoint is written only after
//! training succeeded, atomically.

use std::path::Path;

use bpc::train::checkpoint::{self, Meta};
use bpc::train::data::{self, LoadOptions};
use bpc::train::{Dataset, LabelEncoding, LabelPolicy, Labels, Params, RunError, Schema, Standardizer, TrainConfig};
use bpc::{Error, Model};

use super::{OptimizerArg, TrainArgs};

pub fn run(a: &TrainArgs) -> Result<(), Error> {
    if a.optimizer != OptimizerArg::Sgd {
        let name = format!("{:?}", a.optimizer).to_lowercase();
        return Err(Error(format!("--optimizer {name} is not available yet (available: sgd)")));
    }
    let model = Model::load(&a.model)?;
    let schema = schema(&model)?;
    for p in a.save.iter().chain(&a.plot) {
        check_dir(p)?;
    }
    let opts = LoadOptions { label_column: a.label.as_deref(), encoding: None, policy: LabelPolicy::Required };
    let mut train = data::load(&a.data, &schema, &opts).map_err(|e| Error(e.to_string()))?;
    let encoding = encoding(&train);
    let mut val = match &a.val {
        Some(p) => {
            let opts = LoadOptions { encoding: encoding.as_ref(), ..opts.clone() };
            Some(data::load(p, &schema, &opts).map_err(|e| Error(e.to_string()))?)
        }
        None => None,
    };
    let standardizer = a.standardize.then(|| Standardizer::fit(&train));
    if let Some(s) = &standardizer {
        s.apply(&mut train);
        if let Some(v) = &mut val {
            s.apply(v);
        }
    }
    let mut params = match &a.init {
        Some(p) => checkpoint::load(p, &model.func).map_err(|e| Error(e.to_string()))?.0,
        None => Params::init(&model.func, a.seed).map_err(|e| Error(format!("{}: {e}", model.source.path)))?,
    };
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch: a.batch as usize,
        lr: a.lr,
        seed: a.seed,
        opt_level: a.opt.level(),
        threads: a.threads,
        check_finite: a.check_finite,
        progress: !a.quiet,
    };
    if !a.quiet {
        let v = val.as_ref().map_or(String::new(), |v| format!(", {} validation", v.len()));
        eprintln!(
            "training {}: {} params, {} examples{v}, batch {}, lr {}, {} epochs",
            model.func.name,
            params.data.len(),
            train.len(),
            cfg.batch,
            cfg.lr,
            cfg.epochs
        );
    }
    let mut on_epoch = |e: &bpc::train::EpochReport| {
        if a.json {
            println!("{}", e.to_json());
        }
        if !a.quiet {
            eprintln!("{}", e.summary(a.epochs));
        }
    };
    let report = bpc::train::train(&model.func, &mut params, &train, val.as_ref(), &cfg, &mut on_epoch)
        .map_err(|e| run_error(&model, e))?;
    if a.json {
        println!("{}", report.done_json());
    }
    if let Some(p) = &a.save {
        let meta = Meta {
            model_hash: model.hash(),
            standardizer,
            class_names: train.class_names().map(<[String]>::to_vec),
            epochs: report.epochs.len(),
        };
        checkpoint::save(p, &params, &meta).map_err(|e| Error(e.to_string()))?;
    }
    if let Some(p) = &a.plot {
        let svg = bpc::train::plot::loss_curves(&format!("{} ({})", model.func.name, a.data.display()), &report.epochs);
        checkpoint::write_atomic(p, svg.as_bytes())
            .map_err(|e| Error(format!("{}: cannot write: {e}", p.display())))?;
    }
    if !a.quiet {
        let saved = a.save.as_ref().map_or(String::new(), |p| format!("; saved {}", p.display()));
        eprintln!(
            "done: {} epochs in {:.2}s, compile {:.1} ms{saved}",
            report.epochs.len(),
            report.seconds,
            report.compile_time().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// The model's data layout; a model that a CSV cannot feed is an error naming the model.
pub fn schema(model: &Model) -> Result<Schema, Error> {
    Schema::of(&model.func).map_err(|e| Error(format!("{}: {e}", model.source.path)))
}

/// How the training set wrote its class labels, which the other files must follow.
fn encoding(d: &Dataset) -> Option<LabelEncoding> {
    match &d.labels {
        Labels::Class { encoding, .. } => Some(encoding.clone()),
        Labels::None | Labels::Real(_) => None,
    }
}

/// The directory a file will be written to must exist (checked before any work is done).
pub fn check_dir(path: &Path) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error(format!("{}: cannot write: {} is not a directory", path.display(), dir.display()))),
        Err(e) => Err(Error(format!("{}: cannot write: {}: {e}", path.display(), dir.display()))),
    }
}

/// A training failure as text: program errors rendered against the source.
pub fn run_error(model: &Model, e: RunError) -> Error {
    match e {
        RunError::Program(d) | RunError::NonFinite(d) => model.render(&d),
        RunError::Compile(m) => Error(format!("{}: code generation failed: {m}", model.source.path)),
        RunError::Call(m) | RunError::Diverged(m) => Error(format!("{}: {m}", model.source.path)),
    }
}
