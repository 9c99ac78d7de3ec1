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
    _pad0: u32,
}

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
