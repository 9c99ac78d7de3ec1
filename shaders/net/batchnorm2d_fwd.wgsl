// batchnorm2d_fwd: one invocation per run of PB = 8 elements of one plane (n, c) of x, each
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

const PB: u32 = 8u;   // keep in sync with src/net/batchnorm2d.rs::BATCHNORM2D_FWD_PB

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let runs = (params.hw + PB - 1u) / PB;   // runs per plane
    let plane = t / runs;
    if (plane >= params.len / params.hw) {
        return;
    }
    // the channel's statistics once per run
    let c = plane % params.c;
    let scale = invstd(variance[c]);
    let m = mean[c];
    let g = gamma[c];
    let bt = beta[c];
    let first = plane * params.hw + (t % runs) * PB;
    let end = min(first + PB, (plane + 1u) * params.hw);
    for (var i = first; i < end; i++) {
        y[i] = yt((f32(x[i]) - m) * scale * g + bt);
    }
}
