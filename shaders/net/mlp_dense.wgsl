// net/mlp_count's layers and entry point, without subgroup operations: every invocation reads
// each group of weights itself (the invocations of a workgroup read the same group together).

// Layer l (its groups from woff on): dst = relu?(W src + b) for both candidates, 8 outputs per
// pass over src; each group of weights read serves 16 multiply-adds.
fn dense(l: u32, woff: u32, src: ptr<private, array<vec2<f32>, 256>>, dst: ptr<private, array<vec2<f32>, 256>>) {
    let in_f = dim(l);
    let blocks = (dim(l + 1u) + 7u) / 8u;
    let relu = l + 1u < params.layers;
    for (var ob = 0u; ob < blocks; ob++) {
        var lo0 = vec4(0.0);
        var hi0 = vec4(0.0);
        var lo1 = vec4(0.0);
        var hi1 = vec4(0.0);
        let row = woff + ob * in_f;
        for (var k = 0u; k < in_f; k++) {
            let x = (*src)[k];
            let w = w8(row + k);
            lo0 = fma(vec4(x.x), w.lo, lo0);
            hi0 = fma(vec4(x.x), w.hi, hi0);
            lo1 = fma(vec4(x.y), w.lo, lo1);
            hi1 = fma(vec4(x.y), w.hi, hi1);
        }
        store_block(w8(woff + blocks * in_f + ob), relu, ob * 8u, lo0, hi0, lo1, hi1, dst);
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    count_pair(flat_index(wid, nwg, lid, WG));
}
