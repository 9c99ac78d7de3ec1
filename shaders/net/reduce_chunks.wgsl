// reduce_chunks, stage 2 of the batch reductions (conv2d_bwd_weight, linear_bwd_weight): one
// invocation per parameter p < n_params, adding the n_chunks partial sums of stage 1 in chunk order
//   s = partials[0 * n_params + p] + partials[1 * n_params + p] + ... (f32, starting from 0)
// and writing s to out_a[p] when p < n_split, else to out_b[p - n_split] (weights, then biases).
// n_chunks = 0 writes zeros. Fixed order: deterministic, no atomics.
// CPU twin: src/net/conv2d.rs::reduce_chunks_cpu.

struct ReduceChunksParams {   // mirrored by src/net/conv2d.rs::ReduceChunksParams (layout checked by tests/shaders.rs)
    n_params: u32,
    n_chunks: u32,
    n_split: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: ReduceChunksParams;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> out_a: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_b: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let p = flat_index(wid, nwg, lid, WG);
    if (p >= params.n_params) {
        return;
    }
    var acc = 0.0;
    for (var c = 0u; c < params.n_chunks; c++) {
        acc += partials[c * params.n_params + p];
    }
    if (p < params.n_split) {
        out_a[p] = acc;
    } else {
        out_b[p - params.n_split] = acc;
    }
}
