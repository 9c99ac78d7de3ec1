//! `emsim events import`: event libraries from external simulations.
//!
//! # Geant4 pixel tables ([`import_pixel_table`], `source = "geant4-import"`)
//!
//! The EMSim study (J. Renner, LBNL, 2021; the public code github.com/jerenner/emsim) stored Geant4 events as
//! pixelated 101 x 101 images, read into a table with one row per lit pixel and the columns
//! `event, row, col, counts, xinc, yinc` (plus `front`, `energy`, unused here). Convention, as
//! used by that code (`read_electron_data` and `EMDataset.__getitem__`, `emsim/training.py`):
//!
//! * `row`, `col`: pixel indices in the event image (`image[row, col] += counts`), row = y,
//!   col = x; the electron enters at the centre pixel, index [`PIXEL_TABLE_CENTER_PX`] = 50 in both.
//! * `counts`: collected charge of the pixel, electrons (e-h pairs).
//! * `xinc`, `yinc`: the incidence point in **mm**, relative to the **centre** of the centre pixel,
//!   x along `col`, y along `row`. The EMSim code takes the localisation error as
//!   `xinc - pitch * (col_max - 50)` (the distance from the centre of a pixel) and bins it in
//!   +-0.0025 mm = +-half a 5 um pixel when no shift is applied, i.e. `|xinc| <= pitch / 2`.
//!
//! Conversion: `u = 50 + 0.5 + xinc * 1000 / pitch_um` (image pixel units, corner origin); the pixel
//! of incidence is `floor(u)` (normally 50), `incidence_x_px = u - floor(u)` and every pixel's
//! `dx_px = col - floor(u)`; the same for y with `row`. The deposit is unknown and estimated as
//! `sum(counts) * 3.6 eV`; the beam energy (`energy_kev`) and track length are not in the table
//! (NaN); flags are 0 (backscatter/transmission not recorded).
//!
//! Input: CSV with an optional header. With a header, columns are found by name (case-insensitive;
//! other columns such as `front`, `energy` or a pandas index are ignored), so a pandas
//! `DataFrame.to_csv` export works; without one, the six columns are `event,row,col,counts,xinc,yinc`
//! in this order (further fields are ignored). Fields are separated by commas (or by whitespace on lines without a comma).
//! Blank lines and lines starting with `#` are skipped. Rows of one event need not be contiguous;
//! events keep the order of their first row; duplicate pixels are summed.
//!
//! # Hit tables ([`import_hits`], `source = "hits-import"`)
//!
//! CSV of energy deposits `event,x_um,y_um,z_um,edep_kev` (same header/separator rules): x, y in um
//! relative to the electron's entry point, z in um from the beam-side surface of the stack (the
//! sensor's `z`). Event `i` (0-based, in order of first appearance) gets an entry point drawn
//! uniformly in its pixel from `Stream::new(seed, streams::TRANSPORT, i)` (two uniforms: x then
//! y), and the same stream then drives [`physics::collect_charge`] (Fano noise) with the default
//! [`SimOptions`] (window +-10 pixels). Hits outside the sensitive layer are ignored; the deposit
//! is the sum of `edep_kev` inside it. Track length is NaN, only the truncation flag is set.
//!
//! Errors: a bad row is reported as `<file>: line N: ...` (N = 1-based line of the first bad row);
//! a file without data rows is an error.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use serde_json::json;

use super::build::{MAX_INCIDENCE_PX, options_json, sensor_json};
use super::physics::{self, Deposit, Sensor, SimOptions};
use crate::io::library::{self, EventLibrary, LibraryMeta};
use crate::rng::{Stream, streams};
use crate::{Error, Result};

/// Index of the centre pixel (the pixel of incidence) of the EMSim 101 x 101 event images.
pub const PIXEL_TABLE_CENTER_PX: i64 = 50;

/// Energy per e-h pair used to estimate the deposit of a pixel table, eV.
pub const PAIR_ENERGY_EV: f64 = 3.6;

const PIXEL_COLUMNS: [&str; 6] = ["event", "row", "col", "counts", "xinc", "yinc"];
const HIT_COLUMNS: [&str; 5] = ["event", "x_um", "y_um", "z_um", "edep_kev"];

/// A simple CSV reader: header detection, column mapping by name, line numbers.
struct Table<'a, R> {
    path: &'a Path,
    lines: std::io::Lines<R>,
    line_no: usize,
    wanted: &'a [&'a str],
    /// Field index of each wanted column; `None` until the first data/header line is seen.
    map: Option<Vec<usize>>,
    pending: Option<(usize, String)>,
}

fn split_fields(line: &str) -> Vec<&str> {
    if line.contains(',') { line.split(',').map(str::trim).collect() } else { line.split_whitespace().collect() }
}

fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

impl<'a, R: BufRead> Table<'a, R> {
    fn new(path: &'a Path, reader: R, wanted: &'a [&'a str]) -> Self {
        Self { path, lines: reader.lines(), line_no: 0, wanted, map: None, pending: None }
    }

    fn err(&self, line: usize, msg: impl std::fmt::Display) -> Error {
        Error::file(self.path, format!("line {line}: {msg}"))
    }

    fn next_raw(&mut self) -> Result<Option<(usize, String)>> {
        loop {
            match self.lines.next() {
                None => return Ok(None),
                Some(Err(e)) => return Err(Error::file(self.path, format!("line {}: {e}", self.line_no + 1))),
                Some(Ok(l)) => {
                    self.line_no += 1;
                    let t = l.trim().trim_start_matches('\u{feff}').trim();
                    if t.is_empty() || t.starts_with('#') {
                        continue;
                    }
                    return Ok(Some((self.line_no, t.to_string())));
                }
            }
        }
    }

    /// Reads the header (if any) and sets the column map.
    fn init(&mut self) -> Result<()> {
        let Some((no, line)) = self.next_raw()? else {
            return Ok(());
        };
        let fields = split_fields(&line);
        let header = fields.iter().any(|f| !f.is_empty() && !is_number(f));
        // A header has names; a data line of the wrong width is reported by `next_row`.
        let looks_like_header = header && fields.iter().any(|f| self.wanted.iter().any(|w| w.eq_ignore_ascii_case(f)));
        if looks_like_header {
            let mut map = Vec::new();
            let mut missing = Vec::new();
            for w in self.wanted {
                match fields.iter().position(|f| f.eq_ignore_ascii_case(w)) {
                    Some(i) => map.push(i),
                    None => missing.push(*w),
                }
            }
            if !missing.is_empty() {
                return Err(self.err(
                    no,
                    format!(
                        "header lacks column(s) {} (expected columns {})",
                        missing.join(", "),
                        self.wanted.join(",")
                    ),
                ));
            }
            self.map = Some(map);
        } else {
            self.map = Some((0..self.wanted.len()).collect());
            self.pending = Some((no, line));
        }
        Ok(())
    }

    /// The next data row as `(line number, fields in wanted order)`.
    fn next_row(&mut self) -> Result<Option<(usize, Vec<String>)>> {
        if self.map.is_none() {
            self.init()?;
        }
        let next = match self.pending.take() {
            Some(p) => Some(p),
            None => self.next_raw()?,
        };
        let Some((no, line)) = next else {
            return Ok(None);
        };
        let fields = split_fields(&line);
        let map = self.map.as_ref().expect("initialised");
        let need = map.iter().copied().max().unwrap_or(0) + 1;
        if fields.len() < need {
            return Err(self.err(
                no,
                format!("expected {} fields ({}), got {}: '{line}'", need, self.wanted.join(","), fields.len()),
            ));
        }
        Ok(Some((no, map.iter().map(|&i| fields[i].to_string()).collect())))
    }
}

fn parse_f64(path: &Path, line: usize, name: &str, s: &str) -> Result<f64> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Error::file(path, format!("line {line}: {name}: expected a finite number, got '{s}'"))),
    }
}

fn parse_int(path: &Path, line: usize, name: &str, s: &str) -> Result<i64> {
    if let Ok(v) = s.parse::<i64>() {
        return Ok(v);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(v as i64),
        _ => Err(Error::file(path, format!("line {line}: {name}: expected an integer, got '{s}'"))),
    }
}

fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>> {
    let f = std::fs::File::open(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
    Ok(std::io::BufReader::new(f))
}

/// Events in order of first appearance: event id -> index.
#[derive(Default)]
struct Order {
    index: HashMap<i64, usize>,
}

impl Order {
    fn get(&mut self, id: i64) -> (usize, bool) {
        let n = self.index.len();
        match self.index.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => (*e.get(), false),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(n);
                (n, true)
            }
        }
    }
}

fn check_pitch(pitch_um: f64) -> Result<()> {
    if pitch_um > 0.0 && pitch_um.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid("--pitch-um", format!("expected a finite pixel pitch > 0 um, got {pitch_um}")))
    }
}

/// Merges duplicate pixels and sorts by (dy, dx).
fn merge_pixels(mut px: Vec<(i32, i32, f32)>) -> Vec<(i32, i32, f32)> {
    px.sort_by_key(|&(dx, dy, _)| (dy, dx));
    let mut out: Vec<(i32, i32, f32)> = Vec::with_capacity(px.len());
    for p in px {
        match out.last_mut() {
            Some(l) if l.0 == p.0 && l.1 == p.1 => l.2 += p.2,
            _ => out.push(p),
        }
    }
    out
}

/// Imports a Geant4-derived pixel table of the EMSim study (see the module documentation for the
/// format and the coordinate convention). `pitch_um` converts `xinc`/`yinc` (mm) to pixels.
pub fn import_pixel_table(path: &Path, pitch_um: f64) -> Result<EventLibrary> {
    import_pixel_table_centered(path, pitch_um, PIXEL_TABLE_CENTER_PX)
}

/// [`import_pixel_table`] for event images whose centre pixel is `center_px` (row and column).
pub fn import_pixel_table_centered(path: &Path, pitch_um: f64, center_px: i64) -> Result<EventLibrary> {
    check_pitch(pitch_um)?;
    struct Ev {
        first_line: usize,
        xinc_mm: f64,
        yinc_mm: f64,
        /// (col, row, counts)
        pixels: Vec<(i64, i64, f64)>,
    }
    let mut table = Table::new(path, open(path)?, &PIXEL_COLUMNS);
    let mut order = Order::default();
    let mut events: Vec<Ev> = Vec::new();
    while let Some((no, f)) = table.next_row()? {
        let event = parse_int(path, no, "event", &f[0])?;
        let row = parse_int(path, no, "row", &f[1])?;
        let col = parse_int(path, no, "col", &f[2])?;
        let counts = parse_f64(path, no, "counts", &f[3])?;
        let xinc = parse_f64(path, no, "xinc", &f[4])?;
        let yinc = parse_f64(path, no, "yinc", &f[5])?;
        if counts < 0.0 {
            return Err(Error::file(path, format!("line {no}: counts: expected a charge >= 0 e, got {counts}")));
        }
        for (name, v) in [("row", row), ("col", col)] {
            if (v - center_px).abs() > 30_000 {
                return Err(Error::file(
                    path,
                    format!("line {no}: {name} = {v} is more than 30000 pixels from the centre pixel {center_px}"),
                ));
            }
        }
        let (i, new) = order.get(event);
        if new {
            events.push(Ev { first_line: no, xinc_mm: xinc, yinc_mm: yinc, pixels: Vec::new() });
        }
        let ev = &mut events[i];
        let same = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-6);
        if !same(ev.xinc_mm, xinc) || !same(ev.yinc_mm, yinc) {
            return Err(Error::file(
                path,
                format!(
                    "line {no}: event {event}: incidence point (xinc, yinc) = ({xinc}, {yinc}) differs from \
                     ({}, {}) on line {} (it must be the same on every row of an event)",
                    ev.xinc_mm, ev.yinc_mm, ev.first_line
                ),
            ));
        }
        ev.pixels.push((col, row, counts));
    }
    if events.is_empty() {
        return Err(Error::file(
            path,
            format!("no data rows (expected CSV columns {}, one row per pixel)", PIXEL_COLUMNS.join(",")),
        ));
    }
    let mut lib = EventLibrary::new(LibraryMeta {
        source: "geant4-import".into(),
        pitch_um,
        energy_kev: f64::NAN,
        seed: 0,
        config_json: json!({
            "import": "geant4 pixel table",
            "file": path.display().to_string(),
            "pitch_um": pitch_um,
            "center_px": center_px,
            "incidence": "xinc, yinc in mm from the centre of the centre pixel (x = col, y = row)",
            "deposit": "estimated as sum(counts) * 3.6 eV",
            "pair_energy_ev": PAIR_ENERGY_EV,
        })
        .to_string(),
    });
    for ev in events {
        let ux = center_px as f64 + 0.5 + ev.xinc_mm * 1000.0 / pitch_um;
        let uy = center_px as f64 + 0.5 + ev.yinc_mm * 1000.0 / pitch_um;
        let (c0, r0) = (ux.floor(), uy.floor());
        let (c0i, r0i) = (c0 as i64, r0 as i64);
        let mut total = 0.0;
        let mut pixels = Vec::with_capacity(ev.pixels.len());
        for &(col, row, q) in &ev.pixels {
            let (dx, dy) = (col - c0i, row - r0i);
            if dx.abs() > 32_767 || dy.abs() > 32_767 {
                return Err(Error::file(
                    path,
                    format!(
                        "line {}: event's pixel ({row}, {col}) lies more than 32767 pixels from its pixel of \
                         incidence ({r0i}, {c0i}); is xinc/yinc in mm?",
                        ev.first_line
                    ),
                ));
            }
            total += q;
            pixels.push((dx as i32, dy as i32, q as f32));
        }
        let ix = ((ux - c0) as f32).clamp(0.0, MAX_INCIDENCE_PX);
        let iy = ((uy - r0) as f32).clamp(0.0, MAX_INCIDENCE_PX);
        let deposit_kev = (total * PAIR_ENERGY_EV * 1e-3) as f32;
        lib.push(ix, iy, deposit_kev, 0, f32::NAN, &merge_pixels(pixels));
    }
    lib.validate(path)?;
    Ok(lib)
}

/// Imports a hit table (`event,x_um,y_um,z_um,edep_kev`) and digitises it with `sensor`'s charge
/// model (see the module documentation).
pub fn import_hits(path: &Path, sensor: &Sensor, seed: u64) -> Result<EventLibrary> {
    sensor.validate().map_err(|m| Error::invalid("sensor", m))?;
    let opts = SimOptions::default();
    let mut table = Table::new(path, open(path)?, &HIT_COLUMNS);
    let mut order = Order::default();
    let mut events: Vec<Vec<Deposit>> = Vec::new();
    while let Some((no, f)) = table.next_row()? {
        let event = parse_int(path, no, "event", &f[0])?;
        let x = parse_f64(path, no, "x_um", &f[1])?;
        let y = parse_f64(path, no, "y_um", &f[2])?;
        let z = parse_f64(path, no, "z_um", &f[3])?;
        let e = parse_f64(path, no, "edep_kev", &f[4])?;
        if e < 0.0 {
            return Err(Error::file(path, format!("line {no}: edep_kev: expected an energy >= 0 keV, got {e}")));
        }
        let limit = 1.0e6;
        if x.abs() > limit || y.abs() > limit {
            return Err(Error::file(
                path,
                format!(
                    "line {no}: (x_um, y_um) = ({x}, {y}) is more than 1 m from the entry point; are the units um?"
                ),
            ));
        }
        let (i, new) = order.get(event);
        if new {
            events.push(Vec::new());
        }
        events[i].push(Deposit { x_um: x, y_um: y, z_um: z, energy_kev: e });
    }
    if events.is_empty() {
        return Err(Error::file(
            path,
            format!("no data rows (expected CSV columns {}, one row per energy deposit)", HIT_COLUMNS.join(",")),
        ));
    }
    let (z_top, z_bot) = sensor.sensitive_bounds();
    let mut lib = EventLibrary::new(LibraryMeta {
        source: "hits-import".into(),
        pitch_um: sensor.pitch_um,
        energy_kev: f64::NAN,
        seed,
        config_json: json!({
            "import": "hit table",
            "file": path.display().to_string(),
            "sensor": sensor_json(sensor),
            "options": options_json(&opts),
            "entry_point": "uniform in the pixel, Stream(seed, TRANSPORT, event index): x then y",
            "seed": seed,
        })
        .to_string(),
    });
    let pitch = sensor.pitch_um;
    for (i, hits) in events.iter_mut().enumerate() {
        let mut rng = Stream::new(seed, streams::TRANSPORT, i as u64);
        let ix = rng.uniform();
        let iy = rng.uniform();
        let (x0, y0) = (ix * pitch, iy * pitch);
        let mut deposit = 0.0;
        for d in hits.iter_mut() {
            d.x_um += x0;
            d.y_um += y0;
            if d.z_um >= z_top && d.z_um <= z_bot {
                deposit += d.energy_kev;
            }
        }
        let (pixels, cflags) = physics::collect_charge(sensor, hits, x0, y0, &opts, &mut rng);
        let flags = if cflags & physics::FLAG_TRUNCATED != 0 { library::FLAG_TRUNCATED } else { 0 };
        let pixels: Vec<(i32, i32, f32)> = pixels.iter().map(|p| (p.dx, p.dy, p.charge_e)).collect();
        lib.push(
            (ix as f32).clamp(0.0, MAX_INCIDENCE_PX),
            (iy as f32).clamp(0.0, MAX_INCIDENCE_PX),
            deposit as f32,
            flags,
            f32::NAN,
            &pixels,
        );
    }
    lib.validate(path)?;
    Ok(lib)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn pixel_table_convention() {
        let dir = tempfile::tempdir().unwrap();
        // Centre pixel 50; xinc = +1 um, yinc = -2 um (mm units), pitch 5 um:
        // u = 50.5 + 0.2 = 50.7 -> pixel 50, 0.7; v = 50.5 - 0.4 = 50.1 -> pixel 50, 0.1.
        let p =
            write(&dir, "a.csv", "event,row,col,counts,xinc,yinc\n0,50,50,100,0.001,-0.002\n0,50,51,20,0.001,-0.002\n");
        let lib = import_pixel_table(&p, 5.0).unwrap();
        assert_eq!(lib.len(), 1);
        assert!((lib.incidence_x_px[0] - 0.7).abs() < 1e-5);
        assert!((lib.incidence_y_px[0] - 0.1).abs() < 1e-5);
        assert_eq!((lib.dx_px.clone(), lib.dy_px.clone()), (vec![0, 1], vec![0, 0]));
        // xinc = 3 um -> u = 51.1: the pixel of incidence is column 51.
        let p = write(&dir, "b.csv", "0 50 50 100 0.003 0\n");
        let lib = import_pixel_table(&p, 5.0).unwrap();
        assert_eq!(lib.dx_px, vec![-1]);
        assert!((lib.incidence_x_px[0] - 0.1).abs() < 1e-5);
    }
}
