//! [`Counter`]: counts batches of frames on a device (GPU kernels or their CPU twins).

use crate::gpu::{Device, GpuContext};
use crate::net::gpu_net::GpuNet;
use crate::shaders;
use crate::{Error, Result};

use super::calibrate::{CalibrateParams, Q_SCALE, to_q};
use super::find::{Candidate, FindParams, max_candidates};
use super::localize::{LocalizeParams, Localized};
use super::sum3::Sum3Params;
use super::*;

mod net;

/// Where a GPU batch's frames come from.
#[derive(Clone, Copy)]
pub(super) enum AduSource<'b> {
    Host(&'b [f32]),
    /// Raw u16 frames: uploaded as they are (half the bytes of f32) and read by
    /// `count/calibrate_u16`.
    HostU16(&'b [u16]),
    Device(&'b wgpu::Buffer),
}

/// Where the frames `range` of `adu` come from on the GPU path.
fn adu_source(adu: HostAdu<'_>, range: std::ops::Range<usize>) -> AduSource<'_> {
    match adu {
        HostAdu::F32(a) => AduSource::Host(&a[range]),
        HostAdu::U16(a) => AduSource::HostU16(&a[range]),
    }
}

pub(super) struct GpuBuffers {
    capacity_frames: u32,
    /// The kernels' layout, chosen once per counter (the kernels compiled are this layout's).
    layout: CountLayout,
    adu: wgpu::Buffer,
    dark: wgpu::Buffer,
    gain_map: wgpu::Buffer,
    q: wgpu::Buffer,
    s: wgpu::Buffer,
    counter: wgpu::Buffer,
    cands: wgpu::Buffer,
    find: find::FindBuffers,
    out: wgpu::Buffer,
}

/// The networks of a counter on the GPU.
struct GpuNets<'a> {
    /// The localizing network (`--method net`).
    net: GpuNet<'a>,
    /// Its candidate list on the device.
    cands: wgpu::Buffer,
    /// A grid head's rows decoded on the device.
    decoded: Option<wgpu::Buffer>,
    /// Classifier and pair localizer (`--split-pairs`).
    pairs: Option<[GpuNet<'a>; 2]>,
    /// A small perceptron (no pair splitting) on the one-dispatch kernel `net/mlp_count` (crop,
    /// layers and decoding) instead.
    mlp: Option<net::MlpNet>,
}

/// Where a counter runs: the CPU twins, or the GPU with its buffers (and networks) on it.
enum On<'a> {
    Cpu,
    Gpu(&'a GpuContext, Box<GpuBuffers>, Option<Box<GpuNets<'a>>>),
}

/// Counts batches of frames on a device. GPU buffers are allocated once for the largest batch.
pub struct Counter<'a> {
    pub cfg: CountConfig,
    pub height: u32,
    pub width: u32,
    /// The read-noise sigma used (given or estimated), electrons.
    pub sigma_e: f32,
    on: On<'a>,
}

impl<'a> Counter<'a> {
    /// `sigma_e`: the noise sigma to use (see [`estimate_sigma_e`]).
    pub fn new(cfg: CountConfig, height: u32, width: u32, sigma_e: f32, device: &'a Device) -> Result<Self> {
        cfg.validate(height, width)?;
        let mut cfg = cfg;
        // Inference runs the model with its batch norms folded into the convolutions.
        cfg.net = cfg.net.as_ref().map(|m| m.fold_batchnorm()).transpose()?;
        if let Some(p) = &mut cfg.pairs {
            if cfg.net.is_none() {
                return Err(Error::invalid("--split-pairs", "needs the network: use --method net"));
            }
            p.classifier = p.classifier.fold_batchnorm()?;
            p.localizer = p.localizer.fold_batchnorm()?;
        }
        if let Some(m) = &cfg.net {
            let side = m.cfg.input_px as u32;
            if side > height || side > width {
                return Err(Error::invalid(
                    "--model",
                    format!("the model's {side}x{side} crop is larger than the {height}x{width} frame"),
                ));
            }
        }
        let on = match device {
            Device::Cpu => On::Cpu,
            Device::Gpu(ctx) => {
                let b = Self::alloc(ctx, &cfg, height, width)?;
                ctx.warm_up(&b.layout.kernels())?;
                let nets = match &cfg.net {
                    Some(m) => {
                        let nets =
                            Self::alloc_nets(ctx, &cfg, m, b.capacity_frames as u64 * max_candidates(height, width))?;
                        cfg.net_kernel = if nets.mlp.is_some() { NetKernel::Fused } else { NetKernel::Layers };
                        if nets.net.precision() != cfg.net_precision {
                            eprintln!(
                                "warning: --net-precision {}: the adapter lacks SHADER_F16; the network runs with f32 activations",
                                cfg.net_precision.name()
                            );
                            cfg.net_precision = nets.net.precision();
                        }
                        Some(Box::new(nets))
                    }
                    None => None,
                };
                On::Gpu(ctx, Box::new(b), nets)
            }
        };
        Ok(Self { cfg, height, width, sigma_e, on })
    }

    /// The networks on the GPU: `m` (its candidate list holds `cands` entries) and, with
    /// `--split-pairs`, the pair models at the same capacity and precision.
    fn alloc_nets(
        ctx: &'a GpuContext,
        cfg: &CountConfig,
        m: &crate::net::model::Model,
        cands: u64,
    ) -> Result<GpuNets<'a>> {
        let capacity = cfg.net_batch.max(1).min(GpuNet::max_capacity(ctx, m)?);
        let net = GpuNet::new_inference(ctx, m.clone(), capacity, cfg.net_precision)?;
        let decoded = match crate::net::decode::DecodeGridParams::new(&m.cfg, net.capacity) {
            Some(_) => {
                Some(ctx.storage("net_decoded", (net.capacity * crate::net::decode::DECODED_FLOATS * 4) as u64)?)
            }
            None => None,
        };
        let pairs = match &cfg.pairs {
            Some(p) => Some([
                GpuNet::new_inference(ctx, p.classifier.clone(), net.capacity, net.precision())?,
                GpuNet::new_inference(ctx, p.localizer.clone(), net.capacity, net.precision())?,
            ]),
            None => None,
        };
        // The one-dispatch kernel keeps its weights in the precision asked for (f16 weights need
        // no SHADER_F16, but follow the layers' precision so that a fallback applies to both).
        let fused = cfg.net_kernel.fused_on(ctx.adapter.device_type == "Cpu");
        let mlp = match crate::net::mlp_gpu::MlpKernelModel::new(m) {
            Some(km) if fused && cfg.pairs.is_none() => {
                let half = net.precision() == crate::net::precision::NetPrecision::F16;
                let form = crate::net::mlp_gpu::MlpForm { half, subgroups: cfg.net_subgroups && ctx.has_subgroups() };
                Some(net::MlpNet::new(ctx, km, form, cands)?)
            }
            _ => None,
        };
        Ok(GpuNets { cands: ctx.storage("net_cands", cands * 16)?, net, decoded, pairs, mlp })
    }

    /// Frames per batch: the requested number, capped so every buffer fits one storage binding.
    pub fn batch_frames_for(cfg: &CountConfig, height: u32, width: u32, max_binding: u64) -> u32 {
        let frame_bytes = height as u64 * width as u64 * 4;
        let per_frame = frame_bytes.max(max_candidates(height, width) * 48);
        let fit = (max_binding / per_frame).max(1);
        let want = if cfg.batch_frames == 0 { 16 } else { cfg.batch_frames as u64 };
        want.min(fit) as u32
    }

    pub fn batch_frames(&self) -> u32 {
        let max_binding = match &self.on {
            On::Gpu(ctx, ..) => ctx.max_binding_bytes(),
            On::Cpu => u64::MAX,
        };
        Self::batch_frames_for(&self.cfg, self.height, self.width, max_binding)
    }

    /// Frames per batch a counter with `cfg` for H x W frames would use on `device`.
    pub fn batch_frames_on(cfg: &CountConfig, height: u32, width: u32, device: &Device) -> u32 {
        match device {
            Device::Gpu(ctx) => Self::batch_frames_for(cfg, height, width, ctx.max_binding_bytes()),
            Device::Cpu => Self::batch_frames_for(cfg, height, width, u64::MAX),
        }
    }

    fn alloc(ctx: &GpuContext, cfg: &CountConfig, h: u32, w: u32) -> Result<GpuBuffers> {
        let n = Self::batch_frames_for(cfg, h, w, ctx.max_binding_bytes());
        let px = h as u64 * w as u64;
        let cap = n as u64 * max_candidates(h, w);
        if px * 4 > ctx.max_binding_bytes() {
            return Err(crate::gpu::GpuError::TooLarge {
                what: format!("{h}x{w} frame"),
                bytes: px * 4,
                limit: ctx.max_binding_bytes(),
            }
            .into());
        }
        let dark = match &cfg.dark {
            Some(d) => ctx.upload("dark", d)?,
            None => ctx.storage("dark", 4)?,
        };
        let gain_map = match &cfg.gain_map {
            Some(g) => ctx.upload("gain_map", g)?,
            None => ctx.storage("gain_map", 4)?,
        };
        let layout = match cfg.layout {
            Some(l) => l,
            None => CountLayout::for_adapter(ctx)?,
        };
        Ok(GpuBuffers {
            capacity_frames: n,
            layout,
            adu: ctx.storage("adu", n as u64 * px * 4)?,
            dark,
            gain_map,
            q: ctx.storage("q", n as u64 * px * 4)?,
            // the tile layout keeps its sums in workgroup memory
            s: ctx.storage("s", if layout.sum3().is_some() { n as u64 * px * 4 } else { 4 })?,
            counter: ctx.storage("counter", 4)?,
            cands: ctx.storage("cands", cap * 16)?,
            find: find::FindBuffers::new(ctx, n, h, w, cap)?,
            out: ctx.storage("localized", cap * 48)?,
        })
    }

    pub fn calibrate_params(&self, n_frames: usize) -> CalibrateParams {
        let px = self.height * self.width;
        CalibrateParams {
            n_values: n_frames as u32 * px,
            frame_px: px,
            use_dark: self.cfg.dark.is_some() as u32,
            use_gain_map: self.cfg.gain_map.is_some() as u32,
            offset_adu: self.cfg.offset_adu,
            inv_gain: 1.0 / self.cfg.gain_adu_per_e,
            ..Default::default()
        }
    }

    pub fn find_params(&self, n_frames: usize) -> FindParams {
        FindParams {
            n_frames: n_frames as u32,
            height: self.height,
            width: self.width,
            thr_q: to_q(self.cfg.background_threshold_n_sigma * self.sigma_e),
            xray_q: if self.cfg.xray_threshold_e > 0.0 { to_q(self.cfg.xray_threshold_e).max(1) } else { 0 },
            suppress_px: self.cfg.suppress_px,
            capacity: (n_frames as u64 * max_candidates(self.height, self.width)) as u32,
            finder: self.cfg.finder.code(),
            faint_q: to_q(self.cfg.faint_threshold_n_sigma * self.sigma_e),
            faint_sum_q: to_q(self.cfg.faint_sum_threshold_n_sigma * self.sigma_e),
            ..Default::default()
        }
    }

    pub fn localize_params(&self, capacity: u32) -> LocalizeParams {
        LocalizeParams {
            height: self.height,
            width: self.width,
            capacity,
            centroid_thr_q: (self.cfg.centroid_threshold_e * Q_SCALE).round() as i32,
        }
    }

    /// Finds and localizes the electrons of `n_frames` frames (`adu`: n_frames x H x W, ADU).
    pub fn count(&self, adu: &[f32]) -> Result<Found> {
        self.count_host(HostAdu::F32(adu))
    }

    /// [`Counter::count`] for raw u16 frames (detector data): the GPU path uploads them as they
    /// are, half the bytes of f32; the CPU path calibrates them as they are (u16 to f32 is
    /// exact). The electrons are the same as for the frames converted to f32.
    pub fn count_u16(&self, adu: &[u16]) -> Result<Found> {
        self.count_host(HostAdu::U16(adu))
    }

    fn count_host(&self, adu: HostAdu) -> Result<Found> {
        let px = (self.height * self.width) as usize;
        assert_eq!(adu.len() % px, 0, "whole frames");
        let n = adu.len() / px;
        match &self.on {
            On::Cpu => match adu {
                HostAdu::F32(a) => self.count_cpu(a, n),
                HostAdu::U16(a) => self.count_cpu(a, n),
            },
            On::Gpu(ctx, b, nets) => {
                let mut found = Found::default();
                let step = b.capacity_frames as usize;
                for k in (0..n).step_by(step) {
                    let m = step.min(n - k);
                    let mut part = self.count_gpu(ctx, b, nets.as_deref(), adu_source(adu, k * px..(k + m) * px), m)?;
                    for c in &mut part.cands {
                        c[0] += k as u32;
                    }
                    found.cands.extend(part.cands);
                    found.localized.extend(part.localized);
                    found.net.extend(part.net);
                    found.split.extend(part.split);
                }
                Ok(found)
            }
        }
    }

    /// The CPU path: each frame is one task (calibrate, 3x3 sums, find, localize on per-thread
    /// buffers, so the frame stays in cache); the twins' frame functions, in the kernels' order.
    fn count_cpu<T: Copy + Into<f32> + Sync>(&self, adu: &[T], n: usize) -> Result<Found> {
        use rayon::prelude::*;
        let (h, w) = (self.height as usize, self.width as usize);
        let px = h * w;
        let empty: Vec<f32> = Vec::new();
        let cp = self.calibrate_params(1);
        let fp = self.find_params(1);
        let lp = self.localize_params(fp.capacity);
        let dark = self.cfg.dark.as_ref().unwrap_or(&empty);
        let gain_map = self.cfg.gain_map.as_ref().unwrap_or(&empty);
        let side = self.cfg.net.as_ref().map_or(0, |m| m.cfg.input_px);
        let crop_p = self
            .cfg
            .net
            .as_ref()
            .map(|m| crate::net::crop::CropParams::new(0, 0, side, self.height, self.width, m.cfg.input_scale));
        // Per-thread frame buffers, kept between calls: fresh 1.3 MB buffers for every rayon job
        // cost page faults and zeroing comparable to counting the frame.
        thread_local! {
            static SCRATCH: std::cell::RefCell<(Vec<i32>, Vec<i32>, Vec<i32>)> = Default::default();
            static CROPS: std::cell::RefCell<Vec<f32>> = Default::default();
        }
        // A small perceptron (f32, no pair splitting, which needs the crops) runs frame by frame
        // on the fused path, its crops in a buffer of the thread: the same numbers as the batch.
        let fused = self.cfg.net_precision == crate::net::precision::NetPrecision::F32
            && self.cfg.net.as_ref().is_some_and(|m| m.is_grid_perceptron());
        let per_frame_net = fused && self.cfg.pairs.is_none();
        type PerFrame = (Vec<Candidate>, Vec<Localized>, Vec<f32>, Vec<crate::net::decode::Decoded>);
        let per_frame: Vec<PerFrame> = (0..n)
            .into_par_iter()
            .map(|f| {
                SCRATCH.with(|cell| {
                    let (q, s, rows) = &mut *cell.borrow_mut();
                    for b in [&mut *q, &mut *s, &mut *rows] {
                        b.resize(px, 0);
                    }
                    calibrate::calibrate_frame(&cp, &adu[f * px..(f + 1) * px], dark, gain_map, q);
                    sum3::sum3_frame(h, w, q, s, rows);
                    let mut cands = Vec::new();
                    find::find_frame(&fp, q, s, f as u32, &mut cands);
                    let loc = cands
                        .iter()
                        .map(|c| {
                            localize::localize_fast(
                                q,
                                lp.height,
                                lp.width,
                                c[1] / lp.width,
                                c[1] % lp.width,
                                lp.centroid_thr_q,
                            )
                        })
                        .collect();
                    let cut = |crops: &mut [f32]| {
                        for (c, out) in cands.iter().zip(crops.chunks_exact_mut(side * side)) {
                            crate::net::crop::crop_one(
                                crop_p.as_ref().unwrap(),
                                q,
                                c[1] / lp.width,
                                c[1] % lp.width,
                                out,
                            );
                        }
                    };
                    let (mut crops, mut decoded) = (Vec::new(), Vec::new());
                    if per_frame_net {
                        let m = self.cfg.net.as_ref().unwrap();
                        CROPS.with(|b| {
                            let buf = &mut *b.borrow_mut();
                            buf.resize(cands.len() * side * side, 0.0);
                            cut(buf);
                            decoded = m.decode_mlp_cpu(buf, cands.len()).expect("a grid perceptron");
                        });
                    } else if crop_p.is_some() {
                        crops = vec![0.0f32; cands.len() * side * side];
                        cut(&mut crops);
                    }
                    (cands, loc, crops, decoded)
                })
            })
            .collect();
        let mut found = Found::default();
        let mut crops = Vec::new();
        let mut decoded = Vec::new();
        for (c, l, cr, d) in per_frame {
            found.cands.extend(c);
            found.localized.extend(l);
            crops.extend(cr);
            decoded.extend(d);
        }
        if let Some(m) = &self.cfg.net {
            if !per_frame_net {
                // the whole batch's crops (kept for pair splitting): fused when it can be
                let n = found.cands.len();
                decoded = if fused {
                    m.decode_mlp_cpu(&crops, n).expect("a grid perceptron")
                } else {
                    let (batch, precision) = (self.cfg.net_batch, self.cfg.net_precision);
                    let out = crate::net::infer::outputs_cpu_with(m, &crops, n, batch, precision)?;
                    crate::net::decode::decode(&m.cfg, &out, n)
                };
            }
            found.net = decoded
                .iter()
                .zip(&found.cands)
                .map(|(d, c)| crate::net::infer::to_frame(d, c[1] / self.width, c[1] % self.width))
                .collect();
        }
        if let Some(p) = &self.cfg.pairs {
            let outputs =
                |m, x, n| crate::net::infer::outputs_cpu_with(m, x, n, self.cfg.net_batch, self.cfg.net_precision);
            let n = found.cands.len();
            let p_two = self.p_two(&outputs(&p.classifier, &crops, n)?, n);
            // the localizer only on the crops that will be split (its other outputs are unused)
            let pick: Vec<usize> = (0..n).filter(|&i| p_two[i] > p.threshold).collect();
            let sub: Vec<f32> =
                pick.iter().flat_map(|&i| &crops[i * side * side..(i + 1) * side * side]).copied().collect();
            let sub_out = outputs(&p.localizer, &sub, pick.len())?;
            let mut loc = vec![0.0f32; 4 * n];
            for (j, &i) in pick.iter().enumerate() {
                loc[4 * i..4 * i + 4].copy_from_slice(&sub_out[4 * j..4 * j + 4]);
            }
            self.split(&mut found, &p_two, &loc);
        }
        Ok(found)
    }

    /// Counts `n` frames (ADU, f32) already on the GPU, e.g. made there by
    /// `frames::Generator::generate_on_device`: read where they are, no upload and no copy. `n`
    /// at most [`Counter::batch_frames`].
    pub fn count_device(&self, frames: &wgpu::Buffer, n: usize) -> Result<Found> {
        match &self.on {
            On::Gpu(ctx, b, nets) => {
                let cap = b.capacity_frames as usize;
                if n > cap {
                    return Err(Error::Other(format!("count_device: {n} frames > the batch capacity {cap}")));
                }
                self.count_gpu(ctx, b, nets.as_deref(), AduSource::Device(frames), n)
            }
            On::Cpu => Err(Error::Other("count_device needs the GPU path".into())),
        }
    }

    /// Records every counting kernel for `n` frames in `raw` (the counter's input buffer, or
    /// frames elsewhere on the device; f32 values, or u16 two per word when `u16`) into `enc`:
    /// the kept centres and their localizations end in `b.cands` and `b.out`, their number in
    /// `b.counter[0]` (zeroed here). Returns the finding parameters.
    fn record_count(
        &self,
        ctx: &GpuContext,
        b: &GpuBuffers,
        enc: &mut wgpu::CommandEncoder,
        raw: &wgpu::Buffer,
        u16: bool,
        n: usize,
    ) -> Result<FindParams> {
        enc.clear_buffer(&b.counter, 0, Some(4));
        let cp = ctx.uniform("calibrate_params", &self.calibrate_params(n));
        let fparams = self.find_params(n);
        let lu = ctx.uniform("localize_params", &self.localize_params(fparams.capacity));
        let total = n as u64 * (self.height * self.width) as u64;
        let input = if b.layout.find().is_none() {
            find::FindInput::Raw { adu: raw, u16, dark: &b.dark, gain_map: &b.gain_map, cparams: &cp, q: &b.q }
        } else {
            let calibrate = if u16 { &shaders::COUNT_CALIBRATE_U16 } else { &shaders::COUNT_CALIBRATE };
            ctx.dispatch(
                enc,
                calibrate,
                &[("cparams", &cp), ("adu", raw), ("dark", &b.dark), ("gain_map", &b.gain_map), ("q", &b.q)],
                total,
            )?;
            if let Some(sum3) = b.layout.sum3() {
                let sp = Sum3Params { n_frames: n as u32, height: self.height, width: self.width, _pad0: 0 };
                let su = ctx.uniform("sum3_params", &sp);
                ctx.dispatch(
                    enc,
                    sum3,
                    &[("params", &su), ("q", &b.q), ("s", &b.s)],
                    b.layout.threads(n as u32, self.height, self.width),
                )?;
            }
            find::FindInput::Sums { q: &b.q, s: &b.s }
        };
        find::record_find(ctx, enc, b.layout, &fparams, &input, &b.find, &b.counter, &b.cands, &lu, &b.out)?;
        Ok(fparams)
    }

    /// Counts batches of `n` frames already on the device (`batches`: one buffer per batch, f32,
    /// or u16 two per word when `u16`), `times` batches in turn (cycling through `batches`), each
    /// its own submission, back to back (waiting only when 8 are queued), and nothing read back
    /// but the last batch's number of centres, which it returns. For the benchmark of the rate the
    /// GPU sustains when frames arrive in its memory (`bench` stages `count_resident` and, with
    /// `net`, `count_net_resident`). With `net`, the network of a counter on the one-kernel path
    /// (`NetKernel::Fused`) localizes every centre too, straight from the finder's list on the
    /// device ([`Counter::resident_net_rows`] reads the last batch's rows back).
    pub fn count_resident(
        &self,
        batches: &[wgpu::Buffer],
        u16: bool,
        n: usize,
        times: usize,
        net: bool,
    ) -> Result<u32> {
        let On::Gpu(ctx, b, nets) = &self.on else {
            return Err(Error::Other("count_resident needs the GPU path".into()));
        };
        let mlp = match (net, nets.as_ref().and_then(|n| n.mlp.as_ref())) {
            (false, _) => None,
            (true, Some(m)) => Some(m),
            (true, None) => {
                return Err(Error::Other(
                    "count_resident with the network needs a small perceptron on the one-kernel path".into(),
                ));
            }
        };
        let cap = b.capacity_frames as usize;
        if n > cap {
            return Err(Error::Other(format!("count_resident: {n} frames > the batch capacity {cap}")));
        }
        if batches.is_empty() {
            return Err(Error::Other("count_resident: no batches".into()));
        }
        let mut in_flight = crate::gpu::InFlight::new(8);
        for t in 0..times {
            let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("count") });
            self.record_count(ctx, b, &mut enc, &batches[t % batches.len()], u16, n)?;
            if let Some(m) = mlp {
                m.record_on_device(ctx, &mut enc, (self.height, self.width), &b.q, &b.cands, &b.counter)?;
            }
            in_flight.submit(ctx, enc)?;
        }
        in_flight.finish(ctx)?;
        let mut enc = ctx.encoder("count readback");
        let rc = ctx.readback(&mut enc, &b.counter, 4);
        ctx.submit_and_wait(enc)?;
        Ok(rc.read::<u32>(ctx)?[0])
    }

    /// After [`Counter::count_resident`] with the network: the last batch's centres as the
    /// finder left them on the device (in no fixed order) and the network's 6 decoded floats per
    /// centre (`net::decode::from_decoded_rows`).
    pub fn resident_net_rows(&self) -> Result<(Vec<Candidate>, Vec<f32>)> {
        let On::Gpu(ctx, b, Some(nets)) = &self.on else {
            return Err(Error::Other("resident_net_rows needs the GPU path with a network".into()));
        };
        let Some(m) = nets.mlp.as_ref() else {
            return Err(Error::Other("resident_net_rows needs the one-kernel network path".into()));
        };
        let mut enc = ctx.encoder("count readback");
        let rc = ctx.readback(&mut enc, &b.counter, 4);
        ctx.submit_and_wait(enc)?;
        let count = rc.read::<u32>(ctx)?[0] as u64;
        if count == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut enc = ctx.encoder("count readback");
        let rl = ctx.readback(&mut enc, &b.cands, count * 16);
        let ro = ctx.readback(&mut enc, m.rows(), count * (crate::net::decode::DECODED_FLOATS * 4) as u64);
        ctx.submit_and_wait(enc)?;
        Ok((rl.read(ctx)?, ro.read(ctx)?))
    }

    fn count_gpu(
        &self,
        ctx: &GpuContext,
        b: &GpuBuffers,
        nets: Option<&GpuNets>,
        adu: AduSource,
        n: usize,
    ) -> Result<Found> {
        match adu {
            AduSource::Host(a) => ctx.write(&b.adu, a),
            AduSource::HostU16(a) => ctx.write(&b.adu, &calibrate::u16_words(a)),
            AduSource::Device(_) => {}
        }
        let mut enc = ctx.encoder("count");
        // frames already on the device are read where they are (no copy)
        let raw = match adu {
            AduSource::Device(src) => src,
            _ => &b.adu,
        };
        let fparams = self.record_count(ctx, b, &mut enc, raw, matches!(adu, AduSource::HostU16(_)), n)?;
        let rc = ctx.readback(&mut enc, &b.counter, 4);
        ctx.submit_and_wait(enc)?;
        let count = rc.read::<u32>(ctx)?[0];
        if count > fparams.capacity {
            return Err(Error::Other(format!(
                "count/find overflowed its list ({count} > {}): this is a bug, please report it",
                fparams.capacity
            )));
        }
        if count == 0 {
            return Ok(Found::default());
        }
        let mut enc = ctx.encoder("count readback");
        let rl = ctx.readback(&mut enc, &b.cands, count as u64 * 16);
        let ro = ctx.readback(&mut enc, &b.out, count as u64 * 48);
        ctx.submit_and_wait(enc)?;
        let cands: Vec<Candidate> = rl.read(ctx)?;
        let localized: Vec<Localized> = ro.read(ctx)?;
        // The GPU appends centres in no fixed order: sort by (frame, pixel), a unique key, on
        // all cores.
        use rayon::prelude::*;
        let mut order: Vec<(u64, u32)> =
            cands.iter().enumerate().map(|(i, c)| (((c[0] as u64) << 32) | c[1] as u64, i as u32)).collect();
        order.par_sort_unstable();
        let sorted_c: Vec<Candidate> = order.par_iter().map(|&(_, i)| cands[i as usize]).collect();
        debug_assert!(sorted_c.windows(2).all(|w| (w[0][0], w[0][1]) < (w[1][0], w[1][1])));
        let mut found = Found {
            cands: sorted_c,
            localized: order.par_iter().map(|&(_, i)| localized[i as usize]).collect(),
            net: Vec::new(),
            split: vec![],
        };
        if let Some(GpuNets { net, cands, decoded, pairs, mlp }) = nets {
            // the network and, with --split-pairs, the classifier and the localizer on the same crops
            let mut nets = vec![net];
            if let Some([cls, loc]) = pairs {
                nets.extend([cls, loc]);
            }
            let size = (self.height, self.width);
            let outs = match (mlp, decoded) {
                (Some(mlp), Some(_)) => vec![mlp.decoded(ctx, size, cands, &b.q, &found.cands)?],
                _ => net::net_gpu_outputs(ctx, size, &nets, cands, decoded.as_ref(), &b.q, &found.cands)?,
            };
            let dec = match decoded {
                // the grid head was decoded on the device (`net/decode_grid`)
                Some(_) => crate::net::decode::from_decoded_rows(&outs[0]),
                None => crate::net::decode::decode(&net.model.cfg, &outs[0], found.cands.len()),
            };
            found.net = dec
                .iter()
                .zip(&found.cands)
                .map(|(d, c)| crate::net::infer::to_frame(d, c[1] / self.width, c[1] % self.width))
                .collect();
            if nets.len() == 3 {
                let p_two = self.p_two(&outs[1], found.cands.len());
                self.split(&mut found, &p_two, &outs[2]);
            }
        }
        Ok(found)
    }

    /// The classifier's probability of two electrons per centre, from its raw outputs.
    fn p_two(&self, cls: &[f32], n: usize) -> Vec<f32> {
        let p = self.cfg.pairs.as_ref().expect("pair models");
        let probs = crate::net::decode::class_probs(&p.classifier.cfg, cls, n);
        probs.chunks_exact(2).map(|r| r[1]).collect()
    }

    /// Applies the pair split to `found` (the localizer's outputs are read only where `p_two`
    /// exceeds the threshold).
    fn split(&self, found: &mut Found, p_two: &[f32], loc: &[f32]) {
        let p = self.cfg.pairs.as_ref().expect("pair models");
        found.split = split::split_pairs(found, p_two, loc, self.width, p.threshold, p.dedupe_px);
    }
}
