// Philox4x32-10 counter-based RNG and float helpers.
// GPU twin of src/rng.rs: keep the two in sync (same constants, same operation order).
// Counter layout: (item, index_lo, index_hi, stream); key = (seed_lo, seed_hi).

const STREAM_PLACE: u32 = 2u;
const STREAM_NOISE: u32 = 3u;
const STREAM_TRAIN: u32 = 32u;
const STREAM_DROPOUT: u32 = 33u;
const STREAM_PAIRS: u32 = 36u;

// High and low 32 bits of a * b, from 16-bit halves (WGSL has no 64-bit integers).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

// floor(x * n / 2^32): uniform integer in [0, n).
fn below(x: u32, n: u32) -> u32 {
    return mulhilo(x, n).x;
}

fn philox4x32_10(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = ctr;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let p0 = mulhilo(0xD2511F53u, c.x);
        let p1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// Uniform in [0, 1) and (0, 1], 24 random bits, exact in f32.
fn u01(x: u32) -> f32 {
    return f32(x >> 8u) * (1.0 / 16777216.0);
}

fn u01_open0(x: u32) -> f32 {
    return f32((x >> 8u) + 1u) * (1.0 / 16777216.0);
}

// Natural log with plain arithmetic (WGSL's log() may be inaccurate); twin of rng::ln_approx.
fn ln_approx(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    var e = i32((bits >> 23u) & 0xffu) - 127;
    var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u);
    if (m > 1.4142135) {
        m = m * 0.5;
        e = e + 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = 1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0))));
    return f32(e) * 0.6931472 + 2.0 * s * p;
}

// (cos(2 pi t), sin(2 pi t)) with plain arithmetic; twin of rng::sincos_turns.
fn sincos_turns(t: f32) -> vec2<f32> {
    let k = round(t * 4.0);
    let r = t - k * 0.25;
    let x = r * 6.2831855;
    let x2 = x * x;
    let s = x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362880.0)))));
    let c = 1.0 + x2 * (-0.5 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0))));
    // Rotate by k quarter turns without branches (k mod 4 in 0..3).
    let q = u32(i32(k) & 3);
    let odd = (q & 1u) == 1u;
    let cs = select(vec2<f32>(c, s), vec2<f32>(-s, c), odd);
    return select(cs, -cs, q >= 2u);
}

// Two standard normal numbers from two uniform u32 (Box-Muller); twin of rng::gauss_pair.
fn gauss_pair(a: u32, b: u32) -> vec2<f32> {
    let r = sqrt(-2.0 * ln_approx(u01_open0(a)));
    return r * sincos_turns(u01(b));
}

// Standard normal number `lane` (0..3) of a Philox block: lanes 0 and 1 from gauss_pair(r.x, r.y),
// lanes 2 and 3 from gauss_pair(r.z, r.w) (one block gives the noise of 4 pixels). Twin:
// src/rng.rs::block_normal.
fn block_normal(r: vec4<u32>, lane: u32) -> f32 {
    let ab = select(r.zw, r.xy, lane < 2u);
    let z2 = gauss_pair(ab.x, ab.y);
    return select(z2.y, z2.x, lane % 2u == 0u);
}

// Flat invocation index for 1-D work dispatched as a 2-D grid (see src/gpu/dispatch.rs).
fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg_size: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * wg_size + lid;
}
