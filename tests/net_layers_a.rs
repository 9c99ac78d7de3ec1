//! Network layers, part A: conv2d, linear and relu kernels against their CPU twins on fresh random
//! input, and finite-difference checks of the backward twins.
//!
//! Tolerances. WGSL's `+` and `*` are correctly rounded, so every sum below obeys the textbook bound
//! for recursive summation of K (rounded) products: `|fl(s) - s| <= gamma_K * sum|terms|`,
//! `gamma_K = K u / (1 - K u)`, `u = 2^-24`. The per-element `sum|terms|` is computed exactly the way
//! the layer is, by running the twin on `|inputs|`. Hence:
//! - dot products (conv2d_fwd, conv2d_bwd_input, linear_fwd, linear_bwd_input): the GPU adds the
//!   same terms recursively (in the twin's order, except conv2d_fwd with stride > 1, which takes kx
//!   by residue class; the bound holds for any order) and may fuse multiply-adds; both results lie
//!   within `gamma_K * scale` of the exact value, so `|gpu - cpu| <= 2 gamma_K * scale` with K the
//!   number of terms (+ bias);
//! - batch reductions (conv2d_bwd_weight, linear_bwd_weight): the twin sums in f64 (then rounds
//!   once, `u |cpu|`), the GPU in two f32 stages of `chunk_rows` and `n_chunks` terms, so
//!   `|gpu - cpu| <= (gamma_{chunk_rows + n_chunks + 1} + u) * scale`;
//! - relu and reduce_chunks: the same operations in the same order, so bit-identical.
//!
//! Every GPU wrapper pre-fills outputs and scratch with -12345, so a missing write fails.

mod common;

use common::{assert_bits_equal, test_context, test_rng};
use emsim::gpu::GpuContext;
use emsim::net::Shape4;
use emsim::net::conv2d::*;
use emsim::net::linear::*;
use emsim::net::reduce::{ChunkPlan, ReduceChunksParams, reduce_chunks_cpu, reduce_chunks_gpu};
use emsim::net::relu::*;
use rand::RngExt;

const U: f64 = 1.0 / 16_777_216.0; // 2^-24, the unit roundoff of f32

fn gamma(k: usize) -> f64 {
    let ku = k as f64 * U;
    ku / (1.0 - ku)
}

fn uniform(rng: &mut impl rand::Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// `|gpu - cpu| <= rel * scale + 1e-30` per element; reports the worst element (relative to its
/// tolerance) on success, the first failing element otherwise.
#[track_caller]
fn assert_within(what: &str, gpu: &[f32], cpu: &[f32], scale: &[f32], rel: f64) {
    assert_eq!(scale.len(), cpu.len(), "{what}: scale length");
    common::assert_within(what, gpu, cpu, |i| rel * scale[i] as f64 + 1e-30);
}

// ------------------------------------------------------------------------------------------------
// conv2d

/// `(label, [n, c_in, h, w, c_out, kh, kw, pad, stride])`.
const CONV_CASES: &[(&str, [usize; 9])] = &[
    ("1x1 input, 1x1 kernel, batch 1", [1, 1, 1, 1, 1, 1, 1, 0, 1]),
    ("k3 pad 0, batch 1", [1, 1, 5, 5, 1, 3, 3, 0, 1]),
    ("k3x2 pad 1, odd batch, C_in 2, C_out 5", [3, 2, 7, 9, 5, 3, 2, 1, 1]),
    ("k2x3 pad 2 stride 2, C_out 9 (two channel blocks)", [2, 3, 8, 7, 9, 2, 3, 2, 2]),
    ("k4 pad 1 stride 2, floor remainder", [1, 2, 9, 10, 3, 4, 4, 1, 2]),
    ("k2 pad 1 stride 3, unread input pixels", [2, 1, 8, 8, 4, 2, 2, 1, 3]),
    ("k5x1 pad 2", [1, 2, 6, 5, 3, 5, 1, 2, 1]),
    ("11x11 crop, 1 -> 16 k3 pad 1", [5, 1, 11, 11, 16, 3, 3, 1, 1]),
    ("seed conv1: 1 -> 16 k4 pad 1 on 41x41", [3, 1, 41, 41, 16, 4, 4, 1, 1]),
    ("seed conv2: 16 -> 32 k3 pad 1 on 10x10", [3, 16, 10, 10, 32, 3, 3, 1, 1]),
    ("seed conv3: 32 -> 64 k2 pad 0 on 3x3", [3, 32, 3, 3, 64, 2, 2, 0, 1]),
    ("empty batch", [0, 2, 5, 5, 3, 3, 3, 1, 1]),
];

fn conv_shape(c: [usize; 9]) -> Conv2dShape {
    let [n, ci, h, w, co, kh, kw, pad, stride] = c;
    Conv2dShape::new(Shape4::new(n, ci, h, w), co, kh, kw, pad, stride)
}

struct ConvData {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    dy: Vec<f32>,
}

fn conv_data(rng: &mut impl rand::Rng, s: &Conv2dShape) -> ConvData {
    ConvData {
        x: uniform(rng, s.input.len(), -1.0, 1.0),
        w: uniform(rng, s.weight().len(), -1.0, 1.0),
        b: uniform(rng, s.c_out, -1.0, 1.0),
        dy: uniform(rng, s.output().len(), -1.0, 1.0),
    }
}

fn check_conv_fwd(ctx: &GpuContext, what: &str, s: &Conv2dShape, d: &ConvData) {
    let mut cpu = vec![0.0; s.output().len()];
    conv2d_fwd_cpu(s, &d.x, &d.w, &d.b, &mut cpu);
    let mut scale = vec![0.0; cpu.len()];
    conv2d_fwd_cpu(s, &abs(&d.x), &abs(&d.w), &abs(&d.b), &mut scale);
    let gpu = conv2d_fwd_gpu(ctx, s, &d.x, &d.w, &d.b).unwrap();
    assert_within(&format!("conv2d_fwd {what}"), &gpu, &cpu, &scale, 2.0 * gamma(s.fan_in() + 1));
}

fn check_conv_bwd_input(ctx: &GpuContext, what: &str, s: &Conv2dShape, d: &ConvData) {
    let mut cpu = vec![0.0; s.input.len()];
    conv2d_bwd_input_cpu(s, &d.w, &d.dy, &mut cpu);
    let mut scale = vec![0.0; cpu.len()];
    conv2d_bwd_input_cpu(s, &abs(&d.w), &abs(&d.dy), &mut scale);
    let gpu = conv2d_bwd_input_gpu(ctx, s, &d.w, &d.dy).unwrap();
    assert_within(&format!("conv2d_bwd_input {what}"), &gpu, &cpu, &scale, 2.0 * gamma(s.c_out * s.kh * s.kw));
}

fn check_conv_bwd_weight(ctx: &GpuContext, what: &str, s: &Conv2dShape, d: &ConvData) {
    let (mut dw, mut db) = (vec![0.0; s.weight().len()], vec![0.0; s.c_out]);
    conv2d_bwd_weight_cpu(s, &d.x, &d.dy, &mut dw, &mut db);
    let (mut sw, mut sb) = (vec![0.0; dw.len()], vec![0.0; db.len()]);
    conv2d_bwd_weight_cpu(s, &abs(&d.x), &abs(&d.dy), &mut sw, &mut sb);
    let (gw, gb) = conv2d_bwd_weight_gpu(ctx, s, &d.x, &d.dy).unwrap();
    let plan = conv2d_bwd_weight_plan(s);
    let rel = gamma(plan.chunk_rows + plan.n_chunks + 1) + U;
    assert_within(&format!("conv2d_bwd_weight dw {what} ({plan:?})"), &gw, &dw, &sw, rel);
    assert_within(&format!("conv2d_bwd_weight db {what}"), &gb, &db, &sb, rel);
}

#[test]
fn conv2d_fwd_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("conv2d_fwd_matches_twin");
    for &(what, c) in CONV_CASES {
        let s = conv_shape(c);
        check_conv_fwd(&ctx, what, &s, &conv_data(&mut rng, &s));
    }
}

#[test]
fn conv2d_bwd_input_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("conv2d_bwd_input_matches_twin");
    for &(what, c) in CONV_CASES {
        let s = conv_shape(c);
        check_conv_bwd_input(&ctx, what, &s, &conv_data(&mut rng, &s));
    }
}

#[test]
fn conv2d_bwd_weight_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("conv2d_bwd_weight_matches_twin");
    for &(what, c) in CONV_CASES {
        let s = conv_shape(c);
        check_conv_bwd_weight(&ctx, what, &s, &conv_data(&mut rng, &s));
    }
}

/// Batch sums split over many chunks: minimum-size chunks with a short last one, and (seed conv3
/// at batch 300) chunks longer than the minimum, crossing image boundaries.
#[test]
fn conv2d_bwd_weight_uses_several_chunks() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("conv2d_bwd_weight_uses_several_chunks");
    let cases: [(&str, [usize; 9], ChunkPlan); 2] = [
        ("7 x 12x12, 2 -> 3", [7, 3, 12, 12, 2, 3, 3, 1, 1], ChunkPlan { chunk_rows: 32, n_chunks: 32 }),
        ("seed conv3 at batch 300", [300, 32, 3, 3, 64, 2, 2, 0, 1], ChunkPlan { chunk_rows: 39, n_chunks: 31 }),
    ];
    for (what, c, want) in cases {
        let s = conv_shape(c);
        let plan = conv2d_bwd_weight_plan(&s);
        assert_eq!(plan, want, "{what}");
        let rows = s.output().n * s.out_h() * s.out_w();
        assert!(!rows.is_multiple_of(plan.chunk_rows), "{what}: the last chunk should be partial");
        check_conv_bwd_weight(&ctx, what, &s, &conv_data(&mut rng, &s));
    }
}

/// The kernels' block structure (src/net/conv2d.rs): partial channel blocks of the wide
/// conv2d_bwd_input variant and of the forward, and weights too large for the uniform buffer
/// (the `_wstorage` variants, with wide and narrow C_in, stride 1 and 2).
#[test]
fn conv2d_block_edges_and_storage_weights() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("conv2d_block_edges_and_storage_weights");
    let cases: [(&str, [usize; 9], bool); 4] = [
        ("C_in 20 -> C_out 21, stride 2 (partial blocks)", [2, 20, 6, 7, 21, 3, 3, 1, 2], true),
        ("C_in 17 -> C_out 33, k2 (one channel past a block)", [3, 17, 5, 4, 33, 2, 2, 0, 1], true),
        ("64 -> 32 k3: weights over 64 KiB", [1, 64, 5, 5, 32, 3, 3, 1, 1], false),
        ("3 -> 200 k6x5 stride 2: weights over 64 KiB, narrow C_in", [2, 3, 7, 6, 200, 6, 5, 2, 2], false),
    ];
    for (what, c, uniform) in cases {
        let s = conv_shape(c);
        assert_eq!(conv2d_weights_in_uniform(&ctx, s.weight().len() + s.c_out), uniform, "{what}");
        assert_eq!(conv2d_weights_in_uniform(&ctx, s.weight().len()), uniform, "{what}");
        let d = conv_data(&mut rng, &s);
        check_conv_fwd(&ctx, what, &s, &d);
        check_conv_bwd_input(&ctx, what, &s, &d);
        check_conv_bwd_weight(&ctx, what, &s, &d);
    }
}

// ------------------------------------------------------------------------------------------------
// linear

const LINEAR_CASES: &[(&str, [usize; 3])] = &[
    ("1 -> 1, batch 1", [1, 1, 1]),
    ("5 -> 7, odd batch", [3, 5, 7]),
    ("300 -> 3 (in_f > 256)", [5, 300, 3]),
    ("seed head 64 -> 100, batch 7", [7, 64, 100]),
    ("64 -> 7056, batch 2 (one chunk)", [2, 64, 7056]),
    ("5 -> 3, batch 200 (7 chunks)", [200, 5, 3]),
    ("seed head 64 -> 100, batch 1000 (32 chunks)", [1000, 64, 100]),
    ("empty batch", [0, 4, 3]),
];

struct LinearData {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    dy: Vec<f32>,
}

fn linear_data(rng: &mut impl rand::Rng, s: &LinearShape) -> LinearData {
    LinearData {
        x: uniform(rng, s.n * s.in_f, -1.0, 1.0),
        w: uniform(rng, s.weight_len(), -1.0, 1.0),
        b: uniform(rng, s.out_f, -1.0, 1.0),
        dy: uniform(rng, s.n * s.out_f, -1.0, 1.0),
    }
}

fn check_linear(ctx: &GpuContext, what: &str, s: &LinearShape, d: &LinearData) {
    let mut y = vec![0.0; s.n * s.out_f];
    linear_fwd_cpu(s, &d.x, &d.w, &d.b, &mut y);
    let mut sy = vec![0.0; y.len()];
    linear_fwd_cpu(s, &abs(&d.x), &abs(&d.w), &abs(&d.b), &mut sy);
    let gy = linear_fwd_gpu(ctx, s, &d.x, &d.w, &d.b).unwrap();
    assert_within(&format!("linear_fwd {what}"), &gy, &y, &sy, 2.0 * gamma(s.in_f + 1));
    // With the fused ReLU (inference): max(., 0) moves no value further from its twin's.
    let mut yr = vec![0.0; y.len()];
    linear_relu_fwd_cpu(s, &d.x, &d.w, &d.b, &mut yr);
    let gyr = linear_fwd_gpu_relu(ctx, s, true, &d.x, &d.w, &d.b).unwrap();
    assert!(gyr.iter().all(|&v| v >= 0.0), "linear_fwd {what} with ReLU: a negative output");
    assert_within(&format!("linear_fwd {what} with ReLU"), &gyr, &yr, &sy, 2.0 * gamma(s.in_f + 1));

    let mut dx = vec![0.0; s.n * s.in_f];
    linear_bwd_input_cpu(s, &d.w, &d.dy, &mut dx);
    let mut sdx = vec![0.0; dx.len()];
    linear_bwd_input_cpu(s, &abs(&d.w), &abs(&d.dy), &mut sdx);
    let gdx = linear_bwd_input_gpu(ctx, s, &d.w, &d.dy).unwrap();
    assert_within(&format!("linear_bwd_input {what}"), &gdx, &dx, &sdx, 2.0 * gamma(s.out_f));

    let (mut dw, mut db) = (vec![0.0; s.weight_len()], vec![0.0; s.out_f]);
    linear_bwd_weight_cpu(s, &d.x, &d.dy, &mut dw, &mut db);
    let (mut sw, mut sb) = (vec![0.0; dw.len()], vec![0.0; db.len()]);
    linear_bwd_weight_cpu(s, &abs(&d.x), &abs(&d.dy), &mut sw, &mut sb);
    let (gw, gb) = linear_bwd_weight_gpu(ctx, s, &d.x, &d.dy).unwrap();
    let plan = linear_bwd_weight_plan(s);
    let rel = gamma(plan.chunk_rows + plan.n_chunks + 1) + U;
    assert_within(&format!("linear_bwd_weight dw {what} ({plan:?})"), &gw, &dw, &sw, rel);
    assert_within(&format!("linear_bwd_weight db {what}"), &gb, &db, &sb, rel);
}

#[test]
fn linear_kernels_match_twins() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("linear_kernels_match_twins");
    for &(what, [n, in_f, out_f]) in LINEAR_CASES {
        let s = LinearShape::new(n, in_f, out_f);
        check_linear(&ctx, what, &s, &linear_data(&mut rng, &s));
    }
    // The cases above exercise one chunk, several minimum-size chunks with a partial last one, and
    // no chunk at all.
    assert_eq!(linear_bwd_weight_plan(&LinearShape::new(2, 64, 7056)).n_chunks, 1);
    assert_eq!(linear_bwd_weight_plan(&LinearShape::new(200, 5, 3)), ChunkPlan { chunk_rows: 32, n_chunks: 7 });
    assert_eq!(linear_bwd_weight_plan(&LinearShape::new(1000, 64, 100)).n_chunks, 32);
    assert_eq!(linear_bwd_weight_scratch_len(&LinearShape::new(0, 4, 3)), 0);
}

// ------------------------------------------------------------------------------------------------
// relu and reduce_chunks (exact)

/// Random values with the awkward ones mixed in: exact zeros of both signs, tiny and huge normals.
fn relu_input(rng: &mut impl rand::Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.random_range(0..10) {
            0 => 0.0,
            1 => -0.0,
            2 => rng.random_range(-1e-30..1e-30f32),
            3 => rng.random_range(-1e30..1e30f32),
            _ => rng.random_range(-2.0..2.0f32),
        })
        .collect()
}

#[test]
fn relu_kernels_match_twins_exactly() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("relu_kernels_match_twins_exactly");
    for n in [0, 1, 255, 256, 257, 1000, 3 * 256 * 7 + 5] {
        let x = relu_input(&mut rng, n);
        let mut y = vec![0.0; n];
        relu_fwd_cpu(&x, &mut y);
        assert_bits_equal(&format!("relu_fwd n={n}"), &relu_fwd_gpu(&ctx, &x).unwrap(), &y);
        let dy = uniform(&mut rng, n, -1.0, 1.0);
        let mut dx = vec![0.0; n];
        relu_bwd_cpu(&y, &dy, &mut dx);
        assert_bits_equal(&format!("relu_bwd n={n}"), &relu_bwd_gpu(&ctx, &y, &dy).unwrap(), &dx);
    }
}

#[test]
fn reduce_chunks_matches_twin_exactly() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("reduce_chunks_matches_twin_exactly");
    for (n_params, n_chunks, n_split) in [(1, 1, 1), (300, 7, 290), (257, 0, 250), (40, 3, 40), (5, 2, 0)] {
        let p = ReduceChunksParams { n_params, n_chunks, n_split, _pad0: 0 };
        let partials = uniform(&mut rng, (n_params * n_chunks) as usize, -100.0, 100.0);
        let mut a = vec![0.0; n_split as usize];
        let mut b = vec![0.0; (n_params - n_split) as usize];
        reduce_chunks_cpu(&p, &partials, &mut a, &mut b);
        let (ga, gb) = reduce_chunks_gpu(&ctx, &p, &partials).unwrap();
        assert_bits_equal(&format!("reduce_chunks {p:?} out_a"), &ga, &a);
        assert_bits_equal(&format!("reduce_chunks {p:?} out_b"), &gb, &b);
    }
}

// ------------------------------------------------------------------------------------------------
// 2-D dispatch grids and buffer checks

/// With the test hook limiting a dispatch dimension to 8 workgroups, every kernel runs on a 2-D
/// grid (more than 8 workgroups: 8 * 256 invocations, 8 * 64 for the conv2d kernels) and must
/// still cover each element exactly once. The conv2d shapes give each kernel at least 15
/// workgroups (e.g. conv2d_fwd of the first: 40 * 16 rows * 4 pixel groups / 64 = 40), with the
/// narrow and the wide conv2d_bwd_input.
#[test]
fn kernels_on_a_2d_grid() {
    let Some(mut ctx) = test_context() else { return };
    ctx.set_workgroups_per_dim(8);
    let mut rng = test_rng("kernels_on_a_2d_grid");
    for c in [[40, 3, 16, 16, 10, 3, 3, 1, 1], [12, 20, 16, 16, 21, 3, 3, 1, 1]] {
        let s = conv_shape(c);
        let d = conv_data(&mut rng, &s);
        check_conv_fwd(&ctx, "2-D grid", &s, &d);
        check_conv_bwd_input(&ctx, "2-D grid", &s, &d);
        check_conv_bwd_weight(&ctx, "2-D grid", &s, &d);
    }
    let s = LinearShape::new(50, 70, 60);
    check_linear(&ctx, "2-D grid", &s, &linear_data(&mut rng, &s));
    let x = relu_input(&mut rng, 3000);
    let mut y = vec![0.0; x.len()];
    relu_fwd_cpu(&x, &mut y);
    assert_bits_equal("relu_fwd 2-D grid", &relu_fwd_gpu(&ctx, &x).unwrap(), &y);
    let dy = uniform(&mut rng, x.len(), -1.0, 1.0);
    let mut dx = vec![0.0; x.len()];
    relu_bwd_cpu(&y, &dy, &mut dx);
    assert_bits_equal("relu_bwd 2-D grid", &relu_bwd_gpu(&ctx, &y, &dy).unwrap(), &dx);
}

/// `data` followed by garbage up to `cap` elements, uploaded.
fn upload_padded(ctx: &GpuContext, data: &[f32], cap: usize) -> wgpu::Buffer {
    let mut v = data.to_vec();
    v.resize(cap, -12345.0);
    ctx.upload("padded", &v).unwrap()
}

fn read(ctx: &GpuContext, buf: &wgpu::Buffer, len: usize) -> Vec<f32> {
    let mut enc = ctx.encoder("read");
    let rb = ctx.readback(&mut enc, buf, len as u64 * 4);
    ctx.submit_and_wait(enc).unwrap();
    rb.read(ctx).unwrap()
}

/// As the training executor uses them: persistent buffers (and scratch) sized for a larger batch,
/// a smaller batch recorded into them, garbage in the unused tails. The results equal the twins'
/// and nothing past the batch is written.
#[test]
fn record_with_buffers_sized_for_a_larger_batch() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("record_with_buffers_sized_for_a_larger_batch");
    let (cap, s) = (conv_shape([9, 3, 12, 12, 5, 3, 3, 1, 1]), conv_shape([4, 3, 12, 12, 5, 3, 3, 1, 1]));
    let d = conv_data(&mut rng, &s);
    let (xb, dyb) = (upload_padded(&ctx, &d.x, cap.input.len()), upload_padded(&ctx, &d.dy, cap.output().len()));
    let (wb, bb) = (ctx.upload("w", &d.w).unwrap(), ctx.upload("b", &d.b).unwrap());
    let yb = upload_padded(&ctx, &[], cap.output().len());
    let dxb = upload_padded(&ctx, &[], cap.input.len());
    let (dwb, dbb) = (upload_padded(&ctx, &[], d.w.len()), upload_padded(&ctx, &[], d.b.len()));
    let scratch = upload_padded(&ctx, &[], conv2d_bwd_weight_scratch_len(&cap));
    assert!(conv2d_bwd_weight_scratch_len(&cap) > conv2d_bwd_weight_scratch_len(&s));
    let mut enc = ctx.encoder("conv2d at a smaller batch");
    conv2d_fwd_record(&ctx, &mut enc, &s, &xb, &wb, &bb, &yb).unwrap();
    conv2d_bwd_input_record(&ctx, &mut enc, &s, &wb, &dyb, &dxb).unwrap();
    conv2d_bwd_weight_record(&ctx, &mut enc, &s, &xb, &dyb, &dwb, &dbb, &scratch).unwrap();
    ctx.submit_and_wait(enc).unwrap();

    let (y, dx) = (read(&ctx, &yb, cap.output().len()), read(&ctx, &dxb, cap.input.len()));
    let (ny, nx) = (s.output().len(), s.input.len());
    assert!(y[ny..].iter().chain(&dx[nx..]).all(|&v| v == -12345.0), "wrote past the batch");
    let mut want = vec![0.0; ny];
    conv2d_fwd_cpu(&s, &d.x, &d.w, &d.b, &mut want);
    let mut scale = vec![0.0; ny];
    conv2d_fwd_cpu(&s, &abs(&d.x), &abs(&d.w), &abs(&d.b), &mut scale);
    assert_within("conv2d_fwd, larger buffers", &y[..ny], &want, &scale, 2.0 * gamma(s.fan_in() + 1));
    let mut want = vec![0.0; nx];
    conv2d_bwd_input_cpu(&s, &d.w, &d.dy, &mut want);
    let mut scale = vec![0.0; nx];
    conv2d_bwd_input_cpu(&s, &abs(&d.w), &abs(&d.dy), &mut scale);
    assert_within("conv2d_bwd_input, larger buffers", &dx[..nx], &want, &scale, 2.0 * gamma(s.c_out * 9));
    let (mut dw, mut db) = (vec![0.0; d.w.len()], vec![0.0; d.b.len()]);
    conv2d_bwd_weight_cpu(&s, &d.x, &d.dy, &mut dw, &mut db);
    let (mut sw, mut sb) = (vec![0.0; dw.len()], vec![0.0; db.len()]);
    conv2d_bwd_weight_cpu(&s, &abs(&d.x), &abs(&d.dy), &mut sw, &mut sb);
    let plan = conv2d_bwd_weight_plan(&s);
    let rel = gamma(plan.chunk_rows + plan.n_chunks + 1) + U;
    assert_within("conv2d_bwd_weight dw, larger buffers", &read(&ctx, &dwb, dw.len()), &dw, &sw, rel);
    assert_within("conv2d_bwd_weight db, larger buffers", &read(&ctx, &dbb, db.len()), &db, &sb, rel);

    // linear and relu the same way.
    let (cap, s) = (LinearShape::new(300, 6, 5), LinearShape::new(77, 6, 5));
    let d = linear_data(&mut rng, &s);
    let (xb, dyb) = (upload_padded(&ctx, &d.x, cap.n * cap.in_f), upload_padded(&ctx, &d.dy, cap.n * cap.out_f));
    let (wb, bb) = (ctx.upload("w", &d.w).unwrap(), ctx.upload("b", &d.b).unwrap());
    let yb = upload_padded(&ctx, &[], cap.n * cap.out_f);
    let rb = upload_padded(&ctx, &[], cap.n * cap.out_f);
    let dxb = upload_padded(&ctx, &[], cap.n * cap.in_f);
    let (dwb, dbb) = (upload_padded(&ctx, &[], d.w.len()), upload_padded(&ctx, &[], d.b.len()));
    let scratch = upload_padded(&ctx, &[], linear_bwd_weight_scratch_len(&cap));
    let mut enc = ctx.encoder("linear at a smaller batch");
    linear_fwd_record(&ctx, &mut enc, &s, &xb, &wb, &bb, &yb).unwrap();
    relu_fwd_record(&ctx, &mut enc, s.n * s.out_f, &yb, &rb).unwrap();
    linear_bwd_input_record(&ctx, &mut enc, &s, &wb, &dyb, &dxb).unwrap();
    linear_bwd_weight_record(&ctx, &mut enc, &s, &xb, &dyb, &dwb, &dbb, &scratch).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let (ny, nx) = (s.n * s.out_f, s.n * s.in_f);
    let (y, r, dx) =
        (read(&ctx, &yb, cap.n * cap.out_f), read(&ctx, &rb, cap.n * cap.out_f), read(&ctx, &dxb, cap.n * cap.in_f));
    assert!(y[ny..].iter().chain(&r[ny..]).chain(&dx[nx..]).all(|&v| v == -12345.0), "wrote past the batch");
    let mut want = vec![0.0; ny];
    linear_fwd_cpu(&s, &d.x, &d.w, &d.b, &mut want);
    let mut scale = vec![0.0; ny];
    linear_fwd_cpu(&s, &abs(&d.x), &abs(&d.w), &abs(&d.b), &mut scale);
    assert_within("linear_fwd, larger buffers", &y[..ny], &want, &scale, 2.0 * gamma(s.in_f + 1));
    let mut want_r = vec![0.0; ny];
    relu_fwd_cpu(&y[..ny], &mut want_r);
    assert_bits_equal("relu_fwd, larger buffers", &r[..ny], &want_r);
    let mut want = vec![0.0; nx];
    linear_bwd_input_cpu(&s, &d.w, &d.dy, &mut want);
    let mut scale = vec![0.0; nx];
    linear_bwd_input_cpu(&s, &abs(&d.w), &abs(&d.dy), &mut scale);
    assert_within("linear_bwd_input, larger buffers", &dx[..nx], &want, &scale, 2.0 * gamma(s.out_f));
    let (mut dw, mut db) = (vec![0.0; d.w.len()], vec![0.0; d.b.len()]);
    linear_bwd_weight_cpu(&s, &d.x, &d.dy, &mut dw, &mut db);
    let (mut sw, mut sb) = (vec![0.0; dw.len()], vec![0.0; db.len()]);
    linear_bwd_weight_cpu(&s, &abs(&d.x), &abs(&d.dy), &mut sw, &mut sb);
    let plan = linear_bwd_weight_plan(&s);
    let rel = gamma(plan.chunk_rows + plan.n_chunks + 1) + U;
    assert_within("linear_bwd_weight dw, larger buffers", &read(&ctx, &dwb, dw.len()), &dw, &sw, rel);
    assert_within("linear_bwd_weight db, larger buffers", &read(&ctx, &dbb, db.len()), &db, &sb, rel);
}

/// A buffer too small for the shape is refused on the host (the GPU would clamp the accesses and
/// return wrong numbers silently).
#[test]
fn record_refuses_short_buffers() {
    let Some(ctx) = test_context() else { return };
    let s = conv_shape([2, 3, 8, 8, 4, 3, 3, 1, 1]);
    let x = ctx.storage("x", s.input.len() as u64 * 4).unwrap();
    let w = ctx.storage("w", s.weight().len() as u64 * 4).unwrap();
    let b = ctx.storage("b", s.c_out as u64 * 4).unwrap();
    let y_short = ctx.storage("y", (s.output().len() as u64 - 1) * 4).unwrap();
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut enc = ctx.encoder("short");
        let _ = conv2d_fwd_record(&ctx, &mut enc, &s, &x, &w, &b, &y_short);
    }))
    .expect_err("a short output buffer must be refused");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("conv2d y"), "unexpected panic message: {msg}");
}

/// Each kernel's uniform struct in WGSL has the size of its Rust mirror.
#[test]
fn param_structs_match_their_rust_mirrors() {
    let expect = [
        ("net/conv2d_fwd", "Conv2dParams", size_of::<Conv2dParams>()),
        ("net/conv2d_bwd_input", "Conv2dParams", size_of::<Conv2dParams>()),
        ("net/conv2d_bwd_weight", "Conv2dParams", size_of::<Conv2dParams>()),
        ("net/reduce_chunks", "ReduceChunksParams", size_of::<ReduceChunksParams>()),
        ("net/linear_fwd", "LinearParams", size_of::<LinearParams>()),
        ("net/linear_bwd_input", "LinearParams", size_of::<LinearParams>()),
        ("net/linear_bwd_weight", "LinearParams", size_of::<LinearParams>()),
        ("net/relu_fwd", "ReluParams", size_of::<ReluParams>()),
        ("net/relu_bwd", "ReluParams", size_of::<ReluParams>()),
    ];
    for (kernel, name, size) in expect {
        let k = emsim::shaders::ALL.iter().find(|k| k.name == kernel).unwrap_or_else(|| panic!("{kernel}"));
        let module = naga::front::wgsl::parse_str(k.source).unwrap();
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (handle, _) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{kernel}: no struct {name}"));
        assert_eq!(layouter[handle].size as usize, size, "{kernel}: {name}");
    }
}

// ------------------------------------------------------------------------------------------------
// Finite-difference checks of the backward twins: L = sum(r * y) with random r, so dL/dy = r;
// central differences with eps = 1e-3 (the loss in f64 from the f32 forward outputs; the step is
// the difference of the two f32 inputs actually used). Relative error < 1e-2 with
// tol = 1e-2 * (|analytic| + 0.1 * rms(analytic)): the f32 rounding of the forward outputs, divided
// by 2 eps, is ~1e-4 of the gradients here, so that floor only absorbs noise.

fn loss(r: &[f32], y: &[f32]) -> f64 {
    r.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// The loss of an f32 forward pass whose outputs are sums of `terms` products, with a bound on its
/// rounding error: each output is within `gamma(terms) * |y|_abs` of its exact value, where
/// `y_abs` is the same forward pass on the absolute values (the standard bound on a floating-point
/// sum, gamma(n) = n u / (1 - n u), u = 2^-24), so the loss is within `sum |r| gamma y_abs`.
fn loss_with_rounding(r: &[f32], y: &[f32], y_abs: &[f32], terms: usize) -> (f64, f64) {
    let nu = terms as f64 * f32::EPSILON as f64 / 2.0;
    let gamma = nu / (1.0 - nu);
    // 1.01: y_abs is itself an f32 sum of positive terms, rounded down by at most gamma
    let bound = r.iter().zip(y_abs).map(|(&a, &m)| (a as f64).abs() * m as f64).sum::<f64>() * gamma * 1.01;
    (loss(r, y), bound)
}

/// Compares `analytic` with central differences of `l` over every element of `p`. `l` returns the
/// loss and a bound on its rounding error (0 where the forward pass is exact); the difference
/// quotient's own rounding error, up to the two bounds over the step, is added to the tolerance,
/// so a gradient much smaller than the loss's rounding noise cannot fail by chance.
#[track_caller]
fn fd_check(what: &str, p: &mut [f32], analytic: &[f32], l: impl Fn(&[f32]) -> (f64, f64)) {
    const EPS: f32 = 1e-3;
    assert_eq!(p.len(), analytic.len());
    let rms = (analytic.iter().map(|&a| a as f64 * a as f64).sum::<f64>() / analytic.len().max(1) as f64).sqrt();
    let mut worst = 0f64;
    for k in 0..p.len() {
        let orig = p[k];
        let (hi, lo) = (orig + EPS, orig - EPS);
        p[k] = hi;
        let (l_hi, r_hi) = l(p);
        p[k] = lo;
        let (l_lo, r_lo) = l(p);
        p[k] = orig;
        let step = hi as f64 - lo as f64;
        let fd = (l_hi - l_lo) / step;
        let a = analytic[k] as f64;
        let tol = 1e-2 * (a.abs() + 0.1 * rms) + (r_hi + r_lo) / step;
        assert!((fd - a).abs() <= tol, "{what}[{k}]: finite difference {fd} vs analytic {a} (tol {tol:e})");
        worst = worst.max((fd - a).abs() / tol);
    }
    eprintln!("{what}: worst |fd - analytic| = {worst:.3} of the tolerance");
}

#[test]
fn conv2d_backward_twins_match_finite_differences() {
    let mut rng = test_rng("conv2d_backward_twins_match_finite_differences");
    for c in [[2, 2, 5, 6, 3, 3, 2, 1, 2], [1, 3, 4, 4, 2, 2, 2, 0, 1], [1, 1, 6, 5, 2, 3, 3, 2, 1]] {
        let s = conv_shape(c);
        let ConvData { mut x, mut w, mut b, dy: r } = conv_data(&mut rng, &s);
        let (dx, dw, db) = conv2d_bwd_cpu(&s, &x, &w, &r);
        let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0; s.output().len()];
            conv2d_fwd_cpu(&s, x, w, b, &mut y);
            let mut y_abs = vec![0.0; y.len()];
            conv2d_fwd_cpu(&s, &abs(x), &abs(w), &abs(b), &mut y_abs);
            loss_with_rounding(&r, &y, &y_abs, s.fan_in() + 1)
        };
        let (x0, w0, b0) = (x.clone(), w.clone(), b.clone());
        fd_check(&format!("conv2d dx {c:?}"), &mut x, &dx, |x| fwd(x, &w0, &b0));
        fd_check(&format!("conv2d dw {c:?}"), &mut w, &dw, |w| fwd(&x0, w, &b0));
        fd_check(&format!("conv2d db {c:?}"), &mut b, &db, |b| fwd(&x0, &w0, b));
    }
}

#[test]
fn linear_backward_twins_match_finite_differences() {
    let mut rng = test_rng("linear_backward_twins_match_finite_differences");
    for [n, in_f, out_f] in [[3, 5, 4], [1, 7, 1], [6, 1, 3]] {
        let s = LinearShape::new(n, in_f, out_f);
        let LinearData { mut x, mut w, mut b, dy: r } = linear_data(&mut rng, &s);
        let mut dx = vec![-12345.0; x.len()];
        linear_bwd_input_cpu(&s, &w, &r, &mut dx);
        let (mut dw, mut db) = (vec![-12345.0; w.len()], vec![-12345.0; b.len()]);
        linear_bwd_weight_cpu(&s, &x, &r, &mut dw, &mut db);
        let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0; n * out_f];
            linear_fwd_cpu(&s, x, w, b, &mut y);
            let mut y_abs = vec![0.0; y.len()];
            linear_fwd_cpu(&s, &abs(x), &abs(w), &abs(b), &mut y_abs);
            loss_with_rounding(&r, &y, &y_abs, in_f + 1)
        };
        let (x0, w0, b0) = (x.clone(), w.clone(), b.clone());
        fd_check(&format!("linear dx {s:?}"), &mut x, &dx, |x| fwd(x, &w0, &b0));
        fd_check(&format!("linear dw {s:?}"), &mut w, &dw, |w| fwd(&x0, w, &b0));
        fd_check(&format!("linear db {s:?}"), &mut b, &db, |b| fwd(&x0, &w0, b));
    }
}

#[test]
fn relu_backward_twin_matches_finite_differences() {
    let mut rng = test_rng("relu_backward_twin_matches_finite_differences");
    // |x| >= 0.1, far from the kink at 0 compared to eps.
    let mut x: Vec<f32> = (0..200)
        .map(|_| {
            let m = rng.random_range(0.1..2.0f32);
            if rng.random_range(0..2) == 0 { m } else { -m }
        })
        .collect();
    let r = uniform(&mut rng, x.len(), -1.0, 1.0);
    let mut y = vec![-12345.0; x.len()];
    relu_fwd_cpu(&x, &mut y);
    let mut dx = vec![-12345.0; x.len()];
    relu_bwd_cpu(&y, &r, &mut dx);
    assert!(dx.contains(&0.0) && dx.iter().any(|&d| d != 0.0), "both sides of the kink");
    fd_check("relu dx", &mut x, &dx, |x| {
        let mut y = vec![0.0; x.len()];
        relu_fwd_cpu(x, &mut y);
        (loss(&r, &y), 0.0) // exact: relu copies or zeroes, the loss sums in f64
    });
}
