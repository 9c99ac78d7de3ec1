// sum3: one invocation per pixel of each frame. s = sum of q over the 3x3 pixels around it (pixels
// outside the frame count as 0). Integer arithmetic: exact on every device.
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

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    let frame_px = params.height * params.width;
    if (i >= params.n_frames * frame_px) {
        return;
    }
    let base = i - i % frame_px;
    let r = i32((i % frame_px) / params.width);
    let c = i32(i % params.width);
    let h = i32(params.height);
    let w = i32(params.width);
    var acc = 0;
    for (var dr = -1; dr <= 1; dr++) {
        let rr = r + dr;
        if (rr < 0 || rr >= h) {
            continue;
        }
        for (var dc = -1; dc <= 1; dc++) {
            let cc = c + dc;
            if (cc >= 0 && cc < w) {
                acc += q[base + u32(rr * w + cc)];
            }
        }
    }
    s[i] = acc;
}
