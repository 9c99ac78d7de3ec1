// The crop value shared by net/crop and net/mlp_count: pixel `pix` (row-major) of the side x side
// square of the calibrated frames q centred on candidate `cand`'s pixel, times `scale`
// (= input_scale / 16), 0 outside the frame. Each including shader declares `q`.

fn crop_value(cand: vec4<u32>, pix: u32, side: u32, height: u32, width: u32, scale: f32) -> f32 {
    let half = i32(side / 2u);
    let rr = i32(cand.y / width) - half + i32(pix / side);
    let cc = i32(cand.y % width) - half + i32(pix % side);
    if (rr >= 0 && rr < i32(height) && cc >= 0 && cc < i32(width)) {
        return f32(q[cand.x * height * width + u32(rr) * width + u32(cc)]) * scale;
    }
    return 0.0;
}
