//! The permutation-invariant MSE of a two-electron localizer: the `net/pair_mse` kernel
//! against its CPU twin, and the twin's properties (invariance to the order of the two true points,
//! agreement with the plain MSE, ties, finite-difference gradient).

mod common;

use common::{assert_close, test_context, test_rng};
use emsim::net::loss::{MseParams, PairMseParams, mse_cpu, pair_mse_cpu, pair_mse_gpu};
use rand::RngExt;

fn params(n: usize, mean_over: u32, write_grad: bool) -> PairMseParams {
    PairMseParams { n: n as u32, mean_over, write_grad: write_grad as u32, _pad: 0 }
}

fn random(rng: &mut impl RngExt, len: usize, r: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-r..r)).collect()
}

/// The twin's `(mean loss, loss, dpred)`.
fn twin(p: &PairMseParams, pred: &[f32], target: &[f32]) -> (f64, Vec<f32>, Vec<f32>) {
    let n = p.n as usize;
    let (mut loss, mut dpred) = (vec![-12345.0f32; n], vec![-12345.0f32; 4 * n]);
    let mean = pair_mse_cpu(p, pred, target, &mut loss, &mut dpred);
    (mean, loss, dpred)
}

/// The target with each sample's two points swapped.
fn swap_points(t: &[f32]) -> Vec<f32> {
    t.chunks(4).flat_map(|c| [c[2], c[3], c[0], c[1]]).collect()
}

/// Sums of squares against the straight and the swapped target, per sample, in f64.
fn assignment_costs(pred: &[f32], target: &[f32]) -> Vec<(f64, f64)> {
    pred.chunks(4)
        .zip(target.chunks(4))
        .map(|(p, t)| {
            let sq = |a: f32, b: f32| (a as f64 - b as f64).powi(2);
            let s = sq(p[0], t[0]) + sq(p[1], t[1]) + sq(p[2], t[2]) + sq(p[3], t[3]);
            let ss = sq(p[0], t[2]) + sq(p[1], t[3]) + sq(p[2], t[0]) + sq(p[3], t[1]);
            (s, ss)
        })
        .collect()
}

/// Redraws (uniform in [-3, 3)) the predictions of every sample whose two assignment costs are
/// within `gap` of each other.
fn redraw_near_ties(rng: &mut impl RngExt, pred: &mut [f32], target: &mut [f32], gap: f64) {
    for (p, t) in pred.chunks_mut(4).zip(target.chunks_mut(4)) {
        let mut tries = 0;
        loop {
            let (s, ss) = assignment_costs(p, t)[0];
            if (s - ss).abs() > gap {
                break;
            }
            p.copy_from_slice(&random(rng, 4, 3.0));
            // |s - ss| = 2 |(p1 - p2) . (t1 - t2)|: when the target's two points nearly coincide
            // no prediction gets past the gap, so the target is redrawn too.
            tries += 1;
            if tries % 32 == 0 {
                t.copy_from_slice(&random(rng, 4, 3.0));
            }
        }
    }
}

/// GPU vs twin on random input, n = 1, 257 (not a multiple of the workgroup), 1000 (also on a
/// forced 2-D grid of workgroups), with and without the gradient. Tolerance atol 1e-6 + rtol 1e-5:
/// both sides do the same f32 subtractions, squares and sums in the same order, but the driver may
/// contract `s + e * e` into an fma (a few ulp). The assignment could then differ where the two
/// sums are within a few ulp of each other, so samples with |s - s_swapped| <= 1e-3 are redrawn
/// (exact ties are tested below); both assignments are checked to occur. Without `write_grad` the kernel leaves `dpred` alone (garbage stays).
#[test]
fn pair_mse_gpu_matches_twin() {
    let Some(mut ctx) = test_context() else { return };
    let mut rng = test_rng("pair_mse_gpu_matches_twin");
    for (n, grid2d) in [(1usize, false), (257, false), (1000, false), (1000, true)] {
        if grid2d {
            ctx.set_workgroups_per_dim(2); // 4 workgroups -> a 2 x 2 grid
        }
        let mut pred = random(&mut rng, 4 * n, 5.0);
        let mut target = random(&mut rng, 4 * n, 5.0);
        redraw_near_ties(&mut rng, &mut pred, &mut target, 1e-3);
        let p = params(n, 4 * n as u32, true);
        let (mean, loss, dpred) = twin(&p, &pred, &target);
        let (gl, gd) = pair_mse_gpu(&ctx, &p, &pred, &target).unwrap();
        assert_close(&gl, &loss, 1e-6, 1e-5);
        assert_close(&gd, &dpred, 1e-6, 1e-5);
        let mean_gpu = gl.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        assert!((mean_gpu - mean).abs() <= 1e-5 * mean, "n {n}: mean loss {mean_gpu} vs twin {mean}");
        if n > 1 {
            let swapped = assignment_costs(&pred, &target).iter().filter(|(s, ss)| ss < s).count();
            assert!(swapped > n / 4 && swapped < 3 * n / 4, "n {n}: {swapped} swapped assignments");
        }
        let (gl0, gd0) = pair_mse_gpu(&ctx, &params(n, 4 * n as u32, false), &pred, &target).unwrap();
        assert_close(&gl0, &loss, 1e-6, 1e-5);
        assert!(gd0.iter().all(|&v| v == -12345.0), "n {n}: dpred written without write_grad");
        let (_, loss0, dpred0) = twin(&params(n, 4 * n as u32, false), &pred, &target);
        assert_eq!(loss0, loss);
        assert!(dpred0.iter().all(|&v| v == -12345.0), "n {n}: twin wrote dpred without write_grad");
    }
}

/// Exact ties (`s == s_swapped`, integer-valued so that both sums are exact) take the straight
/// assignment, on the GPU and in the twin: pred (0,0,0,0) against points (1,0) and (-1,0) gives
/// loss 2/4 and gradient 2 (p - t) / mean_over = (-2, 0, 2, 0) / 8, not (2, 0, -2, 0) / 8.
#[test]
fn ties_take_the_straight_assignment() {
    let Some(ctx) = test_context() else { return };
    let pred = [0.0f32, 0.0, 0.0, 0.0, 1.0, 2.0, 1.0, 2.0];
    let target = [1.0f32, 0.0, -1.0, 0.0, 0.0, 2.0, 2.0, 2.0];
    let p = params(2, 8, true);
    let want_dpred = [-0.25f32, 0.0, 0.25, 0.0, 0.25, 0.0, -0.25, 0.0];
    let (mean, loss, dpred) = twin(&p, &pred, &target);
    assert_eq!(loss, vec![0.5, 0.5]);
    assert_eq!(dpred, want_dpred);
    assert_eq!(mean, 0.5);
    let (gl, gd) = pair_mse_gpu(&ctx, &p, &pred, &target).unwrap();
    assert_eq!(gl, vec![0.5, 0.5]);
    assert_eq!(gd, want_dpred);
}

/// Swapping the two true points of every sample changes neither the loss nor the gradient (twin,
/// exactly: the two sums trade places; GPU, within the twin tolerance), on random input with
/// near-ties redrawn (at an exact tie the straight assignment wins, so the gradient depends on the order).
#[test]
fn loss_is_invariant_to_the_order_of_the_points() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("pair_mse_swap");
    let n = 300;
    let mut pred = random(&mut rng, 4 * n, 3.0);
    let mut target = random(&mut rng, 4 * n, 3.0);
    redraw_near_ties(&mut rng, &mut pred, &mut target, 1e-3);
    let swapped = swap_points(&target);
    let p = params(n, 4 * n as u32, true);
    let (m1, l1, d1) = twin(&p, &pred, &target);
    let (m2, l2, d2) = twin(&p, &pred, &swapped);
    assert_eq!((m1, &l1, &d1), (m2, &l2, &d2));
    let (gl, gd) = pair_mse_gpu(&ctx, &p, &pred, &swapped).unwrap();
    assert_close(&gl, &l1, 1e-6, 1e-5);
    assert_close(&gd, &d1, 1e-6, 1e-5);
    // and the plain MSE is not invariant (the check above can fail)
    let mp = MseParams { n: n as u32, d: 4, mean_over: 4 * n as u32, write_grad: 0 };
    let plain = |t: &[f32]| mse_cpu(&mp, &pred, t, &mut vec![0.0; n], &mut []);
    assert_ne!(plain(&target), plain(&swapped));
}

/// Where the straight assignment is the closer one (predictions near their own point, the two
/// points far apart), the loss and gradient are exactly the plain MSE's (`net/mse`, d = 4, same
/// mean_over); where the swapped one is closer, they are the plain MSE against the swapped target.
#[test]
fn equals_plain_mse_when_the_assignment_is_clear() {
    let mut rng = test_rng("pair_mse_vs_mse");
    let n = 200;
    let mut target = vec![0.0f32; 4 * n];
    for t in target.chunks_mut(4) {
        // point 1 around (-3, 0), point 2 around (3, 0)
        t.copy_from_slice(&[
            -3.0 + rng.random_range(-0.5f32..0.5),
            rng.random_range(-0.5f32..0.5),
            3.0 + rng.random_range(-0.5f32..0.5),
            rng.random_range(-0.5f32..0.5),
        ]);
    }
    let near: Vec<f32> = target.iter().map(|&t| t + rng.random_range(-0.7f32..0.7)).collect();
    let swapped = swap_points(&target);
    for (pred, straight) in [(near.clone(), true), (swap_points(&near), false)] {
        let p = params(n, 4 * n as u32, true);
        let (mean, loss, dpred) = twin(&p, &pred, &target);
        let mp = MseParams { n: n as u32, d: 4, mean_over: 4 * n as u32, write_grad: 1 };
        let (mut ml, mut md) = (vec![0.0f32; n], vec![0.0f32; 4 * n]);
        let t = if straight { &target } else { &swapped };
        let mmean = mse_cpu(&mp, &pred, t, &mut ml, &mut md);
        assert_eq!(loss, ml, "straight {straight}: loss");
        assert_eq!(dpred, md, "straight {straight}: dpred");
        assert_eq!(mean, mmean);
        // against the other assignment the plain MSE is larger for every sample
        let (mut ol, mut od) = (vec![0.0f32; n], vec![0.0f32; 4 * n]);
        mse_cpu(&mp, &pred, if straight { &swapped } else { &target }, &mut ol, &mut od);
        assert!(ol.iter().zip(&loss).all(|(o, l)| o > l), "straight {straight}");
    }
}

/// Finite differences of the twin's loss, L = sum_i loss_i (mean_over = 4, so `dpred` is dL/dpred),
/// on random input with both assignments present, away from ties (|s - s_swapped| > 1, far more
/// than a step of eps can change it). Central differences are exact for a quadratic, so eps 1e-2
/// only trades f32 rounding of the loss (~4e-6 / 2e-2 = 2e-4 absolute); tol 1e-3 + 1e-2 |g|.
/// With mean_over = 4 n the gradient is that of the mean, n times smaller.
#[test]
fn gradient_matches_finite_differences() {
    let mut rng = test_rng("pair_mse_fd");
    let n = 40;
    let mut target = random(&mut rng, 4 * n, 3.0);
    let mut pred = random(&mut rng, 4 * n, 3.0);
    redraw_near_ties(&mut rng, &mut pred, &mut target, 1.0);
    let costs = assignment_costs(&pred, &target);
    let swapped = costs.iter().filter(|(s, ss)| ss < s).count();
    assert!(swapped > 0 && swapped < n, "{swapped} of {n} swapped: both assignments must be tested");
    let p = params(n, 4, true);
    let (_, _, g) = twin(&p, &pred, &target);
    let total = |x: &[f32]| twin(&p, x, &target).1.iter().map(|&v| v as f64).sum::<f64>();
    let eps = 1e-2f32;
    let mut worst = 0.0f64;
    for j in 0..4 * n {
        let mut x = pred.clone();
        x[j] = pred[j] + eps;
        let lp = total(&x);
        x[j] = pred[j] - eps;
        let lm = total(&x);
        let fd = (lp - lm) / (2.0 * eps as f64);
        let err = (fd - g[j] as f64).abs();
        let tol = 1e-3 + 1e-2 * (g[j] as f64).abs();
        assert!(err <= tol, "element {j}: dpred {} vs finite difference {fd} (tol {tol})", g[j]);
        worst = worst.max(err);
    }
    eprintln!("finite differences: max |dpred - fd| = {worst:e}");
    let (_, _, g_mean) = twin(&params(n, 4 * n as u32, true), &pred, &target);
    assert_close(&g_mean, &g.iter().map(|&v| v / n as f32).collect::<Vec<_>>(), 0.0, 1e-6);
}
