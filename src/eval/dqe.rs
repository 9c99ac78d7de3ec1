//! The detector figures of merit from images: the modulation transfer function (MTF) by the
//! slanted-edge method, the noise power spectrum (NPS) of flat fields, NPS(0) from progressively
//! binned images, and DQE(f) = mu^2 MTF(f)^2 / (q NPS(f)) (McMullan et al. 2009, 2014).
//!
//! Units: lengths in pixels of the image given (a counted image at 2x has pixels of half a detector
//! pixel; the caller converts), frequencies in cycles per pixel of that image (Nyquist 0.5), signal
//! in the image's own units (counts or electrons: DQE does not depend on them), fluence `q` in
//! incident electrons per pixel of the image.

use crate::{Error, Result};

/// A straight edge through `(x0_px, y0_px)` (image coordinates: x = column, y = row, pixel
/// `(i, j)` covers `[j, j + 1) x [i, i + 1)`), tilted by `angle_rad` from the y axis. The
/// illuminated side is where `(x - x0) cos(angle) - (y - y0) sin(angle) > 0`.
#[derive(Clone, Copy, Debug)]
pub struct Edge {
    pub x0_px: f64,
    pub y0_px: f64,
    pub angle_rad: f64,
}

impl Edge {
    /// Signed distance of `(x, y)` from the edge, positive on the illuminated side.
    pub fn distance_px(&self, x: f64, y: f64) -> f64 {
        (x - self.x0_px) * self.angle_rad.cos() - (y - self.y0_px) * self.angle_rad.sin()
    }

    /// The part of pixel `(row, col)` on the illuminated side (exact: the unit square clipped by
    /// the half plane, shoelace area).
    pub fn illuminated_fraction(&self, row: usize, col: usize) -> f64 {
        let (x, y) = (col as f64, row as f64);
        let corners = [(x, y), (x + 1.0, y), (x + 1.0, y + 1.0), (x, y + 1.0)];
        let mut poly: Vec<(f64, f64)> = Vec::with_capacity(5);
        for k in 0..4 {
            let (a, b) = (corners[k], corners[(k + 1) % 4]);
            let (da, db) = (self.distance_px(a.0, a.1), self.distance_px(b.0, b.1));
            if da >= 0.0 {
                poly.push(a);
            }
            if (da >= 0.0) != (db >= 0.0) {
                let t = da / (da - db);
                poly.push((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
            }
        }
        let n = poly.len();
        (0..n).map(|k| poly[k].0 * poly[(k + 1) % n].1 - poly[(k + 1) % n].0 * poly[k].1).sum::<f64>().abs() / 2.0
    }
}

/// An MTF on a frequency grid.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Mtf {
    /// Cycles per pixel of the image.
    pub frequency_cycles_per_px: Vec<f64>,
    pub mtf: Vec<f64>,
}

impl Mtf {
    /// The MTF at `f` cycles per pixel (linear between grid points).
    pub fn at(&self, f: f64) -> f64 {
        interpolate(&self.frequency_cycles_per_px, &self.mtf, f)
    }
}

fn interpolate(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    let k = xs.partition_point(|&v| v <= x).clamp(1, xs.len() - 1);
    let t = (x - xs[k - 1]) / (xs[k] - xs[k - 1]);
    ys[k - 1] + t * (ys[k] - ys[k - 1])
}

/// `sin(pi x) / (pi x)`.
pub fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 { 1.0 } else { (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x) }
}

/// The MTF of a slanted edge in `image` (`height x width`, row-major) by the slanted-edge method:
/// pixel values binned by their centre's distance from the edge at `1 / oversample` px within
/// `half_width_px` of it (the edge spread function, each bin placed at the mean distance of its
/// pixel centres), differentiated by central differences (the line spread function),
/// Hann-windowed and Fourier transformed, normalized to 1 at f = 0, and divided by the transfer
/// of the binning (sinc(f / oversample)) and of the central difference (sinc(2 f / oversample)).
/// On `frequencies` (cycles per pixel). The edge is known (simulated), not fitted.
pub fn mtf_slanted_edge(
    image: &[f32],
    height: usize,
    width: usize,
    edge: &Edge,
    oversample: usize,
    half_width_px: f64,
    frequencies: &[f64],
) -> Result<Mtf> {
    if image.len() != height * width || oversample == 0 || half_width_px <= 1.0 {
        return Err(Error::Other(format!(
            "mtf_slanted_edge: an image of {} values for {height}x{width}, oversample {oversample}, half width {half_width_px} px",
            image.len()
        )));
    }
    let step = 1.0 / oversample as f64;
    let bins = (2.0 * half_width_px / step).round() as usize;
    let (mut sum, mut pos, mut n) = (vec![0.0f64; bins], vec![0.0f64; bins], vec![0u64; bins]);
    for (i, row) in image.chunks_exact(width).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let d = edge.distance_px(j as f64 + 0.5, i as f64 + 0.5) + half_width_px;
            if d >= 0.0 && d < bins as f64 * step {
                let b = ((d / step) as usize).min(bins - 1);
                sum[b] += v as f64;
                pos[b] += d;
                n[b] += 1;
            }
        }
    }
    if let Some(b) = n.iter().position(|&c| c == 0) {
        return Err(Error::Other(format!(
            "mtf_slanted_edge: no pixel centre at {:.3} px from the edge: use more rows, a larger angle or less oversampling",
            (b as f64 + 0.5) * step - half_width_px
        )));
    }
    // each bin's value and the mean distance of its pixel centres (the samples need not be
    // spread evenly within a bin)
    let esf: Vec<f64> = sum.iter().zip(&n).map(|(s, &c)| s / c as f64).collect();
    let at: Vec<f64> = pos.iter().zip(&n).map(|(s, &c)| s / c as f64).collect();
    let m = bins - 2;
    let lsf: Vec<f64> = (0..m)
        .map(|k| {
            let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * (k as f64 + 0.5) / m as f64).cos();
            hann * (esf[k + 2] - esf[k]) / (at[k + 2] - at[k])
        })
        .collect();
    let transform = |f: f64| {
        let (mut re, mut im) = (0.0, 0.0);
        for (k, &l) in lsf.iter().enumerate() {
            let phase = 2.0 * std::f64::consts::PI * f * at[k + 1];
            re += l * phase.cos();
            im -= l * phase.sin();
        }
        (re * re + im * im).sqrt()
    };
    let zero = transform(0.0);
    if zero <= 0.0 {
        return Err(Error::Other("mtf_slanted_edge: the image shows no edge (the line spread sums to 0)".into()));
    }
    let mtf = frequencies.iter().map(|&f| transform(f) / zero / (sinc(f * step) * sinc(2.0 * f * step))).collect();
    Ok(Mtf { frequency_cycles_per_px: frequencies.to_vec(), mtf })
}

/// Noise power along x at zero y frequency, NPS(u, 0), of flat fields, accumulated image by
/// image: each band of `band_rows` rows is summed over its rows (the projection keeps the v = 0
/// line of the 2D spectrum), its mean removed, Fourier transformed over its width at the
/// frequencies (cycles per pixel), |X|^2 / (band_rows * width), averaged over bands and images.
/// White noise of variance s^2 per pixel gives s^2 at every frequency.
pub struct NpsU {
    height: usize,
    width: usize,
    band_rows: usize,
    cos: Vec<Vec<f64>>,
    sin: Vec<Vec<f64>>,
    acc: Vec<f64>,
    bands: usize,
    proj: Vec<f64>,
}

impl NpsU {
    pub fn new(height: usize, width: usize, band_rows: usize, frequencies: &[f64]) -> Result<Self> {
        if band_rows == 0 || band_rows > height || width < 2 {
            return Err(Error::Other(format!("NPS: images of {height}x{width} in bands of {band_rows} rows")));
        }
        let table = |f: f64, trig: fn(f64) -> f64| -> Vec<f64> {
            (0..width).map(|j| trig(2.0 * std::f64::consts::PI * f * j as f64)).collect()
        };
        Ok(Self {
            height,
            width,
            band_rows,
            cos: frequencies.iter().map(|&f| table(f, f64::cos)).collect(),
            sin: frequencies.iter().map(|&f| table(f, f64::sin)).collect(),
            acc: vec![0.0; frequencies.len()],
            bands: 0,
            proj: vec![0.0; width],
        })
    }

    /// Adds one flat-field image (`height x width`).
    pub fn add(&mut self, image: &[f32]) {
        assert_eq!(image.len(), self.height * self.width, "NPS: image size");
        let w = self.width;
        for band in image.chunks_exact(self.band_rows * w) {
            self.proj.fill(0.0);
            for row in band.chunks_exact(w) {
                for (p, &v) in self.proj.iter_mut().zip(row) {
                    *p += v as f64;
                }
            }
            let mean = self.proj.iter().sum::<f64>() / w as f64;
            for (a, (c, s)) in self.acc.iter_mut().zip(self.cos.iter().zip(&self.sin)) {
                let (mut re, mut im) = (0.0, 0.0);
                for ((&p, &cj), &sj) in self.proj.iter().zip(c).zip(s) {
                    re += (p - mean) * cj;
                    im += (p - mean) * sj;
                }
                *a += (re * re + im * im) / (self.band_rows * w) as f64;
            }
            self.bands += 1;
        }
    }

    /// NPS(u, 0) at the frequencies.
    pub fn nps(&self) -> Vec<f64> {
        self.acc.iter().map(|a| a / self.bands.max(1) as f64).collect()
    }
}

/// NPS(0) from progressively binned flat fields, accumulated image by image: for bins of `b x b`
/// pixels (b = 1, 2, 4, ... up to the image's smaller side), the variance of the bin sums over
/// every bin of every image, divided by b^2. It converges to NPS(0) as b grows past the width of
/// the detector's response (each bin then holds whole clusters); on images that wrap around (a
/// torus), b = the image side is exact.
pub struct BinnedVariance {
    height: usize,
    width: usize,
    /// Per level: b, sum of bin sums, sum of their squares, bins.
    levels: Vec<(usize, f64, f64, u64)>,
    sums: Vec<f64>,
}

impl BinnedVariance {
    pub fn new(height: usize, width: usize) -> Self {
        let mut levels = Vec::new();
        let mut b = 1;
        while b <= height.min(width) {
            levels.push((b, 0.0, 0.0, 0));
            b *= 2;
        }
        Self { height, width, levels, sums: Vec::new() }
    }

    /// Adds one flat-field image (`height x width`): each level's bin sums from the previous
    /// level's, 2 x 2 at a time.
    pub fn add(&mut self, image: &[f32]) {
        assert_eq!(image.len(), self.height * self.width, "binned variance: image size");
        let (mut h, mut w) = (self.height, self.width);
        self.sums.clear();
        self.sums.extend(image.iter().map(|&v| v as f64));
        let mut next = Vec::new();
        for (k, (_, s1, s2, n)) in self.levels.iter_mut().enumerate() {
            if k > 0 {
                // the bins of this level: 2 x 2 bins of the previous one (a last odd row or column
                // of bins is left out, as it holds part of a bin)
                let (nh, nw) = (h / 2, w / 2);
                next.clear();
                next.resize(nh * nw, 0.0);
                for i in 0..nh * 2 {
                    for j in 0..nw * 2 {
                        next[(i / 2) * nw + j / 2] += self.sums[i * w + j];
                    }
                }
                std::mem::swap(&mut self.sums, &mut next);
                (h, w) = (nh, nw);
            }
            for &v in &self.sums[..h * w] {
                *s1 += v;
                *s2 += v * v;
            }
            *n += (h * w) as u64;
        }
    }

    /// `(b, variance of the b x b sums / b^2, bins)` for each level with at least two bins.
    pub fn values(&self) -> Vec<(usize, f64, u64)> {
        self.levels
            .iter()
            .filter(|l| l.3 >= 2)
            .map(|&(b, s1, s2, n)| {
                let mean = s1 / n as f64;
                (b, (s2 - n as f64 * mean * mean) / (n - 1) as f64 / (b * b) as f64, n)
            })
            .collect()
    }

    /// NPS(0) extrapolated to large bins: at the largest b with at least `min_bins` bins,
    /// 2 v(b) - v(b / 2), which removes the first-order loss of bins that cut clusters (v(b) =
    /// NPS(0) (1 - c / b) + O(1 / b^2)); v(b) itself when b = 1. None without such a b.
    pub fn nps0(&self, min_bins: u64) -> Option<(usize, f64)> {
        let v = self.values();
        let k = v.iter().rposition(|l| l.2 >= min_bins)?;
        Some(if k == 0 { (v[0].0, v[0].1) } else { (v[k].0, 2.0 * v[k].1 - v[k - 1].1) })
    }
}

/// DQE(f) = mu^2 MTF(f)^2 / (q NPS(f)): `mean_signal` mu per pixel, fluence `q` in electrons per
/// pixel, the MTF and NPS on the same frequencies. DQE(0) is the same with MTF(0) = 1 and NPS(0).
pub fn dqe(mean_signal: f64, q_per_px: f64, mtf: &[f64], nps: &[f64]) -> Vec<f64> {
    mtf.iter().zip(nps).map(|(&m, &n)| mean_signal * mean_signal * m * m / (q_per_px * n)).collect()
}
