//! `emsim events simulate`: a Monte Carlo event library from a preset, with optional overrides.
//!
//! The preset ([`physics::preset`]) gives the sensor and the beam; `--stack`, `--energy-kev`,
//! `--tilt-deg` and `--pitch-um` replace the corresponding parts. Events are simulated in chunks of
//! [`CHUNK_EVENTS`] with [`physics::simulate_many`]; every event depends only on (inputs, seed,
//! event index), so the library is identical to one made by a single call, whatever the chunk size
//! or thread count.

use serde_json::json;

use super::physics::{self, Beam, Layer, Sensor, SimEvent, SimOptions};
use crate::io::library::{self, EventLibrary, LibraryMeta, Tracks};
use crate::{Error, Result};

/// Events simulated per [`physics::simulate_many`] call (progress granularity, bounded memory).
pub const CHUNK_EVENTS: usize = 4096;

/// The largest incidence coordinate stored: `f32` just below 1, so that `[0, 1)` holds after the
/// `f64 -> f32` conversion (which may round up to 1.0).
pub const MAX_INCIDENCE_PX: f32 = 0.999_999_94;

/// What `emsim events simulate` asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimulateRequest {
    /// Preset name (`--preset`), see [`physics::KNOWN_PRESETS`].
    pub preset: String,
    /// Replaces the preset's stack (`--stack`, e.g. `"SiO2:1,Si:8*,Si:42"`).
    pub stack: Option<String>,
    /// Replaces the preset's beam energy (`--energy-kev`).
    pub energy_kev: Option<f64>,
    /// Replaces the preset's beam tilt (`--tilt-deg`).
    pub tilt_deg: Option<f64>,
    /// Replaces the preset's pixel pitch (`--pitch-um`).
    pub pitch_um: Option<f64>,
    /// Replaces the preset's depleted thickness at the collection plane (`--depletion-um`).
    pub depletion_um: Option<f64>,
    /// Number of events (`--count`), at least 1.
    pub count: usize,
    pub seed: u64,
    /// Store every event's primary track (`--tracks`).
    pub tracks: bool,
}

/// The resolved inputs of a simulation.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// Canonical preset name as given (lower case, trimmed).
    pub preset: String,
    pub sensor: Sensor,
    pub beam: Beam,
    pub options: SimOptions,
}

/// Resolves and validates the request (preset + overrides). Errors name the flag:
/// `--preset`, `--stack`, `--energy-kev`, `--tilt-deg`, `--pitch-um`, `--count`.
pub fn resolve(req: &SimulateRequest) -> Result<Resolved> {
    if req.count == 0 {
        return Err(Error::invalid("--count", "expected at least 1 event, got 0"));
    }
    if req.count as u64 > u32::MAX as u64 {
        return Err(Error::invalid("--count", format!("expected at most {} events, got {}", u32::MAX, req.count)));
    }
    let (mut sensor, mut beam) = physics::preset(&req.preset).map_err(|m| Error::invalid("--preset", m))?;
    if let Some(spec) = &req.stack {
        sensor.layers = physics::parse_stack(spec).map_err(|m| Error::invalid("--stack", m))?;
    }
    if let Some(e) = req.energy_kev {
        beam.energy_kev = e;
        Beam::new(e, 0.0).map_err(|m| Error::invalid("--energy-kev", m))?;
    }
    if let Some(t) = req.tilt_deg {
        beam.tilt_deg = t;
        Beam::new(300.0, t).map_err(|m| Error::invalid("--tilt-deg", m))?;
    }
    if let Some(p) = req.pitch_um {
        sensor.pitch_um = p;
        if !(p > 0.0 && p.is_finite()) {
            return Err(Error::invalid("--pitch-um", format!("expected a finite pixel pitch > 0 um, got {p}")));
        }
    }
    if let Some(d) = req.depletion_um {
        let (top, bottom) = sensor.sensitive_bounds();
        let thick = bottom - top;
        if !(d >= 0.0 && d <= thick) {
            return Err(Error::invalid(
                "--depletion-um",
                format!("expected a depleted thickness in 0..={thick} um (the sensitive layer), got {d}"),
            ));
        }
        sensor.depletion_um = d;
    }
    let options = SimOptions { keep_steps: req.tracks, ..SimOptions::default() };
    // Anything left (should not happen after the checks above) is reported against the preset.
    sensor.validate().map_err(|m| Error::invalid("--preset", m))?;
    beam.validate().map_err(|m| Error::invalid("--preset", m))?;
    options.validate().map_err(|m| Error::invalid("--preset", m))?;
    physics::validate_inputs(&sensor, &beam, &options).map_err(|m| Error::invalid("--preset", m))?;
    Ok(Resolved { preset: req.preset.trim().to_ascii_lowercase(), sensor, beam, options })
}

/// A stack as a `parse_stack` string, e.g. `"SiO2:1,Si:8*,Si:42"`.
pub fn stack_spec(layers: &[Layer]) -> String {
    layers
        .iter()
        .map(|l| format!("{}:{}{}", l.material.name, l.thickness_um, if l.sensitive { "*" } else { "" }))
        .collect::<Vec<_>>()
        .join(",")
}

/// The sensor as JSON (units in the key names).
pub fn sensor_json(sensor: &Sensor) -> serde_json::Value {
    json!({
        "stack": stack_spec(&sensor.layers),
        "layers": sensor.layers.iter().map(|l| json!({
            "material": l.material.name,
            "thickness_um": l.thickness_um,
            "sensitive": l.sensitive,
        })).collect::<Vec<_>>(),
        "pitch_um": sensor.pitch_um,
        "charge_transport": "diffusion in the field-free epitaxial layer (docs/physics.md)",
        "depletion_um": sensor.depletion_um,
        "field_free_um": sensor.field_free_um(),
        "collect_at_back": sensor.collect_at_back,
        "pair_energy_ev": sensor.pair_energy_ev,
        "fano": sensor.fano,
    })
}

/// The beam as JSON.
pub fn beam_json(beam: &Beam) -> serde_json::Value {
    json!({ "energy_kev": beam.energy_kev, "tilt_deg": beam.tilt_deg })
}

/// The simulation options as JSON.
pub fn options_json(o: &SimOptions) -> serde_json::Value {
    json!({
        "keep_steps": o.keep_steps,
        "window_px": o.window_px,
        "energy_cutoff_kev": o.energy_cutoff_kev,
        "delta_cut_kev": o.delta_cut_kev,
        "subdeposit_um": o.subdeposit_um,
        "track_secondaries": o.track_secondaries,
    })
}

/// `config_json` of a simulated library.
pub fn config_json(r: &Resolved, count: usize, seed: u64) -> String {
    json!({
        "model": "emsim detailed Monte Carlo (docs/physics.md)",
        "preset": r.preset,
        "sensor": sensor_json(&r.sensor),
        "beam": beam_json(&r.beam),
        "options": options_json(&r.options),
        "count": count,
        "seed": seed,
    })
    .to_string()
}

/// Library flags from physics flags (the values agree today; this keeps them decoupled).
fn library_flags(f: u32) -> u32 {
    let mut out = 0;
    if f & physics::FLAG_BACKSCATTERED != 0 {
        out |= library::FLAG_BACKSCATTERED;
    }
    if f & physics::FLAG_TRANSMITTED != 0 {
        out |= library::FLAG_TRANSMITTED;
    }
    if f & physics::FLAG_TRUNCATED != 0 {
        out |= library::FLAG_TRUNCATED;
    }
    out
}

/// Appends simulated events to a library (and its tracks, if any).
pub fn push_events(lib: &mut EventLibrary, events: &[SimEvent]) {
    let mut pixels = Vec::new();
    for ev in events {
        pixels.clear();
        pixels.extend(ev.pixels.iter().map(|p| (p.dx, p.dy, p.charge_e)));
        lib.push(
            ev.incidence_x_px.clamp(0.0, MAX_INCIDENCE_PX),
            ev.incidence_y_px.clamp(0.0, MAX_INCIDENCE_PX),
            ev.deposit_kev,
            library_flags(ev.flags),
            ev.track_length_um,
            &pixels,
        );
        if let Some(t) = &mut lib.tracks {
            for s in &ev.steps {
                t.x_um.push(s.x_um);
                t.y_um.push(s.y_um);
                t.z_um.push(s.z_um);
                t.energy_kev.push(s.energy_kev);
                t.deposit_kev.push(s.deposit_kev);
            }
            t.offsets.push(t.x_um.len() as u64);
        }
    }
}

/// Simulates a Monte Carlo event library (`source = "monte-carlo"`).
///
/// With `progress`, an indicatif bar on stderr counts events. With `req.tracks`, the library holds
/// every event's primary track (`Step`s: um relative to the corner of the pixel of incidence, z from
/// the beam-side surface).
pub fn simulate_library(req: &SimulateRequest, progress: bool) -> Result<EventLibrary> {
    simulate_library_chunked(req, &crate::gpu::Device::Cpu, progress, CHUNK_EVENTS)
}

/// [`simulate_library`] with the charge collection on `device` ([`physics::simulate_many_on`]):
/// on a GPU the charges equal the CPU path's within f32 rounding, not bit for bit.
pub fn simulate_library_on(req: &SimulateRequest, device: &crate::gpu::Device, progress: bool) -> Result<EventLibrary> {
    simulate_library_chunked(req, device, progress, CHUNK_EVENTS)
}

fn simulate_library_chunked(
    req: &SimulateRequest,
    device: &crate::gpu::Device,
    progress: bool,
    chunk: usize,
) -> Result<EventLibrary> {
    let r = resolve(req)?;
    let mut lib = EventLibrary::new(LibraryMeta {
        source: "monte-carlo".into(),
        pitch_um: r.sensor.pitch_um,
        energy_kev: r.beam.energy_kev,
        seed: req.seed,
        config_json: config_json(&r, req.count, req.seed),
    });
    if req.tracks {
        lib.tracks = Some(Tracks { offsets: vec![0], ..Tracks::default() });
    }
    let bar = crate::frames::run::progress_bar(progress, req.count as u64, "events");
    let mut first = 0usize;
    while first < req.count {
        let n = chunk.max(1).min(req.count - first);
        let events = physics::simulate_many_on(device, &r.sensor, &r.beam, &r.options, req.seed, first as u64, n)?;
        push_events(&mut lib, &events);
        first += n;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(lib)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(count: usize) -> SimulateRequest {
        SimulateRequest {
            preset: "seed".into(),
            stack: None,
            energy_kev: None,
            tilt_deg: None,
            pitch_um: None,
            depletion_um: None,
            count,
            seed: 11,
            tracks: true,
        }
    }

    #[test]
    fn chunked_equals_single_call() {
        let r = resolve(&req(5)).unwrap();
        let lib = simulate_library_chunked(&req(5), &crate::gpu::Device::Cpu, false, 2).unwrap();
        assert_eq!(lib, simulate_library(&req(5), false).unwrap());
        let mut one = EventLibrary::new(lib.meta.clone());
        one.tracks = Some(Tracks { offsets: vec![0], ..Tracks::default() });
        push_events(&mut one, &physics::simulate_many(&r.sensor, &r.beam, &r.options, 11, 0, 5));
        assert_eq!(lib, one);
        lib.validate(std::path::Path::new("test")).unwrap();
        assert_eq!(lib.tracks.as_ref().unwrap().offsets.len(), 6);
    }

    #[test]
    fn stack_spec_roundtrips() {
        let layers = physics::parse_stack("SiO2:1,Si:8*,Si:42").unwrap();
        assert_eq!(stack_spec(&layers), "SiO2:1,Si:8*,Si:42");
        assert_eq!(physics::parse_stack(&stack_spec(&layers)).unwrap(), layers);
    }
}
