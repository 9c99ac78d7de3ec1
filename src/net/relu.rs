//! ReLU, `y = max(x, 0)`: CPU twins and GPU kernels `net/relu_fwd`, `net/relu_bwd`. Exact on every
//! device (a comparison and a select), so GPU and twin agree bit for bit.
//!
//! The backward pass takes its mask from the forward OUTPUT (`y > 0`, which holds exactly when
//! `x > 0`), so the executor can drop `x` after the forward pass. `x = 0` counts as inactive
//! (gradient 0), as in PyTorch.

#[cfg(feature = "testing")]
use super::GARBAGE;
use super::check_len;
use super::precision::ActIo;
use super::{check_buffer, check_buffer_bytes, to_u32};
use crate::gpu::{GpuContext, GpuError};
use crate::shaders::{NET_RELU_BWD, NET_RELU_FWD, NET_RELU_FWD_F16};
use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

/// Elements per rayon task in the twins.
const CHUNK: usize = 1 << 14;

/// `y = x if x > 0 else 0` (NaN and -0 give +0). Writes all of `y`.
pub fn relu_fwd_cpu(x: &[f32], y: &mut [f32]) {
    check_len("relu y", y.len(), x.len());
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(yc, xc)| {
        for (yv, &xv) in yc.iter_mut().zip(xc) {
            *yv = if xv > 0.0 { xv } else { 0.0 };
        }
    });
}

/// `dx = dy if y > 0 else 0`, with `y` the forward output. Writes all of `dx`.
pub fn relu_bwd_cpu(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    check_len("relu dy", dy.len(), y.len());
    check_len("relu dx", dx.len(), y.len());
    dx.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(|(dxc, (yc, dyc))| {
        for ((d, &yv), &g) in dxc.iter_mut().zip(yc).zip(dyc) {
            *d = if yv > 0.0 { g } else { 0.0 };
        }
    });
}

/// Uniform of the relu kernels. Mirrors `ReluParams` in shaders/net/relu_fwd.wgsl and
/// relu_bwd.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ReluParams {
    pub n: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}
const _: () = assert!(std::mem::size_of::<ReluParams>() == 16);

fn relu_params(n: usize) -> ReluParams {
    ReluParams { n: to_u32("relu length", n), ..Default::default() }
}

/// Records `relu_fwd` over the first `n` elements (`x` and `y` must be different buffers).
pub fn relu_fwd_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    n: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<(), GpuError> {
    relu_fwd_record_io(ctx, enc, n, ActIo::F32, x, y)
}

/// [`relu_fwd_record`] with `x` / `y` stored as `io` says (see [`super::precision`]).
pub fn relu_fwd_record_io(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    n: usize,
    io: ActIo,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<(), GpuError> {
    check_buffer_bytes("relu x", x, io.x_bytes(n));
    check_buffer_bytes("relu y", y, io.y_bytes(n));
    let u = ctx.uniform("relu_fwd_params", &relu_params(n));
    ctx.dispatch(enc, io.pick(&NET_RELU_FWD, &NET_RELU_FWD_F16), &[("params", &u), ("x", x), ("y", y)], n as u64)
}

/// Records `relu_bwd` over the first `n` elements (`dx` different from `y` and `dy`).
pub fn relu_bwd_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    n: usize,
    y: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
) -> Result<(), GpuError> {
    check_buffer("relu y", y, n);
    check_buffer("relu dy", dy, n);
    check_buffer("relu dx", dx, n);
    let u = ctx.uniform("relu_bwd_params", &relu_params(n));
    ctx.dispatch(enc, &NET_RELU_BWD, &[("params", &u), ("y", y), ("dy", dy), ("dx", dx)], n as u64)
}

/// Runs `relu_fwd` alone on the GPU (test wrapper; `y` pre-filled with garbage).
#[cfg(feature = "testing")]
pub fn relu_fwd_gpu(ctx: &GpuContext, x: &[f32]) -> crate::Result<Vec<f32>> {
    let n = x.len();
    let xb = ctx.upload("x", x)?;
    let yb = ctx.upload("y", &vec![GARBAGE; n])?;
    let mut enc = ctx.encoder("relu_fwd");
    relu_fwd_record(ctx, &mut enc, n, &xb, &yb)?;
    let rb = ctx.readback(&mut enc, &yb, n as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

/// Runs `relu_bwd` alone on the GPU (test wrapper; `dx` pre-filled with garbage).
#[cfg(feature = "testing")]
pub fn relu_bwd_gpu(ctx: &GpuContext, y: &[f32], dy: &[f32]) -> crate::Result<Vec<f32>> {
    check_len("relu dy", dy.len(), y.len());
    let n = y.len();
    let (yb, dyb) = (ctx.upload("y", y)?, ctx.upload("dy", dy)?);
    let dxb = ctx.upload("dx", &vec![GARBAGE; n])?;
    let mut enc = ctx.encoder("relu_bwd");
    relu_bwd_record(ctx, &mut enc, n, &yb, &dyb, &dxb)?;
    let rb = ctx.readback(&mut enc, &dxb, n as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_backward_by_hand() {
        let x = [-2.0, -0.0, 0.0, 1e-30, 3.5, f32::NAN];
        let mut y = [-12345.0; 6];
        relu_fwd_cpu(&x, &mut y);
        assert_eq!(y.map(f32::to_bits), [0.0, 0.0, 0.0, 1e-30, 3.5, 0.0].map(f32::to_bits));
        let mut dx = [-12345.0; 6];
        relu_bwd_cpu(&y, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &mut dx);
        assert_eq!(dx, [0.0, 0.0, 0.0, 4.0, 5.0, 0.0]);
    }
}
