//! Count stage: each kernel against its CPU twin on fresh random input (and on real synthetic
//! frames), the whole GPU counter against the CPU path, and the finder's guarantees.
//!
//! Tolerances: calibrate, sum3 and find are integer kernels and must match exactly (the float
//! expression before rounding to fixed point uses the same operations; a value within 1 ULP of a
//! rounding boundary could in principle differ, so calibrate allows a difference of 1 in at most
//! 1e-4 of values). localize: exact integer sums, one f32 division (WGSL allows 2.5 ULP), so
//! positions agree within 1e-5 px.

mod common;

use common::{test_context, test_rng};
use emsim::count::calibrate::{CalibrateParams, calibrate_cpu, calibrate_gpu, calibrate_gpu_u16};
use emsim::count::find::calibrate_gpu_tiles;
use emsim::count::find::{FINDER_PIXEL, FINDER_SUM3, FindParams, find_cpu, find_gpu, max_candidates};
use emsim::count::localize::{LocalizeParams, localize_cpu, localize_gpu};
use emsim::count::sum3::{Sum3Params, sum3_cpu, sum3_gpu};
use emsim::count::{CountConfig, CountLayout, Counter, HostAdu, estimate_sigma_e};
use emsim::frames::{FramesConfig, Generator};
use emsim::gpu::Device;
use rand::RngExt;
use rand_distr::{Distribution, Normal};

/// Synthetic frames (ADU) from the frames generator on the CPU, with their noise sigma.
fn synthetic_frames(n: u32, h: u32, w: u32, electrons: f64, sigma: f32, seed: u64) -> Vec<f32> {
    let lib = emsim::io::library::EventLibrary::read_h5(&emsim::default_library_path()).unwrap();
    let cfg = FramesConfig {
        frames: n as u64,
        height: h,
        width: w,
        electrons: emsim::frames::ElectronCount::Poisson { mean: electrons },
        noise_sigma_e: sigma,
        seed,
        ..Default::default()
    };
    let g = Generator::new(cfg, &lib, &Device::Cpu).unwrap();
    let counts: Vec<u32> = (0..n as u64).map(|k| g.cfg.electron_count(k)).collect();
    g.generate(0, &counts).unwrap().frames
}

fn random_q(rng: &mut impl rand::Rng, n: usize) -> Vec<i32> {
    let noise = Normal::new(0.0f32, 320.0).unwrap();
    (0..n)
        .map(|_| {
            let v = noise.sample(rng) as i32;
            if rng.random_range(0..30) == 0 { v + rng.random_range(0..200_000) } else { v }
        })
        .collect()
}

#[test]
fn calibrate_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("calibrate_matches_twin");
    for case in 0..3 {
        let (h, w, n) = (rng.random_range(1..70), rng.random_range(1..90), rng.random_range(1..4));
        let px = (h * w) as usize;
        let adu: Vec<f32> = (0..px * n).map(|_| rng.random_range(-100.0..40_000.0f32)).collect();
        let dark: Vec<f32> = if case >= 1 { (0..px).map(|_| rng.random_range(0.0..50.0)).collect() } else { vec![] };
        let gain_map: Vec<f32> = if case == 2 { (0..px).map(|_| rng.random_range(0.8..1.2)).collect() } else { vec![] };
        let p = CalibrateParams {
            n_values: (px * n) as u32,
            frame_px: px as u32,
            use_dark: !dark.is_empty() as u32,
            use_gain_map: !gain_map.is_empty() as u32,
            offset_adu: rng.random_range(0.0..100.0),
            inv_gain: 1.0 / rng.random_range(0.5..3.0f32),
            ..Default::default()
        };
        let gpu = calibrate_gpu(&ctx, &p, &adu, &dark, &gain_map).unwrap();
        let mut cpu = vec![0i32; px * n];
        calibrate_cpu(&p, &adu, &dark, &gain_map, &mut cpu);
        let off: Vec<usize> = (0..cpu.len()).filter(|&i| gpu[i] != cpu[i]).collect();
        assert!(off.iter().all(|&i| (gpu[i] - cpu[i]).abs() <= 1), "case {case}: values differ by more than 1");
        assert!(
            off.len() as f64 <= 1e-4 * cpu.len() as f64,
            "case {case}: {} of {} values differ",
            off.len(),
            cpu.len()
        );
        // The u16 variant on the same frames rounded to u16 (raw detector values) gives exactly
        // the f32 kernel's charges for them.
        let raw: Vec<u16> = adu.iter().map(|&v| v.round().clamp(0.0, 65535.0) as u16).collect();
        let as_f32: Vec<f32> = raw.iter().map(|&v| v as f32).collect();
        let gpu_u16 = calibrate_gpu_u16(&ctx, &p, &raw, &dark, &gain_map).unwrap();
        assert_eq!(gpu_u16, calibrate_gpu(&ctx, &p, &as_f32, &dark, &gain_map).unwrap(), "case {case}: u16");
        // count/find_tile calibrates with the same code: exactly count/calibrate's charges, for
        // f32 and u16 frames.
        let (hu, wu) = (h as u32, w as u32);
        let tiles = calibrate_gpu_tiles(&ctx, &p, hu, wu, HostAdu::F32(&adu), &dark, &gain_map).unwrap();
        assert_eq!(tiles, gpu, "case {case}: count/find_tile's q");
        let tiles_u16 = calibrate_gpu_tiles(&ctx, &p, hu, wu, HostAdu::U16(&raw), &dark, &gain_map).unwrap();
        assert_eq!(tiles_u16, gpu_u16, "case {case}: count/find_tile_u16's q");
    }
}

#[test]
fn sum3_matches_twin_exactly() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("sum3_matches_twin_exactly");
    for (h, w, n) in [(1, 1, 1), (1, 7, 2), (9, 1, 1), (rng.random_range(2..80), rng.random_range(2..80), 3)] {
        let q = random_q(&mut rng, (h * w * n) as usize);
        let p = Sum3Params { n_frames: n, height: h, width: w, _pad0: 0 };
        let mut cpu = vec![0; q.len()];
        sum3_cpu(&p, &q, &mut cpu);
        // (the tile layout keeps its sums in workgroup memory: checked through find below)
        for layout in CountLayout::ALL.into_iter().filter(|l| l.sum3().is_some()) {
            let gpu = sum3_gpu(&ctx, layout, &p, &q).unwrap();
            assert_eq!(gpu, cpu, "{h}x{w}x{n}, {layout:?}");
        }
        assert!(sum3_gpu(&ctx, CountLayout::Tiles, &p, &q).is_err());
        // finding on these shapes too (frames narrower and lower than a tile, 1-pixel wide)
        let fp = FindParams {
            n_frames: n,
            height: h,
            width: w,
            thr_q: 0,
            xray_q: 0,
            suppress_px: 1,
            capacity: n * max_candidates(h, w) as u32,
            ..Default::default()
        };
        for finder in [FINDER_SUM3, FINDER_PIXEL] {
            let fp = FindParams { finder, faint_q: -50, faint_sum_q: 100, ..fp };
            let want = find_cpu(&fp, &q, &cpu);
            for layout in CountLayout::ALL {
                let got = find_gpu(&ctx, layout, &fp, &q, &cpu).unwrap().0;
                assert_eq!(got, want, "find, {h}x{w}x{n}, finder {finder}, {layout:?}");
            }
        }
        // The separable twin equals the direct 9-term sum.
        let (r, c) = ((h - 1) / 2, (w - 1) / 2);
        let mut direct = 0;
        for rr in r.saturating_sub(1)..=(r + 1).min(h - 1) {
            for cc in c.saturating_sub(1)..=(c + 1).min(w - 1) {
                direct += q[(rr * w + cc) as usize];
            }
        }
        assert_eq!(cpu[(r * w + c) as usize], direct);
    }
}

/// The parameters of `find_matches_twin_exactly` for its input `k` (0: values 0-3, 1: random
/// noise with rare large values, 2: synthetic frames).
fn find_case_params(k: usize, h: u32, w: u32, n: u32, suppress_px: u32, finder: u32) -> FindParams {
    FindParams {
        n_frames: n,
        height: h,
        width: w,
        thr_q: if k == 0 { 1 } else { 80 * 16 },
        xray_q: if k == 1 { 150_000 } else { 0 },
        suppress_px,
        capacity: n * max_candidates(h, w) as u32,
        finder,
        faint_q: [0, 640, 60 * 16][k],
        faint_sum_q: [3, 1600, 200 * 16][k],
        ..Default::default()
    }
}

/// Whether input 1 `q` has faint centres for the pixel finder at suppression 1 and 3, and some
/// suppressed at 3.
fn exercises_faint_centres(h: u32, w: u32, n: u32, q: &[i32]) -> bool {
    let mut s = vec![0; q.len()];
    sum3_cpu(&Sum3Params { n_frames: n, height: h, width: w, _pad0: 0 }, q, &mut s);
    [1u32, 3].iter().all(|&suppress_px| {
        let p = find_case_params(1, h, w, n, suppress_px, FINDER_PIXEL);
        let found = find_cpu(&p, q, &s).len();
        let plain = find_cpu(&FindParams { faint_q: i32::MAX, ..p }, q, &s).len();
        let unsuppressed = find_cpu(&FindParams { suppress_px: 0, ..p }, q, &s).len();
        found > plain && (suppress_px == 1 || unsuppressed > found)
    })
}

#[test]
fn find_matches_twin_exactly() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("find_matches_twin_exactly");
    // Random integer input (with plateaus: small value range gives ties) and real synthetic frames.
    let mut inputs: Vec<(u32, u32, u32, Vec<i32>)> = Vec::new();
    let (h, w) = (rng.random_range(5..60), rng.random_range(5..60));
    inputs.push((h, w, 2, (0..h * w * 2).map(|_| rng.random_range(0..4)).collect()));
    // Input 1 is drawn again (a bounded number of times) until it holds what the test exercises:
    // faint centres found by the pixel finder, and some of them suppressed. A small frame of
    // noise sometimes has none.
    let input1 = (0..100)
        .map(|_| {
            let (h, w) = (rng.random_range(20..90), rng.random_range(20..90));
            (h, w, 3, random_q(&mut rng, (h * w * 3) as usize))
        })
        .find(|(h, w, n, q)| exercises_faint_centres(*h, *w, *n, q))
        .expect("a random input with faint centres within 100 draws");
    inputs.push(input1);
    let frames = synthetic_frames(2, 64, 96, 120.0, 20.0, rng.random());
    inputs.push((64, 96, 2, frames.iter().map(|&v| emsim::count::calibrate::to_q(v)).collect()));
    for (k, (h, w, n, q)) in inputs.into_iter().enumerate() {
        let mut s = vec![0; q.len()];
        sum3_cpu(&Sum3Params { n_frames: n, height: h, width: w, _pad0: 0 }, &q, &mut s);
        for (suppress_px, finder) in [(1u32, FINDER_SUM3), (2, FINDER_SUM3), (1, FINDER_PIXEL), (3, FINDER_PIXEL)] {
            let p = find_case_params(k, h, w, n, suppress_px, finder);
            let cpu = find_cpu(&p, &q, &s);
            for layout in CountLayout::ALL {
                let (gpu, count) = find_gpu(&ctx, layout, &p, &q, &s).unwrap();
                assert_eq!(count as usize, cpu.len(), "input {k}: counter, finder {finder}, {layout:?}");
                assert_eq!(gpu, cpu, "input {k}, finder {finder}, suppress {suppress_px}, {layout:?}");
            }
            assert!(!cpu.is_empty(), "input {k}: the test input should contain centres");
            if finder == FINDER_PIXEL && k > 0 {
                // Faint centres are found, and some are suppressed: the test inputs exercise both
                // (input 0, values 0-3 for ties, has almost no room for faint centres).
                let plain = find_cpu(&FindParams { faint_q: i32::MAX, ..p }, &q, &s).len();
                let unsuppressed = find_cpu(&FindParams { suppress_px: 0, ..p }, &q, &s).len();
                assert!(cpu.len() > plain, "input {k}: no faint centre found ({} = {plain})", cpu.len());
                if suppress_px > 1 {
                    assert!(unsuppressed > cpu.len(), "input {k}: no faint centre suppressed");
                }
            }
            // Guarantee: kept centres are more than suppress_px apart within a frame.
            for a in &cpu {
                for b in &cpu {
                    if a[0] == b[0] && a[1] < b[1] {
                        let (ra, ca) = ((a[1] / w) as i32, (a[1] % w) as i32);
                        let (rb, cb) = ((b[1] / w) as i32, (b[1] % w) as i32);
                        let d = (ra - rb).abs().max((ca - cb).abs());
                        assert!(d > 1, "input {k}: centres {a:?} {b:?} touch");
                    }
                }
            }
        }
    }
    // A 2-D workgroup grid (16 workgroups per dimension at most), the indirect dispatch of
    // count/suppress included: the same lists and sums in every layout.
    let mut ctx = ctx;
    ctx.set_workgroups_per_dim(16);
    let (h, w, n) = (rng.random_range(50..90), rng.random_range(50..90), 3);
    let q = random_q(&mut rng, (h * w * n) as usize);
    let sp = Sum3Params { n_frames: n, height: h, width: w, _pad0: 0 };
    let mut s = vec![0; q.len()];
    sum3_cpu(&sp, &q, &mut s);
    let p = FindParams {
        n_frames: n,
        height: h,
        width: w,
        thr_q: 80 * 16,
        xray_q: 0,
        suppress_px: 2,
        capacity: n * max_candidates(h, w) as u32,
        faint_q: 60 * 16,
        faint_sum_q: 200 * 16,
        ..Default::default()
    };
    for layout in CountLayout::ALL {
        if layout.sum3().is_some() {
            let gpu_s = sum3_gpu(&ctx, layout, &sp, &q).unwrap();
            let wrong = gpu_s.iter().zip(&s).filter(|(a, b)| a != b).count();
            assert_eq!(wrong, 0, "2-D grid, {layout:?}: {wrong} of {} sums differ", s.len());
        }
        for finder in [FINDER_SUM3, FINDER_PIXEL] {
            let p = FindParams { finder, ..p };
            let cpu = find_cpu(&p, &q, &s);
            assert!(!cpu.is_empty());
            assert_eq!(find_gpu(&ctx, layout, &p, &q, &s).unwrap().0, cpu, "2-D grid, finder {finder}, {layout:?}");
        }
    }
}

#[test]
fn localize_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("localize_matches_twin");
    let (h, w, n) = (rng.random_range(3..50), rng.random_range(3..50), 2u32);
    let mut q = random_q(&mut rng, (h * w * n) as usize);
    // A 3x3 block near the calibration's clamp (2^20): windows whose sums reach 2^23 and more,
    // where the kernel's quotient takes its bit-by-bit branch.
    let (br, bc) = (rng.random_range(1..h - 1), rng.random_range(1..w - 1));
    for r in br - 1..=br + 1 {
        for c in bc - 1..=bc + 1 {
            q[(r * w + c) as usize] = 1_000_000 + rng.random_range(0..48_576);
        }
    }
    // Centres anywhere, edges and corners included.
    let mut cands: Vec<[u32; 4]> =
        (0..300).map(|_| [rng.random_range(0..n), rng.random_range(0..h * w), 0, 0]).collect();
    cands.push([0, 0, 0, 0]);
    cands.push([1, h * w - 1, 0, 0]);
    for dr in 0..3 {
        for dc in 0..3 {
            cands.push([0, (br + dr - 1) * w + bc + dc - 1, 0, 0]);
        }
    }
    let p = LocalizeParams { height: h, width: w, capacity: cands.len() as u32, centroid_thr_q: 640 };
    let gpu = localize_gpu(&ctx, &p, &q, &cands).unwrap();
    let cpu = localize_cpu(&p, &q, &cands);
    assert_eq!(gpu.len(), cpu.len());
    // Bit for bit: the sums are integers and the quotient is computed exactly on both sides.
    for (i, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
        assert_eq!(g.xy, c.xy, "cand {i}: gpu {g:?} cpu {c:?}");
        assert_eq!((g.charge3_e, g.charge5_e), (c.charge3_e, c.charge5_e), "cand {i}");
    }
    let big = |l: &emsim::count::localize::Localized| l.charge5_e * 16.0 >= 8_388_608.0;
    assert!(cpu.iter().any(big), "the test should reach window sums of 2^23");
    // Empty list: nothing dispatched, nothing written.
    assert!(localize_gpu(&ctx, &p, &q, &[]).unwrap().is_empty());
}

/// The whole counter on the GPU (the adapter's layout, and the tile and row layouts explicitly)
/// against the CPU path, with and without a dark reference and gain map, and once with wgpu's
/// full run-time shader checks (`EMSIM_SHADER_CHECKS=full`): the same centres, positions within
/// 1e-5 px.
#[test]
fn counter_gpu_equals_cpu_on_default_density_frames() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("counter_gpu_equals_cpu");
    let (h, w) = (128, 160);
    let density = 2927.294 / (576.0 * 576.0);
    let frames = synthetic_frames(5, h, w, density * (h * w) as f64, 20.0, rng.random());
    let sigma = estimate_sigma_e(frames.iter().copied()).unwrap();
    assert!((sigma - 20.0).abs() < 1.0, "estimated sigma {sigma}");
    let px = (h * w) as usize;
    let dark: Vec<f32> = (0..px).map(|_| rng.random_range(-3.0..3.0)).collect();
    let gain_map: Vec<f32> = (0..px).map(|_| rng.random_range(0.9..1.1)).collect();
    let mut gpu_dev = Device::Gpu(Box::new(ctx));
    for (k, checks) in [emsim::gpu::ShaderChecks::Trusted, emsim::gpu::ShaderChecks::Full].into_iter().enumerate() {
        if let Device::Gpu(ctx) = &mut gpu_dev {
            ctx.set_shader_checks(checks);
        }
        for maps in [false, true] {
            let base = CountConfig {
                batch_frames: 2, // 3 GPU batches
                dark: maps.then(|| dark.clone()),
                gain_map: maps.then(|| gain_map.clone()),
                ..Default::default()
            };
            let on_cpu = Counter::new(base.clone(), h, w, sigma, &Device::Cpu).unwrap().count(&frames).unwrap();
            let layouts: &[Option<CountLayout>] = if k == 0 {
                &[None, Some(CountLayout::Tiles), Some(CountLayout::Rows8)]
            } else {
                &[None, Some(CountLayout::Tiles)]
            };
            for &layout in layouts {
                let cfg = CountConfig { layout, ..base.clone() };
                let on_gpu = Counter::new(cfg, h, w, sigma, &gpu_dev).unwrap().count(&frames).unwrap();
                let what = format!("{checks:?} checks, maps {maps}, layout {layout:?}");
                assert_eq!(on_gpu.cands, on_cpu.cands, "{what}");
                for (g, c) in on_gpu.localized.iter().zip(&on_cpu.localized) {
                    for m in 0..5 {
                        assert!(
                            (g.xy[m][0] - c.xy[m][0]).abs() <= 1e-5 && (g.xy[m][1] - c.xy[m][1]).abs() <= 1e-5,
                            "{what}"
                        );
                    }
                }
            }
            let per_frame = on_cpu.cands.len() as f64 / 5.0;
            let expected = density * (h * w) as f64;
            assert!(
                per_frame > 0.7 * expected && per_frame < 1.3 * expected,
                "{per_frame} centres per frame, {expected} electrons"
            );
        }
    }
}

/// Raw u16 frames (ADU with a gain and an offset, as a detector writes them) counted with
/// `count_u16`: the GPU uploads them packed two per word (`count/calibrate_u16`) and finds exactly
/// the electrons that counting the same frames as f32 finds, on the GPU and on the CPU path. The
/// frames hold an odd number of values (3 x 41 x 53), so the last word is half padding.
#[test]
fn counting_u16_frames_equals_counting_them_as_f32() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("counting_u16_frames_equals_counting_them_as_f32");
    let (n, h, w) = (3u32, 41u32, 53u32);
    let frames_e = synthetic_frames(n, h, w, 12.0, 20.0, rng.random());
    let (gain, offset) = (2.5f32, 100.0f32);
    let raw: Vec<u16> = frames_e.iter().map(|&e| (e * gain + offset).round().clamp(0.0, 65535.0) as u16).collect();
    assert_eq!(raw.len() % 2, 1);
    let as_f32: Vec<f32> = raw.iter().map(|&v| v as f32).collect();
    let cfg = CountConfig { gain_adu_per_e: gain, offset_adu: offset, batch_frames: 2, ..Default::default() };
    let gpu_dev = Device::Gpu(Box::new(ctx));
    let cpu = Counter::new(cfg.clone(), h, w, 20.0, &Device::Cpu).unwrap();
    let want = cpu.count(&as_f32).unwrap();
    assert!(want.cands.len() >= 10, "{} electrons found", want.cands.len());
    let mut runs = vec![("cpu u16".to_string(), cpu.count_u16(&raw).unwrap())];
    for layout in [CountLayout::Rows8, CountLayout::Tiles] {
        let gpu = Counter::new(CountConfig { layout: Some(layout), ..cfg.clone() }, h, w, 20.0, &gpu_dev).unwrap();
        runs.push((format!("gpu f32, {layout:?}"), gpu.count(&as_f32).unwrap()));
        runs.push((format!("gpu u16, {layout:?}"), gpu.count_u16(&raw).unwrap()));
    }
    for (what, got) in runs {
        assert_eq!(got.cands, want.cands, "{what}");
        assert_eq!(got.localized, want.localized, "{what}");
    }
}

#[test]
fn sigma_estimate_and_bad_config() {
    let mut rng = test_rng("sigma_estimate");
    let noise = Normal::new(0.0f32, 13.0).unwrap();
    let v: Vec<f32> = (0..200_000).map(|_| noise.sample(&mut rng)).collect();
    let s = estimate_sigma_e(v.iter().copied()).unwrap();
    assert!((s - 13.0).abs() < 0.1, "{s}");
    assert!(estimate_sigma_e([1.0f32, 2.0].into_iter()).is_none());
    let bad = CountConfig { background_threshold_n_sigma: -1.0, ..Default::default() };
    let e = Counter::new(bad, 8, 8, 20.0, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("--background-threshold-n-sigma"), "{e}");
    let bad = CountConfig { dark: Some(vec![0.0; 10]), ..Default::default() };
    let e = Counter::new(bad, 8, 8, 20.0, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("--dark") && e.contains("8x8"), "{e}");
}

/// Noise-free isolated events: the GPU path's errors equal the CPU twin's exactly and every event
/// with charge above threshold is found. With noise (sigma 20): the 3x3 centroid beats the max
/// pixel, and the found-centre 3x3 error is near the EMSim notes' 0.23 px.
#[test]
fn isolated_events_test() {
    use emsim::count::isolated::{IsolatedOptions, isolated_test};
    let Some(ctx) = test_context() else { return };
    let lib = emsim::io::library::EventLibrary::read_h5(&emsim::default_library_path()).unwrap();
    let gpu = Device::Gpu(Box::new(ctx));
    let o = IsolatedOptions { events: 2000, sigma_e: 0.0, seed: 3, ..Default::default() };
    let g = isolated_test(&lib, &o, &gpu).unwrap();
    let c = isolated_test(&lib, &o, &Device::Cpu).unwrap();
    assert_eq!(g.recall, 1.0);
    assert!(g.detectable >= 1990, "{} detectable", g.detectable);
    for (a, b) in g.records.iter().zip(&c.records) {
        assert_eq!(
            (a.mean_error_px, a.max_error_px, a.p99_error_px, a.n),
            (b.mean_error_px, b.max_error_px, b.p99_error_px, b.n),
            "{} {}",
            a.method,
            a.centre
        );
    }
    let o = IsolatedOptions { events: 3000, sigma_e: 20.0, seed: 5, ..Default::default() };
    let r = isolated_test(&lib, &o, &Device::Cpu).unwrap();
    let get = |m: &str, c: &str| r.records.iter().find(|x| x.method == m && x.centre == c).unwrap().mean_error_px;
    assert!(get("c3x3", "known") < get("max", "known"));
    assert!(get("c3x3", "found") < get("max", "found"));
    let found = get("c3x3", "found");
    assert!(found > 0.1 && found < 0.4, "3x3 centroid mean error {found} px (EMSim notes: 0.23)");
}

/// Frames made on the GPU and counted there without leaving the device (`generate_on_device` +
/// `count_device`, bench stage `frames_count`) give exactly what counting the same frames after
/// a readback gives, and `count_resident` (frames uploaded once, counted batch after batch) finds
/// as many, `generate_resident` makes the same frames; the CPU path refuses `count_device` and
/// `generate_resident`.
#[test]
fn count_on_device_equals_count_after_readback() {
    use emsim::frames::ElectronCount;
    let Some(ctx) = test_context() else { return };
    let lib = emsim::io::library::EventLibrary::read_h5(&emsim::default_library_path()).unwrap();
    let gpu = Device::Gpu(Box::new(ctx));
    let (h, w) = (96, 80);
    let fcfg = FramesConfig {
        frames: 5,
        height: h,
        width: w,
        batch_frames: 5,
        electrons: ElectronCount::Normal { mean: 60.0, sd: 8.0 },
        ..Default::default()
    };
    let generator = Generator::new(fcfg.clone(), &lib, &gpu).unwrap();
    let counts: Vec<u32> = (0..5).map(|k| fcfg.electron_count(k)).collect();
    let ccfg = CountConfig { batch_frames: 5, ..Default::default() };
    let batch = generator.generate(0, &counts).unwrap();
    for layout in [CountLayout::Rows8, CountLayout::Tiles] {
        // the run layouts calibrate the generator's buffer in place, the tile layout reads it
        let counter = Counter::new(CountConfig { layout: Some(layout), ..ccfg.clone() }, h, w, 20.0, &gpu).unwrap();
        let mut on_device = None;
        generator
            .generate_on_device(0, &counts, &mut |frames| {
                on_device = Some(counter.count_device(frames, 5)?);
                Ok(())
            })
            .unwrap();
        let on_device = on_device.unwrap();
        let after_readback = counter.count(&batch.frames).unwrap();
        assert!(on_device.cands.len() > 100, "{} centres", on_device.cands.len());
        assert_eq!(on_device.cands, after_readback.cands, "{layout:?}");
        for (a, b) in on_device.localized.iter().zip(&after_readback.localized) {
            assert_eq!(a.xy, b.xy, "{layout:?}");
        }
        // the resident path (bench stage count_resident) finds as many, batch after batch
        if let Device::Gpu(c) = &gpu {
            let buf = c.upload("frames", &batch.frames).unwrap();
            let empty = c.upload("empty", &vec![0f32; batch.frames.len()]).unwrap();
            let bufs = [buf, empty];
            // batches taken in turn: the third is the first again, the second the empty one
            let n = counter.count_resident(&bufs, false, 5, 3, false).unwrap();
            assert_eq!(n as usize, after_readback.cands.len(), "{layout:?}: count_resident");
            assert_eq!(
                counter.count_resident(&bufs, false, 5, 2, false).unwrap(),
                0,
                "{layout:?}: count_resident, empty"
            );
        }
    }
    // frames made resident (bench stage frames_resident), twice over: the last time's frames are
    // those generate reads back
    let Device::Gpu(c) = &gpu else { unreachable!() };
    let mut resident = Vec::new();
    generator
        .generate_resident(
            0,
            &counts,
            2,
            Some(&mut |frames| {
                let mut enc = c.encoder("read frames");
                let rb = c.readback(&mut enc, frames, batch.frames.len() as u64 * 4);
                c.submit_and_wait(enc)?;
                resident = rb.read::<f32>(c)?;
                Ok(())
            }),
        )
        .unwrap();
    assert!(resident == batch.frames, "generate_resident's frames differ from generate's");
    assert!(Generator::new(fcfg.clone(), &lib, &Device::Cpu).unwrap().generate_resident(0, &counts, 1, None).is_err());
    let cpu_counter = Counter::new(ccfg, h, w, 20.0, &Device::Cpu).unwrap();
    let buf = match &gpu {
        Device::Gpu(c) => c.storage("x", 4).unwrap(),
        Device::Cpu => unreachable!(),
    };
    assert!(cpu_counter.count_device(&buf, 1).is_err());
}

/// stempy's classic counter, re-implemented (`count::stempy`), finds exactly the electrons stempy
/// 3.6 finds on the same frames: without a dark reference, with a fractional one and an x-ray cut,
/// and with one above some pixels (u16 wrap-around). Fixture: `tests/data/stempy_counts.h5`, made
/// by stempy itself (`scripts/reference/stempy_fixture.py`).
#[test]
fn stempy_counter_finds_what_stempy_finds() {
    use emsim::count::stempy::{StempyThresholds, count_frame};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stempy_counts.h5");
    let file = hdf5::File::open(&path).unwrap();
    let frames = file.dataset("frames").unwrap();
    let shape = frames.shape();
    let (n, h, w) = (shape[0], shape[1], shape[2]);
    let frames: Vec<u16> = frames.read_raw().unwrap();
    for k in 0..3 {
        let g = file.group(&format!("case_{k}")).unwrap();
        let t = StempyThresholds {
            background: g.attr("background_threshold").unwrap().read_scalar().unwrap(),
            xray: g.attr("xray_threshold").unwrap().read_scalar().unwrap(),
        };
        let dark: Option<Vec<f32>> = g.dataset("dark").ok().map(|d| d.read_raw().unwrap());
        let want: Vec<u32> = g.dataset("events").unwrap().read_raw().unwrap();
        let offsets: Vec<u64> = g.dataset("offsets").unwrap().read_raw().unwrap();
        let (mut work, mut total) = (Vec::new(), 0);
        for f in 0..n {
            let mut got = Vec::new();
            count_frame(&frames[f * h * w..(f + 1) * h * w], h, w, dark.as_deref(), t, &mut work, &mut got);
            let want = &want[offsets[f] as usize..offsets[f + 1] as usize];
            assert_eq!(got, want, "case {k}, frame {f}");
            total += got.len();
        }
        assert!(total > 100, "case {k}: {total} events");
    }
}

/// `emsim count --method stempy` on the frames stempy counted (dark level 200 ADU, noise 20 ADU:
/// 4 sigma = 80 ADU above the offset, the x-ray cut off) writes exactly stempy's electrons, at
/// their pixels' centres.
#[test]
fn count_method_stempy_writes_stempys_electrons() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stempy_counts.h5");
    let args = [
        "count",
        fixture.to_str().unwrap(),
        "--method",
        "stempy",
        "--offset-adu",
        "200",
        "--sigma-e",
        "20",
        "--device",
        "cpu",
        "--out",
        "s.h5",
    ];
    let o = common::cli::emsim(&args, dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = hdf5::File::open(dir.path().join("s.h5")).unwrap();
    let method: hdf5::types::VarLenUnicode = out.attr("method").unwrap().read_scalar().unwrap();
    assert_eq!(method.as_str(), "stempy");
    let col = |name: &str| -> Vec<f32> { out.dataset(&format!("electrons/{name}")).unwrap().read_raw().unwrap() };
    let (x, y) = (col("x_px"), col("y_px"));
    let got_offsets: Vec<u64> = out.dataset("electrons/offsets").unwrap().read_raw().unwrap();
    let file = hdf5::File::open(&fixture).unwrap();
    let w = file.dataset("frames").unwrap().shape()[2];
    let g = file.group("case_0").unwrap(); // the same thresholds in raw ADU: 280, x-ray 65000
    let want: Vec<u32> = g.dataset("events").unwrap().read_raw().unwrap();
    let offsets: Vec<u64> = g.dataset("offsets").unwrap().read_raw().unwrap();
    assert_eq!(got_offsets, offsets);
    for (i, &e) in want.iter().enumerate() {
        let (r, c) = (e as usize / w, e as usize % w);
        assert_eq!((x[i], y[i]), (c as f32 + 0.5, r as f32 + 0.5), "electron {i}");
    }
}
