//! Kernel `frames/noise` (shaders/frames/noise.wgsl): fixed-point charge to ADU with Gaussian read
//! noise, gain, dark offset and optional u16 quantization.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::accumulate::FIXED_SCALE;
use crate::rng::{counter, gauss_pair, philox4x32_10, streams};

/// Keep in sync with `NoiseParams` in shaders/frames/noise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct NoiseParams {
    pub n_frames: u32,
    pub width: u32,
    pub row0: u32,
    pub band_rows: u32,
    pub first_frame_lo: u32,
    pub first_frame_hi: u32,
    pub key_lo: u32,
    pub key_hi: u32,
    pub sigma_e: f32,
    pub gain_adu_per_e: f32,
    pub offset_adu: f32,
    pub quantize: u32,
    pub first_group: u32,
    pub n_groups: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}
const _: () = assert!(std::mem::size_of::<NoiseParams>() == 64);

impl NoiseParams {
    /// Sets `first_group`/`n_groups`: the groups of 4 pixels (flat index in the frame) that overlap
    /// the band.
    pub fn with_groups(mut self) -> Self {
        let start = self.row0 * self.width;
        let end = start + self.band_rows * self.width;
        self.first_group = start / 4;
        self.n_groups = end.div_ceil(4) - self.first_group;
        self
    }
}

/// The value of one pixel: twin of the expression in the kernel.
#[inline(always)]
pub fn pixel_value(p: &NoiseParams, acc: u32, z: f32) -> f32 {
    let mut v = (acc as f32 * (1.0 / FIXED_SCALE) + p.sigma_e * z) * p.gain_adu_per_e + p.offset_adu;
    if p.quantize != 0 {
        v = v.round_ties_even().clamp(0.0, 65535.0);
    }
    v
}

/// CPU twin of `frames/noise`: `out` gets one f32 per entry of `acc` (same layout). Parallel over
/// frames; each pixel's value depends only on (seed, frame, pixel), not on the split.
pub fn noise_cpu(p: &NoiseParams, acc: &[u32], out: &mut [f32]) {
    let band_px = (p.band_rows * p.width) as usize;
    let band_start = p.row0 * p.width;
    let band_end = band_start + p.band_rows * p.width;
    let key = [p.key_lo, p.key_hi];
    let first_frame = p.first_frame_lo as u64 | (p.first_frame_hi as u64) << 32;
    out.par_chunks_mut(band_px).zip(acc.par_chunks(band_px)).take(p.n_frames as usize).enumerate().for_each(
        |(f, (out_f, acc_f))| {
            let frame = first_frame + f as u64;
            for g in p.first_group..p.first_group + p.n_groups {
                let r = philox4x32_10(counter(g, frame, streams::NOISE), key);
                let (z0, z1) = gauss_pair(r[0], r[1]);
                let (z2, z3) = gauss_pair(r[2], r[3]);
                for (lane, z) in [z0, z1, z2, z3].into_iter().enumerate() {
                    let px = g * 4 + lane as u32;
                    if px >= band_start && px < band_end {
                        let i = (px - band_start) as usize;
                        out_f[i] = pixel_value(p, acc_f[i], z);
                    }
                }
            }
        },
    );
}

/// Runs `frames/noise` alone on the GPU; `out_init` fills the output buffer first (tests pass
/// garbage there, so that a pixel the kernel fails to write shows up).
pub fn noise_gpu(
    ctx: &crate::gpu::GpuContext,
    p: &NoiseParams,
    acc: &[u32],
    out_init: &[f32],
) -> crate::Result<Vec<f32>> {
    let acc_buf = ctx.upload("acc", acc)?;
    let out = ctx.upload("frames", out_init)?;
    let params = ctx.uniform("noise_params", p);
    let mut enc = ctx.encoder("noise");
    ctx.dispatch(
        &mut enc,
        &crate::shaders::FRAMES_NOISE,
        &[&params, &acc_buf, &out],
        p.n_frames as u64 * p.n_groups as u64,
    )?;
    let rb = ctx.readback(&mut enc, &out, out_init.len() as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}
