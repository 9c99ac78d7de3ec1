// batchnorm2d_running: one invocation per channel c, in place:
//   running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean[c]
//   running_var[c]  = (1 - momentum) * running_var[c]  + momentum * var[c] * m / (m - 1)
// (PyTorch keeps the UNBIASED batch variance in the running average; 1 - momentum and m / (m - 1)
// are computed on the host, in f32, exactly as the twin does).
// CPU twin: src/net/batchnorm2d.rs::batchnorm2d_running_cpu.

@group(0) @binding(1) var<storage, read> mean: array<f32>;
@group(0) @binding(2) var<storage, read> variance: array<f32>;
@group(0) @binding(3) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_var: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let c = flat_index(wid, nwg, lid, WG);
    if (c >= params.c) {
        return;
    }
    running_mean[c] = params.keep * running_mean[c] + params.momentum * mean[c];
    running_var[c] = params.keep * running_var[c] + params.momentum * (variance[c] * params.unbias);
}
