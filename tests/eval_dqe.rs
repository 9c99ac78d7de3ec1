//! The detector figures of merit against their analytic values: the MTF of a perfect counter with a
//! point response is the pixel's |sinc(f)|, its DQE(0) is 1 for Poisson electrons, and an
//! integrating detector's DQE(0) is the Swank factor <E>^2 / <E^2> of its deposits.

use emsim::eval::dqe::{BinnedVariance, Edge, NpsU, dqe, mtf_slanted_edge, sinc};
use rand::RngExt;
use rand_distr::{Distribution, Poisson};

mod common;
use common::test_rng;

/// Counts of a perfect counter with a point response behind a knife edge: Poisson with mean
/// `q` x the pixel's illuminated area (the truth positions binned into pixels).
fn edge_counts(rng: &mut impl rand::Rng, h: usize, w: usize, edge: &Edge, q: f64) -> Vec<f32> {
    let mut img = vec![0.0f32; h * w];
    for i in 0..h {
        for j in 0..w {
            let lambda = q * edge.illuminated_fraction(i, j);
            img[i * w + j] = if lambda > 0.0 { Poisson::new(lambda).unwrap().sample(rng) as f32 } else { 0.0 };
        }
    }
    img
}

/// NPS(u, 0) of a set of flat fields.
fn nps_u(images: &[&[f32]], h: usize, w: usize, band_rows: usize, freqs: &[f64]) -> Vec<f64> {
    let mut n = NpsU::new(h, w, band_rows, freqs).unwrap();
    images.iter().for_each(|im| n.add(im));
    n.nps()
}

/// `(b, variance of the b x b sums / b^2)` of a set of flat fields, for each b.
fn nps0_binned(images: &[&[f32]], h: usize, w: usize) -> Vec<(usize, f64)> {
    let mut bv = BinnedVariance::new(h, w);
    images.iter().for_each(|im| bv.add(im));
    bv.values().into_iter().map(|(b, v, _)| (b, v)).collect()
}

#[test]
fn illuminated_fraction_is_the_clipped_area() {
    let e = Edge { x0_px: 2.5, y0_px: 0.0, angle_rad: 0.0 };
    assert_eq!(e.illuminated_fraction(3, 2), 0.5);
    assert_eq!(e.illuminated_fraction(3, 3), 1.0);
    assert_eq!(e.illuminated_fraction(3, 1), 0.0);
    // a diagonal through the pixel's corners: half of it
    let d = Edge { x0_px: 0.0, y0_px: 0.0, angle_rad: std::f64::consts::FRAC_PI_4 };
    assert!((d.illuminated_fraction(0, 0) - 0.5).abs() < 1e-12);
    // the fractions along a row add up to the distance to the edge (a slanted edge)
    let s = Edge { x0_px: 10.3, y0_px: 4.0, angle_rad: 0.1 };
    let total: f64 = (0..20).map(|j| s.illuminated_fraction(7, j)).sum();
    let exact = 20.0 - (10.3 + (7.5 - 4.0) * 0.1f64.tan()); // the edge's x at the row's middle
    assert!((total - exact).abs() < 1e-9, "{total} vs {exact}");
}

/// A perfect counter's MTF by the slanted-edge method is |sinc(f)| within 2 % up to Nyquist, and
/// 1 at f = 0.
#[test]
fn perfect_counter_mtf_is_the_pixel_sinc() {
    let mut rng = test_rng("perfect_counter_mtf_is_the_pixel_sinc");
    let (h, w) = (256, 48);
    let edge = Edge { x0_px: 24.0 + rng.random_range(-0.5..0.5), y0_px: 128.0, angle_rad: 5f64.to_radians() };
    let img = edge_counts(&mut rng, h, w, &edge, 1e5);
    let freqs: Vec<f64> = (0..=20).map(|k| k as f64 * 0.025).collect();
    let m = mtf_slanted_edge(&img, h, w, &edge, 4, 8.0, &freqs).unwrap();
    assert!((m.mtf[0] - 1.0).abs() < 1e-12, "MTF(0) = {}", m.mtf[0]);
    let mut worst = 0f64;
    for (&f, &v) in freqs.iter().zip(&m.mtf) {
        let want = sinc(f).abs();
        worst = worst.max((v - want).abs() / want);
        assert!((v - want).abs() <= 0.02 * want, "MTF({f}) = {v}, |sinc| = {want}");
    }
    eprintln!("worst relative deviation from |sinc| up to Nyquist: {worst:.4}");
    assert!((m.at(0.5) - 2.0 / std::f64::consts::PI).abs() < 0.02 * 2.0 / std::f64::consts::PI);
}

/// Poisson counts (a perfect counter on a flat field): NPS(0) from binned images equals the mean,
/// so DQE(0) is 1 within 3 %; the NPS is white, so DQE(f) follows MTF(f)^2 (the NPS of 2,560 bands
/// of 4 rows: 2 % noise a frequency, 10 % allowed).
#[test]
fn poisson_counts_give_dqe0_one() {
    let mut rng = test_rng("poisson_counts_give_dqe0_one");
    let (h, w, q) = (128, 128, 4.0);
    let pois = Poisson::new(q).unwrap();
    let images: Vec<Vec<f32>> = (0..80).map(|_| (0..h * w).map(|_| pois.sample(&mut rng) as f32).collect()).collect();
    let refs: Vec<&[f32]> = images.iter().map(|v| v.as_slice()).collect();
    let mean = images.iter().flatten().map(|&v| v as f64).sum::<f64>() / (80 * h * w) as f64;
    let binned = nps0_binned(&refs, h, w);
    assert_eq!(binned.iter().map(|b| b.0).collect::<Vec<_>>(), [1, 2, 4, 8, 16, 32, 64, 128]);
    let nps0 = binned.iter().find(|b| b.0 == 4).unwrap().1;
    let dqe0 = dqe(mean, q, &[1.0], &[nps0])[0];
    assert!((dqe0 - 1.0).abs() < 0.03, "DQE(0) = {dqe0} (mean {mean}, NPS(0) {nps0})");
    let freqs = [0.1, 0.25, 0.4, 0.5];
    let nps = nps_u(&refs, h, w, 4, &freqs);
    for (&f, &n) in freqs.iter().zip(&nps) {
        assert!((n / q - 1.0).abs() < 0.1, "NPS({f}) = {n}, expected {q}");
    }
    let mtf: Vec<f64> = freqs.iter().map(|&f| sinc(f)).collect();
    for ((&f, &d), &m) in freqs.iter().zip(&dqe(mean, q, &mtf, &nps)).zip(&mtf) {
        assert!((d / (m * m) - 1.0).abs() < 0.1, "DQE({f}) = {d}, MTF^2 = {}", m * m);
    }
}

/// An integrating detector (every event's charge summed, no read noise) on a flat field of the
/// shipped library's events: DQE(0) = mu^2 / (q NPS(0)) equals the Swank factor of the events'
/// charges within 3 %. The images wrap around (a torus), so the sum over a whole image holds every
/// event's whole charge and NPS(0) at b = the image side is exact.
#[test]
fn integrating_dqe0_is_the_swank_factor() {
    let mut rng = test_rng("integrating_dqe0_is_the_swank_factor");
    let lib = emsim::io::library::EventLibrary::read_h5(&emsim::default_library_path()).unwrap();
    let totals: Vec<f64> = (0..lib.len())
        .map(|e| lib.charge_e[lib.offsets[e] as usize..lib.offsets[e + 1] as usize].iter().map(|&c| c as f64).sum())
        .collect();
    let m1 = totals.iter().sum::<f64>() / totals.len() as f64;
    let m2 = totals.iter().map(|t| t * t).sum::<f64>() / totals.len() as f64;
    let swank = m1 * m1 / m2;
    let (l, q, n_images) = (32usize, 0.05, 40_000);
    let pois = Poisson::new(q * (l * l) as f64).unwrap();
    let images: Vec<Vec<f32>> = (0..n_images)
        .map(|_| {
            let mut img = vec![0.0f32; l * l];
            for _ in 0..pois.sample(&mut rng) as usize {
                let e = rng.random_range(0..lib.len());
                let (x, y) = (rng.random_range(0..l) as i64, rng.random_range(0..l) as i64);
                for p in lib.offsets[e] as usize..lib.offsets[e + 1] as usize {
                    let (i, j) = (
                        (y + lib.dy_px[p] as i64).rem_euclid(l as i64),
                        (x + lib.dx_px[p] as i64).rem_euclid(l as i64),
                    );
                    img[i as usize * l + j as usize] += lib.charge_e[p];
                }
            }
            img
        })
        .collect();
    let refs: Vec<&[f32]> = images.iter().map(|v| v.as_slice()).collect();
    let mean = images.iter().flatten().map(|&v| v as f64).sum::<f64>() / (n_images * l * l) as f64;
    let binned = nps0_binned(&refs, l, l);
    let (b, nps0) = *binned.last().unwrap();
    assert_eq!(b, l);
    let dqe0 = dqe(mean, q, &[1.0], &[nps0])[0];
    eprintln!("DQE(0) {dqe0:.4}, Swank {swank:.4}; NPS(0) by bin size {binned:?}");
    assert!((dqe0 / swank - 1.0).abs() < 0.03, "DQE(0) {dqe0} vs Swank factor {swank}");
    // per pixel (b = 1) the clusters' charge sharing shows as less noise than NPS(0)
    assert!(binned[0].1 < 0.5 * nps0, "{binned:?}");
}

/// `emsim eval dqe` on a few frames: every source at every upsampling in the JSON with curves on
/// one frequency grid (null beyond each grid's Nyquist); the perfect counter counts every electron
/// with DQE(0) near 1; the integrating mode's DQE(0) is below the Swank factor's ceiling and below
/// counting's at this low dose; bad values are refused in one line.
#[test]
fn eval_dqe_command_reports_every_method() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "eval",
        "dqe",
        "--doses",
        "0.01",
        "--edge-frames",
        "300",
        "--flat-frames",
        "200",
        "--upsample",
        "1,2",
        "--methods",
        "max,c3x3t",
        "--device",
        "cpu",
        "--json",
        "-",
    ];
    let o = common::cli::emsim(&args, dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let curves = r["points"][0]["curves"].as_array().unwrap();
    let names: Vec<String> =
        curves.iter().map(|c| format!("{} {}", c["method"].as_str().unwrap(), c["upsample"])).collect();
    assert_eq!(names, ["integrating 1", "perfect 1", "max 1", "c3x3t 1", "perfect 2", "max 2", "c3x3t 2"]);
    let get = |name: &str| curves.iter().zip(&names).find(|(_, n)| *n == name).unwrap().0;
    for c in curves {
        let f = c["frequency_cycles_per_px"].as_array().unwrap();
        assert_eq!(f.len(), 41, "0 to 1 cycle per pixel in steps of 0.025");
        for key in ["mtf", "nps", "dqe", "frequency_nyquist"] {
            assert_eq!(c[key].as_array().unwrap().len(), f.len(), "{key}");
        }
        let k = c["upsample"].as_f64().unwrap();
        for (fr, m) in f.iter().zip(c["mtf"].as_array().unwrap()) {
            assert_eq!(m.is_null(), fr.as_f64().unwrap() > 0.5 * k + 1e-9, "{}: MTF at {fr}", c["method"]);
        }
        assert_eq!(c["mtf"][0], 1.0);
    }
    let perfect = get("perfect 1");
    assert_eq!(perfect["counted_fraction"], 1.0);
    let dqe0 = perfect["dqe0"].as_f64().unwrap();
    assert!((dqe0 - 1.0).abs() < 0.1, "perfect counter DQE(0) {dqe0}");
    let integrating = get("integrating 1")["dqe0"].as_f64().unwrap();
    let counting = get("c3x3t 1")["dqe0"].as_f64().unwrap();
    assert!(integrating > 0.1 && integrating < 0.45 && counting > integrating, "{integrating} {counting}");

    let bad = common::cli::emsim(&["eval", "dqe", "--upsample", "3", "--device", "cpu"], dir.path());
    let line = common::cli::stderr_line(&bad);
    assert!(!bad.status.success() && line.contains("--upsample"), "{line}");
    let bad = common::cli::emsim(&["eval", "dqe", "--split-pairs", "--device", "cpu"], dir.path());
    let line = common::cli::stderr_line(&bad);
    assert!(!bad.status.success() && line.contains("--model"), "{line}");
}
