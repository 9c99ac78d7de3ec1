// accumulate: one invocation per placed electron. Adds the pixel charges of the electron's library
// event, in fixed point (charge_e * 2^8 as u32), with integer atomics: the sum does not depend on
// the order of the additions, so it is bit-identical to the CPU twin.
// Only rows [row0, row0 + band_rows) are accumulated (frames larger than a storage binding are
// made in row bands). CPU twin: src/frames/accumulate.rs::accumulate_cpu.

struct AccumulateParams {     // mirrored by src/frames/accumulate.rs::AccumulateParams (layout checked by tests/shaders.rs)
    n_electrons: u32,
    height: u32,
    width: u32,
    row0: u32,
    band_rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: AccumulateParams;
@group(0) @binding(1) var<storage, read> records: array<vec4<u32>>;     // (event, row, col, frame_local)
@group(0) @binding(2) var<storage, read> event_offsets: array<u32>;     // n_events + 1, into event_pixels
@group(0) @binding(3) var<storage, read> event_pixels: array<vec2<u32>>; // (dx as i16 | dy as i16 << 16, charge fixed)
@group(0) @binding(4) var<storage, read_write> acc: array<atomic<u32>>;  // n_frames * band_rows * width

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.n_electrons) {
        return;
    }
    let rec = records[i];
    let row = i32(rec.y);
    let col = i32(rec.z);
    let band_lo = i32(params.row0);
    let band_hi = band_lo + i32(params.band_rows);
    let base = rec.w * params.band_rows * params.width;
    for (var p = event_offsets[rec.x]; p < event_offsets[rec.x + 1u]; p++) {
        let px = event_pixels[p];
        let dx = (i32(px.x << 16u)) >> 16u;   // sign-extend the low 16 bits
        let dy = i32(px.x) >> 16u;            // arithmetic shift keeps the sign
        let r = row + dy;
        let c = col + dx;
        if (r >= band_lo && r < band_hi && c >= 0 && c < i32(params.width)) {
            atomicAdd(&acc[base + u32(r - band_lo) * params.width + u32(c)], px.y);
        }
    }
}
