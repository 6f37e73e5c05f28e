//! The syntax tree of a `.bp` program, and its text form (`bpc MODEL --emit ast`).
//!
//! The tree is what the grammar saw, nothing resolved: names are strings, shapes and class
//! counts are expressions still to be folded to integers. Every node keeps its [`Span`].
//! Expressions carry their depth, and the parser caps it (see [`MAX_DEPTH`]): a deeper
//! expression becomes [`ExprKind::TooDeep`], so no recursive pass over the tree (lowering,
//! printing, dropping) can overflow the stack on hostile input.
//!
//! The text form prints one statement per line and every operator application in
//! parentheses, so precedence is visible: `-x^2` prints as `(-(x ^ 2))`.

use std::fmt;

use bpc_ir::Span;

pub use crate::lexer::Number;

/// The deepest expression tree the parser builds; deeper input is an error.
pub const MAX_DEPTH: u32 = 200;

/// A whole program: its statements in source order.
#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub stmts: Vec<Stmt>,
}

/// A name with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// One statement (one logical line).
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    /// `model NAME` (first line only).
    Model(Ident),
    /// `input NAME[SHAPE]`; no shape is a scalar.
    Input { name: Ident, shape: Option<ShapeExpr> },
    /// `label NAME : class(K)` (`func` is the word before the parenthesis, checked to be `class`).
    ClassLabel { name: Ident, func: Ident, classes: Expr },
    /// `label NAME[SHAPE]`: a real-valued target.
    RealLabel { name: Ident, shape: Option<ShapeExpr> },
    /// `param NAME[SHAPE] INIT`.
    Param { name: Ident, shape: Option<ShapeExpr>, init: Option<InitExpr> },
    /// `const NAME = EXPR`.
    Const { name: Ident, value: Expr },
    /// `def NAME(ARGS) = EXPR`.
    Def { name: Ident, params: Vec<Ident>, body: Expr },
    /// `NAME = EXPR`.
    Bind { name: Ident, value: Expr },
    /// `loss EXPR`.
    Loss(Expr),
    /// `output EXPR`.
    Output(Expr),
}

/// `[d0, d1, ...]`: each extent an expression that must fold to a positive integer.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeExpr {
    pub dims: Vec<Expr>,
    pub span: Span,
}

/// A param's initializer.
#[derive(Clone, Debug, PartialEq)]
pub enum InitExpr {
    /// `= EXPR` (a constant).
    Value(Expr),
    /// `~ NAME` or `~ NAME(ARGS)`: `normal(mean, std)`, `uniform(lo, hi)`, `xavier`, `he`.
    Dist { name: Ident, args: Option<Vec<Expr>>, span: Span },
}

/// An expression node.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// Height of the tree below and including this node (a leaf is 1).
    pub depth: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Num(Number),
    Name(String),
    Neg(Box<Expr>),
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `f(a, b, axis=1)`.
    Call {
        func: Ident,
        args: Vec<Arg>,
    },
    /// `v[i]`, `W[i, j]`.
    Index {
        base: Box<Expr>,
        indices: Vec<Expr>,
    },
    /// An expression nested deeper than [`MAX_DEPTH`]; its span is where the limit was hit.
    TooDeep,
}

/// A call argument, positional or `keyword=value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub keyword: Option<Ident>,
    pub value: Expr,
}

/// Binary operators, loosest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Add,
    Sub,
    Mul,
    Div,
    MatMul,
    Pow,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::MatMul => "@",
            BinOp::Pow => "^",
        }
    }
}

impl Expr {
    /// A node over `kind`, with its depth computed. If that depth passes [`MAX_DEPTH`] the
    /// node is replaced by `TooDeep` (and an already too-deep child is passed up as is), so
    /// the tree never grows deeper than the limit.
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        let mut depth = 0;
        let mut too_deep = None;
        kind.for_each_child(|c| {
            depth = depth.max(c.depth);
            if c.kind == ExprKind::TooDeep && too_deep.is_none() {
                too_deep = Some(c.span);
            }
        });
        if let Some(span) = too_deep {
            return Expr { kind: ExprKind::TooDeep, span, depth: MAX_DEPTH };
        }
        if depth >= MAX_DEPTH {
            return Expr { kind: ExprKind::TooDeep, span, depth: MAX_DEPTH };
        }
        Expr { kind, span, depth: depth + 1 }
    }

    /// The first `TooDeep` node in the tree, if any.
    pub fn too_deep(&self) -> Option<Span> {
        if self.kind == ExprKind::TooDeep {
            return Some(self.span);
        }
        let mut found = None;
        self.kind.for_each_child(|c| found = found.or_else(|| c.too_deep()));
        found
    }
}

impl ExprKind {
    fn for_each_child(&self, mut f: impl FnMut(&Expr)) {
        match self {
            ExprKind::Num(_) | ExprKind::Name(_) | ExprKind::TooDeep => {}
            ExprKind::Neg(e) => f(e),
            ExprKind::Binary { lhs, rhs, .. } => {
                f(lhs);
                f(rhs);
            }
            ExprKind::Call { args, .. } => args.iter().for_each(|a| f(&a.value)),
            ExprKind::Index { base, indices } => {
                f(base);
                indices.iter().for_each(f);
            }
        }
    }
}

impl Stmt {
    /// The expressions directly in this statement.
    pub fn exprs(&self) -> Vec<&Expr> {
        fn shape(s: &Option<ShapeExpr>) -> Vec<&Expr> {
            s.iter().flat_map(|s| s.dims.iter()).collect()
        }
        match &self.kind {
            StmtKind::Model(_) => vec![],
            StmtKind::Input { shape: s, .. } | StmtKind::RealLabel { shape: s, .. } => shape(s),
            StmtKind::ClassLabel { classes, .. } => vec![classes],
            StmtKind::Param { shape: s, init, .. } => {
                let mut out = shape(s);
                match init {
                    Some(InitExpr::Value(e)) => out.push(e),
                    Some(InitExpr::Dist { args: Some(args), .. }) => out.extend(args),
                    Some(InitExpr::Dist { args: None, .. }) | None => {}
                }
                out
            }
            StmtKind::Const { value: e, .. }
            | StmtKind::Def { body: e, .. }
            | StmtKind::Bind { value: e, .. }
            | StmtKind::Loss(e)
            | StmtKind::Output(e) => vec![e],
        }
    }
}

fn comma<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{x}")?;
    }
    Ok(())
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.stmts.iter().try_for_each(|s| writeln!(f, "{s}"))
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Display for ShapeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        comma(f, &self.dims)?;
        f.write_str("]")
    }
}

struct OptShape<'a>(&'a Option<ShapeExpr>);

impl fmt::Display for OptShape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) => write!(f, "{s}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StmtKind::Model(n) => write!(f, "model {n}"),
            StmtKind::Input { name, shape } => write!(f, "input {name}{}", OptShape(shape)),
            StmtKind::ClassLabel { name, func, classes } => write!(f, "label {name} : {func}({classes})"),
            StmtKind::RealLabel { name, shape } => write!(f, "label {name}{}", OptShape(shape)),
            StmtKind::Param { name, shape, init } => {
                write!(f, "param {name}{}", OptShape(shape))?;
                match init {
                    None => Ok(()),
                    Some(InitExpr::Value(e)) => write!(f, " = {e}"),
                    Some(InitExpr::Dist { name, args: None, .. }) => write!(f, " ~ {name}"),
                    Some(InitExpr::Dist { name, args: Some(args), .. }) => {
                        write!(f, " ~ {name}(")?;
                        comma(f, args)?;
                        f.write_str(")")
                    }
                }
            }
            StmtKind::Const { name, value } => write!(f, "const {name} = {value}"),
            StmtKind::Def { name, params, body } => {
                write!(f, "def {name}(")?;
                comma(f, params)?;
                write!(f, ") = {body}")
            }
            StmtKind::Bind { name, value } => write!(f, "{name} = {value}"),
            StmtKind::Loss(e) => write!(f, "loss {e}"),
            StmtKind::Output(e) => write!(f, "output {e}"),
        }
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.keyword {
            Some(k) => write!(f, "{k}={}", self.value),
            None => write!(f, "{}", self.value),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Num(n) => f.write_str(&n.text),
            ExprKind::Name(n) => f.write_str(n),
            ExprKind::Neg(e) => write!(f, "(-{e})"),
            ExprKind::Binary { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.symbol()),
            ExprKind::Call { func, args } => {
                write!(f, "{func}(")?;
                comma(f, args)?;
                f.write_str(")")
            }
            ExprKind::Index { base, indices } => {
                write!(f, "{base}[")?;
                comma(f, indices)?;
                f.write_str("]")
            }
            ExprKind::TooDeep => f.write_str("<too deep>"),
        }
    }
}

/// A binary node from `l` to `r` (used by the grammar).
pub fn bin(op: BinOp, lhs: Expr, rhs: Expr, l: usize, r: usize) -> Expr {
    Expr::new(ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }, Span::new(l, r))
}

impl Module {
    /// The name on the `model` line, if there is one.
    pub fn model_name(&self) -> Option<&Ident> {
        self.stmts.iter().find_map(|s| match &s.kind {
            StmtKind::Model(n) => Some(n),
            _ => None,
        })
    }
}
