//! Monte Carlo transport of single electrons (1-1000 keV, designed for 30-300 keV) in a layered
//! silicon pixel sensor, and conversion of the deposited energy into pixel charges.
//!
//! See `docs/physics.md` for the model, its equations, the presets and the validation results.
//!
//! * [`material`](mod@material): materials, ICRU 37 stopping power, Moller, screened-Rutherford/Mott elastic
//!   cross sections, soft-collision oscillator model.
//! * [`transport`](mod@transport): detailed (collision-by-collision) transport with delta rays.
//! * [`charge`]: e-h pairs, Fano noise, diffusion through the field-free epitaxial layer, pixel
//!   integration.
//!
//! All random numbers come from `crate::rng::Stream` with stream `TRANSPORT` and the event index
//! as the counter, so an event depends only on (seed, event index, inputs), never on threading.

pub mod charge;
pub mod collect;
pub mod material;
pub mod transport;
#[cfg(test)]
mod validation;

pub use collect::collect_charge;
pub use material::{DensityEffect, Element, KNOWN_MATERIALS, Material, material};

use crate::rng::{Stream, streams};
use rayon::prelude::*;
use transport::{Geometry, TransportParams, transport};

/// The primary left the stack through the beam-side surface.
pub const FLAG_BACKSCATTERED: u32 = 1;
/// The primary left the stack through the back surface.
pub const FLAG_TRANSMITTED: u32 = 2;
/// Some charge (> 0.5 e) fell outside the stored pixel window.
pub const FLAG_TRUNCATED: u32 = 4;

/// One slab of the sensor stack.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub material: Material,
    pub thickness_um: f64,
    pub sensitive: bool,
}

/// The sensor: a stack of layers (beam side first), the pixel pitch and the charge model.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensor {
    /// Beam side first; exactly one layer is sensitive.
    pub layers: Vec<Layer>,
    pub pitch_um: f64,
    /// Thickness of the depleted (drift) region at the collection plane, um: carriers made there
    /// are collected in the pixel under them; the rest of the sensitive layer is field free and
    /// carriers diffuse through it ([`charge::SlabDiffusion`]). 0 = field free throughout.
    pub depletion_um: f64,
    /// Collection plane at the downstream (back, far-from-beam) face of the sensitive layer
    /// (back-illuminated sensor) instead of its beam-side face (front-illuminated).
    pub collect_at_back: bool,
    /// Mean energy per e-h pair, eV.
    pub pair_energy_ev: f64,
    /// Fano factor.
    pub fano: f64,
}

/// The incident beam.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Beam {
    /// Kinetic energy, keV (1..=1000).
    pub energy_kev: f64,
    /// Angle to the sensor normal, degrees, tilted towards +x (columns); 0..90 exclusive.
    pub tilt_deg: f64,
}

/// Simulation options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimOptions {
    /// Store the primary's track (points every ~`subdeposit_um` of path).
    pub keep_steps: bool,
    /// Half-width of the stored pixel window (the window is (2w+1)^2 pixels).
    pub window_px: i32,
    /// Particles below this energy deposit it locally, keV.
    pub energy_cutoff_kev: f64,
    /// Energy transfers above this are explicit Moller delta rays, keV.
    pub delta_cut_kev: f64,
    /// Losses along at most this much path are merged into one deposit, um.
    pub subdeposit_um: f64,
    /// Transport delta rays (if false they deposit their energy where they are made).
    pub track_secondaries: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            keep_steps: false,
            window_px: 10,
            energy_cutoff_kev: 1.0,
            delta_cut_kev: 1.0,
            subdeposit_um: 0.5,
            track_secondaries: true,
        }
    }
}

/// Charge of one pixel, relative to the pixel of incidence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PixelCharge {
    /// Column offset.
    pub dx: i32,
    /// Row offset.
    pub dy: i32,
    pub charge_e: f32,
}

/// A point on the primary's track; coordinates in um relative to the corner of the pixel of
/// incidence (x = column direction), z from the beam-side surface of the stack.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub x_um: f32,
    pub y_um: f32,
    pub z_um: f32,
    /// Kinetic energy after this segment.
    pub energy_kev: f32,
    /// Energy lost by the primary locally along the segment (all layers; excludes delta rays).
    pub deposit_kev: f32,
}

/// One simulated electron.
#[derive(Clone, Debug, PartialEq)]
pub struct SimEvent {
    /// Entry point inside the pixel of incidence, in [0, 1) pixel units (x = column).
    pub incidence_x_px: f32,
    pub incidence_y_px: f32,
    /// Sparse pixel charges (>= 0.5 e), row-major by (dy, dx).
    pub pixels: Vec<PixelCharge>,
    /// Energy deposited in the sensitive layer, keV.
    pub deposit_kev: f32,
    pub flags: u32,
    /// Path length of the primary in the whole stack, um.
    pub track_length_um: f32,
    pub steps: Vec<Step>,
}

/// An energy deposit; x, y in um (any frame shared with the entry point given to
/// [`collect_charge`]), z in um from the beam-side surface of the stack.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Deposit {
    pub x_um: f64,
    pub y_um: f64,
    pub z_um: f64,
    pub energy_kev: f64,
}

/// Parse a stack description like `"SiO2:1,Si:8*,Si:300"`: comma-separated `material:thickness_um`,
/// beam side first, `*` marks the (exactly one) sensitive layer.
pub fn parse_stack(spec: &str) -> Result<Vec<Layer>, String> {
    let mut layers = Vec::new();
    for (i, item) in spec.split(',').enumerate() {
        let item = item.trim();
        let n = i + 1;
        let (name, thick) = item
            .split_once(':')
            .ok_or_else(|| format!("stack: layer {n} '{item}': expected 'material:thickness_um[*]', e.g. 'Si:8*'"))?;
        let thick = thick.trim();
        let (thick, sensitive) = match thick.strip_suffix('*') {
            Some(t) => (t.trim(), true),
            None => (thick, false),
        };
        let material = material(name).map_err(|e| format!("stack: layer {n} '{item}': {e}"))?;
        let thickness_um: f64 = thick
            .parse()
            .map_err(|_| format!("stack: layer {n} '{item}': thickness_um: expected a number in um, got '{thick}'"))?;
        if !(thickness_um > 0.0 && thickness_um.is_finite()) {
            return Err(format!(
                "stack: layer {n} '{item}': thickness_um: expected a finite value > 0, got {thickness_um}"
            ));
        }
        layers.push(Layer { material, thickness_um, sensitive });
    }
    check_layers(&layers)?;
    Ok(layers)
}

fn check_layers(layers: &[Layer]) -> Result<(), String> {
    if layers.is_empty() {
        return Err("stack: expected at least one layer".into());
    }
    for (i, l) in layers.iter().enumerate() {
        if !(l.thickness_um > 0.0 && l.thickness_um.is_finite()) {
            return Err(format!(
                "stack: layer {}: thickness_um: expected a finite value > 0, got {}",
                i + 1,
                l.thickness_um
            ));
        }
    }
    let ns = layers.iter().filter(|l| l.sensitive).count();
    if ns != 1 {
        return Err(format!("stack: expected exactly one sensitive layer (marked '*'), got {ns}"));
    }
    Ok(())
}

impl Sensor {
    /// A sensor with the default charge model (field free throughout, collection on the
    /// beam-side face, W = 3.6 eV, F = 0.115); validates the inputs.
    pub fn new(layers: Vec<Layer>, pitch_um: f64) -> Result<Self, String> {
        let s = Self { layers, pitch_um, depletion_um: 0.0, collect_at_back: false, pair_energy_ev: 3.6, fano: 0.115 };
        s.validate()?;
        Ok(s)
    }

    /// Check every field; the error names the field and what was expected.
    pub fn validate(&self) -> Result<(), String> {
        check_layers(&self.layers)?;
        if !(self.pitch_um > 0.0 && self.pitch_um.is_finite()) {
            return Err(format!("sensor.pitch_um: expected a finite value > 0, got {}", self.pitch_um));
        }
        if !(self.depletion_um >= 0.0 && self.depletion_um.is_finite()) {
            return Err(format!("sensor.depletion_um: expected a finite value >= 0, got {}", self.depletion_um));
        }
        if !(self.pair_energy_ev > 0.0 && self.pair_energy_ev.is_finite()) {
            return Err(format!("sensor.pair_energy_ev: expected a finite value > 0, got {}", self.pair_energy_ev));
        }
        if !(self.fano >= 0.0 && self.fano.is_finite()) {
            return Err(format!("sensor.fano: expected a finite value >= 0, got {}", self.fano));
        }
        Ok(())
    }

    /// Thickness of the field-free part of the sensitive layer (its thickness less the depleted
    /// region), um; 0 when the depletion reaches through.
    pub fn field_free_um(&self) -> f64 {
        let (top, bottom) = self.sensitive_bounds();
        (bottom - top - self.depletion_um).max(0.0)
    }

    /// z range (um from the beam-side surface) of the sensitive layer.
    pub fn sensitive_bounds(&self) -> (f64, f64) {
        let mut z = 0.0;
        for l in &self.layers {
            if l.sensitive {
                return (z, z + l.thickness_um);
            }
            z += l.thickness_um;
        }
        (f64::NAN, f64::NAN)
    }
}

impl Beam {
    /// A validated beam.
    pub fn new(energy_kev: f64, tilt_deg: f64) -> Result<Self, String> {
        let b = Self { energy_kev, tilt_deg };
        b.validate()?;
        Ok(b)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.energy_kev >= 1.0 && self.energy_kev <= 1000.0) {
            return Err(format!("beam.energy_kev: expected a value in 1..=1000 keV, got {}", self.energy_kev));
        }
        if !(self.tilt_deg > -90.0 && self.tilt_deg < 90.0) {
            return Err(format!("beam.tilt_deg: expected a value in (-90, 90) degrees, got {}", self.tilt_deg));
        }
        Ok(())
    }
}

impl SimOptions {
    pub fn validate(&self) -> Result<(), String> {
        if self.window_px < 0 {
            return Err(format!("options.window_px: expected a value >= 0, got {}", self.window_px));
        }
        if !(self.energy_cutoff_kev > 0.0 && self.energy_cutoff_kev <= 10.0) {
            return Err(format!(
                "options.energy_cutoff_kev: expected a value in (0, 10] keV, got {}",
                self.energy_cutoff_kev
            ));
        }
        if !(self.delta_cut_kev >= 0.5 && self.delta_cut_kev <= 100.0) {
            return Err(format!(
                "options.delta_cut_kev: expected a value in [0.5, 100] keV, got {}",
                self.delta_cut_kev
            ));
        }
        if !(self.subdeposit_um > 0.0 && self.subdeposit_um.is_finite()) {
            return Err(format!("options.subdeposit_um: expected a finite value > 0, got {}", self.subdeposit_um));
        }
        Ok(())
    }
}

/// Known preset names.
pub const KNOWN_PRESETS: &[&str] = &["seed", "4dcamera"];

/// The back-thinned sensor of the LBNL group's Geant4 model ("Thinned type 4um epi") with an
/// epitaxial layer of `epi_um`, beam side first: 0.2 um Si left of the substrate, the epitaxial
/// layer (sensitive), then the front-end stack of oxide and four aluminium layers (Si3N4 0.125 um
/// merged into the last oxide layer: 0.1 + 0.125 + 0.3 = 0.525 um).
pub fn thinned_stack(epi_um: f64) -> String {
    format!("Si:0.2,Si:{epi_um}*,SiO2:0.58,Al:0.395,SiO2:0.3,Al:0.395,SiO2:0.3,Al:0.395,SiO2:0.4,Al:0.58,SiO2:0.525")
}

/// Epitaxial thickness of the sensor of the EMSim notes (the group's Geant4 model), um.
pub const SEED_EPI_UM: f64 = 4.0;

/// Epitaxial (field-free) thickness of the `4dcamera` preset, um: calibrated so that the
/// simulated single-electron response matches the one measured on the real camera at 300 kV
/// (docs/physics.md, "Calibration on the 4D Camera").
pub const FOUR_D_CAMERA_EPI_UM: f64 = 5.75;

/// Named sensor + beam setups (see docs/physics.md for sources and assumptions). Both are the
/// back-thinned sensor of [`thinned_stack`], beam through the thinned back, charge collected at
/// the far (front) face of the epitaxial layer after diffusing through it.
///
/// * `seed`: the sensor of the EMSim notes (J. Renner, LBNL, 2021): 4 um epitaxial layer, 5 um
///   pitch, 300 keV.
/// * `4dcamera`: the NCEM 4D Camera: 10 um pitch, 300 keV, epitaxial thickness calibrated on the
///   camera's measured response ([`FOUR_D_CAMERA_EPI_UM`]).
pub fn preset(name: &str) -> Result<(Sensor, Beam), String> {
    let (pitch_um, epi_um) = match name.trim().to_ascii_lowercase().as_str() {
        "seed" => (5.0, SEED_EPI_UM),
        "4dcamera" | "4d-camera" | "4d_camera" => (10.0, FOUR_D_CAMERA_EPI_UM),
        _ => return Err(format!("preset: unknown preset '{name}', expected one of {}", KNOWN_PRESETS.join(", "))),
    };
    let mut s = Sensor::new(parse_stack(&thinned_stack(epi_um))?, pitch_um)?;
    s.depletion_um = 0.0;
    s.collect_at_back = true;
    Ok((s, Beam::new(300.0, 0.0)?))
}

fn params(opts: &SimOptions) -> TransportParams {
    TransportParams {
        energy_cutoff_kev: opts.energy_cutoff_kev,
        subdeposit_um: opts.subdeposit_um,
        track_secondaries: opts.track_secondaries,
        keep_steps: opts.keep_steps,
        elastic: true,
    }
}

/// An event after transport and pair creation, before charge collection.
struct Transported {
    incidence: (f64, f64),
    clouds: Vec<charge::PairCloud>,
    deposit_kev: f64,
    flags: u32,
    track_length_um: f64,
    steps: Vec<Step>,
}

fn transport_in(
    geo: &Geometry,
    sensor: &Sensor,
    beam: &Beam,
    opts: &SimOptions,
    seed: u64,
    event_index: u64,
) -> Transported {
    let mut rng = Stream::new(seed, streams::TRANSPORT, event_index);
    let ix = rng.uniform();
    let iy = rng.uniform();
    let pitch = sensor.pitch_um;
    let (x0, y0) = (ix * pitch, iy * pitch);
    let t = beam.tilt_deg.to_radians();
    let dir = [t.sin(), 0.0, t.cos()];
    let res = transport(geo, &params(opts), beam.energy_kev, x0, y0, dir, &mut rng);
    let deposits: Vec<Deposit> =
        res.deposits.iter().map(|d| Deposit { x_um: d.x, y_um: d.y, z_um: d.z, energy_kev: d.e }).collect();
    let clouds = charge::pair_clouds(sensor, &deposits, x0, y0, &mut rng);
    let mut flags = 0;
    if res.backscattered {
        flags |= FLAG_BACKSCATTERED;
    }
    if res.transmitted {
        flags |= FLAG_TRANSMITTED;
    }
    Transported {
        incidence: (ix, iy),
        clouds,
        deposit_kev: res.deposit_kev,
        flags,
        track_length_um: res.track_length_um,
        steps: res
            .steps
            .iter()
            .map(|s| Step {
                x_um: s.x as f32,
                y_um: s.y as f32,
                z_um: s.z as f32,
                energy_kev: s.energy_kev as f32,
                deposit_kev: s.deposit_kev as f32,
            })
            .collect(),
    }
}

impl AsRef<[charge::PairCloud]> for Transported {
    fn as_ref(&self) -> &[charge::PairCloud] {
        &self.clouds
    }
}

/// The event from its transport and its collected window.
fn finish(sensor: &Sensor, opts: &SimOptions, t: Transported, window: &[f64]) -> SimEvent {
    let (pixels, cflags) = charge::window_pixels(window, opts.window_px, charge::reached_pairs(sensor, &t.clouds));
    SimEvent {
        incidence_x_px: t.incidence.0 as f32,
        incidence_y_px: t.incidence.1 as f32,
        pixels,
        deposit_kev: t.deposit_kev as f32,
        flags: t.flags | cflags,
        track_length_um: t.track_length_um as f32,
        steps: t.steps,
    }
}

fn simulate_in(
    geo: &Geometry,
    sensor: &Sensor,
    beam: &Beam,
    opts: &SimOptions,
    seed: u64,
    event_index: u64,
) -> SimEvent {
    let t = transport_in(geo, sensor, beam, opts, seed, event_index);
    let window = collect::collect_window_cpu(sensor, &t.clouds, opts.window_px);
    finish(sensor, opts, t, &window)
}

/// Check all inputs of a simulation (one-line error naming the field).
pub fn validate_inputs(sensor: &Sensor, beam: &Beam, opts: &SimOptions) -> Result<(), String> {
    sensor.validate()?;
    beam.validate()?;
    opts.validate()
}

/// Simulate one electron. Inputs are assumed valid (see [`validate_inputs`]); the result depends
/// only on the inputs, `seed` and `event_index`.
pub fn simulate_event(sensor: &Sensor, beam: &Beam, opts: &SimOptions, seed: u64, event_index: u64) -> SimEvent {
    let geo = Geometry::new(&sensor.layers, opts.delta_cut_kev);
    simulate_in(&geo, sensor, beam, opts, seed, event_index)
}

/// Simulate events `first_index .. first_index + count` in parallel (rayon); identical to calling
/// [`simulate_event`] for each index, whatever the number of threads.
pub fn simulate_many(
    sensor: &Sensor,
    beam: &Beam,
    opts: &SimOptions,
    seed: u64,
    first_index: u64,
    count: usize,
) -> Vec<SimEvent> {
    let geo = Geometry::new(&sensor.layers, opts.delta_cut_kev);
    (0..count as u64).into_par_iter().map(|i| simulate_in(&geo, sensor, beam, opts, seed, first_index + i)).collect()
}

/// [`simulate_many`] with the charge collection on `device`: the transport runs on the CPU
/// (rayon), the collection of every event's window in one dispatch of `events/collect` on a GPU
/// device (the same charges within f32 rounding), or on the CPU twin.
pub fn simulate_many_on(
    device: &crate::gpu::Device,
    sensor: &Sensor,
    beam: &Beam,
    opts: &SimOptions,
    seed: u64,
    first_index: u64,
    count: usize,
) -> crate::Result<Vec<SimEvent>> {
    let crate::gpu::Device::Gpu(ctx) = device else {
        return Ok(simulate_many(sensor, beam, opts, seed, first_index, count));
    };
    let geo = Geometry::new(&sensor.layers, opts.delta_cut_kev);
    let transported: Vec<Transported> = (0..count as u64)
        .into_par_iter()
        .map(|i| transport_in(&geo, sensor, beam, opts, seed, first_index + i))
        .collect();
    let windows = collect::collect_windows_gpu(ctx, sensor, &transported, opts.window_px)?;
    Ok(transported.into_iter().zip(windows).map(|(t, w)| finish(sensor, opts, t, &w)).collect())
}
