// linear_fwd: y[n, o] = b[o] + sum over i of x[n, i] * w[o, i]
// (x [N, in_f], w [out_f, in_f], y [N, out_f], row-major), adding in the twin's order (bias, then i;
// the GPU fuses multiply-adds).
//
// Register-blocked: one invocation computes NB = 4 samples (n0 .. n0+3) times OB = 8 outputs
// (o0 .. o0+7) in 32 accumulators, so each x value loaded feeds 8 outputs and each weight 4
// samples (the plain one-output-per-invocation form loaded two values per multiply-add). Samples
// and outputs past the end are clamped to the last one when loading and not stored.
// Invocation t = nb * o_blocks + ob, o_blocks = ceil(out_f / OB) (params.o_blocks).
// With params.relu = 1 the outputs go through a ReLU before they are stored (inference fuses a
// linear layer with the ReLU after it: one pass over the activations instead of two).
// x and y hold xt / yt (shared/act_*.wgsl: f32, or f16 for f16 inference); the arithmetic is f32.
// CPU twin: src/net/linear.rs::linear_fwd_cpu, and linear_relu_fwd_cpu with params.relu = 1
// (output rounded to f16 when yt is f16).

struct LinearParams {     // mirrored by src/net/linear.rs::LinearParams (layout checked by tests/shaders.rs)
    n: u32,
    in_f: u32,
    out_f: u32,
    chunk_rows: u32,    // linear_bwd_weight: rows (samples) per partial sum
    n_chunks: u32,      // linear_bwd_weight only
    o_blocks: u32,      // linear_fwd: ceil(out_f / OB)
    relu: u32,          // linear_fwd: 1 = ReLU on the outputs before they are stored
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: LinearParams;
@group(0) @binding(1) var<storage, read> x: array<xt>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<yt>;

const WG: u32 = 256u;
const NB: u32 = 4u;   // keep in sync with src/net/linear.rs::LINEAR_FWD_NB
const OB: u32 = 8u;   // keep in sync with src/net/linear.rs::LINEAR_FWD_OB

// acc[k] += xv[k] * (w0, w1) for the 4 samples k.
fn fma8(acc: ptr<function, array<vec4<f32>, 8>>, xv: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>) {
    (*acc)[0] = fma(vec4(xv.x), w0, (*acc)[0]);
    (*acc)[1] = fma(vec4(xv.x), w1, (*acc)[1]);
    (*acc)[2] = fma(vec4(xv.y), w0, (*acc)[2]);
    (*acc)[3] = fma(vec4(xv.y), w1, (*acc)[3]);
    (*acc)[4] = fma(vec4(xv.z), w0, (*acc)[4]);
    (*acc)[5] = fma(vec4(xv.z), w1, (*acc)[5]);
    (*acc)[6] = fma(vec4(xv.w), w0, (*acc)[6]);
    (*acc)[7] = fma(vec4(xv.w), w1, (*acc)[7]);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let o_blocks = params.o_blocks;
    if (t >= o_blocks * ((params.n + NB - 1u) / NB)) {
        return;
    }
    let o0 = (t % o_blocks) * OB;
    let n0 = (t / o_blocks) * NB;
    let last_o = params.out_f - 1u;
    let last_n = params.n - 1u;
    let in_f = params.in_f;
    // rows of w (outputs) and x (samples) this invocation reads, clamped
    var wr: array<u32, 8>;
    for (var j = 0u; j < OB; j++) {
        wr[j] = min(o0 + j, last_o) * in_f;
    }
    let xr = vec4(min(n0, last_n), min(n0 + 1u, last_n), min(n0 + 2u, last_n), min(n0 + 3u, last_n)) * in_f;
    let b0 = vec4(b[min(o0, last_o)], b[min(o0 + 1u, last_o)], b[min(o0 + 2u, last_o)], b[min(o0 + 3u, last_o)]);
    let b1 = vec4(b[min(o0 + 4u, last_o)], b[min(o0 + 5u, last_o)], b[min(o0 + 6u, last_o)], b[min(o0 + 7u, last_o)]);
    var acc = array<vec4<f32>, 8>(b0, b1, b0, b1, b0, b1, b0, b1);
    for (var i = 0u; i < in_f; i++) {
        let xv = vec4(f32(x[xr.x + i]), f32(x[xr.y + i]), f32(x[xr.z + i]), f32(x[xr.w + i]));
        let w0 = vec4(w[wr[0] + i], w[wr[1] + i], w[wr[2] + i], w[wr[3] + i]);
        let w1 = vec4(w[wr[4] + i], w[wr[5] + i], w[wr[6] + i], w[wr[7] + i]);
        fma8(&acc, xv, w0, w1);
    }
    if (params.relu != 0u) {
        for (var k = 0u; k < 8u; k++) {
            acc[k] = max(acc[k], vec4(0.0));
        }
    }
    for (var k = 0u; k < NB; k++) {
        let n = n0 + k;
        if (n < params.n) {
            for (var j = 0u; j < OB; j++) {
                if (o0 + j < params.out_f) {
                    y[n * params.out_f + o0 + j] = yt(acc[2u * k + j / 4u][j % 4u]);
                }
            }
        }
    }
}
