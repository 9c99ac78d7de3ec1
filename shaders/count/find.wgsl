// find: one invocation per run of RUN pixels (count/runs.wgsl; see src/count/mod.rs::CountLayout);
// stream compaction of the electrons found.
// A pixel is a candidate centre when
//   - its 3x3 sum s is a local maximum: larger than each in-frame neighbour's, ties won by the
//     lower flat index (the parallel form of the seed notes' search, which moves to a neighbour
//     with a larger 3x3 sum until none is larger),
//   - some pixel of its 3x3 exceeds the background threshold (q > thr_q), and
//   - no pixel of its 3x3 exceeds the X-ray threshold (when xray_q > 0).
// A candidate is kept unless a stronger candidate (larger s, ties by lower index) lies within
// `suppress_px` pixels (Chebyshev distance), so one electron gives one centre. Kept centres are
// appended with an atomic counter (order is arbitrary; the host sorts by frame and pixel).
// The local-maximum test, which almost every pixel fails, runs on the 3 x (RUN + 2) sums around the
// run, loaded once (30 loads for RUN = 8 instead of up to 8 per pixel); the rest only for the pixels
// that pass.
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
    return thresholds_pass(qmax);
}

const OUTSIDE: i32 = -2147483647 - 1;   // below every 3x3 sum: a neighbour outside the frame

// Whether the largest q of a 3x3 passes the thresholds: above the background threshold and, when
// the X-ray threshold is on, not above it.
fn thresholds_pass(qmax: i32) -> bool {
    return qmax > params.thr_q && !(params.xray_q > 0 && qmax > params.xray_q);
}

// The largest q of the 3x3 around (r, c), in the frame at `base`.
fn qmax3(base: u32, r: i32, c: i32) -> i32 {
    let h = i32(params.height);
    let w = i32(params.width);
    var qmax = -2147483647;
    for (var rr = max(r - 1, 0); rr <= min(r + 1, h - 1); rr++) {
        for (var cc = max(c - 1, 0); cc <= min(c + 1, w - 1); cc++) {
            qmax = max(qmax, q[base + u32(rr * w + cc)]);
        }
    }
    return qmax;
}

// Pixel (r, c) of the frame at `base`, a local maximum of the sums whose 3x3 passes the
// thresholds: whether no stronger candidate lies within suppress_px (then it is a kept centre).
fn not_suppressed(base: u32, r: i32, c: i32) -> bool {
    let h = i32(params.height);
    let w = i32(params.width);
    let me = u32(r * w + c);
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
                return false;
            }
        }
    }
    return true;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    var run: Run;
    if (pixel_run(flat_index(wid, nwg, lid, WG), &run)) {
        test_run(run);
    }
}

// The local-maximum test, the thresholds and the suppression for the pixels of one run; kept
// centres are appended to `cands`.
fn test_run(run: Run) {
    let h = i32(params.height);
    let w = i32(params.width);
    let base = run.base;
    // sums of the window: rows r0-1 .. r0+STEP_R, columns c0-1 .. c0+STEP_C (OUTSIDE off the frame)
    let wc = i32(WIN_C);
    var sw: array<i32, WIN_R * WIN_C>;
    for (var i = 0; i < i32(WIN_R); i++) {
        let rr = run.r0 + i - 1;
        for (var j = 0; j < wc; j++) {
            let cc = run.c0 + j - 1;
            var v = OUTSIDE;
            if (rr >= 0 && rr < h && cc >= 0 && cc < w) {
                v = s[base + u32(rr * w + cc)];
            }
            sw[i * wc + j] = v;
        }
    }
    for (var m = 0; m < i32(RUN); m++) {
        let r = run.r0 + i32(VR) * m;
        let c = run.c0 + i32(VC) * m;
        if (r >= h || c >= w) {
            break;
        }
        // larger than each neighbour's sum; on a tie, the pixel first in raster order wins (the
        // neighbour after it: the row below, or the right one)
        let centre = (1 + i32(VR) * m) * wc + 1 + i32(VC) * m;
        let sm = sw[centre];
        var local = true;
        for (var dr = -1; dr <= 1; dr++) {
            for (var dc = -1; dc <= 1; dc++) {
                if (dr == 0 && dc == 0) {
                    continue;
                }
                let sn = sw[centre + dr * wc + dc];
                let after = dr == 1 || (dr == 0 && dc == 1);
                if (!(sm > sn || (sm == sn && after))) {
                    local = false;
                }
            }
        }
        if (local && thresholds_pass(qmax3(base, r, c)) && not_suppressed(base, r, c)) {
            let slot = atomicAdd(&counter[0], 1u);
            if (slot < params.capacity) {
                cands[slot] = vec4<u32>(run.frame, u32(r * w + c), bitcast<u32>(sm), 0u);
            }
        }
    }
}
