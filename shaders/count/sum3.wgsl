// sum3: s = sum of q over the 3x3 pixels around each pixel (pixels outside the frame count as 0).
// One invocation per run of RUN = 8 pixels of a row (count/row_runs.wgsl): it sums the 3 rows of the 10 columns around the
// run once (30 loads) and slides the 3-column window (instead of 9 loads per pixel). Integer
// arithmetic: exact on every device, whatever the order.
// CPU twin: src/count/sum3.rs::sum3_cpu.

struct Sum3Params {           // keep in sync with src/count/sum3.rs::Sum3Params
    n_frames: u32,
    height: u32,
    width: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Sum3Params;
@group(0) @binding(1) var<storage, read> q: array<i32>;
@group(0) @binding(2) var<storage, read_write> s: array<i32>;

const WG: u32 = 256u;

// Sum of q over rows r-1 .. r+1 (in the frame) of column c (0 outside the frame).
fn col3(base: u32, r: i32, c: i32) -> i32 {
    let h = i32(params.height);
    let w = i32(params.width);
    if (c < 0 || c >= w) {
        return 0;
    }
    var acc = 0;
    for (var rr = max(r - 1, 0); rr <= min(r + 1, h - 1); rr++) {
        acc += q[base + u32(rr * w + c)];
    }
    return acc;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    var run: RowRun;
    if (!row_run(flat_index(wid, nwg, lid, WG), &run)) {
        return;
    }
    let base = run.base;
    let r = run.r;
    let c0 = run.c0;
    // columns c0 - 1 .. c0 + RUN
    var cs: array<i32, 10>;
    for (var j = 0; j < 10; j++) {
        cs[j] = col3(base, r, c0 - 1 + j);
    }
    let out_row = base + u32(r) * params.width;
    for (var m = 0; m < 8; m++) {
        let c = c0 + m;
        if (c < i32(params.width)) {
            s[out_row + u32(c)] = cs[m] + cs[m + 1] + cs[m + 2];
        }
    }
}
