//! Frames stage: each kernel against its CPU twin on fresh random input, and the generator's
//! invariances (device, batch size, shards, chunking), conservation of charge and noise statistics.
//!
//! Tolerances: integer kernels (place, accumulate) must match exactly. Noise: the GPU's `/` and
//! `sqrt` may differ from IEEE by a few ULP (WGSL allows 2.5 ULP), so values agree to
//! `|gpu - cpu| <= 1e-4 * max(|cpu|, 1)`; quantized values may then differ by 1 ADU where the
//! unrounded value lies within that tolerance of a rounding boundary.

mod common;

use common::{assert_close, test_context, test_rng};
use emsim::events::parametric::{ParametricModel, parametric_library};
use emsim::frames::accumulate::{AccumulateParams, PackedLibrary, accumulate_cpu, accumulate_gpu, pack_offset};
use emsim::frames::noise::{NoiseParams, noise_cpu, noise_cpu_u16, noise_gpu, noise_gpu_u16};
use emsim::frames::place::{PlaceParams, place_cpu, place_gpu};
use emsim::frames::{ElectronCount, FramesConfig, Generator, Truth};
use emsim::gpu::Device;
use rand::RngExt;

fn small_lib() -> emsim::io::library::EventLibrary {
    parametric_library(&ParametricModel::default(), 300, 11)
}

#[test]
fn place_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("place_matches_twin");
    for case in 0..4 {
        let counts: Vec<u32> = match case {
            0 => vec![1],
            1 => vec![0, 3, 0, 1000],
            _ => (0..rng.random_range(1..6)).map(|_| rng.random_range(0..3000)).collect(),
        };
        let mut offsets = vec![0u32];
        for c in &counts {
            offsets.push(offsets.last().unwrap() + c);
        }
        // First frame just below 2^32 in one case: the frame index carries into the high word.
        let first_frame: u64 = if case == 2 { (1u64 << 32) - 2 } else { rng.random_range(0..1_000_000) };
        let key: u64 = rng.random();
        let p = PlaceParams {
            n_electrons: *offsets.last().unwrap(),
            n_frames: counts.len() as u32,
            first_frame_lo: first_frame as u32,
            first_frame_hi: (first_frame >> 32) as u32,
            key_lo: key as u32,
            key_hi: (key >> 32) as u32,
            n_events: rng.random_range(1..5000),
            height: rng.random_range(1..1000),
            width: rng.random_range(1..1000),
            electron_base: rng.random_range(0..100),
            ..Default::default()
        };
        let gpu = place_gpu(&ctx, &p, &offsets).unwrap();
        let cpu = place_cpu(&p, &offsets);
        assert_eq!(gpu, cpu, "case {case}: {p:?}");
    }
}

#[test]
fn accumulate_matches_twin_exactly() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("accumulate_matches_twin_exactly");
    // A random library: events of up to 40 pixels with offsets up to +-30 and any charge.
    let n_events = 200;
    let mut offsets = vec![0u32];
    let mut pixels = Vec::new();
    for _ in 0..n_events {
        for _ in 0..rng.random_range(0..40) {
            let q: f32 = rng.random_range(0.0..5000.0);
            pixels.push([pack_offset(rng.random_range(-30..=30), rng.random_range(-30..=30)), (q * 256.0) as u32]);
        }
        offsets.push(pixels.len() as u32);
    }
    let lib = PackedLibrary { offsets, pixels };
    for (height, width, row0, band_rows, n_frames) in [(1, 1, 0, 1, 1), (97, 61, 0, 97, 3), (200, 33, 57, 71, 1)] {
        let n_electrons = rng.random_range(1..5000);
        let records: Vec<[u32; 4]> = (0..n_electrons)
            .map(|_| {
                [
                    rng.random_range(0..n_events),
                    rng.random_range(0..height),
                    rng.random_range(0..width),
                    rng.random_range(0..n_frames),
                ]
            })
            .collect();
        let p = AccumulateParams { n_electrons, height, width, row0, band_rows, ..Default::default() };
        // Start from garbage: the kernel adds, it must not overwrite.
        let init: Vec<u32> = (0..n_frames * band_rows * width).map(|_| rng.random_range(0..1000)).collect();
        let gpu = accumulate_gpu(&ctx, &p, &records, &lib, &init).unwrap();
        let mut cpu = init.clone();
        accumulate_cpu(&p, &records, &lib, &mut cpu);
        assert_eq!(gpu, cpu, "{p:?}");
        if band_rows * width > 100 {
            assert_ne!(cpu, init, "the test added nothing");
        }
    }
}

#[test]
fn noise_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("noise_matches_twin");
    for (width, row0, band_rows, n_frames, quantize) in [
        (1, 0, 1, 1, 0),
        (577, 0, 13, 3, 0),
        (61, 7, 19, 2, 0),
        (64, 3, 5, 2, 1),
        (300, 0, 300, 1, 1),
        (66, 1, 7, 3, 1),
    ] {
        let key: u64 = rng.random();
        let first: u64 = rng.random_range(0..u32::MAX as u64 * 4);
        let p = NoiseParams {
            n_frames,
            width,
            row0,
            band_rows,
            first_frame_lo: first as u32,
            first_frame_hi: (first >> 32) as u32,
            key_lo: key as u32,
            key_hi: (key >> 32) as u32,
            sigma_e: rng.random_range(0.0..50.0),
            gain_adu_per_e: rng.random_range(0.1..4.0),
            offset_adu: rng.random_range(0.0..200.0),
            quantize,
            ..Default::default()
        }
        .with_groups();
        let n = (n_frames * band_rows * width) as usize;
        let acc: Vec<u32> =
            (0..n).map(|_| if rng.random_bool(0.7) { 0 } else { rng.random_range(0..5_000_000) }).collect();
        let garbage = vec![-12345.0f32; n];
        let gpu = noise_gpu(&ctx, &p, &acc, &garbage).unwrap();
        let mut cpu = garbage.clone();
        noise_cpu(&p, &acc, &mut cpu);
        assert!(cpu.iter().all(|&v| v != -12345.0), "the twin left pixels unwritten");
        if quantize == 0 {
            let scale: Vec<f32> = cpu.iter().map(|v| v.abs().max(1.0)).collect();
            for i in 0..n {
                assert!((gpu[i] - cpu[i]).abs() <= 1e-4 * scale[i], "pixel {i}: gpu {} cpu {} ({p:?})", gpu[i], cpu[i]);
            }
        } else {
            assert_close(&gpu, &cpu, 1.0, 0.0);
        }
        // The CPU path's u16 form (made in small pieces, converted in cache) is the f32 twin's.
        if quantize != 0 {
            let mut u = vec![0u16; n];
            noise_cpu_u16(&p, &acc, &mut u);
            assert!(u.iter().zip(&cpu).all(|(&a, &b)| a as f32 == b), "noise_cpu_u16 vs noise_cpu ({p:?})");
        }
        // Quantized frames of even width: the packed variant (u16, two per word; 66 px rows put
        // the band's edges inside groups of 4) gives exactly the f32 kernel's values.
        if quantize != 0 && width % 2 == 0 {
            let packed = noise_gpu_u16(&ctx, &p, &acc).unwrap();
            let want: Vec<u16> = gpu.iter().map(|&v| v as u16).collect();
            assert!(gpu.iter().all(|&v| v == v.round() && (0.0..=65535.0).contains(&v)));
            assert_eq!(packed, want, "noise_u16 vs noise ({p:?})");
        }
    }
}

#[test]
fn two_dimensional_dispatch_grid() {
    // Pretend the adapter allows only 3 workgroups per dimension: every kernel then runs on a 2-D
    // grid with bounds-checked excess, and must still give the twin's answer.
    let Some(mut ctx) = test_context() else { return };
    ctx.set_workgroups_per_dim(3);
    let offsets = [0u32, 1500, 2000];
    let p = PlaceParams { n_electrons: 2000, n_frames: 2, n_events: 77, height: 50, width: 60, ..Default::default() };
    assert_eq!(place_gpu(&ctx, &p, &offsets).unwrap(), place_cpu(&p, &offsets));
    let np =
        NoiseParams { n_frames: 2, width: 60, band_rows: 50, sigma_e: 5.0, gain_adu_per_e: 1.0, ..Default::default() }
            .with_groups();
    let acc = vec![1000u32; 6000];
    let gpu = noise_gpu(&ctx, &np, &acc, &vec![-1.0; 6000]).unwrap();
    let mut cpu = vec![0.0; 6000];
    noise_cpu(&np, &acc, &mut cpu);
    for i in 0..cpu.len() {
        assert!((gpu[i] - cpu[i]).abs() <= 1e-4 * cpu[i].abs().max(1.0), "pixel {i}");
    }
    // 9 workgroups of 256 cannot hold 2 frames x 1500 groups: refused with an error, not truncated.
    let big = NoiseParams { n_frames: 2, width: 6000, band_rows: 2, ..np }.with_groups();
    assert!(noise_gpu(&ctx, &big, &vec![0; 24_000], &vec![0.0; 24_000]).is_err());
}

fn cfg(frames: u64, height: u32, width: u32, sigma: f32) -> FramesConfig {
    FramesConfig {
        frames,
        height,
        width,
        electrons: ElectronCount::Normal { mean: 40.0, sd: 6.0 },
        noise_sigma_e: sigma,
        seed: 1234,
        batch_frames: 4,
        ..Default::default()
    }
}

fn generate_all(generator: &Generator, cfg: &FramesConfig) -> (Vec<f32>, Vec<[u32; 4]>) {
    let counts: Vec<u32> = cfg.shard_range().map(|k| cfg.electron_count(k)).collect();
    let first = cfg.shard_range().start;
    let mut frames = Vec::new();
    let mut records = Vec::new();
    for b in generator.plan(&counts) {
        let batch = generator.generate(first + b.start as u64, &counts[b.clone()]).unwrap();
        frames.extend(batch.frames);
        records.extend(batch.records.iter().map(|r| [r[0], r[1], r[2], r[3] + b.start as u32]));
    }
    (frames, records)
}

#[test]
fn gpu_and_cpu_frames_agree() {
    let Some(ctx) = test_context() else { return };
    let lib = small_lib();
    let gpu = Device::Gpu(Box::new(ctx));
    // Noise-free: exact. With noise: within 1e-4 relative per pixel.
    for sigma in [0.0, 20.0] {
        let c = cfg(5, 67, 45, sigma);
        let (fg, rg) = generate_all(&Generator::new(c.clone(), &lib, &gpu).unwrap(), &c);
        let (fc, rc) = generate_all(&Generator::new(c.clone(), &lib, &Device::Cpu).unwrap(), &c);
        assert_eq!(rg, rc, "placements differ");
        if sigma == 0.0 {
            assert_eq!(fg, fc, "noise-free frames must match exactly");
        } else {
            for i in 0..fc.len() {
                assert!((fg[i] - fc[i]).abs() <= 1e-4 * fc[i].abs().max(1.0), "pixel {i}: {} vs {}", fg[i], fc[i]);
            }
        }
    }
    // Quantized u16 frames: even widths come back packed two per word (`frames/noise_u16`), odd
    // ones as f32; both within 1 ADU of the twin (a value on a rounding boundary may round the
    // other way), and noise-free exactly.
    for (width, sigma) in [(46, 20.0), (45, 20.0), (46, 0.0)] {
        let c = FramesConfig { quantize_u16: true, gain_adu_per_e: 2.0, offset_adu: 100.0, ..cfg(5, 67, width, sigma) };
        let (fg, _) = generate_all(&Generator::new(c.clone(), &lib, &gpu).unwrap(), &c);
        let (fc, _) = generate_all(&Generator::new(c.clone(), &lib, &Device::Cpu).unwrap(), &c);
        assert!(fc.iter().all(|&v| v == v.round() && (0.0..=65535.0).contains(&v)));
        let off = fg.iter().zip(&fc).filter(|(g, c)| g != c).count();
        assert!(fg.iter().zip(&fc).all(|(g, c)| (g - c).abs() <= 1.0), "width {width}: more than 1 ADU apart");
        if sigma == 0.0 {
            assert_eq!(off, 0, "noise-free quantized frames must match exactly");
        }
        assert!(off * 1000 <= fc.len(), "width {width}: {off} of {} pixels differ", fc.len());
    }
}

#[test]
fn batch_size_chunking_and_shards_do_not_change_data() {
    let Some(mut ctx) = test_context() else { return };
    let lib = small_lib();
    let reference = {
        let c = FramesConfig { batch_frames: 7, ..cfg(7, 40, 36, 20.0) };
        generate_all(&Generator::new(c.clone(), &lib, &Device::Cpu).unwrap(), &c)
    };
    // Batch sizes on the CPU path.
    for batch in [1, 3] {
        let c = FramesConfig { batch_frames: batch, ..cfg(7, 40, 36, 20.0) };
        let got = generate_all(&Generator::new(c.clone(), &lib, &Device::Cpu).unwrap(), &c);
        assert_eq!(got, reference, "batch {batch}");
    }
    // Shards 0/2 + 1/2 concatenated.
    let mut sharded = (Vec::new(), Vec::new());
    for k in 0..2 {
        let c = FramesConfig { shard_index: k, shard_count: 2, ..cfg(7, 40, 36, 20.0) };
        let (f, r) = generate_all(&Generator::new(c.clone(), &lib, &Device::Cpu).unwrap(), &c);
        let offset = c.shard_range().start as u32;
        sharded.0.extend(f);
        sharded.1.extend(r.into_iter().map(|x| [x[0], x[1], x[2], x[3] + offset]));
    }
    assert_eq!(sharded, reference, "shards");
    // GPU with a tiny binding limit: each frame (40*36*4 = 5760 B) is made in row bands of 2
    // rows and its ~40 electrons (16 B each) in chunks of 25: still the same frames.
    ctx.set_binding_limit(400);
    let gpu = Device::Gpu(Box::new(ctx));
    let c = FramesConfig { batch_frames: 3, ..cfg(7, 40, 36, 20.0) };
    let generator = Generator::new(c.clone(), &lib, &gpu).unwrap();
    let counts: Vec<u32> = (0..7).map(|k| c.electron_count(k)).collect();
    assert_eq!(generator.plan(&counts).len(), 7, "one frame per batch under the small limit");
    let (fg, rg) = generate_all(&generator, &c);
    assert_eq!(rg, reference.1);
    for (i, (&g, &r)) in fg.iter().zip(&reference.0).enumerate() {
        assert!((g - r).abs() <= 1e-4 * r.abs().max(1.0), "pixel {i}");
    }
}

#[test]
fn noise_free_frame_sum_equals_deposited_charge() {
    let lib = small_lib();
    let c = FramesConfig { electrons: ElectronCount::Poisson { mean: 300.0 }, ..cfg(3, 64, 80, 0.0) };
    let generator = Generator::new(c.clone(), &lib, &Device::Cpu).unwrap();
    let counts: Vec<u32> = (0..3).map(|k| c.electron_count(k)).collect();
    let batch = generator.generate(0, &counts).unwrap();
    let truth = Truth::of(&batch, &lib, 0);
    let px = (c.height * c.width) as usize;
    for f in 0..3 {
        let frame_sum: f64 = batch.frames[f * px..(f + 1) * px].iter().map(|&v| v as f64).sum();
        // Independent sum: each electron's library pixels that land on the frame.
        let (mut expected, mut terms) = (0.0f64, 0usize);
        for (i, &[event, row, col, fr]) in batch.records.iter().enumerate() {
            if fr as usize != f {
                continue;
            }
            assert_eq!(truth.x_px[i].floor() as u32, col);
            for j in lib.pixel_range(event as usize) {
                let (r, cc) = (row as i32 + lib.dy_px[j], col as i32 + lib.dx_px[j]);
                if r >= 0 && r < c.height as i32 && cc >= 0 && cc < c.width as i32 {
                    expected += lib.charge_e[j] as f64;
                    terms += 1;
                }
            }
        }
        let tol = terms as f64 * 0.5 / 256.0 + 1e-3;
        assert!((frame_sum - expected).abs() <= tol, "frame {f}: sum {frame_sum} vs {expected} (tol {tol})");
        assert!(expected > 0.0);
    }
}

#[test]
fn empty_frame_noise_statistics() {
    let lib = small_lib();
    let mut devices = vec![Device::Cpu];
    if let Some(ctx) = test_context() {
        devices.push(Device::Gpu(Box::new(ctx)));
    }
    for device in &devices {
        let c = FramesConfig { electrons: ElectronCount::Normal { mean: 0.0, sd: 0.0 }, ..cfg(1, 576, 576, 20.0) };
        let generator = Generator::new(c.clone(), &lib, device).unwrap();
        let batch = generator.generate(0, &[0]).unwrap();
        let n = batch.frames.len() as f64;
        let mean = batch.frames.iter().map(|&v| v as f64).sum::<f64>() / n;
        let sd = (batch.frames.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 0.1, "{}: mean {mean}", device.path_name());
        assert!((sd / 20.0 - 1.0).abs() < 0.01, "{}: sd {sd}", device.path_name());
    }
}

#[test]
fn electron_count_distributions() {
    let n = 4000u64;
    let mean_of = |c: &FramesConfig| (0..n).map(|k| c.electron_count(k) as f64).sum::<f64>() / n as f64;
    let normal = FramesConfig::default();
    let m = mean_of(&normal);
    assert!((m - 2927.294).abs() < 5.0 * 70.531 / (n as f64).sqrt(), "normal mean {m}");
    let poisson = FramesConfig { electrons: ElectronCount::Poisson { mean: 3000.0 }, ..Default::default() };
    let m = mean_of(&poisson);
    assert!((m - 3000.0).abs() < 5.0 * (3000.0f64 / n as f64).sqrt(), "poisson mean {m}");
    let dose = FramesConfig { electrons: ElectronCount::Dose { electrons_per_pixel: 0.01 }, ..Default::default() };
    let m = mean_of(&dose);
    assert!((m - 3317.76).abs() < 5.0 * (3317.76f64 / n as f64).sqrt(), "dose mean {m}");
}

/// A mask in front of the sensor (`generate_cpu_masked`): keeping every electron gives the
/// generator's frames; keeping none, its frames without electrons (the read noise alone); a knife
/// edge keeps exactly the electrons whose incidence point lies on its open side, and the frames
/// are those of those electrons alone (checked without noise: their charge is the frames' sum).
#[test]
fn masked_frames_keep_the_electrons_the_mask_lets_through() {
    let lib = small_lib();
    let device = Device::Cpu;
    let c = cfg(6, 40, 56, 7.0);
    let g = Generator::new(c.clone(), &lib, &device).unwrap();
    let counts: Vec<u32> = (0..6).map(|k| c.electron_count(k)).collect();
    let all = g.generate(0, &counts).unwrap();
    let kept = g.generate_cpu_masked(0, &counts, |_, _| true);
    assert!(kept.frames == all.frames && kept.records == all.records && kept.counts == counts);
    let none = g.generate_cpu_masked(0, &counts, |_, _| false);
    let empty = g.generate(0, &[0; 6]).unwrap();
    assert!(none.records.is_empty() && none.frames == empty.frames && none.counts == vec![0; 6]);

    let quiet = FramesConfig { noise_sigma_e: 0.0, ..c.clone() };
    let g = Generator::new(quiet, &lib, &device).unwrap();
    let open = |x: f32, y: f32| x - 0.2 * y > 20.0;
    let half = g.generate_cpu_masked(0, &counts, open);
    let truth = Truth::of(&half, &lib, 0);
    let full = Truth::of(&g.generate(0, &counts).unwrap(), &lib, 0);
    let inside = (0..full.x_px.len()).filter(|&i| open(full.x_px[i], full.y_px[i])).count();
    assert!(inside > 0 && inside < full.x_px.len(), "the edge crosses the frames");
    assert_eq!(truth.x_px.len(), inside);
    assert!((0..truth.x_px.len()).all(|i| open(truth.x_px[i], truth.y_px[i])));
    assert_eq!(half.counts.iter().sum::<u32>() as usize, inside);
    // the charge of the kept electrons' pixels that land on the frame (fixed point: 1/256 e- a term)
    let (mut charge, mut terms) = (0.0f64, 0usize);
    for &[event, row, col, _] in &half.records {
        for j in lib.pixel_range(event as usize) {
            let (r, cc) = (row as i32 + lib.dy_px[j], col as i32 + lib.dx_px[j]);
            if r >= 0 && r < c.height as i32 && cc >= 0 && cc < c.width as i32 {
                charge += lib.charge_e[j] as f64;
                terms += 1;
            }
        }
    }
    let frames: f64 = half.frames.iter().map(|&v| v as f64).sum();
    let tol = terms as f64 * 0.5 / 256.0 + 1e-2;
    assert!(charge > 0.0 && (frames - charge).abs() <= tol, "frames {frames} vs charge {charge}");
}
