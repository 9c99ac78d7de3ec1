//! f16 activation storage for inference (`--net-precision f16`, src/net/precision.rs): every f16
//! variant of the forward kernels against its twin (the f32 twin on the f16 input, its output
//! rounded to f16 where the kernel stores f16), and a whole shipped network on the GPU against
//! [`Model::eval_outputs_cpu`] with the same rounding.

mod common;

use common::{test_context, test_rng};
use emsim::gpu::GpuContext;
use emsim::net::Shape4;
use emsim::net::batchnorm2d::{BatchNorm2dShape, batchnorm2d_fwd_cpu, batchnorm2d_fwd_record_io};
use emsim::net::conv2d::{Conv2dShape, conv2d_fwd_cpu, conv2d_fwd_record_io};
use emsim::net::decode::decode;
use emsim::net::gpu_net::GpuNet;
use emsim::net::linear::{LinearShape, linear_fwd_cpu, linear_fwd_record_io};
use emsim::net::maxpool2d::{MaxPool2dShape, maxpool2d_fwd_cpu, maxpool2d_fwd_record_io};
use emsim::net::precision::{ActIo, NetPrecision, elem_bytes, from_f16_bits, round_f16, to_f16_bits};
use emsim::net::relu::{relu_fwd_cpu, relu_fwd_record_io};
use rand::{Rng, RngExt};

/// The three f16 storage variants.
const IOS: [ActIo; 3] =
    [ActIo { x16: false, y16: true }, ActIo { x16: true, y16: true }, ActIo { x16: true, y16: false }];

/// f16 is half an ulp of relative rounding error, at most 2^-11 |v|; a GPU result and the twin's,
/// both rounded, can differ by one f16 ulp (<= 2^-10 |v|) when their f32 values straddle a
/// rounding boundary.
const F16_ULP: f32 = 1.0 / 1024.0;

fn f16_context() -> Option<GpuContext> {
    let ctx = test_context()?;
    assert!(
        ctx.features.contains(wgpu::Features::SHADER_F16),
        "the adapter {:?} lacks SHADER_F16, so the f16 kernels cannot be tested here; lavapipe (bash .ci/run) has it",
        ctx.adapter
    );
    Some(ctx)
}

/// Random values in [-2, 2), rounded to f16 when they are to be stored as f16.
fn input(rng: &mut impl Rng, len: usize, x16: bool) -> Vec<f32> {
    let mut v: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
    if x16 {
        round_f16(&mut v);
    }
    v
}

fn upload_act(ctx: &GpuContext, v: &[f32], half: bool) -> wgpu::Buffer {
    if half { ctx.upload("x16", &to_f16_bits(v)).unwrap() } else { ctx.upload("x32", v).unwrap() }
}

fn read_act(ctx: &GpuContext, buf: &wgpu::Buffer, len: usize, half: bool) -> Vec<f32> {
    let mut enc = ctx.encoder("read");
    let rb = ctx.readback(&mut enc, buf, elem_bytes(half, len));
    ctx.submit_and_wait(enc).unwrap();
    if half { from_f16_bits(&rb.read::<u16>(ctx).unwrap()) } else { rb.read::<f32>(ctx).unwrap() }
}

/// The twin's output as the kernel stores it.
fn stored(mut y: Vec<f32>, y16: bool) -> Vec<f32> {
    if y16 {
        round_f16(&mut y);
    }
    y
}

/// `|gpu - want| <= f32_rel * scale (+ one f16 ulp of want when stored as f16)` per element.
#[track_caller]
fn assert_stored_close(what: &str, gpu: &[f32], want: &[f32], scale: &[f32], f32_rel: f32, y16: bool) {
    assert_eq!(gpu.len(), want.len(), "{what}: length");
    let mut flips = 0;
    for (i, ((&g, &w), &s)) in gpu.iter().zip(want).zip(scale).enumerate() {
        let ulp = if y16 { F16_ULP * w.abs() + 6e-8 } else { 0.0 };
        let tol = f32_rel * s + ulp;
        assert!((g - w).abs() <= tol, "{what}: element {i}: gpu {g} vs twin {w} (tolerance {tol})");
        flips += (g != w) as usize;
    }
    eprintln!("{what}: {flips} of {} elements differ from the twin", gpu.len());
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

#[test]
fn conv2d_fwd_f16_variants_match_the_twin() {
    let Some(ctx) = f16_context() else { return };
    let mut rng = test_rng("conv2d_fwd_f16_variants_match_the_twin");
    // 5 x 3 x 3 x 3 weights go through a uniform buffer; 64 x 32 x 3 x 3 (> 16384) through storage.
    let shapes = [
        Conv2dShape::new(Shape4 { n: 3, c: 3, h: 11, w: 13 }, 5, 3, 3, 1, 1),
        Conv2dShape::new(Shape4 { n: 2, c: 32, h: 7, w: 6 }, 64, 3, 3, 0, 1),
        Conv2dShape::new(Shape4 { n: 2, c: 2, h: 9, w: 9 }, 17, 3, 3, 1, 2),
    ];
    for s in &shapes {
        for io in IOS {
            let x = input(&mut rng, s.input.len(), io.x16);
            let w = input(&mut rng, s.weight().len(), false);
            let b = input(&mut rng, s.c_out, false);
            let (xb, wb, bb) =
                (upload_act(&ctx, &x, io.x16), ctx.upload("w", &w).unwrap(), ctx.upload("b", &b).unwrap());
            let len = s.output().len();
            let yb = ctx.storage("y", elem_bytes(io.y16, len)).unwrap();
            let mut enc = ctx.encoder("conv2d f16");
            conv2d_fwd_record_io(&ctx, &mut enc, s, io, &xb, &wb, &bb, &yb).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let mut want = vec![0.0; len];
            conv2d_fwd_cpu(s, &x, &w, &b, &mut want);
            let mut scale = vec![0.0; len];
            conv2d_fwd_cpu(s, &abs(&x), &abs(&w), &abs(&b), &mut scale);
            let rel = 2.0 * (s.fan_in() + 1) as f32 * f32::EPSILON;
            let what = format!("conv2d_fwd {io:?} c_out {}", s.c_out);
            assert_stored_close(&what, &read_act(&ctx, &yb, len, io.y16), &stored(want, io.y16), &scale, rel, io.y16);
        }
    }
}

#[test]
fn linear_relu_maxpool_batchnorm_f16_variants_match_the_twins() {
    let Some(ctx) = f16_context() else { return };
    let mut rng = test_rng("linear_relu_maxpool_batchnorm_f16_variants_match_the_twins");
    for io in IOS {
        // linear
        let s = LinearShape::new(37, 45, 19);
        let x = input(&mut rng, s.n * s.in_f, io.x16);
        let (w, b) = (input(&mut rng, s.weight_len(), false), input(&mut rng, s.out_f, false));
        let (xb, wb, bb) = (upload_act(&ctx, &x, io.x16), ctx.upload("w", &w).unwrap(), ctx.upload("b", &b).unwrap());
        let len = s.n * s.out_f;
        let yb = ctx.storage("y", elem_bytes(io.y16, len)).unwrap();
        let mut enc = ctx.encoder("linear f16");
        linear_fwd_record_io(&ctx, &mut enc, &s, io, false, &xb, &wb, &bb, &yb).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let (mut want, mut scale) = (vec![0.0; len], vec![0.0; len]);
        linear_fwd_cpu(&s, &x, &w, &b, &mut want);
        linear_fwd_cpu(&s, &abs(&x), &abs(&w), &abs(&b), &mut scale);
        let rel = 2.0 * (s.in_f + 1) as f32 * f32::EPSILON;
        let got = read_act(&ctx, &yb, len, io.y16);
        assert_stored_close(&format!("linear_fwd {io:?}"), &got, &stored(want, io.y16), &scale, rel, io.y16);

        // ReLU and max-pool select: exact.
        let n = 1001;
        let x = input(&mut rng, n, io.x16);
        let (xb, yb) = (upload_act(&ctx, &x, io.x16), ctx.storage("y", elem_bytes(io.y16, n)).unwrap());
        let mut enc = ctx.encoder("relu f16");
        relu_fwd_record_io(&ctx, &mut enc, n, io, &xb, &yb).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let mut want = vec![0.0; n];
        relu_fwd_cpu(&x, &mut want);
        assert_eq!(read_act(&ctx, &yb, n, io.y16), stored(want, io.y16), "relu_fwd {io:?}");

        let s = MaxPool2dShape { input: Shape4 { n: 3, c: 4, h: 9, w: 10 }, k: 3, stride: 3 };
        let x = input(&mut rng, s.input.len(), io.x16);
        let len = s.output().len();
        let xb = upload_act(&ctx, &x, io.x16);
        let (yb, ib) =
            (ctx.storage("y", elem_bytes(io.y16, len)).unwrap(), ctx.storage("idx", 4 * len as u64).unwrap());
        let mut enc = ctx.encoder("maxpool f16");
        maxpool2d_fwd_record_io(&ctx, &mut enc, &s, io, &xb, &yb, &ib).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let (mut want, mut idx) = (vec![0.0; len], vec![0u32; len]);
        maxpool2d_fwd_cpu(&s, &x, &mut want, &mut idx);
        assert_eq!(read_act(&ctx, &yb, len, io.y16), stored(want, io.y16), "maxpool2d_fwd {io:?}");

        // batch norm with running statistics (inference)
        let s = BatchNorm2dShape { x: Shape4 { n: 4, c: 6, h: 5, w: 7 }, eps: 1e-5 };
        let x = input(&mut rng, s.x.len(), io.x16);
        let c = s.x.c;
        let mean = input(&mut rng, c, false);
        let var: Vec<f32> = (0..c).map(|_| rng.random_range(0.1..3.0)).collect();
        let (g, b) = (input(&mut rng, c, false), input(&mut rng, c, false));
        let xb = upload_act(&ctx, &x, io.x16);
        let stats: Vec<wgpu::Buffer> = [&mean, &var, &g, &b].iter().map(|v| ctx.upload("bn", v).unwrap()).collect();
        let yb = ctx.storage("y", elem_bytes(io.y16, s.x.len())).unwrap();
        let mut enc = ctx.encoder("batchnorm f16");
        batchnorm2d_fwd_record_io(&ctx, &mut enc, &s, io, &xb, [&stats[0], &stats[1], &stats[2], &stats[3]], &yb)
            .unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let mut want = vec![0.0; s.x.len()];
        batchnorm2d_fwd_cpu(&s, &x, &mean, &var, &g, &b, &mut want);
        // |x - mean| * invstd * |gamma| + |beta|: the size of the terms (sqrt and division are
        // not correctly rounded on every GPU: a few ulp of it).
        let hw = s.x.h * s.x.w;
        let scale: Vec<f32> = (0..s.x.len())
            .map(|i| {
                let ch = (i / hw) % c;
                (x[i] - mean[ch]).abs() / (var[ch] + s.eps).sqrt() * g[ch].abs() + b[ch].abs()
            })
            .collect();
        let got = read_act(&ctx, &yb, s.x.len(), io.y16);
        assert_stored_close(
            &format!("batchnorm2d_fwd {io:?}"),
            &got,
            &stored(want, io.y16),
            &scale,
            8.0 * f32::EPSILON,
            io.y16,
        );
    }
}

/// Electron-like network inputs: a blob of a few thousand electrons (times the preset's input
/// scale) at a random sub-pixel point near the centre, plus noise.
fn crops(rng: &mut impl Rng, n: usize, side: usize, scale: f32) -> Vec<f32> {
    let mut x = Vec::with_capacity(n * side * side);
    for _ in 0..n {
        let c = side as f32 / 2.0;
        let (cx, cy) = (c + rng.random_range(-1.0..1.0), c + rng.random_range(-1.0..1.0));
        let q = rng.random_range(1500.0..6000.0);
        let sigma = rng.random_range(0.4..1.2f32);
        for r in 0..side {
            for col in 0..side {
                let d2 = (col as f32 + 0.5 - cx).powi(2) + (r as f32 + 0.5 - cy).powi(2);
                let v = q * (-d2 / (2.0 * sigma * sigma)).exp() / (2.0 * std::f32::consts::PI * sigma * sigma);
                x.push((v + rng.random_range(-60.0..60.0)) * scale);
            }
        }
    }
    x
}

/// The default network of counting (batch norms folded, as counting runs it) with f16
/// activations on the GPU: equal to its twin up to rare one-ulp flips, and its decoded positions
/// within 0.01 px of the f32 network's.
#[test]
fn shipped_network_with_f16_activations_matches_its_twin() {
    let Some(ctx) = f16_context() else { return };
    let mut rng = test_rng("shipped_network_with_f16_activations_matches_its_twin");
    let model = emsim::io::model_file::load(&emsim::default_model_path(), None).unwrap().model;
    let model = model.fold_batchnorm().unwrap();
    let n = 300;
    let side = model.cfg.input_px;
    let x = crops(&mut rng, n, side, model.cfg.input_scale);
    let net = GpuNet::new_inference(&ctx, model.clone(), n, NetPrecision::F16).unwrap();
    assert_eq!(net.precision(), NetPrecision::F16);
    let gpu16 = net.infer(&x, n).unwrap();
    // The first ReLU's output really is stored as f16 (in inference the linear layer before it
    // writes it, with the ReLU fused).
    let first = model.cfg.layers.iter().position(|l| matches!(l, emsim::net::model::LayerSpec::Relu)).unwrap();
    let a0 = net.read_activation(first, n).unwrap();
    assert!(a0.iter().filter(|&&v| v > 0.0).count() > a0.len() / 10, "the ReLU's output was not written");
    let mut r = a0.clone();
    round_f16(&mut r);
    assert_eq!(a0, r);
    let cpu16 = model.eval_outputs_cpu(&x, n, NetPrecision::F16).unwrap();
    let cpu32 = model.eval_outputs_cpu(&x, n, NetPrecision::F32).unwrap();
    // The GPU and the twin round the same values to f16, but their f32 sums differ in the last
    // bits, so now and then a value on a rounding boundary goes the other way (one f16 ulp) and
    // moves the outputs after it. Those flips are rare: in most samples there is none, and the
    // two agree far better than f16 and f32 storage do.
    // Per sample: the mean |difference| over its outputs; then the median over samples.
    let k = model.cfg.head_outputs();
    let median_diff = |a: &[f32], b: &[f32]| {
        let mut per: Vec<f64> = a
            .chunks(k)
            .zip(b.chunks(k))
            .map(|(p, q)| p.iter().zip(q).map(|(u, v)| (u - v).abs() as f64).sum::<f64>() / k as f64)
            .collect();
        per.sort_by(f64::total_cmp);
        per[per.len() / 2]
    };
    let gpu32 = GpuNet::new_inference(&ctx, model.clone(), n, NetPrecision::F32).unwrap().infer(&x, n).unwrap();
    let (twin_diff, f16_effect) = (median_diff(&gpu16, &cpu16), median_diff(&cpu16, &cpu32));
    eprintln!(
        "median over samples of mean |gpu f16 - twin f16| = {twin_diff:.3e}; |twin f16 - twin f32| = {f16_effect:.3e}; \
         |gpu f32 - twin f32| = {:.3e}; |output| = {:.3e}",
        median_diff(&gpu32, &cpu32),
        median_diff(&cpu32, &vec![0.0; cpu32.len()])
    );
    assert!(f16_effect > 0.0, "f16 rounding changed nothing: is it applied?");
    assert!(
        twin_diff <= 0.02 * f16_effect,
        "the GPU f16 path differs from its twin by {twin_diff} (median sample; f16 itself: {f16_effect})"
    );

    // Positions: f16 moves them by a few ten-thousandths of a pixel; now and then (two near-equal
    // cells trading the argmax) by a tenth or more.
    let (d16, d32) = (decode(&model.cfg, &gpu16, n), decode(&model.cfg, &cpu32, n));
    let moves: Vec<f32> =
        d16.iter().zip(&d32).map(|(a, b)| (a.mean_xy[0] - b.mean_xy[0]).hypot(a.mean_xy[1] - b.mean_xy[1])).collect();
    let mut sorted = moves.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[n / 2];
    let far = moves.iter().filter(|&&m| m > 0.01).count();
    eprintln!(
        "position change f16 vs f32: median {median} px, largest {} px, {far} of {n} over 0.01 px",
        sorted[n - 1]
    );
    assert!(median < 0.001, "f16 activations moved the median position by {median} px");
    assert!(far * 100 <= 3 * n, "f16 activations moved {far} of {n} positions by more than 0.01 px");
}

/// Without the adapter's `SHADER_F16`, an f16 request runs the f32 network (and says so).
#[test]
fn f16_request_falls_back_to_f32_without_shader_f16() {
    let Some(mut ctx) = test_context() else { return };
    ctx.features.remove(wgpu::Features::SHADER_F16);
    let mut rng = test_rng("f16_request_falls_back_to_f32_without_shader_f16");
    let model = emsim::io::model_file::load(&emsim::default_model_path(), None).unwrap().model;
    let model = model.fold_batchnorm().unwrap();
    let n = 20;
    let x = crops(&mut rng, n, model.cfg.input_px, model.cfg.input_scale);
    let net = GpuNet::new_inference(&ctx, model.clone(), n, NetPrecision::F16).unwrap();
    assert_eq!(net.precision(), NetPrecision::F32);
    let f32_net = GpuNet::new_inference(&ctx, model, n, NetPrecision::F32).unwrap();
    assert_eq!(net.infer(&x, n).unwrap(), f32_net.infer(&x, n).unwrap());
}
