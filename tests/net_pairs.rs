//! One-or-two-electron training samples: the `net/make_pairs` kernel against its CPU twin,
//! and properties of the samples themselves (class fraction, charge, geometry, separations, extra
//! "distractor" electrons).

mod common;

use common::{assert_close, test_context, test_rng};
use emsim::io::library::{EventLibrary, LibraryMeta};
use emsim::net::data::LibraryArrays;
use emsim::net::pairs::{
    MakePairsParams, PairBatch, PairSpec, make_pairs_cpu, make_pairs_gpu, pair_choice, pair_extra_count, pair_extras,
    separation_histogram,
};
use rand::RngExt;

fn real_library() -> EventLibrary {
    EventLibrary::read_h5(&emsim::default_library_path()).unwrap()
}

/// A synthetic library of `count` events. `radius` 0: one pixel `(0, 0)` per event; otherwise a
/// `(2 radius + 1)^2` block around it. Charges in `[50, 1000)` e, incidence in `[0.05, 0.95)` (away
/// from the pixel edges, so that `floor` of a point recovers its pixel despite f32 rounding).
fn synthetic_library(rng: &mut impl RngExt, count: usize, radius: i32) -> EventLibrary {
    let mut lib = EventLibrary::new(LibraryMeta {
        source: "parametric".into(),
        pitch_um: 15.0,
        energy_kev: 300.0,
        seed: 0,
        config_json: String::new(),
    });
    for _ in 0..count {
        let mut pixels = vec![];
        for dy in -radius..=radius {
            for dx in -radius..=radius {
                pixels.push((dx, dy, rng.random_range(50.0f32..1000.0)));
            }
        }
        let (ix, iy) = (rng.random_range(0.05f32..0.95), rng.random_range(0.05f32..0.95));
        lib.push(ix, iy, 0.0, 0, 0.0, &pixels);
    }
    lib
}

/// Classes exact; points to 1e-6 px (the same f32 additions on both sides, values below 10);
/// separations to 1e-6 + 1e-6 relative (WGSL's sqrt may differ from the correctly rounded one by
/// an ulp or two); pixels to 1e-6 + 1e-5 relative (the charge sums are the same f32 additions in
/// the same order, the noise is built from the same Philox words with `+ - * /` and sqrt, which
/// agree to a few ulp, and the driver may contract `q + sigma * z` into an fma).
#[track_caller]
fn assert_batches_match(gpu: &PairBatch, cpu: &PairBatch) {
    assert_eq!(gpu.class, cpu.class, "classes");
    assert_close(&gpu.points, &cpu.points, 1e-6, 0.0);
    assert_close(&gpu.sep_px, &cpu.sep_px, 1e-6, 1e-6);
    assert_close(&gpu.x, &cpu.x, 1e-6, 1e-5);
}

/// GPU vs twin on the real library, for side 16 (even: centre pixel 8) and 11 (odd), an odd
/// batch (37 samples: patches not a multiple of the workgroup), batch 1, and a batch whose
/// global sample indices cross 2^32 (the shader's 64-bit index carry).
#[test]
fn make_pairs_gpu_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let lib = real_library();
    let arrays = LibraryArrays::new(&lib).unwrap();
    let mut rng = test_rng("make_pairs_gpu_matches_twin");
    for (side, shift, max_sep) in [(16u32, 1u32, 4u32), (11, 2, 3), (16, 0, 1)] {
        let spec = PairSpec {
            side,
            shift_px: shift,
            max_sep_px: max_sep,
            sigma_e: 20.0,
            p_two: 0.5,
            ..PairSpec::new(rng.random(), 100, 5000)
        };
        for (first, n) in [(12_345u64, 37usize), (7, 1), ((1u64 << 32) - 20, 37)] {
            let p = MakePairsParams::new(&spec, first, n).unwrap();
            let cpu = make_pairs_cpu(&p, &arrays);
            let gpu = make_pairs_gpu(&ctx, &p, &arrays).unwrap();
            assert_eq!(cpu.x.len(), n * (side * side) as usize);
            assert_batches_match(&gpu, &cpu);
            if n > 1 {
                let twos = cpu.class.iter().filter(|&&c| c == 1).count();
                assert!(twos > 0 && twos < n, "side {side}: {twos} of {n} samples have two electrons");
            }
        }
    }
}

/// The same, with the dispatch forced onto a 2-D grid of workgroups (as for more than 65535
/// workgroups on a real adapter), without needing 16M pixels.
#[test]
fn make_pairs_gpu_matches_twin_on_2d_grid() {
    let Some(mut ctx) = test_context() else { return };
    ctx.set_workgroups_per_dim(4);
    let lib = real_library();
    let arrays = LibraryArrays::new(&lib).unwrap();
    let spec = PairSpec { side: 11, ..PairSpec::new(test_rng("make_pairs_2d").random(), 0, lib.len() as u32) };
    // 29 * 121 = 3509 pixels = 14 workgroups > 4 per dimension: a 4 x 4 grid with 2 idle workgroups
    let p = MakePairsParams::new(&spec, 99, 29).unwrap();
    assert_batches_match(&make_pairs_gpu(&ctx, &p, &arrays).unwrap(), &make_pairs_cpu(&p, &arrays));
}

/// A sample does not depend on the batch it is made in (GPU and twin), including across the
/// 2^32 boundary of the sample index.
#[test]
fn samples_do_not_depend_on_the_batch() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("pairs_batch_independence");
    let arrays = LibraryArrays::new(&synthetic_library(&mut rng, 50, 1)).unwrap();
    let spec = PairSpec { sigma_e: 30.0, ..PairSpec::new(rng.random(), 0, 50) };
    let plane = (spec.side * spec.side) as usize;
    for base in [1_000u64, (1u64 << 32) - 12] {
        let whole_p = MakePairsParams::new(&spec, base, 37).unwrap();
        let part_p = MakePairsParams::new(&spec, base + 10, 5).unwrap();
        let whole = make_pairs_gpu(&ctx, &whole_p, &arrays).unwrap();
        let part = make_pairs_gpu(&ctx, &part_p, &arrays).unwrap();
        assert_eq!(part.x[..], whole.x[10 * plane..15 * plane], "GPU pixels, base {base}");
        assert_eq!(part.class[..], whole.class[10..15]);
        assert_eq!(part.points[..], whole.points[40..60]);
        assert_eq!(part.sep_px[..], whole.sep_px[10..15]);
        let whole_c = make_pairs_cpu(&whole_p, &arrays);
        let part_c = make_pairs_cpu(&part_p, &arrays);
        assert_eq!(part_c.x[..], whole_c.x[10 * plane..15 * plane], "twin pixels, base {base}");
        assert_eq!(part_c.points[..], whole_c.points[40..60]);
        assert_batches_match(&whole, &whole_c);
        // different samples do differ
        assert_ne!(whole.x[..plane], whole.x[plane..2 * plane]);
    }
}

/// The fraction of two-electron samples is p_two within 5 binomial standard deviations
/// (sqrt(p (1 - p) / n); a false failure has probability ~6e-7); p_two 0 and 1 give one class
/// only; raising p_two only turns one-electron samples into two-electron ones and keeps every
/// other draw (the points of samples that are pairs in both batches are identical).
#[test]
fn two_electron_fraction_is_p_two() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("pairs_fraction");
    let arrays = LibraryArrays::new(&synthetic_library(&mut rng, 20, 0)).unwrap();
    let n = 20_000usize;
    let seed = rng.random();
    // side 5: 25 px per sample keeps the GPU batch small
    let spec = |p_two: f32| PairSpec { p_two, side: 5, shift_px: 1, max_sep_px: 1, ..PairSpec::new(seed, 0, 20) };
    let mut batches = vec![];
    for p_two in [0.0f32, 0.3, 0.5, 0.8, 1.0] {
        let p = MakePairsParams::new(&spec(p_two), 0, n).unwrap();
        let gpu = make_pairs_gpu(&ctx, &p, &arrays).unwrap();
        assert_eq!(gpu.class, make_pairs_cpu(&p, &arrays).class, "p_two {p_two}: GPU vs twin classes");
        let twos = gpu.class.iter().filter(|&&c| c == 1).count();
        let frac = twos as f64 / n as f64;
        let sd = (p_two as f64 * (1.0 - p_two as f64) / n as f64).sqrt();
        eprintln!("p_two {p_two}: fraction {frac:.4} (sd {sd:.4})");
        assert!(
            (frac - p_two as f64).abs() <= 5.0 * sd,
            "p_two {p_two}: two-electron fraction {frac}, 5 sd = {}",
            5.0 * sd
        );
        for (i, &c) in gpu.class.iter().enumerate() {
            let pt = &gpu.points[4 * i..4 * i + 4];
            assert!(c <= 1);
            if c == 0 {
                assert_eq!((pt[0], pt[1], gpu.sep_px[i]), (pt[2], pt[3], 0.0), "sample {i}: one electron");
            } else {
                assert!(gpu.sep_px[i] > 0.0, "sample {i}: two electrons at separation 0");
            }
        }
        batches.push(gpu);
    }
    for w in batches.windows(2) {
        for i in 0..n {
            assert!(w[0].class[i] <= w[1].class[i], "sample {i} lost its second electron as p_two grew");
            assert_eq!(w[0].points[4 * i..4 * i + 2], w[1].points[4 * i..4 * i + 2], "sample {i}: first point");
            if w[0].class[i] == 1 {
                assert_eq!(w[0].points[4 * i..4 * i + 4], w[1].points[4 * i..4 * i + 4], "sample {i}: points");
            }
        }
    }
}

/// Noise-free samples (sigma 0) of compact synthetic events (3x3 pixels, always inside the patch):
/// the total charge is event 1's, plus event 2's for a pair (to f32 rounding, 1e-5 relative), and
/// sep_px is the distance between the points. On the real library, where charge can fall outside
/// the 16x16 patch, the patch holds at most that sum and, on average, most of it (over 1024
/// pairs: the charge fraction outside is heavy-tailed, so 64 pairs fell below 95% for ~5% of the
/// seeds; over 512 pairs the lowest of 40 seeds was 96.6%, the median 99.2%).
#[test]
fn pair_charge_is_the_sum_of_both_events() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("pairs_charge");
    let lib = synthetic_library(&mut rng, 40, 1);
    let arrays = LibraryArrays::new(&lib).unwrap();
    let spec = PairSpec { sigma_e: 0.0, input_scale: 0.5, ..PairSpec::new(rng.random(), 3, 37) };
    let n = 300;
    let p = MakePairsParams::new(&spec, 500, n).unwrap();
    let gpu = make_pairs_gpu(&ctx, &p, &arrays).unwrap();
    assert_batches_match(&gpu, &make_pairs_cpu(&p, &arrays));
    let plane = (spec.side * spec.side) as usize;
    for s in 0..n {
        let c = pair_choice(&p, 500 + s as u64);
        assert_eq!(c.two as u32, gpu.class[s]);
        let total: f64 = gpu.x[s * plane..(s + 1) * plane].iter().map(|&v| v as f64).sum::<f64>() / 0.5;
        let want = lib.total_charge_e(c.ev1 as usize) + if c.two { lib.total_charge_e(c.ev2 as usize) } else { 0.0 };
        assert!((total - want).abs() <= 1e-5 * want, "sample {s}: patch charge {total} e, events {want} e ({c:?})");
        let pt = &gpu.points[4 * s..4 * s + 4];
        let d = ((pt[2] as f64 - pt[0] as f64).powi(2) + (pt[3] as f64 - pt[1] as f64).powi(2)).sqrt();
        assert!((gpu.sep_px[s] as f64 - d).abs() <= 1e-5, "sample {s}: sep {} vs |p2 - p1| {d}", gpu.sep_px[s]);
    }

    let real = real_library();
    let arrays = LibraryArrays::new(&real).unwrap();
    let spec = PairSpec { sigma_e: 0.0, p_two: 1.0, ..PairSpec::new(rng.random(), 0, real.len() as u32) };
    let n = 1024;
    let p = MakePairsParams::new(&spec, 0, n).unwrap();
    let gpu = make_pairs_gpu(&ctx, &p, &arrays).unwrap();
    let (mut inside, mut all) = (0.0f64, 0.0f64);
    for s in 0..n {
        let c = pair_choice(&p, s as u64);
        let total: f64 = gpu.x[s * plane..(s + 1) * plane].iter().map(|&v| v as f64).sum::<f64>() / 1e-3;
        let want = real.total_charge_e(c.ev1 as usize) + real.total_charge_e(c.ev2 as usize);
        assert!(total <= want * (1.0 + 1e-5), "sample {s}: patch charge {total} e > both events' {want} e");
        inside += total;
        all += want;
    }
    eprintln!("real library: {:.1}% of both events' charge inside the 16x16 patch", 100.0 * inside / all);
    assert!(inside >= 0.95 * all, "only {:.1}% of the charge inside the patch", 100.0 * inside / all);
}

/// Geometry: with one-pixel events and no noise, the image has exactly one lit pixel per electron,
/// at the pixel of its true point (`floor(x + side/2 + 0.5)`), holding that event's charge. With
/// max_sep 1 the two electrons are always in touching (8-connected) pixels and every one of the 8
/// neighbours occurs; with max_sep 3 all 48 offsets occur and none farther; separations stay
/// below (max_sep + 1) * sqrt(2), which the histogram's overflow bin confirms.
#[test]
fn points_match_the_image_and_max_sep_bounds_the_offset() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("pairs_geometry");
    let lib = synthetic_library(&mut rng, 30, 0);
    let arrays = LibraryArrays::new(&lib).unwrap();
    for (side, max_sep) in [(16u32, 1u32), (11, 1), (16, 3)] {
        let spec = PairSpec {
            side,
            max_sep_px: max_sep,
            sigma_e: 0.0,
            input_scale: 1.0,
            ..PairSpec::new(rng.random(), 0, 30)
        };
        let n = 1500;
        let p = MakePairsParams::new(&spec, 0, n).unwrap();
        let gpu = make_pairs_gpu(&ctx, &p, &arrays).unwrap();
        assert_batches_match(&gpu, &make_pairs_cpu(&p, &arrays));
        let (side_u, c0) = (side as usize, (side / 2) as f32);
        let plane = side_u * side_u;
        let mut offsets = std::collections::HashSet::new();
        for s in 0..n {
            let c = pair_choice(&p, s as u64);
            let pt = &gpu.points[4 * s..4 * s + 4];
            let pixel = |x: f32, y: f32| ((x + c0 + 0.5).floor() as usize, (y + c0 + 0.5).floor() as usize);
            let (p1, p2) = (pixel(pt[0], pt[1]), pixel(pt[2], pt[3]));
            let img = &gpu.x[s * plane..(s + 1) * plane];
            let lit: Vec<(usize, usize, f32)> =
                img.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, &v)| (i % side_u, i / side_u, v)).collect();
            let q = |ev: u32| lib.charge_e[lib.pixel_range(ev as usize)][0];
            if gpu.class[s] == 0 {
                assert_eq!(lit, vec![(p1.0, p1.1, q(c.ev1))], "sample {s}: one electron at {p1:?}");
            } else {
                let mut want = vec![(p1.0, p1.1, q(c.ev1)), (p2.0, p2.1, q(c.ev2))];
                want.sort_by_key(|w| (w.1, w.0));
                assert_eq!(lit, want, "sample {s}: two electrons at {p1:?} and {p2:?}");
                let (ox, oy) = (p2.0 as i32 - p1.0 as i32, p2.1 as i32 - p1.1 as i32);
                assert_eq!((ox, oy), (c.ox, c.oy));
                assert!(ox.abs().max(oy.abs()) as u32 <= max_sep && (ox, oy) != (0, 0), "sample {s}: offset {ox},{oy}");
                offsets.insert((ox, oy));
            }
        }
        let k = 2 * max_sep as usize + 1;
        assert_eq!(offsets.len(), k * k - 1, "side {side} max_sep {max_sep}: offsets seen {offsets:?}");
        let limit = (max_sep + 1) as f32 * std::f32::consts::SQRT_2;
        let edges: Vec<f32> = (0..=4).map(|i| limit * i as f32 / 4.0).collect();
        let h = separation_histogram(&gpu.sep_px, &gpu.class, &edges);
        let twos = gpu.class.iter().filter(|&&c| c == 1).count() as u64;
        eprintln!("side {side} max_sep {max_sep}: separation histogram over {edges:?}: {h:?}");
        assert_eq!(h.iter().sum::<u64>(), twos);
        assert_eq!((h[0], h[5]), (0, 0), "separations outside (0, {limit})");
    }
}

/// Read noise: (noisy - noise-free) / (sigma * input_scale) over a batch has mean 0 and variance 1
/// (51200 values: the bounds are ~6 standard errors).
#[test]
fn read_noise_is_standard_normal_times_sigma() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("pairs_noise");
    let arrays = LibraryArrays::new(&synthetic_library(&mut rng, 10, 1)).unwrap();
    let spec = PairSpec::new(rng.random(), 0, 10);
    let p = MakePairsParams::new(&PairSpec { sigma_e: 25.0, ..spec }, 0, 200).unwrap();
    let p0 = MakePairsParams::new(&PairSpec { sigma_e: 0.0, ..spec }, 0, 200).unwrap();
    let noisy = make_pairs_gpu(&ctx, &p, &arrays).unwrap();
    let clean = make_pairs_gpu(&ctx, &p0, &arrays).unwrap();
    assert_eq!(noisy.points, clean.points);
    let z: Vec<f64> =
        noisy.x.iter().zip(&clean.x).map(|(&a, &b)| (a as f64 - b as f64) / (25.0 * spec.input_scale as f64)).collect();
    let m = z.iter().sum::<f64>() / z.len() as f64;
    let v = z.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / z.len() as f64;
    assert!(m.abs() < 0.03 && (v - 1.0).abs() < 0.04, "noise mean {m}, variance {v}");
}

/// GPU vs twin with extra electrons on (Poisson mean 1.5, cap 4) on the real library, for side 16
/// (max_sep 2) and 11 (odd), odd batches, batch 1 and a batch crossing sample index 2^32. The
/// extras change only the pixels: class, points and separations equal those of the same spec
/// without extras (exactly).
#[test]
fn make_pairs_gpu_matches_twin_with_extras() {
    let Some(ctx) = test_context() else { return };
    let lib = real_library();
    let arrays = LibraryArrays::new(&lib).unwrap();
    let mut rng = test_rng("make_pairs_extras_gpu_matches_twin");
    let (mut with_extras, mut without) = (0, 0);
    for (side, shift, max_sep) in [(16u32, 1u32, 2u32), (11, 1, 3)] {
        let spec = PairSpec {
            side,
            shift_px: shift,
            max_sep_px: max_sep,
            extra_mean: 1.5,
            extra_max: 4,
            ..PairSpec::new(rng.random(), 100, 5000)
        };
        for (first, n) in [(12_345u64, 37usize), (7, 1), ((1u64 << 32) - 20, 41)] {
            let p = MakePairsParams::new(&spec, first, n).unwrap();
            let cpu = make_pairs_cpu(&p, &arrays);
            let gpu = make_pairs_gpu(&ctx, &p, &arrays).unwrap();
            assert_batches_match(&gpu, &cpu);
            let p0 = MakePairsParams::new(&PairSpec { extra_mean: 0.0, extra_max: 0, ..spec }, first, n).unwrap();
            let plain = make_pairs_gpu(&ctx, &p0, &arrays).unwrap();
            assert_eq!((&gpu.class, &gpu.points, &gpu.sep_px), (&plain.class, &plain.points, &plain.sep_px));
            let counts: Vec<usize> = (0..n as u64).map(|s| pair_extras(&p, first + s).len()).collect();
            // a sample with extras has a different image from the plain one; one without, the same
            let plane = (side * side) as usize;
            for (s, &c) in counts.iter().enumerate() {
                let (a, b) = (&gpu.x[s * plane..(s + 1) * plane], &plain.x[s * plane..(s + 1) * plane]);
                assert_eq!(c == 0, a == b, "side {side} sample {s}: {c} extras");
                if c == 0 { without += 1 } else { with_extras += 1 }
            }
        }
    }
    // P(no extras) = e^-1.5 = 0.22: both kinds occur among the 158 samples
    assert!(with_extras > 0 && without > 0, "{with_extras} samples with extras, {without} without");
}

/// Noise-free samples of one-pixel synthetic events (GPU): the image is the plain (no extras)
/// image plus each extra's charge at the pixel `pair_extras` names (extras may share a pixel:
/// their charges add). Extras never land on either electron's pixel (they are outside the box).
#[test]
fn extras_add_their_charge_at_their_pixels() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("pairs_extras_charge");
    let lib = synthetic_library(&mut rng, 30, 0);
    let arrays = LibraryArrays::new(&lib).unwrap();
    let spec = PairSpec {
        sigma_e: 0.0,
        input_scale: 1.0,
        max_sep_px: 2,
        extra_mean: 2.0,
        extra_max: 6,
        ..PairSpec::new(rng.random(), 0, 30)
    };
    let n = 400;
    let p = MakePairsParams::new(&spec, 77, n).unwrap();
    let p0 = MakePairsParams::new(&PairSpec { extra_mean: 0.0, ..spec }, 77, n).unwrap();
    let gpu = make_pairs_gpu(&ctx, &p, &arrays).unwrap();
    let plain = make_pairs_gpu(&ctx, &p0, &arrays).unwrap();
    assert_batches_match(&gpu, &make_pairs_cpu(&p, &arrays));
    let side = spec.side as usize;
    let plane = side * side;
    let q = |ev: u32| lib.charge_e[lib.pixel_range(ev as usize)][0];
    let mut total_extras = 0;
    for s in 0..n {
        let mut want = plain.x[s * plane..(s + 1) * plane].to_vec();
        let extras = pair_extras(&p, 77 + s as u64);
        total_extras += extras.len();
        for &(ev, col, row) in &extras {
            assert!((0..side as i32).contains(&col) && (0..side as i32).contains(&row), "sample {s}: {extras:?}");
            let i = row as usize * side + col as usize;
            assert_eq!(plain.x[s * plane + i], 0.0, "sample {s}: extra at ({col}, {row}) on an electron's pixel");
            want[i] += q(ev);
        }
        assert_close(&gpu.x[s * plane..(s + 1) * plane], &want, 0.0, 1e-6);
    }
    eprintln!("{total_extras} extras in {n} samples");
    assert!(total_extras > n, "only {total_extras} extras in {n} samples at mean 2");
}

/// Extras (twin, many samples): never inside the box of Chebyshev radius max_sep around the first
/// electron's pixel, always inside the patch, and every allowed pixel is reached for every shift
/// of the first electron. With shift 0 (a fixed box) the pixel histogram is uniform: each of the
/// 231 allowed pixels' counts within 6 binomial standard deviations of the mean (a false failure
/// has probability ~5e-7); the events are uniform over the range likewise.
#[test]
fn extras_avoid_the_box_and_cover_the_rest_uniformly() {
    let seed = test_rng("pairs_extras_histogram").random();
    let (side, m) = (16i32, 2i32);
    for shift in [1u32, 0] {
        let spec = PairSpec {
            side: side as u32,
            max_sep_px: m as u32,
            shift_px: shift,
            extra_mean: 1.5,
            extra_max: 4,
            ..PairSpec::new(seed, 10, 20)
        };
        let n = if shift == 0 { 80_000u64 } else { 60_000 };
        let p = MakePairsParams::new(&spec, 0, 1).unwrap();
        let c0 = side / 2;
        let mut hist = std::collections::HashMap::<(i32, i32), Vec<u64>>::new(); // box centre -> counts
        let mut events = vec![0u64; 20];
        let mut total = 0u64;
        for k in 0..n {
            let c = pair_choice(&p, k);
            let (bx, by) = (c0 + c.sx, c0 + c.sy);
            let h = hist.entry((bx, by)).or_insert_with(|| vec![0; (side * side) as usize]);
            for (ev, col, row) in pair_extras(&p, k) {
                assert!((0..side).contains(&col) && (0..side).contains(&row), "sample {k}: extra at ({col}, {row})");
                assert!((col - bx).abs().max((row - by).abs()) > m, "sample {k}: extra ({col}, {row}) in the box");
                assert!((10..30).contains(&ev), "sample {k}: event {ev}");
                h[(row * side + col) as usize] += 1;
                events[(ev - 10) as usize] += 1;
                total += 1;
            }
        }
        let n_boxes = (2 * shift + 1).pow(2) as usize;
        assert_eq!(hist.len(), n_boxes, "shift {shift}: box positions seen");
        for (&(bx, by), h) in &hist {
            for row in 0..side {
                for col in 0..side {
                    let inside = (col - bx).abs().max((row - by).abs()) <= m;
                    let v = h[(row * side + col) as usize];
                    assert_eq!(v == 0, inside, "shift {shift}, box ({bx}, {by}): pixel ({col}, {row}) count {v}");
                }
            }
        }
        let sd_check = |counts: &[u64], cells: usize, what: &str| {
            let pr = 1.0 / cells as f64;
            let mean = total as f64 * pr;
            let sd = (total as f64 * pr * (1.0 - pr)).sqrt();
            let worst = counts.iter().map(|&v| (v as f64 - mean).abs() / sd).fold(0.0, f64::max);
            eprintln!("shift {shift}: {what}: {total} extras, mean {mean:.1} per cell, worst |z| {worst:.2}");
            assert!(worst < 6.0, "{what}: a count is {worst} sd from the mean {mean}");
        };
        sd_check(&events, 20, "events");
        if shift == 0 {
            let h = &hist[&(c0, c0)];
            let allowed: Vec<u64> = h.iter().copied().filter(|&v| v > 0).collect();
            assert_eq!(allowed.len(), (side * side - (2 * m + 1).pow(2)) as usize);
            sd_check(&allowed, allowed.len(), "pixels");
        }
    }
}

/// The number of extras is Poisson(extra_mean) capped at extra_max: over 200000 samples (twin)
/// the frequency of each count is within 5 binomial standard deviations plus 5 counts of the capped
/// Poisson expectation (the 5 counts keep the rare counts, expected far below 1 time, from failing
/// on one or two occurrences; the f32 inversion's rounding, ~1e-7, is far below all this), and the
/// mean count within 5 standard errors of E[min(N, cap)]. The GPU uses the same counts (the pixel
/// tests above).
#[test]
fn extra_count_is_capped_poisson() {
    let seed = test_rng("pairs_extras_poisson").random();
    let n = 200_000u64;
    for (mean, cap) in [(1.5f32, 4u32), (0.3, 16), (5.0, 3), (2.5, 16), (12.0, 16)] {
        let spec = PairSpec { extra_mean: mean, extra_max: cap, ..PairSpec::new(seed, 0, 10) };
        let p = MakePairsParams::new(&spec, 0, 1).unwrap();
        let mut freq = vec![0u64; cap as usize + 1];
        for k in 0..n {
            freq[pair_extra_count(&p, k) as usize] += 1;
        }
        // capped Poisson probabilities in f64
        let m = mean as f64;
        let mut pmf = vec![0.0f64; cap as usize + 1];
        let mut pj = (-m).exp();
        for (j, slot) in pmf.iter_mut().enumerate().take(cap as usize) {
            *slot = pj;
            pj *= m / (j + 1) as f64;
        }
        pmf[cap as usize] = 1.0 - pmf[..cap as usize].iter().sum::<f64>();
        for (j, (&f, &pr)) in freq.iter().zip(&pmf).enumerate() {
            let sd = (n as f64 * pr * (1.0 - pr)).sqrt();
            assert!(
                (f as f64 - n as f64 * pr).abs() <= 5.0 * sd + 5.0,
                "mean {mean} cap {cap}: count {j} seen {f} times, expected {:.1} (sd {sd:.1})",
                n as f64 * pr
            );
        }
        let ex: f64 = pmf.iter().enumerate().map(|(j, &pr)| j as f64 * pr).sum();
        let var: f64 = pmf.iter().enumerate().map(|(j, &pr)| (j as f64 - ex).powi(2) * pr).sum();
        let got = freq.iter().enumerate().map(|(j, &f)| j as f64 * f as f64).sum::<f64>() / n as f64;
        let se = (var / n as f64).sqrt();
        eprintln!("mean {mean} cap {cap}: mean count {got:.4}, expected {ex:.4} (se {se:.4})");
        assert!((got - ex).abs() <= 5.0 * se, "mean {mean} cap {cap}: mean count {got}, expected {ex}");
    }
}

/// With extras off (`extra_mean` 0, whatever the cap, or `extra_max` 0, whatever the mean) a batch
/// is bit-identical to the default spec's (which has neither), on the GPU and in the twin; with
/// extras on it is not (the check can fail).
#[test]
fn no_extras_is_bit_identical() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("pairs_no_extras");
    let arrays = LibraryArrays::new(&synthetic_library(&mut rng, 25, 1)).unwrap();
    let base = PairSpec { sigma_e: 15.0, max_sep_px: 2, ..PairSpec::new(rng.random(), 0, 25) };
    let first = (1u64 << 32) - 7;
    let p_ref = MakePairsParams::new(&base, first, 33).unwrap();
    let gpu_ref = make_pairs_gpu(&ctx, &p_ref, &arrays).unwrap();
    let cpu_ref = make_pairs_cpu(&p_ref, &arrays);
    assert_batches_match(&gpu_ref, &cpu_ref);
    for (mean, cap, same) in [(0.0f32, 16u32, true), (2.0, 0, true), (2.0, 4, false)] {
        let p = MakePairsParams::new(&PairSpec { extra_mean: mean, extra_max: cap, ..base }, first, 33).unwrap();
        let gpu = make_pairs_gpu(&ctx, &p, &arrays).unwrap();
        let cpu = make_pairs_cpu(&p, &arrays);
        assert_eq!(gpu == gpu_ref, same, "GPU, extra_mean {mean}, extra_max {cap}");
        assert_eq!(cpu == cpu_ref, same, "twin, extra_mean {mean}, extra_max {cap}");
        if same {
            // bitwise, not just ==
            assert_eq!(bytemuck::cast_slice::<f32, u32>(&gpu.x), bytemuck::cast_slice::<f32, u32>(&gpu_ref.x));
            assert_eq!(bytemuck::cast_slice::<f32, u32>(&cpu.x), bytemuck::cast_slice::<f32, u32>(&cpu_ref.x));
        }
    }
}
