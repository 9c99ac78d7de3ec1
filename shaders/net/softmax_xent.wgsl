// softmax_xent: one workgroup of 256 invocations per sample. Tree reductions in workgroup memory
// give the row's max (and its first arg-max) and the sum of exp(logit - max); then
//   loss[i] = max + ln(sum) - logit[label],  correct[i] = (argmax == label),
//   dlogits[i][j] = (softmax_j - [j == label]) / mean_over   (when write_grad != 0).
// CPU twin: src/net/loss.rs::softmax_xent_cpu (sums in another order: compare with a tolerance).

struct SoftmaxXentParams {    // mirrored by src/net/loss.rs::SoftmaxXentParams (layout checked by tests/shaders.rs)
    n: u32,
    k: u32,
    mean_over: u32,
    write_grad: u32,
}

@group(0) @binding(0) var<uniform> params: SoftmaxXentParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> correct: array<f32>;
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>;

const WG: u32 = 256u;
var<workgroup> red_v: array<f32, 256>;
var<workgroup> red_i: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let sample = wid.y * nwg.x + wid.x;     // uniform over the workgroup
    let in_range = sample < params.n;
    let k = params.k;
    let base = sample * k;
    // 1. max and first arg-max
    var m = -3.4e38;
    var arg = 0xffffffffu;
    if (in_range) {
        for (var j = lid; j < k; j += WG) {
            let v = logits[base + j];
            if (v > m) {
                m = v;
                arg = j;
            }
        }
    }
    red_v[lid] = m;
    red_i[lid] = arg;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            let a = red_v[lid];
            let b = red_v[lid + s];
            let ia = red_i[lid];
            let ib = red_i[lid + s];
            if (b > a || (b == a && ib < ia)) {
                red_v[lid] = b;
                red_i[lid] = ib;
            }
        }
        workgroupBarrier();
    }
    let row_max = red_v[0];
    let row_arg = red_i[0];
    workgroupBarrier();
    // 2. sum of exp
    var acc = 0.0;
    if (in_range) {
        for (var j = lid; j < k; j += WG) {
            acc += exp(logits[base + j] - row_max);
        }
    }
    red_v[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red_v[lid] = red_v[lid] + red_v[lid + s];
        }
        workgroupBarrier();
    }
    let total = red_v[0];
    if (!in_range) {
        return;
    }
    let label = labels[sample];
    if (lid == 0u) {
        loss[sample] = row_max + log(total) - logits[base + min(label, k - 1u)];
        correct[sample] = select(0.0, 1.0, row_arg == label);
    }
    if (params.write_grad != 0u) {
        let inv = 1.0 / f32(max(params.mean_over, 1u));
        for (var j = lid; j < k; j += WG) {
            let prob = exp(logits[base + j] - row_max) / total;
            dlogits[base + j] = (prob - select(0.0, 1.0, j == label)) * inv;
        }
    }
}
