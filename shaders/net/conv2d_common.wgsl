// Shared by the conv2d kernels (prepended after shared/rng.wgsl in src/shaders.rs): their uniform.
// Tensors are NCHW, weights OIHW: x [N, C_in, H, W], w [C_out, C_in, kh, kw], y [N, C_out, out_h, out_w].

struct Conv2dParams {     // mirrored by src/net/conv2d.rs::Conv2dParams (layout checked by tests/shaders.rs)
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    pad: u32,
    stride: u32,
    out_h: u32,
    out_w: u32,
    n_ch_blocks: u32,   // channel blocks: of C_out (conv2d_fwd, conv2d_bwd_weight) or C_in (conv2d_bwd_input)
    chunk_rows: u32,    // rows (n, oy, ox) per partial sum, conv2d_bwd_weight only
    n_chunks: u32,      // conv2d_bwd_weight only
    blk_groups: u32,    // workgroups per channel block (conv2d_fwd, conv2d_bwd_input)
    x_groups: u32,      // pixel groups per image row (per column phase for conv2d_bwd_input)
}

@group(0) @binding(0) var<uniform> params: Conv2dParams;
