// crop: one invocation per pixel of each crop. Crop i is the side x side square of the calibrated
// frame q (fixed point) centred on candidate first + i's pixel, times scale (= input_scale / 16);
// pixels outside the frame are 0. CPU twin: src/net/crop.rs::crop_cpu.

struct CropParams {           // mirrored by src/net/crop.rs::CropParams (layout checked by tests/shaders.rs)
    n: u32,
    first: u32,
    side: u32,
    height: u32,
    width: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: CropParams;
@group(0) @binding(1) var<storage, read> q: array<i32>;
@group(0) @binding(2) var<storage, read> cands: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> crops: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    let plane = params.side * params.side;
    if (i >= params.n * plane) {
        return;
    }
    let cand = cands[params.first + i / plane];
    let pix = i % plane;
    let half = i32(params.side / 2u);
    let rr = i32(cand.y / params.width) - half + i32(pix / params.side);
    let cc = i32(cand.y % params.width) - half + i32(pix % params.side);
    var v = 0.0;
    if (rr >= 0 && rr < i32(params.height) && cc >= 0 && cc < i32(params.width)) {
        v = f32(q[cand.x * params.height * params.width + u32(rr) * params.width + u32(cc)]) * params.scale;
    }
    crops[i] = v;
}
