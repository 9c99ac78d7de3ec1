//! A parametric event library for tests and until the Monte Carlo library exists: NOT physics.
//!
//! Each event is a charge cloud plus a short straight track: total charge from a Moyal
//! (Landau-like) distribution, a track of exponential length in a random direction starting at the
//! incidence point, charge shared equally by deposits along it, each spread by a 2-D Gaussian and
//! integrated exactly over the pixels (erf). Libraries made here carry `source = "parametric"`.

use crate::io::library::{EventLibrary, LibraryMeta};
use crate::rng::{Stream, streams};

/// Parameters of the parametric model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ParametricModel {
    pub pitch_um: f64,
    pub energy_kev: f64,
    /// Most probable total charge, electrons.
    pub mpv_charge_e: f64,
    /// Moyal width of the total charge, electrons.
    pub width_charge_e: f64,
    /// Mean track length, pixels (exponential, capped at `max_track_px`).
    pub mean_track_px: f64,
    pub max_track_px: f64,
    /// Gaussian spread of each deposit, pixels.
    pub sigma_px: f64,
    /// Deposits along the track.
    pub n_deposits: u32,
    /// Pixels below this charge are not stored.
    pub min_charge_e: f32,
}

impl Default for ParametricModel {
    fn default() -> Self {
        Self {
            pitch_um: 5.0,
            energy_kev: 300.0,
            mpv_charge_e: 1000.0,
            width_charge_e: 150.0,
            mean_track_px: 1.0,
            max_track_px: 6.0,
            sigma_px: 0.35,
            n_deposits: 8,
            min_charge_e: 0.5,
        }
    }
}

/// Charge of a unit-charge 2-D Gaussian at `(cx, cy)` (pixel units) falling in pixel `(col, row)`.
pub fn gaussian_pixel_fraction(cx: f64, cy: f64, sigma: f64, col: i32, row: i32) -> f64 {
    let s = std::f64::consts::SQRT_2 * sigma;
    let fx = 0.5 * (libm::erf((col as f64 + 1.0 - cx) / s) - libm::erf((col as f64 - cx) / s));
    let fy = 0.5 * (libm::erf((row as f64 + 1.0 - cy) / s) - libm::erf((row as f64 - cy) / s));
    fx * fy
}

/// One parametric event: `(incidence_x, incidence_y, pixels)`; pixels relative to the pixel of incidence.
pub fn parametric_event(model: &ParametricModel, seed: u64, index: u64) -> (f32, f32, Vec<(i32, i32, f32)>) {
    let mut rng = Stream::new(seed, streams::PARAMETRIC, index);
    let ix = (rng.uniform() as f32).min(0.999_999_94);
    let iy = (rng.uniform() as f32).min(0.999_999_94);
    let z = rng.normal();
    let total = (model.mpv_charge_e - model.width_charge_e * (z * z).max(1e-300).ln()).max(0.1 * model.mpv_charge_e);
    let len = (model.mean_track_px * rng.exponential()).min(model.max_track_px);
    let theta = std::f64::consts::TAU * rng.uniform();
    let (dirx, diry) = (theta.cos(), theta.sin());
    let q = total / model.n_deposits as f64;
    let reach = (len + 4.0 * model.sigma_px + 1.0).ceil() as i32;
    let mut pixels = Vec::new();
    for row in -reach..=reach {
        for col in -reach..=reach {
            let mut charge = 0.0;
            for k in 0..model.n_deposits {
                let t = len * (k as f64 + 0.5) / model.n_deposits as f64;
                let (cx, cy) = (ix as f64 + t * dirx, iy as f64 + t * diry);
                charge += q * gaussian_pixel_fraction(cx, cy, model.sigma_px, col, row);
            }
            if charge as f32 >= model.min_charge_e {
                pixels.push((col, row, charge as f32));
            }
        }
    }
    (ix, iy, pixels)
}

/// A parametric library of `count` events.
pub fn parametric_library(model: &ParametricModel, count: usize, seed: u64) -> EventLibrary {
    use rayon::prelude::*;
    let events: Vec<_> = (0..count as u64).into_par_iter().map(|i| parametric_event(model, seed, i)).collect();
    let mut lib = EventLibrary::new(LibraryMeta {
        source: "parametric".into(),
        pitch_um: model.pitch_um,
        energy_kev: model.energy_kev,
        seed,
        config_json: serde_json::to_string(model).unwrap_or_default(),
    });
    for (ix, iy, pixels) in events {
        let total: f32 = pixels.iter().map(|p| p.2).sum();
        let deposit_kev = total * 3.6e-3;
        let track_um = 0.0;
        lib.push(ix, iy, deposit_kev, 0, track_um, &pixels);
    }
    lib
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_sum_to_one() {
        let mut s = 0.0;
        for r in -5..=5 {
            for c in -5..=5 {
                s += gaussian_pixel_fraction(0.3, 0.7, 0.6, c, r);
            }
        }
        assert!((s - 1.0).abs() < 1e-9, "{s}");
    }

    #[test]
    fn library_is_deterministic_and_valid() {
        let m = ParametricModel::default();
        let a = parametric_library(&m, 50, 3);
        let b = parametric_library(&m, 50, 3);
        assert_eq!(a, b);
        a.validate(std::path::Path::new("test")).unwrap();
        let mean: f64 = (0..a.len()).map(|i| a.total_charge_e(i)).sum::<f64>() / a.len() as f64;
        assert!(mean > 800.0 && mean < 2500.0, "mean charge {mean}");
    }
}
