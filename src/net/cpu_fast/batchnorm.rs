//! Batch norm: statistics, forward, and both backward passes.

use super::layers::*;
use super::*;

// ---------------------------------------------------------------------------------------------
// Batch norm. Sums over the batch in f64, each channel's terms in a fixed order (4 interleaved
// f64 accumulators per plane, the planes in sample order), so the results do not depend on the
// thread count. The element-wise passes use the twins' f32 expressions: bitwise equal.

#[track_caller]
pub(super) fn bn_check(s: &BatchNorm2dShape) {
    assert!(s.x.c >= 1 && s.m() >= 1, "batchnorm2d: empty input {:?}", s.x);
    assert!(s.eps >= 0.0, "batchnorm2d: eps must be >= 0");
}

/// Lanes of the f64 accumulators of the batch-norm sums: element `i` of a plane (but a remainder
/// of fewer than `LANES`) goes to lane `i % LANES`; the lanes are added as
/// [`combine_lanes`] says, then the remainder in order. The AVX2 and the plain builds follow this
/// order exactly.
pub(super) const LANES: usize = 8;

/// `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))`.
#[inline(always)]
pub(super) fn combine_lanes(l: &[f64; LANES]) -> f64 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// `(sum (x - k), sum (x - k)^2)` over `x` in f64 (lanes: [`LANES`]).
pub(super) fn shifted_moments(x: &[f32], k: f64) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: the CPU has AVX2 (checked at run time).
        return unsafe { shifted_moments_avx2(x, k) };
    }
    shifted_moments_plain(x, k)
}

pub(super) fn shifted_moments_plain(x: &[f32], k: f64) -> (f64, f64) {
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            let d = c[l] as f64 - k;
            s1[l] += d;
            s2[l] += d * d;
        }
    }
    let (mut a, mut b) = (combine_lanes(&s1), combine_lanes(&s2));
    for &v in rest {
        let d = v as f64 - k;
        a += d;
        b += d * d;
    }
    (a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) fn shifted_moments_avx2(x: &[f32], k: f64) -> (f64, f64) {
    use std::arch::x86_64::*;
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    let kv = _mm256_set1_pd(k);
    let (mut a0, mut a1, mut b0, mut b1) =
        (_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd());
    for c in chunks {
        // SAFETY: `c` holds LANES = 8 f32.
        let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        let lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), kv);
        let hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)), kv);
        a0 = _mm256_add_pd(a0, lo);
        a1 = _mm256_add_pd(a1, hi);
        b0 = _mm256_add_pd(b0, _mm256_mul_pd(lo, lo));
        b1 = _mm256_add_pd(b1, _mm256_mul_pd(hi, hi));
    }
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    // SAFETY: each array holds 8 f64: two stores of 4.
    unsafe {
        _mm256_storeu_pd(s1.as_mut_ptr(), a0);
        _mm256_storeu_pd(s1.as_mut_ptr().add(4), a1);
        _mm256_storeu_pd(s2.as_mut_ptr(), b0);
        _mm256_storeu_pd(s2.as_mut_ptr().add(4), b1);
    }
    let (mut a, mut b) = (combine_lanes(&s1), combine_lanes(&s2));
    for &v in rest {
        let d = v as f64 - k;
        a += d;
        b += d * d;
    }
    (a, b)
}

/// Mean and biased variance per channel from per-plane shifted moments `part[n * C + c]` (shift
/// `shift[c]`), the planes added in sample order.
pub(super) fn finish_stats(
    s: &BatchNorm2dShape,
    part: &[(f64, f64)],
    shift: &[f64],
    mean: &mut [f32],
    var: &mut [f32],
) {
    let (c_len, m) = (s.x.c, s.m() as f64);
    for c in 0..c_len {
        let (mut s1, mut s2) = (0f64, 0f64);
        for n in 0..s.x.n {
            let (a, b) = part[n * c_len + c];
            s1 += a;
            s2 += b;
        }
        let d = s1 / m;
        mean[c] = (shift[c] + d) as f32;
        var[c] = ((s2 / m - d * d).max(0.0)) as f32;
    }
}

/// Fast [`crate::net::batchnorm2d::batchnorm2d_stats_cpu`]: per-channel mean and biased variance over
/// `N, H, W`, in one pass: f64 sums of `x - k` and `(x - k)^2` with the shift `k` = the channel's
/// first element (so the variance does not lose digits when `|mean| >> std`). Equals the twin's
/// two-pass result to f64 rounding: within about 1 f32 ulp. Writes all of `mean` and `var`.
pub fn batchnorm2d_stats_fast(s: &BatchNorm2dShape, x: &[f32], mean: &mut [f32], var: &mut [f32]) {
    bn_check(s);
    check_len("batchnorm2d x", x.len(), s.x.len());
    check_len("batchnorm2d mean", mean.len(), s.x.c);
    check_len("batchnorm2d var", var.len(), s.x.c);
    let (c_len, hw) = (s.x.c, s.x.plane());
    let shift: Vec<f64> = (0..c_len).map(|c| x[c * hw] as f64).collect();
    let mut part = vec![(0f64, 0f64); s.x.n * c_len];
    part.par_iter_mut()
        .zip(x.par_chunks(hw))
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(plane, (p, x))| *p = shifted_moments(x, shift[plane % c_len]));
    finish_stats(s, &part, &shift, mean, var);
}

/// Fast [`crate::net::batchnorm2d::batchnorm2d_fwd_cpu`]: `y = (x - mean[c]) * invstd * gamma[c] +
/// beta[c]`. Writes all of `y`; bitwise equal to the twin.
pub fn batchnorm2d_fwd_fast(
    s: &BatchNorm2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
) {
    bn_check(s);
    let c_len = s.x.c;
    check_len("batchnorm2d x", x.len(), s.x.len());
    for (name, v) in [("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)] {
        check_len(&format!("batchnorm2d {name}"), v.len(), c_len);
    }
    check_len("batchnorm2d y", y.len(), s.x.len());
    let hw = s.x.plane();
    let ppt = planes_per_task(hw);
    y.par_chunks_mut(ppt * hw).zip(x.par_chunks(ppt * hw)).enumerate().for_each(|(t, (y, x))| {
        for (j, (y, x)) in y.chunks_mut(hw).zip(x.chunks(hw)).enumerate() {
            let c = (t * ppt + j) % c_len;
            bn_fwd_kernel(x, y, mean[c], invstd(var[c], s.eps), gamma[c], beta[c]);
        }
    });
}

/// `(sum dy, sum dy * xhat)` over one plane in f64 (lanes: [`LANES`]), `xhat = (x - mu) * inv` in
/// f32 (the twin's).
pub(super) fn dy_moments(x: &[f32], dy: &[f32], mu: f32, inv: f32) -> (f64, f64) {
    assert_eq!(x.len(), dy.len());
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: the CPU has AVX2 (checked at run time).
        return unsafe { dy_moments_avx2(x, dy, mu, inv) };
    }
    dy_moments_plain(x, dy, mu, inv)
}

pub(super) fn dy_moments_plain(x: &[f32], dy: &[f32], mu: f32, inv: f32) -> (f64, f64) {
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    let (xc, gc) = (x.chunks_exact(LANES), dy.chunks_exact(LANES));
    let (xr, gr) = (xc.remainder(), gc.remainder());
    for (x, g) in xc.zip(gc) {
        for l in 0..LANES {
            let g64 = g[l] as f64;
            s1[l] += g64;
            s2[l] += g64 * ((x[l] - mu) * inv) as f64;
        }
    }
    let (mut a, mut b) = (combine_lanes(&s1), combine_lanes(&s2));
    for (&x, &g) in xr.iter().zip(gr) {
        a += g as f64;
        b += g as f64 * ((x - mu) * inv) as f64;
    }
    (a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) fn dy_moments_avx2(x: &[f32], dy: &[f32], mu: f32, inv: f32) -> (f64, f64) {
    use std::arch::x86_64::*;
    let (xc, gc) = (x.chunks_exact(LANES), dy.chunks_exact(LANES));
    let (xr, gr) = (xc.remainder(), gc.remainder());
    let (muv, invv) = (_mm256_set1_ps(mu), _mm256_set1_ps(inv));
    let (mut a0, mut a1, mut b0, mut b1) =
        (_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd());
    for (xs, gs) in xc.zip(gc) {
        // SAFETY: `xs` and `gs` hold LANES = 8 f32 each.
        let (xv, gv) = unsafe { (_mm256_loadu_ps(xs.as_ptr()), _mm256_loadu_ps(gs.as_ptr())) };
        let xhat = _mm256_mul_ps(_mm256_sub_ps(xv, muv), invv);
        let (g_lo, g_hi) =
            (_mm256_cvtps_pd(_mm256_castps256_ps128(gv)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(gv)));
        let (h_lo, h_hi) =
            (_mm256_cvtps_pd(_mm256_castps256_ps128(xhat)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(xhat)));
        a0 = _mm256_add_pd(a0, g_lo);
        a1 = _mm256_add_pd(a1, g_hi);
        b0 = _mm256_add_pd(b0, _mm256_mul_pd(g_lo, h_lo));
        b1 = _mm256_add_pd(b1, _mm256_mul_pd(g_hi, h_hi));
    }
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    // SAFETY: each array holds 8 f64: two stores of 4.
    unsafe {
        _mm256_storeu_pd(s1.as_mut_ptr(), a0);
        _mm256_storeu_pd(s1.as_mut_ptr().add(4), a1);
        _mm256_storeu_pd(s2.as_mut_ptr(), b0);
        _mm256_storeu_pd(s2.as_mut_ptr().add(4), b1);
    }
    let (mut a, mut b) = (combine_lanes(&s1), combine_lanes(&s2));
    for (&x, &g) in xr.iter().zip(gr) {
        a += g as f64;
        b += g as f64 * ((x - mu) * inv) as f64;
    }
    (a, b)
}

/// Per-channel sums of per-plane pairs `part[n * C + c]`, planes in sample order, as f32.
pub(super) fn finish_sums(n: usize, part: &[(f64, f64)], first: &mut [f32], second: &mut [f32]) {
    let c_len = first.len();
    for c in 0..c_len {
        let (mut a, mut b) = (0f64, 0f64);
        for k in 0..n {
            a += part[k * c_len + c].0;
            b += part[k * c_len + c].1;
        }
        first[c] = a as f32;
        second[c] = b as f32;
    }
}

/// Fast [`crate::net::batchnorm2d::batchnorm2d_bwd_reduce_cpu`]: `dbeta[c] = sum dy`, `dgamma[c] = sum
/// dy * xhat` (xhat in f32, sums in f64 in another order than the twin's: equal to about 1 f32 ulp).
/// Writes all of `dgamma` and `dbeta`.
pub fn batchnorm2d_bwd_reduce_fast(
    s: &BatchNorm2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    dy: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    bn_check(s);
    let c_len = s.x.c;
    check_len("batchnorm2d x", x.len(), s.x.len());
    check_len("batchnorm2d mean", mean.len(), c_len);
    check_len("batchnorm2d var", var.len(), c_len);
    check_len("batchnorm2d dy", dy.len(), s.x.len());
    check_len("batchnorm2d dgamma", dgamma.len(), c_len);
    check_len("batchnorm2d dbeta", dbeta.len(), c_len);
    let hw = s.x.plane();
    let mut part = vec![(0f64, 0f64); s.x.n * c_len];
    part.par_iter_mut()
        .zip(x.par_chunks(hw).zip(dy.par_chunks(hw)))
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(plane, (p, (x, dy)))| {
            let c = plane % c_len;
            *p = dy_moments(x, dy, mean[c], invstd(var[c], s.eps));
        });
    finish_sums(s.x.n, &part, dbeta, dgamma);
}

/// `(mean, var, gamma, dgamma, dbeta)` of a batch-norm input gradient, `[C]` each.
type BnBackwardInputs<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [f32], &'a [f32]);

/// The twin's per-element input gradient of batch norm over one plane of channel `c`, optionally
/// followed by the backward of a ReLU before the batch norm (`x` is then the ReLU's output: `dx =
/// 0` where `x <= 0`).
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn bn_input_plane(
    s: &BatchNorm2dShape,
    c: usize,
    x: &[f32],
    dy: &[f32],
    (mean, var, gamma, dgamma, dbeta): BnBackwardInputs,
    relu_before: bool,
    dx: &mut [f32],
) {
    let mf = s.m() as f32;
    let inv = invstd(var[c], s.eps);
    let k = BnInputConsts { mu: mean[c], inv, k: gamma[c] * inv / mf, mf, db: dbeta[c], dg: dgamma[c] };
    bn_input_kernel(x, dy, k, relu_before, dx);
}

/// Per-channel constants of the batch-norm input gradient.
#[derive(Clone, Copy)]
pub(super) struct BnInputConsts {
    mu: f32,
    inv: f32,
    /// `gamma * inv / m`.
    k: f32,
    /// `m` as f32.
    mf: f32,
    db: f32,
    dg: f32,
}

simd_dispatch! {
    /// See [`bn_input_plane`].
    fn bn_input_kernel(x: &[f32], dy: &[f32], c: BnInputConsts, relu_before: bool, dx: &mut [f32]) = bn_input_body
}

#[inline(always)]
pub(super) fn bn_input_body(x: &[f32], dy: &[f32], c: BnInputConsts, relu_before: bool, dx: &mut [f32]) {
    if relu_before {
        for ((d, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
            let v = c.k * (c.mf * g - c.db - (x - c.mu) * c.inv * c.dg);
            *d = if x > 0.0 { v } else { 0.0 };
        }
    } else {
        for ((d, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
            *d = c.k * (c.mf * g - c.db - (x - c.mu) * c.inv * c.dg);
        }
    }
}

simd_dispatch! {
    /// `y = (x - mu) * inv * g + b` over one plane (the twin's expression).
    fn bn_fwd_kernel(x: &[f32], y: &mut [f32], mu: f32, inv: f32, g: f32, b: f32) = bn_fwd_body
}

#[inline(always)]
pub(super) fn bn_fwd_body(x: &[f32], y: &mut [f32], mu: f32, inv: f32, g: f32, b: f32) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = (x - mu) * inv * g + b;
    }
}

/// Fast [`crate::net::batchnorm2d::batchnorm2d_bwd_input_cpu`]: `dx = gamma[c] * invstd / m * (m * dy -
/// dbeta[c] - xhat * dgamma[c])`. Writes all of `dx`; bitwise equal to the twin.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_bwd_input_fast(
    s: &BatchNorm2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    dgamma: &[f32],
    dbeta: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    bn_check(s);
    let c_len = s.x.c;
    check_len("batchnorm2d x", x.len(), s.x.len());
    for (name, v) in [("mean", mean), ("var", var), ("gamma", gamma), ("dgamma", dgamma), ("dbeta", dbeta)] {
        check_len(&format!("batchnorm2d {name}"), v.len(), c_len);
    }
    check_len("batchnorm2d dy", dy.len(), s.x.len());
    check_len("batchnorm2d dx", dx.len(), s.x.len());
    let hw = s.x.plane();
    let ppt = planes_per_task(hw);
    let stats = (mean, var, gamma, dgamma, dbeta);
    dx.par_chunks_mut(ppt * hw).zip(x.par_chunks(ppt * hw).zip(dy.par_chunks(ppt * hw))).enumerate().for_each(
        |(t, (dx, (x, dy)))| {
            for (j, (dx, (x, dy))) in dx.chunks_mut(hw).zip(x.chunks(hw).zip(dy.chunks(hw))).enumerate() {
                bn_input_plane(s, (t * ppt + j) % c_len, x, dy, stats, false, dx);
            }
        },
    );
}
