//! Energy deposits -> e-h pairs -> diffusion to the collection plane -> pixel charges.
//!
//! * N = E / W pairs per deposit, W = 3.6 eV; Fano fluctuations as a Gaussian of variance F N
//!   (F = 0.115), truncated at 0.
//! * Transport ([`SlabDiffusion`]): the sensitive (epitaxial) layer is field free except for an
//!   optional depleted region of thickness `depletion_um` at the collection plane. Carriers made
//!   in the depleted region drift straight to the plane (collected in the pixel under them).
//!   Carriers made in the field-free region diffuse until they reach the depletion edge, which
//!   absorbs them; the opposite face of the layer (the interface to the highly doped substrate or
//!   the passivated back surface) reflects them. Without recombination (diffusion lengths in
//!   epitaxial silicon are far longer than a few um), every carrier is collected, and where it
//!   arrives follows from the steady diffusion equation between an absorbing and a reflecting
//!   plane, solved by the method of images.
//! * Pixel charge = N x (exact integral of the arrival density over the pixel): for each image the
//!   integral over a rectangle is a solid angle, a closed form in `atan`.
//!
//! See docs/physics.md (section "Charge collection") for the equations and their checks.

use super::{Deposit, FLAG_TRUNCATED, PixelCharge, Sensor};
use crate::rng::Stream;

/// Pixels whose charge is below this are dropped, electrons.
pub const MIN_PIXEL_CHARGE_E: f64 = 0.5;

/// The arrival density is followed out to this many field-free thicknesses from the deposit;
/// what lies beyond is below e^(-5 pi / 2) = 4e-4 of the deposit and is left out.
pub const REACH_THICKNESSES: f64 = 5.0;

/// Pairs of images summed explicitly (the rest of the alternating series is accelerated).
pub const IMAGE_PAIRS: usize = 16;
/// Partial sums averaged by Euler's transform at the end of the image series.
const EULER_ORDER: usize = 10;

/// Diffusion between an absorbing plane (z = 0, where carriers are collected) and a reflecting
/// plane (z = `thickness_um`).
///
/// A carrier starting at height h > 0 arrives on the absorbing plane with the density (per um^2,
/// r the lateral distance)
///
///   j(r) = sum over integers m of (-1)^m a_m / (2 pi (r^2 + a_m^2)^(3/2)),   a_m = h + 2 m d,
///
/// the flux of the image charges that keep the density zero on the absorbing plane and its
/// gradient zero on the reflecting one. Its integral over the plane is 1, its lateral variance per
/// axis is h (2 d - h) (zero at the absorbing plane, d^2 at the reflecting one), and far from the
/// source it falls as exp(-pi r / (2 d)).
#[derive(Clone, Debug, PartialEq)]
pub struct SlabDiffusion {
    pub thickness_um: f64,
    /// Weight of image pair m after Euler's transform of the last partial sums.
    weights: [f64; IMAGE_PAIRS],
}

/// Signed solid-angle term of one image at height `a` for the corner (x, y): the integral of
/// `a / (2 pi (r^2 + a^2)^(3/2))` over [0, x] x [0, y] is `corner(x, y, a) / (2 pi)`.
#[inline]
fn corner(x: f64, y: f64, a: f64) -> f64 {
    (x * y / (a * (x * x + y * y + a * a).sqrt())).atan()
}

impl SlabDiffusion {
    pub fn new(thickness_um: f64) -> Self {
        // Euler's transform: the average of the partial sums S_{M-1-K} .. S_{M-1} with binomial
        // weights C(K, j) / 2^K; term m enters every partial sum from S_m on.
        let (m_total, k) = (IMAGE_PAIRS, EULER_ORDER);
        let mut binom = vec![1.0f64; k + 1];
        for j in 1..=k {
            binom[j] = binom[j - 1] * (k + 1 - j) as f64 / j as f64;
        }
        let scale = 0.5f64.powi(k as i32);
        let mut weights = [0.0; IMAGE_PAIRS];
        for (m, w) in weights.iter_mut().enumerate() {
            *w = (0..=k).filter(|&j| m_total - 1 - k + j >= m).map(|j| binom[j] * scale).sum();
        }
        Self { thickness_um, weights }
    }

    /// The weight of each pair of images (sign not included: pair m enters with (-1)^m).
    pub fn weights(&self) -> [f64; IMAGE_PAIRS] {
        self.weights
    }

    /// The image heights of pair `m` (sign (-1)^m): h + 2 m d and 2 (m + 1) d - h.
    #[inline]
    fn pair(&self, h: f64, m: usize) -> (f64, f64) {
        let d = self.thickness_um;
        (h + 2.0 * m as f64 * d, 2.0 * (m + 1) as f64 * d - h)
    }

    /// Fraction of the carriers from a point at height `h_um` (0 < h <= d) that arrive inside the
    /// rectangle [x0, x1] x [y0, y1] (um, relative to the point's lateral position).
    pub fn rect_fraction(&self, h_um: f64, x0: f64, x1: f64, y0: f64, y1: f64) -> f64 {
        let mut out = [0.0];
        self.grid_fractions(h_um, &[x0, x1], &[y0, y1], &mut out, &mut Vec::new());
        out[0]
    }

    /// Fractions for a grid of rectangles: `xs` and `ys` are increasing cell edges (um, relative
    /// to the point), `out[j * (xs.len() - 1) + i]` receives the fraction that arrives in
    /// `[xs[i], xs[i+1]] x [ys[j], ys[j+1]]`. `scratch` is reused between calls.
    pub fn grid_fractions(&self, h_um: f64, xs: &[f64], ys: &[f64], out: &mut [f64], scratch: &mut Vec<f64>) {
        let (nx, ny) = (xs.len() - 1, ys.len() - 1);
        debug_assert_eq!(out.len(), nx * ny);
        out.fill(0.0);
        let h = h_um.clamp(1e-6, self.thickness_um);
        let stride = xs.len();
        scratch.clear();
        scratch.resize(xs.len() * ys.len(), 0.0);
        // Corner sums with the pair weights, then one second difference per rectangle.
        for m in 0..IMAGE_PAIRS {
            let w = self.weights[m] * if m % 2 == 0 { 1.0 } else { -1.0 };
            if w == 0.0 {
                continue;
            }
            let (a, b) = self.pair(h, m);
            for (j, &y) in ys.iter().enumerate() {
                let row = &mut scratch[j * stride..(j + 1) * stride];
                for (c, &x) in row.iter_mut().zip(xs) {
                    *c += w * (corner(x, y, a) + corner(x, y, b));
                }
            }
        }
        let inv = 1.0 / (2.0 * std::f64::consts::PI);
        for j in 0..ny {
            for i in 0..nx {
                let s = &scratch;
                let v =
                    s[(j + 1) * stride + i + 1] - s[(j + 1) * stride + i] - s[j * stride + i + 1] + s[j * stride + i];
                out[j * nx + i] = v * inv;
            }
        }
    }
}

/// Distance from a deposit at `z_um` (from the beam-side surface of the stack) to the collection
/// plane of the sensitive layer.
#[inline]
pub fn distance_to_collection_um(sensor: &Sensor, z_um: f64) -> f64 {
    let (z_top, z_bot) = sensor.sensitive_bounds();
    if sensor.collect_at_back { z_bot - z_um } else { z_um - z_top }.max(0.0)
}

/// The pairs of one deposit, where they start: x, y relative to the corner of the pixel of
/// incidence (um), `h_um` the height above the depletion edge (<= 0: made in the depleted region,
/// collected under the point), `pairs` the number of electron-hole pairs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairCloud {
    pub x_um: f64,
    pub y_um: f64,
    pub h_um: f64,
    pub pairs: f64,
}

/// The pair clouds of an event's deposits (coordinates in um in the frame of
/// `entry_x_um, entry_y_um`, z from the beam-side surface of the stack): deposits outside the
/// sensitive layer are ignored; each one's pair count gets its Fano fluctuation from `rng`, in
/// deposit order.
pub fn pair_clouds(
    sensor: &Sensor,
    deposits: &[Deposit],
    entry_x_um: f64,
    entry_y_um: f64,
    rng: &mut Stream,
) -> Vec<PairCloud> {
    let pitch = sensor.pitch_um;
    let (z_top, z_bot) = sensor.sensitive_bounds();
    let (x_corner, y_corner) = ((entry_x_um / pitch).floor() * pitch, (entry_y_um / pitch).floor() * pitch);
    let w_kev = sensor.pair_energy_ev * 1e-3;
    let mut out = Vec::new();
    for d in deposits {
        if !(d.z_um >= z_top && d.z_um <= z_bot) || d.energy_kev <= 0.0 {
            continue;
        }
        let n_mean = d.energy_kev / w_kev;
        let n = (n_mean + (sensor.fano * n_mean).sqrt() * rng.normal()).max(0.0);
        if n <= 0.0 {
            continue;
        }
        out.push(PairCloud {
            x_um: d.x_um - x_corner,
            y_um: d.y_um - y_corner,
            h_um: distance_to_collection_um(sensor, d.z_um) - sensor.depletion_um,
            pairs: n,
        });
    }
    out
}

/// The columns (or rows) of the pixels the diffusion from `x_um` reaches: the pixels that hold
/// [x - reach, x + reach].
#[inline]
pub fn reach_range(x_um: f64, reach_um: f64, pitch_um: f64) -> (i64, i64) {
    (((x_um - reach_um) / pitch_um).floor() as i64, ((x_um + reach_um) / pitch_um).floor() as i64)
}

/// The pairs of `clouds` that arrive in the pixels each cloud reaches: the charge a window misses
/// is this less what it holds.
pub fn reached_pairs(sensor: &Sensor, clouds: &[PairCloud]) -> f64 {
    let d = sensor.field_free_um();
    let slab = SlabDiffusion::new(d);
    let (pitch, reach) = (sensor.pitch_um, REACH_THICKNESSES * d);
    clouds
        .iter()
        .map(|c| {
            if c.h_um <= 0.0 || d <= 0.0 {
                return c.pairs;
            }
            let (c0, c1) = reach_range(c.x_um, reach, pitch);
            let (r0, r1) = reach_range(c.y_um, reach, pitch);
            let (x0, x1) = (c0 as f64 * pitch - c.x_um, (c1 + 1) as f64 * pitch - c.x_um);
            let (y0, y1) = (r0 as f64 * pitch - c.y_um, (r1 + 1) as f64 * pitch - c.y_um);
            c.pairs * slab.rect_fraction(c.h_um, x0, x1, y0, y1)
        })
        .sum()
}

/// Pixels of a collected window (row-major, (2 w + 1)^2 cells, the pixel of incidence in the
/// middle) at or above [`MIN_PIXEL_CHARGE_E`], and [`FLAG_TRUNCATED`] when more than that is
/// missing from the window (`reached` = [`reached_pairs`]).
pub fn window_pixels(grid: &[f64], window_px: i32, reached: f64) -> (Vec<PixelCharge>, u32) {
    let w = window_px.max(0);
    let side = (2 * w + 1) as usize;
    let mut pixels = Vec::new();
    let mut inside = 0.0;
    for (k, &q) in grid.iter().enumerate().take(side * side) {
        inside += q;
        if q >= MIN_PIXEL_CHARGE_E {
            pixels.push(PixelCharge { dx: (k % side) as i32 - w, dy: (k / side) as i32 - w, charge_e: q as f32 });
        }
    }
    let flags = if reached - inside > MIN_PIXEL_CHARGE_E { FLAG_TRUNCATED } else { 0 };
    (pixels, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Modified Bessel function K0 (Abramowitz & Stegun 9.8.5 and 9.8.6, |error| < 2e-7).
    fn bessel_k0(x: f64) -> f64 {
        if x <= 2.0 {
            let t = x / 3.75;
            let t2 = t * t;
            let i0 = 1.0
                + t2 * (3.5156229
                    + t2 * (3.0899424 + t2 * (1.2067492 + t2 * (0.2659732 + t2 * (0.0360768 + t2 * 0.0045813)))));
            let y = x * x / 4.0;
            -(x / 2.0).ln() * i0 - 0.57721566
                + y * (0.42278420
                    + y * (0.23069756 + y * (0.03488590 + y * (0.00262698 + y * (0.00010750 + y * 0.0000074)))))
        } else {
            let y = 2.0 / x;
            (-x).exp() / x.sqrt()
                * (1.25331414
                    + y * (-0.07832358
                        + y * (0.02189568 + y * (-0.01062446 + y * (0.00587872 + y * (-0.00251540 + y * 0.00053208))))))
        }
    }

    /// The arrival density from the eigenfunctions of the slab (sin(k z), k = (n + 1/2) pi / d):
    /// j(r) = sum_n k_n sin(k_n h) K0(k_n r) / (pi d), an expansion independent of the images.
    fn density_eigen(d: f64, h: f64, r: f64) -> f64 {
        (0..400)
            .map(|n| {
                let k = (n as f64 + 0.5) * std::f64::consts::PI / d;
                k * (k * h).sin() * bessel_k0(k * r)
            })
            .sum::<f64>()
            / (std::f64::consts::PI * d)
    }

    const D: f64 = 4.0;
    const HEIGHTS: [f64; 6] = [0.05, 0.5, 1.0, 2.0, 3.5, 4.0];

    /// Every carrier is collected: the fraction over the whole plane is 1.
    #[test]
    fn collected_fraction_is_one() {
        let slab = SlabDiffusion::new(D);
        for h in HEIGHTS {
            let f = slab.rect_fraction(h, -20.0 * D, 20.0 * D, -20.0 * D, 20.0 * D);
            assert!((f - 1.0).abs() < 2e-5, "h = {h}: collected fraction {f}");
            // Symmetric quadrants.
            let q = slab.rect_fraction(h, 0.0, 20.0 * D, 0.0, 20.0 * D);
            assert!((q - 0.25).abs() < 1e-5, "h = {h}: quadrant {q}");
        }
    }

    /// The lateral variance per axis of the arrival point is h (2 d - h), from the diffusion
    /// equation's moments (zero at the collection plane, d^2 from the reflecting face).
    #[test]
    fn lateral_variance_matches_the_moment_solution() {
        let slab = SlabDiffusion::new(D);
        let step = 0.02;
        let n = (12.0 * D / step) as usize;
        let xs: Vec<f64> = (0..=2 * n).map(|i| (i as f64 - n as f64) * step).collect();
        let ys = [-40.0 * D, 40.0 * D];
        let mut out = vec![0.0; 2 * n];
        let mut scratch = Vec::new();
        for h in HEIGHTS {
            slab.grid_fractions(h, &xs, &ys, &mut out, &mut scratch);
            let total: f64 = out.iter().sum();
            let var: f64 = out.iter().enumerate().map(|(i, f)| f * (0.5 * (xs[i] + xs[i + 1])).powi(2)).sum::<f64>()
                - step * step / 12.0;
            let expect = h * (2.0 * D - h);
            assert!((total - 1.0).abs() < 1e-4, "h = {h}: total {total}");
            assert!((var - expect).abs() < 0.01 * expect + 1e-4, "h = {h}: variance {var} um^2, expected {expect}");
        }
    }

    /// The density from the images equals the eigenfunction expansion, near and far.
    #[test]
    fn density_matches_the_eigenfunction_expansion() {
        let slab = SlabDiffusion::new(D);
        let e = 1e-3;
        for h in [0.5, 2.0, 4.0] {
            for r in [1.0, 2.0, 4.0, 8.0, 16.0] {
                let images = slab.rect_fraction(h, r - e, r + e, -e, e) / (4.0 * e * e);
                let eigen = density_eigen(D, h, r);
                assert!(
                    (images - eigen).abs() < 1e-3 * eigen + 1e-9,
                    "h = {h}, r = {r}: images {images:e} vs eigenfunctions {eigen:e} per um^2"
                );
            }
        }
    }

    /// Close to the collection plane the slab looks like a half space: the density tends to
    /// h / (2 pi (r^2 + h^2)^(3/2)).
    #[test]
    fn near_the_plane_the_density_is_the_half_space_one() {
        let slab = SlabDiffusion::new(D);
        let (h, e) = (0.05, 1e-3);
        for r in [0.0, 0.05, 0.1, 0.2] {
            let images = slab.rect_fraction(h, r - e, r + e, -e, e) / (4.0 * e * e);
            let half = h / (2.0 * std::f64::consts::PI * (r * r + h * h).powf(1.5));
            assert!((images - half).abs() < 0.01 * half, "r = {r}: {images} vs {half}");
        }
    }
}
