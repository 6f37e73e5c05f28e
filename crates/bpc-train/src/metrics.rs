//! End-of-training metrics: the confusion matrix for class labels, R² and RMSE for real ones.

use std::fmt::Write as _;

/// `m[true][predicted]` counts over `k` classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// Counts `(label, prediction)` pairs; out-of-range classes are ignored.
    pub fn new(k: usize, labels: &[i32], predicted: &[usize]) -> Confusion {
        let mut counts = vec![vec![0u64; k]; k];
        for (&y, &p) in labels.iter().zip(predicted) {
            if let (Ok(y), true) = (usize::try_from(y), p < k)
                && y < k
            {
                counts[y][p] += 1;
            }
        }
        Confusion { counts }
    }

    /// Fraction of examples on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let total: u64 = self.counts.iter().flatten().sum();
        let right: u64 = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        right as f64 / total.max(1) as f64
    }

    /// A table with one row per true class and one column per predicted class, headed by
    /// the class names (or indices), then each class's recall.
    pub fn table(&self, names: &[String]) -> String {
        let k = self.counts.len();
        let label = |i: usize| names.get(i).cloned().unwrap_or_else(|| i.to_string());
        let cell = self.counts.iter().flatten().map(|c| c.to_string().len()).max().unwrap_or(1);
        let col = (0..k).map(|i| label(i).chars().count().min(12)).max().unwrap_or(1).max(cell);
        let first = (0..k).map(|i| label(i).chars().count()).max().unwrap_or(1).max("true \\ predicted".len());
        let mut s = format!("{:<first$}", "true \\ predicted");
        for i in 0..k {
            let name: String = label(i).chars().take(12).collect();
            let _ = write!(s, " {name:>col$}");
        }
        s.push_str("  recall\n");
        for (i, row) in self.counts.iter().enumerate() {
            let _ = write!(s, "{:<first$}", label(i));
            for c in row {
                let _ = write!(s, " {c:>col$}");
            }
            let total: u64 = row.iter().sum();
            let _ = writeln!(s, "  {:.4}", row[i] as f64 / total.max(1) as f64);
        }
        s
    }

    /// The counts as a JSON array of rows.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::from(self.counts.clone())
    }
}

/// R² and RMSE of real predictions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Regression {
    /// Coefficient of determination `1 − SS_res / SS_tot`, averaged over the label's elements
    /// (scikit-learn's `r2_score` with `multioutput="uniform_average"`).
    pub r2: f64,
    /// `sqrt(mean((prediction − target)²))` over all elements.
    pub rmse: f64,
}

impl Regression {
    /// Compares `predicted` with `targets`, both `rows × width` row-major.
    pub fn new(predicted: &[f32], targets: &[f32], width: usize) -> Regression {
        let w = width.max(1);
        let rows = targets.len() / w;
        let mut r2 = 0.0;
        let mut sq = 0.0;
        for j in 0..w {
            let col = |xs: &[f32]| (0..rows).map(move |r| f64::from(xs[r * w + j])).collect::<Vec<f64>>();
            let (p, t) = (col(predicted), col(targets));
            let mean = t.iter().sum::<f64>() / rows.max(1) as f64;
            let res: f64 = p.iter().zip(&t).map(|(p, t)| (p - t).powi(2)).sum();
            let tot: f64 = t.iter().map(|t| (t - mean).powi(2)).sum();
            sq += res;
            // A constant target: scikit-learn's convention, 1 if predicted exactly, else 0.
            r2 += if tot > 0.0 {
                1.0 - res / tot
            } else if res == 0.0 {
                1.0
            } else {
                0.0
            };
        }
        Regression { r2: r2 / w as f64, rmse: (sq / (rows * w).max(1) as f64).sqrt() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_counts_and_table() {
        let c = Confusion::new(3, &[0, 0, 1, 2, 2, 2], &[0, 1, 1, 2, 2, 0]);
        assert_eq!(c.counts, vec![vec![1, 1, 0], vec![0, 1, 0], vec![1, 0, 2]]);
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        let names = vec!["cat".to_string(), "dog".into(), "eel".into()];
        assert_eq!(
            c.table(&names),
            "true \\ predicted cat dog eel  recall\n\
             cat                1   1   0  0.5000\n\
             dog                0   1   0  1.0000\n\
             eel                1   0   2  0.6667\n"
        );
        assert_eq!(c.to_json().to_string(), "[[1,1,0],[0,1,0],[1,0,2]]");
    }

    #[test]
    fn r2_and_rmse_match_scikit_learn() {
        // sklearn.metrics.r2_score([3, -0.5, 2, 7], [2.5, 0.0, 2, 8]) = 0.9486081370449679
        let r = Regression::new(&[2.5, 0.0, 2.0, 8.0], &[3.0, -0.5, 2.0, 7.0], 1);
        assert!((r.r2 - 0.948_608_137_044_967_9).abs() < 1e-12, "{r:?}");
        assert!((r.rmse - 0.375f64.sqrt()).abs() < 1e-12);
        // Two outputs, uniform average: r2_score([[0.5, 1], [-1, 1], [7, -6]],
        // [[0, 2], [-1, 2], [8, -5]]) = 0.9368005266622779
        let r = Regression::new(&[0.0, 2.0, -1.0, 2.0, 8.0, -5.0], &[0.5, 1.0, -1.0, 1.0, 7.0, -6.0], 2);
        assert!((r.r2 - 0.936_800_526_662_277_9).abs() < 1e-12, "{r:?}");
    }
}
