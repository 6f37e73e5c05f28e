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
    ///
    /// Each variant's doc gives its value, its vector–Jacobian rule (`ct` the cotangent of the
    /// result, `out` the result, `⊙` the strong-zero product `strong_mul`) and the convention
    /// at points where the derivative is not defined, with its source; the rules themselves
    /// are in `bpc-autodiff/src/vjp.rs`.
    pub enum UnaryOp {
        /// `-x`. VJP: `-ct`.
        Neg = "neg",
        /// `e^x`. VJP: `ct ⊙ out`.
        Exp = "exp",
        /// Natural log, IEEE: `log 0 = -inf`, `log(x < 0) = NaN`. VJP: `ct ⊙ (1/x)`, so
        /// `log'(0) = inf` (IEEE, SPEC §2) unless `ct` is 0.
        Log = "log",
        /// `√x`, IEEE: `√-0 = -0`, `√(x < 0) = NaN`. VJP: `ct ⊙ (0.5/out)`, so `sqrt'(0) = inf`
        /// (IEEE, SPEC §2) unless `ct` is 0.
        Sqrt = "sqrt",
        /// `|x|`. VJP: `ct ⊙ sign(x)` with `abs'(0) = 0` (SPEC §2; JAX's `sign`, PyTorch's
        /// `abs_backward`).
        Abs = "abs",
        /// `1 / (1 + e^-x)`, computed without overflow for any `x` (`e^x/(1+e^x)` for `x < 0`).
        /// VJP: `ct ⊙ out·(1 − out)`, finite everywhere (0 where `out` rounds to 0 or 1).
        Sigmoid = "sigmoid",
        /// `tanh x`. VJP: `ct ⊙ (1 − out²)`.
        Tanh = "tanh",
        /// `max(x, 0)`; NaN propagates. VJP: `ct` where `x > 0`, else 0 (a select, so
        /// `relu'(0) = 0`, SPEC §2, as JAX and PyTorch).
        Relu = "relu",
        /// `log(1 + e^x)` as `max(x, 0) + log1p(e^-|x|)`: no overflow for any `x` (PyTorch's
        /// `softplus` uses a threshold instead). VJP: `ct ⊙ σ(x)`, finite everywhere.
        Softplus = "softplus",
        /// `log σ(x) = -softplus(-x)`: no overflow, `≈ x` for `x ≪ 0` where `log(sigmoid(x))`
        /// would be `log 0`. VJP: `ct ⊙ σ(−x)`, finite everywhere.
        LogSigmoid = "log_sigmoid",
    }
}

op_table! {
    /// Elementwise binary ops over two operands of the same type. Comparisons give a
    /// float mask: 1.0 where true, 0.0 where false. VJPs as for [`UnaryOp`], for `(a, b)`.
    pub enum BinaryOp {
        /// `a + b`. VJP: `ct`, `ct`.
        Add = "add",
        /// `a − b`. VJP: `ct`, `−ct`.
        Sub = "sub",
        /// `a·b`, IEEE (`0·inf = NaN` in the forward program, as written). VJP: `ct ⊙ b`,
        /// `ct ⊙ a`.
        Mul = "mul",
        /// `a·b`, except exactly `+0` when either factor is `±0` (even if the other is inf or
        /// NaN): the *strong zero* product of the adjoint (SPEC §2), so an inactive branch or a
        /// zero cotangent never turns `0·inf` into NaN. The adjoint emits it; the language has
        /// no spelling for it. VJP: `ct ⊙ b`, `ct ⊙ a` (mul's rule with strong products: where
        /// a factor is 0 and the other finite it equals `a·b`, whose derivative that is, and a
        /// forced zero stays a zero at second order).
        StrongMul = "strong_mul",
        /// `a / b`, IEEE. VJP: `ct ⊙ (1/b)`, `ct ⊙ (−out/b)`.
        Div = "div",
        /// `a^b` with IEEE `pow` semantics (`0^0 = 1`, `0^-1 = inf`, `(-2)^3 = -8`,
        /// `(-2)^0.5 = NaN`). VJP: `ct ⊙ (b ⊙ a^(b−1))`, exactly 0 at `b = 0` (also `0^0`; JAX's
        /// `_pow_jvp_lhs`), and `ct ⊙ (out ⊙ log a)` with `log 0` taken as 0 (JAX's
        /// `_replace_zero`: `0^b` is flat in `b` for `b > 0`); NaN in `b` for a negative base.
        Pow = "pow",
        /// The larger operand; a tie returns the (equal) value; NaN propagates. VJP: `ct` to the
        /// larger side, `ct/2` to each at a tie (SPEC §2; JAX's `max` JVP, PyTorch's
        /// `max_backward`), a strong 0 to the other side.
        Max = "max",
        /// The smaller operand; as [`BinaryOp::Max`] mirrored.
        Min = "min",
        /// `a < b` as 1/0. No gradient to either side (piecewise constant).
        Lt = "lt",
        /// `a <= b` as 1/0. No gradient.
        Le = "le",
        /// `a > b` as 1/0. No gradient.
        Gt = "gt",
        /// `a >= b` as 1/0. No gradient.
        Ge = "ge",
        /// `a == b` as 1/0. No gradient.
        Eq = "eq",
    }
}

op_table! {
    /// Reductions over a set of axes. VJPs broadcast the cotangent back over the reduced axes.
    pub enum ReduceOp {
        /// `Σ x`. VJP: `ct` to every element.
        Sum = "reduce_sum",
        /// `Σ x / n`, `n` counting the batch axis as the step's minibatch size. VJP: `ct ⊙ 1/n`.
        Mean = "reduce_mean",
        /// The largest element; NaN propagates. VJP: `ct` split evenly among the tied maxima,
        /// `ct ⊙ (mask ⊙ 1/count)`, `mask = (x == out)` (SPEC §2; JAX's
        /// `_reduce_chooser_jvp_rule`); the count is a float sum of the mask, never a narrow
        /// integer.
        Max = "reduce_max",
        /// The smallest element; as [`ReduceOp::Max`].
        Min = "reduce_min",
        /// `log Σ e^x`, computed as `m + log Σ e^(x - m)` with `m` the max (no overflow; all
        /// `-inf` gives `-inf`). VJP: `ct ⊙ e^(x − out)` (the softmax), finite everywhere.
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
                let (m, s) = lse_parts(xs);
                if m.is_infinite() {
                    // All -inf gives -inf; any +inf gives +inf.
                    return m;
                }
                m + s.ln()
            }
        }
    }
}

/// The parts of `logsumexp xs = m + ln s`: the max `m` (NaN if any element is) and
/// `s = Σ e^(x - m)`, NaN when `m` is not finite.
pub(crate) fn lse_parts(xs: &[f64]) -> (f64, f64) {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, nan_max);
    let s = if m.is_finite() { xs.iter().map(|x| (x - m).exp()).sum() } else { f64::NAN };
    (m, s)
}

fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}
