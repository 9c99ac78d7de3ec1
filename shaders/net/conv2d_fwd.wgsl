// conv2d_fwd: one invocation per output pixel (n, oy, ox) and block of OB = 8 output channels
// o = 8 * ob .. 8 * ob + 7 (clipped to C_out), writing
//   y[n, o, oy, ox] = b[o] + sum over (i, ky, kx) of x[n, i, oy*stride + ky - pad, ox*stride + kx - pad] * w[o, i, ky, kx]
// (taps in the zero padding are skipped). Each accumulator adds in the twin's order (bias, then i,
// ky, kx). One input read serves 8 output channels, and neighbouring invocations (neighbouring ox)
// read the same weights, so the weight loads are broadcasts.
// Invocation index t = ((n * n_oc_blocks + ob) * out_h + oy) * out_w + ox.
// CPU twin: src/net/conv2d.rs::conv2d_fwd_cpu.

struct Conv2dParams {     // keep in sync with src/net/conv2d.rs::Conv2dParams (64 bytes)
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    pad: u32,
    stride: u32,
    out_h: u32,
    out_w: u32,
    n_oc_blocks: u32,   // ceil(c_out / OB), conv2d_fwd only
    chunk_rows: u32,    // rows (n, oy, ox) per partial sum, conv2d_bwd_weight only
    n_chunks: u32,      // conv2d_bwd_weight only
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Conv2dParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
const OB: u32 = 8u;             // keep in sync with src/net/conv2d.rs::CONV2D_FWD_OC_BLOCK

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let out_plane = params.out_h * params.out_w;
    if (t >= params.n * params.n_oc_blocks * out_plane) {
        return;
    }
    let ox = t % params.out_w;
    let oy = (t / params.out_w) % params.out_h;
    let nb = t / out_plane;
    let ob = nb % params.n_oc_blocks;
    let n = nb / params.n_oc_blocks;
    let o0 = ob * OB;
    let last_o = params.c_out - 1u;
    let fan_in = params.c_in * params.kh * params.kw;

    var acc: array<f32, 8>;
    for (var j = 0u; j < OB; j++) {
        acc[j] = b[min(o0 + j, last_o)];
    }
    let iy0 = i32(oy * params.stride) - i32(params.pad);
    let ix0 = i32(ox * params.stride) - i32(params.pad);
    for (var i = 0u; i < params.c_in; i++) {
        let x_plane = (n * params.c_in + i) * params.h;
        for (var ky = 0u; ky < params.kh; ky++) {
            let iy = iy0 + i32(ky);
            if (iy < 0 || iy >= i32(params.h)) {
                continue;
            }
            let x_row = (x_plane + u32(iy)) * params.w;
            for (var kx = 0u; kx < params.kw; kx++) {
                let ix = ix0 + i32(kx);
                if (ix < 0 || ix >= i32(params.w)) {
                    continue;
                }
                let xv = x[x_row + u32(ix)];
                let tap = (i * params.kh + ky) * params.kw + kx;
                for (var j = 0u; j < OB; j++) {
                    // Channels past C_out (last block) read a valid weight and are not stored.
                    acc[j] += xv * w[min(o0 + j, last_o) * fan_in + tap];
                }
            }
        }
    }
    let n_o = min(OB, params.c_out - o0);
    for (var j = 0u; j < n_o; j++) {
        y[((n * params.c_out + o0 + j) * params.out_h + oy) * params.out_w + ox] = acc[j];
    }
}
