//! The two-stage batch reduction shared by conv2d_bwd_weight and linear_bwd_weight: stage 1 (the
//! layer's kernel) writes one partial sum per (chunk of rows, parameter) into a scratch buffer laid
//! out `[n_chunks][n_params]`; stage 2 (`net/reduce_chunks`) adds each parameter's chunks in order.
//! Both stages sum in f32 in a fixed order: deterministic, no float atomics.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

#[cfg(feature = "testing")]
use super::GARBAGE;
use super::{check_buffer, check_len};
use crate::gpu::{GpuContext, GpuError};
use crate::shaders::NET_REDUCE_CHUNKS;

/// Partial sums stage 1 aims for (`n_chunks * n_params`): enough invocations to fill a large GPU
/// while keeping the scratch at ~1 MiB and stage 2 short.
pub const REDUCE_TARGET_PARTIALS: usize = 1 << 18;
/// Fewest rows a chunk sums (so that small layers do not make many tiny chunks).
pub const REDUCE_MIN_CHUNK_ROWS: usize = 32;

/// How a sum over `rows` rows is split into chunks of `chunk_rows` consecutive rows (the last one
/// shorter); `n_chunks` is 0 when there are no rows. Stage 1 writes `n_chunks * n_params` f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    pub chunk_rows: usize,
    pub n_chunks: usize,
}

/// The chunking for `rows` rows and `n_params` parameters: about [`REDUCE_TARGET_PARTIALS`] /
/// `n_params` chunks (at least 1), each of at least [`REDUCE_MIN_CHUNK_ROWS`] rows. For the seed
/// network at batch 1000: conv1 (272 parameters, 1.6M rows) 963 chunks of 1662 rows, conv2 (4640,
/// 100k rows) 56 chunks of 1786 rows, linear 64 -> 100 (6500, 1000 rows) 32 chunks of 32 rows.
pub fn chunk_plan(rows: usize, n_params: usize) -> ChunkPlan {
    let chunk_rows = rows.div_ceil(wanted_chunks(n_params)).max(REDUCE_MIN_CHUNK_ROWS);
    ChunkPlan { chunk_rows, n_chunks: rows.div_ceil(chunk_rows) }
}

fn wanted_chunks(n_params: usize) -> usize {
    (REDUCE_TARGET_PARTIALS / n_params.max(1)).max(1)
}

/// Scratch (f32 elements) for stage 1 of a sum over `rows` rows: `n_params * min(wanted chunks,
/// ceil(rows / REDUCE_MIN_CHUNK_ROWS))`. That bounds [`chunk_plan`]'s `n_chunks * n_params` and,
/// unlike it, never decreases as `rows` grows (`n_chunks` itself can: 1280 rows in chunks of 32
/// make 40 chunks, 1281 rows in chunks of 33 make 39), so a scratch sized for the largest batch is
/// large enough for every smaller one.
pub fn chunk_scratch_len(rows: usize, n_params: usize) -> usize {
    n_params * wanted_chunks(n_params).min(rows.div_ceil(REDUCE_MIN_CHUNK_ROWS))
}

/// Uniform of `net/reduce_chunks`. Mirrors `ReduceChunksParams` in
/// shaders/net/reduce_chunks.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ReduceChunksParams {
    pub n_params: u32,
    pub n_chunks: u32,
    /// Parameters `p < n_split` go to `out_a[p]`, the others to `out_b[p - n_split]`.
    pub n_split: u32,
    pub _pad0: u32,
}
const _: () = assert!(std::mem::size_of::<ReduceChunksParams>() == 16);

/// Twin of `net/reduce_chunks`: `s[p] = sum over c of partials[c * n_params + p]` in f32, chunk
/// order, from 0; `out_a = s[..n_split]`, `out_b = s[n_split..]`. Exact same operations as the
/// kernel, so the results are bit-identical.
pub fn reduce_chunks_cpu(p: &ReduceChunksParams, partials: &[f32], out_a: &mut [f32], out_b: &mut [f32]) {
    let (np, nc, split) = (p.n_params as usize, p.n_chunks as usize, p.n_split as usize);
    check_len("reduce_chunks partials", partials.len(), np * nc);
    check_len("reduce_chunks out_a", out_a.len(), split);
    check_len("reduce_chunks out_b", out_b.len(), np - split);
    let sum = |q: usize| (0..nc).fold(0.0f32, |acc, c| acc + partials[c * np + q]);
    out_a.par_iter_mut().enumerate().for_each(|(q, o)| *o = sum(q));
    out_b.par_iter_mut().enumerate().for_each(|(q, o)| *o = sum(split + q));
}

/// Records `net/reduce_chunks` (stage 2): `out_a` gets the first `n_split` sums, `out_b` the rest.
pub fn reduce_chunks_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    p: &ReduceChunksParams,
    partials: &wgpu::Buffer,
    out_a: &wgpu::Buffer,
    out_b: &wgpu::Buffer,
) -> Result<(), GpuError> {
    assert!(p.n_split <= p.n_params, "reduce_chunks: n_split {} > n_params {}", p.n_split, p.n_params);
    let (np, nc, split) = (p.n_params as usize, p.n_chunks as usize, p.n_split as usize);
    check_buffer("reduce_chunks partials", partials, np * nc);
    check_buffer("reduce_chunks out_a", out_a, split);
    check_buffer("reduce_chunks out_b", out_b, np - split);
    let u = ctx.uniform("reduce_chunks_params", p);
    ctx.dispatch(
        enc,
        &NET_REDUCE_CHUNKS,
        &[("params", &u), ("partials", partials), ("out_a", out_a), ("out_b", out_b)],
        np as u64,
    )
}

/// Runs `net/reduce_chunks` alone on the GPU: `(out_a, out_b)` (test wrapper; outputs pre-filled
/// with garbage).
#[cfg(feature = "testing")]
pub fn reduce_chunks_gpu(
    ctx: &GpuContext,
    p: &ReduceChunksParams,
    partials: &[f32],
) -> crate::Result<(Vec<f32>, Vec<f32>)> {
    let (np, nc, split) = (p.n_params as usize, p.n_chunks as usize, p.n_split as usize);
    check_len("reduce_chunks partials", partials.len(), np * nc);
    let pb = ctx.upload("partials", partials)?;
    let ab = ctx.upload("out_a", &vec![GARBAGE; split])?;
    let bb = ctx.upload("out_b", &vec![GARBAGE; np - split])?;
    let mut enc = ctx.encoder("reduce_chunks");
    reduce_chunks_record(ctx, &mut enc, p, &pb, &ab, &bb)?;
    let ra = ctx.readback(&mut enc, &ab, split as u64 * 4);
    let rb = ctx.readback(&mut enc, &bb, (np - split) as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok((ra.read(ctx)?, rb.read(ctx)?))
}

// Helpers shared by the GPU sides of conv2d, linear and relu.
