//! The streaming driver of `emsim frames`: batches are generated on one thread and written on
//! another, so memory stays bounded by two batches whatever `--frames` is.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::{FramesConfig, Generator, Truth};
use crate::gpu::{AdapterSummary, Device};
use crate::io::atomic::Output;
use crate::io::frames_out::{Compression, DatasetInfo, DatasetWriter, FramesFormat};
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
    pub elapsed_s: f64,
    pub frames_per_s: f64,
    pub electrons_per_s: f64,
    pub output: String,
    pub adapter: Option<AdapterSummary>,
}

/// Generates this shard's frames and writes them to `opts.out`.
pub fn run(cfg: &FramesConfig, lib: &EventLibrary, device: &Device, opts: &RunOptions) -> Result<FramesSummary> {
    cfg.validate()?;
    let output = Output::new(&opts.out, opts.force, "--out")?;
    if let Some(p) = &opts.preview {
        Output::new(p, true, "--preview")?; // fail early on an unwritable preview path
    }
    let t0 = Instant::now();
    let range = cfg.shard_range();
    let counts: Vec<u32> = range.clone().map(|k| cfg.electron_count(k)).collect();
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
    let bar = progress_bar(opts.progress, counts.len() as u64, "frames");
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::scope(|s| -> Result<()> {
        let producer = s.spawn(|| -> Result<()> {
            let tx = tx; // owned here, so the channel closes when generation ends
            for b in &plan {
                let batch = gen_.generate(range.start + b.start as u64, &counts[b.clone()])?;
                if tx.send(batch).is_err() {
                    break; // the writer failed; its error is reported
                }
            }
            Ok(())
        });
        let mut first = true;
        let write_result = (|| -> Result<()> {
            for batch in rx.iter() {
                let truth = Truth::of(&batch, lib, range.start);
                if first {
                    if let Some(p) = &opts.preview {
                        write_preview_of(p, cfg, &batch.frames, &truth)?;
                    }
                    first = false;
                }
                writer.write(&batch.frames, &truth)?;
                bar.inc(batch.counts.len() as u64);
                gen_.recycle(batch);
            }
            Ok(())
        })();
        drop(rx);
        let produced = producer.join().map_err(|_| Error::Other("frame generator thread panicked".into()))?;
        produced?;
        write_result
    })?;
    writer.finish()?;
    bar.finish_and_clear();
    let path = output.commit()?;
    let elapsed = t0.elapsed().as_secs_f64();
    let electrons: u64 = counts.iter().map(|&c| c as u64).sum();
    Ok(FramesSummary {
        stage: "frames",
        path: device.path_name(),
        frames: counts.len() as u64,
        first_frame: range.start,
        electrons,
        height: cfg.height,
        width: cfg.width,
        elapsed_s: elapsed,
        frames_per_s: counts.len() as f64 / elapsed,
        electrons_per_s: electrons as f64 / elapsed,
        output: path.display().to_string(),
        adapter: device.adapter().cloned(),
    })
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
