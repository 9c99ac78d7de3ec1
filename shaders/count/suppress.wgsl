// suppress: one invocation per candidate of count/find (indirect dispatch from count/args). Keeps
// the candidate unless a stronger candidate (larger s, ties by lower index; marked in `marks` by
// count/find) lies within `suppress_px` pixels (Chebyshev distance), so one electron gives one
// centre. Kept centres are appended with an atomic counter (order is arbitrary; the host sorts by
// frame and pixel).
// CPU twin: src/count/find.rs::find_cpu (with count/find).

@group(0) @binding(0) var<uniform> params: FindParams;
@group(0) @binding(1) var<storage, read> s: array<i32>;
@group(0) @binding(2) var<storage, read> marks: array<u32>;
@group(0) @binding(3) var<storage, read> pre_counter: array<u32>;
@group(0) @binding(4) var<storage, read> pre: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> counter: array<atomic<u32>>;   // [0]: centres kept
@group(0) @binding(6) var<storage, read_write> cands: array<vec4<u32>>;       // (frame, pixel, s, 0)

const WG: u32 = 256u;

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
    let rad = i32(params.suppress_px);
    for (var rr = max(r - rad, 0); rr <= min(r + rad, h - 1); rr++) {
        for (var cc = max(c - rad, 0); cc <= min(c + rad, w - 1); cc++) {
            let n = u32(rr * w + cc);
            let bit = base + n;
            if (n != me && (marks[bit >> 5u] & (1u << (bit & 31u))) != 0u && beats(s[base + n], n, sm, me)) {
                return;
            }
        }
    }
    let slot = atomicAdd(&counter[0], 1u);
    if (slot < params.capacity) {
        cands[slot] = cand;
    }
}
