//! End-to-end stages of `emsim bench`: what a user runs, from kernel to a file on disk and back.
//! `frames_file` runs `emsim frames`'s own code path with its default settings (u16 frames, the
//! default compression or `bench --compression`, flushed to the disk); `count_file` counts that
//! file as `emsim count` does. Each record carries the in-memory rate of the same settings measured in the same run, the
//! ratio, and the disk's own synced sequential write rate, so a reader sees which limit binds.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use super::{BenchRecord, bench_count_u16, bench_frames, wall_repeats};
use crate::count::CountConfig;
use crate::count::run::CountOptions;
use crate::frames::FramesConfig;
use crate::frames::run::RunOptions;
use crate::gpu::Device;
use crate::io::frames_out::{Compression, FramesFormat};
use crate::io::library::EventLibrary;
use crate::{Error, Result};

/// The disk's sequential write rate into `dir`: 256 MiB (16 MiB in quick runs) written in 8 MiB
/// blocks and flushed to the disk (`fsync`), bytes per second.
pub fn disk_write_bytes_per_s(dir: &Path, quick: bool) -> Result<f64> {
    let bytes: usize = if quick { 16 << 20 } else { 256 << 20 };
    let path = dir.join(format!(".emsim-bench-disk-{}", std::process::id()));
    let block: Vec<u8> = (0..8usize << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let t = Instant::now();
    let r = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&path)?;
        for _ in 0..bytes / block.len() {
            f.write_all(&block)?;
        }
        f.sync_all()
    })();
    let dt = t.elapsed().as_secs_f64();
    std::fs::remove_file(&path).ok();
    r.map_err(|e| Error::file(&path, format!("bench disk write: {e}")))?;
    Ok(bytes as f64 / dt)
}

/// `frames_file` and `count_file` on `device`: `cfg.frames` frames with `emsim frames`'s defaults
/// and `compression` written to `dir` and counted back, `repeats` times each.
pub fn bench_file_stages(
    device: &Device,
    lib: &EventLibrary,
    cfg: &FramesConfig,
    repeats: u32,
    dir: &Path,
    compression: Compression,
    disk_bps: f64,
) -> Result<Vec<BenchRecord>> {
    // the CLI's defaults: u16 frames, offset 10 sigma, the default compression
    let cfg = FramesConfig {
        quantize_u16: true,
        offset_adu: crate::frames::auto_offset_adu(cfg.noise_sigma_e, cfg.gain_adu_per_e),
        ..cfg.clone()
    };
    let scratch = tempfile::Builder::new()
        .prefix(".emsim-bench-")
        .tempdir_in(dir)
        .map_err(|e| Error::file(dir, format!("bench: cannot make a scratch folder: {e}")))?;
    let out = scratch.path().join("frames.h5");
    let opts = RunOptions {
        out: out.clone(),
        format: FramesFormat::H5,
        compression,
        force: true,
        preview: None,
        progress: false,
        library_path: String::new(),
    };
    crate::frames::run::run(&FramesConfig { frames: cfg.frames.min(8), ..cfg.clone() }, lib, device, &opts)?; // warm-up
    let (mut stored, mut file) = (0.0, 0.0);
    let mut reps = super::stages::Reps::new(device);
    for _ in 0..repeats {
        // Each repeat writes a new file, as a user's run does: the previous repeat's file is
        // deleted first, untimed (replacing it would make the kernel free its cached pages
        // inside the timed run).
        std::fs::remove_file(&out).map_err(|e| Error::file(&out, format!("bench: cannot remove: {e}")))?;
        let t = Instant::now();
        let summary = crate::frames::run::run(&cfg, lib, device, &opts)?;
        reps.wall.push(t.elapsed().as_secs_f64());
        (stored, file) = (summary.stored_bytes_per_frame, summary.file_bytes_per_frame);
    }
    let electrons: u64 = (0..cfg.frames).map(|k| cfg.electron_count(k) as u64).sum();
    let timed = "emsim frames with its defaults (u16, the chunks compressed on every core, HDF5 direct chunk writes), \
                 from the first frame made to the file flushed to the disk and renamed into place";
    let mut f = BenchRecord::timing("frames_file", device.path_name(), timed, &mut reps);
    f.frame_figures(&cfg, cfg.batch_frames, electrons);
    f.u16_frames();
    let mem = bench_frames(device, lib, &cfg, repeats)?;
    f.file_figures(mem.frames_per_s, stored, file, disk_bps);
    f.compression = Some(compression.name());

    let counts = scratch.path().join("counts.h5").display().to_string();
    let copts = CountOptions::new(out.clone(), vec![crate::count::Method::C3x3], counts);
    crate::count::run::run(CountConfig::default(), device, &CountOptions { max_frames: Some(8), ..copts.clone() })?;
    let mut reps =
        wall_repeats(device, repeats, || crate::count::run::run(CountConfig::default(), device, &copts).map(|_| ()))?;
    let timed = "emsim count FILE --method c3x3 of the frames_file output (read + decompress + find + localize + \
                 write the counts, flushed to the disk)";
    let mut c = BenchRecord::timing("count_file", device.path_name(), timed, &mut reps);
    c.frame_figures(&cfg, 0, electrons);
    c.u16_frames();
    let mem = bench_count_u16(device, lib, &FramesConfig { quantize_u16: false, ..cfg.clone() }, repeats)?;
    c.file_figures(mem.frames_per_s, stored, file, disk_bps);
    c.compression = Some(compression.name());
    Ok(vec![f, c])
}
