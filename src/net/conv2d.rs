//! 2-D convolution (PyTorch `nn.Conv2d`, cross-correlation, no dilation, groups = 1): forward and
//! backward. Twins of the kernels `conv2d_fwd`, `conv2d_bwd_input` and `conv2d_bwd_weight`.
//!
//! Shapes: input `[N, C_in, H, W]`, weight `[C_out, C_in, kh, kw]` (OIHW), bias `[C_out]`, output
//! `[N, C_out, OH, OW]` with `OH = (H + 2 pad - kh) / stride + 1` (floor), likewise `OW`. The input is
//! zero-padded by `pad` on all four sides.
//!
//! ```text
//! y[n, o, oy, ox] = b[o] + sum_{i, ky, kx} x[n, i, oy*stride + ky - pad, ox*stride + kx - pad] * w[o, i, ky, kx]
//! ```
//!
//! All three functions are written "one output element per thread" (gather form): the backward
//! passes loop over the terms that touch an element instead of scattering, so a kernel needs no
//! atomics.
//!
//! GPU side (`_record` for the training executor, `_gpu` test wrappers): register-blocked direct
//! convolutions in gather form, as the twins. `conv2d_fwd` runs one invocation per block of
//! [`CONV2D_FWD_PX`] output pixels of a row times [`CONV2D_FWD_OC_BLOCK`] output channels;
//! `conv2d_bwd_input` one per block of [`CONV2D_BWD_INPUT_PX`] input pixels of a row (and column
//! phase, for strides > 1) times [`CONV2D_BWD_INPUT_IB`] input channels; `conv2d_bwd_weight` is a
//! fixed-order two-stage reduction over the `N * OH * OW` rows: partial sums per (chunk of rows,
//! parameter) into a scratch buffer, one invocation per chunk and block of parameters, then
//! `reduce_chunks` adds the chunks in order ([`chunk_plan`]). Each dot product adds the twin's terms
//! as one recursive sum (in the twin's order except the kx order of strided forward convolutions;
//! multiply-adds fused); the batch sums are f32 on the GPU and f64 in the twin.

#[cfg(feature = "testing")]
use super::GARBAGE;
use super::precision::ActIo;
use super::reduce::{ChunkPlan, ReduceChunksParams, chunk_plan, chunk_scratch_len, reduce_chunks_record};
use super::{Shape4, check_buffer, check_buffer_bytes, check_len, to_u32};
use crate::gpu::{GpuContext, GpuError};
use crate::shaders::{
    NET_CONV2D_BWD_INPUT, NET_CONV2D_BWD_INPUT_IB4, NET_CONV2D_BWD_INPUT_WSTORAGE, NET_CONV2D_BWD_WEIGHT,
    NET_CONV2D_FWD, NET_CONV2D_FWD_F16, NET_CONV2D_FWD_WSTORAGE, NET_CONV2D_FWD_WSTORAGE_F16,
};
use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

/// Shape and hyper-parameters of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Input `[N, C_in, H, W]`.
    pub input: Shape4,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    /// Zero padding on each side (PyTorch's integer `padding`).
    pub pad: usize,
    /// Stride, >= 1, the same along both axes.
    pub stride: usize,
}

impl Conv2dShape {
    /// Panics unless `stride >= 1` and the (padded) input is at least as large as the kernel.
    pub fn new(input: Shape4, c_out: usize, kh: usize, kw: usize, pad: usize, stride: usize) -> Self {
        assert!(stride >= 1, "conv2d: stride must be >= 1");
        assert!(kh >= 1 && kw >= 1, "conv2d: empty kernel");
        assert!(
            kh <= input.h + 2 * pad && kw <= input.w + 2 * pad,
            "conv2d: kernel {kh}x{kw} larger than the padded input {}x{} (pad {pad})",
            input.h,
            input.w
        );
        Self { input, c_out, kh, kw, pad, stride }
    }

    pub fn out_h(&self) -> usize {
        (self.input.h + 2 * self.pad - self.kh) / self.stride + 1
    }

    pub fn out_w(&self) -> usize {
        (self.input.w + 2 * self.pad - self.kw) / self.stride + 1
    }

    /// Output `[N, C_out, OH, OW]`.
    pub fn output(&self) -> Shape4 {
        Shape4::new(self.input.n, self.c_out, self.out_h(), self.out_w())
    }

    /// Weight shape `[C_out, C_in, kh, kw]` as a [`Shape4`].
    pub fn weight(&self) -> Shape4 {
        Shape4::new(self.c_out, self.input.c, self.kh, self.kw)
    }

    /// `C_in * kh * kw`: the fan-in of one output element.
    pub fn fan_in(&self) -> usize {
        self.input.c * self.kh * self.kw
    }

    /// Input coordinate read by output coordinate `o` and kernel tap `k` (None in the padding).
    #[inline(always)]
    fn input_coord(&self, o: usize, k: usize, size: usize) -> Option<usize> {
        (o * self.stride + k).checked_sub(self.pad).filter(|&i| i < size)
    }

    /// Output coordinate that reads input coordinate `i` through kernel tap `k`, if any.
    #[inline(always)]
    fn output_coord(&self, i: usize, k: usize, out_size: usize) -> Option<usize> {
        let t = (i + self.pad).checked_sub(k)?;
        (t % self.stride == 0 && t / self.stride < out_size).then_some(t / self.stride)
    }
}

/// Forward: `y = conv(x, w) + b`. Writes all of `y`.
pub fn conv2d_fwd_cpu(s: &Conv2dShape, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    let (xs, ws, ys) = (s.input, s.weight(), s.output());
    check_len("conv2d x", x.len(), xs.len());
    check_len("conv2d w", w.len(), ws.len());
    check_len("conv2d b", b.len(), s.c_out);
    check_len("conv2d y", y.len(), ys.len());
    if ys.is_empty() {
        return;
    }
    y.par_chunks_mut(ys.plane()).enumerate().for_each(|(plane, out)| {
        let (n, o) = (plane / ys.c, plane % ys.c);
        for oy in 0..ys.h {
            for ox in 0..ys.w {
                let mut acc = b[o];
                for i in 0..xs.c {
                    for ky in 0..s.kh {
                        let Some(iy) = s.input_coord(oy, ky, xs.h) else { continue };
                        for kx in 0..s.kw {
                            let Some(ix) = s.input_coord(ox, kx, xs.w) else { continue };
                            acc += x[xs.index(n, i, iy, ix)] * w[ws.index(o, i, ky, kx)];
                        }
                    }
                }
                out[oy * ys.w + ox] = acc;
            }
        }
    });
}

/// Backward to the input: `dx[n, i, iy, ix] = sum over (o, ky, kx) of dy[n, o, oy, ox] * w[o, i, ky, kx]`
/// for every output position `(oy, ox)` whose window reads `(iy, ix)` through tap `(ky, kx)`.
/// Input pixels no window reads (the floor-mode remainder) get 0. Writes all of `dx`.
pub fn conv2d_bwd_input_cpu(s: &Conv2dShape, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (xs, ws, ys) = (s.input, s.weight(), s.output());
    check_len("conv2d w", w.len(), ws.len());
    check_len("conv2d dy", dy.len(), ys.len());
    check_len("conv2d dx", dx.len(), xs.len());
    if xs.is_empty() {
        return;
    }
    dx.par_chunks_mut(xs.plane()).enumerate().for_each(|(plane, out)| {
        let (n, i) = (plane / xs.c, plane % xs.c);
        for iy in 0..xs.h {
            for ix in 0..xs.w {
                let mut acc = 0.0f32;
                for o in 0..s.c_out {
                    for ky in 0..s.kh {
                        let Some(oy) = s.output_coord(iy, ky, ys.h) else { continue };
                        for kx in 0..s.kw {
                            let Some(ox) = s.output_coord(ix, kx, ys.w) else { continue };
                            acc += dy[ys.index(n, o, oy, ox)] * w[ws.index(o, i, ky, kx)];
                        }
                    }
                }
                out[iy * xs.w + ix] = acc;
            }
        }
    });
}

/// Backward to the parameters: `dw[o, i, ky, kx] = sum over (n, oy, ox) of dy[n, o, oy, ox] * x[n, i, iy, ix]`
/// (padding contributes nothing) and `db[o] = sum over (n, oy, ox) of dy[n, o, oy, ox]`, both
/// accumulated in f64. Writes all of `dw` and `db`.
pub fn conv2d_bwd_weight_cpu(s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    let (xs, ws, ys) = (s.input, s.weight(), s.output());
    check_len("conv2d x", x.len(), xs.len());
    check_len("conv2d dy", dy.len(), ys.len());
    check_len("conv2d dw", dw.len(), ws.len());
    check_len("conv2d db", db.len(), s.c_out);
    if !ws.is_empty() {
        dw.par_chunks_mut(s.kh * s.kw).enumerate().for_each(|(oi, taps)| {
            let (o, i) = (oi / xs.c, oi % xs.c);
            for ky in 0..s.kh {
                for kx in 0..s.kw {
                    let mut acc = 0.0f64;
                    for n in 0..xs.n {
                        for oy in 0..ys.h {
                            let Some(iy) = s.input_coord(oy, ky, xs.h) else { continue };
                            for ox in 0..ys.w {
                                let Some(ix) = s.input_coord(ox, kx, xs.w) else { continue };
                                acc += dy[ys.index(n, o, oy, ox)] as f64 * x[xs.index(n, i, iy, ix)] as f64;
                            }
                        }
                    }
                    taps[ky * s.kw + kx] = acc as f32;
                }
            }
        });
    }
    db.par_iter_mut().enumerate().for_each(|(o, db)| {
        let mut acc = 0.0f64;
        for n in 0..ys.n {
            let start = ys.index(n, o, 0, 0);
            acc += dy[start..start + ys.plane()].iter().map(|&v| v as f64).sum::<f64>();
        }
        *db = acc as f32;
    });
}

/// Both backward passes: `(dx, dw, db)`.
pub fn conv2d_bwd_cpu(s: &Conv2dShape, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0.0; s.input.len()];
    let mut dw = vec![0.0; s.weight().len()];
    let mut db = vec![0.0; s.c_out];
    conv2d_bwd_input_cpu(s, w, dy, &mut dx);
    conv2d_bwd_weight_cpu(s, x, dy, &mut dw, &mut db);
    (dx, dw, db)
}

// ---------------------------------------------------------------------------------------------
// GPU side: kernels net/conv2d_fwd, net/conv2d_bwd_input, net/conv2d_bwd_weight (+ net/reduce_chunks).
//
// All three are register-blocked direct convolutions (the headers of the .wgsl files give the
// details): an invocation computes a block of outputs in registers, so that each activation it
// loads feeds many multiply-adds. Activation loads are what these kernels spend their time on (on
// lavapipe a storage-buffer load costs about as much as 50 fused multiply-adds), so the blocks are
// chosen to load each value as few times as possible. conv2d_fwd and conv2d_bwd_input read the
// weights through a 64 KiB uniform buffer (recorded copies of `w`, and of `b` for the forward)
// when they fit ([`conv2d_weights_in_uniform`]): every invocation of a workgroup reads the same
// weight at the same time, a broadcast on GPUs and a cheap load on lavapipe; larger weights use
// the `_wstorage` variants of the same kernels.

/// Output channels that one `conv2d_fwd` invocation computes (keep in sync with `OB` in
/// shaders/net/conv2d_fwd.wgsl).
pub const CONV2D_FWD_OC_BLOCK: usize = 16;
/// Neighbouring output pixels of one row that one `conv2d_fwd` invocation computes (`PX` in
/// shaders/net/conv2d_fwd.wgsl).
pub const CONV2D_FWD_PX: usize = 5;
/// Input pixels (of one row and column phase) that one `conv2d_bwd_input` invocation computes
/// (`PX` in shaders/net/conv2d_bwd_input.wgsl).
pub const CONV2D_BWD_INPUT_PX: usize = 5;
/// Input channels per `conv2d_bwd_input` invocation (`4 * IQ` of shaders/net/conv2d_ib16.wgsl).
pub const CONV2D_BWD_INPUT_IB: usize = 16;
/// Input channels per `conv2d_bwd_input_ib4` invocation (shaders/net/conv2d_ib4.wgsl), the variant
/// for `C_in <= 4`.
pub const CONV2D_BWD_INPUT_IB_NARROW: usize = 4;
/// Output channels per `conv2d_bwd_weight` invocation (`OB` in shaders/net/conv2d_bwd_weight.wgsl).
pub const CONV2D_BWD_WEIGHT_OC_BLOCK: usize = 16;
/// Kernel rows `(i, ky)` per `conv2d_bwd_weight` invocation (`KR`).
pub const CONV2D_BWD_WEIGHT_ROWS: usize = 4;
/// Kernel columns `kx` per `conv2d_bwd_weight` invocation (`KC`).
pub const CONV2D_BWD_WEIGHT_COLS: usize = 4;
/// f32 that the uniform weight binding holds (`array<vec4<f32>, 4096>` in
/// shaders/net/conv2d_w_uniform.wgsl: 64 KiB).
pub const CONV2D_UNIFORM_WEIGHTS: usize = 16384;
const UNIFORM_WEIGHT_BYTES: u64 = CONV2D_UNIFORM_WEIGHTS as u64 * 4;

/// Uniform of the three conv2d kernels. Mirrors `Conv2dParams` in
/// shaders/net/conv2d_common.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Conv2dParams {
    pub n: u32,
    pub c_in: u32,
    pub h: u32,
    pub w: u32,
    pub c_out: u32,
    pub kh: u32,
    pub kw: u32,
    pub pad: u32,
    pub stride: u32,
    pub out_h: u32,
    pub out_w: u32,
    /// Channel blocks: `ceil(C_out / block)` (conv2d_fwd, conv2d_bwd_weight) or `ceil(C_in /
    /// block)` (conv2d_bwd_input).
    pub n_ch_blocks: u32,
    /// Rows `(n, oy, ox)` per partial sum (conv2d_bwd_weight).
    pub chunk_rows: u32,
    /// Number of partial sums per parameter (conv2d_bwd_weight).
    pub n_chunks: u32,
    /// Workgroups per channel block (conv2d_fwd, conv2d_bwd_input).
    pub blk_groups: u32,
    /// Pixel groups per row: `ceil(out_w / CONV2D_FWD_PX)` (conv2d_fwd) or `ceil(ceil(W /
    /// stride) / CONV2D_BWD_INPUT_PX)` per column phase (conv2d_bwd_input).
    pub x_groups: u32,
}
const _: () = assert!(std::mem::size_of::<Conv2dParams>() == 64);

impl Conv2dParams {
    /// The shape of `s` and the chunking of conv2d_bwd_weight ([`conv2d_bwd_weight_plan`]); the
    /// block fields are 0 (each kernel's record function sets its own). Panics if a tensor of `s`
    /// has more than `u32::MAX` elements (the kernels index with u32).
    pub fn new(s: &Conv2dShape) -> Self {
        let (xs, ys) = (s.input, s.output());
        for (name, len) in [("x", xs.len()), ("y", ys.len()), ("w", s.weight().len())] {
            to_u32(&format!("conv2d {name} length"), len);
        }
        let plan = conv2d_bwd_weight_plan(s);
        Self {
            n: xs.n as u32,
            c_in: xs.c as u32,
            h: xs.h as u32,
            w: xs.w as u32,
            c_out: s.c_out as u32,
            kh: s.kh as u32,
            kw: s.kw as u32,
            pad: to_u32("conv2d pad", s.pad),
            stride: to_u32("conv2d stride", s.stride),
            out_h: ys.h as u32,
            out_w: ys.w as u32,
            n_ch_blocks: 0,
            chunk_rows: to_u32("conv2d chunk rows", plan.chunk_rows),
            n_chunks: to_u32("conv2d chunks", plan.n_chunks),
            blk_groups: 0,
            x_groups: 0,
        }
    }

    /// Sets the grid of a kernel whose workgroups each serve one of `n_blocks` channel blocks, with
    /// `per_block` invocations per block; returns the invocations to dispatch.
    fn blocked(&mut self, n_blocks: usize, per_block: usize) -> u64 {
        let groups = per_block.div_ceil(CONV2D_WG as usize);
        self.n_ch_blocks = to_u32("conv2d channel blocks", n_blocks);
        self.blk_groups = to_u32("conv2d workgroups per block", groups);
        to_u32("conv2d invocations per block", groups * CONV2D_WG as usize);
        n_blocks as u64 * groups as u64 * CONV2D_WG as u64
    }
}

/// Workgroup size of the three conv2d kernels (`WG` in their .wgsl files).
const CONV2D_WG: u32 = 64;

/// Whether [`conv2d_fwd_record`] / [`conv2d_bwd_input_record`] read `len` f32 of weights (and
/// bias) through the 64 KiB uniform buffer (else through a storage buffer, the `_wstorage`
/// kernels).
pub fn conv2d_weights_in_uniform(ctx: &GpuContext, len: usize) -> bool {
    len <= CONV2D_UNIFORM_WEIGHTS && ctx.limits.max_uniform_buffer_binding_size >= UNIFORM_WEIGHT_BYTES
}

/// Records copies of the first `w_len` f32 of `w`, then the first `b_len` of `b`, into a new
/// buffer for the kernels' `wt(k)`: the 64 KiB uniform buffer, or a storage buffer when they do
/// not fit ([`conv2d_weights_in_uniform`]). Returns the buffer and whether it is the uniform one.
fn conv2d_weights(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    w: &wgpu::Buffer,
    w_len: usize,
    b: Option<(&wgpu::Buffer, usize)>,
) -> Result<(wgpu::Buffer, bool), GpuError> {
    let b_len = b.map_or(0, |(_, len)| len);
    let uniform = conv2d_weights_in_uniform(ctx, w_len + b_len);
    let buf = if uniform {
        // The binding's full 64 KiB (the size the WGSL declares); the copies below fill its start.
        static ZEROS: [f32; CONV2D_UNIFORM_WEIGHTS] = [0.0; CONV2D_UNIFORM_WEIGHTS];
        ctx.uniform("conv2d weights (uniform)", &ZEROS)
    } else {
        ctx.storage("conv2d weights", (w_len + b_len) as u64 * 4)?
    };
    if w_len > 0 {
        enc.copy_buffer_to_buffer(w, 0, &buf, 0, w_len as u64 * 4);
    }
    if let Some((b, _)) = b.filter(|&(_, len)| len > 0) {
        enc.copy_buffer_to_buffer(b, 0, &buf, w_len as u64 * 4, b_len as u64 * 4);
    }
    Ok((buf, uniform))
}

/// Parameters of the weight gradient: `dw` then `db`, `C_out * C_in * kh * kw + C_out`.
fn conv2d_n_params(s: &Conv2dShape) -> usize {
    s.weight().len() + s.c_out
}

/// How `conv2d_bwd_weight` splits its `N * OH * OW` rows into chunks.
pub fn conv2d_bwd_weight_plan(s: &Conv2dShape) -> ChunkPlan {
    let ys = s.output();
    chunk_plan(ys.n * ys.h * ys.w, conv2d_n_params(s))
}

/// f32 elements of the scratch buffer `conv2d_bwd_weight_record` needs (0 for an empty batch: then
/// pass any buffer of at least 4 bytes). Never decreases with the batch size, so a scratch sized for
/// the largest batch serves every smaller one ([`chunk_scratch_len`]).
pub fn conv2d_bwd_weight_scratch_len(s: &Conv2dShape) -> usize {
    let ys = s.output();
    chunk_scratch_len(ys.n * ys.h * ys.w, conv2d_n_params(s))
}

/// Records `conv2d_fwd`: `y = conv(x, w) + b` (all of `y` written). One invocation per block of
/// [`CONV2D_FWD_PX`] output pixels of a row and [`CONV2D_FWD_OC_BLOCK`] output channels. `w` and
/// `b` are copied (recorded) into the kernel's weight buffer, so they need `COPY_SRC` usage, as
/// every buffer of [`GpuContext::storage`] and [`GpuContext::upload`] has.
pub fn conv2d_fwd_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &Conv2dShape,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<(), GpuError> {
    conv2d_fwd_record_io(ctx, enc, s, ActIo::F32, x, w, b, y)
}

/// [`conv2d_fwd_record`] with `x` / `y` stored as `io` says (f16 or f32; see
/// [`super::precision`]).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_fwd_record_io(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &Conv2dShape,
    io: ActIo,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<(), GpuError> {
    check_buffer_bytes("conv2d x", x, io.x_bytes(s.input.len()));
    check_buffer("conv2d w", w, s.weight().len());
    check_buffer("conv2d b", b, s.c_out);
    check_buffer_bytes("conv2d y", y, io.y_bytes(s.output().len()));
    if s.output().is_empty() {
        return Ok(());
    }
    let mut p = Conv2dParams::new(s);
    let ys = s.output();
    p.x_groups = to_u32("conv2d_fwd pixel groups", ys.w.div_ceil(CONV2D_FWD_PX));
    let threads = p.blocked(s.c_out.div_ceil(CONV2D_FWD_OC_BLOCK), ys.n * ys.h * p.x_groups as usize);
    let (wts, uniform) = conv2d_weights(ctx, enc, w, s.weight().len(), Some((b, s.c_out)))?;
    let kernel = if uniform {
        io.pick(&NET_CONV2D_FWD, &NET_CONV2D_FWD_F16)
    } else {
        io.pick(&NET_CONV2D_FWD_WSTORAGE, &NET_CONV2D_FWD_WSTORAGE_F16)
    };
    let u = ctx.uniform("conv2d_fwd_params", &p);
    ctx.dispatch(enc, kernel, &[("params", &u), ("x", x), ("wts", &wts), ("y", y)], threads)
}

/// Records `conv2d_bwd_input`: `dx` from `w` and `dy` (all of `dx` written). One invocation per
/// block of [`CONV2D_BWD_INPUT_PX`] input pixels (of a row and column phase) and
/// [`CONV2D_BWD_INPUT_IB`] input channels ([`CONV2D_BWD_INPUT_IB_NARROW`] when `C_in <= 4`). `w`
/// is copied (recorded) into the kernel's weight buffer, so it needs `COPY_SRC` usage.
pub fn conv2d_bwd_input_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &Conv2dShape,
    w: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
) -> Result<(), GpuError> {
    check_buffer("conv2d w", w, s.weight().len());
    check_buffer("conv2d dy", dy, s.output().len());
    check_buffer("conv2d dx", dx, s.input.len());
    let xs = s.input;
    if xs.is_empty() {
        return Ok(());
    }
    let (wts, uniform) = conv2d_weights(ctx, enc, w, s.weight().len(), None)?;
    let narrow = uniform && xs.c <= CONV2D_BWD_INPUT_IB_NARROW;
    let (kernel, ib) = match (uniform, narrow) {
        (true, true) => (&NET_CONV2D_BWD_INPUT_IB4, CONV2D_BWD_INPUT_IB_NARROW),
        (true, false) => (&NET_CONV2D_BWD_INPUT, CONV2D_BWD_INPUT_IB),
        (false, _) => (&NET_CONV2D_BWD_INPUT_WSTORAGE, CONV2D_BWD_INPUT_IB),
    };
    let mut p = Conv2dParams::new(s);
    p.x_groups = to_u32("conv2d_bwd_input pixel groups", xs.w.div_ceil(s.stride).div_ceil(CONV2D_BWD_INPUT_PX));
    let threads = p.blocked(xs.c.div_ceil(ib), xs.n * xs.h * s.stride * p.x_groups as usize);
    let u = ctx.uniform("conv2d_bwd_input_params", &p);
    ctx.dispatch(enc, kernel, &[("params", &u), ("dy", dy), ("wts", &wts), ("dx", dx)], threads)
}

/// Records `conv2d_bwd_weight` (partial sums per chunk of rows into `scratch`, at least
/// [`conv2d_bwd_weight_scratch_len`] f32) and `reduce_chunks` (the chunks added in order into `dw`
/// and `db`). All of `dw` and `db` written, zeros for an empty batch. Stage 1 runs one invocation
/// per chunk and block of [`CONV2D_BWD_WEIGHT_OC_BLOCK`] output channels x
/// [`CONV2D_BWD_WEIGHT_ROWS`] kernel rows x [`CONV2D_BWD_WEIGHT_COLS`] kernel columns.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_bwd_weight_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &Conv2dShape,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dw: &wgpu::Buffer,
    db: &wgpu::Buffer,
    scratch: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let n_params = conv2d_n_params(s);
    check_buffer("conv2d x", x, s.input.len());
    check_buffer("conv2d dy", dy, s.output().len());
    check_buffer("conv2d dw", dw, s.weight().len());
    check_buffer("conv2d db", db, s.c_out);
    check_buffer("conv2d_bwd_weight scratch", scratch, conv2d_bwd_weight_scratch_len(s));
    let mut p = Conv2dParams::new(s);
    let n_ob = s.c_out.div_ceil(CONV2D_BWD_WEIGHT_OC_BLOCK);
    p.n_ch_blocks = to_u32("conv2d_bwd_weight channel blocks", n_ob);
    let n_blocks = n_ob * (s.input.c * s.kh).div_ceil(CONV2D_BWD_WEIGHT_ROWS) * s.kw.div_ceil(CONV2D_BWD_WEIGHT_COLS);
    let threads = p.n_chunks as u64 * n_blocks as u64;
    to_u32("conv2d_bwd_weight invocations", threads as usize);
    let u = ctx.uniform("conv2d_bwd_weight_params", &p);
    ctx.dispatch(enc, &NET_CONV2D_BWD_WEIGHT, &[("params", &u), ("x", x), ("dy", dy), ("partials", scratch)], threads)?;
    let r = ReduceChunksParams {
        n_params: to_u32("conv2d parameters", n_params),
        n_chunks: p.n_chunks,
        n_split: to_u32("conv2d dw length", s.weight().len()),
        _pad0: 0,
    };
    reduce_chunks_record(ctx, enc, &r, scratch, dw, db)
}

/// Runs `conv2d_fwd` alone on the GPU (test wrapper; `y` pre-filled with garbage).
#[cfg(feature = "testing")]
pub fn conv2d_fwd_gpu(ctx: &GpuContext, s: &Conv2dShape, x: &[f32], w: &[f32], b: &[f32]) -> crate::Result<Vec<f32>> {
    check_len("conv2d x", x.len(), s.input.len());
    check_len("conv2d w", w.len(), s.weight().len());
    check_len("conv2d b", b.len(), s.c_out);
    let ny = s.output().len();
    let (xb, wb, bb) = (ctx.upload("x", x)?, ctx.upload("w", w)?, ctx.upload("b", b)?);
    let yb = ctx.upload("y", &vec![GARBAGE; ny])?;
    let mut enc = ctx.encoder("conv2d_fwd");
    conv2d_fwd_record(ctx, &mut enc, s, &xb, &wb, &bb, &yb)?;
    let rb = ctx.readback(&mut enc, &yb, ny as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

/// Runs `conv2d_bwd_input` alone on the GPU (test wrapper; `dx` pre-filled with garbage).
#[cfg(feature = "testing")]
pub fn conv2d_bwd_input_gpu(ctx: &GpuContext, s: &Conv2dShape, w: &[f32], dy: &[f32]) -> crate::Result<Vec<f32>> {
    check_len("conv2d w", w.len(), s.weight().len());
    check_len("conv2d dy", dy.len(), s.output().len());
    let nx = s.input.len();
    let (wb, dyb) = (ctx.upload("w", w)?, ctx.upload("dy", dy)?);
    let dxb = ctx.upload("dx", &vec![GARBAGE; nx])?;
    let mut enc = ctx.encoder("conv2d_bwd_input");
    conv2d_bwd_input_record(ctx, &mut enc, s, &wb, &dyb, &dxb)?;
    let rb = ctx.readback(&mut enc, &dxb, nx as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

/// Runs `conv2d_bwd_weight` + `reduce_chunks` on the GPU: `(dw, db)` (test wrapper; `dw`, `db`
/// and the scratch pre-filled with garbage).
#[cfg(feature = "testing")]
pub fn conv2d_bwd_weight_gpu(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
) -> crate::Result<(Vec<f32>, Vec<f32>)> {
    check_len("conv2d x", x.len(), s.input.len());
    check_len("conv2d dy", dy.len(), s.output().len());
    let (nw, nb) = (s.weight().len(), s.c_out);
    let (xb, dyb) = (ctx.upload("x", x)?, ctx.upload("dy", dy)?);
    let dwb = ctx.upload("dw", &vec![GARBAGE; nw])?;
    let dbb = ctx.upload("db", &vec![GARBAGE; nb])?;
    let scratch = ctx.upload("scratch", &vec![GARBAGE; conv2d_bwd_weight_scratch_len(s)])?;
    let mut enc = ctx.encoder("conv2d_bwd_weight");
    conv2d_bwd_weight_record(ctx, &mut enc, s, &xb, &dyb, &dwb, &dbb, &scratch)?;
    let rw = ctx.readback(&mut enc, &dwb, nw as u64 * 4);
    let rbias = ctx.readback(&mut enc, &dbb, nb as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok((rw.read(ctx)?, rbias.read(ctx)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::reduce::{REDUCE_MIN_CHUNK_ROWS, REDUCE_TARGET_PARTIALS, reduce_chunks_cpu};

    #[test]
    fn output_sizes_follow_pytorch() {
        let s = Conv2dShape::new(Shape4::new(1, 1, 41, 41), 16, 4, 4, 1, 1);
        assert_eq!((s.out_h(), s.out_w()), (40, 40));
        let s = Conv2dShape::new(Shape4::new(1, 1, 7, 8), 1, 3, 2, 1, 2);
        // (7 + 2 - 3) / 2 + 1 = 4, (8 + 2 - 2) / 2 + 1 = 5
        assert_eq!((s.out_h(), s.out_w()), (4, 5));
        let s = Conv2dShape::new(Shape4::new(1, 1, 2, 2), 1, 4, 4, 1, 3);
        assert_eq!((s.out_h(), s.out_w()), (1, 1));
    }

    #[test]
    fn coordinate_maps_are_inverse() {
        for (pad, stride, k) in [(0, 1, 3), (1, 2, 3), (2, 2, 4), (1, 3, 2)] {
            let s = Conv2dShape::new(Shape4::new(1, 1, 9, 9), 1, k, k, pad, stride);
            for o in 0..s.out_h() {
                for t in 0..k {
                    if let Some(i) = s.input_coord(o, t, 9) {
                        assert_eq!(s.output_coord(i, t, s.out_h()), Some(o));
                    }
                }
            }
            let pairs_fwd = (0..s.out_h()).flat_map(|o| (0..k).filter_map(move |t| s.input_coord(o, t, 9))).count();
            let pairs_bwd = (0..9).flat_map(|i| (0..k).filter_map(move |t| s.output_coord(i, t, s.out_h()))).count();
            assert_eq!(pairs_fwd, pairs_bwd, "pad {pad} stride {stride} k {k}");
        }
    }

    #[test]
    fn chunk_plans_of_the_seed_network() {
        let plan =
            |n, c, hw, o, k, pad| conv2d_bwd_weight_plan(&Conv2dShape::new(Shape4::new(n, c, hw, hw), o, k, k, pad, 1));
        assert_eq!(plan(1000, 1, 41, 16, 4, 1), ChunkPlan { chunk_rows: 1662, n_chunks: 963 });
        assert_eq!(plan(1000, 16, 10, 32, 3, 1), ChunkPlan { chunk_rows: 1786, n_chunks: 56 });
        // conv 32 -> 64 k2 on 3x3: 8256 parameters, 4000 rows.
        assert_eq!(plan(1000, 32, 3, 64, 2, 0), ChunkPlan { chunk_rows: 130, n_chunks: 31 });
        assert_eq!(plan(0, 32, 3, 64, 2, 0).n_chunks, 0);
        // Small layers: chunks of the minimum size; huge layers: one chunk.
        assert_eq!(chunk_plan(100, 10), ChunkPlan { chunk_rows: REDUCE_MIN_CHUNK_ROWS, n_chunks: 4 });
        assert_eq!(chunk_plan(1000, 64 * 7056 + 7056), ChunkPlan { chunk_rows: 1000, n_chunks: 1 });
        for (rows, params) in [(1, 1), (31, 5), (33, 5), (12345, 77), (1 << 20, 3), (999, 1 << 19)] {
            let p = chunk_plan(rows, params);
            assert!(p.n_chunks * p.chunk_rows >= rows && (p.n_chunks - 1) * p.chunk_rows < rows, "{rows} {params}");
            assert!(p.n_chunks * params <= chunk_scratch_len(rows, params), "{rows} {params}");
            assert!(chunk_scratch_len(rows, params) <= REDUCE_TARGET_PARTIALS.max(params), "{rows} {params}");
        }
    }

    #[test]
    fn scratch_covers_the_plan_and_grows_with_the_rows() {
        for n_params in [1, 7, 56, 272, 4640, 6553, 8256, 300_000] {
            let mut prev = 0;
            for rows in (0..5000).chain((5000..2_000_000).step_by(997)) {
                let (plan, len) = (chunk_plan(rows, n_params), chunk_scratch_len(rows, n_params));
                assert!(plan.n_chunks * n_params <= len, "rows {rows} params {n_params}: {plan:?} > {len}");
                assert!(plan.n_chunks * plan.chunk_rows >= rows, "rows {rows} params {n_params}: {plan:?}");
                assert!(len >= prev, "rows {rows} params {n_params}: scratch {len} < {prev} for fewer rows");
                prev = len;
            }
        }
        // The example in chunk_scratch_len's doc: n_chunks drops, the scratch does not.
        let n_params = REDUCE_TARGET_PARTIALS / 40;
        assert_eq!((chunk_plan(1280, n_params).n_chunks, chunk_plan(1281, n_params).n_chunks), (40, 39));
        assert_eq!(chunk_scratch_len(1281, n_params), 40 * n_params);
    }

    #[test]
    fn reduce_chunks_twin_splits_and_sums_in_order() {
        let p = ReduceChunksParams { n_params: 3, n_chunks: 2, n_split: 2, _pad0: 0 };
        let (mut a, mut b) = (vec![-12345.0; 2], vec![-12345.0; 1]);
        reduce_chunks_cpu(&p, &[1.0, 2.0, 3.0, 10.0, 20.0, 30.0], &mut a, &mut b);
        assert_eq!((a, b), (vec![11.0, 22.0], vec![33.0]));
    }

    /// A `const NAME: u32` of a kernel's source, as naga evaluates it.
    fn wgsl_const(k: &crate::shaders::Kernel, name: &str) -> u32 {
        let module = naga::front::wgsl::parse_str(k.source).unwrap_or_else(|e| panic!("{}: {e}", k.name));
        let (_, c) = module
            .constants
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{}: no const {name}", k.name));
        match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => v,
            ref e => panic!("{}: const {name} = {e:?}, not a u32 literal", k.name),
        }
    }

    /// The block sizes the host dispatches by are the kernels' own, and the uniform weight
    /// binding holds CONV2D_UNIFORM_WEIGHTS f32.
    #[test]
    fn block_sizes_match_the_kernels() {
        use crate::shaders::*;
        for k in [NET_CONV2D_FWD, NET_CONV2D_FWD_WSTORAGE] {
            assert_eq!(wgsl_const(&k, "OB") as usize, CONV2D_FWD_OC_BLOCK, "{}", k.name);
            assert_eq!(wgsl_const(&k, "PX") as usize, CONV2D_FWD_PX, "{}", k.name);
        }
        for (k, ib) in [
            (NET_CONV2D_BWD_INPUT, CONV2D_BWD_INPUT_IB),
            (NET_CONV2D_BWD_INPUT_WSTORAGE, CONV2D_BWD_INPUT_IB),
            (NET_CONV2D_BWD_INPUT_IB4, CONV2D_BWD_INPUT_IB_NARROW),
        ] {
            assert_eq!(wgsl_const(&k, "PX") as usize, CONV2D_BWD_INPUT_PX, "{}", k.name);
            assert_eq!(4 * wgsl_const(&k, "IQ") as usize, ib, "{}", k.name);
        }
        let k = NET_CONV2D_BWD_WEIGHT;
        assert_eq!(wgsl_const(&k, "OB") as usize, CONV2D_BWD_WEIGHT_OC_BLOCK);
        assert_eq!(wgsl_const(&k, "KR") as usize, CONV2D_BWD_WEIGHT_ROWS);
        assert_eq!(wgsl_const(&k, "KC") as usize, CONV2D_BWD_WEIGHT_COLS);
        let all = [
            NET_CONV2D_FWD,
            NET_CONV2D_FWD_WSTORAGE,
            NET_CONV2D_BWD_INPUT,
            NET_CONV2D_BWD_INPUT_IB4,
            NET_CONV2D_BWD_INPUT_WSTORAGE,
            NET_CONV2D_BWD_WEIGHT,
        ];
        for k in all {
            assert_eq!(wgsl_const(&k, "WG"), CONV2D_WG, "{}", k.name);
            assert_eq!(k.workgroup_size, CONV2D_WG, "{}", k.name);
        }
        for k in [NET_CONV2D_FWD, NET_CONV2D_BWD_INPUT, NET_CONV2D_BWD_INPUT_IB4] {
            let module = naga::front::wgsl::parse_str(k.source).unwrap();
            let (_, var) = module.global_variables.iter().find(|(_, v)| v.name.as_deref() == Some("wts")).unwrap();
            assert_eq!(var.space, naga::AddressSpace::Uniform, "{}", k.name);
            let mut layouter = naga::proc::Layouter::default();
            layouter.update(module.to_ctx()).unwrap();
            assert_eq!(layouter[var.ty].size as u64, UNIFORM_WEIGHT_BYTES, "{}", k.name);
        }
    }

    #[test]
    #[should_panic(expected = "larger than the padded input")]
    fn rejects_kernel_larger_than_input() {
        Conv2dShape::new(Shape4::new(1, 1, 2, 2), 1, 5, 5, 1, 1);
    }
}
