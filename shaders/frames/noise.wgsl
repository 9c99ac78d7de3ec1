// noise: one invocation per group of 4 consecutive pixels (flat index in the full frame) of each
// frame of a batch. Converts the fixed-point charge to electrons, adds Gaussian read noise from
// Philox(counter = (pixel group, frame, STREAM_NOISE), key = seed), applies gain and dark offset,
// and optionally rounds and saturates to the u16 range. The output goes through `store_pair` /
// `store_one` from the prepended frames/out_f32.wgsl (f32 values) or frames/out_u16.wgsl (quantized
// values packed two per u32 word: half the readback; the host picks it only for even widths, where
// a pair of pixels is always inside or outside the band as a whole).
// CPU twin: src/frames/noise.rs::noise_cpu.

struct NoiseParams {          // mirrored by src/frames/noise.rs::NoiseParams (layout checked by tests/shaders.rs)
    n_frames: u32,
    width: u32,
    row0: u32,                // first row of the band
    band_rows: u32,
    first_frame_lo: u32,
    first_frame_hi: u32,
    key_lo: u32,
    key_hi: u32,
    sigma_e: f32,             // read noise, electrons
    gain_adu_per_e: f32,
    offset_adu: f32,
    quantize: u32,            // 1: round to integer ADU and clamp to [0, 65535]
    first_group: u32,         // first pixel group overlapping the band: (row0 * width) / 4
    n_groups: u32,            // groups overlapping the band
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: NoiseParams;
@group(0) @binding(1) var<storage, read> acc: array<u32>;        // n_frames * band_rows * width, fixed point

const WG: u32 = 256u;
const FIXED_SCALE_INV: f32 = 1.0 / 256.0;

// Twin of noise::pixel_value.
fn pixel_value(acc_fixed: u32, z: f32) -> f32 {
    var v = (f32(acc_fixed) * FIXED_SCALE_INV + params.sigma_e * z) * params.gain_adu_per_e + params.offset_adu;
    if (params.quantize != 0u) {
        v = clamp(round(v), 0.0, 65535.0);
    }
    return v;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.n_frames * params.n_groups) {
        return;
    }
    let f = i / params.n_groups;
    let g = params.first_group + i % params.n_groups;
    let frame_lo = params.first_frame_lo + f;
    let frame_hi = params.first_frame_hi + select(0u, 1u, frame_lo < f);
    let r = philox4x32_10(vec4<u32>(g, frame_lo, frame_hi, STREAM_NOISE), vec2<u32>(params.key_lo, params.key_hi));
    let z01 = gauss_pair(r.x, r.y);
    let z23 = gauss_pair(r.z, r.w);
    let band_start = params.row0 * params.width;
    let band_end = band_start + params.band_rows * params.width;
    let frame_base = f * params.band_rows * params.width;
    let p0 = g * 4u;
    if (p0 >= band_start && p0 + 3u < band_end) {
        // Whole group inside the band (almost always): four straight-line stores.
        let idx = frame_base + (p0 - band_start);
        store_pair(idx, pixel_value(acc[idx], z01.x), pixel_value(acc[idx + 1u], z01.y));
        store_pair(idx + 2u, pixel_value(acc[idx + 2u], z23.x), pixel_value(acc[idx + 3u], z23.y));
        return;
    }
    let z = array<f32, 4>(z01.x, z01.y, z23.x, z23.y);
    for (var lane = 0u; lane < 4u; lane += 2u) {
        let p = p0 + lane;
        if (PACKED) {
            if (p >= band_start && p < band_end) {
                let idx = frame_base + (p - band_start);
                store_pair(idx, pixel_value(acc[idx], z[lane]), pixel_value(acc[idx + 1u], z[lane + 1u]));
            }
        } else {
            for (var k = 0u; k < 2u; k++) {
                if (p + k >= band_start && p + k < band_end) {
                    let idx = frame_base + (p + k - band_start);
                    store_one(idx, pixel_value(acc[idx], z[lane + k]));
                }
            }
        }
    }
}
