//! The computational graph of a forward function, as Graphviz (`--emit dot`) or as a
//! self-drawn SVG (`--emit svg`), optionally annotated at a point the way the lecture's
//! figures are: each edge carries its forward value above and the gradient of the loss with
//! respect to it below.
//!
//! Nodes are the function's values; `broadcast` and `reshape` (data movement the program
//! does not spell) and the minibatch mean that turns the per-example loss into the objective
//! are see-through: their consumers connect to what they read.

use std::fmt::Write as _;

use bpc_ir::{Function, Inst, ReduceOp, Tensor, Value};

use crate::{Error, Model};

/// Values and gradients of every value at one example (batch 1), `None` where not
/// computed (class labels).
pub struct Annotations {
    pub values: Vec<Option<Vec<f64>>>,
    pub grads: Vec<Option<Vec<f64>>>,
}

/// Evaluates `model` at one example with the float64 interpreter: every value, and the
/// gradient of the loss with respect to every float value. `args` holds one buffer per
/// argument of the forward function.
pub fn annotate(model: &Model, args: &[Vec<f64>]) -> Result<Annotations, Error> {
    let f = &model.func;
    let mut named = f.clone();
    let float: Vec<Value> = f.values().filter(|&v| f.ty(v).is_float()).collect();
    for &v in &float {
        named.names.push((format!("%{v}"), v));
    }
    let wrt: Vec<String> = float.iter().map(|v| format!("%{v}")).collect();
    let refs: Vec<&str> = wrt.iter().map(String::as_str).collect();
    let vg = bpc_autodiff::value_and_grad(&named, &refs).map_err(|d| model.render(&d))?;
    let tensors: Vec<Tensor> =
        vg.args.iter().zip(args).map(|(a, d)| Tensor::new(a.ty.shape.sizes(1), d.clone())).collect();
    let vals = bpc_ir::interpret(&vg, 1, &tensors).map_err(|e| Error(format!("interpreter: {e}")))?;
    let mut out = Annotations { values: vec![None; f.len()], grads: vec![None; f.len()] };
    for v in f.values() {
        out.values[v.index()] = Some(vals[v.index()].data.clone());
    }
    for (&v, name) in float.iter().zip(&wrt) {
        let g = vg.result(&format!("grad.{name}")).expect("one gradient per name").value;
        out.grads[v.index()] = Some(vals[g.index()].data.clone());
    }
    Ok(out)
}

/// A drawn node: the value it stands for and its label lines.
struct Node {
    value: Value,
    label: Vec<String>,
    /// Column in the SVG layout: the longest path from a source.
    depth: usize,
}

/// Nodes and edges `(from, to, carried value)`; node `nodes.len()` is the `loss` sink.
struct Graph {
    nodes: Vec<Node>,
    edges: Vec<(usize, usize, Value)>,
}

/// Whether `v` is drawn (see-through values are not).
fn see_through(f: &Function, v: Value) -> Option<Value> {
    match f.inst(v) {
        Inst::Broadcast { arg, .. } | Inst::Reshape { arg, .. } => Some(*arg),
        Inst::Reduce { op: ReduceOp::Mean, arg, axes } if f.shape(*arg).batch && axes == &[0] => Some(*arg),
        Inst::Arg(_)
        | Inst::Const(_)
        | Inst::BatchSize
        | Inst::Unary { .. }
        | Inst::Binary { .. }
        | Inst::Select { .. }
        | Inst::Reduce { .. }
        | Inst::Transpose { .. }
        | Inst::MatMul { .. }
        | Inst::Softmax { .. }
        | Inst::CrossEntropy { .. }
        | Inst::OneHot { .. }
        | Inst::Index { .. }
        | Inst::Scatter { .. } => None,
    }
}

fn build(f: &Function) -> Graph {
    let mut node_of: Vec<Option<usize>> = vec![None; f.len()];
    let mut nodes: Vec<Node> = Vec::new();
    let mut edges = Vec::new();
    let resolve = |node_of: &[Option<usize>], mut v: Value| {
        while let Some(a) = see_through(f, v) {
            v = a;
        }
        node_of[v.index()]
    };
    for v in f.values() {
        if see_through(f, v).is_some() {
            continue;
        }
        let mut text = String::new();
        let _ = bpc_ir::print::write_inst(&mut text, f, f.inst(v));
        let mut label = vec![match f.inst(v) {
            Inst::Arg(id) => f.arg(*id).name.clone(),
            Inst::Const(c) => format!("{c}"),
            _ => text.split_whitespace().next().unwrap_or("op").to_string(),
        }];
        let names: Vec<&str> =
            f.names.iter().filter(|(n, w)| *w == v && *n != label[0]).map(|(n, _)| n.as_str()).collect();
        if !names.is_empty() {
            label.push(names.join(", "));
        }
        let mut depth = 0;
        let me = nodes.len();
        for o in f.inst(v).operands() {
            if let Some(from) = resolve(&node_of, o) {
                depth = depth.max(nodes[from].depth + 1);
                edges.push((from, me, o));
            }
        }
        nodes.push(Node { value: v, label, depth });
        node_of[v.index()] = Some(me);
    }
    if let Some(loss) = f.result("loss") {
        let sink = nodes.len();
        if let Some(from) = resolve(&node_of, loss.value) {
            edges.push((from, sink, loss.value));
        }
    }
    Graph { nodes, edges }
}

/// One number, or a short list, or a shape for larger tensors.
fn brief(data: &[f64]) -> String {
    let num = |x: f64| {
        let s = format!("{:.6}", x);
        let s = s.trim_end_matches('0').trim_end_matches('.').to_string();
        if s == "-0" { "0".to_string() } else { s }
    };
    match data {
        [x] => num(*x),
        xs if xs.len() <= 4 => format!("[{}]", xs.iter().map(|&x| num(x)).collect::<Vec<_>>().join(", ")),
        xs => format!("[{} values]", xs.len()),
    }
}

/// The forward value and the gradient carried by an edge, if annotated.
fn edge_text(ann: Option<&Annotations>, v: Value) -> Option<(String, Option<String>)> {
    let a = ann?;
    let value = brief(a.values[v.index()].as_ref()?);
    Some((value, a.grads[v.index()].as_deref().map(brief)))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Graphviz text of `f`'s graph, left to right; forward values in green above each edge and
/// gradients in red below when `ann` is given.
pub fn dot(f: &Function, ann: Option<&Annotations>) -> String {
    let g = build(f);
    let mut s =
        format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n", escape(&f.name));
    s += "  edge [fontname=\"Helvetica\", fontsize=10];\n";
    for (i, n) in g.nodes.iter().enumerate() {
        let shape = match f.inst(n.value) {
            Inst::Arg(_) => "plaintext",
            Inst::Const(_) => "plaintext",
            _ => "circle",
        };
        let _ = writeln!(s, "  n{i} [label=\"{}\", shape={shape}];", escape(&n.label.join("\\n")));
    }
    let _ = writeln!(s, "  n{} [label=\"loss\", shape=plaintext];", g.nodes.len());
    for &(a, b, v) in &g.edges {
        match edge_text(ann, v) {
            Some((val, grad)) => {
                let grad = grad.map_or(String::new(), |g| format!("<br/><font color=\"red\">{}</font>", escape(&g)));
                let _ =
                    writeln!(s, "  n{a} -> n{b} [label=<<font color=\"darkgreen\">{}</font>{grad}>];", escape(&val));
            }
            None => {
                let _ = writeln!(s, "  n{a} -> n{b};");
            }
        }
    }
    s + "}\n"
}

/// The same graph drawn as SVG without Graphviz: columns by depth, straight edges, the
/// value above and the gradient below each edge's midpoint.
pub fn svg(f: &Function, ann: Option<&Annotations>) -> String {
    let g = build(f);
    let sink_depth = g.nodes.iter().map(|n| n.depth + 1).max().unwrap_or(0);
    let depth = |i: usize| if i == g.nodes.len() { sink_depth } else { g.nodes[i].depth };
    let mut rows = vec![0usize; sink_depth + 1];
    let mut pos = Vec::with_capacity(g.nodes.len() + 1);
    for i in 0..=g.nodes.len() {
        let d = depth(i);
        pos.push((60.0 + 140.0 * d as f64, 50.0 + 90.0 * rows[d] as f64));
        rows[d] += 1;
    }
    let width = 120.0 + 140.0 * sink_depth as f64;
    let height = 60.0 + 90.0 * rows.iter().copied().max().unwrap_or(1) as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n"
    );
    for &(a, b, v) in &g.edges {
        let ((x1, y1), (x2, y2)) = (pos[a], pos[b]);
        let _ = writeln!(s, "<line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"#555\"/>");
        if let Some((val, grad)) = edge_text(ann, v) {
            let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
            let _ = writeln!(
                s,
                "<text x=\"{mx}\" y=\"{}\" text-anchor=\"middle\" fill=\"darkgreen\">{}</text>",
                my - 5.0,
                escape(&val)
            );
            if let Some(grad) = grad {
                let _ = writeln!(
                    s,
                    "<text x=\"{mx}\" y=\"{}\" text-anchor=\"middle\" fill=\"red\">{}</text>",
                    my + 14.0,
                    escape(&grad)
                );
            }
        }
    }
    for (i, &(x, y)) in pos.iter().enumerate() {
        let label = if i == g.nodes.len() { vec!["loss".to_string()] } else { g.nodes[i].label.clone() };
        let _ = writeln!(s, "<circle cx=\"{x}\" cy=\"{y}\" r=\"22\" fill=\"#eef\" stroke=\"#333\"/>");
        for (k, line) in label.iter().enumerate() {
            let dy = 4.0 + 13.0 * (k as f64 - (label.len() as f64 - 1.0) / 2.0);
            let _ = writeln!(s, "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>", y + dy, escape(line));
        }
    }
    s + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD_MUL: &str = "input x\ninput y\ninput z\nq = x + y\nf = q * z\nloss f\n";

    #[test]
    fn dot_of_the_lecture_example_at_a_point() {
        let m = Model::from_source("add_mul.bp", ADD_MUL).unwrap();
        let ann = annotate(&m, &[vec![-2.0], vec![5.0], vec![-4.0]]).unwrap();
        let text = dot(&m.func, Some(&ann));
        assert!(text.contains("n3 [label=\"add\\nq\", shape=circle];"), "{text}");
        // x = -2 flows into q with d f / d x = -4; q = 3 into f with d f / d q = -4.
        assert!(
            text.contains("n0 -> n3 [label=<<font color=\"darkgreen\">-2</font><br/><font color=\"red\">-4</font>>];"),
            "{text}"
        );
        assert!(
            text.contains("n3 -> n4 [label=<<font color=\"darkgreen\">3</font><br/><font color=\"red\">-4</font>>];"),
            "{text}"
        );
        assert!(
            text.contains("n4 -> n5 [label=<<font color=\"darkgreen\">-12</font><br/><font color=\"red\">1</font>>];"),
            "{text}"
        );
        let plain = dot(&m.func, None);
        assert!(plain.contains("  n0 -> n3;\n"), "{plain}");
    }

    #[test]
    fn svg_draws_every_node_and_edge() {
        let m = Model::from_source("add_mul.bp", ADD_MUL).unwrap();
        let picture = svg(&m.func, None);
        assert_eq!(picture.matches("<circle").count(), 6, "x, y, z, q, f and loss");
        assert_eq!(picture.matches("<line").count(), 5);
    }
}
