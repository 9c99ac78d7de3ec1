//! stempy's classic electron counter (stempy 3.6, `stempy.image.electron_count_frame`; C++
//! `electronCount` and `maximalPoints` in OpenChemistry/stempy `stempy/electron.cpp`), for
//! comparing emsim's counting with the field's baseline on the same frames. Per frame of u16 ADU:
//! the dark reference (if any) truncated to u16 is subtracted in u16 arithmetic (a pixel below its
//! dark wraps around to a large value, as in stempy), every value at or below the background
//! threshold or at or above the x-ray threshold is set to 0, and every pixel strictly greater than
//! all of its (up to 8) neighbours is an electron, at that pixel. Checked event for event against
//! stempy itself (`tests/count.rs`, fixture made by `scripts/reference/stempy_fixture.py`).
//!
//! `emsim count --method stempy` runs it on the frames as read ([`StempyCount`]) with emsim's
//! settings in stempy's terms: background threshold = `background_threshold_n_sigma` x noise sigma
//! x gain ADU above the dark; dark = the `--dark` map or the offset; x-ray threshold =
//! `xray_threshold_e` x gain, or when that is off (0), 65,536 - the largest dark value (the cap
//! that keeps pixels below their dark, which wrap around in u16, from counting).

use rayon::prelude::*;

use super::{CountConfig, HostAdu};
use crate::io::counts_out::ElectronColumns;

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

/// stempy's counter with `cfg`'s settings in stempy's terms (see the module), prepared once for
/// `height x width` frames with read noise `sigma_e`.
pub struct StempyCount {
    height: usize,
    width: usize,
    dark: Vec<f32>,
    thresholds: StempyThresholds,
    gain: f64,
}

impl StempyCount {
    pub fn new(cfg: &CountConfig, sigma_e: f32, height: usize, width: usize) -> Self {
        let dark: Vec<f32> = cfg.dark.clone().unwrap_or_else(|| vec![cfg.offset_adu; height * width]);
        let gain = cfg.gain_adu_per_e as f64;
        let max_dark = dark.iter().fold(0f32, |m, &d| m.max(d)).clamp(0.0, 65535.0) as u16 as f64;
        let thresholds = StempyThresholds {
            background: cfg.background_threshold_n_sigma as f64 * sigma_e as f64 * gain,
            xray: if cfg.xray_threshold_e > 0.0 { cfg.xray_threshold_e as f64 * gain } else { 65536.0 - max_dark },
        };
        Self { height, width, dark, thresholds, gain }
    }

    /// The electrons of a batch of frames (ADU; f32 values rounded to whole ADU and clipped to
    /// u16 as stempy takes them) as count columns (frames offset by `start`; position at the
    /// pixel's centre; charge = the pixel's value above the dark, in electrons) and per-frame
    /// counts.
    pub fn count_batch(&self, adu: HostAdu, start: u64) -> (ElectronColumns, Vec<u64>) {
        let (height, width) = (self.height, self.width);
        let px = height * width;
        let n = adu.len() / px;
        let per_frame: Vec<(Vec<u32>, Vec<f32>)> = (0..n)
            .into_par_iter()
            .map_init(
                || (Vec::new(), Vec::new()),
                |(work, frame), f| {
                    let frame_u16: &[u16] = match adu {
                        HostAdu::U16(a) => &a[f * px..(f + 1) * px],
                        HostAdu::F32(a) => {
                            frame.clear();
                            frame.extend(a[f * px..(f + 1) * px].iter().map(|&v| v.round().clamp(0.0, 65535.0) as u16));
                            frame
                        }
                    };
                    let mut events = Vec::new();
                    count_frame(frame_u16, height, width, Some(&self.dark), self.thresholds, work, &mut events);
                    let charge = events.iter().map(|&i| (work[i as usize] as f64 / self.gain) as f32).collect();
                    (events, charge)
                },
            )
            .collect();
        let mut cols = ElectronColumns::default();
        let mut counts = Vec::with_capacity(n);
        for (f, (events, charge)) in per_frame.into_iter().enumerate() {
            counts.push(events.len() as u64);
            for (&i, q) in events.iter().zip(charge) {
                let (r, c) = (i / width as u32, i % width as u32);
                cols.frame.push((start + f as u64) as u32);
                cols.x_px.push(c as f32 + 0.5);
                cols.y_px.push(r as f32 + 0.5);
                cols.row.push(r);
                cols.col.push(c);
                cols.charge_e.push(q);
            }
        }
        (cols, counts)
    }
}
