//! The `bpc` command line (SPEC §4), parsed with `clap`'s derive API.
//!
//! Every command returns `Result<(), bpc::Error>`; `main` prints the error to stderr and
//! exits with status 1 (clap itself uses 2 for bad flags). Nothing is written to a file
//! unless the command succeeded, and then atomically.

mod bench;
mod check;
mod emit;
mod eval;
mod predict;
mod set;
mod train;

use std::path::PathBuf;

use bpc::{Error, OptLevel};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// bpc: a JIT-compiled gradient compiler for small models written like the lecture.
#[derive(Parser, Debug)]
#[command(
    name = "bpc",
    version,
    args_conflicts_with_subcommands = true,
    arg_required_else_help = true,
    after_help = "Train, stop, resume and predict (from the bpc source directory; `bpc train --help` has every flag):\n  \
        bpc train examples/digits.bp --data examples/data/digits_train.csv --val examples/data/digits_test.csv \
        --standardize --optimizer adam --epochs 1000 --save digits.safetensors\n  \
        (Ctrl-C finishes the step, saves digits.safetensors and exits; add --init digits.safetensors to resume)\n  \
        bpc predict examples/digits.bp --params digits.safetensors --data examples/data/digits_test.csv"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The model (`.bp`) to print a stage of.
    model: Option<PathBuf>,
    /// Print the checked forward IR (same as `--emit ir`).
    #[arg(long)]
    emit_ir: bool,
    /// Print a compiler stage.
    #[arg(long, value_enum, value_name = "STAGE")]
    emit: Option<Stage>,
    /// Minibatch size the train step is compiled for by `--emit clif` and `--emit stats`.
    #[arg(long, default_value_t = 32, allow_hyphen_values = true, value_parser = at_least_one)]
    batch: u64,
    /// For `--emit dot|svg`: evaluate at this example and annotate every edge with its value
    /// and gradient (`NAME=VALUE` pairs, as for `eval`).
    #[arg(long, value_name = "PAIRS")]
    set: Vec<String>,
    /// Seed of the initializers of params not set.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    opt: Opt,
}

/// A stage `--emit` can print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Stage {
    /// The syntax tree.
    Ast,
    /// The checked forward IR.
    Ir,
    /// Forward plus adjoint: value-and-grad of the loss w.r.t. every float arg and binding.
    Grad,
    /// The value-and-grad function after the optimizer.
    Opt,
    /// Cranelift IR of every kernel of the train step.
    Clif,
    /// The computational graph as Graphviz (annotated at the point given with --set).
    Dot,
    /// The same graph drawn as SVG without Graphviz.
    Svg,
    /// The train step's kernel count, GEMM count, buffer bytes, flops per step.
    Stats,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Evaluate one example: every named value and d loss / d name.
    Eval(EvalArgs),
    /// Train the model's params: minibatch SGD, momentum, Adam or AdamW.
    Train(Box<TrainArgs>),
    /// Run a trained model over a data set and write its outputs as CSV.
    Predict(PredictArgs),
    /// Check the adjoint's gradients against float64 finite differences.
    Check(CheckArgs),
    /// Time the train step on synthetic data: compile time, steps/s, examples/s.
    Bench(BenchArgs),
}

/// `--optimizer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// w -= lr·g
    Sgd,
    /// PyTorch's SGD with momentum: v = μ·v + g, w -= lr·v (--momentum μ, --nesterov)
    Momentum,
    /// Adam (--beta1 --beta2 --eps), as torch.optim.Adam
    Adam,
    /// Adam with decoupled weight decay, as torch.optim.AdamW
    Adamw,
}

/// `-O0|-O1|-O2`.
#[derive(Args, Debug, Clone, Copy)]
pub struct Opt {
    /// Optimization level: -O0 (no passes), -O1, -O2 (default).
    #[arg(short = 'O', value_name = "LEVEL", default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
    level: u8,
}

impl Opt {
    pub fn level(&self) -> OptLevel {
        match self.level {
            0 => OptLevel::O0,
            1 => OptLevel::O1,
            _ => OptLevel::O2,
        }
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    pub model: PathBuf,
    /// `NAME=VALUE` pairs separated by commas, e.g. 'x=-2,W=[[1,2],[3,4]]'; may repeat.
    #[arg(long, value_name = "PAIRS")]
    pub set: Vec<String>,
    /// Params not set come from this checkpoint (else from their initializers).
    #[arg(long, value_name = "P.safetensors")]
    pub params: Option<PathBuf>,
    /// Seed of the initializers.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true, value_parser = whole_number)]
    pub seed: u64,
    /// Also print the Hessian-vector product of the loss w.r.t. the params along this
    /// direction: `NAME=VALUE` pairs for one or more params (the others are zero).
    #[arg(long, value_name = "PAIRS")]
    pub hvp: Vec<String>,
    /// Use the float64 reference interpreter instead of the JIT.
    #[arg(long)]
    pub interp: bool,
    /// Fail, naming the first op (forward or adjoint) and its source line, if a value is
    /// inf or NaN.
    #[arg(long)]
    pub check_finite: bool,
    /// Print `{"values": {...}, "grads": {...}}`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opt: Opt,
}

/// `bpc train`. Ctrl-C stops after the current step, saves a checkpoint (to --save, else
/// MODEL.interrupted.safetensors) and exits with status 130; `--init` resumes from it.
#[derive(Args, Debug)]
#[command(after_help = "Ctrl-C finishes the current step, saves the params and optimizer state to --save (else to \
    MODEL.interrupted.safetensors), and exits with status 130; Ctrl-C twice quits at once without saving. \
    --init resumes where the run stopped, with the checkpoint's optimizer and its settings, learning rate, \
    schedule, seed, standardization and --epochs (flags given again win); --epochs counts all epochs, those done \
    included. The checkpoint keeps every epoch's losses and accuracies, so --plot after a resume draws the whole run.\n\n\
    Examples (run from the bpc source directory):\n  \
    bpc train examples/digits.bp --data examples/data/digits_train.csv --val examples/data/digits_test.csv \
    --standardize --optimizer adam --epochs 1000 --save digits.safetensors --plot curve.svg\n  \
    bpc train examples/digits.bp --data examples/data/digits_train.csv --val examples/data/digits_test.csv \
    --epochs 1500 --init digits.safetensors --save digits.safetensors   # resume after Ctrl-C, or train longer\n  \
    bpc predict examples/digits.bp --params digits.safetensors --data examples/data/digits_test.csv \
    --out predictions.csv")]
pub struct TrainArgs {
    /// The model (`.bp` file) whose params are trained.
    pub model: PathBuf,
    /// Training data (CSV with a header, or .csv.gz).
    #[arg(long, value_name = "TRAIN.csv")]
    pub data: PathBuf,
    /// Validation data, evaluated after every epoch.
    #[arg(long, value_name = "VAL.csv", conflicts_with = "val_split")]
    pub val: Option<PathBuf>,
    /// Hold out this fraction of the training data (chosen with --seed) for validation.
    #[arg(long, value_name = "F", allow_hyphen_values = true, value_parser = fraction)]
    pub val_split: Option<f64>,
    /// The label column (default: `label`, else the last column); `A,B,C` for a real label
    /// of three elements.
    #[arg(long, value_name = "COLUMN")]
    pub label: Option<String>,
    /// The feature columns, in the order they fill the inputs (default: every other column
    /// in file order); columns not named are ignored.
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Epochs in all, those done before a resume included [default: 10; with --init, the
    /// count the checkpoint's run was started with].
    #[arg(long, allow_hyphen_values = true, value_parser = at_least_one_usize)]
    pub epochs: Option<usize>,
    /// Minibatch size.
    #[arg(long, default_value_t = 32, allow_hyphen_values = true, value_parser = at_least_one)]
    pub batch: u64,
    /// Learning rate [default: 0.01; 0.001 for adam and adamw; with --init, the checkpoint's].
    #[arg(long, allow_hyphen_values = true, value_parser = learning_rate)]
    pub lr: Option<f32>,
    /// How the learning rate changes: constant, step:EPOCHS:FACTOR (multiply by FACTOR every
    /// EPOCHS epochs), or cosine (annealed to 0 over the run, every step) [default: constant;
    /// with --init, the checkpoint's].
    #[arg(long, value_name = "SCHEDULE", value_parser = lr_schedule)]
    pub lr_schedule: Option<bpc::train::LrSchedule>,
    /// The update rule [default: sgd; with --init, the checkpoint's, with its settings].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// Momentum μ of --optimizer momentum [default: 0.9].
    #[arg(long, value_name = "MU", allow_hyphen_values = true, value_parser = unit_interval)]
    pub momentum: Option<f32>,
    /// Nesterov momentum (with --optimizer momentum): w -= lr·(g + μ·v).
    #[arg(long)]
    pub nesterov: bool,
    /// Adam's β1 [default: 0.9].
    #[arg(long, allow_hyphen_values = true, value_parser = unit_interval)]
    pub beta1: Option<f32>,
    /// Adam's β2 [default: 0.999].
    #[arg(long, allow_hyphen_values = true, value_parser = unit_interval)]
    pub beta2: Option<f32>,
    /// Adam's ε [default: 1e-8].
    #[arg(long, allow_hyphen_values = true, value_parser = positive)]
    pub eps: Option<f32>,
    /// L2 weight decay: wd·w is added to the gradient (adamw: w -= lr·wd·w, decoupled)
    /// [default: 0].
    #[arg(long, value_name = "WD", allow_hyphen_values = true, value_parser = non_negative)]
    pub weight_decay: Option<f32>,
    /// Stop when the validation loss has not improved for N epochs, keeping the best params.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = at_least_one_usize)]
    pub patience: Option<usize>,
    /// Seed of the initializers, the shuffling and --val-split [default: 0; with --init, the
    /// checkpoint's].
    #[arg(long, allow_hyphen_values = true, value_parser = whole_number)]
    pub seed: Option<u64>,
    /// Scale features by the training set's mean and standard deviation.
    #[arg(long)]
    pub standardize: bool,
    /// Write the trained params and optimizer state here (safetensors).
    #[arg(long, value_name = "P.safetensors")]
    pub save: Option<PathBuf>,
    /// Also save to --save every N epochs.
    #[arg(long, value_name = "N", requires = "save", allow_hyphen_values = true, value_parser = at_least_one_usize)]
    pub save_every: Option<usize>,
    /// Resume from this checkpoint: params, optimizer state, epochs done, standardization,
    /// and (unless given again) the optimizer and its settings, --lr, --lr-schedule and --seed.
    #[arg(long, value_name = "P.safetensors")]
    pub init: Option<PathBuf>,
    /// Draw train and validation loss (and accuracy) per epoch to this SVG file.
    #[arg(long, value_name = "curve.svg")]
    pub plot: Option<PathBuf>,
    /// Threads for large matrix products (default: all cores).
    #[arg(long, value_name = "T", default_value_t = 0, allow_hyphen_values = true, value_parser = whole_number_usize)]
    pub threads: usize,
    /// Stop at the first step whose loss or params are inf or NaN, naming the op at fault.
    #[arg(long)]
    pub check_finite: bool,
    /// One JSON object per epoch on stdout, then a final `{"done": true, ...}`.
    #[arg(long)]
    pub json: bool,
    /// No progress bar and no per-epoch lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub opt: Opt,
}

#[derive(Args, Debug)]
#[command(after_help = "Writes one CSV row per example: the model's `output` flattened (output_0, output_1, ...), \
    then `predicted` (the class index, or its name if the training labels were names). The checkpoint's \
    standardization statistics and feature columns are applied to the data. If the file has the label column, \
    the accuracy (or R² and RMSE) goes to stderr.\n\n\
    Example:\n  \
    bpc predict examples/digits.bp --params digits.safetensors --data examples/data/digits_test.csv --out predictions.csv")]
pub struct PredictArgs {
    /// The model (`.bp` file) the params were trained for.
    pub model: PathBuf,
    /// Trained params.
    #[arg(long, value_name = "P.safetensors")]
    pub params: PathBuf,
    /// Examples (the label column is optional).
    #[arg(long, value_name = "TEST.csv")]
    pub data: PathBuf,
    /// The label column, if the file has one not named `label` and not last.
    #[arg(long, value_name = "COLUMN")]
    pub label: Option<String>,
    /// The feature columns (default: those the checkpoint was trained on with --features,
    /// else every column but the label).
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Write the CSV here instead of stdout.
    #[arg(long, value_name = "PRED.csv")]
    pub out: Option<PathBuf>,
    /// Print the predictions as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opt: Opt,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    pub model: PathBuf,
    /// Take the examples from this data set (else a fixed synthetic pattern).
    #[arg(long, value_name = "D.csv")]
    pub data: Option<PathBuf>,
    /// Largest accepted |finite difference - adjoint| / max(1, |adjoint|).
    #[arg(long, default_value_t = 1e-6)]
    pub tol: f64,
    /// Examples in the minibatch checked.
    #[arg(long, default_value_t = 4, allow_hyphen_values = true, value_parser = at_least_one)]
    pub rows: u64,
    /// Elements checked per tensor (evenly spaced) when it has more.
    #[arg(long, default_value_t = 32)]
    pub samples: usize,
    /// Params from this checkpoint (else from their initializers).
    #[arg(long, value_name = "P.safetensors")]
    pub params: Option<PathBuf>,
    /// Seed of the initializers.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true, value_parser = whole_number)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    pub model: PathBuf,
    /// Minibatch size.
    #[arg(long, default_value_t = 32, allow_hyphen_values = true, value_parser = at_least_one)]
    pub batch: u64,
    /// Learning rate passed to the step.
    #[arg(long, default_value_t = 0.01, allow_hyphen_values = true, value_parser = learning_rate)]
    pub lr: f32,
    /// Seed of the initializers.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true, value_parser = whole_number)]
    pub seed: u64,
    /// Run for at least this many seconds ...
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true, value_parser = seconds)]
    pub seconds: f64,
    /// ... and at least this many steps.
    #[arg(long, default_value_t = 10)]
    pub min_steps: u64,
    /// Threads for large matrix products (default: all cores).
    #[arg(long, value_name = "T", default_value_t = 0, allow_hyphen_values = true, value_parser = whole_number_usize)]
    pub threads: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opt: Opt,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Some(Command::Eval(a)) => eval::run(&a),
        // The step loops run on a rayon worker thread: a product split over the threads then
        // forks on that worker's own deque, with no allocation or lock per step (from any
        // other thread, rayon's shared queue allocates a block per 63 split products).
        Some(Command::Train(a)) => rayon::scope(|_| train::run(&a)),
        Some(Command::Predict(a)) => predict::run(&a),
        Some(Command::Check(a)) => check::run(&a),
        Some(Command::Bench(a)) => rayon::scope(|_| bench::run(&a)),
        None => {
            let Some(model) = cli.model else {
                usage_error("no model given: try `bpc MODEL.bp --emit-ir` or `bpc --help`");
            };
            let stage = match (cli.emit_ir, cli.emit) {
                (true, Some(s)) if s != Stage::Ir => {
                    usage_error("--emit-ir and --emit are two spellings of one flag; give one");
                }
                (true, _) => Stage::Ir,
                (false, Some(s)) => s,
                (false, None) => usage_error("nothing to do: give --emit-ir, --emit STAGE or a command"),
            };
            let opts =
                emit::EmitOptions { level: cli.opt.level(), batch: cli.batch as usize, set: cli.set, seed: cli.seed };
            emit::run(&model, stage, &opts)
        }
    }
}

/// Prints a usage error the way clap does (with the usage line) and exits with status 2.
fn usage_error(message: &str) -> ! {
    Cli::command().error(clap::error::ErrorKind::MissingRequiredArgument, message).exit()
}

/// Catches a mistyped command before clap reads it as a model path (which gives a confusing
/// "subcommand cannot be used with [MODEL]"): the first argument is neither a flag, a command,
/// a `.bp` file nor an existing path.
pub fn check_command_word(args: &[std::ffi::OsString]) {
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else { return };
    let commands: Vec<String> = Cli::command().get_subcommands().map(|c| c.get_name().to_string()).collect();
    let is_model = first.ends_with(".bp") || std::path::Path::new(first).exists();
    if first.starts_with('-') || is_model || commands.iter().any(|c| c == first) {
        return;
    }
    let message = format!(
        "unknown command `{first}`: the commands are {}; or give a model file, as in `bpc MODEL.bp --emit-ir`",
        commands.iter().filter(|c| *c != "help").cloned().collect::<Vec<_>>().join(", ")
    );
    Cli::command().error(clap::error::ErrorKind::InvalidSubcommand, message).exit()
}

/// A JSON object with its keys in the given order; values are JSON text already.
pub fn json_object(fields: impl IntoIterator<Item = (String, String)>) -> String {
    let parts: Vec<String> = fields.into_iter().map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k))).collect();
    format!("{{{}}}", parts.join(","))
}

/// `--batch`, `--rows`: a whole number of at least 1.
fn at_least_one(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a whole number of at least 1, found `{text}`")),
    }
}

fn at_least_one_usize(text: &str) -> Result<usize, String> {
    at_least_one(text).map(|n| n as usize)
}

/// `--seed`, `--threads`: a whole number, 0 or more.
fn whole_number(text: &str) -> Result<u64, String> {
    text.trim().parse::<u64>().map_err(|_| format!("expected a whole number (0 or more), found `{text}`"))
}

fn whole_number_usize(text: &str) -> Result<usize, String> {
    whole_number(text).map(|n| n as usize)
}

/// `--val-split`: a fraction strictly between 0 and 1.
fn fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        _ => Err(format!("expected a fraction between 0 and 1 (e.g. 0.2), found `{text}`")),
    }
}

/// `--momentum`, `--beta1`, `--beta2`: a number in [0, 1).
fn unit_interval(text: &str) -> Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(x) if (0.0..1.0).contains(&x) => Ok(x),
        _ => Err(format!("expected a number from 0 up to (not including) 1, found `{text}`")),
    }
}

/// `--eps`: a finite positive number.
fn positive(text: &str) -> Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("expected a positive finite number, found `{text}`")),
    }
}

/// `--weight-decay`: a finite number, 0 or more.
fn non_negative(text: &str) -> Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("expected a finite number, 0 or more, found `{text}`")),
    }
}

/// `--lr-schedule`.
fn lr_schedule(text: &str) -> Result<bpc::train::LrSchedule, String> {
    bpc::train::LrSchedule::parse(text)
}

/// `--lr`: a finite positive number (a negative rate would climb the loss).
fn seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!("expected a finite number of seconds, 0 or more, found `{text}`")),
    }
}

fn learning_rate(text: &str) -> Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(lr) if lr.is_finite() && lr > 0.0 => Ok(lr),
        _ => Err(format!("expected a positive finite learning rate, found `{text}`")),
    }
}
