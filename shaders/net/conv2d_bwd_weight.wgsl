// conv2d_bwd_weight, stage 1 of 2: one invocation per (chunk c, parameter p), writing the partial
// sum over the rows r = (n * out_h + oy) * out_w + ox in [c * chunk_rows, (c + 1) * chunk_rows)
// (clipped to N * out_h * out_w) to partials[c * n_params + p], where
//   p <  dw_len = C_out*C_in*kh*kw, p = ((o * C_in + i) * kh + ky) * kw + kx:  dy[n, o, oy, ox] * x[n, i, iy, ix]
//        (iy = oy*stride + ky - pad, ix likewise; 0 in the padding),
//   p >= dw_len, o = p - dw_len:  dy[n, o, oy, ox]   (the bias gradient).
// n_params = dw_len + C_out. Stage 2 (net/reduce_chunks) adds the chunks in order into dw and db:
// a fixed-order f32 sum, deterministic, no atomics. The twin sums in f64, hence the tolerance.
// Invocation index t = c * n_params + p.
// CPU twin: src/net/conv2d.rs::conv2d_bwd_weight_cpu (of both stages together).

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
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let taps = params.kh * params.kw;
    let dw_len = params.c_out * params.c_in * taps;
    let n_params = dw_len + params.c_out;
    if (t >= params.n_chunks * n_params) {
        return;
    }
    let p = t % n_params;
    let c = t / n_params;
    let rows = params.n * params.out_h * params.out_w;
    let r0 = c * params.chunk_rows;
    let r1 = min(r0 + params.chunk_rows, rows);
    // Walk the rows with counters (n, oy, ox) instead of dividing for every row.
    var ox = r0 % params.out_w;
    var oy = (r0 / params.out_w) % params.out_h;
    var n = r0 / (params.out_h * params.out_w);

    var acc = 0.0;
    if (p < dw_len) {
        let o = p / (params.c_in * taps);
        let i = (p / taps) % params.c_in;
        let ky = (p % taps) / params.kw;
        let kx = p % params.kw;
        let dy_off = i32(ky) - i32(params.pad);
        let dx_off = i32(kx) - i32(params.pad);
        for (var r = r0; r < r1; r++) {
            let iy = i32(oy * params.stride) + dy_off;
            let ix = i32(ox * params.stride) + dx_off;
            if (iy >= 0 && iy < i32(params.h) && ix >= 0 && ix < i32(params.w)) {
                let g = dy[((n * params.c_out + o) * params.out_h + oy) * params.out_w + ox];
                acc += g * x[((n * params.c_in + i) * params.h + u32(iy)) * params.w + u32(ix)];
            }
            ox += 1u;
            if (ox == params.out_w) {
                ox = 0u;
                oy += 1u;
                if (oy == params.out_h) {
                    oy = 0u;
                    n += 1u;
                }
            }
        }
    } else {
        let o = p - dw_len;
        for (var r = r0; r < r1; r++) {
            acc += dy[((n * params.c_out + o) * params.out_h + oy) * params.out_w + ox];
            ox += 1u;
            if (ox == params.out_w) {
                ox = 0u;
                oy += 1u;
                if (oy == params.out_h) {
                    oy = 0u;
                    n += 1u;
                }
            }
        }
    }
    partials[t] = acc;
}
