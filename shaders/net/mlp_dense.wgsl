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
        let bias = w8(woff + blocks * in_f + ob);
        lo0 += bias.lo;
        hi0 += bias.hi;
        lo1 += bias.lo;
        hi1 += bias.hi;
        if (relu) {
            lo0 = max(lo0, vec4(0.0));
            hi0 = max(hi0, vec4(0.0));
            lo1 = max(lo1, vec4(0.0));
            hi1 = max(hi1, vec4(0.0));
        }
        let o = ob * 8u;
        for (var j = 0u; j < 4u; j++) {
            (*dst)[o + j] = vec2(lo0[j], lo1[j]);
            (*dst)[o + 4u + j] = vec2(hi0[j], hi1[j]);
        }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    count_pair(flat_index(wid, nwg, lid, WG));
}
