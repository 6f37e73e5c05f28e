//! One error type for the whole library: what went wrong, which part of the pipeline, and
//! for errors in the program text the diagnostics themselves, rendered only when asked.

use std::fmt;
use std::sync::Arc;

use bpc_front::Source;
use bpc_ir::Diagnostic;

/// Which part of the pipeline an [`Error`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The program text: a syntax, name or shape error, or a derivative that does not exist
    /// (a class label, a loss that is not a scalar). [`Error::diagnostics`] has the details.
    Program,
    /// A file could not be read or written; the message names the path and the system's
    /// reason.
    Io,
    /// Code generation failed (a bug in bpc or an unsupported construct; a minibatch size of 0
    /// is a [`ErrorKind::Call`] error).
    Compile,
    /// A call was refused before any code ran: a buffer of the wrong length or kind, a
    /// missing input or label, a class label outside `0..K`, a workspace made by another
    /// compiled function, a minibatch size of 0, params of another program.
    Call,
    /// A data file is malformed or does not fit the program (`file:line:column` in the
    /// message).
    Data,
    /// A checkpoint does not fit the program, or could not be written.
    Checkpoint,
    /// Training stopped: a loss or a param became inf or NaN.
    Train,
    /// Anything else (messages made with [`Error::msg`]).
    Other,
}

/// A failure anywhere in the library.
///
/// `Display` gives what a person should read: for [`ErrorKind::Program`] the diagnostics
/// rendered with `codespan-reporting` (`error: ...`, `--> file:line:column`, the source line
/// and a caret, the notes; ASCII, no colour), else a one-line message. [`Error::message`] is
/// always the one line; [`Error::diagnostics`] gives the structured diagnostics to render
/// differently, against [`Error::model_source`].
#[derive(Clone, Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    diagnostics: Vec<Diagnostic>,
    source: Option<Arc<Source>>,
}

impl Error {
    /// An error of `kind` with the one-line `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), diagnostics: Vec::new(), source: None }
    }

    /// An [`ErrorKind::Other`] error with `message` (what the command line uses for its own
    /// errors).
    pub fn msg(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Other, message)
    }

    /// A program error: `diagnostics` (at least one) against `source`.
    pub(crate) fn program(source: &Source, diagnostics: Vec<Diagnostic>) -> Error {
        let message = diagnostics.first().map_or_else(|| "invalid program".to_string(), |d| d.message.clone());
        Error { kind: ErrorKind::Program, message, diagnostics, source: Some(Arc::new(source.clone())) }
    }

    /// The same error attributed to `kind` (a diagnostic found while training).
    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Error {
        self.kind = kind;
        self
    }

    /// Which part of the pipeline failed.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The one-line message (for a program error: the first diagnostic's message, without
    /// its location).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The program's diagnostics (empty unless [`ErrorKind::Program`]), with their spans
    /// as byte ranges of [`Error::model_source`]'s text.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The model source (path and text) the diagnostics point into; `None` unless
    /// [`ErrorKind::Program`] (or a diagnostic found while training). Not
    /// [`std::error::Error::source`], which is `None`: an `Error` wraps no other error.
    pub fn model_source(&self) -> Option<&Source> {
        self.source.as_deref()
    }

    /// The full text: the rendered diagnostics for a program error, else the message.
    pub fn render(&self) -> String {
        match &self.source {
            Some(src) if !self.diagnostics.is_empty() => bpc_front::render(src, &self.diagnostics),
            _ => self.message.clone(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.render().trim_end())
    }
}

impl std::error::Error for Error {}

impl From<bpc_codegen::CallError> for Error {
    fn from(e: bpc_codegen::CallError) -> Error {
        Error::new(ErrorKind::Call, e.0)
    }
}

impl From<bpc_train::DataError> for Error {
    fn from(e: bpc_train::DataError) -> Error {
        Error::new(ErrorKind::Data, e.to_string())
    }
}

impl From<bpc_train::CheckpointError> for Error {
    fn from(e: bpc_train::CheckpointError) -> Error {
        Error::new(ErrorKind::Checkpoint, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpc_ir::Span;

    #[test]
    fn a_program_error_renders_its_diagnostics_on_demand() {
        let src = Source::new("m.bp", "input x\nloss y\n");
        let d = Diagnostic::error("unknown name `y`").at(Span::new(13, 14), "not declared");
        let e = Error::program(&src, vec![d]);
        assert_eq!((e.kind(), e.message()), (ErrorKind::Program, "unknown name `y`"));
        let text = e.to_string();
        assert!(text.starts_with("error: unknown name `y`"), "{text}");
        assert!(text.contains("m.bp:2:6"), "{text}");
        assert_eq!(Error::msg(format!("plain {}", 1)).to_string(), "plain 1");
    }
}
