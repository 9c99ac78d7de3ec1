//! 2-D max pooling (PyTorch `nn.MaxPool2d(k, stride)`: no padding, no dilation, floor mode):
//! forward and backward. Twins of the kernels `net/maxpool2d_fwd` and `net/maxpool2d_bwd`.
//!
//! Shapes: input `[N, C, H, W]`, output `[N, C, OH, OW]` with `OH = (H - k) / stride + 1` (floor),
//! likewise `OW`. PyTorch's default is `stride = k`; any `stride >= 1` works, overlapping windows
//! (`stride < k`) included.
//!
//! ```text
//! y[n, c, oy, ox]   = max over (ky, kx) of x[n, c, oy*stride + ky, ox*stride + kx]
//! idx[n, c, oy, ox] = flat index into x of that maximum: the first one in row-major window order on ties
//! dx[i]             = sum of dy[o] over the output elements o with idx[o] == i   (0 if none)
//! ```
//!
//! The backward pass is in gather form (one input element per thread, looping over the windows
//! that contain it, in `(oy, ox)` order), so the kernel needs no atomics, and overlapping windows
//! work. Inputs are assumed NaN-free (a NaN is never selected as the maximum here; PyTorch would
//! propagate it).

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::check_buffer_bytes;
use super::precision::ActIo;
use super::{Shape4, check_len};
use crate::gpu::{GpuContext, GpuError};

/// Shape and hyper-parameters of one max-pooling layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2dShape {
    /// Input `[N, C, H, W]`.
    pub input: Shape4,
    /// Window size (square), >= 1.
    pub k: usize,
    /// Stride along both axes, >= 1 (PyTorch's default is `k`).
    pub stride: usize,
}

impl MaxPool2dShape {
    /// PyTorch's `nn.MaxPool2d(k)`: stride = k. Panics like [`MaxPool2dShape::output`].
    pub fn new(input: Shape4, k: usize) -> Self {
        Self::with_stride(input, k, k)
    }

    /// `nn.MaxPool2d(k, stride)`. Panics like [`MaxPool2dShape::output`].
    pub fn with_stride(input: Shape4, k: usize, stride: usize) -> Self {
        let s = Self { input, k, stride };
        s.check();
        s
    }

    #[track_caller]
    fn check(&self) {
        assert!(self.k >= 1, "maxpool2d: window size must be >= 1");
        assert!(self.stride >= 1, "maxpool2d: stride must be >= 1");
        assert!(
            self.k <= self.input.h && self.k <= self.input.w,
            "maxpool2d: window {k}x{k} larger than the input {}x{}",
            self.input.h,
            self.input.w,
            k = self.k
        );
    }

    /// Output `[N, C, (H - k) / stride + 1, (W - k) / stride + 1]`. Panics if `k` or `stride` is 0
    /// or the window is larger than the input.
    #[track_caller]
    pub fn output(&self) -> Shape4 {
        self.check();
        let i = self.input;
        Shape4::new(i.n, i.c, (i.h - self.k) / self.stride + 1, (i.w - self.k) / self.stride + 1)
    }

    /// Output rows `oy` whose window contains input row `iy` (`oy*stride <= iy < oy*stride + k`),
    /// clipped to `[0, out)`; likewise for columns. Empty when `iy` is in the floor-mode remainder.
    #[inline(always)]
    fn windows_containing(&self, i: usize, out: usize) -> std::ops::Range<usize> {
        let lo = (i + 1).saturating_sub(self.k).div_ceil(self.stride);
        let hi = (i / self.stride + 1).min(out);
        lo..hi.max(lo)
    }

    /// The uniform for both kernels.
    pub fn params(&self) -> MaxPool2dParams {
        let (i, o) = (self.input, self.output());
        MaxPool2dParams {
            planes: (i.n * i.c) as u32,
            h: i.h as u32,
            w: i.w as u32,
            oh: o.h as u32,
            ow: o.w as u32,
            k: self.k as u32,
            stride: self.stride as u32,
            _pad0: 0,
        }
    }
}

/// Uniform of `net/maxpool2d_fwd` and `net/maxpool2d_bwd`. Mirrors `MaxPool2dParams` in
/// shaders/net/maxpool2d_fwd.wgsl and shaders/net/maxpool2d_bwd.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MaxPool2dParams {
    /// `N * C`.
    pub planes: u32,
    pub h: u32,
    pub w: u32,
    pub oh: u32,
    pub ow: u32,
    pub k: u32,
    pub stride: u32,
    pub _pad0: u32,
}
const _: () = assert!(std::mem::size_of::<MaxPool2dParams>() == 32);

/// The largest tensor the kernels index with u32.
#[track_caller]
fn check_u32(s: &MaxPool2dShape) {
    assert!(s.input.len() <= u32::MAX as usize, "maxpool2d: input of {} elements exceeds u32 indexing", s.input.len());
}

/// Forward: `y` = window maxima, `idx` = flat index into `x` of each maximum (first on ties).
/// Writes all of `y` and `idx`.
pub fn maxpool2d_fwd_cpu(s: &MaxPool2dShape, x: &[f32], y: &mut [f32], idx: &mut [u32]) {
    let (xs, ys) = (s.input, s.output());
    check_u32(s);
    check_len("maxpool2d x", x.len(), xs.len());
    check_len("maxpool2d y", y.len(), ys.len());
    check_len("maxpool2d idx", idx.len(), ys.len());
    if ys.is_empty() {
        return;
    }
    y.par_chunks_mut(ys.plane()).zip(idx.par_chunks_mut(ys.plane())).enumerate().for_each(|(plane, (y, idx))| {
        let base = plane * xs.plane();
        for oy in 0..ys.h {
            for ox in 0..ys.w {
                let first = base + oy * s.stride * xs.w + ox * s.stride;
                let (mut best, mut at) = (x[first], first);
                for ky in 0..s.k {
                    for kx in 0..s.k {
                        let i = first + ky * xs.w + kx;
                        if x[i] > best {
                            best = x[i];
                            at = i;
                        }
                    }
                }
                y[oy * ys.w + ox] = best;
                idx[oy * ys.w + ox] = at as u32;
            }
        }
    });
}

/// Backward (gather form): `dx[i]` = sum, in `(oy, ox)` order, of `dy[o]` over the windows `o`
/// that contain `i` and whose `idx[o] == i`; 0 elsewhere. Writes all of `dx`.
pub fn maxpool2d_bwd_cpu(s: &MaxPool2dShape, idx: &[u32], dy: &[f32], dx: &mut [f32]) {
    let (xs, ys) = (s.input, s.output());
    check_u32(s);
    check_len("maxpool2d idx", idx.len(), ys.len());
    check_len("maxpool2d dy", dy.len(), ys.len());
    check_len("maxpool2d dx", dx.len(), xs.len());
    if xs.is_empty() {
        return;
    }
    dx.par_chunks_mut(xs.plane()).enumerate().for_each(|(plane, dx)| {
        for iy in 0..xs.h {
            for ix in 0..xs.w {
                let i = (plane * xs.plane() + iy * xs.w + ix) as u32;
                let mut acc = 0.0f32;
                for oy in s.windows_containing(iy, ys.h) {
                    for ox in s.windows_containing(ix, ys.w) {
                        let o = (plane * ys.h + oy) * ys.w + ox;
                        if idx[o] == i {
                            acc += dy[o];
                        }
                    }
                }
                dx[iy * xs.w + ix] = acc;
            }
        }
    });
}

/// Records `net/maxpool2d_fwd`: `x` (f32) -> `y` (f32), `idx` (u32), one invocation per output.
pub fn maxpool2d_fwd_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &MaxPool2dShape,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    idx: &wgpu::Buffer,
) -> Result<(), GpuError> {
    maxpool2d_fwd_record_io(ctx, enc, s, ActIo::F32, x, y, idx)
}

/// [`maxpool2d_fwd_record`] with `x` / `y` stored as `io` says (see [`super::precision`]).
pub fn maxpool2d_fwd_record_io(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &MaxPool2dShape,
    io: ActIo,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    idx: &wgpu::Buffer,
) -> Result<(), GpuError> {
    check_u32(s);
    check_buffer_bytes("maxpool2d x", x, io.x_bytes(s.input.len()));
    check_buffer_bytes("maxpool2d y", y, io.y_bytes(s.output().len()));
    check_buffer_bytes("maxpool2d idx", idx, 4 * s.output().len() as u64);
    let u = ctx.uniform("maxpool2d_params", &s.params());
    let kernel = io.pick(&crate::shaders::NET_MAXPOOL2D_FWD, &crate::shaders::NET_MAXPOOL2D_FWD_F16);
    ctx.dispatch(enc, kernel, &[("params", &u), ("x", x), ("y", y), ("idx", idx)], s.output().len() as u64)
}

/// Records `net/maxpool2d_bwd`: `idx` (u32), `dy` (f32) -> `dx` (f32), one invocation per input.
pub fn maxpool2d_bwd_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &MaxPool2dShape,
    idx: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
) -> Result<(), GpuError> {
    check_u32(s);
    let u = ctx.uniform("maxpool2d_params", &s.params());
    ctx.dispatch(
        enc,
        &crate::shaders::NET_MAXPOOL2D_BWD,
        &[("params", &u), ("idx", idx), ("dy", dy), ("dx", dx)],
        s.input.len() as u64,
    )
}

/// Runs `net/maxpool2d_fwd` alone (test wrapper): returns `(y, idx)`.
#[cfg(feature = "testing")]
pub fn maxpool2d_fwd_gpu(ctx: &GpuContext, s: &MaxPool2dShape, x: &[f32]) -> crate::Result<(Vec<f32>, Vec<u32>)> {
    let n_out = s.output().len();
    check_len("maxpool2d x", x.len(), s.input.len());
    let xb = ctx.upload("maxpool2d x", x)?;
    let yb = ctx.upload("maxpool2d y", &vec![-12345.0f32; n_out])?;
    let ib = ctx.upload("maxpool2d idx", &vec![0xDEAD_BEEFu32; n_out])?;
    let mut enc = ctx.encoder("maxpool2d_fwd");
    maxpool2d_fwd_record(ctx, &mut enc, s, &xb, &yb, &ib)?;
    let ry = ctx.readback(&mut enc, &yb, n_out as u64 * 4);
    let ri = ctx.readback(&mut enc, &ib, n_out as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok((ry.read(ctx)?, ri.read(ctx)?))
}

/// Runs `net/maxpool2d_bwd` alone (test wrapper): returns `dx`.
#[cfg(feature = "testing")]
pub fn maxpool2d_bwd_gpu(ctx: &GpuContext, s: &MaxPool2dShape, idx: &[u32], dy: &[f32]) -> crate::Result<Vec<f32>> {
    let (n_in, n_out) = (s.input.len(), s.output().len());
    check_len("maxpool2d idx", idx.len(), n_out);
    check_len("maxpool2d dy", dy.len(), n_out);
    let ib = ctx.upload("maxpool2d idx", idx)?;
    let dyb = ctx.upload("maxpool2d dy", dy)?;
    let dxb = ctx.upload("maxpool2d dx", &vec![-12345.0f32; n_in])?;
    let mut enc = ctx.encoder("maxpool2d_bwd");
    maxpool2d_bwd_record(ctx, &mut enc, s, &ib, &dyb, &dxb)?;
    let rb = ctx.readback(&mut enc, &dxb, n_in as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_follow_pytorch() {
        let s = MaxPool2dShape::new(Shape4::new(2, 3, 40, 40), 2);
        assert_eq!(s.output(), Shape4::new(2, 3, 20, 20));
        let s = MaxPool2dShape::new(Shape4::new(1, 1, 7, 5), 2);
        assert_eq!(s.output(), Shape4::new(1, 1, 3, 2));
        let s = MaxPool2dShape::with_stride(Shape4::new(1, 1, 7, 8), 3, 2);
        // (7 - 3) / 2 + 1 = 3, (8 - 3) / 2 + 1 = 3
        assert_eq!(s.output(), Shape4::new(1, 1, 3, 3));
        let s = MaxPool2dShape::with_stride(Shape4::new(1, 1, 3, 3), 3, 5);
        assert_eq!(s.output(), Shape4::new(1, 1, 1, 1));
    }

    #[test]
    fn windows_containing_is_the_inverse_of_the_window_map() {
        for (k, stride, size) in [(2, 2, 7), (3, 2, 9), (3, 1, 6), (2, 3, 10), (1, 1, 4), (4, 4, 4)] {
            let s = MaxPool2dShape::with_stride(Shape4::new(1, 1, size, size), k, stride);
            let out = s.output().h;
            for i in 0..size {
                let expect: Vec<usize> = (0..out).filter(|&o| o * stride <= i && i < o * stride + k).collect();
                assert_eq!(s.windows_containing(i, out).collect::<Vec<_>>(), expect, "k {k} stride {stride} i {i}");
            }
        }
    }

    #[test]
    fn ties_pick_the_first_in_row_major_order() {
        let s = MaxPool2dShape::new(Shape4::new(1, 1, 2, 4), 2);
        #[rustfmt::skip]
        let x = [1.0, 5.0, 3.0, 3.0,
                 5.0, 2.0, 3.0, 3.0];
        let (mut y, mut idx) = ([0.0; 2], [0; 2]);
        maxpool2d_fwd_cpu(&s, &x, &mut y, &mut idx);
        assert_eq!(y, [5.0, 3.0]);
        assert_eq!(idx, [1, 2]);
        let mut dx = [9.0; 8];
        maxpool2d_bwd_cpu(&s, &idx, &[10.0, 20.0], &mut dx);
        assert_eq!(dx, [0.0, 10.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn overlapping_windows_add_their_gradients() {
        // k = 2, stride 1 on a 2x3 input: the windows at columns 0 and 1 share column 1.
        let s = MaxPool2dShape::with_stride(Shape4::new(1, 1, 2, 3), 2, 1);
        let x = [0.0, 9.0, 0.0, 1.0, 2.0, 3.0];
        let (mut y, mut idx) = ([0.0; 2], [0; 2]);
        maxpool2d_fwd_cpu(&s, &x, &mut y, &mut idx);
        assert_eq!((y, idx), ([9.0, 9.0], [1, 1]));
        let mut dx = [9.0; 6];
        maxpool2d_bwd_cpu(&s, &idx, &[1.5, 2.0], &mut dx);
        assert_eq!(dx, [0.0, 3.5, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    #[should_panic(expected = "larger than the input")]
    fn rejects_window_larger_than_input() {
        MaxPool2dShape::new(Shape4::new(1, 1, 2, 5), 3);
    }
}
