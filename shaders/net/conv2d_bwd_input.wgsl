// conv2d_bwd_input: dx[n, i, iy, ix] = sum over (o, ky, kx) of dy[n, o, oy, ox] * w[o, i, ky, kx] over the output
// positions oy = (iy + pad - ky) / stride, ox = (ix + pad - kx) / stride that exist (division exact, inside the output);
// 0 where no window reads the element. Gather form: no atomics. Prepended: shared/rng.wgsl, net/conv2d_common.wgsl,
// net/conv2d_w_uniform.wgsl or net/conv2d_w_storage.wgsl (`wt(k)` = w[k]) and net/conv2d_ib16.wgsl or
// net/conv2d_ib4.wgsl (`IQ`: the block is IB = 4 * IQ input channels).
//
// Register-blocked: one invocation computes PX = 5 input pixels of one row and column phase, ix = ph + s*(gx*PX + p)
// (s the stride, ph < s), times IB input channels (i0 .. i0+IB-1). Pixels of one phase are read by the same taps
// kx = kx0, kx0+s, ... (kx0 = (ph + pad) % s), and at tap kx pixel p reads ox = m(kx) + gx*PX + p with
// m(kx) = (ph + pad - kx) / s, which drops by one per tap: the 5 pixels slide over the dy row (one new load per tap),
// and each dy value feeds IB channels. Each accumulator adds the terms of (o, ky) in the twin's order and kx in the
// twin's order per phase; the GPU fuses multiply-adds.
//
// Workgroups g = ib * blk_groups + k (all invocations of a workgroup share the channel block ib, so their weight
// reads are uniform); invocation t = k * WG + lid runs over (n, iy, ph, gx), gx < x_groups = ceil(ceil(W / s) / PX).
// CPU twin: src/net/conv2d.rs::conv2d_bwd_input_cpu.

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

const WG: u32 = 64u;
const PX: u32 = 5u;          // keep in sync with src/net/conv2d.rs::CONV2D_BWD_INPUT_PX
const IB: u32 = 4u * IQ;

// dy[row + col], or 0 outside the output row (not loaded).
fn dyload(row: u32, col: i32) -> f32 {
    var v = 0.0;
    if (col >= 0 && col < i32(params.out_w)) {
        v = dy[row + u32(col)];
    }
    return v;
}

// wt(k0 + j * stride) for the IB channels j of the block, channels past C_in clamped to the last one (not stored).
fn wblock(k0: u32, stride: u32, i0: u32, last_i: u32) -> array<vec4<f32>, IQ> {
    var r: array<vec4<f32>, IQ>;
    for (var q = 0u; q < IQ; q++) {
        let i = i0 + 4u * q;
        r[q] = vec4(wt(k0 + min(i, last_i) * stride), wt(k0 + min(i + 1u, last_i) * stride),
                    wt(k0 + min(i + 2u, last_i) * stride), wt(k0 + min(i + 3u, last_i) * stride));
    }
    return r;
}

// acc += v * w over the IB channels of one pixel.
fn fma_block(acc: ptr<function, array<vec4<f32>, IQ>>, v: f32, w: array<vec4<f32>, IQ>) {
    let s = vec4(v);
    for (var q = 0u; q < IQ; q++) {
        (*acc)[q] = fma(s, w[q], (*acc)[q]);
    }
}

// dx[base + j * plane] = acc[j] for the n_i channels of the block that exist.
fn store_block(acc: array<vec4<f32>, IQ>, base: u32, plane: u32, n_i: u32) {
    for (var j = 0u; j < IB; j++) {
        if (j < n_i) {
            dx[base + j * plane] = acc[j / 4u][j % 4u];
        }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.y * nwg.x + wid.x;
    let ib = g / params.blk_groups;
    if (ib >= params.n_ch_blocks) {
        return;
    }
    let t = (g - ib * params.blk_groups) * WG + lid;
    let s = params.stride;
    if (t >= params.n * params.h * s * params.x_groups) {
        return;
    }
    let gx = t % params.x_groups;
    let ph = (t / params.x_groups) % s;
    let iy = (t / (params.x_groups * s)) % params.h;
    let n = t / (params.x_groups * s * params.h);
    let i0 = ib * IB;
    let last_i = params.c_in - 1u;
    let taps = params.kh * params.kw;
    let fan_in = params.c_in * taps;
    let kx0 = (ph + params.pad) % s;
    let m0 = i32((ph + params.pad - kx0) / s) + i32(gx * PX);   // ox of pixel 0 at tap kx0
    let ky0 = (iy + params.pad) % s;

    var a0: array<vec4<f32>, IQ>;
    var a1: array<vec4<f32>, IQ>;
    var a2: array<vec4<f32>, IQ>;
    var a3: array<vec4<f32>, IQ>;
    var a4: array<vec4<f32>, IQ>;
    for (var o = 0u; o < params.c_out; o++) {
        for (var ky = ky0; ky < params.kh; ky += s) {
            let ty = i32(iy + params.pad) - i32(ky);
            if (ty < 0 || u32(ty) / s >= params.out_h) {
                continue;
            }
            let dyrow = ((n * params.c_out + o) * params.out_h + u32(ty) / s) * params.out_w;
            let k0 = o * fan_in + ky * params.kw;
            // Before the first tap pixel p holds what pixel p + 1 reads at kx0 (each tap shifts the window by
            // one pixel and loads pixel 0's value).
            var m = m0;
            var x0 = dyload(dyrow, m + 1);
            var x1 = dyload(dyrow, m + 2);
            var x2 = dyload(dyrow, m + 3);
            var x3 = dyload(dyrow, m + 4);
            var x4 = 0.0;
            for (var kx = kx0; kx < params.kw; kx += s) {
                x4 = x3;
                x3 = x2;
                x2 = x1;
                x1 = x0;
                x0 = dyload(dyrow, m);
                m -= 1;
                let wv = wblock(k0 + kx, taps, i0, last_i);
                fma_block(&a0, x0, wv);
                fma_block(&a1, x1, wv);
                fma_block(&a2, x2, wv);
                fma_block(&a3, x3, wv);
                fma_block(&a4, x4, wv);
            }
        }
    }
    let plane = params.h * params.w;
    let n_i = min(IB, params.c_in - i0);
    let base = (n * params.c_in + i0) * plane + iy * params.w;
    let ix0 = ph + s * gx * PX;
    if (ix0 < params.w) {
        store_block(a0, base + ix0, plane, n_i);
    }
    if (ix0 + s < params.w) {
        store_block(a1, base + ix0 + s, plane, n_i);
    }
    if (ix0 + 2u * s < params.w) {
        store_block(a2, base + ix0 + 2u * s, plane, n_i);
    }
    if (ix0 + 3u * s < params.w) {
        store_block(a3, base + ix0 + 3u * s, plane, n_i);
    }
    if (ix0 + 4u * s < params.w) {
        store_block(a4, base + ix0 + 4u * s, plane, n_i);
    }
}
