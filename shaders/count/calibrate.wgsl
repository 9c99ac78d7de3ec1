// calibrate: one invocation per pixel of each frame of a batch. Converts raw frames (ADU) to charge
// in fixed point (count/calibrate_common.wgsl). The raw values come through `adu_value(i)`, from
// the prepended count/adu_f32.wgsl (f32 frames) or count/adu_u16.wgsl (u16 frames, two per u32
// word: half the upload of raw detector data). Used by the run layouts; the tile layout calibrates
// inside count/find_tile.
// CPU twin: src/count/calibrate.rs::calibrate_cpu (u16 values converted to f32, which is exact).

@group(0) @binding(0) var<uniform> cparams: CalibrateParams;
@group(0) @binding(2) var<storage, read> dark: array<f32>;      // frame_px values (or 1 dummy)
@group(0) @binding(3) var<storage, read> gain_map: array<f32>;  // frame_px values (or 1 dummy)
@group(0) @binding(4) var<storage, read_write> q: array<i32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= cparams.n_values) {
        return;
    }
    q[i] = calibrate_value(adu_value(i), i % cparams.frame_px);
}
