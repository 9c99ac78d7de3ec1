// The grid head's logits to one estimate per sample, on the device (twin: `net::decode::decode`
// for `Head::Grid`), by decode_common.wgsl: six floats per sample instead of g*g logits to read
// back. One invocation per sample.

struct DecodeGridParams {     // mirrored by src/net/decode.rs::DecodeGridParams (layout checked by tests/shaders.rs)
    n: u32,                   // samples
    g: u32,                   // cells per side (g*g logits per sample)
    radius: u32,              // cells per pixel: the local mean's half-width in cells
    _pad0: u32,
    origin: f32,              // cell i's centre is origin + (i + 0.5) * cell, in pixels
    cell: f32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: DecodeGridParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;  // n x 6: argmax x, y; mean x, y; sigma; p_max

const WG: u32 = 64u;

var<private> base: u32;   // the sample's first logit

fn logit(j: u32) -> f32 {
    return logits[base + j];
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.n) {
        return;
    }
    base = i * params.g * params.g;
    decode_logits(i * 6u);   // decode_common.wgsl
}
