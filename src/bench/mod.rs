//! `emsim bench`: throughput of each stage on the GPU path and the CPU path, in one run.
//!
//! Timing is wall clock around whole batches (submission through readback, so the frames are on
//! the host), after a warm-up batch, median of repeats with min and max. Output schema:
//! `docs/bench-schema.json`.

pub mod file;
mod record;
mod stages;

pub use record::*;
pub use stages::*;

use crate::frames::FramesConfig;
use crate::gpu::{BackendChoice, Device, GpuContext};
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
    /// Compression of the end-to-end stages' file (`emsim frames --compression`).
    pub compression: crate::io::frames_out::Compression,
}

/// The stage names `--stages` takes (`count_net` covers `count_net_split` and `count_net_fused`, `net` both network
/// stages).
pub const STAGES: [&str; 12] = [
    "events",
    "frames",
    "frames_resident",
    "frames_file",
    "count",
    "count_file",
    "frames_count",
    "count_resident",
    "count_net_resident",
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
            compression: crate::io::frames_out::Compression::Deflate,
        }
    }
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
                let recs = file::bench_file_stages(d, &lib, &cfg, repeats, &opts.dir, opts.compression, disk)?;
                records.extend(recs.into_iter().filter(|r| want(&r.stage)));
            }
            if want("count_resident") && default_576 && matches!(d, Device::Gpu(_)) {
                for u16 in [false, true] {
                    records.push(bench_count_resident(d, &lib, &cfg, repeats, u16, false)?);
                }
            }
            if want("count_net_resident") && default_576 && matches!(d, Device::Gpu(_)) {
                // the network too, u16 frames as the detector writes them
                let r = bench_count_resident(d, &lib, &cfg, repeats, true, true);
                soft(&mut records, r, "count_net_resident", cfg.frames as u32);
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
            for what in [NetCount::Net, NetCount::Split] {
                records.push(bench_count_net(d, &lib, &dose_cfg, repeats, what, NetPrecision::F32)?);
            }
            let full = frame_cfg(576, 2927.294, 32);
            if matches!(d, Device::Gpu(_)) {
                // the default network as the one-dispatch kernel (the CPU path always fuses it),
                // with f32 weights and, where the layers may be f16, with f16 weights; where the
                // adapter has subgroups, also without them (f32)
                let mut runs = vec![(NetCount::Fused, NetPrecision::F32)];
                if has_f16(d) {
                    runs.push((NetCount::Fused, NetPrecision::F16));
                }
                if matches!(d, Device::Gpu(c) if c.has_subgroups()) {
                    runs.push((NetCount::FusedPlain, NetPrecision::F32));
                }
                for (what, p) in runs {
                    let r = bench_count_net(d, &lib, &dose_cfg, repeats, what, p);
                    soft(&mut records, r, "count_net_fused", dose_cfg.frames as u32);
                    if !opts.quick {
                        let r = bench_count_net(d, &lib, &full, repeats, what, p);
                        soft(&mut records, r, "count_net_fused", 32);
                    }
                }
            }
            if !opts.quick {
                records.push(bench_count_net(d, &lib, &full, repeats, NetCount::Net, NetPrecision::F32)?);
            }
            if has_f16(d) {
                let r = bench_count_net(d, &lib, &dose_cfg, repeats, NetCount::Net, NetPrecision::F16);
                soft(&mut records, r, "count_net (f16)", dose_cfg.frames as u32);
                if !opts.quick {
                    let r = bench_count_net(d, &lib, &full, repeats, NetCount::Net, NetPrecision::F16);
                    soft(&mut records, r, "count_net (f16)", 32);
                }
            }
        }
    }
    // The network: the seed network at a batch of 1000 (PyTorch's figures are for that),
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
            && matches!(
                r.stage.as_str(),
                "count"
                    | "frames_count"
                    | "count_resident"
                    | "count_net_resident"
                    | "count_net"
                    | "count_net_split"
                    | "count_net_fused"
            )
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

/// Whether `device` is a GPU whose adapter has `SHADER_F16` (f16 activations).
fn has_f16(device: &Device) -> bool {
    matches!(device, Device::Gpu(ctx) if ctx.has_shader_f16())
}

/// A sweep point that may not fit the adapter: on error, says so on stderr and goes on.
fn soft(records: &mut Vec<BenchRecord>, r: Result<BenchRecord>, stage: &str, batch: u32) {
    match r {
        Ok(r) => records.push(r),
        Err(e) => eprintln!("bench: skipped {stage} at batch {batch}: {e}"),
    }
}
