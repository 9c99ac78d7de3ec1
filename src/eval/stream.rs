//! `emsim eval` on files of any size: the truth and every counts file are read a block of frames
//! at a time ([`StreamLimits::block_rows`] electrons at most, whole frames), each block is matched
//! and folded into running statistics, and the block is dropped. What stays in memory is bounded:
//! the per-frame offsets (8 bytes a frame a file), the error distributions ([`Sketch`]es: exact up
//! to [`StreamLimits::exact_errors`] matched electrons per method, a histogram beyond), and at most
//! [`SCATTER_POINTS`] points per scatter plot. Blocks change nothing in the results: the matching
//! is per frame, and sums and kept errors do not depend on where a block ends.

use std::ops::Range;

use super::crowding::{CrowdingStats, truth_bins};
use super::metrics::{MethodMetrics, PairStats, match_sets};
use super::read::{CountsFile, TruthFile};
use super::sketch::Sketch;
use super::{MAX_EXACT_COMPONENT, SIGMA_CUT_STEPS, SigmaCurve, SigmaCutPoint};
use crate::Result;

/// Points of a method-vs-method scatter plot at most (every k-th true electron beyond).
pub const SCATTER_POINTS: u64 = 200_000;

/// How much `emsim eval` holds at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// Electrons per block (of the truth or of any counts file), whole frames (at least one).
    pub block_rows: usize,
    /// Errors kept per method (and per sigma cut, a 64th of it) for exact percentiles.
    pub exact_errors: usize,
}

impl Default for StreamLimits {
    /// 131,072 electrons a block (about 45 default frames), 1,048,576 errors (8 MiB) per method.
    fn default() -> Self {
        Self { block_rows: 1 << 17, exact_errors: 1 << 20 }
    }
}

/// Bins of the error histogram of each sigma cut (beyond its exact limit).
const CUT_BINS: usize = 1 << 14;
/// Bins of the sigma histogram (beyond the exact limit).
const SIGMA_BINS: usize = 1 << 16;

/// Consecutive frame ranges whose electrons, in every one of `offsets` (CSR offsets of the same
/// frames), number at most `max_rows`; a frame with more is a block of its own.
pub fn frame_blocks(offsets: &[&[u64]], max_rows: usize) -> Vec<Range<usize>> {
    let nf = offsets.first().map_or(0, |o| o.len().saturating_sub(1));
    let mut out = Vec::new();
    let mut start = 0;
    while start < nf {
        let mut end = start + 1;
        while end < nf && offsets.iter().all(|o| (o[end + 1] - o[start]) as usize <= max_rows) {
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// The sigma-cut curve of a method with `sigma_px`, built while its blocks are matched.
struct SigmaCuts {
    /// Cuts at 5 %, 10 %, ... 100 % of the found electrons ordered by sigma (NaN sigmas left out).
    cuts: Vec<f64>,
    /// Found electrons with `sigma_px <= cut`, per cut (exact).
    kept_found: Vec<u64>,
    n_found: u64,
    /// Errors of the matched pairs kept by each cut.
    per_cut: Vec<Sketch>,
}

impl SigmaCuts {
    /// Reads the file's `sigma_px` column (by blocks, three times) for the cuts and what they keep.
    fn measure(c: &CountsFile, radius_px: f64, limits: &StreamLimits) -> Result<Self> {
        let n = c.len();
        let chunks: Vec<Range<usize>> =
            (0..n).step_by(limits.block_rows.max(1)).map(|a| a..(a + limits.block_rows.max(1)).min(n)).collect();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for r in &chunks {
            for s in c.sigma_rows(r.clone())?.into_iter().map(f64::from).filter(|s| !s.is_nan()) {
                (lo, hi) = (lo.min(s), hi.max(s));
            }
        }
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        } else if hi <= lo {
            hi = lo + 1.0;
        }
        let mut sigma = Sketch::new(lo, hi, SIGMA_BINS, limits.exact_errors);
        for r in &chunks {
            for s in c.sigma_rows(r.clone())?.into_iter().map(f64::from).filter(|s| !s.is_nan()) {
                sigma.push(s);
            }
        }
        let cuts: Vec<f64> =
            (1..=SIGMA_CUT_STEPS).map(|step| sigma.quantile(step as f64 / SIGMA_CUT_STEPS as f64)).collect();
        let mut kept_found = vec![0u64; cuts.len()];
        for r in &chunks {
            for s in c.sigma_rows(r.clone())? {
                for (k, &cut) in kept_found.iter_mut().zip(&cuts) {
                    *k += (s as f64 <= cut) as u64;
                }
            }
        }
        let cap = (limits.exact_errors / 64).max(1);
        let per_cut = cuts.iter().map(|_| Sketch::new(0.0, radius_px, CUT_BINS, cap)).collect();
        Ok(Self { cuts, kept_found, n_found: n as u64, per_cut })
    }

    fn push(&mut self, sigma: f32, dist_px: f64) {
        let s = sigma as f64;
        if s.is_nan() {
            return;
        }
        let first = self.cuts.partition_point(|&c| c < s);
        for sk in &mut self.per_cut[first..] {
            sk.push(dist_px);
        }
    }

    fn curve(&mut self, n_true: u64) -> Vec<SigmaCutPoint> {
        let n_found = self.n_found;
        (0..self.cuts.len())
            .map(|j| {
                let (d, kept) = (&mut self.per_cut[j], self.kept_found[j]);
                SigmaCutPoint {
                    sigma_cut_px: self.cuts[j],
                    kept_fraction: kept as f64 / n_found.max(1) as f64,
                    recall: d.len() as f64 / n_true.max(1) as f64,
                    precision: if kept == 0 { f64::NAN } else { d.len() as f64 / kept as f64 },
                    mean_error_px: d.mean(),
                    median_error_px: d.quantile(0.5),
                }
            })
            .collect()
    }
}

/// Errors of a pair of methods on the true electrons both matched (every `stride`-th of them).
#[derive(Clone, Debug)]
pub struct Scatter {
    pub a: usize,
    pub b: usize,
    /// True electrons matched by both methods.
    pub n_both: u64,
    /// Only true electrons whose row is a multiple of this are in `points`.
    pub stride: u64,
    pub points: Vec<(f64, f64)>,
}

/// What a streamed evaluation found.
#[derive(Debug)]
pub struct Streamed {
    /// One per counts file, in order (`mean_error_common_px` set with two or more).
    pub methods: Vec<MethodMetrics>,
    pub n_matched_by_all: Option<u64>,
    pub sigma_cuts: Vec<SigmaCurve>,
    /// The error distribution of each method (for the plots).
    pub errors: Vec<Sketch>,
    /// One per pair of methods.
    pub scatter: Vec<Scatter>,
}

/// Matches every counts file against the truth, block by block, and measures every method.
/// The files must be from the same dataset (checked by the caller).
pub fn evaluate(
    truth: &TruthFile,
    counts: &[CountsFile],
    radius_px: f32,
    radius_report: f64,
    limits: &StreamLimits,
) -> Result<Streamed> {
    let r = radius_px as f64;
    let n_true = truth.len() as u64;
    let mut stats: Vec<PairStats> = counts.iter().map(|_| PairStats::new(r, limits.exact_errors)).collect();
    let mut common: Vec<Sketch> =
        counts.iter().map(|_| Sketch::new(0.0, r, super::metrics::ERROR_BINS, limits.exact_errors)).collect();
    let mut sigma: Vec<Option<SigmaCuts>> = counts
        .iter()
        .map(|c| c.meta.sigma_px.as_ref().map(|_| SigmaCuts::measure(c, r, limits)).transpose())
        .collect::<Result<_>>()?;
    let mut greedy = vec![(0u64, 0u64); counts.len()];
    let mut crowding = vec![CrowdingStats::default(); counts.len()];
    let stride = n_true.div_ceil(SCATTER_POINTS).max(1);
    let mut scatter: Vec<Scatter> = Vec::new();
    for a in 0..counts.len() {
        for b in a + 1..counts.len() {
            scatter.push(Scatter { a, b, n_both: 0, stride, points: Vec::new() });
        }
    }
    let mut n_all = 0u64;
    // errors per true electron, for the electrons every method matched and the scatter plots
    let several = counts.len() > 1;

    let mut all_offsets: Vec<&[u64]> = vec![&truth.meta.offsets];
    all_offsets.extend(counts.iter().map(|c| c.meta.offsets.as_slice()));
    for frames in frame_blocks(&all_offsets, limits.block_rows) {
        let t = truth.read(frames.clone())?;
        let row0 = truth.meta.offsets[frames.start];
        let bins = truth_bins(&t);
        let mut errors: Vec<Vec<f64>> = Vec::with_capacity(counts.len());
        for (i, c) in counts.iter().enumerate() {
            let cs = c.read(frames.clone())?;
            let m = match_sets(&t, &cs, radius_px, MAX_EXACT_COMPONENT);
            crowding[i].add(&bins, &m.pairs);
            for p in &m.pairs {
                stats[i].push(p);
            }
            if let (Some(sc), Some(s)) = (sigma[i].as_mut(), cs.sigma_px.as_ref()) {
                for p in &m.pairs {
                    sc.push(s[p.found_row as usize], p.dist_px);
                }
            }
            greedy[i].0 += m.greedy_components;
            greedy[i].1 += m.greedy_points;
            if several {
                errors.push(m.error_by_truth_row(t.len()));
            }
        }
        if several {
            for row in 0..t.len() {
                if errors.iter().all(|e| !e[row].is_nan()) {
                    n_all += 1;
                    for (sk, e) in common.iter_mut().zip(&errors) {
                        sk.push(e[row]);
                    }
                }
            }
            for s in &mut scatter {
                for (row, (&x, &y)) in errors[s.a].iter().zip(&errors[s.b]).enumerate() {
                    if !x.is_nan() && !y.is_nan() {
                        s.n_both += 1;
                        if (row0 + row as u64).is_multiple_of(stride) {
                            s.points.push((x, y));
                        }
                    }
                }
            }
        }
    }

    let mut methods = Vec::with_capacity(counts.len());
    for (i, c) in counts.iter().enumerate() {
        let file = c.meta.path.display().to_string();
        let mut mm =
            stats[i].metrics(&c.meta.method, &file, n_true, c.len() as u64, truth.meta.pixel_size_um, radius_report);
        (mm.greedy_components, mm.greedy_points) = greedy[i];
        mm.crowding = crowding[i].bins();
        if several {
            mm.mean_error_common_px = Some(common[i].mean());
            mm.median_error_common_px = Some(common[i].quantile(0.5));
        }
        methods.push(mm);
    }
    let sigma_cuts = counts
        .iter()
        .zip(&mut sigma)
        .filter_map(|(c, s)| s.as_mut().map(|s| SigmaCurve { method: c.meta.method.clone(), points: s.curve(n_true) }))
        .collect();
    Ok(Streamed {
        methods,
        n_matched_by_all: several.then_some(n_all),
        sigma_cuts,
        errors: stats.into_iter().map(|s| s.errors).collect(),
        scatter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_hold_whole_frames_within_the_limit() {
        let t: Vec<u64> = vec![0, 3, 5, 5, 12, 13];
        let c: Vec<u64> = vec![0, 1, 6, 7, 8, 9];
        assert_eq!(frame_blocks(&[&t, &c], 6), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(frame_blocks(&[&t], 100), vec![0..5]);
        assert_eq!(frame_blocks(&[&t], 0), vec![0..1, 1..2, 2..3, 3..4, 4..5]);
        assert!(frame_blocks(&[&[0u64][..]], 10).is_empty());
    }
}
