// args: one invocation. Turns the candidate counter into indirect dispatch arguments for
// `count/localize` (a 2-D workgroup grid, as gpu::dispatch::workgroup_grid computes it), so the
// host never reads the count between kernels.
// CPU twin: src/count/localize.rs::dispatch_args_cpu.

struct ArgsParams {           // mirrored by src/count/localize.rs::ArgsParams (layout checked by tests/shaders.rs)
    capacity: u32,
    wg_size: u32,
    per_dim: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: ArgsParams;
@group(0) @binding(1) var<storage, read> counter: array<u32>;
@group(0) @binding(2) var<storage, read_write> args: array<u32>;   // x, y, z workgroups

@compute @workgroup_size(1)
fn main() {
    let n = min(counter[0], params.capacity);
    let groups = (n + params.wg_size - 1u) / params.wg_size;
    if (groups <= params.per_dim) {
        args[0] = groups;
        args[1] = 1u;
    } else {
        let y = (groups + params.per_dim - 1u) / params.per_dim;
        args[0] = (groups + y - 1u) / y;
        args[1] = y;
    }
    args[2] = 1u;
}
