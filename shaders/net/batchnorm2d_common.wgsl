// Shared by the batchnorm2d_* kernels (prepended after shared/rng.wgsl in src/shaders.rs): the
// uniform, index helpers, and the Chan et al. pairwise combination of (count, mean, M2) moments.
// Tensors are NCHW; the statistics of channel c run over its m = N*H*W terms, numbered
// t = n * H*W + p (p the position in the plane).

struct BatchNorm2dParams {    // mirrored by src/net/batchnorm2d.rs::BatchNorm2dParams (layout checked by tests/shaders.rs)
    c: u32,                   // channels
    hw: u32,                  // H * W
    m: u32,                   // N * H * W: terms per channel
    len: u32,                 // N * C * H * W
    chunk: u32,               // terms per stage-1 workgroup (a multiple of 256)
    n_chunks: u32,            // ceil(m / chunk)
    _pad0: u32,
    _pad1: u32,
    eps: f32,
    momentum: f32,
    keep: f32,                // 1 - momentum
    unbias: f32,              // m / (m - 1)
}

@group(0) @binding(0) var<uniform> params: BatchNorm2dParams;

const WG: u32 = 256u;

// Flat index into x of term t of channel c.
fn term_index(c: u32, t: u32) -> u32 {
    return ((t / params.hw) * params.c + c) * params.hw + t % params.hw;
}

// Channel of flat element i.
fn channel_of(i: u32) -> u32 {
    return (i / params.hw) % params.c;
}

// 1 / sqrt(var + eps), the same expression as the twin's `invstd`.
fn invstd(v: f32) -> f32 {
    return 1.0 / sqrt(v + params.eps);
}

// Workgroup id of a 1-D grid of workgroups dispatched as 2-D (see flat_index).
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

struct Moments {
    n: u32,
    mean: f32,
    m2: f32,                  // sum of squared deviations from mean
}

// Moments of the union of two disjoint sets (Chan, Golub & LeVeque 1979).
fn combine(a: Moments, b: Moments) -> Moments {
    if (b.n == 0u) {
        return a;
    }
    if (a.n == 0u) {
        return b;
    }
    let na = f32(a.n);
    let nb = f32(b.n);
    let n = na + nb;
    let delta = b.mean - a.mean;
    return Moments(a.n + b.n, a.mean + delta * (nb / n), a.m2 + b.m2 + delta * delta * (na * nb / n));
}
