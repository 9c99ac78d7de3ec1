//! Weight initialisation. He (Kaiming) normal: `w ~ N(0, 2 / fan_in)`, biases 0, batch-norm
//! gamma 1 and beta 0. Every value comes from the counter-based generator, counter
//! `(element / 4, tensor, INIT)` keyed by the seed, so a model's initial weights depend only on the
//! seed and the tensor's position in the model.

use crate::rng::{counter, gauss_pair, key_from_seed, philox4x32_10, streams};

/// `len` samples of `N(0, std^2)`, for tensor number `tensor` of a model.
pub fn normal(seed: u64, tensor: u32, len: usize, std: f32) -> Vec<f32> {
    let key = key_from_seed(seed);
    let mut out = Vec::with_capacity(len);
    for g in 0..len.div_ceil(4) {
        let r = philox4x32_10(counter(g as u32, tensor as u64, streams::INIT), key);
        let (a, b) = gauss_pair(r[0], r[1]);
        let (c, d) = gauss_pair(r[2], r[3]);
        for z in [a, b, c, d] {
            if out.len() < len {
                out.push(z * std);
            }
        }
    }
    out
}

/// He normal initialisation for a weight with fan-in `fan_in` (ReLU gain sqrt(2)).
pub fn he_normal(seed: u64, tensor: u32, len: usize, fan_in: usize) -> Vec<f32> {
    normal(seed, tensor, len, (2.0 / fan_in.max(1) as f32).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn he_normal_has_the_right_spread_and_is_reproducible() {
        let w = he_normal(5, 3, 40_000, 50);
        let mean = w.iter().map(|&v| v as f64).sum::<f64>() / w.len() as f64;
        let var = w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var / (2.0 / 50.0) - 1.0).abs() < 0.03, "var {var}");
        assert_eq!(w, he_normal(5, 3, 40_000, 50));
        assert_ne!(w[..8], he_normal(5, 4, 8, 50)[..]);
        assert_ne!(w[..8], he_normal(6, 3, 8, 50)[..]);
    }
}
