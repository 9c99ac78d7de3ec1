//! Frames datasets on disk: HDF5 (`/frames`, `/truth/*`) or a folder of `.npy` files.
//! Layout: `docs/formats.md` ("frames dataset").

use std::path::{Path, PathBuf};

use ndarray::{ArrayView3, s};
use rayon::prelude::*;

pub use super::chunks::Compression;
use super::chunks::{Scratch, encode, encode_planes, write_chunk};
use super::h5util::{err, set_attr, set_str_attr, write_column};
use super::npy::{NpyWriter, write_1d};
use crate::frames::{FramesConfig, Truth};
use crate::{Error, Result};

pub const SCHEMA: &str = "emsim-frames/1";

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramesFormat {
    H5,
    Npy,
}

impl FramesFormat {
    /// The names `--format` takes (and `hdf5` for `h5`).
    pub const NAMES: [&'static str; 2] = ["h5", "npy"];
}

impl std::str::FromStr for FramesFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "h5" | "hdf5" => Ok(Self::H5),
            "npy" => Ok(Self::Npy),
            _ => Err(Error::invalid("--format", format!("'{s}': expected h5 or npy"))),
        }
    }
}

/// What a dataset file records about how it was made.
pub struct DatasetInfo<'a> {
    pub cfg: &'a FramesConfig,
    /// Global index of the file's first frame (shards).
    pub first_frame: u64,
    /// Per-frame electron counts of the frames in this file.
    pub counts: &'a [u32],
    pub pitch_um: f64,
    pub library_path: &'a str,
    pub library_source: &'a str,
}

impl DatasetInfo<'_> {
    fn config_json(&self) -> String {
        serde_json::json!({
            "config": self.cfg,
            "first_frame": self.first_frame,
            "frames_in_file": self.counts.len(),
            "pitch_um": self.pitch_um,
            "library": self.library_path,
            "library_source": self.library_source,
        })
        .to_string()
    }

    fn truth_offsets(&self) -> Vec<u64> {
        let mut o = vec![0u64];
        for &c in self.counts {
            o.push(o.last().unwrap() + c as u64);
        }
        o
    }
}

#[allow(clippy::large_enum_variant, reason = "one sink per run: the size of the enum does not matter")]
enum Sink {
    H5 { file: hdf5::File, frames: hdf5::Dataset, truth: Vec<hdf5::Dataset> },
    Npy { frames_f32: Option<NpyWriter<f32>>, frames_u16: Option<NpyWriter<u16>>, truth: TruthNpy },
}

struct TruthNpy {
    frame: NpyWriter<u32>,
    x: NpyWriter<f32>,
    y: NpyWriter<f32>,
    event: NpyWriter<u32>,
    deposit: NpyWriter<f32>,
}

/// Turns frames into the bytes the file stores, on every core: values as stored (u16 or f32),
/// and for HDF5 each chunk compressed ([`Compression`]). Cheap to clone; used on any thread.
#[derive(Clone, Copy, Debug)]
pub struct FrameEncoder {
    height: usize,
    width: usize,
    quantize: bool,
    /// Chunks are (1, chunk_rows, width).
    chunk_rows: usize,
    /// None: the values as they are (npy, or HDF5 compressing through its own pipeline).
    compression: Option<Compression>,
}

/// One batch of frames ready to write.
pub enum Encoded {
    /// One stored chunk per (frame, band of `chunk_rows` rows), frame by frame.
    Chunks(Vec<Vec<u8>>),
    F32(Vec<f32>),
    U16(Vec<u16>),
}

impl Encoded {
    /// The frames of several parts (of one kind) in order, as one.
    pub fn concat(parts: Vec<Encoded>) -> Encoded {
        let mut it = parts.into_iter();
        let Some(mut all) = it.next() else {
            return Encoded::Chunks(Vec::new());
        };
        for part in it {
            match (&mut all, part) {
                (Self::Chunks(a), Self::Chunks(b)) => a.extend(b),
                (Self::F32(a), Self::F32(b)) => a.extend(b),
                (Self::U16(a), Self::U16(b)) => a.extend(b),
                _ => unreachable!("the parts of a batch are of one kind"),
            }
        }
        all
    }

    /// Bytes that go to the file.
    pub fn stored_bytes(&self) -> u64 {
        match self {
            Self::Chunks(c) => c.iter().map(|c| c.len() as u64).sum(),
            Self::F32(v) => v.len() as u64 * 4,
            Self::U16(v) => v.len() as u64 * 2,
        }
    }
}

impl FrameEncoder {
    fn elem(&self) -> usize {
        if self.quantize { 2 } else { 4 }
    }

    /// Encodes `frames` (`k * height * width` ADU values; whole numbers when quantized).
    pub fn encode(&self, frames: &[f32]) -> Encoded {
        let Some(c) = self.compression else {
            return if self.quantize {
                Encoded::U16(frames.par_iter().map(|&v| crate::frames::noise::quantized_u16(v)).collect())
            } else {
                Encoded::F32(frames.to_vec())
            };
        };
        let (h, w) = (self.height, self.width);
        let bands = h.div_ceil(self.chunk_rows);
        let k = frames.len() / (h * w);
        let chunks = (0..k * bands)
            .into_par_iter()
            .map_init(ChunkScratch::default, |scratch, j| {
                let (f, r0) = (j / bands, (j % bands) * self.chunk_rows);
                let rows = self.chunk_rows.min(h - r0);
                self.encode_chunk(c, &frames[(f * h + r0) * w..(f * h + r0 + rows) * w], scratch)
            })
            .collect();
        Encoded::Chunks(chunks)
    }

    /// One frame (`height * width` ADU values, f32, or u16 when quantized) encoded as
    /// [`encode`](Self::encode) encodes a batch, on the calling thread.
    pub fn encode_one<V: ChunkValue>(&self, frame: &[V], scratch: &mut ChunkScratch) -> Encoded {
        if let Some(c) = self.compression {
            // band by band
            let w = self.width;
            return Encoded::Chunks(
                frame.chunks(self.chunk_rows * w).map(|vals| self.encode_chunk(c, vals, scratch)).collect(),
            );
        }
        if self.quantize {
            Encoded::U16(frame.iter().map(|v| v.adu_u16()).collect())
        } else {
            Encoded::F32(frame.iter().map(|v| v.adu_f32()).collect())
        }
    }

    /// One chunk: `vals` are its rows (fewer than `chunk_rows` at the bottom edge: the chunk is
    /// stored whole, zero-padded).
    fn encode_chunk<V: ChunkValue>(&self, c: Compression, vals: &[V], scratch: &mut ChunkScratch) -> Vec<u8> {
        let ChunkScratch { codec, raw } = scratch;
        let len = self.chunk_rows * self.width;
        if self.quantize && c.byte_shuffled() {
            // the hot path: the two shuffled byte planes straight from the values
            let mut planes = std::mem::take(&mut codec.planes);
            planes.resize(len * 2, 0); // every byte is written below: no need to clear it first
            let (lo, hi) = planes.split_at_mut(len);
            for ((&v, l), h) in vals.iter().zip(&mut lo[..vals.len()]).zip(&mut hi[..vals.len()]) {
                [*l, *h] = v.adu_u16().to_le_bytes();
            }
            lo[vals.len()..].fill(0); // the padding of a chunk at the bottom edge
            hi[vals.len()..].fill(0);
            let stored = encode_planes(c, &planes, 2, codec);
            codec.planes = planes;
            return stored;
        }
        let elem = self.elem();
        raw.clear();
        raw.resize(len * elem, 0);
        if self.quantize {
            for (b, &v) in raw.chunks_exact_mut(2).zip(vals) {
                b.copy_from_slice(&v.adu_u16().to_le_bytes());
            }
        } else {
            for (b, &v) in raw.chunks_exact_mut(4).zip(vals) {
                b.copy_from_slice(&v.adu_f32().to_le_bytes());
            }
        }
        encode(c, raw, elem, codec)
    }
}

/// A frame value the encoder takes: f32 ADU (whole numbers when quantized), or u16 ADU.
pub trait ChunkValue: Copy {
    /// The quantized value as stored.
    fn adu_u16(self) -> u16;
    /// The value as f32 (unquantized frames).
    fn adu_f32(self) -> f32;
}

impl ChunkValue for f32 {
    #[inline(always)]
    fn adu_u16(self) -> u16 {
        crate::frames::noise::quantized_u16(self)
    }
    #[inline(always)]
    fn adu_f32(self) -> f32 {
        self
    }
}

impl ChunkValue for u16 {
    #[inline(always)]
    fn adu_u16(self) -> u16 {
        self
    }
    #[inline(always)]
    fn adu_f32(self) -> f32 {
        self as f32
    }
}

/// Per-thread buffers of [`FrameEncoder`].
#[derive(Default)]
pub struct ChunkScratch {
    codec: Scratch,
    raw: Vec<u8>,
}

/// Writes frames and truth batch by batch.
pub struct DatasetWriter {
    sink: Sink,
    path: PathBuf,
    encoder: FrameEncoder,
    frames_written: usize,
    truth_written: usize,
}

impl DatasetWriter {
    /// Creates the file (HDF5) or folder (npy) at `path` (a temporary name; see `io::atomic`).
    pub fn create(path: &Path, format: FramesFormat, compression: Compression, info: &DatasetInfo) -> Result<Self> {
        let cfg = info.cfg;
        let (n, h, w) = (info.counts.len(), cfg.height as usize, cfg.width as usize);
        let offsets = info.truth_offsets();
        let m = *offsets.last().unwrap() as usize;
        let chunk_rows = h.min((1 << 20) / w).max(1);
        let encoder = FrameEncoder {
            height: h,
            width: w,
            quantize: cfg.quantize_u16,
            chunk_rows,
            compression: (format == FramesFormat::H5 && compression.direct()).then_some(compression),
        };
        let sink = match format {
            FramesFormat::H5 => {
                let e = err(path, "writing frames");
                if compression.third_party() {
                    super::h5_filters::register().map_err(|m| Error::file(path, m))?;
                }
                let file = hdf5::File::create(path).map_err(&e)?;
                set_str_attr(&file, "schema", SCHEMA).map_err(&e)?;
                set_str_attr(&file, "generator", &crate::generator()).map_err(&e)?;
                set_attr(&file, "seed", cfg.seed).map_err(&e)?;
                set_attr(&file, "first_frame", info.first_frame).map_err(&e)?;
                set_attr(&file, "total_frames", cfg.frames).map_err(&e)?;
                set_str_attr(&file, "shard", &format!("{}/{}", cfg.shard_index, cfg.shard_count)).map_err(&e)?;
                set_str_attr(&file, "config_json", &info.config_json()).map_err(&e)?;
                let frames = if cfg.quantize_u16 {
                    let b = file.new_dataset::<u16>().chunk((1, chunk_rows, w)).set_filters(&compression.filters(2));
                    b.shape((n, h, w)).create("frames").map_err(&e)?
                } else {
                    let b = file.new_dataset::<f32>().chunk((1, chunk_rows, w)).set_filters(&compression.filters(4));
                    b.shape((n, h, w)).create("frames").map_err(&e)?
                };
                set_str_attr(&frames, "units", "ADU").map_err(&e)?;
                set_str_attr(&frames, "compression", &compression.name()).map_err(&e)?;
                set_str_attr(&frames, "axes", "frame,y,x").map_err(&e)?;
                set_attr(&frames, "noise_sigma_e", cfg.noise_sigma_e).map_err(&e)?;
                set_attr(&frames, "gain_adu_per_e", cfg.gain_adu_per_e).map_err(&e)?;
                set_attr(&frames, "offset_adu", cfg.offset_adu).map_err(&e)?;
                set_attr(&frames, "pixel_size_um", info.pitch_um).map_err(&e)?;
                let tg = file.create_group("truth").map_err(&e)?;
                set_str_attr(&tg, "convention", "x = column (fast axis), y = row, in pixels; pixel (r, c) spans [c, c+1) x [r, r+1), centre (c+0.5, r+0.5)").map_err(&e)?;
                write_column(
                    &tg,
                    "offsets",
                    &offsets,
                    "index: electrons of frame k are rows [offsets[k], offsets[k+1])",
                )
                .map_err(&e)?;
                let mut truth = Vec::new();
                for (name, units, is_u32) in [
                    ("frame", "index", true),
                    ("x_px", "px", false),
                    ("y_px", "px", false),
                    ("event", "index into the event library", true),
                    ("deposit_kev", "keV", false),
                ] {
                    let ds = if is_u32 {
                        file.new_dataset::<u32>().shape(m).create(format!("truth/{name}").as_str())
                    } else {
                        file.new_dataset::<f32>().shape(m).create(format!("truth/{name}").as_str())
                    }
                    .map_err(&e)?;
                    set_str_attr(&ds, "units", units).map_err(&e)?;
                    truth.push(ds);
                }
                Sink::H5 { file, frames, truth }
            }
            FramesFormat::Npy => {
                std::fs::create_dir(path).map_err(|e| Error::file(path, e))?;
                let shape = [n as u64, h as u64, w as u64];
                let fp = path.join("frames.npy");
                let (frames_f32, frames_u16) = if cfg.quantize_u16 {
                    (None, Some(NpyWriter::create(&fp, &shape)?))
                } else {
                    (Some(NpyWriter::create(&fp, &shape)?), None)
                };
                write_1d(&path.join("truth_offsets.npy"), &offsets)?;
                let mm = [m as u64];
                let truth = TruthNpy {
                    frame: NpyWriter::create(&path.join("truth_frame.npy"), &mm)?,
                    x: NpyWriter::create(&path.join("truth_x_px.npy"), &mm)?,
                    y: NpyWriter::create(&path.join("truth_y_px.npy"), &mm)?,
                    event: NpyWriter::create(&path.join("truth_event.npy"), &mm)?,
                    deposit: NpyWriter::create(&path.join("truth_deposit_kev.npy"), &mm)?,
                };
                let attrs = serde_json::json!({
                    "schema": SCHEMA,
                    "generator": crate::generator(),
                    "units": {"frames": "ADU", "truth_x_px": "px", "truth_y_px": "px", "truth_deposit_kev": "keV"},
                    "convention": "x = column (fast axis), y = row; pixel (r, c) spans [c, c+1) x [r, r+1)",
                    "noise_sigma_e": cfg.noise_sigma_e, "gain_adu_per_e": cfg.gain_adu_per_e,
                    "offset_adu": cfg.offset_adu, "pixel_size_um": info.pitch_um,
                    "seed": cfg.seed, "first_frame": info.first_frame,
                    "config": serde_json::from_str::<serde_json::Value>(&info.config_json()).unwrap_or_default(),
                });
                std::fs::write(path.join("attrs.json"), serde_json::to_string_pretty(&attrs).unwrap())
                    .map_err(|e| Error::file(path, e))?;
                Sink::Npy { frames_f32, frames_u16, truth }
            }
        };
        Ok(Self { sink, path: path.to_path_buf(), encoder, frames_written: 0, truth_written: 0 })
    }

    /// What turns frames into stored bytes for this file (to run on another thread).
    pub fn encoder(&self) -> FrameEncoder {
        self.encoder
    }

    /// Appends frames (`k * height * width` values) and their truth rows.
    pub fn write(&mut self, frames: &[f32], truth: &Truth) -> Result<()> {
        let enc = self.encoder.encode(frames);
        self.write_encoded(&enc, truth)
    }

    /// Appends a batch made by [`FrameEncoder::encode`] and its truth rows.
    pub fn write_encoded(&mut self, enc: &Encoded, truth: &Truth) -> Result<()> {
        let (h, w) = (self.encoder.height, self.encoder.width);
        let k = match enc {
            Encoded::Chunks(c) => c.len() / h.div_ceil(self.encoder.chunk_rows),
            Encoded::F32(v) => v.len() / (h * w),
            Encoded::U16(v) => v.len() / (h * w),
        };
        let (f0, t0, m) = (self.frames_written, self.truth_written, truth.x_px.len());
        match &mut self.sink {
            Sink::H5 { frames: ds, truth: tds, .. } => {
                let e = err(&self.path, "writing frames");
                let shape = (k, h, w);
                match enc {
                    Encoded::Chunks(chunks) => {
                        let bands = h.div_ceil(self.encoder.chunk_rows);
                        for (j, c) in chunks.iter().enumerate() {
                            let offset = [(f0 + j / bands) as u64, ((j % bands) * self.encoder.chunk_rows) as u64, 0];
                            write_chunk(ds, &offset, c)
                                .map_err(|m| Error::file(&self.path, format!("writing frames: {m}")))?;
                        }
                    }
                    Encoded::U16(v) => {
                        let view = ArrayView3::from_shape(shape, v).expect("batch shape");
                        ds.write_slice(view, s![f0..f0 + k, .., ..]).map_err(&e)?;
                    }
                    Encoded::F32(v) => {
                        let view = ArrayView3::from_shape(shape, v).expect("batch shape");
                        ds.write_slice(view, s![f0..f0 + k, .., ..]).map_err(&e)?;
                    }
                }
                if m > 0 {
                    tds[0].write_slice(&truth.frame, s![t0..t0 + m]).map_err(&e)?;
                    tds[1].write_slice(&truth.x_px, s![t0..t0 + m]).map_err(&e)?;
                    tds[2].write_slice(&truth.y_px, s![t0..t0 + m]).map_err(&e)?;
                    tds[3].write_slice(&truth.event, s![t0..t0 + m]).map_err(&e)?;
                    tds[4].write_slice(&truth.deposit_kev, s![t0..t0 + m]).map_err(&e)?;
                }
            }
            Sink::Npy { frames_f32, frames_u16, truth: t } => {
                match (enc, frames_f32, frames_u16) {
                    (Encoded::F32(v), Some(wr), _) => wr.append(v)?,
                    (Encoded::U16(v), _, Some(wr)) => wr.append(v)?,
                    _ => unreachable!("npy frames are encoded as their values"),
                }
                t.frame.append(&truth.frame)?;
                t.x.append(&truth.x_px)?;
                t.y.append(&truth.y_px)?;
                t.event.append(&truth.event)?;
                t.deposit.append(&truth.deposit_kev)?;
            }
        }
        self.frames_written += k;
        self.truth_written += m;
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        match self.sink {
            Sink::H5 { file, .. } => file.close().map_err(err(&self.path, "closing frames file")),
            Sink::Npy { frames_f32, frames_u16, truth } => {
                if let Some(w) = frames_f32 {
                    w.finish()?;
                }
                if let Some(w) = frames_u16 {
                    w.finish()?;
                }
                truth.frame.finish()?;
                truth.x.finish()?;
                truth.y.finish()?;
                truth.event.finish()?;
                truth.deposit.finish()
            }
        }
    }
}
