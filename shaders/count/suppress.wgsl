// suppress: one invocation per candidate of count/find (indirect dispatch from count/args). Keeps
// the candidate unless a stronger candidate (larger 3x3 sum, ties by lower index; marked in
// `marks` by count/find) lies within `suppress_px` pixels (Chebyshev distance), so one electron
// gives one centre. With the pixel finder, only faint candidates are tested, and stronger means
// a larger pixel value. A marked neighbour's sum is recomputed from q (9 loads; marked pixels are
// rare), so no full frame of sums is needed. Each kept centre is appended with an atomic counter
// (order is arbitrary; the host sorts by frame and pixel) and localized at once, every classical
// method (count/localize_common.wgsl), in the same invocation.
// CPU twins: src/count/find.rs::find_cpu (with count/find), src/count/localize.rs::localize_one.

@group(0) @binding(0) var<uniform> params: FindParams;
@group(0) @binding(1) var<storage, read> q: array<i32>;
@group(0) @binding(2) var<storage, read> marks: array<u32>;
@group(0) @binding(3) var<storage, read> pre_counter: array<u32>;
@group(0) @binding(4) var<storage, read> pre: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> counter: array<atomic<u32>>;   // [0]: centres kept
@group(0) @binding(6) var<storage, read_write> cands: array<vec4<u32>>;       // (frame, pixel, s, 0)
// (`pre` holds (frame, pixel, s, faint))
@group(0) @binding(7) var<uniform> lparams: LocalizeParams;
@group(0) @binding(8) var<storage, read_write> out: array<Localized>;

const WG: u32 = 256u;

// The 3x3 sum of q around (r, c) over the pixels in the frame (count/sum3's value).
fn sum3_at(base: u32, r: i32, c: i32, h: i32, w: i32) -> i32 {
    var v = 0;
    for (var rr = max(r - 1, 0); rr <= min(r + 1, h - 1); rr++) {
        for (var cc = max(c - 1, 0); cc <= min(c + 1, w - 1); cc++) {
            v += q[base + u32(rr * w + cc)];
        }
    }
    return v;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= min(pre_counter[0], params.capacity)) {
        return;
    }
    let cand = pre[i];
    let h = i32(params.height);
    let w = i32(params.width);
    let base = cand.x * params.height * params.width;
    let me = cand.y;
    let sm = bitcast<i32>(cand.z);
    let r = i32(me / params.width);
    let c = i32(me % params.width);
    let pixel = params.finder == FINDER_PIXEL;
    var rad = i32(params.suppress_px);
    if (pixel && cand.w == 0u) {
        rad = -1;                                   // a plain centre of the pixel finder: kept
    }
    let qm = q[base + me];
    for (var rr = max(r - rad, 0); rr <= min(r + rad, h - 1); rr++) {
        for (var cc = max(c - rad, 0); cc <= min(c + rad, w - 1); cc++) {
            let n = u32(rr * w + cc);
            let bit = base + n;
            if (n != me && (marks[bit >> 5u] & (1u << (bit & 31u))) != 0u) {
                var stronger = false;
                if (pixel) {
                    stronger = beats(q[bit], n, qm, me);
                } else {
                    stronger = beats(sum3_at(base, rr, cc, h, w), n, sm, me);
                }
                if (stronger) {
                    return;
                }
            }
        }
    }
    let slot = atomicAdd(&counter[0], 1u);
    if (slot < params.capacity) {
        cands[slot] = vec4<u32>(cand.xyz, 0u);
        out[slot] = localize_centre(base, me);
    }
}
