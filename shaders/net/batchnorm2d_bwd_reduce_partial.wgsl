// batchnorm2d_bwd_reduce_partial (stage 1 of batchnorm2d_bwd_reduce): one WORKGROUP per
// (channel c, chunk j), as batchnorm2d_stats_partial. Invocation lid sums, over terms
// j*chunk + r*256 + lid, dy and dy * xhat (xhat = (x - mean[c]) * invstd); the workgroup adds the
// 256 pairs in a fixed tree and writes them to scratch[2*(c*n_chunks + j)..+2].
// Deterministic: no atomics, a fixed order.
// CPU twin: src/net/batchnorm2d.rs::batchnorm2d_bwd_reduce_cpu (f64 sums; compared with a tolerance).

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> variance: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> scratch: array<f32>;

var<workgroup> sh_dy: array<f32, 256>;
var<workgroup> sh_dyx: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let group = group_index(wid, nwg);
    if (group >= params.c * params.n_chunks) {
        return; // the whole workgroup: uniform
    }
    let c = group / params.n_chunks;
    let j = group % params.n_chunks;
    let mu = mean[c];
    let inv = invstd(variance[c]);
    var s_dy = 0.0;
    var s_dyx = 0.0;
    for (var r = 0u; r < params.chunk / WG; r++) {
        let t = j * params.chunk + r * WG + lid;
        if (t < params.m) {
            let i = term_index(c, t);
            let g = dy[i];
            s_dy += g;
            s_dyx += g * ((x[i] - mu) * inv);
        }
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
        scratch[2u * group] = sh_dy[0];
        scratch[2u * group + 1u] = sh_dyx[0];
    }
}
