//! Reading frame stacks for `count`: an emsim frames HDF5 file (or any HDF5 file with a 3-D numeric
//! dataset), an emsim `--format npy` folder, or a plain 3-D `.npy` file. Frames are read in batches
//! (never the whole stack) and converted to f32 ADU.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::chunks::Codec;
use super::h5util::{num_attr, open, str_attr};
use crate::{Error, Result};

/// What the frames file says about itself (defaults for files emsim did not write).
#[derive(Clone, Debug, Default)]
pub struct FramesMeta {
    pub n_frames: u64,
    pub height: u32,
    pub width: u32,
    pub gain_adu_per_e: Option<f32>,
    pub offset_adu: Option<f32>,
    pub noise_sigma_e: Option<f32>,
    pub pixel_size_um: Option<f32>,
    pub seed: Option<u64>,
    pub config_json: Option<String>,
    pub first_frame: u64,
}

enum Source {
    /// `u16`: the dataset stores u16 (raw detector frames), read natively by `read_u16`.
    /// `direct`: chunks emsim decodes itself, in parallel ([`Direct`]).
    H5 {
        ds: hdf5::Dataset,
        u16: bool,
        direct: Option<Direct>,
    },
    Npy {
        file: std::fs::File,
        data_start: u64,
        dtype: NpyDtype,
    },
}

#[derive(Clone, Copy, Debug)]
enum NpyDtype {
    F32,
    U16,
}

pub struct FramesReader {
    pub path: PathBuf,
    pub meta: FramesMeta,
    src: Source,
}

impl FramesReader {
    /// Opens `path`; `dataset` names the HDF5 dataset (default `frames`).
    pub fn open(path: &Path, dataset: &str) -> Result<Self> {
        if path.is_dir() {
            let npy = path.join("frames.npy");
            if !npy.exists() {
                return Err(Error::file(path, "folder has no frames.npy (expected an emsim --format npy dataset)"));
            }
            let mut r = Self::open_npy(&npy)?;
            r.path = path.to_path_buf();
            if let Ok(text) = std::fs::read_to_string(path.join("attrs.json")) {
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| Error::file(path.join("attrs.json"), format!("not valid JSON: {e}")))?;
                let f = |k: &str| v.get(k).and_then(|x| x.as_f64()).map(|x| x as f32);
                r.meta.gain_adu_per_e = f("gain_adu_per_e");
                r.meta.offset_adu = f("offset_adu");
                r.meta.noise_sigma_e = f("noise_sigma_e");
                r.meta.pixel_size_um = f("pixel_size_um");
                r.meta.seed = v.get("seed").and_then(|x| x.as_u64());
                r.meta.first_frame = v.get("first_frame").and_then(|x| x.as_u64()).unwrap_or(0);
                r.meta.config_json = v.get("config").map(|c| c.to_string());
            }
            return Ok(r);
        }
        if path.extension().is_some_and(|e| e == "npy") {
            return Self::open_npy(path);
        }
        // Zstandard chunks (filter 32015) that emsim cannot read directly go through HDF5's
        // pipeline, which then needs the filter: register it (once) before HDF5 looks.
        super::h5_filters::register().map_err(|m| Error::file(path, m))?;
        let file = open(path, "frames file")?;
        let ds = file.dataset(dataset).map_err(|_| {
            Error::file(
                path,
                format!("no /{dataset} dataset (expected frames as (F, H, W); pick another with --dataset)"),
            )
        })?;
        let shape = ds.shape();
        if shape.len() != 3 {
            return Err(Error::file(
                path,
                format!("/{dataset} must be 3-D (frames, height, width), found shape {shape:?}"),
            ));
        }
        let dtype = ds.dtype().map_err(|e| Error::file(path, format!("/{dataset}: {e}")))?;
        use hdf5::types::TypeDescriptor as T;
        match dtype.to_descriptor() {
            Ok(T::Float(_) | T::Integer(_) | T::Unsigned(_)) => {}
            Ok(other) => {
                return Err(Error::file(
                    path,
                    format!("/{dataset} has type {other:?}; expected a numeric type (f32, u16, ...)"),
                ));
            }
            Err(e) => return Err(Error::file(path, format!("/{dataset}: unsupported type: {e}"))),
        }
        if shape[1] == 0 || shape[2] == 0 || shape[1] > u32::MAX as usize || shape[2] > u32::MAX as usize {
            return Err(Error::file(path, format!("/{dataset} has unusable frame shape {:?}", &shape[1..])));
        }
        let meta = FramesMeta {
            n_frames: shape[0] as u64,
            height: shape[1] as u32,
            width: shape[2] as u32,
            gain_adu_per_e: num_attr(&ds, "gain_adu_per_e"),
            offset_adu: num_attr(&ds, "offset_adu"),
            noise_sigma_e: num_attr(&ds, "noise_sigma_e"),
            pixel_size_um: num_attr(&ds, "pixel_size_um"),
            seed: num_attr(&file, "seed"),
            config_json: str_attr(&file, "config_json"),
            first_frame: num_attr(&file, "first_frame").unwrap_or(0),
        };
        let u16 = matches!(dtype.to_descriptor(), Ok(T::Unsigned(hdf5::types::IntSize::U2)));
        let direct = Direct::of(&ds, &shape, &dtype);
        Ok(Self { path: path.to_path_buf(), meta, src: Source::H5 { ds, u16, direct } })
    }

    fn open_npy(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
        let bad = |m: &str| Error::file(path, format!("not a readable .npy frame stack: {m}"));
        let mut magic = [0u8; 10];
        file.read_exact(&mut magic).map_err(|_| bad("too short"))?;
        if &magic[..6] != b"\x93NUMPY" {
            return Err(bad("missing the NUMPY magic"));
        }
        let (hlen, pre) = if magic[6] == 1 {
            (u16::from_le_bytes([magic[8], magic[9]]) as usize, 10)
        } else {
            let mut b = [0u8; 2];
            file.read_exact(&mut b).map_err(|_| bad("truncated header"))?;
            (u32::from_le_bytes([magic[8], magic[9], b[0], b[1]]) as usize, 12)
        };
        let mut header = vec![0u8; hlen];
        file.read_exact(&mut header).map_err(|_| bad("truncated header"))?;
        let header = String::from_utf8_lossy(&header).to_string();
        let dtype = if header.contains("'<f4'") {
            NpyDtype::F32
        } else if header.contains("'<u2'") {
            NpyDtype::U16
        } else {
            return Err(bad(&format!("dtype must be little-endian float32 or uint16, header {header:?}")));
        };
        if header.contains("'fortran_order': True") {
            return Err(bad("Fortran order is not supported (save with C order)"));
        }
        let shape_str =
            header.split("'shape':").nth(1).and_then(|s| s.split(['(', ')']).nth(1)).ok_or_else(|| bad("no shape"))?;
        let shape: Vec<u64> = shape_str
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad("bad shape"))?;
        if shape.len() != 3 || shape[1] == 0 || shape[2] == 0 {
            return Err(bad(&format!("must be 3-D (frames, height, width), found shape {shape:?}")));
        }
        let meta =
            FramesMeta { n_frames: shape[0], height: shape[1] as u32, width: shape[2] as u32, ..Default::default() };
        Ok(Self { path: path.to_path_buf(), meta, src: Source::Npy { file, data_start: (pre + hlen) as u64, dtype } })
    }

    /// Whether the chunks are read raw and decompressed by emsim on every core (HDF5 datasets of
    /// u16 or f32 in whole-row chunks, shuffle/deflate/Zstandard or uncompressed); otherwise HDF5
    /// reads them.
    pub fn reads_chunks_directly(&self) -> bool {
        matches!(self.src, Source::H5 { direct: Some(_), .. })
    }

    /// Whether the frames are stored as u16 (then [`FramesReader::read_u16`] reads them as they
    /// are, without converting).
    pub fn is_u16(&self) -> bool {
        matches!(self.src, Source::H5 { u16: true, .. } | Source::Npy { dtype: NpyDtype::U16, .. })
    }

    /// Reads frames `[start, start + n)` of a u16 dataset ([`FramesReader::is_u16`]) as u16,
    /// row-major (n, H, W).
    pub fn read_u16(&mut self, start: u64, n: usize) -> Result<Vec<u16>> {
        assert!(self.is_u16(), "read_u16 on frames that are not u16");
        match self.src {
            Source::H5 { .. } => self.read_h5(start, n),
            Source::Npy { .. } => {
                Ok(self.read_npy(start, n, 2)?.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect())
            }
        }
    }

    /// Reads frames `[start, start + n)` as f32, row-major (n, H, W).
    pub fn read(&mut self, start: u64, n: usize) -> Result<Vec<f32>> {
        match self.src {
            Source::H5 { u16: true, direct: Some(_), .. } => {
                use rayon::prelude::*;
                Ok(self.read_h5::<u16>(start, n)?.par_iter().map(|&v| f32::from(v)).collect())
            }
            Source::H5 { .. } => self.read_h5(start, n),
            Source::Npy { dtype: NpyDtype::F32, .. } => Ok(self
                .read_npy(start, n, 4)?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()),
            Source::Npy { dtype: NpyDtype::U16, .. } => {
                Ok(self.read_u16(start, n)?.into_iter().map(f32::from).collect())
            }
        }
    }

    /// The error of a failed read of frames `[start, start + n)`.
    fn read_error(&self, start: u64, n: usize, e: impl std::fmt::Display) -> Error {
        Error::file(&self.path, format!("reading frames {start}..{}: {e}", start + n as u64))
    }

    /// Frames `[start, start + n)` of the HDF5 dataset as `T` (HDF5 converts the stored type;
    /// chunks emsim can decode are read raw and decoded on every core).
    fn read_h5<T: hdf5::H5Type + bytemuck::Pod>(&self, start: u64, n: usize) -> Result<Vec<T>> {
        let Source::H5 { ds, direct, .. } = &self.src else { unreachable!("an HDF5 source") };
        if let Some(d) = direct
            && d.elem == std::mem::size_of::<T>()
        {
            let (h, w) = (self.meta.height as usize, self.meta.width as usize);
            let mut out = vec![T::zeroed(); n * h * w];
            d.read(ds, start, n, h, w, bytemuck::cast_slice_mut(&mut out)).map_err(|e| self.read_error(start, n, e))?;
            return Ok(out);
        }
        let sel = ndarray::s![start as usize..start as usize + n, .., ..];
        let a: ndarray::Array3<T> = ds.read_slice(sel).map_err(|e| self.read_error(start, n, e))?;
        Ok(a.into_raw_vec_and_offset().0)
    }

    /// The raw bytes of frames `[start, start + n)` of the .npy file, `item` bytes per value.
    fn read_npy(&mut self, start: u64, n: usize, item: usize) -> Result<Vec<u8>> {
        let px = self.meta.height as usize * self.meta.width as usize;
        let Source::Npy { file, data_start, .. } = &mut self.src else { unreachable!("an npy source") };
        let mut bytes = vec![0u8; n * px * item];
        let r = file
            .seek(SeekFrom::Start(*data_start + start * (px * item) as u64))
            .and_then(|_| file.read_exact(&mut bytes));
        r.map_err(|e| self.read_error(start, n, e))?;
        Ok(bytes)
    }
}

/// How to read an HDF5 frames dataset's chunks without HDF5's filter pipeline: chunks of
/// (frames, rows, the full width) in a pipeline emsim decodes ([`Codec`]), of u16 or
/// little-endian f32.
#[derive(Clone, Copy, Debug)]
struct Direct {
    codec: Codec,
    /// Chunk shape: frames and rows (the width is whole).
    chunk_frames: usize,
    chunk_rows: usize,
    elem: usize,
}

impl Direct {
    fn of(ds: &hdf5::Dataset, shape: &[usize], dtype: &hdf5::Datatype) -> Option<Self> {
        use hdf5::types::{FloatSize, IntSize, TypeDescriptor as T};
        let elem = match dtype.to_descriptor().ok()? {
            T::Unsigned(IntSize::U2) => 2,
            T::Float(FloatSize::U4) => 4,
            _ => return None,
        };
        // the stored byte order must be ours (little-endian)
        let native = match elem {
            2 => dtype.is::<u16>(),
            _ => dtype.is::<f32>(),
        };
        let chunk = ds.chunk()?;
        if !native || chunk.len() != 3 || chunk[2] != shape[2] || cfg!(target_endian = "big") {
            return None;
        }
        let codec = Codec::of(&ds.filters())?;
        Some(Self { codec, chunk_frames: chunk[0], chunk_rows: chunk[1], elem })
    }

    /// Frames `[start, start + n)` into `out` (`n * h * w` values of `elem` bytes): stored chunks
    /// read in turn, decoded in parallel.
    fn read(
        &self,
        ds: &hdf5::Dataset,
        start: u64,
        n: usize,
        h: usize,
        w: usize,
        out: &mut [u8],
    ) -> std::result::Result<(), String> {
        use rayon::prelude::*;
        let (cf, cr) = (self.chunk_frames as u64, self.chunk_rows);
        let first = start / cf * cf;
        let mut offsets = Vec::new();
        let mut f = first;
        while f < start + n as u64 {
            for r in (0..h).step_by(cr) {
                offsets.push([f, r as u64, 0]);
            }
            f += cf;
        }
        let stored: Vec<(Vec<u8>, u32)> =
            offsets.iter().map(|o| crate::io::chunks::read_chunk(ds, o)).collect::<std::result::Result<_, _>>()?;
        let chunk_bytes = self.chunk_frames * cr * w * self.elem;
        let row_bytes = w * self.elem;
        if self.chunk_frames == 1 {
            // each chunk is one band of rows of one frame, a run of `out` in order: decode in
            // place (the short last band of a frame through a buffer)
            let mut runs = Vec::with_capacity(offsets.len());
            let mut rest = out;
            for o in &offsets {
                let (run, r) = rest.split_at_mut(cr.min(h - o[1] as usize) * row_bytes);
                runs.push(run);
                rest = r;
            }
            return stored.par_iter().zip(runs).try_for_each(|((bytes, mask), run)| {
                if run.len() == chunk_bytes {
                    return self.codec.decode(bytes, *mask, self.elem, run);
                }
                let mut buf = vec![0u8; chunk_bytes];
                self.codec.decode(bytes, *mask, self.elem, &mut buf)?;
                run.copy_from_slice(&buf[..run.len()]);
                Ok(())
            });
        }
        let decoded: Vec<Vec<u8>> = stored
            .par_iter()
            .map(|(bytes, mask)| {
                let mut buf = vec![0u8; chunk_bytes];
                self.codec.decode(bytes, *mask, self.elem, &mut buf).map(|_| buf)
            })
            .collect::<std::result::Result<_, _>>()?;
        // copy the chunks' frames and rows that fall in the range
        for (o, buf) in offsets.iter().zip(&decoded) {
            for k in 0..self.chunk_frames {
                let frame = o[0] + k as u64;
                if frame < start || frame >= start + n as u64 {
                    continue;
                }
                let r0 = o[1] as usize;
                let rows = cr.min(h - r0);
                let src = &buf[k * cr * row_bytes..][..rows * row_bytes];
                let dst = ((frame - start) as usize * h + r0) * row_bytes;
                out[dst..dst + rows * row_bytes].copy_from_slice(src);
            }
        }
        Ok(())
    }
}

/// Reads a 2-D map (dark reference, gain map) of `height x width` from `.npy` (f32/u16) or HDF5
/// (`file.h5` uses the first 2-D dataset named `dark`, `gain`, `data` or given as `file.h5:/name`).
pub fn read_map(spec: &str, flag: &str, height: u32, width: u32) -> Result<Vec<f32>> {
    let (path, name) = match spec.rsplit_once(":/") {
        Some((p, n)) => (PathBuf::from(p), Some(n.to_string())),
        None => (PathBuf::from(spec), None),
    };
    let px = height as usize * width as usize;
    let v: Vec<f32> = if path.extension().is_some_and(|e| e == "npy") {
        // A 2-D npy is a 1-frame stack for our reader once the shape is checked.
        let arr: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&path)
            .map_err(|e| Error::invalid(flag, format!("{}: not a readable float32 .npy: {e}", path.display())))?;
        if arr.shape() != [height as usize, width as usize] {
            return Err(Error::invalid(
                flag,
                format!("{}: shape {:?}, the frames are {height}x{width}", path.display(), arr.shape()),
            ));
        }
        arr.iter().copied().collect()
    } else {
        let f = open(&path, flag.trim_start_matches('-'))?;
        let names = match &name {
            Some(n) => vec![n.clone()],
            None => vec!["dark".into(), "gain".into(), "data".into()],
        };
        let ds = names.iter().find_map(|n| f.dataset(n).ok()).ok_or_else(|| {
            Error::invalid(
                flag,
                format!(
                    "{}: no dataset {} (name one with {}:/name)",
                    path.display(),
                    names.join(" or "),
                    path.display()
                ),
            )
        })?;
        if ds.shape() != [height as usize, width as usize] {
            return Err(Error::invalid(
                flag,
                format!("{}: shape {:?}, the frames are {height}x{width}", path.display(), ds.shape()),
            ));
        }
        ds.read_raw::<f32>().map_err(|e| Error::invalid(flag, format!("{}: {e}", path.display())))?
    };
    if v.len() != px || v.iter().any(|x| !x.is_finite()) {
        return Err(Error::invalid(
            flag,
            format!("{}: {} values, must be {px} finite numbers", path.display(), v.len()),
        ));
    }
    Ok(v)
}
