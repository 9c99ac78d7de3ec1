//! Recall and error by crowding: the true electrons binned by the distance from each to the
//! nearest other true electron of its frame, so a user sees how much of a method's error comes from
//! overlapping clusters and what it reaches on electrons that land alone.

use super::metrics::MatchedPair;
use super::read::TruthSet;
use rayon::prelude::*;

/// Upper edges of the crowding bins, pixels: nearest other true electron closer than 1 px, 1-2,
/// 2-3, 3-4, and 4 px or more (the last bin, also electrons alone in their frame).
pub const CROWDING_EDGES_PX: [f32; 4] = [1.0, 2.0, 3.0, 4.0];

/// Most cells of the neighbour search per side of a frame (8,192 px at 4 px a cell).
const MAX_CELLS: i64 = 2048;

/// Number of crowding bins.
pub const N_CROWDING_BINS: usize = CROWDING_EDGES_PX.len() + 1;

/// The bin of a nearest-neighbour distance (`f32::INFINITY` for an electron alone in its frame).
pub fn crowding_bin(nearest_px: f32) -> usize {
    CROWDING_EDGES_PX.iter().position(|&e| nearest_px < e).unwrap_or(CROWDING_EDGES_PX.len())
}

/// For every true electron of `truth`, the distance in pixels to the nearest other true electron of
/// the same frame, or `f32::INFINITY` when there is none within the last edge
/// ([`CROWDING_EDGES_PX`]): only the bin matters. Frames in parallel; the electrons of a frame are
/// sorted into a grid of cells as wide as the last edge (a counting sort), so each electron looks at
/// the 3x3 cells around its own, each row of three cells one run of the sorted electrons.
pub fn nearest_neighbour_px(truth: &TruthSet) -> Vec<f32> {
    let reach = CROWDING_EDGES_PX[CROWDING_EDGES_PX.len() - 1];
    let per_frame: Vec<Vec<f32>> = (0..truth.n_frames())
        .into_par_iter()
        .map(|k| {
            let rows = truth.frame_rows(k);
            let (xs, ys) = (&truth.x_px[rows.clone()], &truth.y_px[rows]);
            let mut out = vec![f32::INFINITY; xs.len()];
            if xs.len() < 2 {
                return out;
            }
            // Cells from the frame's lowest, at most MAX_CELLS a side: clamping moves no two
            // electrons further apart in cells, so no neighbour is missed (far outliers only share
            // the edge cells).
            let raw = |v: f32| (v / reach).floor() as i64;
            let (c0, r0) = (xs.iter().map(|&x| raw(x)).min().unwrap(), ys.iter().map(|&y| raw(y)).min().unwrap());
            let col = |x: f32| raw(x).saturating_sub(c0).min(MAX_CELLS - 1) as usize;
            let row = |y: f32| raw(y).saturating_sub(r0).min(MAX_CELLS - 1) as usize;
            // one empty column of cells on each side, so the 3 cells of a row never wrap
            let ncol = xs.iter().map(|&x| col(x)).max().unwrap() + 3;
            let nrow = ys.iter().map(|&y| row(y)).max().unwrap() + 1;
            let cell_of = |x: f32, y: f32| row(y) * ncol + col(x) + 1;
            let mut start = vec![0u32; nrow * ncol + 1];
            for (&x, &y) in xs.iter().zip(ys) {
                start[cell_of(x, y) + 1] += 1;
            }
            for c in 0..nrow * ncol {
                start[c + 1] += start[c];
            }
            let mut fill = start.clone();
            let mut sorted = vec![0u32; xs.len()];
            for (i, (&x, &y)) in xs.iter().zip(ys).enumerate() {
                let c = cell_of(x, y);
                sorted[fill[c] as usize] = i as u32;
                fill[c] += 1;
            }
            for (i, (&x, &y)) in xs.iter().zip(ys).enumerate() {
                let (ry, c) = (row(y), col(x) + 1);
                let mut best = f32::INFINITY;
                for r in ry.saturating_sub(1)..=(ry + 1).min(nrow - 1) {
                    let first = r * ncol + c - 1;
                    for &j in &sorted[start[first] as usize..start[first + 3] as usize] {
                        if j as usize != i {
                            let (dx, dy) = (xs[j as usize] - x, ys[j as usize] - y);
                            best = best.min((dx * dx + dy * dy).sqrt());
                        }
                    }
                }
                if best < reach {
                    out[i] = best;
                }
            }
            out
        })
        .collect();
    per_frame.concat()
}

/// The crowding bin of every true electron of `truth` ([`nearest_neighbour_px`], [`crowding_bin`]).
pub fn truth_bins(truth: &TruthSet) -> Vec<u8> {
    nearest_neighbour_px(truth).into_iter().map(|d| crowding_bin(d) as u8).collect()
}

/// The crowding bins of one method matched against `truth` (`pairs` from
/// [`super::metrics::match_sets`], true rows indexing `truth`), all in memory.
pub fn crowding_of(truth: &TruthSet, pairs: &[MatchedPair]) -> Vec<CrowdingBin> {
    let mut s = CrowdingStats::default();
    s.add(&truth_bins(truth), pairs);
    s.bins()
}

/// One crowding bin of a method's report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CrowdingBin {
    /// The nearest other true electron is at least this far, pixels.
    pub nearest_min_px: f64,
    /// ... and closer than this (null: no upper edge).
    pub nearest_max_px: Option<f64>,
    pub n_true: u64,
    pub n_matched: u64,
    /// matched / true in this bin.
    pub recall: f64,
    /// Mean distance from the matched found electrons to their true ones, pixels.
    pub mean_error_px: f64,
}

/// Running counts per crowding bin for one method.
#[derive(Clone, Debug, Default)]
pub struct CrowdingStats {
    n_true: [u64; N_CROWDING_BINS],
    n_matched: [u64; N_CROWDING_BINS],
    sum_error_px: [f64; N_CROWDING_BINS],
}

impl CrowdingStats {
    /// Adds a block: the bins of its true electrons ([`truth_bins`]) and the pairs matched there
    /// (true rows indexing `bins`).
    pub fn add(&mut self, bins: &[u8], pairs: &[MatchedPair]) {
        for &b in bins {
            self.n_true[b as usize] += 1;
        }
        for p in pairs {
            let b = bins[p.truth_row as usize] as usize;
            self.n_matched[b] += 1;
            self.sum_error_px[b] += p.dist_px;
        }
    }

    /// The report's bins.
    pub fn bins(&self) -> Vec<CrowdingBin> {
        (0..N_CROWDING_BINS)
            .map(|b| CrowdingBin {
                nearest_min_px: if b == 0 { 0.0 } else { CROWDING_EDGES_PX[b - 1] as f64 },
                nearest_max_px: CROWDING_EDGES_PX.get(b).map(|&e| e as f64),
                n_true: self.n_true[b],
                n_matched: self.n_matched[b],
                recall: if self.n_true[b] == 0 { f64::NAN } else { self.n_matched[b] as f64 / self.n_true[b] as f64 },
                mean_error_px: if self.n_matched[b] == 0 {
                    f64::NAN
                } else {
                    self.sum_error_px[b] / self.n_matched[b] as f64
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth(frames: &[&[(f32, f32)]]) -> TruthSet {
        let mut t = TruthSet {
            path: "t.h5".into(),
            seed: 0,
            config_json: String::new(),
            first_frame: 0,
            pixel_size_um: 5.0,
            offsets: vec![0],
            frame: vec![],
            x_px: vec![],
            y_px: vec![],
        };
        for (k, f) in frames.iter().enumerate() {
            for &(x, y) in *f {
                t.frame.push(k as u32);
                t.x_px.push(x);
                t.y_px.push(y);
            }
            t.offsets.push(t.x_px.len() as u64);
        }
        t
    }

    #[test]
    fn nearest_neighbours_match_brute_force() {
        // points on a lattice with jitter, across cell edges, two frames (never each other's neighbours)
        let mut pts = Vec::new();
        let mut s = 12345u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        for _ in 0..400 {
            pts.push((next() * 60.0, next() * 60.0));
        }
        // far outliers (beyond the clamped grid) next to each other, and one alone
        pts[10] = (1e7, 3.0);
        pts[11] = (1e7 + 2.0, 3.0);
        pts[12] = (-5e6, 1e9);
        let t = truth(&[&pts[..250], &pts[250..]]);
        let got = nearest_neighbour_px(&t);
        for (k, f) in [&pts[..250], &pts[250..]].iter().enumerate() {
            for (i, &(x, y)) in f.iter().enumerate() {
                let d = f
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &(u, v))| ((u - x).powi(2) + (v - y).powi(2)).sqrt())
                    .fold(f32::INFINITY, f32::min);
                let want = if d < 4.0 { d } else { f32::INFINITY };
                let row = t.offsets[k] as usize + i;
                let same = (got[row].is_infinite() && want.is_infinite()) || (got[row] - want).abs() < 1e-5;
                assert!(same, "frame {k} electron {i}: {} against {want}", got[row]);
            }
        }
        assert!(got.iter().any(|d| d.is_finite()) && got.iter().any(|d| d.is_infinite()));
    }

    #[test]
    fn bins_split_at_the_edges() {
        assert_eq!(crowding_bin(0.0), 0);
        assert_eq!(crowding_bin(0.999), 0);
        assert_eq!(crowding_bin(1.0), 1);
        assert_eq!(crowding_bin(3.5), 3);
        assert_eq!(crowding_bin(4.0), 4);
        assert_eq!(crowding_bin(f32::INFINITY), 4);
        let mut s = CrowdingStats::default();
        let pair = |truth_row, dist_px| MatchedPair { truth_row, found_row: 0, dist_px, dx_px: 0.0, dy_px: 0.0 };
        s.add(&[0, 4, 4], &[pair(1, 0.5), pair(2, 0.25)]);
        let b = s.bins();
        assert_eq!((b[4].n_true, b[4].n_matched, b[4].recall, b[4].mean_error_px), (2, 2, 1.0, 0.375));
        assert_eq!((b[0].n_true, b[0].n_matched, b[0].recall), (1, 0, 0.0));
        assert!(b[0].mean_error_px.is_nan() && b[2].recall.is_nan());
        assert_eq!((b[4].nearest_min_px, b[4].nearest_max_px, b[0].nearest_max_px), (4.0, None, Some(1.0)));
    }
}
