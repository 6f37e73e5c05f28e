//! Param initializers (SPEC §1).
//!
//! Each param draws from its own random stream, seeded by a stable hash of its name mixed
//! with the run's seed, so adding, removing or reordering a param leaves the others' values
//! unchanged. Fan-in/fan-out follow the common convention (PyTorch's
//! `_calculate_fan_in_and_fan_out`): for `W[out, in]`, fan_in = in, fan_out = out; a vector
//! of n has both n; a scalar 1; higher ranks multiply the trailing (receptive) extents in.

use std::fmt;

use bpc_ir::Init;
use rand::SeedableRng;
use rand::distr::{Distribution, Uniform};
use rand::rngs::StdRng;
use rand_distr::Normal;

/// An initializer that cannot be drawn from (e.g. a negative standard deviation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitError(pub String);

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InitError {}

/// FNV-1a, 64-bit: a stable hash of a name (the same on every platform and release).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// SplitMix64's finalizer: spreads the seed's bits before it meets the name's hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The random stream of the param `name` under `seed`.
pub fn stream(seed: u64, name: &str) -> StdRng {
    StdRng::seed_from_u64(mix(mix(seed) ^ fnv1a(name.as_bytes())))
}

/// The shuffling stream of epoch `epoch` under `seed`: each epoch's order depends only on
/// the seed and the epoch, so a run resumed at any epoch sees the same orders as one that was
/// never interrupted.
pub fn epoch_stream(seed: u64, epoch: usize) -> StdRng {
    StdRng::seed_from_u64(mix(mix(seed) ^ fnv1a(b"shuffle")) ^ mix(epoch as u64))
}

/// `(fan_in, fan_out)` of a param of `shape`.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [out, inp, rest @ ..] => {
            let field: usize = rest.iter().product();
            (inp * field, out * field)
        }
    }
}

/// Fills `out` (a param of `shape`, named `name`) by `init` under `seed`.
pub fn fill(init: Init, name: &str, shape: &[usize], seed: u64, out: &mut [f32]) -> Result<(), InitError> {
    let mut rng = stream(seed, name);
    let (fan_in, fan_out) = fans(shape);
    match init {
        Init::Const(c) => out.fill(c as f32),
        Init::Normal { mean, std } => normal(name, mean, std, &mut rng, out)?,
        Init::Uniform { lo, hi } => uniform(name, lo, hi, &mut rng, out)?,
        Init::Xavier => {
            let a = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
            uniform(name, -a, a, &mut rng, out)?;
        }
        Init::He => normal(name, 0.0, (2.0 / fan_in.max(1) as f64).sqrt(), &mut rng, out)?,
    }
    Ok(())
}

fn normal(name: &str, mean: f64, std: f64, rng: &mut StdRng, out: &mut [f32]) -> Result<(), InitError> {
    let bad = |why: &str| InitError(format!("param {name}: cannot draw from normal({mean}, {std}): {why}"));
    if std < 0.0 || !mean.is_finite() {
        return Err(bad("the mean must be finite and the standard deviation non-negative"));
    }
    let d = Normal::new(mean, std).map_err(|e| bad(&e.to_string()))?;
    out.iter_mut().for_each(|x| *x = d.sample(rng) as f32);
    Ok(())
}

fn uniform(name: &str, lo: f64, hi: f64, rng: &mut StdRng, out: &mut [f32]) -> Result<(), InitError> {
    if lo == hi && lo.is_finite() {
        out.fill(lo as f32);
        return Ok(());
    }
    let d = Uniform::new(lo, hi)
        .map_err(|e| InitError(format!("param {name}: cannot draw from uniform({lo}, {hi}): {e}")))?;
    out.iter_mut().for_each(|x| *x = d.sample(rng) as f32);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(init: Init, name: &str, shape: &[usize], seed: u64) -> Vec<f32> {
        let mut v = vec![0.0; shape.iter().product()];
        fill(init, name, shape, seed, &mut v).unwrap();
        v
    }

    fn moments(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn fnv1a_reference_values() {
        // Test vectors from the FNV reference (Fowler, Noll, Vo).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fans_follow_the_spec() {
        assert_eq!(fans(&[256, 784]), (784, 256));
        assert_eq!(fans(&[10]), (10, 10));
        assert_eq!(fans(&[]), (1, 1));
        assert_eq!(fans(&[8, 3, 5, 5]), (75, 200));
    }

    #[test]
    fn streams_depend_on_seed_and_name_only() {
        let a = draw(Init::Normal { mean: 0.0, std: 1.0 }, "W1", &[4, 4], 7);
        assert_eq!(a, draw(Init::Normal { mean: 0.0, std: 1.0 }, "W1", &[4, 4], 7));
        assert_ne!(a, draw(Init::Normal { mean: 0.0, std: 1.0 }, "W2", &[4, 4], 7));
        assert_ne!(a, draw(Init::Normal { mean: 0.0, std: 1.0 }, "W1", &[4, 4], 8));
    }

    #[test]
    fn distributions_have_the_declared_moments() {
        let (m, s) = moments(&draw(Init::Normal { mean: 1.0, std: 0.5 }, "w", &[200, 200], 0));
        assert!((m - 1.0).abs() < 0.01 && (s - 0.5).abs() < 0.01, "normal: {m} {s}");
        let u = draw(Init::Uniform { lo: -2.0, hi: 4.0 }, "u", &[40000], 0);
        assert!(u.iter().all(|&x| (-2.0..4.0).contains(&x)));
        let (m, s) = moments(&u);
        assert!((m - 1.0).abs() < 0.05 && (s - 6.0 / 12f64.sqrt()).abs() < 0.02, "uniform: {m} {s}");
        // Xavier on [100, 300]: ±sqrt(6/400), std a/sqrt(3).
        let a = (6.0f64 / 400.0).sqrt();
        let x = draw(Init::Xavier, "x", &[100, 300], 0);
        assert!(x.iter().all(|&v| f64::from(v).abs() <= a));
        assert!((moments(&x).1 - a / 3f64.sqrt()).abs() < 0.002);
        // He on [100, 200]: std sqrt(2/200) = 0.1.
        let (m, s) = moments(&draw(Init::He, "h", &[100, 200], 0));
        assert!(m.abs() < 0.003 && (s - 0.1).abs() < 0.002, "he: {m} {s}");
        assert_eq!(draw(Init::Const(0.25), "c", &[3], 0), vec![0.25; 3]);
    }

    #[test]
    fn bad_initializers_are_errors() {
        let mut v = [0.0; 2];
        let e = fill(Init::Normal { mean: 0.0, std: -1.0 }, "W", &[2], 0, &mut v).unwrap_err();
        assert!(e.0.starts_with("param W: cannot draw from normal(0, -1)"), "{e}");
        let e = fill(Init::Uniform { lo: 1.0, hi: 0.0 }, "b", &[2], 0, &mut v).unwrap_err();
        assert!(e.0.starts_with("param b: cannot draw from uniform(1, 0)"), "{e}");
        fill(Init::Uniform { lo: 3.0, hi: 3.0 }, "b", &[2], 0, &mut v).unwrap();
        assert_eq!(v, [3.0; 2]);
    }
}
