// localize: one invocation per found centre of a list (indirect dispatch from count/args): every
// classical method (count/localize_common.wgsl). The counting pipeline localizes inside
// count/suppress instead; this kernel localizes any list of centres (its tests use it).
// CPU twin: src/count/localize.rs::localize_one.

@group(0) @binding(0) var<uniform> lparams: LocalizeParams;
@group(0) @binding(1) var<storage, read> q: array<i32>;
@group(0) @binding(2) var<storage, read> counter: array<u32>;
@group(0) @binding(3) var<storage, read> cands: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> out: array<Localized>;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i >= min(counter[0], lparams.capacity)) {
        return;
    }
    let cand = cands[i];
    out[i] = localize_centre(cand.x * lparams.height * lparams.width, cand.y);
}
