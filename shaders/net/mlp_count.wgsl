// net/mlp_count: counting with a small perceptron in one dispatch. One workgroup per candidate:
// its crop (the side x side square of the calibrated frame q around the candidate's pixel, times
// scale = input_scale / 16, 0 outside the frame) goes into workgroup memory, every linear layer
// (weights W^T [in, out], so that neighbouring invocations read neighbouring weights, then bias
// [out] per layer, packed in `weights`) runs with one output per invocation at a time, ReLU
// between layers, and the grid head is decoded as net/decode_grid does, its sums shared by the
// workgroup: six floats per candidate come out (arg-max x, y; local mean x, y; sigma; p_max).
// CPU twin: src/net/mlp_gpu.rs::mlp_count_cpu.

struct MlpCountParams {       // mirrored by src/net/mlp_gpu.rs::MlpCountParams (layout checked by tests/shaders.rs)
    n: u32,                   // candidates
    first: u32,               // the first candidate's index in cands
    side: u32,                // crop side, pixels
    height: u32,
    width: u32,
    scale: f32,
    layers: u32,              // linear layers (at most 4)
    g: u32,                   // grid cells per side (the last layer has g*g outputs)
    radius: u32,              // cells per pixel: the local mean's half-width in cells
    origin: f32,              // cell i's centre is origin + (i + 0.5) * cell, in pixels
    cell: f32,
    _pad0: u32,
    dims: array<vec4<u32>, 2>, // dims[l] inputs of layer l, dims[l + 1] its outputs (dims[0] = side^2)
}

@group(0) @binding(0) var<uniform> params: MlpCountParams;
@group(0) @binding(1) var<storage, read> q: array<i32>;
@group(0) @binding(2) var<storage, read> cands: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // n x 6

const WG: u32 = 64u;
const MAXW: u32 = 256u;       // widest layer (inputs or outputs); checked by the host
var<workgroup> act: array<f32, 512>;   // two halves of MAXW: a layer reads one, writes the other
var<workgroup> redv: array<vec4<f32>, 64>;
var<workgroup> redi: array<u32, 64>;

// The workgroup's sum of `v` (a tree over the invocations; every invocation gets it).
fn reduce(v: vec4<f32>, lid: u32) -> vec4<f32> {
    redv[lid] = v;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h /= 2u) {
        if (lid < h) {
            redv[lid] += redv[lid + h];
        }
        workgroupBarrier();
    }
    let s = redv[0];
    workgroupBarrier();
    return s;
}

fn dim(l: u32) -> u32 {
    return params.dims[l / 4u][l % 4u];
}

fn centre(i: u32) -> f32 {
    return params.origin + (f32(i) + 0.5) * params.cell;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = wid.y * nwg.x + wid.x;   // the candidate: the same for the whole workgroup
    if (i >= params.n) {
        return;
    }
    let cand = cands[params.first + i];
    let plane = params.side * params.side;
    for (var pix = lid; pix < plane; pix += WG) {
        act[pix] = crop_value(cand, pix, params.side, params.height, params.width, params.scale);
    }
    workgroupBarrier();
    var woff = 0u;
    for (var l = 0u; l < params.layers; l++) {
        let in_f = dim(l);
        let out_f = dim(l + 1u);
        let src = (l % 2u) * MAXW;
        let dst = ((l + 1u) % 2u) * MAXW;
        for (var o = lid; o < out_f; o += WG) {
            var acc = 0.0;
            for (var k = 0u; k < in_f; k++) {
                acc += act[src + k] * weights[woff + k * out_f + o];
            }
            acc += weights[woff + out_f * in_f + o];
            if (l + 1u < params.layers) {
                acc = max(acc, 0.0);
            }
            act[dst + o] = acc;
        }
        woff += out_f * in_f + out_f;
        workgroupBarrier();
    }
    // the grid head, as net/decode_grid, each invocation over cells lid, lid + WG, ...
    let base = (params.layers % 2u) * MAXW;
    let g = params.g;
    let k = g * g;
    // the first maximum
    var m = -3.0e38;
    var arg = 0u;
    for (var j = lid; j < k; j += WG) {
        let v = act[base + j];
        if (v > m) {
            m = v;
            arg = j;
        }
    }
    redv[lid] = vec4<f32>(m, 0.0, 0.0, 0.0);
    redi[lid] = arg;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h /= 2u) {
        if (lid < h) {
            let a = redv[lid].x;
            let b = redv[lid + h].x;
            if (b > a || (b == a && redi[lid + h] < redi[lid])) {
                redv[lid].x = b;
                redi[lid] = redi[lid + h];
            }
        }
        workgroupBarrier();
    }
    m = redv[0].x;
    arg = redi[0];
    workgroupBarrier();
    // the sum of exponentials and the unnormalized first moments
    var acc = vec4<f32>(0.0);
    for (var j = lid; j < k; j += WG) {
        let e = exp(act[base + j] - m);
        acc += vec4<f32>(e, e * centre(j % g), e * centre(j / g), 0.0);
    }
    let sums = reduce(acc, lid);
    let inv = 1.0 / sums.x;
    let mx = sums.y * inv;
    let my = sums.z * inv;
    // the variance about the mean (no cancellation in f32) and the local mean near the peak
    let ax = i32(arg % g);
    let ay = i32(arg / g);
    let r = i32(params.radius);
    acc = vec4<f32>(0.0);
    var loc = vec4<f32>(0.0);
    for (var j = lid; j < k; j += WG) {
        let p = exp(act[base + j] - m) * inv;
        let dx = centre(j % g) - mx;
        let dy = centre(j / g) - my;
        acc += vec4<f32>(p * dx * dx, p * dy * dy, 0.0, 0.0);
        if (abs(i32(j % g) - ax) <= r && abs(i32(j / g) - ay) <= r) {
            loc += vec4<f32>(p, p * centre(j % g), p * centre(j / g), 0.0);
        }
    }
    let var2 = reduce(acc, lid);
    let local = reduce(loc, lid);
    if (lid != 0u) {
        return;
    }
    let o = i * 6u;
    out[o] = centre(u32(ax));
    out[o + 1u] = centre(u32(ay));
    if (local.x > 0.0) {
        out[o + 2u] = local.y / local.x;
        out[o + 3u] = local.z / local.x;
    } else {
        out[o + 2u] = centre(u32(ax));
        out[o + 3u] = centre(u32(ay));
    }
    out[o + 4u] = sqrt(max(var2.x, 0.0) + max(var2.y, 0.0));
    out[o + 5u] = inv;
}
