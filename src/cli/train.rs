//! `bpc train MODEL --data TRAIN.csv ...`: load, standardize, train, save (SPEC §4).
//!
//! All inputs (model, data, flags, the checkpoint to resume from, the save directory) are
//! checked before the first step, so a typo never costs a training run. Checkpoints are
//! written atomically: after training, every `--save-every` epochs, and on Ctrl-C (which
//! finishes the current step, saves and exits with status 130). A run that diverges saves
//! nothing, so the last good checkpoint stays as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bpc::autodiff::Optimizer;
use bpc::train::checkpoint::{self, Meta};
use bpc::train::data::{self, LoadOptions};
use bpc::train::{
    Confusion, Dataset, Evaluator, LabelEncoding, LabelPolicy, Labels, LrSchedule, OptState, OptimizerConfig, Params,
    Position, Regression, RunError, Schema, Snapshot, Standardizer, Stop, TrainConfig, TrainReport,
};
use bpc::{Error, Model};
use serde_json::{Value, json};

use super::{OptimizerArg, TrainArgs};

pub fn run(a: &TrainArgs) -> Result<(), Error> {
    let model = load_model(&a.model)?;
    let schema = schema(&model)?;
    for p in a.save.iter().chain(&a.plot) {
        check_dir(p)?;
    }
    let saved = match &a.init {
        Some(p) => Some(checkpoint::read_meta(p).map_err(|e| Error::msg(e.to_string()))?),
        None => None,
    };
    let Settings { opt, lr, schedule, seed } = settings(a, saved.as_ref())?;
    // A resumed run goes on to the epoch count it was started with, unless given again.
    let epochs = a.epochs.or(saved.as_ref().and_then(|m| m.target_epochs)).unwrap_or(DEFAULT_EPOCHS);
    let resume = match &a.init {
        Some(p) => Some(Resume::load(p, &model, epochs, opt.optimizer)?),
        None => None,
    };
    // The figures of the epochs done before this run, so plots and summaries cover them all.
    let earlier = resume.as_ref().map_or_else(Vec::new, |r| r.history.clone());
    let meta = resume.as_ref().map(|r| &r.meta);
    let features = a.features.clone().or_else(|| meta.and_then(|m| m.features.clone()));
    let names = meta.and_then(|m| m.class_names.clone()).map(LabelEncoding::Names);
    let opts = LoadOptions {
        label_column: a.label.as_deref(),
        features: features.as_deref(),
        encoding: names.as_ref(),
        policy: LabelPolicy::Required,
    };
    let mut train = data::load(&a.data, &schema, &opts).map_err(|e| Error::msg(e.to_string()))?;
    let encoding = encoding(&train);
    let mut val = match (&a.val, a.val_split) {
        (Some(p), _) => {
            let opts = LoadOptions { encoding: encoding.as_ref(), ..opts.clone() };
            Some(data::load(p, &schema, &opts).map_err(|e| Error::msg(e.to_string()))?)
        }
        (None, Some(f)) => Some(train.split_validation(f, seed).map_err(|e| Error::msg(e.to_string()))?),
        (None, None) => None,
    };
    if a.patience.is_some() && val.is_none() {
        super::usage_error("--patience stops on the validation loss: give --val or --val-split");
    }
    let standardizer = match meta.and_then(|m| m.standardizer.clone()) {
        Some(s) => Some(s),
        None => a.standardize.then(|| Standardizer::fit(&train)),
    };
    if let Some(s) = &standardizer {
        check_stats(s, &train, a.init.as_deref().unwrap_or(&a.data))?;
        s.apply(&mut train);
        if let Some(v) = &mut val {
            s.apply(v);
        }
    }
    let (mut params, mut state, start) = match resume {
        Some(r) => (r.params, r.state, r.start),
        None => (
            Params::init(&model.func, seed).map_err(|e| Error::msg(format!("{}: {e}", model.source.path)))?,
            OptState::new(&model.func, opt.optimizer),
            Position::default(),
        ),
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    install_interrupt_handler(&interrupt, a.quiet)?;
    let cfg = TrainConfig {
        epochs,
        batch: a.batch as usize,
        lr,
        schedule,
        optimizer: opt,
        seed,
        opt_level: a.opt.level(),
        threads: a.threads,
        check_finite: a.check_finite,
        progress: !a.quiet,
        patience: a.patience,
        start,
        interrupt: Some(interrupt),
    };
    if !a.quiet {
        announce(&model, &params, &train, val.as_ref(), &cfg);
    }
    let meta_of = |at: Position, history: &[bpc::train::EpochReport]| Meta {
        model_hash: model.hash(),
        standardizer: standardizer.clone(),
        class_names: train.class_names().map(<[String]>::to_vec),
        features: features.clone(),
        epochs: at.epochs,
        examples: at.examples,
        seed: Some(seed),
        optimizer: None,
        optimizer_steps: 0,
        optimizer_config: Some(settings_json(&opt, lr, schedule)),
        target_epochs: Some(epochs),
        history: history.iter().filter(|e| e.epoch <= at.epochs).cloned().collect(),
    };
    let mut saved_epoch = None;
    let mut history = earlier.clone();
    let mut on_epoch = |e: &bpc::train::EpochReport, snap: &Snapshot| -> Result<(), RunError> {
        if a.json {
            print_line(&e.to_json());
        }
        if !a.quiet {
            eprintln!("{}", e.summary(epochs));
        }
        history.push(e.clone());
        if let (Some(every), Some(p)) = (a.save_every, &a.save)
            && e.epoch.is_multiple_of(every)
            && e.epoch < epochs
        {
            checkpoint::save_with_state(p, snap.params, Some(snap.state), &meta_of(snap.at, &history))
                .map_err(|e| RunError::Save(e.to_string()))?;
            saved_epoch = Some(snap.at.epochs);
        }
        Ok(())
    };
    let result = bpc::train::train(&model.func, &mut params, &mut state, &train, val.as_ref(), &cfg, &mut on_epoch);
    let report = result.map_err(|e| {
        let err = match e {
            RunError::Diverged(m) => diverged(&m, a, lr, standardizer.is_some()),
            e => run_error(&model, e),
        };
        match (saved_epoch, &a.save) {
            (Some(epoch), Some(p)) => {
                Error::msg(format!("{err}\n{} keeps the last good checkpoint, of epoch {epoch}", p.display()))
            }
            _ => err,
        }
    })?;
    let history: Vec<bpc::train::EpochReport> = earlier.iter().chain(&report.epochs).cloned().collect();
    let at = match report.stop {
        Stop::Finished => Position { epochs, examples: 0 },
        Stop::EarlyStopped { best_epoch, .. } => Position { epochs: best_epoch, examples: 0 },
        Stop::Interrupted { at } => at,
    };
    if let Stop::Interrupted { .. } = report.stop {
        let path = a.save.clone().unwrap_or_else(|| interrupted_path(&a.model));
        let meta = meta_of(at, &history);
        checkpoint::save_with_state(&path, &params, Some(&state), &meta).map_err(|e| Error::msg(e.to_string()))?;
        let after = match at.examples {
            0 => format!("epoch {}", at.epochs),
            n => format!("{} of epoch {}", plural(n, "example"), at.epochs + 1),
        };
        eprintln!("interrupted after {after}: saved {} (resume with --init {})", path.display(), path.display());
        if let Some(p) = &a.plot {
            write_plot(p, &model, a, &history)?;
        }
        std::process::exit(130);
    }
    let eval_on = val.as_ref().unwrap_or(&train);
    let finals = final_metrics(&model, &schema, &params, eval_on, a)?;
    if a.json {
        let mut extra = finals.json.clone();
        extra.push(("metrics_on", json!(if val.is_some() { "validation" } else { "training" })));
        print_line(&report.done_json(&extra));
    }
    if let Some(p) = &a.save {
        let meta = meta_of(at, &history);
        checkpoint::save_with_state(p, &params, Some(&state), &meta).map_err(|e| Error::msg(e.to_string()))?;
    }
    if let Some(p) = &a.plot {
        write_plot(p, &model, a, &history)?;
    }
    if !a.quiet {
        finish(&report, start.epochs, &finals.text, val.is_some(), a);
    }
    Ok(())
}

/// `--epochs` when neither the flags nor the checkpoint give it (SPEC §4).
const DEFAULT_EPOCHS: usize = 10;

/// The divergence error: what happened and where (from the driver), the run's files, and
/// what to try, leaving out what this run already did.
fn diverged(what: &str, a: &TrainArgs, lr: f32, standardized: bool) -> Error {
    let mut tries = vec![format!("a smaller --lr than {lr}")];
    if !standardized {
        tries.push("--standardize".into());
    }
    let mut hint = format!("try {}", tries.join(" or "));
    if !a.check_finite {
        hint += "; --check-finite names the op that overflowed";
    }
    Error::msg(format!("{what}; nothing was saved (training {} on {}; {hint})", a.model.display(), a.data.display()))
}

/// Loads the model at `path`; when it fails on what looks like a CSV file (by its name or
/// its first line), says that the model comes first and the data goes in `--data`.
pub fn load_model(path: &Path) -> Result<Model, Error> {
    Model::load(path).map_err(|e| match looks_like_csv(path) {
        true => Error::msg(format!(
            "{}: this looks like a CSV file, not a .bp model; the model comes first, data goes in --data",
            path.display()
        )),
        false => e,
    })
}

/// Whether `path` is named `.csv` / `.csv.gz`, or its first line is a CSV header or row:
/// two or more comma-separated fields of plain names or numbers (a model's first line with a
/// comma has brackets, parentheses, `~` or `:` in it).
fn looks_like_csv(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".csv") || name.ends_with(".csv.gz") {
        return true;
    }
    let Ok(text) = std::fs::read(path) else { return false };
    let text = String::from_utf8_lossy(&text[..text.len().min(4096)]).into_owned();
    let first = text.trim_start_matches('\u{feff}').lines().next().unwrap_or("");
    let fields: Vec<&str> = first.split(',').map(|f| f.trim().trim_matches('"')).collect();
    fields.len() >= 2
        && fields.iter().all(|f| {
            !f.is_empty() && f.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '+' | ' '))
        })
}

/// What a checkpoint given to `--init` brings: params, optimizer state, where to start, and
/// the figures of the epochs done.
struct Resume {
    params: Params,
    state: OptState,
    start: Position,
    history: Vec<bpc::train::EpochReport>,
    meta: Meta,
}

impl Resume {
    fn load(path: &Path, model: &Model, epochs: usize, optimizer: Optimizer) -> Result<Resume, Error> {
        let (params, meta, state) = checkpoint::load_with_state(path, &model.func, Some(optimizer))
            .map_err(|e| Error::msg(e.for_model(&model.source.path)))?;
        let shown = path.display();
        if !meta.model_hash.is_empty() && meta.model_hash != model.hash() {
            eprintln!(
                "warning: {shown} was saved from a different source of {}; its params fit, so training continues",
                model.source.path
            );
        }
        let state = match (state, &meta.optimizer) {
            (Some(s), _) => s,
            (None, saved) => {
                if let Some(other) = saved.as_deref().filter(|o| *o != optimizer.name() && *o != "sgd") {
                    eprintln!(
                        "warning: {shown} holds {other}'s optimizer state; {} starts from zero state",
                        optimizer.name()
                    );
                }
                OptState::new(&model.func, optimizer)
            }
        };
        let start = Position { epochs: meta.epochs, examples: meta.examples };
        if start.epochs >= epochs {
            return Err(Error::msg(format!(
                "{shown} has already done {}: give --epochs more than {} to train on",
                plural(start.epochs, "epoch"),
                start.epochs
            )));
        }
        let history = meta.history.iter().filter(|e| e.epoch <= start.epochs).cloned().collect();
        Ok(Resume { params, state, start, history, meta })
    }
}

/// The run's optimizer with its settings, learning rate, schedule and seed.
struct Settings {
    opt: OptimizerConfig,
    lr: f32,
    schedule: LrSchedule,
    seed: u64,
}

/// The settings from the flags; with `--init`, what the flags leave out comes from the
/// checkpoint (its optimizer and that optimizer's settings and learning rate, its schedule
/// and seed), so "resume" means "go on as before". A flag that does not apply to the
/// optimizer is a usage error rather than silently ignored.
fn settings(a: &TrainArgs, saved: Option<&Meta>) -> Result<Settings, Error> {
    let (before, before_lr, before_schedule) = match saved.and_then(|m| m.optimizer_config.as_deref()) {
        Some(text) => {
            let shown = a.init.as_deref().unwrap_or(Path::new("")).display();
            let bad = |e: String| Error::msg(format!("{shown}: {e}"));
            let (c, lr, s) = parse_settings(text).map_err(bad)?;
            (Some(c), lr, s)
        }
        None => (None, None, None),
    };
    let optimizer = match a.optimizer {
        Some(OptimizerArg::Sgd) => Optimizer::Sgd,
        Some(OptimizerArg::Momentum) => Optimizer::Momentum { nesterov: a.nesterov },
        Some(OptimizerArg::Adam) => Optimizer::Adam,
        Some(OptimizerArg::Adamw) => Optimizer::AdamW,
        None => match before.map(|c| c.optimizer) {
            Some(Optimizer::Momentum { nesterov }) => Optimizer::Momentum { nesterov: nesterov || a.nesterov },
            Some(o) => o,
            None => Optimizer::Sgd,
        },
    };
    let name = family(optimizer);
    let misplaced = |flag: &str, for_: &str| -> ! {
        super::usage_error(&format!("{flag} applies to {for_}, not to --optimizer {name}"))
    };
    let momentum = matches!(optimizer, Optimizer::Momentum { .. });
    let adam = matches!(optimizer, Optimizer::Adam | Optimizer::AdamW);
    if a.momentum.is_some() && !momentum {
        misplaced("--momentum", "--optimizer momentum");
    }
    if a.nesterov && !momentum {
        misplaced("--nesterov", "--optimizer momentum");
    }
    for (flag, given) in [("--beta1", a.beta1), ("--beta2", a.beta2), ("--eps", a.eps)] {
        if given.is_some() && !adam {
            misplaced(flag, "--optimizer adam and adamw");
        }
    }
    // The checkpoint's settings carry over only to the same kind of optimizer.
    let same = before.filter(|c| family(c.optimizer) == name);
    let d = same.unwrap_or_default();
    let opt = OptimizerConfig {
        optimizer,
        momentum: a.momentum.unwrap_or(d.momentum),
        beta1: a.beta1.unwrap_or(d.beta1),
        beta2: a.beta2.unwrap_or(d.beta2),
        eps: a.eps.unwrap_or(d.eps),
        weight_decay: a.weight_decay.unwrap_or(d.weight_decay),
    };
    let lr = a.lr.or(before_lr.filter(|_| same.is_some())).unwrap_or(default_lr(optimizer));
    let schedule = a.lr_schedule.or(before_schedule).unwrap_or(LrSchedule::Constant);
    let seed = a.seed.or(saved.and_then(|m| m.seed)).unwrap_or(0);
    Ok(Settings { opt, lr, schedule, seed })
}

/// The `--optimizer` value that chooses `o`.
fn family(o: Optimizer) -> &'static str {
    match o {
        Optimizer::Sgd => "sgd",
        Optimizer::Momentum { .. } => "momentum",
        Optimizer::Adam => "adam",
        Optimizer::AdamW => "adamw",
    }
}

/// The checkpoint's record of the settings: the optimizer's, plus `lr` and `lr_schedule`.
fn settings_json(opt: &OptimizerConfig, lr: f32, schedule: LrSchedule) -> String {
    let mut v: Value = serde_json::from_str(&opt.to_json()).expect("to_json writes an object");
    v["lr"] = json!(f64::from(lr));
    v["lr_schedule"] = json!(schedule.to_string());
    v.to_string()
}

/// Reads [`settings_json`]'s text (the learning rate and schedule are absent from older checkpoints).
fn parse_settings(text: &str) -> Result<(OptimizerConfig, Option<f32>, Option<LrSchedule>), String> {
    let c = OptimizerConfig::from_json(text)?;
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let bad = |what: &str| format!("bad optimizer settings ({what}): `{text}`");
    let lr = match &v["lr"] {
        Value::Null => None,
        x => Some(x.as_f64().filter(|x| x.is_finite() && *x > 0.0).ok_or_else(|| bad("lr"))? as f32),
    };
    let schedule = match &v["lr_schedule"] {
        Value::Null => None,
        x => Some(x.as_str().and_then(|s| LrSchedule::parse(s).ok()).ok_or_else(|| bad("lr_schedule"))?),
    };
    Ok((c, lr, schedule))
}

/// PyTorch's usual starting points: 0.01 for SGD (SPEC §4), 0.001 for Adam.
fn default_lr(o: Optimizer) -> f32 {
    match o {
        Optimizer::Sgd | Optimizer::Momentum { .. } => 0.01,
        Optimizer::Adam | Optimizer::AdamW => 0.001,
    }
}

/// Statistics from a checkpoint must cover the data's features.
fn check_stats(s: &Standardizer, d: &Dataset, source: &Path) -> Result<(), Error> {
    if s.len() == d.n_features {
        return Ok(());
    }
    Err(Error::msg(format!(
        "{}: its standardization statistics cover {} features, {} has {}",
        source.display(),
        s.len(),
        d.path,
        d.n_features
    )))
}

/// Ctrl-C once: stop after the current step and save; twice: exit at once (the checkpoint
/// being written, if any, is atomic, so the last good one survives). A second SIGINT within
/// half a second of the first counts as the same one: a terminal signals the foreground
/// process group, and tools such as `timeout -s INT` signal both the process and its group,
/// so one Ctrl-C can arrive twice.
fn install_interrupt_handler(flag: &Arc<AtomicBool>, quiet: bool) -> Result<(), Error> {
    let flag = Arc::clone(flag);
    let mut first: Option<Instant> = None;
    ctrlc::set_handler(move || {
        if let Some(t) = first {
            if t.elapsed() < Duration::from_millis(500) {
                return;
            }
            eprintln!("\ninterrupted again: exiting without saving");
            std::process::exit(130);
        }
        first = Some(Instant::now());
        flag.store(true, Ordering::SeqCst);
        if !quiet {
            eprintln!("\ninterrupt: finishing this step, then saving (Ctrl-C again to quit at once)");
        }
    })
    .map_err(|e| Error::msg(format!("cannot install the Ctrl-C handler: {e}")))
}

/// `MODEL.interrupted.safetensors` in the current directory.
fn interrupted_path(model: &Path) -> PathBuf {
    let stem = model.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from(format!("{stem}.interrupted.safetensors"))
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// The first line on stderr: what is trained, on what, how.
fn announce(model: &Model, params: &Params, train: &Dataset, val: Option<&Dataset>, cfg: &TrainConfig) {
    let v = val.map_or(String::new(), |v| format!(", {} validation", v.len()));
    let o = &cfg.optimizer;
    let mut how = format!("{} lr {}", o.optimizer.name(), cfg.lr);
    if cfg.schedule != LrSchedule::Constant {
        how += &format!(" ({})", cfg.schedule);
    }
    if o.weight_decay != 0.0 {
        how += &format!(", weight decay {}", o.weight_decay);
    }
    eprintln!(
        "training {}: {} params, {} examples{v}, batch {}, {how}, {}",
        model.func.name,
        params.data.len(),
        train.len(),
        cfg.batch,
        plural(cfg.epochs, "epoch")
    );
    match cfg.start {
        Position { epochs: 0, examples: 0 } => {}
        Position { epochs, examples: 0 } => eprintln!("resuming after epoch {epochs}"),
        Position { epochs, examples } => {
            eprintln!("resuming after epoch {epochs} ({} of epoch {} done)", plural(examples, "example"), epochs + 1)
        }
    }
}

/// The end-of-training figures: text for stderr and fields for the `done` JSON object.
struct Finals {
    text: String,
    json: Vec<(&'static str, Value)>,
}

/// The confusion matrix (class labels) or R² and RMSE (real labels) of `params` on `data`;
/// nothing for a model without `output` or `logits`.
fn final_metrics(
    model: &Model,
    schema: &Schema,
    params: &Params,
    data: &Dataset,
    a: &TrainArgs,
) -> Result<Finals, Error> {
    let none = Finals { text: String::new(), json: Vec::new() };
    let Ok(ev) = Evaluator::for_prediction(&model.func, schema, params, a.opt.level()) else { return Ok(none) };
    let mut ev = ev.with_threads(a.threads);
    let pred = ev.predict(data, params, schema.classes()).map_err(|e| run_error(model, e))?;
    match (&data.labels, &pred.classes, schema.classes()) {
        (Labels::Class { values, .. }, Some(classes), Some(k)) => {
            let c = Confusion::new(k, values, classes);
            let names: Vec<String> =
                data.class_names().map_or_else(|| (0..k).map(|i| i.to_string()).collect(), <[_]>::to_vec);
            let text = format!(
                "confusion matrix ({} examples, accuracy {:.4}):\n{}",
                data.len(),
                c.accuracy(),
                c.table(&names)
            );
            Ok(Finals { text, json: vec![("confusion", c.to_json())] })
        }
        (Labels::Real(values), _, _) if pred.width == data.label_width => {
            let r = Regression::new(&pred.values, values, data.label_width);
            let text = format!("R² {:.4}  RMSE {:.4} ({} examples)\n", r.r2, r.rmse, data.len());
            Ok(Finals { text, json: vec![("r2", json!(r.r2)), ("rmse", json!(r.rmse))] })
        }
        _ => Ok(none),
    }
}

/// Draws the curves of every epoch in `history` (those before a resume included).
fn write_plot(p: &Path, model: &Model, a: &TrainArgs, history: &[bpc::train::EpochReport]) -> Result<(), Error> {
    let title = format!("{} ({})", model.func.name, a.data.display());
    let svg =
        bpc::train::plot::training_curves(&title, history).map_err(|e| Error::msg(format!("{}: {e}", p.display())))?;
    checkpoint::write_atomic(p, svg.as_bytes()).map_err(|e| Error::msg(format!("{}: cannot write: {e}", p.display())))
}

/// The closing lines on stderr; `before` is the epochs done before this run (resumed).
fn finish(report: &TrainReport, before: usize, finals: &str, validation: bool, a: &TrainArgs) {
    if let Stop::EarlyStopped { best_epoch, best_val_loss } = report.stop {
        let p = a.patience.unwrap_or_default();
        eprintln!(
            "early stopping: the validation loss has not improved for {} since epoch {best_epoch} \
             ({best_val_loss:.4}); keeping that epoch's params",
            plural(p, "epoch")
        );
    }
    if !finals.is_empty() {
        let on = if validation { "validation" } else { "training" };
        eprint!("on the {on} data: {finals}");
    }
    let saved = a.save.as_ref().map_or(String::new(), |p| format!("; saved {}", p.display()));
    let ran = report.epochs.len();
    let epochs = match before {
        0 => plural(ran, "epoch"),
        b => format!("{} more ({} in all)", plural(ran, "epoch"), b + ran),
    };
    eprintln!(
        "done: {epochs} in {:.2}s, compile {:.1} ms{saved}",
        report.seconds,
        report.compile_time().as_secs_f64() * 1e3
    );
}

/// Writes `text` and a newline to stdout. A closed pipe (`bpc train --json | head -1`) is
/// not an error: training goes on and its checkpoint is still saved.
pub fn print_line(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// The model's data layout; a model that a CSV cannot feed is an error naming the model.
pub fn schema(model: &Model) -> Result<Schema, Error> {
    Schema::of(&model.func).map_err(|e| Error::msg(format!("{}: {e}", model.source.path)))
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
        Ok(_) => Err(Error::msg(format!("{}: cannot write: {} is not a directory", path.display(), dir.display()))),
        Err(e) => Err(Error::msg(format!("{}: cannot write: {}: {e}", path.display(), dir.display()))),
    }
}

/// A training failure as text: program errors rendered against the source.
pub fn run_error(model: &Model, e: RunError) -> Error {
    match e {
        RunError::Program(d) | RunError::NonFinite(d) => model.render(&d),
        RunError::Compile(m) => Error::msg(format!("{}: code generation failed: {m}", model.source.path)),
        RunError::Call(m) | RunError::Diverged(m) => Error::msg(format!("{}: {m}", model.source.path)),
        RunError::Save(m) => Error::msg(m),
    }
}
