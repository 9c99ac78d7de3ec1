//! One function per stage of `emsim bench`: each times its stage on one device and returns a
//! record.

use std::time::Instant;

use crate::events::build::SimulateRequest;
use crate::frames::{FramesConfig, Generator};
use crate::gpu::{Device, GpuContext};
use crate::io::library::EventLibrary;
use crate::net::precision::NetPrecision;
use crate::{Error, Result};

use super::*;

/// Wall-clock (and, on a GPU with timestamp queries, GPU) time of each repeat.
pub(super) struct Reps<'a> {
    pub(super) device: &'a Device,
    pub(super) wall: Vec<f64>,
    pub(super) gpu: Vec<f64>,
    pub(super) t: Option<Instant>,
    /// `--kernel-times`: each kernel's GPU seconds and dispatches summed over the repeats, and
    /// the number of repeats they cover.
    pub(super) kernels: Vec<crate::gpu::timing::KernelTime>,
    pub(super) kernel_repeats: u32,
}

impl<'a> Reps<'a> {
    pub(super) fn new(device: &'a Device) -> Self {
        Self { device, wall: Vec::new(), gpu: Vec::new(), t: None, kernels: Vec::new(), kernel_repeats: 0 }
    }

    pub(super) fn kernel_ctx(&self) -> Option<&GpuContext> {
        match self.device {
            Device::Gpu(c) if c.kernel_times_wanted() => Some(c),
            _ => None,
        }
    }

    pub(super) fn start(&mut self) {
        if let Some(c) = self.kernel_ctx() {
            c.kernel_times_start();
        }
        self.device.gpu_timer_start();
        self.t = Some(Instant::now());
    }

    pub(super) fn stop(&mut self) {
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
pub(super) fn timed_repeats<'a>(
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
pub(super) fn wall_repeats<'a>(
    device: &'a Device,
    repeats: u32,
    mut run: impl FnMut() -> Result<()>,
) -> Result<Reps<'a>> {
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
pub(super) fn raw_u16(frames: &[f32], offset_adu: f32) -> Vec<u16> {
    frames.iter().map(|&e| (e + offset_adu).round().clamp(0.0, 65535.0) as u16).collect()
}

/// Times frame generation (no disk) for `frames` frames, `repeats` times.
pub fn bench_frames(device: &Device, lib: &EventLibrary, cfg: &FramesConfig, repeats: u32) -> Result<BenchRecord> {
    let gen_ = Generator::new(cfg.clone(), lib, device)?;
    let counts: Vec<u32> = (0..cfg.frames).map(|k| cfg.electron_count(k)).collect();
    let plan = gen_.plan(&counts);
    // Warm-up: one batch (pipeline compilation, allocations, JIT on lavapipe).
    gen_.recycle(gen_.generate(0, &counts[plan[0].clone()])?.frames);
    let mut times = Reps::new(device);
    for _ in 0..repeats {
        times.start();
        for b in &plan {
            let batch = gen_.generate(b.start as u64, &counts[b.clone()])?;
            std::hint::black_box(&batch.frames);
            gen_.recycle(batch.frames);
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
                    gen_.recycle(batch.frames);
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
pub(super) fn resident_frames(device: &Device, frames: u64) -> u64 {
    match device {
        Device::Gpu(ctx) if ctx.adapter.device_type == "DiscreteGpu" => frames.max(8192),
        _ => frames,
    }
}

/// GPU path only: making frames that stay in the GPU's memory, as a pipeline that uses them there
/// (counting, training) would. Each repeat makes one batch (`cfg.batch_frames`, f32, or u16 when
/// `cfg.quantize_u16`) `cfg.frames / batch` times (`resident_frames`), one submission per
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
/// `u16`); each repeat then counts `cfg.frames / batch` batches (`resident_frames`) in turn, one
/// submission per batch, back to back (the host waits only when 8 are queued), and reads back
/// only the last batch's number of centres. Wall clock: what the GPU sustains when it is kept busy, the host
/// submitting ahead of it.
pub fn bench_count_resident(
    device: &Device,
    lib: &EventLibrary,
    cfg: &FramesConfig,
    repeats: u32,
    u16: bool,
    net: bool,
) -> Result<BenchRecord> {
    let stage = if net { "count_net_resident" } else { "count_resident" };
    let Device::Gpu(ctx) = device else {
        return Err(Error::Other(format!("{stage} runs on the GPU path only")));
    };
    let offset = if u16 { 100.0 } else { 0.0 };
    let mut ccfg = crate::count::CountConfig { offset_adu: offset, ..Default::default() };
    if net {
        // the default network on the one-kernel path, over the finder's list on the device
        ccfg.net = Some(crate::count::load_net_model(None, false)?);
        ccfg.net_kernel = crate::count::NetKernel::Fused;
    }
    let model = ccfg.net.as_ref().map(|m| m.cfg.name.clone());
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
        per_batch.push(counter.count_resident(std::slice::from_ref(b), u16, batch as usize, 1, net)? as u64);
    }
    let found: u64 = (0..times).map(|t| per_batch[t % n_batches]).sum();
    let last = per_batch[(times - 1) % n_batches];
    let mut reps = wall_repeats(device, repeats, || {
        let n = counter.count_resident(&bufs, u16, batch as usize, times, net)?;
        if n as u64 != last {
            return Err(Error::Other(format!("{stage}: the last batch gave {n} centres, alone {last}")));
        }
        Ok(())
    })?;
    let timed = format!(
        "counting frames already in GPU memory (256 MiB of distinct batches, made and uploaded once), \
         batch after batch (up to 8 submissions queued ahead){}; only the number found read back",
        if net {
            ", every centre also localized by the default network (one kernel net/mlp_count over the finder's \
             list on the device, indirect dispatch)"
        } else {
            ""
        }
    );
    let mut r = BenchRecord::timing(stage, "gpu", &timed, &mut reps);
    if net {
        r.model = model;
        r.net_precision = Some(NetPrecision::F32.name().into());
        r.net_subgroups = Some(ctx.has_subgroups());
    }
    let rcfg = FramesConfig { frames: times as u64 * batch as u64, ..cfg.clone() };
    r.frame_figures(&rcfg, batch, found);
    if u16 {
        r.u16_frames();
    }
    Ok(r)
}

/// What the `count_net` stages time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetCount {
    /// `count --method net` with the default network (stage `count_net`; on the GPU a kernel
    /// per layer, `--net-kernel layers`).
    Net,
    /// With `--split-pairs`, the shipped `pair-split` / `pair-loc` models and the default
    /// threshold and dedupe distance (stage `count_net_split`).
    Split,
    /// With `--net-kernel fused`: on the GPU the default network as the one-dispatch kernel
    /// `net/mlp_count` (stage `count_net_fused`; a small perceptron; with f16 precision its
    /// weights are f16), its lanes sharing weights by subgroup shuffles where the adapter can.
    Fused,
    /// The same without subgroup operations (stage `count_net_fused`, `net_subgroups: false`).
    FusedPlain,
}

/// Times counting with the network as `what` says.
pub fn bench_count_net(
    device: &Device,
    lib: &EventLibrary,
    cfg: &FramesConfig,
    repeats: u32,
    what: NetCount,
    precision: NetPrecision,
) -> Result<BenchRecord> {
    let (split, fused) = (what == NetCount::Split, matches!(what, NetCount::Fused | NetCount::FusedPlain));
    let subgroups = fused && what == NetCount::Fused && matches!(device, Device::Gpu(c) if c.has_subgroups());
    let net = crate::count::load_net_model(None, split)?;
    let name = net.cfg.name.clone();
    let pairs = if split {
        use crate::count::split::{DEFAULT_DEDUPE_PX, DEFAULT_THRESHOLD, load_pair_models};
        Some(load_pair_models(None, None, &net, DEFAULT_THRESHOLD, DEFAULT_DEDUPE_PX)?)
    } else {
        None
    };
    let ccfg = crate::count::CountConfig {
        net: Some(net),
        pairs,
        net_precision: precision,
        net_kernel: if fused { crate::count::NetKernel::Fused } else { crate::count::NetKernel::Layers },
        net_subgroups: subgroups,
        ..Default::default()
    };
    let stage = match what {
        NetCount::Net => "count_net",
        NetCount::Split => "count_net_split",
        NetCount::Fused | NetCount::FusedPlain => "count_net_fused",
    };
    let mut r = bench_count_with(device, lib, cfg, repeats, ccfg, stage, false)?;
    r.timed = format!(
        "{} + crops + network inference{} (the default network{})",
        r.timed,
        if split { " + one-vs-two classifier + pair localizer" } else { "" },
        match (fused, device) {
            (true, _) if subgroups => ", one kernel net/mlp_count, subgroup shuffles",
            (true, _) => ", one kernel net/mlp_count",
            (false, Device::Gpu(_)) => ", a kernel per layer",
            (false, Device::Cpu) => "",
        }
    );
    r.model = Some(format!("{}{}", name, if split { "+pair-split+pair-loc" } else { "" }));
    r.net_precision = Some(precision.name().into());
    r.net_subgroups = fused.then_some(subgroups);
    Ok(r)
}

pub(super) fn bench_count_with(
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
    pub(super) fn frame_figures(&mut self, cfg: &FramesConfig, batch: u32, electrons: u64) {
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

    /// The end-to-end figures of a file stage ([`file::bench_file_stages`]): bytes per frame of
    /// the frames dataset and of the whole file (what the disk has to take).
    pub(super) fn file_figures(&mut self, in_memory_fps: Option<f64>, stored: f64, file: f64, disk_bps: f64) {
        let fps = self.frames_per_s.unwrap_or(0.0);
        self.in_memory_frames_per_s = in_memory_fps;
        self.fraction_of_in_memory = in_memory_fps.map(|m| fps / m);
        self.stored_bytes_per_frame = Some(stored);
        self.file_bytes_per_frame = Some(file);
        self.disk_write_bytes_per_s = Some(disk_bps);
        let bound = disk_bps / file;
        self.disk_bound_frames_per_s = Some(bound);
        self.fraction_of_disk_bound = Some(fps / bound);
    }

    /// Marks a frame record as one on raw u16 frames (two bytes per pixel, not four).
    pub(super) fn u16_frames(&mut self) {
        self.frames_dtype = Some("u16".into());
        self.bytes_per_s = self.bytes_per_s.map(|b| b / 2.0);
    }

    /// The record's size column: the model, or the frame size (with " u16" for raw u16 frames).
    pub(super) fn size_label(&self) -> String {
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
