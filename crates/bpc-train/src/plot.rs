//! `--plot curve.svg`: the loss curves of a run as a small self-contained SVG (train loss,
//! and validation loss when there is validation data), epochs on x, loss on y.

use std::fmt::Write as _;

use crate::report::EpochReport;

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;

/// The SVG text of the loss curves of `epochs` (non-finite losses are left out).
pub fn loss_curves(title: &str, epochs: &[EpochReport]) -> String {
    let train: Vec<(f64, f64)> = epochs.iter().map(|e| (e.epoch as f64, e.train_loss)).collect();
    let val: Vec<(f64, f64)> = epochs.iter().filter_map(|e| e.val_loss.map(|l| (e.epoch as f64, l))).collect();
    let finite = |p: &&(f64, f64)| p.1.is_finite();
    let ys: Vec<f64> = train.iter().chain(&val).filter(finite).map(|p| p.1).collect();
    let (lo, hi) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
    let (lo, hi) = if lo.is_finite() { (lo.min(0.0), if hi > lo { hi } else { lo + 1.0 }) } else { (0.0, 1.0) };
    let last = epochs.len().max(2) as f64;
    let x = |e: f64| LEFT + (e - 1.0) / (last - 1.0) * (W - LEFT - RIGHT);
    let y = |l: f64| TOP + (hi - l) / (hi - lo) * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="18" text-anchor="middle" font-size="14">{}</text>"#, W / 2.0, escape(title));
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let _ = writeln!(s, r#"<path d="M{x0},{y0} V{y1} H{x1}" fill="none" stroke="black"/>"#);
    for (l, anchor_y) in [(hi, y0), (lo, y1)] {
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, x0 - 6.0, anchor_y + 4.0, short(l));
    }
    let _ = writeln!(s, r#"<text x="{x0}" y="{}" text-anchor="middle">1</text>"#, y1 + 18.0);
    let _ = writeln!(s, r#"<text x="{x1}" y="{}" text-anchor="middle">{}</text>"#, y1 + 18.0, epochs.len());
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">epoch</text>"#, (x0 + x1) / 2.0, H - 12.0);
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">loss</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );
    for (i, (name, points, colour)) in
        [("train loss", &train, "#1f77b4"), ("validation loss", &val, "#ff7f0e")].iter().enumerate()
    {
        let pts: Vec<String> = points.iter().filter(finite).map(|&(e, l)| format!("{:.1},{:.1}", x(e), y(l))).collect();
        if pts.is_empty() {
            continue;
        }
        let _ = writeln!(s, r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#, pts.join(" "));
        let ly = TOP + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{colour}" stroke-width="2"/>"#,
            x1 - 150.0,
            ly - 4.0,
            x1 - 130.0,
            ly - 4.0
        );
        let _ = writeln!(s, r#"<text x="{}" y="{ly}">{name}</text>"#, x1 - 124.0);
    }
    s.push_str("</svg>\n");
    s
}

fn short(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) { format!("{x:.2e}") } else { format!("{x:.4}") }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: usize, train_loss: f64, val_loss: Option<f64>) -> EpochReport {
        EpochReport {
            epoch,
            train_loss,
            train_accuracy: None,
            val_loss,
            val_accuracy: None,
            examples_per_s: 1.0,
            seconds: 1.0,
        }
    }

    #[test]
    fn draws_one_polyline_per_curve() {
        let svg =
            loss_curves("iris <run>", &[epoch(1, 2.0, Some(1.0)), epoch(2, 1.0, Some(0.5)), epoch(3, f64::NAN, None)]);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("iris &lt;run&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        // Loss 2 at epoch 1 is the top-left corner of the plot area; 0 is the bottom.
        assert!(svg.contains(r#"points="70.0,30.0 345.0,190.0""#), "{svg}");
    }

    #[test]
    fn empty_runs_still_give_an_svg() {
        let svg = loss_curves("none", &[]);
        assert_eq!(svg.matches("<polyline").count(), 0);
        assert!(svg.ends_with("</svg>\n"));
    }
}
