//! The network's loss heads, optimizer and sample maker (GPU kernel vs CPU twin), a whole training
//! step on GPU vs CPU, the safetensors model file, and the training loop end to end.

mod common;

use common::{assert_close, test_context, test_rng};
use emsim::io::model_file;
use emsim::net::data::{LibraryArrays, MakeBatchParams, SampleSpec, make_batch_cpu, make_batch_gpu};
use emsim::net::gpu_net::GpuNet;
use emsim::net::loss::{MseParams, SoftmaxXentParams, mse_cpu, mse_gpu, softmax_xent_cpu, softmax_xent_gpu};
use emsim::net::model::{Model, ModelConfig};
use emsim::net::optim::{AdamConfig, adam_cpu, adam_gpu};
use emsim::net::train::loss_cpu;
use rand::RngExt;

fn randn(rng: &mut impl RngExt, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale).collect()
}

/// Softmax cross-entropy: GPU vs twin (exp/log differ by a few ulp: 1e-5 relative), more classes
/// than the workgroup (7056, the seed-84 grid) and fewer (3), with a finite-difference check of the
/// twin's gradient.
#[test]
fn softmax_xent_gpu_matches_twin_and_gradient() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("softmax_xent");
    for (n, k) in [(5usize, 100usize), (3, 7056), (1, 3), (7, 257)] {
        let logits = randn(&mut rng, n * k, 4.0);
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
        let p = SoftmaxXentParams { n: n as u32, k: k as u32, mean_over: n as u32, write_grad: 1 };
        let (mut l, mut c, mut d) = (vec![-1.0; n], vec![-1.0; n], vec![-1.0; n * k]);
        softmax_xent_cpu(&p, &logits, &labels, &mut l, &mut c, &mut d);
        let (gl, gc, gd) = softmax_xent_gpu(&ctx, &p, &logits, &labels).unwrap();
        assert_close(&gl, &l, 1e-5, 1e-5);
        assert_eq!(gc, c, "correct flags");
        assert_close(&gd, &d, 1e-7, 1e-4);
        // finite differences of the mean loss on a few logits
        let eps = 1e-2f32;
        for _ in 0..6 {
            let j = rng.random_range(0..n * k);
            let f = |v: f32| {
                let mut x = logits.clone();
                x[j] = v;
                let (mut l2, mut c2, mut d2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n * k]);
                softmax_xent_cpu(&p, &x, &labels, &mut l2, &mut c2, &mut d2)
            };
            let fd = (f(logits[j] + eps) - f(logits[j] - eps)) / (2.0 * eps as f64);
            assert!((fd - d[j] as f64).abs() <= 1e-4 + 1e-2 * fd.abs(), "dlogit[{j}]: fd {fd} vs {}", d[j]);
        }
    }
}

#[test]
fn mse_gpu_matches_twin_and_gradient() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("mse");
    for n in [1usize, 300] {
        let pred = randn(&mut rng, 2 * n, 1.0);
        let target = randn(&mut rng, 2 * n, 1.0);
        let p = MseParams { n: n as u32, d: 2, mean_over: 2 * n as u32, write_grad: 1 };
        let (mut l, mut d) = (vec![-1.0; n], vec![-1.0; 2 * n]);
        let mean = mse_cpu(&p, &pred, &target, &mut l, &mut d);
        let (gl, gd) = mse_gpu(&ctx, &p, &pred, &target).unwrap();
        assert_close(&gl, &l, 1e-6, 1e-5);
        assert_close(&gd, &d, 1e-7, 1e-5);
        let j = rng.random_range(0..2 * n);
        let f = |v: f32| {
            let mut x = pred.clone();
            x[j] = v;
            mse_cpu(&p, &x, &target, &mut vec![0.0; n], &mut vec![0.0; 2 * n])
        };
        let fd = (f(pred[j] + 1e-3) - f(pred[j] - 1e-3)) / 2e-3;
        assert!((fd - d[j] as f64).abs() <= 1e-5 + 1e-2 * fd.abs(), "fd {fd} vs {} (mean {mean})", d[j]);
    }
}

/// Adam and AdamW, with and without amsgrad, over a few steps: GPU vs twin (sqrt may differ by an
/// ulp: 1e-6 relative).
#[test]
fn adam_gpu_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("adam");
    let n = 1000;
    for (decoupled, amsgrad) in [(false, true), (true, false), (true, true), (false, false)] {
        let cfg = AdamConfig { decoupled, amsgrad, ..AdamConfig::seed() };
        let mut w = randn(&mut rng, n, 1.0);
        let (mut m, mut v, mut vm) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for t in 1..=3u64 {
            let g = randn(&mut rng, n, 0.5);
            let p = cfg.params(n, t, 1e-3);
            let [gw, gm, gv, gvm] = adam_gpu(&ctx, &p, &w, &g, &m, &v, &vm).unwrap();
            adam_cpu(&p, &mut w, &g, &mut m, &mut v, &mut vm);
            assert_close(&gw, &w, 1e-6, 1e-6);
            assert_close(&gm, &m, 1e-7, 1e-6);
            assert_close(&gv, &v, 1e-9, 1e-6);
            if amsgrad {
                assert_close(&gvm, &vm, 1e-9, 1e-6);
            }
            (w, m, v, vm) = (gw, gm, gv, gvm);
        }
    }
}

fn test_library() -> emsim::io::library::EventLibrary {
    emsim::io::library::EventLibrary::read_h5(&emsim::default_library_path()).unwrap()
}

/// Samples made on the GPU equal the twin's: same events, shifts and labels exactly, pixels to
/// float tolerance (the noise uses the same Philox counters).
#[test]
fn make_batch_gpu_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let lib = test_library();
    let arrays = LibraryArrays::new(&lib).unwrap();
    for preset in ["seed", "seed-84", "fast"] {
        let cfg = ModelConfig::preset(preset).unwrap();
        let spec = SampleSpec { seed: 9, ev_lo: 100, ev_count: 5000, sigma_e: 20.0 };
        let p = MakeBatchParams::new(&cfg, &spec, 12_345, 37);
        let cpu = make_batch_cpu(&p, &arrays);
        let gpu = make_batch_gpu(&ctx, &p, &arrays).unwrap();
        assert_eq!(gpu.labels, cpu.labels, "{preset} labels");
        assert_close(&gpu.target, &cpu.target, 1e-6, 0.0);
        assert_close(&gpu.x, &cpu.x, 1e-6, 1e-5);
        // a sample does not depend on the batch it is made in
        let p2 = MakeBatchParams::new(&cfg, &spec, 12_345 + 10, 5);
        let part = make_batch_cpu(&p2, &arrays);
        let side2 = cfg.input_px * cfg.input_px;
        assert_eq!(part.x[..], cpu.x[10 * side2..15 * side2]);
        assert_eq!(part.labels[..], cpu.labels[10..15]);
        // labels are inside the grid and the charge is there
        let g = cfg.grid_cells() as u32;
        assert!(cpu.labels.iter().all(|&l| l < g * g));
        let total: f32 = cpu.x.iter().sum::<f32>() / cfg.input_scale / 37.0;
        assert!(total > 100.0, "{preset}: mean charge per crop {total} e");
    }
}

fn small_batch(cfg: &ModelConfig, n: usize, first: u64) -> emsim::net::data::Batch {
    let lib = test_library();
    let arrays = LibraryArrays::new(&lib).unwrap();
    let spec = SampleSpec { seed: 3, ev_lo: 0, ev_count: lib.len() as u32, sigma_e: 20.0 };
    make_batch_cpu(&MakeBatchParams::new(cfg, &spec, first, n), &arrays)
}

/// One full training step (forward in training mode with batch norm and dropout, loss, backward,
/// amsgrad Adam) on the GPU kernels and on the CPU twins from the same weights and batch: the
/// gradients and the updated weights and running statistics agree.
#[test]
fn training_step_gpu_equals_cpu() {
    let Some(ctx) = test_context() else { return };
    for preset in ["seed", "fast"] {
        let cfg = ModelConfig::preset(preset).unwrap();
        let n = 6;
        let batch = small_batch(&cfg, n, 0);
        let model = Model::new(cfg.clone(), 11).unwrap();
        let adam = AdamConfig::seed();
        // CPU
        let mut cpu = model.clone();
        let act = cpu.forward_cpu(&batch.x, n, true, 5, 1).unwrap();
        let (loss, _, dout) = loss_cpu(&cfg, act.last(), &batch, n, true);
        let grads = cpu.backward_cpu(&batch.x, &act, &dout, 5, 1).unwrap();
        for (t, g) in cpu.tensors.iter_mut().zip(&grads) {
            if t.trainable {
                let len = t.data.len();
                let p = adam.params(len, 1, 1e-3);
                adam_cpu(&p, &mut t.data, g, &mut vec![0.0; len], &mut vec![0.0; len], &mut vec![0.0; len]);
            }
        }
        // GPU
        let mut net = GpuNet::new(&ctx, model.clone(), n, true, None).unwrap();
        ctx.write(&net.input, &batch.x);
        ctx.write(&net.labels, &batch.labels);
        ctx.write(&net.target, &batch.target);
        let mut enc = ctx.encoder("step");
        net.record_forward(&mut enc, n, true, 5, 1).unwrap();
        net.record_loss(&mut enc, n, true).unwrap();
        net.record_backward(&mut enc, n, 5, 1).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let gl = net.read(&net.loss, n).unwrap();
        assert_close(&gl, &loss, 1e-4, 1e-4);
        let ggrads = net.download_grads().unwrap();
        // Gradients: 2e-3 relative plus 1e-5 of the largest gradient of the model (some are zero in
        // theory, e.g. a conv bias followed by batch norm, and are float noise on both paths).
        let global = grads.iter().flatten().fold(0.0f32, |a, &v| a.max(v.abs()));
        for ((t, g), c) in model.tensors.iter().zip(&ggrads).zip(&grads) {
            if t.trainable {
                let scale = c.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
                eprintln!("{preset} grad {}: max |g| {scale}", t.name);
                assert_close(g, c, 1e-5 * global + 1e-4 * scale, 2e-3);
            }
        }
        let mut enc = ctx.encoder("adam");
        net.record_adam(&mut enc, &adam, 1, 1e-3).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        net.download().unwrap();
        // Adam's first step moves each weight by about lr * sign(g): where the gradient is float
        // noise (|g| < 1e-4 of the model's largest) its sign may differ between the paths, so
        // those elements may differ by up to 2 lr; all others agree to 2e-5.
        for (k, (g, c)) in net.model.tensors.iter().zip(&cpu.tensors).enumerate() {
            let noise: Vec<bool> = if g.trainable {
                grads[k].iter().map(|&v| v.abs() < 1e-4 * global).collect()
            } else {
                vec![false; g.data.len()]
            };
            for (i, (a, b)) in g.data.iter().zip(&c.data).enumerate() {
                let tol = if noise[i] { 2.1e-3 } else { 2e-5 + 1e-4 * b.abs() };
                assert!((a - b).abs() <= tol, "{preset} {} [{i}]: gpu {a} vs cpu {b}", g.name);
            }
        }
    }
}

/// Training drives the loss down (GPU path, a few hundred steps of the fast preset on small batches).
#[test]
fn training_reduces_the_loss() {
    let Some(ctx) = test_context() else { return };
    let cfg = ModelConfig::preset("fast").unwrap();
    let (n, steps) = (32usize, 60u64);
    let model = Model::new(cfg.clone(), 2).unwrap();
    let net = GpuNet::new(&ctx, model, n, true, None).unwrap();
    let adam = AdamConfig { weight_decay: 0.0, ..AdamConfig::seed() };
    let mut losses = Vec::new();
    for t in 1..=steps {
        let b = small_batch(&cfg, n, t * n as u64);
        ctx.write(&net.input, &b.x);
        ctx.write(&net.labels, &b.labels);
        let mut enc = ctx.encoder("step");
        net.record_forward(&mut enc, n, true, 1, t).unwrap();
        net.record_loss(&mut enc, n, true).unwrap();
        net.record_backward(&mut enc, n, 1, t).unwrap();
        net.record_adam(&mut enc, &adam, t, 3e-3).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let l = net.read(&net.loss, n).unwrap();
        losses.push(l.iter().sum::<f32>() / n as f32);
    }
    let first: f32 = losses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = losses[losses.len() - 10..].iter().sum::<f32>() / 10.0;
    eprintln!("loss: first 10 steps {first:.3}, last 10 steps {last:.3}");
    assert!(last < first - 0.5, "loss did not go down: {first} -> {last}");
}

#[test]
fn model_file_round_trip_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModelConfig::preset("fast").unwrap();
    let mut m = Model::new(cfg.clone(), 4).unwrap();
    m.batches_tracked = 17;
    let path = dir.path().join("m.safetensors");
    model_file::save(&m, None, &path, false, "--out").unwrap();
    let back = model_file::load(&path, Some(&cfg)).unwrap();
    assert_eq!(back.model, m);
    assert!(back.optim.is_none());
    // another preset's file
    let e = model_file::load(&path, Some(&ModelConfig::preset("seed").unwrap())).err().unwrap().to_string();
    assert!(e.contains("m.safetensors") && e.contains("'fast'") && e.contains("expected 'seed'"), "{e}");
    // corrupt file
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ").unwrap();
    let e = model_file::load(&bad, None).err().unwrap().to_string();
    assert!(e.contains("bad.safetensors") && e.contains("safetensors"), "{e}");
    // a tensor of the wrong shape
    let mut wrong = m.clone();
    wrong.tensors[0].shape = vec![16, 1, 3, 2];
    wrong.tensors[0].data.truncate(16 * 6);
    let wpath = dir.path().join("w.safetensors");
    model_file::save(&wrong, None, &wpath, false, "--out").unwrap();
    let e = model_file::load(&wpath, None).err().unwrap().to_string();
    assert!(e.contains("'0.weight'") && e.contains("expected [16, 1, 3, 3]"), "{e}");
    // an existing output is not overwritten without force
    assert!(model_file::save(&m, None, &path, false, "--out").is_err());
}

/// Forward pass in training mode, layer by layer: GPU vs twins, repeated (catches races). A
/// batch of 16: with 6 (as before), the seed network's third batch norm normalizes 24 values per
/// channel, and on the library of 2026-11-26 one channel's variance was so small that its
/// 1/sqrt(var) amplified the float rounding 17-fold (4e-4 of the layer's scale after dropout).
#[test]
fn forward_layers_gpu_equal_cpu() {
    let Some(ctx) = test_context() else { return };
    for preset in ["seed", "fast"] {
        let cfg = ModelConfig::preset(preset).unwrap();
        let n = 16;
        let batch = small_batch(&cfg, n, 0);
        let model = Model::new(cfg.clone(), 11).unwrap();
        let mut cpu = model.clone();
        let act = cpu.forward_cpu(&batch.x, n, true, 5, 1).unwrap();
        for rep in 0..3 {
            let net = GpuNet::new(&ctx, model.clone(), n, true, None).unwrap();
            ctx.write(&net.input, &batch.x);
            let mut enc = ctx.encoder("fwd");
            net.record_forward(&mut enc, n, true, 5, 1).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            for (i, c) in act.outs.iter().enumerate() {
                let g = net.read_activation(i, n).unwrap();
                let scale = c.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
                eprintln!("{preset} rep {rep} layer {i} {:?}: max |y| {scale}", cfg.layers[i]);
                assert_close(&g, c, 1e-5 * scale.max(1.0), 1e-4);
            }
        }
    }
}

/// Wall time of each kernel of a seed-network training step on this adapter (prints only;
/// `cargo test --release --test net_train kernel_times -- --ignored --nocapture`).
#[test]
#[ignore]
fn kernel_times() {
    let Some(ctx) = test_context() else { return };
    let n: usize = std::env::var("EMSIM_N").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let cfg = ModelConfig::preset("seed").unwrap();
    let model = Model::new(cfg.clone(), 1).unwrap();
    let net = GpuNet::new(&ctx, model, n, true, None).unwrap();
    let batch = small_batch(&cfg, n, 0);
    ctx.write(&net.input, &batch.x);
    ctx.write(&net.labels, &batch.labels);
    let time = |name: &str, f: &dyn Fn(&mut wgpu::CommandEncoder)| {
        let mut enc = ctx.encoder("t");
        f(&mut enc);
        ctx.submit_and_wait(enc).unwrap();
        let t = std::time::Instant::now();
        let mut enc = ctx.encoder("t");
        f(&mut enc);
        ctx.submit_and_wait(enc).unwrap();
        eprintln!("{name:<12} {:>9.1} ms", t.elapsed().as_secs_f64() * 1e3);
    };
    time("forward", &|e| net.record_forward(e, n, true, 1, 1).unwrap());
    time("loss", &|e| net.record_loss(e, n, true).unwrap());
    time("backward", &|e| net.record_backward(e, n, 1, 1).unwrap());
    time("adam", &|e| net.record_adam(e, &AdamConfig::seed(), 1, 1e-3).unwrap());
    let lib = test_library();
    let arrays = LibraryArrays::new(&lib).unwrap();
    let lb = emsim::net::data::LibraryBuffers::upload(&ctx, &arrays).unwrap();
    let spec = SampleSpec { seed: 3, ev_lo: 0, ev_count: lib.len() as u32, sigma_e: 20.0 };
    let p = MakeBatchParams::new(&cfg, &spec, 0, n);
    time("make_batch", &|e| {
        emsim::net::data::make_batch_record(&ctx, e, &p, &lb, &net.input, &net.labels, &net.target).unwrap()
    });
    use emsim::net::Shape4;
    use emsim::net::conv2d::*;
    let s1 = Conv2dShape::new(Shape4::new(n, 1, 41, 41), 16, 4, 4, 1, 1);
    let s2 = Conv2dShape::new(Shape4::new(n, 16, 10, 10), 32, 3, 3, 1, 1);
    let s3 = Conv2dShape::new(Shape4::new(n, 32, 3, 3), 64, 2, 2, 0, 1);
    for (name, s) in [("conv1", s1), ("conv2", s2), ("conv3", s3)] {
        let x = ctx.storage("x", (s.input.len() * 4) as u64).unwrap();
        let w = ctx.storage("w", (s.weight().len() * 4) as u64).unwrap();
        let b = ctx.storage("b", (s.c_out * 4) as u64).unwrap();
        let y = ctx.storage("y", (s.output().len() * 4) as u64).unwrap();
        let sc = ctx.storage("sc", (conv2d_bwd_weight_scratch_len(&s).max(1) * 4) as u64).unwrap();
        time(&format!("{name} fwd"), &|e| conv2d_fwd_record(&ctx, e, &s, &x, &w, &b, &y).unwrap());
        time(&format!("{name} bwd_in"), &|e| conv2d_bwd_input_record(&ctx, e, &s, &w, &y, &x).unwrap());
        time(&format!("{name} bwd_w"), &|e| conv2d_bwd_weight_record(&ctx, e, &s, &x, &y, &w, &b, &sc).unwrap());
    }
}
