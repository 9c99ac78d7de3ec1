//! Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11, "Parallel random numbers:
//! as easy as 1, 2, 3"), the same generator as cuRAND's and Random123's `philox4x32_10`.
//!
//! Every random number in emsim is `philox(counter, key)` with `key = seed` and a counter that names
//! *what* the number is for: `[item, index_lo, index_hi, stream]`, e.g. for read noise
//! `[pixel_group, frame_lo, frame_hi, streams::NOISE]`. The value therefore does not depend on the
//! device, batch size, shard or thread count that computes it.
//!
//! This file is the CPU twin of `shaders/shared/rng.wgsl`: the integer parts are bit-identical, and
//! the float helpers (`ln_approx`, `sincos_turns`, `gauss_pair`) use only `+ - * /`, `sqrt` and bit
//! casts, in the same order, so CPU and GPU agree to a few ULP (WGSL's `log`/`cos` may be far less
//! accurate than libm, so we do not use them).

/// Stream identifiers: the fourth counter word. Keep in sync with `shaders/shared/rng.wgsl`.
pub mod streams {
    /// Host-side: number of electrons in a frame.
    pub const COUNT: u32 = 1;
    /// Per electron of a frame: library event, row, column.
    pub const PLACE: u32 = 2;
    /// Per group of 4 pixels of a frame: read noise.
    pub const NOISE: u32 = 3;
    /// Isolated-event test (`eval isolated`): event choice and read noise per event.
    pub const ISOLATED: u32 = 4;
    /// Monte Carlo transport of one library event (`events`).
    pub const TRANSPORT: u32 = 16;
    /// Parametric (test) event library.
    pub const PARAMETRIC: u32 = 17;
    /// Training batches (network training): event choice, shift, read noise per sample.
    pub const TRAIN: u32 = 32;
    /// Dropout masks: counter `(element_group, step, layer)`, this stream.
    pub const DROPOUT: u32 = 33;
    /// Weight initialisation (He): counter `(element_group, tensor, 0)`, this stream.
    pub const INIT: u32 = 34;
    /// Sample order when training from a frames dataset.
    pub const SHUFFLE: u32 = 35;
    /// One-or-two-electron samples: choices `(0|1, k, PAIRS)`, noise `(2 + pixel/4, k, PAIRS)`.
    pub const PAIRS: u32 = 36;
    /// Host-side baselines (`eval net`: a random point in the brightest pixel), counter `(0, k, BASELINE)`.
    pub const BASELINE: u32 = 37;
}

pub(crate) const M0: u32 = 0xD251_1F53;
pub(crate) const M1: u32 = 0xCD9E_8D57;
pub(crate) const W0: u32 = 0x9E37_79B9;
pub(crate) const W1: u32 = 0xBB67_AE85;

/// High and low 32 bits of a 32x32-bit product.
#[inline(always)]
pub fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// `floor(x * n / 2^32)`: a uniform integer in `[0, n)` from a uniform u32 (bias below n / 2^32).
#[inline(always)]
pub fn below(x: u32, n: u32) -> u32 {
    mulhilo(x, n).0
}

/// Philox4x32 with 10 rounds.
#[inline]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// The Philox key of a user seed.
#[inline]
pub fn key_from_seed(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// Counter for item `item` of object `index` (a frame, an event) in stream `stream`.
#[inline]
pub fn counter(item: u32, index: u64, stream: u32) -> [u32; 4] {
    [item, index as u32, (index >> 32) as u32, stream]
}

/// Uniform in `[0, 1)` with 24 random bits (exact in f32).
#[inline(always)]
pub fn u01(x: u32) -> f32 {
    (x >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Uniform in `(0, 1]` with 24 random bits (exact in f32): safe for `ln`.
#[inline(always)]
pub fn u01_open0(x: u32) -> f32 {
    ((x >> 8) + 1) as f32 * (1.0 / 16_777_216.0)
}

/// Uniform in `[0, 1)` with 53 random bits, from two u32 (host-side Monte Carlo).
#[inline(always)]
pub fn u01_f64(a: u32, b: u32) -> f64 {
    let bits = ((a as u64) << 21) ^ ((b as u64) >> 11);
    bits as f64 * (1.0 / 9_007_199_254_740_992.0)
}

/// Natural log of a positive, finite, normal f32 with plain arithmetic (max error ~2e-7 relative).
/// Twin of `ln_approx` in `shaders/shared/rng.wgsl`.
#[inline(always)]
pub fn ln_approx(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // [1, 2)
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = 1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0))));
    e as f32 * std::f32::consts::LN_2 + 2.0 * s * p
}

/// `(cos(2 pi t), sin(2 pi t))` for `t` in turns, with plain arithmetic (max error ~1e-7).
/// Twin of `sincos_turns` in `shaders/shared/rng.wgsl`.
#[inline(always)]
pub fn sincos_turns(t: f32) -> (f32, f32) {
    let k = (t * 4.0).round(); // nearest quarter turn
    let r = t - k * 0.25; // exact: |r| <= 1/8 turn
    let x = r * std::f32::consts::TAU;
    let x2 = x * x;
    let s = x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362_880.0)))));
    let c = 1.0 + x2 * (-0.5 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40_320.0))));
    // Rotate by k quarter turns (k mod 4 in 0..3); same selects as the shader.
    let q = (k as i32) & 3;
    let (c, s) = if q & 1 == 1 { (-s, c) } else { (c, s) };
    if q >= 2 { (-c, -s) } else { (c, s) }
}

/// Two independent standard normal numbers from two uniform u32 (Box–Muller).
/// Twin of `gauss_pair` in `shaders/shared/rng.wgsl`.
#[inline(always)]
pub fn gauss_pair(a: u32, b: u32) -> (f32, f32) {
    let r = (-2.0 * ln_approx(u01_open0(a))).sqrt();
    let (c, s) = sincos_turns(u01(b));
    (r * c, r * s)
}

/// Standard normal number `lane` (0..3) of a Philox block: lanes 0 and 1 from
/// `gauss_pair(r[0], r[1])`, lanes 2 and 3 from `gauss_pair(r[2], r[3])` (twin of `block_normal`
/// in shaders/shared/rng.wgsl).
#[inline]
pub fn block_normal(r: [u32; 4], lane: usize) -> f32 {
    let (a, b) = if lane < 2 { (r[0], r[1]) } else { (r[2], r[3]) };
    let (z0, z1) = gauss_pair(a, b);
    if lane.is_multiple_of(2) { z0 } else { z1 }
}

/// A sequential stream of random numbers for one object (one Monte Carlo event, one frame's
/// electron count): counter `[i, index_lo, index_hi, stream]` for i = 0, 1, 2, ...
#[derive(Clone, Debug)]
pub struct Stream {
    key: [u32; 2],
    index: u64,
    stream: u32,
    next_block: u32,
    buf: [u32; 4],
    used: usize,
}

impl Stream {
    pub fn new(seed: u64, stream: u32, index: u64) -> Self {
        Self { key: key_from_seed(seed), index, stream, next_block: 0, buf: [0; 4], used: 4 }
    }

    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if self.used == 4 {
            self.buf = philox4x32_10(counter(self.next_block, self.index, self.stream), self.key);
            self.next_block = self.next_block.wrapping_add(1);
            self.used = 0;
        }
        let v = self.buf[self.used];
        self.used += 1;
        v
    }

    /// Uniform in `[0, 1)`, 53 bits.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        let a = self.next_u32();
        let b = self.next_u32();
        u01_f64(a, b)
    }

    /// Uniform in `(0, 1]`, 53 bits: safe for `ln`.
    #[inline]
    pub fn uniform_open0(&mut self) -> f64 {
        1.0 - self.uniform()
    }

    /// Standard normal (f64 Box–Muller with libm; host-side only).
    pub fn normal(&mut self) -> f64 {
        let r = (-2.0 * self.uniform_open0().ln()).sqrt();
        r * (std::f64::consts::TAU * self.uniform()).cos()
    }

    /// Exponential with mean 1.
    pub fn exponential(&mut self) -> f64 {
        -self.uniform_open0().ln()
    }

    /// A 32-byte seed for a conventional RNG (e.g. `rand_chacha`), derived from this stream.
    pub fn seed_bytes(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(4) {
            chunk.copy_from_slice(&self.next_u32().to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer tests from Random123 (`kat_vectors`, philox4x32_10).
    #[test]
    fn philox_known_answers() {
        assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
        assert_eq!(
            philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn ln_and_sincos_match_libm() {
        let mut worst_ln = 0.0f32;
        let mut worst_sc = 0.0f32;
        for i in 1..200_000u32 {
            let x = u01_open0(i.wrapping_mul(2_654_435_761));
            worst_ln = worst_ln.max((ln_approx(x) - x.ln()).abs() / x.ln().abs().max(1e-3));
            let (c, s) = sincos_turns(x);
            let a = x as f64 * std::f64::consts::TAU;
            worst_sc = worst_sc.max((c as f64 - a.cos()).abs().max((s as f64 - a.sin()).abs()) as f32);
        }
        assert!(worst_ln < 2e-6, "ln_approx relative error {worst_ln}");
        assert!(worst_sc < 1e-6, "sincos_turns error {worst_sc}");
    }

    #[test]
    fn gaussian_moments() {
        let key = key_from_seed(42);
        let (mut s1, mut s2, mut s4) = (0.0f64, 0.0f64, 0.0f64);
        let n = 400_000u32;
        for i in 0..n / 4 {
            let r = philox4x32_10(counter(i, 0, streams::NOISE), key);
            let (a, b) = gauss_pair(r[0], r[1]);
            let (c, d) = gauss_pair(r[2], r[3]);
            for v in [a, b, c, d] {
                let v = v as f64;
                s1 += v;
                s2 += v * v;
                s4 += v * v * v * v;
            }
        }
        let n = n as f64;
        let mean = s1 / n;
        let var = s2 / n - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        assert!((s4 / n - 3.0).abs() < 0.05, "fourth moment {}", s4 / n);
    }

    #[test]
    fn below_is_in_range() {
        for x in [0u32, 1, 12345, u32::MAX] {
            assert!(below(x, 576) < 576);
        }
        assert_eq!(below(u32::MAX, 576), 575);
    }
}
