//! The fast CPU layers (`emsim::net::cpu_fast`) against their plain twins, on fresh random input
//! (the seed is printed; replay with `EMSIM_TEST_SEED`), the whole network's CPU passes
//! (`Model::forward_cpu` / `backward_cpu`) against the same passes built from the twins, and the
//! parallel `make_batch_cpu` against the serial version it replaced. CPU only.
//!
//! Tolerances:
//! - conv2d / linear (im2col + SGEMM): `|fast - twin| <= 1e-4 * scale` per element, where `scale`
//!   is the element's sum of `|terms|`, computed by running the twin on `|inputs|`. Both sum in f32
//!   (the twins' batch sums in f64) in different orders; each is within `~K u scale` of the exact
//!   value (`u = 2^-24`, K terms per f32 sum, K <= a few thousand here), far inside 1e-4.
//! - ReLU, dropout, max pooling, the batch-norm forward and input gradient: bitwise equal (each
//!   element is the twin's expression).
//! - batch-norm statistics and parameter gradients (f64 sums in another order): one f32 ulp plus
//!   1e-12 of the sum of `|terms|` (see `batchnorm2d_fast_matches_twin`).
//! - the whole network: per tensor, 1e-4 of its largest value (see `model_passes_match_the_twins`).
//!
//! An indexing error, a missing write (outputs are pre-filled with garbage) or a NaN fails. Also:
//! results are bitwise identical in rayon pools of 1, 2 (and 3) threads, and `#[ignore]`d timings
//! (run with `cargo test --release --test net_cpu_fast -- --ignored --nocapture`).

mod common;

use common::{assert_bits_equal, test_rng};
use emsim::net::Shape4;
use emsim::net::batchnorm2d::*;
use emsim::net::conv2d::*;
use emsim::net::cpu_fast::*;
use emsim::net::data::{Batch, LibraryArrays, MakeBatchParams, SampleSpec, grid_label, make_batch_cpu};
use emsim::net::dropout::{DropoutCfg, dropout_bwd_cpu, dropout_fwd_cpu};
use emsim::net::linear::*;
use emsim::net::maxpool2d::{MaxPool2dShape, maxpool2d_bwd_cpu, maxpool2d_fwd_cpu};
use emsim::net::model::{LayerSpec, Model, ModelConfig};
use emsim::net::relu::{relu_bwd_cpu, relu_fwd_cpu};
use rand::RngExt;

const GARBAGE: f32 = -12345.0;
const REL: f64 = 1e-4;

fn uniform(rng: &mut impl rand::Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// `|fast - twin| <= REL * scale + 1e-30` per element.
#[track_caller]
fn assert_within(what: &str, fast: &[f32], twin: &[f32], scale: &[f32]) {
    assert_eq!(scale.len(), twin.len(), "{what}: scale length");
    common::assert_within(what, fast, twin, |i| REL * scale[i] as f64 + 1e-30);
}

/// Named convolutions for a batch of `n`: the seed network's three, the fast preset's two, odd ones.
fn conv_shapes(n: usize) -> Vec<(&'static str, Conv2dShape)> {
    let c = |c, h, w, o, kh, kw, pad, stride| Conv2dShape::new(Shape4::new(n, c, h, w), o, kh, kw, pad, stride);
    vec![
        ("seed conv1 1->16 k4 p1 41x41", c(1, 41, 41, 16, 4, 4, 1, 1)),
        ("seed conv2 16->32 k3 p1 10x10", c(16, 10, 10, 32, 3, 3, 1, 1)),
        ("seed conv3 32->64 k2 3x3", c(32, 3, 3, 64, 2, 2, 0, 1)),
        ("fast conv1 1->16 k3 p1 11x11", c(1, 11, 11, 16, 3, 3, 1, 1)),
        ("fast conv2 16->32 k3 11x11", c(16, 11, 11, 32, 3, 3, 0, 1)),
        ("stride 2, C_in 3", c(3, 9, 8, 5, 3, 3, 1, 2)),
        ("pad 2", c(2, 7, 7, 4, 3, 3, 2, 1)),
        ("5x1 kernel, C_in 3", c(3, 12, 6, 6, 5, 1, 1, 1)),
        ("1x5 kernel, pad 2, stride 2", c(3, 6, 13, 4, 1, 5, 2, 2)),
        ("stride 3, unread remainder", c(2, 10, 10, 3, 2, 2, 0, 3)),
        ("k4 pad 1 stride 3 on 2x2", c(2, 2, 2, 3, 4, 4, 1, 3)),
        ("1x1 kernel", c(5, 4, 4, 7, 1, 1, 0, 1)),
        // K = 72: planes over MAX_COL_ELEMS / 73 columns are cut into blocks of output rows.
        ("50x50, blocks of output rows", c(8, 50, 50, 4, 3, 3, 1, 1)),
    ]
}

fn linear_shapes(n: usize) -> Vec<(&'static str, LinearShape)> {
    vec![
        ("seed 64->100", LinearShape::new(n, 64, 100)),
        ("seed-84 64->7056", LinearShape::new(n, 64, 7056)),
        ("fast 288->128", LinearShape::new(n, 288, 128)),
        ("fast 128->576", LinearShape::new(n, 128, 576)),
        ("odd 7->3", LinearShape::new(n, 7, 3)),
        ("1->1", LinearShape::new(n, 1, 1)),
    ]
}

/// Each of the three conv2d functions against its twin, for shape `s`.
fn check_conv(rng: &mut impl rand::Rng, name: &str, s: &Conv2dShape) {
    let (nx, nw, ny, co) = (s.input.len(), s.weight().len(), s.output().len(), s.c_out);
    let x = uniform(rng, nx, -1.0, 1.0);
    let w = uniform(rng, nw, -0.5, 0.5);
    let b = uniform(rng, co, -0.5, 0.5);
    let dy = uniform(rng, ny, -1.0, 1.0);
    let (ax, aw, ab, ady) = (abs(&x), abs(&w), abs(&b), abs(&dy));
    let what = |f: &str| format!("{name} n={}: {f}", s.input.n);

    let (mut y, mut y_twin, mut y_scale) = (vec![GARBAGE; ny], vec![GARBAGE; ny], vec![GARBAGE; ny]);
    conv2d_fwd_fast(s, &x, &w, &b, &mut y);
    conv2d_fwd_cpu(s, &x, &w, &b, &mut y_twin);
    conv2d_fwd_cpu(s, &ax, &aw, &ab, &mut y_scale);
    assert_within(&what("conv2d_fwd"), &y, &y_twin, &y_scale);

    let (mut dx, mut dx_twin, mut dx_scale) = (vec![GARBAGE; nx], vec![GARBAGE; nx], vec![GARBAGE; nx]);
    conv2d_bwd_input_fast(s, &w, &dy, &mut dx);
    conv2d_bwd_input_cpu(s, &w, &dy, &mut dx_twin);
    conv2d_bwd_input_cpu(s, &aw, &ady, &mut dx_scale);
    assert_within(&what("conv2d_bwd_input"), &dx, &dx_twin, &dx_scale);

    let mut out = [vec![GARBAGE; nw], vec![GARBAGE; co], vec![GARBAGE; nw], vec![GARBAGE; co]];
    let [dw, db, dw_twin, db_twin] = &mut out;
    conv2d_bwd_weight_fast(s, &x, &dy, dw, db);
    conv2d_bwd_weight_cpu(s, &x, &dy, dw_twin, db_twin);
    let (mut dw_scale, mut db_scale) = (vec![GARBAGE; nw], vec![GARBAGE; co]);
    conv2d_bwd_weight_cpu(s, &ax, &ady, &mut dw_scale, &mut db_scale);
    assert_within(&what("conv2d_bwd_weight dw"), dw, dw_twin, &dw_scale);
    assert_within(&what("conv2d_bwd_weight db"), db, db_twin, &db_scale);
}

/// Each of the three linear functions against its twin, for shape `s`.
fn check_linear(rng: &mut impl rand::Rng, name: &str, s: &LinearShape) {
    let (nx, nw, ny, fo) = (s.n * s.in_f, s.weight_len(), s.n * s.out_f, s.out_f);
    let x = uniform(rng, nx, -1.0, 1.0);
    let w = uniform(rng, nw, -0.5, 0.5);
    let b = uniform(rng, fo, -0.5, 0.5);
    let dy = uniform(rng, ny, -1.0, 1.0);
    let (ax, aw, ab, ady) = (abs(&x), abs(&w), abs(&b), abs(&dy));
    let what = |f: &str| format!("{name} n={}: {f}", s.n);

    let (mut y, mut y_twin, mut y_scale) = (vec![GARBAGE; ny], vec![GARBAGE; ny], vec![GARBAGE; ny]);
    linear_fwd_fast(s, &x, &w, &b, &mut y);
    linear_fwd_cpu(s, &x, &w, &b, &mut y_twin);
    linear_fwd_cpu(s, &ax, &aw, &ab, &mut y_scale);
    assert_within(&what("linear_fwd"), &y, &y_twin, &y_scale);

    let (mut dx, mut dx_twin, mut dx_scale) = (vec![GARBAGE; nx], vec![GARBAGE; nx], vec![GARBAGE; nx]);
    linear_bwd_input_fast(s, &w, &dy, &mut dx);
    linear_bwd_input_cpu(s, &w, &dy, &mut dx_twin);
    linear_bwd_input_cpu(s, &aw, &ady, &mut dx_scale);
    assert_within(&what("linear_bwd_input"), &dx, &dx_twin, &dx_scale);

    let mut out = [vec![GARBAGE; nw], vec![GARBAGE; fo], vec![GARBAGE; nw], vec![GARBAGE; fo]];
    let [dw, db, dw_twin, db_twin] = &mut out;
    linear_bwd_weight_fast(s, &x, &dy, dw, db);
    linear_bwd_weight_cpu(s, &x, &dy, dw_twin, db_twin);
    let (mut dw_scale, mut db_scale) = (vec![GARBAGE; nw], vec![GARBAGE; fo]);
    linear_bwd_weight_cpu(s, &ax, &ady, &mut dw_scale, &mut db_scale);
    assert_within(&what("linear_bwd_weight dw"), dw, dw_twin, &dw_scale);
    assert_within(&what("linear_bwd_weight db"), db, db_twin, &db_scale);
}

#[test]
fn conv2d_fast_matches_twin() {
    let mut rng = test_rng("conv2d_fast_matches_twin");
    for n in [1, 3, 64] {
        for (name, s) in conv_shapes(n) {
            check_conv(&mut rng, name, &s);
        }
    }
    // Batches that fill several blocks of samples, the last one partial (conv3: 128 per block).
    for n in [300] {
        for (name, s) in conv_shapes(n).into_iter().filter(|(name, _)| name.starts_with("seed conv3")) {
            check_conv(&mut rng, name, &s);
        }
    }
}

#[test]
fn linear_fast_matches_twin() {
    let mut rng = test_rng("linear_fast_matches_twin");
    for n in [1, 3, 64, 200] {
        for (name, s) in linear_shapes(n) {
            check_linear(&mut rng, name, &s);
        }
    }
}

/// Inputs where the sums cancel or do not: all-positive inputs (after ReLU, no cancellation, the
/// f32 batch sums grow the most) and a batch large enough for many groups of partial sums.
#[test]
fn weight_gradients_of_positive_inputs_at_batch_1000() {
    let mut rng = test_rng("weight_gradients_of_positive_inputs_at_batch_1000");
    let s = Conv2dShape::new(Shape4::new(1000, 1, 41, 41), 16, 4, 4, 1, 1);
    let x = uniform(&mut rng, s.input.len(), 0.0, 1.0);
    let dy = uniform(&mut rng, s.output().len(), 0.0, 1.0);
    let (nw, co) = (s.weight().len(), s.c_out);
    let mut out = [vec![GARBAGE; nw], vec![GARBAGE; co], vec![GARBAGE; nw], vec![GARBAGE; co]];
    let [dw, db, dw_twin, db_twin] = &mut out;
    conv2d_bwd_weight_fast(&s, &x, &dy, dw, db);
    conv2d_bwd_weight_cpu(&s, &x, &dy, dw_twin, db_twin);
    // Positive terms: the twin's results are their own scale.
    assert_within("conv1 n=1000 dw (positive)", dw, dw_twin, dw_twin);
    assert_within("conv1 n=1000 db (positive)", db, db_twin, db_twin);

    let s = LinearShape::new(5000, 64, 100);
    let x = uniform(&mut rng, s.n * s.in_f, 0.0, 1.0);
    let dy = uniform(&mut rng, s.n * s.out_f, 0.0, 1.0);
    let mut out = [vec![GARBAGE; 6400], vec![GARBAGE; 100], vec![GARBAGE; 6400], vec![GARBAGE; 100]];
    let [dw, db, dw_twin, db_twin] = &mut out;
    linear_bwd_weight_fast(&s, &x, &dy, dw, db);
    linear_bwd_weight_cpu(&s, &x, &dy, dw_twin, db_twin);
    assert_within("linear n=5000 dw (positive)", dw, dw_twin, dw_twin);
    assert_within("linear n=5000 db (positive)", db, db_twin, db_twin);
}

#[test]
fn empty_batch_writes_zero_gradients() {
    let s = Conv2dShape::new(Shape4::new(0, 3, 5, 5), 4, 3, 3, 1, 1);
    let (mut dw, mut db) = (vec![GARBAGE; s.weight().len()], vec![GARBAGE; 4]);
    conv2d_bwd_weight_fast(&s, &[], &[], &mut dw, &mut db);
    assert!(dw.iter().chain(&db).all(|&v| v == 0.0));
    conv2d_fwd_fast(&s, &[], &vec![0.0; s.weight().len()], &[0.0; 4], &mut []);
    conv2d_bwd_input_fast(&s, &vec![0.0; s.weight().len()], &[], &mut []);

    let s = LinearShape::new(0, 3, 2);
    let (mut dw, mut db) = (vec![GARBAGE; 6], vec![GARBAGE; 2]);
    linear_bwd_weight_fast(&s, &[], &[], &mut dw, &mut db);
    assert!(dw.iter().chain(&db).all(|&v| v == 0.0));
    linear_fwd_fast(&s, &[], &[0.0; 6], &[0.0; 2], &mut []);
    linear_bwd_input_fast(&s, &[0.0; 6], &[], &mut []);
}

#[test]
#[should_panic(expected = "conv2d y: length")]
fn rejects_wrong_output_length() {
    let s = Conv2dShape::new(Shape4::new(1, 1, 4, 4), 1, 3, 3, 0, 1);
    conv2d_fwd_fast(&s, &[0.0; 16], &[0.0; 9], &[0.0], &mut [0.0; 5]);
}

/// Runs every fast function on fixed inputs and returns all outputs, concatenated.
fn all_outputs(convs: &[Conv2dShape], linears: &[LinearShape], seed: u64) -> Vec<f32> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut all = Vec::new();
    for s in convs {
        let x = uniform(&mut rng, s.input.len(), -1.0, 1.0);
        let w = uniform(&mut rng, s.weight().len(), -0.5, 0.5);
        let b = uniform(&mut rng, s.c_out, -0.5, 0.5);
        let dy = uniform(&mut rng, s.output().len(), -1.0, 1.0);
        let mut y = vec![GARBAGE; s.output().len()];
        let mut dx = vec![GARBAGE; s.input.len()];
        let (mut dw, mut db) = (vec![GARBAGE; s.weight().len()], vec![GARBAGE; s.c_out]);
        conv2d_fwd_fast(s, &x, &w, &b, &mut y);
        conv2d_bwd_input_fast(s, &w, &dy, &mut dx);
        conv2d_bwd_weight_fast(s, &x, &dy, &mut dw, &mut db);
        all.extend(y.into_iter().chain(dx).chain(dw).chain(db));
    }
    for s in linears {
        let x = uniform(&mut rng, s.n * s.in_f, -1.0, 1.0);
        let w = uniform(&mut rng, s.weight_len(), -0.5, 0.5);
        let b = uniform(&mut rng, s.out_f, -0.5, 0.5);
        let dy = uniform(&mut rng, s.n * s.out_f, -1.0, 1.0);
        let mut y = vec![GARBAGE; s.n * s.out_f];
        let mut dx = vec![GARBAGE; s.n * s.in_f];
        let (mut dw, mut db) = (vec![GARBAGE; s.weight_len()], vec![GARBAGE; s.out_f]);
        linear_fwd_fast(s, &x, &w, &b, &mut y);
        linear_bwd_input_fast(s, &w, &dy, &mut dx);
        linear_bwd_weight_fast(s, &x, &dy, &mut dw, &mut db);
        all.extend(y.into_iter().chain(dx).chain(dw).chain(db));
    }
    all
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("results_do_not_depend_on_the_thread_count: seed {seed}");
    let mut convs: Vec<Conv2dShape> = conv_shapes(64).into_iter().map(|(_, s)| s).collect();
    convs.push(Conv2dShape::new(Shape4::new(300, 32, 3, 3), 64, 2, 2, 0, 1));
    convs.push(Conv2dShape::new(Shape4::new(300, 1, 41, 41), 16, 4, 4, 1, 1));
    let linears: Vec<LinearShape> = linear_shapes(200).into_iter().map(|(_, s)| s).collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| all_outputs(&convs, &linears, seed))
    };
    let one = run(1);
    assert!(one.iter().all(|v| v.is_finite() && *v != GARBAGE), "an output was not written");
    for threads in [2, 3] {
        let other = run(threads);
        assert_eq!(one.len(), other.len());
        if let Some(i) = one.iter().zip(&other).position(|(a, b)| a.to_bits() != b.to_bits()) {
            panic!("1 vs {threads} threads: element {i} differs: {} vs {}", one[i], other[i]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The other layers: ReLU, dropout, max pooling, batch norm, and the fused backward of
// `[ReLU ->] BatchNorm2d -> MaxPool2d`. Where the fast function computes each element with the
// twin's expression, the test requires bitwise equality; where it sums in another order (batch
// norm's f64 sums), about one f32 ulp (see each test).

/// `|fast - twin| <= 2^-23 |twin| + rel_scale * scale` per element: one f32 ulp of rounding of
/// nearly equal f64 sums, plus `rel_scale` of the element's sum of `|terms|`.
#[track_caller]
fn assert_ulp(what: &str, fast: &[f32], twin: &[f32], scale: &[f64], rel_scale: f64) {
    assert_eq!(fast.len(), twin.len(), "{what}: length");
    let mut worst = 0f64;
    for (i, ((&f, &t), &s)) in fast.iter().zip(twin).zip(scale).enumerate() {
        let err = (f as f64 - t as f64).abs();
        let tol = (t as f64).abs() * 2f64.powi(-23) + rel_scale * s + 1e-30;
        assert!(err <= tol, "{what}: element {i}: fast {f} vs twin {t}, |diff| {err:e} > tolerance {tol:e}");
        worst = worst.max(err / tol);
    }
    eprintln!("{what}: worst |fast-twin| = {worst:.2e} of the tolerance");
}

#[test]
fn relu_fast_equals_twin() {
    let mut rng = test_rng("relu_fast_equals_twin");
    for len in [1, 7, 1000, ELEM_CHUNK + 13, 3 * ELEM_CHUNK] {
        let mut x = uniform(&mut rng, len, -1.0, 1.0);
        // exact zeros, -0 and NaN go to 0 as in the twin
        for (i, v) in x.iter_mut().enumerate() {
            match i % 11 {
                0 => *v = 0.0,
                1 => *v = -0.0,
                2 if len > 100 => *v = f32::NAN,
                _ => {}
            }
        }
        let dy = uniform(&mut rng, len, -1.0, 1.0);
        let (mut y, mut y_twin) = (vec![GARBAGE; len], vec![GARBAGE; len]);
        relu_fwd_fast(&x, &mut y);
        relu_fwd_cpu(&x, &mut y_twin);
        assert_bits_equal(&format!("relu_fwd len {len}"), &y, &y_twin);
        let (mut dx, mut dx_twin) = (vec![GARBAGE; len], vec![GARBAGE; len]);
        relu_bwd_fast(&y_twin, &dy, &mut dx);
        relu_bwd_cpu(&y_twin, &dy, &mut dx_twin);
        assert_bits_equal(&format!("relu_bwd len {len}"), &dx, &dx_twin);
    }
}

#[test]
fn dropout_fast_equals_twin() {
    let mut rng = test_rng("dropout_fast_equals_twin");
    for (len, p) in [(1, 0.5), (7, 0.5), (ELEM_CHUNK + 5, 0.5), (3 * ELEM_CHUNK + 2, 0.2), (1000, 0.0), (1000, 1.0)] {
        let c = DropoutCfg { n: len, p, seed: rng.random(), step: rng.random_range(0..1 << 40), layer: 12 };
        let x = uniform(&mut rng, len, -1.0, 1.0);
        let (mut y, mut y_twin) = (vec![GARBAGE; len], vec![GARBAGE; len]);
        dropout_fwd_fast(&c, &x, &mut y);
        dropout_fwd_cpu(&c, &x, &mut y_twin);
        assert_bits_equal(&format!("dropout_fwd len {len} p {p}"), &y, &y_twin);
        let (mut dx, mut dx_twin) = (vec![GARBAGE; len], vec![GARBAGE; len]);
        dropout_bwd_fast(&c, &x, &mut dx);
        dropout_bwd_cpu(&c, &x, &mut dx_twin);
        assert_bits_equal(&format!("dropout_bwd len {len} p {p}"), &dx, &dx_twin);
        if len > 10_000 {
            let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / len as f64;
            assert!((kept - (1.0 - p as f64)).abs() < 0.02, "kept fraction {kept} with p {p}");
        }
    }
}

/// Named max-pool shapes for a batch of `n`: the presets' and odd ones (overlapping windows,
/// stride > k, a floor-mode remainder).
fn pool_shapes(n: usize) -> Vec<(&'static str, MaxPool2dShape)> {
    let p = |c, h, w, k, stride| MaxPool2dShape::with_stride(Shape4::new(n, c, h, w), k, stride);
    vec![
        ("seed pool1 16x40x40 k4", p(16, 40, 40, 4, 4)),
        ("seed pool2 32x10x10 k3 (remainder)", p(32, 10, 10, 3, 3)),
        ("seed pool3 64x2x2 k2", p(64, 2, 2, 2, 2)),
        ("fast pool 32x9x9 k3", p(32, 9, 9, 3, 3)),
        ("overlapping k3 stride 2", p(3, 9, 8, 3, 2)),
        ("overlapping k3 stride 1", p(2, 5, 6, 3, 1)),
        ("stride 3 > k2", p(2, 10, 11, 2, 3)),
        ("k1", p(2, 3, 4, 1, 1)),
        ("1x1 plane", p(3, 1, 1, 1, 1)),
    ]
}

#[test]
fn maxpool2d_fast_equals_twin() {
    let mut rng = test_rng("maxpool2d_fast_equals_twin");
    for n in [1, 3] {
        for (name, s) in pool_shapes(n) {
            let (nx, ny) = (s.input.len(), s.output().len());
            // Continuous values, then small integers (many ties: the first maximum must win).
            for ties in [false, true] {
                let x: Vec<f32> = if ties {
                    (0..nx).map(|_| rng.random_range(-2i32..3) as f32).collect()
                } else {
                    uniform(&mut rng, nx, -1.0, 1.0)
                };
                let what = |f: &str| format!("{name} n={n} ties={ties}: {f}");
                let (mut y, mut y_twin) = (vec![GARBAGE; ny], vec![GARBAGE; ny]);
                let (mut idx, mut idx_twin) = (vec![u32::MAX; ny], vec![u32::MAX; ny]);
                maxpool2d_fwd_fast(&s, &x, &mut y, &mut idx);
                maxpool2d_fwd_cpu(&s, &x, &mut y_twin, &mut idx_twin);
                assert_bits_equal(&what("maxpool2d_fwd y"), &y, &y_twin);
                assert_eq!(idx, idx_twin, "{}", what("maxpool2d_fwd idx"));
                let dy = uniform(&mut rng, ny, -1.0, 1.0);
                let (mut dx, mut dx_twin) = (vec![GARBAGE; nx], vec![GARBAGE; nx]);
                maxpool2d_bwd_fast(&s, &idx_twin, &dy, &mut dx);
                maxpool2d_bwd_cpu(&s, &idx_twin, &dy, &mut dx_twin);
                assert_bits_equal(&what("maxpool2d_bwd"), &dx, &dx_twin);
            }
        }
    }
}

#[test]
#[should_panic(expected = "not in its plane")]
fn maxpool2d_bwd_rejects_an_index_outside_its_plane() {
    let s = MaxPool2dShape::new(Shape4::new(2, 1, 2, 2), 2);
    // plane 1's output points into plane 0
    maxpool2d_bwd_fast(&s, &[0, 1], &[1.0, 1.0], &mut [GARBAGE; 8]);
}

/// Equal as numbers (-0 == +0), or both NaN.
#[track_caller]
fn assert_same_values(what: &str, fast: &[f32], twin: &[f32]) {
    assert_eq!(fast.len(), twin.len(), "{what}: length");
    if let Some(i) = fast.iter().zip(twin).position(|(a, b)| !(a == b || (a.is_nan() && b.is_nan()))) {
        panic!("{what}: element {i}: fast {} vs twin {} (equal values expected)", fast[i], twin[i]);
    }
}

/// Evaluation-mode pooling: `maxpool2d_fwd_values_fast` and `relu_batchnorm2d_maxpool2d_eval_fast`
/// (which pools first, then applies the monotone ReLU / batch norm, min-pooling the channels with
/// `gamma < 0`) against the twins' chain `relu -> batchnorm2d_fwd (running statistics) ->
/// maxpool2d_fwd`: equal values (the sign of a zero may differ, see the function).
#[test]
fn eval_pooling_matches_twins() {
    let mut rng = test_rng("eval_pooling_matches_twins");
    for n in [1, 3] {
        for (name, pool) in pool_shapes(n) {
            let xs = pool.input;
            let (c, nx, ny) = (xs.c, xs.len(), pool.output().len());
            for ties in [false, true] {
                let x: Vec<f32> = if ties {
                    (0..nx).map(|_| rng.random_range(-2i32..3) as f32).collect()
                } else {
                    uniform(&mut rng, nx, -1.0, 1.0)
                };
                let (mut y, mut y_t, mut idx) = (vec![GARBAGE; ny], vec![GARBAGE; ny], vec![0u32; ny]);
                maxpool2d_fwd_values_fast(&pool, &x, &mut y);
                maxpool2d_fwd_cpu(&pool, &x, &mut y_t, &mut idx);
                assert_same_values(&format!("{name} n={n} ties={ties}: maxpool2d_fwd_values"), &y, &y_t);
                // gamma of both signs, and 0
                let mut gamma = uniform(&mut rng, c, -1.5, 1.5);
                gamma[0] = 0.0;
                if c > 1 {
                    gamma[1] = -gamma[1].abs() - 0.1;
                }
                let beta = uniform(&mut rng, c, -0.5, 0.5);
                let mean = uniform(&mut rng, c, -0.3, 0.3);
                let var = uniform(&mut rng, c, 0.5, 1.5);
                let s = BatchNorm2dShape::new(xs);
                for relu in [false, true] {
                    for with_bn in [false, true] {
                        let what = format!("{name} n={n} ties={ties} relu={relu} bn={with_bn}");
                        let mut t = x.clone();
                        if relu {
                            relu_fwd_cpu(&x, &mut t);
                        }
                        if with_bn {
                            let mut u = vec![GARBAGE; nx];
                            batchnorm2d_fwd_cpu(&s, &t, &mean, &var, &gamma, &beta, &mut u);
                            t = u;
                        }
                        maxpool2d_fwd_cpu(&pool, &t, &mut y_t, &mut idx);
                        let bn = with_bn.then_some(BatchNorm2dEval {
                            s,
                            mean: &mean,
                            var: &var,
                            gamma: &gamma,
                            beta: &beta,
                        });
                        y.fill(GARBAGE);
                        relu_batchnorm2d_maxpool2d_eval_fast(&pool, relu, bn, &x, &mut y);
                        assert_same_values(&what, &y, &y_t);
                    }
                }
            }
        }
    }
}

/// Named batch-norm shapes for a batch of `n`.
fn bn_shapes(n: usize) -> Vec<(&'static str, Shape4)> {
    vec![
        ("seed bn1 16x40x40", Shape4::new(n, 16, 40, 40)),
        ("seed bn2 32x10x10", Shape4::new(n, 32, 10, 10)),
        ("seed bn3 64x2x2", Shape4::new(n, 64, 2, 2)),
        ("fast bn 16x11x11", Shape4::new(n, 16, 11, 11)),
        ("odd 5x3x7", Shape4::new(n, 5, 3, 7)),
        ("1x1 planes, 3 channels", Shape4::new(n, 3, 1, 1)),
    ]
}

/// `x` for a batch-norm test: `kind` 0: uniform in [-1, 1); 1: 1000 + that (|mean| >> std, where
/// a one-pass variance without a shift loses every digit in f32); 2: ReLU'd (many exact zeros).
fn bn_input(rng: &mut impl rand::Rng, len: usize, kind: usize) -> Vec<f32> {
    let x = uniform(rng, len, -1.0, 1.0);
    match kind {
        0 => x,
        1 => x.iter().map(|v| 1000.0 + v).collect(),
        _ => x.iter().map(|&v| v.max(0.0)).collect(),
    }
}

#[test]
fn batchnorm2d_fast_matches_twin() {
    let mut rng = test_rng("batchnorm2d_fast_matches_twin");
    for n in [1, 2, 7] {
        for (name, xs) in bn_shapes(n) {
            let s = BatchNorm2dShape::new(xs);
            if s.m() < 2 {
                continue;
            }
            let (c, hw, len) = (xs.c, xs.plane(), xs.len());
            for kind in 0..3 {
                let what = |f: &str| format!("{name} n={n} input kind {kind}: {f}");
                let x = bn_input(&mut rng, len, kind);
                let ch = |i: usize| (i / hw) % c;
                // stats: one f32 ulp, plus 1e-12 of max x^2 (f64 rounding of the one-pass sums)
                let (mut mean, mut var) = (vec![GARBAGE; c], vec![GARBAGE; c]);
                let (mut mean_t, mut var_t) = (vec![GARBAGE; c], vec![GARBAGE; c]);
                batchnorm2d_stats_fast(&s, &x, &mut mean, &mut var);
                batchnorm2d_stats_cpu(&s, &x, &mut mean_t, &mut var_t);
                let mut max_abs = vec![0f64; c];
                for (i, &v) in x.iter().enumerate() {
                    max_abs[ch(i)] = max_abs[ch(i)].max(v.abs() as f64);
                }
                let sq: Vec<f64> = max_abs.iter().map(|m| m * m).collect();
                assert_ulp(&what("stats mean"), &mean, &mean_t, &max_abs, 1e-12);
                assert_ulp(&what("stats var"), &var, &var_t, &sq, 1e-12);
                // forward from the twin's statistics: bitwise
                let gamma = uniform(&mut rng, c, 0.5, 1.5);
                let beta = uniform(&mut rng, c, -0.5, 0.5);
                let (mut y, mut y_t) = (vec![GARBAGE; len], vec![GARBAGE; len]);
                batchnorm2d_fwd_fast(&s, &x, &mean_t, &var_t, &gamma, &beta, &mut y);
                batchnorm2d_fwd_cpu(&s, &x, &mean_t, &var_t, &gamma, &beta, &mut y_t);
                assert_bits_equal(&what("fwd"), &y, &y_t);
                // parameter gradients: one f32 ulp, plus 1e-12 of the sum of |terms|
                let dy = uniform(&mut rng, len, -1.0, 1.0);
                let (mut dg, mut db) = (vec![GARBAGE; c], vec![GARBAGE; c]);
                let (mut dg_t, mut db_t) = (vec![GARBAGE; c], vec![GARBAGE; c]);
                batchnorm2d_bwd_reduce_fast(&s, &x, &mean_t, &var_t, &dy, &mut dg, &mut db);
                batchnorm2d_bwd_reduce_cpu(&s, &x, &mean_t, &var_t, &dy, &mut dg_t, &mut db_t);
                let (mut sg, mut sb) = (vec![0f64; c], vec![0f64; c]);
                for (i, (&x, &g)) in x.iter().zip(&dy).enumerate() {
                    let k = ch(i);
                    let xhat = (x - mean_t[k]) * invstd(var_t[k], s.eps);
                    sb[k] += g.abs() as f64;
                    sg[k] += (g * xhat).abs() as f64;
                }
                assert_ulp(&what("bwd_reduce dgamma"), &dg, &dg_t, &sg, 1e-12);
                assert_ulp(&what("bwd_reduce dbeta"), &db, &db_t, &sb, 1e-12);
                // input gradient from the twin's parameter gradients: bitwise
                let (mut dx, mut dx_t) = (vec![GARBAGE; len], vec![GARBAGE; len]);
                batchnorm2d_bwd_input_fast(&s, &x, &mean_t, &var_t, &gamma, &dg_t, &db_t, &dy, &mut dx);
                batchnorm2d_bwd_input_cpu(&s, &x, &mean_t, &var_t, &gamma, &dg_t, &db_t, &dy, &mut dx_t);
                assert_bits_equal(&what("bwd_input"), &dx, &dx_t);
            }
        }
    }
}

/// The fused backward of `[ReLU ->] BatchNorm2d -> MaxPool2d` against the twins' chain
/// `maxpool2d_bwd -> batchnorm2d_bwd_reduce -> batchnorm2d_bwd_input [-> relu_bwd]`:
/// `dgamma`, `dbeta` to one f32 ulp plus 1e-7 of the sum of `|terms|` (with overlapping windows
/// the twin first adds the pooled gradients of one pixel in f32), and `dx` bitwise when the
/// chain is fed the fused `dgamma`, `dbeta`.
#[test]
fn fused_maxpool_batchnorm_backward_matches_twins() {
    let mut rng = test_rng("fused_maxpool_batchnorm_backward_matches_twins");
    for n in [1, 3] {
        for (name, pool) in pool_shapes(n) {
            for relu in [false, true] {
                let what = |f: &str| format!("{name} n={n} relu={relu}: {f}");
                let xs = pool.input;
                let (c, hw, len, ny) = (xs.c, xs.plane(), xs.len(), pool.output().len());
                let bn = BatchNorm2dShape::new(xs);
                let x = bn_input(&mut rng, len, if relu { 2 } else { 0 });
                let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
                batchnorm2d_stats_cpu(&bn, &x, &mut mean, &mut var);
                let gamma = uniform(&mut rng, c, 0.5, 1.5);
                let beta = uniform(&mut rng, c, -0.5, 0.5);
                let mut y = vec![0.0; len];
                batchnorm2d_fwd_cpu(&bn, &x, &mean, &var, &gamma, &beta, &mut y);
                let (mut yp, mut idx) = (vec![0.0; ny], vec![0u32; ny]);
                maxpool2d_fwd_cpu(&pool, &y, &mut yp, &mut idx);
                let dyp = uniform(&mut rng, ny, -1.0, 1.0);
                // fused
                let (mut dg, mut db, mut dx) = (vec![GARBAGE; c], vec![GARBAGE; c], vec![GARBAGE; len]);
                maxpool2d_batchnorm2d_bwd_fast(
                    &pool, &bn, relu, &x, &mean, &var, &gamma, &idx, &dyp, &mut dg, &mut db, &mut dx,
                );
                // the twins' chain
                let mut dy = vec![0.0; len];
                maxpool2d_bwd_cpu(&pool, &idx, &dyp, &mut dy);
                let (mut dg_t, mut db_t) = (vec![0.0; c], vec![0.0; c]);
                batchnorm2d_bwd_reduce_cpu(&bn, &x, &mean, &var, &dy, &mut dg_t, &mut db_t);
                let (mut sg, mut sb) = (vec![0f64; c], vec![0f64; c]);
                for (i, (&x, &g)) in x.iter().zip(&dy).enumerate() {
                    let k = (i / hw) % c;
                    sb[k] += g.abs() as f64;
                    sg[k] += (g * (x - mean[k]) * invstd(var[k], bn.eps)).abs() as f64;
                }
                assert_ulp(&what("dgamma"), &dg, &dg_t, &sg, 1e-7);
                assert_ulp(&what("dbeta"), &db, &db_t, &sb, 1e-7);
                let mut dx_bn = vec![0.0; len];
                batchnorm2d_bwd_input_cpu(&bn, &x, &mean, &var, &gamma, &dg, &db, &dy, &mut dx_bn);
                let dx_t = if relu {
                    let mut d = vec![0.0; len];
                    relu_bwd_cpu(&x, &dx_bn, &mut d);
                    d
                } else {
                    dx_bn
                };
                assert_bits_equal(&what("dx"), &dx, &dx_t);
            }
        }
    }
}

/// Runs every other fast layer (and the fused backward) on fixed inputs; all outputs concatenated.
fn other_layer_outputs(seed: u64) -> Vec<f32> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut all = Vec::new();
    let len = 3 * ELEM_CHUNK + 5;
    let x = uniform(&mut rng, len, -1.0, 1.0);
    let mut y = vec![GARBAGE; len];
    relu_fwd_fast(&x, &mut y);
    all.extend_from_slice(&y);
    relu_bwd_fast(&x, &x, &mut y);
    all.extend_from_slice(&y);
    let c = DropoutCfg { n: len, p: 0.3, seed, step: 4, layer: 2 };
    dropout_fwd_fast(&c, &x, &mut y);
    all.extend_from_slice(&y);
    dropout_bwd_fast(&c, &x, &mut y);
    all.extend_from_slice(&y);
    for (_, pool) in pool_shapes(20) {
        let xs = pool.input;
        let (ch, nx, ny) = (xs.c, xs.len(), pool.output().len());
        let x = bn_input(&mut rng, nx, 1);
        let bn = BatchNorm2dShape::new(xs);
        let (mut mean, mut var) = (vec![GARBAGE; ch], vec![GARBAGE; ch]);
        batchnorm2d_stats_fast(&bn, &x, &mut mean, &mut var);
        let gamma = uniform(&mut rng, ch, 0.5, 1.5);
        let beta = uniform(&mut rng, ch, -0.5, 0.5);
        let mut y = vec![GARBAGE; nx];
        batchnorm2d_fwd_fast(&bn, &x, &mean, &var, &gamma, &beta, &mut y);
        let (mut yp, mut idx) = (vec![GARBAGE; ny], vec![u32::MAX; ny]);
        maxpool2d_fwd_fast(&pool, &y, &mut yp, &mut idx);
        let dyp = uniform(&mut rng, ny, -1.0, 1.0);
        let mut dy = vec![GARBAGE; nx];
        maxpool2d_bwd_fast(&pool, &idx, &dyp, &mut dy);
        let (mut dg, mut db, mut dx) = (vec![GARBAGE; ch], vec![GARBAGE; ch], vec![GARBAGE; nx]);
        batchnorm2d_bwd_reduce_fast(&bn, &x, &mean, &var, &dy, &mut dg, &mut db);
        batchnorm2d_bwd_input_fast(&bn, &x, &mean, &var, &gamma, &dg, &db, &dy, &mut dx);
        all.extend(mean.iter().chain(&var).chain(&y).chain(&yp).chain(&dy).chain(&dg).chain(&db).chain(&dx));
        all.extend(idx.iter().map(|&i| i as f32));
        maxpool2d_batchnorm2d_bwd_fast(
            &pool, &bn, true, &x, &mean, &var, &gamma, &idx, &dyp, &mut dg, &mut db, &mut dx,
        );
        all.extend(dg.iter().chain(&db).chain(&dx));
    }
    all
}

#[test]
fn other_layers_do_not_depend_on_the_thread_count() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("other_layers_do_not_depend_on_the_thread_count: seed {seed}");
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| other_layer_outputs(seed))
    };
    let one = run(1);
    assert!(one.iter().all(|v| v.is_finite() && *v != GARBAGE), "an output was not written");
    for threads in [2, 3] {
        let other = run(threads);
        assert_eq!(one.len(), other.len());
        if let Some(i) = one.iter().zip(&other).position(|(a, b)| a.to_bits() != b.to_bits()) {
            panic!("1 vs {threads} threads: element {i} differs: {} vs {}", one[i], other[i]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The whole network: `Model::forward_cpu` / `backward_cpu` (fast layers, fused backward, chunked
// evaluation) against the same passes built from the plain twins.

mod reference {
    use super::*;

    type ConvFwd = fn(&Conv2dShape, &[f32], &[f32], &[f32], &mut [f32]);
    type ConvBwdIn = fn(&Conv2dShape, &[f32], &[f32], &mut [f32]);
    type ConvBwdW = fn(&Conv2dShape, &[f32], &[f32], &mut [f32], &mut [f32]);
    type LinFwd = fn(&LinearShape, &[f32], &[f32], &[f32], &mut [f32]);
    type LinBwdIn = fn(&LinearShape, &[f32], &[f32], &mut [f32]);
    type LinBwdW = fn(&LinearShape, &[f32], &[f32], &mut [f32], &mut [f32]);

    /// The conv/linear functions a pass uses.
    #[derive(Clone, Copy)]
    struct Impl {
        conv2d_fwd: ConvFwd,
        conv2d_bwd_input: ConvBwdIn,
        conv2d_bwd_weight: ConvBwdW,
        linear_fwd: LinFwd,
        linear_bwd_input: LinBwdIn,
        linear_bwd_weight: LinBwdW,
    }

    const FAST: Impl = Impl {
        conv2d_fwd: conv2d_fwd_fast,
        conv2d_bwd_input: conv2d_bwd_input_fast,
        conv2d_bwd_weight: conv2d_bwd_weight_fast,
        linear_fwd: linear_fwd_fast,
        linear_bwd_input: linear_bwd_input_fast,
        linear_bwd_weight: linear_bwd_weight_fast,
    };
    const TWIN: Impl = Impl {
        conv2d_fwd: conv2d_fwd_cpu,
        conv2d_bwd_input: conv2d_bwd_input_cpu,
        conv2d_bwd_weight: conv2d_bwd_weight_cpu,
        linear_fwd: linear_fwd_cpu,
        linear_bwd_input: linear_bwd_input_cpu,
        linear_bwd_weight: linear_bwd_weight_cpu,
    };

    pub enum Aux {
        None,
        Idx(Vec<u32>),
        Stats(Vec<f32>, Vec<f32>),
    }

    /// `Model::forward_cpu` layer by layer with the twins, but for the convolutions and linear
    /// layers when `sgemm` (then the fast ones, as the CPU path ran before the other layers got
    /// fast versions): every layer's output.
    pub fn forward(
        m: &mut Model,
        x: &[f32],
        n: usize,
        train: bool,
        seed: u64,
        step: u64,
        sgemm: bool,
    ) -> (Vec<Vec<f32>>, Vec<Aux>) {
        let imp = if sgemm { FAST } else { TWIN };
        let plan = m.cfg.plan(n).unwrap();
        let mut outs: Vec<Vec<f32>> = Vec::new();
        let mut aux = Vec::new();
        for (i, p) in plan.iter().enumerate() {
            let input: &[f32] = if i == 0 { x } else { &outs[i - 1] };
            let mut y = vec![GARBAGE; p.output.len()];
            let lt = m.layer_tensors[i];
            let t = |k: Option<usize>| m.tensors[k.unwrap()].data.clone();
            let mut a = Aux::None;
            match m.cfg.layers[i] {
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    let s = Conv2dShape::new(p.input, out_channels, kernel, kernel, padding, stride);
                    (imp.conv2d_fwd)(&s, input, &t(lt.weight), &t(lt.bias), &mut y);
                }
                LayerSpec::Linear { out_features } => {
                    let s = LinearShape::new(n, p.input.c, out_features);
                    (imp.linear_fwd)(&s, input, &t(lt.weight), &t(lt.bias), &mut y);
                }
                LayerSpec::Relu => relu_fwd_cpu(input, &mut y),
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let s = MaxPool2dShape::with_stride(p.input, kernel, stride.unwrap_or(kernel));
                    let mut idx = vec![u32::MAX; p.output.len()];
                    maxpool2d_fwd_cpu(&s, input, &mut y, &mut idx);
                    a = Aux::Idx(idx);
                }
                LayerSpec::BatchNorm2d { eps, momentum } => {
                    let s = BatchNorm2dShape { x: p.input, eps };
                    let (g, b) = (t(lt.weight), t(lt.bias));
                    if train {
                        let (mut mean, mut var) = (vec![GARBAGE; p.input.c], vec![GARBAGE; p.input.c]);
                        batchnorm2d_stats_cpu(&s, input, &mut mean, &mut var);
                        batchnorm2d_fwd_cpu(&s, input, &mean, &var, &g, &b, &mut y);
                        let (rm, rv) = (lt.running_mean.unwrap(), lt.running_var.unwrap());
                        let (mut run_mean, mut run_var) = (m.tensors[rm].data.clone(), m.tensors[rv].data.clone());
                        batchnorm2d_running_cpu(&s, momentum, &mean, &var, &mut run_mean, &mut run_var);
                        m.tensors[rm].data = run_mean;
                        m.tensors[rv].data = run_var;
                        a = Aux::Stats(mean, var);
                    } else {
                        batchnorm2d_fwd_cpu(&s, input, &t(lt.running_mean), &t(lt.running_var), &g, &b, &mut y);
                    }
                }
                LayerSpec::Dropout { p: prob } => {
                    if train {
                        let c = DropoutCfg { n: y.len(), p: prob, seed, step, layer: i as u32 };
                        dropout_fwd_cpu(&c, input, &mut y);
                    } else {
                        y.copy_from_slice(input);
                    }
                }
                LayerSpec::Flatten => y.copy_from_slice(input),
            }
            outs.push(y);
            aux.push(a);
        }
        if train && m.cfg.layers.iter().any(|l| matches!(l, LayerSpec::BatchNorm2d { .. })) {
            m.batches_tracked += 1;
        }
        (outs, aux)
    }

    /// `Model::backward_cpu` layer by layer with the twins (the convolutions and linear layers:
    /// the fast ones when `sgemm`).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        m: &Model,
        x: &[f32],
        n: usize,
        outs: &[Vec<f32>],
        aux: &[Aux],
        dout: &[f32],
        seed: u64,
        step: u64,
        sgemm: bool,
    ) -> Vec<Vec<f32>> {
        let imp = if sgemm { FAST } else { TWIN };
        let plan = m.cfg.plan(n).unwrap();
        let mut grads: Vec<Vec<f32>> = m.tensors.iter().map(|_| Vec::new()).collect();
        let mut dy = dout.to_vec();
        for i in (0..plan.len()).rev() {
            let p = plan[i];
            let input: &[f32] = if i == 0 { x } else { &outs[i - 1] };
            let lt = m.layer_tensors[i];
            let t = |k: Option<usize>| m.tensors[k.unwrap()].data.as_slice();
            let mut dx = vec![GARBAGE; p.input.len()];
            match m.cfg.layers[i] {
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    let s = Conv2dShape::new(p.input, out_channels, kernel, kernel, padding, stride);
                    let (mut dw, mut db) = (vec![GARBAGE; s.weight().len()], vec![GARBAGE; out_channels]);
                    (imp.conv2d_bwd_weight)(&s, input, &dy, &mut dw, &mut db);
                    (imp.conv2d_bwd_input)(&s, t(lt.weight), &dy, &mut dx);
                    grads[lt.weight.unwrap()] = dw;
                    grads[lt.bias.unwrap()] = db;
                }
                LayerSpec::Linear { out_features } => {
                    let s = LinearShape::new(n, p.input.c, out_features);
                    let (mut dw, mut db) = (vec![GARBAGE; s.weight_len()], vec![GARBAGE; out_features]);
                    (imp.linear_bwd_weight)(&s, input, &dy, &mut dw, &mut db);
                    (imp.linear_bwd_input)(&s, t(lt.weight), &dy, &mut dx);
                    grads[lt.weight.unwrap()] = dw;
                    grads[lt.bias.unwrap()] = db;
                }
                LayerSpec::Relu => relu_bwd_cpu(&outs[i], &dy, &mut dx),
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let s = MaxPool2dShape::with_stride(p.input, kernel, stride.unwrap_or(kernel));
                    let Aux::Idx(idx) = &aux[i] else { unreachable!() };
                    maxpool2d_bwd_cpu(&s, idx, &dy, &mut dx);
                }
                LayerSpec::BatchNorm2d { eps, .. } => {
                    let s = BatchNorm2dShape { x: p.input, eps };
                    let Aux::Stats(mean, var) = &aux[i] else { unreachable!() };
                    let (mut dg, mut dbeta) = (vec![GARBAGE; p.input.c], vec![GARBAGE; p.input.c]);
                    batchnorm2d_bwd_reduce_cpu(&s, input, mean, var, &dy, &mut dg, &mut dbeta);
                    batchnorm2d_bwd_input_cpu(&s, input, mean, var, t(lt.weight), &dg, &dbeta, &dy, &mut dx);
                    grads[lt.weight.unwrap()] = dg;
                    grads[lt.bias.unwrap()] = dbeta;
                }
                LayerSpec::Dropout { p: prob } => {
                    let c = DropoutCfg { n: dy.len(), p: prob, seed, step, layer: i as u32 };
                    dropout_bwd_cpu(&c, &dy, &mut dx);
                }
                LayerSpec::Flatten => dx.copy_from_slice(&dy),
            }
            dy = dx;
        }
        grads
    }
}

/// `|fast - twin| <= rel * max|twin| + abs` over a tensor.
#[track_caller]
fn assert_tensor_close(what: &str, fast: &[f32], twin: &[f32], rel: f32, abs: f32) {
    assert_eq!(fast.len(), twin.len(), "{what}: length");
    let scale = twin.iter().fold(0f32, |a, v| a.max(v.abs()));
    let tol = rel * scale + abs;
    let mut worst = 0f32;
    for (i, (&f, &t)) in fast.iter().zip(twin).enumerate() {
        let err = (f - t).abs();
        assert!(err <= tol, "{what}: element {i}: fast {f} vs twin {t}, |diff| {err:e} > {tol:e} (max |twin| {scale})");
        worst = worst.max(err / tol);
    }
    eprintln!("{what}: worst {worst:.2e} of the tolerance (max |twin| {scale:e})");
}

/// A model of `preset` with random batch-norm parameters (gamma of both signs) and running
/// statistics (not the initial 1 / 0, so that evaluation mode and the folded model are not
/// trivial).
fn random_model(preset: &str, rng: &mut impl rand::Rng) -> Model {
    let mut m = Model::new(ModelConfig::preset(preset).unwrap(), rng.random()).unwrap();
    for t in &mut m.tensors {
        let (lo, hi) = match t.name.rsplit('.').next().unwrap() {
            "running_var" => (0.5, 1.5),
            "running_mean" => (-0.2, 0.2),
            "weight" if t.shape.len() == 1 => (-1.5, 1.5),
            "bias" => (-0.2, 0.2),
            _ => continue,
        };
        t.data = uniform(rng, t.data.len(), lo, hi);
    }
    m
}

/// A training step's forward and backward, and the evaluation-mode forward (several chunks, the
/// last partial; folded and not), of the seed and fast networks: the model's CPU path against two
/// layer-by-layer references, both checked per tensor against its largest value (`max|ref|`):
///
/// - the twins except for the convolutions and linear layers, which run their fast (SGEMM)
///   versions as in the model: this isolates the other fast layers, the fused backward and the
///   chunked evaluation, whose only differences are the batch-norm sums' f64 order (about one f32
///   ulp, then carried through the network): 1e-4 max|ref| (for gradients, plus 1e-5 of the
///   model's largest gradient: some, e.g. a conv bias before batch norm, are float noise);
/// - the twins only: the SGEMM summation order (~1e-6 relative per convolution, tested per layer
///   above) is amplified by the batch norms' small batches here (up to ~2e-4 of max|ref| seen for
///   the first convolution's weight gradient): 2e-3 max|ref| (plus 1e-4 of the largest gradient).
#[test]
fn model_passes_match_the_twins() {
    let mut rng = test_rng("model_passes_match_the_twins");
    for (preset, n, n_eval) in [("seed", 6, 13), ("fast", 10, 120)] {
        let model = random_model(preset, &mut rng);
        let cfg = model.cfg.clone();
        let px = cfg.input_px * cfg.input_px;
        let plan = cfg.plan(n).unwrap();
        let x = uniform(&mut rng, n * px, 0.0, 1.0);
        let dout = uniform(&mut rng, n * cfg.head_outputs(), -1.0, 1.0);
        // training mode
        let mut fast = model.clone();
        let act = fast.forward_cpu(&x, n, true, 9, 4).unwrap();
        assert_eq!(act.outs.len(), plan.len());
        let g = fast.backward_cpu(&x, &act, &dout, 9, 4).unwrap();
        for (sgemm, rel, rel_global) in [(true, 1e-4, 1e-5), (false, 2e-3, 1e-4)] {
            let reference = if sgemm { "twins+sgemm" } else { "twins" };
            let mut twin = model.clone();
            let (outs, aux) = reference::forward(&mut twin, &x, n, true, 9, 4, sgemm);
            for (i, (f, t)) in act.outs.iter().zip(&outs).enumerate() {
                let what = format!("{preset} train layer {i} {:?} vs {reference}", cfg.layers[i]);
                assert_tensor_close(&what, f, t, rel, 1e-6);
            }
            assert_eq!(fast.batches_tracked, twin.batches_tracked);
            for (f, t) in fast.tensors.iter().zip(&twin.tensors) {
                let what = format!("{preset} {} after the forward pass vs {reference}", t.name);
                assert_tensor_close(&what, &f.data, &t.data, rel / 10.0, 1e-7);
            }
            let g_t = reference::backward(&twin, &x, n, &outs, &aux, &dout, 9, 4, sgemm);
            let global = g_t.iter().flatten().fold(0f32, |a, v| a.max(v.abs()));
            for ((f, t), tensor) in g.iter().zip(&g_t).zip(&model.tensors) {
                assert_eq!(f.is_empty(), !tensor.trainable, "{} gradient", tensor.name);
                let what = format!("{preset} grad {} vs {reference}", tensor.name);
                assert_tensor_close(&what, f, t, rel, rel_global * global);
            }
        }
        // evaluation mode, unfolded and folded
        let x = uniform(&mut rng, n_eval * px, 0.0, 1.0);
        for m in [model.clone(), model.fold_batchnorm().unwrap()] {
            let layers = m.cfg.layers.len();
            let mut m2 = m.clone();
            let act = m2.forward_cpu(&x, n_eval, false, 0, 0).unwrap();
            assert_eq!(m2, m, "evaluation mode changed the model");
            assert_eq!(act.outs.len(), layers);
            assert!(act.outs[..layers - 1].iter().all(|o| o.is_empty()));
            for (sgemm, rel) in [(true, 1e-5), (false, 1e-4)] {
                let (want, _) = reference::forward(&mut model.clone(), &x, n_eval, false, 0, 0, sgemm);
                let what = format!("{preset} eval ({layers} layers) n={n_eval} vs twins (sgemm {sgemm})");
                assert_tensor_close(&what, act.last(), want.last().unwrap(), rel, 1e-6);
            }
            let e = m.backward_cpu(&x, &act, &vec![0.0; n_eval * cfg.head_outputs()], 0, 0).unwrap_err();
            assert!(e.to_string().contains("training-mode forward"), "{e}");
        }
    }
}

/// The model's passes give bitwise the same results in rayon pools of 1 and 2 threads.
#[test]
fn model_passes_do_not_depend_on_the_thread_count() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("model_passes_do_not_depend_on_the_thread_count: seed {seed}");
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            use rand::SeedableRng;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut all = Vec::new();
            for (preset, n) in [("seed", 40), ("fast", 300)] {
                let mut m = random_model(preset, &mut rng);
                let px = m.cfg.input_px * m.cfg.input_px;
                let x = uniform(&mut rng, n * px, 0.0, 1.0);
                let act = m.forward_cpu(&x, n, true, 1, 2).unwrap();
                let dout = uniform(&mut rng, n * m.cfg.head_outputs(), -1.0, 1.0);
                let g = m.backward_cpu(&x, &act, &dout, 1, 2).unwrap();
                let eval = m.forward_cpu(&x, n, false, 0, 0).unwrap();
                all.extend(act.outs.into_iter().chain(g).chain(eval.outs).flatten());
            }
            all
        })
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.len(), two.len());
    if let Some(i) = one.iter().zip(&two).position(|(a, b)| a.to_bits() != b.to_bits()) {
        panic!("1 vs 2 threads: element {i} differs: {} vs {}", one[i], two[i]);
    }
}

// ---------------------------------------------------------------------------------------------
// make_batch_cpu (parallel over samples) against the serial gather form it replaced.

/// The original serial `make_batch_cpu`: per pixel, the event's pixels that land on it gathered
/// in library order, and one Philox call per pixel.
fn make_batch_serial(p: &MakeBatchParams, lib: &LibraryArrays) -> Batch {
    use emsim::rng::{below, counter, gauss_pair, philox4x32_10, streams};
    let (n, side) = (p.n as usize, p.side as usize);
    let key = [p.key_lo, p.key_hi];
    let first = p.first_lo as u64 | (p.first_hi as u64) << 32;
    let c0 = (side / 2) as i32;
    let mut x = vec![0.0f32; n * side * side];
    let mut labels = vec![0u32; n];
    let mut target = vec![0.0f32; 2 * n];
    for s in 0..n {
        let k = first + s as u64;
        let r = philox4x32_10(counter(0, k, streams::TRAIN), key);
        let ev = p.ev_lo + below(r[0], p.ev_count);
        let span = 2 * p.shift + 1;
        let (sx, sy) = (below(r[1], span) as i32 - p.shift as i32, below(r[2], span) as i32 - p.shift as i32);
        let (lo, hi) = (lib.offsets[ev as usize] as usize, lib.offsets[ev as usize + 1] as usize);
        let img = &mut x[s * side * side..(s + 1) * side * side];
        for (pix, v) in img.iter_mut().enumerate() {
            let (col, row) = ((pix % side) as i32, (pix / side) as i32);
            let mut q = 0.0f32;
            for j in lo..hi {
                if c0 + sx + lib.dxdy[2 * j] == col && c0 + sy + lib.dxdy[2 * j + 1] == row {
                    q += lib.charge[j];
                }
            }
            let r = philox4x32_10(counter(1 + (pix / 4) as u32, k, streams::TRAIN), key);
            let lane = pix % 4;
            let (a, b) = if lane < 2 { (r[0], r[1]) } else { (r[2], r[3]) };
            let (z0, z1) = gauss_pair(a, b);
            let z = if lane % 2 == 0 { z0 } else { z1 };
            *v = (q + p.sigma_e * z) * p.input_scale;
        }
        let tx = (c0 + sx) as f32 + lib.incidence[2 * ev as usize];
        let ty = (c0 + sy) as f32 + lib.incidence[2 * ev as usize + 1];
        target[2 * s] = tx - c0 as f32 - 0.5;
        target[2 * s + 1] = ty - c0 as f32 - 0.5;
        labels[s] = grid_label(p, tx, ty);
    }
    Batch { x, labels, target }
}

#[test]
fn make_batch_cpu_equals_the_serial_version() {
    let mut rng = test_rng("make_batch_cpu_equals_the_serial_version");
    let lib = emsim::io::library::EventLibrary::read_h5(&emsim::default_library_path()).unwrap();
    let arrays = LibraryArrays::new(&lib).unwrap();
    for preset in ["seed", "seed-84", "fast"] {
        let cfg = ModelConfig::preset(preset).unwrap();
        let spec = SampleSpec { seed: rng.random(), ev_lo: 0, ev_count: lib.len() as u32, sigma_e: 20.0 };
        let first = rng.random_range(0..1 << 40);
        let p = MakeBatchParams::new(&cfg, &spec, first, 37);
        let want = make_batch_serial(&p, &arrays);
        // the batch has charge in it (the test compares real crops, not noise only); measured
        // on the same crops without noise, whose sum over a 41x41 crop (sd 820 e) would hide it
        let quiet = MakeBatchParams::new(&cfg, &SampleSpec { sigma_e: 0.0, ..spec }, first, 37);
        let charge = make_batch_serial(&quiet, &arrays).x.iter().sum::<f32>() / cfg.input_scale / 37.0;
        assert!(charge > 100.0, "{preset}: mean charge per crop {charge} e");
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let got = pool.install(|| make_batch_cpu(&p, &arrays));
            assert_bits_equal(&format!("{preset} x, {threads} threads"), &got.x, &want.x);
            assert_bits_equal(&format!("{preset} target, {threads} threads"), &got.target, &want.target);
            assert_eq!(got.labels, want.labels, "{preset} labels, {threads} threads");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timing of the whole networks (not a test: no assertions on time).

/// Samples/s of `Model::forward_cpu` in evaluation mode (batch norm folded, as `emsim bench`
/// does) and of a training step's forward + backward, seed and fast at batch 1000; the fastest
/// of 10 runs (other processes on a shared machine only add time). `EMSIM_TIME_TWINS=1` also times
/// the twins (slow).
#[test]
#[ignore = "timing; run with --release -- --ignored --nocapture"]
fn time_networks() {
    use rand::SeedableRng;
    use std::time::Instant;
    eprintln!("rayon threads: {}", rayon::current_num_threads());
    let n = 1000;
    let reps = 10;
    let best = |f: &mut dyn FnMut()| {
        f();
        (0..reps)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    for preset in ["seed", "fast"] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let m = Model::new(ModelConfig::preset(preset).unwrap(), 7).unwrap();
        let px = m.cfg.input_px * m.cfg.input_px;
        let x = uniform(&mut rng, n * px, 0.0, 1.0);
        let dout = uniform(&mut rng, n * m.cfg.head_outputs(), -1e-3, 1e-3);
        let mut folded = m.fold_batchnorm().unwrap();
        let t_eval = best(&mut || {
            std::hint::black_box(folded.forward_cpu(&x, n, false, 0, 0).unwrap());
        });
        let mut mt = m.clone();
        let (mut t_fwd, mut t_bwd) = (f64::INFINITY, f64::INFINITY);
        let t_train = best(&mut || {
            let t0 = Instant::now();
            let act = mt.forward_cpu(&x, n, true, 1, 1).unwrap();
            let t1 = Instant::now();
            std::hint::black_box(mt.backward_cpu(&x, &act, &dout, 1, 1).unwrap());
            let t2 = Instant::now();
            drop(act);
            t_fwd = t_fwd.min((t1 - t0).as_secs_f64());
            t_bwd = t_bwd.min((t2 - t1).as_secs_f64());
        });
        eprintln!(
            "{preset}, batch {n}: inference {:.0} samples/s ({:.1} ms); training forward+backward {:.0} samples/s \
             ({:.1} ms; best forward {:.1} ms, best backward {:.1} ms)",
            n as f64 / t_eval,
            t_eval * 1e3,
            n as f64 / t_train,
            t_train * 1e3,
            t_fwd * 1e3,
            t_bwd * 1e3
        );
        if std::env::var_os("EMSIM_TIME_TWINS").is_some() {
            let mut mt = m.clone();
            let t0 = Instant::now();
            let (outs, aux) = reference::forward(&mut mt, &x, n, true, 1, 1, false);
            std::hint::black_box(reference::backward(&mt, &x, n, &outs, &aux, &dout, 1, 1, false));
            eprintln!("{preset}, batch {n}: twins training {:.0} samples/s", n as f64 / t0.elapsed().as_secs_f64());
        }
    }
}

/// Per-function times of the fast layers on the seed network's shapes at batch 1000 (the other
/// layers: fast and twin, on the first block's 16x40x40 planes).
#[test]
#[ignore = "timing; run with --release -- --ignored --nocapture"]
fn time_seed_layers() {
    use std::time::Instant;
    let n = 1000;
    let mut rng = test_rng("time_seed_layers");
    let reps = 10;
    let time = |f: &mut dyn FnMut()| {
        f();
        // The fastest of `reps` runs: other processes on this shared machine only add time.
        (0..reps)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    for (name, s) in conv_shapes(n).into_iter().take(5) {
        let x = uniform(&mut rng, s.input.len(), -1.0, 1.0);
        let w = uniform(&mut rng, s.weight().len(), -0.5, 0.5);
        let b = uniform(&mut rng, s.c_out, -0.5, 0.5);
        let dy = uniform(&mut rng, s.output().len(), -1.0, 1.0);
        let (mut y, mut dx) = (vec![0.0; s.output().len()], vec![0.0; s.input.len()]);
        let (mut dw, mut db) = (vec![0.0; s.weight().len()], vec![0.0; s.c_out]);
        let gflop = 2.0 * s.output().len() as f64 * s.fan_in() as f64 / 1e9;
        let tf = time(&mut || conv2d_fwd_fast(&s, &x, &w, &b, &mut y));
        let ti = time(&mut || conv2d_bwd_input_fast(&s, &w, &dy, &mut dx));
        let tw = time(&mut || conv2d_bwd_weight_fast(&s, &x, &dy, &mut dw, &mut db));
        eprintln!(
            "{name}: fwd {:.1} ms ({:.1} GFLOP/s), bwd_input {:.1} ms ({:.1}), bwd_weight {:.1} ms ({:.1})",
            tf * 1e3,
            gflop / tf,
            ti * 1e3,
            gflop / ti,
            tw * 1e3,
            gflop / tw
        );
    }
    for (name, s) in linear_shapes(n).into_iter().take(4) {
        let x = uniform(&mut rng, s.n * s.in_f, -1.0, 1.0);
        let w = uniform(&mut rng, s.weight_len(), -0.5, 0.5);
        let b = uniform(&mut rng, s.out_f, -0.5, 0.5);
        let dy = uniform(&mut rng, s.n * s.out_f, -1.0, 1.0);
        let (mut y, mut dx) = (vec![0.0; s.n * s.out_f], vec![0.0; s.n * s.in_f]);
        let (mut dw, mut db) = (vec![0.0; s.weight_len()], vec![0.0; s.out_f]);
        let gflop = 2.0 * (s.n * s.weight_len()) as f64 / 1e9;
        let tf = time(&mut || linear_fwd_fast(&s, &x, &w, &b, &mut y));
        let ti = time(&mut || linear_bwd_input_fast(&s, &w, &dy, &mut dx));
        let tw = time(&mut || linear_bwd_weight_fast(&s, &x, &dy, &mut dw, &mut db));
        eprintln!(
            "{name}: fwd {:.1} ms ({:.1} GFLOP/s), bwd_input {:.1} ms ({:.1}), bwd_weight {:.1} ms ({:.1})",
            tf * 1e3,
            gflop / tf,
            ti * 1e3,
            gflop / ti,
            tw * 1e3,
            gflop / tw
        );
    }
    // The other layers on the first block's [1000, 16, 40, 40] (the largest tensor).
    let xs = Shape4::new(n, 16, 40, 40);
    let len = xs.len();
    let x = uniform(&mut rng, len, -1.0, 1.0);
    let (mut y, mut y2) = (vec![0.0; len], vec![0.0; len]);
    let report = |name: &str, fast: f64, twin: f64| {
        eprintln!("{name}: fast {:.1} ms, twin {:.1} ms", fast * 1e3, twin * 1e3);
    };
    let tf = time(&mut || relu_fwd_fast(&x, &mut y));
    let tt = time(&mut || relu_fwd_cpu(&x, &mut y));
    report("relu_fwd", tf, tt);
    let bn = BatchNorm2dShape::new(xs);
    let (mut mean, mut var) = (vec![0.0; 16], vec![0.0; 16]);
    let tf = time(&mut || batchnorm2d_stats_fast(&bn, &x, &mut mean, &mut var));
    let tt = time(&mut || batchnorm2d_stats_cpu(&bn, &x, &mut mean, &mut var));
    report("batchnorm2d_stats", tf, tt);
    let g = vec![1.0; 16];
    let tf = time(&mut || batchnorm2d_fwd_fast(&bn, &x, &mean, &var, &g, &g, &mut y));
    let tt = time(&mut || batchnorm2d_fwd_cpu(&bn, &x, &mean, &var, &g, &g, &mut y));
    report("batchnorm2d_fwd", tf, tt);
    let pool = MaxPool2dShape::new(xs, 4);
    let ny = pool.output().len();
    let (mut yp, mut idx) = (vec![0.0; ny], vec![0u32; ny]);
    let tf = time(&mut || maxpool2d_fwd_fast(&pool, &x, &mut yp, &mut idx));
    let tt = time(&mut || maxpool2d_fwd_cpu(&pool, &x, &mut yp, &mut idx));
    report("maxpool2d_fwd", tf, tt);
    let tf = time(&mut || maxpool2d_bwd_fast(&pool, &idx, &yp, &mut y));
    let tt = time(&mut || maxpool2d_bwd_cpu(&pool, &idx, &yp, &mut y));
    report("maxpool2d_bwd", tf, tt);
    let (mut dg, mut db) = (vec![0.0; 16], vec![0.0; 16]);
    let tf = time(&mut || batchnorm2d_bwd_reduce_fast(&bn, &x, &mean, &var, &y, &mut dg, &mut db));
    let tt = time(&mut || batchnorm2d_bwd_reduce_cpu(&bn, &x, &mean, &var, &y, &mut dg, &mut db));
    report("batchnorm2d_bwd_reduce", tf, tt);
    let tf = time(&mut || batchnorm2d_bwd_input_fast(&bn, &x, &mean, &var, &g, &dg, &db, &y, &mut y2));
    let tt = time(&mut || batchnorm2d_bwd_input_cpu(&bn, &x, &mean, &var, &g, &dg, &db, &y, &mut y2));
    report("batchnorm2d_bwd_input", tf, tt);
    let tf = time(&mut || relu_bwd_fast(&x, &y, &mut y2));
    let tt = time(&mut || relu_bwd_cpu(&x, &y, &mut y2));
    report("relu_bwd", tf, tt);
    let tf = time(&mut || relu_batchnorm2d_stats_fast(&bn, &x, &mut y, &mut mean, &mut var));
    eprintln!("fused relu + batchnorm2d_stats: {:.1} ms", tf * 1e3);
    let tf =
        time(&mut || batchnorm2d_maxpool2d_fwd_fast(&bn, &pool, &x, &mean, &var, &g, &g, &mut y, &mut yp, &mut idx));
    eprintln!("fused batchnorm2d_fwd + maxpool2d_fwd: {:.1} ms", tf * 1e3);
    let tf = time(&mut || {
        maxpool2d_batchnorm2d_bwd_fast(&pool, &bn, true, &x, &mean, &var, &g, &idx, &yp, &mut dg, &mut db, &mut y2)
    });
    eprintln!("fused maxpool2d_bwd + batchnorm2d_bwd + relu_bwd: {:.1} ms", tf * 1e3);
    let tf = time(&mut || zeroed::<f32>(len).iter_mut().for_each(|v| *v = 1.0));
    let tt = time(&mut || vec![0.0f32; len].iter_mut().for_each(|v| *v = 1.0));
    eprintln!("a fresh 102 MB activation, written once: zeroed {:.1} ms, vec! {:.1} ms", tf * 1e3, tt * 1e3);
}
