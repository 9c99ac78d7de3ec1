// find: one invocation per pixel of each frame; stream compaction of the electrons found.
// A pixel is a candidate centre when
//   - its 3x3 sum s is a local maximum: larger than each in-frame neighbour's, ties won by the
//     lower flat index (the parallel form of the seed notes' search, which moves to a neighbour
//     with a larger 3x3 sum until none is larger),
//   - some pixel of its 3x3 exceeds the background threshold (q > thr_q), and
//   - no pixel of its 3x3 exceeds the X-ray threshold (when xray_q > 0).
// A candidate is kept unless a stronger candidate (larger s, ties by lower index) lies within
// `suppress_px` pixels (Chebyshev distance), so one electron gives one centre. Kept centres are
// appended with an atomic counter (order is arbitrary; the host sorts by frame and pixel).
// CPU twin: src/count/find.rs::find_cpu.

struct FindParams {           // keep in sync with src/count/find.rs::FindParams
    n_frames: u32,
    height: u32,
    width: u32,
    thr_q: i32,
    xray_q: i32,              // 0: off
    suppress_px: u32,
    capacity: u32,            // length of `cands`
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: FindParams;
@group(0) @binding(1) var<storage, read> q: array<i32>;
@group(0) @binding(2) var<storage, read> s: array<i32>;
@group(0) @binding(3) var<storage, read_write> counter: array<atomic<u32>>;   // [0]: candidates found
@group(0) @binding(4) var<storage, read_write> cands: array<vec4<u32>>;       // (frame, pixel, s, 0)

const WG: u32 = 256u;

// (a beats b): larger sum, ties by lower flat index.
fn beats(sa: i32, ia: u32, sb: i32, ib: u32) -> bool {
    return sa > sb || (sa == sb && ia < ib);
}

fn is_candidate(base: u32, r: i32, c: i32) -> bool {
    let h = i32(params.height);
    let w = i32(params.width);
    let me = u32(r * w + c);
    let sm = s[base + me];
    var qmax = -2147483647;
    for (var dr = -1; dr <= 1; dr++) {
        let rr = r + dr;
        if (rr < 0 || rr >= h) {
            continue;
        }
        for (var dc = -1; dc <= 1; dc++) {
            let cc = c + dc;
            if (cc < 0 || cc >= w) {
                continue;
            }
            let n = u32(rr * w + cc);
            qmax = max(qmax, q[base + n]);
            if (n != me && !beats(sm, me, s[base + n], n)) {
                return false;
            }
        }
    }
    if (qmax <= params.thr_q) {
        return false;
    }
    if (params.xray_q > 0 && qmax > params.xray_q) {
        return false;
    }
    return true;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    let frame_px = params.height * params.width;
    if (i >= params.n_frames * frame_px) {
        return;
    }
    let f = i / frame_px;
    let base = f * frame_px;
    let me = i - base;
    let r = i32(me / params.width);
    let c = i32(me % params.width);
    if (!is_candidate(base, r, c)) {
        return;
    }
    let sm = s[i];
    let rad = i32(params.suppress_px);
    let h = i32(params.height);
    let w = i32(params.width);
    for (var dr = -rad; dr <= rad; dr++) {
        let rr = r + dr;
        if (rr < 0 || rr >= h) {
            continue;
        }
        for (var dc = -rad; dc <= rad; dc++) {
            let cc = c + dc;
            if (cc < 0 || cc >= w || (dr == 0 && dc == 0)) {
                continue;
            }
            let n = u32(rr * w + cc);
            if (beats(s[base + n], n, sm, me) && is_candidate(base, rr, cc)) {
                return;
            }
        }
    }
    let slot = atomicAdd(&counter[0], 1u);
    if (slot < params.capacity) {
        cands[slot] = vec4<u32>(f, me, bitcast<u32>(sm), 0u);
    }
}
