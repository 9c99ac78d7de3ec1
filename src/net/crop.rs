//! Crops around found centres, as network input: twin of the kernel `net/crop`.
//!
//! Crop `i` is the `side x side` square of the calibrated frame `q` (fixed point, 1/16 electron)
//! centred on candidate `first + i`'s pixel, in electrons times `input_scale`; pixels outside the
//! frame are 0.

use bytemuck::{Pod, Zeroable};

use crate::count::calibrate::Q_SCALE;
use crate::count::find::Candidate;
use crate::gpu::{GpuContext, GpuError};
use crate::shaders;

/// Mirrors `CropParams` in shaders/net/crop.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct CropParams {
    /// Crops to make.
    pub n: u32,
    /// First candidate.
    pub first: u32,
    pub side: u32,
    pub height: u32,
    pub width: u32,
    /// `input_scale / Q_SCALE`: fixed point to network input.
    pub scale: f32,
    pub _pad0: u32,
    pub _pad1: u32,
}
const _: () = assert!(std::mem::size_of::<CropParams>() == 32);

impl CropParams {
    pub fn new(n: usize, first: usize, side: usize, height: u32, width: u32, input_scale: f32) -> Self {
        Self {
            n: n as u32,
            first: first as u32,
            side: side as u32,
            height,
            width,
            scale: input_scale / Q_SCALE,
            _pad0: 0,
            _pad1: 0,
        }
    }
}

/// One crop of frame `qf` (H x W) centred on `(r, c)` into `out` (side x side).
pub fn crop_one(p: &CropParams, qf: &[i32], r: u32, c: u32, out: &mut [f32]) {
    let (s, h, w) = (p.side as i32, p.height as i32, p.width as i32);
    let half = s / 2;
    for py in 0..s {
        for px in 0..s {
            let (rr, cc) = (r as i32 - half + py, c as i32 - half + px);
            out[(py * s + px) as usize] =
                if rr >= 0 && rr < h && cc >= 0 && cc < w { qf[(rr * w + cc) as usize] as f32 * p.scale } else { 0.0 };
        }
    }
}

/// CPU twin of `net/crop`: `q` holds the batch's frames, `cands` `[frame, pixel, ..]`.
pub fn crop_cpu(p: &CropParams, q: &[i32], cands: &[Candidate], out: &mut [f32]) {
    let plane = (p.side * p.side) as usize;
    let fp = (p.height * p.width) as usize;
    for i in 0..p.n as usize {
        let c = cands[p.first as usize + i];
        let f = c[0] as usize;
        crop_one(p, &q[f * fp..(f + 1) * fp], c[1] / p.width, c[1] % p.width, &mut out[i * plane..(i + 1) * plane]);
    }
}

/// Records `net/crop`: one invocation per crop pixel.
pub fn crop_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    p: &CropParams,
    q: &wgpu::Buffer,
    cands: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let u = ctx.uniform("crop_params", p);
    ctx.dispatch(
        enc,
        &shaders::NET_CROP,
        &[("params", &u), ("q", q), ("cands", cands), ("crops", out)],
        p.n as u64 * (p.side * p.side) as u64,
    )
}

/// Test wrapper.
#[cfg(feature = "testing")]
pub fn crop_gpu(ctx: &GpuContext, p: &CropParams, q: &[i32], cands: &[Candidate]) -> crate::Result<Vec<f32>> {
    let len = p.n as usize * (p.side * p.side) as usize;
    let qb = ctx.upload("q", q)?;
    let cb = ctx.upload("cands", cands)?;
    let ob = ctx.upload("crops", &vec![-12345.0f32; len])?;
    let mut enc = ctx.encoder("crop");
    crop_record(ctx, &mut enc, p, &qb, &cb, &ob)?;
    let rb = ctx.readback(&mut enc, &ob, (len * 4) as u64);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}
