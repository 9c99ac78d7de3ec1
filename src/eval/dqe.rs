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

/// Noise power along x at zero y frequency, NPS(u, 0), of flat fields (`images`: each `height x
/// width`): each band of `band_rows` rows is summed over its rows (the projection keeps the v = 0
/// line of the 2D spectrum), its mean removed, Fourier transformed over its width at
/// `frequencies` (cycles per pixel), |X|^2 / (band_rows * width), averaged over bands and images.
/// White noise of variance s^2 per pixel gives s^2 at every frequency.
pub fn nps_u(
    images: &[&[f32]],
    height: usize,
    width: usize,
    band_rows: usize,
    frequencies: &[f64],
) -> Result<Vec<f64>> {
    if band_rows == 0 || band_rows > height || images.iter().any(|im| im.len() != height * width) {
        return Err(Error::Other(format!("nps_u: images of {height}x{width} in bands of {band_rows} rows")));
    }
    let mut acc = vec![0.0f64; frequencies.len()];
    let mut count = 0usize;
    let (cos, sin): (Vec<Vec<f64>>, Vec<Vec<f64>>) = frequencies
        .iter()
        .map(|&f| {
            (0..width)
                .map(|j| {
                    let p = 2.0 * std::f64::consts::PI * f * j as f64;
                    (p.cos(), p.sin())
                })
                .unzip()
        })
        .unzip();
    let mut proj = vec![0.0f64; width];
    for im in images {
        for band in im.chunks_exact(band_rows * width) {
            proj.fill(0.0);
            for row in band.chunks_exact(width) {
                for (p, &v) in proj.iter_mut().zip(row) {
                    *p += v as f64;
                }
            }
            let mean = proj.iter().sum::<f64>() / width as f64;
            for (a, (c, s)) in acc.iter_mut().zip(cos.iter().zip(&sin)) {
                let (mut re, mut im) = (0.0, 0.0);
                for (j, &p) in proj.iter().enumerate() {
                    re += (p - mean) * c[j];
                    im += (p - mean) * s[j];
                }
                *a += (re * re + im * im) / (band_rows * width) as f64;
            }
            count += 1;
        }
    }
    Ok(acc.into_iter().map(|a| a / count as f64).collect())
}

/// NPS(0) from progressively binned flat fields: for bins of `b x b` pixels (b = 1, 2, 4, ... up
/// to the image's smaller side), the variance of the bin sums over every bin of every image,
/// divided by b^2. Returns `(b, value)` for each b. The value converges to NPS(0) as b grows past
/// the width of the detector's response (each bin then holds whole clusters); on images that
/// wrap around (a torus), b = the image side is exact.
pub fn nps0_binned(images: &[&[f32]], height: usize, width: usize) -> Result<Vec<(usize, f64)>> {
    if images.is_empty() || images.iter().any(|im| im.len() != height * width) {
        return Err(Error::Other(format!("nps0_binned: no images, or images not of {height}x{width}")));
    }
    let mut out = Vec::new();
    let mut b = 1;
    while b <= height.min(width) {
        let (bh, bw) = (height / b, width / b);
        let (mut s1, mut s2, mut n) = (0.0f64, 0.0f64, 0usize);
        let mut sums = vec![0.0f64; bh * bw];
        for im in images {
            sums.fill(0.0);
            for i in 0..bh * b {
                for j in 0..bw * b {
                    sums[(i / b) * bw + j / b] += im[i * width + j] as f64;
                }
            }
            for &s in &sums {
                s1 += s;
                s2 += s * s;
            }
            n += sums.len();
        }
        if n >= 2 {
            let mean = s1 / n as f64;
            let var = (s2 - n as f64 * mean * mean) / (n - 1) as f64;
            out.push((b, var / (b * b) as f64));
        }
        b *= 2;
    }
    Ok(out)
}

/// DQE(f) = mu^2 MTF(f)^2 / (q NPS(f)): `mean_signal` mu per pixel, fluence `q` in electrons per
/// pixel, the MTF and NPS on the same frequencies. DQE(0) is the same with MTF(0) = 1 and NPS(0).
pub fn dqe(mean_signal: f64, q_per_px: f64, mtf: &[f64], nps: &[f64]) -> Vec<f64> {
    mtf.iter().zip(nps).map(|(&m, &n)| mean_signal * mean_signal * m * m / (q_per_px * n)).collect()
}
