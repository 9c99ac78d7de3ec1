//! The fast CPU path of the network: the same functions as the layer twins (same signatures,
//! shapes, layouts, and every output overwritten), named `*_fast`, plus a few fused pairs of layers
//! that `Model::forward_cpu` / `backward_cpu` use. The twins stay the readable reference (and the
//! GPU kernels' twins); the tests in tests/net_cpu_fast.rs check every function here against them.
//!
//! - conv2d and linear ([`super::conv2d`], [`super::linear`]): im2col + SGEMM
//!   (`matrixmultiply::sgemm`, single-threaded), parallelized over fixed blocks of samples (below).
//! - ReLU, dropout, max pooling, batch norm: rayon over fixed chunks of elements or of `(sample,
//!   channel)` planes. ReLU, dropout, max pooling and the batch norm's forward and input gradient
//!   compute each element with the twin's expression: bitwise equal to the twins. The batch norm's
//!   sums (statistics, parameter gradients) are f64, per plane in a fixed lane order (8 lanes),
//!   the planes added in sample order: equal to the twins' to about one f32 ulp, and independent of
//!   the thread count. The statistics take one pass (shifted sums, see
//!   [`batchnorm2d_stats_fast`]).
//! - Fused (training): [`relu_batchnorm2d_stats_fast`] (ReLU and the next batch norm's
//!   statistics), [`batchnorm2d_maxpool2d_fwd_fast`] (batch norm and the next max-pool), both
//!   bitwise equal to the separate functions; [`maxpool2d_batchnorm2d_bwd_fast`] (the backward of
//!   `[ReLU ->] BatchNorm2d -> MaxPool2d` without materializing the max-pool's input gradient).
//! - Evaluation mode: [`relu_batchnorm2d_maxpool2d_eval_fast`] pools first and applies the
//!   (monotone) ReLU and batch norm to the pooled values only.
//! - The hot per-plane loops run as AVX2 builds when the CPU has it (the same arithmetic in the
//!   same order: bitwise the same results; `EMSIM_NO_SIMD=1` turns them off).
//! - [`zeroed`]: large activations on transparent huge pages (about half the cost of the first
//!   write to a fresh 100 MB buffer).
//!
//! The rest of this comment is about conv2d and linear.
//!
//! Convolution as a matrix product, for a block of `S` samples and output rows `r0..r1` (the
//! block's columns `j = (s, oy, ox)`, `cols = S * (r1 - r0) * OW`):
//!
//! ```text
//! col[k, j] = x[n0 + s, i, oy*stride + ky - pad, ox*stride + kx - pad]   (0 in the padding), k = (i, ky, kx)
//! forward:          Y[C_out, cols] = [W | b][C_out, K + 1] [col; 1][K + 1, cols]
//! backward input:   dcol[K, cols]  = W^T dY[C_out, cols], then dx = col2im(dcol) (a scatter-add)
//! backward weight:  dW[C_out, K]  += dY[C_out, cols] col^T[cols, K],  db[o] += sum_j dY[o, j]
//! ```
//!
//! A block is one sample when its output plane has at least [`TARGET_COLS`] pixels (then the
//! product reads and writes the NCHW tensors in place, `S = 1`), else `TARGET_COLS / (OH * OW)`
//! samples (gathered and scattered through a scratch buffer). A plane whose `K x cols` columns
//! would exceed [`MAX_COL_ELEMS`] is split into blocks of whole output rows. The `col` and gather
//! buffers are per-thread scratch (`thread_local`), reused across calls.
//!
//! Determinism: blocks and groups depend only on the shape, never on the number of threads, and
//! each block is computed by one thread with a single-threaded SGEMM; so results are bitwise
//! identical whatever the rayon pool. Weight gradients: each of at most [`MAX_GROUPS`] fixed groups
//! of consecutive blocks sums its blocks in f32 (SGEMM with `beta = 1`; the bias gradient in f64
//! from f32 sums of each output row) into its own partial, then the partials are added in group
//! order in f64 (the twins sum the whole batch in f64; the difference is within f32 rounding of
//! each group's sum).
//!
//! Sums are in another order than the twins' (SGEMM's blocking), so results differ from them by
//! f32 rounding: the tests require `|fast - twin| <= 1e-4 * sum of |terms|` per element.
//!
//! Every stride, padding and kernel size is handled here (no fallback to the twins).

use std::cell::RefCell;

use rayon::prelude::*;

use super::batchnorm2d::{BatchNorm2dShape, invstd};
use super::conv2d::Conv2dShape;
use super::dropout::DropoutCfg;
use super::linear::LinearShape;
use super::maxpool2d::MaxPool2dShape;
use super::{Shape4, check_len};
use crate::rng;

/// Columns (sample x output pixel) one SGEMM of a convolution aims for: planes smaller than this
/// are batched, `TARGET_COLS / (OH * OW)` samples per block.
pub const TARGET_COLS: usize = 512;
/// Largest `col` buffer (f32 elements, `K x cols`) of one block; a larger plane is split into
/// blocks of whole output rows (at least one row).
pub const MAX_COL_ELEMS: usize = 1 << 17;
/// Most partial sums of a weight gradient (fixed groups of consecutive blocks / rows).
pub const MAX_GROUPS: usize = 32;
/// Cap on the memory of the partial sums of a weight gradient (f32 elements, all groups together):
/// fewer groups for very large layers.
pub const MAX_PARTIAL_ELEMS: usize = 1 << 23;
/// Rows (samples) per parallel task of the linear forward and input gradient.
pub const LINEAR_ROWS: usize = 64;
/// Fewest rows one partial sum of the linear weight gradient covers.
pub const LINEAR_MIN_GROUP_ROWS: usize = 64;
/// Most values per layer output in one chunk of the evaluation-mode forward pass
/// (`Model::forward_cpu` with `train == false`): chunks of `EVAL_CHUNK_ELEMS / (largest layer
/// output per sample)` samples (at least 1) run through the whole network with their activations
/// in the cache.
pub const EVAL_CHUNK_ELEMS: usize = 1 << 17;

// ---------------------------------------------------------------------------------------------
// Helpers: scratch, a bounds-checked SGEMM, the block plan, im2col / col2im.

#[derive(Default)]
struct Scratch {
    col: Vec<f32>,
    tmp: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch. `f` must not call into rayon (a stolen job could borrow
/// the scratch again); nothing in this module does.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// The first `len` elements of `v`, growing it if needed (contents unspecified).
fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// Index one past the last element a `rows x cols` matrix with strides `(rs, cs)` touches.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    (rows - 1) * rs + (cols - 1) * cs + 1
}

/// `C[m, n] = A[m, k] B[k, n] + beta C`, element `(r, c)` of a matrix `X` at `x[r * rsx + c * csx]`.
/// Bounds are checked here, so the unsafe SGEMM only touches the given slices. `beta` is 0 or 1;
/// with `beta = 0` the old contents of `C` are ignored (`matrixmultiply` guarantees it).
#[allow(clippy::too_many_arguments)]
fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
    (rsc, csc): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(extent(m, n, rsc, csc) <= c.len(), "gemm: C out of bounds");
    if k == 0 {
        if beta == 0.0 {
            for r in 0..m {
                for q in 0..n {
                    c[r * rsc + q * csc] = 0.0;
                }
            }
        }
        return;
    }
    assert!(extent(m, k, rsa, csa) <= a.len(), "gemm: A out of bounds");
    assert!(extent(k, n, rsb, csb) <= b.len(), "gemm: B out of bounds");
    // SAFETY: every element the product reads or writes lies in the slices (checked above), C does
    // not alias A or B (a &mut and two & borrows), and C's strides do not alias (rsc, csc > 0 with
    // distinct elements: callers pass row-major or column-major layouts).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        );
    }
}

/// How a convolution is cut into blocks: `ns` samples per block of samples, each block of samples
/// cut into output-row blocks of `rows` rows (`rows = OH` unless a plane is too large; `ns = 1`
/// then). Depends on the shape only.
#[derive(Clone, Copy, Debug)]
struct ConvPlan {
    ns: usize,
    rows: usize,
}

impl ConvPlan {
    fn new(s: &Conv2dShape, col_rows: usize) -> Self {
        let (oh, ow) = (s.out_h(), s.out_w());
        let p = oh * ow;
        let max_cols = (MAX_COL_ELEMS / col_rows.max(1)).max(ow);
        if p > max_cols {
            Self { ns: 1, rows: (max_cols / ow).clamp(1, oh) }
        } else {
            let ns = (TARGET_COLS / p).clamp(1, (max_cols / p).max(1));
            Self { ns, rows: oh }
        }
    }

    /// Output-row blocks `(r0, r1)` of one block of samples.
    fn row_blocks(&self, oh: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..oh).step_by(self.rows).map(move |r0| (r0, (r0 + self.rows).min(oh)))
    }
}

/// Range `lo..hi` of output columns `ox` whose tap `kx` reads inside the input row (`0 <= ox *
/// stride + kx - pad < W`).
#[inline]
fn ox_range(s: &Conv2dShape, kx: usize, ow: usize) -> (usize, usize) {
    let lo = s.pad.saturating_sub(kx).div_ceil(s.stride).min(ow);
    let hi = (s.input.w + s.pad).saturating_sub(kx).div_ceil(s.stride).min(ow).max(lo);
    (lo, hi)
}

/// Input row read by output row `oy` through tap `ky` (None in the padding).
#[inline]
fn input_row(s: &Conv2dShape, oy: usize, ky: usize) -> Option<usize> {
    (oy * s.stride + ky).checked_sub(s.pad).filter(|&iy| iy < s.input.h)
}

/// Fills rows `0..K` of `col` (`[K, cols]`, row-major) for samples `n0..n0 + ns` of `x` and output
/// rows `r0..r1`.
fn im2col(s: &Conv2dShape, x: &[f32], n0: usize, ns: usize, (r0, r1): (usize, usize), col: &mut [f32]) {
    let xs = s.input;
    let ow = s.out_w();
    let seg_rows = r1 - r0;
    let cols = ns * seg_rows * ow;
    for i in 0..xs.c {
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let k = (i * s.kh + ky) * s.kw + kx;
                let row = &mut col[k * cols..(k + 1) * cols];
                let (lo, hi) = ox_range(s, kx, ow);
                for si in 0..ns {
                    let plane = &x[xs.index(n0 + si, i, 0, 0)..][..xs.plane()];
                    for oy in r0..r1 {
                        let seg = &mut row[(si * seg_rows + oy - r0) * ow..][..ow];
                        let Some(iy) = input_row(s, oy, ky) else {
                            seg.fill(0.0);
                            continue;
                        };
                        let xrow = &plane[iy * xs.w..(iy + 1) * xs.w];
                        seg[..lo].fill(0.0);
                        seg[hi..].fill(0.0);
                        if s.stride == 1 {
                            let ix0 = lo + kx - s.pad;
                            seg[lo..hi].copy_from_slice(&xrow[ix0..ix0 + hi - lo]);
                        } else {
                            for (ox, v) in seg[lo..hi].iter_mut().enumerate() {
                                *v = xrow[(lo + ox) * s.stride + kx - s.pad];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds `col` (`[K, cols]`, laid out as [`im2col`]'s) into `dx` (the `ns` samples of the block,
/// `[ns, C_in, H, W]`): the adjoint of [`im2col`].
fn col2im_add(s: &Conv2dShape, col: &[f32], ns: usize, (r0, r1): (usize, usize), dx: &mut [f32]) {
    let xs = s.input;
    let ow = s.out_w();
    let seg_rows = r1 - r0;
    let cols = ns * seg_rows * ow;
    for i in 0..xs.c {
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let k = (i * s.kh + ky) * s.kw + kx;
                let row = &col[k * cols..(k + 1) * cols];
                let (lo, hi) = ox_range(s, kx, ow);
                for si in 0..ns {
                    let plane = &mut dx[(si * xs.c + i) * xs.plane()..][..xs.plane()];
                    for oy in r0..r1 {
                        let Some(iy) = input_row(s, oy, ky) else { continue };
                        let seg = &row[(si * seg_rows + oy - r0) * ow..][..ow];
                        let xrow = &mut plane[iy * xs.w..(iy + 1) * xs.w];
                        if s.stride == 1 {
                            let ix0 = lo + kx - s.pad;
                            for (d, v) in xrow[ix0..ix0 + hi - lo].iter_mut().zip(&seg[lo..hi]) {
                                *d += v;
                            }
                        } else {
                            for (ox, v) in seg[lo..hi].iter().enumerate() {
                                xrow[(lo + ox) * s.stride + kx - s.pad] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Copies `dy` of samples `n0..n0 + ns` (all output rows) into `t` as `[C_out, ns * P]` (column
/// `s * P + p`).
fn gather_planes(t: &mut [f32], src: &[f32], n0: usize, ns: usize, c: usize, p: usize) {
    let cols = ns * p;
    for si in 0..ns {
        for o in 0..c {
            t[o * cols + si * p..][..p].copy_from_slice(&src[((n0 + si) * c + o) * p..][..p]);
        }
    }
}

/// Number of groups `units` consecutive work units are split into: at most [`MAX_GROUPS`], fewer
/// when each group's partial has `partial_len` elements and the total would pass
/// [`MAX_PARTIAL_ELEMS`]. Group `g` covers units [`group_bounds`]`(units, groups, g)`.
fn n_groups(units: usize, partial_len: usize) -> usize {
    units.min(MAX_GROUPS).min((MAX_PARTIAL_ELEMS / partial_len.max(1)).max(1))
}

fn group_bounds(units: usize, groups: usize, g: usize) -> (usize, usize) {
    (g * units / groups, (g + 1) * units / groups)
}

// ---------------------------------------------------------------------------------------------
// conv2d.

/// Fast [`super::conv2d::conv2d_fwd_cpu`]: `y = conv(x, w) + b`. Writes all of `y`.
pub fn conv2d_fwd_fast(s: &Conv2dShape, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    let (xs, ys) = (s.input, s.output());
    check_len("conv2d x", x.len(), xs.len());
    check_len("conv2d w", w.len(), s.weight().len());
    check_len("conv2d b", b.len(), s.c_out);
    check_len("conv2d y", y.len(), ys.len());
    if ys.is_empty() {
        return;
    }
    let (k, co, p, ow) = (s.fan_in(), s.c_out, ys.plane(), ys.w);
    // The bias rides along as one more column of the weight against a row of ones in `col`.
    let k1 = k + 1;
    let mut wb = vec![0.0f32; co * k1];
    for o in 0..co {
        wb[o * k1..o * k1 + k].copy_from_slice(&w[o * k..(o + 1) * k]);
        wb[o * k1 + k] = b[o];
    }
    let plan = ConvPlan::new(s, k1);
    y.par_chunks_mut(plan.ns * co * p).enumerate().for_each(|(bi, yb)| {
        let (n0, ns) = (bi * plan.ns, yb.len() / (co * p));
        with_scratch(|sc| {
            let Scratch { col, tmp } = sc;
            for (r0, r1) in plan.row_blocks(ys.h) {
                let cols = ns * (r1 - r0) * ow;
                let colb = grow(col, k1 * cols);
                im2col(s, x, n0, ns, (r0, r1), colb);
                colb[k * cols..].fill(1.0);
                if ns == 1 {
                    // In place: Y[:, r0*OW..] = [W | b] [col; 1].
                    gemm((co, k1, cols), &wb, (k1, 1), colb, (cols, 1), 0.0, &mut yb[r0 * ow..], (p, 1));
                } else {
                    let t = grow(tmp, co * cols);
                    gemm((co, k1, cols), &wb, (k1, 1), colb, (cols, 1), 0.0, t, (cols, 1));
                    for si in 0..ns {
                        for o in 0..co {
                            yb[(si * co + o) * p..][..p].copy_from_slice(&t[o * cols + si * p..][..p]);
                        }
                    }
                }
            }
        });
    });
}

/// Fast [`super::conv2d::conv2d_bwd_input_cpu`]: `dx = dL/dx` from `dy`. Writes all of `dx`.
pub fn conv2d_bwd_input_fast(s: &Conv2dShape, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (xs, ys) = (s.input, s.output());
    check_len("conv2d w", w.len(), s.weight().len());
    check_len("conv2d dy", dy.len(), ys.len());
    check_len("conv2d dx", dx.len(), xs.len());
    if xs.is_empty() {
        return;
    }
    let (k, co, p, ow) = (s.fan_in(), s.c_out, ys.plane(), ys.w);
    let plan = ConvPlan::new(s, k);
    let per_sample = xs.c * xs.plane();
    dx.par_chunks_mut(plan.ns * per_sample).enumerate().for_each(|(bi, dxb)| {
        let (n0, ns) = (bi * plan.ns, dxb.len() / per_sample);
        dxb.fill(0.0);
        with_scratch(|sc| {
            let Scratch { col, tmp } = sc;
            for (r0, r1) in plan.row_blocks(ys.h) {
                let cols = ns * (r1 - r0) * ow;
                let dcol = grow(col, k * cols);
                // dcol[K, cols] = W^T[K, C_out] dY[C_out, cols]
                if ns == 1 {
                    let dyb = &dy[n0 * co * p + r0 * ow..];
                    gemm((k, co, cols), w, (1, k), dyb, (p, 1), 0.0, dcol, (cols, 1));
                } else {
                    let t = grow(tmp, co * cols);
                    gather_planes(t, dy, n0, ns, co, p);
                    gemm((k, co, cols), w, (1, k), t, (cols, 1), 0.0, dcol, (cols, 1));
                }
                col2im_add(s, dcol, ns, (r0, r1), dxb);
            }
        });
    });
}

/// Fast [`super::conv2d::conv2d_bwd_weight_cpu`]: `dw = dL/dw`, `db = dL/db` from `x` and `dy`.
/// Writes all of `dw` and `db` (zeros for an empty batch).
pub fn conv2d_bwd_weight_fast(s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    let (xs, ys) = (s.input, s.output());
    check_len("conv2d x", x.len(), xs.len());
    check_len("conv2d dy", dy.len(), ys.len());
    check_len("conv2d dw", dw.len(), s.weight().len());
    check_len("conv2d db", db.len(), s.c_out);
    let (k, co, p, ow) = (s.fan_in(), s.c_out, ys.plane(), ys.w);
    let plan = ConvPlan::new(s, k);
    // Work units in order: (first sample, samples, output rows).
    let units: Vec<(usize, usize, (usize, usize))> = (0..xs.n)
        .step_by(plan.ns)
        .flat_map(|n0| {
            let ns = plan.ns.min(xs.n - n0);
            plan.row_blocks(ys.h).map(move |rb| (n0, ns, rb))
        })
        .collect();
    let groups = if ys.is_empty() { 0 } else { n_groups(units.len(), co * (k + 1)) };
    // Per group: dW partial [C_out, K] summed by SGEMM in f32, db partial [C_out] in f64.
    let partials: Vec<(Vec<f32>, Vec<f64>)> = (0..groups)
        .into_par_iter()
        .map(|g| {
            let (u0, u1) = group_bounds(units.len(), groups, g);
            let (mut pw, mut pb) = (vec![0.0f32; co * k], vec![0.0f64; co]);
            with_scratch(|sc| {
                let Scratch { col, tmp } = sc;
                for (ui, &(n0, ns, (r0, r1))) in units[u0..u1].iter().enumerate() {
                    let cols = ns * (r1 - r0) * ow;
                    let colb = grow(col, k * cols);
                    im2col(s, x, n0, ns, (r0, r1), colb);
                    let beta = if ui == 0 { 0.0 } else { 1.0 };
                    // pw[C_out, K] (+)= dY[C_out, cols] col^T[cols, K]
                    if ns == 1 {
                        let dyb = &dy[n0 * co * p + r0 * ow..];
                        gemm((co, cols, k), dyb, (p, 1), colb, (1, cols), beta, &mut pw, (k, 1));
                    } else {
                        let t = grow(tmp, co * cols);
                        gather_planes(t, dy, n0, ns, co, p);
                        gemm((co, cols, k), t, (cols, 1), colb, (1, cols), beta, &mut pw, (k, 1));
                    }
                    for si in 0..ns {
                        for (o, acc) in pb.iter_mut().enumerate() {
                            *acc += sum_f32(&dy[((n0 + si) * co + o) * p + r0 * ow..][..(r1 - r0) * ow]) as f64;
                        }
                    }
                }
            });
            (pw, pb)
        })
        .collect();
    dw.par_chunks_mut(k.max(1)).enumerate().for_each(|(o, dwo)| {
        for (i, d) in dwo.iter_mut().enumerate() {
            *d = partials.iter().map(|(pw, _)| pw[o * k + i] as f64).sum::<f64>() as f32;
        }
    });
    for (o, d) in db.iter_mut().enumerate() {
        *d = partials.iter().map(|(_, pb)| pb[o]).sum::<f64>() as f32;
    }
}

/// Sum of `v` in f32, 8 interleaved accumulators (vectorizes), then the 8 added in order.
fn sum_f32(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

// ---------------------------------------------------------------------------------------------
// linear.

/// Fast [`super::linear::linear_fwd_cpu`]: `y = x w^T + b`. Writes all of `y`.
pub fn linear_fwd_fast(s: &LinearShape, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    check_len("linear x", x.len(), s.n * s.in_f);
    check_len("linear w", w.len(), s.weight_len());
    check_len("linear b", b.len(), s.out_f);
    check_len("linear y", y.len(), s.n * s.out_f);
    if y.is_empty() {
        return;
    }
    let (fi, fo) = (s.in_f, s.out_f);
    y.par_chunks_mut(LINEAR_ROWS * fo).enumerate().for_each(|(ci, yb)| {
        let rows = yb.len() / fo;
        let xb = &x[ci * LINEAR_ROWS * fi..][..rows * fi];
        for yr in yb.chunks_exact_mut(fo) {
            yr.copy_from_slice(b);
        }
        // Y[rows, out] = b + X[rows, in] W^T[in, out]
        gemm((rows, fi, fo), xb, (fi, 1), w, (1, fi), 1.0, yb, (fo, 1));
    });
}

/// Fast [`super::linear::linear_bwd_input_cpu`]: `dx = dy w`. Writes all of `dx`.
pub fn linear_bwd_input_fast(s: &LinearShape, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    check_len("linear w", w.len(), s.weight_len());
    check_len("linear dy", dy.len(), s.n * s.out_f);
    check_len("linear dx", dx.len(), s.n * s.in_f);
    if dx.is_empty() {
        return;
    }
    let (fi, fo) = (s.in_f, s.out_f);
    dx.par_chunks_mut(LINEAR_ROWS * fi).enumerate().for_each(|(ci, dxb)| {
        let rows = dxb.len() / fi;
        let dyb = &dy[ci * LINEAR_ROWS * fo..][..rows * fo];
        // dX[rows, in] = dY[rows, out] W[out, in]
        gemm((rows, fo, fi), dyb, (fo, 1), w, (fi, 1), 0.0, dxb, (fi, 1));
    });
}

/// Fast [`super::linear::linear_bwd_weight_cpu`]: `dw = dy^T x`, `db = sum_n dy`. Writes all of
/// `dw` and `db` (zeros for an empty batch).
pub fn linear_bwd_weight_fast(s: &LinearShape, x: &[f32], dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    check_len("linear x", x.len(), s.n * s.in_f);
    check_len("linear dy", dy.len(), s.n * s.out_f);
    check_len("linear dw", dw.len(), s.weight_len());
    check_len("linear db", db.len(), s.out_f);
    let (fi, fo) = (s.in_f, s.out_f);
    let part_len = s.n_params();
    let groups = if part_len == 0 { 0 } else { n_groups(s.n.div_ceil(LINEAR_MIN_GROUP_ROWS), part_len) };
    let mut partials = vec![0.0f32; groups * part_len];
    if groups > 0 {
        partials.par_chunks_mut(part_len).enumerate().for_each(|(g, part)| {
            let (n0, n1) = group_bounds(s.n, groups, g);
            let (pw, pb) = part.split_at_mut(fi * fo);
            // dW[out, in] = dY^T[out, rows] X[rows, in]
            let (xb, dyb) = (&x[n0 * fi..n1 * fi], &dy[n0 * fo..n1 * fo]);
            gemm((fo, n1 - n0, fi), dyb, (1, fo), xb, (fi, 1), 0.0, pw, (fi, 1));
            let mut acc = vec![0.0f64; fo];
            for r in dyb.chunks_exact(fo) {
                for (a, &v) in acc.iter_mut().zip(r) {
                    *a += v as f64;
                }
            }
            for (d, a) in pb.iter_mut().zip(acc) {
                *d = a as f32;
            }
        });
    }
    let sum = |q: usize| (0..groups).map(|g| partials[g * part_len + q] as f64).sum::<f64>() as f32;
    dw.par_iter_mut().enumerate().for_each(|(q, d)| *d = sum(q));
    for (o, d) in db.iter_mut().enumerate() {
        *d = sum(fi * fo + o);
    }
}

// ---------------------------------------------------------------------------------------------
// Buffers.

/// Size (bytes) from which [`zeroed`] advises transparent huge pages.
pub const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// `vec![0; len]` for the large activations of the CPU path. A large zeroed allocation is a fresh
/// anonymous mapping whose pages the kernel faults in and zeroes on first write, 4 KiB at a time:
/// for a 100 MB activation that costs about as much as writing it twice. On Linux, allocations of
/// at least [`HUGE_PAGE_MIN_BYTES`] are advised to use transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`, honoured when `/sys/kernel/mm/transparent_hugepage/enabled` is
/// `madvise` or `always`), which makes that first write about twice as fast. Contents and
/// semantics are exactly `vec![0; len]`'s; the advice is only a hint (errors are ignored).
pub fn zeroed<T: Copy + Default>(len: usize) -> Vec<T> {
    let v = vec![T::default(); len];
    if std::mem::size_of_val(v.as_slice()) >= HUGE_PAGE_MIN_BYTES {
        advise_huge_pages(&v);
    }
    v
}

/// Advises transparent huge pages for the whole 2 MiB pages inside `v`'s memory (Linux only).
fn advise_huge_pages<T>(v: &[T]) {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::{c_int, c_void};
        unsafe extern "C" {
            fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
        }
        const MADV_HUGEPAGE: c_int = 14;
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let end = start + std::mem::size_of_val(v);
        let (lo, hi) = (start.next_multiple_of(HUGE), end & !(HUGE - 1));
        if hi > lo {
            // SAFETY: `[lo, hi)` is whole pages inside `v`'s allocation; MADV_HUGEPAGE only changes
            // how those pages are backed, never their contents, and reads or writes nothing.
            unsafe {
                madvise(v.as_ptr().cast::<u8>().wrapping_add(lo - start).cast_mut().cast(), hi - lo, MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

// ---------------------------------------------------------------------------------------------
// SIMD dispatch.

/// Whether the AVX2 builds of the per-plane loops below run: on x86-64 CPUs with AVX2, unless the
/// environment variable `EMSIM_NO_SIMD` is set. They are the same Rust code compiled for wider
/// vectors (Rust never fuses or reorders float operations on its own, and each accumulator lane
/// is explicit in the code), so both builds give bitwise the same results.
#[cfg(target_arch = "x86_64")]
fn use_avx2() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| std::env::var_os("EMSIM_NO_SIMD").is_none() && is_x86_feature_detected!("avx2"))
}

/// `fn $name(args) -> ret` that runs the `#[inline(always)]` function `$body` compiled for AVX2
/// when [`use_avx2`], else as compiled for the baseline target.
macro_rules! simd_dispatch {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:ident) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if use_avx2() {
                    // SAFETY: the CPU has AVX2 (checked at run time).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Element-wise layers: ReLU, dropout. Bitwise equal to their twins (the same expression per
// element), in larger parallel chunks.

/// Elements per rayon task of the element-wise layers.
pub const ELEM_CHUNK: usize = 1 << 15;

/// Planes per rayon task for per-plane work: at least [`ELEM_CHUNK`] / 8 elements per task.
fn planes_per_task(plane: usize) -> usize {
    (ELEM_CHUNK / 8).div_ceil(plane.max(1))
}

/// Fast [`super::relu::relu_fwd_cpu`]: `y = x if x > 0 else 0`. Bitwise equal to the twin.
pub fn relu_fwd_fast(x: &[f32], y: &mut [f32]) {
    check_len("relu y", y.len(), x.len());
    y.par_chunks_mut(ELEM_CHUNK).zip(x.par_chunks(ELEM_CHUNK)).for_each(|(y, x)| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = if x > 0.0 { x } else { 0.0 };
        }
    });
}

/// Fast [`super::relu::relu_bwd_cpu`]: `dx = dy if y > 0 else 0`. Bitwise equal to the twin.
pub fn relu_bwd_fast(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    check_len("relu dy", dy.len(), y.len());
    check_len("relu dx", dx.len(), y.len());
    dx.par_chunks_mut(ELEM_CHUNK).zip(y.par_chunks(ELEM_CHUNK).zip(dy.par_chunks(ELEM_CHUNK))).for_each(
        |(dx, (y, dy))| {
            for ((d, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
                *d = if y > 0.0 { g } else { 0.0 };
            }
        },
    );
}

/// `out[i] = keep(i) ? inp[i] * scale : 0` with the mask of `c`, one Philox call per 4 elements,
/// [`ELEM_CHUNK`] elements per task.
fn dropout_apply(c: &DropoutCfg, inp: &[f32], out: &mut [f32]) {
    let scale = c.scale();
    let params = c.params(); // checks p, layer and n
    let (key, stream) = ([params.key_lo, params.key_hi], params.stream);
    out.par_chunks_mut(ELEM_CHUNK).zip(inp.par_chunks(ELEM_CHUNK)).enumerate().for_each(|(ci, (out, inp))| {
        let g0 = ci * ELEM_CHUNK / 4;
        for (g, (out, inp)) in out.chunks_mut(4).zip(inp.chunks(4)).enumerate() {
            let bits = rng::philox4x32_10(rng::counter((g0 + g) as u32, c.step, stream), key);
            for ((o, &v), &b) in out.iter_mut().zip(inp).zip(&bits) {
                *o = if rng::u01(b) >= c.p { v * scale } else { 0.0 };
            }
        }
    });
}

/// Fast [`super::dropout::dropout_fwd_cpu`]: `y = keep ? x / (1 - p) : 0`. Bitwise equal to the twin.
pub fn dropout_fwd_fast(c: &DropoutCfg, x: &[f32], y: &mut [f32]) {
    check_len("dropout x", x.len(), c.n);
    check_len("dropout y", y.len(), c.n);
    dropout_apply(c, x, y);
}

/// Fast [`super::dropout::dropout_bwd_cpu`]: `dx = keep ? dy / (1 - p) : 0`. Bitwise equal to the twin.
pub fn dropout_bwd_fast(c: &DropoutCfg, dy: &[f32], dx: &mut [f32]) {
    check_len("dropout dy", dy.len(), c.n);
    check_len("dropout dx", dx.len(), c.n);
    dropout_apply(c, dy, dx);
}

// ---------------------------------------------------------------------------------------------
// Max pooling. Bitwise equal to the twins.

/// Checks the shapes of a max-pool forward or backward; returns (input, output) shapes.
#[track_caller]
fn maxpool_shapes(s: &MaxPool2dShape) -> (Shape4, Shape4) {
    let ys = s.output(); // checks k, stride and the window
    assert!(s.input.len() <= u32::MAX as usize, "maxpool2d: input of {} elements exceeds u32 indexing", s.input.len());
    (s.input, ys)
}

simd_dispatch! {
    /// Max-pool forward of one `(n, c)` plane: `x` the input plane, `base` its flat offset in the
    /// tensor (for `idx`).
    fn maxpool_plane(s: &MaxPool2dShape, ys: Shape4, x: &[f32], base: usize, y: &mut [f32], idx: &mut [u32]) =
        maxpool_plane_body
}

/// [`maxpool_plane`]: the twin's loop (first maximum in row-major window order, strict `>`),
/// branch-free; specialized for the non-overlapping windows of sizes 2, 3, 4.
#[inline(always)]
fn maxpool_plane_body(s: &MaxPool2dShape, ys: Shape4, x: &[f32], base: usize, y: &mut [f32], idx: &mut [u32]) {
    if s.stride == s.k {
        match s.k {
            2 => return maxpool_plane_k::<2>(s.input.w, ys, x, base, y, idx),
            3 => return maxpool_plane_k::<3>(s.input.w, ys, x, base, y, idx),
            4 => return maxpool_plane_k::<4>(s.input.w, ys, x, base, y, idx),
            _ => {}
        }
    }
    let (w, k, st) = (s.input.w, s.k, s.stride);
    for oy in 0..ys.h {
        let (yr, ir) = (&mut y[oy * ys.w..(oy + 1) * ys.w], &mut idx[oy * ys.w..(oy + 1) * ys.w]);
        for (ox, (yv, iv)) in yr.iter_mut().zip(ir).enumerate() {
            let first = oy * st * w + ox * st;
            let (mut best, mut at) = (x[first], first);
            for ky in 0..k {
                let row = first + ky * w;
                for (kx, &v) in x[row..row + k].iter().enumerate() {
                    let gt = v > best;
                    best = if gt { v } else { best };
                    at = if gt { row + kx } else { at };
                }
            }
            *yv = best;
            *iv = (base + at) as u32;
        }
    }
}

/// [`maxpool_plane_body`] for `stride == k == K`: the same comparisons in the same order, with
/// the window loops unrolled (the output columns vectorize).
#[inline(always)]
fn maxpool_plane_k<const K: usize>(w: usize, ys: Shape4, x: &[f32], base: usize, y: &mut [f32], idx: &mut [u32]) {
    let ow = ys.w;
    for oy in 0..ys.h {
        let r0 = oy * K * w;
        let rows: [&[f32]; K] = std::array::from_fn(|ky| &x[r0 + ky * w..r0 + ky * w + ow * K]);
        let (yr, ir) = (&mut y[oy * ow..(oy + 1) * ow], &mut idx[oy * ow..(oy + 1) * ow]);
        let first = (base + r0) as u32;
        for (ox, (yv, iv)) in yr.iter_mut().zip(ir.iter_mut()).enumerate() {
            let (mut best, mut at) = (rows[0][ox * K], 0u32);
            for (ky, row) in rows.iter().enumerate() {
                let win: &[f32; K] = row[ox * K..ox * K + K].try_into().unwrap();
                for (kx, &v) in win.iter().enumerate() {
                    let gt = v > best;
                    best = if gt { v } else { best };
                    at = if gt { (ky * w + kx) as u32 } else { at };
                }
            }
            *yv = best;
            *iv = first + (ox * K) as u32 + at;
        }
    }
}

/// Fast [`super::maxpool2d::maxpool2d_fwd_cpu`]: window maxima and their flat indices into `x`
/// (first maximum on ties). Writes all of `y` and `idx`; bitwise equal to the twin.
pub fn maxpool2d_fwd_fast(s: &MaxPool2dShape, x: &[f32], y: &mut [f32], idx: &mut [u32]) {
    let (xs, ys) = maxpool_shapes(s);
    check_len("maxpool2d x", x.len(), xs.len());
    check_len("maxpool2d y", y.len(), ys.len());
    check_len("maxpool2d idx", idx.len(), ys.len());
    if ys.is_empty() {
        return;
    }
    let (ip, op) = (xs.plane(), ys.plane());
    let ppt = planes_per_task(ip);
    y.par_chunks_mut(ppt * op).zip(idx.par_chunks_mut(ppt * op)).enumerate().for_each(|(t, (y, idx))| {
        for (j, (y, idx)) in y.chunks_mut(op).zip(idx.chunks_mut(op)).enumerate() {
            let plane = t * ppt + j;
            maxpool_plane(s, ys, &x[plane * ip..(plane + 1) * ip], plane * ip, y, idx);
        }
    });
}

/// Max-pool backward of one plane, scatter form: `dx` (the plane, `base` its flat offset) zeroed,
/// then `dy[o]` added at `idx[o]` in `o` order, which is the twin's order of the terms of each sum.
#[inline]
fn maxpool_bwd_plane(idx: &[u32], dy: &[f32], base: usize, dx: &mut [f32]) {
    dx.fill(0.0);
    for (&i, &g) in idx.iter().zip(dy) {
        let j = (i as usize).checked_sub(base).filter(|&j| j < dx.len());
        let j = j.unwrap_or_else(|| panic!("maxpool2d: index {i} is not in its plane (from maxpool2d_fwd?)"));
        dx[j] += g;
    }
}

/// Fast [`super::maxpool2d::maxpool2d_bwd_cpu`]: `dx[i]` = sum of `dy[o]` over the outputs with
/// `idx[o] == i`. `idx` must come from the forward pass (each index inside its own window, as the
/// twin assumes; an index outside its plane panics). Writes all of `dx`; bitwise equal to the twin.
pub fn maxpool2d_bwd_fast(s: &MaxPool2dShape, idx: &[u32], dy: &[f32], dx: &mut [f32]) {
    let (xs, ys) = maxpool_shapes(s);
    check_len("maxpool2d idx", idx.len(), ys.len());
    check_len("maxpool2d dy", dy.len(), ys.len());
    check_len("maxpool2d dx", dx.len(), xs.len());
    if xs.is_empty() {
        return;
    }
    let (ip, op) = (xs.plane(), ys.plane());
    let ppt = planes_per_task(ip);
    dx.par_chunks_mut(ppt * ip).enumerate().for_each(|(t, dx)| {
        for (j, dx) in dx.chunks_mut(ip).enumerate() {
            let plane = t * ppt + j;
            let o = plane * op..(plane + 1) * op;
            maxpool_bwd_plane(&idx[o.clone()], &dy[o], plane * ip, dx);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Batch norm. Sums over the batch in f64, each channel's terms in a fixed order (4 interleaved
// f64 accumulators per plane, the planes in sample order), so the results do not depend on the
// thread count. The element-wise passes use the twins' f32 expressions: bitwise equal.

#[track_caller]
fn bn_check(s: &BatchNorm2dShape) {
    assert!(s.x.c >= 1 && s.m() >= 1, "batchnorm2d: empty input {:?}", s.x);
    assert!(s.eps >= 0.0, "batchnorm2d: eps must be >= 0");
}

/// Lanes of the f64 accumulators of the batch-norm sums: element `i` of a plane (but a remainder
/// of fewer than `LANES`) goes to lane `i % LANES`; the lanes are added as
/// [`combine_lanes`] says, then the remainder in order. The AVX2 and the plain builds follow this
/// order exactly.
const LANES: usize = 8;

/// `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))`.
#[inline(always)]
fn combine_lanes(l: &[f64; LANES]) -> f64 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// `(sum (x - k), sum (x - k)^2)` over `x` in f64 (lanes: [`LANES`]).
fn shifted_moments(x: &[f32], k: f64) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: the CPU has AVX2 (checked at run time).
        return unsafe { shifted_moments_avx2(x, k) };
    }
    shifted_moments_plain(x, k)
}

fn shifted_moments_plain(x: &[f32], k: f64) -> (f64, f64) {
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            let d = c[l] as f64 - k;
            s1[l] += d;
            s2[l] += d * d;
        }
    }
    let (mut a, mut b) = (combine_lanes(&s1), combine_lanes(&s2));
    for &v in rest {
        let d = v as f64 - k;
        a += d;
        b += d * d;
    }
    (a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn shifted_moments_avx2(x: &[f32], k: f64) -> (f64, f64) {
    use std::arch::x86_64::*;
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    let kv = _mm256_set1_pd(k);
    let (mut a0, mut a1, mut b0, mut b1) =
        (_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd());
    for c in chunks {
        // SAFETY: `c` holds LANES = 8 f32.
        let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        let lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), kv);
        let hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)), kv);
        a0 = _mm256_add_pd(a0, lo);
        a1 = _mm256_add_pd(a1, hi);
        b0 = _mm256_add_pd(b0, _mm256_mul_pd(lo, lo));
        b1 = _mm256_add_pd(b1, _mm256_mul_pd(hi, hi));
    }
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    // SAFETY: each array holds 8 f64: two stores of 4.
    unsafe {
        _mm256_storeu_pd(s1.as_mut_ptr(), a0);
        _mm256_storeu_pd(s1.as_mut_ptr().add(4), a1);
        _mm256_storeu_pd(s2.as_mut_ptr(), b0);
        _mm256_storeu_pd(s2.as_mut_ptr().add(4), b1);
    }
    let (mut a, mut b) = (combine_lanes(&s1), combine_lanes(&s2));
    for &v in rest {
        let d = v as f64 - k;
        a += d;
        b += d * d;
    }
    (a, b)
}

/// Mean and biased variance per channel from per-plane shifted moments `part[n * C + c]` (shift
/// `shift[c]`), the planes added in sample order.
fn finish_stats(s: &BatchNorm2dShape, part: &[(f64, f64)], shift: &[f64], mean: &mut [f32], var: &mut [f32]) {
    let (c_len, m) = (s.x.c, s.m() as f64);
    for c in 0..c_len {
        let (mut s1, mut s2) = (0f64, 0f64);
        for n in 0..s.x.n {
            let (a, b) = part[n * c_len + c];
            s1 += a;
            s2 += b;
        }
        let d = s1 / m;
        mean[c] = (shift[c] + d) as f32;
        var[c] = ((s2 / m - d * d).max(0.0)) as f32;
    }
}

/// Fast [`super::batchnorm2d::batchnorm2d_stats_cpu`]: per-channel mean and biased variance over
/// `N, H, W`, in one pass: f64 sums of `x - k` and `(x - k)^2` with the shift `k` = the channel's
/// first element (so the variance does not lose digits when `|mean| >> std`). Equals the twin's
/// two-pass result to f64 rounding: within about 1 f32 ulp. Writes all of `mean` and `var`.
pub fn batchnorm2d_stats_fast(s: &BatchNorm2dShape, x: &[f32], mean: &mut [f32], var: &mut [f32]) {
    bn_check(s);
    check_len("batchnorm2d x", x.len(), s.x.len());
    check_len("batchnorm2d mean", mean.len(), s.x.c);
    check_len("batchnorm2d var", var.len(), s.x.c);
    let (c_len, hw) = (s.x.c, s.x.plane());
    let shift: Vec<f64> = (0..c_len).map(|c| x[c * hw] as f64).collect();
    let mut part = vec![(0f64, 0f64); s.x.n * c_len];
    part.par_iter_mut()
        .zip(x.par_chunks(hw))
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(plane, (p, x))| *p = shifted_moments(x, shift[plane % c_len]));
    finish_stats(s, &part, &shift, mean, var);
}

/// Fast [`super::batchnorm2d::batchnorm2d_fwd_cpu`]: `y = (x - mean[c]) * invstd * gamma[c] +
/// beta[c]`. Writes all of `y`; bitwise equal to the twin.
pub fn batchnorm2d_fwd_fast(
    s: &BatchNorm2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
) {
    bn_check(s);
    let c_len = s.x.c;
    check_len("batchnorm2d x", x.len(), s.x.len());
    for (name, v) in [("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)] {
        check_len(&format!("batchnorm2d {name}"), v.len(), c_len);
    }
    check_len("batchnorm2d y", y.len(), s.x.len());
    let hw = s.x.plane();
    let ppt = planes_per_task(hw);
    y.par_chunks_mut(ppt * hw).zip(x.par_chunks(ppt * hw)).enumerate().for_each(|(t, (y, x))| {
        for (j, (y, x)) in y.chunks_mut(hw).zip(x.chunks(hw)).enumerate() {
            let c = (t * ppt + j) % c_len;
            bn_fwd_kernel(x, y, mean[c], invstd(var[c], s.eps), gamma[c], beta[c]);
        }
    });
}

/// `(sum dy, sum dy * xhat)` over one plane in f64 (lanes: [`LANES`]), `xhat = (x - mu) * inv` in
/// f32 (the twin's).
fn dy_moments(x: &[f32], dy: &[f32], mu: f32, inv: f32) -> (f64, f64) {
    assert_eq!(x.len(), dy.len());
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: the CPU has AVX2 (checked at run time).
        return unsafe { dy_moments_avx2(x, dy, mu, inv) };
    }
    dy_moments_plain(x, dy, mu, inv)
}

fn dy_moments_plain(x: &[f32], dy: &[f32], mu: f32, inv: f32) -> (f64, f64) {
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    let (xc, gc) = (x.chunks_exact(LANES), dy.chunks_exact(LANES));
    let (xr, gr) = (xc.remainder(), gc.remainder());
    for (x, g) in xc.zip(gc) {
        for l in 0..LANES {
            let g64 = g[l] as f64;
            s1[l] += g64;
            s2[l] += g64 * ((x[l] - mu) * inv) as f64;
        }
    }
    let (mut a, mut b) = (combine_lanes(&s1), combine_lanes(&s2));
    for (&x, &g) in xr.iter().zip(gr) {
        a += g as f64;
        b += g as f64 * ((x - mu) * inv) as f64;
    }
    (a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dy_moments_avx2(x: &[f32], dy: &[f32], mu: f32, inv: f32) -> (f64, f64) {
    use std::arch::x86_64::*;
    let (xc, gc) = (x.chunks_exact(LANES), dy.chunks_exact(LANES));
    let (xr, gr) = (xc.remainder(), gc.remainder());
    let (muv, invv) = (_mm256_set1_ps(mu), _mm256_set1_ps(inv));
    let (mut a0, mut a1, mut b0, mut b1) =
        (_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd());
    for (xs, gs) in xc.zip(gc) {
        // SAFETY: `xs` and `gs` hold LANES = 8 f32 each.
        let (xv, gv) = unsafe { (_mm256_loadu_ps(xs.as_ptr()), _mm256_loadu_ps(gs.as_ptr())) };
        let xhat = _mm256_mul_ps(_mm256_sub_ps(xv, muv), invv);
        let (g_lo, g_hi) =
            (_mm256_cvtps_pd(_mm256_castps256_ps128(gv)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(gv)));
        let (h_lo, h_hi) =
            (_mm256_cvtps_pd(_mm256_castps256_ps128(xhat)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(xhat)));
        a0 = _mm256_add_pd(a0, g_lo);
        a1 = _mm256_add_pd(a1, g_hi);
        b0 = _mm256_add_pd(b0, _mm256_mul_pd(g_lo, h_lo));
        b1 = _mm256_add_pd(b1, _mm256_mul_pd(g_hi, h_hi));
    }
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    // SAFETY: each array holds 8 f64: two stores of 4.
    unsafe {
        _mm256_storeu_pd(s1.as_mut_ptr(), a0);
        _mm256_storeu_pd(s1.as_mut_ptr().add(4), a1);
        _mm256_storeu_pd(s2.as_mut_ptr(), b0);
        _mm256_storeu_pd(s2.as_mut_ptr().add(4), b1);
    }
    let (mut a, mut b) = (combine_lanes(&s1), combine_lanes(&s2));
    for (&x, &g) in xr.iter().zip(gr) {
        a += g as f64;
        b += g as f64 * ((x - mu) * inv) as f64;
    }
    (a, b)
}

/// Per-channel sums of per-plane pairs `part[n * C + c]`, planes in sample order, as f32.
fn finish_sums(n: usize, part: &[(f64, f64)], first: &mut [f32], second: &mut [f32]) {
    let c_len = first.len();
    for c in 0..c_len {
        let (mut a, mut b) = (0f64, 0f64);
        for k in 0..n {
            a += part[k * c_len + c].0;
            b += part[k * c_len + c].1;
        }
        first[c] = a as f32;
        second[c] = b as f32;
    }
}

/// Fast [`super::batchnorm2d::batchnorm2d_bwd_reduce_cpu`]: `dbeta[c] = sum dy`, `dgamma[c] = sum
/// dy * xhat` (xhat in f32, sums in f64 in another order than the twin's: equal to about 1 f32 ulp).
/// Writes all of `dgamma` and `dbeta`.
pub fn batchnorm2d_bwd_reduce_fast(
    s: &BatchNorm2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    dy: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    bn_check(s);
    let c_len = s.x.c;
    check_len("batchnorm2d x", x.len(), s.x.len());
    check_len("batchnorm2d mean", mean.len(), c_len);
    check_len("batchnorm2d var", var.len(), c_len);
    check_len("batchnorm2d dy", dy.len(), s.x.len());
    check_len("batchnorm2d dgamma", dgamma.len(), c_len);
    check_len("batchnorm2d dbeta", dbeta.len(), c_len);
    let hw = s.x.plane();
    let mut part = vec![(0f64, 0f64); s.x.n * c_len];
    part.par_iter_mut()
        .zip(x.par_chunks(hw).zip(dy.par_chunks(hw)))
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(plane, (p, (x, dy)))| {
            let c = plane % c_len;
            *p = dy_moments(x, dy, mean[c], invstd(var[c], s.eps));
        });
    finish_sums(s.x.n, &part, dbeta, dgamma);
}

/// `(mean, var, gamma, dgamma, dbeta)` of a batch-norm input gradient, `[C]` each.
type BnBackwardInputs<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [f32], &'a [f32]);

/// The twin's per-element input gradient of batch norm over one plane of channel `c`, optionally
/// followed by the backward of a ReLU before the batch norm (`x` is then the ReLU's output: `dx =
/// 0` where `x <= 0`).
#[allow(clippy::too_many_arguments)]
#[inline]
fn bn_input_plane(
    s: &BatchNorm2dShape,
    c: usize,
    x: &[f32],
    dy: &[f32],
    (mean, var, gamma, dgamma, dbeta): BnBackwardInputs,
    relu_before: bool,
    dx: &mut [f32],
) {
    let mf = s.m() as f32;
    let inv = invstd(var[c], s.eps);
    let k = BnInputConsts { mu: mean[c], inv, k: gamma[c] * inv / mf, mf, db: dbeta[c], dg: dgamma[c] };
    bn_input_kernel(x, dy, k, relu_before, dx);
}

/// Per-channel constants of the batch-norm input gradient.
#[derive(Clone, Copy)]
struct BnInputConsts {
    mu: f32,
    inv: f32,
    /// `gamma * inv / m`.
    k: f32,
    /// `m` as f32.
    mf: f32,
    db: f32,
    dg: f32,
}

simd_dispatch! {
    /// See [`bn_input_plane`].
    fn bn_input_kernel(x: &[f32], dy: &[f32], c: BnInputConsts, relu_before: bool, dx: &mut [f32]) = bn_input_body
}

#[inline(always)]
fn bn_input_body(x: &[f32], dy: &[f32], c: BnInputConsts, relu_before: bool, dx: &mut [f32]) {
    if relu_before {
        for ((d, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
            let v = c.k * (c.mf * g - c.db - (x - c.mu) * c.inv * c.dg);
            *d = if x > 0.0 { v } else { 0.0 };
        }
    } else {
        for ((d, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
            *d = c.k * (c.mf * g - c.db - (x - c.mu) * c.inv * c.dg);
        }
    }
}

simd_dispatch! {
    /// `y = (x - mu) * inv * g + b` over one plane (the twin's expression).
    fn bn_fwd_kernel(x: &[f32], y: &mut [f32], mu: f32, inv: f32, g: f32, b: f32) = bn_fwd_body
}

#[inline(always)]
fn bn_fwd_body(x: &[f32], y: &mut [f32], mu: f32, inv: f32, g: f32, b: f32) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = (x - mu) * inv * g + b;
    }
}

/// Fast [`super::batchnorm2d::batchnorm2d_bwd_input_cpu`]: `dx = gamma[c] * invstd / m * (m * dy -
/// dbeta[c] - xhat * dgamma[c])`. Writes all of `dx`; bitwise equal to the twin.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_bwd_input_fast(
    s: &BatchNorm2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    dgamma: &[f32],
    dbeta: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    bn_check(s);
    let c_len = s.x.c;
    check_len("batchnorm2d x", x.len(), s.x.len());
    for (name, v) in [("mean", mean), ("var", var), ("gamma", gamma), ("dgamma", dgamma), ("dbeta", dbeta)] {
        check_len(&format!("batchnorm2d {name}"), v.len(), c_len);
    }
    check_len("batchnorm2d dy", dy.len(), s.x.len());
    check_len("batchnorm2d dx", dx.len(), s.x.len());
    let hw = s.x.plane();
    let ppt = planes_per_task(hw);
    let stats = (mean, var, gamma, dgamma, dbeta);
    dx.par_chunks_mut(ppt * hw).zip(x.par_chunks(ppt * hw).zip(dy.par_chunks(ppt * hw))).enumerate().for_each(
        |(t, (dx, (x, dy)))| {
            for (j, (dx, (x, dy))) in dx.chunks_mut(hw).zip(x.chunks(hw).zip(dy.chunks(hw))).enumerate() {
                bn_input_plane(s, (t * ppt + j) % c_len, x, dy, stats, false, dx);
            }
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Fused forward passes (training mode): each computes two layers plane by plane, the second from
// the first's output while it is in the cache, and gives bitwise the results of the two separate
// fast functions.

/// `ReLU -> BatchNorm2d` statistics: `y = relu(x)` ([`relu_fwd_fast`]) and the batch statistics of
/// `y` ([`batchnorm2d_stats_fast`]`(bn, y)`), in one pass over `x`. Writes all of `y`, `mean`, `var`.
pub fn relu_batchnorm2d_stats_fast(bn: &BatchNorm2dShape, x: &[f32], y: &mut [f32], mean: &mut [f32], var: &mut [f32]) {
    bn_check(bn);
    check_len("relu x", x.len(), bn.x.len());
    check_len("relu y", y.len(), bn.x.len());
    check_len("batchnorm2d mean", mean.len(), bn.x.c);
    check_len("batchnorm2d var", var.len(), bn.x.c);
    let (c_len, hw) = (bn.x.c, bn.x.plane());
    let relu = |v: f32| if v > 0.0 { v } else { 0.0 };
    let shift: Vec<f64> = (0..c_len).map(|c| relu(x[c * hw]) as f64).collect();
    let mut part = vec![(0f64, 0f64); bn.x.n * c_len];
    part.par_iter_mut()
        .zip(y.par_chunks_mut(hw).zip(x.par_chunks(hw)))
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(plane, (p, (y, x)))| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = relu(x);
            }
            *p = shifted_moments(y, shift[plane % c_len]);
        });
    finish_stats(bn, &part, &shift, mean, var);
}

/// `BatchNorm2d -> MaxPool2d` forward: `y = ` [`batchnorm2d_fwd_fast`]`(bn, x, ...)` and
/// `y_pool, idx = ` [`maxpool2d_fwd_fast`]`(pool, y)`, plane by plane (`pool.input == bn.x`).
/// Writes all of `y`, `y_pool` and `idx`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_maxpool2d_fwd_fast(
    bn: &BatchNorm2dShape,
    pool: &MaxPool2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    y_pool: &mut [f32],
    idx: &mut [u32],
) {
    let (xs, ys) = maxpool_shapes(pool);
    bn_check(bn);
    assert!(bn.x == xs, "batchnorm2d_maxpool2d_fwd: batch norm {:?} vs max-pool input {:?}", bn.x, xs);
    let c_len = xs.c;
    check_len("batchnorm2d x", x.len(), xs.len());
    for (name, v) in [("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)] {
        check_len(&format!("batchnorm2d {name}"), v.len(), c_len);
    }
    check_len("batchnorm2d y", y.len(), xs.len());
    check_len("maxpool2d y", y_pool.len(), ys.len());
    check_len("maxpool2d idx", idx.len(), ys.len());
    if ys.is_empty() {
        batchnorm2d_fwd_fast(bn, x, mean, var, gamma, beta, y);
        return;
    }
    let (ip, op) = (xs.plane(), ys.plane());
    let ppt = planes_per_task(ip);
    y.par_chunks_mut(ppt * ip)
        .zip(y_pool.par_chunks_mut(ppt * op).zip(idx.par_chunks_mut(ppt * op)))
        .enumerate()
        .for_each(|(t, (y, (yp, idx)))| {
            for (j, (y, (yp, idx))) in y.chunks_mut(ip).zip(yp.chunks_mut(op).zip(idx.chunks_mut(op))).enumerate() {
                let plane = t * ppt + j;
                let c = plane % c_len;
                bn_fwd_kernel(&x[plane * ip..(plane + 1) * ip], y, mean[c], invstd(var[c], bn.eps), gamma[c], beta[c]);
                maxpool_plane(pool, ys, y, plane * ip, yp, idx);
            }
        });
}

/// Max-pool forward without the indices (evaluation mode): `y` = window maxima, equal to
/// [`maxpool2d_fwd_fast`]'s (as numbers: with windows holding both -0 and +0 the sign of a zero
/// maximum may differ, as the comparisons run in another order). Writes all of `y`.
pub fn maxpool2d_fwd_values_fast(s: &MaxPool2dShape, x: &[f32], y: &mut [f32]) {
    relu_batchnorm2d_maxpool2d_eval_fast(s, false, None, x, y);
}

/// An evaluation-mode batch norm: shape, running statistics, parameters (`[C]` each).
#[derive(Clone, Copy, Debug)]
pub struct BatchNorm2dEval<'a> {
    pub s: BatchNorm2dShape,
    pub mean: &'a [f32],
    pub var: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
}

/// Evaluation-mode `[ReLU ->] [BatchNorm2d ->] MaxPool2d` forward: `y = maxpool(f(x))` with `f =
/// bn(relu(x))` (each part optional), computed as `f(maxpool(x))`, or `f(minpool(x))` for a
/// channel with `gamma < 0`: `f` is monotone per channel (ReLU, then `((v - mean) * invstd) *
/// gamma + beta`, each step rounded monotonically: non-decreasing for `gamma >= 0`, non-increasing
/// for `gamma < 0`), so the result equals the pooled `f(x)` as numbers (inputs NaN-free; the sign of
/// a zero may differ), and `f` runs on the pooled values only. Writes all of `y`.
pub fn relu_batchnorm2d_maxpool2d_eval_fast(
    pool: &MaxPool2dShape,
    relu: bool,
    bn: Option<BatchNorm2dEval>,
    x: &[f32],
    y: &mut [f32],
) {
    let (xs, ys) = maxpool_shapes(pool);
    check_len("maxpool2d x", x.len(), xs.len());
    check_len("maxpool2d y", y.len(), ys.len());
    if let Some(b) = &bn {
        bn_check(&b.s);
        assert!(b.s.x == xs, "batchnorm2d {:?} vs max-pool input {:?}", b.s.x, xs);
        for (name, v) in [("mean", b.mean), ("var", b.var), ("gamma", b.gamma), ("beta", b.beta)] {
            check_len(&format!("batchnorm2d {name}"), v.len(), xs.c);
        }
    }
    if ys.is_empty() {
        return;
    }
    let (ip, op) = (xs.plane(), ys.plane());
    let ppt = planes_per_task(ip);
    y.par_chunks_mut(ppt * op).enumerate().for_each_init(Vec::new, |tmp, (t, y)| {
        for (j, y) in y.chunks_mut(op).enumerate() {
            let plane = t * ppt + j;
            let c = plane % xs.c;
            let min = bn.is_some_and(|b| b.gamma[c] < 0.0);
            maxpool_values_plane(pool, ys, &x[plane * ip..(plane + 1) * ip], min, tmp, y);
            if relu {
                for v in y.iter_mut() {
                    *v = if *v > 0.0 { *v } else { 0.0 };
                }
            }
            if let Some(b) = &bn {
                let (mu, inv, g, beta) = (b.mean[c], invstd(b.var[c], b.s.eps), b.gamma[c], b.beta[c]);
                for v in y.iter_mut() {
                    *v = (*v - mu) * inv * g + beta;
                }
            }
        }
    });
}

simd_dispatch! {
    /// Window maxima (minima when `min`) of one plane; `tmp` is scratch.
    fn maxpool_values_plane(s: &MaxPool2dShape, ys: Shape4, x: &[f32], min: bool, tmp: &mut Vec<f32>, y: &mut [f32]) =
        maxpool_values_body
}

#[inline(always)]
fn maxpool_values_body(s: &MaxPool2dShape, ys: Shape4, x: &[f32], min: bool, tmp: &mut Vec<f32>, y: &mut [f32]) {
    if min {
        pool_values(s, ys, x, tmp, y, |a: f32, b: f32| if b < a { b } else { a });
    } else {
        pool_values(s, ys, x, tmp, y, |a: f32, b: f32| if b > a { b } else { a });
    }
}

/// Per output row: `pick` over the window rows, column by column (contiguous: vectorizes), then
/// over each window's columns.
#[inline(always)]
fn pool_values(
    s: &MaxPool2dShape,
    ys: Shape4,
    x: &[f32],
    tmp: &mut Vec<f32>,
    y: &mut [f32],
    pick: impl Fn(f32, f32) -> f32 + Copy,
) {
    let (w, k, st) = (s.input.w, s.k, s.stride);
    let cols = (ys.w - 1) * st + k;
    let acc = grow(tmp, cols);
    for (oy, yr) in y.chunks_mut(ys.w).enumerate() {
        let r0 = oy * st * w;
        acc.copy_from_slice(&x[r0..r0 + cols]);
        for ky in 1..k {
            for (m, &v) in acc.iter_mut().zip(&x[r0 + ky * w..r0 + ky * w + cols]) {
                *m = pick(*m, v);
            }
        }
        for (ox, yv) in yr.iter_mut().enumerate() {
            *yv = acc[ox * st..ox * st + k].iter().fold(acc[ox * st], |a, &v| pick(a, v));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fused backward of `[ReLU ->] BatchNorm2d -> MaxPool2d` (the seed network's blocks).

/// The backward pass of `BatchNorm2d -> MaxPool2d`, optionally preceded by a ReLU, without
/// materializing the max-pool's input gradient (the largest tensor of the seed network):
///
/// - `dbeta[c] = sum dy_pool`, `dgamma[c] = sum dy_pool[o] * xhat[idx[o]]` (f64; each plane's
///   pooled outputs in order, the planes in sample order);
/// - `dx` = the batch norm's input gradient from the scattered max-pool gradient, times the ReLU
///   mask `x > 0` when `relu_before` (then `x`, the batch norm's input, is the ReLU's output).
///
/// `x`, `mean`, `var`, `gamma` are the batch norm's (shape `bn`, `bn.x == pool.input`), `idx` and
/// `dy_pool` the max-pool's (from its forward pass). Equals
/// `maxpool2d_bwd -> batchnorm2d_bwd_reduce -> batchnorm2d_bwd_input [-> relu_bwd]`: `dgamma` and
/// `dbeta` to f64 rounding (the terms are summed in window order instead of pixel order; with
/// overlapping windows the twin first adds the terms of one pixel in f32), `dx` bitwise given the
/// same `dgamma`, `dbeta`. Writes all of `dgamma`, `dbeta` and `dx`.
#[allow(clippy::too_many_arguments)]
pub fn maxpool2d_batchnorm2d_bwd_fast(
    pool: &MaxPool2dShape,
    bn: &BatchNorm2dShape,
    relu_before: bool,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    idx: &[u32],
    dy_pool: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dx: &mut [f32],
) {
    let (xs, ys) = maxpool_shapes(pool);
    bn_check(bn);
    assert!(bn.x == xs, "maxpool2d_batchnorm2d_bwd: batch norm {:?} vs max-pool input {:?}", bn.x, xs);
    let c_len = xs.c;
    check_len("batchnorm2d x", x.len(), xs.len());
    for (name, v) in [("mean", mean), ("var", var), ("gamma", gamma)] {
        check_len(&format!("batchnorm2d {name}"), v.len(), c_len);
    }
    check_len("maxpool2d idx", idx.len(), ys.len());
    check_len("maxpool2d dy", dy_pool.len(), ys.len());
    check_len("batchnorm2d dgamma", dgamma.len(), c_len);
    check_len("batchnorm2d dbeta", dbeta.len(), c_len);
    check_len("batchnorm2d dx", dx.len(), xs.len());
    let (ip, op) = (xs.plane(), ys.plane());
    // Pass 1: the parameter gradients from the pooled outputs only.
    let mut part = vec![(0f64, 0f64); xs.n * c_len];
    part.par_iter_mut().enumerate().with_min_len(planes_per_task(op.max(1))).for_each(|(plane, p)| {
        let c = plane % c_len;
        let (mu, inv) = (mean[c], invstd(var[c], bn.eps));
        let (xp, o) = (&x[plane * ip..(plane + 1) * ip], plane * op..(plane + 1) * op);
        let (mut a, mut b) = (0f64, 0f64);
        for (&i, &g) in idx[o.clone()].iter().zip(&dy_pool[o]) {
            let j = (i as usize).checked_sub(plane * ip).filter(|&j| j < ip);
            let j = j.unwrap_or_else(|| panic!("maxpool2d: index {i} is not in its plane (from maxpool2d_fwd?)"));
            a += g as f64;
            b += g as f64 * ((xp[j] - mu) * inv) as f64;
        }
        *p = (a, b);
    });
    finish_sums(xs.n, &part, dbeta, dgamma);
    // Pass 2: per plane, scatter the pooled gradient (in cache), then the input gradient.
    let ppt = planes_per_task(ip);
    let stats = (mean, var, gamma, &*dgamma, &*dbeta);
    dx.par_chunks_mut(ppt * ip).enumerate().for_each_init(Vec::new, |dyp, (t, dx)| {
        for (j, dx) in dx.chunks_mut(ip).enumerate() {
            let plane = t * ppt + j;
            let o = plane * op..(plane + 1) * op;
            let dyp = grow(dyp, ip);
            maxpool_bwd_plane(&idx[o.clone()], &dy_pool[o], plane * ip, dyp);
            bn_input_plane(bn, plane % c_len, &x[plane * ip..(plane + 1) * ip], dyp, stats, relu_before, dx);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 builds of the batch-norm sums equal the plain ones bitwise (so results do not
    /// depend on the CPU), for lengths around multiples of the lanes.
    #[test]
    fn avx2_sums_equal_the_plain_ones() {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            let x: Vec<f32> = (0..1700).map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.3) * 3.0).collect();
            let dy: Vec<f32> = (0..1700).map(|i| ((i * 104729 % 997) as f32 / 997.0 - 0.5) * 2.0).collect();
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 100, 1600, 1700] {
                let (x, dy) = (&x[..len], &dy[..len]);
                // SAFETY: the CPU has AVX2 (checked above).
                let (a, b) = unsafe { (shifted_moments_avx2(x, 0.25), dy_moments_avx2(x, dy, 0.1, 1.7)) };
                let (c, d) = (shifted_moments_plain(x, 0.25), dy_moments_plain(x, dy, 0.1, 1.7));
                assert_eq!((a.0.to_bits(), a.1.to_bits()), (c.0.to_bits(), c.1.to_bits()), "shifted_moments len {len}");
                assert_eq!((b.0.to_bits(), b.1.to_bits()), (d.0.to_bits(), d.1.to_bits()), "dy_moments len {len}");
            }
            assert_ne!(shifted_moments_plain(&x, 0.25), (0.0, 0.0));
        }
    }
}
