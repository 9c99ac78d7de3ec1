// find_tile: count/calibrate, count/sum3 and the first pass of count/find in one kernel, on tiles
// of TH x TW pixels of a frame, one workgroup per tile, each invocation two pixels of a column
// (rows ty and ty + TH/2; the GPU layout, see src/count/mod.rs::CountLayout). The workgroup
// reads the raw values of its tile and a 2-pixel border once, calibrates them into workgroup
// memory (count/calibrate_common.wgsl), writes the tile's q (count/suppress and the network read
// it), computes the 3x3 sums of the tile and a 1-pixel border there and tests each pixel as
// count/find does: local maximum of the sums (ties won by the lower flat index), thresholds on the
// largest q of its 3x3; or, with the pixel finder, local maximum of q and `pixel_class`.
// Candidates are appended to `pre` and marked in `marks` for count/suppress.
// Integer arithmetic after the calibration: exactly count/calibrate's, count/sum3's and
// count/find's results. The raw values come through `adu_value(i)` (count/adu_f32.wgsl or
// count/adu_u16.wgsl, prepended).
// CPU twins: src/count/calibrate.rs::calibrate_cpu, src/count/sum3.rs::sum3_cpu,
// src/count/find.rs::find_cpu.

@group(0) @binding(0) var<uniform> params: FindParams;
// binding 1 (adu): count/adu_f32.wgsl or count/adu_u16.wgsl
@group(0) @binding(2) var<storage, read> dark: array<f32>;      // frame_px values (or 1 dummy)
@group(0) @binding(3) var<storage, read> gain_map: array<f32>;  // frame_px values (or 1 dummy)
@group(0) @binding(4) var<storage, read_write> q: array<i32>;
@group(0) @binding(5) var<storage, read_write> pre_counter: array<atomic<u32>>;  // see find_list.wgsl
@group(0) @binding(6) var<storage, read_write> pre: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read_write> marks: array<atomic<u32>>;
@group(0) @binding(8) var<uniform> cparams: CalibrateParams;

const WG: u32 = 256u;
const TW: u32 = 32u;                 // tile width (a row of the tile: 128 bytes of q)
const TH: u32 = 16u;                 // tile height; TW * TH = 2 * WG
const HALF: u32 = 8u;                // TH / 2: the second pixel of an invocation is HALF rows down
const QW: u32 = TW + 4u;             // q: rows r0-2 .. r0+TH+1, columns c0-2 .. c0+TW+1
const QH: u32 = TH + 4u;
const SW: u32 = TW + 2u;             // sums: rows r0-1 .. r0+TH, columns c0-1 .. c0+TW
const SH: u32 = TH + 2u;

var<workgroup> qs: array<i32, QW * QH>;   // 0 off the frame (sums count only pixels in the frame)
var<workgroup> ss: array<i32, SW * SH>;   // OUTSIDE off the frame

// Tests pixel (ty, tx) of the tile (frame row r, column c) and lists it if it is a candidate.
fn test_pixel(f: u32, base: u32, h: i32, w: i32, r: i32, c: i32, ty: u32, tx: u32) {
    let me = u32(r * w + c);
    let centre = (ty + 1u) * SW + tx + 1u;
    let qc = (ty + 2u) * QW + tx + 2u;
    let pixel = params.finder == FINDER_PIXEL;
    var km = ss[centre];
    if (pixel) {
        km = qs[qc];
        if (km <= pixel_floor()) {
            return;
        }
    }
    // larger than each neighbour's key (sum, or q for the pixel finder); on a tie, the pixel first
    // in raster order wins
    var local = true;
    for (var dr = -1; dr <= 1; dr++) {
        for (var dc = -1; dc <= 1; dc++) {
            if (dr != 0 || dc != 0) {
                var kn = ss[u32(i32(centre) + dr * i32(SW) + dc)];
                if (pixel) {
                    kn = OUTSIDE;
                    let rr = r + dr;
                    let cc = c + dc;
                    if (rr >= 0 && rr < h && cc >= 0 && cc < w) {
                        kn = qs[u32(i32(qc) + dr * i32(QW) + dc)];
                    }
                }
                if (!beats_neighbour(km, kn, dr, dc)) {
                    local = false;
                }
            }
        }
    }
    if (!local) {
        return;
    }
    if (pixel) {
        let cls = pixel_class(km, ss[centre]);
        if (cls != 0u) {
            list_candidate(f, base, me, ss[centre], cls - 1u);
        }
        return;
    }
    var qmax = -2147483647;
    for (var dr = -1; dr <= 1; dr++) {
        for (var dc = -1; dc <= 1; dc++) {
            let rr = r + dr;
            let cc = c + dc;
            if (rr >= 0 && rr < h && cc >= 0 && cc < w) {
                qmax = max(qmax, qs[u32(i32(ty) + 2 + dr) * QW + u32(i32(tx) + 2 + dc)]);
            }
        }
    }
    if (thresholds_pass(qmax)) {
        list_candidate(f, base, me, km, 0u);
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let h = i32(params.height);
    let w = i32(params.width);
    let tiles_r = (params.height + TH - 1u) / TH;
    let tiles_c = (params.width + TW - 1u) / TW;
    let tile = wid.y * nwg.x + wid.x;                 // the same for the whole workgroup
    if (tile >= params.n_frames * tiles_r * tiles_c) {
        return;
    }
    let f = tile / (tiles_r * tiles_c);
    let t = tile % (tiles_r * tiles_c);
    let r0 = i32((t / tiles_c) * TH);
    let c0 = i32((t % tiles_c) * TW);
    let base = f * params.height * params.width;
    for (var k = lid; k < QW * QH; k += WG) {
        let rr = r0 - 2 + i32(k / QW);
        let cc = c0 - 2 + i32(k % QW);
        var v = 0;
        if (rr >= 0 && rr < h && cc >= 0 && cc < w) {
            let p = u32(rr * w + cc);
            v = calibrate_value(adu_value(base + p), p);
        }
        qs[k] = v;
    }
    workgroupBarrier();
    for (var k = lid; k < SW * SH; k += WG) {
        let i = k / SW;                                // sum row i is q row i + 1
        let j = k % SW;
        let rr = r0 - 1 + i32(i);
        let cc = c0 - 1 + i32(j);
        var v = OUTSIDE;
        if (rr >= 0 && rr < h && cc >= 0 && cc < w) {
            v = 0;
            for (var di = 0u; di < 3u; di++) {
                let row = (i + di) * QW + j;
                v += qs[row] + qs[row + 1u] + qs[row + 2u];
            }
        }
        ss[k] = v;
    }
    workgroupBarrier();
    let tx = lid % TW;
    let c = c0 + i32(tx);
    if (c >= w) {
        return;
    }
    for (var half = 0u; half < 2u; half++) {
        let ty = lid / TW + half * HALF;
        let r = r0 + i32(ty);
        if (r < h) {
            q[base + u32(r * w + c)] = qs[(ty + 2u) * QW + tx + 2u];
            test_pixel(f, base, h, w, r, c, ty, tx);
        }
    }
}
