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
    /// Per value (by index): its forward value, row-major.
    pub values: Vec<Option<Vec<f64>>>,
    /// Per value (by index): d loss / d value, row-major.
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
    let vals = bpc_ir::interpret(&vg, 1, &tensors).map_err(|e| Error::msg(format!("interpreter: {e}")))?;
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

/// The same graph drawn as SVG without Graphviz: laid out left to right by `layout-rs`
/// (Sugiyama-style layered layout, the algorithm of Graphviz's `dot`), drawn by `Canvas`
/// so each edge can carry its forward value in green above the line and the gradient in red
/// below it, as the lecture's figures do.
pub fn svg(f: &Function, ann: Option<&Annotations>) -> String {
    use layout::core::base::Orientation;
    use layout::core::geometry::Point;
    use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
    use layout::topo::layout::VisualGraph;

    let g = build(f);
    let mut vg = VisualGraph::new(Orientation::LeftToRight);
    let mut handles = Vec::with_capacity(g.nodes.len() + 1);
    for n in &g.nodes {
        let text = n.label.join("\n");
        let (shape, look) = match f.inst(n.value) {
            Inst::Arg(_) | Inst::Const(_) => (ShapeKind::new_box(&text), style(NODE_FONT, "#f4f4f4", 1)),
            _ => (ShapeKind::new_circle(&text), style(NODE_FONT, "#e8ecff", 1)),
        };
        handles.push(vg.add_node(Element::create(shape, look, Orientation::LeftToRight, Point::new(40., 40.))));
    }
    let sink = Element::create(
        ShapeKind::new_box("loss"),
        style(NODE_FONT, "#ffe8e8", 1),
        Orientation::LeftToRight,
        Point::new(40., 40.),
    );
    handles.push(vg.add_node(sink));
    for &(a, b, v) in &g.edges {
        let text = match edge_text(ann, v) {
            Some((val, Some(grad))) => format!("{val}\n{grad}"),
            Some((val, None)) => val,
            None => String::new(),
        };
        let mut arrow = Arrow::simple(&text);
        arrow.look = style(EDGE_FONT, "none", 1);
        vg.add_edge(arrow, handles[a], handles[b]);
    }
    let mut canvas = Canvas::default();
    vg.do_it(false, false, false, &mut canvas);
    canvas.finish()
}

/// Font sizes: edge labels are told apart from node labels by theirs.
const NODE_FONT: usize = 14;
const EDGE_FONT: usize = 12;

fn style(font: usize, fill: &str, width: usize) -> layout::core::style::StyleAttr {
    use layout::core::color::Color;
    let fill = if fill == "none" { None } else { Some(Color::fast(fill)) };
    layout::core::style::StyleAttr::new(Color::fast("#333333"), width, fill, 0, font)
}

/// A `layout-rs` render backend writing SVG: shapes and arrows as the layout places them,
/// node labels in black, edge labels as two lines (value green above, gradient red below).
#[derive(Default)]
struct Canvas {
    body: String,
    width: f64,
    height: f64,
}

impl Canvas {
    fn grow(&mut self, x: f64, y: f64) {
        self.width = self.width.max(x + 10.0);
        self.height = self.height.max(y + 10.0);
    }

    fn finish(self) -> String {
        let (w, h) = (self.width.ceil(), self.height.ceil());
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
             font-family=\"Helvetica, Arial, sans-serif\">\n\
             <defs><marker id=\"head\" markerWidth=\"10\" markerHeight=\"7\" refX=\"10\" refY=\"3.5\" \
             orient=\"auto\"><polygon points=\"0 0, 10 3.5, 0 7\" fill=\"#555\"/></marker></defs>\n\
             <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n{}</svg>\n",
            self.body
        )
    }
}

/// `#rrggbb` (layout-rs writes `#rrggbbaa`, which older SVG viewers do not read).
fn color(c: Option<layout::core::color::Color>) -> String {
    c.map_or("none".to_string(), |c| c.to_web_color()[..7].to_string())
}

impl layout::core::format::RenderBackend for Canvas {
    fn draw_rect(
        &mut self,
        xy: layout::core::geometry::Point,
        size: layout::core::geometry::Point,
        look: &layout::core::style::StyleAttr,
        _properties: Option<String>,
        _clip: Option<layout::core::format::ClipHandle>,
    ) {
        self.grow(xy.x + size.x, xy.y + size.y);
        let _ = writeln!(
            self.body,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"4\" fill=\"{}\" stroke=\"{}\" stroke-width=\"{}\"/>",
            xy.x,
            xy.y,
            size.x,
            size.y,
            color(look.fill_color),
            color(Some(look.line_color)),
            look.line_width
        );
    }

    fn draw_line(
        &mut self,
        start: layout::core::geometry::Point,
        stop: layout::core::geometry::Point,
        look: &layout::core::style::StyleAttr,
        _properties: Option<String>,
    ) {
        self.grow(start.x.max(stop.x), start.y.max(stop.y));
        let _ = writeln!(
            self.body,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"{}\"/>",
            start.x,
            start.y,
            stop.x,
            stop.y,
            color(Some(look.line_color)),
            look.line_width
        );
    }

    fn draw_circle(
        &mut self,
        xy: layout::core::geometry::Point,
        size: layout::core::geometry::Point,
        look: &layout::core::style::StyleAttr,
        _properties: Option<String>,
    ) {
        self.grow(xy.x + size.x / 2.0, xy.y + size.y / 2.0);
        let _ = writeln!(
            self.body,
            "<ellipse cx=\"{:.1}\" cy=\"{:.1}\" rx=\"{:.1}\" ry=\"{:.1}\" fill=\"{}\" stroke=\"{}\" stroke-width=\"{}\"/>",
            xy.x,
            xy.y,
            size.x / 2.0,
            size.y / 2.0,
            color(look.fill_color),
            color(Some(look.line_color)),
            look.line_width
        );
    }

    fn draw_text(&mut self, xy: layout::core::geometry::Point, text: &str, look: &layout::core::style::StyleAttr) {
        let font = look.font_size as f64;
        let lines: Vec<&str> = text.lines().collect();
        let edge = look.font_size == EDGE_FONT;
        for (k, line) in lines.iter().enumerate() {
            // An edge label: the value just above the line, the gradient just below it.
            let (y, fill) = match (edge, k) {
                (true, 0) => (xy.y - 4.0, "#1a7f1a"),
                (true, _) => (xy.y + font + 2.0, "#c0161b"),
                (false, _) => (xy.y + font * (k as f64 - (lines.len() as f64 - 1.0) / 2.0) + font / 3.0, "black"),
            };
            self.grow(xy.x + font * line.len() as f64 / 2.0, y + font);
            let _ = writeln!(
                self.body,
                "<text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"{font}\" text-anchor=\"middle\" fill=\"{fill}\">{}</text>",
                xy.x,
                escape(line)
            );
        }
    }

    fn draw_arrow(
        &mut self,
        path: &[(layout::core::geometry::Point, layout::core::geometry::Point)],
        _dashed: bool,
        head: (bool, bool),
        look: &layout::core::style::StyleAttr,
        _properties: Option<String>,
        _text: &str,
    ) {
        // `path` is Bézier segments as layout-rs gives them: the exit vector of the first
        // point, then the entry vectors of the following points (SVG's `C` then `S`).
        let mut d = String::new();
        for (i, (p, c)) in path.iter().enumerate() {
            self.grow(p.x.max(c.x), p.y.max(c.y));
            let _ = match i {
                0 => write!(d, "M {:.1} {:.1} C {:.1} {:.1}, ", p.x, p.y, c.x, c.y),
                1 => write!(d, "{:.1} {:.1}, {:.1} {:.1} ", p.x, p.y, c.x, c.y),
                _ => write!(d, "S {:.1} {:.1}, {:.1} {:.1} ", p.x, p.y, c.x, c.y),
            };
        }
        let end = if head.1 { " marker-end=\"url(#head)\"" } else { "" };
        let _ = writeln!(
            self.body,
            "<path d=\"{}\" fill=\"none\" stroke=\"#555\" stroke-width=\"{}\"{end}/>",
            d.trim_end(),
            look.line_width
        );
    }

    fn create_clip(
        &mut self,
        _xy: layout::core::geometry::Point,
        _size: layout::core::geometry::Point,
        _rounded_px: usize,
    ) -> layout::core::format::ClipHandle {
        // Only record shapes clip; the graph has none.
        0
    }
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
        assert_eq!(picture.matches("<ellipse").count(), 2, "the gates q and f");
        assert_eq!(picture.matches("<rect x=").count(), 4, "x, y, z and loss");
        assert_eq!(picture.matches("<path").count(), 5);
        // Annotated: every edge carries its value (green) above and its gradient (red) below.
        let ann = annotate(&m, &[vec![-2.0], vec![5.0], vec![-4.0]]).unwrap();
        let picture = svg(&m.func, Some(&ann));
        assert_eq!(picture.matches("fill=\"#1a7f1a\"").count(), 5, "{picture}");
        assert_eq!(picture.matches("fill=\"#c0161b\"").count(), 5, "{picture}");
        assert!(picture.contains(">-12</text>") && picture.contains(">-4</text>"), "{picture}");
    }
}
