//! A proptest generator of random well-typed `.bp` programs over every op of SPEC §1.
//!
//! A program is up to two bindings and a loss, each a typed expression tree built for a
//! requested example shape (the batch axis is implicit, as in the language): leaves are
//! per-example inputs, shared params, real labels, earlier bindings and numbers; inner nodes
//! are every built-in, operator and call of the language, with NumPy broadcasting between
//! operands of different shapes (`[2,1] + [1,3]`, a shared `[3]` against a per-example
//! `[2,3]`, ...). Arguments of `log`, `sqrt`, a denominator and a tensor power's base are
//! made positive by construction (`exp(tanh(e))`, `e^2 + 0.5`, ...), so the points tests
//! sample are in every op's domain. Each node picks its alternative by one integer, so
//! proptest shrinks a failing program toward leaves.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::sample::select;

/// Example dims of a value.
pub type Dims = Vec<usize>;

/// A leaf: a declared argument (kind, shape, slot), a binding or a number.
#[derive(Clone, Debug, PartialEq)]
pub enum Leaf {
    Input(Dims, u8),
    Param(Dims, u8),
    /// A real label `label t[..]`: per-example, like an input.
    Label(Dims),
    /// The `i`-th binding of the program.
    Bind(usize),
    Num(f64),
}

/// An expression, rendered fully parenthesized.
#[derive(Clone, Debug)]
pub enum E {
    Leaf(Leaf),
    /// `f(e)` for a unary built-in, or `-(e)` for `neg`.
    Unary(&'static str, Box<E>),
    /// `(a OP b)` for `+ - * / ^` and comparisons.
    Op(&'static str, Box<E>, Box<E>),
    /// `f(args..., axis=K)`.
    Call(&'static str, Vec<E>, Option<i64>),
    /// `e[i]` or `e[i, j]`.
    Index(Box<E>, Vec<usize>),
    /// `cross_entropy(e, y)` with the class label of `K` classes.
    CrossEntropy(Box<E>, usize),
}

/// A whole program: bindings (with their dims) and the loss expression, of dims `out`,
/// which the rendering weighs with a per-example probe `w` and sums.
#[derive(Clone, Debug)]
pub struct Program {
    pub binds: Vec<(Dims, E)>,
    pub out: Dims,
    pub loss: E,
}

/// The shapes values take.
const SHAPES: &[&[usize]] = &[&[], &[2], &[3], &[2, 3], &[3, 2]];
const UNARY: &[&str] = &["neg", "exp", "abs", "sigmoid", "tanh", "relu", "softplus", "log_sigmoid", "log", "sqrt"];
const REDUCE: &[&str] = &["sum", "mean", "max", "min", "logsumexp"];
const CMP: &[&str] = &["<", "<=", ">", ">=", "=="];

/// The user `def` every program declares (called by the `def` alternative).
pub const DEF: &str = "def g(u, v) = u * sigmoid(v) + v";

/// Every op name the generator emits, for the coverage count.
pub fn all_ops() -> Vec<&'static str> {
    let mut v: Vec<&str> = UNARY.to_vec();
    v.extend(["+", "-", "*", "/", "^", "pow_tensor", "max2", "min2", "where"]);
    v.extend(CMP);
    v.extend(REDUCE.iter().copied());
    v.extend(["sum_axis", "mean_axis", "max_axis", "min_axis", "logsumexp_axis"]);
    v.extend([
        "softmax",
        "log_softmax",
        "@",
        "transpose",
        "index",
        "index2",
        "cross_entropy",
        "mse",
        "bce_with_logits",
        "g",
    ]);
    v.extend(["broadcast_shapes", "broadcast_two_sided", "shared_with_per_example", "bind_reuse", "label"]);
    v
}

/// Shapes that broadcast to `s` (NumPy, right-aligned, with size-1 axes).
fn sources(s: &[usize]) -> Vec<Dims> {
    let mut out = vec![s.to_vec()];
    match s {
        [] => {}
        [n] => out.extend([vec![1], vec![]].into_iter().filter(|d| d != &vec![*n])),
        [m, n] => out.extend([vec![*n], vec![1, *n], vec![*m, 1], vec![1], vec![]]),
        _ => unreachable!("rank ≤ 2"),
    }
    out
}

/// Pairs of operand shapes that broadcast to exactly `s`.
fn pairs(s: &[usize]) -> Vec<(Dims, Dims)> {
    let src = sources(s);
    let mut out = Vec::new();
    for a in &src {
        for b in &src {
            if broadcast(a, b) == s {
                out.push((a.clone(), b.clone()));
            }
        }
    }
    out
}

fn broadcast(a: &[usize], b: &[usize]) -> Dims {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            da.max(db)
        })
        .collect()
}

type S = BoxedStrategy<E>;

fn bx(e: E) -> Box<E> {
    Box::new(e)
}

/// A random expression of dims `s`, at most `depth` deep; `binds` are the dims of the
/// bindings it may read.
pub fn expr(s: Dims, depth: u32, binds: Vec<Dims>) -> S {
    if depth == 0 {
        return leaf(s, binds);
    }
    // Alternative 0 is the leaf, so shrinking the choice simplifies the tree.
    (0u32..16).prop_flat_map(move |k| node(k, s.clone(), depth - 1, binds.clone())).boxed()
}

fn leaf(s: Dims, binds: Vec<Dims>) -> S {
    let mut options: Vec<Leaf> = vec![
        Leaf::Input(s.clone(), 0),
        Leaf::Param(s.clone(), 0),
        Leaf::Input(s.clone(), 1),
        Leaf::Param(s.clone(), 1),
        Leaf::Label(s.clone()),
    ];
    options.extend(binds.iter().enumerate().filter(|(_, d)| **d == s).map(|(i, _)| Leaf::Bind(i)));
    if s.is_empty() {
        options.push(Leaf::Num(1.5));
        options.push(Leaf::Num(-0.5));
    }
    select(options).prop_map(E::Leaf).boxed()
}

/// A strictly positive expression of dims `s` (for log, sqrt, a denominator, a base).
fn positive(s: Dims, depth: u32, binds: Vec<Dims>) -> S {
    let inner = expr(s, depth, binds);
    (0u32..5, inner)
        .prop_map(|(k, e)| match k {
            0 => E::Unary("exp", bx(E::Unary("tanh", bx(e)))),
            1 => E::Op("+", bx(E::Unary("sigmoid", bx(e))), bx(E::Leaf(Leaf::Num(0.5)))),
            2 => E::Op("+", bx(E::Op("^", bx(e), bx(E::Leaf(Leaf::Num(2.0))))), bx(E::Leaf(Leaf::Num(0.5)))),
            3 => E::Op("+", bx(E::Unary("softplus", bx(e))), bx(E::Leaf(Leaf::Num(0.25)))),
            _ => E::Op("+", bx(E::Unary("abs", bx(e))), bx(E::Leaf(Leaf::Num(0.5)))),
        })
        .boxed()
}

/// Two operands whose shapes broadcast to `s`.
fn two(s: Dims, d: u32, binds: Vec<Dims>, pos_b: bool) -> BoxedStrategy<(E, E)> {
    select(pairs(&s))
        .prop_flat_map(move |(a, b)| {
            let sb = if pos_b { positive(b, d, binds.clone()) } else { expr(b, d, binds.clone()) };
            (expr(a, d, binds.clone()), sb)
        })
        .boxed()
}

fn node(k: u32, s: Dims, d: u32, binds: Vec<Dims>) -> S {
    let b = binds;
    match k {
        0 => leaf(s, b),
        1 | 2 => (select(UNARY.to_vec()), Just(s.clone()))
            .prop_flat_map(move |(op, s)| {
                let arg = if op == "log" || op == "sqrt" { positive(s, d, b.clone()) } else { expr(s, d, b.clone()) };
                arg.prop_map(move |e| E::Unary(op, bx(e)))
            })
            .boxed(),
        3 | 4 => (select(vec!["+", "-", "*", "/"]), Just(s))
            .prop_flat_map(move |(op, s)| {
                two(s, d, b.clone(), op == "/").prop_map(move |(x, y)| E::Op(op, bx(x), bx(y)))
            })
            .boxed(),
        5 => pow(s, d, b),
        6 => (select(vec!["max", "min"]), two(s, d, b, false))
            .prop_map(|(f, (x, y))| E::Call(f, vec![x, y], None))
            .boxed(),
        7 => {
            let s2 = s.clone();
            (select(CMP.to_vec()), two(s.clone(), d, b.clone(), false), expr(s2, d, b.clone()), select(sources(&s)))
                .prop_flat_map(move |(c, (x, y), t, fs)| {
                    let cond = E::Op(c, bx(x), bx(y));
                    expr(fs, d, b.clone()).prop_map(move |f| E::Call("where", vec![cond.clone(), t.clone(), f], None))
                })
                .boxed()
        }
        8 | 9 if s.len() < 2 => reduce(s, d, b),
        10 if !s.is_empty() => (any::<bool>(), expr(s.clone(), d, b), 0..s.len())
            .prop_map(|(log, e, axis)| E::Call(if log { "log_softmax" } else { "softmax" }, vec![e], Some(axis as i64)))
            .boxed(),
        11 => matmul(s, d, b),
        12 if s.len() == 2 => expr(vec![s[1], s[0]], d, b).prop_map(|e| E::Call("transpose", vec![e], None)).boxed(),
        13 if s.len() <= 1 => (select(vec![2usize, 3]), any::<bool>(), Just(s))
            .prop_flat_map(move |(k, both, s)| {
                if both && s.is_empty() {
                    // `W[i, j]` of a [2, 3] or [3, 2] value.
                    let from = expr(vec![k, 5 - k], d, b.clone());
                    return (from, 0..k, 0..5 - k).prop_map(|(e, i, j)| E::Index(bx(e), vec![i, j])).boxed();
                }
                let mut big = vec![k];
                big.extend(&s);
                (expr(big, d, b.clone()), 0..k).prop_map(|(e, i)| E::Index(bx(e), vec![i])).boxed()
            })
            .boxed(),
        14 if s.is_empty() => loss_call(d, b),
        15 => two(s, d, b, false).prop_map(|(x, y)| E::Call("g", vec![x, y], None)).boxed(),
        _ => leaf(s, b),
    }
}

fn pow(s: Dims, d: u32, b: Vec<Dims>) -> S {
    (0u32..3)
        .prop_flat_map(move |k| match k {
            // A positive base and a constant exponent, `0` and negative ones included.
            0 => (positive(s.clone(), d, b.clone()), select(vec![0.0, 1.0, 2.0, 0.5, 1.5, -1.0, -0.5]))
                .prop_map(|(e, c)| E::Op("^", bx(e), bx(E::Leaf(Leaf::Num(c)))))
                .boxed(),
            // Any base, an integer exponent.
            1 => (expr(s.clone(), d, b.clone()), select(vec![2.0, 3.0]))
                .prop_map(|(e, c)| E::Op("^", bx(e), bx(E::Leaf(Leaf::Num(c)))))
                .boxed(),
            // A tensor exponent on a positive base.
            _ => select(pairs(&s))
                .prop_flat_map({
                    let b = b.clone();
                    move |(sa, sb)| (positive(sa, d, b.clone()), expr(sb, d, b.clone()))
                })
                .prop_map(|(x, y)| E::Op("^", bx(x), bx(E::Unary("tanh", bx(y)))))
                .boxed(),
        })
        .boxed()
}

/// A reduction to `s`: over all elements (to a scalar) or along one axis.
fn reduce(s: Dims, d: u32, b: Vec<Dims>) -> S {
    let mut froms: Vec<(Dims, Option<i64>)> = Vec::new();
    match s.as_slice() {
        [] => froms.extend([(vec![3], None), (vec![2, 3], None), (vec![2], Some(0)), (vec![3], Some(-1))]),
        [n] => froms.extend([(vec![2, *n], Some(0)), (vec![*n, 3], Some(1)), (vec![*n, 2], Some(-1))]),
        _ => unreachable!("values have rank ≤ 2"),
    }
    (select(REDUCE.to_vec()), select(froms))
        .prop_flat_map(move |(op, (from, axis))| expr(from, d, b.clone()).prop_map(move |e| E::Call(op, vec![e], axis)))
        .boxed()
}

/// A matrix product giving `s`: dot, matrix–vector, vector–matrix, matrix–matrix.
fn matmul(s: Dims, d: u32, b: Vec<Dims>) -> S {
    let forms: Vec<(Dims, Dims)> = match s.as_slice() {
        [] => vec![(vec![2], vec![2]), (vec![3], vec![3])],
        [m] => vec![(vec![*m, 3], vec![3]), (vec![2], vec![2, *m])],
        [m, n] => vec![(vec![*m, 2], vec![2, *n]), (vec![*m, 3], vec![3, *n])],
        _ => unreachable!(),
    };
    select(forms)
        .prop_flat_map(move |(sa, sb)| (expr(sa, d, b.clone()), expr(sb, d, b.clone())))
        .prop_map(|(x, y)| E::Op("@", bx(x), bx(y)))
        .boxed()
}

/// Scalar-valued losses: cross-entropy, mse, bce_with_logits.
fn loss_call(d: u32, b: Vec<Dims>) -> S {
    (0u32..3, select(vec![2usize, 3]))
        .prop_flat_map(move |(k, n)| match k {
            0 => expr(vec![n], d, b.clone()).prop_map(move |z| E::CrossEntropy(bx(z), n)).boxed(),
            1 => (expr(vec![n], d, b.clone()), expr(vec![n], d, b.clone()))
                .prop_map(|(x, y)| E::Call("mse", vec![x, y], None))
                .boxed(),
            _ => expr(vec![n], d, b.clone())
                .prop_map(move |z| E::Call("bce_with_logits", vec![z, E::Leaf(Leaf::Label(vec![n]))], None))
                .boxed(),
        })
        .boxed()
}

/// The dims an expression has (`binds` gives the bindings' dims).
pub fn dims_of(e: &E, binds: &[Dims]) -> Dims {
    match e {
        E::Leaf(Leaf::Input(d, _) | Leaf::Param(d, _) | Leaf::Label(d)) => d.clone(),
        E::Leaf(Leaf::Bind(i)) => binds[*i].clone(),
        E::Leaf(Leaf::Num(_)) => vec![],
        E::Unary(_, a) => dims_of(a, binds),
        E::Op("@", a, b) => {
            let (a, b) = (dims_of(a, binds), dims_of(b, binds));
            match (a.len(), b.len()) {
                (1, 1) => vec![],
                (2, 1) => vec![a[0]],
                (1, 2) => vec![b[1]],
                _ => vec![a[0], b[1]],
            }
        }
        E::Op(_, a, b) => broadcast(&dims_of(a, binds), &dims_of(b, binds)),
        E::Call("where", args, _) => {
            let ds: Vec<Dims> = args.iter().map(|a| dims_of(a, binds)).collect();
            broadcast(&broadcast(&ds[0], &ds[1]), &ds[2])
        }
        E::Call("transpose", args, _) => dims_of(&args[0], binds).into_iter().rev().collect(),
        E::Call("softmax" | "log_softmax", args, _) => dims_of(&args[0], binds),
        E::Call("max" | "min" | "g", args, None) if args.len() == 2 => {
            broadcast(&dims_of(&args[0], binds), &dims_of(&args[1], binds))
        }
        E::Call("mse" | "bce_with_logits", _, _) | E::CrossEntropy(..) => vec![],
        E::Call(_, args, axis) => {
            let mut d = dims_of(&args[0], binds);
            match axis {
                None => vec![],
                Some(k) => {
                    let k = if *k < 0 { (*k + d.len() as i64) as usize } else { *k as usize };
                    d.remove(k);
                    d
                }
            }
        }
        E::Index(a, at) => dims_of(a, binds)[at.len()..].to_vec(),
    }
}

/// A whole program: up to two bindings, then the loss.
pub fn program() -> BoxedStrategy<Program> {
    let shape = || select(SHAPES.iter().map(|s| s.to_vec()).collect::<Vec<_>>());
    (shape(), shape(), shape(), 0usize..3)
        .prop_flat_map(|(s1, s2, out, nbind)| {
            let b1 = expr(s1.clone(), 2, vec![]);
            let b2 = expr(s2.clone(), 2, vec![s1.clone()]);
            let binds: Vec<Dims> = [s1.clone(), s2.clone()].into_iter().take(nbind).collect();
            let loss = expr(out.clone(), 3, binds);
            (b1, b2, loss).prop_map(move |(e1, e2, l)| {
                let binds = [(s1.clone(), e1), (s2.clone(), e2)].into_iter().take(nbind).collect();
                Program { binds, out: out.clone(), loss: l }
            })
        })
        .boxed()
}

impl Program {
    /// The `.bp` source text.
    pub fn source(&self) -> String {
        let mut decls: BTreeMap<String, String> = BTreeMap::new();
        let mut body = String::new();
        for (i, (_, e)) in self.binds.iter().enumerate() {
            let _ = writeln!(body, "h{i} = {}", render(e, &mut decls));
        }
        let loss = render(&self.loss, &mut decls);
        let w = declare(&mut decls, "w", &self.out, "input");
        let _ = writeln!(body, "loss sum({w} * {loss})");
        let mut src = String::new();
        for line in decls.values() {
            src.push_str(line);
            src.push('\n');
        }
        src.push_str(DEF);
        src.push('\n');
        src + &body
    }

    /// How often each op of [`all_ops`] occurs.
    pub fn count_ops(&self, counts: &mut BTreeMap<&'static str, usize>) {
        let mut cx = Cx { dims: Vec::new(), per_example: Vec::new() };
        for (d, e) in &self.binds {
            count(e, &cx, counts);
            let pe = per_example(e, &cx);
            cx.dims.push(d.clone());
            cx.per_example.push(pe);
        }
        count(&self.loss, &cx, counts);
    }
}

fn name_of(prefix: &str, d: &[usize], slot: Option<u8>) -> String {
    let mut n = prefix.to_string();
    for x in d {
        let _ = write!(n, "_{x}");
    }
    if let Some(s) = slot {
        n.push(['a', 'b'][s as usize]);
    }
    n
}

fn declare(decls: &mut BTreeMap<String, String>, name: &str, d: &[usize], kind: &str) -> String {
    let shape = if d.is_empty() {
        String::new()
    } else {
        format!("[{}]", d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
    };
    let line = match kind {
        "param" => format!("param {name}{shape} ~ uniform(-1, 1)"),
        "class" => format!("label {name} : class({})", d[0]),
        _ => format!("{kind} {name}{shape}"),
    };
    decls.entry(name.to_string()).or_insert(line);
    name.to_string()
}

fn render(e: &E, decls: &mut BTreeMap<String, String>) -> String {
    match e {
        E::Leaf(Leaf::Input(d, s)) => declare(decls, &name_of("x", d, Some(*s)), d, "input"),
        E::Leaf(Leaf::Param(d, s)) => declare(decls, &name_of("p", d, Some(*s)), d, "param"),
        E::Leaf(Leaf::Label(d)) => declare(decls, &name_of("t", d, None), d, "label"),
        E::Leaf(Leaf::Bind(i)) => format!("h{i}"),
        E::Leaf(Leaf::Num(c)) => {
            if *c < 0.0 {
                format!("({c})")
            } else {
                format!("{c}")
            }
        }
        E::Unary("neg", a) => format!("(-{})", render(a, decls)),
        E::Unary(f, a) => format!("{f}({})", render(a, decls)),
        E::Op(op, a, b) => format!("({} {op} {})", render(a, decls), render(b, decls)),
        E::Call(f, args, axis) => {
            let mut parts: Vec<String> = args.iter().map(|a| render(a, decls)).collect();
            if let Some(k) = axis {
                parts.push(format!("axis={k}"));
            }
            format!("{f}({})", parts.join(", "))
        }
        E::Index(a, at) => {
            let at: Vec<String> = at.iter().map(|i| i.to_string()).collect();
            format!("{}[{}]", render(a, decls), at.join(", "))
        }
        E::CrossEntropy(z, k) => {
            let y = declare(decls, &format!("y{k}"), &[*k], "class");
            format!("cross_entropy({}, {y})", render(z, decls))
        }
    }
}

/// What the bindings are: their dims and whether each is per-example.
struct Cx {
    dims: Vec<Dims>,
    per_example: Vec<bool>,
}

/// Whether `e` depends on an input or label (is batched).
fn per_example(e: &E, cx: &Cx) -> bool {
    match e {
        E::Leaf(Leaf::Input(..) | Leaf::Label(_)) | E::CrossEntropy(..) => true,
        E::Leaf(Leaf::Bind(i)) => cx.per_example[*i],
        E::Leaf(Leaf::Param(..) | Leaf::Num(_)) => false,
        E::Unary(_, a) | E::Index(a, _) => per_example(a, cx),
        E::Op(_, a, b) => per_example(a, cx) || per_example(b, cx),
        E::Call(_, args, _) => args.iter().any(|a| per_example(a, cx)),
    }
}

fn count(e: &E, cx: &Cx, counts: &mut BTreeMap<&'static str, usize>) {
    let mut bump = |k: &'static str| *counts.entry(k).or_default() += 1;
    match e {
        E::Leaf(Leaf::Bind(_)) => bump("bind_reuse"),
        E::Leaf(Leaf::Label(_)) => bump("label"),
        E::Leaf(_) => {}
        E::Unary(f, a) => {
            bump(f);
            count(a, cx, counts);
        }
        E::Op(op, a, b) => {
            let (da, db) = (dims_of(a, &cx.dims), dims_of(b, &cx.dims));
            if *op == "^" && !matches!(**b, E::Leaf(Leaf::Num(_))) {
                bump("pow_tensor");
            } else {
                bump(op);
            }
            if *op != "@" && da != db {
                let out = broadcast(&da, &db);
                bump(if da != out && db != out { "broadcast_two_sided" } else { "broadcast_shapes" });
            }
            if per_example(a, cx) != per_example(b, cx) {
                bump("shared_with_per_example");
            }
            count(a, cx, counts);
            count(b, cx, counts);
        }
        E::Call(f, args, axis) => {
            let key: &'static str = match (*f, axis, args.len()) {
                ("max", None, 2) => "max2",
                ("min", None, 2) => "min2",
                ("sum", Some(_), _) => "sum_axis",
                ("mean", Some(_), _) => "mean_axis",
                ("max", Some(_), _) => "max_axis",
                ("min", Some(_), _) => "min_axis",
                ("logsumexp", Some(_), _) => "logsumexp_axis",
                (f, _, _) => f,
            };
            bump(key);
            for a in args {
                count(a, cx, counts);
            }
        }
        E::Index(a, at) => {
            bump(if at.len() == 2 { "index2" } else { "index" });
            count(a, cx, counts);
        }
        E::CrossEntropy(z, _) => {
            bump("cross_entropy");
            count(z, cx, counts);
        }
    }
}
