// net/mlp_count's layers and entry point with subgroup operations (the adapter's SUBGROUP
// feature; naga takes them without an `enable` directive). The lanes share the weights they
// load by shuffles, so every lane must run every layer: count_pair has no early return.

var<private> sg_lane: u32;
var<private> sg_size: u32;

// Layer l (its groups from woff on): dst = relu?(W src + b) for both candidates, 8 outputs per
// pass over src. The lanes of a subgroup load the groups of sg_size consecutive inputs, one
// each, and pass them round by shuffles: one load per lane serves sg_size inputs.
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
        for (var k0 = 0u; k0 < in_f; k0 += sg_size) {
            let mine = w8(row + min(k0 + sg_lane, in_f - 1u));
            let count = min(sg_size, in_f - k0);
            for (var j = 0u; j < count; j++) {
                let x = (*src)[k0 + j];
                let wlo = subgroupShuffle(mine.lo, j);
                let whi = subgroupShuffle(mine.hi, j);
                lo0 = fma(vec4(x.x), wlo, lo0);
                hi0 = fma(vec4(x.x), whi, hi0);
                lo1 = fma(vec4(x.y), wlo, lo1);
                hi1 = fma(vec4(x.y), whi, hi1);
            }
        }
        store_block(w8(woff + blocks * in_f + ob), relu, ob * 8u, lo0, hi0, lo1, hi1, dst);
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) size: u32) {
    sg_lane = lane;
    sg_size = size;
    count_pair(flat_index(wid, nwg, lid, WG));
}
