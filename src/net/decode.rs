//! From network outputs to positions. For the grid head: the arg-max cell's centre, the
//! probability-weighted mean over the cells within one pixel of the peak, and the spread
//! `sigma = sqrt(sx^2 + sy^2)` of the whole predicted distribution (the EMSim notes' "knob": a cut
//! on sigma trades efficiency for accuracy). Positions are in pixels relative to the centre of the
//! crop's centre pixel, x = column.

use rayon::prelude::*;

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
            let dec = GridDecoder::new(cfg).expect("grid head");
            // Rows are independent: decoded in parallel, each with its own softmax (the same
            // numbers as one softmax over all rows).
            out[..n * dec.k]
                .par_chunks_exact(dec.k)
                .map_init(|| dec.scratch(), |sc, logits| dec.row(logits, sc))
                .collect()
        }
    }
}

/// The decoding of one grid-head row: [`decode`]'s arithmetic, for callers that decode rows as
/// they come (the fused CPU path of small networks).
#[derive(Clone, Debug)]
pub struct GridDecoder {
    /// The grid's geometry as the kernel `net/decode_grid` gets it.
    gp: DecodeGridParams,
    g: usize,
    /// Cells per row.
    pub k: usize,
    centres: Vec<f64>,
    /// The same in f32 (the local mean's sums along a row).
    centres_f32: Vec<f32>,
}

/// Per-thread buffers of [`GridDecoder::row`].
pub struct GridScratch {
    /// The row's exponents, not normalized.
    e: Vec<f32>,
    col: Vec<f32>,
    row: Vec<f32>,
}

impl GridDecoder {
    /// None unless `cfg` has a grid head.
    pub fn new(cfg: &ModelConfig) -> Option<Self> {
        Some(Self::from_params(DecodeGridParams::new(cfg, 0)?))
    }

    /// From the grid's geometry as the kernels get it (`g`, `radius`, `origin`, `cell`).
    pub fn from_params(gp: DecodeGridParams) -> Self {
        let g = gp.g as usize;
        let centres_f32: Vec<f32> = (0..g).map(|i| gp.origin + (i as f32 + 0.5) * gp.cell).collect();
        let centres = centres_f32.iter().map(|&c| c as f64).collect();
        Self { gp, g, k: g * g, centres, centres_f32 }
    }

    pub fn scratch(&self) -> GridScratch {
        GridScratch { e: vec![0.0; self.k], col: vec![0.0; self.g], row: vec![0.0; self.g] }
    }

    fn centre(&self, i: usize) -> f32 {
        self.gp.origin + (i as f32 + 0.5) * self.gp.cell
    }

    /// Decodes one row of `k` logits. The softmax's normalization cancels in the local mean and
    /// is applied once to the moments, so the exponents are not divided one by one; the sums
    /// run in f32 along a row (as the kernel's) and in f64 across rows. Where the CPU has AVX2
    /// the same arithmetic runs on wider vectors (no fused multiply-adds: the same numbers).
    pub fn row(&self, logits: &[f32], sc: &mut GridScratch) -> Decoded {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, the only feature the function is compiled for.
            return unsafe { self.row_avx2(logits, sc) };
        }
        self.row_plain(logits, sc)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn row_avx2(&self, logits: &[f32], sc: &mut GridScratch) -> Decoded {
        self.row_plain(logits, sc)
    }

    #[inline(always)]
    fn row_plain(&self, logits: &[f32], sc: &mut GridScratch) -> Decoded {
        let g = self.g;
        let logits = &logits[..self.k];
        // the largest logit, in 8 lanes (f32::max skips NaN, as a comparison does)
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut chunks = logits.chunks_exact(8);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l = l.max(v);
            }
        }
        let m = chunks.remainder().iter().chain(&lanes).copied().fold(f32::NEG_INFINITY, f32::max);
        // the first maximum of the logits, as the kernel takes it (two logits a hair apart can
        // round to the same probability)
        let arg = logits.iter().position(|&v| v == m).unwrap_or(0);
        // the exponents, and their column and row sums
        for (e, &v) in sc.e.iter_mut().zip(logits) {
            *e = exp_nonpositive(v - m);
        }
        sc.col.fill(0.0);
        for (er, r) in sc.e.chunks_exact(g).zip(sc.row.iter_mut()) {
            let mut s = 0.0f32;
            for (c, &v) in sc.col.iter_mut().zip(er) {
                *c += v;
                s += v;
            }
            *r = s;
        }
        let total: f64 = sc.row.iter().map(|&r| r as f64).sum();
        let inv = 1.0 / total;
        // the moments of the distribution from the column and row sums
        let moments = |m: &[f32]| {
            m.iter()
                .zip(&self.centres)
                .fold((0.0f64, 0.0f64), |(a, b), (&w, &x)| (a + w as f64 * x, b + w as f64 * x * x))
        };
        let ((sx, sxx), (sy, syy)) = (moments(&sc.col), moments(&sc.row));
        let (mx, my) = (sx * inv, sy * inv);
        let var = (sxx * inv - mx * mx).max(0.0) + (syy * inv - my * my).max(0.0);
        // the mean within `radius` cells of the peak
        let (ax, ay) = (arg % g, arg / g);
        let r = self.gp.radius as usize;
        let (x0, x1) = (ax.saturating_sub(r), (ax + r).min(g - 1));
        let (mut w, mut wx, mut wy) = (0.0f64, 0.0f64, 0.0f64);
        for cy in ay.saturating_sub(r)..=(ay + r).min(g - 1) {
            let er = &sc.e[cy * g + x0..=cy * g + x1];
            let (mut s, mut sxw) = (0.0f32, 0.0f32);
            for (&v, &x) in er.iter().zip(&self.centres_f32[x0..=x1]) {
                s += v;
                sxw += v * x;
            }
            w += s as f64;
            wx += sxw as f64;
            wy += s as f64 * self.centres[cy];
        }
        let (cx, cy) = (self.centre(ax), self.centre(ay));
        Decoded {
            argmax_xy: [cx, cy],
            mean_xy: if w > 0.0 { [(wx / w) as f32, (wy / w) as f32] } else { [cx, cy] },
            sigma_px: var.sqrt() as f32,
            p_max: (sc.e[arg] as f64 * inv) as f32,
        }
    }
}

/// `e^x` for `x <= 0` (softmax exponents), to about one f32 ulp: `2^n e^r` with `n` the nearest
/// integer to `x log2(e)` and `r = x - n ln 2` (ln 2 in two parts, as Cephes' `expf`, so `r` is
/// nearly exact), `|r| <= ln(2)/2`, and `e^r` by its Taylor series to degree 7 (truncation below
/// 6e-9 relative). Plain arithmetic, so a loop of it vectorizes; values below -87 (and `-inf`)
/// give `e^-87`.
#[inline]
pub fn exp_nonpositive(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.max(-87.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // n as an integer from t's low bits (no float-to-int cast, whose saturation would keep the
    // loop from vectorizing)
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    p * f32::from_bits(((ni + 127) << 23) as u32)
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
    super::loss::softmax_cpu(n, k, &out[..n * k], &mut probs);
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
    fn exp_nonpositive_is_within_two_ulps_of_exp() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (a, b) = (exp_nonpositive(x) as f64, (x as f64).exp());
            worst = worst.max((a - b).abs() / b);
        }
        assert!(worst < 2.5e-7, "largest relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 2e-38);
    }

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
