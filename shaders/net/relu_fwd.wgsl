// relu_fwd: one invocation per element, y[t] = x[t] if x[t] > 0 else 0 (exact).
// x and y hold xt / yt (shared/act_*.wgsl: f32, or f16 for f16 inference).
// CPU twin: src/net/relu.rs::relu_fwd_cpu.

struct ReluParams {       // mirrored by src/net/relu.rs::ReluParams (layout checked by tests/shaders.rs)
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: ReluParams;
@group(0) @binding(1) var<storage, read> x: array<xt>;
@group(0) @binding(2) var<storage, read_write> y: array<yt>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    if (t >= params.n) {
        return;
    }
    let v = f32(x[t]);
    y[t] = yt(select(0.0, v, v > 0.0));
}
