// mse: one invocation per sample i: loss[i] = mean_j (pred - target)^2 and, when write_grad != 0,
// dpred[i][j] = 2 (pred - target) / mean_over. CPU twin: src/net/loss.rs::mse_cpu.

struct MseParams {            // mirrored by src/net/loss.rs::MseParams (layout checked by tests/shaders.rs)
    n: u32,
    d: u32,
    mean_over: u32,
    write_grad: u32,
}

@group(0) @binding(0) var<uniform> params: MseParams;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> target_: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dpred: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.n) {
        return;
    }
    let d = params.d;
    let inv = 2.0 / f32(max(params.mean_over, 1u));
    var s = 0.0;
    for (var j = 0u; j < d; j++) {
        let e = pred[i * d + j] - target_[i * d + j];
        s += e * e;
        if (params.write_grad != 0u) {
            dpred[i * d + j] = e * inv;
        }
    }
    loss[i] = s / f32(d);
}
