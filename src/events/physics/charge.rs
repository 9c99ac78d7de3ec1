//! Energy deposits -> e-h pairs -> diffusion -> pixel charges.
//!
//! * N = E / W pairs per deposit, W = 3.6 eV; Fano fluctuations as a Gaussian of variance F N
//!   (F = 0.115), truncated at 0.
//! * Each deposit's charge spreads as an isotropic 2-D Gaussian whose width depends on the
//!   distance d from the deposit to the collection plane of the sensitive layer:
//!   sigma(d) = sqrt(sigma0^2 + (k d)^2)  (k = `diffusion_slope`).
//! * Pixel charge = N x (integral of the Gaussian over the pixel) = N x product of erf
//!   differences along x and y (not point samples).

use super::{Deposit, FLAG_TRUNCATED, PixelCharge, Sensor, SimOptions};
use crate::rng::Stream;

/// Pixels whose charge is below this are dropped, electrons.
pub const MIN_PIXEL_CHARGE_E: f64 = 0.5;

#[inline]
fn axis_fractions(x: f64, sigma: f64, pitch: f64, out: &mut Vec<(i64, f64)>) {
    out.clear();
    let r = 5.0 * sigma;
    let lo = ((x - r) / pitch).floor() as i64;
    let hi = ((x + r) / pitch).floor() as i64;
    let inv = 1.0 / (std::f64::consts::SQRT_2 * sigma);
    let mut prev = libm::erf((lo as f64 * pitch - x) * inv);
    for c in lo..=hi {
        let next = libm::erf(((c + 1) as f64 * pitch - x) * inv);
        let f = 0.5 * (next - prev);
        if f > 0.0 {
            out.push((c, f));
        }
        prev = next;
    }
}

/// Convert deposits (coordinates in um in the frame of `entry_x_um, entry_y_um`, z from the
/// beam-side surface of the stack) into pixel charges relative to the pixel containing the entry
/// point. Deposits outside the sensitive layer are ignored. Returns (pixels, flags) where flags
/// has [`FLAG_TRUNCATED`] if more than 0.5 e fell outside the +-`opts.window_px` window.
pub fn collect_charge(
    sensor: &Sensor,
    deposits: &[Deposit],
    entry_x_um: f64,
    entry_y_um: f64,
    opts: &SimOptions,
    rng: &mut Stream,
) -> (Vec<PixelCharge>, u32) {
    let pitch = sensor.pitch_um;
    let w = opts.window_px.max(0) as i64;
    let side = (2 * w + 1) as usize;
    let mut grid = vec![0.0f64; side * side];
    let mut outside = 0.0f64;
    let (z_top, z_bot) = sensor.sensitive_bounds();
    let col0 = (entry_x_um / pitch).floor() as i64;
    let row0 = (entry_y_um / pitch).floor() as i64;
    let mut fx = Vec::new();
    let mut fy = Vec::new();
    let w_kev = sensor.pair_energy_ev * 1e-3;
    for d in deposits {
        if !(d.z_um >= z_top && d.z_um <= z_bot) || d.energy_kev <= 0.0 {
            continue;
        }
        let n_mean = d.energy_kev / w_kev;
        let n = (n_mean + (sensor.fano * n_mean).sqrt() * rng.normal()).max(0.0);
        if n <= 0.0 {
            continue;
        }
        let dist = if sensor.collect_at_back { z_bot - d.z_um } else { d.z_um - z_top }.max(0.0);
        let sigma = (sensor.diffusion_sigma0_um.powi(2) + (sensor.diffusion_slope * dist).powi(2)).sqrt().max(1e-3);
        axis_fractions(d.x_um, sigma, pitch, &mut fx);
        axis_fractions(d.y_um, sigma, pitch, &mut fy);
        for &(r, fyv) in &fy {
            let dy = r - row0;
            for &(c, fxv) in &fx {
                let dx = c - col0;
                let q = n * fxv * fyv;
                if dx.abs() <= w && dy.abs() <= w {
                    grid[((dy + w) as usize) * side + (dx + w) as usize] += q;
                } else {
                    outside += q;
                }
            }
        }
    }
    let mut pixels = Vec::new();
    for j in 0..side {
        for i in 0..side {
            let q = grid[j * side + i];
            if q >= MIN_PIXEL_CHARGE_E {
                pixels.push(PixelCharge { dx: i as i32 - w as i32, dy: j as i32 - w as i32, charge_e: q as f32 });
            }
        }
    }
    let flags = if outside > MIN_PIXEL_CHARGE_E { FLAG_TRUNCATED } else { 0 };
    (pixels, flags)
}
