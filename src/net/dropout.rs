//! Inverted dropout (PyTorch `nn.Dropout(p)` in training mode): each element is kept with
//! probability `1 - p` and scaled by `1 / (1 - p)`, or zeroed. Twins of the kernels
//! `net/dropout` (forward and backward are the same masked copy).
//!
//! The mask is not stored: both passes regenerate it from a counter-based RNG, so it is identical
//! on the CPU and the GPU and does not depend on how the work is split. Element `i` of a tensor of
//! `n` elements is kept iff
//!
//! ```text
//! u01(philox4x32_10([i / 4, step_lo, step_hi, streams::DROPOUT ^ (layer << 8)], key_from_seed(seed))[i % 4]) >= p
//! ```
//!
//! (`u01` takes the top 24 bits, so the keep probability is `1 - ceil(p * 2^24) / 2^24`). `step` is
//! the training step and `layer` tells the dropout layers of one network apart (`layer < 2^24`; the
//! low byte of the stream word stays `DROPOUT`, so no other stream is hit). `p = 0` is the identity,
//! `p = 1` zeroes everything (as PyTorch).
//!
//! ```text
//! y  = keep(i) ? x  * scale : 0      scale = 1 / (1 - p)   (computed once, in f32)
//! dx = keep(i) ? dy * scale : 0
//! ```
//!
//! One multiplication per element, correctly rounded in WGSL too: the GPU matches the twin exactly.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::check_len;
use crate::gpu::{GpuContext, GpuError};
use crate::rng::{self, streams};

/// One dropout application: `n` elements, drop probability `p`, and the RNG coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutCfg {
    /// Elements in the tensor (the whole batch).
    pub n: usize,
    /// Probability of zeroing an element, in `[0, 1]`.
    pub p: f32,
    /// The training seed (Philox key).
    pub seed: u64,
    /// The training step: a fresh mask every step.
    pub step: u64,
    /// Which dropout layer of the network (`< 2^24`).
    pub layer: u32,
}

impl DropoutCfg {
    #[track_caller]
    fn check(&self) {
        assert!((0.0..=1.0).contains(&self.p), "dropout: p = {} is not in [0, 1]", self.p);
        assert!(self.layer < 1 << 24, "dropout: layer {} must be < 2^24", self.layer);
        assert!(self.n <= u32::MAX as usize, "dropout: {} elements exceed u32 indexing", self.n);
    }

    /// `1 / (1 - p)` in f32 (infinite for p = 1, where nothing is kept).
    pub fn scale(&self) -> f32 {
        1.0 / (1.0 - self.p)
    }

    /// The Philox stream word: `streams::DROPOUT ^ (layer << 8)`.
    pub fn stream(&self) -> u32 {
        streams::DROPOUT ^ (self.layer << 8)
    }

    /// The four random words of element group `g` (elements `4g .. 4g + 4`).
    fn group_bits(&self, g: u32) -> [u32; 4] {
        rng::philox4x32_10(rng::counter(g, self.step, self.stream()), rng::key_from_seed(self.seed))
    }

    /// Whether element `i` is kept.
    pub fn keeps(&self, i: usize) -> bool {
        rng::u01(self.group_bits((i / 4) as u32)[i % 4]) >= self.p
    }

    /// The uniform of both kernels.
    pub fn params(&self) -> DropoutParams {
        self.check();
        let key = rng::key_from_seed(self.seed);
        DropoutParams {
            n: self.n as u32,
            step_lo: self.step as u32,
            step_hi: (self.step >> 32) as u32,
            stream: self.stream(),
            key_lo: key[0],
            key_hi: key[1],
            p: self.p,
            scale: self.scale(),
        }
    }
}

/// Uniform of `net/dropout`. Mirrors `DropoutParams` in shaders/net/dropout.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct DropoutParams {
    pub n: u32,
    pub step_lo: u32,
    pub step_hi: u32,
    /// `streams::DROPOUT ^ (layer << 8)`.
    pub stream: u32,
    pub key_lo: u32,
    pub key_hi: u32,
    pub p: f32,
    /// `1 / (1 - p)`.
    pub scale: f32,
}
const _: () = assert!(std::mem::size_of::<DropoutParams>() == 32);

/// `out[i] = keep(i) ? inp[i] * scale : 0`, four elements (one Philox call) at a time.
fn apply_mask(c: &DropoutCfg, inp: &[f32], out: &mut [f32]) {
    c.check();
    let scale = c.scale();
    out.par_chunks_mut(4).zip(inp.par_chunks(4)).enumerate().for_each(|(g, (out, inp))| {
        let bits = c.group_bits(g as u32);
        for k in 0..out.len() {
            out[k] = if rng::u01(bits[k]) >= c.p { inp[k] * scale } else { 0.0 };
        }
    });
}

/// Forward: `y = keep ? x / (1 - p) : 0`. Writes all of `y`.
pub fn dropout_fwd_cpu(c: &DropoutCfg, x: &[f32], y: &mut [f32]) {
    check_len("dropout x", x.len(), c.n);
    check_len("dropout y", y.len(), c.n);
    apply_mask(c, x, y);
}

/// Backward with the same mask (regenerated): `dx = keep ? dy / (1 - p) : 0`. Writes all of `dx`.
pub fn dropout_bwd_cpu(c: &DropoutCfg, dy: &[f32], dx: &mut [f32]) {
    check_len("dropout dy", dy.len(), c.n);
    check_len("dropout dx", dx.len(), c.n);
    apply_mask(c, dy, dx);
}

/// Records `net/dropout` on `x` -> `y`, one invocation per 4 elements.
pub fn dropout_fwd_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    c: &DropoutCfg,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let u = ctx.uniform("dropout_params", &c.params());
    ctx.dispatch(enc, &crate::shaders::NET_DROPOUT, &[("params", &u), ("inp", x), ("out", y)], c.n.div_ceil(4) as u64)
}

/// Records the backward pass: `net/dropout` on `dy` -> `dx` (the forward's mask, regenerated).
pub fn dropout_bwd_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    c: &DropoutCfg,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
) -> Result<(), GpuError> {
    dropout_fwd_record(ctx, enc, c, dy, dx)
}

#[cfg(feature = "testing")]
fn run_gpu(ctx: &GpuContext, c: &DropoutCfg, inp: &[f32], bwd: bool) -> crate::Result<Vec<f32>> {
    let ib = ctx.upload("dropout in", inp)?;
    let ob = ctx.upload("dropout out", &vec![-12345.0f32; c.n])?;
    let mut enc = ctx.encoder("dropout");
    if bwd {
        dropout_bwd_record(ctx, &mut enc, c, &ib, &ob)?;
    } else {
        dropout_fwd_record(ctx, &mut enc, c, &ib, &ob)?;
    }
    let rb = ctx.readback(&mut enc, &ob, c.n as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

/// Runs the forward alone (test wrapper): returns `y`.
#[cfg(feature = "testing")]
pub fn dropout_fwd_gpu(ctx: &GpuContext, c: &DropoutCfg, x: &[f32]) -> crate::Result<Vec<f32>> {
    check_len("dropout x", x.len(), c.n);
    run_gpu(ctx, c, x, false)
}

/// Runs the backward alone (test wrapper): returns `dx`.
#[cfg(feature = "testing")]
pub fn dropout_bwd_gpu(ctx: &GpuContext, c: &DropoutCfg, dy: &[f32]) -> crate::Result<Vec<f32>> {
    check_len("dropout dy", dy.len(), c.n);
    run_gpu(ctx, c, dy, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n: usize, p: f32) -> DropoutCfg {
        DropoutCfg { n, p, seed: 7, step: 3, layer: 1 }
    }

    #[test]
    fn mask_follows_the_documented_counter() {
        let c = DropoutCfg { n: 10, p: 0.5, seed: 0x1234_5678_9abc_def0, step: (5 << 32) | 9, layer: 2 };
        for i in 0..10 {
            let r = rng::philox4x32_10([(i / 4) as u32, 9, 5, 33 ^ (2 << 8)], [0x9abc_def0, 0x1234_5678]);
            assert_eq!(c.keeps(i), rng::u01(r[i % 4]) >= 0.5, "element {i}");
        }
        let x: Vec<f32> = (1..=10).map(|v| v as f32).collect();
        let mut y = vec![f32::NAN; 10];
        dropout_fwd_cpu(&c, &x, &mut y);
        for i in 0..10 {
            assert_eq!(y[i], if c.keeps(i) { x[i] * 2.0 } else { 0.0 }, "element {i}");
        }
    }

    #[test]
    fn p0_is_identity_and_p1_zeroes() {
        let x: Vec<f32> = (0..13).map(|v| v as f32 - 6.5).collect();
        let mut y = vec![f32::NAN; 13];
        dropout_fwd_cpu(&cfg(13, 0.0), &x, &mut y);
        assert_eq!(y, x);
        dropout_bwd_cpu(&cfg(13, 1.0), &x, &mut y);
        assert!(y.iter().all(|&v| v == 0.0), "{y:?}");
    }

    #[test]
    fn steps_and_layers_give_different_masks() {
        let n = 256;
        let base = cfg(n, 0.5);
        let mask = |c: DropoutCfg| (0..n).map(|i| c.keeps(i)).collect::<Vec<_>>();
        assert_ne!(mask(base), mask(DropoutCfg { step: 4, ..base }));
        assert_ne!(mask(base), mask(DropoutCfg { layer: 2, ..base }));
        assert_ne!(mask(base), mask(DropoutCfg { seed: 8, ..base }));
    }

    #[test]
    fn mask_of_a_prefix_is_the_prefix_of_the_mask() {
        let x: Vec<f32> = (0..256).map(|v| v as f32 + 1.0).collect();
        let (mut long, mut short) = (vec![0.0; 256], vec![0.0; 17]);
        dropout_fwd_cpu(&cfg(256, 0.3), &x, &mut long);
        dropout_fwd_cpu(&cfg(17, 0.3), &x[..17], &mut short);
        assert_eq!(short, long[..17]);
    }

    #[test]
    #[should_panic(expected = "not in [0, 1]")]
    fn rejects_bad_p() {
        dropout_fwd_cpu(&cfg(1, 1.5), &[1.0], &mut [0.0]);
    }
}
