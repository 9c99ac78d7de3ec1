// linear_bwd_input: one invocation per input element (n, i), writing
//   dx[n, i] = sum over o of dy[n, o] * w[o, i]
// adding in the twin's order (o ascending, from 0). Invocation index t = n * in_f + i; neighbouring
// invocations read neighbouring weights of a row of w.
// CPU twin: src/net/linear.rs::linear_bwd_input_cpu.

struct LinearParams {     // mirrored by src/net/linear.rs::LinearParams (layout checked by tests/shaders.rs)
    n: u32,
    in_f: u32,
    out_f: u32,
    chunk_rows: u32,    // rows (samples) per partial sum, linear_bwd_weight only
    n_chunks: u32,      // linear_bwd_weight only
    o_blocks: u32,      // linear_fwd: ceil(out_f / OB)
    relu: u32,          // linear_fwd only
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: LinearParams;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    if (t >= params.n * params.in_f) {
        return;
    }
    let i = t % params.in_f;
    let n = t / params.in_f;
    let dy_row = n * params.out_f;
    var acc = 0.0;
    for (var o = 0u; o < params.out_f; o++) {
        acc += dy[dy_row + o] * w[o * params.in_f + i];
    }
    dx[t] = acc;
}
