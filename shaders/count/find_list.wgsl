// Shared by count/find and count/find_tile (prepended in src/shaders.rs, after find_common.wgsl):
// the list of candidates before suppression and their bitmap, which count/suppress reads. The
// kernel declares `pre_counter: array<atomic<u32>>` ([0]: candidates), `pre: array<vec4<u32>>`
// ((frame, pixel, s, faint)) and `marks: array<atomic<u32>>` (one bit per pixel).

// Appends pixel `me` of frame `f` (first pixel `base` in the batch), with 3x3 sum `sm`, to `pre`
// (faint: 1 for the pixel finder's faint centres, else 0) and sets its bit in `marks`.
fn list_candidate(f: u32, base: u32, me: u32, sm: i32, faint: u32) {
    let slot = atomicAdd(&pre_counter[0], 1u);
    if (slot < params.capacity) {
        pre[slot] = vec4<u32>(f, me, bitcast<u32>(sm), faint);
    }
    let bit = base + me;
    atomicOr(&marks[bit >> 5u], 1u << (bit & 31u));
}
