//! Evaluation: the matching against brute force (seeded random cases), metrics on a case computed
//! by hand, round trips through files written with the documented layouts (and with the frames
//! writer itself, HDF5 and npy), plots and JSON, and bad input.

mod common;

use std::path::{Path, PathBuf};

use common::test_rng;
use emsim::eval::matching::{Points, match_points, match_points_with_limit};
use emsim::eval::read::{read_counts, read_truth};
use emsim::eval::{EvalOptions, EvalReport, run};
use emsim::io::h5util::{set_attr, set_str_attr, write_column};
use rand::RngExt;

// ---------------------------------------------------------------------------------------------
// Matching

/// The best matching by exhaustive search: (most pairs, then least total distance).
fn brute_force(t: &[(f32, f32)], f: &[(f32, f32)], r: f64) -> (usize, f64) {
    fn d(a: (f32, f32), b: (f32, f32)) -> f64 {
        let (dx, dy) = (b.0 as f64 - a.0 as f64, b.1 as f64 - a.1 as f64);
        (dx * dx + dy * dy).sqrt()
    }
    fn go(
        i: usize,
        t: &[(f32, f32)],
        f: &[(f32, f32)],
        r: f64,
        used: &mut Vec<bool>,
        best: &mut (usize, f64),
        cur: (usize, f64),
    ) {
        if i == t.len() {
            if cur.0 > best.0 || (cur.0 == best.0 && cur.1 < best.1) {
                *best = cur;
            }
            return;
        }
        go(i + 1, t, f, r, used, best, cur);
        for j in 0..f.len() {
            let dist = d(t[i], f[j]);
            if !used[j] && dist <= r {
                used[j] = true;
                go(i + 1, t, f, r, used, best, (cur.0 + 1, cur.1 + dist));
                used[j] = false;
            }
        }
    }
    let mut best = (0, 0.0);
    go(0, t, f, r, &mut vec![false; f.len()], &mut best, (0, 0.0));
    best
}

fn cols(p: &[(f32, f32)]) -> (Vec<f32>, Vec<f32>) {
    (p.iter().map(|q| q.0).collect(), p.iter().map(|q| q.1).collect())
}

/// Every pair within the radius, each point used once, distances right.
#[track_caller]
fn check_valid(t: &[(f32, f32)], f: &[(f32, f32)], r: f32, pairs: &[emsim::eval::matching::Pair]) {
    let mut ut = vec![false; t.len()];
    let mut uf = vec![false; f.len()];
    for p in pairs {
        let (i, j) = (p.truth as usize, p.found as usize);
        assert!(!ut[i] && !uf[j], "point used twice in {pairs:?}");
        ut[i] = true;
        uf[j] = true;
        let (dx, dy) = (f[j].0 as f64 - t[i].0 as f64, f[j].1 as f64 - t[i].1 as f64);
        assert!((p.dist_px - (dx * dx + dy * dy).sqrt()).abs() < 1e-12);
        assert!(p.dist_px <= r as f64, "pair beyond the radius: {p:?}");
    }
}

#[test]
fn matching_is_optimal_against_brute_force() {
    let mut rng = test_rng("matching_is_optimal_against_brute_force");
    let mut nontrivial = 0;
    for case in 0..600 {
        let (nt, nf) = (rng.random_range(0..8), rng.random_range(0..8));
        // A small box, so that candidates overlap and the choice matters; integer-ish points in
        // some cases to create ties.
        let side = rng.random_range(1.0..6.0f32);
        let pt = |rng: &mut rand_chacha::ChaCha8Rng| {
            if case % 5 == 0 {
                (rng.random_range(0..4) as f32 * 0.5, rng.random_range(0..4) as f32 * 0.5)
            } else {
                (rng.random_range(-side..side), rng.random_range(-side..side))
            }
        };
        let t: Vec<(f32, f32)> = (0..nt).map(|_| pt(&mut rng)).collect();
        let f: Vec<(f32, f32)> = (0..nf).map(|_| pt(&mut rng)).collect();
        let r = rng.random_range(0.3..2.5f32);
        let ((tx, ty), (fx, fy)) = (cols(&t), cols(&f));
        let m = match_points(Points::new(&tx, &ty), Points::new(&fx, &fy), r);
        check_valid(&t, &f, r, &m.pairs);
        let (n, total) = brute_force(&t, &f, r as f64);
        assert_eq!(m.pairs.len(), n, "case {case}: pair count; truth {t:?} found {f:?} radius {r}");
        assert!(
            (m.total_distance() - total).abs() < 1e-9,
            "case {case}: total distance {} vs optimum {total}; truth {t:?} found {f:?} radius {r}",
            m.total_distance()
        );
        assert_eq!(m.greedy_components, 0);
        // Greedy is never better, and the exact one beats it sometimes.
        let g = match_points_with_limit(Points::new(&tx, &ty), Points::new(&fx, &fy), r, 0);
        check_valid(&t, &f, r, &g.pairs);
        assert!(g.pairs.len() <= n);
        if g.pairs.len() < n || g.total_distance() > total + 1e-9 {
            nontrivial += 1;
        }
    }
    assert!(nontrivial > 10, "only {nontrivial} cases where greedy was worse: the test is too easy");
}

/// Size of a maximum bipartite matching (Kuhn's augmenting paths), independent of the Hungarian.
fn max_cardinality(t: &[(f32, f32)], f: &[(f32, f32)], r: f64) -> usize {
    let adj: Vec<Vec<usize>> = t
        .iter()
        .map(|a| {
            (0..f.len())
                .filter(|&j| {
                    let (dx, dy) = (f[j].0 as f64 - a.0 as f64, f[j].1 as f64 - a.1 as f64);
                    (dx * dx + dy * dy).sqrt() <= r
                })
                .collect()
        })
        .collect();
    fn augment(i: usize, adj: &[Vec<usize>], seen: &mut [bool], owner: &mut [usize]) -> bool {
        for &j in &adj[i] {
            if !seen[j] {
                seen[j] = true;
                if owner[j] == usize::MAX || augment(owner[j], adj, seen, owner) {
                    owner[j] = i;
                    return true;
                }
            }
        }
        false
    }
    let mut owner = vec![usize::MAX; f.len()];
    (0..t.len()).filter(|&i| augment(i, &adj, &mut vec![false; f.len()], &mut owner)).count()
}

#[test]
fn crowded_matching_has_maximum_cardinality() {
    let mut rng = test_rng("crowded_matching_has_maximum_cardinality");
    for case in 0..20 {
        let n = rng.random_range(20..150);
        let side = rng.random_range(4.0..15.0f32);
        let mut pts =
            |k| (0..k).map(|_| (rng.random_range(0.0..side), rng.random_range(0.0..side))).collect::<Vec<_>>();
        let (t, f) = (pts(n), pts(n + 7));
        let r = 1.5;
        let ((tx, ty), (fx, fy)) = (cols(&t), cols(&f));
        let m = match_points(Points::new(&tx, &ty), Points::new(&fx, &fy), r);
        check_valid(&t, &f, r, &m.pairs);
        let best = max_cardinality(&t, &f, r as f64);
        assert_eq!(m.pairs.len(), best, "case {case}: {n} points in a {side} px box");
        let g = match_points_with_limit(Points::new(&tx, &ty), Points::new(&fx, &fy), r, 0);
        if g.pairs.len() == best {
            assert!(m.total_distance() <= g.total_distance() + 1e-9);
        }
        // Above the size limit the matching falls back to greedy and says so.
        let small = match_points_with_limit(Points::new(&tx, &ty), Points::new(&fx, &fy), r, 10);
        if small.greedy_components > 0 {
            assert!(small.greedy_points > 10);
        }
    }
}

#[test]
fn realistic_frame_matches_each_electron_to_itself() {
    // 2927 electrons on 576x576, found with 0.2 px of jitter: in a frame this sparse nearly every
    // electron's own localization is its match; 3 % are missed and 60 spurious ones are added.
    let mut rng = test_rng("realistic_frame_matches_each_electron_to_itself");
    let t: Vec<(f32, f32)> =
        (0..2927).map(|_| (rng.random_range(0.0..576.0f32), rng.random_range(0.0..576.0f32))).collect();
    let mut f = Vec::new();
    let mut own = Vec::new();
    for (i, p) in t.iter().enumerate() {
        if rng.random_range(0..100) >= 3 {
            own.push((i, f.len()));
            f.push((p.0 + rng.random_range(-0.2..0.2f32), p.1 + rng.random_range(-0.2..0.2f32)));
        }
    }
    for _ in 0..60 {
        f.push((rng.random_range(0.0..576.0f32), rng.random_range(0.0..576.0f32)));
    }
    let ((tx, ty), (fx, fy)) = (cols(&t), cols(&f));
    let start = std::time::Instant::now();
    let m = match_points(Points::new(&tx, &ty), Points::new(&fx, &fy), 1.5);
    eprintln!("one 2927-electron frame matched in {:?}", start.elapsed());
    check_valid(&t, &f, 1.5, &m.pairs);
    assert!(m.pairs.len() >= own.len(), "{} pairs < {} own localizations", m.pairs.len(), own.len());
    let same =
        own.iter().filter(|&&(i, j)| m.pairs.iter().any(|p| p.truth as usize == i && p.found as usize == j)).count();
    assert!(same as f64 >= 0.99 * own.len() as f64, "only {same} of {} matched to their own localization", own.len());
    assert_eq!(m.greedy_components, 0);
}

// ---------------------------------------------------------------------------------------------
// Files with the documented layouts (docs/formats.md), written by hand.

/// Points (x, y) of each frame.
type Frames = Vec<Vec<(f32, f32)>>;

const CONFIG: &str = r#"{"config":{"frames":2,"height":64,"width":64,"seed":1},"first_frame":0}"#;

struct TruthSpec<'a> {
    seed: u64,
    config_json: &'a str,
    first_frame: u64,
    pixel_size_um: f64,
    frames: &'a [Vec<(f32, f32)>],
}

fn write_truth(path: &Path, s: &TruthSpec) {
    let f = hdf5::File::create(path).unwrap();
    set_str_attr(&f, "schema", "emsim-frames/1").unwrap();
    set_str_attr(&f, "generator", "test").unwrap();
    set_attr(&f, "seed", s.seed).unwrap();
    set_attr(&f, "first_frame", s.first_frame).unwrap();
    set_attr(&f, "total_frames", s.frames.len() as u64).unwrap();
    set_str_attr(&f, "shard", "0/1").unwrap();
    set_str_attr(&f, "config_json", s.config_json).unwrap();
    let n = s.frames.len();
    let frames = f.new_dataset::<f32>().shape((n, 64, 64)).create("frames").unwrap();
    set_attr(&frames, "pixel_size_um", s.pixel_size_um).unwrap();
    let g = f.create_group("truth").unwrap();
    let (offsets, frame, x, y) = columns(s.frames);
    write_column(&g, "offsets", &offsets, "index").unwrap();
    write_column(&g, "frame", &frame, "index").unwrap();
    write_column(&g, "x_px", &x, "px").unwrap();
    write_column(&g, "y_px", &y, "px").unwrap();
    write_column(&g, "event", &vec![0u32; x.len()], "index").unwrap();
    write_column(&g, "deposit_kev", &vec![1.0f32; x.len()], "keV").unwrap();
}

fn columns(frames: &[Vec<(f32, f32)>]) -> (Vec<u64>, Vec<u32>, Vec<f32>, Vec<f32>) {
    let mut offsets = vec![0u64];
    let (mut frame, mut x, mut y) = (vec![], vec![], vec![]);
    for (k, pts) in frames.iter().enumerate() {
        for p in pts {
            frame.push(k as u32);
            x.push(p.0);
            y.push(p.1);
        }
        offsets.push(x.len() as u64);
    }
    (offsets, frame, x, y)
}

struct CountsSpec<'a> {
    method: &'a str,
    frames_seed: u64,
    config_json: &'a str,
    first_frame: u64,
    frames: &'a [Vec<(f32, f32)>],
    sigma: bool,
    /// A dataset or attribute to leave out.
    omit: &'a str,
}

impl<'a> CountsSpec<'a> {
    fn new(method: &'a str, frames: &'a [Vec<(f32, f32)>]) -> Self {
        Self { method, frames_seed: 1, config_json: CONFIG, first_frame: 0, frames, sigma: false, omit: "" }
    }
}

fn write_counts(path: &Path, s: &CountsSpec) {
    let f = hdf5::File::create(path).unwrap();
    set_str_attr(&f, "schema", "emsim-counts/1").unwrap();
    set_str_attr(&f, "generator", "test").unwrap();
    set_str_attr(&f, "method", s.method).unwrap();
    set_attr(&f, "height", 64u32).unwrap();
    set_attr(&f, "width", 64u32).unwrap();
    set_attr(&f, "n_frames", s.frames.len() as u64).unwrap();
    set_attr(&f, "first_frame", s.first_frame).unwrap();
    set_attr(&f, "pixel_size_um", 5.0f32).unwrap();
    set_str_attr(&f, "frames_file", "frames.h5").unwrap();
    if s.omit != "frames_seed" {
        set_attr(&f, "frames_seed", s.frames_seed).unwrap();
    }
    set_str_attr(&f, "frames_config_json", s.config_json).unwrap();
    let g = f.create_group("electrons").unwrap();
    let (offsets, frame, x, y) = columns(s.frames);
    for (name, data) in [("x_px", &x), ("y_px", &y)] {
        if s.omit != name {
            write_column(&g, name, data, "px").unwrap();
        }
    }
    write_column(&g, "offsets", &offsets, "index").unwrap();
    write_column(&g, "frame", &frame, "index").unwrap();
    let centre: Vec<u32> = x.iter().map(|&v| v.max(0.0) as u32).collect();
    write_column(&g, "row", &centre, "px").unwrap();
    write_column(&g, "col", &centre, "px").unwrap();
    write_column(&g, "charge_e", &vec![100.0f32; x.len()], "e").unwrap();
    if s.sigma {
        // sigma grows with the row index, so cutting on it drops the last electrons.
        let sigma: Vec<f32> = (0..x.len()).map(|i| 0.1 + i as f32).collect();
        write_column(&g, "sigma_px", &sigma, "px").unwrap();
    }
}

/// Two frames. Method "c3x3" matches three of five true electrons at 0.625 (a 3-4-5 triangle,
/// exact in binary), 1 and 0 px, and finds one spurious electron.
fn hand_case() -> (Frames, Frames) {
    let truth = vec![vec![(10.0, 10.0), (20.0, 20.0), (30.0, 30.0)], vec![(5.0, 5.0), (40.0, 40.0)]];
    let found = vec![vec![(10.375, 10.5), (20.0, 21.0), (50.0, 50.0)], vec![(5.0, 5.0)]];
    (truth, found)
}

fn err_text<T: std::fmt::Debug>(r: emsim::Result<T>) -> String {
    let e = r.expect_err("expected an error");
    let s = e.to_string();
    assert!(!s.contains('\n'), "error is not one line: {s}");
    s
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn hand_files(dir: &Path) -> (PathBuf, PathBuf) {
    let (truth, found) = hand_case();
    let t = dir.join("frames.h5");
    write_truth(&t, &TruthSpec { seed: 1, config_json: CONFIG, first_frame: 0, pixel_size_um: 5.0, frames: &truth });
    let c = dir.join("c3x3.h5");
    write_counts(&c, &CountsSpec::new("c3x3", &found));
    (t, c)
}

/// Recall and error by the distance to the nearest other true electron of the frame.
#[test]
fn crowding_bins_of_a_hand_made_case() {
    let dir = tempfile::tempdir().unwrap();
    // frame 0: two electrons 0.5 px apart (bin 0-1 px), one 2.5 px from the second (bin 2-3 px);
    // frame 1: one electron 1.5 px from one of frame 0's (another frame: alone, bin >= 4 px)
    let truth = vec![vec![(10.0, 10.0), (10.5, 10.0), (13.0, 10.0)], vec![(11.5, 10.0)]];
    let found = vec![vec![(10.25, 10.0), (13.0, 10.5)], vec![(11.5, 10.25)]];
    let t = dir.path().join("frames.h5");
    write_truth(&t, &TruthSpec { seed: 1, config_json: CONFIG, first_frame: 0, pixel_size_um: 5.0, frames: &truth });
    let c = dir.path().join("c3x3.h5");
    write_counts(&c, &CountsSpec::new("c3x3", &found));
    let m = run(&EvalOptions::new(&[&c], &t)).unwrap().methods.remove(0);
    let b = &m.crowding;
    assert_eq!(b.len(), 5);
    let counts: Vec<(u64, u64)> = b.iter().map(|b| (b.n_true, b.n_matched)).collect();
    assert_eq!(counts, [(2, 1), (0, 0), (1, 1), (0, 0), (1, 1)]);
    assert_eq!((b[0].recall, b[0].mean_error_px), (0.5, 0.25));
    assert_eq!((b[2].mean_error_px, b[4].mean_error_px), (0.5, 0.25));
    assert_eq!(b.iter().map(|b| b.n_true).sum::<u64>(), m.n_true);
    assert_eq!(b.iter().map(|b| b.n_matched).sum::<u64>(), m.n_matched);
}

#[test]
fn metrics_of_a_hand_made_case() {
    let dir = tempfile::tempdir().unwrap();
    let (t, c) = hand_files(dir.path());
    let report = run(&EvalOptions::new(&[&c], &t)).unwrap();
    assert_eq!((report.n_frames, report.n_true, report.pixel_size_um), (2, 5, 5.0));
    let m = &report.methods[0];
    assert_eq!(m.method, "c3x3");
    assert_eq!((m.n_true, m.n_found, m.n_matched), (5, 4, 3));
    assert_eq!((m.recall, m.precision), (0.6, 0.75));
    // Errors 0, 0.625, 1: mean 1.625 / 3; percentiles interpolate between ranks 1 and 2.
    assert!(close(m.mean_error_px, 1.625 / 3.0), "{}", m.mean_error_px);
    assert_eq!(m.median_error_px, 0.625);
    assert!(close(m.p90_error_px, 0.625 + 0.8 * 0.375), "{}", m.p90_error_px);
    assert!(close(m.p95_error_px, 0.625 + 0.9 * 0.375));
    assert!(close(m.p99_error_px, 0.625 + 0.98 * 0.375));
    assert_eq!((m.min_error_px, m.max_error_px), (0.0, 1.0));
    assert!(close(m.mean_error_um, 5.0 * 1.625 / 3.0));
    assert!(close(m.median_error_um, 3.125));
    assert!(close(m.mean_dx_px, 0.125) && close(m.mean_dy_px, 0.5));
    assert!(close(m.mean_abs_dx_px, 0.125) && close(m.mean_abs_dy_px, 0.5));
    assert_eq!(m.radius_px, 1.5);
    assert!(m.mean_error_common_px.is_none() && report.n_matched_by_all.is_none());

    // A radius below 0.625 px keeps only the exact pair.
    let mut o = EvalOptions::new(&[&c], &t);
    o.radius_px = 0.6;
    let m = run(&o).unwrap().methods[0].clone();
    assert_eq!((m.n_matched, m.max_error_px, m.radius_px), (1, 0.0, 0.6));

    // Every true electron is at least 4 px from the others: all in the last crowding bin.
    let crowding = &report.methods[0].crowding;
    let last = crowding.last().unwrap();
    assert_eq!((last.nearest_min_px, last.nearest_max_px, last.n_true, last.n_matched), (4.0, None, 5, 3));
    assert!(close(last.mean_error_px, 1.625 / 3.0));
    assert!(crowding[..4].iter().all(|b| b.n_true == 0 && b.recall.is_nan()));

    let table = report.table();
    eprintln!("{table}");
    assert!(table.contains("c3x3"), "{table}");
    assert!(table.contains("by crowding") && table.contains("5 (100.0 %)"), "{table}");
    assert!(table.contains("0.6000") && table.contains("0.7500") && table.contains("0.5417"), "{table}");
}

#[test]
fn two_methods_json_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let (t, c) = hand_files(dir.path());
    let (truth, _) = hand_case();
    // "net" finds every electron exactly; its sigma grows with the row, so cuts drop electrons.
    let n = dir.path().join("net.h5");
    write_counts(&n, &CountsSpec { sigma: true, ..CountsSpec::new("net", &truth) });
    let mut o = EvalOptions::new(&[&c, &n], &t);
    o.json = Some(dir.path().join("eval.json"));
    o.plots = Some(dir.path().join("plots"));
    let report: EvalReport = run(&o).unwrap();
    eprintln!("{}", report.table());

    assert_eq!(report.n_matched_by_all, Some(3));
    let net = &report.methods[1];
    assert_eq!((net.recall, net.precision, net.max_error_px), (1.0, 1.0, 0.0));
    assert_eq!(net.mean_error_common_px, Some(0.0));
    let c3 = &report.methods[0];
    assert!(close(c3.mean_error_common_px.unwrap(), 1.625 / 3.0));

    // Sigma cut: keeping the 50 % of found electrons with the smallest sigma (rows 0..2 or 3).
    assert_eq!(report.sigma_cuts.len(), 1);
    let curve = &report.sigma_cuts[0].points;
    assert_eq!(curve.len(), 20);
    let full = curve.last().unwrap();
    assert_eq!((full.recall, full.kept_fraction, full.precision), (1.0, 1.0, 1.0));
    assert!(curve.windows(2).all(|w| w[0].recall <= w[1].recall), "recall must grow with the cut");
    assert!(curve[9].recall <= 0.6 && curve[9].recall >= 0.4, "{:?}", curve[9]);

    // JSON: one record per method with the documented keys.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("eval.json")).unwrap()).unwrap();
    let rec = &v["methods"][0];
    for key in [
        "method",
        "recall",
        "precision",
        "mean_error_px",
        "median_error_px",
        "p90_error_px",
        "p95_error_px",
        "p99_error_px",
        "min_error_px",
        "max_error_px",
        "mean_error_um",
        "n_true",
        "n_found",
        "n_matched",
        "radius_px",
    ] {
        assert!(!rec[key].is_null(), "JSON record lacks {key}: {rec}");
    }
    assert_eq!(rec["method"], "c3x3");
    assert_eq!(v["methods"][1]["method"], "net");
    assert_eq!(v["n_true"], 5);
    assert_eq!(v["methods"][0]["crowding"].as_array().unwrap().len(), 5);
    assert_eq!(v["methods"][0]["crowding"][4]["n_true"], 5);

    // Plots: PNG files, nothing else (no temporaries).
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "crowding_error.png",
            "crowding_recall.png",
            "error_cumulative.png",
            "error_histogram.png",
            "error_scatter_c3x3_vs_net.png",
            "sigma_cut.png"
        ]
    );
    for name in &names {
        let img = image::open(dir.path().join("plots").join(name)).unwrap();
        assert!(img.width() >= 600 && img.height() >= 600, "{name}");
    }
    assert_eq!(report.plots.len(), 6);

    // Again, over the existing outputs: they are replaced.
    run(&o).unwrap();
}

#[test]
fn reads_what_the_frames_writer_writes() {
    use emsim::frames::{FramesConfig, Truth};
    use emsim::io::frames_out::{Compression, DatasetInfo, DatasetWriter, FramesFormat};
    let dir = tempfile::tempdir().unwrap();
    let cfg = FramesConfig { frames: 3, height: 16, width: 16, seed: 9, ..Default::default() };
    let counts = [2u32, 0, 1];
    let truth = Truth {
        frame: vec![0, 0, 2],
        x_px: vec![1.5, 7.25, 3.0],
        y_px: vec![2.5, 9.0, 15.5],
        event: vec![0, 1, 2],
        deposit_kev: vec![1.0; 3],
    };
    let info = DatasetInfo {
        cfg: &cfg,
        first_frame: 0,
        counts: &counts,
        pitch_um: 5.0,
        library_path: "lib.h5",
        library_source: "parametric",
    };
    for (format, name) in [(FramesFormat::H5, "frames.h5"), (FramesFormat::Npy, "frames_npy")] {
        let p = dir.path().join(name);
        let mut w = DatasetWriter::create(&p, format, Compression::None, &info).unwrap();
        w.write(&vec![0.0f32; 3 * 16 * 16], &truth).unwrap();
        w.finish().unwrap();
        let t = read_truth(&p).unwrap();
        assert_eq!((t.seed, t.first_frame, t.pixel_size_um), (9, 0, 5.0), "{name}");
        assert_eq!(t.offsets, vec![0, 2, 2, 3], "{name}");
        assert_eq!(
            (t.x_px.clone(), t.y_px.clone(), t.frame.clone()),
            (truth.x_px.clone(), truth.y_px.clone(), truth.frame.clone())
        );
        let cfg_json: serde_json::Value = serde_json::from_str(&t.config_json).unwrap();
        assert_eq!(cfg_json["config"]["seed"], 9, "{name}: {}", t.config_json);
    }
    // Counts that copied the HDF5 file's provenance evaluate against both the HDF5 and the npy
    // truth (the npy folder stores the configuration as a JSON object, compared as JSON).
    let h5 = read_truth(&dir.path().join("frames.h5")).unwrap();
    let found = vec![vec![(1.5f32, 2.5f32)], vec![], vec![(3.0, 15.0)]];
    let c = dir.path().join("c.h5");
    write_counts(&c, &CountsSpec { frames_seed: 9, config_json: &h5.config_json, ..CountsSpec::new("max", &found) });
    for name in ["frames.h5", "frames_npy"] {
        let r = run(&EvalOptions::new(&[&c], &dir.path().join(name))).unwrap();
        let m = &r.methods[0];
        assert_eq!((m.n_true, m.n_found, m.n_matched), (3, 2, 2), "{name}");
        assert_eq!(m.max_error_px, 0.5);
    }
    let back = read_counts(&c).unwrap();
    assert_eq!((back.method.as_str(), back.n_frames, back.pixel_size_um), ("max", 3, 5.0));
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn bad_input_is_named_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (t, c) = hand_files(d);
    let (truth, found) = hand_case();

    let p = d.join("nox.h5");
    write_counts(&p, &CountsSpec { omit: "x_px", ..CountsSpec::new("c3x3", &found) });
    let e = err_text(run(&EvalOptions::new(&[&p], &t)));
    assert!(e.contains("nox.h5") && e.contains("missing /electrons/x_px") && e.contains("emsim count file"), "{e}");

    // Truth from another dataset: both seeds and both files are named.
    let other = d.join("other.h5");
    write_truth(
        &other,
        &TruthSpec { seed: 3, config_json: CONFIG, first_frame: 0, pixel_size_um: 5.0, frames: &truth },
    );
    let e = err_text(run(&EvalOptions::new(&[&c], &other)));
    assert!(
        e.contains("other.h5") && e.contains("c3x3.h5") && e.contains("seed 3") && e.contains("frames_seed 1"),
        "{e}"
    );

    let cfg2 = CONFIG.replace("\"seed\":1", "\"seed\":1,\"dose\":2");
    let p = d.join("cfg.h5");
    write_counts(&p, &CountsSpec { config_json: &cfg2, ..CountsSpec::new("c3x3", &found) });
    let e = err_text(run(&EvalOptions::new(&[&p], &t)));
    assert!(e.contains("config_json differs") && e.contains("cfg.h5"), "{e}");
    // The same configuration with other key order and spacing is the same dataset.
    let reordered = r#"{ "first_frame": 0, "config": {"seed":1, "width":64,"height":64,"frames":2} }"#;
    let p = d.join("reordered.h5");
    write_counts(&p, &CountsSpec { config_json: reordered, ..CountsSpec::new("c3x3", &found) });
    run(&EvalOptions::new(&[&p], &t)).unwrap();

    let p = d.join("shard.h5");
    write_counts(&p, &CountsSpec { first_frame: 2, ..CountsSpec::new("c3x3", &found) });
    let e = err_text(run(&EvalOptions::new(&[&p], &t)));
    assert!(e.contains("first_frame 0") && e.contains("first_frame 2"), "{e}");

    let p = d.join("short.h5");
    write_counts(&p, &CountsSpec::new("c3x3", &found[..1]));
    let e = err_text(run(&EvalOptions::new(&[&p], &t)));
    assert!(e.contains("has 2 frames") && e.contains("short.h5") && e.contains("counted 1"), "{e}");

    let p = d.join("noseed.h5");
    write_counts(&p, &CountsSpec { omit: "frames_seed", ..CountsSpec::new("c3x3", &found) });
    let e = err_text(run(&EvalOptions::new(&[&p], &t)));
    assert!(e.contains("noseed.h5") && e.contains("frames_seed") && e.contains("provenance"), "{e}");

    // Counts given as truth, and truth given as counts.
    let e = err_text(run(&EvalOptions::new(&[&c], &c)));
    assert!(e.contains("c3x3.h5") && e.contains("emsim-frames/1"), "{e}");
    let e = err_text(run(&EvalOptions::new(&[&t], &t)));
    assert!(e.contains("frames.h5") && e.contains("emsim-counts/1"), "{e}");

    let txt = d.join("notes.txt");
    std::fs::write(&txt, "hello").unwrap();
    let e = err_text(run(&EvalOptions::new(&[&c], &txt)));
    assert!(e.contains("notes.txt") && e.contains("HDF5"), "{e}");
    let e = err_text(run(&EvalOptions::new(&[&c], &d.join("missing.h5"))));
    assert!(e.contains("missing.h5") && e.contains("not found"), "{e}");

    let mut o = EvalOptions::new(&[&c], &t);
    o.radius_px = 0.0;
    assert!(err_text(run(&o)).contains("--radius-px"));
    o.radius_px = f32::NAN;
    assert!(err_text(run(&o)).contains("--radius-px"));
    assert!(err_text(run(&EvalOptions::new(&[], &t))).contains("counts"));

    // Outputs in a missing folder fail before any work, naming the flag, and leave nothing.
    let mut o = EvalOptions::new(&[&c], &t);
    o.json = Some(d.join("no/such/eval.json"));
    assert!(err_text(run(&o)).contains("--json"));
    let mut o = EvalOptions::new(&[&c], &t);
    o.plots = Some(d.join("no/such/plots"));
    assert!(err_text(run(&o)).contains("--plots"));
    assert!(!d.join("no").exists());
    // A folder given as --json is refused, not replaced.
    let mut o = EvalOptions::new(&[&c], &t);
    o.json = Some(d.to_path_buf());
    assert!(err_text(run(&o)).contains("--json"));
    assert!(t.exists());
}

#[test]
fn inconsistent_columns_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.h5");
    let found = hand_case().1;
    write_counts(&p, &CountsSpec::new("c3x3", &found));
    // Break /electrons/frame: row 0 claims frame 1 while the offsets put it in frame 0.
    {
        let f = hdf5::File::open_rw(&p).unwrap();
        let ds = f.dataset("electrons/frame").unwrap();
        ds.write_slice(&[1u32], ndarray::s![0..1]).unwrap();
    }
    let e = err_text(read_counts(&p));
    assert!(e.contains("/electrons/frame[0] = 1") && e.contains("frame 0"), "{e}");

    let p2 = dir.path().join("nan.h5");
    let bad = vec![vec![(f32::NAN, 1.0f32)], vec![]];
    write_counts(&p2, &CountsSpec::new("c3x3", &bad));
    let e = err_text(read_counts(&p2));
    assert!(e.contains("not finite") && e.contains("nan.h5"), "{e}");
}
