// linear_bwd_weight, stage 1 of 2: one invocation per (chunk c, parameter p), writing the partial
// sum over the samples n in [c * chunk_rows, (c + 1) * chunk_rows) (clipped to N) to
// partials[c * n_params + p], where
//   p <  out_f * in_f, p = o * in_f + i:  dy[n, o] * x[n, i]
//   p >= out_f * in_f, o = p - out_f * in_f:  dy[n, o]   (the bias gradient),
// n_params = out_f * in_f + out_f. Stage 2 (net/reduce_chunks) adds the chunks in order into dw
// and db: a fixed-order f32 sum, deterministic, no atomics. The twin sums in f64.
// Invocation index t = c * n_params + p.
// CPU twin: src/net/linear.rs::linear_bwd_weight_cpu (of both stages together).

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
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let dw_len = params.out_f * params.in_f;
    let n_params = dw_len + params.out_f;
    if (t >= params.n_chunks * n_params) {
        return;
    }
    let p = t % n_params;
    let c = t / n_params;
    let r0 = c * params.chunk_rows;
    let r1 = min(r0 + params.chunk_rows, params.n);
    var acc = 0.0;
    if (p < dw_len) {
        let o = p / params.in_f;
        let i = p % params.in_f;
        for (var n = r0; n < r1; n++) {
            acc += dy[n * params.out_f + o] * x[n * params.in_f + i];
        }
    } else {
        let o = p - dw_len;
        for (var n = r0; n < r1; n++) {
            acc += dy[n * params.out_f + o];
        }
    }
    partials[t] = acc;
}
