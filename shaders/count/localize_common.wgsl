// Shared by count/localize and count/suppress (prepended in src/shaders.rs): every classical
// method around one centre, from the fixed-point frame q. The kernel declares
// `lparams: LocalizeParams` and `q: array<i32>`.
// Computes every classical method around the centre at once:
//   max   : centre of the brightest pixel of the 3x3 (ties: lowest flat index)
//   c3x3  : centroid of the 3x3 window,  c5x5: of the 5x5 window
//   c3x3t : centroid of the 3x3 pixels above the centroid threshold, c5x5t: same for 5x5
// (pixels outside the frame are left out; a window with no positive weight gives the centre pixel's
// centre). Sums are exact integers; only the final division is floating point.
// CPU twin: src/count/localize.rs::localize_one.

struct LocalizeParams {       // mirrored by src/count/localize.rs::LocalizeParams (layout checked by tests/shaders.rs)
    height: u32,
    width: u32,
    capacity: u32,
    centroid_thr_q: i32,
}

struct Localized {            // keep in sync with src/count/localize.rs::Localized
    xy: array<vec2<f32>, 5>,  // max, c3x3, c5x5, c3x3t, c5x5t
    charge3_e: f32,
    charge5_e: f32,
}

const Q_INV: f32 = 1.0 / 16.0;

struct Moments {
    sx: i32,
    sy: i32,
    sq: i32,
}

fn centroid(m: Moments, r: u32, c: u32) -> vec2<f32> {
    let x0 = f32(c) + 0.5;
    let y0 = f32(r) + 0.5;
    if (m.sq <= 0) {
        return vec2<f32>(x0, y0);
    }
    return vec2<f32>(x0 + ratio(m.sx, m.sq), y0 + ratio(m.sy, m.sq));
}

// a / b (b > 0) bit for bit as the twin (`localize.rs::ratio`): the integer part and 24 fraction
// bits (truncated) by integer long division, then whole + frac * 2^-24 with correctly rounded f32
// operations only (f32 `/` may be off by 2.5 ulp under Vulkan, and is on NVIDIA).
fn ratio(a: i32, b: i32) -> f32 {
    let n = u32(abs(a));          // abs(i32 min) wraps to itself: u32 of it is 2^31, still right
    let d = u32(b);
    let whole = n / d;
    var rem = n % d;              // < d < 2^31, so rem << 1 fits
    var frac = 0u;
    if (d < 8388608u) {
        // d < 2^23 (every window below 2^19 electrons): three base-256 digits, rem << 8 < 2^31;
        // the same 24 bits as the binary loop below
        for (var k = 0; k < 3; k++) {
            rem = rem << 8u;
            let digit = rem / d;
            frac = (frac << 8u) | digit;
            rem -= digit * d;
        }
    } else {
        for (var k = 0; k < 24; k++) {
            rem = rem << 1u;
            frac = frac << 1u;
            if (rem >= d) {
                rem -= d;
                frac |= 1u;
            }
        }
    }
    let v = f32(whole) + f32(frac) * (1.0 / 16777216.0);
    return select(v, -v, a < 0);
}

// Every method around the centre `pixel` of the frame that starts at `base` in q.
fn localize_centre(base: u32, pixel: u32) -> Localized {
    let r = i32(pixel / lparams.width);
    let c = i32(pixel % lparams.width);
    let h = i32(lparams.height);
    let w = i32(lparams.width);
    var m3 = Moments(0, 0, 0);
    var m5 = Moments(0, 0, 0);
    var m3t = Moments(0, 0, 0);
    var m5t = Moments(0, 0, 0);
    var best = -2147483647;
    var best_r = r;
    var best_c = c;
    for (var dr = -2; dr <= 2; dr++) {
        let rr = r + dr;
        if (rr < 0 || rr >= h) {
            continue;
        }
        for (var dc = -2; dc <= 2; dc++) {
            let cc = c + dc;
            if (cc < 0 || cc >= w) {
                continue;
            }
            let v = q[base + u32(rr * w + cc)];
            let above = v > lparams.centroid_thr_q;
            m5 = Moments(m5.sx + v * dc, m5.sy + v * dr, m5.sq + v);
            if (above) {
                m5t = Moments(m5t.sx + v * dc, m5t.sy + v * dr, m5t.sq + v);
            }
            if (abs(dr) <= 1 && abs(dc) <= 1) {
                m3 = Moments(m3.sx + v * dc, m3.sy + v * dr, m3.sq + v);
                if (above) {
                    m3t = Moments(m3t.sx + v * dc, m3t.sy + v * dr, m3t.sq + v);
                }
                if (v > best) {   // row-major scan: ties keep the lowest flat index
                    best = v;
                    best_r = rr;
                    best_c = cc;
                }
            }
        }
    }
    let ur = u32(r);
    let uc = u32(c);
    var o: Localized;
    o.xy[0] = vec2<f32>(f32(best_c) + 0.5, f32(best_r) + 0.5);
    o.xy[1] = centroid(m3, ur, uc);
    o.xy[2] = centroid(m5, ur, uc);
    o.xy[3] = centroid(m3t, ur, uc);
    o.xy[4] = centroid(m5t, ur, uc);
    o.charge3_e = f32(m3.sq) * Q_INV;
    o.charge5_e = f32(m5.sq) * Q_INV;
    return o;
}
