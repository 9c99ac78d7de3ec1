//! `emsim events response`: the mean single-electron response of a library, measured the way the
//! 4D Camera group measures it on real frames, beside their figures.
//!
//! * Each event is centred on its brightest pixel. The **mean pattern** is the average of the
//!   events' charges on a (2 [`PATTERN_HALF`] + 1)^2 grid around it.
//! * **Gaussian sigma**: a Gaussian `A exp(-(dx^2 + dy^2) / (2 sigma^2))` sampled at the pixel
//!   offsets, fitted by least squares to the mean 3x3 pattern (as the 4D Camera group fits theirs:
//!   jerenner/backpropcount, the code of Renner et al. 2025, arXiv:2511.03933).
//! * **3x3 charge**: the sum of the 3x3 pixels around the brightest one, per event. Its
//!   distribution is Landau-like: the **peak** and the full width at half maximum come from a
//!   Moyal density (Landau's close approximation) fitted to the top of its histogram
//!   ([`peak_and_fwhm`]); the **width** is that FWHM divided by 4.018, the scale parameter of a
//!   Landau distribution of the same FWHM.
//! * **Analog DQE(0)** = M1^2 / M2 of the 3x3 charge (M1 its mean, M2 its mean square), the
//!   pulse-height estimate of McMullan et al. (2009) that the 4D Camera group reports; the
//!   **Swank factor** is the same ratio for the whole charge of each event.
//! * With a gain (ADU per electron) the charges are also given in ADU.

use std::fmt::Write as _;
use std::path::Path;

use crate::eval::plots::{self, Chart, Series};
use crate::io::library::EventLibrary;
use crate::{Error, Result};

/// Half-width of the stored mean pattern, pixels (the pattern is 7x7).
pub const PATTERN_HALF: i32 = 3;
/// FWHM of a Landau distribution in units of its scale parameter.
pub const LANDAU_FWHM_PER_SCALE: f64 = 4.018;

/// The 4D Camera's single-electron response at 300 kV (real frames, 10 um pixels; Renner et al.
/// 2025, arXiv:2511.03933, and its code jerenner/backpropcount).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct CameraReference {
    pub gaussian_sigma_px: f64,
    pub gaussian_amplitude_adu: f64,
    pub peak_3x3_adu: f64,
    pub width_3x3_adu: f64,
    pub mean_3x3_adu: f64,
    pub analog_dqe0: f64,
    pub dark_adu: f64,
    pub read_noise_adu: f64,
}

/// The figures of [`CameraReference`].
pub const FOUR_D_CAMERA_300KV: CameraReference = CameraReference {
    gaussian_sigma_px: 0.5065,
    gaussian_amplitude_adu: 19.03,
    peak_3x3_adu: 19.8,
    width_3x3_adu: 4.8,
    mean_3x3_adu: 33.63,
    analog_dqe0: 0.529,
    dark_adu: 20.55,
    read_noise_adu: 1.79,
};

/// The measured response (charges in electrons; `*_adu` only with a gain).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Response {
    pub events: usize,
    pub pitch_um: f64,
    /// Mean charges on the (2 h + 1)^2 grid around the brightest pixel, row-major, electrons.
    pub mean_pattern_e: Vec<f64>,
    pub pattern_half_px: i32,
    pub gaussian_sigma_px: f64,
    pub gaussian_amplitude_e: f64,
    /// Fraction of the mean charge inside the 3x3 around the brightest pixel.
    pub fraction_in_3x3: f64,
    pub mean_pixels_per_event: f64,
    pub peak_3x3_e: f64,
    pub width_3x3_e: f64,
    pub fwhm_3x3_e: f64,
    pub mean_3x3_e: f64,
    pub width_to_peak_3x3: f64,
    pub analog_dqe0: f64,
    pub swank_factor: f64,
    pub mean_charge_e: f64,
    /// Gain used for the ADU figures (null without `--gain-adu-per-e`).
    pub gain_adu_per_e: Option<f64>,
    pub peak_3x3_adu: Option<f64>,
    pub width_3x3_adu: Option<f64>,
    pub mean_3x3_adu: Option<f64>,
    pub gaussian_amplitude_adu: Option<f64>,
    /// The 4D Camera's figures at 300 kV, for comparison.
    pub reference_4dcamera_300kv: CameraReference,
    /// The 3x3 charge of every event (kept for the plot, not serialised).
    #[serde(skip)]
    pub charge_3x3_e: Vec<f64>,
}

/// Least-squares fit of `A exp(-r^2 / (2 s^2))` to a 3x3 pattern (row-major, centre at 4):
/// returns (s, A). For a fixed s the best A is closed-form; s is found by golden-section search.
pub fn fit_gaussian_3x3(p: &[f64; 9]) -> (f64, f64) {
    let r2 = |k: usize| {
        let (dx, dy) = ((k % 3) as f64 - 1.0, (k / 3) as f64 - 1.0);
        dx * dx + dy * dy
    };
    let best_a = |s: f64| {
        let (mut gy, mut gg) = (0.0, 0.0);
        for (k, &y) in p.iter().enumerate() {
            let g = (-r2(k) / (2.0 * s * s)).exp();
            gy += g * y;
            gg += g * g;
        }
        gy / gg
    };
    let cost = |s: f64| {
        let a = best_a(s);
        p.iter().enumerate().map(|(k, &y)| (y - a * (-r2(k) / (2.0 * s * s)).exp()).powi(2)).sum::<f64>()
    };
    let (mut lo, mut hi) = (0.05f64, 5.0f64);
    let g = 0.5 * (5f64.sqrt() - 1.0);
    let (mut c, mut d) = (hi - g * (hi - lo), lo + g * (hi - lo));
    let (mut fc, mut fd) = (cost(c), cost(d));
    for _ in 0..100 {
        if fc < fd {
            hi = d;
            d = c;
            fd = fc;
            c = hi - g * (hi - lo);
            fc = cost(c);
        } else {
            lo = c;
            c = d;
            fc = fd;
            d = lo + g * (hi - lo);
            fd = cost(d);
        }
    }
    let s = 0.5 * (lo + hi);
    (s, best_a(s))
}

/// Log-density of the Moyal distribution (a close approximation of Landau's) at `z`, up to a
/// constant: `-(z + exp(-z)) / 2`; its mode is at z = 0.
fn log_moyal(z: f64) -> f64 {
    -0.5 * (z + (-z).exp())
}

/// FWHM of the Moyal distribution in units of its scale: the two roots of
/// `z + exp(-z) = 1 + 2 ln 2`.
pub fn moyal_fwhm_per_scale() -> f64 {
    let target = 1.0 + 2.0 * std::f64::consts::LN_2;
    let root = |mut lo: f64, mut hi: f64| {
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            let f = |z: f64| z + (-z).exp() - target;
            if (f(lo) < 0.0) == (f(mid) < 0.0) { lo = mid } else { hi = mid }
        }
        0.5 * (lo + hi)
    };
    root(0.0, 10.0) - root(-10.0, 0.0)
}

/// The top of the histograms of a Landau-like sample: its 99th percentile (the long tail beyond
/// is left out), at least the smallest positive value; 1 for an empty sample.
fn histogram_top(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 1.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * 0.99) as usize].max(f64::MIN_POSITIVE)
}

/// Peak (mode) and FWHM of a Landau-like sample. A histogram (200 bins from 0 to the 99th
/// percentile, smoothed over 5 bins) gives a first peak and FWHM; then a Moyal density is fitted
/// by least squares to the counts of all bins, and its mode and FWHM are returned (robust where
/// the histogram's top is flat and noisy). NaN when the sample is empty.
pub fn peak_and_fwhm(values: &[f64]) -> (f64, f64) {
    let bins = 200usize;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let hi = histogram_top(values);
    let w = hi / bins as f64;
    let counts = plots::bin_counts(values, 0.0, hi, bins);
    let smooth: Vec<f64> = (0..bins)
        .map(|i| {
            let (a, b) = (i.saturating_sub(2), (i + 2).min(bins - 1));
            counts[a..=b].iter().sum::<u64>() as f64 / (b - a + 1) as f64
        })
        .collect();
    let (imax, &ymax) = smooth.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("bins > 0");
    let half = 0.5 * ymax;
    let left = (0..imax).rev().find(|&i| smooth[i] < half).map_or(0.0, |i| i as f64 + 0.5);
    let right = (imax + 1..bins).find(|&i| smooth[i] < half).map_or(bins as f64, |i| i as f64 + 0.5);
    let (p0, f0) = ((imax as f64 + 0.5) * w, ((right - left) * w).max(w));
    // Least-squares fit of A moyal((x - mu) / s) to the counts of every bin (as a curve fit to
    // the histogram does); A is closed-form for given (mu, s), which a refined grid search finds.
    let pts: Vec<(f64, f64)> = (0..bins).map(|i| ((i as f64 + 0.5) * w, counts[i] as f64)).collect();
    let per_scale = moyal_fwhm_per_scale();
    let cost = |mu: f64, s: f64| {
        let (mut gy, mut gg, mut yy) = (0.0, 0.0, 0.0);
        for &(x, y) in &pts {
            let g = log_moyal((x - mu) / s).exp();
            gy += g * y;
            gg += g * g;
            yy += y * y;
        }
        if gg > 0.0 { yy - gy * gy / gg } else { f64::INFINITY }
    };
    let (mut mu, mut s) = (p0, f0 / per_scale);
    let (mut dmu, mut ds) = (f0, 0.9 * s);
    for _ in 0..5 {
        let mut best = (f64::INFINITY, mu, s);
        for i in -20..=20 {
            for j in -20..=20 {
                let (m, sc) = (mu + dmu * i as f64 / 20.0, s + ds * j as f64 / 20.0);
                if sc > 0.0 {
                    let c = cost(m, sc);
                    if c < best.0 {
                        best = (c, m, sc);
                    }
                }
            }
        }
        (mu, s) = (best.1, best.2);
        dmu /= 6.0;
        ds /= 6.0;
    }
    (mu, s * per_scale)
}

/// Measures the response of `lib` (see the module documentation); `gain_adu_per_e` adds ADU
/// figures.
pub fn response(lib: &EventLibrary, gain_adu_per_e: Option<f64>) -> Result<Response> {
    let n = lib.len();
    if n == 0 {
        return Err(Error::invalid("library", "has no events: expected at least one"));
    }
    let h = PATTERN_HALF;
    let side = (2 * h + 1) as usize;
    let mut pattern = vec![0.0f64; side * side];
    let mut q3 = Vec::with_capacity(n);
    let (mut m1, mut m2, mut tot_sum, mut tot_sq, mut pixels) = (0.0, 0.0, 0.0, 0.0, 0usize);
    let mut used = 0usize;
    for e in 0..n {
        let (a, b) = (lib.offsets[e] as usize, lib.offsets[e + 1] as usize);
        if a == b {
            continue;
        }
        let (dx, dy, q) = (&lib.dx_px[a..b], &lib.dy_px[a..b], &lib.charge_e[a..b]);
        let imax = (0..b - a).max_by(|&i, &j| q[i].total_cmp(&q[j])).expect("non-empty");
        let (cx, cy) = (dx[imax], dy[imax]);
        let (mut s3, mut total) = (0.0f64, 0.0f64);
        for i in 0..b - a {
            let (ox, oy, v) = (dx[i] - cx, dy[i] - cy, q[i] as f64);
            total += v;
            if ox.abs() <= 1 && oy.abs() <= 1 {
                s3 += v;
            }
            if ox.abs() <= h && oy.abs() <= h {
                pattern[((oy + h) as usize) * side + (ox + h) as usize] += v;
            }
        }
        pixels += b - a;
        used += 1;
        q3.push(s3);
        m1 += s3;
        m2 += s3 * s3;
        tot_sum += total;
        tot_sq += total * total;
    }
    if used == 0 {
        return Err(Error::invalid("library", "no event has any charge: expected at least one"));
    }
    let k = used as f64;
    pattern.iter_mut().for_each(|v| *v /= k);
    let mut p9 = [0.0; 9];
    for (i, v) in p9.iter_mut().enumerate() {
        let (ox, oy) = ((i % 3) as i32 - 1, (i / 3) as i32 - 1);
        *v = pattern[((oy + h) as usize) * side + (ox + h) as usize];
    }
    let (sigma, amp) = fit_gaussian_3x3(&p9);
    let (m1, m2) = (m1 / k, m2 / k);
    let (peak, fwhm) = peak_and_fwhm(&q3);
    let width = fwhm / LANDAU_FWHM_PER_SCALE;
    let mean_charge = tot_sum / k;
    let adu = |v: f64| gain_adu_per_e.map(|g| g * v);
    Ok(Response {
        events: used,
        pitch_um: lib.meta.pitch_um,
        mean_pattern_e: pattern,
        pattern_half_px: h,
        gaussian_sigma_px: sigma,
        gaussian_amplitude_e: amp,
        fraction_in_3x3: m1 / mean_charge,
        mean_pixels_per_event: pixels as f64 / k,
        peak_3x3_e: peak,
        width_3x3_e: width,
        fwhm_3x3_e: fwhm,
        mean_3x3_e: m1,
        width_to_peak_3x3: width / peak,
        analog_dqe0: m1 * m1 / m2,
        swank_factor: mean_charge * mean_charge / (tot_sq / k),
        mean_charge_e: mean_charge,
        gain_adu_per_e,
        peak_3x3_adu: adu(peak),
        width_3x3_adu: adu(width),
        mean_3x3_adu: adu(m1),
        gaussian_amplitude_adu: adu(amp),
        reference_4dcamera_300kv: FOUR_D_CAMERA_300KV,
        charge_3x3_e: q3,
    })
}

impl Response {
    /// The report as a table, with the 4D Camera's figures beside.
    pub fn text(&self) -> String {
        let r = &self.reference_4dcamera_300kv;
        let mut s = String::new();
        let _ = writeln!(s, "single-electron response of {} events ({} um pixels)", self.events, self.pitch_um);
        let _ = writeln!(s, "{:<38} {:>12} {:>22}", "", "this library", "4D Camera, 300 kV");
        let row = |s: &mut String, name: &str, v: String, refv: String| {
            let _ = writeln!(s, "{name:<38} {v:>12} {refv:>22}");
        };
        row(
            &mut s,
            "Gaussian sigma (3x3 fit), px",
            format!("{:.4}", self.gaussian_sigma_px),
            format!("{}", r.gaussian_sigma_px),
        );
        row(
            &mut s,
            "3x3 width / peak",
            format!("{:.3}", self.width_to_peak_3x3),
            format!("{:.3}", r.width_3x3_adu / r.peak_3x3_adu),
        );
        row(
            &mut s,
            "3x3 mean / peak",
            format!("{:.3}", self.mean_3x3_e / self.peak_3x3_e),
            format!("{:.3}", r.mean_3x3_adu / r.peak_3x3_adu),
        );
        row(
            &mut s,
            "analog DQE(0) = M1^2/M2 of the 3x3 charge",
            format!("{:.3}", self.analog_dqe0),
            format!("{}", r.analog_dqe0),
        );
        let adu = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        row(&mut s, "3x3 peak, e- / ADU", format!("{:.1}", self.peak_3x3_e), format!("- / {}", r.peak_3x3_adu));
        row(
            &mut s,
            "3x3 width (Landau scale), e-",
            format!("{:.1}", self.width_3x3_e),
            format!("- / {}", r.width_3x3_adu),
        );
        row(&mut s, "3x3 mean, e-", format!("{:.1}", self.mean_3x3_e), format!("- / {}", r.mean_3x3_adu));
        row(
            &mut s,
            "Gaussian amplitude, e-",
            format!("{:.1}", self.gaussian_amplitude_e),
            format!("- / {}", r.gaussian_amplitude_adu),
        );
        if let Some(g) = self.gain_adu_per_e {
            let _ = writeln!(s, "at {g} ADU/e-:");
            row(&mut s, "  3x3 peak, ADU", adu(self.peak_3x3_adu), format!("{}", r.peak_3x3_adu));
            row(&mut s, "  3x3 width, ADU", adu(self.width_3x3_adu), format!("{}", r.width_3x3_adu));
            row(&mut s, "  3x3 mean, ADU", adu(self.mean_3x3_adu), format!("{}", r.mean_3x3_adu));
            row(
                &mut s,
                "  Gaussian amplitude, ADU",
                adu(self.gaussian_amplitude_adu),
                format!("{}", r.gaussian_amplitude_adu),
            );
        }
        row(&mut s, "Swank factor (whole event charge)", format!("{:.3}", self.swank_factor), "-".into());
        row(&mut s, "charge in the 3x3 / whole event", format!("{:.3}", self.fraction_in_3x3), "-".into());
        row(&mut s, "pixels per event (>= 0.5 e-)", format!("{:.1}", self.mean_pixels_per_event), "-".into());
        let h = self.pattern_half_px;
        let side = (2 * h + 1) as usize;
        let _ = writeln!(s, "mean pattern around the brightest pixel, e-:");
        for row in self.mean_pattern_e.chunks(side) {
            let line: Vec<String> = row.iter().map(|v| format!("{v:8.2}")).collect();
            let _ = writeln!(s, "  {}", line.join(" "));
        }
        s
    }

    /// Two PNGs: `<prefix>-spectrum.png` (distribution of the 3x3 charge, peak and FWHM marked)
    /// and `<prefix>-profile.png` (the mean pattern through its centre, along x and y, with the
    /// fitted Gaussian).
    pub fn plot(&self, prefix: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        let name = prefix.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.is_empty() {
            return Err(Error::invalid("--plot", format!("'{}': expected a file name prefix", prefix.display())));
        }
        let with = |suffix: &str| prefix.with_file_name(format!("{name}-{suffix}.png"));
        let (spectrum, profile) = (with("spectrum"), with("profile"));
        let bins = 120usize;
        let hi = histogram_top(&self.charge_3x3_e);
        let counts = plots::bin_counts(&self.charge_3x3_e, 0.0, hi, bins);
        let w = hi / bins as f64;
        let pts: Vec<(f64, f64)> = counts.iter().enumerate().map(|(i, &c)| ((i as f64 + 0.5) * w, c as f64)).collect();
        let top = counts.iter().copied().max().unwrap_or(1) as f64;
        let half = (self.peak_3x3_e - 0.5 * self.fwhm_3x3_e).max(0.0);
        let marks = [(self.peak_3x3_e, 0.0), (self.peak_3x3_e, top)];
        let fwhm = [(half, 0.5 * top), (half + self.fwhm_3x3_e, 0.5 * top)];
        let title = format!(
            "3x3 charge: peak {:.0} e-, width {:.0} e- (width/peak {:.3}; 4D Camera {:.3})",
            self.peak_3x3_e,
            self.width_3x3_e,
            self.width_to_peak_3x3,
            FOUR_D_CAMERA_300KV.width_3x3_adu / FOUR_D_CAMERA_300KV.peak_3x3_adu
        );
        plots::line_chart(
            &spectrum,
            &Chart::new(&title, "charge in the 3x3 around the brightest pixel, e-", "events per bin"),
            &[
                Series { label: "events", points: &pts },
                Series { label: "peak", points: &marks },
                Series { label: "FWHM", points: &fwhm },
            ],
        )?;
        let h = self.pattern_half_px;
        let side = (2 * h + 1) as usize;
        let centre = self.mean_pattern_e[(h as usize) * side + h as usize].max(1e-12);
        let along_x: Vec<(f64, f64)> =
            (0..side).map(|i| ((i as i32 - h) as f64, self.mean_pattern_e[(h as usize) * side + i] / centre)).collect();
        let along_y: Vec<(f64, f64)> =
            (0..side).map(|j| ((j as i32 - h) as f64, self.mean_pattern_e[j * side + h as usize] / centre)).collect();
        let s = self.gaussian_sigma_px;
        let a = self.gaussian_amplitude_e / centre;
        let fit: Vec<(f64, f64)> = (0..=120)
            .map(|i| -(h as f64) + i as f64 * (2 * h) as f64 / 120.0)
            .map(|x| (x, a * (-x * x / (2.0 * s * s)).exp()))
            .collect();
        let s0 = FOUR_D_CAMERA_300KV.gaussian_sigma_px;
        let camera: Vec<(f64, f64)> = fit.iter().map(|&(x, _)| (x, (-x * x / (2.0 * s0 * s0)).exp())).collect();
        let title = format!("mean response around the brightest pixel: sigma {s:.3} px (4D Camera {s0} px)");
        let mut chart = Chart::new(&title, "offset from the brightest pixel, px", "charge / centre pixel");
        chart.log_y = true;
        chart.y_range = Some((1e-4, 1.5));
        plots::line_chart(
            &profile,
            &chart,
            &[
                Series { label: "along x", points: &along_x },
                Series { label: "along y", points: &along_y },
                Series { label: "Gaussian fit (3x3)", points: &fit },
                Series { label: "4D Camera fit", points: &camera },
            ],
        )?;
        Ok((spectrum, profile))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    /// A Gaussian sampled at the 3x3 offsets is recovered exactly.
    #[test]
    fn gaussian_fit_recovers_sigma_and_amplitude() {
        for (s, a) in [(0.3, 5.0), (0.5065, 19.03), (1.2, 100.0)] {
            let mut p = [0.0; 9];
            for (k, v) in p.iter_mut().enumerate() {
                let (dx, dy) = ((k % 3) as f64 - 1.0, (k / 3) as f64 - 1.0);
                *v = a * (-(dx * dx + dy * dy) / (2.0 * s * s)).exp();
            }
            let (fs, fa) = fit_gaussian_3x3(&p);
            assert!((fs - s).abs() < 1e-6 * s && (fa - a).abs() < 1e-6 * a, "{s} {a}: got {fs} {fa}");
        }
    }

    /// Moyal samples (-ln of a squared standard normal, scaled and shifted): the fit gives their
    /// mode and FWHM.
    #[test]
    fn peak_and_fwhm_of_moyal_samples() {
        assert!((moyal_fwhm_per_scale() - 3.590).abs() < 0.01, "{}", moyal_fwhm_per_scale());
        let (mu, s) = (300.0, 40.0);
        let mut rng = Stream::new(5, 0, 0);
        let v: Vec<f64> = (0..100_000)
            .map(|_| {
                let n = rng.normal();
                mu + s * -(n * n).max(1e-300).ln()
            })
            .filter(|x| *x > 0.0)
            .collect();
        let (peak, fwhm) = peak_and_fwhm(&v);
        let want = s * moyal_fwhm_per_scale();
        assert!((peak - mu).abs() < 0.02 * mu, "peak {peak} vs {mu}");
        assert!((fwhm - want).abs() < 0.04 * want, "FWHM {fwhm} vs {want}");
        assert!(peak_and_fwhm(&[]).0.is_nan());
    }
}
