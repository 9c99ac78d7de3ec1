// dropout: one invocation per group g of 4 elements (4g .. 4g+3), one Philox call per group:
//   out = keep(i) ? inp[i] * scale : 0,
//   keep(i) = u01(philox4x32_10((i / 4, step_lo, step_hi, stream), key)[i % 4]) >= p,
//   stream = STREAM_DROPOUT ^ (layer << 8), key = the seed, scale = 1 / (1 - p) (from the host).
// Integer RNG bit-identical to src/rng.rs and one correctly rounded multiplication: equals the twin
// exactly. The forward (inp = x, out = y) and the backward (inp = dy, out = dx, the same mask
// regenerated) are this one kernel. CPU twin: src/net/dropout.rs::apply_mask (via dropout_fwd_cpu
// and dropout_bwd_cpu).

struct DropoutParams {        // mirrored by src/net/dropout.rs::DropoutParams (layout checked by tests/shaders.rs)
    n: u32,
    step_lo: u32,
    step_hi: u32,
    stream: u32,              // STREAM_DROPOUT ^ (layer << 8)
    key_lo: u32,
    key_hi: u32,
    p: f32,
    scale: f32,               // 1 / (1 - p)
}

@group(0) @binding(0) var<uniform> params: DropoutParams;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = flat_index(wid, nwg, lid, WG);
    let n_groups = (params.n >> 2u) + select(0u, 1u, (params.n & 3u) != 0u);
    if (g >= n_groups) {
        return;
    }
    let bits = philox4x32_10(vec4<u32>(g, params.step_lo, params.step_hi, params.stream),
                             vec2<u32>(params.key_lo, params.key_hi));
    for (var k = 0u; k < 4u; k++) {
        let i = 4u * g + k;
        if (i < params.n) {
            out[i] = select(0.0, inp[i] * params.scale, u01(bits[k]) >= params.p);
        }
    }
}
