// conv2d_fwd: y[n, o, oy, ox] = b[o] + sum over (i, ky, kx) of x[n, i, oy*stride + ky - pad, ox*stride + kx - pad] * w[o, i, ky, kx]
// (taps in the zero padding add nothing). Prepended: shared/rng.wgsl, net/conv2d_common.wgsl (the uniform) and
// net/conv2d_w_uniform.wgsl or net/conv2d_w_storage.wgsl (`wt(k)`: the weights, then the bias at C_out*C_in*kh*kw + o).
//
// Register-blocked direct convolution: one invocation computes PX = 5 neighbouring output pixels (n, oy, ox0 .. ox0+4)
// times OB = 16 output channels (o0 .. o0+15) in 80 accumulators, so each input value loaded feeds 16 channels and each
// weight 5 pixels. Along a kernel row the 5 pixels slide over the input row: with stride 1 each tap needs one new load;
// with stride s the taps kx = r, r+s, r+2s, ... of each residue r slide the same way. Padding taps are not loaded.
// Each accumulator adds, after the bias, the products of (i, ky) in the twin's order and kx by residue class of the
// stride (the twin's order when stride = 1); the GPU fuses multiply-adds.
//
// Workgroups g = ob * blk_groups + k: all invocations of a workgroup share the channel block ob (so their weight reads
// are uniform); invocation t = k * WG + lid runs over (n, oy, gx) with ox0 = gx * PX, gx < x_groups = ceil(out_w / PX).
// x and y hold the activation types xt / yt of the prepended shared/act_*.wgsl piece (f32, or f16 for inference
// with --net-precision f16); the arithmetic is f32.
// CPU twin: src/net/conv2d.rs::conv2d_fwd_cpu (output rounded to f16 when yt is f16).

@group(0) @binding(1) var<storage, read> x: array<xt>;
@group(0) @binding(3) var<storage, read_write> y: array<yt>;

const WG: u32 = 64u;
const PX: u32 = 5u;    // keep in sync with src/net/conv2d.rs::CONV2D_FWD_PX
const OB: u32 = 16u;   // keep in sync with src/net/conv2d.rs::CONV2D_FWD_OC_BLOCK

// x[row + col], or 0 in the zero padding (not loaded).
fn xload(row: u32, col: i32) -> f32 {
    var v = 0.0;
    if (col >= 0 && col < i32(params.w)) {
        v = f32(x[row + u32(col)]);
    }
    return v;
}

// wt(k0 + j * stride) for the 16 channels j of the block, channels past C_out clamped to the last one (not stored).
fn wblock(k0: u32, stride: u32, o0: u32, last_o: u32) -> array<vec4<f32>, 4> {
    var r: array<vec4<f32>, 4>;
    for (var q = 0u; q < 4u; q++) {
        let o = o0 + 4u * q;
        r[q] = vec4(wt(k0 + min(o, last_o) * stride), wt(k0 + min(o + 1u, last_o) * stride),
                    wt(k0 + min(o + 2u, last_o) * stride), wt(k0 + min(o + 3u, last_o) * stride));
    }
    return r;
}

// acc += v * w over the 16 channels of one pixel.
fn fma16(acc: ptr<function, array<vec4<f32>, 4>>, v: f32, w: array<vec4<f32>, 4>) {
    let s = vec4(v);
    (*acc)[0] = fma(s, w[0], (*acc)[0]);
    (*acc)[1] = fma(s, w[1], (*acc)[1]);
    (*acc)[2] = fma(s, w[2], (*acc)[2]);
    (*acc)[3] = fma(s, w[3], (*acc)[3]);
}

// y[base + j * plane] = acc[j] for the n_o channels of the block that exist.
fn store16(acc: array<vec4<f32>, 4>, base: u32, plane: u32, n_o: u32) {
    for (var j = 0u; j < OB; j++) {
        if (j < n_o) {
            y[base + j * plane] = yt(acc[j / 4u][j % 4u]);
        }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.y * nwg.x + wid.x;
    let ob = g / params.blk_groups;
    if (ob >= params.n_ch_blocks) {
        return;
    }
    let t = (g - ob * params.blk_groups) * WG + lid;
    if (t >= params.n * params.out_h * params.x_groups) {
        return;
    }
    let gx = t % params.x_groups;
    let oy = (t / params.x_groups) % params.out_h;
    let n = t / (params.x_groups * params.out_h);
    let s = params.stride;
    let o0 = ob * OB;
    let ox0 = gx * PX;
    let last_o = params.c_out - 1u;
    let fan_in = params.c_in * params.kh * params.kw;

    let bias = wblock(fan_in * params.c_out, 1u, o0, last_o);
    var a0 = bias;
    var a1 = bias;
    var a2 = bias;
    var a3 = bias;
    var a4 = bias;
    let ix0 = i32(ox0 * s) - i32(params.pad);   // input column of pixel 0 at kx = 0
    let n_res = min(s, params.kw);
    for (var i = 0u; i < params.c_in; i++) {
        for (var ky = 0u; ky < params.kh; ky++) {
            let iy = i32(oy * s + ky) - i32(params.pad);
            if (iy < 0 || iy >= i32(params.h)) {
                continue;
            }
            let xrow = ((n * params.c_in + i) * params.h + u32(iy)) * params.w;
            let tap0 = (i * params.kh + ky) * params.kw;
            for (var r = 0u; r < n_res; r++) {
                // Pixel p reads column ix0 + p*s + kx; before the first tap kx = r, pixel p holds what pixel p - 1
                // reads at kx = r (each tap shifts the window by one pixel and loads pixel 4's value).
                var x0 = 0.0;
                var x1 = xload(xrow, ix0 + i32(r));
                var x2 = xload(xrow, ix0 + i32(s + r));
                var x3 = xload(xrow, ix0 + i32(2u * s + r));
                var x4 = xload(xrow, ix0 + i32(3u * s + r));
                for (var kx = r; kx < params.kw; kx += s) {
                    x0 = x1;
                    x1 = x2;
                    x2 = x3;
                    x3 = x4;
                    x4 = xload(xrow, ix0 + i32(4u * s + kx));
                    let wv = wblock(tap0 + kx, fan_in, o0, last_o);
                    fma16(&a0, x0, wv);
                    fma16(&a1, x1, wv);
                    fma16(&a2, x2, wv);
                    fma16(&a3, x3, wv);
                    fma16(&a4, x4, wv);
                }
            }
        }
    }
    let plane = params.out_h * params.out_w;
    let base = (n * params.c_out + o0) * plane + oy * params.out_w + ox0;
    let n_o = min(OB, params.c_out - o0);
    if (ox0 < params.out_w) {
        store16(a0, base, plane, n_o);
    }
    if (ox0 + 1u < params.out_w) {
        store16(a1, base + 1u, plane, n_o);
    }
    if (ox0 + 2u < params.out_w) {
        store16(a2, base + 2u, plane, n_o);
    }
    if (ox0 + 3u < params.out_w) {
        store16(a3, base + 3u, plane, n_o);
    }
    if (ox0 + 4u < params.out_w) {
        store16(a4, base + 4u, plane, n_o);
    }
}
