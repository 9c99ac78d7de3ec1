//! Counted electrons on disk: `emsim-counts/1` (docs/formats.md) and stempy's sparse layout.
//! Columns grow batch by batch (resizable chunked datasets), so memory stays bounded.

use std::path::{Path, PathBuf};

use hdf5::types::VarLenArray;

use super::h5util::{err, set_attr, set_str_attr};
use crate::{Error, Result};

pub const SCHEMA: &str = "emsim-counts/1";

/// Root attributes of a counts file.
#[derive(Clone, Debug, Default)]
pub struct CountsMeta {
    pub method: String,
    pub height: u32,
    pub width: u32,
    pub n_frames: u64,
    pub first_frame: u64,
    pub pixel_size_um: f32,
    pub frames_file: String,
    pub frames_seed: Option<u64>,
    pub frames_config_json: Option<String>,
    pub noise_sigma_e: f32,
    pub sigma_estimated: bool,
    pub background_threshold_n_sigma: f32,
    pub xray_threshold_e: f32,
    pub centroid_threshold_e: f32,
    pub params_json: String,
}

/// One batch of electrons, as columns.
#[derive(Clone, Debug, Default)]
pub struct ElectronColumns {
    pub frame: Vec<u32>,
    pub x_px: Vec<f32>,
    pub y_px: Vec<f32>,
    pub row: Vec<u32>,
    pub col: Vec<u32>,
    pub charge_e: Vec<f32>,
    pub sigma_px: Option<Vec<f32>>,
}

impl ElectronColumns {
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }
}

struct Column {
    ds: hdf5::Dataset,
}

impl Column {
    fn create<T: hdf5::H5Type>(g: &hdf5::Group, name: &str, units: &str) -> hdf5::Result<Self> {
        let ds = g.new_dataset::<T>().chunk(65_536).shuffle().deflate(1).shape(0..).create(name)?;
        set_str_attr(&ds, "units", units)?;
        Ok(Self { ds })
    }

    fn append<T: hdf5::H5Type>(&self, at: usize, data: &[T]) -> hdf5::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.ds.resize(at + data.len())?;
        self.ds.write_slice(data, at..at + data.len())
    }
}

/// Streaming writer of one counts file.
pub struct CountsWriter {
    path: PathBuf,
    file: hdf5::File,
    cols: Vec<Column>,
    sigma: Option<Column>,
    n: usize,
    offsets: Vec<u64>,
    images: [Vec<u32>; 3],
    height: u32,
    width: u32,
}

const SCALES: [u32; 3] = [1, 2, 4];

impl CountsWriter {
    /// Creates the file at `path` (a temporary name: the caller renames it when done).
    pub fn create(path: &Path, meta: &CountsMeta, with_sigma: bool) -> Result<Self> {
        let e = err(path, "writing counts");
        let file = hdf5::File::create(path).map_err(&e)?;
        set_str_attr(&file, "schema", SCHEMA).map_err(&e)?;
        set_str_attr(&file, "generator", &crate::generator()).map_err(&e)?;
        set_str_attr(&file, "method", &meta.method).map_err(&e)?;
        set_attr(&file, "height", meta.height).map_err(&e)?;
        set_attr(&file, "width", meta.width).map_err(&e)?;
        set_attr(&file, "n_frames", meta.n_frames).map_err(&e)?;
        set_attr(&file, "first_frame", meta.first_frame).map_err(&e)?;
        set_attr(&file, "pixel_size_um", meta.pixel_size_um).map_err(&e)?;
        set_str_attr(&file, "frames_file", &meta.frames_file).map_err(&e)?;
        if let Some(s) = meta.frames_seed {
            set_attr(&file, "frames_seed", s).map_err(&e)?;
        }
        if let Some(c) = &meta.frames_config_json {
            set_str_attr(&file, "frames_config_json", c).map_err(&e)?;
        }
        set_attr(&file, "noise_sigma_e", meta.noise_sigma_e).map_err(&e)?;
        set_attr(&file, "sigma_estimated", meta.sigma_estimated as u8).map_err(&e)?;
        set_attr(&file, "background_threshold_n_sigma", meta.background_threshold_n_sigma).map_err(&e)?;
        set_attr(&file, "xray_threshold_e", meta.xray_threshold_e).map_err(&e)?;
        set_attr(&file, "centroid_threshold_e", meta.centroid_threshold_e).map_err(&e)?;
        set_str_attr(&file, "params_json", &meta.params_json).map_err(&e)?;
        let g = file.create_group("electrons").map_err(&e)?;
        set_str_attr(
            &g,
            "convention",
            "x = column (fast axis), y = row, in pixels; pixel (r, c) spans [c, c+1) x [r, r+1)",
        )
        .map_err(&e)?;
        let cols = vec![
            Column::create::<u32>(&g, "frame", "index within the frames file").map_err(&e)?,
            Column::create::<f32>(&g, "x_px", "px").map_err(&e)?,
            Column::create::<f32>(&g, "y_px", "px").map_err(&e)?,
            Column::create::<u32>(&g, "row", "px (found centre)").map_err(&e)?,
            Column::create::<u32>(&g, "col", "px (found centre)").map_err(&e)?,
            Column::create::<f32>(&g, "charge_e", "e- (3x3 sum)").map_err(&e)?,
        ];
        let sigma = if with_sigma { Some(Column::create::<f32>(&g, "sigma_px", "px").map_err(&e)?) } else { None };
        let (h, w) = (meta.height as usize, meta.width as usize);
        let images = SCALES.map(|k| vec![0u32; h * w * (k * k) as usize]);
        Ok(Self {
            path: path.to_path_buf(),
            file,
            cols,
            sigma,
            n: 0,
            offsets: vec![0],
            images,
            height: meta.height,
            width: meta.width,
        })
    }

    /// Appends the electrons of the next frames; `per_frame[k]` = electrons of each frame, in order.
    pub fn append(&mut self, e: &ElectronColumns, per_frame: &[u64]) -> Result<()> {
        let er = err(&self.path, "writing counts");
        self.cols[0].append(self.n, &e.frame).map_err(&er)?;
        self.cols[1].append(self.n, &e.x_px).map_err(&er)?;
        self.cols[2].append(self.n, &e.y_px).map_err(&er)?;
        self.cols[3].append(self.n, &e.row).map_err(&er)?;
        self.cols[4].append(self.n, &e.col).map_err(&er)?;
        self.cols[5].append(self.n, &e.charge_e).map_err(&er)?;
        if let (Some(c), Some(s)) = (&self.sigma, &e.sigma_px) {
            c.append(self.n, s).map_err(&er)?;
        }
        self.n += e.len();
        for &k in per_frame {
            let last = *self.offsets.last().unwrap();
            self.offsets.push(last + k);
        }
        for (img, &k) in self.images.iter_mut().zip(&SCALES) {
            let (h, w) = ((self.height * k) as i64, (self.width * k) as i64);
            for (&x, &y) in e.x_px.iter().zip(&e.y_px) {
                let (c, r) = ((x * k as f32).floor() as i64, (y * k as f32).floor() as i64);
                if r >= 0 && r < h && c >= 0 && c < w {
                    img[(r * w + c) as usize] += 1;
                }
            }
        }
        Ok(())
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    /// The counted images at 1x, 2x and 4x per axis.
    pub fn images(&self) -> impl Iterator<Item = (u32, &[u32])> {
        SCALES.iter().copied().zip(self.images.iter().map(|v| v.as_slice()))
    }

    /// Writes offsets and images and closes the file.
    pub fn finish(self) -> Result<()> {
        let e = err(&self.path, "writing counts");
        let g = self.file.group("electrons").map_err(&e)?;
        super::h5util::write_column(
            &g,
            "offsets",
            &self.offsets,
            "index: electrons of frame k are rows [offsets[k], offsets[k+1])",
        )
        .map_err(&e)?;
        for (k, img) in SCALES.iter().zip(&self.images) {
            let (h, w) = ((self.height * k) as usize, (self.width * k) as usize);
            let name = if *k == 1 { "counted_image".to_string() } else { format!("counted_image_x{k}") };
            let a = ndarray::ArrayView2::from_shape((h, w), img).unwrap();
            let ds = self
                .file
                .new_dataset_builder()
                .shuffle()
                .deflate(1)
                .chunk((h.min(1024), w.min(1024)))
                .with_data(&a)
                .create(name.as_str())
                .map_err(&e)?;
            set_str_attr(&ds, "units", "electrons per (sub)pixel, all frames").map_err(&e)?;
            set_attr(&ds, "upsampling", *k).map_err(&e)?;
        }
        self.file.close().map_err(&e)?;
        Ok(())
    }
}

/// Streaming writer of stempy's electron-counted layout (SparseArray version 3), for a plain
/// frame stack: scan shape (1, n_frames), frame shape (H, W).
pub struct StempyWriter {
    path: PathBuf,
    file: hdf5::File,
    frames: hdf5::Dataset,
    n: usize,
}

impl StempyWriter {
    pub fn create(path: &Path, height: u32, width: u32, n_frames: u64, metadata: &[(&str, String)]) -> Result<Self> {
        let e = err(path, "writing stempy file");
        let file = hdf5::File::create(path).map_err(&e)?;
        set_attr(&file, "version", 3i32).map_err(&e)?;
        let g = file.create_group("electron_events").map_err(&e)?;
        let frames = g.new_dataset::<VarLenArray<u32>>().chunk(1024).shape(0..).create("frames").map_err(&e)?;
        // stempy reads frame_shape = (Nx, Ny) as the array shape (rows, columns): Nx = H, Ny = W
        // (checked with non-square frames against stempy 3.6's reader and writer). Signed 64-bit:
        // unsigned loads but breaks indexing.
        set_attr(&frames, "Nx", height as i64).map_err(&e)?;
        set_attr(&frames, "Ny", width as i64).map_err(&e)?;
        let pos: Vec<u32> = (0..n_frames as u32).collect();
        let sp = g.new_dataset_builder().with_data(&pos).create("scan_positions").map_err(&e)?;
        set_attr(&sp, "Nx", n_frames as i64).map_err(&e)?;
        set_attr(&sp, "Ny", 1i64).map_err(&e)?;
        let m = file.create_group("metadata").map_err(&e)?;
        for (k, v) in metadata {
            set_str_attr(&m, k, v).map_err(&e)?;
        }
        Ok(Self { path: path.to_path_buf(), file, frames, n: 0 })
    }

    /// Appends frames: each is the list of flat pixel indices (row * W + col) of its electrons.
    pub fn append(&mut self, frames: &[Vec<u32>]) -> Result<()> {
        if frames.is_empty() {
            return Ok(());
        }
        let e = err(&self.path, "writing stempy file");
        let v: Vec<VarLenArray<u32>> = frames.iter().map(|f| VarLenArray::from_slice(f)).collect();
        self.frames.resize(self.n + v.len()).map_err(&e)?;
        self.frames.write_slice(&v, self.n..self.n + v.len()).map_err(&e)?;
        self.n += v.len();
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        self.file.close().map_err(|e| Error::file(&self.path, format!("writing stempy file: {e}")))
    }
}
