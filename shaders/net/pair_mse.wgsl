// pair_mse: one invocation per sample i of a two-electron localizer's permutation-invariant MSE.
// pred[i] = (x1, y1, x2, y2), target[i] = two true points in either order. With
// s_straight = sum_j (pred_j - target_j)^2 and s_swapped = the same against
// (t2x, t2y, t1x, t1y) (each summed j = 0..3 in order, in f32), loss[i] = min(s_straight, s_swapped) / 4,
// the straight assignment on ties (s_straight <= s_swapped), and, when write_grad != 0,
// dpred[i][j] = 2 (pred_j - t_chosen_j) / mean_over. CPU twin: src/net/loss.rs::pair_mse_cpu.

struct PairMseParams {        // mirrored by src/net/loss.rs::PairMseParams (layout checked by tests/shaders.rs)
    n: u32,
    mean_over: u32,
    write_grad: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: PairMseParams;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> target_: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dpred: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.n) {
        return;
    }
    let p = vec4<f32>(pred[4u * i], pred[4u * i + 1u], pred[4u * i + 2u], pred[4u * i + 3u]);
    let t = vec4<f32>(target_[4u * i], target_[4u * i + 1u], target_[4u * i + 2u], target_[4u * i + 3u]);
    let ts = t.zwxy;
    let e = p - t;
    let es = p - ts;
    var s = 0.0;
    var ss = 0.0;
    for (var j = 0u; j < 4u; j++) {
        s += e[j] * e[j];
        ss += es[j] * es[j];
    }
    let straight = s <= ss;
    loss[i] = select(ss, s, straight) / 4.0;
    if (params.write_grad != 0u) {
        let inv = 2.0 / f32(max(params.mean_over, 1u));
        let ec = select(es, e, straight);
        for (var j = 0u; j < 4u; j++) {
            dpred[4u * i + j] = ec[j] * inv;
        }
    }
}
