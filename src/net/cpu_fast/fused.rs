//! Fused pairs of layers: forward passes in training mode, the evaluation-mode block, and the
//! backward of `[ReLU ->] BatchNorm2d -> MaxPool2d`.

use super::batchnorm::*;
use super::gemm::*;
use super::layers::*;
use super::*;

// ---------------------------------------------------------------------------------------------
// Fused forward passes (training mode): each computes two layers plane by plane, the second from
// the first's output while it is in the cache, and gives bitwise the results of the two separate
// fast functions.

/// `ReLU -> BatchNorm2d` statistics: `y = relu(x)` ([`relu_fwd_fast`]) and the batch statistics of
/// `y` ([`batchnorm2d_stats_fast`]`(bn, y)`), in one pass over `x`. Writes all of `y`, `mean`, `var`.
pub fn relu_batchnorm2d_stats_fast(bn: &BatchNorm2dShape, x: &[f32], y: &mut [f32], mean: &mut [f32], var: &mut [f32]) {
    bn_check(bn);
    check_len("relu x", x.len(), bn.x.len());
    check_len("relu y", y.len(), bn.x.len());
    check_len("batchnorm2d mean", mean.len(), bn.x.c);
    check_len("batchnorm2d var", var.len(), bn.x.c);
    let (c_len, hw) = (bn.x.c, bn.x.plane());
    let relu = |v: f32| if v > 0.0 { v } else { 0.0 };
    let shift: Vec<f64> = (0..c_len).map(|c| relu(x[c * hw]) as f64).collect();
    let mut part = vec![(0f64, 0f64); bn.x.n * c_len];
    part.par_iter_mut()
        .zip(y.par_chunks_mut(hw).zip(x.par_chunks(hw)))
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(plane, (p, (y, x)))| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = relu(x);
            }
            *p = shifted_moments(y, shift[plane % c_len]);
        });
    finish_stats(bn, &part, &shift, mean, var);
}

/// `BatchNorm2d -> MaxPool2d` forward: `y = ` [`batchnorm2d_fwd_fast`]`(bn, x, ...)` and
/// `y_pool, idx = ` [`maxpool2d_fwd_fast`]`(pool, y)`, plane by plane (`pool.input == bn.x`).
/// Writes all of `y`, `y_pool` and `idx`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_maxpool2d_fwd_fast(
    bn: &BatchNorm2dShape,
    pool: &MaxPool2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    y_pool: &mut [f32],
    idx: &mut [u32],
) {
    let (xs, ys) = maxpool_shapes(pool);
    bn_check(bn);
    assert!(bn.x == xs, "batchnorm2d_maxpool2d_fwd: batch norm {:?} vs max-pool input {:?}", bn.x, xs);
    let c_len = xs.c;
    check_len("batchnorm2d x", x.len(), xs.len());
    for (name, v) in [("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)] {
        check_len(&format!("batchnorm2d {name}"), v.len(), c_len);
    }
    check_len("batchnorm2d y", y.len(), xs.len());
    check_len("maxpool2d y", y_pool.len(), ys.len());
    check_len("maxpool2d idx", idx.len(), ys.len());
    if ys.is_empty() {
        batchnorm2d_fwd_fast(bn, x, mean, var, gamma, beta, y);
        return;
    }
    let (ip, op) = (xs.plane(), ys.plane());
    let ppt = planes_per_task(ip);
    y.par_chunks_mut(ppt * ip)
        .zip(y_pool.par_chunks_mut(ppt * op).zip(idx.par_chunks_mut(ppt * op)))
        .enumerate()
        .for_each(|(t, (y, (yp, idx)))| {
            for (j, (y, (yp, idx))) in y.chunks_mut(ip).zip(yp.chunks_mut(op).zip(idx.chunks_mut(op))).enumerate() {
                let plane = t * ppt + j;
                let c = plane % c_len;
                bn_fwd_kernel(&x[plane * ip..(plane + 1) * ip], y, mean[c], invstd(var[c], bn.eps), gamma[c], beta[c]);
                maxpool_plane(pool, ys, y, plane * ip, yp, idx);
            }
        });
}

/// Max-pool forward without the indices (evaluation mode): `y` = window maxima, equal to
/// [`maxpool2d_fwd_fast`]'s (as numbers: with windows holding both -0 and +0 the sign of a zero
/// maximum may differ, as the comparisons run in another order). Writes all of `y`.
pub fn maxpool2d_fwd_values_fast(s: &MaxPool2dShape, x: &[f32], y: &mut [f32]) {
    relu_batchnorm2d_maxpool2d_eval_fast(s, false, None, x, y);
}

/// An evaluation-mode batch norm: shape, running statistics, parameters (`[C]` each).
#[derive(Clone, Copy, Debug)]
pub struct BatchNorm2dEval<'a> {
    pub s: BatchNorm2dShape,
    pub mean: &'a [f32],
    pub var: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
}

/// Evaluation-mode `[ReLU ->] [BatchNorm2d ->] MaxPool2d` forward: `y = maxpool(f(x))` with `f =
/// bn(relu(x))` (each part optional), computed as `f(maxpool(x))`, or `f(minpool(x))` for a
/// channel with `gamma < 0`: `f` is monotone per channel (ReLU, then `((v - mean) * invstd) *
/// gamma + beta`, each step rounded monotonically: non-decreasing for `gamma >= 0`, non-increasing
/// for `gamma < 0`), so the result equals the pooled `f(x)` as numbers (inputs NaN-free; the sign of
/// a zero may differ), and `f` runs on the pooled values only. Writes all of `y`.
pub fn relu_batchnorm2d_maxpool2d_eval_fast(
    pool: &MaxPool2dShape,
    relu: bool,
    bn: Option<BatchNorm2dEval>,
    x: &[f32],
    y: &mut [f32],
) {
    let (xs, ys) = maxpool_shapes(pool);
    check_len("maxpool2d x", x.len(), xs.len());
    check_len("maxpool2d y", y.len(), ys.len());
    if let Some(b) = &bn {
        bn_check(&b.s);
        assert!(b.s.x == xs, "batchnorm2d {:?} vs max-pool input {:?}", b.s.x, xs);
        for (name, v) in [("mean", b.mean), ("var", b.var), ("gamma", b.gamma), ("beta", b.beta)] {
            check_len(&format!("batchnorm2d {name}"), v.len(), xs.c);
        }
    }
    if ys.is_empty() {
        return;
    }
    let (ip, op) = (xs.plane(), ys.plane());
    let ppt = planes_per_task(ip);
    y.par_chunks_mut(ppt * op).enumerate().for_each_init(Vec::new, |tmp, (t, y)| {
        for (j, y) in y.chunks_mut(op).enumerate() {
            let plane = t * ppt + j;
            let c = plane % xs.c;
            let min = bn.is_some_and(|b| b.gamma[c] < 0.0);
            maxpool_values_plane(pool, ys, &x[plane * ip..(plane + 1) * ip], min, tmp, y);
            if relu {
                for v in y.iter_mut() {
                    *v = if *v > 0.0 { *v } else { 0.0 };
                }
            }
            if let Some(b) = &bn {
                let (mu, inv, g, beta) = (b.mean[c], invstd(b.var[c], b.s.eps), b.gamma[c], b.beta[c]);
                for v in y.iter_mut() {
                    *v = (*v - mu) * inv * g + beta;
                }
            }
        }
    });
}

simd_dispatch! {
    /// Window maxima (minima when `min`) of one plane; `tmp` is scratch.
    fn maxpool_values_plane(s: &MaxPool2dShape, ys: Shape4, x: &[f32], min: bool, tmp: &mut Vec<f32>, y: &mut [f32]) =
        maxpool_values_body
}

#[inline(always)]
pub(super) fn maxpool_values_body(
    s: &MaxPool2dShape,
    ys: Shape4,
    x: &[f32],
    min: bool,
    tmp: &mut Vec<f32>,
    y: &mut [f32],
) {
    if min {
        pool_values(s, ys, x, tmp, y, |a: f32, b: f32| if b < a { b } else { a });
    } else {
        pool_values(s, ys, x, tmp, y, |a: f32, b: f32| if b > a { b } else { a });
    }
}

/// Per output row: `pick` over the window rows, column by column (contiguous: vectorizes), then
/// over each window's columns.
#[inline(always)]
pub(super) fn pool_values(
    s: &MaxPool2dShape,
    ys: Shape4,
    x: &[f32],
    tmp: &mut Vec<f32>,
    y: &mut [f32],
    pick: impl Fn(f32, f32) -> f32 + Copy,
) {
    let (w, k, st) = (s.input.w, s.k, s.stride);
    let cols = (ys.w - 1) * st + k;
    let acc = grow(tmp, cols);
    for (oy, yr) in y.chunks_mut(ys.w).enumerate() {
        let r0 = oy * st * w;
        acc.copy_from_slice(&x[r0..r0 + cols]);
        for ky in 1..k {
            for (m, &v) in acc.iter_mut().zip(&x[r0 + ky * w..r0 + ky * w + cols]) {
                *m = pick(*m, v);
            }
        }
        for (ox, yv) in yr.iter_mut().enumerate() {
            *yv = acc[ox * st..ox * st + k].iter().fold(acc[ox * st], |a, &v| pick(a, v));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fused backward of `[ReLU ->] BatchNorm2d -> MaxPool2d` (the seed network's blocks).

/// The backward pass of `BatchNorm2d -> MaxPool2d`, optionally preceded by a ReLU, without
/// materializing the max-pool's input gradient (the largest tensor of the seed network):
///
/// - `dbeta[c] = sum dy_pool`, `dgamma[c] = sum dy_pool[o] * xhat[idx[o]]` (f64; each plane's
///   pooled outputs in order, the planes in sample order);
/// - `dx` = the batch norm's input gradient from the scattered max-pool gradient, times the ReLU
///   mask `x > 0` when `relu_before` (then `x`, the batch norm's input, is the ReLU's output).
///
/// `x`, `mean`, `var`, `gamma` are the batch norm's (shape `bn`, `bn.x == pool.input`), `idx` and
/// `dy_pool` the max-pool's (from its forward pass). Equals
/// `maxpool2d_bwd -> batchnorm2d_bwd_reduce -> batchnorm2d_bwd_input [-> relu_bwd]`: `dgamma` and
/// `dbeta` to f64 rounding (the terms are summed in window order instead of pixel order; with
/// overlapping windows the twin first adds the terms of one pixel in f32), `dx` bitwise given the
/// same `dgamma`, `dbeta`. Writes all of `dgamma`, `dbeta` and `dx`.
#[allow(clippy::too_many_arguments)]
pub fn maxpool2d_batchnorm2d_bwd_fast(
    pool: &MaxPool2dShape,
    bn: &BatchNorm2dShape,
    relu_before: bool,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    idx: &[u32],
    dy_pool: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dx: &mut [f32],
) {
    let (xs, ys) = maxpool_shapes(pool);
    bn_check(bn);
    assert!(bn.x == xs, "maxpool2d_batchnorm2d_bwd: batch norm {:?} vs max-pool input {:?}", bn.x, xs);
    let c_len = xs.c;
    check_len("batchnorm2d x", x.len(), xs.len());
    for (name, v) in [("mean", mean), ("var", var), ("gamma", gamma)] {
        check_len(&format!("batchnorm2d {name}"), v.len(), c_len);
    }
    check_len("maxpool2d idx", idx.len(), ys.len());
    check_len("maxpool2d dy", dy_pool.len(), ys.len());
    check_len("batchnorm2d dgamma", dgamma.len(), c_len);
    check_len("batchnorm2d dbeta", dbeta.len(), c_len);
    check_len("batchnorm2d dx", dx.len(), xs.len());
    let (ip, op) = (xs.plane(), ys.plane());
    // Pass 1: the parameter gradients from the pooled outputs only.
    let mut part = vec![(0f64, 0f64); xs.n * c_len];
    part.par_iter_mut().enumerate().with_min_len(planes_per_task(op.max(1))).for_each(|(plane, p)| {
        let c = plane % c_len;
        let (mu, inv) = (mean[c], invstd(var[c], bn.eps));
        let (xp, o) = (&x[plane * ip..(plane + 1) * ip], plane * op..(plane + 1) * op);
        let (mut a, mut b) = (0f64, 0f64);
        for (&i, &g) in idx[o.clone()].iter().zip(&dy_pool[o]) {
            let j = (i as usize).checked_sub(plane * ip).filter(|&j| j < ip);
            let j = j.unwrap_or_else(|| panic!("maxpool2d: index {i} is not in its plane (from maxpool2d_fwd?)"));
            a += g as f64;
            b += g as f64 * ((xp[j] - mu) * inv) as f64;
        }
        *p = (a, b);
    });
    finish_sums(xs.n, &part, dbeta, dgamma);
    // Pass 2: per plane, scatter the pooled gradient (in cache), then the input gradient.
    let ppt = planes_per_task(ip);
    let stats = (mean, var, gamma, &*dgamma, &*dbeta);
    dx.par_chunks_mut(ppt * ip).enumerate().for_each_init(Vec::new, |dyp, (t, dx)| {
        for (j, dx) in dx.chunks_mut(ip).enumerate() {
            let plane = t * ppt + j;
            let o = plane * op..(plane + 1) * op;
            let dyp = grow(dyp, ip);
            maxpool_bwd_plane(&idx[o.clone()], &dy_pool[o], plane * ip, dyp);
            bn_input_plane(bn, plane % c_len, &x[plane * ip..(plane + 1) * ip], dyp, stats, relu_before, dx);
        }
    });
}
