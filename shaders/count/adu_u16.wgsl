// count/calibrate's raw frames as u16, packed two per u32 word in memory order (value i in the low
// half of word i / 2 when i is even, the high half when odd: the little-endian bytes of a u16
// array), so raw detector frames upload at half the size of f32. Exact: every u16 is an f32.
@group(0) @binding(1) var<storage, read> adu: array<u32>;

fn adu_value(i: u32) -> f32 {
    return f32((adu[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu);
}
