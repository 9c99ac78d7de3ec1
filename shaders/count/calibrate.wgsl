// calibrate: one invocation per pixel of each frame of a batch. Converts raw frames (ADU) to charge
// in fixed point: q = round(16 * (adu - dark) * gain_map / gain_adu_per_e), clamped to +-2^20 (65,536
// electrons). Finding and centroids then work on exact integers, so GPU and CPU agree bit for bit.
// dark = the per-pixel dark reference when given, else the scalar offset; gain_map = 1 when not given.
// The raw values come through `adu_value(i)`, from the prepended count/adu_f32.wgsl (f32 frames) or
// count/adu_u16.wgsl (u16 frames, two per u32 word: half the upload of raw detector data).
// CPU twin: src/count/calibrate.rs::calibrate_cpu (u16 values converted to f32, which is exact).

struct CalibrateParams {      // keep in sync with src/count/calibrate.rs::CalibrateParams
    n_values: u32,            // frames * frame_px
    frame_px: u32,
    use_dark: u32,
    use_gain_map: u32,
    offset_adu: f32,
    inv_gain: f32,            // 1 / gain_adu_per_e
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: CalibrateParams;
@group(0) @binding(2) var<storage, read> dark: array<f32>;      // frame_px values (or 1 dummy)
@group(0) @binding(3) var<storage, read> gain_map: array<f32>;  // frame_px values (or 1 dummy)
@group(0) @binding(4) var<storage, read_write> q: array<i32>;

const WG: u32 = 256u;
const Q_SCALE: f32 = 16.0;
const Q_MAX: f32 = 1048576.0;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.n_values) {
        return;
    }
    let p = i % params.frame_px;
    var d = params.offset_adu;
    if (params.use_dark != 0u) {
        d = dark[p];
    }
    var g = 1.0;
    if (params.use_gain_map != 0u) {
        g = gain_map[p];
    }
    let e = (adu_value(i) - d) * g * params.inv_gain;
    q[i] = i32(clamp(round(e * Q_SCALE), -Q_MAX, Q_MAX));
}
