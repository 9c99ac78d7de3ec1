//! `emsim bench`: throughput of each stage on the GPU path and the CPU path, in one run.
//!
//! Timing is wall clock around whole batches (submission through readback, so the frames are on
//! the host), after a warm-up batch, median of repeats with min and max. Output schema:
//! `docs/bench-schema.json`.

use std::time::Instant;

use serde::Serialize;

use crate::frames::{FramesConfig, Generator};
use crate::gpu::{AdapterSummary, BackendChoice, Device, GpuContext};
use crate::io::library::EventLibrary;
use crate::{Error, Result};

pub struct BenchOptions {
    pub quick: bool,
    pub cpu_only: bool,
    pub backend: String,
}

/// One measurement: one stage on one path at one size.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRecord {
    pub stage: String,
    pub path: String,
    /// What the timed region includes.
    pub timed: String,
    pub height: u32,
    pub width: u32,
    pub electrons_per_frame: f64,
    pub batch_frames: u32,
    pub frames_per_repeat: u64,
    pub repeats: u32,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub frames_per_s: f64,
    pub electrons_per_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub schema: &'static str,
    pub generator: String,
    pub quick: bool,
    pub threads: usize,
    pub adapter: Option<AdapterSummary>,
    pub records: Vec<BenchRecord>,
}

impl BenchReport {
    /// A readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        if let Some(a) = &self.adapter {
            s += &format!("adapter: {} ({}, {}, {})\n", a.name, a.backend, a.device_type, a.driver_info);
        } else {
            s += "adapter: none (CPU path only)\n";
        }
        s += &format!("cpu threads: {}\n", self.threads);
        s += &format!(
            "{:<8} {:<4} {:>11} {:>9} {:>6} {:>12} {:>14} {:>10}\n",
            "stage", "path", "size", "e-/frame", "batch", "frames/s", "electrons/s", "spread"
        );
        for r in &self.records {
            s += &format!(
                "{:<8} {:<4} {:>11} {:>9.0} {:>6} {:>12.1} {:>14.3e} {:>9.1}%\n",
                r.stage,
                r.path,
                format!("{}x{}", r.height, r.width),
                r.electrons_per_frame,
                r.batch_frames,
                r.frames_per_s,
                r.electrons_per_s,
                100.0 * (r.max_s - r.min_s) / r.median_s
            );
        }
        s
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Times frame generation (no disk) for `frames` frames, `repeats` times.
pub fn bench_frames(device: &Device, lib: &EventLibrary, cfg: &FramesConfig, repeats: u32) -> Result<BenchRecord> {
    let gen_ = Generator::new(cfg.clone(), lib, device)?;
    let counts: Vec<u32> = (0..cfg.frames).map(|k| cfg.electron_count(k)).collect();
    let plan = gen_.plan(&counts);
    // Warm-up: one batch (pipeline compilation, allocations, JIT on lavapipe).
    gen_.recycle(gen_.generate(0, &counts[plan[0].clone()])?);
    let mut times = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        for b in &plan {
            let batch = gen_.generate(b.start as u64, &counts[b.clone()])?;
            std::hint::black_box(&batch.frames);
            gen_.recycle(batch);
        }
        times.push(t.elapsed().as_secs_f64());
    }
    let (min, max) = (times.iter().cloned().fold(f64::MAX, f64::min), times.iter().cloned().fold(0.0, f64::max));
    let med = median(&mut times);
    let electrons: u64 = counts.iter().map(|&c| c as u64).sum();
    Ok(BenchRecord {
        stage: "frames".into(),
        path: device.path_name().into(),
        timed: "placement + accumulation + noise + readback to host (no disk)".into(),
        height: cfg.height,
        width: cfg.width,
        electrons_per_frame: electrons as f64 / cfg.frames as f64,
        batch_frames: cfg.batch_frames,
        frames_per_repeat: cfg.frames,
        repeats,
        median_s: med,
        min_s: min,
        max_s: max,
        frames_per_s: cfg.frames as f64 / med,
        electrons_per_s: electrons as f64 / med,
    })
}

/// Times finding + localization (every classical method at once; the 3x3 centroid among them) on
/// frames already in host memory (no disk), `repeats` times.
pub fn bench_count(device: &Device, lib: &EventLibrary, cfg: &FramesConfig, repeats: u32) -> Result<BenchRecord> {
    let gen_ = Generator::new(cfg.clone(), lib, &Device::Cpu)?;
    let counts: Vec<u32> = (0..cfg.frames).map(|k| cfg.electron_count(k)).collect();
    let frames = gen_.generate(0, &counts)?.frames;
    let ccfg = crate::count::CountConfig::default();
    let counter = crate::count::Counter::new(ccfg, cfg.height, cfg.width, cfg.noise_sigma_e, device)?;
    let batch = counter.batch_frames() as usize;
    let px = (cfg.height * cfg.width) as usize;
    let run_all = || -> Result<u64> {
        let mut found = 0u64;
        for chunk in frames.chunks(batch * px) {
            found += counter.count(chunk)?.cands.len() as u64;
        }
        Ok(found)
    };
    run_all()?; // warm-up
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..repeats {
        let t = Instant::now();
        found = run_all()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let (min, max) = (times.iter().cloned().fold(f64::MAX, f64::min), times.iter().cloned().fold(0.0, f64::max));
    let med = median(&mut times);
    Ok(BenchRecord {
        stage: "count".into(),
        path: device.path_name().into(),
        timed: "upload + calibrate + 3x3 sums + finding + compaction + all classical methods + readback (frames in memory, no disk)".into(),
        height: cfg.height,
        width: cfg.width,
        electrons_per_frame: found as f64 / cfg.frames as f64,
        batch_frames: batch as u32,
        frames_per_repeat: cfg.frames,
        repeats,
        median_s: med,
        min_s: min,
        max_s: max,
        frames_per_s: cfg.frames as f64 / med,
        electrons_per_s: found as f64 / med,
    })
}

/// Runs every stage's benchmark on the GPU (unless `cpu_only`) and the CPU path.
pub fn run(opts: &BenchOptions) -> Result<BenchReport> {
    let backend: BackendChoice = opts.backend.parse()?;
    let gpu = if opts.cpu_only { None } else { Some(Device::Gpu(Box::new(GpuContext::new(backend)?))) };
    let (frames, repeats) = if opts.quick { (32, 3) } else { (256, 5) };
    let lib = EventLibrary::read_h5(&crate::default_library_path())?;
    let mut records = Vec::new();
    let sizes: &[(u32, f64)] =
        if opts.quick { &[(576, 2927.294)] } else { &[(576, 2927.294), (256, 578.0), (1024, 9253.0)] };
    let mut devices: Vec<&Device> = Vec::new();
    if let Some(g) = &gpu {
        devices.push(g);
    }
    devices.push(&Device::Cpu);
    for &(side, electrons) in sizes {
        for d in &devices {
            let cfg = FramesConfig {
                frames,
                height: side,
                width: side,
                electrons: crate::frames::ElectronCount::Normal { mean: electrons, sd: electrons.sqrt() },
                ..Default::default()
            };
            records.push(bench_frames(d, &lib, &cfg, repeats)?);
            records.push(bench_count(d, &lib, &cfg, repeats)?);
        }
    }
    if records.is_empty() {
        return Err(Error::Other("no benchmark ran".into()));
    }
    Ok(BenchReport {
        schema: "emsim-bench/1",
        generator: crate::generator(),
        quick: opts.quick,
        threads: rayon::current_num_threads(),
        adapter: gpu.as_ref().and_then(|g| g.adapter().cloned()),
        records,
    })
}
