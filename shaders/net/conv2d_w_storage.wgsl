// conv2d weights from a storage buffer (the variant for tensors over 64 KiB, or adapters whose uniform bindings
// are smaller): `wt(k)` is element k of the weights (OIHW), followed by the bias for conv2d_fwd.
@group(0) @binding(2) var<storage, read> wts: array<f32>;

fn wt(k: u32) -> f32 {
    return wts[k];
}
