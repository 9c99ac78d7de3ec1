//! A distribution summary of bounded size: the mean, RMS, minimum and maximum are always exact;
//! percentiles, bin counts and the cumulative count are exact while at most `cap` values were
//! added, and come from a histogram of `bins` equal bins over `[lo, hi]` beyond that (within one
//! bin width, [`Sketch::resolution`]). So `emsim eval` needs the same memory for a file of any size.

use super::metrics::quantile;

#[derive(Clone, Debug)]
pub struct Sketch {
    lo: f64,
    hi: f64,
    bins: usize,
    cap: usize,
    /// Every value while `n <= cap` (then `hist` is empty).
    values: Vec<f64>,
    sorted: bool,
    hist: Vec<u64>,
    n: u64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
}

impl Sketch {
    /// Exact up to `cap` values, then `bins` bins over `[lo, hi]` (values outside count in the
    /// edge bins; the minimum and maximum stay exact).
    pub fn new(lo: f64, hi: f64, bins: usize, cap: usize) -> Self {
        assert!(hi > lo && bins > 0, "sketch range [{lo}, {hi}] with {bins} bins");
        Self {
            lo,
            hi,
            bins,
            cap,
            values: Vec::new(),
            sorted: true,
            hist: Vec::new(),
            n: 0,
            sum: 0.0,
            sum_sq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    fn bin_of(&self, v: f64) -> usize {
        let b = ((v - self.lo) / (self.hi - self.lo) * self.bins as f64).floor();
        if b.is_nan() || b < 0.0 { 0 } else { (b as usize).min(self.bins - 1) }
    }

    pub fn push(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        self.sum_sq += v * v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if self.hist.is_empty() && self.values.len() == self.cap {
            // one value more than kept exactly: from now on, the histogram
            let mut hist = vec![0u64; self.bins];
            for &x in &self.values {
                hist[self.bin_of(x)] += 1;
            }
            self.hist = hist;
            self.values = Vec::new();
        }
        if self.hist.is_empty() {
            self.values.push(v);
            self.sorted = false;
        } else {
            let b = self.bin_of(v);
            self.hist[b] += 1;
        }
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// True while every value is kept (percentiles exact).
    pub fn is_exact(&self) -> bool {
        self.hist.is_empty()
    }

    /// 0 while exact, else the histogram's bin width.
    pub fn resolution(&self) -> f64 {
        if self.is_exact() { 0.0 } else { (self.hi - self.lo) / self.bins as f64 }
    }

    fn nan_if_empty(&self, v: f64) -> f64 {
        if self.n == 0 { f64::NAN } else { v }
    }

    pub fn mean(&self) -> f64 {
        self.nan_if_empty(self.sum / self.n as f64)
    }

    pub fn rms(&self) -> f64 {
        self.nan_if_empty((self.sum_sq / self.n as f64).sqrt())
    }

    pub fn min(&self) -> f64 {
        self.nan_if_empty(self.min)
    }

    pub fn max(&self) -> f64 {
        self.nan_if_empty(self.max)
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.values.sort_by(f64::total_cmp);
            self.sorted = true;
        }
    }

    /// The value of rank `k` (0-based) from the histogram: spread evenly inside its bin.
    fn ranked(&self, k: u64) -> f64 {
        let w = (self.hi - self.lo) / self.bins as f64;
        let mut before = 0u64;
        for (b, &c) in self.hist.iter().enumerate() {
            if k < before + c {
                let v = self.lo + w * (b as f64 + ((k - before) as f64 + 0.5) / c as f64);
                return v.clamp(self.min, self.max);
            }
            before += c;
        }
        self.max
    }

    /// Quantile `q`, linear interpolation between the closest ranks (numpy's default); NaN when empty.
    pub fn quantile(&mut self, q: f64) -> f64 {
        if self.is_exact() {
            self.sort();
            return quantile(&self.values, q);
        }
        if q <= 0.0 {
            return self.min;
        }
        if q >= 1.0 {
            return self.max;
        }
        let pos = q * (self.n - 1) as f64;
        let (lo, hi) = (pos.floor() as u64, pos.ceil() as u64);
        let a = self.ranked(lo);
        a + (self.ranked(hi) - a) * (pos - lo as f64)
    }

    /// How many values are `<= x` (from the histogram: the bins whose centre is `<= x`).
    pub fn count_le(&mut self, x: f64) -> u64 {
        if self.is_exact() {
            self.sort();
            return self.values.partition_point(|&v| v <= x) as u64;
        }
        let w = (self.hi - self.lo) / self.bins as f64;
        self.hist.iter().enumerate().take_while(|&(b, _)| self.lo + w * (b as f64 + 0.5) <= x).map(|(_, &c)| c).sum()
    }

    /// Counts in `bins` equal bins over `[lo, hi]` (values outside not counted), as
    /// [`super::plots::bin_counts`]; from the histogram, each of its bins goes where its centre falls.
    pub fn bin_counts(&self, lo: f64, hi: f64, bins: usize) -> Vec<u64> {
        if self.is_exact() {
            return super::plots::bin_counts(&self.values, lo, hi, bins);
        }
        let w = (self.hi - self.lo) / self.bins as f64;
        let centres: Vec<f64> = (0..self.bins).map(|b| self.lo + w * (b as f64 + 0.5)).collect();
        let mut out = vec![0u64; bins.max(1)];
        let ow = (hi - lo) / out.len() as f64;
        for (c, &n) in centres.iter().zip(&self.hist) {
            if *c >= lo && *c <= hi && n > 0 {
                let b = (((c - lo) / ow) as usize).min(out.len() - 1);
                out[b] += n;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_the_cap_and_close_beyond() {
        let vals: Vec<f64> = (0..10_000).map(|i| ((i * 7919) % 10_000) as f64 / 10_000.0 * 1.5).collect();
        let mut exact = Sketch::new(0.0, 1.5, 1 << 16, vals.len());
        let mut binned = Sketch::new(0.0, 1.5, 1 << 16, 100);
        for &v in &vals {
            exact.push(v);
            binned.push(v);
        }
        assert!(exact.is_exact() && !binned.is_exact());
        let mut sorted = vals.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 1.0] {
            assert_eq!(exact.quantile(q), quantile(&sorted, q));
            let d = (binned.quantile(q) - quantile(&sorted, q)).abs();
            assert!(d <= binned.resolution(), "q {q}: off by {d}");
        }
        assert_eq!(exact.mean(), binned.mean());
        assert_eq!((binned.min(), binned.max()), (0.0, sorted[sorted.len() - 1]));
        assert_eq!(exact.count_le(0.75), sorted.partition_point(|&v| v <= 0.75) as u64);
        assert!(exact.count_le(0.75).abs_diff(binned.count_le(0.75)) <= 1);
        let (a, b) = (exact.bin_counts(0.0, 1.5, 60), binned.bin_counts(0.0, 1.5, 60));
        assert_eq!(a.iter().sum::<u64>(), 10_000);
        assert_eq!(b.iter().sum::<u64>(), 10_000);
        // only values within a histogram bin of an edge can change sides
        assert!(a.iter().zip(&b).all(|(x, y)| x.abs_diff(*y) <= 2), "{a:?}\n{b:?}");
    }

    #[test]
    fn empty_is_nan() {
        let mut s = Sketch::new(0.0, 1.0, 8, 4);
        assert!(s.mean().is_nan() && s.quantile(0.5).is_nan() && s.max().is_nan());
        assert_eq!(s.count_le(1.0), 0);
    }
}
