// place: one invocation per electron of a batch of frames. Draws the electron's library event and
// its pixel of incidence from Philox(counter = (electron, frame, STREAM_PLACE), key = seed).
// CPU twin: src/frames/place.rs::place_cpu.

struct PlaceParams {          // mirrored by src/frames/place.rs::PlaceParams (layout checked by tests/shaders.rs)
    n_electrons: u32,         // electrons in this dispatch
    n_frames: u32,            // frames in this dispatch (entries of frame_offsets minus 1)
    first_frame_lo: u32,      // global index of the dispatch's first frame
    first_frame_hi: u32,
    key_lo: u32,
    key_hi: u32,
    n_events: u32,            // events in the library
    height: u32,
    width: u32,
    electron_base: u32,       // index of this dispatch's first electron within its frame (chunked frames)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: PlaceParams;
@group(0) @binding(1) var<storage, read> frame_offsets: array<u32>;      // n_frames + 1, prefix sums
@group(0) @binding(2) var<storage, read_write> records: array<vec4<u32>>; // (event, row, col, frame_local)

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.n_electrons) {
        return;
    }
    // Frame of electron i: largest f with frame_offsets[f] <= i (binary search).
    var lo = 0u;
    var hi = params.n_frames;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (frame_offsets[mid] <= i) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let f = lo;
    let e = params.electron_base + i - frame_offsets[f];
    let frame_lo = params.first_frame_lo + f;
    let frame_hi = params.first_frame_hi + select(0u, 1u, frame_lo < f);
    let r = philox4x32_10(vec4<u32>(e, frame_lo, frame_hi, STREAM_PLACE), vec2<u32>(params.key_lo, params.key_hi));
    records[i] = vec4<u32>(below(r.x, params.n_events), below(r.y, params.height), below(r.z, params.width), f);
}
