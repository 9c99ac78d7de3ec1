// Shared by count/calibrate and count/find_tile (prepended in src/shaders.rs, after the
// count/adu_*.wgsl that supplies `adu_value`). The kernel declares `cparams: CalibrateParams` and
// the `dark` and `gain_map` arrays.
// q = round(16 * (adu - dark) * gain_map / gain_adu_per_e), clamped to +-2^20 (65,536 electrons):
// finding and centroids then work on exact integers, so GPU and CPU agree bit for bit. dark = the
// per-pixel dark reference when given, else the scalar offset; gain_map = 1 when not given.
// CPU twin: src/count/calibrate.rs::calibrate_cpu.

struct CalibrateParams {      // mirrored by src/count/calibrate.rs::CalibrateParams (layout checked by tests/shaders.rs)
    n_values: u32,            // frames * frame_px
    frame_px: u32,
    use_dark: u32,
    use_gain_map: u32,
    offset_adu: f32,
    inv_gain: f32,            // 1 / gain_adu_per_e
    _pad0: u32,
    _pad1: u32,
}

const Q_SCALE: f32 = 16.0;
const Q_MAX: f32 = 1048576.0;

// The fixed-point charge of raw value `adu` at pixel `p` of its frame.
fn calibrate_value(adu: f32, p: u32) -> i32 {
    var d = cparams.offset_adu;
    if (cparams.use_dark != 0u) {
        d = dark[p];
    }
    var g = 1.0;
    if (cparams.use_gain_map != 0u) {
        g = gain_map[p];
    }
    let e = (adu - d) * g * cparams.inv_gain;
    return i32(clamp(round(e * Q_SCALE), -Q_MAX, Q_MAX));
}
