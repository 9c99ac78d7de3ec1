// find: one invocation per run of RUN = 8 pixels of a row (count/row_runs.wgsl); stream compaction of the electrons found.
// A pixel is a candidate centre when
//   - its 3x3 sum s is a local maximum: larger than each in-frame neighbour's, ties won by the
//     lower flat index (the parallel form of the seed notes' search, which moves to a neighbour
//     with a larger 3x3 sum until none is larger),
//   - some pixel of its 3x3 exceeds the background threshold (q > thr_q), and
//   - no pixel of its 3x3 exceeds the X-ray threshold (when xray_q > 0).
// A candidate is kept unless a stronger candidate (larger s, ties by lower index) lies within
// `suppress_px` pixels (Chebyshev distance), so one electron gives one centre. Kept centres are
// appended with an atomic counter (order is arbitrary; the host sorts by frame and pixel).
// The local-maximum test, which almost every pixel fails, runs on the 3 x 10 sums around the run,
// loaded once (30 loads instead of up to 8 per pixel); the rest only for the pixels that pass.
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

const OUTSIDE: i32 = -2147483647 - 1;   // below every 3x3 sum: a neighbour outside the frame

// Pixel (r, c) of the frame at `base`, a local maximum of the sums: the rest of the test (the
// thresholds), then the suppression, then the append.
fn finish(f: u32, base: u32, r: i32, c: i32) {
    let h = i32(params.height);
    let w = i32(params.width);
    let me = u32(r * w + c);
    var qmax = -2147483647;
    for (var rr = max(r - 1, 0); rr <= min(r + 1, h - 1); rr++) {
        for (var cc = max(c - 1, 0); cc <= min(c + 1, w - 1); cc++) {
            qmax = max(qmax, q[base + u32(rr * w + cc)]);
        }
    }
    if (qmax <= params.thr_q || (params.xray_q > 0 && qmax > params.xray_q)) {
        return;
    }
    let sm = s[base + me];
    let rad = i32(params.suppress_px);
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

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    var run: RowRun;
    if (!row_run(flat_index(wid, nwg, lid, WG), &run)) {
        return;
    }
    let h = i32(params.height);
    let w = i32(params.width);
    let f = run.frame;
    let base = run.base;
    let r = run.r;
    let c0 = run.c0;
    // sums of rows r-1 .. r+1, columns c0-1 .. c0+8 (OUTSIDE off the frame)
    var sw: array<i32, 30>;
    for (var dr = 0; dr < 3; dr++) {
        let rr = r + dr - 1;
        for (var j = 0; j < 10; j++) {
            let cc = c0 - 1 + j;
            var v = OUTSIDE;
            if (rr >= 0 && rr < h && cc >= 0 && cc < w) {
                v = s[base + u32(rr * w + cc)];
            }
            sw[dr * 10 + j] = v;
        }
    }
    for (var m = 0; m < 8; m++) {
        let c = c0 + m;
        if (c >= w) {
            break;
        }
        // larger than each neighbour's sum; on a tie, the pixel first in raster order wins (the
        // neighbour after it: the row below, or the right one)
        let sm = sw[10 + m + 1];
        var local = true;
        for (var dr = 0; dr < 3; dr++) {
            for (var dc = 0; dc < 3; dc++) {
                if (dr == 1 && dc == 1) {
                    continue;
                }
                let sn = sw[dr * 10 + m + dc];
                let after = dr == 2 || (dr == 1 && dc == 2);
                if (!(sm > sn || (sm == sn && after))) {
                    local = false;
                }
            }
        }
        if (local) {
            finish(f, base, r, c);
        }
    }
}
