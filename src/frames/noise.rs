//! Kernel `frames/noise` (shaders/frames/noise.wgsl): fixed-point charge to ADU with Gaussian read
//! noise, gain, dark offset and optional u16 quantization.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::accumulate::FIXED_SCALE;
use crate::rng::{counter, gauss_pair, philox4x32_10, streams};

/// Mirrors `NoiseParams` in shaders/frames/noise.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
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
///
/// The arithmetic is exactly that of the kernel (and of [`noise_group_scalar`], the plain one-group
/// version used at band edges); the interior of the band goes through `noise_block`, the same
/// operations laid out as loops over `BLOCK` groups so that the compiler vectorizes them (AVX2 /
/// AVX-512 chosen at run time, no FMA contraction, so the results are bit-identical).
pub fn noise_cpu(p: &NoiseParams, acc: &[u32], out: &mut [f32]) {
    for_each_span(p, acc, out, |frame, start, a, o| noise_span(p, frame, start, a, o));
}

/// [`noise_cpu`] for quantized frames (`p.quantize` set), straight to u16: each piece of a frame
/// is made in a small f32 buffer (in the core's first-level cache) and converted there, so the
/// f32 frame never goes to memory. The values are exactly `noise_cpu`'s.
pub fn noise_cpu_u16(p: &NoiseParams, acc: &[u32], out: &mut [u16]) {
    assert!(p.quantize != 0, "u16 noise needs quantized frames");
    const PIECE: usize = BLOCK * 4 * 16;
    for_each_span(p, acc, out, |frame, start, a, o| {
        let mut tmp = [0f32; PIECE];
        for (k, (o, a)) in o.chunks_mut(PIECE).zip(a.chunks(PIECE)).enumerate() {
            let t = &mut tmp[..o.len()];
            noise_span(p, frame, start + (k * PIECE) as u32, a, t);
            for (o, &v) in o.iter_mut().zip(t.iter()) {
                *o = quantized_u16(v);
            }
        }
    });
}

/// A quantized ADU value (a whole number in 0..=65535) as u16: adding 2^23 puts it in the low
/// mantissa bits, exactly, in a form that vectorizes (Rust's saturating `as u16` does not).
#[inline(always)]
pub fn quantized_u16(v: f32) -> u16 {
    debug_assert!(v == v.round() && (0.0..=65535.0).contains(&v), "{v} is not a quantized ADU value");
    (v + 8_388_608.0).to_bits() as u16
}

/// Runs `span(frame, start, acc, out)` over the frames of `p` and spans of each frame (band-
/// relative start pixel), in parallel. Many frames: one task per frame; few frames: each frame
/// split into row chunks as well.
fn for_each_span<T: Send>(
    p: &NoiseParams,
    acc: &[u32],
    out: &mut [T],
    span: impl Fn(u64, u32, &[u32], &mut [T]) + Sync,
) {
    let band_px = ((p.band_rows * p.width) as usize).max(1);
    let first_frame = p.first_frame_lo as u64 | (p.first_frame_hi as u64) << 32;
    let chunk_px = if (p.n_frames as usize) >= rayon::current_num_threads() * 2 {
        band_px
    } else {
        (p.width as usize * 64).max(BLOCK * 4)
    };
    out.par_chunks_mut(band_px).zip(acc.par_chunks(band_px)).take(p.n_frames as usize).enumerate().for_each(
        |(f, (out_f, acc_f))| {
            let frame = first_frame + f as u64;
            out_f.par_chunks_mut(chunk_px).zip(acc_f.par_chunks(chunk_px)).enumerate().for_each(|(c, (o, a))| {
                span(frame, (c * chunk_px) as u32, a, o);
            });
        },
    );
}

/// Groups of 4 pixels per vectorized block.
const BLOCK: usize = 64;

/// Pixels `[start, start + out.len())` of the band (band-relative flat indices) of one frame.
fn noise_span(p: &NoiseParams, frame: u64, start: u32, acc: &[u32], out: &mut [f32]) {
    let band_start = p.row0 * p.width;
    let px0 = band_start + start; // absolute flat pixel index of out[0]
    let px1 = px0 + out.len() as u32;
    let g_lo = px0.div_ceil(4); // first whole group
    let g_hi = px1 / 4; // end of whole groups
    if g_lo >= g_hi {
        for px in px0..px1 {
            noise_one(p, frame, px, px0, acc, out);
        }
        return;
    }
    for px in px0..g_lo * 4 {
        noise_one(p, frame, px, px0, acc, out);
    }
    let key = [p.key_lo, p.key_hi];
    let mut g = g_lo;
    while g < g_hi {
        let n = (g_hi - g).min(BLOCK as u32);
        let i0 = (g * 4 - px0) as usize;
        let len = n as usize * 4;
        if n as usize == BLOCK {
            noise_block_dispatch(p, key, frame, g, &acc[i0..i0 + len], &mut out[i0..i0 + len]);
        } else {
            for k in 0..n {
                let i = i0 + k as usize * 4;
                noise_group_scalar(p, key, frame, g + k, &acc[i..i + 4], &mut out[i..i + 4]);
            }
        }
        g += n;
    }
    for px in g_hi * 4..px1 {
        noise_one(p, frame, px, px0, acc, out);
    }
}

/// One pixel at the edge of a span: computes its whole group and keeps its lane.
fn noise_one(p: &NoiseParams, frame: u64, px: u32, px0: u32, acc: &[u32], out: &mut [f32]) {
    let r = philox4x32_10(counter(px / 4, frame, streams::NOISE), [p.key_lo, p.key_hi]);
    let (z0, z1) = gauss_pair(r[0], r[1]);
    let (z2, z3) = gauss_pair(r[2], r[3]);
    let z = [z0, z1, z2, z3][(px % 4) as usize];
    let i = (px - px0) as usize;
    out[i] = pixel_value(p, acc[i], z);
}

/// The plain version: one group of 4 pixels, exactly as one kernel invocation computes it.
#[inline(always)]
pub fn noise_group_scalar(p: &NoiseParams, key: [u32; 2], frame: u64, g: u32, acc: &[u32], out: &mut [f32]) {
    let r = philox4x32_10(counter(g, frame, streams::NOISE), key);
    let (z0, z1) = gauss_pair(r[0], r[1]);
    let (z2, z3) = gauss_pair(r[2], r[3]);
    for (lane, z) in [z0, z1, z2, z3].into_iter().enumerate() {
        out[lane] = pixel_value(p, acc[lane], z);
    }
}

fn noise_block_dispatch(p: &NoiseParams, key: [u32; 2], frame: u64, g0: u32, acc: &[u32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd_level() >= 2 {
            // SAFETY: the CPU supports AVX-512F/BW (checked at run time).
            return unsafe { noise_block_avx512(p, key, frame, g0, acc, out) };
        }
        if simd_level() >= 1 {
            // SAFETY: the CPU supports AVX2 (checked at run time).
            return unsafe { noise_block_avx2(p, key, frame, g0, acc, out) };
        }
    }
    noise_block(p, key, frame, g0, acc, out)
}

#[cfg(target_arch = "x86_64")]
fn simd_level() -> u8 {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<u8> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        if std::env::var_os("EMSIM_NO_SIMD").is_some() {
            0
        } else if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
            2
        } else if is_x86_feature_detected!("avx2") {
            1
        } else {
            0
        }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn noise_block_avx2(p: &NoiseParams, key: [u32; 2], frame: u64, g0: u32, acc: &[u32], out: &mut [f32]) {
    noise_block(p, key, frame, g0, acc, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
fn noise_block_avx512(p: &NoiseParams, key: [u32; 2], frame: u64, g0: u32, acc: &[u32], out: &mut [f32]) {
    noise_block(p, key, frame, g0, acc, out)
}

/// `BLOCK` whole groups starting at group `g0`, as structure-of-arrays loops. Same operations, in the
/// same order, as [`noise_group_scalar`]; only the loop nesting differs.
#[inline(always)]
fn noise_block(p: &NoiseParams, key: [u32; 2], frame: u64, g0: u32, acc: &[u32], out: &mut [f32]) {
    let acc = &acc[..BLOCK * 4];
    let out = &mut out[..BLOCK * 4];
    let ctr = counter(0, frame, streams::NOISE);
    let mut c0 = [0u32; BLOCK];
    let mut c1 = [ctr[1]; BLOCK];
    let mut c2 = [ctr[2]; BLOCK];
    let mut c3 = [ctr[3]; BLOCK];
    for (j, c) in c0.iter_mut().enumerate() {
        *c = g0 + j as u32;
    }
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(crate::rng::W0);
            k[1] = k[1].wrapping_add(crate::rng::W1);
        }
        for j in 0..BLOCK {
            let (hi0, lo0) = crate::rng::mulhilo(crate::rng::M0, c0[j]);
            let (hi1, lo1) = crate::rng::mulhilo(crate::rng::M1, c2[j]);
            let n0 = hi1 ^ c1[j] ^ k[0];
            let n2 = hi0 ^ c3[j] ^ k[1];
            c0[j] = n0;
            c1[j] = lo1;
            c2[j] = n2;
            c3[j] = lo0;
        }
    }
    let mut z = [0f32; BLOCK * 4];
    for j in 0..BLOCK {
        let (z0, z1) = gauss_pair(c0[j], c1[j]);
        let (z2, z3) = gauss_pair(c2[j], c3[j]);
        z[4 * j] = z0;
        z[4 * j + 1] = z1;
        z[4 * j + 2] = z2;
        z[4 * j + 3] = z3;
    }
    for i in 0..BLOCK * 4 {
        out[i] = pixel_value(p, acc[i], z[i]);
    }
}

/// Runs `frames/noise` alone on the GPU; `out_init` fills the output buffer first (tests pass
/// garbage there, so that a pixel the kernel fails to write shows up).
#[cfg(feature = "testing")]
pub fn noise_gpu(
    ctx: &crate::gpu::GpuContext,
    p: &NoiseParams,
    acc: &[u32],
    out_init: &[f32],
) -> crate::Result<Vec<f32>> {
    let out = ctx.upload("frames", out_init)?;
    run_noise(ctx, &crate::shaders::FRAMES_NOISE, p, acc, &out, out_init.len() as u64 * 4)
}

/// Runs `frames/noise_u16` alone on the GPU (tests): quantized frames (`p.quantize` set, even
/// width) read back as u16, two per word.
#[cfg(feature = "testing")]
pub fn noise_gpu_u16(ctx: &crate::gpu::GpuContext, p: &NoiseParams, acc: &[u32]) -> crate::Result<Vec<u16>> {
    assert!(p.quantize != 0 && p.width.is_multiple_of(2), "noise_u16 takes quantized frames of even width");
    let out = ctx.storage("frames_u16", acc.len() as u64 * 2)?;
    run_noise(ctx, &crate::shaders::FRAMES_NOISE_U16, p, acc, &out, acc.len() as u64 * 2)
}

/// Dispatches a `frames/noise` variant on `acc` into `out` and reads back its first `bytes`.
#[cfg(feature = "testing")]
fn run_noise<T: Pod>(
    ctx: &crate::gpu::GpuContext,
    kernel: &crate::shaders::Kernel,
    p: &NoiseParams,
    acc: &[u32],
    out: &wgpu::Buffer,
    bytes: u64,
) -> crate::Result<Vec<T>> {
    let acc_buf = ctx.upload("acc", acc)?;
    let params = ctx.uniform("noise_params", p);
    let mut enc = ctx.encoder(kernel.name);
    ctx.dispatch(
        &mut enc,
        kernel,
        &[("params", &params), ("acc", &acc_buf), ("out", out)],
        p.n_frames as u64 * p.n_groups as u64,
    )?;
    let rb = ctx.readback(&mut enc, out, bytes);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked (vectorized) CPU twin gives bit-identical values to the plain per-group loop,
    /// at band edges, odd widths and group boundaries that straddle rows.
    #[test]
    fn blocked_twin_equals_plain_loop() {
        for &(width, _height, row0, band_rows, n_frames) in
            &[(5u32, 7u32, 0u32, 7u32, 3u32), (37, 40, 3, 29, 2), (576, 64, 0, 64, 1), (301, 300, 17, 283, 5)]
        {
            let p = NoiseParams {
                n_frames,
                width,
                row0,
                band_rows,
                first_frame_lo: 0xffff_fffe,
                first_frame_hi: 1,
                key_lo: 0x1234_5678,
                key_hi: 0x9abc_def0,
                sigma_e: 20.0,
                gain_adu_per_e: 1.5,
                offset_adu: 3.0,
                quantize: (width % 2 == 0) as u32,
                ..Default::default()
            }
            .with_groups();
            let band_px = (band_rows * width) as usize;
            let acc: Vec<u32> =
                (0..band_px * n_frames as usize).map(|i| (i as u32).wrapping_mul(2_654_435_761) >> 18).collect();
            let mut got = vec![f32::NAN; acc.len()];
            noise_cpu(&p, &acc, &mut got);
            let first_frame = p.first_frame_lo as u64 | (p.first_frame_hi as u64) << 32;
            let band_start = row0 * width;
            for f in 0..n_frames as usize {
                for i in 0..band_px {
                    let px = band_start + i as u32;
                    let mut four = [0f32; 4];
                    let g = px / 4;
                    let acc4 = [acc[f * band_px + i]; 4];
                    noise_group_scalar(&p, [p.key_lo, p.key_hi], first_frame + f as u64, g, &acc4, &mut four);
                    let want = four[(px % 4) as usize];
                    assert_eq!(got[f * band_px + i].to_bits(), want.to_bits(), "w {width} frame {f} pixel {i}");
                }
            }
        }
    }
}
