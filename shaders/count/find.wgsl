// find: one invocation per run of RUN pixels (count/runs.wgsl; see src/count/mod.rs::CountLayout).
// The first of two passes (the second is count/suppress). With the 3x3 sum finder, a pixel is a
// candidate centre when
//   - its 3x3 sum s is a local maximum: larger than each in-frame neighbour's, ties won by the
//     lower flat index (the parallel form of the EMSim notes' search, which moves to a neighbour
//     with a larger 3x3 sum until none is larger),
//   - some pixel of its 3x3 exceeds the background threshold (q > thr_q), and
//   - no pixel of its 3x3 exceeds the X-ray threshold (when xray_q > 0).
// With the pixel finder, when its value q is a local maximum (same tie rule) and passes
// `pixel_class` (count/find_common.wgsl).
// Candidates are appended to `pre` with an atomic counter and marked in the bitmap `marks` (bit
// f * H * W + pixel); count/suppress then keeps those with no stronger candidate within
// `suppress_px`. Two passes, so that the suppression runs on a compact list with full warps
// instead of in the few invocations of a run that hold a candidate (on the H100 that halved it).
// The local-maximum test, which almost every pixel fails, runs on the 3 x (RUN + 2) sums around the
// run, loaded once (30 loads for RUN = 8 instead of up to 8 per pixel); the thresholds only for the
// pixels that pass.
// CPU twin: src/count/find.rs::find_cpu (both passes).

@group(0) @binding(0) var<uniform> params: FindParams;
@group(0) @binding(1) var<storage, read> q: array<i32>;
@group(0) @binding(2) var<storage, read> s: array<i32>;
@group(0) @binding(3) var<storage, read_write> pre_counter: array<atomic<u32>>;  // see find_list.wgsl
@group(0) @binding(4) var<storage, read_write> pre: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> marks: array<atomic<u32>>;

const WG: u32 = 256u;

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

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    var run: Run;
    if (pixel_run(flat_index(wid, nwg, lid, WG), &run)) {
        test_run(run);
    }
}

// The local-maximum test and the thresholds for the pixels of one run; candidates are appended to
// `pre` and marked.
fn test_run(run: Run) {
    let h = i32(params.height);
    let w = i32(params.width);
    let base = run.base;
    // keys of the window (the sums, or q for the pixel finder): rows r0-1 .. r0+STEP_R, columns
    // c0-1 .. c0+STEP_C (OUTSIDE off the frame)
    let pixel = params.finder == FINDER_PIXEL;
    let wc = i32(WIN_C);
    var sw: array<i32, WIN_R * WIN_C>;
    for (var i = 0; i < i32(WIN_R); i++) {
        let rr = run.r0 + i - 1;
        for (var j = 0; j < wc; j++) {
            let cc = run.c0 + j - 1;
            var v = OUTSIDE;
            if (rr >= 0 && rr < h && cc >= 0 && cc < w) {
                let i = base + u32(rr * w + cc);
                if (pixel) {
                    v = q[i];
                } else {
                    v = s[i];
                }
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
        // larger than each neighbour's key; on a tie, the pixel first in raster order wins
        let centre = (1 + i32(VR) * m) * wc + 1 + i32(VC) * m;
        let sm = sw[centre];
        if (pixel && sm <= pixel_floor()) {
            continue;
        }
        var local = true;
        for (var dr = -1; dr <= 1; dr++) {
            for (var dc = -1; dc <= 1; dc++) {
                if ((dr != 0 || dc != 0) && !beats_neighbour(sm, sw[centre + dr * wc + dc], dr, dc)) {
                    local = false;
                }
            }
        }
        let me = u32(r * w + c);
        if (local && pixel) {
            let sv = s[base + me];
            let cls = pixel_class(sm, sv);
            if (cls != 0u) {
                list_candidate(run.frame, base, me, sv, cls - 1u);
            }
        } else if (local && thresholds_pass(qmax3(base, r, c))) {
            list_candidate(run.frame, base, me, sm, 0u);
        }
    }
}
