// batchnorm2d_stats (stage 2): one WORKGROUP per channel c. Invocation lid combines the chunk
// moments j = lid, lid + 256, ... written by batchnorm2d_stats_partial, in order; the workgroup then
// combines the 256 results in a fixed tree. mean[c] = batch mean, var[c] = M2 / m (biased, as
// PyTorch normalises with). Deterministic: no atomics, a fixed order.
// CPU twin: src/net/batchnorm2d.rs::batchnorm2d_stats_cpu (f64 two-pass; compared with a tolerance).

@group(0) @binding(1) var<storage, read> scratch: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> variance: array<f32>;

var<workgroup> sh_n: array<u32, 256>;
var<workgroup> sh_mean: array<f32, 256>;
var<workgroup> sh_m2: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let c = group_index(wid, nwg);
    if (c >= params.c) {
        return; // the whole workgroup: uniform
    }
    var acc = Moments(0u, 0.0, 0.0);
    for (var j = lid; j < params.n_chunks; j += WG) {
        let at = 2u * (c * params.n_chunks + j);
        let count = min(params.chunk, params.m - j * params.chunk);
        acc = combine(acc, Moments(count, scratch[at], scratch[at + 1u]));
    }
    sh_n[lid] = acc.n;
    sh_mean[lid] = acc.mean;
    sh_m2[lid] = acc.m2;
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (lid < s) {
            let r = combine(Moments(sh_n[lid], sh_mean[lid], sh_m2[lid]),
                            Moments(sh_n[lid + s], sh_mean[lid + s], sh_m2[lid + s]));
            sh_n[lid] = r.n;
            sh_mean[lid] = r.mean;
            sh_m2[lid] = r.m2;
        }
    }
    if (lid == 0u) {
        mean[c] = sh_mean[0];
        variance[c] = sh_m2[0] / f32(params.m);
    }
}
