// conv2d weights from a uniform buffer (the variant for tensors of at most 16384 f32, 64 KiB): `wt(k)` is element k
// of the weights (OIHW), followed by the bias for conv2d_fwd. The host copies them in (src/net/conv2d.rs). All
// invocations of a workgroup read the same weight at the same time, which uniform buffers serve as a broadcast.
@group(0) @binding(2) var<uniform> wts: array<vec4<f32>, 4096>;

fn wt(k: u32) -> f32 {
    return wts[k >> 2u][k & 3u];
}
