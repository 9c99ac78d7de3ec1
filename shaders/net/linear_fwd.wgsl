// linear_fwd: one invocation per output element (n, o), writing
//   y[n, o] = b[o] + sum over i of x[n, i] * w[o, i]
// (x [N, in_f], w [out_f, in_f], y [N, out_f], row-major), adding in the twin's order (bias, then i).
// Invocation index t = n * out_f + o; neighbouring invocations share the row of x.
// x and y hold xt / yt (shared/act_*.wgsl: f32, or f16 for f16 inference); the arithmetic is f32.
// CPU twin: src/net/linear.rs::linear_fwd_cpu (output rounded to f16 when yt is f16).

struct LinearParams {     // keep in sync with src/net/linear.rs::LinearParams (32 bytes)
    n: u32,
    in_f: u32,
    out_f: u32,
    chunk_rows: u32,    // rows (samples) per partial sum, linear_bwd_weight only
    n_chunks: u32,      // linear_bwd_weight only
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: LinearParams;
@group(0) @binding(1) var<storage, read> x: array<xt>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<yt>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    if (t >= params.n * params.out_f) {
        return;
    }
    let o = t % params.out_f;
    let n = t / params.out_f;
    let x_row = n * params.in_f;
    let w_row = o * params.in_f;
    var acc = b[o];
    for (var i = 0u; i < params.in_f; i++) {
        acc += f32(x[x_row + i]) * w[w_row + i];
    }
    y[t] = yt(acc);
}
