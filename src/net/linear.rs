//! Fully connected layer (PyTorch `nn.Linear`): forward and backward, CPU twins and GPU kernels
//! `net/linear_fwd`, `net/linear_bwd_input`, `net/linear_bwd_weight` (+ `net/reduce_chunks`).
//!
//! Shapes: input `[N, in_f]`, weight `[out_f, in_f]` (row-major, PyTorch's layout), bias `[out_f]`,
//! output `[N, out_f]`.
//!
//! ```text
//! y[n, o]  = b[o] + sum_i x[n, i] * w[o, i]
//! dx[n, i] = sum_o dy[n, o] * w[o, i]
//! dw[o, i] = sum_n dy[n, o] * x[n, i]      db[o] = sum_n dy[n, o]
//! ```
//!
//! The dot products add in f32 in a fixed order (bias first, then `i`; `o` ascending), the batch
//! sums in f64 (twins) or in a fixed-order two-stage f32 reduction (GPU, see
//! [`super::reduce::chunk_plan`]).

#[cfg(feature = "testing")]
use super::GARBAGE;
use super::check_len;
use super::precision::ActIo;
use super::reduce::{ChunkPlan, ReduceChunksParams, chunk_plan, chunk_scratch_len, reduce_chunks_record};
use super::{check_buffer, check_buffer_bytes, to_u32};
use crate::gpu::{GpuContext, GpuError};
use crate::shaders::{NET_LINEAR_BWD_INPUT, NET_LINEAR_BWD_WEIGHT, NET_LINEAR_FWD, NET_LINEAR_FWD_F16};
use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

/// Batch size and feature counts of one linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearShape {
    pub n: usize,
    pub in_f: usize,
    pub out_f: usize,
}

impl LinearShape {
    pub const fn new(n: usize, in_f: usize, out_f: usize) -> Self {
        Self { n, in_f, out_f }
    }

    /// Elements of the weight, `out_f * in_f`.
    pub const fn weight_len(&self) -> usize {
        self.out_f * self.in_f
    }

    /// Parameters of the layer (weight and bias), `out_f * in_f + out_f`.
    pub const fn n_params(&self) -> usize {
        self.weight_len() + self.out_f
    }
}

/// Forward: `y = x w^T + b`. Writes all of `y`.
pub fn linear_fwd_cpu(s: &LinearShape, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    check_len("linear x", x.len(), s.n * s.in_f);
    check_len("linear w", w.len(), s.weight_len());
    check_len("linear b", b.len(), s.out_f);
    check_len("linear y", y.len(), s.n * s.out_f);
    if y.is_empty() {
        return;
    }
    y.par_chunks_mut(s.out_f).enumerate().for_each(|(n, yr)| {
        let xr = &x[n * s.in_f..(n + 1) * s.in_f];
        for (o, yo) in yr.iter_mut().enumerate() {
            let wr = &w[o * s.in_f..(o + 1) * s.in_f];
            let mut acc = b[o];
            for (xi, wi) in xr.iter().zip(wr) {
                acc += xi * wi;
            }
            *yo = acc;
        }
    });
}

/// Forward followed by a ReLU: `y = max(x w^T + b, 0)`, the twin of `linear_fwd` with
/// [`LinearParams::relu`] set (inference fuses a linear layer with the ReLU after it).
pub fn linear_relu_fwd_cpu(s: &LinearShape, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    linear_fwd_cpu(s, x, w, b, y);
    for v in y.iter_mut() {
        *v = v.max(0.0);
    }
}

/// Backward to the input: `dx = dy w`. Writes all of `dx`.
pub fn linear_bwd_input_cpu(s: &LinearShape, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    check_len("linear w", w.len(), s.weight_len());
    check_len("linear dy", dy.len(), s.n * s.out_f);
    check_len("linear dx", dx.len(), s.n * s.in_f);
    if dx.is_empty() {
        return;
    }
    dx.par_chunks_mut(s.in_f).enumerate().for_each(|(n, dxr)| {
        let dyr = &dy[n * s.out_f..(n + 1) * s.out_f];
        for (i, dxi) in dxr.iter_mut().enumerate() {
            let mut acc = 0.0f32;
            for (o, g) in dyr.iter().enumerate() {
                acc += g * w[o * s.in_f + i];
            }
            *dxi = acc;
        }
    });
}

/// Backward to the parameters: `dw[o, i] = sum_n dy[n, o] x[n, i]`, `db[o] = sum_n dy[n, o]`, both
/// accumulated in f64. Writes all of `dw` and `db` (zeros for an empty batch).
pub fn linear_bwd_weight_cpu(s: &LinearShape, x: &[f32], dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    check_len("linear x", x.len(), s.n * s.in_f);
    check_len("linear dy", dy.len(), s.n * s.out_f);
    check_len("linear dw", dw.len(), s.weight_len());
    check_len("linear db", db.len(), s.out_f);
    if !dw.is_empty() {
        dw.par_chunks_mut(s.in_f).enumerate().for_each(|(o, dwr)| {
            for (i, dwi) in dwr.iter_mut().enumerate() {
                let mut acc = 0.0f64;
                for n in 0..s.n {
                    acc += dy[n * s.out_f + o] as f64 * x[n * s.in_f + i] as f64;
                }
                *dwi = acc as f32;
            }
        });
    }
    db.par_iter_mut().enumerate().for_each(|(o, dbo)| {
        *dbo = (0..s.n).map(|n| dy[n * s.out_f + o] as f64).sum::<f64>() as f32;
    });
}

// ---------------------------------------------------------------------------------------------
// GPU side.

/// Uniform of the three linear kernels. Mirrors `LinearParams` in
/// shaders/net/linear_fwd.wgsl, linear_bwd_input.wgsl and linear_bwd_weight.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LinearParams {
    pub n: u32,
    pub in_f: u32,
    pub out_f: u32,
    /// Samples per partial sum (linear_bwd_weight).
    pub chunk_rows: u32,
    /// Number of partial sums per parameter (linear_bwd_weight).
    pub n_chunks: u32,
    /// Blocks of [`LINEAR_FWD_OB`] outputs, ceil(out_f / OB) (linear_fwd).
    pub o_blocks: u32,
    /// 1: `linear_fwd` passes its outputs through a ReLU before storing them.
    pub relu: u32,
    pub _pad2: u32,
}
const _: () = assert!(std::mem::size_of::<LinearParams>() == 32);

impl LinearParams {
    /// The uniform for shape `s`. Panics if a tensor of `s` has more than `u32::MAX` elements.
    pub fn new(s: &LinearShape) -> Self {
        for (name, len) in [("x", s.n * s.in_f), ("y", s.n * s.out_f), ("parameters", s.n_params())] {
            to_u32(&format!("linear {name} length"), len);
        }
        let plan = linear_bwd_weight_plan(s);
        Self {
            n: s.n as u32,
            in_f: s.in_f as u32,
            out_f: s.out_f as u32,
            chunk_rows: to_u32("linear chunk rows", plan.chunk_rows),
            n_chunks: to_u32("linear chunks", plan.n_chunks),
            o_blocks: to_u32("linear_fwd output blocks", s.out_f.div_ceil(LINEAR_FWD_OB)),
            relu: 0,
            _pad2: 0,
        }
    }
}

/// How `linear_bwd_weight` splits the batch into chunks.
pub fn linear_bwd_weight_plan(s: &LinearShape) -> ChunkPlan {
    chunk_plan(s.n, s.n_params())
}

/// f32 elements of the scratch buffer `linear_bwd_weight_record` needs (0 for an empty batch: then
/// pass any buffer of at least 4 bytes). Never decreases with the batch size, so a scratch sized for
/// the largest batch serves every smaller one ([`chunk_scratch_len`]).
pub fn linear_bwd_weight_scratch_len(s: &LinearShape) -> usize {
    chunk_scratch_len(s.n, s.n_params())
}

/// Samples and outputs per invocation of `linear_fwd` (keep in sync with shaders/net/linear_fwd.wgsl).
pub const LINEAR_FWD_NB: usize = 4;
pub const LINEAR_FWD_OB: usize = 8;

/// Records `linear_fwd` (all of `y` written). One invocation per block of [`LINEAR_FWD_NB`]
/// samples and [`LINEAR_FWD_OB`] outputs.
pub fn linear_fwd_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &LinearShape,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<(), GpuError> {
    linear_fwd_record_io(ctx, enc, s, ActIo::F32, false, x, w, b, y)
}

/// [`linear_fwd_record`] with `x` / `y` stored as `io` says (see [`super::precision`]), and with
/// `relu`, a ReLU applied to the outputs before they are stored (twin [`linear_relu_fwd_cpu`]).
#[allow(clippy::too_many_arguments)]
pub fn linear_fwd_record_io(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &LinearShape,
    io: ActIo,
    relu: bool,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<(), GpuError> {
    check_buffer_bytes("linear x", x, io.x_bytes(s.n * s.in_f));
    check_buffer("linear w", w, s.weight_len());
    check_buffer("linear b", b, s.out_f);
    check_buffer_bytes("linear y", y, io.y_bytes(s.n * s.out_f));
    if s.n == 0 || s.out_f == 0 {
        return Ok(());
    }
    // one invocation per block of LINEAR_FWD_NB samples x LINEAR_FWD_OB outputs
    let p = LinearParams { relu: relu as u32, ..LinearParams::new(s) };
    let u = ctx.uniform("linear_fwd_params", &p);
    let threads = s.n.div_ceil(LINEAR_FWD_NB) as u64 * p.o_blocks as u64;
    ctx.dispatch(
        enc,
        io.pick(&NET_LINEAR_FWD, &NET_LINEAR_FWD_F16),
        &[("params", &u), ("x", x), ("w", w), ("b", b), ("y", y)],
        threads,
    )
}

/// Records `linear_bwd_input` (all of `dx` written). One invocation per input element.
pub fn linear_bwd_input_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &LinearShape,
    w: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
) -> Result<(), GpuError> {
    check_buffer("linear w", w, s.weight_len());
    check_buffer("linear dy", dy, s.n * s.out_f);
    check_buffer("linear dx", dx, s.n * s.in_f);
    let u = ctx.uniform("linear_bwd_input_params", &LinearParams::new(s));
    ctx.dispatch(enc, &NET_LINEAR_BWD_INPUT, &[("params", &u), ("w", w), ("dy", dy), ("dx", dx)], (s.n * s.in_f) as u64)
}

/// Records `linear_bwd_weight` (partial sums per chunk of samples into `scratch`, at least
/// [`linear_bwd_weight_scratch_len`] f32) and `reduce_chunks` (the chunks added in order into `dw`
/// and `db`). All of `dw` and `db` written, zeros for an empty batch.
#[allow(clippy::too_many_arguments)]
pub fn linear_bwd_weight_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &LinearShape,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dw: &wgpu::Buffer,
    db: &wgpu::Buffer,
    scratch: &wgpu::Buffer,
) -> Result<(), GpuError> {
    check_buffer("linear x", x, s.n * s.in_f);
    check_buffer("linear dy", dy, s.n * s.out_f);
    check_buffer("linear dw", dw, s.weight_len());
    check_buffer("linear db", db, s.out_f);
    check_buffer("linear_bwd_weight scratch", scratch, linear_bwd_weight_scratch_len(s));
    let p = LinearParams::new(s);
    let u = ctx.uniform("linear_bwd_weight_params", &p);
    let threads = p.n_chunks as u64 * s.n_params() as u64;
    ctx.dispatch(enc, &NET_LINEAR_BWD_WEIGHT, &[("params", &u), ("x", x), ("dy", dy), ("partials", scratch)], threads)?;
    let r = ReduceChunksParams {
        n_params: s.n_params() as u32,
        n_chunks: p.n_chunks,
        n_split: s.weight_len() as u32,
        _pad0: 0,
    };
    reduce_chunks_record(ctx, enc, &r, scratch, dw, db)
}

/// Runs `linear_fwd` alone on the GPU (test wrapper; `y` pre-filled with garbage).
#[cfg(feature = "testing")]
pub fn linear_fwd_gpu(ctx: &GpuContext, s: &LinearShape, x: &[f32], w: &[f32], b: &[f32]) -> crate::Result<Vec<f32>> {
    linear_fwd_gpu_relu(ctx, s, false, x, w, b)
}

/// [`linear_fwd_gpu`], with `relu` the fused ReLU of [`linear_fwd_record_io`].
#[cfg(feature = "testing")]
pub fn linear_fwd_gpu_relu(
    ctx: &GpuContext,
    s: &LinearShape,
    relu: bool,
    x: &[f32],
    w: &[f32],
    b: &[f32],
) -> crate::Result<Vec<f32>> {
    check_len("linear x", x.len(), s.n * s.in_f);
    check_len("linear w", w.len(), s.weight_len());
    check_len("linear b", b.len(), s.out_f);
    let ny = s.n * s.out_f;
    let (xb, wb, bb) = (ctx.upload("x", x)?, ctx.upload("w", w)?, ctx.upload("b", b)?);
    let yb = ctx.upload("y", &vec![GARBAGE; ny])?;
    let mut enc = ctx.encoder("linear_fwd");
    linear_fwd_record_io(ctx, &mut enc, s, ActIo::F32, relu, &xb, &wb, &bb, &yb)?;
    let rb = ctx.readback(&mut enc, &yb, ny as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

/// Runs `linear_bwd_input` alone on the GPU (test wrapper; `dx` pre-filled with garbage).
#[cfg(feature = "testing")]
pub fn linear_bwd_input_gpu(ctx: &GpuContext, s: &LinearShape, w: &[f32], dy: &[f32]) -> crate::Result<Vec<f32>> {
    check_len("linear w", w.len(), s.weight_len());
    check_len("linear dy", dy.len(), s.n * s.out_f);
    let nx = s.n * s.in_f;
    let (wb, dyb) = (ctx.upload("w", w)?, ctx.upload("dy", dy)?);
    let dxb = ctx.upload("dx", &vec![GARBAGE; nx])?;
    let mut enc = ctx.encoder("linear_bwd_input");
    linear_bwd_input_record(ctx, &mut enc, s, &wb, &dyb, &dxb)?;
    let rb = ctx.readback(&mut enc, &dxb, nx as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

/// Runs `linear_bwd_weight` + `reduce_chunks` on the GPU: `(dw, db)` (test wrapper; `dw`, `db`
/// and the scratch pre-filled with garbage).
#[cfg(feature = "testing")]
pub fn linear_bwd_weight_gpu(
    ctx: &GpuContext,
    s: &LinearShape,
    x: &[f32],
    dy: &[f32],
) -> crate::Result<(Vec<f32>, Vec<f32>)> {
    check_len("linear x", x.len(), s.n * s.in_f);
    check_len("linear dy", dy.len(), s.n * s.out_f);
    let (nw, nb) = (s.weight_len(), s.out_f);
    let (xb, dyb) = (ctx.upload("x", x)?, ctx.upload("dy", dy)?);
    let dwb = ctx.upload("dw", &vec![GARBAGE; nw])?;
    let dbb = ctx.upload("db", &vec![GARBAGE; nb])?;
    let scratch = ctx.upload("scratch", &vec![GARBAGE; linear_bwd_weight_scratch_len(s)])?;
    let mut enc = ctx.encoder("linear_bwd_weight");
    linear_bwd_weight_record(ctx, &mut enc, s, &xb, &dyb, &dwb, &dbb, &scratch)?;
    let rw = ctx.readback(&mut enc, &dwb, nw as u64 * 4);
    let rbias = ctx.readback(&mut enc, &dbb, nb as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok((rw.read(ctx)?, rbias.read(ctx)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_matches_hand_computation() {
        // x = [[1, 2]], w = [[1, 0], [0.5, -1], [2, 3]], b = [0.25, 0, -1]
        let s = LinearShape::new(1, 2, 3);
        let mut y = vec![-12345.0; 3];
        linear_fwd_cpu(&s, &[1.0, 2.0], &[1.0, 0.0, 0.5, -1.0, 2.0, 3.0], &[0.25, 0.0, -1.0], &mut y);
        assert_eq!(y, [1.25, -1.5, 7.0]);
    }

    #[test]
    fn empty_batch_gives_zero_parameter_gradients() {
        let s = LinearShape::new(0, 3, 2);
        let (mut dw, mut db) = (vec![-12345.0; 6], vec![-12345.0; 2]);
        linear_bwd_weight_cpu(&s, &[], &[], &mut dw, &mut db);
        assert!(dw.iter().chain(&db).all(|&v| v == 0.0));
    }
}
