// relu_bwd: one invocation per element, dx[t] = dy[t] if y[t] > 0 else 0 (exact). The mask comes
// from the forward OUTPUT y (y > 0 exactly when x > 0), so the input need not be kept.
// CPU twin: src/net/relu.rs::relu_bwd_cpu.

struct ReluParams {       // mirrored by src/net/relu.rs::ReluParams (layout checked by tests/shaders.rs)
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: ReluParams;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    if (t >= params.n) {
        return;
    }
    dx[t] = select(0.0, dy[t], y[t] > 0.0);
}
