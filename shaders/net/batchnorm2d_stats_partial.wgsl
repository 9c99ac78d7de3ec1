// batchnorm2d_stats_partial (stage 1 of batchnorm2d_stats): one WORKGROUP per (channel c, chunk j),
// chunk j = terms [j*chunk, (j+1)*chunk) of channel c. Invocation lid folds terms
// j*chunk + r*256 + lid (r = 0, 1, ...) with Welford's update, then the workgroup combines the 256
// partial moments in a fixed tree. Writes the chunk's mean and M2 to scratch[2*(c*n_chunks + j)..+2]
// (its count follows from j). Deterministic: no atomics, a fixed order.
// CPU twin: src/net/batchnorm2d.rs::batchnorm2d_stats_cpu (f64 two-pass; compared with a tolerance).

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> scratch: array<f32>;

var<workgroup> sh_n: array<u32, 256>;
var<workgroup> sh_mean: array<f32, 256>;
var<workgroup> sh_m2: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let group = group_index(wid, nwg);
    if (group >= params.c * params.n_chunks) {
        return; // the whole workgroup: uniform
    }
    let c = group / params.n_chunks;
    let j = group % params.n_chunks;
    var acc = Moments(0u, 0.0, 0.0);
    for (var r = 0u; r < params.chunk / WG; r++) {
        let t = j * params.chunk + r * WG + lid;
        if (t < params.m) {
            let v = x[term_index(c, t)];
            acc.n += 1u;
            let d = v - acc.mean;
            acc.mean += d / f32(acc.n);
            acc.m2 += d * (v - acc.mean);
        }
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
        scratch[2u * group] = sh_mean[0];
        scratch[2u * group + 1u] = sh_m2[0];
    }
}
