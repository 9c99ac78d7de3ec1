//! Kernel `count/calibrate` (shaders/count/calibrate.wgsl): raw frames (ADU) to fixed-point charge.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

pub use super::types::{Q_MAX, Q_SCALE};

/// Mirrors `CalibrateParams` in shaders/count/calibrate.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct CalibrateParams {
    pub n_values: u32,
    pub frame_px: u32,
    pub use_dark: u32,
    pub use_gain_map: u32,
    pub offset_adu: f32,
    pub inv_gain: f32,
    pub _pad0: u32,
    pub _pad1: u32,
}
const _: () = assert!(std::mem::size_of::<CalibrateParams>() == 32);

/// Electrons to fixed point (round half to even, clamped): the kernel's
/// `clamp(round(e * 16), -Q_MAX, Q_MAX)`. Clamping first gives the same value (Q_MAX is an
/// integer), and then |v| <= 2^20 < 2^22, where adding and subtracting 1.5 * 2^23 rounds to the
/// nearest integer, ties to even, exactly, and leaves that integer in the low mantissa bits: the
/// same result as `round_ties_even` + cast, with integer operations only (no libm call, no
/// saturating cast), so the loops vectorize on any x86-64.
#[inline(always)]
pub fn to_q(e: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let v = (e * Q_SCALE).clamp(-Q_MAX, Q_MAX);
    (v + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32
}

/// CPU twin of `count/calibrate`. `dark` / `gain_map` hold one frame's pixels when used.
pub fn calibrate_cpu(p: &CalibrateParams, adu: &[f32], dark: &[f32], gain_map: &[f32], q: &mut [i32]) {
    let n = p.n_values as usize;
    let fp = p.frame_px as usize;
    q[..n]
        .par_chunks_mut(fp)
        .zip(adu[..n].par_chunks(fp))
        .for_each(|(qf, af)| calibrate_frame(p, af, dark, gain_map, qf));
}

/// One frame of [`calibrate_cpu`]; the three cases are separate loops so each vectorizes. The raw
/// values are f32, or u16 as a detector writes them (converted exactly, as `count/calibrate_u16`
/// does).
pub fn calibrate_frame<T: Copy + Into<f32>>(
    p: &CalibrateParams,
    af: &[T],
    dark: &[f32],
    gain_map: &[f32],
    qf: &mut [i32],
) {
    match (p.use_dark != 0, p.use_gain_map != 0) {
        (false, false) => {
            for (qv, &a) in qf.iter_mut().zip(af) {
                *qv = to_q((a.into() - p.offset_adu) * 1.0 * p.inv_gain);
            }
        }
        (true, false) => {
            for ((qv, &a), &d) in qf.iter_mut().zip(af).zip(dark) {
                *qv = to_q((a.into() - d) * 1.0 * p.inv_gain);
            }
        }
        (use_dark, true) => {
            for (j, (qv, &a)) in qf.iter_mut().zip(af).enumerate() {
                let d = if use_dark { dark[j] } else { p.offset_adu };
                *qv = to_q((a.into() - d) * gain_map[j] * p.inv_gain);
            }
        }
    }
}

/// Runs `count/calibrate` alone on the GPU (tests and benches).
#[cfg(feature = "testing")]
pub fn calibrate_gpu(
    ctx: &crate::gpu::GpuContext,
    p: &CalibrateParams,
    adu: &[f32],
    dark: &[f32],
    gain_map: &[f32],
) -> crate::Result<Vec<i32>> {
    let a = ctx.upload("adu", adu)?;
    run_calibrate(ctx, &crate::shaders::COUNT_CALIBRATE, p, &a, dark, gain_map)
}

/// Runs `count/calibrate_u16` alone on the GPU (tests): `adu` uploaded as u16, two per word (an
/// odd count padded with one value the kernel never reads).
#[cfg(feature = "testing")]
pub fn calibrate_gpu_u16(
    ctx: &crate::gpu::GpuContext,
    p: &CalibrateParams,
    adu: &[u16],
    dark: &[f32],
    gain_map: &[f32],
) -> crate::Result<Vec<i32>> {
    let a = ctx.upload("adu_u16", &u16_words(adu))?;
    run_calibrate(ctx, &crate::shaders::COUNT_CALIBRATE_U16, p, &a, dark, gain_map)
}

/// u16 values as `count/calibrate_u16` reads them, whole u32 words: an odd count gets one more
/// value, which the kernel never reads.
pub(crate) fn u16_words(adu: &[u16]) -> std::borrow::Cow<'_, [u16]> {
    if adu.len().is_multiple_of(2) {
        return std::borrow::Cow::Borrowed(adu);
    }
    let mut padded = Vec::with_capacity(adu.len() + 1);
    padded.extend_from_slice(adu);
    padded.push(0);
    std::borrow::Cow::Owned(padded)
}

/// Dispatches a `count/calibrate` variant on the frames in `a` and reads `q` back.
#[cfg(feature = "testing")]
fn run_calibrate(
    ctx: &crate::gpu::GpuContext,
    kernel: &crate::shaders::Kernel,
    p: &CalibrateParams,
    a: &wgpu::Buffer,
    dark: &[f32],
    gain_map: &[f32],
) -> crate::Result<Vec<i32>> {
    let d = ctx.upload("dark", if dark.is_empty() { &[0f32][..] } else { dark })?;
    let g = ctx.upload("gain_map", if gain_map.is_empty() { &[1f32][..] } else { gain_map })?;
    let q = ctx.upload("q", &vec![-12345i32; p.n_values as usize])?;
    let u = ctx.uniform("calibrate_params", p);
    let mut enc = ctx.encoder("calibrate");
    ctx.dispatch(
        &mut enc,
        kernel,
        &[("cparams", &u), ("adu", a), ("dark", &d), ("gain_map", &g), ("q", &q)],
        p.n_values as u64,
    )?;
    let rb = ctx.readback(&mut enc, &q, p.n_values as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The magic-number rounding equals round-half-to-even then clamp, ties and extremes included.
    #[test]
    fn to_q_rounds_half_to_even() {
        let mut vals =
            vec![0.0f32, -0.0, 0.03125, -0.03125, 0.09375, 1.0 / 32.0 * 3.0, 65536.0, 65535.97, -65536.5, 1e9, -1e9];
        let mut x = 0.001f32;
        while x < 70_000.0 {
            vals.push(x);
            vals.push(-x);
            vals.push(x + 1.0 / 32.0);
            x *= 1.013;
        }
        for k in -2000..2000 {
            vals.push(k as f32 / 32.0); // exact ties at 1/32 steps
        }
        for e in vals {
            let want = (e * Q_SCALE).round_ties_even().clamp(-Q_MAX, Q_MAX) as i32;
            assert_eq!(to_q(e), want, "e = {e}");
        }
    }
}
