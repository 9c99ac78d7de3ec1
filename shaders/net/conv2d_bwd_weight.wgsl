// conv2d_bwd_weight, stage 1 of 2: partial sums over chunks of the rows r = (n * out_h + oy) * out_w + ox, chunk c
// covering [c * chunk_rows, (c + 1) * chunk_rows) (clipped to N * out_h * out_w), written to
// partials[c * n_params + p], where
//   p <  dw_len = C_out*C_in*kh*kw, p = ((o * C_in + i) * kh + ky) * kw + kx:  dy[n, o, oy, ox] * x[n, i, iy, ix]
//        (iy = oy*stride + ky - pad, ix likewise; 0 in the padding),
//   p >= dw_len, o = p - dw_len:  dy[n, o, oy, ox]   (the bias gradient).
// n_params = dw_len + C_out. Stage 2 (net/reduce_chunks) adds the chunks in order into dw and db: a fixed-order f32
// sum, deterministic, no atomics. The twin sums in f64, hence the tolerance. Prepended: shared/rng.wgsl,
// net/conv2d_common.wgsl.
//
// Register-blocked: one invocation handles one chunk and a block of OB = 16 output channels times KR = 4 kernel rows
// (kr = i * kh + ky, consecutive, possibly spanning input channels) times KC = 4 kernel columns: 256 accumulators,
// each summing its chunk's rows in order (the GPU fuses multiply-adds). Per row it loads 16 dy values (each feeds
// 16 taps) and the 4 x 4 input window (each value feeds 16 channels); with stride 1 the window slides along the
// row, so a row of the same image row needs only 4 new loads. The bias sums ride along (block rows 0, columns 0).
// Invocation t = c * n_pb + pb, pb = (ob * n_rb + rb) * n_cb + cb over the n_pb = n_ch_blocks * n_rb * n_cb blocks.
// CPU twin: src/net/conv2d.rs::conv2d_bwd_weight_cpu (of both stages together).

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

const WG: u32 = 64u;
const OB: u32 = 16u;   // output channels per invocation; keep in sync with src/net/conv2d.rs::CONV2D_BWD_WEIGHT_OC_BLOCK
const KR: u32 = 4u;    // kernel rows per invocation; keep in sync with CONV2D_BWD_WEIGHT_ROWS
const KC: u32 = 4u;    // kernel columns per invocation; keep in sync with CONV2D_BWD_WEIGHT_COLS

// x[row + col] if the row is inside the image and col inside the row, else 0 (not loaded).
fn xload(row: u32, row_ok: bool, col: i32) -> f32 {
    var v = 0.0;
    if (row_ok && col >= 0 && col < i32(params.w)) {
        v = x[row + u32(col)];
    }
    return v;
}

// dy[base + q * plane] for channel q < n_o of the block, else 0 (not loaded).
fn dyload(base: u32, q: u32, plane: u32, n_o: u32) -> f32 {
    var v = 0.0;
    if (q < n_o) {
        v = dy[base + q * plane];
    }
    return v;
}

// acc[j][k] += d * xs[j][k] over the KR x KC taps of one channel.
fn fma_taps(acc: ptr<function, array<vec4<f32>, 4>>, d: f32, xs: array<vec4<f32>, 4>) {
    let s = vec4(d);
    (*acc)[0] = fma(s, xs[0], (*acc)[0]);
    (*acc)[1] = fma(s, xs[1], (*acc)[1]);
    (*acc)[2] = fma(s, xs[2], (*acc)[2]);
    (*acc)[3] = fma(s, xs[3], (*acc)[3]);
}

// The partial sums of channel o (if it exists): its taps in the block and, if with_bias, its bias term.
fn store_taps(acc: array<vec4<f32>, 4>, bsum: f32, pbase: u32, o: u32, kr0: u32, kx0: u32, with_bias: bool,
              rvalid: array<bool, 4>) {
    if (o >= params.c_out) {
        return;
    }
    let fan_in = params.c_in * params.kh * params.kw;
    for (var j = 0u; j < KR; j++) {
        for (var k = 0u; k < KC; k++) {
            if (rvalid[j] && kx0 + k < params.kw) {
                partials[pbase + o * fan_in + (kr0 + j) * params.kw + kx0 + k] = acc[j][k];
            }
        }
    }
    if (with_bias) {
        partials[pbase + params.c_out * fan_in + o] = bsum;
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let n_kr = params.c_in * params.kh;
    let n_rb = (n_kr + KR - 1u) / KR;
    let n_cb = (params.kw + KC - 1u) / KC;
    let n_pb = params.n_ch_blocks * n_rb * n_cb;
    if (t >= params.n_chunks * n_pb) {
        return;
    }
    let c = t / n_pb;
    let pb = t % n_pb;
    let cb = pb % n_cb;
    let rb = (pb / n_cb) % n_rb;
    let ob = pb / (n_cb * n_rb);
    let o0 = ob * OB;
    let n_o = min(OB, params.c_out - o0);
    let kr0 = rb * KR;
    let kx0 = cb * KC;
    let s = params.stride;
    // Kernel row j of the block: input channel ich[j], tap row kyr[j].
    var ich: array<u32, 4>;
    var kyr: array<u32, 4>;
    var rvalid: array<bool, 4>;
    for (var j = 0u; j < KR; j++) {
        let kr = min(kr0 + j, n_kr - 1u);
        ich[j] = kr / params.kh;
        kyr[j] = kr % params.kh;
        rvalid[j] = kr0 + j < n_kr;
    }
    let plane = params.out_h * params.out_w;
    let rows = params.n * plane;
    let r0 = c * params.chunk_rows;
    let r1 = min(r0 + params.chunk_rows, rows);
    // Walk the rows with counters (n, oy, ox) instead of dividing for every row.
    var ox = r0 % params.out_w;
    var oy = (r0 / params.out_w) % params.out_h;
    var n = r0 / plane;

    var a0: array<vec4<f32>, 4>;
    var a1: array<vec4<f32>, 4>;
    var a2: array<vec4<f32>, 4>;
    var a3: array<vec4<f32>, 4>;
    var a4: array<vec4<f32>, 4>;
    var a5: array<vec4<f32>, 4>;
    var a6: array<vec4<f32>, 4>;
    var a7: array<vec4<f32>, 4>;
    var a8: array<vec4<f32>, 4>;
    var a9: array<vec4<f32>, 4>;
    var a10: array<vec4<f32>, 4>;
    var a11: array<vec4<f32>, 4>;
    var a12: array<vec4<f32>, 4>;
    var a13: array<vec4<f32>, 4>;
    var a14: array<vec4<f32>, 4>;
    var a15: array<vec4<f32>, 4>;
    var bsum0 = vec4(0.0);
    var bsum1 = vec4(0.0);
    var bsum2 = vec4(0.0);
    var bsum3 = vec4(0.0);
    var xs: array<vec4<f32>, 4>;     // the input window: xs[j][k] for kernel row j, column kx0 + k
    var xrow: array<u32, 4>;
    var row_ok: array<bool, 4>;
    var fresh = true;                // the window must be loaded whole (first row, new image row, or stride > 1)
    for (var r = r0; r < r1; r++) {
        let ixb = i32(ox * s + kx0) - i32(params.pad);
        if (fresh || s != 1u) {
            for (var j = 0u; j < KR; j++) {
                let iy = i32(oy * s + kyr[j]) - i32(params.pad);
                row_ok[j] = rvalid[j] && iy >= 0 && iy < i32(params.h);
                xrow[j] = ((n * params.c_in + ich[j]) * params.h + u32(max(iy, 0))) * params.w;
                xs[j] = vec4(xload(xrow[j], row_ok[j], ixb), xload(xrow[j], row_ok[j], ixb + 1),
                             xload(xrow[j], row_ok[j], ixb + 2), xload(xrow[j], row_ok[j], ixb + 3));
            }
        } else {
            for (var j = 0u; j < KR; j++) {
                xs[j] = vec4(xs[j].yzw, xload(xrow[j], row_ok[j], ixb + 3));
            }
        }
        let dyb = ((n * params.c_out + o0) * params.out_h + oy) * params.out_w + ox;
        let d0 = dyload(dyb, 0u, plane, n_o);
        let d1 = dyload(dyb, 1u, plane, n_o);
        let d2 = dyload(dyb, 2u, plane, n_o);
        let d3 = dyload(dyb, 3u, plane, n_o);
        let d4 = dyload(dyb, 4u, plane, n_o);
        let d5 = dyload(dyb, 5u, plane, n_o);
        let d6 = dyload(dyb, 6u, plane, n_o);
        let d7 = dyload(dyb, 7u, plane, n_o);
        let d8 = dyload(dyb, 8u, plane, n_o);
        let d9 = dyload(dyb, 9u, plane, n_o);
        let d10 = dyload(dyb, 10u, plane, n_o);
        let d11 = dyload(dyb, 11u, plane, n_o);
        let d12 = dyload(dyb, 12u, plane, n_o);
        let d13 = dyload(dyb, 13u, plane, n_o);
        let d14 = dyload(dyb, 14u, plane, n_o);
        let d15 = dyload(dyb, 15u, plane, n_o);
        bsum0 += vec4(d0, d1, d2, d3);
        bsum1 += vec4(d4, d5, d6, d7);
        bsum2 += vec4(d8, d9, d10, d11);
        bsum3 += vec4(d12, d13, d14, d15);
        fma_taps(&a0, d0, xs);
        fma_taps(&a1, d1, xs);
        fma_taps(&a2, d2, xs);
        fma_taps(&a3, d3, xs);
        fma_taps(&a4, d4, xs);
        fma_taps(&a5, d5, xs);
        fma_taps(&a6, d6, xs);
        fma_taps(&a7, d7, xs);
        fma_taps(&a8, d8, xs);
        fma_taps(&a9, d9, xs);
        fma_taps(&a10, d10, xs);
        fma_taps(&a11, d11, xs);
        fma_taps(&a12, d12, xs);
        fma_taps(&a13, d13, xs);
        fma_taps(&a14, d14, xs);
        fma_taps(&a15, d15, xs);
        fresh = false;
        ox += 1u;
        if (ox == params.out_w) {
            ox = 0u;
            fresh = true;
            oy += 1u;
            if (oy == params.out_h) {
                oy = 0u;
                n += 1u;
            }
        }
    }
    let pbase = c * (params.c_out * params.c_in * params.kh * params.kw + params.c_out);
    let with_bias = rb == 0u && cb == 0u;
    store_taps(a0, bsum0.x, pbase, o0 + 0u, kr0, kx0, with_bias, rvalid);
    store_taps(a1, bsum0.y, pbase, o0 + 1u, kr0, kx0, with_bias, rvalid);
    store_taps(a2, bsum0.z, pbase, o0 + 2u, kr0, kx0, with_bias, rvalid);
    store_taps(a3, bsum0.w, pbase, o0 + 3u, kr0, kx0, with_bias, rvalid);
    store_taps(a4, bsum1.x, pbase, o0 + 4u, kr0, kx0, with_bias, rvalid);
    store_taps(a5, bsum1.y, pbase, o0 + 5u, kr0, kx0, with_bias, rvalid);
    store_taps(a6, bsum1.z, pbase, o0 + 6u, kr0, kx0, with_bias, rvalid);
    store_taps(a7, bsum1.w, pbase, o0 + 7u, kr0, kx0, with_bias, rvalid);
    store_taps(a8, bsum2.x, pbase, o0 + 8u, kr0, kx0, with_bias, rvalid);
    store_taps(a9, bsum2.y, pbase, o0 + 9u, kr0, kx0, with_bias, rvalid);
    store_taps(a10, bsum2.z, pbase, o0 + 10u, kr0, kx0, with_bias, rvalid);
    store_taps(a11, bsum2.w, pbase, o0 + 11u, kr0, kx0, with_bias, rvalid);
    store_taps(a12, bsum3.x, pbase, o0 + 12u, kr0, kx0, with_bias, rvalid);
    store_taps(a13, bsum3.y, pbase, o0 + 13u, kr0, kx0, with_bias, rvalid);
    store_taps(a14, bsum3.z, pbase, o0 + 14u, kr0, kx0, with_bias, rvalid);
    store_taps(a15, bsum3.w, pbase, o0 + 15u, kr0, kx0, with_bias, rvalid);
}
