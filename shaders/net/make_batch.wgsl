// make_batch: one invocation per crop pixel of each sample. Sample k = first + s takes its event and
// integer shift from Philox counter (0, k, TRAIN); the pixel's value is the event's charge there
// (sum over the event's pixels that land on it, in library order) plus sigma_e * N(0,1) from counter
// (1 + pixel/4, k, TRAIN), times input_scale. Pixel 0's invocation also writes the grid label and
// the true point. CPU twin: src/net/data.rs::make_batch_cpu.

struct MakeBatchParams {      // mirrored by src/net/data.rs::MakeBatchParams (layout checked by tests/shaders.rs)
    n: u32,
    side: u32,
    first_lo: u32,
    first_hi: u32,
    key_lo: u32,
    key_hi: u32,
    ev_lo: u32,
    ev_count: u32,
    shift: u32,
    grid_cells: u32,
    cells_per_px: f32,
    grid_origin: f32,
    sigma_e: f32,
    input_scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: MakeBatchParams;
@group(0) @binding(1) var<storage, read> offsets: array<u32>;
@group(0) @binding(2) var<storage, read> dxdy: array<i32>;
@group(0) @binding(3) var<storage, read> charge: array<f32>;
@group(0) @binding(4) var<storage, read> incidence: array<f32>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;
@group(0) @binding(6) var<storage, read_write> labels: array<u32>;
@group(0) @binding(7) var<storage, read_write> target_: array<f32>;

const WG: u32 = 256u;

fn grid_label(tx: f32, ty: f32) -> u32 {
    if (params.grid_cells == 0u) {
        return 0u;
    }
    let g = i32(params.grid_cells);
    let cx = clamp(i32(floor((tx - params.grid_origin) * params.cells_per_px)), 0, g - 1);
    let cy = clamp(i32(floor((ty - params.grid_origin) * params.cells_per_px)), 0, g - 1);
    return u32(cy * g + cx);
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
    let r = philox4x32_10(vec4<u32>(0u, k_lo, k_hi, STREAM_TRAIN), key);
    let ev = params.ev_lo + below(r.x, params.ev_count);
    let span = 2u * params.shift + 1u;
    let sx = i32(below(r.y, span)) - i32(params.shift);
    let sy = i32(below(r.z, span)) - i32(params.shift);
    let c0 = i32(params.side / 2u);
    let col = i32(pix % params.side);
    let row = i32(pix / params.side);
    var q = 0.0;
    let lo = offsets[ev];
    let hi = offsets[ev + 1u];
    for (var j = lo; j < hi; j++) {
        if (c0 + sx + dxdy[2u * j] == col && c0 + sy + dxdy[2u * j + 1u] == row) {
            q += charge[j];
        }
    }
    let rn = philox4x32_10(vec4<u32>(1u + pix / 4u, k_lo, k_hi, STREAM_TRAIN), key);
    let z = block_normal(rn, pix % 4u);
    x[i] = (q + params.sigma_e * z) * params.input_scale;
    if (pix == 0u) {
        let tx = f32(c0 + sx) + incidence[2u * ev];
        let ty = f32(c0 + sy) + incidence[2u * ev + 1u];
        target_[2u * s] = tx - f32(c0) - 0.5;
        target_[2u * s + 1u] = ty - f32(c0) - 0.5;
        labels[s] = grid_label(tx, ty);
    }
}
