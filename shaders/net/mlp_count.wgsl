// net/mlp_count: counting with a small perceptron in one dispatch, one invocation per candidate.
// Each invocation cuts its crop (crop_value: the side x side square of the calibrated frames
// around the candidate's pixel, times input_scale / 16, 0 outside the frame) into its own array,
// runs every linear layer (weights W [out, in] then bias [out] per layer, packed in `weights`; the
// invocations of a workgroup read the same weight at the same time) with ReLU between layers, and
// decodes the grid head as net/decode_grid does: six floats per candidate come out (arg-max x, y;
// local mean x, y; sigma; p_max), nothing else. No workgroup memory, no barriers.
// CPU twin: src/net/mlp_gpu.rs::mlp_count_cpu.

struct MlpCountParams {       // mirrored by src/net/mlp_gpu.rs::MlpCountParams (layout checked by tests/shaders.rs)
    n: u32,                   // candidates
    first: u32,               // the first candidate's index in cands
    side: u32,                // crop side, pixels
    height: u32,
    width: u32,
    scale: f32,
    layers: u32,              // linear layers (at most 7)
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

fn dim(l: u32) -> u32 {
    return params.dims[l / 4u][l % 4u];
}

// The invocation's activations: a layer reads one array and writes the other; 256 is the widest
// layer (src/net/mlp_gpu.rs::MAX_WIDTH).
var<private> a: array<f32, 256>;
var<private> b: array<f32, 256>;

fn logit(j: u32) -> f32 {
    return a[j];
}

// Layer l (its weights at woff): dst = relu?(W src + b).
fn dense(l: u32, woff: u32, src: ptr<private, array<f32, 256>>, dst: ptr<private, array<f32, 256>>) {
    let in_f = dim(l);
    let out_f = dim(l + 1u);
    for (var o = 0u; o < out_f; o++) {
        var acc = 0.0;
        let row = woff + o * in_f;
        for (var k = 0u; k < in_f; k++) {
            acc += (*src)[k] * weights[row + k];
        }
        acc += weights[woff + out_f * in_f + o];
        if (l + 1u < params.layers) {
            acc = max(acc, 0.0);
        }
        (*dst)[o] = acc;
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.n) {
        return;
    }
    let cand = cands[params.first + i];
    let plane = params.side * params.side;
    for (var pix = 0u; pix < plane; pix++) {
        a[pix] = crop_value(cand, pix, params.side, params.height, params.width, params.scale);
    }
    var woff = 0u;
    for (var l = 0u; l < params.layers; l++) {
        if (l % 2u == 0u) {
            dense(l, woff, &a, &b);
        } else {
            dense(l, woff, &b, &a);
        }
        woff += dim(l + 1u) * dim(l) + dim(l + 1u);
    }
    if (params.layers % 2u == 1u) {
        a = b;
    }
    decode_logits(i * 6u);   // the grid head, as net/decode_grid (decode_common.wgsl)
}
