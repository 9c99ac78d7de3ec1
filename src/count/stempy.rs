//! stempy's classic electron counter (stempy 3.6, `stempy.image.electron_count_frame`; C++
//! `electronCount` and `maximalPoints` in OpenChemistry/stempy `stempy/electron.cpp`), for
//! comparing emsim's counting with the field's baseline on the same frames. Per frame of u16 ADU:
//! the dark reference (if any) truncated to u16 is subtracted in u16 arithmetic (a pixel below its
//! dark wraps around to a large value, as in stempy), every value at or below the background
//! threshold or at or above the x-ray threshold is set to 0, and every pixel strictly greater than
//! all of its (up to 8) neighbours is an electron, at that pixel. Checked event for event against
//! stempy itself (`tests/count.rs`, fixture made by `scripts/reference/stempy_fixture.py`).
//!
//! Not yet a method of `emsim count`.

/// The thresholds of stempy's classic counter, in ADU after the dark subtraction.
#[derive(Clone, Copy, Debug)]
pub struct StempyThresholds {
    pub background: f64,
    pub xray: f64,
}

/// The electrons of one `height x width` frame as flat pixel indices (`row * width + col`), in
/// increasing order, appended to `events`; `work` is a scratch buffer.
pub fn count_frame(
    frame: &[u16],
    height: usize,
    width: usize,
    dark: Option<&[f32]>,
    t: StempyThresholds,
    work: &mut Vec<u16>,
    events: &mut Vec<u32>,
) {
    assert_eq!(frame.len(), height * width, "stempy counter: frame size");
    work.clear();
    work.extend(frame.iter().enumerate().map(|(j, &v)| {
        // C++: frame[j] -= static_cast<uint16_t>(dark[j]) on uint16 values
        let v = match dark {
            Some(d) => v.wrapping_sub(d[j] as u16),
            None => v,
        };
        if v as f64 <= t.background || v as f64 >= t.xray { 0 } else { v }
    }));
    let f = &work[..];
    for r in 0..height {
        let rows = [r.checked_sub(1), Some(r), (r + 1 < height).then_some(r + 1)];
        for c in 0..width {
            let v = f[r * width + c];
            let cols = [c.checked_sub(1), Some(c), (c + 1 < width).then_some(c + 1)];
            let is_max = rows
                .iter()
                .flatten()
                .all(|&rr| cols.iter().flatten().all(|&cc| (rr == r && cc == c) || v > f[rr * width + cc]));
            if is_max {
                events.push((r * width + c) as u32);
            }
        }
    }
}
