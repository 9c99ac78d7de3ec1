// The grid head's logits to one estimate per sample, on the device (twin: `net::decode::decode`
// for `Head::Grid`): the arg-max cell's centre, the probability-weighted mean over the cells
// within `radius` cells of the peak, the spread sigma = sqrt(var_x + var_y) of the whole softmax
// distribution, and the arg-max cell's probability. Six floats per sample instead of g*g logits
// to read back. One invocation per sample.

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

fn centre(i: u32) -> f32 {
    return params.origin + (f32(i) + 0.5) * params.cell;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.n) {
        return;
    }
    let g = params.g;
    let k = g * g;
    let base = i * k;
    // the first maximum (the arg-max of the probabilities too: exp is monotonic)
    var m = logits[base];
    var arg = 0u;
    for (var j = 1u; j < k; j++) {
        let v = logits[base + j];
        if (v > m) {
            m = v;
            arg = j;
        }
    }
    var s = 0.0;
    for (var j = 0u; j < k; j++) {
        s += exp(logits[base + j] - m);
    }
    let inv = 1.0 / s;
    // mean, then the variance about it (two passes: no cancellation in f32)
    var mx = 0.0;
    var my = 0.0;
    for (var j = 0u; j < k; j++) {
        let p = exp(logits[base + j] - m) * inv;
        mx += p * centre(j % g);
        my += p * centre(j / g);
    }
    var vx = 0.0;
    var vy = 0.0;
    for (var j = 0u; j < k; j++) {
        let p = exp(logits[base + j] - m) * inv;
        let dx = centre(j % g) - mx;
        let dy = centre(j / g) - my;
        vx += p * dx * dx;
        vy += p * dy * dy;
    }
    // the local mean around the peak
    let ax = i32(arg % g);
    let ay = i32(arg / g);
    let r = i32(params.radius);
    let last = i32(g) - 1;
    var w = 0.0;
    var wx = 0.0;
    var wy = 0.0;
    for (var cy = max(ay - r, 0); cy <= min(ay + r, last); cy++) {
        for (var cx = max(ax - r, 0); cx <= min(ax + r, last); cx++) {
            let p = exp(logits[base + u32(cy) * g + u32(cx)] - m) * inv;
            w += p;
            wx += p * centre(u32(cx));
            wy += p * centre(u32(cy));
        }
    }
    let o = i * 6u;
    out[o] = centre(u32(ax));
    out[o + 1u] = centre(u32(ay));
    if (w > 0.0) {
        out[o + 2u] = wx / w;
        out[o + 3u] = wy / w;
    } else {
        out[o + 2u] = centre(u32(ax));
        out[o + 3u] = centre(u32(ay));
    }
    out[o + 4u] = sqrt(max(vx, 0.0) + max(vy, 0.0));
    out[o + 5u] = inv;   // exp(0) / s: the arg-max cell's probability
}
