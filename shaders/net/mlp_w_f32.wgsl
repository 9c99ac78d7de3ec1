// net/mlp_count's weights in f32: a group of 8 weights is two vec4<f32>.
@group(0) @binding(3) var<storage, read> weights: array<vec4<f32>>;

fn w8(e: u32) -> W8 {
    return W8(weights[2u * e], weights[2u * e + 1u]);
}
