//! Convolution and linear layers as matrix products (im2col + SGEMM): see the module
//! documentation of [`super`].

use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers: scratch, a bounds-checked SGEMM, the block plan, im2col / col2im.

#[derive(Default)]
pub(super) struct Scratch {
    col: Vec<f32>,
    tmp: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch. `f` must not call into rayon (a stolen job could borrow
/// the scratch again); nothing in this module does.
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// The first `len` elements of `v`, growing it if needed (contents unspecified).
pub(super) fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// Index one past the last element a `rows x cols` matrix with strides `(rs, cs)` touches.
pub(super) fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    (rows - 1) * rs + (cols - 1) * cs + 1
}

/// `C[m, n] = A[m, k] B[k, n] + beta C`, element `(r, c)` of a matrix `X` at `x[r * rsx + c * csx]`.
/// Bounds are checked here, so the unsafe SGEMM only touches the given slices. `beta` is 0 or 1;
/// with `beta = 0` the old contents of `C` are ignored (`matrixmultiply` guarantees it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
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
pub(super) struct ConvPlan {
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
pub(super) fn ox_range(s: &Conv2dShape, kx: usize, ow: usize) -> (usize, usize) {
    let lo = s.pad.saturating_sub(kx).div_ceil(s.stride).min(ow);
    let hi = (s.input.w + s.pad).saturating_sub(kx).div_ceil(s.stride).min(ow).max(lo);
    (lo, hi)
}

/// Input row read by output row `oy` through tap `ky` (None in the padding).
#[inline]
pub(super) fn input_row(s: &Conv2dShape, oy: usize, ky: usize) -> Option<usize> {
    (oy * s.stride + ky).checked_sub(s.pad).filter(|&iy| iy < s.input.h)
}

/// Fills rows `0..K` of `col` (`[K, cols]`, row-major) for samples `n0..n0 + ns` of `x` and output
/// rows `r0..r1`.
pub(super) fn im2col(s: &Conv2dShape, x: &[f32], n0: usize, ns: usize, (r0, r1): (usize, usize), col: &mut [f32]) {
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
pub(super) fn col2im_add(s: &Conv2dShape, col: &[f32], ns: usize, (r0, r1): (usize, usize), dx: &mut [f32]) {
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
pub(super) fn gather_planes(t: &mut [f32], src: &[f32], n0: usize, ns: usize, c: usize, p: usize) {
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
pub(super) fn n_groups(units: usize, partial_len: usize) -> usize {
    units.min(MAX_GROUPS).min((MAX_PARTIAL_ELEMS / partial_len.max(1)).max(1))
}

pub(super) fn group_bounds(units: usize, groups: usize, g: usize) -> (usize, usize) {
    (g * units / groups, (g + 1) * units / groups)
}

// ---------------------------------------------------------------------------------------------
// conv2d.

/// Fast [`crate::net::conv2d::conv2d_fwd_cpu`]: `y = conv(x, w) + b`. Writes all of `y`.
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

/// Fast [`crate::net::conv2d::conv2d_bwd_input_cpu`]: `dx = dL/dx` from `dy`. Writes all of `dx`.
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

/// Fast [`crate::net::conv2d::conv2d_bwd_weight_cpu`]: `dw = dL/dw`, `db = dL/db` from `x` and `dy`.
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
pub(super) fn sum_f32(v: &[f32]) -> f32 {
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

/// Fast [`crate::net::linear::linear_fwd_cpu`]: `y = x w^T + b`. Writes all of `y`.
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

/// Fast [`crate::net::linear::linear_bwd_input_cpu`]: `dx = dy w`. Writes all of `dx`.
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

/// Fast [`crate::net::linear::linear_bwd_weight_cpu`]: `dw = dy^T x`, `db = sum_n dy`. Writes all of
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
