// collect: one invocation per (event, pixel of its window). Sums, over the event's pair clouds, the
// pairs that diffuse into the pixel: for a cloud at height h above the absorbing plane of a
// field-free layer of thickness d (reflecting far face), the fraction arriving in a rectangle is a
// sum over images at heights h + 2 m d and 2 (m + 1) d - h (sign (-1)^m, weights from Euler's
// transform) of solid-angle terms atan(x y / (a sqrt(x^2 + y^2 + a^2))) at its corners, / (2 pi).
// Clouds with h <= 0 (depleted region) go to the pixel under them. CPU twin:
// src/events/physics/collect.rs::collect_window_cpu.

struct CollectParams {        // mirrored by src/events/physics/collect.rs::CollectParams
    n_events: u32,
    window_half: i32,
    side: u32,
    _pad0: u32,
    pitch_um: f32,
    field_free_um: f32,
    reach_um: f32,
    _pad1: f32,
    weights: array<vec4<f32>, 4>,
}

@group(0) @binding(0) var<uniform> params: CollectParams;
@group(0) @binding(1) var<storage, read> offsets: array<u32>;        // n_events + 1
@group(0) @binding(2) var<storage, read> clouds: array<vec4<f32>>;   // (x_um, y_um, h_um, pairs)
@group(0) @binding(3) var<storage, read_write> windows: array<f32>;  // n_events * side * side

const WG: u32 = 64u;
const PAIRS: u32 = 16u;
const TWO_PI: f32 = 6.283185307179586;

fn corner(x: f32, y: f32, a: f32) -> f32 {
    return atan(x * y / (a * sqrt(x * x + y * y + a * a)));
}

fn rect(x0: f32, x1: f32, y0: f32, y1: f32, a: f32) -> f32 {
    return corner(x1, y1, a) - corner(x0, y1, a) - corner(x1, y0, a) + corner(x0, y0, a);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    let cells = params.side * params.side;
    if (i >= params.n_events * cells) {
        return;
    }
    let e = i / cells;
    let cell = i % cells;
    let col = i32(cell % params.side) - params.window_half;
    let row = i32(cell / params.side) - params.window_half;
    let p = params.pitch_um;
    let d = params.field_free_um;
    let r = params.reach_um;
    var acc = 0.0;
    for (var k = offsets[e]; k < offsets[e + 1u]; k++) {
        let c = clouds[k];
        if (c.z <= 0.0 || d <= 0.0) {
            if (i32(floor(c.x / p)) == col && i32(floor(c.y / p)) == row) {
                acc += c.w;
            }
            continue;
        }
        if (col < i32(floor((c.x - r) / p)) || col > i32(floor((c.x + r) / p)) ||
            row < i32(floor((c.y - r) / p)) || row > i32(floor((c.y + r) / p))) {
            continue;
        }
        let h = clamp(c.z, 1e-6, d);
        let x0 = f32(col) * p - c.x;
        let y0 = f32(row) * p - c.y;
        let x1 = x0 + p;
        let y1 = y0 + p;
        var s = 0.0;
        for (var m = 0u; m < PAIRS; m++) {
            let w = params.weights[m / 4u][m % 4u] * select(1.0, -1.0, (m & 1u) == 1u);
            let a = h + 2.0 * f32(m) * d;
            let b = 2.0 * f32(m + 1u) * d - h;
            s += w * (rect(x0, x1, y0, y1, a) + rect(x0, x1, y0, y1, b));
        }
        let f = s / TWO_PI;
        if (f > 0.0) {
            acc += c.w * f;
        }
    }
    windows[i] = acc;
}
