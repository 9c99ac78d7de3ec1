// batchnorm2d_fwd: one invocation per element i of x (channel c):
//   y = (x - mean[c]) * invstd * gamma[c] + beta[c],  invstd = 1 / sqrt(var[c] + eps)
// with the batch statistics in training, the running ones at inference.
// CPU twin: src/net/batchnorm2d.rs::batchnorm2d_fwd_cpu (same expression; WGSL's sqrt and division
// are not correctly rounded, so compared with a tolerance). x and y hold xt / yt (shared/act_*.wgsl: f32, or f16
// for f16 inference); the arithmetic is f32.

@group(0) @binding(1) var<storage, read> x: array<xt>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> variance: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<yt>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.len) {
        return;
    }
    let c = channel_of(i);
    y[i] = yt((f32(x[i]) - mean[c]) * invstd(variance[c]) * gamma[c] + beta[c]);
}
