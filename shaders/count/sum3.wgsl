// sum3: s = sum of q over the 3x3 pixels around each pixel (pixels outside the frame count as 0).
// One invocation per run of RUN pixels (count/runs.wgsl; see src/count/mod.rs::CountLayout): it
// sums the 3 pixels across the run at each of the RUN + 2 positions along it once (30 loads for
// RUN = 8) and slides the 3-wide window (instead of 9 loads per pixel). Integer
// arithmetic: exact on every device, whatever the order.
// CPU twin: src/count/sum3.rs::sum3_cpu.

struct Sum3Params {           // mirrored by src/count/sum3.rs::Sum3Params (layout checked by tests/shaders.rs)
    n_frames: u32,
    height: u32,
    width: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Sum3Params;
@group(0) @binding(1) var<storage, read> q: array<i32>;
@group(0) @binding(2) var<storage, read_write> s: array<i32>;

const WG: u32 = 256u;

// Sum of q over the 3 pixels across the run's direction at (r, c) (0 outside the frame): the
// column r-1 .. r+1 for a run along a row, the row c-1 .. c+1 for a run down a column.
fn across3(base: u32, r: i32, c: i32) -> i32 {
    let h = i32(params.height);
    let w = i32(params.width);
    var acc = 0;
    for (var i = -1; i <= 1; i++) {
        let rr = r + i32(VC) * i;
        let cc = c + i32(VR) * i;
        if (rr >= 0 && rr < h && cc >= 0 && cc < w) {
            acc += q[base + u32(rr * w + cc)];
        }
    }
    return acc;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    var run: Run;
    if (!pixel_run(flat_index(wid, nwg, lid, WG), &run)) {
        return;
    }
    let h = i32(params.height);
    let w = i32(params.width);
    // the sums across at positions -1 .. RUN along the run
    var a: array<i32, RUN + 2u>;
    for (var k = 0; k < i32(RUN) + 2; k++) {
        a[k] = across3(run.base, run.r0 + i32(VR) * (k - 1), run.c0 + i32(VC) * (k - 1));
    }
    for (var m = 0; m < i32(RUN); m++) {
        let r = run.r0 + i32(VR) * m;
        let c = run.c0 + i32(VC) * m;
        if (r < h && c < w) {
            s[run.base + u32(r * w + c)] = a[m] + a[m + 1] + a[m + 2];
        }
    }
}
