// maxpool2d_bwd: one invocation per input element i = (n, c, iy, ix), gather form (no atomics).
// dx[i] = sum of dy[o] over the output windows o that contain (iy, ix) and whose idx[o] == i, added
// in (oy, ox) order; 0 if there is none. Overlapping windows (stride < k) work.
// The same f32 additions in the same order as the twin, so the result is expected to equal it.
// CPU twin: src/net/maxpool2d.rs::maxpool2d_bwd_cpu.

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
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

const WG: u32 = 256u;

// First output coordinate whose window contains input coordinate i: ceil((i + 1 - k) / stride), >= 0.
fn first_window(i: u32) -> u32 {
    if (i + 1u < params.k) {
        return 0u;
    }
    return (i + 1u - params.k + params.stride - 1u) / params.stride;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    let in_plane = params.h * params.w;
    if (i >= params.planes * in_plane) {
        return;
    }
    let plane = i / in_plane;
    let iy = (i % in_plane) / params.w;
    let ix = i % params.w;
    let oy_end = min(iy / params.stride + 1u, params.oh);
    let ox_end = min(ix / params.stride + 1u, params.ow);
    var acc = 0.0;
    for (var oy = first_window(iy); oy < oy_end; oy++) {
        for (var ox = first_window(ix); ox < ox_end; ox++) {
            let o = (plane * params.oh + oy) * params.ow + ox;
            if (idx[o] == i) {
                acc += dy[o];
            }
        }
    }
    dx[i] = acc;
}
