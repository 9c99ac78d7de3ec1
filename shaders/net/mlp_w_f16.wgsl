// net/mlp_count's weights in f16 (half the bytes; the arithmetic stays f32, and no SHADER_F16 is
// needed): a group of 8 weights is one vec4<u32>, two f16 per u32 (the lower half first).
@group(0) @binding(3) var<storage, read> weights: array<vec4<u32>>;

fn w8(e: u32) -> W8 {
    let v = weights[e];
    return W8(vec4(unpack2x16float(v.x), unpack2x16float(v.y)), vec4(unpack2x16float(v.z), unpack2x16float(v.w)));
}
