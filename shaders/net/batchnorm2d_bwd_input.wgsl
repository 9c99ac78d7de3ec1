// batchnorm2d_bwd_input: one invocation per element i of x (channel c), the train-mode gradient
// through the batch statistics:
//   dx = gamma[c] * invstd / m * (m * dy - dbeta[c] - xhat * dgamma[c]),  xhat = (x - mean[c]) * invstd
// with dgamma, dbeta from batchnorm2d_bwd_reduce.
// CPU twin: src/net/batchnorm2d.rs::batchnorm2d_bwd_input_cpu (same expression; compared with a
// tolerance scaled by the size of the terms, which can cancel).

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> variance: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> dgamma: array<f32>;
@group(0) @binding(6) var<storage, read> dbeta: array<f32>;
@group(0) @binding(7) var<storage, read> dy: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.len) {
        return;
    }
    let c = channel_of(i);
    let inv = invstd(variance[c]);
    let xhat = (x[i] - mean[c]) * inv;
    let mf = f32(params.m);
    let k = gamma[c] * inv / mf;
    dx[i] = k * (mf * dy[i] - dbeta[c] - xhat * dgamma[c]);
}
