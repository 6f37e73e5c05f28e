//! `--standardize`: per-feature z-scores with the training set's statistics.
//!
//! `x' = (x - mean) / std` per feature column, where mean and (population) standard
//! deviation come from the training set only and are then applied unchanged to validation
//! and test data (and stored in checkpoints so `predict` applies them too). A constant column
//! (std 0) is only centered. Real labels are never scaled.

use crate::data::Dataset;

/// Per-feature statistics, one entry per feature column.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    /// Mean of every feature over the data it was fitted on.
    pub mean: Vec<f32>,
    /// Population standard deviation; 0 for a constant column.
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Mean and standard deviation of every feature of `data`, accumulated in f64.
    pub fn fit(data: &Dataset) -> Standardizer {
        let (n, f) = (data.len(), data.n_features);
        let mut sum = vec![0f64; f];
        for r in 0..n {
            for (s, &x) in sum.iter_mut().zip(data.row(r)) {
                *s += f64::from(x);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n.max(1) as f64).collect();
        let mut sq = vec![0f64; f];
        for r in 0..n {
            for ((s, &x), m) in sq.iter_mut().zip(data.row(r)).zip(&mean) {
                let d = f64::from(x) - m;
                *s += d * d;
            }
        }
        Standardizer {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: sq.iter().map(|s| (s / n.max(1) as f64).sqrt() as f32).collect(),
        }
    }

    /// Number of feature columns.
    pub fn len(&self) -> usize {
        self.mean.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mean.is_empty()
    }

    /// Standardizes `data` in place. Panics if the feature counts differ (callers check the
    /// data against the model first, and the statistics come from the same model).
    pub fn apply(&self, data: &mut Dataset) {
        assert_eq!(
            data.n_features,
            self.len(),
            "standardizer fitted on {} features, data has {}",
            self.len(),
            data.n_features
        );
        if data.n_features == 0 {
            return;
        }
        let scale: Vec<f32> = self.std.iter().map(|&s| if s > 0.0 { 1.0 / s } else { 1.0 }).collect();
        for row in data.features.chunks_exact_mut(data.n_features) {
            for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&scale) {
                *x = (*x - m) * s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Labels;

    fn data(features: Vec<f32>, n_features: usize) -> Dataset {
        Dataset {
            path: "t.csv".into(),
            feature_names: (0..n_features).map(|i| format!("f{i}")).collect(),
            label_names: Vec::new(),
            label_width: 1,
            n_features,
            rows: features.len() / n_features,
            features,
            labels: Labels::None,
        }
    }

    #[test]
    fn fits_on_train_and_applies_to_other_data() {
        // Column 0: 1, 3 -> mean 2, std 1. Column 1: constant 5 -> only centered.
        let mut train = data(vec![1.0, 5.0, 3.0, 5.0], 2);
        let s = Standardizer::fit(&train);
        assert_eq!(s, Standardizer { mean: vec![2.0, 5.0], std: vec![1.0, 0.0] });
        s.apply(&mut train);
        assert_eq!(train.features, vec![-1.0, 0.0, 1.0, 0.0]);
        let mut test = data(vec![4.0, 7.0], 2);
        s.apply(&mut test);
        assert_eq!(test.features, vec![2.0, 2.0]);
    }

    #[test]
    fn standardized_columns_have_zero_mean_and_unit_std() {
        let mut d = data(vec![0.5, 10.0, 2.5, 30.0, 4.0, 20.0, 9.0, 60.0], 2);
        Standardizer::fit(&d).apply(&mut d);
        let again = Standardizer::fit(&d);
        for (m, s) in again.mean.iter().zip(&again.std) {
            assert!(m.abs() < 1e-6 && (s - 1.0).abs() < 1e-6, "mean {m} std {s}");
        }
    }
}
