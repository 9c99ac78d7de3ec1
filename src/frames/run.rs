//! The streaming driver of `emsim frames`: batches are generated, encoded and written on three
//! threads at once, so memory stays bounded by a few batches whatever `--frames` is.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::{Batch, FramesConfig, Generator, Truth};
use crate::gpu::{AdapterSummary, Device};
use crate::io::atomic::Output;
use crate::io::frames_out::{
    ChunkScratch, Compression, DatasetInfo, DatasetWriter, Encoded, FrameEncoder, FramesFormat,
};
use crate::io::library::EventLibrary;
use crate::io::preview::write_preview;
use crate::{Error, Result};

pub struct RunOptions {
    pub out: PathBuf,
    pub format: FramesFormat,
    pub compression: Compression,
    pub force: bool,
    pub preview: Option<PathBuf>,
    pub progress: bool,
    /// Shown in the file's provenance.
    pub library_path: String,
}

/// The `--json` record of a frames run.
#[derive(Debug, Serialize)]
pub struct FramesSummary {
    pub stage: &'static str,
    pub path: &'static str,
    pub frames: u64,
    pub first_frame: u64,
    pub electrons: u64,
    pub height: u32,
    pub width: u32,
    pub dtype: &'static str,
    pub compression: String,
    /// Whole run: from the first frame made to the file flushed to the disk and in place.
    pub elapsed_s: f64,
    pub frames_per_s: f64,
    pub electrons_per_s: f64,
    /// Bytes of `/frames` as stored (compressed), and per frame.
    pub frames_bytes: u64,
    pub stored_bytes_per_frame: f64,
    /// Bytes of the whole output (frames, truth and metadata), and per frame: what the disk took.
    pub file_bytes: u64,
    pub file_bytes_per_frame: f64,
    pub output: String,
    pub adapter: Option<AdapterSummary>,
}

/// Bytes per frame as stored before the first batch tells: values, times a ratio that noisy
/// frames beat with any of the compressors (checked again on the first batch).
fn expected_bytes_per_frame(cfg: &FramesConfig, opts: &RunOptions) -> f64 {
    let raw = cfg.height as f64 * cfg.width as f64 * if cfg.quantize_u16 { 2.0 } else { 4.0 };
    let compressed = opts.format == FramesFormat::H5 && opts.compression != Compression::None;
    if compressed { raw * 0.5 } else { raw }
}

/// Fails when `bytes` more will not fit on the file system of `path` (with 1 % and 16 MiB spare).
fn check_space(path: &Path, bytes: f64, what: &str) -> Result<()> {
    if let Some(free) = crate::io::atomic::free_bytes(path) {
        let need = bytes * 1.01 + (16 << 20) as f64;
        if need > free as f64 {
            return Err(Error::file(
                path,
                format!(
                    "not enough space: {what} needs about {:.2} GB, the file system has {:.2} GB free",
                    need / 1e9,
                    free as f64 / 1e9
                ),
            ));
        }
    }
    Ok(())
}

/// Generates this shard's frames and writes them to `opts.out`. Three stages run at once, with at
/// most one batch waiting between them: making frames (GPU or CPU), encoding them (truth rows,
/// u16 conversion, chunk compression on every core) and writing (HDF5 direct chunk writes); the
/// slowest alone sets the rate.
pub fn run(cfg: &FramesConfig, lib: &EventLibrary, device: &Device, opts: &RunOptions) -> Result<FramesSummary> {
    cfg.validate()?;
    cfg.check_offset_keeps_noise()?;
    let output = Output::new(&opts.out, opts.force, "--out")?;
    if let Some(p) = &opts.preview {
        Output::new(p, true, "--preview")?; // fail early on an unwritable preview path
    }
    let range = cfg.shard_range();
    let counts: Vec<u32> = range.clone().map(|k| cfg.electron_count(k)).collect();
    let n = counts.len() as u64;
    check_space(&opts.out, expected_bytes_per_frame(cfg, opts) * n as f64, &format!("{n} frames"))?;
    let t0 = Instant::now();
    let gen_ = Generator::new(cfg.clone(), lib, device)?;
    let plan = gen_.plan(&counts);
    let info = DatasetInfo {
        cfg,
        first_frame: range.start,
        counts: &counts,
        pitch_um: lib.meta.pitch_um,
        library_path: &opts.library_path,
        library_source: &lib.meta.source,
    };
    let mut writer = DatasetWriter::create(output.tmp(), opts.format, opts.compression, &info)?;
    let encoder = writer.encoder();
    let bar = progress_bar(opts.progress, n, "frames");
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (etx, erx) = std::sync::mpsc::sync_channel::<(Encoded, Batch)>(1);
    let mut stored = 0u64;
    // On the CPU, each frame is encoded by the thread that made it, while it is in cache: one
    // pass over the frame instead of a batch written to memory and read back.
    let fused = matches!(device, Device::Cpu);
    let (gen_ref, encoder_ref, range_ref) = (&gen_, &encoder, &range);
    let etx_fused = etx.clone();
    std::thread::scope(|s| -> Result<()> {
        let producer = s.spawn(|| -> Result<()> {
            let (tx, etx) = (tx, etx_fused); // owned here, so the channels close when generation ends
            for (i, b) in plan.iter().enumerate() {
                let first = range.start + b.start as u64;
                if fused {
                    let want0 = i == 0 && opts.preview.is_some();
                    let (batch, enc, frame0) = make_and_encode(&gen_, &encoder, first, &counts[b.clone()], want0);
                    if let (Some(p), Some(frame)) = (&opts.preview, frame0) {
                        write_preview_of(p, cfg, &frame, &Truth::of(&batch, lib, range.start))?;
                    }
                    if etx.send((enc, batch)).is_err() {
                        break; // the writer failed; its error is reported
                    }
                    continue;
                }
                let batch = gen_.generate(first, &counts[b.clone()])?;
                if tx.send(batch).is_err() {
                    break; // a later stage failed; its error is reported
                }
            }
            Ok(())
        });
        let encoding = s.spawn(move || -> Result<()> {
            let (gen_, encoder, range) = (gen_ref, encoder_ref, range_ref);
            for (i, mut batch) in rx.iter().enumerate() {
                if i == 0
                    && let Some(p) = &opts.preview
                {
                    write_preview_of(p, cfg, &batch.frames, &Truth::of(&batch, lib, range.start))?;
                }
                let enc = encoder.encode(&batch.frames);
                gen_.recycle(std::mem::take(&mut batch.frames));
                if etx.send((enc, batch)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let write_result = (|| -> Result<()> {
            let mut done = 0u64;
            for (enc, batch) in erx.iter() {
                // the truth rows are made here, beside the writes, off the generator's path
                let (truth, k) = (Truth::of(&batch, lib, range.start), batch.counts.len());
                let bytes = enc.stored_bytes();
                if done == 0 && n > k as u64 {
                    // the first batch tells how well frames compress: will the rest fit?
                    let rest = (n - k as u64) as f64 * bytes as f64 / k as f64;
                    check_space(&opts.out, rest, &format!("the remaining {} frames", n - k as u64))?;
                }
                writer.write_encoded(&enc, &truth)?;
                crate::io::atomic::start_writeback(output.tmp());
                stored += bytes;
                done += k as u64;
                bar.inc(k as u64);
            }
            Ok(())
        })();
        drop(erx);
        let encoded = encoding.join().map_err(|_| Error::Other("frame encoder thread panicked".into()))?;
        let produced = producer.join().map_err(|_| Error::Other("frame generator thread panicked".into()))?;
        produced?;
        encoded?;
        write_result
    })?;
    writer.finish()?;
    let path = output.commit()?;
    let file_bytes = crate::io::atomic::tree_bytes(&path);
    bar.finish_and_clear();
    let elapsed = t0.elapsed().as_secs_f64();
    let electrons: u64 = counts.iter().map(|&c| c as u64).sum();
    Ok(FramesSummary {
        stage: "frames",
        path: device.path_name(),
        frames: n,
        first_frame: range.start,
        electrons,
        height: cfg.height,
        width: cfg.width,
        dtype: if cfg.quantize_u16 { "u16" } else { "f32" },
        compression: if opts.format == FramesFormat::H5 { opts.compression.name() } else { "none (npy)".into() },
        elapsed_s: elapsed,
        frames_per_s: n as f64 / elapsed,
        electrons_per_s: electrons as f64 / elapsed,
        frames_bytes: stored,
        stored_bytes_per_frame: stored as f64 / n as f64,
        file_bytes,
        file_bytes_per_frame: file_bytes as f64 / n as f64,
        output: path.display().to_string(),
        adapter: device.adapter().cloned(),
    })
}

/// One batch on the CPU path, each frame encoded by the thread that made it while it is in cache
/// (chunks for HDF5, the values for npy), and frame 0 as f32 when `frame0` (the preview).
fn make_and_encode(
    gen_: &Generator,
    encoder: &FrameEncoder,
    first: u64,
    counts: &[u32],
    frame0: bool,
) -> (Batch, Encoded, Option<Vec<f32>>) {
    let kept = std::sync::Mutex::new(None);
    let keep = |f: usize, frame: &dyn Fn() -> Vec<f32>| {
        if frame0 && f == 0 {
            *kept.lock().unwrap() = Some(frame());
        }
    };
    let (batch, parts) = if gen_.cfg.quantize_u16 {
        gen_.generate_cpu_each(first, counts, |f, frame: &[u16]| {
            keep(f, &|| frame.iter().map(|&v| v as f32).collect());
            CHUNK_SCRATCH.with_borrow_mut(|scratch| encoder.encode_one(frame, scratch))
        })
    } else {
        gen_.generate_cpu_each(first, counts, |f, frame: &[f32]| {
            keep(f, &|| frame.to_vec());
            CHUNK_SCRATCH.with_borrow_mut(|scratch| encoder.encode_one(frame, scratch))
        })
    };
    (batch, Encoded::concat(parts), kept.into_inner().unwrap())
}

thread_local! {
    /// The encoder's buffers on each thread that encodes frames as it makes them.
    static CHUNK_SCRATCH: std::cell::RefCell<ChunkScratch> = Default::default();
}

fn write_preview_of(p: &std::path::Path, cfg: &FramesConfig, frames: &[f32], truth: &Truth) -> Result<()> {
    let px = (cfg.height * cfg.width) as usize;
    let points: Vec<(f32, f32)> = truth
        .frame
        .iter()
        .zip(truth.x_px.iter().zip(&truth.y_px))
        .filter(|(f, _)| **f == truth.frame[0])
        .map(|(_, (x, y))| (*x, *y))
        .collect();
    write_preview(p, &frames[..px], cfg.height, cfg.width, cfg.offset_adu, cfg.gain_adu_per_e, &points)
}

/// A progress bar on stderr (hidden when not wanted or when stderr is not a terminal).
pub fn progress_bar(show: bool, len: u64, what: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
