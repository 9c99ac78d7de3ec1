//! Element-wise layers (ReLU, dropout) and max pooling: bitwise equal to their twins.

use super::*;

// ---------------------------------------------------------------------------------------------
// Element-wise layers: ReLU, dropout. Bitwise equal to their twins (the same expression per
// element), in larger parallel chunks.

/// Elements per rayon task of the element-wise layers.
pub const ELEM_CHUNK: usize = 1 << 15;

/// Planes per rayon task for per-plane work: at least [`ELEM_CHUNK`] / 8 elements per task.
pub(super) fn planes_per_task(plane: usize) -> usize {
    (ELEM_CHUNK / 8).div_ceil(plane.max(1))
}

/// Fast [`crate::net::relu::relu_fwd_cpu`]: `y = x if x > 0 else 0`. Bitwise equal to the twin.
pub fn relu_fwd_fast(x: &[f32], y: &mut [f32]) {
    check_len("relu y", y.len(), x.len());
    y.par_chunks_mut(ELEM_CHUNK).zip(x.par_chunks(ELEM_CHUNK)).for_each(|(y, x)| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = if x > 0.0 { x } else { 0.0 };
        }
    });
}

/// Fast [`crate::net::relu::relu_bwd_cpu`]: `dx = dy if y > 0 else 0`. Bitwise equal to the twin.
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
pub(super) fn dropout_apply(c: &DropoutCfg, inp: &[f32], out: &mut [f32]) {
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

/// Fast [`crate::net::dropout::dropout_fwd_cpu`]: `y = keep ? x / (1 - p) : 0`. Bitwise equal to the twin.
pub fn dropout_fwd_fast(c: &DropoutCfg, x: &[f32], y: &mut [f32]) {
    check_len("dropout x", x.len(), c.n);
    check_len("dropout y", y.len(), c.n);
    dropout_apply(c, x, y);
}

/// Fast [`crate::net::dropout::dropout_bwd_cpu`]: `dx = keep ? dy / (1 - p) : 0`. Bitwise equal to the twin.
pub fn dropout_bwd_fast(c: &DropoutCfg, dy: &[f32], dx: &mut [f32]) {
    check_len("dropout dy", dy.len(), c.n);
    check_len("dropout dx", dx.len(), c.n);
    dropout_apply(c, dy, dx);
}

// ---------------------------------------------------------------------------------------------
// Max pooling. Bitwise equal to the twins.

/// Checks the shapes of a max-pool forward or backward; returns (input, output) shapes.
#[track_caller]
pub(super) fn maxpool_shapes(s: &MaxPool2dShape) -> (Shape4, Shape4) {
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
pub(super) fn maxpool_plane_body(
    s: &MaxPool2dShape,
    ys: Shape4,
    x: &[f32],
    base: usize,
    y: &mut [f32],
    idx: &mut [u32],
) {
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
pub(super) fn maxpool_plane_k<const K: usize>(
    w: usize,
    ys: Shape4,
    x: &[f32],
    base: usize,
    y: &mut [f32],
    idx: &mut [u32],
) {
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

/// Fast [`crate::net::maxpool2d::maxpool2d_fwd_cpu`]: window maxima and their flat indices into `x`
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
pub(super) fn maxpool_bwd_plane(idx: &[u32], dy: &[f32], base: usize, dx: &mut [f32]) {
    dx.fill(0.0);
    for (&i, &g) in idx.iter().zip(dy) {
        let j = (i as usize).checked_sub(base).filter(|&j| j < dx.len());
        let j = j.unwrap_or_else(|| panic!("maxpool2d: index {i} is not in its plane (from maxpool2d_fwd?)"));
        dx[j] += g;
    }
}

/// Fast [`crate::net::maxpool2d::maxpool2d_bwd_cpu`]: `dx[i]` = sum of `dy[o]` over the outputs with
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
