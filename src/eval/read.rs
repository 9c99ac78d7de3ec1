//! Readers of the truth (an `emsim-frames/1` HDF5 file) and of counted electrons
//! (`emsim-counts/1`), and the check that they come from the same dataset. Layouts:
//! `docs/formats.md` ("Frames dataset", "Counted electrons").
//!
//! [`TruthFile`] and [`CountsFile`] read only the attributes and the per-frame offsets when opened;
//! their columns are read a range of frames at a time, so that `emsim eval` holds a block of
//! electrons, not the whole file. (A `--format npy` truth folder is read whole.)

use std::mem::take;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::io::h5util::{num_attr, open, read_column, str_attr};
use crate::{Error, Result};

pub const FRAMES_SCHEMA: &str = crate::io::frames_out::SCHEMA;
pub const COUNTS_SCHEMA: &str = "emsim-counts/1";

/// True incidence points of a frames file.
#[derive(Clone, Debug, PartialEq)]
pub struct TruthSet {
    pub path: PathBuf,
    pub seed: u64,
    pub config_json: String,
    /// Global index of the file's frame 0.
    pub first_frame: u64,
    /// `/frames` attribute `pixel_size_um`.
    pub pixel_size_um: f64,
    /// Electrons of frame k are rows `offsets[k]..offsets[k+1]`; `len() == n_frames + 1`.
    pub offsets: Vec<u64>,
    /// Frame index within the file.
    pub frame: Vec<u32>,
    pub x_px: Vec<f32>,
    pub y_px: Vec<f32>,
}

/// Electrons found by one method (`emsim count`).
#[derive(Clone, Debug, PartialEq)]
pub struct CountsSet {
    pub path: PathBuf,
    /// `max`, `c3x3`, `c5x5`, `c3x3t`, `c5x5t`, `net` or `stempy`.
    pub method: String,
    pub frames_seed: u64,
    pub frames_config_json: String,
    pub first_frame: u64,
    pub n_frames: u64,
    pub pixel_size_um: f64,
    pub offsets: Vec<u64>,
    pub frame: Vec<u32>,
    pub x_px: Vec<f32>,
    pub y_px: Vec<f32>,
    /// Spread of the predicted distribution (`net` only).
    pub sigma_px: Option<Vec<f32>>,
}

impl TruthSet {
    pub fn n_frames(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn len(&self) -> usize {
        self.x_px.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x_px.is_empty()
    }

    /// Rows of frame `k`.
    pub fn frame_rows(&self, k: usize) -> Range<usize> {
        self.offsets[k] as usize..self.offsets[k + 1] as usize
    }
}

impl CountsSet {
    pub fn n_frames(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn len(&self) -> usize {
        self.x_px.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x_px.is_empty()
    }

    /// Rows of frame `k`.
    pub fn frame_rows(&self, k: usize) -> Range<usize> {
        self.offsets[k] as usize..self.offsets[k + 1] as usize
    }
}

/// A required column, with a hint naming the kind of file expected when it is missing.
fn column<T: hdf5::H5Type>(f: &hdf5::File, path: &Path, name: &str, len: Option<usize>, hint: &str) -> Result<Vec<T>> {
    if f.dataset(name).is_err() {
        return Err(Error::file(path, format!("missing /{name} ({hint})")));
    }
    read_column(f, path, name, len)
}

fn attr_str(loc: &hdf5::Location, path: &Path, name: &str, hint: &str) -> Result<String> {
    str_attr(loc, name).ok_or_else(|| Error::file(path, format!("missing attribute {name} ({hint})")))
}

fn attr_num<T: hdf5::H5Type>(loc: &hdf5::Location, path: &Path, name: &str, hint: &str) -> Result<T> {
    num_attr::<T>(loc, name).ok_or_else(|| Error::file(path, format!("missing numeric attribute {name} ({hint})")))
}

/// The truth's pixel size (`/frames` attribute, f64 or f32).
fn pitch_attr(loc: &hdf5::Location, path: &Path, hint: &str) -> Result<f64> {
    let v = num_attr::<f64>(loc, "pixel_size_um")
        .or_else(|| num_attr::<f32>(loc, "pixel_size_um").map(f64::from))
        .ok_or_else(|| Error::file(path, format!("missing attribute /frames pixel_size_um ({hint})")))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(Error::file(path, format!("attribute /frames pixel_size_um = {v} must be > 0")));
    }
    Ok(v)
}

/// Checks that CSR offsets rise from 0 to `n` rows.
fn check_offsets(path: &Path, group: &str, offsets: &[u64], n: usize) -> Result<()> {
    if offsets.is_empty()
        || offsets[0] != 0
        || *offsets.last().unwrap() != n as u64
        || offsets.windows(2).any(|w| w[0] > w[1])
    {
        return Err(Error::file(
            path,
            format!("/{group}/offsets must rise from 0 to {n} (the number of rows of /{group}/x_px)"),
        ));
    }
    Ok(())
}

/// Checks the frame column and the coordinates of a block of rows: block offsets start at 0,
/// block frame `k` is file frame `frame0 + k` and block row `i` is file row `row0 + i`.
fn check_block(
    path: &Path,
    group: &str,
    (frame0, row0): (usize, usize),
    offsets: &[u64],
    frame: &[u32],
    x: &[f32],
    y: &[f32],
) -> Result<()> {
    for k in 0..offsets.len() - 1 {
        let rows = offsets[k] as usize..offsets[k + 1] as usize;
        if let Some(i) = rows.clone().find(|&i| frame[i] as usize != frame0 + k) {
            let (r, f) = (row0 + i, frame0 + k);
            return Err(Error::file(
                path,
                format!("/{group}/frame[{r}] = {} but /{group}/offsets puts row {r} in frame {f}", frame[i]),
            ));
        }
    }
    if let Some(i) = (0..x.len()).find(|&i| !(x[i].is_finite() && y[i].is_finite())) {
        let r = row0 + i;
        return Err(Error::file(path, format!("/{group} row {r}: point ({}, {}) is not finite", x[i], y[i])));
    }
    Ok(())
}

/// Checks the root attribute `schema`.
fn check_schema(f: &hdf5::File, path: &Path, expected: &str, hint: &str) -> Result<()> {
    match str_attr(f, "schema") {
        Some(s) if s == expected => Ok(()),
        Some(s) => Err(Error::file(path, format!("schema '{s}', expected '{expected}' ({hint})"))),
        None => Err(Error::file(path, format!("missing attribute schema ({hint})"))),
    }
}

/// Where a set's columns come from.
#[derive(Debug)]
enum Source {
    H5(hdf5::File),
    /// Read whole (npy folders).
    Mem {
        frame: Vec<u32>,
        x_px: Vec<f32>,
        y_px: Vec<f32>,
    },
}

/// Rows `rows` of a 1-D column (its length was checked on opening).
fn column_rows<T: hdf5::H5Type + Copy>(f: &hdf5::File, path: &Path, name: &str, rows: Range<usize>) -> Result<Vec<T>> {
    let ds = f.dataset(name).map_err(|_| Error::file(path, format!("missing dataset /{name}")))?;
    let a = ds.read_slice_1d::<T, _>(rows).map_err(|e| Error::file(path, format!("dataset /{name}: {e}")))?;
    Ok(a.to_vec())
}

/// Length of a required 1-D column, without reading it.
fn column_len(f: &hdf5::File, path: &Path, name: &str, hint: &str) -> Result<usize> {
    let ds = f.dataset(name).map_err(|_| Error::file(path, format!("missing /{name} ({hint})")))?;
    match ds.shape().as_slice() {
        [n] => Ok(*n),
        s => Err(Error::file(path, format!("dataset /{name} must be 1-D, found shape {s:?}"))),
    }
}

fn check_len(path: &Path, name: &str, len: usize, n: usize) -> Result<()> {
    if len != n {
        return Err(Error::file(path, format!("dataset /{name} has {len} entries, expected {n}")));
    }
    Ok(())
}

/// Block offsets (from 0) of frames `frames` and the file rows they cover.
fn block_offsets(offsets: &[u64], frames: &Range<usize>) -> (Vec<u64>, Range<usize>) {
    let base = offsets[frames.start];
    let off: Vec<u64> = offsets[frames.start..=frames.end].iter().map(|&o| o - base).collect();
    (off, base as usize..offsets[frames.end] as usize)
}

/// A truth file opened for reading by blocks of frames.
#[derive(Debug)]
pub struct TruthFile {
    /// Attributes and the offsets of every frame; the columns are empty (see [`TruthFile::read`]).
    pub meta: TruthSet,
    n_rows: usize,
    src: Source,
}

impl TruthFile {
    /// Opens an `emsim-frames/1` dataset: an HDF5 file, or a `--format npy` folder.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            let mut meta = read_truth_npy(path)?;
            let n_rows = meta.len();
            // the columns move to the source; the meta keeps the attributes and offsets
            let (frame, x_px, y_px) = (take(&mut meta.frame), take(&mut meta.x_px), take(&mut meta.y_px));
            let src = Source::Mem { frame, x_px, y_px };
            return Ok(Self { meta, n_rows, src });
        }
        const HINT: &str = "is this an emsim frames file?";
        let f = open(path, "frames file")?;
        check_schema(&f, path, FRAMES_SCHEMA, HINT)?;
        let seed = attr_num::<u64>(&f, path, "seed", HINT)?;
        let config_json = attr_str(&f, path, "config_json", HINT)?;
        let first_frame = attr_num::<u64>(&f, path, "first_frame", HINT)?;
        let frames = f.dataset("frames").map_err(|_| Error::file(path, format!("missing /frames ({HINT})")))?;
        let pixel_size_um = pitch_attr(&frames, path, HINT)?;
        let offsets = column::<u64>(&f, path, "truth/offsets", None, HINT)?;
        let n = column_len(&f, path, "truth/x_px", HINT)?;
        check_len(path, "truth/y_px", column_len(&f, path, "truth/y_px", HINT)?, n)?;
        check_len(path, "truth/frame", column_len(&f, path, "truth/frame", HINT)?, n)?;
        check_offsets(path, "truth", &offsets, n)?;
        if let Some(&nf) = frames.shape().first()
            && nf + 1 != offsets.len()
        {
            return Err(Error::file(
                path,
                format!("/truth/offsets has {} entries for {nf} frames (expected one more than frames)", offsets.len()),
            ));
        }
        let meta = TruthSet {
            path: path.to_path_buf(),
            seed,
            config_json,
            first_frame,
            pixel_size_um,
            offsets,
            frame: Vec::new(),
            x_px: Vec::new(),
            y_px: Vec::new(),
        };
        Ok(Self { meta, n_rows: n, src: Source::H5(f) })
    }

    pub fn n_frames(&self) -> usize {
        self.meta.n_frames()
    }

    /// True electrons in the file.
    pub fn len(&self) -> usize {
        self.n_rows
    }

    pub fn is_empty(&self) -> bool {
        self.n_rows == 0
    }

    /// The truth of frames `frames`, as a set of its own: offsets from 0, frame `k` of the set is
    /// file frame `frames.start + k` (its `first_frame` says so), rows checked.
    pub fn read(&self, frames: Range<usize>) -> Result<TruthSet> {
        let (offsets, rows) = block_offsets(&self.meta.offsets, &frames);
        let path = &self.meta.path;
        let (frame, x_px, y_px) = match &self.src {
            Source::H5(f) => (
                column_rows::<u32>(f, path, "truth/frame", rows.clone())?,
                column_rows::<f32>(f, path, "truth/x_px", rows.clone())?,
                column_rows::<f32>(f, path, "truth/y_px", rows.clone())?,
            ),
            Source::Mem { frame, x_px, y_px } => {
                (frame[rows.clone()].to_vec(), x_px[rows.clone()].to_vec(), y_px[rows.clone()].to_vec())
            }
        };
        check_block(path, "truth", (frames.start, rows.start), &offsets, &frame, &x_px, &y_px)?;
        let frame = frame.iter().map(|&f| f - frames.start as u32).collect();
        let first_frame = self.meta.first_frame + frames.start as u64;
        Ok(TruthSet { first_frame, offsets, frame, x_px, y_px, ..self.meta.clone() })
    }
}

/// Reads the whole truth of an `emsim-frames/1` dataset: an HDF5 file, or a `--format npy` folder.
pub fn read_truth(path: &Path) -> Result<TruthSet> {
    let f = TruthFile::open(path)?;
    f.read(0..f.n_frames())
}

/// A 1-D `.npy` column of an npy frames folder.
fn npy_column<T: ndarray_npy::ReadableElement>(dir: &Path, name: &str) -> Result<Vec<T>> {
    let p = dir.join(name);
    if !p.exists() {
        return Err(Error::file(dir, format!("missing {name} (is this an emsim --format npy frames folder?)")));
    }
    let a: ndarray::Array1<T> =
        ndarray_npy::read_npy(&p).map_err(|e| Error::file(&p, format!("not a 1-D column: {e}")))?;
    Ok(a.into_raw_vec_and_offset().0)
}

/// The truth of a `--format npy` frames folder (`truth_*.npy` and `attrs.json`).
fn read_truth_npy(dir: &Path) -> Result<TruthSet> {
    const HINT: &str = "is this an emsim --format npy frames folder?";
    let ap = dir.join("attrs.json");
    let text = std::fs::read_to_string(&ap).map_err(|e| Error::file(&ap, format!("cannot read ({HINT}): {e}")))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::file(&ap, format!("not valid JSON: {e}")))?;
    if v.get("schema").and_then(|s| s.as_str()) != Some(FRAMES_SCHEMA) {
        return Err(Error::file(&ap, format!("schema is not '{FRAMES_SCHEMA}' ({HINT})")));
    }
    let missing = |k: &str| Error::file(&ap, format!("missing {k} ({HINT})"));
    let seed = v.get("seed").and_then(|x| x.as_u64()).ok_or_else(|| missing("seed"))?;
    let first_frame = v.get("first_frame").and_then(|x| x.as_u64()).ok_or_else(|| missing("first_frame"))?;
    let config_json = v.get("config").map(|c| c.to_string()).ok_or_else(|| missing("config"))?;
    let pixel_size_um = v.get("pixel_size_um").and_then(|x| x.as_f64()).ok_or_else(|| missing("pixel_size_um"))?;
    if !(pixel_size_um > 0.0 && pixel_size_um.is_finite()) {
        return Err(Error::file(&ap, format!("pixel_size_um = {pixel_size_um} must be > 0")));
    }
    let offsets = npy_column::<u64>(dir, "truth_offsets.npy")?;
    let x_px = npy_column::<f32>(dir, "truth_x_px.npy")?;
    let y_px = npy_column::<f32>(dir, "truth_y_px.npy")?;
    let frame = npy_column::<u32>(dir, "truth_frame.npy")?;
    if y_px.len() != x_px.len() || frame.len() != x_px.len() {
        return Err(Error::file(dir, "truth_x_px.npy, truth_y_px.npy and truth_frame.npy differ in length"));
    }
    check_offsets(dir, "truth", &offsets, x_px.len())?;
    Ok(TruthSet { path: dir.to_path_buf(), seed, config_json, first_frame, pixel_size_um, offsets, frame, x_px, y_px })
}

/// A counts file opened for reading by blocks of frames.
#[derive(Debug)]
pub struct CountsFile {
    /// Attributes and the offsets of every frame; the columns are empty (see [`CountsFile::read`]).
    pub meta: CountsSet,
    n_rows: usize,
    file: hdf5::File,
}

impl CountsFile {
    /// Opens an `emsim-counts/1` file.
    pub fn open(path: &Path) -> Result<Self> {
        const HINT: &str = "is this an emsim count file?";
        let f = open(path, "count file")?;
        check_schema(&f, path, COUNTS_SCHEMA, HINT)?;
        let method = attr_str(&f, path, "method", HINT)?;
        // `count` copies these only from files with emsim provenance.
        const NO_PROVENANCE: &str =
            "counted from frames without emsim provenance, so no truth can be checked against it";
        let frames_seed = num_attr::<u64>(&f, "frames_seed")
            .ok_or_else(|| Error::file(path, format!("missing attribute frames_seed ({NO_PROVENANCE})")))?;
        let frames_config_json = str_attr(&f, "frames_config_json")
            .ok_or_else(|| Error::file(path, format!("missing attribute frames_config_json ({NO_PROVENANCE})")))?;
        let first_frame = attr_num::<u64>(&f, path, "first_frame", HINT)?;
        let n_frames = attr_num::<u64>(&f, path, "n_frames", HINT)?;
        // NaN when the frames did not record it (the truth's pitch is the one used).
        let pixel_size_um = num_attr::<f64>(&f, "pixel_size_um")
            .or_else(|| num_attr::<f32>(&f, "pixel_size_um").map(f64::from))
            .unwrap_or(f64::NAN);
        let offsets = column::<u64>(&f, path, "electrons/offsets", None, HINT)?;
        if offsets.len() as u64 != n_frames + 1 {
            return Err(Error::file(
                path,
                format!("/electrons/offsets has {} entries, expected n_frames + 1 = {}", offsets.len(), n_frames + 1),
            ));
        }
        let n = column_len(&f, path, "electrons/x_px", HINT)?;
        check_len(path, "electrons/y_px", column_len(&f, path, "electrons/y_px", HINT)?, n)?;
        check_len(path, "electrons/frame", column_len(&f, path, "electrons/frame", HINT)?, n)?;
        let sigma_px = if f.dataset("electrons/sigma_px").is_ok() {
            check_len(path, "electrons/sigma_px", column_len(&f, path, "electrons/sigma_px", HINT)?, n)?;
            Some(Vec::new())
        } else {
            None
        };
        check_offsets(path, "electrons", &offsets, n)?;
        let meta = CountsSet {
            path: path.to_path_buf(),
            method,
            frames_seed,
            frames_config_json,
            first_frame,
            n_frames,
            pixel_size_um,
            offsets,
            frame: Vec::new(),
            x_px: Vec::new(),
            y_px: Vec::new(),
            sigma_px,
        };
        Ok(Self { meta, n_rows: n, file: f })
    }

    /// Electrons in the file.
    pub fn len(&self) -> usize {
        self.n_rows
    }

    pub fn is_empty(&self) -> bool {
        self.n_rows == 0
    }

    /// The electrons of frames `frames`, as a set of its own (offsets from 0, frame `k` of the set
    /// is file frame `frames.start + k`, `n_frames` the block's), rows checked.
    pub fn read(&self, frames: Range<usize>) -> Result<CountsSet> {
        let (offsets, rows) = block_offsets(&self.meta.offsets, &frames);
        let (f, path) = (&self.file, &self.meta.path);
        let frame = column_rows::<u32>(f, path, "electrons/frame", rows.clone())?;
        let x_px = column_rows::<f32>(f, path, "electrons/x_px", rows.clone())?;
        let y_px = column_rows::<f32>(f, path, "electrons/y_px", rows.clone())?;
        check_block(path, "electrons", (frames.start, rows.start), &offsets, &frame, &x_px, &y_px)?;
        let sigma_px = match self.meta.sigma_px {
            Some(_) => Some(self.sigma_rows(rows)?),
            None => None,
        };
        let frame = frame.iter().map(|&f| f - frames.start as u32).collect();
        Ok(CountsSet {
            first_frame: self.meta.first_frame + frames.start as u64,
            n_frames: frames.len() as u64,
            offsets,
            frame,
            x_px,
            y_px,
            sigma_px,
            ..self.meta.clone()
        })
    }

    /// Rows `rows` of `/electrons/sigma_px` (the file must have it).
    pub fn sigma_rows(&self, rows: Range<usize>) -> Result<Vec<f32>> {
        column_rows::<f32>(&self.file, &self.meta.path, "electrons/sigma_px", rows)
    }
}

/// Reads a whole `emsim-counts/1` file.
pub fn read_counts(path: &Path) -> Result<CountsSet> {
    let f = CountsFile::open(path)?;
    f.read(0..f.meta.n_frames())
}

/// Equal as JSON values (so key order and spacing do not matter), else as strings.
fn same_json(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Checks that `counts` was counted on the frames whose truth is `truth`: same seed, same
/// configuration (compared as JSON), same first frame, every frame counted (equal numbers of
/// frames), and the same pixel size when the counts record one.
pub fn check_same_dataset(truth: &TruthSet, counts: &CountsSet) -> Result<()> {
    let c = counts.path.display();
    let other = |m: String| Err(Error::file(&truth.path, format!("truth is from another dataset than {c}: {m}")));
    if truth.seed != counts.frames_seed {
        return other(format!("seed {} vs counts' frames_seed {}", truth.seed, counts.frames_seed));
    }
    if !same_json(&truth.config_json, &counts.frames_config_json) {
        let at = truth.config_json.bytes().zip(counts.frames_config_json.bytes()).take_while(|(a, b)| a == b).count();
        let near = |s: &str| s.get(at.saturating_sub(20)..).unwrap_or("").chars().take(50).collect::<String>();
        return other(format!(
            "config_json differs from counts' frames_config_json at byte {at} ('{}' vs '{}')",
            near(&truth.config_json),
            near(&counts.frames_config_json)
        ));
    }
    if truth.first_frame != counts.first_frame {
        return other(format!(
            "first_frame {} vs counts' first_frame {} (another shard?)",
            truth.first_frame, counts.first_frame
        ));
    }
    if truth.n_frames() != counts.n_frames() {
        return Err(Error::file(
            &truth.path,
            format!(
                "has {} frames but {c} counted {} (n_frames): eval needs the counts of every frame",
                truth.n_frames(),
                counts.n_frames()
            ),
        ));
    }
    let (a, b) = (truth.pixel_size_um, counts.pixel_size_um);
    if b.is_finite() && (a - b).abs() > 1e-6 * a.abs() {
        return other(format!("pixel_size_um {a} vs counts' pixel_size_um {b}"));
    }
    Ok(())
}
