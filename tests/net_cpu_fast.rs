//! The fast CPU conv2d / linear layers (`emsim::net::cpu_fast`, im2col + SGEMM) against their plain
//! twins, on fresh random input (the seed is printed; replay with `EMSIM_TEST_SEED`). CPU only.
//!
//! Tolerance: `|fast - twin| <= 1e-4 * scale` per element, where `scale` is the element's sum of
//! `|terms|`, computed by running the twin on `|inputs|`. Both sum in f32 (the twins' batch sums in
//! f64) in different orders; each is within `~K u scale` of the exact value (`u = 2^-24`, K terms
//! per f32 sum, K <= a few thousand here), far inside 1e-4. An indexing error, a missing write
//! (outputs are pre-filled with garbage) or a NaN fails.
//!
//! Also: results are bitwise identical in rayon pools of 1, 2 and 3 threads, and an
//! `#[ignore]`d timing of the seed network (run with
//! `cargo test --release --test net_cpu_fast -- --ignored --nocapture`).

mod common;

use common::test_rng;
use emsim::net::Shape4;
use emsim::net::conv2d::*;
use emsim::net::cpu_fast::*;
use emsim::net::linear::*;
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
    assert_eq!(fast.len(), twin.len(), "{what}: length");
    assert_eq!(scale.len(), twin.len(), "{what}: scale length");
    let mut worst = 0f64;
    for (i, ((&f, &t), &s)) in fast.iter().zip(twin).zip(scale).enumerate() {
        let err = (f as f64 - t as f64).abs();
        let tol = REL * s as f64 + 1e-30;
        assert!(err <= tol, "{what}: element {i}: fast {f} vs twin {t}, |diff| {err:e} > tolerance {tol:e}");
        worst = worst.max(err / tol);
    }
    eprintln!("{what}: worst |fast-twin| = {worst:.2e} of the tolerance");
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
// Timing of the seed network (not a test: no assertions on time).

mod timing {
    use super::*;
    use emsim::net::batchnorm2d::*;
    use emsim::net::dropout::{DropoutCfg, dropout_bwd_cpu, dropout_fwd_cpu};
    use emsim::net::maxpool2d::{MaxPool2dShape, maxpool2d_bwd_cpu, maxpool2d_fwd_cpu};
    use emsim::net::model::{LayerSpec, Model, ModelConfig};
    use emsim::net::relu::{relu_bwd_cpu, relu_fwd_cpu};
    use std::time::{Duration, Instant};

    type ConvFwd = fn(&Conv2dShape, &[f32], &[f32], &[f32], &mut [f32]);
    type ConvBwdIn = fn(&Conv2dShape, &[f32], &[f32], &mut [f32]);
    type ConvBwdW = fn(&Conv2dShape, &[f32], &[f32], &mut [f32], &mut [f32]);
    type LinFwd = fn(&LinearShape, &[f32], &[f32], &[f32], &mut [f32]);
    type LinBwdIn = fn(&LinearShape, &[f32], &[f32], &mut [f32]);
    type LinBwdW = fn(&LinearShape, &[f32], &[f32], &mut [f32], &mut [f32]);

    /// The conv/linear functions a pass uses.
    #[derive(Clone, Copy)]
    struct Impl {
        conv_fwd: ConvFwd,
        conv_bwd_input: ConvBwdIn,
        conv_bwd_weight: ConvBwdW,
        linear_fwd: LinFwd,
        linear_bwd_input: LinBwdIn,
        linear_bwd_weight: LinBwdW,
    }

    const FAST: Impl = Impl {
        conv_fwd: conv2d_fwd_fast,
        conv_bwd_input: conv2d_bwd_input_fast,
        conv_bwd_weight: conv2d_bwd_weight_fast,
        linear_fwd: linear_fwd_fast,
        linear_bwd_input: linear_bwd_input_fast,
        linear_bwd_weight: linear_bwd_weight_fast,
    };
    const TWIN: Impl = Impl {
        conv_fwd: conv2d_fwd_cpu,
        conv_bwd_input: conv2d_bwd_input_cpu,
        conv_bwd_weight: conv2d_bwd_weight_cpu,
        linear_fwd: linear_fwd_cpu,
        linear_bwd_input: linear_bwd_input_cpu,
        linear_bwd_weight: linear_bwd_weight_cpu,
    };

    /// Time spent in conv/linear calls, and in everything else.
    #[derive(Default)]
    struct Times {
        conv_linear: Duration,
        total: Duration,
    }

    enum Aux {
        None,
        Idx(Vec<u32>),
        Stats(Vec<f32>, Vec<f32>),
    }

    /// `Model::forward_cpu` (and `backward_cpu` when `dout` is given) with the conv/linear
    /// functions of `imp`; the other layers are the twins, as in model.rs.
    fn pass(m: &Model, x: &[f32], n: usize, train: bool, dout: Option<&[f32]>, imp: Impl, t: &mut Times) {
        let start = Instant::now();
        let plan = m.cfg.plan(n).unwrap();
        let tensor = |i: Option<usize>| m.tensors[i.unwrap()].data.as_slice();
        let mut outs: Vec<Vec<f32>> = Vec::new();
        let mut aux = Vec::new();
        for (i, p) in plan.iter().enumerate() {
            let input: &[f32] = if i == 0 { x } else { &outs[i - 1] };
            let mut y = vec![0.0f32; p.output.len()];
            let lt = m.layer_tensors[i];
            let mut a = Aux::None;
            match m.cfg.layers[i] {
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    let s = Conv2dShape::new(p.input, out_channels, kernel, kernel, padding, stride);
                    let t0 = Instant::now();
                    (imp.conv_fwd)(&s, input, tensor(lt.weight), tensor(lt.bias), &mut y);
                    t.conv_linear += t0.elapsed();
                }
                LayerSpec::Linear { out_features } => {
                    let s = LinearShape::new(n, p.input.c, out_features);
                    let t0 = Instant::now();
                    (imp.linear_fwd)(&s, input, tensor(lt.weight), tensor(lt.bias), &mut y);
                    t.conv_linear += t0.elapsed();
                }
                LayerSpec::Relu => relu_fwd_cpu(input, &mut y),
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let s = MaxPool2dShape::with_stride(p.input, kernel, stride.unwrap_or(kernel));
                    let mut idx = vec![0u32; p.output.len()];
                    maxpool2d_fwd_cpu(&s, input, &mut y, &mut idx);
                    a = Aux::Idx(idx);
                }
                LayerSpec::BatchNorm2d { eps, .. } => {
                    let s = BatchNorm2dShape { x: p.input, eps };
                    let (g, b) = (tensor(lt.weight), tensor(lt.bias));
                    if train {
                        let (mut mean, mut var) = (vec![0.0; p.input.c], vec![0.0; p.input.c]);
                        batchnorm2d_stats_cpu(&s, input, &mut mean, &mut var);
                        batchnorm2d_fwd_cpu(&s, input, &mean, &var, g, b, &mut y);
                        a = Aux::Stats(mean, var);
                    } else {
                        let (rm, rv) = (tensor(lt.running_mean), tensor(lt.running_var));
                        batchnorm2d_fwd_cpu(&s, input, rm, rv, g, b, &mut y);
                    }
                }
                LayerSpec::Dropout { p: prob } => {
                    if train {
                        dropout_fwd_cpu(
                            &DropoutCfg { n: y.len(), p: prob, seed: 1, step: 0, layer: i as u32 },
                            input,
                            &mut y,
                        );
                    } else {
                        y.copy_from_slice(input);
                    }
                }
                LayerSpec::Flatten => y.copy_from_slice(input),
            }
            outs.push(y);
            aux.push(a);
        }
        let Some(dout) = dout else {
            t.total += start.elapsed();
            return;
        };
        let mut dy = dout.to_vec();
        for i in (0..plan.len()).rev() {
            let p = plan[i];
            let input: &[f32] = if i == 0 { x } else { &outs[i - 1] };
            let lt = m.layer_tensors[i];
            let mut dx = vec![0.0f32; p.input.len()];
            match m.cfg.layers[i] {
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    let s = Conv2dShape::new(p.input, out_channels, kernel, kernel, padding, stride);
                    let (mut dw, mut db) = (vec![0.0; s.weight().len()], vec![0.0; out_channels]);
                    let t0 = Instant::now();
                    (imp.conv_bwd_weight)(&s, input, &dy, &mut dw, &mut db);
                    if i > 0 {
                        (imp.conv_bwd_input)(&s, tensor(lt.weight), &dy, &mut dx);
                    }
                    t.conv_linear += t0.elapsed();
                }
                LayerSpec::Linear { out_features } => {
                    let s = LinearShape::new(n, p.input.c, out_features);
                    let (mut dw, mut db) = (vec![0.0; s.weight_len()], vec![0.0; out_features]);
                    let t0 = Instant::now();
                    (imp.linear_bwd_weight)(&s, input, &dy, &mut dw, &mut db);
                    (imp.linear_bwd_input)(&s, tensor(lt.weight), &dy, &mut dx);
                    t.conv_linear += t0.elapsed();
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
                    let (mut dg, mut dbeta) = (vec![0.0; p.input.c], vec![0.0; p.input.c]);
                    batchnorm2d_bwd_reduce_cpu(&s, input, mean, var, &dy, &mut dg, &mut dbeta);
                    let g = tensor(lt.weight);
                    batchnorm2d_bwd_input_cpu(&s, input, mean, var, g, &dg, &dbeta, &dy, &mut dx);
                }
                LayerSpec::Dropout { p: prob } => {
                    let c = DropoutCfg { n: dy.len(), p: prob, seed: 1, step: 0, layer: i as u32 };
                    dropout_bwd_cpu(&c, &dy, &mut dx);
                }
                LayerSpec::Flatten => dx.copy_from_slice(&dy),
            }
            dy = dx;
        }
        t.total += start.elapsed();
    }

    fn report(preset: &str, what: &str, n: usize, t: &Times) {
        let per = |d: Duration| d.as_secs_f64();
        eprintln!(
            "{preset} {what}, batch {n}: {:.0} samples/s whole network ({:.1} ms/batch; conv+linear {:.1} ms, {:.0} samples/s alone)",
            n as f64 / per(t.total),
            per(t.total) * 1e3,
            per(t.conv_linear) * 1e3,
            n as f64 / per(t.conv_linear),
        );
    }

    fn time_preset(preset: &str, n: usize, reps: usize, with_twins: bool) {
        use rand::SeedableRng;
        let cfg = ModelConfig::preset(preset).unwrap();
        let m = Model::new(cfg.clone(), 7).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let x = uniform(&mut rng, n * cfg.input_px * cfg.input_px, 0.0, 1.0);
        let dout = uniform(&mut rng, n * cfg.head_outputs(), -1e-3, 1e-3);
        let imps: &[(&str, Impl)] = if with_twins { &[("fast", FAST), ("twins", TWIN)] } else { &[("fast", FAST)] };
        for &(label, imp) in imps {
            let reps = if label == "twins" { 1 } else { reps };
            pass(&m, &x, n, false, None, imp, &mut Times::default()); // warm-up
            // The fastest of `reps` passes: other processes on this shared machine only add time.
            let best = |train: bool| {
                (0..reps)
                    .map(|_| {
                        let mut t = Times::default();
                        pass(&m, &x, n, train, train.then_some(dout.as_slice()), imp, &mut t);
                        t
                    })
                    .min_by(|a, b| a.total.cmp(&b.total))
                    .unwrap()
            };
            report(preset, &format!("{label} inference"), n, &best(false));
            report(preset, &format!("{label} forward+backward (train)"), n, &best(true));
        }
    }

    #[test]
    #[ignore = "timing; run with --release -- --ignored --nocapture"]
    fn time_seed_network() {
        eprintln!("rayon threads: {}", rayon::current_num_threads());
        time_preset("seed", 1000, 10, std::env::var_os("EMSIM_TIME_TWINS").is_some());
        time_preset("fast", 1000, 10, false);
    }
}

/// Per-function times of the fast layers on the seed network's shapes at batch 1000.
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
}
