// count/calibrate's raw frames as f32 (see calibrate.wgsl).
@group(0) @binding(1) var<storage, read> adu: array<f32>;

fn adu_value(i: u32) -> f32 {
    return adu[i];
}
