//! Max-pool, batch norm and dropout: every kernel against its CPU twin on fresh random input, and
//! finite-difference checks of the backward twins.
//!
//! Tolerances (GPU vs twin):
//! - maxpool2d_fwd: y and idx exactly (pure selection, same scan order).
//! - maxpool2d_bwd: exactly (the same f32 additions in the same order; no multiplications, so no
//!   FMA contraction can differ).
//! - dropout fwd/bwd: exactly (bit-identical integer RNG, one correctly rounded multiplication).
//! - batchnorm2d_stats: mean within 1e-5 * max|x|, var within 1e-4 * var + 1e-6 * max|x|^2. The GPU
//!   combines f32 moments over <= ~25 levels (4 Welford steps, an 8-level tree, the chunk fold, an
//!   8-level tree), each costing a few ULP of the data's magnitude; the twin is f64.
//! - batchnorm2d_bwd_reduce: within 1e-5 * (sum of |terms|) per channel: an f32 sum's rounding error
//!   is bounded by (levels) * 2^-24 * sum|terms| (~25 levels -> 1.5e-6), and the result itself can
//!   be small through cancellation, so a relative tolerance on the result would be wrong.
//! - batchnorm2d_fwd: atol 1e-5 + rtol 1e-5 (WGSL's sqrt and division may be off by a few ULP; y is
//!   O(1..10) here).
//! - batchnorm2d_bwd_input: within 2e-6 * |k| * (m|dy| + |dbeta| + |xhat dgamma|) + 1e-7 per element
//!   (~30 ULP of the largest term: the terms can cancel, so the result's own size is no scale).
//! - batchnorm2d_running: atol 1e-7 + rtol 1e-6 (two products and a sum; a driver may fuse them).
//!
//! Finite differences of the twins: L = sum(r * y) with random r, in f64 from the f32 outputs,
//! central differences with eps 1e-3 divided by the actual f32 step, tol = 1e-3 + 1e-2 * |analytic|.

mod common;

use common::{assert_bits_equal, assert_close, test_context, test_rng};
use emsim::net::Shape4;
use emsim::net::batchnorm2d::*;
use emsim::net::dropout::*;
use emsim::net::maxpool2d::*;
use rand::RngExt;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Normal};

// ---------------------------------------------------------------- helpers

fn randn(rng: &mut impl rand::Rng, n: usize, mean: f32, sd: f32) -> Vec<f32> {
    let d = Normal::new(mean, sd).unwrap();
    (0..n).map(|_| d.sample(rng)).collect()
}

/// `n` distinct values spaced 0.01 apart, shuffled: far from max-pool ties for eps = 1e-3.
fn distinct(rng: &mut impl rand::Rng, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.01 - 0.005 * n as f32).collect();
    v.shuffle(rng);
    v
}

fn dot(r: &[f32], y: &[f32]) -> f64 {
    r.iter().zip(y).map(|(&r, &y)| r as f64 * y as f64).sum()
}

/// Central difference of `f` with respect to `v[i]`, divided by the actual f32 step.
fn central_diff(v: &[f32], i: usize, eps: f32, f: &dyn Fn(&[f32]) -> f64) -> f64 {
    let (mut vp, mut vm) = (v.to_vec(), v.to_vec());
    vp[i] += eps;
    vm[i] -= eps;
    (f(&vp) - f(&vm)) / (vp[i] as f64 - vm[i] as f64)
}

/// Every element of `analytic` against the finite difference of `f`: |num - ana| <= 1e-3 + 1e-2 |ana|.
#[track_caller]
fn check_fd(what: &str, v: &[f32], analytic: &[f32], f: &dyn Fn(&[f32]) -> f64) {
    assert_eq!(v.len(), analytic.len(), "{what}: length");
    let mut worst = 0.0f64;
    for (i, &a) in analytic.iter().enumerate() {
        let num = central_diff(v, i, 1e-3, f);
        let ana = a as f64;
        let err = (num - ana).abs();
        let tol = 1e-3 + 1e-2 * ana.abs();
        assert!(err <= tol, "{what}[{i}]: analytic {ana}, finite difference {num}, |diff| {err} > {tol}");
        worst = worst.max(err / tol);
    }
    eprintln!("{what}: worst |fd - analytic| / tol = {worst:.3}");
}

/// `|gpu - cpu| <= tol[i]` for every element.
#[track_caller]
fn assert_within(what: &str, gpu: &[f32], cpu: &[f32], tol: &[f64]) {
    assert_eq!(tol.len(), cpu.len(), "{what}: tolerance length");
    common::assert_within(what, gpu, cpu, |i| tol[i]);
}

// ---------------------------------------------------------------- uniforms

/// The Rust uniforms have the size of their WGSL mirrors in every kernel that declares them.
#[test]
fn param_structs_match_wgsl() {
    use emsim::shaders::*;
    let cases: [(&Kernel, &str, usize); 10] = [
        (&NET_MAXPOOL2D_FWD, "MaxPool2dParams", size_of::<MaxPool2dParams>()),
        (&NET_MAXPOOL2D_BWD, "MaxPool2dParams", size_of::<MaxPool2dParams>()),
        (&NET_BATCHNORM2D_STATS_PARTIAL, "BatchNorm2dParams", size_of::<BatchNorm2dParams>()),
        (&NET_BATCHNORM2D_STATS, "BatchNorm2dParams", size_of::<BatchNorm2dParams>()),
        (&NET_BATCHNORM2D_FWD, "BatchNorm2dParams", size_of::<BatchNorm2dParams>()),
        (&NET_BATCHNORM2D_RUNNING, "BatchNorm2dParams", size_of::<BatchNorm2dParams>()),
        (&NET_BATCHNORM2D_BWD_REDUCE_PARTIAL, "BatchNorm2dParams", size_of::<BatchNorm2dParams>()),
        (&NET_BATCHNORM2D_BWD_REDUCE, "BatchNorm2dParams", size_of::<BatchNorm2dParams>()),
        (&NET_BATCHNORM2D_BWD_INPUT, "BatchNorm2dParams", size_of::<BatchNorm2dParams>()),
        (&NET_DROPOUT, "DropoutParams", size_of::<DropoutParams>()),
    ];
    for (k, name, size) in cases {
        assert!(ALL.iter().any(|a| a.name == k.name), "{} is not in shaders::ALL", k.name);
        let module = naga::front::wgsl::parse_str(k.source).unwrap_or_else(|e| panic!("{}: {e}", k.name));
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (handle, _) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{}: no struct {name}", k.name));
        assert_eq!(layouter[handle].size as usize, size, "{}: {name}", k.name);
    }
}

// ---------------------------------------------------------------- max-pool

/// Shapes: size 1, PyTorch's default stride = k with a floor-mode remainder, overlapping windows
/// (stride < k), gaps (stride > k), and odd sizes that are not multiples of 256.
fn maxpool_cases(rng: &mut impl rand::Rng) -> Vec<MaxPool2dShape> {
    vec![
        MaxPool2dShape::new(Shape4::new(1, 1, 1, 1), 1),
        MaxPool2dShape::new(Shape4::new(2, 3, 7, 5), 2),
        MaxPool2dShape::new(Shape4::new(1, 1, 2, 2), 2),
        MaxPool2dShape::with_stride(Shape4::new(3, 2, 9, 8), 3, 2),
        MaxPool2dShape::with_stride(Shape4::new(1, 3, 6, 7), 3, 1),
        MaxPool2dShape::with_stride(Shape4::new(2, 1, 10, 11), 2, 3),
        MaxPool2dShape::new(
            Shape4::new(rng.random_range(1..4), rng.random_range(1..5), 40, rng.random_range(2..41)),
            2,
        ),
    ]
}

#[test]
fn maxpool_fwd_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("maxpool_fwd_matches_twin");
    for s in maxpool_cases(&mut rng) {
        // Continuous values, then small integers (many ties: the first in window order must win).
        for ties in [false, true] {
            let x: Vec<f32> = if ties {
                (0..s.input.len()).map(|_| rng.random_range(0..3) as f32).collect()
            } else {
                randn(&mut rng, s.input.len(), 0.0, 1.0)
            };
            let n_out = s.output().len();
            let (mut y, mut idx) = (vec![-12345.0; n_out], vec![u32::MAX; n_out]);
            maxpool2d_fwd_cpu(&s, &x, &mut y, &mut idx);
            let (gy, gidx) = maxpool2d_fwd_gpu(&ctx, &s, &x).unwrap();
            assert_bits_equal(&format!("{s:?} ties {ties}: y"), &gy, &y);
            assert_eq!(gidx, idx, "{s:?} ties {ties}: idx");
            // The twin itself: idx points at y, inside the window, at the first maximum.
            for (o, (&i, &v)) in idx.iter().zip(&y).enumerate() {
                assert_eq!(x[i as usize], v, "{s:?}: idx[{o}]");
            }
        }
    }
}

#[test]
fn maxpool_bwd_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("maxpool_bwd_matches_twin");
    for s in maxpool_cases(&mut rng) {
        // Ties included, so that overlapping windows often pick the same element and gradients add.
        let x: Vec<f32> = (0..s.input.len()).map(|_| rng.random_range(0..4) as f32).collect();
        let n_out = s.output().len();
        let (mut y, mut idx) = (vec![0.0; n_out], vec![0; n_out]);
        maxpool2d_fwd_cpu(&s, &x, &mut y, &mut idx);
        let dy = randn(&mut rng, n_out, 0.0, 1.0);
        let mut dx = vec![-12345.0; s.input.len()];
        maxpool2d_bwd_cpu(&s, &idx, &dy, &mut dx);
        let gdx = maxpool2d_bwd_gpu(&ctx, &s, &idx, &dy).unwrap();
        assert_bits_equal(&format!("{s:?}: dx"), &gdx, &dx);
        // The twin against the scatter form (dx[idx[o]] += dy[o] in o order: the same terms in
        // the same order as the gather, so the same bits).
        let mut scatter = vec![0.0f32; s.input.len()];
        for o in 0..n_out {
            scatter[idx[o] as usize] += dy[o];
        }
        assert_bits_equal(&format!("{s:?}: twin vs scatter"), &dx, &scatter);
    }
}

#[test]
fn maxpool_bwd_twin_matches_finite_differences() {
    let mut rng = test_rng("maxpool_bwd_twin_matches_finite_differences");
    for s in [
        MaxPool2dShape::new(Shape4::new(2, 2, 5, 4), 2),
        MaxPool2dShape::with_stride(Shape4::new(1, 2, 5, 6), 3, 2),
        MaxPool2dShape::with_stride(Shape4::new(1, 1, 5, 5), 2, 1),
    ] {
        let x = distinct(&mut rng, s.input.len());
        let n_out = s.output().len();
        let r = randn(&mut rng, n_out, 0.0, 1.0);
        let loss = |x: &[f32]| {
            let (mut y, mut idx) = (vec![0.0; n_out], vec![0; n_out]);
            maxpool2d_fwd_cpu(&s, x, &mut y, &mut idx);
            dot(&r, &y)
        };
        let (mut y, mut idx) = (vec![0.0; n_out], vec![0; n_out]);
        maxpool2d_fwd_cpu(&s, &x, &mut y, &mut idx);
        let mut dx = vec![-12345.0; s.input.len()];
        maxpool2d_bwd_cpu(&s, &idx, &r, &mut dx);
        check_fd(&format!("maxpool {s:?} dx"), &x, &dx, &loss);
    }
}

// ---------------------------------------------------------------- batch norm

/// Shapes: size 1, odd planes, several chunks with a ragged last one, and more than 256 chunks per
/// channel (so that the stage-2 fold loops).
fn batchnorm_cases(rng: &mut impl rand::Rng) -> Vec<BatchNorm2dShape> {
    vec![
        BatchNorm2dShape::new(Shape4::new(1, 1, 1, 1)),
        BatchNorm2dShape::new(Shape4::new(2, 3, 5, 7)),
        BatchNorm2dShape::new(Shape4::new(1, 2, 1, BN_CHUNK + 6)),
        BatchNorm2dShape::new(Shape4::new(3, 2, 23, 23)),
        BatchNorm2dShape::new(Shape4::new(rng.random_range(1..6), rng.random_range(1..5), 40, 40)),
        BatchNorm2dShape { x: Shape4::new(3, 1, 300, 330), eps: 1e-3 },
    ]
}

#[test]
fn batchnorm_stats_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("batchnorm_stats_matches_twin");
    for s in batchnorm_cases(&mut rng) {
        let (offset, sd) = (rng.random_range(-5.0..5.0f32), rng.random_range(0.1..3.0f32));
        let x = randn(&mut rng, s.x.len(), offset, sd);
        let c = s.x.c;
        let (mut mean, mut var) = (vec![-12345.0; c], vec![-12345.0; c]);
        batchnorm2d_stats_cpu(&s, &x, &mut mean, &mut var);
        let (gmean, gvar) = batchnorm2d_stats_gpu(&ctx, &s, &x).unwrap();
        let xmax = x.iter().fold(0.0f32, |a, &v| a.max(v.abs())) as f64;
        eprintln!("{s:?} ({} chunks/channel)", s.n_chunks());
        assert_within("mean", &gmean, &mean, &vec![1e-5 * xmax; c]);
        let vtol: Vec<f64> = var.iter().map(|&v| 1e-4 * v as f64 + 1e-6 * xmax * xmax).collect();
        assert_within("var", &gvar, &var, &vtol);
        // The twin itself against a plain f64 computation of channel 0.
        let ch0: Vec<f64> = (0..s.x.n)
            .flat_map(|n| (0..s.x.plane()).map(move |p| (n, p)))
            .map(|(n, p)| x[s.x.index(n, 0, 0, 0) + p] as f64)
            .collect();
        let mu = ch0.iter().sum::<f64>() / ch0.len() as f64;
        let v = ch0.iter().map(|t| (t - mu) * (t - mu)).sum::<f64>() / ch0.len() as f64;
        assert!((mean[0] as f64 - mu).abs() <= 1e-6 * mu.abs().max(1.0), "twin mean {} vs {mu}", mean[0]);
        assert!((var[0] as f64 - v).abs() <= 1e-6 * v.max(1e-6), "twin var {} vs {v}", var[0]);
    }
}

/// Random per-channel parameters: mean, var (one channel with var 0, where eps matters), gamma, beta.
fn bn_params(rng: &mut impl rand::Rng, c: usize) -> [Vec<f32>; 4] {
    let mean = randn(rng, c, 0.0, 2.0);
    let mut var: Vec<f32> = (0..c).map(|_| rng.random_range(0.05..4.0)).collect();
    if c > 1 {
        var[c - 1] = 0.0;
    }
    let gamma = randn(rng, c, 1.0, 0.5);
    let beta = randn(rng, c, 0.0, 1.0);
    [mean, var, gamma, beta]
}

#[test]
fn batchnorm_fwd_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("batchnorm_fwd_matches_twin");
    for s in batchnorm_cases(&mut rng).into_iter().take(5) {
        let c = s.x.c;
        let [mean, var, gamma, beta] = bn_params(&mut rng, c);
        // x near its channel's mean (so that the var-0 channel with eps = 1e-5 stays O(10)).
        let mut x = randn(&mut rng, s.x.len(), 0.0, 1.0);
        for (i, v) in x.iter_mut().enumerate() {
            let ch = (i / s.x.plane()) % c;
            *v = mean[ch] + *v * var[ch].sqrt().max(0.01);
        }
        let mut y = vec![-12345.0; s.x.len()];
        batchnorm2d_fwd_cpu(&s, &x, &mean, &var, &gamma, &beta, &mut y);
        let gy = batchnorm2d_fwd_gpu(&ctx, &s, &x, &mean, &var, &gamma, &beta).unwrap();
        assert_close(&gy, &y, 1e-5, 1e-5);
    }
}

#[test]
fn batchnorm_running_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("batchnorm_running_matches_twin");
    for (s, momentum) in [
        (BatchNorm2dShape::new(Shape4::new(1, 1, 1, 2)), 0.1),
        (BatchNorm2dShape::new(Shape4::new(4, 16, 40, 40)), 0.1),
        (BatchNorm2dShape::new(Shape4::new(2, 300, 3, 3)), rng.random_range(0.0..1.0)),
    ] {
        let c = s.x.c;
        let [mean, var, ..] = bn_params(&mut rng, c);
        let rm0 = randn(&mut rng, c, 0.0, 1.0);
        let rv0: Vec<f32> = (0..c).map(|_| rng.random_range(0.1..2.0)).collect();
        let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
        batchnorm2d_running_cpu(&s, momentum, &mean, &var, &mut rm, &mut rv);
        let (grm, grv) = batchnorm2d_running_gpu(&ctx, &s, momentum, &mean, &var, &rm0, &rv0).unwrap();
        assert_close(&grm, &rm, 1e-7, 1e-6);
        assert_close(&grv, &rv, 1e-7, 1e-6);
        // The twin itself, in f64: unbiased variance in the running average.
        let m = s.m() as f64;
        for ch in 0..c {
            let mom = momentum as f64;
            let em = (1.0 - mom) * rm0[ch] as f64 + mom * mean[ch] as f64;
            let ev = (1.0 - mom) * rv0[ch] as f64 + mom * var[ch] as f64 * m / (m - 1.0);
            assert!((rm[ch] as f64 - em).abs() <= 1e-6 * (1.0 + em.abs()), "running mean {ch}: {} vs {em}", rm[ch]);
            assert!((rv[ch] as f64 - ev).abs() <= 1e-6 * (1.0 + ev.abs()), "running var {ch}: {} vs {ev}", rv[ch]);
        }
    }
}

#[test]
fn batchnorm_bwd_reduce_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("batchnorm_bwd_reduce_matches_twin");
    for s in batchnorm_cases(&mut rng) {
        let c = s.x.c;
        let offset = rng.random_range(-2.0..2.0);
        let x = randn(&mut rng, s.x.len(), offset, 1.5);
        let dy = randn(&mut rng, s.x.len(), 0.1, 1.0);
        let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
        batchnorm2d_stats_cpu(&s, &x, &mut mean, &mut var);
        let (mut dgamma, mut dbeta) = (vec![-12345.0; c], vec![-12345.0; c]);
        batchnorm2d_bwd_reduce_cpu(&s, &x, &mean, &var, &dy, &mut dgamma, &mut dbeta);
        let (gdgamma, gdbeta) = batchnorm2d_bwd_reduce_gpu(&ctx, &s, &x, &mean, &var, &dy).unwrap();
        // Scale: the sum of the absolute terms of each channel.
        let (mut sg, mut sb) = (vec![0.0f64; c], vec![0.0f64; c]);
        for (i, (&x, &g)) in x.iter().zip(&dy).enumerate() {
            let ch = (i / s.x.plane()) % c;
            sb[ch] += g.abs() as f64;
            sg[ch] += (g * (x - mean[ch]) * invstd(var[ch], s.eps)).abs() as f64;
        }
        eprintln!("{s:?}");
        assert_within("dgamma", &gdgamma, &dgamma, &sg.iter().map(|v| 1e-5 * v + 1e-7).collect::<Vec<_>>());
        assert_within("dbeta", &gdbeta, &dbeta, &sb.iter().map(|v| 1e-5 * v + 1e-7).collect::<Vec<_>>());
    }
}

#[test]
fn batchnorm_bwd_input_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("batchnorm_bwd_input_matches_twin");
    for s in batchnorm_cases(&mut rng).into_iter().take(5) {
        let c = s.x.c;
        let [mean, var, gamma, _] = bn_params(&mut rng, c);
        let var: Vec<f32> = var.iter().map(|v| v.max(0.05)).collect();
        let x = randn(&mut rng, s.x.len(), 0.0, 2.0);
        let dy = randn(&mut rng, s.x.len(), 0.0, 1.0);
        let dgamma = randn(&mut rng, c, 0.0, 3.0);
        let dbeta = randn(&mut rng, c, 0.0, 3.0);
        let mut dx = vec![-12345.0; s.x.len()];
        batchnorm2d_bwd_input_cpu(&s, &x, &mean, &var, &gamma, &dgamma, &dbeta, &dy, &mut dx);
        let gdx = batchnorm2d_bwd_input_gpu(&ctx, &s, &x, &mean, &var, &gamma, &dgamma, &dbeta, &dy).unwrap();
        let mf = s.m() as f64;
        let tol: Vec<f64> = (0..s.x.len())
            .map(|i| {
                let ch = (i / s.x.plane()) % c;
                let inv = invstd(var[ch], s.eps) as f64;
                let xhat = (x[i] - mean[ch]) as f64 * inv;
                let k = (gamma[ch] as f64 * inv / mf).abs();
                2e-6 * k * (mf * dy[i].abs() as f64 + dbeta[ch].abs() as f64 + (xhat * dgamma[ch] as f64).abs()) + 1e-7
            })
            .collect();
        assert_within(&format!("{s:?} dx"), &gdx, &dx, &tol);
    }
}

/// Train-mode forward of the twins: y = fwd(x, stats(x)).
fn bn_train_fwd(s: &BatchNorm2dShape, x: &[f32], gamma: &[f32], beta: &[f32]) -> Vec<f32> {
    let c = s.x.c;
    let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
    batchnorm2d_stats_cpu(s, x, &mut mean, &mut var);
    let mut y = vec![0.0; s.x.len()];
    batchnorm2d_fwd_cpu(s, x, &mean, &var, gamma, beta, &mut y);
    y
}

/// The full train-mode backward (bwd_reduce + bwd_input) against finite differences of
/// L = sum(r * fwd(x, stats(x))): the gradient flows through the mean and the variance.
#[test]
fn batchnorm_train_backward_matches_finite_differences() {
    let mut rng = test_rng("batchnorm_train_backward_matches_finite_differences");
    for s in [
        BatchNorm2dShape::new(Shape4::new(2, 3, 3, 4)),
        BatchNorm2dShape::new(Shape4::new(5, 2, 1, 1)),
        BatchNorm2dShape { x: Shape4::new(1, 2, 3, 3), eps: 0.1 },
    ] {
        let c = s.x.c;
        let x = randn(&mut rng, s.x.len(), 0.5, 1.0);
        let gamma = randn(&mut rng, c, 1.0, 0.5);
        let beta = randn(&mut rng, c, 0.0, 1.0);
        let r = randn(&mut rng, s.x.len(), 0.0, 1.0);

        let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
        batchnorm2d_stats_cpu(&s, &x, &mut mean, &mut var);
        let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
        batchnorm2d_bwd_reduce_cpu(&s, &x, &mean, &var, &r, &mut dgamma, &mut dbeta);
        let mut dx = vec![-12345.0; s.x.len()];
        batchnorm2d_bwd_input_cpu(&s, &x, &mean, &var, &gamma, &dgamma, &dbeta, &r, &mut dx);

        let name = format!("{s:?}");
        check_fd(&format!("{name} dx"), &x, &dx, &|x| dot(&r, &bn_train_fwd(&s, x, &gamma, &beta)));
        check_fd(&format!("{name} dgamma"), &gamma, &dgamma, &|g| dot(&r, &bn_train_fwd(&s, &x, g, &beta)));
        check_fd(&format!("{name} dbeta"), &beta, &dbeta, &|b| dot(&r, &bn_train_fwd(&s, &x, &gamma, b)));
    }
}

/// One training step of the layer on the GPU with persistent buffers, as the executor records it
/// (stats -> fwd -> running -> bwd_reduce -> bwd_input in one encoder, scratch shared), against
/// the twins chained the same way.
#[test]
fn batchnorm_train_step_chain_matches_twins() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("batchnorm_train_step_chain_matches_twins");
    let s = BatchNorm2dShape::new(Shape4::new(3, 4, 19, 21));
    let (c, n) = (s.x.c, s.x.len());
    let x = randn(&mut rng, n, 1.0, 2.0);
    let dy = randn(&mut rng, n, 0.0, 1.0);
    let [_, _, gamma, beta] = bn_params(&mut rng, c);
    let (rm0, rv0) = (vec![0.0f32; c], vec![1.0f32; c]);

    let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
    batchnorm2d_stats_cpu(&s, &x, &mut mean, &mut var);
    let mut y = vec![0.0; n];
    batchnorm2d_fwd_cpu(&s, &x, &mean, &var, &gamma, &beta, &mut y);
    let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
    batchnorm2d_running_cpu(&s, 0.1, &mean, &var, &mut rm, &mut rv);
    let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
    batchnorm2d_bwd_reduce_cpu(&s, &x, &mean, &var, &dy, &mut dgamma, &mut dbeta);
    let mut dx = vec![0.0; n];
    batchnorm2d_bwd_input_cpu(&s, &x, &mean, &var, &gamma, &dgamma, &dbeta, &dy, &mut dx);

    let up = |label: &str, v: &[f32]| ctx.upload(label, v).unwrap();
    let junk = |label: &str, len: usize| ctx.upload(label, &vec![-12345.0f32; len]).unwrap();
    let (xb, dyb, gb, bb) = (up("x", &x), up("dy", &dy), up("gamma", &gamma), up("beta", &beta));
    let (rmb, rvb) = (up("rm", &rm0), up("rv", &rv0));
    let (mb, vb, yb) = (junk("mean", c), junk("var", c), junk("y", n));
    let (dgb, dbb, dxb) = (junk("dgamma", c), junk("dbeta", c), junk("dx", n));
    let scratch_len = batchnorm2d_stats_scratch_len(&s).max(batchnorm2d_bwd_reduce_scratch_len(&s));
    let scratch = junk("scratch", scratch_len);
    let mut enc = ctx.encoder("bn step");
    batchnorm2d_stats_record(&ctx, &mut enc, &s, &xb, &mb, &vb, &scratch).unwrap();
    batchnorm2d_fwd_record(&ctx, &mut enc, &s, &xb, &mb, &vb, &gb, &bb, &yb).unwrap();
    batchnorm2d_running_record(&ctx, &mut enc, &s, 0.1, &mb, &vb, &rmb, &rvb).unwrap();
    batchnorm2d_bwd_reduce_record(&ctx, &mut enc, &s, &xb, &mb, &vb, &dyb, &dgb, &dbb, &scratch).unwrap();
    batchnorm2d_bwd_input_record(&ctx, &mut enc, &s, &xb, &mb, &vb, &gb, &dgb, &dbb, &dyb, &dxb).unwrap();
    let rbs: Vec<_> = [(&yb, n), (&rmb, c), (&rvb, c), (&dgb, c), (&dbb, c), (&dxb, n)]
        .map(|(b, l)| ctx.readback(&mut enc, b, l as u64 * 4))
        .into();
    ctx.submit_and_wait(enc).unwrap();
    let out: Vec<Vec<f32>> = rbs.into_iter().map(|r| r.read(&ctx).unwrap()).collect();
    // Loose tolerances: errors of the GPU statistics propagate through every later kernel.
    assert_close(&out[0], &y, 1e-4, 1e-4);
    assert_close(&out[1], &rm, 1e-5, 1e-4);
    assert_close(&out[2], &rv, 1e-5, 1e-4);
    let m = s.m() as f32;
    assert_close(&out[3], &dgamma, 1e-5 * m, 1e-4);
    assert_close(&out[4], &dbeta, 1e-5 * m, 1e-4);
    assert_close(&out[5], &dx, 1e-4, 1e-3);
}

// ---------------------------------------------------------------- dropout

#[test]
fn dropout_matches_twin_exactly() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("dropout_matches_twin_exactly");
    for &n in &[1usize, 3, 4, 5, 257, 1023, 4099] {
        for &p in &[0.0f32, 0.1, 0.5, 0.9, 1.0] {
            let c = DropoutCfg {
                n,
                p,
                seed: rng.random(),
                step: rng.random::<u64>() >> rng.random_range(0..64),
                layer: rng.random_range(0..1 << 24),
            };
            let x = randn(&mut rng, n, 0.0, 1.0);
            let mut y = vec![-12345.0; n];
            dropout_fwd_cpu(&c, &x, &mut y);
            let gy = dropout_fwd_gpu(&ctx, &c, &x).unwrap();
            assert_bits_equal(&format!("{c:?} y"), &gy, &y);
            // The mask itself, from x = 1: scale where kept, 0 where dropped.
            let ones = vec![1.0f32; n];
            let gmask = dropout_fwd_gpu(&ctx, &c, &ones).unwrap();
            for (i, &g) in gmask.iter().enumerate().take(n) {
                let expect = if c.keeps(i) { c.scale() } else { 0.0 };
                assert!(g == expect, "{c:?}: element {i}: gpu {g} expected {expect}");
            }
            if p == 0.0 {
                assert_bits_equal("p = 0 is the identity", &gy, &x);
            }
            // Backward: the same mask, regenerated.
            let dy = randn(&mut rng, n, 0.0, 1.0);
            let mut dx = vec![-12345.0; n];
            dropout_bwd_cpu(&c, &dy, &mut dx);
            let gdx = dropout_bwd_gpu(&ctx, &c, &dy).unwrap();
            assert_bits_equal(&format!("{c:?} dx"), &gdx, &dx);
            for i in 0..n {
                assert_eq!(dx[i] == 0.0, y[i] == 0.0, "{c:?}: forward and backward masks differ at {i}");
            }
        }
    }
}

/// Kept fraction ~ 1 - p and E[y] ~ x (inverted dropout is unbiased), on the GPU's output.
#[test]
fn dropout_keep_fraction_is_one_minus_p() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("dropout_keep_fraction_is_one_minus_p");
    let n = 200_003;
    for p in [0.1f32, 0.3, 0.5] {
        let c = DropoutCfg { n, p, seed: rng.random(), step: rng.random_range(0..1000), layer: rng.random_range(0..8) };
        let y = dropout_fwd_gpu(&ctx, &c, &vec![1.0f32; n]).unwrap();
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        let sigma = (p as f64 * (1.0 - p as f64) / n as f64).sqrt();
        assert!((kept - (1.0 - p as f64)).abs() < 5.0 * sigma, "p {p}: kept fraction {kept}, sigma {sigma}");
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let sigma_mean = sigma / (1.0 - p as f64);
        assert!((mean - 1.0).abs() < 5.0 * sigma_mean, "p {p}: mean of y {mean}");
        // Neighbouring elements and the same element at the next step are independent draws.
        let next = DropoutCfg { step: c.step + 1, ..c };
        let both = (0..n).filter(|&i| c.keeps(i) && next.keeps(i)).count() as f64 / n as f64;
        let q = (1.0 - p as f64).powi(2);
        assert!((both - q).abs() < 5.0 * (q * (1.0 - q) / n as f64).sqrt(), "p {p}: kept twice {both}, expected {q}");
    }
}

#[test]
fn dropout_bwd_twin_matches_finite_differences() {
    let mut rng = test_rng("dropout_bwd_twin_matches_finite_differences");
    let c = DropoutCfg { n: 37, p: 0.4, seed: rng.random(), step: 5, layer: 1 };
    let x = randn(&mut rng, c.n, 0.0, 1.0);
    let r = randn(&mut rng, c.n, 0.0, 1.0);
    let mut dx = vec![-12345.0; c.n];
    dropout_bwd_cpu(&c, &r, &mut dx);
    assert!(dx.contains(&0.0) && dx.iter().any(|&v| v != 0.0), "mask all one way: {dx:?}");
    check_fd("dropout dx", &x, &dx, &|x| {
        let mut y = vec![0.0; c.n];
        dropout_fwd_cpu(&c, x, &mut y);
        dot(&r, &y)
    });
}

// ---------------------------------------------------------------- 2-D dispatch grids

/// With the workgroups per dimension capped below each dispatch's workgroup count, every kernel
/// runs on a 2-D grid with excess workgroups (and the workgroup-per-chunk reductions must compute
/// their group index from it).
#[test]
fn kernels_on_2d_grids_match_twins() {
    let Some(mut ctx) = test_context() else { return };
    let mut rng = test_rng("kernels_on_2d_grids_match_twins");

    // 9 output and 39 input workgroups, at most 7 per dimension.
    ctx.set_workgroups_per_dim(7);
    let s = MaxPool2dShape::with_stride(Shape4::new(2, 3, 41, 40), 3, 2);
    let x = randn(&mut rng, s.input.len(), 0.0, 1.0);
    let n_out = s.output().len();
    let (mut y, mut idx) = (vec![0.0; n_out], vec![0; n_out]);
    maxpool2d_fwd_cpu(&s, &x, &mut y, &mut idx);
    let (gy, gidx) = maxpool2d_fwd_gpu(&ctx, &s, &x).unwrap();
    assert_bits_equal("maxpool y", &gy, &y);
    assert_eq!(gidx, idx);
    let dy = randn(&mut rng, n_out, 0.0, 1.0);
    let mut dx = vec![0.0; s.input.len()];
    maxpool2d_bwd_cpu(&s, &idx, &dy, &mut dx);
    assert_bits_equal("maxpool dx", &maxpool2d_bwd_gpu(&ctx, &s, &idx, &dy).unwrap(), &dx);

    // 5 channels x 3 chunks = 15 stage-1 workgroups and 5 stage-2 ones, at most 4 per dimension.
    ctx.set_workgroups_per_dim(4);
    let s = BatchNorm2dShape::new(Shape4::new(2, 5, 31, 40));
    assert_eq!(s.x.c * s.n_chunks(), 15);
    let c = s.x.c;
    let x = randn(&mut rng, s.x.len(), 2.0, 1.0);
    let dy = randn(&mut rng, s.x.len(), 0.0, 1.0);
    let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
    batchnorm2d_stats_cpu(&s, &x, &mut mean, &mut var);
    let (gmean, gvar) = batchnorm2d_stats_gpu(&ctx, &s, &x).unwrap();
    assert_close(&gmean, &mean, 1e-5, 1e-5);
    assert_close(&gvar, &var, 1e-5, 1e-4);
    let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
    batchnorm2d_bwd_reduce_cpu(&s, &x, &mean, &var, &dy, &mut dgamma, &mut dbeta);
    let (gdgamma, gdbeta) = batchnorm2d_bwd_reduce_gpu(&ctx, &s, &x, &mean, &var, &dy).unwrap();
    let atol = 1e-5 * s.m() as f32; // sum of |terms| is below ~m for these inputs
    assert_close(&gdgamma, &dgamma, atol, 0.0);
    assert_close(&gdbeta, &dbeta, atol, 0.0);
    // 49 workgroups, at most 8 per dimension.
    ctx.set_workgroups_per_dim(8);
    let [_, _, gamma, beta] = bn_params(&mut rng, c);
    let mut y = vec![0.0; s.x.len()];
    batchnorm2d_fwd_cpu(&s, &x, &mean, &var, &gamma, &beta, &mut y);
    assert_close(&batchnorm2d_fwd_gpu(&ctx, &s, &x, &mean, &var, &gamma, &beta).unwrap(), &y, 1e-5, 1e-5);

    // 1251 invocations = 5 workgroups, at most 3 per dimension.
    ctx.set_workgroups_per_dim(3);
    let c = DropoutCfg { n: 5001, p: 0.5, seed: 11, step: 1 << 40, layer: 3 };
    let x = randn(&mut rng, c.n, 0.0, 1.0);
    let mut y = vec![0.0; c.n];
    dropout_fwd_cpu(&c, &x, &mut y);
    assert_bits_equal("dropout y", &dropout_fwd_gpu(&ctx, &c, &x).unwrap(), &y);
}
