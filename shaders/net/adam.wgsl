// adam: one invocation per parameter element: one Adam / AdamW step (amsgrad optional), in place.
// CPU twin: src/net/optim.rs::adam_cpu (the same operations in the same order).

struct AdamParams {           // mirrored by src/net/optim.rs::AdamParams (layout checked by tests/shaders.rs)
    n: u32,
    flags: u32,               // bit 0: decoupled (AdamW); bit 1: amsgrad
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step_size: f32,           // lr / (1 - beta1^t)
    inv_sqrt_bc2: f32,        // 1 / sqrt(1 - beta2^t)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: AdamParams;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> vmax: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.n) {
        return;
    }
    var g = grad[i];
    var w = param[i];
    if ((params.flags & 1u) != 0u) {
        w = w * (1.0 - params.lr * params.weight_decay);
    } else {
        g = g + params.weight_decay * w;
    }
    let mi = params.beta1 * m[i] + (1.0 - params.beta1) * g;
    let vi = params.beta2 * v[i] + (1.0 - params.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    var second = vi;
    if ((params.flags & 2u) != 0u) {
        second = max(vmax[i], vi);
        vmax[i] = second;
    }
    let denom = sqrt(second) * params.inv_sqrt_bc2 + params.eps;
    param[i] = w - params.step_size * mi / denom;
}
