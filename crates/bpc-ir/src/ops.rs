//! The primitive op table.
//!
//! Each family is one table: the variant, its text name (printer and reader) and its float64
//! semantics (the interpreter's rule, the oracle every other rule is tested against). The
//! VJP rules live in `bpc-autodiff/src/vjp.rs` and the code-generation rules in
//! `bpc-codegen`, each one exhaustive `match` over these enums, so a new variant makes the
//! compiler list every place that needs it.

/// Declares a fieldless op enum with its text names, egg's `define_language!` style.
macro_rules! op_table {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// Every variant, in table order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The name used in the IR text.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// Inverse of [`Self::name`].
            pub fn from_name(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

op_table! {
    /// Elementwise `f32 -> f32` ops.
    pub enum UnaryOp {
        Neg = "neg",
        Exp = "exp",
        Log = "log",
        Sqrt = "sqrt",
        Abs = "abs",
        /// `1 / (1 + e^-x)`, computed without overflow for any `x`.
        Sigmoid = "sigmoid",
        Tanh = "tanh",
        /// `max(x, 0)`; NaN propagates.
        Relu = "relu",
        /// `log(1 + e^x)` as `max(x, 0) + log1p(e^-|x|)`.
        Softplus = "softplus",
        /// `log(sigmoid(x)) = -softplus(-x)`.
        LogSigmoid = "log_sigmoid",
    }
}

op_table! {
    /// Elementwise binary ops over two operands of the same type. Comparisons give a
    /// float mask: 1.0 where true, 0.0 where false.
    pub enum BinaryOp {
        Add = "add",
        Sub = "sub",
        Mul = "mul",
        /// `a·b`, except exactly `0` when either factor is `±0` (even if the other is inf or
        /// NaN): the *strong zero* product of the adjoint (SPEC §2), so an inactive branch or a
        /// zero cotangent never turns `0·inf` into NaN.
        StrongMul = "strong_mul",
        Div = "div",
        /// `x^y` with IEEE `pow` semantics (`0^0 = 1`, `0^-1 = inf`).
        Pow = "pow",
        /// The larger operand; a tie returns the (equal) value; NaN propagates.
        Max = "max",
        Min = "min",
        Lt = "lt",
        Le = "le",
        Gt = "gt",
        Ge = "ge",
        Eq = "eq",
    }
}

op_table! {
    /// Reductions over a set of axes.
    pub enum ReduceOp {
        Sum = "reduce_sum",
        Mean = "reduce_mean",
        Max = "reduce_max",
        Min = "reduce_min",
        /// `log Σ e^x`, computed as `m + log Σ e^(x - m)` with `m` the max.
        LogSumExp = "reduce_logsumexp",
    }
}

impl UnaryOp {
    /// The float64 reference semantics.
    pub fn eval(self, x: f64) -> f64 {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sigmoid => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Relu => {
                if x > 0.0 || x.is_nan() {
                    x
                } else {
                    0.0
                }
            }
            UnaryOp::Softplus => softplus(x),
            UnaryOp::LogSigmoid => -softplus(-x),
        }
    }
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

impl BinaryOp {
    /// The float64 reference semantics.
    pub fn eval(self, a: f64, b: f64) -> f64 {
        let mask = |c: bool| if c { 1.0 } else { 0.0 };
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::StrongMul => {
                if a == 0.0 || b == 0.0 {
                    0.0
                } else {
                    a * b
                }
            }
            BinaryOp::Div => a / b,
            BinaryOp::Pow => a.powf(b),
            BinaryOp::Max => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else if a >= b {
                    a
                } else {
                    b
                }
            }
            BinaryOp::Min => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else if a <= b {
                    a
                } else {
                    b
                }
            }
            BinaryOp::Lt => mask(a < b),
            BinaryOp::Le => mask(a <= b),
            BinaryOp::Gt => mask(a > b),
            BinaryOp::Ge => mask(a >= b),
            BinaryOp::Eq => mask(a == b),
        }
    }

    /// Comparisons produce 0/1 masks and have no derivative.
    pub fn is_comparison(self) -> bool {
        match self {
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq => true,
            BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::StrongMul
            | BinaryOp::Div
            | BinaryOp::Pow
            | BinaryOp::Max
            | BinaryOp::Min => false,
        }
    }
}

impl ReduceOp {
    /// The float64 reference semantics over one group of elements (never empty).
    pub fn eval(self, xs: &[f64]) -> f64 {
        match self {
            ReduceOp::Sum => xs.iter().sum(),
            ReduceOp::Mean => xs.iter().sum::<f64>() / xs.len() as f64,
            ReduceOp::Max => xs.iter().copied().fold(f64::NEG_INFINITY, nan_max),
            ReduceOp::Min => -xs.iter().map(|x| -x).fold(f64::NEG_INFINITY, nan_max),
            ReduceOp::LogSumExp => {
                let m = xs.iter().copied().fold(f64::NEG_INFINITY, nan_max);
                if m.is_infinite() {
                    // All -inf gives -inf; any +inf gives +inf.
                    return m;
                }
                m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
            }
        }
    }
}

fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}
