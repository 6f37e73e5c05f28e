//! [`Trainer`]: the training driver of `bpc train` (shuffled minibatches, optimizers,
//! schedules, validation, early stopping) for a program embedded in another.

use bpc_front::Source;
use bpc_ir::Function;
use bpc_train::{Dataset, EpochReport, Metrics, OptState, RunError, Schema, TrainConfig, TrainReport};

use super::{Error, ErrorKind, Params, Program};

/// Trains a program's params with the built-in driver.
///
/// Each [`Trainer::fit`] runs epochs `config.start.epochs + 1 ..= config.epochs` over the
/// training set in shuffled minibatches of `config.batch` (the last, smaller minibatch of an
/// epoch is trained on with its own compiled step), with `config.optimizer` (SGD, momentum,
/// Adam, AdamW; its state is kept between calls), the learning rate `config.lr` scaled by
/// `config.schedule`, and, given validation data, the validation loss and accuracy after
/// every epoch (and early stopping with `config.patience`). The optimizer level and threads
/// are the config's, not the program's [`super::Options`]. Shuffling and initialization
/// depend only on the seeds: a run is reproducible.
///
/// ```
/// use bpc::{Options, Standardizer, TrainConfig, Trainer};
///
/// let dir = env!("CARGO_MANIFEST_DIR");
/// let program = bpc::compile_file(format!("{dir}/examples/iris.bp"), &Options::default())?;
/// let mut train = program.load_csv(format!("{dir}/examples/data/iris_train.csv"))?;
/// let mut val = program.load_csv(format!("{dir}/examples/data/iris_test.csv"))?;
/// let scale = Standardizer::fit(&train); // feature mean and deviation of the training set
/// scale.apply(&mut train);
/// scale.apply(&mut val);
///
/// let mut params = program.init_params(0)?;
/// let config = TrainConfig { epochs: 50, batch: 16, lr: 0.1, ..TrainConfig::default() };
/// let mut trainer = Trainer::new(&program, config)?;
/// let report = trainer.fit(&mut params, &train, Some(&val))?;
/// let last = report.epochs.last().unwrap();
/// assert!(last.val_accuracy.unwrap() > 0.9, "{last:?}");
/// assert!(trainer.evaluate(&params, &val)?.loss < report.epochs[0].val_loss.unwrap());
/// # Ok::<(), bpc::Error>(())
/// ```
pub struct Trainer {
    func: Function,
    /// The program's param layout (zeros), to check the params a call is given.
    layout: Params,
    source: Source,
    schema: Schema,
    config: TrainConfig,
    state: OptState,
}

impl Trainer {
    /// A trainer of `program` with `config`.
    ///
    /// # Errors
    /// [`ErrorKind::Data`] if the program cannot be fed from a data set (more than one
    /// label).
    pub fn new(program: &Program, config: TrainConfig) -> Result<Trainer, Error> {
        let func = program.function().clone();
        let state = OptState::new(&func, config.optimizer.optimizer);
        let (schema, source, layout) =
            (program.schema()?, program.model().source.clone(), program.param_layout().clone());
        Ok(Trainer { schema, source, func, layout, config, state })
    }

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The settings, to change between calls of [`Trainer::fit`] (a new optimizer starts
    /// from fresh state).
    pub fn config_mut(&mut self) -> &mut TrainConfig {
        &mut self.config
    }

    /// Trains `params` on `train` (validating on `val`, if given); returns every epoch's
    /// figures and why training stopped.
    ///
    /// # Errors
    /// [`ErrorKind::Train`] at the first step whose loss is inf or NaN (the epoch and step
    /// are named; `params` are then partly updated); [`ErrorKind::Call`] for an empty data
    /// set, a minibatch size of 0, or params of another program.
    pub fn fit(&mut self, params: &mut Params, train: &Dataset, val: Option<&Dataset>) -> Result<TrainReport, Error> {
        self.fit_with(params, train, val, |_| {})
    }

    /// [`Trainer::fit`], calling `on_epoch` with each epoch's figures as it ends.
    ///
    /// # Errors
    /// As [`Trainer::fit`].
    pub fn fit_with(
        &mut self,
        params: &mut Params,
        train: &Dataset,
        val: Option<&Dataset>,
        mut on_epoch: impl FnMut(&EpochReport),
    ) -> Result<TrainReport, Error> {
        self.check_params(params)?;
        let name = &self.func.name;
        if self.config.batch == 0 {
            let m = format!("{name}: the minibatch size (TrainConfig::batch) must be at least 1, got 0");
            return Err(Error::new(ErrorKind::Call, m));
        }
        if train.is_empty() {
            return Err(Error::new(
                ErrorKind::Call,
                format!("{name}: the training set {} has no examples", train.path),
            ));
        }
        if self.state.optimizer != self.config.optimizer.optimizer {
            self.state = OptState::new(&self.func, self.config.optimizer.optimizer);
        }
        let mut hook = |e: &EpochReport, _: &bpc_train::Snapshot| -> Result<(), RunError> {
            on_epoch(e);
            Ok(())
        };
        let (func, cfg) = (&self.func, &self.config);
        bpc_train::train(func, params.as_train_mut(), &mut self.state, train, val, cfg, &mut hook)
            .map_err(|e| self.error(e))
    }

    /// The mean loss and (for a class label) the accuracy of `params` on `data`, computed
    /// by the compiled forward pass in minibatches.
    ///
    /// # Errors
    /// [`ErrorKind::Call`] if `data` or `params` do not fit the program.
    pub fn evaluate(&self, params: &Params, data: &Dataset) -> Result<Metrics, Error> {
        self.check_params(params)?;
        let (p, level) = (params.as_train(), self.config.opt_level);
        let mut eval = bpc_train::Evaluator::for_metrics(&self.func, &self.schema, p, level)
            .map_err(|e| self.error(e))?
            .with_threads(self.config.threads);
        eval.prepare(data.len()).map_err(|e| self.error(e))?;
        eval.metrics(data, p).map_err(|e| self.error(e))
    }

    /// Refuses params made for another program, naming every param that differs.
    fn check_params(&self, params: &Params) -> Result<(), Error> {
        match params.mismatch(&self.layout) {
            None => Ok(()),
            Some(m) => {
                let m = format!("{}: the params do not match this program: {m}", self.func.name);
                Err(Error::new(ErrorKind::Call, m))
            }
        }
    }

    fn error(&self, e: RunError) -> Error {
        match e {
            RunError::Program(d) => Error::program(&self.source, vec![d]),
            RunError::NonFinite(d) => Error::program(&self.source, vec![d]).with_kind(ErrorKind::Train),
            RunError::Compile(m) => Error::new(ErrorKind::Compile, m),
            RunError::Call(m) => Error::new(ErrorKind::Call, m),
            RunError::Diverged(m) => Error::new(ErrorKind::Train, m),
            RunError::Save(m) => Error::new(ErrorKind::Checkpoint, m),
        }
    }
}
