//! Training samples made from an event library: a random event dropped in a crop at a random integer
//! shift from the centre, read noise added, and its labels. Twin of the kernel `net/make_batch`.
//!
//! Sample `k` (a global index: the same sample whatever the batch size or device) uses the counter
//! `(0, k, TRAIN)` for its event and shift, and `(1 + g, k, TRAIN)` for the noise of its pixels
//! `4g .. 4g + 3`. Held-out (validation) samples use indices from [`VALIDATION_BASE`] and events from
//! the library's held-out range.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::model::{Head, ModelConfig};
use crate::gpu::{GpuContext, GpuError};
use crate::io::library::EventLibrary;
use crate::rng::{below, counter, gauss_pair, key_from_seed, philox4x32_10, streams};
use crate::shaders;
use crate::{Error, Result};

/// First sample index of the validation stream (disjoint from training indices).
pub const VALIDATION_BASE: u64 = 1 << 40;

/// Mirrors `MakeBatchParams` in shaders/net/make_batch.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MakeBatchParams {
    /// Samples in the batch.
    pub n: u32,
    /// Crop side, pixels.
    pub side: u32,
    pub first_lo: u32,
    pub first_hi: u32,
    pub key_lo: u32,
    pub key_hi: u32,
    /// Events are drawn from `[ev_lo, ev_lo + ev_count)`.
    pub ev_lo: u32,
    pub ev_count: u32,
    /// Shifts are uniform integers in `[-shift, shift]`.
    pub shift: u32,
    /// Grid side in cells (0: regression head, label 0).
    pub grid_cells: u32,
    pub cells_per_px: f32,
    /// Crop coordinate of the grid's left/top edge.
    pub grid_origin: f32,
    pub sigma_e: f32,
    pub input_scale: f32,
    pub _pad0: u32,
    pub _pad1: u32,
}
const _: () = assert!(std::mem::size_of::<MakeBatchParams>() == 64);

/// Where samples come from: which events, which noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleSpec {
    pub seed: u64,
    pub ev_lo: u32,
    pub ev_count: u32,
    pub sigma_e: f32,
}

impl MakeBatchParams {
    pub fn new(cfg: &ModelConfig, spec: &SampleSpec, first: u64, n: usize) -> Self {
        let key = key_from_seed(spec.seed);
        let (grid_cells, cells_per_px) = match cfg.head {
            Head::Grid { cells_per_px, span_px } => ((cells_per_px * span_px) as u32, cells_per_px as f32),
            _ => (0, 1.0),
        };
        MakeBatchParams {
            n: n as u32,
            side: cfg.input_px as u32,
            first_lo: first as u32,
            first_hi: (first >> 32) as u32,
            key_lo: key[0],
            key_hi: key[1],
            ev_lo: spec.ev_lo,
            ev_count: spec.ev_count,
            shift: cfg.shift_px as u32,
            grid_cells,
            cells_per_px,
            grid_origin: cfg.grid_origin_px(),
            sigma_e: spec.sigma_e,
            input_scale: cfg.input_scale,
            _pad0: 0,
            _pad1: 0,
        }
    }
}

/// A batch: inputs `[n, 1, side, side]`, grid labels `[n]`, true points `[n, 2]` (crop pixels,
/// x = column, relative to the centre of the centre pixel).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub x: Vec<f32>,
    pub labels: Vec<u32>,
    pub target: Vec<f32>,
}

/// The library as the kernel reads it: CSR offsets (u32), pixel offsets interleaved `(dx, dy)`,
/// charges, incidence points interleaved `(x, y)`.
pub struct LibraryArrays {
    pub offsets: Vec<u32>,
    pub dxdy: Vec<i32>,
    pub charge: Vec<f32>,
    pub incidence: Vec<f32>,
}

impl LibraryArrays {
    pub fn new(lib: &EventLibrary) -> Result<Self> {
        if lib.is_empty() {
            return Err(Error::invalid("--library", "the event library has no events"));
        }
        let total = *lib.offsets.last().unwrap();
        if total > u32::MAX as u64 {
            return Err(Error::invalid("--library", format!("{total} pixels: at most 2^32 supported")));
        }
        Ok(Self {
            offsets: lib.offsets.iter().map(|&o| o as u32).collect(),
            dxdy: lib.dx_px.iter().zip(&lib.dy_px).flat_map(|(&x, &y)| [x, y]).collect(),
            charge: lib.charge_e.clone(),
            incidence: lib.incidence_x_px.iter().zip(&lib.incidence_y_px).flat_map(|(&x, &y)| [x, y]).collect(),
        })
    }
}

/// Event and shift of sample `k`.
#[inline]
fn sample_choice(p: &MakeBatchParams, k: u64) -> (u32, i32, i32) {
    let key = [p.key_lo, p.key_hi];
    let r = philox4x32_10(counter(0, k, streams::TRAIN), key);
    let ev = p.ev_lo + below(r[0], p.ev_count);
    let span = 2 * p.shift + 1;
    (ev, below(r[1], span) as i32 - p.shift as i32, below(r[2], span) as i32 - p.shift as i32)
}

/// CPU twin of `net/make_batch`. Samples are made in parallel (rayon, one task per sample); each
/// sample's values depend only on its index, so the batch does not depend on the thread count.
/// Per pixel, the event's charges that land on it are added in the library's order, starting
/// from 0, as the kernel does (scattered here rather than gathered: the same sums, bit for bit).
pub fn make_batch_cpu(p: &MakeBatchParams, lib: &LibraryArrays) -> Batch {
    let (n, side) = (p.n as usize, p.side as usize);
    let plane = side * side;
    let key = [p.key_lo, p.key_hi];
    let first = p.first_lo as u64 | (p.first_hi as u64) << 32;
    let c0 = (side / 2) as i32;
    let mut x = vec![0.0f32; n * plane];
    let mut labels = vec![0u32; n];
    let mut target = vec![0.0f32; 2 * n];
    x.par_chunks_mut(plane.max(1)).zip(labels.par_iter_mut().zip(target.par_chunks_mut(2))).enumerate().for_each(
        |(s, (img, (label, t)))| {
            let k = first + s as u64;
            let (ev, sx, sy) = sample_choice(p, k);
            let (lo, hi) = (lib.offsets[ev as usize] as usize, lib.offsets[ev as usize + 1] as usize);
            // The charge per pixel (img is all zeros here).
            for j in lo..hi {
                let (col, row) = (c0 + sx + lib.dxdy[2 * j], c0 + sy + lib.dxdy[2 * j + 1]);
                if (0..side as i32).contains(&col) && (0..side as i32).contains(&row) {
                    img[row as usize * side + col as usize] += lib.charge[j];
                }
            }
            // Read noise: pixels 4g .. 4g + 3 take the two Gaussian pairs of Philox call g.
            for (g, px) in img.chunks_mut(4).enumerate() {
                let r = philox4x32_10(counter(1 + g as u32, k, streams::TRAIN), key);
                let (z0, z1) = gauss_pair(r[0], r[1]);
                let (z2, z3) = gauss_pair(r[2], r[3]);
                for (v, z) in px.iter_mut().zip([z0, z1, z2, z3]) {
                    *v = (*v + p.sigma_e * z) * p.input_scale;
                }
            }
            let tx = (c0 + sx) as f32 + lib.incidence[2 * ev as usize];
            let ty = (c0 + sy) as f32 + lib.incidence[2 * ev as usize + 1];
            t[0] = tx - c0 as f32 - 0.5;
            t[1] = ty - c0 as f32 - 0.5;
            *label = grid_label(p, tx, ty);
        },
    );
    Batch { x, labels, target }
}

/// The grid cell holding crop point `(tx, ty)` (clamped to the grid), row-major.
#[inline]
pub fn grid_label(p: &MakeBatchParams, tx: f32, ty: f32) -> u32 {
    if p.grid_cells == 0 {
        return 0;
    }
    let g = p.grid_cells as i32;
    let cx = (((tx - p.grid_origin) * p.cells_per_px).floor() as i32).clamp(0, g - 1);
    let cy = (((ty - p.grid_origin) * p.cells_per_px).floor() as i32).clamp(0, g - 1);
    (cy * g + cx) as u32
}

/// Mirrors `GridLabelParams` in shaders/net/grid_label.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GridLabelParams {
    pub n: u32,
    /// Values per sample in `points` (the point is the first two).
    pub stride: u32,
    pub grid_cells: u32,
    pub cells_per_px: f32,
    /// The grid's left/top edge relative to the centre of the crop's centre pixel, pixels.
    pub origin: f32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}
const _: () = assert!(std::mem::size_of::<GridLabelParams>() == 32);

impl GridLabelParams {
    /// For `cfg`'s grid head (panics on another head), `n` samples of `stride` values.
    pub fn new(cfg: &ModelConfig, n: usize, stride: usize) -> Self {
        let Head::Grid { cells_per_px, .. } = cfg.head else { panic!("grid labels for a grid head only") };
        Self {
            n: n as u32,
            stride: stride as u32,
            grid_cells: cfg.grid_cells() as u32,
            cells_per_px: cells_per_px as f32,
            origin: cfg.grid_origin_px() - (cfg.input_px / 2) as f32 - 0.5,
            ..Default::default()
        }
    }
}

/// CPU twin of `net/grid_label`: the grid cell of each sample's point (relative to the centre of
/// the centre pixel), clamped to the grid.
pub fn grid_label_points_cpu(p: &GridLabelParams, points: &[f32], labels: &mut [u32]) {
    let g = p.grid_cells as i32;
    for i in 0..p.n as usize {
        let (x, y) = (points[i * p.stride as usize], points[i * p.stride as usize + 1]);
        let cx = (((x - p.origin) * p.cells_per_px).floor() as i32).clamp(0, g - 1);
        let cy = (((y - p.origin) * p.cells_per_px).floor() as i32).clamp(0, g - 1);
        labels[i] = (cy * g + cx) as u32;
    }
}

/// Records `net/grid_label` (one thread per sample).
pub fn grid_label_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    p: &GridLabelParams,
    points: &wgpu::Buffer,
    labels: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let u = ctx.uniform("grid_label_params", p);
    ctx.dispatch(enc, &shaders::NET_GRID_LABEL, &[("params", &u), ("points", points), ("labels", labels)], p.n as u64)
}

/// Test wrapper.
#[cfg(feature = "testing")]
pub fn grid_label_gpu(ctx: &GpuContext, p: &GridLabelParams, points: &[f32]) -> crate::Result<Vec<u32>> {
    let n = p.n as usize;
    let pb = ctx.upload("points", points)?;
    let lb = ctx.upload("labels", &vec![u32::MAX; n.max(1)])?;
    let mut enc = ctx.encoder("grid_label");
    grid_label_record(ctx, &mut enc, p, &pb, &lb)?;
    let r = ctx.readback(&mut enc, &lb, (n * 4) as u64);
    ctx.submit_and_wait(enc)?;
    Ok(r.read(ctx)?)
}

/// The library on the GPU.
pub struct LibraryBuffers {
    pub offsets: wgpu::Buffer,
    pub dxdy: wgpu::Buffer,
    pub charge: wgpu::Buffer,
    pub incidence: wgpu::Buffer,
}

impl LibraryBuffers {
    pub fn upload(ctx: &GpuContext, lib: &LibraryArrays) -> Result<Self, GpuError> {
        Ok(Self {
            offsets: ctx.upload("lib_offsets", &lib.offsets)?,
            dxdy: ctx.upload("lib_dxdy", &lib.dxdy)?,
            charge: ctx.upload("lib_charge", &lib.charge)?,
            incidence: ctx.upload("lib_incidence", &lib.incidence)?,
        })
    }

    /// The library's bindings by their names in the kernels that read it (`net/make_batch`,
    /// `net/make_pairs`).
    pub fn bindings(&self) -> [(&'static str, &wgpu::Buffer); 4] {
        [("offsets", &self.offsets), ("dxdy", &self.dxdy), ("charge", &self.charge), ("incidence", &self.incidence)]
    }
}

/// Records `net/make_batch`: one invocation per crop pixel; the first pixel's invocation also
/// writes the sample's label and target.
#[allow(clippy::too_many_arguments)]
pub fn make_batch_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    p: &MakeBatchParams,
    lib: &LibraryBuffers,
    x: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    target: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let u = ctx.uniform("make_batch_params", p);
    ctx.dispatch(
        enc,
        &shaders::NET_MAKE_BATCH,
        &[&[("params", &u)][..], &lib.bindings(), &[("x", x), ("labels", labels), ("target_", target)]].concat(),
        p.n as u64 * (p.side * p.side) as u64,
    )
}

/// Test wrapper.
#[cfg(feature = "testing")]
pub fn make_batch_gpu(ctx: &GpuContext, p: &MakeBatchParams, lib: &LibraryArrays) -> crate::Result<Batch> {
    let n = p.n as usize;
    let px = n * (p.side * p.side) as usize;
    let lb = LibraryBuffers::upload(ctx, lib)?;
    let x = ctx.upload("x", &vec![-12345.0f32; px])?;
    let labels = ctx.upload("labels", &vec![u32::MAX; n])?;
    let target = ctx.upload("target", &vec![-12345.0f32; 2 * n])?;
    let mut enc = ctx.encoder("make_batch");
    make_batch_record(ctx, &mut enc, p, &lb, &x, &labels, &target)?;
    let r1 = ctx.readback(&mut enc, &x, (px * 4) as u64);
    let r2 = ctx.readback(&mut enc, &labels, (n * 4) as u64);
    let r3 = ctx.readback(&mut enc, &target, (n * 8) as u64);
    ctx.submit_and_wait(enc)?;
    Ok(Batch { x: r1.read(ctx)?, labels: r2.read(ctx)?, target: r3.read(ctx)? })
}

/// `--holdout` must be a fraction in (0, 1).
pub fn check_holdout(holdout: f32) -> Result<()> {
    if !(holdout > 0.0 && holdout < 1.0) {
        return Err(Error::invalid("--holdout", format!("{holdout}: expected a fraction in (0, 1)")));
    }
    Ok(())
}

/// How many of `n` items (events, frames) the fraction `holdout` holds out: at least one, and
/// `None` unless at least one is left for training.
pub fn n_held_out(n: usize, holdout: f32) -> Option<usize> {
    let n_val = ((n as f64 * holdout as f64).round() as usize).max(1);
    (n >= 2 && n_val < n).then_some(n_val)
}
