// Shared by count/find and count/suppress (prepended in src/shaders.rs).

struct FindParams {           // keep in sync with src/count/find.rs::FindParams
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
