// conv2d_bwd_input: one invocation per input element (n, i, iy, ix), writing
//   dx[n, i, iy, ix] = sum over (o, ky, kx) of dy[n, o, oy, ox] * w[o, i, ky, kx]
// over the output positions oy = (iy + pad - ky) / stride, ox = (ix + pad - kx) / stride that exist
// (division exact, inside the output); 0 when no window reads the element. Gather form: no atomics.
// Adds in the twin's order (o, ky, kx).
// Invocation index t = ((n * c_in + i) * h + iy) * w + ix.
// CPU twin: src/net/conv2d.rs::conv2d_bwd_input_cpu.

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
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let in_plane = params.h * params.w;
    if (t >= params.n * params.c_in * in_plane) {
        return;
    }
    let ix = t % params.w;
    let iy = (t / params.w) % params.h;
    let ni = t / in_plane;
    let i = ni % params.c_in;
    let n = ni / params.c_in;
    let stride = i32(params.stride);

    var acc = 0.0;
    for (var o = 0u; o < params.c_out; o++) {
        let dy_plane = (n * params.c_out + o) * params.out_h;
        let w_base = (o * params.c_in + i) * params.kh;
        for (var ky = 0u; ky < params.kh; ky++) {
            let ty = i32(iy + params.pad) - i32(ky);
            if (ty < 0 || ty % stride != 0 || u32(ty / stride) >= params.out_h) {
                continue;
            }
            let dy_row = (dy_plane + u32(ty / stride)) * params.out_w;
            for (var kx = 0u; kx < params.kw; kx++) {
                let tx = i32(ix + params.pad) - i32(kx);
                if (tx < 0 || tx % stride != 0 || u32(tx / stride) >= params.out_w) {
                    continue;
                }
                acc += dy[dy_row + u32(tx / stride)] * w[(w_base + ky) * params.kw + kx];
            }
        }
    }
    dx[t] = acc;
}
