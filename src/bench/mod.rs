//! `emsim bench`: throughput of each stage on the GPU path and the CPU path, in one run.
//!
//! Timing is wall clock around whole batches (submission through readback, so the frames are on
//! the host), after a warm-up batch, median of repeats with min and max. Output schema:
//! `docs/bench-schema.json`.

use std::time::Instant;

pub mod file;

use serde::Serialize;

use crate::events::build::SimulateRequest;
use crate::frames::{FramesConfig, Generator};
use crate::gpu::{AdapterSummary, BackendChoice, Device, GpuContext};
use crate::io::library::EventLibrary;
use crate::net::precision::NetPrecision;
use crate::{Error, Result};

pub struct BenchOptions {
    pub quick: bool,
    pub cpu_only: bool,
    /// Skip the CPU path (only the GPU), e.g. for a long sweep on a real GPU.
    pub gpu_only: bool,
    pub backend: String,
    /// Only these stages (`STAGES`); None: all. The copy bandwidth is always measured.
    pub stages: Option<Vec<String>>,
    /// Frames per repeat of the frame stages (`frames`, `count`); None: 32 (quick) or 256.
    pub frames: Option<u64>,
    /// Extra frame batches for `frames` and `count` on the GPU path (576x576, default density):
    /// a real GPU needs more frames in flight than the defaults (32 and 16) to fill it.
    pub frame_batches: Vec<u32>,
    /// Extra inference batches for the `fast` network on each path.
    pub net_batches: Vec<usize>,
    /// GPU path: also time every kernel (timestamps around each compute pass).
    pub kernel_times: bool,
    /// Folder on the file system that the end-to-end stages write to (`frames_file`, `count_file`).
    pub dir: std::path::PathBuf,
}

/// The stage names `--stages` takes (`count_net` covers `count_net_split`, `net` both network
/// stages).
pub const STAGES: [&str; 11] = [
    "events",
    "frames",
    "frames_resident",
    "frames_file",
    "count",
    "count_file",
    "frames_count",
    "count_resident",
    "count_net",
    "net_infer",
    "net_train",
];

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            quick: false,
            cpu_only: false,
            gpu_only: false,
            backend: "auto".into(),
            stages: None,
            frames: None,
            frame_batches: Vec::new(),
            net_batches: Vec::new(),
            kernel_times: false,
            dir: ".".into(),
        }
    }
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
    /// Frame stages (`frames`, `count`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub electrons_per_s: Option<f64>,
    /// `events` (Monte Carlo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_per_s: Option<f64>,
    /// `copy`: bytes moved per second; frame stages: f32 frame bytes produced or consumed per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_s: Option<f64>,
    /// Frame stages: `bytes_per_s` over the same path's copy bandwidth measured in this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_copy_bandwidth: Option<f64>,
    /// Network stages (`net_infer`, `net_train`): the model preset, samples per batch, samples/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_samples: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_per_s: Option<f64>,
    /// GPU path with timestamp queries: median GPU time per repeat (the command buffers' own
    /// time, without host work, uploads by queue writes or idle gaps), and its share of the wall
    /// time. The rates above are from wall time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_median_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_fraction_of_wall: Option<f64>,
    /// The frame stages' rate on GPU time alone (`frames_per_repeat / gpu_median_s`): what the
    /// kernels sustain when uploads and readbacks overlap or stay on the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_frames_per_s: Option<f64>,
    /// The network stages' rate on GPU time alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_samples_per_s: Option<f64>,
    /// `"u16"`: raw u16 frames, as a detector writes them (`frames`: quantized frames, read back
    /// two per word; `count`: counted as stored). Absent: f32 frames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_dtype: Option<String>,
    /// Network inference stages: the activation storage (`f32`, `f16`; see `--net-precision`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_precision: Option<String>,
    /// Counting stages on the GPU path: how `count/sum3` and `count/find` split the frames
    /// (`rows8`, `cols8`, `pixels`, `tiles`; see `count::CountLayout`, `EMSIM_COUNT_LAYOUT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_layout: Option<String>,
    /// `--kernel-times` (GPU path with timestamp queries): each kernel's GPU milliseconds and
    /// dispatches per repeat, from timestamps around every compute pass (the repeats' wall and
    /// `gpu_median_s` then include that profiling's small overhead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_gpu_ms_per_repeat: Option<std::collections::BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_dispatches_per_repeat: Option<std::collections::BTreeMap<String, f64>>,
    /// `--kernel-times`, frame stages: frames per second of the compute kernels' own time (the
    /// sum of `kernel_gpu_ms_per_repeat`), without the copies inside the command buffers (uploads
    /// and readbacks over PCIe) or gaps: the rate if frames arrived on the device and left it as
    /// found electrons only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_frames_per_s: Option<f64>,
    /// `--kernel-times`, network stages: samples per second of the kernels' own time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_samples_per_s: Option<f64>,
    /// End-to-end stages (`frames_file`, `count_file`): the same settings' in-memory rate
    /// (`frames`, `count` u16) in this run, and `frames_per_s` over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_memory_frames_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_in_memory: Option<f64>,
    /// End-to-end stages: bytes per frame in the file (compressed), the disk's synced sequential
    /// write rate measured in this run, the frame rate that rate allows for those bytes, and
    /// `frames_per_s` over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_bytes_per_frame: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_write_bytes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_bound_frames_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_disk_bound: Option<f64>,
}

/// Wall-clock (and, on a GPU with timestamp queries, GPU) time of each repeat.
struct Reps<'a> {
    device: &'a Device,
    wall: Vec<f64>,
    gpu: Vec<f64>,
    t: Option<Instant>,
    /// `--kernel-times`: each kernel's GPU seconds and dispatches summed over the repeats, and
    /// the number of repeats they cover.
    kernels: Vec<crate::gpu::timing::KernelTime>,
    kernel_repeats: u32,
}

impl<'a> Reps<'a> {
    fn new(device: &'a Device) -> Self {
        Self { device, wall: Vec::new(), gpu: Vec::new(), t: None, kernels: Vec::new(), kernel_repeats: 0 }
    }

    fn kernel_ctx(&self) -> Option<&GpuContext> {
        match self.device {
            Device::Gpu(c) if c.kernel_times_wanted() => Some(c),
            _ => None,
        }
    }

    fn start(&mut self) {
        if let Some(c) = self.kernel_ctx() {
            c.kernel_times_start();
        }
        self.device.gpu_timer_start();
        self.t = Some(Instant::now());
    }

    fn stop(&mut self) {
        self.wall.push(self.t.take().expect("start before stop").elapsed().as_secs_f64());
        if let Some(g) = self.device.gpu_timer_stop() {
            self.gpu.push(g);
        }
        let Some(c) = self.kernel_ctx() else { return };
        match c.kernel_times_stop() {
            Ok(Some(ks)) => {
                self.kernel_repeats += 1;
                for k in ks {
                    match self.kernels.iter_mut().find(|t| t.kernel == k.kernel) {
                        Some(t) => {
                            t.dispatches += k.dispatches;
                            t.gpu_s += k.gpu_s;
                        }
                        None => self.kernels.push(k),
                    }
                }
            }
            Ok(None) => {}
            Err(e) => eprintln!("bench: per-kernel times unavailable: {e}"),
        }
    }
}

/// Runs `run` once to warm up, then `repeats` timed times; returns the times and the last run's
/// result (electrons found).
fn timed_repeats<'a>(
    device: &'a Device,
    repeats: u32,
    mut run: impl FnMut() -> Result<u64>,
) -> Result<(Reps<'a>, u64)> {
    run()?;
    let mut times = Reps::new(device);
    let mut found = 0;
    for _ in 0..repeats {
        times.start();
        found = run()?;
        times.stop();
    }
    Ok((times, found))
}

/// Runs `run` `repeats` times and keeps each run's wall time only (no GPU timer: the resident
/// stages submit without `GpuContext::encoder`); the caller warms up first.
fn wall_repeats<'a>(device: &'a Device, repeats: u32, mut run: impl FnMut() -> Result<()>) -> Result<Reps<'a>> {
    let mut reps = Reps::new(device);
    for _ in 0..repeats {
        let t = Instant::now();
        run()?;
        reps.wall.push(t.elapsed().as_secs_f64());
    }
    Ok(reps)
}

/// Raw u16 detector values for frames in electrons: ADU = electrons + `offset_adu`, rounded and
/// saturated (the bench's u16 frames, gain 1).
fn raw_u16(frames: &[f32], offset_adu: f32) -> Vec<u16> {
    frames.iter().map(|&e| (e + offset_adu).round().clamp(0.0, 65535.0) as u16).collect()
}

impl BenchRecord {
    fn timing(stage: &str, path: &str, timed: &str, reps: &mut Reps) -> Self {
        let times = &mut reps.wall;
        let (min, max) = (times.iter().cloned().fold(f64::MAX, f64::min), times.iter().cloned().fold(0.0, f64::max));
        let med = median(times);
        let gpu_median_s = (!reps.gpu.is_empty() && reps.gpu.len() == times.len()).then(|| median(&mut reps.gpu));
        let per_repeat = |f: fn(&crate::gpu::timing::KernelTime) -> f64| {
            (reps.kernel_repeats > 0).then(|| {
                reps.kernels.iter().map(|k| (k.kernel.to_string(), f(k) / reps.kernel_repeats as f64)).collect()
            })
        };
        let kernel_gpu_ms_per_repeat = per_repeat(|k| k.gpu_s * 1e3);
        let kernel_dispatches_per_repeat = per_repeat(|k| k.dispatches as f64);
        Self {
            stage: stage.into(),
            path: path.into(),
            timed: timed.into(),
            height: 0,
            width: 0,
            electrons_per_frame: 0.0,
            batch_frames: 0,
            frames_per_repeat: 0,
            repeats: times.len() as u32,
            median_s: med,
            min_s: min,
            max_s: max,
            frames_per_s: None,
            electrons_per_s: None,
            events_per_s: None,
            bytes_per_s: None,
            fraction_of_copy_bandwidth: None,
            model: None,
            batch_samples: None,
            samples_per_s: None,
            gpu_median_s,
            gpu_fraction_of_wall: gpu_median_s.map(|g| g / med),
            gpu_frames_per_s: None,
            gpu_samples_per_s: None,
            frames_dtype: None,
            net_precision: None,
            count_layout: None,
            kernel_gpu_ms_per_repeat,
            kernel_dispatches_per_repeat,
            kernel_frames_per_s: None,
            kernel_samples_per_s: None,
            in_memory_frames_per_s: None,
            fraction_of_in_memory: None,
            stored_bytes_per_frame: None,
            disk_write_bytes_per_s: None,
            disk_bound_frames_per_s: None,
            fraction_of_disk_bound: None,
        }
    }

    /// The headline figure and its unit.
    pub fn headline(&self) -> (f64, &'static str) {
        if let Some(v) = self.frames_per_s {
            (v, "frames/s")
        } else if let Some(v) = self.events_per_s {
            (v, "events/s")
        } else if let Some(v) = self.samples_per_s {
            (v, "samples/s")
        } else if let Some(v) = self.bytes_per_s {
            (v / 1e9, "GB/s")
        } else {
            (f64::NAN, "")
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub schema: &'static str,
    pub generator: String,
    pub quick: bool,
    pub threads: usize,
    pub adapter: Option<AdapterSummary>,
    /// GPU path: the run-time checks the kernels were compiled with (`full`, `trusted`; see
    /// `gpu::ShaderChecks`, `EMSIM_SHADER_CHECKS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shader_checks: Option<&'static str>,
    pub records: Vec<BenchRecord>,
}

impl BenchReport {
    /// A readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        if let Some(a) = &self.adapter {
            s += &format!("adapter: {} ({}, {}, {})\n", a.name, a.backend, a.device_type, a.driver_info);
            if let Some(c) = self.shader_checks {
                s += &format!("shader checks: {c}\n");
            }
        } else {
            s += "adapter: none (CPU path only)\n";
        }
        s += &format!("cpu threads: {}\n", self.threads);
        s += &format!(
            "{:<15} {:<4} {:>9} {:>8} {:>5} {:>12} {:<9} {:>11} {:>8} {:>7} {:>8} {:>12}\n",
            "stage",
            "path",
            "size",
            "e-/frame",
            "batch",
            "rate",
            "unit",
            "electrons/s",
            "of copy",
            "spread",
            "gpu/wall",
            "gpu-only rate"
        );
        for r in &self.records {
            let (v, unit) = r.headline();
            let size = r.size_label();
            let batch = r.batch_samples.unwrap_or(r.batch_frames);
            s += &format!(
                "{:<15} {:<4} {:>9} {:>8.0} {:>5} {:>12.1} {:<9} {:>11} {:>8} {:>6.1}% {:>8} {:>12}\n",
                r.stage,
                r.path,
                size,
                r.electrons_per_frame,
                batch,
                v,
                unit,
                r.electrons_per_s.map_or("-".into(), |e| format!("{e:.3e}")),
                r.fraction_of_copy_bandwidth.map_or("-".into(), |f| format!("{:.1}%", 100.0 * f)),
                100.0 * (r.max_s - r.min_s) / r.median_s,
                r.gpu_fraction_of_wall.map_or("-".into(), |f| format!("{:.0}%", 100.0 * f)),
                r.gpu_frames_per_s.or(r.gpu_samples_per_s).map_or("-".into(), |v| format!("{v:.1}"))
            );
        }
        // --kernel-times: each record's kernels, largest first.
        for r in &self.records {
            let (Some(ms), Some(n)) = (&r.kernel_gpu_ms_per_repeat, &r.kernel_dispatches_per_repeat) else { continue };
            if ms.is_empty() {
                continue;
            }
            let rate = match (r.kernel_frames_per_s, r.kernel_samples_per_s) {
                (Some(f), _) => format!("; kernels alone: {f:.1} frames/s"),
                (_, Some(v)) => format!("; kernels alone: {v:.1} samples/s"),
                _ => String::new(),
            };
            s += &format!(
                "kernels of {} {} {}, batch {} (GPU ms per repeat, dispatches{rate}):
",
                r.stage,
                r.path,
                r.size_label(),
                r.batch_samples.unwrap_or(r.batch_frames)
            );
            let mut ks: Vec<(&String, &f64)> = ms.iter().collect();
            ks.sort_by(|a, b| b.1.total_cmp(a.1));
            let total: f64 = ks.iter().map(|k| k.1).sum();
            for (k, v) in ks {
                s += &format!(
                    "  {:<34} {:>10.4} ms {:>5.1}% {:>8.0}\n",
                    k,
                    v,
                    100.0 * v / total.max(1e-30),
                    n.get(k).copied().unwrap_or(0.0)
                );
            }
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
    let mut times = Reps::new(device);
    for _ in 0..repeats {
        times.start();
        for b in &plan {
            let batch = gen_.generate(b.start as u64, &counts[b.clone()])?;
            std::hint::black_box(&batch.frames);
            gen_.recycle(batch);
        }
        times.stop();
    }
    let electrons: u64 = counts.iter().map(|&c| c as u64).sum();
    let mut r = BenchRecord::timing(
        "frames",
        device.path_name(),
        "placement + accumulation + noise + readback to host (no disk)",
        &mut times,
    );
    r.frame_figures(cfg, cfg.batch_frames, electrons);
    if cfg.quantize_u16 {
        r.u16_frames();
    }
    Ok(r)
}

/// Times finding + localization (every classical method at once; the 3x3 centroid among them) on
/// frames already in host memory (no disk), `repeats` times, `batch` frames per submission (0: the
/// default, 16).
pub fn bench_count(
    device: &Device,
    lib: &EventLibrary,
    cfg: &FramesConfig,
    repeats: u32,
    batch: u32,
) -> Result<BenchRecord> {
    let ccfg = crate::count::CountConfig { batch_frames: batch, ..Default::default() };
    bench_count_with(device, lib, cfg, repeats, ccfg, "count", false)
}

/// [`bench_count`] on raw u16 frames, as a detector writes them (ADU = electrons + 100, rounded):
/// counted as they are ([`crate::count::Counter::count_u16`]; the GPU path uploads half the bytes).
pub fn bench_count_u16(device: &Device, lib: &EventLibrary, cfg: &FramesConfig, repeats: u32) -> Result<BenchRecord> {
    let ccfg = crate::count::CountConfig { offset_adu: 100.0, ..Default::default() };
    bench_count_with(device, lib, cfg, repeats, ccfg, "count", true)
}

/// Frames made and counted in one pipeline, no disk: on the GPU path the frames stay on the device
/// (made by the frames kernels, copied into the counter's input on the GPU; only the found
/// electrons come back), on the CPU path each batch is made and counted in memory. The rate the
/// GPU path would reach if frames did not cross PCIe (frames arriving on the device).
/// `batch` frames per submission (0: the counter's default, 16), within what the adapter holds.
pub fn bench_frames_count(
    device: &Device,
    lib: &EventLibrary,
    cfg: &FramesConfig,
    repeats: u32,
    batch: u32,
) -> Result<BenchRecord> {
    let ccfg = crate::count::CountConfig { batch_frames: batch, ..Default::default() };
    let batch = crate::count::Counter::batch_frames_on(&ccfg, cfg.height, cfg.width, device)
        .min(if batch == 0 { cfg.batch_frames } else { batch })
        .max(1);
    let fcfg = FramesConfig { batch_frames: batch, ..cfg.clone() };
    let ccfg = crate::count::CountConfig { batch_frames: batch, ..ccfg };
    let gen_ = Generator::new(fcfg.clone(), lib, device)?;
    let counter = crate::count::Counter::new(ccfg, cfg.height, cfg.width, cfg.noise_sigma_e, device)?;
    let counts: Vec<u32> = (0..cfg.frames).map(|k| cfg.electron_count(k)).collect();
    let plan = gen_.plan(&counts);
    let run_all = || -> Result<u64> {
        let mut found = 0u64;
        for b in &plan {
            match device {
                Device::Gpu(_) => {
                    let n = b.len();
                    gen_.generate_on_device(b.start as u64, &counts[b.clone()], &mut |frames| {
                        found += counter.count_device(frames, n)?.cands.len() as u64;
                        Ok(())
                    })?;
                }
                Device::Cpu => {
                    let batch = gen_.generate(b.start as u64, &counts[b.clone()])?;
                    found += counter.count(&batch.frames)?.cands.len() as u64;
                    gen_.recycle(batch);
                }
            }
        }
        Ok(found)
    };
    let (mut times, found) = timed_repeats(device, repeats, run_all)?;
    let timed = match device {
        Device::Gpu(_) => {
            "frames made on the GPU and counted there (frames never leave the device; found electrons read back)"
        }
        Device::Cpu => "frames made and counted in memory, batch by batch",
    };
    let mut r = BenchRecord::timing("frames_count", device.path_name(), timed, &mut times);
    r.frame_figures(cfg, batch, found);
    Ok(r)
}

/// Frames per repeat of the resident stages: at least 8,192 on a discrete GPU, where a few
/// batches take well under a millisecond and the submission latency would dominate.
fn resident_frames(device: &Device, frames: u64) -> u64 {
    match device {
        Device::Gpu(ctx) if ctx.adapter.device_type == "DiscreteGpu" => frames.max(8192),
        _ => frames,
    }
}

/// GPU path only: making frames that stay in the GPU's memory, as a pipeline that uses them there
/// (counting, training) would. Each repeat makes one batch (`cfg.batch_frames`, f32, or u16 when
/// `cfg.quantize_u16`) `cfg.frames / batch` times ([`resident_frames`]), one submission per
/// batch, back to back (the host waits only when 8 are queued) and nothing read back. Wall clock:
/// what the GPU sustains when kept busy.
pub fn bench_frames_resident(
    device: &Device,
    lib: &EventLibrary,
    cfg: &FramesConfig,
    repeats: u32,
) -> Result<BenchRecord> {
    if !matches!(device, Device::Gpu(_)) {
        return Err(Error::Other("frames_resident runs on the GPU path only".into()));
    }
    let batch = cfg.batch_frames.min(cfg.frames as u32).max(1);
    let gen_ = Generator::new(FramesConfig { batch_frames: batch, ..cfg.clone() }, lib, device)?;
    let counts: Vec<u32> = (0..batch as u64).map(|k| cfg.electron_count(k)).collect();
    let times = (resident_frames(device, cfg.frames) / batch as u64).max(1) as usize;
    gen_.generate_resident(0, &counts, 1, None)?;
    let mut reps = wall_repeats(device, repeats, || gen_.generate_resident(0, &counts, times, None))?;
    let timed = "frames made batch after batch in GPU memory (up to 8 submissions queued ahead), no readback";
    let mut r = BenchRecord::timing("frames_resident", "gpu", timed, &mut reps);
    let electrons = counts.iter().map(|&c| c as u64).sum::<u64>() * times as u64;
    r.frame_figures(&FramesConfig { frames: times as u64 * batch as u64, ..cfg.clone() }, batch, electrons);
    if cfg.quantize_u16 {
        r.u16_frames();
    }
    Ok(r)
}

/// GPU path only: counting frames that are already in the GPU's memory, as frames arriving there
/// from a detector would be. Distinct batches of frames (the counter's batch, 16), 256 MiB in all
/// (more than the GPU's L2 cache, so the frames come from its memory, not from the cache), are
/// made and uploaded once (as f32, or as u16 ADU = electrons + 100 packed two per word when
/// `u16`); each repeat then counts `cfg.frames / batch` batches ([`resident_frames`]) in turn, one
/// submission per batch, back to back (the host waits only when 8 are queued), and reads back
/// only the last batch's number of centres. Wall clock: what the GPU sustains when it is kept busy, the host
/// submitting ahead of it.
pub fn bench_count_resident(
    device: &Device,
    lib: &EventLibrary,
    cfg: &FramesConfig,
    repeats: u32,
    u16: bool,
) -> Result<BenchRecord> {
    let Device::Gpu(ctx) = device else {
        return Err(Error::Other("count_resident runs on the GPU path only".into()));
    };
    let offset = if u16 { 100.0 } else { 0.0 };
    let ccfg = crate::count::CountConfig { offset_adu: offset, ..Default::default() };
    let counter = crate::count::Counter::new(ccfg, cfg.height, cfg.width, cfg.noise_sigma_e, device)?;
    let batch = counter.batch_frames().min(cfg.frames as u32).max(1);
    let times = (resident_frames(device, cfg.frames) / batch as u64).max(1) as usize;
    let batch_bytes = batch as u64 * cfg.height as u64 * cfg.width as u64 * if u16 { 2 } else { 4 };
    let n_batches = ((256u64 << 20).div_ceil(batch_bytes) as usize).min(times);
    let total = n_batches as u64 * batch as u64;
    let fcfg = FramesConfig { frames: total, batch_frames: batch, ..cfg.clone() };
    let counts: Vec<u32> = (0..total).map(|k| fcfg.electron_count(k)).collect();
    let gen_ = Generator::new(fcfg, lib, &Device::Cpu)?;
    let mut bufs = Vec::with_capacity(n_batches);
    for k in 0..n_batches {
        let range = k * batch as usize..(k + 1) * batch as usize;
        let frames = gen_.generate(range.start as u64, &counts[range])?.frames;
        bufs.push(if u16 {
            ctx.upload("resident_frames_u16", &raw_u16(&frames, offset))?
        } else {
            ctx.upload("resident_frames", &frames)?
        });
    }
    // found electrons per repeat: each batch's count (read once per batch) times its turns
    let mut per_batch = Vec::with_capacity(n_batches);
    for b in &bufs {
        per_batch.push(counter.count_resident(std::slice::from_ref(b), u16, batch as usize, 1)? as u64);
    }
    let found: u64 = (0..times).map(|t| per_batch[t % n_batches]).sum();
    let last = per_batch[(times - 1) % n_batches];
    let mut reps = wall_repeats(device, repeats, || {
        let n = counter.count_resident(&bufs, u16, batch as usize, times)?;
        if n as u64 != last {
            return Err(Error::Other(format!("count_resident: the last batch gave {n} centres, alone {last}")));
        }
        Ok(())
    })?;
    let timed = "counting frames already in GPU memory (256 MiB of distinct batches, made and uploaded once), \
                 batch after batch (up to 8 submissions queued ahead); only the number found read back";
    let mut r = BenchRecord::timing("count_resident", "gpu", timed, &mut reps);
    let rcfg = FramesConfig { frames: times as u64 * batch as u64, ..cfg.clone() };
    r.frame_figures(&rcfg, batch, found);
    if u16 {
        r.u16_frames();
    }
    Ok(r)
}

/// Times `count --method net` with the default network (`split`: also `--split-pairs` with the
/// shipped `pair-split` / `pair-loc` models and the default threshold and dedupe distance).
pub fn bench_count_net(
    device: &Device,
    lib: &EventLibrary,
    cfg: &FramesConfig,
    repeats: u32,
    split: bool,
    precision: NetPrecision,
) -> Result<BenchRecord> {
    let net = crate::count::load_net_model(None)?;
    let name = net.cfg.name.clone();
    let pairs = if split {
        use crate::count::split::{DEFAULT_DEDUPE_PX, DEFAULT_THRESHOLD, load_pair_models};
        Some(load_pair_models(None, None, &net, DEFAULT_THRESHOLD, DEFAULT_DEDUPE_PX)?)
    } else {
        None
    };
    let ccfg = crate::count::CountConfig { net: Some(net), pairs, net_precision: precision, ..Default::default() };
    let mut r =
        bench_count_with(device, lib, cfg, repeats, ccfg, if split { "count_net_split" } else { "count_net" }, false)?;
    r.timed = format!(
        "{} + crops + network inference{} (the default network)",
        r.timed,
        if split { " + one-vs-two classifier + pair localizer" } else { "" }
    );
    r.model = Some(format!("{}{}", name, if split { "+pair-split+pair-loc" } else { "" }));
    r.net_precision = Some(precision.name().into());
    Ok(r)
}

fn bench_count_with(
    device: &Device,
    lib: &EventLibrary,
    cfg: &FramesConfig,
    repeats: u32,
    ccfg: crate::count::CountConfig,
    stage: &str,
    u16_input: bool,
) -> Result<BenchRecord> {
    let gen_ = Generator::new(cfg.clone(), lib, &Device::Cpu)?;
    let counts: Vec<u32> = (0..cfg.frames).map(|k| cfg.electron_count(k)).collect();
    let frames = gen_.generate(0, &counts)?.frames;
    let raw: Vec<u16> = if u16_input { raw_u16(&frames, ccfg.offset_adu) } else { Vec::new() };
    let counter = crate::count::Counter::new(ccfg, cfg.height, cfg.width, cfg.noise_sigma_e, device)?;
    let batch = counter.batch_frames() as usize;
    let px = (cfg.height * cfg.width) as usize;
    let run_all = || -> Result<u64> {
        let mut found = 0u64;
        if u16_input {
            for chunk in raw.chunks(batch * px) {
                found += counter.count_u16(chunk)?.net_electrons() as u64;
            }
        } else {
            for chunk in frames.chunks(batch * px) {
                found += counter.count(chunk)?.net_electrons() as u64;
            }
        }
        Ok(found)
    };
    let (mut times, found) = timed_repeats(device, repeats, run_all)?;
    let mut r = BenchRecord::timing(
        stage,
        device.path_name(),
        "upload + calibrate + 3x3 sums + finding + compaction + all classical methods + readback (frames in memory, no disk)",
        &mut times,
    );
    r.frame_figures(cfg, batch as u32, found);
    if u16_input {
        r.u16_frames();
    }
    Ok(r)
}

impl BenchRecord {
    fn frame_figures(&mut self, cfg: &FramesConfig, batch: u32, electrons: u64) {
        self.height = cfg.height;
        self.width = cfg.width;
        self.batch_frames = batch;
        self.frames_per_repeat = cfg.frames;
        self.electrons_per_frame = electrons as f64 / cfg.frames as f64;
        let fps = cfg.frames as f64 / self.median_s;
        self.frames_per_s = Some(fps);
        self.electrons_per_s = Some(electrons as f64 / self.median_s);
        self.bytes_per_s = Some(fps * cfg.height as f64 * cfg.width as f64 * 4.0);
    }

    /// The end-to-end figures of a file stage ([`file::bench_file_stages`]).
    fn file_figures(&mut self, in_memory_fps: Option<f64>, stored_bytes_per_frame: f64, disk_bps: f64) {
        let fps = self.frames_per_s.unwrap_or(0.0);
        self.in_memory_frames_per_s = in_memory_fps;
        self.fraction_of_in_memory = in_memory_fps.map(|m| fps / m);
        self.stored_bytes_per_frame = Some(stored_bytes_per_frame);
        self.disk_write_bytes_per_s = Some(disk_bps);
        let bound = disk_bps / stored_bytes_per_frame;
        self.disk_bound_frames_per_s = Some(bound);
        self.fraction_of_disk_bound = Some(fps / bound);
    }

    /// Marks a frame record as one on raw u16 frames (two bytes per pixel, not four).
    fn u16_frames(&mut self) {
        self.frames_dtype = Some("u16".into());
        self.bytes_per_s = self.bytes_per_s.map(|b| b / 2.0);
    }

    /// The record's size column: the model, or the frame size (with " u16" for raw u16 frames).
    fn size_label(&self) -> String {
        match &self.model {
            Some(m) => m.clone(),
            None if self.height > 0 => {
                format!("{}x{}{}", self.height, self.width, if self.frames_dtype.is_some() { " u16" } else { "" })
            }
            None => "-".into(),
        }
    }
}

/// Monte Carlo events per second (`seed` preset, 300 keV, all cores); CPU only.
pub fn bench_events(count: usize, repeats: u32) -> Result<BenchRecord> {
    let req = crate::events::build::SimulateRequest { preset: "seed".into(), count, seed: 7, ..Default::default() };
    crate::events::build::simulate_library(&SimulateRequest { count: 200, ..req.clone() }, false)?; // warm-up
    let mut times = Reps::new(&Device::Cpu);
    for _ in 0..repeats {
        times.start();
        std::hint::black_box(crate::events::build::simulate_library(&req, false)?);
        times.stop();
    }
    let mut r = BenchRecord::timing(
        "events",
        "cpu",
        "Monte Carlo transport + charge collection of `seed`-preset 300 keV events, all cores (no disk)",
        &mut times,
    );
    r.frames_per_repeat = count as u64;
    r.events_per_s = Some(count as f64 / r.median_s);
    Ok(r)
}

/// Copy bandwidth of a path: GPU buffer-to-buffer copy of `bytes` (submission to completion), or
/// a host memcpy of `bytes` on the CPU path.
pub fn bench_copy(device: &Device, bytes: u64, repeats: u32) -> Result<BenchRecord> {
    let mut times = Reps::new(device);
    match device {
        Device::Gpu(ctx) => {
            let a = ctx.storage("copy_src", bytes)?;
            let b = ctx.storage("copy_dst", bytes)?;
            for k in 0..=repeats {
                times.start();
                let mut enc = ctx.encoder("copy");
                enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
                ctx.submit_and_wait(enc)?;
                if k > 0 {
                    times.stop();
                }
            }
        }
        Device::Cpu => {
            let a = vec![1u8; bytes as usize];
            let mut b = vec![0u8; bytes as usize];
            for k in 0..=repeats {
                times.start();
                b.copy_from_slice(std::hint::black_box(&a));
                std::hint::black_box(&b);
                if k > 0 {
                    times.stop();
                }
            }
        }
    }
    let timed = match device {
        Device::Gpu(_) => "device buffer-to-buffer copy (read + write of `frames_per_repeat` bytes)",
        Device::Cpu => "host memcpy (one thread), wall clock",
    };
    let mut r = BenchRecord::timing("copy", device.path_name(), timed, &mut times);
    r.frames_per_repeat = bytes;
    r.bytes_per_s = Some(bytes as f64 / r.median_s);
    Ok(r)
}

/// Network samples per second: `train = false`: inference (crops already on the device, forward
/// pass with batch norm folded + output readback, activations stored as `precision` says; CPU:
/// the same on the CPU path, f32 only); `train = true`: one training step per batch (samples
/// made from the library, forward, loss, backward, Adam; f32).
pub fn bench_net(
    device: &Device,
    lib: &EventLibrary,
    preset: &str,
    batch: usize,
    repeats: u32,
    train: bool,
    precision: NetPrecision,
) -> Result<BenchRecord> {
    if precision != NetPrecision::F32 && (train || matches!(device, Device::Cpu)) {
        return Err(Error::Other("f16 activations: GPU inference only".into()));
    }
    use crate::net::data::{
        LibraryArrays, LibraryBuffers, MakeBatchParams, SampleSpec, make_batch_cpu, make_batch_record,
    };
    use crate::net::gpu_net::GpuNet;
    use crate::net::model::{Model, ModelConfig};
    use crate::net::optim::{AdamConfig, adam_cpu};
    let cfg = ModelConfig::preset(preset)?;
    let model = Model::new(cfg.clone(), 1)?;
    let arrays = LibraryArrays::new(lib)?;
    let spec = SampleSpec { seed: 1, ev_lo: 0, ev_count: lib.len() as u32, sigma_e: 20.0 };
    let adam = AdamConfig::seed();
    let mut times = Reps::new(device);
    match device {
        Device::Gpu(ctx) => {
            let net = if train {
                GpuNet::new(ctx, model, batch, true, None)?
            } else {
                GpuNet::new_inference(ctx, model.fold_batchnorm()?, batch, precision)?
            };
            if net.precision() != precision {
                return Err(Error::Other(format!("{} activations need the adapter's SHADER_F16", precision.name())));
            }
            let lb = LibraryBuffers::upload(ctx, &arrays)?;
            for k in 0..=repeats {
                let p = MakeBatchParams::new(&cfg, &spec, k as u64 * batch as u64, batch);
                if !train {
                    let mut enc = ctx.encoder("bench_net_batch");
                    make_batch_record(ctx, &mut enc, &p, &lb, &net.input, &net.labels, &net.target)?;
                    ctx.submit_and_wait(enc)?;
                }
                times.start();
                let mut enc = ctx.encoder("bench_net");
                if train {
                    make_batch_record(ctx, &mut enc, &p, &lb, &net.input, &net.labels, &net.target)?;
                    net.record_forward(&mut enc, batch, true, 1, k as u64 + 1)?;
                    net.record_loss(&mut enc, batch, true)?;
                    net.record_backward(&mut enc, batch, 1, k as u64 + 1)?;
                    net.record_adam(&mut enc, &adam, k as u64 + 1, 1e-3)?;
                    ctx.submit_and_wait(enc)?;
                } else {
                    net.record_forward(&mut enc, batch, false, 0, 0)?;
                    let rb = ctx.readback(&mut enc, net.output(), (batch * cfg.head_outputs() * 4) as u64);
                    ctx.submit_and_wait(enc)?;
                    std::hint::black_box(rb.read::<f32>(ctx)?);
                }
                if k > 0 {
                    times.stop();
                }
            }
        }
        Device::Cpu => {
            let mut m = if train { model } else { model.fold_batchnorm()? };
            let mut optim: Vec<crate::io::model_file::OptimState> = m
                .tensors
                .iter()
                .map(|t| {
                    let z = vec![0.0; if t.trainable { t.data.len() } else { 0 }];
                    crate::io::model_file::OptimState { m: z.clone(), v: z.clone(), vmax: z }
                })
                .collect();
            for k in 0..=repeats {
                let b = make_batch_cpu(&MakeBatchParams::new(&cfg, &spec, k as u64 * batch as u64, batch), &arrays);
                times.start();
                if train {
                    let act = m.forward_cpu(&b.x, batch, true, 1, k as u64 + 1)?;
                    let (_, _, dout) = crate::net::train::loss_cpu(&cfg, act.last(), &b, batch, true);
                    let grads = m.backward_cpu(&b.x, &act, &dout, 1, k as u64 + 1)?;
                    for ((tensor, g), st) in m.tensors.iter_mut().zip(&grads).zip(optim.iter_mut()) {
                        if tensor.trainable {
                            let p = adam.params(tensor.data.len(), k as u64 + 1, 1e-3);
                            adam_cpu(&p, &mut tensor.data, g, &mut st.m, &mut st.v, &mut st.vmax);
                        }
                    }
                } else {
                    std::hint::black_box(m.forward_cpu(&b.x, batch, false, 0, 0)?);
                }
                if k > 0 {
                    times.stop();
                }
            }
        }
    }
    let (stage, timed) = if train {
        (
            "net_train",
            "one training step per batch: samples made from the library, forward (batch statistics, dropout), loss, backward, Adam (amsgrad)",
        )
    } else {
        (
            "net_infer",
            "forward pass (evaluation mode, batch norm folded where it follows a convolution) on crops already in memory, output read back",
        )
    };
    let mut r = BenchRecord::timing(stage, device.path_name(), timed, &mut times);
    r.frames_per_repeat = batch as u64;
    r.model = Some(preset.to_string());
    r.batch_samples = Some(batch as u32);
    if !train {
        r.net_precision = Some(precision.name().into());
    }
    r.samples_per_s = Some(batch as f64 / r.median_s);
    Ok(r)
}

/// Runs every stage's benchmark on the GPU (unless `cpu_only`) and the CPU path (unless
/// `gpu_only`).
pub fn run(opts: &BenchOptions) -> Result<BenchReport> {
    if let Some(list) = &opts.stages {
        for st in list {
            if !STAGES.contains(&st.as_str()) {
                return Err(Error::invalid(
                    "--stages",
                    format!("unknown stage '{st}': expected a comma-separated list of {}", STAGES.join(", ")),
                ));
            }
        }
    }
    if opts.cpu_only && opts.gpu_only {
        return Err(Error::invalid("--gpu-only", "cannot be combined with --cpu-only"));
    }
    let want = |st: &str| opts.stages.as_ref().is_none_or(|l| l.iter().any(|s| s == st));
    let backend: BackendChoice = opts.backend.parse()?;
    let gpu = if opts.cpu_only { None } else { Some(Device::Gpu(Box::new(GpuContext::new(backend)?))) };
    if let Some(Device::Gpu(c)) = &gpu {
        if opts.kernel_times && !c.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            eprintln!("bench: --kernel-times: the adapter has no timestamp queries; no per-kernel times");
        }
        c.set_kernel_times_wanted(opts.kernel_times);
    }
    let (default_frames, repeats) = if opts.quick { (32, 3) } else { (256, 5) };
    let frames = opts.frames.unwrap_or(default_frames);
    if frames == 0 {
        return Err(Error::invalid("--frames", "must be at least 1"));
    }
    let lib = EventLibrary::read_h5(&crate::default_library_path())?;
    let mut records = Vec::new();
    // Frame size at the default density, and (full run) electrons per frame at half and twice it.
    let sizes: &[(u32, f64)] = if opts.quick {
        &[(576, 2927.294)]
    } else {
        &[(576, 2927.294), (256, 578.0), (1024, 9253.0), (576, 1463.647), (576, 5854.588)]
    };
    let mut devices: Vec<&Device> = Vec::new();
    if let Some(g) = &gpu {
        devices.push(g);
    }
    if !opts.gpu_only {
        devices.push(&Device::Cpu);
    }
    let mut copy_bw = Vec::new();
    let mut disk_bps: Option<f64> = None;
    for d in &devices {
        // 64 MiB, or 1 GiB (within the adapter's buffer limit) on a discrete GPU, where 64 MiB
        // copy in ~0.1 ms and the submission's latency would dominate (H100: 240 GB/s measured
        // with 64 MiB).
        let bytes = match d {
            Device::Gpu(ctx) if ctx.adapter.device_type == "DiscreteGpu" => {
                (1u64 << 30).min(ctx.limits.max_buffer_size.min(ctx.limits.max_storage_buffer_binding_size) & !3)
            }
            _ => 64 << 20,
        };
        let r = bench_copy(d, bytes, repeats.max(5))?;
        copy_bw.push((d.path_name(), r.bytes_per_s.unwrap()));
        records.push(r);
    }
    if want("events") && !opts.gpu_only {
        records.push(bench_events(if opts.quick { 2000 } else { 20_000 }, repeats)?);
    }
    let frame_cfg = |side: u32, electrons: f64, n: u64| FramesConfig {
        frames: n,
        height: side,
        width: side,
        electrons: crate::frames::ElectronCount::Normal { mean: electrons, sd: electrons.sqrt() },
        ..Default::default()
    };
    for &(side, electrons) in sizes {
        for d in &devices {
            let cfg = frame_cfg(side, electrons, frames);
            let default_576 = side == 576 && cfg.electrons == frame_cfg(576, 2927.294, 1).electrons;
            if want("frames") {
                records.push(bench_frames(d, &lib, &cfg, repeats)?);
                if default_576 {
                    // quantized u16 frames (ADU = electrons + 100), as a detector writes them
                    let q = FramesConfig { quantize_u16: true, offset_adu: 100.0, ..cfg.clone() };
                    records.push(bench_frames(d, &lib, &q, repeats)?);
                }
            }
            if want("frames_resident") && default_576 && matches!(d, Device::Gpu(_)) {
                records.push(bench_frames_resident(d, &lib, &cfg, repeats)?);
                let q = FramesConfig { quantize_u16: true, offset_adu: 100.0, ..cfg.clone() };
                records.push(bench_frames_resident(d, &lib, &q, repeats)?);
            }
            if want("count") {
                records.push(bench_count(d, &lib, &cfg, repeats, 0)?);
                if default_576 {
                    records.push(bench_count_u16(d, &lib, &cfg, repeats)?);
                }
            }
            if want("frames_count") {
                records.push(bench_frames_count(d, &lib, &cfg, repeats, 0)?);
            }
            if (want("frames_file") || want("count_file")) && default_576 {
                let disk = match disk_bps {
                    Some(b) => b,
                    None => *disk_bps.insert(file::disk_write_bytes_per_s(&opts.dir, opts.quick)?),
                };
                let n = if opts.quick { frames.max(64) } else { frames.max(1024) };
                let cfg = FramesConfig { frames: n, ..cfg.clone() };
                let recs = file::bench_file_stages(d, &lib, &cfg, repeats, &opts.dir, disk)?;
                records.extend(recs.into_iter().filter(|r| want(&r.stage)));
            }
            if want("count_resident") && default_576 && matches!(d, Device::Gpu(_)) {
                for u16 in [false, true] {
                    records.push(bench_count_resident(d, &lib, &cfg, repeats, u16)?);
                }
            }
        }
    }
    // More frames in flight on the GPU path (576x576, default density). A batch the adapter
    // cannot hold is reported on stderr and skipped.
    if let Some(g) = &gpu {
        for &b in &opts.frame_batches {
            let cfg = FramesConfig { batch_frames: b, ..frame_cfg(576, 2927.294, frames.max(b as u64)) };
            if want("frames") {
                soft(&mut records, bench_frames(g, &lib, &cfg, repeats), "frames", b);
            }
            if want("count") {
                soft(&mut records, bench_count(g, &lib, &cfg, repeats, b), "count", b);
            }
            if want("frames_count") {
                soft(&mut records, bench_frames_count(g, &lib, &cfg, repeats, b), "frames_count", b);
            }
        }
    }
    if want("count_net") {
        // Counting with the network, and with pair splitting, on 256x256 frames at dose
        // 0.005; the full run also at 576x576 and the default density.
        let dose_cfg = FramesConfig {
            frames: if opts.quick { 8 } else { 64 },
            height: 256,
            width: 256,
            electrons: crate::frames::ElectronCount::Dose { electrons_per_pixel: 0.005 },
            ..Default::default()
        };
        for d in &devices {
            for split in [false, true] {
                records.push(bench_count_net(d, &lib, &dose_cfg, repeats, split, NetPrecision::F32)?);
            }
            if !opts.quick {
                records.push(bench_count_net(
                    d,
                    &lib,
                    &frame_cfg(576, 2927.294, 32),
                    repeats,
                    false,
                    NetPrecision::F32,
                )?);
            }
            if has_f16(d) {
                let r = bench_count_net(d, &lib, &dose_cfg, repeats, false, NetPrecision::F16);
                soft(&mut records, r, "count_net (f16)", dose_cfg.frames as u32);
                if !opts.quick {
                    let r = bench_count_net(d, &lib, &frame_cfg(576, 2927.294, 32), repeats, false, NetPrecision::F16);
                    soft(&mut records, r, "count_net (f16)", 32);
                }
            }
        }
    }
    // The network: the seed network at the batch of 1000 (PyTorch's figures are for that),
    // and `fast`. Quick mode uses smaller batches on the GPU path (lavapipe is slow).
    for d in &devices {
        let gpu_quick = opts.quick && matches!(d, Device::Gpu(_));
        let batch = if gpu_quick { 100 } else { 1000 };
        // f16 activations where the adapter has them (GPU inference only).
        let precisions: &[NetPrecision] =
            if has_f16(d) { &[NetPrecision::F32, NetPrecision::F16] } else { &[NetPrecision::F32] };
        for preset in ["seed", "fast"] {
            if want("net_infer") {
                for &p in precisions {
                    records.push(bench_net(d, &lib, preset, batch, repeats.min(3), false, p)?);
                }
            }
            if want("net_train") {
                records.push(bench_net(d, &lib, preset, batch, repeats.min(3), true, NetPrecision::F32)?);
            }
        }
        if want("net_infer") {
            // The full run sweeps the inference batch of the counting network.
            let sweep: &[usize] = if opts.quick { &[] } else { &[100, 4000] };
            for &b in sweep.iter().chain(&opts.net_batches) {
                for &p in precisions {
                    let r = bench_net(d, &lib, "fast", b, repeats.min(3), false, p);
                    soft(&mut records, r, "net_infer", b as u32);
                }
            }
        }
    }
    if records.is_empty() {
        return Err(Error::Other("no benchmark ran".into()));
    }
    let layout = match &gpu {
        Some(Device::Gpu(ctx)) => Some(crate::count::CountLayout::for_adapter(ctx)?.name()),
        _ => None,
    };
    for r in &mut records {
        if r.path == "gpu"
            && matches!(r.stage.as_str(), "count" | "frames_count" | "count_resident" | "count_net" | "count_net_split")
        {
            r.count_layout = layout.map(Into::into);
        }
        if let (Some(b), Some((_, bw))) = (r.bytes_per_s, copy_bw.iter().find(|(p, _)| *p == r.path))
            && r.stage != "copy"
        {
            r.fraction_of_copy_bandwidth = Some(b / bw);
        }
        if let Some(g) = r.gpu_median_s.filter(|&g| g > 0.0) {
            if r.frames_per_s.is_some() {
                r.gpu_frames_per_s = Some(r.frames_per_repeat as f64 / g);
            }
            if r.samples_per_s.is_some() {
                r.gpu_samples_per_s = Some(r.frames_per_repeat as f64 / g);
            }
        }
        let kernel_s = r.kernel_gpu_ms_per_repeat.as_ref().map(|m| m.values().sum::<f64>() * 1e-3);
        if let Some(k) = kernel_s.filter(|&k| k > 0.0) {
            if r.frames_per_s.is_some() {
                r.kernel_frames_per_s = Some(r.frames_per_repeat as f64 / k);
            }
            if r.samples_per_s.is_some() {
                r.kernel_samples_per_s = Some(r.frames_per_repeat as f64 / k);
            }
        }
    }
    Ok(BenchReport {
        schema: "emsim-bench/1",
        generator: crate::generator(),
        quick: opts.quick,
        threads: rayon::current_num_threads(),
        adapter: gpu.as_ref().and_then(|g| g.adapter().cloned()),
        shader_checks: match &gpu {
            Some(Device::Gpu(ctx)) => Some(ctx.shader_checks().name()),
            _ => None,
        },
        records,
    })
}

/// A sweep point that may not fit the adapter: on error, says so on stderr and goes on.
/// Whether `device` is a GPU whose adapter has `SHADER_F16` (f16 activations).
fn has_f16(device: &Device) -> bool {
    matches!(device, Device::Gpu(ctx) if ctx.has_shader_f16())
}

fn soft(records: &mut Vec<BenchRecord>, r: Result<BenchRecord>, stage: &str, batch: u32) {
    match r {
        Ok(r) => records.push(r),
        Err(e) => eprintln!("bench: skipped {stage} at batch {batch}: {e}"),
    }
}

/// `emsim bench --compare a.json b.json`: the records the two runs share (same stage, path and
/// size), side by side with the ratio b / a of their headline rates.
pub fn compare(a_path: &std::path::Path, b_path: &std::path::Path) -> Result<String> {
    let read = |p: &std::path::Path| -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(p).map_err(|e| Error::file(p, format!("cannot read: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::file(p, format!("not JSON from emsim bench --json: {e}")))?;
        if v.get("schema").and_then(|s| s.as_str()) != Some("emsim-bench/1") {
            return Err(Error::file(p, "not an emsim bench --json report (schema emsim-bench/1 expected)"));
        }
        Ok(v)
    };
    let (a, b) = (read(a_path)?, read(b_path)?);
    // A record is the same measurement in both runs when stage, path, size, electrons per frame
    // (the nominal load: rounded to 10 %), model and batch (samples, or frames per submission)
    // agree.
    let key = |r: &serde_json::Value| {
        let e = r["electrons_per_frame"].as_f64().unwrap_or(0.0);
        let e = if e > 0.0 { format!(" {:.0}e", 10f64.powf((e.log10() * 10.0).round() / 10.0)) } else { String::new() };
        let model = r["model"].as_str().map(|m| format!(" {m}")).unwrap_or_default();
        // network stages: samples per batch; frame stages: frames per submission (the sweeps)
        let batch = r["batch_samples"]
            .as_u64()
            .or_else(|| r["batch_frames"].as_u64().filter(|&b| b > 0))
            .map(|b| format!(" b{b}"))
            .unwrap_or_default();
        let f16 = if r["net_precision"].as_str() == Some("f16") { " f16" } else { "" };
        let u16 = if r["frames_dtype"].as_str() == Some("u16") { " u16" } else { "" };
        format!(
            "{} {} {}x{}{e}{model}{batch}{f16}{u16}",
            r["stage"].as_str().unwrap_or("?"),
            r["path"].as_str().unwrap_or("?"),
            r["height"],
            r["width"]
        )
    };
    let rate = |r: &serde_json::Value| -> Option<(f64, &'static str)> {
        for (k, unit, scale) in [
            ("frames_per_s", "frames/s", 1.0),
            ("events_per_s", "events/s", 1.0),
            ("samples_per_s", "samples/s", 1.0),
            ("bytes_per_s", "GB/s", 1e-9),
        ] {
            if let Some(v) = r.get(k).and_then(|v| v.as_f64()) {
                return Some((v * scale, unit));
            }
        }
        None
    };
    let adapter = |v: &serde_json::Value| v["adapter"]["name"].as_str().unwrap_or("none (CPU only)").to_string();
    let mut s = format!("a: {} ({})\nb: {} ({})\n", a_path.display(), adapter(&a), b_path.display(), adapter(&b));
    let empty = Vec::new();
    let brecs = b["records"].as_array().unwrap_or(&empty);
    let mut rows = Vec::new();
    for ra in a["records"].as_array().unwrap_or(&empty) {
        if let Some(rb) = brecs.iter().find(|rb| key(rb) == key(ra))
            && let (Some((va, unit)), Some((vb, _))) = (rate(ra), rate(rb))
        {
            rows.push((key(ra), va, vb, unit));
        }
    }
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max("stage path size".len());
    s += &format!("{:<w$} {:>14} {:>14} {:<9} {:>8}\n", "stage path size", "a", "b", "unit", "b / a");
    for (k, va, vb, unit) in &rows {
        s += &format!("{k:<w$} {va:>14.1} {vb:>14.1} {unit:<9} {:>7.2}x\n", vb / va);
    }
    let shared = rows.len();
    if shared == 0 {
        return Err(Error::Other(format!("{} and {} share no stage/path/size", a_path.display(), b_path.display())));
    }
    Ok(s)
}
