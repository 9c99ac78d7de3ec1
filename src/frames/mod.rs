//! `emsim frames`: detector frames built from library events dropped at random pixels, with read
//! noise, gain and offset; frames plus ground truth.
//!
//! Per frame `k` (global index, whatever the shard or batch):
//! 1. the electron count `N_k` (host, stream `COUNT`): Normal(mean, sd), Poisson(mean) or a dose;
//! 2. kernel `place`: electron `e` of frame `k` takes event `below(r0, n_events)` and pixel
//!    `(below(r1, H), below(r2, W))` from `philox((e, k, PLACE), seed)`;
//! 3. kernel `accumulate`: event pixels added in fixed point with integer atomics;
//! 4. kernel `noise`: `(charge + sigma * z) * gain + offset`, `z` from `philox((pixel/4, k, NOISE), seed)`.
//!
//! The truth incidence point is the pixel plus the event's own incidence point inside its pixel.

pub mod accumulate;
pub mod camera;
mod cpu;
pub use cpu::{FrameScratch, FrameValue};
pub mod noise;
pub mod place;
pub mod run;

use std::ops::Range;

use rand::SeedableRng;
use rand_distr::Distribution;
use serde::Serialize;

use crate::gpu::{Device, GpuContext};
use crate::io::library::EventLibrary;
use crate::rng::{Stream, key_from_seed, streams};
use crate::shaders;
use crate::{Error, Result};
use accumulate::{AccumulateParams, PackedLibrary};
use noise::NoiseParams;
use place::{PlaceParams, Record};

/// The EMSim notes' electrons per 576x576 frame: 2927.294 +- 70.531.
pub const SEED_MEAN_ELECTRONS: f64 = 2927.294;
pub const SEED_SD_ELECTRONS: f64 = 70.531;

/// How many electrons a frame gets.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ElectronCount {
    /// Rounded Normal(mean, sd), at least 0 (the EMSim notes' way).
    Normal { mean: f64, sd: f64 },
    /// Poisson(mean).
    Poisson { mean: f64 },
    /// Poisson(dose * pixels), dose in electrons per pixel per frame.
    Dose { electrons_per_pixel: f64 },
}

/// Everything that determines a frames dataset (stored as attributes of the output).
#[derive(Clone, Debug, Serialize)]
pub struct FramesConfig {
    /// Frames in the whole dataset (all shards).
    pub frames: u64,
    pub height: u32,
    pub width: u32,
    pub electrons: ElectronCount,
    pub noise_sigma_e: f32,
    pub gain_adu_per_e: f32,
    pub offset_adu: f32,
    /// Round to integer ADU and saturate to u16.
    pub quantize_u16: bool,
    pub seed: u64,
    /// Frames per GPU/CPU batch (lowered automatically to fit the adapter's buffer limits).
    pub batch_frames: u32,
    pub shard_index: u32,
    pub shard_count: u32,
}

/// Read noise of the default frames, electrons (the EMSim notes' value).
pub const DEFAULT_NOISE_SIGMA_E: f32 = 20.0;
/// Gain of the default frames: one ADU per electron.
pub const DEFAULT_GAIN_ADU_PER_E: f32 = 1.0;

impl Default for FramesConfig {
    fn default() -> Self {
        Self {
            frames: 8,
            height: 576,
            width: 576,
            electrons: ElectronCount::Normal { mean: SEED_MEAN_ELECTRONS, sd: SEED_SD_ELECTRONS },
            noise_sigma_e: DEFAULT_NOISE_SIGMA_E,
            gain_adu_per_e: DEFAULT_GAIN_ADU_PER_E,
            offset_adu: 0.0,
            quantize_u16: false,
            seed: 0,
            batch_frames: 32,
            shard_index: 0,
            shard_count: 1,
        }
    }
}

/// Global frame indices of shard `k` of `n` in a dataset of `total` frames (`--shard k/N`):
/// `[k*total/n, (k+1)*total/n)`.
pub fn shard_frames(k: u64, n: u64, total: u64) -> Range<u64> {
    let at = |i: u64| (i as u128 * total as u128 / n as u128) as u64;
    at(k)..at(k + 1)
}

/// The dark offset `emsim frames` gives u16 frames unless told: 10 sigma of read noise in ADU,
/// rounded up to a whole ADU (200 ADU for 20 e- at 1 ADU/e-).
pub fn auto_offset_adu(noise_sigma_e: f32, gain_adu_per_e: f32) -> f32 {
    let v = (10.0 * noise_sigma_e * gain_adu_per_e).ceil();
    if v.is_finite() { v.max(0.0) } else { 0.0 }
}

impl FramesConfig {
    /// Quantized frames must keep their read noise: an offset below 4 sigma (in ADU) clips the
    /// noise at 0 ADU, and `emsim count` could not estimate it. Errors name `--offset-adu`.
    pub fn check_offset_keeps_noise(&self) -> Result<()> {
        let sigma_adu = self.noise_sigma_e * self.gain_adu_per_e;
        if self.quantize_u16 && self.offset_adu < 4.0 * sigma_adu {
            return Err(Error::invalid(
                "--offset-adu",
                format!(
                    "{} ADU clips the read noise ({sigma_adu} ADU sigma) of u16 frames at 0: give at least {} \
                     (4 sigma; the default is {}) or --dtype f32",
                    self.offset_adu,
                    (4.0 * sigma_adu).ceil(),
                    auto_offset_adu(self.noise_sigma_e, self.gain_adu_per_e)
                ),
            ));
        }
        Ok(())
    }

    /// Checks every field; errors name the flag.
    #[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(x > 0.0)` rejects NaN with the values out of range")]
    pub fn validate(&self) -> Result<()> {
        let bad = |flag: &str, m: String| Err(Error::invalid(flag, m));
        if self.frames == 0 {
            return bad("--frames", "must be at least 1".into());
        }
        if self.height == 0 || self.width == 0 || self.height > 32767 || self.width > 32767 {
            return bad("--size", format!("{}x{}: each side must be in 1..=32767 pixels", self.height, self.width));
        }
        if !(self.noise_sigma_e >= 0.0 && self.noise_sigma_e.is_finite()) {
            return bad("--noise-sigma-e", format!("{} must be >= 0", self.noise_sigma_e));
        }
        if !(self.gain_adu_per_e > 0.0 && self.gain_adu_per_e.is_finite()) {
            return bad("--gain", format!("{} must be > 0 ADU per electron", self.gain_adu_per_e));
        }
        if !self.offset_adu.is_finite() {
            return bad("--offset-adu", "must be finite".into());
        }
        if self.batch_frames == 0 {
            return bad("--batch", "must be at least 1".into());
        }
        if self.shard_count == 0 || self.shard_index >= self.shard_count {
            return bad("--shard", format!("{}/{}: expected k/N with 0 <= k < N", self.shard_index, self.shard_count));
        }
        if self.shard_count as u64 > self.frames {
            return bad(
                "--shard",
                format!("{} shards for {} frames: each shard needs a frame", self.shard_count, self.frames),
            );
        }
        let px = self.height as f64 * self.width as f64;
        let mean = match self.electrons {
            ElectronCount::Normal { mean, sd } => {
                if !(sd >= 0.0 && sd.is_finite()) {
                    return bad("--electrons-sd", format!("{sd} must be >= 0"));
                }
                mean
            }
            ElectronCount::Poisson { mean } => mean,
            ElectronCount::Dose { electrons_per_pixel } => {
                if !(electrons_per_pixel >= 0.0) {
                    return bad("--dose", format!("{electrons_per_pixel} must be >= 0 electrons per pixel per frame"));
                }
                electrons_per_pixel * px
            }
        };
        if !(mean >= 0.0 && mean.is_finite() && mean < 1e8) {
            return bad("--electrons/--poisson/--dose", format!("mean {mean} electrons per frame must be in [0, 1e8)"));
        }
        Ok(())
    }

    /// Global frame indices of this shard: frames `[k*F/N, (k+1)*F/N)`.
    pub fn shard_range(&self) -> Range<u64> {
        shard_frames(self.shard_index as u64, self.shard_count as u64, self.frames)
    }

    /// Number of electrons in global frame `frame` (host side, from stream `COUNT`).
    pub fn electron_count(&self, frame: u64) -> u32 {
        let mut s = Stream::new(self.seed, streams::COUNT, frame);
        let n = match self.electrons {
            ElectronCount::Normal { mean, sd } => (mean + sd * s.normal()).round(),
            ElectronCount::Poisson { mean } => poisson(&mut s, mean),
            ElectronCount::Dose { electrons_per_pixel } => {
                poisson(&mut s, electrons_per_pixel * self.height as f64 * self.width as f64)
            }
        };
        n.clamp(0.0, u32::MAX as f64) as u32
    }

    fn key(&self) -> [u32; 2] {
        key_from_seed(self.seed)
    }
}

fn poisson(s: &mut Stream, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    let mut rng = rand_chacha::ChaCha8Rng::from_seed(s.seed_bytes());
    rand_distr::Poisson::new(mean).map(|d| d.sample(&mut rng)).unwrap_or(0.0)
}

/// One batch of generated frames.
pub struct Batch {
    /// Global index of the first frame.
    pub first_frame: u64,
    /// Electrons per frame.
    pub counts: Vec<u32>,
    /// `counts.len() * height * width` values, ADU, row-major per frame.
    pub frames: Vec<f32>,
    /// One `[event, row, col, frame_local]` per electron, grouped by frame.
    pub records: Vec<Record>,
}

/// Ground truth rows of a batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Truth {
    /// Frame index within the output file.
    pub frame: Vec<u32>,
    /// Incidence point, pixels; x = column (fast axis), pixel (r, c) spans [c, c+1) x [r, r+1).
    pub x_px: Vec<f32>,
    pub y_px: Vec<f32>,
    pub event: Vec<u32>,
    pub deposit_kev: Vec<f32>,
}

impl Truth {
    /// Truth of `batch`, with frame indices counted from `file_first_frame` (the shard's first).
    pub fn of(batch: &Batch, lib: &EventLibrary, file_first_frame: u64) -> Self {
        let n = batch.records.len();
        let mut t = Truth {
            frame: Vec::with_capacity(n),
            x_px: Vec::with_capacity(n),
            y_px: Vec::with_capacity(n),
            event: Vec::with_capacity(n),
            deposit_kev: Vec::with_capacity(n),
        };
        let base = (batch.first_frame - file_first_frame) as u32;
        for &[event, row, col, f] in &batch.records {
            let e = event as usize;
            t.frame.push(base + f);
            t.x_px.push(col as f32 + lib.incidence_x_px[e]);
            t.y_px.push(row as f32 + lib.incidence_y_px[e]);
            t.event.push(event);
            t.deposit_kev.push(lib.deposit_kev[e]);
        }
        t
    }
}

/// Library buffers and reusable scratch on the GPU.
/// What [`Generator::generate_on_device`] hands the frames buffer to.
pub type FramesSink<'s> = &'s mut dyn FnMut(&wgpu::Buffer) -> Result<()>;

struct GpuState {
    event_offsets: wgpu::Buffer,
    event_pixels: wgpu::Buffer,
    /// Work buffers kept from batch to batch (grown when a batch needs more).
    work: std::sync::Mutex<Option<WorkBuffers>>,
}

/// The per-batch buffers of the GPU path: electron records, the fixed-point accumulator, the
/// frames in ADU and the per-frame electron offsets.
struct WorkBuffers {
    records: wgpu::Buffer,
    acc: wgpu::Buffer,
    out: wgpu::Buffer,
    offsets: wgpu::Buffer,
}

impl WorkBuffers {
    /// The cached buffers when each is at least as large as asked, else new ones.
    fn get(
        ctx: &GpuContext,
        cache: &std::sync::Mutex<Option<WorkBuffers>>,
        records: u64,
        frame_bytes: u64,
        offsets: u64,
    ) -> Result<WorkBuffers> {
        if let Some(w) = cache.lock().unwrap().take()
            && w.records.size() >= records
            && w.acc.size() >= frame_bytes
            && w.offsets.size() >= offsets
        {
            return Ok(w);
        }
        Ok(WorkBuffers {
            records: ctx.storage("records", records)?,
            acc: ctx.storage("acc", frame_bytes)?,
            out: ctx.storage("frames", frame_bytes)?,
            offsets: ctx.storage("frame_offsets", offsets)?,
        })
    }
}

/// Where a generator runs: the CPU twins, or a GPU holding the library and the work buffers.
enum On<'a> {
    Cpu,
    Gpu(&'a GpuContext, Box<GpuState>),
}

/// Makes batches of frames on a device (GPU kernels or their CPU twins).
pub struct Generator<'a> {
    pub cfg: FramesConfig,
    pub lib: &'a EventLibrary,
    packed: PackedLibrary,
    on: On<'a>,
    pool: std::sync::Mutex<Vec<Vec<f32>>>,
    /// Per-thread buffers of the CPU path.
    scratch: std::sync::Mutex<Vec<cpu::FrameScratch>>,
}

impl<'a> Generator<'a> {
    pub fn new(cfg: FramesConfig, lib: &'a EventLibrary, device: &'a Device) -> Result<Self> {
        cfg.validate()?;
        let packed = PackedLibrary::new(lib);
        let on = match device {
            Device::Gpu(ctx) => {
                let mut kernels = vec![shaders::FRAMES_PLACE, shaders::FRAMES_ACCUMULATE, shaders::FRAMES_NOISE];
                if cfg.quantize_u16 {
                    // the packed variant that quantized frames come back through (`generate_gpu`)
                    kernels.push(shaders::FRAMES_NOISE_U16);
                }
                ctx.warm_up(&kernels)?;
                On::Gpu(
                    ctx,
                    Box::new(GpuState {
                        event_offsets: ctx.upload("event_offsets", &packed.offsets)?,
                        event_pixels: ctx.upload("event_pixels", &packed.pixels)?,
                        work: Default::default(),
                    }),
                )
            }
            Device::Cpu => On::Cpu,
        };
        Ok(Self { cfg, lib, packed, on, pool: Default::default(), scratch: Default::default() })
    }

    fn frame_bytes(&self) -> u64 {
        self.cfg.height as u64 * self.cfg.width as u64 * 4
    }

    /// Splits this shard's frames into batches of at most `batch_frames` frames whose frame and
    /// record buffers fit one storage binding (a frame too big for one binding gets a batch of its
    /// own, made in row bands).
    pub fn plan(&self, counts: &[u32]) -> Vec<Range<usize>> {
        let limit = match &self.on {
            On::Gpu(ctx, _) => ctx.max_binding_bytes(),
            On::Cpu => u64::MAX,
        };
        let mut out = Vec::new();
        let mut start = 0;
        while start < counts.len() {
            let mut end = start + 1;
            let mut electrons = counts[start] as u64;
            while end < counts.len()
                && end - start < self.cfg.batch_frames as usize
                && (end - start + 1) as u64 * self.frame_bytes() <= limit
                && (electrons + counts[end] as u64) * 16 <= limit
                && electrons + (counts[end] as u64) < u32::MAX as u64 / 2
            {
                electrons += counts[end] as u64;
                end += 1;
            }
            out.push(start..end);
            start = end;
        }
        out
    }

    /// Generates frames `first_frame ..` with the given electron counts (one batch from `plan`).
    pub fn generate(&self, first_frame: u64, counts: &[u32]) -> Result<Batch> {
        match &self.on {
            On::Gpu(ctx, gpu) => self.generate_gpu(ctx, gpu, first_frame, counts, None),
            On::Cpu => Ok(self.generate_cpu(first_frame, counts)),
        }
    }

    fn offsets(counts: &[u32]) -> Vec<u32> {
        let mut offsets = Vec::with_capacity(counts.len() + 1);
        offsets.push(0u32);
        for &c in counts {
            offsets.push(offsets.last().unwrap() + c);
        }
        offsets
    }

    fn place_params(&self, first_frame: u64, n_frames: usize, n_electrons: u32, electron_base: u32) -> PlaceParams {
        let key = self.cfg.key();
        PlaceParams {
            n_electrons,
            n_frames: n_frames as u32,
            first_frame_lo: first_frame as u32,
            first_frame_hi: (first_frame >> 32) as u32,
            key_lo: key[0],
            key_hi: key[1],
            n_events: self.packed.n_events(),
            height: self.cfg.height,
            width: self.cfg.width,
            electron_base,
            ..Default::default()
        }
    }

    fn noise_params(&self, first_frame: u64, n_frames: usize, row0: u32, band_rows: u32) -> NoiseParams {
        let key = self.cfg.key();
        NoiseParams {
            n_frames: n_frames as u32,
            width: self.cfg.width,
            row0,
            band_rows,
            first_frame_lo: first_frame as u32,
            first_frame_hi: (first_frame >> 32) as u32,
            key_lo: key[0],
            key_hi: key[1],
            sigma_e: self.cfg.noise_sigma_e,
            gain_adu_per_e: self.cfg.gain_adu_per_e,
            offset_adu: self.cfg.offset_adu,
            quantize: self.cfg.quantize_u16 as u32,
            ..Default::default()
        }
        .with_groups()
    }

    /// A frame buffer of `len` values (contents unspecified: every value is overwritten), reused
    /// from [`Generator::recycle`] when one is there, so that long runs do not fault in fresh pages
    /// for every batch.
    fn take_buffer(&self, len: usize) -> Vec<f32> {
        let mut pool = self.pool.lock().unwrap();
        match pool.iter().position(|b| b.capacity() >= len) {
            Some(i) => {
                let mut b = pool.swap_remove(i);
                b.resize(len, 0.0);
                b.truncate(len);
                b
            }
            None => vec![0f32; len],
        }
    }

    /// Gives a batch's frame buffer back for reuse by later batches (optional).
    pub fn recycle(&self, frames: Vec<f32>) {
        let mut pool = self.pool.lock().unwrap();
        if pool.len() < 4 {
            pool.push(frames);
        }
    }

    /// Makes a batch on the GPU and hands its frames (ADU, `counts.len()` frames of H x W f32) to
    /// `use_frames` while they are still on the device: no readback of frames or truth. For work
    /// that consumes frames on the GPU (bench stage `frames_count`). The batch must fit one
    /// storage binding (frames and electron records).
    pub fn generate_on_device(&self, first_frame: u64, counts: &[u32], use_frames: FramesSink) -> Result<()> {
        match &self.on {
            On::Gpu(ctx, gpu) => self.generate_gpu(ctx, gpu, first_frame, counts, Some(use_frames)).map(|_| ()),
            On::Cpu => Err(crate::Error::Other("generate_on_device needs the GPU path".into())),
        }
    }

    /// Records `frames/place` and `frames/accumulate` for the electrons of `params` (offsets
    /// already in `work.offsets`) into the accumulator of the frame rows `rows`.
    fn record_place_accumulate(
        &self,
        ctx: &GpuContext,
        gpu: &GpuState,
        enc: &mut wgpu::CommandEncoder,
        work: &WorkBuffers,
        params: &PlaceParams,
        rows: Range<u32>,
    ) -> Result<()> {
        let len = params.n_electrons;
        let pu = ctx.uniform("place_params", params);
        ctx.dispatch(
            enc,
            &shaders::FRAMES_PLACE,
            &[("params", &pu), ("frame_offsets", &work.offsets), ("records", &work.records)],
            len as u64,
        )?;
        let ap = AccumulateParams {
            n_electrons: len,
            height: self.cfg.height,
            width: self.cfg.width,
            row0: rows.start,
            band_rows: rows.end - rows.start,
            ..Default::default()
        };
        let au = ctx.uniform("accumulate_params", &ap);
        let bindings = [
            ("params", &au),
            ("records", &work.records),
            ("event_offsets", &gpu.event_offsets),
            ("event_pixels", &gpu.event_pixels),
            ("acc", &work.acc),
        ];
        ctx.dispatch(enc, &shaders::FRAMES_ACCUMULATE, &bindings, len as u64)?;
        Ok(())
    }

    /// Records `frames/noise` (`_u16` when `packed`) from the accumulator into `work.out`.
    #[allow(clippy::too_many_arguments)]
    fn record_noise(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        work: &WorkBuffers,
        first_frame: u64,
        n: usize,
        row0: u32,
        rows: u32,
        packed: bool,
    ) -> Result<()> {
        let np = self.noise_params(first_frame, n, row0, rows);
        let nu = ctx.uniform("noise_params", &np);
        let noise = if packed { &shaders::FRAMES_NOISE_U16 } else { &shaders::FRAMES_NOISE };
        ctx.dispatch(
            enc,
            noise,
            &[("params", &nu), ("acc", &work.acc), ("out", &work.out)],
            n as u64 * np.n_groups as u64,
        )?;
        Ok(())
    }

    /// Makes the frames of `counts` (first frame `first_frame`) on the device `times` times over,
    /// each time its own submission, back to back (waiting only when 8 are queued) and nothing
    /// read back: the generation rate when frames are used where they are made (bench stage
    /// `frames_resident`). GPU path; the batch must fit one storage binding. `last`, when given,
    /// gets the frames of the last time on the device (f32, or u16 two per word for quantized
    /// frames of even width).
    pub fn generate_resident(
        &self,
        first_frame: u64,
        counts: &[u32],
        times: usize,
        last: Option<FramesSink>,
    ) -> Result<()> {
        let On::Gpu(ctx, gpu) = &self.on else {
            return Err(crate::Error::Other("generate_resident needs the GPU path".into()));
        };
        let (h, w) = (self.cfg.height, self.cfg.width);
        let n = counts.len();
        let offsets = Self::offsets(counts);
        let total = *offsets.last().unwrap();
        let frame_bytes = n as u64 * h as u64 * w as u64 * 4;
        if frame_bytes.max(total as u64 * 16) > ctx.max_binding_bytes() {
            return Err(crate::Error::Other(format!(
                "a batch of {n} frames of {h}x{w} does not fit one storage binding; it cannot stay on the device"
            )));
        }
        let work = WorkBuffers::get(ctx, &gpu.work, total as u64 * 16, frame_bytes, (n as u64 + 1) * 4)?;
        ctx.write(&work.offsets, &offsets);
        let params = self.place_params(first_frame, n, total, 0);
        let packed = self.cfg.quantize_u16 && w % 2 == 0;
        let mut in_flight = crate::gpu::InFlight::new(8);
        for _ in 0..times {
            let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("frames") });
            enc.clear_buffer(&work.acc, 0, Some(frame_bytes));
            self.record_place_accumulate(ctx, gpu, &mut enc, &work, &params, 0..h)?;
            self.record_noise(ctx, &mut enc, &work, first_frame, n, 0, h, packed)?;
            in_flight.submit(ctx, enc)?;
        }
        in_flight.finish(ctx)?;
        let r = last.map_or(Ok(()), |f| f(&work.out));
        *gpu.work.lock().unwrap() = Some(work);
        r
    }

    /// The GPU path: place, accumulate and noise per row band (one band unless a frame exceeds a
    /// storage binding), with electrons chunked to fit the record buffer; the frames and truth
    /// are read back, or with `on_device` handed over on the device instead.
    fn generate_gpu(
        &self,
        ctx: &GpuContext,
        gpu: &GpuState,
        first_frame: u64,
        counts: &[u32],
        mut on_device: Option<FramesSink>,
    ) -> Result<Batch> {
        let (h, w) = (self.cfg.height, self.cfg.width);
        let n = counts.len();
        let limit = ctx.max_binding_bytes();
        let frame_px = h as u64 * w as u64;
        let band_rows = if n as u64 * frame_px * 4 <= limit {
            h
        } else {
            assert_eq!(n, 1, "the planner gives frames larger than a binding a batch of their own");
            let rows = (limit / (w as u64 * 4)).min(h as u64) as u32;
            if rows == 0 {
                return Err(crate::gpu::GpuError::TooLarge {
                    what: format!("frame row of {w} pixels"),
                    bytes: w as u64 * 4,
                    limit,
                }
                .into());
            }
            rows
        };
        let offsets = Self::offsets(counts);
        let total = *offsets.last().unwrap();
        // Electron chunks: all electrons at once when they fit, else (single frame) slices.
        let max_chunk = ((limit / 16).min(u32::MAX as u64) as u32).max(1);
        let chunks: Vec<(u32, u32)> = if total as u64 * 16 <= limit {
            vec![(0, total)]
        } else {
            assert_eq!(n, 1, "the planner keeps multi-frame batches within the record limit");
            (0..total).step_by(max_chunk as usize).map(|s| (s, (total - s).min(max_chunk))).collect()
        };
        let keep = on_device.is_some();
        if keep && (band_rows != h || chunks.len() != 1) {
            return Err(crate::Error::Other(format!(
                "a batch of {n} frames of {h}x{w} does not fit one storage binding; it cannot stay on the device"
            )));
        }
        let chunk_cap = chunks.iter().map(|c| c.1).max().unwrap_or(0) as u64;
        let band_px = band_rows as u64 * w as u64;
        let work = WorkBuffers::get(ctx, &gpu.work, chunk_cap * 16, n as u64 * band_px * 4, (n as u64 + 1) * 4)?;
        let (records_buf, acc, out, offsets_buf) = (&work.records, &work.acc, &work.out, &work.offsets);
        let mut frames = if keep { Vec::new() } else { self.take_buffer(n * frame_px as usize) };
        let mut band: Vec<f32> = Vec::new();
        let mut band_u16: Vec<u16> = Vec::new();
        let mut records = Vec::with_capacity(total as usize);
        let mut row0 = 0;
        while row0 < h {
            let rows = band_rows.min(h - row0);
            let mut pending_records = Vec::new();
            for &(start, len) in &chunks {
                let (params, offs) = if chunks.len() == 1 {
                    (self.place_params(first_frame, n, len, 0), offsets.clone())
                } else {
                    (self.place_params(first_frame, 1, len, start), vec![0, len])
                };
                ctx.write(offsets_buf, &offs);
                let mut enc = ctx.encoder("frames");
                if start == 0 {
                    enc.clear_buffer(acc, 0, Some(n as u64 * band_px * 4));
                }
                self.record_place_accumulate(ctx, gpu, &mut enc, &work, &params, row0..row0 + rows)?;
                let rb = (row0 == 0 && !keep).then(|| ctx.readback(&mut enc, records_buf, len as u64 * 16));
                ctx.submit_and_wait(enc)?;
                if let Some(rb) = rb {
                    pending_records.push(rb);
                }
            }
            let mut enc = ctx.encoder("noise");
            // Quantized frames of even width come back as u16, two per word: half the readback.
            let packed = self.cfg.quantize_u16 && w % 2 == 0 && !keep;
            self.record_noise(ctx, &mut enc, &work, first_frame, n, row0, rows, packed)?;
            if let Some(f) = on_device.as_mut() {
                ctx.submit_and_wait(enc)?;
                let r = f(out);
                *gpu.work.lock().unwrap() = Some(work);
                r?;
                return Ok(Batch { first_frame, counts: counts.to_vec(), frames, records });
            }
            let values = n as u64 * rows as u64 * w as u64;
            let rb = ctx.readback(&mut enc, out, values * if packed { 2 } else { 4 });
            ctx.submit_and_wait(enc)?;
            if packed {
                use rayon::prelude::*;
                rb.read_into(ctx, &mut band_u16)?;
                let start = row0 as usize * w as usize;
                frames[start..start + band_u16.len()]
                    .par_chunks_mut(1 << 16)
                    .zip(band_u16.par_chunks(1 << 16))
                    .for_each(|(f, b)| f.iter_mut().zip(b).for_each(|(f, &v)| *f = v as f32));
            } else if rows == h {
                rb.read_into(ctx, &mut frames)?;
            } else {
                rb.read_into(ctx, &mut band)?;
                let start = row0 as usize * w as usize;
                frames[start..start + band.len()].copy_from_slice(&band);
            }
            for rb in pending_records {
                records.extend(rb.read::<Record>(ctx)?);
            }
            row0 += rows;
        }
        *gpu.work.lock().unwrap() = Some(work);
        Ok(Batch { first_frame, counts: counts.to_vec(), frames, records })
    }
}
