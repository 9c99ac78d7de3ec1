// batchnorm2d_bwd_reduce (stage 2): one WORKGROUP per channel c. Invocation lid adds the chunk
// sums j = lid, lid + 256, ... written by batchnorm2d_bwd_reduce_partial, in order; the workgroup
// adds the 256 results in a fixed tree. dbeta[c] = sum dy, dgamma[c] = sum dy * xhat.
// Deterministic: no atomics, a fixed order.
// CPU twin: src/net/batchnorm2d.rs::batchnorm2d_bwd_reduce_cpu (f64 sums; compared with a tolerance).

@group(0) @binding(1) var<storage, read> scratch: array<f32>;
@group(0) @binding(2) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbeta: array<f32>;

var<workgroup> sh_dy: array<f32, 256>;
var<workgroup> sh_dyx: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let c = group_index(wid, nwg);
    if (c >= params.c) {
        return; // the whole workgroup: uniform
    }
    var s_dy = 0.0;
    var s_dyx = 0.0;
    for (var j = lid; j < params.n_chunks; j += WG) {
        let at = 2u * (c * params.n_chunks + j);
        s_dy += scratch[at];
        s_dyx += scratch[at + 1u];
    }
    sh_dy[lid] = s_dy;
    sh_dyx[lid] = s_dyx;
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (lid < s) {
            sh_dy[lid] += sh_dy[lid + s];
            sh_dyx[lid] += sh_dyx[lid + s];
        }
    }
    if (lid == 0u) {
        dbeta[c] = sh_dy[0];
        dgamma[c] = sh_dyx[0];
    }
}
