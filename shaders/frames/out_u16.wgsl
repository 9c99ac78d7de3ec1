// frames/noise's output for quantized frames: the values (integers in [0, 65535]) packed two per
// u32 word in memory order, pixel idx (even) in the low half: the little-endian bytes of a u16
// array, half the bytes of f32 to read back. Pixels come in pairs (idx, idx + 1) only.
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

const PACKED: bool = true;

fn store_pair(idx: u32, a: f32, b: f32) {
    out[idx >> 1u] = u32(a) | (u32(b) << 16u);
}

fn store_one(idx: u32, a: f32) {
    // never called when PACKED (pairs only)
}
