// Shared by count/find, count/find_tile and count/suppress (prepended in src/shaders.rs). The
// kernels declare `params: FindParams`.

struct FindParams {           // mirrored by src/count/find.rs::FindParams (layout checked by tests/shaders.rs)
    n_frames: u32,
    height: u32,
    width: u32,
    thr_q: i32,
    xray_q: i32,              // 0: off
    suppress_px: u32,
    capacity: u32,            // length of `cands` (and of the list of candidates before suppression)
    finder: u32,              // FINDER_SUM3 or FINDER_PIXEL
    faint_q: i32,             // pixel finder: a faint centre's pixel above this...
    faint_sum_q: i32,         // ...and its 3x3 sum above this
    _pad0: u32,
    _pad1: u32,
}

const FINDER_SUM3: u32 = 0u;   // centres: local maxima of the 3x3 sums (the EMSim notes' search)
const FINDER_PIXEL: u32 = 1u;  // centres: local maxima of the pixel values (as stempy), faint ones too

// (a beats b): larger sum, ties by lower flat index.
fn beats(sa: i32, ia: u32, sb: i32, ib: u32) -> bool {
    return sa > sb || (sa == sb && ia < ib);
}

// A pixel with sum `sm` against its neighbour at (dr, dc) in -1..1 with sum `sn`: `beats` for
// neighbours, whose flat index is lower exactly when they come before it in raster order (the row
// above, or the left one).
fn beats_neighbour(sm: i32, sn: i32, dr: i32, dc: i32) -> bool {
    return sm > sn || (sm == sn && (dr == 1 || (dr == 0 && dc == 1)));
}

const OUTSIDE: i32 = -2147483647 - 1;   // below every 3x3 sum: a neighbour outside the frame

// Whether the largest q of a 3x3 passes the thresholds: above the background threshold and, when
// the X-ray threshold is on, not above it.
fn thresholds_pass(qmax: i32) -> bool {
    return qmax > params.thr_q && !(params.xray_q > 0 && qmax > params.xray_q);
}

// The pixel finder's thresholds for a local maximum with value `m` and 3x3 sum `sm`: 0 not a
// centre, 1 a centre (pixel and sum above the background threshold), 2 a faint centre (pixel
// above faint_q, sum above faint_sum_q; only these are suppressed). Never above the X-ray
// threshold when it is on.
fn pixel_class(m: i32, sm: i32) -> u32 {
    if (params.xray_q > 0 && m > params.xray_q) {
        return 0u;
    }
    if (m > params.thr_q && sm > params.thr_q) {
        return 1u;
    }
    if (m > params.faint_q && sm > params.faint_sum_q) {
        return 2u;
    }
    return 0u;
}

// The lowest value a pixel finder's centre can have (below it, no local-maximum test is needed).
fn pixel_floor() -> i32 {
    return min(params.thr_q, params.faint_q);
}
