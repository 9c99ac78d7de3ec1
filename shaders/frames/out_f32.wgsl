// frames/noise's output as f32 ADU, one value per pixel (see noise.wgsl).
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const PACKED: bool = false;

fn store_pair(idx: u32, a: f32, b: f32) {
    out[idx] = a;
    out[idx + 1u] = b;
}

fn store_one(idx: u32, a: f32) {
    out[idx] = a;
}
