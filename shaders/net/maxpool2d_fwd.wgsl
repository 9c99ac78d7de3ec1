// maxpool2d_fwd: one invocation per output element (n, c, oy, ox). Scans the k x k window at
// (oy*stride, ox*stride) in row-major order and writes its maximum to y and the flat index into x of
// that maximum to idx (strict '>', so the first maximum wins on ties; NaN-free input assumed).
// Pure selection: y equals the CPU twin exactly.
// x and y hold xt / yt (shared/act_*.wgsl: f32, or f16 for f16 inference).
// CPU twin: src/net/maxpool2d.rs::maxpool2d_fwd_cpu.

struct MaxPool2dParams {      // mirrored by src/net/maxpool2d.rs::MaxPool2dParams (layout checked by tests/shaders.rs)
    planes: u32,              // N * C
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: MaxPool2dParams;
@group(0) @binding(1) var<storage, read> x: array<xt>;
@group(0) @binding(2) var<storage, read_write> y: array<yt>;
@group(0) @binding(3) var<storage, read_write> idx: array<u32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let o = flat_index(wid, nwg, lid, WG);
    let out_plane = params.oh * params.ow;
    if (o >= params.planes * out_plane) {
        return;
    }
    let plane = o / out_plane;
    let oy = (o % out_plane) / params.ow;
    let ox = o % params.ow;
    let first = plane * params.h * params.w + oy * params.stride * params.w + ox * params.stride;
    var best = f32(x[first]);
    var at = first;
    for (var ky = 0u; ky < params.k; ky++) {
        for (var kx = 0u; kx < params.k; kx++) {
            let i = first + ky * params.w + kx;
            let v = f32(x[i]);
            if (v > best) {
                best = v;
                at = i;
            }
        }
    }
    y[o] = yt(best);
    idx[o] = at;
}
