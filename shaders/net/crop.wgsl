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
    crops[i] = crop_value(cand, i % plane, params.side, params.height, params.width, params.scale);
}
