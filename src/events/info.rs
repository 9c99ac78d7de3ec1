//! `emsim events info`: summary statistics of an event library.
//!
//! * Charges are per event (sum over its stored pixels), electrons.
//! * The most probable deposit is the centre of the fullest bin of a histogram of the events'
//!   deposits (events with a deposit > 0 only), with the Freedman-Diaconis bin width
//!   `2 IQR / n^(1/3)` (0.05 keV when that is not usable, at most 10 000 bins).
//! * "Cluster size" is the number of an event's pixels with at least [`CLUSTER_THRESHOLD_E`]
//!   (no connectivity requirement); the histogram holds the number of events per size.
//! * Quantities a source does not record are NaN (`null` in JSON, `n/a` in text): the track length
//!   of imported events, the energy of a Geant4 pixel-table import. Imports and the parametric
//!   library do not record backscatter/transmission (`flags_recorded = false`).

use std::fmt::Write as _;

use crate::io::library::{EventLibrary, FLAG_BACKSCATTERED, FLAG_TRANSMITTED, FLAG_TRUNCATED};

/// Pixels at or above this charge count towards the cluster size, electrons.
pub const CLUSTER_THRESHOLD_E: f32 = 1.0;

/// Fallback bin width of the deposit histogram, keV.
pub const DEFAULT_DEPOSIT_BIN_KEV: f64 = 0.05;

/// Summary of an event library.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LibraryInfo {
    pub count: usize,
    pub source: String,
    pub pitch_um: f64,
    /// Beam energy, keV (NaN when the source does not record it).
    pub energy_kev: f64,
    pub seed: u64,
    /// The generating parameters (embedded as JSON when valid, else as a string).
    #[serde(serialize_with = "embed_json")]
    pub config_json: String,
    /// Whether the source records backscatter/transmission flags (Monte Carlo libraries do).
    pub flags_recorded: bool,
    pub has_tracks: bool,
    pub total_pixels: u64,
    pub mean_pixels_per_event: f64,
    pub mean_charge_e: f64,
    pub median_charge_e: f64,
    pub mean_deposit_kev: f64,
    pub median_deposit_kev: f64,
    pub most_probable_deposit_kev: f64,
    /// Bin width of the deposit histogram used for the most probable deposit, keV.
    pub deposit_bin_kev: f64,
    pub backscatter_fraction: f64,
    pub transmission_fraction: f64,
    /// Events with charge outside the stored pixel window.
    pub truncated_fraction: f64,
    /// Mean over events with a recorded (finite) track length; NaN when none.
    pub mean_track_length_um: f64,
    pub cluster_threshold_e: f32,
    pub mean_cluster_size: f64,
    /// `cluster_size_histogram[s]` = number of events with `s` pixels >= the threshold.
    pub cluster_size_histogram: Vec<u64>,
}

fn embed_json<S: serde::Serializer>(s: &str, ser: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v) => v.serialize(ser),
        Err(_) => s.serialize(ser),
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
}

/// Quantile of sorted data (linear interpolation); NaN when empty.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// `(mode, bin width)` of a histogram of `sorted` (finite, ascending) values.
pub fn histogram_mode(sorted: &[f64]) -> (f64, f64) {
    if sorted.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    let iqr = quantile(sorted, 0.75) - quantile(sorted, 0.25);
    let mut width = 2.0 * iqr / (sorted.len() as f64).cbrt();
    if !(width > 0.0 && width.is_finite()) {
        width = DEFAULT_DEPOSIT_BIN_KEV;
    }
    width = width.max((hi - lo) / 10_000.0);
    let nbins = (((hi - lo) / width).floor() as usize + 1).max(1);
    let mut counts = vec![0u64; nbins];
    for &v in sorted {
        let b = (((v - lo) / width).floor() as usize).min(nbins - 1);
        counts[b] += 1;
    }
    let best = counts.iter().enumerate().max_by_key(|&(i, &c)| (c, std::cmp::Reverse(i))).map(|(i, _)| i).unwrap_or(0);
    (lo + (best as f64 + 0.5) * width, width)
}

/// Summary statistics of a library.
pub fn library_info(lib: &EventLibrary) -> LibraryInfo {
    let n = lib.len();
    let mut charges: Vec<f64> = (0..n).map(|i| lib.total_charge_e(i)).collect();
    let deposits_all: Vec<f64> = lib.deposit_kev.iter().map(|&d| d as f64).filter(|d| d.is_finite()).collect();
    let mut deposits_pos: Vec<f64> = deposits_all.iter().copied().filter(|&d| d > 0.0).collect();
    let mut deposits_sorted = deposits_all.clone();
    deposits_sorted.sort_by(f64::total_cmp);
    deposits_pos.sort_by(f64::total_cmp);
    let mean_charge_e = mean(&charges);
    charges.sort_by(f64::total_cmp);
    let (mode, width) = histogram_mode(&deposits_pos);
    let frac = |flag: u32| {
        if n == 0 { f64::NAN } else { lib.flags.iter().filter(|&&f| f & flag != 0).count() as f64 / n as f64 }
    };
    let tracks: Vec<f64> = lib.track_length_um.iter().map(|&t| t as f64).filter(|t| t.is_finite()).collect();
    let mut hist: Vec<u64> = Vec::new();
    let mut size_sum = 0u64;
    for i in 0..n {
        let s = lib.charge_e[lib.pixel_range(i)].iter().filter(|&&q| q >= CLUSTER_THRESHOLD_E).count();
        if hist.len() <= s {
            hist.resize(s + 1, 0);
        }
        hist[s] += 1;
        size_sum += s as u64;
    }
    let src = lib.meta.source.as_str();
    LibraryInfo {
        count: n,
        source: lib.meta.source.clone(),
        pitch_um: lib.meta.pitch_um,
        energy_kev: lib.meta.energy_kev,
        seed: lib.meta.seed,
        config_json: lib.meta.config_json.clone(),
        flags_recorded: !(src == "parametric" || src.ends_with("-import")),
        has_tracks: lib.tracks.is_some(),
        total_pixels: lib.charge_e.len() as u64,
        mean_pixels_per_event: if n == 0 { f64::NAN } else { lib.charge_e.len() as f64 / n as f64 },
        mean_charge_e,
        median_charge_e: quantile(&charges, 0.5),
        mean_deposit_kev: mean(&deposits_all),
        median_deposit_kev: quantile(&deposits_sorted, 0.5),
        most_probable_deposit_kev: mode,
        deposit_bin_kev: width,
        backscatter_fraction: frac(FLAG_BACKSCATTERED),
        transmission_fraction: frac(FLAG_TRANSMITTED),
        truncated_fraction: frac(FLAG_TRUNCATED),
        mean_track_length_um: mean(&tracks),
        cluster_threshold_e: CLUSTER_THRESHOLD_E,
        mean_cluster_size: if n == 0 { f64::NAN } else { size_sum as f64 / n as f64 },
        cluster_size_histogram: hist,
    }
}

fn num(v: f64, digits: usize, unit: &str) -> String {
    if v.is_finite() { format!("{v:.digits$}{unit}") } else { "n/a".into() }
}

impl LibraryInfo {
    /// A readable multi-line summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let flags_note = if self.flags_recorded { "" } else { " (not recorded by this source)" };
        let _ = writeln!(s, "events:                 {}", self.count);
        let _ = writeln!(s, "source:                 {}", self.source);
        let _ = writeln!(s, "pitch:                  {}", num(self.pitch_um, 3, " um"));
        let _ = writeln!(s, "beam energy:            {}", num(self.energy_kev, 1, " keV"));
        let _ = writeln!(s, "seed:                   {}", self.seed);
        let _ = writeln!(s, "tracks stored:          {}", if self.has_tracks { "yes" } else { "no" });
        let _ = writeln!(
            s,
            "pixels:                 {} ({} per event)",
            self.total_pixels,
            num(self.mean_pixels_per_event, 1, "")
        );
        let _ = writeln!(
            s,
            "charge per event:       mean {}, median {}",
            num(self.mean_charge_e, 1, " e"),
            num(self.median_charge_e, 1, " e")
        );
        let _ = writeln!(
            s,
            "deposit per event:      mean {}, median {}, most probable {} (bin {})",
            num(self.mean_deposit_kev, 3, " keV"),
            num(self.median_deposit_kev, 3, " keV"),
            num(self.most_probable_deposit_kev, 3, " keV"),
            num(self.deposit_bin_kev, 3, " keV")
        );
        let _ = writeln!(s, "backscattered:          {}{flags_note}", num(100.0 * self.backscatter_fraction, 2, " %"));
        let _ = writeln!(s, "transmitted:            {}{flags_note}", num(100.0 * self.transmission_fraction, 2, " %"));
        let _ = writeln!(s, "truncated (window):     {}", num(100.0 * self.truncated_fraction, 2, " %"));
        let _ = writeln!(s, "mean track length:      {}", num(self.mean_track_length_um, 2, " um"));
        let _ = writeln!(
            s,
            "cluster size (>= {} e): mean {}",
            self.cluster_threshold_e,
            num(self.mean_cluster_size, 2, " px")
        );
        // One line per size up to the 99th percentile, then the rest on one line.
        let h = &self.cluster_size_histogram;
        let total: u64 = h.iter().sum();
        let peak = h.iter().copied().max().unwrap_or(0).max(1);
        let pct = |c: u64| 100.0 * c as f64 / total.max(1) as f64;
        let mut cum = 0u64;
        for (size, &c) in h.iter().enumerate() {
            if cum as f64 >= 0.99 * total as f64 && size + 1 < h.len() {
                let rest: u64 = h[size..].iter().sum();
                let _ = writeln!(s, "  >= {size:>2} px: {rest:>8} ({:5.1} %)", pct(rest));
                break;
            }
            cum += c;
            if c > 0 {
                let bar = "#".repeat(((c as f64 / peak as f64) * 40.0).ceil() as usize);
                let _ = writeln!(s, "  {size:>5} px: {c:>8} ({:5.1} %) {bar}", pct(c));
            }
        }
        if !self.config_json.is_empty() {
            let _ = writeln!(s, "config:                 {}", self.config_json);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_of_simple_histogram() {
        let mut v = vec![1.0, 2.0, 2.01, 2.02, 2.03, 3.0, 5.0];
        v.sort_by(f64::total_cmp);
        let (m, w) = histogram_mode(&v);
        assert!(w > 0.0);
        assert!((m - 2.0).abs() < w, "mode {m}, width {w}");
        let (m, w) = histogram_mode(&[4.0, 4.0, 4.0]);
        assert_eq!(w, DEFAULT_DEPOSIT_BIN_KEV);
        assert!((m - 4.025).abs() < 1e-12);
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0], 0.5), 2.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
