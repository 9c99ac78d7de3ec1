//! Training samples cut from a frames dataset with truth (`emsim train --frames f.h5`): real
//! frames with their neighbours, overlaps and noise, instead of isolated library events.
//!
//! Sample `k` uses the Philox counter `(0, k, SHUFFLE)`: word 0 picks a true electron of the
//! split (`lo + below(w0, count)`), words 1 and 2 the integer shift `(sx, sy)` in `[-shift_px,
//! shift_px]` of the crop's centre pixel from the electron's pixel. The crop is `input_px` square
//! around that centre (pixel `input_px / 2`), in electrons times `input_scale`, zero outside the
//! frame; the target is the electron's point relative to the centre of the centre pixel and the
//! label its grid cell. A sample depends only on its index (not on the batch or device); the
//! crops are cut on the host (like a data loader) and uploaded for the GPU path.
//!
//! Validation and test samples come from the last `holdout` fraction of the frames.

use super::data::{Batch, GridLabelParams, grid_label_points_cpu};
use super::data::{check_holdout, n_held_out};
use super::model::{Head, ModelConfig};
use crate::io::frames_in::FramesReader;
use crate::rng::{below, counter, key_from_seed, philox4x32_10, streams};
use crate::{Error, Result};

/// Frames in electrons and their truth, in memory.
pub struct FrameSamples {
    pub height: usize,
    pub width: usize,
    /// `n_frames x height x width`, electrons.
    pub frames_e: Vec<f32>,
    /// True electrons, sorted by frame: frame index, x, y (pixels, x = column).
    pub frame: Vec<u32>,
    pub x_px: Vec<f32>,
    pub y_px: Vec<f32>,
    /// Electrons `[0, n_train)` are in the training frames, the rest in the held-out frames.
    pub n_train: usize,
}

impl FrameSamples {
    /// Reads `path` (an emsim frames file with `/truth`; ADU converted with its gain and offset),
    /// at most `max_frames` frames, holding out the last `holdout` fraction of them.
    pub fn load(path: &std::path::Path, max_frames: Option<u64>, holdout: f32) -> Result<Self> {
        check_holdout(holdout)?;
        let mut reader = FramesReader::open(path, "frames")?;
        let truth = crate::eval::read::read_truth(path)?;
        let n = reader.meta.n_frames.min(max_frames.unwrap_or(u64::MAX)) as usize;
        let n_val = n_held_out(n, holdout)
            .ok_or_else(|| Error::file(path, format!("{n} frames: too few to hold out {holdout} for validation")))?;
        let (h, w) = (reader.meta.height as usize, reader.meta.width as usize);
        let gain = reader.meta.gain_adu_per_e.unwrap_or(1.0);
        let offset = reader.meta.offset_adu.unwrap_or(0.0);
        let adu = reader.read(0, n)?;
        let frames_e = adu.iter().map(|&a| (a - offset) / gain).collect();
        let end = truth.offsets[n] as usize;
        let n_train = truth.offsets[n - n_val] as usize;
        if n_train == 0 || end == n_train {
            return Err(Error::file(path, "no true electrons in the training or the held-out frames"));
        }
        Ok(Self {
            height: h,
            width: w,
            frames_e,
            frame: truth.frame[..end].to_vec(),
            x_px: truth.x_px[..end].to_vec(),
            y_px: truth.y_px[..end].to_vec(),
            n_train,
        })
    }

    /// Electron ranges `(lo, count)` for training and validation.
    pub fn split(&self) -> ((u32, u32), (u32, u32)) {
        ((0, self.n_train as u32), (self.n_train as u32, (self.x_px.len() - self.n_train) as u32))
    }

    /// Sample `k`'s electron (index into the truth) and crop centre pixel `(column, row)`.
    pub fn choice(&self, seed: u64, shift_px: usize, (lo, count): (u32, u32), k: u64) -> (usize, i64, i64) {
        let r = philox4x32_10(counter(0, k, streams::SHUFFLE), key_from_seed(seed));
        let shift = shift_px as u32;
        let e = (lo + below(r[0], count)) as usize;
        let sx = below(r[1], 2 * shift + 1) as i64 - shift as i64;
        let sy = below(r[2], 2 * shift + 1) as i64 - shift as i64;
        (e, self.x_px[e].floor() as i64 + sx, self.y_px[e].floor() as i64 + sy)
    }

    /// Samples `first .. first + n` of electrons `[lo, lo + count)`.
    pub fn batch(&self, cfg: &ModelConfig, seed: u64, (lo, count): (u32, u32), first: u64, n: usize) -> Batch {
        let side = cfg.input_px;
        let half = (side / 2) as i64;
        let (h, w) = (self.height as i64, self.width as i64);
        let mut x = vec![0.0f32; n * side * side];
        let mut target = vec![0.0f32; 2 * n];
        for s in 0..n {
            let (e, cx, cy) = self.choice(seed, cfg.shift_px, (lo, count), first + s as u64);
            let (ex, ey) = (self.x_px[e], self.y_px[e]);
            let plane = &self.frames_e[self.frame[e] as usize * self.height * self.width..][..self.height * self.width];
            let crop = &mut x[s * side * side..(s + 1) * side * side];
            for i in 0..side as i64 {
                let row = cy - half + i;
                if row < 0 || row >= h {
                    continue;
                }
                for j in 0..side as i64 {
                    let col = cx - half + j;
                    if col >= 0 && col < w {
                        crop[(i * side as i64 + j) as usize] = plane[(row * w + col) as usize] * cfg.input_scale;
                    }
                }
            }
            target[2 * s] = ex - (cx as f32 + 0.5);
            target[2 * s + 1] = ey - (cy as f32 + 0.5);
        }
        let mut labels = vec![0u32; n];
        if matches!(cfg.head, Head::Grid { .. }) {
            grid_label_points_cpu(&GridLabelParams::new(cfg, n, 2), &target, &mut labels);
        }
        Batch { x, labels, target }
    }
}
