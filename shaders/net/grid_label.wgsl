// grid_label: one invocation per sample i: the grid cell (row-major, clamped to the grid) holding
// the point (points[i * stride], points[i * stride + 1]) given in pixels relative to the centre of
// the crop's centre pixel: cx = clamp(floor((x - origin) * cells_per_px), 0, G - 1), likewise cy,
// label = cy * G + cx. Used to train a grid head on pair samples (net/make_pairs writes points).
// CPU twin: src/net/data.rs::grid_label_points_cpu.

struct GridLabelParams {      // mirrored by src/net/data.rs::GridLabelParams (layout checked by tests/shaders.rs)
    n: u32,
    stride: u32,
    grid_cells: u32,
    cells_per_px: f32,
    // the grid's left/top edge relative to the centre of the centre pixel, pixels
    origin: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: GridLabelParams;
@group(0) @binding(1) var<storage, read> points: array<f32>;
@group(0) @binding(2) var<storage, read_write> labels: array<u32>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= params.n) {
        return;
    }
    let g = i32(params.grid_cells);
    let x = points[i * params.stride];
    let y = points[i * params.stride + 1u];
    let cx = clamp(i32(floor((x - params.origin) * params.cells_per_px)), 0, g - 1);
    let cy = clamp(i32(floor((y - params.origin) * params.cells_per_px)), 0, g - 1);
    labels[i] = u32(cy * g + cx);
}
