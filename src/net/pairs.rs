//! Training samples with one or two electrons ("overlapping electrons: one-vs-two
//! classification"): a small patch holding one library event, or two events at a random integer
//! pixel offset from each other, with read noise, the class and both true points. Twin of the
//! kernel `net/make_pairs`.
//!
//! Sample `k` (a global index: the same sample whatever the batch size or device) uses the counter
//! `(0, k, PAIRS)` for: two electrons? (`u01(r0) < p_two`), event 1 (`r1`), event 2 (`r2`); the
//! counter `(1, k, PAIRS)` for the first electron's shift x (`r0`), y (`r1`), and the second
//! electron's offset `(ox, oy)` (`r2`: one uniform index over the `(2 max_sep + 1)^2 - 1` offsets of
//! `[-max_sep, max_sep]^2` other than `(0, 0)`, so every offset is equally likely; `r3` is unused);
//! and `(2 + g, k, PAIRS)` for the read noise of pixels `4g .. 4g + 3`, as in `make_batch`. The
//! offset and event 2 are drawn for one-electron samples too (and ignored), so that changing
//! `p_two` changes only the class of a sample, not its other draws.
//!
//! Extra ("distractor") electrons: real frames at useful doses put other electrons in a patch. The
//! number of extras of sample `k` is Poisson(`extra_mean`) capped at `extra_max`, drawn by inversion
//! of `u = u01(w0)` of the counter `(0x8000_0000, k, PAIRS)`: in f32, `p = cdf = e^-m` (computed
//! once on the host, [`MakePairsParams::extra_p0`]), then while `j < extra_max && u >= cdf`:
//! `j += 1; p = p * (m / j); cdf += p` (the same loop in twin and kernel). Extra `j` (0-based) uses
//! the counter `(0x8000_0001 + j, k, PAIRS)`: `w0` picks its event (`ev_lo + below(w0, ev_count)`),
//! `w1` its incidence pixel, uniform over the patch pixels whose Chebyshev distance from the first
//! electron's incidence pixel `(c0 + sx, c0 + sy)` is greater than `max_sep` (outside the
//! `(2 max_sep + 1)^2` box where the second electron can be): one index `below(w1, allowed)` with
//! `allowed = side^2 - (2 max_sep + 1)^2`, mapped row by row over the patch skipping the box's pixels
//! ([`extra_pixel`]; the box lies inside the patch because `shift + max_sep <= (side - 1) / 2`).
//! An extra's charge lands at its incidence pixel plus the library offsets, like the two electrons'.
//! Each pixel sums, in one f32 accumulator, event 1's charge, event 2's (if two), then each extra's
//! (extra 0 first), each in library order, before the noise is added. The class, points and
//! separation describe the first two electrons only: extras never count. The noise counters
//! `2 + pixel / 4` stay below `2^30`, far from `0x8000_0000`. With `extra_mean = 0` (or
//! `extra_max = 0`) there are no extras and the samples are exactly those without this feature.

use bytemuck::{Pod, Zeroable};

use super::data::{LibraryArrays, LibraryBuffers};
use super::model::{ModelConfig, PairSamples};
use crate::gpu::{GpuContext, GpuError};
use crate::rng::{below, block_normal, counter, key_from_seed, philox4x32_10, streams, u01};
use crate::shaders;
use crate::{Error, Result};

/// Where one-or-two-electron samples come from and what they look like.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairSpec {
    pub seed: u64,
    /// Events (both electrons, independently) are drawn from `[ev_lo, ev_lo + ev_count)`.
    pub ev_lo: u32,
    pub ev_count: u32,
    /// Read noise per pixel, electrons.
    pub sigma_e: f32,
    /// Probability of a two-electron sample.
    pub p_two: f32,
    /// The second electron's incidence pixel is at an integer offset `(ox, oy)` from the first's,
    /// uniform over `[-max_sep_px, max_sep_px]^2` minus `(0, 0)`; 1 gives touching pixels only.
    pub max_sep_px: u32,
    /// The first electron's incidence pixel is at a uniform integer offset in `[-shift_px, shift_px]`
    /// (each axis) from the patch's centre pixel `side / 2`.
    pub shift_px: u32,
    /// Patch side, pixels.
    pub side: u32,
    /// Pixel values are electrons times this.
    pub input_scale: f32,
    /// Mean number of extra (distractor) electrons per patch (Poisson), placed anywhere in the
    /// patch outside the box where the second electron can be; 0 (the default) for none.
    pub extra_mean: f32,
    /// Cap on the number of extra electrons per patch (at most [`MAX_EXTRA`]); 0 for none.
    pub extra_max: u32,
}

/// The largest allowed [`PairSpec::extra_max`].
pub const MAX_EXTRA: u32 = 16;

impl PairSpec {
    /// The defaults: a 16x16 patch (the MSU multi-electron notebook's size), read noise 20 e, half the samples
    /// with two electrons up to 4 pixels apart per axis, the first shifted by up to 1 pixel, inputs
    /// scaled by 1e-3 (as the localization presets).
    pub fn new(seed: u64, ev_lo: u32, ev_count: u32) -> Self {
        Self {
            seed,
            ev_lo,
            ev_count,
            sigma_e: 20.0,
            p_two: 0.5,
            max_sep_px: 4,
            shift_px: 1,
            side: 16,
            input_scale: 1e-3,
            extra_mean: 0.0,
            extra_max: 0,
        }
    }

    /// Whether samples can hold extra electrons (`extra_mean > 0` and `extra_max > 0`).
    pub fn has_extras(&self) -> bool {
        self.extra_mean > 0.0 && self.extra_max > 0
    }

    /// Checks the ranges; both incidence pixels must fall inside the patch
    /// (`shift_px + max_sep_px <= (side - 1) / 2`).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid("pair samples", m));
        if self.ev_count == 0 {
            return bad("ev_count must be >= 1".into());
        }
        if self.ev_lo.checked_add(self.ev_count).is_none() {
            return bad(format!("event range {} + {} overflows u32", self.ev_lo, self.ev_count));
        }
        if !(0.0..=1.0).contains(&self.p_two) {
            return bad(format!("p_two {} must be in [0, 1]", self.p_two));
        }
        if !(self.sigma_e >= 0.0 && self.sigma_e.is_finite()) {
            return bad(format!("sigma_e {} must be >= 0", self.sigma_e));
        }
        if !(self.input_scale > 0.0 && self.input_scale.is_finite()) {
            return bad(format!("input_scale {} must be > 0", self.input_scale));
        }
        if self.max_sep_px == 0 {
            return bad("max_sep_px must be >= 1 (the second electron is never on the first's pixel)".into());
        }
        if self.side == 0 || self.shift_px as u64 + self.max_sep_px as u64 > ((self.side - 1) / 2) as u64 {
            return bad(format!(
                "shift_px {} + max_sep_px {} must be <= (side - 1) / 2 = {} so that both electrons land in the \
                 {}-px patch",
                self.shift_px,
                self.max_sep_px,
                self.side.saturating_sub(1) / 2,
                self.side
            ));
        }
        if !(self.extra_mean >= 0.0 && self.extra_mean.is_finite()) {
            return bad(format!("extra_mean {} must be finite and >= 0", self.extra_mean));
        }
        if self.extra_max > MAX_EXTRA {
            return bad(format!("extra_max {} must be <= {MAX_EXTRA}", self.extra_max));
        }
        let bw = 2 * self.max_sep_px as u64 + 1;
        if self.has_extras() && (self.side as u64).pow(2) <= bw * bw {
            return bad(format!(
                "no pixel of the {}-px patch is outside the {bw}x{bw} box around the first electron for extra \
                 electrons (max_sep_px {})",
                self.side, self.max_sep_px
            ));
        }
        Ok(())
    }
}

/// Mirrors `MakePairsParams` in shaders/net/make_pairs.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MakePairsParams {
    /// Samples in the batch.
    pub n: u32,
    /// Patch side, pixels.
    pub side: u32,
    /// Global index of the batch's first sample.
    pub first_lo: u32,
    pub first_hi: u32,
    pub key_lo: u32,
    pub key_hi: u32,
    pub ev_lo: u32,
    pub ev_count: u32,
    pub shift: u32,
    /// At least 1 (checked by [`MakePairsParams::new`]).
    pub max_sep: u32,
    pub p_two: f32,
    pub sigma_e: f32,
    pub input_scale: f32,
    /// Mean of the Poisson number of extra electrons per sample.
    pub extra_mean: f32,
    /// Cap on the number of extra electrons per sample (<= [`MAX_EXTRA`]).
    pub extra_max: u32,
    /// `exp(-extra_mean)` in f32, computed once on the host by [`MakePairsParams::new`] so that the
    /// twin and the kernel start the Poisson inversion from the same bits (WGSL's `exp` may differ
    /// from libm's by a few ulp).
    pub extra_p0: f32,
}
const _: () = assert!(std::mem::size_of::<MakePairsParams>() == 64);

impl MakePairsParams {
    /// Parameters for samples `first .. first + n` of `spec` (validated; the patch pixels of the
    /// batch must fit the kernel's u32 index).
    pub fn new(spec: &PairSpec, first: u64, n: usize) -> Result<Self> {
        spec.validate()?;
        let plane = spec.side as u64 * spec.side as u64;
        if (n as u64).saturating_mul(plane) > u32::MAX as u64 {
            return Err(Error::invalid("pair samples", format!("{n} patches of {plane} px: at most 2^32 - 1 pixels")));
        }
        let key = key_from_seed(spec.seed);
        Ok(Self {
            n: n as u32,
            side: spec.side,
            first_lo: first as u32,
            first_hi: (first >> 32) as u32,
            key_lo: key[0],
            key_hi: key[1],
            ev_lo: spec.ev_lo,
            ev_count: spec.ev_count,
            shift: spec.shift_px,
            max_sep: spec.max_sep_px,
            p_two: spec.p_two,
            sigma_e: spec.sigma_e,
            input_scale: spec.input_scale,
            extra_mean: spec.extra_mean,
            extra_max: spec.extra_max,
            extra_p0: (-spec.extra_mean).exp(),
        })
    }

    fn first(&self) -> u64 {
        self.first_lo as u64 | (self.first_hi as u64) << 32
    }
}

/// A batch: inputs `[n, 1, side, side]`; class `[n]` (0 = one electron, 1 = two); true points
/// `[n, 4]` = `(x1, y1, x2, y2)` in pixels relative to the centre of the patch's centre pixel,
/// x = column (for one electron `x2, y2 = x1, y1`); `sep_px` `[n]`, the distance between the two
/// points (0 for one electron).
#[derive(Clone, Debug, PartialEq)]
pub struct PairBatch {
    pub x: Vec<f32>,
    pub class: Vec<u32>,
    pub points: Vec<f32>,
    pub sep_px: Vec<f32>,
}

/// The random draws of sample `k`: two electrons?, both events, the first electron's shift from
/// the centre pixel and the second's offset from the first (drawn even when `two` is false).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairChoice {
    pub two: bool,
    pub ev1: u32,
    pub ev2: u32,
    pub sx: i32,
    pub sy: i32,
    pub ox: i32,
    pub oy: i32,
}

/// The draws of global sample `k` (twin of `pair_choice` in the shader).
#[inline]
pub fn pair_choice(p: &MakePairsParams, k: u64) -> PairChoice {
    let key = [p.key_lo, p.key_hi];
    let r0 = philox4x32_10(counter(0, k, streams::PAIRS), key);
    let r1 = philox4x32_10(counter(1, k, streams::PAIRS), key);
    let span = 2 * p.shift + 1;
    let m = p.max_sep;
    let ospan = 2 * m + 1;
    let mut u = below(r1[2], ospan * ospan - 1);
    if u >= m * ospan + m {
        u += 1; // skip (0, 0)
    }
    PairChoice {
        two: u01(r0[0]) < p.p_two,
        ev1: p.ev_lo + below(r0[1], p.ev_count),
        ev2: p.ev_lo + below(r0[2], p.ev_count),
        sx: below(r1[0], span) as i32 - p.shift as i32,
        sy: below(r1[1], span) as i32 - p.shift as i32,
        ox: (u % ospan) as i32 - m as i32,
        oy: (u / ospan) as i32 - m as i32,
    }
}

/// The number of extra electrons of global sample `k`: Poisson(`extra_mean`) by inversion, capped
/// at `extra_max` (see the module doc; twin of `extra_count` in the shader).
#[inline]
pub fn pair_extra_count(p: &MakePairsParams, k: u64) -> u32 {
    if p.extra_max == 0 {
        return 0;
    }
    let r = philox4x32_10(counter(EXTRA_COUNT_ITEM, k, streams::PAIRS), [p.key_lo, p.key_hi]);
    let u = u01(r[0]);
    let (mut j, mut pj, mut cdf) = (0u32, p.extra_p0, p.extra_p0);
    while j < p.extra_max && u >= cdf {
        j += 1;
        pj *= p.extra_mean / j as f32;
        cdf += pj;
    }
    j
}

/// Counter item of the number of extras; extra `j` uses `EXTRA_COUNT_ITEM + 1 + j`.
const EXTRA_COUNT_ITEM: u32 = 0x8000_0000;

/// The pixel `(col, row)` of index `u` (`< side^2 - (2 m + 1)^2`) over the patch pixels outside the
/// box of Chebyshev radius `m` around `(bx, by)` (which must lie inside the patch), numbered row by
/// row (twin of `extra_pixel` in the shader).
#[inline]
pub fn extra_pixel(u: u32, side: u32, bx: i32, by: i32, m: u32) -> (i32, i32) {
    let (m_i, bw) = (m as i32, 2 * m + 1);
    let top = (by - m_i) as u32 * side; // whole rows above the box
    if u < top {
        return ((u % side) as i32, (u / side) as i32);
    }
    let u = u - top;
    let w = side - bw; // allowed pixels in each row the box covers
    if u < bw * w {
        let c = (u % w) as i32;
        let col = if c < bx - m_i { c } else { c + bw as i32 };
        return (col, by - m_i + (u / w) as i32);
    }
    let u = u - bw * w;
    ((u % side) as i32, by + m_i + 1 + (u / side) as i32)
}

/// The extra electrons of global sample `k`, extra 0 first: `(event, col, row)` of each one's
/// incidence pixel in the patch (twin of the kernel's extras loop).
pub fn pair_extras(p: &MakePairsParams, k: u64) -> Vec<(u32, i32, i32)> {
    let count = pair_extra_count(p, k);
    if count == 0 {
        return vec![];
    }
    let key = [p.key_lo, p.key_hi];
    let c = pair_choice(p, k);
    let c0 = (p.side / 2) as i32;
    let bw = 2 * p.max_sep + 1;
    let allowed = p.side * p.side - bw * bw;
    (0..count)
        .map(|j| {
            let r = philox4x32_10(counter(EXTRA_COUNT_ITEM + 1 + j, k, streams::PAIRS), key);
            let ev = p.ev_lo + below(r[0], p.ev_count);
            let (col, row) = extra_pixel(below(r[1], allowed), p.side, c0 + c.sx, c0 + c.sy, p.max_sep);
            (ev, col, row)
        })
        .collect()
}

fn check_library(p: &MakePairsParams, n_events: usize) {
    assert!(
        p.ev_lo as u64 + p.ev_count as u64 <= n_events as u64,
        "events [{}, {}) are not all in the library ({n_events} events)",
        p.ev_lo,
        p.ev_lo as u64 + p.ev_count as u64
    );
}

/// CPU twin of `net/make_pairs`.
pub fn make_pairs_cpu(p: &MakePairsParams, lib: &LibraryArrays) -> PairBatch {
    check_library(p, lib.offsets.len() - 1);
    let (n, side) = (p.n as usize, p.side as usize);
    let plane = side * side;
    let key = [p.key_lo, p.key_hi];
    let c0 = (side / 2) as i32;
    let mut x = vec![0.0f32; n * plane];
    let mut class = vec![0u32; n];
    let mut points = vec![0.0f32; 4 * n];
    let mut sep_px = vec![0.0f32; n];
    for s in 0..n {
        let k = p.first() + s as u64;
        let c = pair_choice(p, k);
        let extras = pair_extras(p, k);
        let ev_range = |ev: u32| lib.offsets[ev as usize] as usize..lib.offsets[ev as usize + 1] as usize;
        let img = &mut x[s * plane..(s + 1) * plane];
        for (pix, v) in img.iter_mut().enumerate() {
            let (col, row) = ((pix % side) as i32, (pix / side) as i32);
            let mut q = 0.0f32;
            for j in ev_range(c.ev1) {
                if c0 + c.sx + lib.dxdy[2 * j] == col && c0 + c.sy + lib.dxdy[2 * j + 1] == row {
                    q += lib.charge[j];
                }
            }
            if c.two {
                for j in ev_range(c.ev2) {
                    if c0 + c.sx + c.ox + lib.dxdy[2 * j] == col && c0 + c.sy + c.oy + lib.dxdy[2 * j + 1] == row {
                        q += lib.charge[j];
                    }
                }
            }
            for &(ev, ex, ey) in &extras {
                for j in ev_range(ev) {
                    if ex + lib.dxdy[2 * j] == col && ey + lib.dxdy[2 * j + 1] == row {
                        q += lib.charge[j];
                    }
                }
            }
            let r = philox4x32_10(counter(2 + (pix / 4) as u32, k, streams::PAIRS), key);
            let z = block_normal(r, pix % 4);
            *v = (q + p.sigma_e * z) * p.input_scale;
        }
        let inc = |ev: u32, axis: usize| lib.incidence[2 * ev as usize + axis];
        let x1 = ((c0 + c.sx) as f32 + inc(c.ev1, 0)) - c0 as f32 - 0.5;
        let y1 = ((c0 + c.sy) as f32 + inc(c.ev1, 1)) - c0 as f32 - 0.5;
        let (mut x2, mut y2, mut d) = (x1, y1, 0.0f32);
        if c.two {
            x2 = ((c0 + c.sx + c.ox) as f32 + inc(c.ev2, 0)) - c0 as f32 - 0.5;
            y2 = ((c0 + c.sy + c.oy) as f32 + inc(c.ev2, 1)) - c0 as f32 - 0.5;
            let (ddx, ddy) = (x2 - x1, y2 - y1);
            d = (ddx * ddx + ddy * ddy).sqrt();
        }
        class[s] = c.two as u32;
        points[4 * s..4 * s + 4].copy_from_slice(&[x1, y1, x2, y2]);
        sep_px[s] = d;
    }
    PairBatch { x, class, points, sep_px }
}

/// Records `net/make_pairs`: one invocation per patch pixel; the first pixel's invocation also
/// writes the sample's class, points and separation. Outputs: `x` `[n, 1, side, side]` f32,
/// `class` `[n]` u32, `points` `[n, 4]` f32, `sep` `[n]` f32.
#[allow(clippy::too_many_arguments)]
pub fn make_pairs_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    p: &MakePairsParams,
    lib: &LibraryBuffers,
    x: &wgpu::Buffer,
    class: &wgpu::Buffer,
    points: &wgpu::Buffer,
    sep: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let n = p.n as u64;
    let px = n * (p.side as u64 * p.side as u64);
    check_library(p, (lib.offsets.size() / 4).saturating_sub(1) as usize);
    for (name, buf, bytes) in
        [("x", x, px * 4), ("class", class, n * 4), ("points", points, n * 16), ("sep", sep, n * 4)]
    {
        assert!(buf.size() >= bytes, "make_pairs: buffer {name} has {} bytes, needs {bytes}", buf.size());
    }
    let u = ctx.uniform("make_pairs_params", p);
    ctx.dispatch(
        enc,
        &shaders::NET_MAKE_PAIRS,
        &[&[("params", &u)][..], &lib.bindings(), &[("x", x), ("class_", class), ("points", points), ("sep", sep)]]
            .concat(),
        px,
    )
}

/// Test wrapper: uploads the library, fills the outputs with garbage, records, reads back.
#[cfg(feature = "testing")]
pub fn make_pairs_gpu(ctx: &GpuContext, p: &MakePairsParams, lib: &LibraryArrays) -> Result<PairBatch> {
    let n = p.n as usize;
    let px = n * (p.side * p.side) as usize;
    if n == 0 {
        return Ok(PairBatch { x: vec![], class: vec![], points: vec![], sep_px: vec![] });
    }
    let lb = LibraryBuffers::upload(ctx, lib)?;
    let x = ctx.upload("x", &vec![-12345.0f32; px])?;
    let class = ctx.upload("class", &vec![u32::MAX; n])?;
    let points = ctx.upload("points", &vec![-12345.0f32; 4 * n])?;
    let sep = ctx.upload("sep", &vec![-12345.0f32; n])?;
    let mut enc = ctx.encoder("make_pairs");
    make_pairs_record(ctx, &mut enc, p, &lb, &x, &class, &points, &sep)?;
    let r1 = ctx.readback(&mut enc, &x, (px * 4) as u64);
    let r2 = ctx.readback(&mut enc, &class, (n * 4) as u64);
    let r3 = ctx.readback(&mut enc, &points, (n * 16) as u64);
    let r4 = ctx.readback(&mut enc, &sep, (n * 4) as u64);
    ctx.submit_and_wait(enc)?;
    Ok(PairBatch { x: r1.read(ctx)?, class: r2.read(ctx)?, points: r3.read(ctx)?, sep_px: r4.read(ctx)? })
}

/// Histogram of the separations of the two-electron samples (`class == 1`; one-electron samples
/// are not counted), for reporting the distribution used. `bins` are ascending edges `e_0 < e_1 <
/// ... < e_m`; the result has `m + 2` counts: `[0]` below `e_0`, `[i]` in `[e_{i-1}, e_i)` for
/// `i = 1..=m`, `[m + 1]` at or above `e_m`, so that no sample is silently dropped.
pub fn separation_histogram(sep: &[f32], class: &[u32], bins: &[f32]) -> Vec<u64> {
    assert_eq!(sep.len(), class.len(), "separation_histogram: sep and class lengths differ");
    assert!(!bins.is_empty(), "separation_histogram: no bin edges");
    assert!(bins.windows(2).all(|w| w[0] < w[1]), "separation_histogram: bin edges must be strictly ascending");
    let mut counts = vec![0u64; bins.len() + 1];
    for (&d, _) in sep.iter().zip(class).filter(|(_, c)| **c == 1) {
        // number of edges <= d (NaN counts as overflow)
        let i = if d.is_nan() { bins.len() } else { bins.partition_point(|&e| e <= d) };
        counts[i] += 1;
    }
    counts
}

impl ModelConfig {
    /// The pair-sample spec of this model (`pairs` must be set; else a one-electron spec) for events
    /// `[ev_lo, ev_lo + ev_count)` and read noise `sigma_e`.
    pub fn pair_spec(&self, seed: u64, ev_lo: u32, ev_count: u32, sigma_e: f32) -> PairSpec {
        let p = self.pairs.unwrap_or(PairSamples { p_two: 0.0, max_sep_px: 1, extra_mean: 0.0, extra_max: 0 });
        PairSpec {
            sigma_e,
            p_two: p.p_two,
            max_sep_px: p.max_sep_px,
            shift_px: self.shift_px as u32,
            side: self.input_px as u32,
            input_scale: self.input_scale,
            extra_mean: p.extra_mean,
            extra_max: p.extra_max,
            ..PairSpec::new(seed, ev_lo, ev_count)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_edges_and_classes() {
        let sep = [0.0, 0.5, 1.0, 1.5, 2.0, 9.0, 1.2, -1.0];
        let class = [0, 1, 1, 1, 1, 1, 0, 1];
        // below 1: {0.5, -1}; [1, 2): {1.0, 1.5}; >= 2: {2.0, 9.0}
        assert_eq!(separation_histogram(&sep, &class, &[1.0, 2.0]), vec![2, 2, 2]);
        assert_eq!(separation_histogram(&sep, &class, &[0.0, 1.0, 1.5, 3.0]), vec![1, 1, 1, 2, 1]);
        assert_eq!(separation_histogram(&[], &[], &[0.0]), vec![0, 0]);
    }

    #[test]
    fn spec_validation() {
        let ok = PairSpec::new(1, 0, 10);
        assert!(ok.validate().is_ok());
        assert!(PairSpec { max_sep_px: 0, ..ok }.validate().is_err());
        assert!(PairSpec { p_two: 1.5, ..ok }.validate().is_err());
        assert!(PairSpec { ev_count: 0, ..ok }.validate().is_err());
        assert!(PairSpec { shift_px: 3, max_sep_px: 5, ..ok }.validate().is_err()); // 8 > 7
        assert!(PairSpec { shift_px: 3, max_sep_px: 4, ..ok }.validate().is_ok());
        assert!(PairSpec { side: 11, shift_px: 0, max_sep_px: 5, ..ok }.validate().is_ok());
        assert!(PairSpec { side: 11, shift_px: 1, max_sep_px: 5, ..ok }.validate().is_err());
        assert!(PairSpec { side: 0, ..ok }.validate().is_err());
        assert!(MakePairsParams::new(&PairSpec { side: 4095, max_sep_px: 1, ..ok }, 0, 300).is_err());
        // extras
        let ex = PairSpec { extra_mean: 1.5, extra_max: 4, ..ok };
        assert!(ex.validate().is_ok());
        assert!(PairSpec { extra_mean: -0.1, ..ex }.validate().is_err());
        assert!(PairSpec { extra_mean: f32::NAN, ..ex }.validate().is_err());
        assert!(PairSpec { extra_mean: f32::INFINITY, ..ex }.validate().is_err());
        assert!(PairSpec { extra_max: 17, ..ex }.validate().is_err());
        assert!(PairSpec { extra_max: 16, ..ex }.validate().is_ok());
        // side 11, max_sep 5: the 11x11 box is the whole patch, no room for extras
        let full = PairSpec { side: 11, shift_px: 0, max_sep_px: 5, ..ex };
        assert!(full.validate().is_err());
        assert!(PairSpec { extra_max: 0, ..full }.validate().is_ok());
        assert!(PairSpec { extra_mean: 0.0, ..full }.validate().is_ok());
        assert!(PairSpec { side: 12, ..full }.validate().is_ok());
    }

    /// `extra_pixel` enumerates exactly the pixels outside the box, once each, row by row.
    #[test]
    fn extra_pixel_enumerates_the_pixels_outside_the_box() {
        for (side, m, shifts) in [(16u32, 2u32, 1i32), (11, 3, 2), (5, 1, 1), (12, 5, 0), (7, 2, 1)] {
            let c0 = (side / 2) as i32;
            let bw = 2 * m + 1;
            for sy in -shifts..=shifts {
                for sx in -shifts..=shifts {
                    let (bx, by) = (c0 + sx, c0 + sy);
                    let want: Vec<(i32, i32)> = (0..side as i32)
                        .flat_map(|row| (0..side as i32).map(move |col| (col, row)))
                        .filter(|&(col, row)| (col - bx).abs().max((row - by).abs()) > m as i32)
                        .collect();
                    let got: Vec<(i32, i32)> =
                        (0..side * side - bw * bw).map(|u| extra_pixel(u, side, bx, by, m)).collect();
                    assert_eq!(got, want, "side {side} m {m} box centre ({bx}, {by})");
                }
            }
        }
    }

    /// No extras when `extra_max` or `extra_mean` is 0; the count never exceeds the cap.
    #[test]
    fn extra_count_respects_zero_and_the_cap() {
        let base = PairSpec { extra_mean: 3.0, extra_max: 2, ..PairSpec::new(9, 0, 10) };
        let capped = MakePairsParams::new(&base, 0, 1).unwrap();
        let none_max = MakePairsParams::new(&PairSpec { extra_max: 0, ..base }, 0, 1).unwrap();
        let none_mean = MakePairsParams::new(&PairSpec { extra_mean: 0.0, extra_max: 16, ..base }, 0, 1).unwrap();
        let mut at_cap = 0;
        for k in 0..2000 {
            assert_eq!(pair_extra_count(&none_max, k), 0);
            assert_eq!(pair_extra_count(&none_mean, k), 0);
            assert!(pair_extras(&none_mean, k).is_empty());
            let c = pair_extra_count(&capped, k);
            assert!(c <= 2);
            at_cap += (c == 2) as u32;
            assert_eq!(pair_extras(&capped, k).len(), c as usize);
        }
        // P(Poisson(3) >= 2) = 0.80
        assert!(at_cap > 1400 && at_cap < 1800, "{at_cap} of 2000 at the cap");
    }

    /// Every offset of `[-m, m]^2` but `(0, 0)` is drawn, and the shifts cover `[-shift, shift]`.
    #[test]
    fn choices_cover_their_ranges() {
        let spec = PairSpec { max_sep_px: 2, shift_px: 3, ..PairSpec::new(5, 10, 7) };
        let p = MakePairsParams::new(&spec, 0, 1).unwrap();
        let mut offsets = std::collections::HashSet::new();
        let mut shifts = std::collections::HashSet::new();
        let mut events = std::collections::HashSet::new();
        for k in 0..5000 {
            let c = pair_choice(&p, k);
            assert!(c.ox.abs() <= 2 && c.oy.abs() <= 2 && (c.ox, c.oy) != (0, 0), "{c:?}");
            assert!(c.sx.abs() <= 3 && c.sy.abs() <= 3, "{c:?}");
            assert!((10..17).contains(&c.ev1) && (10..17).contains(&c.ev2), "{c:?}");
            offsets.insert((c.ox, c.oy));
            shifts.insert((c.sx, c.sy));
            events.insert(c.ev1);
            events.insert(c.ev2);
        }
        assert_eq!(offsets.len(), 24);
        assert_eq!(shifts.len(), 49);
        assert_eq!(events.len(), 7);
    }
}
