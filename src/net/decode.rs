//! From network outputs to positions. For the grid head: the arg-max cell's centre, the
//! probability-weighted mean over the cells within one pixel of the peak, and the spread
//! `sigma = sqrt(sx^2 + sy^2)` of the whole predicted distribution (the EMSim notes' "knob": a cut
//! on sigma trades efficiency for accuracy). Positions are in pixels relative to the centre of the
//! crop's centre pixel, x = column.

use rayon::prelude::*;

use super::loss::softmax_cpu;
use super::model::{Head, ModelConfig};

/// One sample's decoded output.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Decoded {
    /// Arg-max cell centre.
    pub argmax_xy: [f32; 2],
    /// Probability-weighted mean near the peak (the position we report).
    pub mean_xy: [f32; 2],
    /// Spread of the distribution, pixels (0 for the regression head).
    pub sigma_px: f32,
    /// Probability of the arg-max cell (1 for the regression head).
    pub p_max: f32,
}

/// Decodes `n` rows of network outputs.
pub fn decode(cfg: &ModelConfig, out: &[f32], n: usize) -> Vec<Decoded> {
    match cfg.head {
        // Not positions: `class_probs` decodes this head.
        Head::Classes { .. } => vec![Decoded::default(); n],
        // Regression: the (first) point as it is.
        Head::Xy | Head::Pair => out
            .chunks_exact(cfg.head_outputs())
            .take(n)
            .map(|r| Decoded { argmax_xy: [r[0], r[1]], mean_xy: [r[0], r[1]], sigma_px: 0.0, p_max: 1.0 })
            .collect(),
        Head::Grid { .. } => {
            // the grid's geometry as the kernel `net/decode_grid` gets it
            let gp = DecodeGridParams::new(cfg, n).expect("grid head");
            let g = gp.g as usize;
            let k = g * g;
            let centre = |i: usize| gp.origin + (i as f32 + 0.5) * gp.cell;
            // Rows are independent: decoded in parallel, each with its own softmax (the same
            // numbers as one softmax over all rows).
            out[..n * k]
                .par_chunks_exact(k)
                .map_init(
                    || vec![0.0f32; k],
                    |p, logits| {
                        softmax_cpu(1, k, logits, p);
                        let p = &p[..];
                        // the first maximum of the logits, as the kernel takes it (two logits a
                        // hair apart can round to the same probability)
                        let (mut best, mut arg) = (f32::NEG_INFINITY, 0usize);
                        for (i, &v) in logits.iter().enumerate() {
                            if v > best {
                                best = v;
                                arg = i;
                            }
                        }
                        let (mut mx, mut my, mut mxx, mut myy) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
                        for (i, &v) in p.iter().enumerate() {
                            let (x, y) = (centre(i % g) as f64, centre(i / g) as f64);
                            mx += v as f64 * x;
                            my += v as f64 * y;
                            mxx += v as f64 * x * x;
                            myy += v as f64 * y * y;
                        }
                        let (ax, ay) = (arg % g, arg / g);
                        let r = gp.radius as isize;
                        let (mut w, mut wx, mut wy) = (0.0f64, 0.0f64, 0.0f64);
                        for cy in (ay as isize - r).max(0)..=(ay as isize + r).min(g as isize - 1) {
                            for cx in (ax as isize - r).max(0)..=(ax as isize + r).min(g as isize - 1) {
                                let v = p[cy as usize * g + cx as usize] as f64;
                                w += v;
                                wx += v * centre(cx as usize) as f64;
                                wy += v * centre(cy as usize) as f64;
                            }
                        }
                        let var = (mxx - mx * mx).max(0.0) + (myy - my * my).max(0.0);
                        Decoded {
                            argmax_xy: [centre(ax), centre(ay)],
                            mean_xy: if w > 0.0 {
                                [(wx / w) as f32, (wy / w) as f32]
                            } else {
                                [centre(ax), centre(ay)]
                            },
                            sigma_px: var.sqrt() as f32,
                            p_max: p[arg],
                        }
                    },
                )
                .collect()
        }
    }
}

/// Mirrors `DecodeGridParams` in shaders/net/decode_grid.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DecodeGridParams {
    pub n: u32,
    /// Cells per side.
    pub g: u32,
    /// Cells per pixel: the local mean's half-width in cells.
    pub radius: u32,
    pub _pad0: u32,
    /// Cell i's centre is `origin + (i + 0.5) * cell` pixels.
    pub origin: f32,
    pub cell: f32,
    pub _pad1: u32,
    pub _pad2: u32,
}
const _: () = assert!(std::mem::size_of::<DecodeGridParams>() == 32);

/// Floats per sample that `net/decode_grid` writes.
pub const DECODED_FLOATS: usize = 6;

impl DecodeGridParams {
    /// For `n` samples of a grid-head model; None for other heads.
    pub fn new(cfg: &ModelConfig, n: usize) -> Option<Self> {
        match cfg.head {
            Head::Grid { cells_per_px, .. } => Some(Self {
                n: n as u32,
                g: cfg.grid_cells() as u32,
                radius: cells_per_px as u32,
                origin: cfg.grid_origin_px() - (cfg.input_px / 2) as f32 - 0.5,
                cell: 1.0 / cells_per_px as f32,
                ..Default::default()
            }),
            _ => None,
        }
    }
}

/// Records `net/decode_grid` (GPU twin of [`decode`] for the grid head): `logits` `[n, g*g]` to
/// `out` `[n, 6]`.
pub fn decode_grid_record(
    ctx: &crate::gpu::GpuContext,
    enc: &mut wgpu::CommandEncoder,
    p: &DecodeGridParams,
    logits: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<(), crate::gpu::GpuError> {
    if p.n == 0 {
        return Ok(());
    }
    let u = ctx.uniform("decode_grid_params", p);
    ctx.dispatch(enc, &crate::shaders::NET_DECODE_GRID, &[("params", &u), ("logits", logits), ("out", out)], p.n as u64)
}

/// The rows `net/decode_grid` wrote, as [`Decoded`] values.
pub fn from_decoded_rows(rows: &[f32]) -> Vec<Decoded> {
    rows.chunks_exact(DECODED_FLOATS)
        .map(|r| Decoded { argmax_xy: [r[0], r[1]], mean_xy: [r[2], r[3]], sigma_px: r[4], p_max: r[5] })
        .collect()
}

/// Classifier head: per sample, the softmax probability of each class (`[n, classes]`).
pub fn class_probs(cfg: &ModelConfig, out: &[f32], n: usize) -> Vec<f32> {
    let k = cfg.head_outputs();
    let mut probs = vec![0.0f32; n * k];
    softmax_cpu(n, k, &out[..n * k], &mut probs);
    probs
}

/// Mean distance of two predicted points `(x1, y1, x2, y2)` to two true ones under the better of
/// the two assignments (the pair head's error per electron).
pub fn pair_error_px(pred: &[f32], truth: &[f32]) -> f64 {
    let d = |ax: f32, ay: f32, bx: f32, by: f32| (((ax - bx) as f64).powi(2) + ((ay - by) as f64).powi(2)).sqrt();
    let straight = d(pred[0], pred[1], truth[0], truth[1]) + d(pred[2], pred[3], truth[2], truth[3]);
    let swapped = d(pred[0], pred[1], truth[2], truth[3]) + d(pred[2], pred[3], truth[0], truth[1]);
    straight.min(swapped) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peaked_distribution_decodes_to_its_cell() {
        let cfg = ModelConfig::preset("fast").unwrap(); // 24x24 cells over 3x3 px, 8 per px
        let g = cfg.grid_cells();
        let mut logits = vec![-20.0f32; g * g];
        // cell (13, 10): x centre = -1.5 + 13.5/8 = 0.1875, y = -1.5 + 10.5/8 = -0.1875
        logits[10 * g + 13] = 20.0;
        let d = decode(&cfg, &logits, 1)[0];
        assert!((d.argmax_xy[0] - 0.1875).abs() < 1e-6 && (d.argmax_xy[1] + 0.1875).abs() < 1e-6, "{d:?}");
        assert!((d.mean_xy[0] - 0.1875).abs() < 1e-4, "{d:?}");
        assert!(d.sigma_px < 1e-3 && d.p_max > 0.99);
        // two equal peaks one pixel apart: the mean lies between them, sigma is about 0.5 px
        let mut logits = vec![-20.0f32; g * g];
        logits[12 * g + 8] = 20.0;
        logits[12 * g + 16] = 20.0;
        let d = decode(&cfg, &logits, 1)[0];
        assert!((d.sigma_px - 0.5).abs() < 0.01, "{d:?}");
    }
}
