// make_pairs: one invocation per patch pixel of each sample (one electron or two).
// Sample k = first + s draws from Philox counter (0, k, PAIRS): whether it holds two electrons
// (u01 < p_two), event 1 and event 2; from (1, k, PAIRS): the first electron's integer shift (x, y)
// from the centre pixel side/2 and the second electron's integer offset (ox, oy) from the first,
// uniform over [-max_sep, max_sep]^2 minus (0, 0) (one uniform index over those offsets). The pixel's
// value is event 1's charge there plus (if two) event 2's charge there, summed in library order
// into one f32 accumulator, event 1 first, plus sigma_e * N(0,1) from counter (2 + pixel/4, k, PAIRS),
// all times input_scale. Pixel 0's invocation also writes the class, the two true points and their
// distance. CPU twin: src/net/pairs.rs::make_pairs_cpu.
//
// Extra (distractor) electrons: their number is Poisson(extra_mean) capped at extra_max, by
// inversion of u01(w0) of counter (0x80000000, k, PAIRS) (p = cdf = extra_p0 = exp(-extra_mean)
// from the host; while j < extra_max && u >= cdf: j++, p = p * (m / j), cdf += p). Extra j uses
// counter (0x80000001 + j, k, PAIRS): w0 -> its event ev_lo + below(w0, ev_count), w1 -> its
// incidence pixel, below(w1, allowed) over the patch pixels at Chebyshev distance > max_sep from the
// first electron's incidence pixel (c0 + sx, c0 + sy), numbered row by row skipping the box
// (extra_pixel). Their charge is added after events 1 and 2, extra 0 first, each in library order,
// before the noise. Class, points and sep ignore the extras. Twins: pairs.rs::pair_extra_count,
// extra_pixel, pair_extras.

struct MakePairsParams {      // mirrored by src/net/pairs.rs::MakePairsParams (layout checked by tests/shaders.rs)
    n: u32,
    side: u32,
    first_lo: u32,
    first_hi: u32,
    key_lo: u32,
    key_hi: u32,
    ev_lo: u32,
    ev_count: u32,
    shift: u32,
    max_sep: u32,
    p_two: f32,
    sigma_e: f32,
    input_scale: f32,
    extra_mean: f32,
    extra_max: u32,
    extra_p0: f32,             // exp(-extra_mean), computed on the host
}

@group(0) @binding(0) var<uniform> params: MakePairsParams;
@group(0) @binding(1) var<storage, read> offsets: array<u32>;
@group(0) @binding(2) var<storage, read> dxdy: array<i32>;
@group(0) @binding(3) var<storage, read> charge: array<f32>;
@group(0) @binding(4) var<storage, read> incidence: array<f32>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;
@group(0) @binding(6) var<storage, read_write> class_: array<u32>;
@group(0) @binding(7) var<storage, read_write> points: array<f32>;
@group(0) @binding(8) var<storage, read_write> sep: array<f32>;

const WG: u32 = 256u;

// Twin of pairs.rs::pair_choice.
struct PairChoice {
    two: u32,
    ev1: u32,
    ev2: u32,
    sx: i32,
    sy: i32,
    ox: i32,
    oy: i32,
}

fn pair_choice(k_lo: u32, k_hi: u32, key: vec2<u32>) -> PairChoice {
    let r0 = philox4x32_10(vec4<u32>(0u, k_lo, k_hi, STREAM_PAIRS), key);
    let r1 = philox4x32_10(vec4<u32>(1u, k_lo, k_hi, STREAM_PAIRS), key);
    var c: PairChoice;
    c.two = select(0u, 1u, u01(r0.x) < params.p_two);
    c.ev1 = params.ev_lo + below(r0.y, params.ev_count);
    c.ev2 = params.ev_lo + below(r0.z, params.ev_count);
    let span = 2u * params.shift + 1u;
    c.sx = i32(below(r1.x, span)) - i32(params.shift);
    c.sy = i32(below(r1.y, span)) - i32(params.shift);
    let m = params.max_sep;
    let ospan = 2u * m + 1u;
    var u = below(r1.z, ospan * ospan - 1u);
    if (u >= m * ospan + m) {
        u += 1u; // skip (0, 0)
    }
    c.ox = i32(u % ospan) - i32(m);
    c.oy = i32(u / ospan) - i32(m);
    return c;
}

const EXTRA_COUNT_ITEM: u32 = 0x80000000u;

// Twin of pairs.rs::pair_extra_count: Poisson(extra_mean) by inversion, capped at extra_max.
fn extra_count(k_lo: u32, k_hi: u32, key: vec2<u32>) -> u32 {
    if (params.extra_max == 0u) {
        return 0u;
    }
    let r = philox4x32_10(vec4<u32>(EXTRA_COUNT_ITEM, k_lo, k_hi, STREAM_PAIRS), key);
    let u = u01(r.x);
    var j = 0u;
    var pj = params.extra_p0;
    var cdf = params.extra_p0;
    while (j < params.extra_max && u >= cdf) {
        j += 1u;
        pj = pj * (params.extra_mean / f32(j));
        cdf += pj;
    }
    return j;
}

// Twin of pairs.rs::extra_pixel: pixel (col, row) of index u over the patch pixels outside the box of
// Chebyshev radius m around (bx, by), row by row.
fn extra_pixel(u_in: u32, side: u32, bx: i32, by: i32, m: u32) -> vec2<i32> {
    let m_i = i32(m);
    let bw = 2u * m + 1u;
    let top = u32(by - m_i) * side;
    if (u_in < top) {
        return vec2<i32>(i32(u_in % side), i32(u_in / side));
    }
    var u = u_in - top;
    let w = side - bw;
    if (u < bw * w) {
        let c = i32(u % w);
        let col = select(c + i32(bw), c, c < bx - m_i);
        return vec2<i32>(col, by - m_i + i32(u / w));
    }
    u -= bw * w;
    return vec2<i32>(i32(u % side), by + m_i + 1 + i32(u / side));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    let plane = params.side * params.side;
    if (i >= params.n * plane) {
        return;
    }
    let s = i / plane;
    let pix = i % plane;
    // global sample index k = first + s (64-bit as lo/hi)
    let k_lo = params.first_lo + s;
    let k_hi = params.first_hi + select(0u, 1u, k_lo < s);
    let key = vec2<u32>(params.key_lo, params.key_hi);
    let c = pair_choice(k_lo, k_hi, key);
    let c0 = i32(params.side / 2u);
    let col = i32(pix % params.side);
    let row = i32(pix / params.side);
    var q = 0.0;
    // event 1 at pixel (c0 + sx, c0 + sy)
    let hi1 = offsets[c.ev1 + 1u];
    for (var j = offsets[c.ev1]; j < hi1; j++) {
        if (c0 + c.sx + dxdy[2u * j] == col && c0 + c.sy + dxdy[2u * j + 1u] == row) {
            q += charge[j];
        }
    }
    // event 2 at pixel (c0 + sx + ox, c0 + sy + oy)
    if (c.two == 1u) {
        let hi2 = offsets[c.ev2 + 1u];
        for (var j = offsets[c.ev2]; j < hi2; j++) {
            if (c0 + c.sx + c.ox + dxdy[2u * j] == col && c0 + c.sy + c.oy + dxdy[2u * j + 1u] == row) {
                q += charge[j];
            }
        }
    }
    // extra electrons, extra 0 first
    let n_extra = extra_count(k_lo, k_hi, key);
    let bw = 2u * params.max_sep + 1u;
    let allowed = plane - bw * bw;
    for (var e = 0u; e < n_extra; e++) {
        let re = philox4x32_10(vec4<u32>(EXTRA_COUNT_ITEM + 1u + e, k_lo, k_hi, STREAM_PAIRS), key);
        let ev = params.ev_lo + below(re.x, params.ev_count);
        let ep = extra_pixel(below(re.y, allowed), params.side, c0 + c.sx, c0 + c.sy, params.max_sep);
        let hie = offsets[ev + 1u];
        for (var j = offsets[ev]; j < hie; j++) {
            if (ep.x + dxdy[2u * j] == col && ep.y + dxdy[2u * j + 1u] == row) {
                q += charge[j];
            }
        }
    }
    let rn = philox4x32_10(vec4<u32>(2u + pix / 4u, k_lo, k_hi, STREAM_PAIRS), key);
    let z = block_normal(rn, pix % 4u);
    x[i] = (q + params.sigma_e * z) * params.input_scale;
    if (pix == 0u) {
        let x1 = (f32(c0 + c.sx) + incidence[2u * c.ev1]) - f32(c0) - 0.5;
        let y1 = (f32(c0 + c.sy) + incidence[2u * c.ev1 + 1u]) - f32(c0) - 0.5;
        var x2 = x1;
        var y2 = y1;
        var d = 0.0;
        if (c.two == 1u) {
            x2 = (f32(c0 + c.sx + c.ox) + incidence[2u * c.ev2]) - f32(c0) - 0.5;
            y2 = (f32(c0 + c.sy + c.oy) + incidence[2u * c.ev2 + 1u]) - f32(c0) - 0.5;
            let ddx = x2 - x1;
            let ddy = y2 - y1;
            d = sqrt(ddx * ddx + ddy * ddy);
        }
        class_[s] = c.two;
        points[4u * s] = x1;
        points[4u * s + 1u] = y1;
        points[4u * s + 2u] = x2;
        points[4u * s + 3u] = y2;
        sep[s] = d;
    }
}
