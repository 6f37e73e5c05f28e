//! `--plot curve.svg`: training curves drawn with `plotters`' SVG backend (no system
//! libraries: text is left to the SVG viewer). The loss panel shows train and validation
//! loss per epoch; a second panel shows train and validation accuracy when the labels are
//! classes. Non-finite points are left out. Each chart's legend sits in a strip below it, so it
//! never covers a curve.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::EpochReport;

const TRAIN: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const VALIDATION: RGBColor = RGBColor(0xff, 0x7f, 0x0e);

/// The SVG text of the curves of `epochs` under the heading `title`.
pub fn training_curves(title: &str, epochs: &[EpochReport]) -> Result<String, String> {
    let accuracy = epochs.iter().any(|e| e.train_accuracy.is_some() || e.val_accuracy.is_some());
    let height = 420 + LEGEND_HEIGHT;
    let size = if accuracy { (1000, height) } else { (640, height) };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root.titled(title, ("sans-serif", 18)).map_err(|e| e.to_string())?;
        let panels = if accuracy { root.split_evenly((1, 2)) } else { vec![root] };
        let loss = |e: &EpochReport| Some(e.train_loss);
        panel(&panels[0], "loss", epochs, loss, |e| e.val_loss, false)?;
        if accuracy {
            panel(&panels[1], "accuracy", epochs, |e| e.train_accuracy, |e| e.val_accuracy, true)?;
        }
        panels[0].present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// One chart: `train` and `val` figures against the epoch.
fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    what: &str,
    epochs: &[EpochReport],
    train: impl Fn(&EpochReport) -> Option<f64>,
    val: impl Fn(&EpochReport) -> Option<f64>,
    unit_range: bool,
) -> Result<(), String> {
    let points = |f: &dyn Fn(&EpochReport) -> Option<f64>| -> Vec<(f64, f64)> {
        epochs.iter().filter_map(|e| f(e).filter(|y| y.is_finite()).map(|y| (e.epoch as f64, y))).collect()
    };
    let (tr, va) = (points(&train), points(&val));
    let first = epochs.first().map_or(1.0, |e| e.epoch as f64);
    let last = epochs.last().map_or(2.0, |e| e.epoch as f64).max(first + 1.0);
    let ys = || tr.iter().chain(&va).map(|p| p.1);
    let (lo, hi) = ys().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    let (lo, hi) = match (unit_range, lo.is_finite()) {
        (true, true) => ((lo - 0.02).clamp(0.0, 1.0).min(0.9), 1.0),
        (true, false) => (0.0, 1.0),
        (false, true) => (lo.min(0.0), if hi > lo { hi * 1.05 } else { lo + 1.0 }),
        (false, false) => (0.0, 1.0),
    };
    // No more x ticks than epochs, so every tick is a whole epoch (plotters would otherwise
    // put ticks at half epochs, which a `{:.0}` label shows as two equal numbers).
    let x_ticks = ((last - first) as usize + 1).min(8);
    let err = |e: &dyn std::fmt::Display| format!("cannot draw the {what} chart: {e}");
    // The legend gets its own strip under the chart, so it never hides a curve.
    let (chart_area, legend_area) = area.split_vertically(area.dim_in_pixel().1.saturating_sub(LEGEND_HEIGHT));
    let mut chart = ChartBuilder::on(&chart_area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(first..last, lo..hi)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(what)
        .x_labels(x_ticks)
        .y_labels(8)
        .x_label_formatter(&|x| if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.1}") })
        .y_label_formatter(&|y| short(*y))
        .draw()
        .map_err(|e| err(&e))?;
    let mut legend = Vec::new();
    for (name, pts, colour) in [("train", tr, TRAIN), ("validation", va, VALIDATION)] {
        if pts.is_empty() {
            continue;
        }
        chart.draw_series(LineSeries::new(pts, colour.stroke_width(2))).map_err(|e| err(&e))?;
        legend.push((format!("{name} {what}"), colour));
    }
    draw_legend(&legend_area, &legend).map_err(|e| err(&e))?;
    Ok(())
}

/// Height of the legend strip under each chart, in pixels.
const LEGEND_HEIGHT: u32 = 30;
/// The left edge of the plotting area (margin + y label area), where the legend starts.
const PLOT_LEFT: i32 = 68;

/// One row of legend entries (a line sample in the series' colour and its name) in `area`.
fn draw_legend(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    entries: &[(String, RGBColor)],
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let y = (LEGEND_HEIGHT / 2) as i32 - 4;
    let style = ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = PLOT_LEFT;
    for (label, colour) in entries {
        area.draw(&PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)))?;
        area.draw(&Text::new(label.clone(), (x + 26, y), style.clone()))?;
        // No font metrics without system libraries: about 8 px per character at 14 px.
        x += 26 + 8 * label.chars().count() as i32 + 24;
    }
    Ok(())
}

/// A tick label: four significant places, scientific notation for very small or large values.
fn short(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) { format!("{x:.2e}") } else { format!("{x:.4}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: usize, train_loss: f64, val_loss: Option<f64>, acc: Option<f64>) -> EpochReport {
        EpochReport {
            epoch,
            train_loss,
            train_accuracy: acc,
            val_loss,
            val_accuracy: acc.map(|a| a - 0.1),
            examples_per_s: 1.0,
            seconds: 1.0,
            lr: None,
        }
    }

    #[test]
    fn loss_and_accuracy_panels() {
        let svg = training_curves(
            "iris <run>",
            &[epoch(1, 2.0, Some(1.0), Some(0.5)), epoch(2, 1.0, Some(0.5), Some(0.8)), epoch(3, f64::NAN, None, None)],
        )
        .unwrap();
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains("iris &lt;run&gt;"), "{svg}");
        // Four curves (train/validation loss and accuracy) and their legend marks.
        assert_eq!(svg.matches(r##"stroke="#1F77B4" stroke-width="2""##).count(), 4, "{svg}");
        assert_eq!(svg.matches(r##"stroke="#FF7F0E" stroke-width="2""##).count(), 4, "{svg}");
        // Train loss 2 → 1 over epochs 1..3 of a 0..2.1 axis: from near the top to the middle.
        assert!(svg.contains(r##"stroke="#1F77B4" stroke-width="2" points="68,53 277,212 ""##), "{svg}");
        for text in ["train loss", "validation loss", "train accuracy", "validation accuracy", "epoch"] {
            assert!(svg.contains(text), "no `{text}` in the plot");
        }
    }

    /// The `<text>` contents of an SVG, in document order.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| t.split_once('>')?.1.split_once("</text>"))
            .map(|(t, _)| t.trim())
            .collect()
    }

    #[test]
    fn epoch_ticks_are_whole_and_distinct() {
        for n in [2, 3, 5, 40] {
            let runs: Vec<EpochReport> = (1..=n).map(|e| epoch(e, 1.0 / e as f64, None, None)).collect();
            let svg = training_curves("t", &runs).unwrap();
            let t = texts(&svg);
            let at = t.iter().position(|&x| x == "epoch").unwrap();
            let ticks: Vec<usize> = t[at + 1..].iter().filter_map(|x| x.parse().ok()).collect();
            assert!(ticks.len() >= 2 && ticks.windows(2).all(|w| w[0] < w[1]), "{n} epochs: {ticks:?}");
            assert!(ticks.iter().all(|&k| (1..=n).contains(&k)), "{n} epochs: {ticks:?}");
            if n <= 8 {
                assert_eq!(ticks, (1..=n).collect::<Vec<_>>());
            }
        }
    }

    /// The y of the `<text>` whose content is `label`.
    fn text_y(svg: &str, label: &str) -> f64 {
        let tag = svg
            .split("<text")
            .skip(1)
            .find_map(|t| t.split_once('>').filter(|(_, rest)| rest.trim_start().starts_with(&format!("{label}\n"))))
            .unwrap_or_else(|| panic!("no `{label}` in {svg}"))
            .0;
        tag.split(" y=\"").nth(1).and_then(|y| y.split('"').next()?.parse().ok()).unwrap()
    }

    /// The largest y of the points of every curve (a `<polyline>` of more than two points,
    /// unlike a legend's line sample).
    fn lowest_point(svg: &str) -> f64 {
        svg.split("points=\"")
            .skip(1)
            .map(|p| p.split('"').next().unwrap().split_whitespace().collect::<Vec<_>>())
            .filter(|pts| pts.len() > 2)
            .flatten()
            .map(|xy| xy.split(',').nth(1).unwrap().parse::<f64>().unwrap())
            .fold(0.0, f64::max)
    }

    #[test]
    fn the_legend_sits_below_the_charts() {
        // A validation loss that ends high on the right, where a legend inside the chart sat.
        let runs: Vec<EpochReport> =
            (1..=6).map(|e| epoch(e, 1.0 / e as f64, Some(0.4 + 0.1 * e as f64), Some(0.5))).collect();
        let svg = training_curves("t", &runs).unwrap();
        let curves = lowest_point(&svg);
        for label in ["train loss", "validation loss", "train accuracy", "validation accuracy"] {
            let y = text_y(&svg, label);
            assert!(y > curves + 40.0, "{label} at y = {y}, curves reach down to {curves}");
        }
        // No legend box over the chart (plotters' own legend draws a bordered white rectangle).
        assert!(!svg.contains("opacity=\"0.8\""), "{svg}");
    }

    #[test]
    fn regression_runs_have_one_panel_and_empty_runs_still_draw() {
        let svg = training_curves("diabetes", &[epoch(1, 3000.0, None, None), epoch(2, 2900.0, None, None)]).unwrap();
        assert!(svg.contains("train loss") && !svg.contains("accuracy"));
        assert!(svg.contains(r#"width="640""#), "{svg}");
        assert_eq!(svg.matches(r##"stroke="#1F77B4" stroke-width="2""##).count(), 2, "{svg}");
        let svg = training_curves("none", &[]).unwrap();
        assert_eq!(svg.matches(r##"stroke="#1F77B4" stroke-width="2""##).count(), 0, "{svg}");
    }
}
