//! Kernel `events/collect` (shaders/events/collect.wgsl): the charge of an event's pair clouds
//! collected in the window of pixels around its pixel of incidence, after diffusion through the
//! field-free layer ([`super::charge::SlabDiffusion`]). One invocation per (event, window pixel);
//! the CPU twin computes each cloud's corners once and shares them between neighbouring pixels, in
//! f64 (the kernel: f32, every pixel on its own), so the two agree within rounding.

use bytemuck::{Pod, Zeroable};

use super::charge::{
    IMAGE_PAIRS, PairCloud, REACH_THICKNESSES, SlabDiffusion, pair_clouds, reach_range, reached_pairs, window_pixels,
};
use super::{Deposit, PixelCharge, Sensor, SimOptions};
use crate::gpu::GpuContext;
use crate::rng::Stream;

/// The uniform of `events/collect`; its size and layout are checked against the WGSL struct by
/// `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct CollectParams {
    pub n_events: u32,
    /// Half-width of the window, pixels.
    pub window_half: i32,
    /// Side of the window, 2 w + 1.
    pub side: u32,
    pub _pad0: u32,
    pub pitch_um: f32,
    pub field_free_um: f32,
    pub reach_um: f32,
    pub _pad1: f32,
    /// Weight of each pair of images (pair m enters with (-1)^m).
    pub weights: [f32; IMAGE_PAIRS],
}
const _: () = assert!(std::mem::size_of::<CollectParams>() == 96);

impl CollectParams {
    pub fn new(sensor: &Sensor, window_px: i32, n_events: u32) -> Self {
        let d = sensor.field_free_um();
        let w = window_px.max(0);
        Self {
            n_events,
            window_half: w,
            side: (2 * w + 1) as u32,
            pitch_um: sensor.pitch_um as f32,
            field_free_um: d as f32,
            reach_um: (REACH_THICKNESSES * d) as f32,
            weights: SlabDiffusion::new(d).weights().map(|v| v as f32),
            ..Default::default()
        }
    }
}

/// CPU twin of `events/collect` for one event: the (2 w + 1)^2 window, row-major, pixel of
/// incidence in the middle, electrons.
pub fn collect_window_cpu(sensor: &Sensor, clouds: &[PairCloud], window_px: i32) -> Vec<f64> {
    let w = window_px.max(0) as i64;
    let side = (2 * w + 1) as usize;
    let mut grid = vec![0.0f64; side * side];
    let pitch = sensor.pitch_um;
    let d = sensor.field_free_um();
    let slab = SlabDiffusion::new(d);
    let reach = REACH_THICKNESSES * d;
    let (mut xs, mut ys, mut frac, mut scratch) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for c in clouds {
        if c.h_um <= 0.0 || d <= 0.0 {
            let (col, row) = ((c.x_um / pitch).floor() as i64, (c.y_um / pitch).floor() as i64);
            if col.abs() <= w && row.abs() <= w {
                grid[((row + w) as usize) * side + (col + w) as usize] += c.pairs;
            }
            continue;
        }
        // The cloud's reach, clipped to the window.
        let (c0, c1) = reach_range(c.x_um, reach, pitch);
        let (r0, r1) = reach_range(c.y_um, reach, pitch);
        let (c0, c1, r0, r1) = (c0.max(-w), c1.min(w), r0.max(-w), r1.min(w));
        if c0 > c1 || r0 > r1 {
            continue;
        }
        xs.clear();
        xs.extend((c0..=c1 + 1).map(|k| k as f64 * pitch - c.x_um));
        ys.clear();
        ys.extend((r0..=r1 + 1).map(|k| k as f64 * pitch - c.y_um));
        let nx = (c1 - c0 + 1) as usize;
        frac.clear();
        frac.resize(nx * (r1 - r0 + 1) as usize, 0.0);
        slab.grid_fractions(c.h_um, &xs, &ys, &mut frac, &mut scratch);
        for (k, &f) in frac.iter().enumerate() {
            if f > 0.0 {
                let (col, row) = (c0 + (k % nx) as i64, r0 + (k / nx) as i64);
                grid[((row + w) as usize) * side + (col + w) as usize] += c.pairs * f;
            }
        }
    }
    grid
}

/// Runs `events/collect` on the GPU for many events: `clouds[e]` holds event e's pair clouds;
/// returns each event's window as [`collect_window_cpu`] does.
pub fn collect_windows_gpu<C: AsRef<[PairCloud]>>(
    ctx: &GpuContext,
    sensor: &Sensor,
    clouds: &[C],
    window_px: i32,
) -> crate::Result<Vec<Vec<f64>>> {
    let p = CollectParams::new(sensor, window_px, clouds.len() as u32);
    let cells = (p.side * p.side) as usize;
    if clouds.is_empty() {
        return Ok(Vec::new());
    }
    let mut offsets = Vec::with_capacity(clouds.len() + 1);
    let mut flat: Vec<[f32; 4]> = Vec::new();
    offsets.push(0u32);
    for ev in clouds {
        flat.extend(ev.as_ref().iter().map(|c| [c.x_um as f32, c.y_um as f32, c.h_um as f32, c.pairs as f32]));
        offsets.push(flat.len() as u32);
    }
    if flat.is_empty() {
        flat.push([0.0; 4]); // a binding may not be empty
    }
    let n_cells = (clouds.len() * cells) as u64;
    let params = ctx.uniform("collect_params", &p);
    let offsets = ctx.upload("cloud_offsets", &offsets)?;
    let flat = ctx.upload("clouds", &flat)?;
    let grid = ctx.storage("windows", n_cells * 4)?;
    let mut enc = ctx.encoder("collect");
    ctx.dispatch(
        &mut enc,
        &crate::shaders::EVENTS_COLLECT,
        &[("params", &params), ("offsets", &offsets), ("clouds", &flat), ("windows", &grid)],
        n_cells,
    )?;
    let rb = ctx.readback(&mut enc, &grid, n_cells * 4);
    ctx.submit_and_wait(enc)?;
    let all: Vec<f32> = rb.read(ctx)?;
    Ok(all.chunks(cells).map(|c| c.iter().map(|&v| v as f64).collect()).collect())
}

/// Convert deposits (coordinates in um in the frame of `entry_x_um, entry_y_um`, z from the
/// beam-side surface of the stack) into pixel charges relative to the pixel containing the entry
/// point: [`pair_clouds`], then the CPU path of the collection kernel ([`collect_window_cpu`]), then
/// [`window_pixels`]. Returns (pixels, flags) where
/// flags has [`super::FLAG_TRUNCATED`] if more than 0.5 e fell outside the +-`opts.window_px` window.
pub fn collect_charge(
    sensor: &Sensor,
    deposits: &[Deposit],
    entry_x_um: f64,
    entry_y_um: f64,
    opts: &SimOptions,
    rng: &mut Stream,
) -> (Vec<PixelCharge>, u32) {
    let clouds = pair_clouds(sensor, deposits, entry_x_um, entry_y_um, rng);
    let grid = collect_window_cpu(sensor, &clouds, opts.window_px);
    window_pixels(&grid, opts.window_px, reached_pairs(sensor, &clouds))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Charge made in the depleted region lands in the pixel under it; charge from the field-free
    /// region spreads more the farther it starts from the collection plane.
    #[test]
    fn depletion_and_depth() {
        let opts = SimOptions::default();
        let mut sensor = Sensor::new(super::super::parse_stack("Si:0.2,Si:6*,SiO2:1").unwrap(), 10.0).unwrap();
        sensor.collect_at_back = true;
        sensor.depletion_um = 2.0;
        let (_, bottom) = sensor.sensitive_bounds();
        let one = |z: f64| {
            // 10,000 pairs: the pixels dropped below 0.5 e- hold a negligible part.
            let dep = [Deposit { x_um: 5.0, y_um: 5.0, z_um: z, energy_kev: 36.0 }];
            let mut s = sensor.clone();
            s.fano = 0.0;
            let (px, _) = collect_charge(&s, &dep, 5.0, 5.0, &opts, &mut Stream::new(1, 0, 0));
            let centre = px.iter().find(|p| p.dx == 0 && p.dy == 0).map_or(0.0, |p| p.charge_e as f64);
            let total: f64 = px.iter().map(|p| p.charge_e as f64).sum();
            (centre, total)
        };
        let (c, t) = one(bottom - 1.0);
        assert!((c - 1e4).abs() < 1e-2 && (t - 1e4).abs() < 1e-2, "depleted: centre {c}, total {t}");
        let (c_near, t_near) = one(bottom - 2.5);
        let (c_far, t_far) = one(bottom - 5.9);
        assert!(c_far < c_near && c_near < 1e4, "centre pixel: far {c_far}, near {c_near}");
        assert!((t_near - 1e4).abs() < 10.0 && (t_far - 1e4).abs() < 10.0, "totals {t_near} {t_far}");
    }
}
