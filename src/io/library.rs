//! The event library: single-electron events as sparse pixel charges around the pixel of incidence.
//! Written by `emsim events`, read by `frames` and `train`. Format: `docs/formats.md` ("event library").

use std::path::Path;

use super::h5util::{self, err, num_attr, read_column, set_attr, set_str_attr, str_attr, write_column};
use crate::{Error, Result};

pub const SCHEMA: &str = "emsim-events/1";

/// Event flags (bit field).
pub const FLAG_BACKSCATTERED: u32 = 1;
pub const FLAG_TRANSMITTED: u32 = 2;
/// Some charge fell outside the stored pixel window.
pub const FLAG_TRUNCATED: u32 = 4;

/// Provenance and physical parameters of a library (file attributes).
#[derive(Clone, Debug, PartialEq)]
pub struct LibraryMeta {
    /// "monte-carlo", "parametric" (test library, not physics), "geant4-import" or "hits-import".
    pub source: String,
    pub pitch_um: f64,
    pub energy_kev: f64,
    pub seed: u64,
    /// The resolved generating parameters as JSON (sensor stack, preset, model options).
    pub config_json: String,
}

/// Per-event tracks (`events --tracks`): every transport step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tracks {
    /// CSR offsets into the step columns, one more than the number of events.
    pub offsets: Vec<u64>,
    pub x_um: Vec<f32>,
    pub y_um: Vec<f32>,
    pub z_um: Vec<f32>,
    pub energy_kev: Vec<f32>,
    pub deposit_kev: Vec<f32>,
}

/// An event library in memory (columnar, CSR over pixels).
#[derive(Clone, Debug, PartialEq)]
pub struct EventLibrary {
    pub meta: LibraryMeta,
    /// CSR offsets into the pixel columns, `len() == n_events + 1`.
    pub offsets: Vec<u64>,
    /// Incidence point inside the pixel of incidence, `[0, 1)` pixel units, x = column.
    pub incidence_x_px: Vec<f32>,
    pub incidence_y_px: Vec<f32>,
    /// Energy deposited in the sensitive layer.
    pub deposit_kev: Vec<f32>,
    pub flags: Vec<u32>,
    /// Path length of the primary electron in the sensor stack.
    pub track_length_um: Vec<f32>,
    /// Column offset of each pixel from the pixel of incidence.
    pub dx_px: Vec<i32>,
    /// Row offset of each pixel from the pixel of incidence.
    pub dy_px: Vec<i32>,
    /// Collected charge (electron-hole pairs).
    pub charge_e: Vec<f32>,
    pub tracks: Option<Tracks>,
}

/// One event's pixels, as `(dx_px, dy_px, charge_e)`.
pub type EventPixels = Vec<(i32, i32, f32)>;

impl EventLibrary {
    pub fn new(meta: LibraryMeta) -> Self {
        Self {
            meta,
            offsets: vec![0],
            incidence_x_px: vec![],
            incidence_y_px: vec![],
            deposit_kev: vec![],
            flags: vec![],
            track_length_um: vec![],
            dx_px: vec![],
            dy_px: vec![],
            charge_e: vec![],
            tracks: None,
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one event.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        incidence_x_px: f32,
        incidence_y_px: f32,
        deposit_kev: f32,
        flags: u32,
        track_length_um: f32,
        pixels: &[(i32, i32, f32)],
    ) {
        self.incidence_x_px.push(incidence_x_px);
        self.incidence_y_px.push(incidence_y_px);
        self.deposit_kev.push(deposit_kev);
        self.flags.push(flags);
        self.track_length_um.push(track_length_um);
        for &(dx, dy, q) in pixels {
            self.dx_px.push(dx);
            self.dy_px.push(dy);
            self.charge_e.push(q);
        }
        self.offsets.push(self.dx_px.len() as u64);
    }

    /// The pixel range of event `i`.
    pub fn pixel_range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i] as usize..self.offsets[i + 1] as usize
    }

    /// Total charge of event `i`, electrons.
    pub fn total_charge_e(&self, i: usize) -> f64 {
        self.charge_e[self.pixel_range(i)].iter().map(|&q| q as f64).sum()
    }

    /// Checks internal consistency; `origin` names the file in errors.
    #[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(x > 0.0)` rejects NaN with the values out of range")]
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let n = self.len();
        let bad = |m: String| Err(Error::file(origin, m));
        if n == 0 {
            return bad("event library has no events".into());
        }
        for (name, len) in [
            ("events/incidence_x_px", self.incidence_x_px.len()),
            ("events/incidence_y_px", self.incidence_y_px.len()),
            ("events/deposit_kev", self.deposit_kev.len()),
            ("events/flags", self.flags.len()),
            ("events/track_length_um", self.track_length_um.len()),
        ] {
            if len != n {
                return bad(format!("dataset /{name} has {len} entries, expected {n} (one per event)"));
            }
        }
        let p = self.dx_px.len();
        if self.dy_px.len() != p || self.charge_e.len() != p {
            return bad("datasets /pixels/dx_px, /pixels/dy_px, /pixels/charge_e differ in length".into());
        }
        if self.offsets[0] != 0
            || *self.offsets.last().unwrap() != p as u64
            || self.offsets.windows(2).any(|w| w[0] > w[1])
        {
            return bad(format!("dataset /events/offsets must rise from 0 to {p} (the number of pixels)"));
        }
        for i in 0..n {
            let (x, y) = (self.incidence_x_px[i], self.incidence_y_px[i]);
            if !(0.0..1.0).contains(&x) || !(0.0..1.0).contains(&y) {
                return bad(format!("event {i}: incidence point ({x}, {y}) must lie in [0, 1) pixel units"));
            }
        }
        if let Some(j) = self.charge_e.iter().position(|q| !q.is_finite() || *q < 0.0) {
            return bad(format!("pixel {j}: charge_e = {} must be finite and >= 0", self.charge_e[j]));
        }
        if let Some(j) = (0..p).find(|&j| self.dx_px[j].abs() > 32767 || self.dy_px[j].abs() > 32767) {
            return bad(format!("pixel {j}: offset ({}, {}) exceeds +-32767 pixels", self.dx_px[j], self.dy_px[j]));
        }
        if !(self.meta.pitch_um > 0.0) {
            return bad(format!("attribute pitch_um = {} must be > 0", self.meta.pitch_um));
        }
        Ok(())
    }

    /// Writes the library (HDF5) to `path` directly; callers use [`crate::io::atomic::Output`].
    pub fn write_h5(&self, path: &Path) -> Result<()> {
        let e = err(path, "writing event library");
        let f = hdf5::File::create(path).map_err(&e)?;
        set_str_attr(&f, "schema", SCHEMA).map_err(&e)?;
        set_str_attr(&f, "generator", &crate::generator()).map_err(&e)?;
        set_str_attr(&f, "source", &self.meta.source).map_err(&e)?;
        set_attr(&f, "pitch_um", self.meta.pitch_um).map_err(&e)?;
        set_attr(&f, "energy_kev", self.meta.energy_kev).map_err(&e)?;
        set_attr(&f, "seed", self.meta.seed).map_err(&e)?;
        set_attr(&f, "n_events", self.len() as u64).map_err(&e)?;
        set_str_attr(&f, "config_json", &self.meta.config_json).map_err(&e)?;
        let ev = f.create_group("events").map_err(&e)?;
        write_column(&ev, "offsets", &self.offsets, "index").map_err(&e)?;
        write_column(&ev, "incidence_x_px", &self.incidence_x_px, "px").map_err(&e)?;
        write_column(&ev, "incidence_y_px", &self.incidence_y_px, "px").map_err(&e)?;
        write_column(&ev, "deposit_kev", &self.deposit_kev, "keV").map_err(&e)?;
        write_column(&ev, "flags", &self.flags, "1=backscattered,2=transmitted,4=truncated").map_err(&e)?;
        write_column(&ev, "track_length_um", &self.track_length_um, "um").map_err(&e)?;
        let px = f.create_group("pixels").map_err(&e)?;
        write_column(&px, "dx_px", &self.dx_px, "px").map_err(&e)?;
        write_column(&px, "dy_px", &self.dy_px, "px").map_err(&e)?;
        write_column(&px, "charge_e", &self.charge_e, "e").map_err(&e)?;
        if let Some(t) = &self.tracks {
            let g = f.create_group("tracks").map_err(&e)?;
            write_column(&g, "offsets", &t.offsets, "index").map_err(&e)?;
            write_column(&g, "x_um", &t.x_um, "um").map_err(&e)?;
            write_column(&g, "y_um", &t.y_um, "um").map_err(&e)?;
            write_column(&g, "z_um", &t.z_um, "um").map_err(&e)?;
            write_column(&g, "energy_kev", &t.energy_kev, "keV").map_err(&e)?;
            write_column(&g, "deposit_kev", &t.deposit_kev, "keV").map_err(&e)?;
        }
        f.close().map_err(&e)?;
        Ok(())
    }

    /// Reads and validates a library.
    pub fn read_h5(path: &Path) -> Result<Self> {
        let f = h5util::open(path, "event library")?;
        match str_attr(&f, "schema") {
            Some(s) if s == SCHEMA => {}
            Some(s) => {
                return Err(Error::file(path, format!("schema '{s}' is not an event library (expected '{SCHEMA}')")));
            }
            None => {
                return Err(Error::file(
                    path,
                    format!("not an emsim event library (no 'schema' attribute; expected '{SCHEMA}')"),
                ));
            }
        }
        let pitch_um =
            num_attr::<f64>(&f, "pitch_um").ok_or_else(|| Error::file(path, "missing attribute pitch_um"))?;
        let meta = LibraryMeta {
            source: str_attr(&f, "source").unwrap_or_default(),
            pitch_um,
            energy_kev: num_attr::<f64>(&f, "energy_kev").unwrap_or(f64::NAN),
            seed: num_attr::<u64>(&f, "seed").unwrap_or(0),
            config_json: str_attr(&f, "config_json").unwrap_or_default(),
        };
        let offsets: Vec<u64> = read_column(&f, path, "events/offsets", None)?;
        if offsets.is_empty() {
            return Err(Error::file(path, "dataset /events/offsets is empty"));
        }
        let n = offsets.len() - 1;
        let tracks = if f.link_exists("tracks") {
            let offsets: Vec<u64> = read_column(&f, path, "tracks/offsets", Some(n + 1))?;
            let s = *offsets.last().unwrap() as usize;
            Some(Tracks {
                offsets,
                x_um: read_column(&f, path, "tracks/x_um", Some(s))?,
                y_um: read_column(&f, path, "tracks/y_um", Some(s))?,
                z_um: read_column(&f, path, "tracks/z_um", Some(s))?,
                energy_kev: read_column(&f, path, "tracks/energy_kev", Some(s))?,
                deposit_kev: read_column(&f, path, "tracks/deposit_kev", Some(s))?,
            })
        } else {
            None
        };
        let lib = Self {
            meta,
            incidence_x_px: read_column(&f, path, "events/incidence_x_px", Some(n))?,
            incidence_y_px: read_column(&f, path, "events/incidence_y_px", Some(n))?,
            deposit_kev: read_column(&f, path, "events/deposit_kev", Some(n))?,
            flags: read_column(&f, path, "events/flags", Some(n))?,
            track_length_um: read_column(&f, path, "events/track_length_um", Some(n))?,
            dx_px: read_column(&f, path, "pixels/dx_px", None)?,
            dy_px: read_column(&f, path, "pixels/dy_px", None)?,
            charge_e: read_column(&f, path, "pixels/charge_e", None)?,
            offsets,
            tracks,
        };
        lib.validate(path)?;
        Ok(lib)
    }
}
