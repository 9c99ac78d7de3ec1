//! Matching a whole counts file against the truth (frames in parallel) and the metrics of one method.
//!
//! * recall = matched / true electrons, precision = matched / found electrons (NaN when the
//!   denominator is 0);
//! * errors are the distances of matched pairs; percentiles interpolate linearly between the
//!   closest ranks (numpy's default); `um` values are the `px` values times the truth's
//!   `pixel_size_um`;
//! * bias: mean of `found - true` per axis (x = column, y = row), and the mean of its absolute value.

use rayon::prelude::*;

use super::matching::{Points, match_points_with_limit};
use super::read::{CountsSet, TruthSet};
use super::sketch::Sketch;

/// One matched pair of a whole file: global row indices and the offset `found - true`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatchedPair {
    pub truth_row: u64,
    pub found_row: u64,
    pub dist_px: f64,
    pub dx_px: f64,
    pub dy_px: f64,
}

/// The matching of one counts file against the truth.
#[derive(Clone, Debug, Default)]
pub struct MethodMatch {
    /// Sorted by true row.
    pub pairs: Vec<MatchedPair>,
    pub greedy_components: u64,
    pub greedy_points: u64,
}

impl MethodMatch {
    /// The error of each true electron (NaN when unmatched), indexed by truth row.
    pub fn error_by_truth_row(&self, n_true: usize) -> Vec<f64> {
        let mut e = vec![f64::NAN; n_true];
        for p in &self.pairs {
            e[p.truth_row as usize] = p.dist_px;
        }
        e
    }
}

/// Matches every frame of `counts` to the same frame of `truth` (frames in parallel; both must
/// have the same number of frames, see [`super::read::check_same_dataset`]).
pub fn match_sets(truth: &TruthSet, counts: &CountsSet, radius_px: f32, max_exact: usize) -> MethodMatch {
    assert_eq!(truth.n_frames(), counts.n_frames(), "truth and counts differ in frames");
    let per_frame: Vec<_> = (0..truth.n_frames())
        .into_par_iter()
        .map(|k| {
            let (tr, cr) = (truth.frame_rows(k), counts.frame_rows(k));
            let t = Points::new(&truth.x_px[tr.clone()], &truth.y_px[tr.clone()]);
            let f = Points::new(&counts.x_px[cr.clone()], &counts.y_px[cr.clone()]);
            let m = match_points_with_limit(t, f, radius_px, max_exact);
            let pairs: Vec<MatchedPair> = m
                .pairs
                .iter()
                .map(|p| {
                    let (ti, fi) = (tr.start + p.truth as usize, cr.start + p.found as usize);
                    MatchedPair {
                        truth_row: ti as u64,
                        found_row: fi as u64,
                        dist_px: p.dist_px,
                        dx_px: counts.x_px[fi] as f64 - truth.x_px[ti] as f64,
                        dy_px: counts.y_px[fi] as f64 - truth.y_px[ti] as f64,
                    }
                })
                .collect();
            (pairs, m.greedy_components, m.greedy_points)
        })
        .collect();
    let mut out =
        MethodMatch { pairs: Vec::with_capacity(per_frame.iter().map(|f| f.0.len()).sum()), ..Default::default() };
    for (pairs, gc, gp) in per_frame {
        out.pairs.extend(pairs);
        out.greedy_components += gc;
        out.greedy_points += gp;
    }
    out
}

/// Quantile `q` of ascending `sorted` data, linear interpolation between closest ranks; NaN when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { f64::NAN } else { a as f64 / b as f64 }
}

/// The metrics of one method (one counts file). NaN (`null` in JSON) where undefined.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MethodMetrics {
    pub method: String,
    /// The counts file.
    pub file: String,
    pub radius_px: f64,
    pub n_true: u64,
    pub n_found: u64,
    pub n_matched: u64,
    /// matched / true.
    pub recall: f64,
    /// matched / found.
    pub precision: f64,
    pub mean_error_px: f64,
    pub median_error_px: f64,
    pub p90_error_px: f64,
    pub p95_error_px: f64,
    pub p99_error_px: f64,
    pub min_error_px: f64,
    pub max_error_px: f64,
    pub rms_error_px: f64,
    pub mean_error_um: f64,
    pub median_error_um: f64,
    pub p90_error_um: f64,
    pub p95_error_um: f64,
    pub p99_error_um: f64,
    pub min_error_um: f64,
    pub max_error_um: f64,
    /// 0 when the percentiles (median, p90, p95, p99) are exact; else they come from a histogram
    /// with bins this wide (files with more matched electrons than `emsim eval` keeps, see
    /// docs/counting.md).
    pub percentile_resolution_px: f64,
    /// Mean of `found - true` in x (column) and y (row), pixels.
    pub mean_dx_px: f64,
    pub mean_dy_px: f64,
    pub mean_abs_dx_px: f64,
    pub mean_abs_dy_px: f64,
    /// Components matched greedily (too large for the exact matching) and their points.
    pub greedy_components: u64,
    pub greedy_points: u64,
    /// Over the true electrons matched by every method (when more than one is evaluated).
    pub mean_error_common_px: Option<f64>,
    pub median_error_common_px: Option<f64>,
    /// Recall and mean error by the distance from each true electron to the nearest other one of
    /// its frame (`super::crowding`): how much the overlapping clusters cost.
    pub crowding: Vec<super::crowding::CrowdingBin>,
}

/// Running statistics of matched pairs: the error distribution (a [`Sketch`] over `[0, radius]`)
/// and the sums for the bias.
#[derive(Clone, Debug)]
pub struct PairStats {
    pub errors: Sketch,
    dx: f64,
    dy: f64,
    abs_dx: f64,
    abs_dy: f64,
}

/// Bins of the error histogram once more than the exact limit of errors were added.
pub const ERROR_BINS: usize = 1 << 16;

impl PairStats {
    /// Exact percentiles up to `exact_values` pairs, then a histogram of [`ERROR_BINS`] bins over
    /// `[0, radius_px]`.
    pub fn new(radius_px: f64, exact_values: usize) -> Self {
        let hi = if radius_px > 0.0 && radius_px.is_finite() { radius_px } else { 1.0 };
        Self { errors: Sketch::new(0.0, hi, ERROR_BINS, exact_values), dx: 0.0, dy: 0.0, abs_dx: 0.0, abs_dy: 0.0 }
    }

    pub fn push(&mut self, p: &MatchedPair) {
        self.errors.push(p.dist_px);
        self.dx += p.dx_px;
        self.dy += p.dy_px;
        self.abs_dx += p.dx_px.abs();
        self.abs_dy += p.dy_px.abs();
    }

    /// The metrics of one method. `pixel_size_um` converts pixels to micrometres.
    pub fn metrics(
        &mut self,
        method: &str,
        file: &str,
        n_true: u64,
        n_found: u64,
        pixel_size_um: f64,
        radius_px: f64,
    ) -> MethodMetrics {
        let d = &mut self.errors;
        let n = d.len();
        let (mean_e, med, p90, p95, p99) =
            (d.mean(), d.quantile(0.5), d.quantile(0.9), d.quantile(0.95), d.quantile(0.99));
        let (min, max) = (d.min(), d.max());
        let um = pixel_size_um;
        let per = |v: f64| if n == 0 { f64::NAN } else { v / n as f64 };
        MethodMetrics {
            method: method.to_string(),
            file: file.to_string(),
            radius_px,
            n_true,
            n_found,
            n_matched: n,
            recall: ratio(n, n_true),
            precision: ratio(n, n_found),
            mean_error_px: mean_e,
            median_error_px: med,
            p90_error_px: p90,
            p95_error_px: p95,
            p99_error_px: p99,
            min_error_px: min,
            max_error_px: max,
            rms_error_px: d.rms(),
            mean_error_um: mean_e * um,
            median_error_um: med * um,
            p90_error_um: p90 * um,
            p95_error_um: p95 * um,
            p99_error_um: p99 * um,
            min_error_um: min * um,
            max_error_um: max * um,
            percentile_resolution_px: d.resolution(),
            mean_dx_px: per(self.dx),
            mean_dy_px: per(self.dy),
            mean_abs_dx_px: per(self.abs_dx),
            mean_abs_dy_px: per(self.abs_dy),
            greedy_components: 0,
            greedy_points: 0,
            mean_error_common_px: None,
            median_error_common_px: None,
            crowding: Vec::new(),
        }
    }
}

impl MethodMetrics {
    /// Metrics from matched pairs (every error kept: exact percentiles). `pixel_size_um` converts
    /// pixels to micrometres.
    pub fn compute(
        method: &str,
        file: &str,
        n_true: u64,
        n_found: u64,
        pairs: &[MatchedPair],
        pixel_size_um: f64,
        radius_px: f64,
    ) -> Self {
        let mut st = PairStats::new(radius_px, usize::MAX);
        for p in pairs {
            st.push(p);
        }
        st.metrics(method, file, n_true, n_found, pixel_size_um, radius_px)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(d: f64, dx: f64, dy: f64) -> MatchedPair {
        MatchedPair { truth_row: 0, found_row: 0, dist_px: d, dx_px: dx, dy_px: dy }
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.0);
        assert_eq!(quantile(&v, 0.9), 3.6);
        assert_eq!(quantile(&[2.0], 0.99), 2.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn metrics_by_hand() {
        // 4 true, 5 found, 3 matched at 3-4-5 style offsets.
        let pairs = [pair(0.5, 0.3, 0.4), pair(1.0, -0.6, 0.8), pair(0.0, 0.0, 0.0)];
        let m = MethodMetrics::compute("c3x3", "c.h5", 4, 5, &pairs, 5.0, 1.5);
        assert_eq!((m.n_true, m.n_found, m.n_matched), (4, 5, 3));
        assert_eq!(m.recall, 0.75);
        assert_eq!(m.precision, 0.6);
        assert_eq!(m.mean_error_px, 0.5);
        assert_eq!(m.median_error_px, 0.5);
        assert!((m.p90_error_px - 0.9).abs() < 1e-12); // 0.5 + 0.8 * (1.0 - 0.5)
        assert_eq!((m.min_error_px, m.max_error_px), (0.0, 1.0));
        assert_eq!(m.mean_error_um, 2.5);
        assert!((m.mean_dx_px - (-0.1)).abs() < 1e-12);
        assert!((m.mean_dy_px - 0.4).abs() < 1e-12);
        assert!((m.mean_abs_dx_px - 0.3).abs() < 1e-12);
        assert!((m.rms_error_px - (1.25f64 / 3.0).sqrt()).abs() < 1e-12);
        let none = MethodMetrics::compute("max", "m.h5", 0, 0, &[], 5.0, 1.5);
        assert!(none.recall.is_nan() && none.precision.is_nan() && none.median_error_px.is_nan());
    }
}
