// net/mlp_count: counting with a small perceptron in one dispatch, one invocation per two
// candidates. Each invocation cuts their crops (crop_value: the side x side square of the
// calibrated frames around the candidate's pixel, times input_scale / 16, 0 outside the frame)
// into its own arrays, runs every linear layer with ReLU between layers, and decodes the grid
// head as net/decode_grid does: six floats per candidate come out (arg-max x, y; local mean x, y;
// sigma; p_max), nothing else. No workgroup memory, no barriers.
// The weights are blocked for the kernel (src/net/mlp_gpu.rs::MlpKernelModel::kernel_weights):
// per layer, for each block of 8 outputs and each input k, the 8 weights of (outputs, k) together
// (one group, read by w8 from net/mlp_w_f32.wgsl or net/mlp_w_f16.wgsl), then the block's 8 biases
// as one group; outputs past the layer's width have zero weights. An invocation reads its inputs
// once per block of 8 outputs, each group of weights serves its two candidates, and the
// invocations of a workgroup read each group together.
// The layers (`dense`) and the entry point come from net/mlp_dense.wgsl, or with subgroup
// operations from net/mlp_dense_sg.wgsl; the weights' form from net/mlp_w_f32.wgsl or
// net/mlp_w_f16.wgsl.
// CPU twin: src/net/mlp_gpu.rs::mlp_count_cpu (with the weights rounded to f16 for the f16 form).

struct MlpCountParams {       // mirrored by src/net/mlp_gpu.rs::MlpCountParams (layout checked by tests/shaders.rs)
    n: u32,                   // candidates (at most; found[0] may say fewer)
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
// @group(0) @binding(3): weights, declared with w8 (net/mlp_w_*.wgsl)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // n x 6
// found[0]: how many candidates the list holds (the finder's counter, when the candidates come
// straight from the finder's list on the device; u32 max when params.n says it all)
@group(0) @binding(5) var<storage, read> found: array<u32>;

const WG: u32 = 64u;

// A group of 8 weights (w8, net/mlp_w_*.wgsl), as f32.
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn dim(l: u32) -> u32 {
    return params.dims[l / 4u][l % 4u];
}

// The invocation's activations, for its two candidates (.x, .y): a layer reads one array and
// writes the other; 256 is the widest layer (src/net/mlp_gpu.rs::MAX_WIDTH).
var<private> a: array<vec2<f32>, 256>;
var<private> b: array<vec2<f32>, 256>;
// Which array holds the logits, and which candidate decode_logits reads.
var<private> logits_in_b: bool;
var<private> sel: u32;

fn logit(j: u32) -> f32 {
    if (logits_in_b) {
        return b[j][sel];
    }
    return a[j][sel];
}

// The end of a block of 8 outputs (dense, net/mlp_dense*.wgsl): adds the biases, applies the
// ReLU between layers, and stores outputs o .. o + 7 of both candidates (lo0, hi0: the first
// candidate's; lo1, hi1: the second's).
fn store_block(bias: W8, relu: bool, o: u32, lo0: vec4<f32>, hi0: vec4<f32>, lo1: vec4<f32>, hi1: vec4<f32>,
               dst: ptr<private, array<vec2<f32>, 256>>) {
    var a0 = lo0 + bias.lo;
    var b0 = hi0 + bias.hi;
    var a1 = lo1 + bias.lo;
    var b1 = hi1 + bias.hi;
    if (relu) {
        a0 = max(a0, vec4(0.0));
        b0 = max(b0, vec4(0.0));
        a1 = max(a1, vec4(0.0));
        b1 = max(b1, vec4(0.0));
    }
    (*dst)[o] = vec2(a0.x, a1.x);
    (*dst)[o + 1u] = vec2(a0.y, a1.y);
    (*dst)[o + 2u] = vec2(a0.z, a1.z);
    (*dst)[o + 3u] = vec2(a0.w, a1.w);
    (*dst)[o + 4u] = vec2(b0.x, b1.x);
    (*dst)[o + 5u] = vec2(b0.y, b1.y);
    (*dst)[o + 6u] = vec2(b0.z, b1.z);
    (*dst)[o + 7u] = vec2(b0.w, b1.w);
}

// Invocation i counts candidates 2i and 2i + 1, the last one twice when n is odd (written once).
// Every invocation of the dispatch runs the layers (the ones past the end on the last candidate,
// writing nothing), so that the subgroup form's shuffles see every lane.
fn count_pair(i: u32) {
    let n = min(params.n, found[0]);
    if (n == 0u) {
        return;
    }
    let e0 = 2u * i;
    let c0 = cands[params.first + min(e0, n - 1u)];
    let c1 = cands[params.first + min(e0 + 1u, n - 1u)];
    let plane = params.side * params.side;
    for (var pix = 0u; pix < plane; pix++) {
        a[pix] = vec2(crop_value(c0, pix, params.side, params.height, params.width, params.scale),
                      crop_value(c1, pix, params.side, params.height, params.width, params.scale));
    }
    var woff = 0u;
    for (var l = 0u; l < params.layers; l++) {
        if (l % 2u == 0u) {
            dense(l, woff, &a, &b);
        } else {
            dense(l, woff, &b, &a);
        }
        woff += (dim(l + 1u) + 7u) / 8u * (dim(l) + 1u);
    }
    logits_in_b = params.layers % 2u == 1u;
    if (e0 < n) {
        sel = 0u;
        decode_logits(e0 * 6u);   // the grid head, as net/decode_grid (decode_common.wgsl)
    }
    if (e0 + 1u < n) {
        sel = 1u;
        decode_logits((e0 + 1u) * 6u);
    }
}
